//! The receiving daemon's loops and its status.

use std::collections::VecDeque;
use std::net::UdpSocket;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tianping_core::{Clock, UnixTime};
use tianping_net::{Counter, MetricsError, Registry};

use crate::{
    Arrival, Assembler, Datagram, Ended, Heartbeat, Receiver, ReceiverConfig, ReceiverStats,
    SignerTrust, Sink, SpoolError, Store, UdpReceiver,
};

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

/// One receiving link's state, shared by its loop, the control socket's status and
/// `/metrics`.
#[derive(Debug)]
pub struct ReceiveStatus {
    /// The link's id.
    pub link: u32,
    /// The sending zone.
    pub from: String,
    /// Transfers handed on, complete and checked.
    pub received: Counter,
    /// Transfers lost.
    pub lost: Counter,
    /// Transfers that arrived but were refused (signature, signer, a chunk hash).
    pub refused: Counter,
    /// Symbols dropped as duplicates or for what had ended.
    pub late: Counter,
    /// Blocks rebuilt with repair symbols.
    pub repaired: Counter,
    /// Datagrams that decoded.
    pub datagrams: Counter,
    /// Datagrams dropped as malformed or of another link.
    pub malformed: Counter,
    detail: Mutex<ReceiveDetail>,
}

/// What a receiving link has seen, for its status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiveDetail {
    /// The most recent lost transfer ids, oldest first (at most [`RECENT_IDS`]).
    pub lost_ids: VecDeque<u64>,
    /// The most recent refused transfer ids, oldest first (at most [`RECENT_IDS`]).
    pub refused_ids: VecDeque<u64>,
    /// The last transfer handed on.
    pub last_received: Option<u64>,
    /// The sender's last heartbeat, and when it came.
    pub last_beat: Option<(UnixTime, Heartbeat)>,
    /// Since when nothing has arrived, while the link is silent.
    pub silent_since: Option<UnixTime>,
    /// The sender epochs seen since the start, oldest first (at most [`RECENT_IDS`]).
    pub epochs: Vec<u64>,
}

/// How many recent ids and epochs a receiving link's status keeps.
pub const RECENT_IDS: usize = 64;

fn push_recent(q: &mut VecDeque<u64>, id: u64) {
    if q.len() >= RECENT_IDS {
        q.pop_front();
    }
    q.push_back(id);
}

impl ReceiveStatus {
    /// The state of link `link` from zone `from`, its counters registered in `registry` with
    /// the labels `link`, `from` and `to`.
    pub fn new(registry: &Registry, link: u32, from: &str, to: &str) -> Result<Self, MetricsError> {
        let id = link.to_string();
        let labels = [("link", id.as_str()), ("from", from), ("to", to)];
        let c = |name: &str, help: &str| registry.counter(name, help, &labels);
        Ok(Self {
            link,
            from: from.to_owned(),
            received: c(
                "tianping_exchange_received_total",
                "transfers handed on, complete and checked",
            )?,
            lost: c("tianping_exchange_lost_total", "transfers lost")?,
            refused: c(
                "tianping_exchange_refused_total",
                "transfers that arrived but were refused",
            )?,
            late: c(
                "tianping_exchange_late_total",
                "symbols dropped as duplicates or for what had ended",
            )?,
            repaired: c(
                "tianping_exchange_repaired_total",
                "blocks rebuilt with repair symbols",
            )?,
            datagrams: c(
                "tianping_exchange_datagrams_received_total",
                "datagrams that decoded",
            )?,
            malformed: c(
                "tianping_exchange_malformed_total",
                "datagrams dropped as malformed or of another link",
            )?,
            detail: Mutex::new(ReceiveDetail::default()),
        })
    }

    /// What the link has seen.
    pub fn detail(&self) -> ReceiveDetail {
        self.detail.lock().map(|d| d.clone()).unwrap_or_default()
    }

    fn with(&self, f: impl FnOnce(&mut ReceiveDetail)) {
        if let Ok(mut d) = self.detail.lock() {
            f(&mut d);
        }
    }
}

/// How a transfer ended on a link, as the receiving loop tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEnd {
    /// The transfer's id on the link.
    pub transfer: u64,
    /// How it ended.
    pub how: Ended,
    /// Why, when it was refused (the bundle's error) or lost (`incomplete`, `timeout`,
    /// `never-seen`).
    pub reason: Option<String>,
    /// The sender's epoch last seen on the link.
    pub epoch: Option<u64>,
    /// The transfer's id `<source>:<sequence>`, when its header had arrived and checked (a
    /// transfer refused for a chunk, or lost after its header).
    pub transfer_id: Option<String>,
}

/// Receives `config.link` on `socket` into `store` until `stop` is set, as [`receive_into`]
/// does, keeping `status` up to date and telling `on_ended` of every transfer that ended.
#[expect(clippy::too_many_arguments, reason = "the loop's parts, each its own")]
pub fn run_receiver(
    store: &mut Store,
    config: ReceiverConfig,
    trust: Arc<dyn SignerTrust>,
    socket: &UdpSocket,
    clock: &dyn Clock,
    sink: &mut dyn Sink,
    status: &ReceiveStatus,
    stop: &AtomicBool,
    mut on_ended: impl FnMut(u64, Ended),
) -> Result<(), SpoolError> {
    run_receiver_reporting(
        store,
        config,
        trust,
        socket,
        clock,
        sink,
        status,
        stop,
        |end: &LinkEnd| on_ended(end.transfer, end.how),
    )
}

/// [`run_receiver`], telling `on_ended` also why a transfer was refused or lost and the
/// sender's epoch (what the receiver's audit events record).
#[expect(clippy::too_many_arguments, reason = "the loop's parts, each its own")]
pub fn run_receiver_reporting(
    store: &mut Store,
    config: ReceiverConfig,
    trust: Arc<dyn SignerTrust>,
    socket: &UdpSocket,
    clock: &dyn Clock,
    sink: &mut dyn Sink,
    status: &ReceiveStatus,
    stop: &AtomicBool,
    mut on_ended: impl FnMut(&LinkEnd),
) -> Result<(), SpoolError> {
    let link = config.link;
    let floor = store.floor(link)?;
    let mut asm = Assembler::new(Receiver::new(config, Some(floor)), trust);
    let io_err = |source| SpoolError::Io {
        path: "udp".into(),
        source,
    };
    let poll_every = Duration::from_millis(50);
    socket.set_read_timeout(Some(poll_every)).map_err(io_err)?;
    let done = AtomicBool::new(false);
    let (queue, inbox) = std::sync::mpsc::sync_channel::<Vec<u8>>(RECEIVE_QUEUE);
    std::thread::scope(|scope| {
        let drain = scope.spawn(|| drain_socket(socket, &queue, stop, &done));
        let result = receive_loop(
            store,
            &mut asm,
            clock,
            sink,
            status,
            stop,
            &mut on_ended,
            link,
            poll_every,
            &inbox,
        );
        done.store(true, Ordering::Relaxed);
        drop(inbox);
        let drained = drain
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the socket-draining thread panicked")));
        result?;
        drained.map_err(io_err)
    })
}

/// Datagrams read off the socket and not yet decoded, at most: with the kernel's buffer, what
/// lets the receiver stall on its durable writes (an fsync, a sled flush, a sink's copy when a
/// transfer completes) without the socket dropping datagrams. 16,384 datagrams of at most a
/// 1,500-byte MTU are 24 MiB, half a second at 400 Mbit/s.
const RECEIVE_QUEUE: usize = 16_384;

/// Reads datagrams off `socket` into `queue` until `stop` or `done`, on its own thread, so the
/// socket is drained while the receiving loop writes to disk.
fn drain_socket(
    socket: &UdpSocket,
    queue: &std::sync::mpsc::SyncSender<Vec<u8>>,
    stop: &AtomicBool,
    done: &AtomicBool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) && !done.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                if queue
                    .send(buf.get(..n).unwrap_or_default().to_vec())
                    .is_err()
                {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[expect(clippy::too_many_arguments, reason = "the loop's state, passed once")]
fn receive_loop(
    store: &mut Store,
    asm: &mut Assembler,
    clock: &dyn Clock,
    sink: &mut dyn Sink,
    status: &ReceiveStatus,
    stop: &AtomicBool,
    on_ended: &mut impl FnMut(&LinkEnd),
    link: u32,
    poll_every: Duration,
    inbox: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<(), SpoolError> {
    let mut arrivals = Vec::new();
    let mut last_poll = clock.now();
    let mut synced = ReceiverStats::default();
    let mut first_epoch = true;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(datagram) = inbox.recv_timeout(poll_every) {
            if first_epoch {
                // later epochs come as restarts; the first is read off a datagram
                if let Ok(d) = Datagram::decode(&datagram)
                    && d.header().link == link
                {
                    first_epoch = false;
                    let epoch = d.header().epoch;
                    status.with(|s| s.epochs.push(epoch));
                }
            }
            asm.receive(&datagram, clock.now(), &mut arrivals);
        }
        let now = clock.now();
        if now.saturating_since(last_poll) >= poll_every {
            last_poll = now;
            asm.poll(now, &mut arrivals);
        }
        for a in arrivals.drain(..) {
            match &a {
                Arrival::Restarted { epoch, .. } => status.with(|d| {
                    if d.epochs.len() >= RECENT_IDS {
                        d.epochs.remove(0);
                    }
                    if d.epochs.last() != Some(epoch) {
                        d.epochs.push(*epoch);
                    }
                }),
                Arrival::Silent { since } => status.with(|d| d.silent_since = Some(*since)),
                _ => {}
            }
            let known = match &a {
                Arrival::Refused { transfer, .. } | Arrival::Lost { transfer, .. } => store
                    .staged_header(link, *transfer)
                    .map(|h| (*transfer, crate::transfer_id(h))),
                _ => None,
            };
            let why = match &a {
                Arrival::Refused { transfer, error } => Some((*transfer, error.to_string())),
                Arrival::Lost { transfer, reason } => Some((
                    *transfer,
                    match reason {
                        crate::LostReason::Incomplete => "incomplete",
                        crate::LostReason::Timeout => "timeout",
                        crate::LostReason::NeverSeen => "never-seen",
                    }
                    .to_owned(),
                )),
                _ => None,
            };
            for (id, how) in store.accept(link, a, sink)? {
                match how {
                    Ended::Delivered => {
                        status.received.inc();
                        status.with(|d| d.last_received = Some(id));
                    }
                    Ended::Lost => {
                        status.lost.inc();
                        status.with(|d| push_recent(&mut d.lost_ids, id));
                    }
                    Ended::Refused => {
                        status.refused.inc();
                        status.with(|d| push_recent(&mut d.refused_ids, id));
                    }
                }
                let reason = match (&why, how) {
                    (Some((t, r)), _) if *t == id => Some(r.clone()),
                    (_, Ended::Lost) => Some("never-seen".to_owned()),
                    _ => None,
                };
                let epoch = status.detail().epochs.last().copied();
                let transfer_id = known
                    .as_ref()
                    .filter(|(t, _)| *t == id)
                    .map(|(_, tid)| tid.clone());
                on_ended(&LinkEnd {
                    transfer: id,
                    how,
                    reason,
                    epoch,
                    transfer_id,
                });
            }
        }
        let stats = asm.receiver().stats();
        sync_stats(status, &mut synced, &stats, now);
    }
    Ok(())
}

fn sync_stats(status: &ReceiveStatus, old: &mut ReceiverStats, new: &ReceiverStats, now: UnixTime) {
    status.late.add(new.late.saturating_sub(old.late));
    status
        .repaired
        .add(new.repaired.saturating_sub(old.repaired));
    status
        .datagrams
        .add(new.received.saturating_sub(old.received));
    status
        .malformed
        .add(new.malformed.saturating_sub(old.malformed));
    if new.received != old.received {
        status.with(|d| d.silent_since = None);
    }
    if new.last_beat != old.last_beat
        && let Some(beat) = new.last_beat
    {
        status.with(|d| d.last_beat = Some((now, beat)));
    }
    *old = *new;
}
