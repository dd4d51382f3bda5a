//! The loops the exchange daemons run (feature `daemon`): the spool over a [`UdpSender`], and
//! a [`UdpReceiver`] into the store.

use std::net::{SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::mpsc::Receiver as Inbox;
use std::time::Duration;

use tianping_core::Clock;

use crate::{
    Assembler, Ended, LinkConfig, LinkError, Pacer, Receiver, ReceiverConfig, SendStats, Sender,
    SignerTrust, Sink, Spool, SpoolError, Store, Submission, UdpReceiver, UdpSender,
};

/// Sends every transfer of `config.link` left in `spool` (a restart resumes them, in the
/// spool's fresh epoch), then each one the `inbox` brings (spooled by the caller first), to
/// `peer` at `mbps`; a transfer leaves the spool once its last datagram was sent. Returns when
/// the inbox is closed and everything is sent.
pub fn send_spooled(
    spool: &Spool,
    config: LinkConfig,
    mbps: u32,
    socket: UdpSocket,
    peer: SocketAddr,
    clock: &dyn Clock,
    inbox: &Inbox<Submission>,
) -> Result<SendStats, LinkError> {
    let link = config.link;
    let mut sender = Sender::new(config, spool.epoch())?;
    let pending = spool.pending(link).map_err(|e| LinkError::Read {
        id: 0,
        source: std::io::Error::other(e.to_string()),
    })?;
    for (id, file) in pending {
        sender.submit(id, Box::new(file))?;
    }
    let mut pacer = Pacer::for_link(mbps, clock.now());
    let mut udp = UdpSender::new(socket, peer, Duration::from_millis(20));
    udp.run_with(&mut sender, &mut pacer, clock, inbox, |id| {
        spool.sent(link, id).map_err(|e| LinkError::Read {
            id,
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// Receives `config.link` on `socket` into `store`, starting from the store's floor, handing
/// complete bundles to `sink` and telling `on_ended` of every transfer that ended, until it
/// says stop.
pub fn receive_into(
    store: &mut Store,
    config: ReceiverConfig,
    trust: Arc<dyn SignerTrust>,
    socket: UdpSocket,
    clock: &dyn Clock,
    sink: &mut dyn Sink,
    mut on_ended: impl FnMut(u64, Ended) -> ControlFlow<()>,
) -> Result<(), SpoolError> {
    let link = config.link;
    let floor = store.floor(link)?;
    let mut asm = Assembler::new(Receiver::new(config, Some(floor)), trust);
    let io_err = |source| SpoolError::Io {
        path: "udp".into(),
        source,
    };
    let mut rx = UdpReceiver::new(socket, Duration::from_millis(50)).map_err(io_err)?;
    let mut failed = None;
    rx.run(&mut asm, clock, |arrival| {
        match store.accept(link, arrival, sink) {
            Ok(ended) => {
                for (id, how) in ended {
                    if on_ended(id, how).is_break() {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })
    .map_err(io_err)?;
    failed.map_or(Ok(()), Err)
}
