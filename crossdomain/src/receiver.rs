//! The receiving end of the link, without I/O: datagrams and the time in, events out.
//!
//! Symbols are fed to a RaptorQ decoder per block as they arrive, in any order; duplicates and
//! symbols of finished blocks or transfers are dropped. Decoded blocks are handed on in order as
//! [`LinkEvent::Data`]; a transfer ends exactly once, as [`LinkEvent::Complete`] when its last
//! block decoded, or as [`LinkEvent::Lost`] when it can no longer complete:
//!
//! - the sender's heartbeat says every symbol of it was sent, and `lost_window` more datagrams
//!   or `lost_grace` of time went by (so reordering has had its chance, and a sender gone
//!   quiet after its last transfer does not hold the loss back until the timeout);
//! - no symbol of it arrived for `timeout` on the [`Clock`](tianping_core::Clock);
//! - a heartbeat names it (ids are consecutive) but no symbol of it ever arrived.
//!
//! A consumer stages `Data` and hands a transfer on only at `Complete`; `Lost` means drop
//! the staged bytes. A new epoch in the datagrams is a sender restart: transfers in flight stay
//! open, since the restarted sender resends them and their symbols are the same; what they
//! handed on stays handed on, and their blocks not handed on yet start over. The block a
//! transfer waits for is never refused for want of open slots: it displaces the highest one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use raptorq::{EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder};
use tianping_core::UnixTime;

use crate::datagram::SYMBOL_ALIGN;
use crate::{Datagram, Heartbeat, SymbolHeader};

/// The most transfer ids a heartbeat may name as never seen before they are reported as one
/// range.
const MAX_UNSEEN: u64 = 4096;

/// The receiving end's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// The link's id; datagrams of other links are dropped.
    pub link: u32,
    /// The most transfers reassembled at once.
    pub max_transfers: usize,
    /// The most blocks of one transfer open (decoding, or decoded and waiting for an earlier
    /// block) at once. The sender sends a transfer's blocks one after another, so two are
    /// open at a time unless one cannot decode; memory is at most about `max_transfers` ×
    /// `max_open_blocks` × twice a block.
    pub max_open_blocks: usize,
    /// Datagrams to wait, after the sender says a transfer was fully sent, before it is lost.
    pub lost_window: u64,
    /// Time to wait, after the sender says a transfer was fully sent, before it is lost.
    pub lost_grace: Duration,
    /// A transfer with no symbol for this long is lost.
    pub timeout: Duration,
    /// No datagram for this long is reported as [`LinkEvent::Silent`].
    pub silence: Duration,
}

impl ReceiverConfig {
    /// Defaults for link `link`.
    pub fn new(link: u32) -> Self {
        Self {
            link,
            max_transfers: 32,
            max_open_blocks: 4,
            lost_window: 4096,
            lost_grace: Duration::from_secs(2),
            timeout: Duration::from_secs(60),
            silence: Duration::from_secs(5),
        }
    }
}

/// Why a transfer was reported lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// Every symbol was sent, and too few arrived.
    Incomplete,
    /// No symbol arrived for the timeout.
    Timeout,
    /// The sender named it, and no symbol of it ever arrived.
    NeverSeen,
}

/// What the receiving end reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The next bytes of a transfer, in order.
    Data {
        /// The transfer.
        transfer: u64,
        /// Where the bytes start in it.
        offset: u64,
        /// The bytes (one block).
        bytes: Vec<u8>,
    },
    /// Every byte of the transfer was handed on.
    Complete {
        /// The transfer.
        transfer: u64,
        /// Its length.
        length: u64,
    },
    /// The transfer can no longer complete.
    Lost {
        /// The transfer.
        transfer: u64,
        /// Why.
        reason: LostReason,
    },
    /// Every transfer from `from` up to (not including) `to`, none of which was ever seen, is
    /// lost: a heartbeat named more of them than the receiver tracks one by one.
    LostRange {
        /// The first id.
        from: u64,
        /// One past the last id.
        to: u64,
    },
    /// The sender started again with a new epoch.
    Restarted {
        /// The epoch before, if any was seen.
        previous: u64,
        /// The new epoch.
        epoch: u64,
    },
    /// Nothing arrived since `since`.
    Silent {
        /// When the last datagram arrived.
        since: UnixTime,
    },
}

/// The receiving end's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiverStats {
    /// Datagrams that decoded (symbols and heartbeats).
    pub received: u64,
    /// Datagrams dropped: bad check, bad format or another link.
    pub malformed: u64,
    /// Symbols dropped as duplicates or for finished blocks and transfers.
    pub late: u64,
    /// Symbols dropped because too many transfers or blocks were open.
    pub overflow: u64,
    /// Blocks rebuilt with repair symbols (some source symbol was missing).
    pub repaired: u64,
    /// Transfers completed.
    pub completed: u64,
    /// Transfers lost.
    pub lost: u64,
    /// Datagrams of this epoch never seen (sequence numbers skipped), as of the latest one.
    pub missing: u64,
    /// The sender's last heartbeat.
    pub last_beat: Option<Heartbeat>,
}

#[derive(Debug)]
struct Partial {
    /// `None` for a transfer a heartbeat named before any of its symbols arrived.
    geometry: Option<SymbolHeader>,
    next_emit: u32,
    /// Blocks decoding, with the symbols fed to each.
    open: BTreeMap<u32, (SourceBlockDecoder, u64)>,
    ready: BTreeMap<u32, Vec<u8>>,
    last_progress: UnixTime,
    /// The sender's datagram count, and the time, when a heartbeat said it had sent every
    /// symbol.
    sent_by: Option<(u64, UnixTime)>,
}

impl Partial {
    fn new(now: UnixTime) -> Self {
        Self {
            geometry: None,
            next_emit: 0,
            open: BTreeMap::new(),
            ready: BTreeMap::new(),
            last_progress: now,
            sent_by: None,
        }
    }
}

/// The receiving end of a link (I/O-free).
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    epoch: Option<u64>,
    /// Every id below this has ended (or predates this receiver).
    floor: Option<u64>,
    /// Whether the floor is only the first id seen (no store gave it, nothing ended yet).
    floor_guessed: bool,
    /// Ids at or above the floor that have ended.
    ended: BTreeSet<u64>,
    /// Ranges of ids reported as [`LinkEvent::LostRange`], above the floor.
    skipped: Vec<(u64, u64)>,
    transfers: BTreeMap<u64, Partial>,
    highest_seq: Option<u64>,
    seen_in_epoch: u64,
    last_heard: Option<UnixTime>,
    silent: bool,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver; `floor` is the first transfer id not yet ended (kept by the receiver's
    /// store), or `None` to start from what arrives first.
    pub fn new(config: ReceiverConfig, floor: Option<u64>) -> Self {
        Self {
            config,
            epoch: None,
            floor,
            floor_guessed: false,
            ended: BTreeSet::new(),
            skipped: Vec::new(),
            transfers: BTreeMap::new(),
            highest_seq: None,
            seen_in_epoch: 0,
            last_heard: None,
            silent: false,
            stats: ReceiverStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// The first transfer id not yet ended, for the receiver's store to keep.
    pub fn floor(&self) -> Option<u64> {
        self.floor
    }

    /// How many transfers are being reassembled.
    pub fn in_flight(&self) -> usize {
        self.transfers.len()
    }

    /// Takes one datagram that arrived at `now`.
    pub fn receive(&mut self, bytes: &[u8], now: UnixTime, events: &mut Vec<LinkEvent>) {
        let Ok(d) = Datagram::decode(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let header = *d.header();
        if header.link != self.config.link {
            self.stats.malformed += 1;
            return;
        }
        self.stats.received += 1;
        self.last_heard = Some(now);
        self.silent = false;
        let current = self.track_epoch(header.epoch, header.seq, events);
        match d {
            Datagram::Symbol { symbol, data, .. } => self.symbol(symbol, data, now, events),
            Datagram::Heartbeat { beat, .. } if current => self.beat(beat, now, events),
            Datagram::Heartbeat { .. } => {}
        }
    }

    /// Whether the datagram is of the current epoch (after noting a restart).
    fn track_epoch(&mut self, epoch: u64, seq: u64, events: &mut Vec<LinkEvent>) -> bool {
        match self.epoch {
            Some(e) if e == epoch => {}
            Some(e) if epoch < e => return false,
            previous => {
                if let Some(previous) = previous {
                    events.push(LinkEvent::Restarted { previous, epoch });
                }
                self.epoch = Some(epoch);
                self.highest_seq = None;
                self.seen_in_epoch = 0;
                // The restarted sender resends each transfer from its first block: what was
                // handed on stays handed on, the rest starts over, so blocks seen mid-way
                // before the restart cannot hold the open slots against the resent ones.
                for t in self.transfers.values_mut() {
                    t.sent_by = None;
                    t.open.clear();
                    t.ready.clear();
                }
            }
        }
        self.seen_in_epoch += 1;
        let highest = self.highest_seq.map_or(seq, |h| h.max(seq));
        self.highest_seq = Some(highest);
        self.stats.missing = (highest + 1).saturating_sub(self.seen_in_epoch);
        true
    }

    fn is_ended(&self, id: u64) -> bool {
        self.floor.is_some_and(|f| id < f)
            || self.ended.contains(&id)
            || self
                .skipped
                .iter()
                .any(|(from, to)| (*from..*to).contains(&id))
    }

    fn symbol(
        &mut self,
        symbol: SymbolHeader,
        data: &[u8],
        now: UnixTime,
        events: &mut Vec<LinkEvent>,
    ) {
        let id = symbol.transfer;
        match self.floor {
            None => {
                self.floor = Some(id);
                self.floor_guessed = true;
            }
            // Reordered symbols of earlier transfers, before anything ended.
            Some(f) if id < f && self.floor_guessed => self.floor = Some(id),
            Some(_) => {}
        }
        if self.is_ended(id) {
            self.stats.late += 1;
            return;
        }
        if !self.transfers.contains_key(&id) && self.transfers.len() >= self.config.max_transfers {
            self.stats.overflow += 1;
            return;
        }
        let max_open = self.config.max_open_blocks;
        let t = self
            .transfers
            .entry(id)
            .or_insert_with(|| Partial::new(now));
        let geometry = *t.geometry.get_or_insert(symbol);
        if !geometry.same_transfer(&symbol) {
            self.stats.malformed += 1;
            return;
        }
        let block = symbol.block;
        if block < t.next_emit || t.ready.contains_key(&block) {
            self.stats.late += 1;
            return;
        }
        if !t.open.contains_key(&block) && t.open.len() + t.ready.len() >= max_open {
            // The block the transfer waits for is never refused: it displaces the highest
            // open or waiting one (which is resent, or the transfer is lost), so the slots
            // stay bounded and a transfer can always move on.
            let highest = t.open.keys().last().max(t.ready.keys().last()).copied();
            match highest {
                Some(h) if block == t.next_emit && h > block => {
                    t.open.remove(&h);
                    t.ready.remove(&h);
                    self.stats.overflow += 1;
                }
                _ => {
                    self.stats.overflow += 1;
                    return;
                }
            }
        }
        let (decoder, fed) = t.open.entry(block).or_insert_with(|| {
            let size = u64::from(geometry.symbol_size);
            let padded = geometry.block_len(block).div_ceil(size) * size;
            let oti = ObjectTransmissionInformation::new(
                padded,
                geometry.symbol_size,
                1,
                1,
                SYMBOL_ALIGN,
            );
            (SourceBlockDecoder::new(0, &oti, padded), 0)
        });
        let source = geometry
            .block_len(block)
            .div_ceil(u64::from(geometry.symbol_size));
        // Far more symbols than any repair setting sends mean a block that will not decode
        // (forged or corrupted symbols); stop spending decode attempts and memory on it.
        if *fed >= 4 * source + 256 {
            self.stats.overflow += 1;
            return;
        }
        *fed += 1;
        t.last_progress = now;
        let packet = EncodingPacket::new(PayloadId::new(0, symbol.symbol), data.to_vec());
        let Some(mut bytes) = decoder.decode(std::iter::once(packet)) else {
            return;
        };
        t.open.remove(&block);
        if u64::from(symbol.symbol) >= source {
            self.stats.repaired += 1;
        }
        bytes.truncate(usize::try_from(geometry.block_len(block)).unwrap_or(usize::MAX));
        t.ready.insert(block, bytes);
        while let Some(bytes) = t.ready.remove(&t.next_emit) {
            let offset = u64::from(t.next_emit) * geometry.block_bytes();
            events.push(LinkEvent::Data {
                transfer: id,
                offset,
                bytes,
            });
            t.next_emit += 1;
        }
        if u64::from(t.next_emit) == geometry.blocks() {
            self.end(id);
            self.stats.completed += 1;
            events.push(LinkEvent::Complete {
                transfer: id,
                length: geometry.length,
            });
        }
    }

    fn beat(&mut self, beat: Heartbeat, now: UnixTime, events: &mut Vec<LinkEvent>) {
        self.stats.last_beat = Some(beat);
        self.floor_guessed = false;
        let floor = *self.floor.get_or_insert(beat.done_below);
        // Transfers the sender finished that never showed a symbol.
        let to = beat.done_below;
        if to > floor {
            if to - floor > MAX_UNSEEN && self.transfers.is_empty() && self.ended.is_empty() {
                events.push(LinkEvent::LostRange { from: floor, to });
                self.stats.lost += to - floor;
                self.skipped.push((floor, to));
                self.advance_floor();
            } else {
                // At most MAX_UNSEEN a beat; the next beats name the rest as these end.
                for id in floor..to.min(floor.saturating_add(MAX_UNSEEN)) {
                    if !self.is_ended(id) {
                        self.transfers
                            .entry(id)
                            .or_insert_with(|| Partial::new(now));
                    }
                }
            }
        }
        for (_, t) in self.transfers.range_mut(..beat.done_below) {
            t.sent_by.get_or_insert((beat.datagrams_sent, now));
        }
        self.expire(now, events);
    }

    /// Reports transfers that can no longer complete, and silence; call it on a timer.
    pub fn poll(&mut self, now: UnixTime, events: &mut Vec<LinkEvent>) {
        self.expire(now, events);
        if let Some(since) = self.last_heard
            && !self.silent
            && now.saturating_since(since) >= self.config.silence
        {
            self.silent = true;
            events.push(LinkEvent::Silent { since });
        }
    }

    fn expire(&mut self, now: UnixTime, events: &mut Vec<LinkEvent>) {
        let highest = self.highest_seq.unwrap_or(0);
        let window = self.config.lost_window;
        let (timeout, grace) = (self.config.timeout, self.config.lost_grace);
        let lost: Vec<(u64, LostReason)> = self
            .transfers
            .iter()
            .filter_map(|(id, t)| {
                let passed = t.sent_by.is_some_and(|(seq, at)| {
                    highest >= seq.saturating_add(window) || now.saturating_since(at) >= grace
                });
                let reason = if passed && t.geometry.is_none() {
                    LostReason::NeverSeen
                } else if passed {
                    LostReason::Incomplete
                } else if now.saturating_since(t.last_progress) >= timeout {
                    LostReason::Timeout
                } else {
                    return None;
                };
                Some((*id, reason))
            })
            .collect();
        for (transfer, reason) in lost {
            self.end(transfer);
            self.stats.lost += 1;
            events.push(LinkEvent::Lost { transfer, reason });
        }
    }

    fn end(&mut self, id: u64) {
        self.floor_guessed = false;
        self.transfers.remove(&id);
        self.ended.insert(id);
        self.advance_floor();
    }

    fn advance_floor(&mut self) {
        let Some(mut floor) = self.floor else {
            return;
        };
        loop {
            if self.ended.remove(&floor) {
                floor += 1;
            } else if let Some(i) = self.skipped.iter().position(|(from, _)| *from == floor) {
                floor = self.skipped.swap_remove(i).1;
            } else {
                break;
            }
        }
        self.floor = Some(floor);
    }
}
