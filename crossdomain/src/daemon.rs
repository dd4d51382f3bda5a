//! The loops the exchange daemons run (feature `daemon`): the spool over a [`UdpSender`], and
//! a [`UdpReceiver`] into the store; and the daemons' own loops, [`run_sender`] and
//! [`run_receiver`], which keep a [`SendStatus`] / [`ReceiveStatus`] (their counters on the
//! admin listener's `/metrics`, their state on the control socket's status), stop when told,
//! retain what they sent, and follow a receiver that moves.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver as Inbox;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tianping_core::{Clock, UnixTime};
use tianping_net::{Counter, Gauge, MetricsError, Registry};

use crate::{
    Arrival, Assembler, Datagram, Ended, Heartbeat, LinkConfig, LinkError, Pacer, Receiver,
    ReceiverConfig, ReceiverStats, SendStats, Sender, SignerTrust, Sink, Spool, SpoolError, Store,
    Submission, UdpReceiver, UdpSender,
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

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
    on_ended: &mut impl FnMut(u64, Ended),
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
                on_ended(id, how);
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
