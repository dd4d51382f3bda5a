//! The sending end of the link, without I/O: transfers in, datagrams out, one at a time.
//!
//! Each transfer is cut into blocks of `block_symbols` symbols; a block is RaptorQ-encoded
//! (RFC 6330) when its turn comes, and its source symbols go first, then `repair_percent` more
//! repair symbols. Active transfers take turns a datagram at a time, so a small transfer
//! submitted after a large one finishes long before it. Memory holds one encoded block per active
//! transfer, whatever the transfers' sizes. The caller paces (see [`Pacer`](crate::Pacer)) and
//! sends; the sender never waits for, or reads, anything from the far side.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use raptorq::{EncodingPacket, ObjectTransmissionInformation, SourceBlockEncoder};

use crate::datagram::{MAX_BLOCK_SYMBOLS, MAX_TRANSFER, SYMBOL_ALIGN, symbol_size_for};
use crate::{Datagram, DatagramError, DatagramHeader, Heartbeat, SymbolHeader};

/// Why the link refused a setting or a transfer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A setting outside what the link supports.
    #[error("bad link setting: {0}")]
    Config(&'static str),
    /// A transfer the sender cannot take.
    #[error("transfer `{id}` refused: {reason}")]
    Transfer {
        /// The transfer's id.
        id: u64,
        /// Why.
        reason: &'static str,
    },
    /// Reading a transfer's bytes failed.
    #[error("reading transfer `{id}` failed: {source}")]
    Read {
        /// The transfer's id.
        id: u64,
        /// The error.
        source: std::io::Error,
    },
    /// A datagram could not be written.
    #[error(transparent)]
    Datagram(#[from] DatagramError),
}

/// The settings both ends of a link share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// The link's id, in every datagram.
    pub link: u32,
    /// The link's MTU; a symbol fills a datagram of this size.
    pub mtu: u16,
    /// Repair symbols per block, in percent of its source symbols.
    pub repair_percent: u16,
    /// Source symbols per block (1 to 8192).
    pub block_symbols: u16,
    /// The most transfers sent at once (the others wait their turn).
    pub max_active: usize,
}

impl LinkConfig {
    /// Defaults for link `link` on an Ethernet MTU: 5 % repair, blocks of 512 symbols (about
    /// 700 KiB), 16 transfers at once.
    pub fn new(link: u32) -> Self {
        Self {
            link,
            mtu: 1500,
            repair_percent: 5,
            block_symbols: 512,
            max_active: 16,
        }
    }

    /// The symbol size, checking every setting.
    pub fn symbol_size(&self) -> Result<u16, LinkError> {
        if self.block_symbols == 0 || self.block_symbols > MAX_BLOCK_SYMBOLS {
            return Err(LinkError::Config("blocks hold 1 to 8192 symbols"));
        }
        if self.repair_percent > 1000 {
            return Err(LinkError::Config("repair is at most 1000 %"));
        }
        if self.max_active == 0 {
            return Err(LinkError::Config("at least one transfer must be active"));
        }
        symbol_size_for(self.mtu).ok_or(LinkError::Config("the MTU is under 576 bytes"))
    }

    /// Repair symbols for a block of `source` symbols.
    pub fn repair_symbols(&self, source: u16) -> u32 {
        (u32::from(source) * u32::from(self.repair_percent)).div_ceil(100)
    }
}

/// Where the sender reads a transfer's bytes: memory, or a spooled file.
pub trait TransferSource: Send + fmt::Debug {
    /// The transfer's length in bytes.
    fn len(&self) -> u64;
    /// Whether the transfer is empty (the link refuses empty transfers).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` with the bytes from `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl TransferSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| std::io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// What [`Sender::next_datagram`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The transfer the symbol belongs to.
    pub transfer: u64,
    /// Whether it was the transfer's last datagram.
    pub finished: bool,
}

#[derive(Debug)]
struct Active {
    id: u64,
    source: Box<dyn TransferSource>,
    geometry: SymbolHeader,
    /// The next block to encode.
    next_block: u32,
    /// The current block's symbols not sent yet.
    queue: VecDeque<EncodingPacket>,
    block: u32,
}

/// The sending end of a link (I/O-free).
#[derive(Debug)]
pub struct Sender {
    config: LinkConfig,
    symbol_size: u16,
    epoch: u64,
    seq: u64,
    active: VecDeque<Active>,
    waiting: VecDeque<Active>,
    unfinished: BTreeSet<u64>,
    counters: Heartbeat,
    block_buf: Vec<u8>,
}

impl Sender {
    /// A sender for `config` in epoch `epoch` (a value the sender has never used before, such as
    /// a start counter kept in its spool).
    pub fn new(config: LinkConfig, epoch: u64) -> Result<Self, LinkError> {
        let symbol_size = config.symbol_size()?;
        Ok(Self {
            config,
            symbol_size,
            epoch,
            seq: 0,
            active: VecDeque::new(),
            waiting: VecDeque::new(),
            unfinished: BTreeSet::new(),
            counters: Heartbeat::default(),
            block_buf: Vec::new(),
        })
    }

    /// The link's settings.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Queues transfer `id`; ids must grow from one transfer to the next, and the spool gives
    /// consecutive ids, so the receiver can name a transfer it never saw a symbol of.
    pub fn submit(&mut self, id: u64, source: Box<dyn TransferSource>) -> Result<(), LinkError> {
        let refuse = |reason| Err(LinkError::Transfer { id, reason });
        if id == 0 || (self.counters.last_transfer != 0 && id <= self.counters.last_transfer) {
            return refuse("transfer ids start at 1 and grow");
        }
        let length = source.len();
        if length == 0 || length > MAX_TRANSFER {
            return refuse("a transfer is 1 byte to 1 TiB");
        }
        let geometry = SymbolHeader {
            transfer: id,
            length,
            block: 0,
            symbol: 0,
            symbol_size: self.symbol_size,
            block_symbols: self.config.block_symbols,
        };
        if geometry.blocks() > u64::from(u32::MAX) {
            return refuse("too many blocks");
        }
        if self.counters.last_transfer == 0 {
            // The first transfer of this epoch: the ones below it are done as far as we know.
            self.counters.done_below = id;
        }
        self.counters.last_transfer = id;
        self.unfinished.insert(id);
        self.waiting.push_back(Active {
            id,
            source,
            geometry,
            next_block: 0,
            queue: VecDeque::new(),
            block: 0,
        });
        Ok(())
    }

    /// Tells the sender that every id up to `last` was given out by its spool (the spool's
    /// counter for the link), so its heartbeats name them: a transfer fully sent before a
    /// restart, while the receiver was down, is then reported lost at once rather than only
    /// when something new is submitted. Call it after submitting the spooled transfers; it
    /// changes nothing if `last` is not above the last id submitted, and the next id
    /// submitted must be above `last`.
    pub fn resume_after(&mut self, last: u64) {
        if last <= self.counters.last_transfer {
            return;
        }
        self.counters.last_transfer = last;
        self.counters.done_below = self.unfinished.first().copied().unwrap_or(last + 1);
    }

    /// Whether nothing is left to send.
    pub fn is_idle(&self) -> bool {
        self.active.is_empty() && self.waiting.is_empty()
    }

    /// The counters a heartbeat would carry now.
    pub fn counters(&self) -> Heartbeat {
        Heartbeat {
            datagrams_sent: self.seq,
            ..self.counters
        }
    }

    fn header(&mut self) -> DatagramHeader {
        let h = DatagramHeader {
            link: self.config.link,
            epoch: self.epoch,
            seq: self.seq,
        };
        self.seq += 1;
        h
    }

    /// Writes a heartbeat into `out`.
    pub fn heartbeat(&mut self, out: &mut Vec<u8>) -> Result<(), LinkError> {
        let beat = self.counters();
        let header = self.header();
        Datagram::Heartbeat { header, beat }.encode_into(out)?;
        Ok(())
    }

    /// Writes the next symbol's datagram into `out`, the transfers taking turns; `None` when
    /// there is nothing to send.
    pub fn next_datagram(&mut self, out: &mut Vec<u8>) -> Result<Option<Sent>, LinkError> {
        while self.active.len() < self.config.max_active {
            let Some(t) = self.waiting.pop_front() else {
                break;
            };
            self.counters.transfers_started += 1;
            self.active.push_back(t);
        }
        let Some(mut t) = self.active.pop_front() else {
            return Ok(None);
        };
        if t.queue.is_empty() {
            self.encode_block(&mut t)?;
        }
        let Some(packet) = t.queue.pop_front() else {
            return Ok(None);
        };
        let header = self.header();
        let symbol = SymbolHeader {
            block: t.block,
            symbol: packet.payload_id().encoding_symbol_id(),
            ..t.geometry
        };
        Datagram::Symbol {
            header,
            symbol,
            data: packet.data(),
        }
        .encode_into(out)?;
        let finished = t.queue.is_empty() && u64::from(t.next_block) == t.geometry.blocks();
        if finished {
            self.finish(t.id);
        } else {
            self.active.push_back(t);
        }
        Ok(Some(Sent {
            transfer: symbol.transfer,
            finished,
        }))
    }

    fn finish(&mut self, id: u64) {
        self.counters.transfers_finished += 1;
        self.unfinished.remove(&id);
        self.counters.done_below = self
            .unfinished
            .first()
            .copied()
            .unwrap_or(self.counters.last_transfer + 1);
    }

    fn encode_block(&mut self, t: &mut Active) -> Result<(), LinkError> {
        let block = t.next_block;
        let len = t.geometry.block_len(block);
        let offset = u64::from(block) * t.geometry.block_bytes();
        let size = u64::from(self.symbol_size);
        let padded = len.div_ceil(size) * size;
        // A block is at most 8192 symbols of at most 64 KiB.
        let (len, padded) = (
            usize::try_from(len).unwrap_or(usize::MAX),
            usize::try_from(padded).unwrap_or(usize::MAX),
        );
        self.block_buf.clear();
        self.block_buf.resize(padded, 0);
        let buf = self.block_buf.get_mut(..len).unwrap_or_default();
        t.source
            .read_at(offset, buf)
            .map_err(|source| LinkError::Read { id: t.id, source })?;
        let oti =
            ObjectTransmissionInformation::new(padded as u64, self.symbol_size, 1, 1, SYMBOL_ALIGN);
        let encoder = SourceBlockEncoder::new(0, &oti, &self.block_buf);
        let source = u16::try_from(padded / usize::from(self.symbol_size)).unwrap_or(u16::MAX);
        t.queue.extend(encoder.source_packets());
        t.queue
            .extend(encoder.repair_packets(0, self.config.repair_symbols(source)));
        t.block = block;
        t.next_block += 1;
        Ok(())
    }
}
