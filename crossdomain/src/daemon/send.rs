//! The sending daemon's loops and its status.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver as Inbox;
use std::time::Duration;

use tianping_core::Clock;
use tianping_net::{Counter, Gauge, MetricsError, Registry};

use crate::{
    LinkConfig, LinkError, Pacer, SendStats, Sender, Spool, SpoolError, Submission, UdpSender,
};

use super::int;

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
    let last = spool.last_id(link).map_err(spool_err(0))?;
    let pending = spool.pending(link).map_err(|e| LinkError::Read {
        id: 0,
        source: std::io::Error::other(e.to_string()),
    })?;
    for (id, file) in pending {
        sender.submit(id, Box::new(file))?;
    }
    sender.resume_after(last);
    let mut pacer = Pacer::for_link(mbps, clock.now());
    let mut udp = UdpSender::new(socket, peer, Duration::from_millis(20));
    udp.run_with(&mut sender, &mut pacer, clock, inbox, |id| {
        spool.sent(link, id).map_err(|e| LinkError::Read {
            id,
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// One sending link's state, shared by its loop, the control socket's status and `/metrics`.
#[derive(Debug)]
pub struct SendStatus {
    /// The link's id.
    pub link: u32,
    /// The receiving zone.
    pub to: String,
    /// The pacing rate, in megabits per second.
    pub rate_mbps: u32,
    /// The spool's epoch this start.
    pub epoch: u64,
    /// Transfers spooled and not yet sent in full.
    pub spooled: Gauge,
    /// Transfers the sender has started and not finished.
    pub sending: Gauge,
    /// Transfers sent in full since the start.
    pub sent: Counter,
    /// Datagrams handed to the kernel since the start.
    pub datagrams: Counter,
    /// Datagrams the kernel refused (dropped like a loss on the wire).
    pub send_errors: Counter,
    /// The last transfer id the spool gave on the link.
    pub last_transfer: Gauge,
    /// Sent transfers kept for a resend.
    pub retained: Gauge,
    /// Where the datagrams go, once known.
    pub peer: Mutex<Option<SocketAddr>>,
}

impl SendStatus {
    /// The state of link `link` to zone `to`, its counters registered in `registry` with the
    /// labels `link`, `from` and `to`.
    pub fn new(
        registry: &Registry,
        link: u32,
        from: &str,
        to: &str,
        rate_mbps: u32,
        epoch: u64,
    ) -> Result<Self, MetricsError> {
        let id = link.to_string();
        let labels = [("link", id.as_str()), ("from", from), ("to", to)];
        Ok(Self {
            link,
            to: to.to_owned(),
            rate_mbps,
            epoch,
            spooled: registry.gauge(
                "tianping_exchange_spooled",
                "transfers spooled and not yet sent in full",
                &labels,
            )?,
            sending: registry.gauge(
                "tianping_exchange_sending",
                "transfers being sent",
                &labels,
            )?,
            sent: registry.counter(
                "tianping_exchange_sent_total",
                "transfers sent in full",
                &labels,
            )?,
            datagrams: registry.counter(
                "tianping_exchange_datagrams_sent_total",
                "datagrams handed to the kernel",
                &labels,
            )?,
            send_errors: registry.counter(
                "tianping_exchange_send_errors_total",
                "datagrams the kernel refused",
                &labels,
            )?,
            last_transfer: registry.gauge(
                "tianping_exchange_last_transfer",
                "the last transfer id given on the link",
                &labels,
            )?,
            retained: registry.gauge(
                "tianping_exchange_retained",
                "sent transfers kept for a resend",
                &labels,
            )?,
            peer: Mutex::new(None),
        })
    }

    /// The peer, if known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer.lock().ok().and_then(|p| *p)
    }
}

/// How a daemon's sending link runs.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// The link's datagram settings.
    pub config: LinkConfig,
    /// The pacing rate, in megabits per second.
    pub mbps: u32,
    /// How long a sent transfer's bytes are kept for a resend.
    pub retain: Duration,
    /// A heartbeat this often; the peer is looked up again as often.
    pub beat_every: Duration,
}

fn spool_err(id: u64) -> impl Fn(SpoolError) -> LinkError {
    move |e| LinkError::Read {
        id,
        source: std::io::Error::other(e.to_string()),
    }
}

/// Sends link `options.config.link` out of `spool` until `stop` is set: first every transfer
/// left in the spool, then each id the `inbox` names (spooled by the caller first; an id the
/// loop already took from the spool is skipped). `peer` is asked where to send at the start and
/// at every heartbeat (a receiver on port 0 publishes a new address when it restarts); while it
/// knows none the loop waits and the spool keeps everything. A sent transfer is kept for
/// `options.retain`, and expired ones are pruned as the loop goes.
#[expect(clippy::too_many_arguments, reason = "the loop's parts, each its own")]
pub fn run_sender(
    spool: &Spool,
    options: SendOptions,
    socket: &UdpSocket,
    peer: &mut dyn FnMut() -> Option<SocketAddr>,
    clock: &dyn Clock,
    inbox: &Inbox<u64>,
    status: &SendStatus,
    stop: &AtomicBool,
) -> Result<(), LinkError> {
    let link = options.config.link;
    let mut sender = Sender::new(options.config, spool.epoch())?;
    for (id, file) in spool.pending(link).map_err(spool_err(0))? {
        sender.submit(id, Box::new(file))?;
    }
    let refresh = |sender: &Sender| -> Result<(), LinkError> {
        let c = sender.counters();
        status.sending.set(int(c
            .transfers_started
            .saturating_sub(c.transfers_finished)));
        status.spooled.set(int(spool.pending_len(link) as u64));
        status
            .last_transfer
            .set(int(spool.last_id(link).map_err(spool_err(0))?));
        status
            .retained
            .set(int(spool.retained(link).map_err(spool_err(0))?.len() as u64));
        Ok(())
    };
    refresh(&sender)?;
    let take = |sender: &mut Sender, id: u64| -> Result<(), LinkError> {
        if id <= sender.counters().last_transfer {
            return Ok(());
        }
        let file = spool.open_pending(link, id).map_err(spool_err(id))?;
        sender.submit(id, Box::new(file))
    };
    let mut to = None;
    while !stop.load(Ordering::Relaxed) {
        to = peer();
        if to.is_some() {
            break;
        }
        std::thread::sleep(options.beat_every);
    }
    if let Ok(mut p) = status.peer.lock() {
        *p = to;
    }
    let mut pacer = Pacer::for_link(options.mbps, clock.now());
    let mut out = Vec::new();
    let mut last_beat = clock.now();
    let mut last_prune = clock.now();
    let send = |out: &[u8], pacer: &mut Pacer, to: Option<SocketAddr>| {
        let Some(to) = to else { return };
        while let Err(wait) = pacer.try_send(clock, out.len()) {
            std::thread::sleep(wait);
        }
        match socket.send_to(out, to) {
            Ok(_) => status.datagrams.inc(),
            Err(_) => status.send_errors.inc(),
        }
    };
    while !stop.load(Ordering::Relaxed) {
        while let Ok(id) = inbox.try_recv() {
            take(&mut sender, id)?;
        }
        let now = clock.now();
        if now.saturating_since(last_beat) >= options.beat_every {
            last_beat = now;
            if let Some(p) = peer() {
                to = Some(p);
                if let Ok(mut s) = status.peer.lock() {
                    *s = to;
                }
            }
            sender.heartbeat(&mut out)?;
            send(&out, &mut pacer, to);
            if now.saturating_since(last_prune) >= Duration::from_secs(10) {
                last_prune = now;
                spool.prune(now).map_err(spool_err(0))?;
            }
            refresh(&sender)?;
        }
        if let Some(sent) = sender.next_datagram(&mut out)? {
            send(&out, &mut pacer, to);
            if sent.finished {
                let now = clock.now();
                spool
                    .sent_retained(link, sent.transfer, now, now.saturating_add(options.retain))
                    .map_err(spool_err(sent.transfer))?;
                status.sent.inc();
                refresh(&sender)?;
            }
        } else if let Ok(id) = inbox.recv_timeout(options.beat_every) {
            take(&mut sender, id)?;
            refresh(&sender)?;
        }
    }
    Ok(())
}
