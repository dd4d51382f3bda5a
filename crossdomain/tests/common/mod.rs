//! A lossy, reordering, duplicating, bit-flipping wire between a `Sender` and a `Receiver`, with
//! seeded randomness, and a checker that every transfer ends exactly once and intact.
#![expect(unreachable_pub, reason = "shared by the test files")]
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "tests fail loudly; the generator's values are cut to size on purpose"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use tianping_core::{ManualClock, UnixTime};
use tianping_crossdomain::{LinkEvent, LostReason, Receiver, Sender};

/// SplitMix64: a small seeded generator, so every run sees the same losses.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// What the wire does to datagrams.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wire {
    pub seed: u64,
    /// Datagrams dropped, per mille.
    pub loss: u64,
    /// A burst of this many consecutive datagrams dropped, starting at `burst_at`.
    pub burst: usize,
    pub burst_at: usize,
    /// Datagrams held back by up to this many places.
    pub reorder: usize,
    /// Datagrams sent twice, per mille.
    pub duplicate: u64,
    /// Datagrams with one bit flipped, per mille.
    pub flip: u64,
}

/// Runs every datagram of `sender` (a heartbeat after every `beat_every` datagrams, and a few at
/// the end) through the wire into `receiver`, moving `clock` a millisecond per datagram.
pub fn run(
    sender: &mut Sender,
    receiver: &mut Receiver,
    wire: Wire,
    beat_every: usize,
    clock: &ManualClock,
) -> Vec<LinkEvent> {
    let mut rng = Rng::new(wire.seed);
    let mut out = Vec::new();
    let mut sent = Vec::new();
    let mut n = 0usize;
    loop {
        if n % beat_every == beat_every - 1 {
            sender.heartbeat(&mut out).unwrap();
        } else if sender.next_datagram(&mut out).unwrap().is_none() {
            break;
        }
        sent.push(out.clone());
        n += 1;
    }
    // the wire
    let mut on_wire: Vec<Vec<u8>> = Vec::new();
    for (i, mut d) in sent.into_iter().enumerate() {
        if (wire.burst_at..wire.burst_at + wire.burst).contains(&i) || rng.chance(wire.loss) {
            continue;
        }
        if rng.chance(wire.flip) {
            let bit = rng.below(d.len() as u64 * 8) as usize;
            d[bit / 8] ^= 1 << (bit % 8);
        }
        if rng.chance(wire.duplicate) {
            on_wire.push(d.clone());
        }
        on_wire.push(d);
    }
    if wire.reorder > 0 {
        // each datagram moves later by less than `reorder` places
        let mut keyed: Vec<(usize, Vec<u8>)> = on_wire
            .into_iter()
            .enumerate()
            .map(|(i, d)| (i + rng.below(wire.reorder as u64) as usize, d))
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        on_wire = keyed.into_iter().map(|(_, d)| d).collect();
    }
    // the sender's last heartbeats, enough for any lost window the tests use
    for _ in 0..LAST_BEATS {
        sender.heartbeat(&mut out).unwrap();
        on_wire.push(out.clone());
    }
    let mut events = Vec::new();
    for d in &on_wire {
        clock.advance(Duration::from_millis(1));
        receiver.receive(d, tianping_core::Clock::now(clock), &mut events);
    }
    events
}

/// Heartbeats sent after the last symbol.
pub const LAST_BEATS: u64 = 300;

/// How each transfer ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub complete: BTreeMap<u64, Vec<u8>>,
    pub lost: BTreeMap<u64, LostReason>,
}

/// Checks the events: data in order and contiguous, each transfer ended exactly once, and
/// returns what completed (the bytes) and what was lost.
pub fn outcome(events: &[LinkEvent]) -> Outcome {
    let mut staged: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut o = Outcome::default();
    for e in events {
        match e {
            LinkEvent::Data {
                transfer,
                offset,
                bytes,
            } => {
                assert!(!o.complete.contains_key(transfer) && !o.lost.contains_key(transfer));
                let buf = staged.entry(*transfer).or_default();
                assert_eq!(*offset, buf.len() as u64, "data of {transfer} out of order");
                buf.extend_from_slice(bytes);
            }
            LinkEvent::Complete { transfer, length } => {
                let buf = staged.remove(transfer).unwrap_or_default();
                assert_eq!(buf.len() as u64, *length);
                assert!(
                    !o.lost.contains_key(transfer),
                    "{transfer} lost and complete"
                );
                assert!(
                    o.complete.insert(*transfer, buf).is_none(),
                    "{transfer} twice"
                );
            }
            LinkEvent::Lost { transfer, reason } => {
                staged.remove(transfer);
                assert!(
                    !o.complete.contains_key(transfer),
                    "{transfer} complete and lost"
                );
                assert!(
                    o.lost.insert(*transfer, *reason).is_none(),
                    "{transfer} lost twice"
                );
            }
            LinkEvent::LostRange { .. }
            | LinkEvent::Restarted { .. }
            | LinkEvent::Silent { .. } => {}
        }
    }
    o
}

pub fn start() -> ManualClock {
    ManualClock::new(UnixTime::from_secs(1_764_000_000))
}
