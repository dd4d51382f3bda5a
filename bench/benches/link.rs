//! The one-way link over loopback beside raw UDP on the same sockets, in one run:
//!
//! 1. raw UDP: one thread blasts datagrams of the link's size with `send_to` as fast as it can, the
//!    other counts what arrives with `recv_from`; the received rate is the ceiling;
//! 2. the link (`tianping-crossdomain`'s `UdpSender` / `UdpReceiver` with an `Assembler`, so every
//!    transfer is a signed bundle whose signature and chunk hashes the receiver checks): the
//!    highest paced rate at which every transfer of a batch arrives complete, found by bisection
//!    with a short batch, then confirmed with the full batch (ten 1 GiB transfers in a row at MTU
//!    1500 with 5 % repair), stepping down until it holds;
//! 3. raw UDP again, so a change in the machine's load shows;
//! 4. end-to-end latency of a 64 KiB transfer (submit to the sender, complete on the receiver,
//!    one at a time), p50 / p99, at the rate the bench proposes for `fabric.toml`.
//!
//! Payloads are generated as the sender reads them (a [`TransferSource`] over a counter hash), so
//! memory stays small whatever the batch; their chunk tables are hashed once, before any timing.
//!
//! `cd bench && cargo bench --bench link` (settings by environment: `TP_LINK_TRANSFERS` 10,
//! `TP_LINK_MIB` 1024, `TP_LINK_SEARCH_TRANSFERS` 2, `TP_LINK_STEPS` 5, `TP_LINK_LOW` 400 and
//! `TP_LINK_HIGH` (the raw ceiling) Mbit/s bound the search, `TP_LINK_RATE` skips it,
//! `TP_LINK_RAW_SECS` 3, `TP_LINK_LATENCY` 1000 transfers, `TP_LINK_RCVBUF_MIB` 64,
//! `TP_LINK_BURST_MS` the pacer's burst in place of the link's own 2 ms).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark fails loudly on a broken set-up; its sizes fit"
)]

use std::net::UdpSocket;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use tianping_core::{Algorithm, Clock, PolicyHash, RingSigner, Signer, SystemClock, UnixTime};
use tianping_crossdomain::{
    Arrival, Assembler, BundleHeader, ChunkHasher, LinkConfig, Manifest, Pacer, PinnedKeys,
    Receiver, ReceiverConfig, Sender, Submission, Submitter, TransferSource, UdpReceiver,
    UdpSender, bind_udp,
};

/// The bundle's chunks: 1 MiB, so a 1 GiB payload has a 32 KiB chunk table.
const CHUNK: u32 = 1 << 20;
const MIB: u64 = 1 << 20;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Payload bytes from `offset`: byte `i` is byte `i % 8` of a hash of `i / 8` and the seed.
fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut rest = buf;
    // up to the next multiple of 8, byte by byte
    while !pos.is_multiple_of(8) {
        let Some((first, tail)) = rest.split_first_mut() else {
            return;
        };
        *first = splitmix((pos / 8) ^ seed).to_le_bytes()[(pos % 8) as usize];
        pos += 1;
        rest = tail;
    }
    let mut words = rest.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&splitmix((pos / 8) ^ seed).to_le_bytes());
        pos += 8;
    }
    let word = splitmix((pos / 8) ^ seed).to_le_bytes();
    for (b, v) in words.into_remainder().iter_mut().zip(word) {
        *b = v;
    }
}

/// A bundle whose payload is generated as it is read: the encoded header, then `size` bytes.
#[derive(Debug, Clone)]
struct Generated {
    header: Arc<Vec<u8>>,
    size: u64,
    seed: u64,
}

impl Generated {
    /// Hashes the payload once (in 1 MiB pieces) and signs its header.
    fn new(size: u64, seed: u64, signer: &dyn Signer) -> Self {
        let mut h = ChunkHasher::new(CHUNK).unwrap();
        let mut buf = vec![0u8; CHUNK as usize];
        let mut at = 0;
        while at < size {
            let n = (size - at).min(u64::from(CHUNK)) as usize;
            let piece = &mut buf[..n];
            fill(seed, at, piece);
            h.update(piece);
            at += n as u64;
        }
        let (size, table) = h.finish();
        let manifest = Manifest {
            flow: "evidence".into(),
            source: "private".parse().unwrap(),
            destination: "classified".parse().unwrap(),
            kind: "file".into(),
            content_type: "application/octet-stream".into(),
            schema: None,
            size,
            chunk_size: CHUNK,
            chunks_hash: [0; 32],
            submitter: Submitter {
                subject: "clerk-0007".parse().unwrap(),
                roles: vec![],
                machine: false,
            },
            labels: vec![],
            redacted: false,
            correlation: None,
            time: UnixTime::from_secs(1_764_000_000),
            sequence: seed,
            policy_hash: PolicyHash::of(b"bench"),
        };
        let header = BundleHeader::sign(manifest, vec![], table, b"der".to_vec(), signer)
            .unwrap()
            .encode()
            .unwrap();
        Self {
            header: Arc::new(header),
            size,
            seed,
        }
    }
}

impl TransferSource for Generated {
    fn len(&self) -> u64 {
        self.header.len() as u64 + self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset + buf.len() as u64;
        if end > self.len() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let head = self.header.len() as u64;
        let in_header = head.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (a, b) = buf.split_at_mut(in_header);
        if let Some(src) = self
            .header
            .get(offset as usize..offset as usize + in_header)
        {
            a.copy_from_slice(src);
        }
        fill(self.seed, offset.saturating_sub(head), b);
        Ok(())
    }
}

/// The receive socket with a large buffer: `SO_RCVBUFFORCE` where the process may (root),
/// since `SO_RCVBUF` is clamped to `net.core.rmem_max`; the size the kernel gave.
fn receive_socket(mib: usize) -> (UdpSocket, usize) {
    let socket = bind_udp("127.0.0.1:0".parse().unwrap(), mib << 20, 0).unwrap();
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, mib << 20);
    let got = rustix::net::sockopt::socket_recv_buffer_size(&socket).unwrap_or(0);
    (socket, got)
}

/// Reads whatever is queued on the socket, so a run starts from an empty queue.
fn drain(socket: &UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    socket.set_nonblocking(true).unwrap();
    while socket.recv_from(&mut buf).is_ok() {}
    socket.set_nonblocking(false).unwrap();
}

#[derive(Debug, Clone, Copy)]
struct RawRun {
    sent: u64,
    received: u64,
    bits_per_sec: f64,
}

/// Raw UDP: `datagram`-byte datagrams sent as fast as `send_to` goes for `secs`; the rate the
/// receiver counted, from its first datagram to its last.
fn raw_udp(rx: &UdpSocket, tx: &UdpSocket, datagram: usize, secs: f64) -> RawRun {
    drain(rx);
    let addr = rx.local_addr().unwrap();
    let rx = rx.try_clone().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let counting = std::thread::spawn(move || {
        rx.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        let (mut n, mut first, mut last) = (0u64, None, Instant::now());
        loop {
            match rx.recv_from(&mut buf) {
                Ok(_) => {
                    last = Instant::now();
                    first.get_or_insert(last);
                    n += 1;
                }
                Err(_) if stop.load(Ordering::Acquire) => break,
                Err(_) => {}
            }
        }
        (n, first.map_or(Duration::ZERO, |f| last - f))
    });
    let payload = vec![0x5au8; datagram];
    let t = Instant::now();
    let mut sent = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            if tx.send_to(&payload, addr).is_ok() {
                sent += 1;
            }
        }
    }
    done.store(true, Ordering::Release);
    let (received, took) = counting.join().unwrap();
    RawRun {
        sent,
        received,
        bits_per_sec: (received * datagram as u64 * 8) as f64 / took.as_secs_f64().max(1e-9),
    }
}

#[derive(Debug, Clone, Copy)]
struct LinkRun {
    complete: usize,
    lost: usize,
    /// Datagrams and bytes the sender handed to the kernel, and the time it took.
    datagrams: u64,
    wire_bytes: u64,
    send_secs: f64,
    /// Payload bytes delivered, checked, from the first arrival to the last completion.
    payload_bytes: u64,
    receive_secs: f64,
    missing: u64,
    repaired: u64,
}

impl LinkRun {
    fn wire_bps(&self) -> f64 {
        (self.wire_bytes * 8) as f64 / self.send_secs.max(1e-9)
    }

    fn goodput_bps(&self) -> f64 {
        (self.payload_bytes * 8) as f64 / self.receive_secs.max(1e-9)
    }
}

/// The settings both ends use: MTU 1500, 5 % repair, blocks of `fabric.toml`'s default 1,024
/// symbols (about 1.4 MB), as `tianping exchange` derives them.
fn link_config(id: u32) -> LinkConfig {
    LinkConfig {
        mtu: 1500,
        repair_percent: 5,
        block_symbols: 1024,
        ..LinkConfig::new(id)
    }
}

/// The link's pacer at `mbps` (`Pacer::for_link`, a burst of 2 ms of the rate), or, with
/// `TP_LINK_BURST_MS`, one holding that many milliseconds of the rate.
fn pacer(mbps: u32) -> Pacer {
    match burst_ms() {
        Some(ms) => {
            let rate = u64::from(mbps) * 125_000;
            Pacer::new(rate, rate * ms / 1000, SystemClock.now())
        }
        None => Pacer::for_link(mbps, SystemClock.now()),
    }
}

fn burst_ms() -> Option<u64> {
    std::env::var("TP_LINK_BURST_MS").ok()?.parse().ok()
}

/// `bundles` sent in a row over link `id` paced at `mbps`; the receiver stops when each has
/// ended (complete, lost or refused) or the link went silent.
fn link_run(
    rx: &UdpSocket,
    tx: &UdpSocket,
    id: u32,
    mbps: u32,
    bundles: &[Generated],
    key: &tianping_core::PublicKey,
) -> LinkRun {
    drain(rx);
    let addr = rx.local_addr().unwrap();
    let rx = rx.try_clone().unwrap();
    let trust = Arc::new(PinnedKeys(vec![key.clone()]));
    let count = bundles.len();
    let receiving = std::thread::spawn(move || {
        let config = ReceiverConfig {
            max_transfers: 32,
            ..ReceiverConfig::new(id)
        };
        let mut asm = Assembler::new(Receiver::new(config, Some(1)), trust);
        let mut udp = UdpReceiver::new(rx, Duration::from_millis(50)).unwrap();
        let (mut complete, mut lost, mut bytes) = (0usize, 0usize, 0u64);
        let (mut first, mut last) = (None, Instant::now());
        udp.run(&mut asm, &SystemClock, |a| {
            first.get_or_insert_with(Instant::now);
            match a {
                Arrival::Chunk { bytes: b, .. } => bytes += b.len() as u64,
                Arrival::Complete { .. } => {
                    complete += 1;
                    last = Instant::now();
                }
                Arrival::Lost { .. } | Arrival::Refused { .. } => lost += 1,
                Arrival::LostRange { from, to } => lost += (to - from) as usize,
                Arrival::Silent { .. } => return ControlFlow::Break(()),
                _ => {}
            }
            if complete + lost >= count {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        let took = first.map_or(Duration::ZERO, |f: Instant| {
            last.saturating_duration_since(f)
        });
        (complete, lost, bytes, took, asm.receiver().stats())
    });
    let (inbox_tx, inbox) = mpsc::channel::<Submission>();
    for (i, b) in bundles.iter().enumerate() {
        inbox_tx.send((i as u64 + 1, Box::new(b.clone()))).unwrap();
    }
    drop(inbox_tx);
    let mut udp = UdpSender::new(tx.try_clone().unwrap(), addr, Duration::from_millis(10));
    let mut sender = Sender::new(link_config(id), 1).unwrap();
    let mut pacer = pacer(mbps);
    let t = Instant::now();
    let sent = udp
        .run(&mut sender, &mut pacer, &SystemClock, &inbox)
        .unwrap();
    let send_secs = t.elapsed().as_secs_f64();
    let (complete, lost, payload_bytes, took, stats) = receiving.join().unwrap();
    LinkRun {
        complete,
        lost,
        datagrams: sent.datagrams,
        wire_bytes: sent.bytes,
        send_secs,
        payload_bytes,
        receive_secs: took.as_secs_f64(),
        missing: stats.missing,
        repaired: stats.repaired,
    }
}

fn gbit(bps: f64) -> String {
    format!("{:.2} Gbit/s", bps / 1e9)
}

fn show(what: &str, mbps: u32, r: &LinkRun) {
    println!(
        "  {what} at {mbps} Mbit/s: {}/{} complete, {} lost; sent {} datagrams at {} on the wire \
         in {:.1} s; goodput {}; datagrams missing {}, blocks repaired {}",
        r.complete,
        r.complete + r.lost,
        r.lost,
        r.datagrams,
        gbit(r.wire_bps()),
        r.send_secs,
        gbit(r.goodput_bps()),
        r.missing,
        r.repaired,
    );
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Latency of one `size`-byte transfer at a time over link `id` at `mbps`: submit to complete.
fn latency(
    rx: &UdpSocket,
    tx: &UdpSocket,
    id: u32,
    mbps: u32,
    n: usize,
    signer: &dyn Signer,
) -> (Vec<Duration>, usize) {
    drain(rx);
    let addr = rx.local_addr().unwrap();
    let rx = rx.try_clone().unwrap();
    let trust = Arc::new(PinnedKeys(vec![signer.public_key()]));
    let (done_tx, done_rx) = mpsc::channel::<(u64, bool)>();
    let receiving = std::thread::spawn(move || {
        let mut asm = Assembler::new(Receiver::new(ReceiverConfig::new(id), Some(1)), trust);
        let mut udp = UdpReceiver::new(rx, Duration::from_millis(20)).unwrap();
        let mut ended = 0;
        udp.run(&mut asm, &SystemClock, |a| {
            let outcome = match a {
                Arrival::Complete { transfer, .. } => Some((transfer, true)),
                Arrival::Lost { transfer, .. } | Arrival::Refused { transfer, .. } => {
                    Some((transfer, false))
                }
                _ => None,
            };
            if let Some(o) = outcome {
                ended += 1;
                let _ = done_tx.send(o);
            }
            if ended >= n {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    });
    let (inbox_tx, inbox) = mpsc::channel::<Submission>();
    let tx = tx.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let mut udp = UdpSender::new(tx, addr, Duration::from_millis(10));
        let mut sender = Sender::new(link_config(id), 1).unwrap();
        let mut pacer = pacer(mbps);
        udp.run(&mut sender, &mut pacer, &SystemClock, &inbox)
            .unwrap()
    });
    let small = Generated::new(64 * 1024, 7, signer);
    let mut times = Vec::with_capacity(n);
    let mut lost = 0;
    for i in 0..n {
        let source = Box::new(small.clone());
        let t = Instant::now();
        inbox_tx.send((i as u64 + 1, source)).unwrap();
        match done_rx.recv_timeout(Duration::from_secs(30)) {
            Ok((_, true)) => times.push(t.elapsed()),
            Ok((_, false)) => lost += 1,
            Err(_) => panic!("transfer {} neither completed nor was lost", i + 1),
        }
    }
    drop(inbox_tx);
    sending.join().unwrap();
    receiving.join().unwrap();
    times.sort();
    (times, lost)
}

/// The CPU cost of the link's I/O-free ends, without sockets: microseconds a datagram for the
/// sender to write every datagram of a 64 MiB bundle, and for an `Assembler` to take them all.
fn core_costs(signer: &dyn Signer) -> (f64, f64) {
    let bundle = Generated::new(64 * MIB, 99, signer);
    let mut sender = Sender::new(link_config(1), 1).unwrap();
    sender.submit(1, Box::new(bundle)).unwrap();
    let mut out = Vec::new();
    let mut all = Vec::new();
    let t = Instant::now();
    while sender.next_datagram(&mut out).unwrap().is_some() {
        all.push(out.clone());
    }
    let send = t.elapsed().as_secs_f64();
    let trust = Arc::new(PinnedKeys(vec![signer.public_key()]));
    let mut asm = Assembler::new(Receiver::new(ReceiverConfig::new(1), Some(1)), trust);
    let mut arrivals = Vec::new();
    let mut complete = false;
    let t = Instant::now();
    for d in &all {
        asm.receive(d, UnixTime::from_secs(1), &mut arrivals);
        complete |= arrivals
            .iter()
            .any(|a| matches!(a, Arrival::Complete { .. }));
        arrivals.clear();
    }
    let receive = t.elapsed().as_secs_f64();
    assert!(complete, "the I/O-free run completed");
    let n = all.len() as f64;
    (send * 1e6 / n, receive * 1e6 / n)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line
    let transfers: usize = env("TP_LINK_TRANSFERS", 10);
    let mib: u64 = env("TP_LINK_MIB", 1024);
    let search_transfers: usize = env("TP_LINK_SEARCH_TRANSFERS", 2);
    let steps: u32 = env("TP_LINK_STEPS", 5);
    let raw_secs: f64 = env("TP_LINK_RAW_SECS", 3.0);
    let latency_n: usize = env("TP_LINK_LATENCY", 1000);
    let rcvbuf_mib: usize = env("TP_LINK_RCVBUF_MIB", 64);

    let (signer, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
    let (rx, rcvbuf) = receive_socket(rcvbuf_mib);
    let tx = bind_udp("127.0.0.1:0".parse().unwrap(), 0, 4 << 20).unwrap();
    // the link's datagram size: one symbol's datagram at MTU 1500
    let datagram = {
        let mut s = Sender::new(link_config(1), 1).unwrap();
        s.submit(1, Box::new(vec![0u8; 4096])).unwrap();
        let mut out = Vec::new();
        s.next_datagram(&mut out).unwrap();
        out.len()
    };
    println!(
        "link bench: {transfers} × {mib} MiB, MTU 1500 ({datagram}-byte datagrams), 5 % repair, \
         blocks of 1024 symbols; receive buffer {} MiB; pacer burst {}; load {}",
        rcvbuf >> 20,
        burst_ms().map_or("2 ms (Pacer::for_link)".into(), |ms| format!("{ms} ms")),
        load()
    );

    // how long a 1 ms sleep takes here: the pacer waits by sleeping, so this bounds its accuracy
    let mut naps: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            t.elapsed()
        })
        .collect();
    naps.sort();
    println!(
        "sleep(1 ms) takes p50 {:.2} ms, p99 {:.2} ms",
        percentile(&naps, 0.5).as_secs_f64() * 1e3,
        percentile(&naps, 0.99).as_secs_f64() * 1e3
    );

    let (send_us, receive_us) = core_costs(&signer);
    println!(
        "I/O-free core on one thread, 64 MiB bundle: sender {send_us:.2} µs a datagram (RaptorQ \
         encoding, check, generated payload), receiver {receive_us:.2} µs (check, decoding, \
         chunk hashes, signature)"
    );

    let raw_before = raw_udp(&rx, &tx, datagram, raw_secs);
    println!(
        "raw UDP: {} received ({} of {} datagrams)",
        gbit(raw_before.bits_per_sec),
        raw_before.received,
        raw_before.sent
    );

    println!("hashing and signing {transfers} payloads of {mib} MiB");
    let bundles: Vec<Generated> = (0..transfers as u64)
        .map(|seed| Generated::new(mib * MIB, seed + 1, &signer))
        .collect();
    let key = signer.public_key();
    let mut link_id = 1u32;
    let mut next_id = || {
        link_id += 1;
        link_id
    };

    let passes = |r: &LinkRun, n: usize| r.complete == n && r.lost == 0;
    let mut rate = match std::env::var("TP_LINK_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(r) => r,
        None => {
            let few = &bundles[..search_transfers.min(bundles.len())];
            let mut lo: u32 = env("TP_LINK_LOW", 400);
            let mut hi: u32 = env("TP_LINK_HIGH", (raw_before.bits_per_sec / 1e6) as u32);
            println!(
                "search: {} × {mib} MiB per rate, bisecting {lo}..{hi} Mbit/s in {steps} steps",
                few.len()
            );
            let r = link_run(&rx, &tx, next_id(), lo, few, &key);
            show("search", lo, &r);
            if !passes(&r, few.len()) {
                println!("the lowest rate lost transfers: nothing found");
                return;
            }
            for _ in 0..steps {
                let mid = lo + (hi - lo) / 2;
                let r = link_run(&rx, &tx, next_id(), mid, few, &key);
                show("search", mid, &r);
                if passes(&r, few.len()) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo
        }
    };

    // the full batch at the rate found, 5 % lower each time it loses something
    let mut confirmed = None;
    for _ in 0..4 {
        let r = link_run(&rx, &tx, next_id(), rate, &bundles, &key);
        show("confirm", rate, &r);
        if passes(&r, bundles.len()) {
            confirmed = Some(r);
            break;
        }
        rate = rate * 95 / 100;
    }
    let raw_after = raw_udp(&rx, &tx, datagram, raw_secs);
    println!(
        "raw UDP again: {} received ({} of {} datagrams)",
        gbit(raw_after.bits_per_sec),
        raw_after.received,
        raw_after.sent
    );
    let raw = raw_before.bits_per_sec.max(raw_after.bits_per_sec);
    let Some(run) = confirmed else {
        println!("no rate held for the full batch");
        return;
    };
    // the rate the link reached: the pacer's, or the sender's own limit if that is lower
    let reached = run.wire_bps().min(f64::from(rate) * 1e6);
    println!(
        "RESULT: {transfers} × {mib} MiB arrived complete, paced at {rate} Mbit/s: {} on the wire \
         = {:.2}× raw UDP ({}), goodput {} = {:.2}×",
        gbit(reached),
        reached / raw,
        gbit(raw),
        gbit(run.goodput_bps()),
        run.goodput_bps() / raw,
    );

    // fabric.toml's default: half the rate the link reached, to the nearest 50 Mbit/s, since the
    // default fabric's links share the host's cores and buffers with the rest of the node
    let reached_mbps = (reached / 1e6) as u32;
    let proposed = ((reached_mbps / 2 + 25) / 50 * 50).max(50);
    println!(
        "fabric.toml default proposed: rate-mbps = {proposed} (half of the {reached_mbps} Mbit/s \
         reached, to the nearest 50)"
    );
    let (times, lost) = latency(&rx, &tx, next_id(), proposed, latency_n, &signer);
    println!(
        "latency of a 64 KiB transfer at {proposed} Mbit/s, {} transfers one at a time: p50 \
         {:.2} ms, p99 {:.2} ms, max {:.2} ms, {lost} lost; load {}",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        load()
    );
}
