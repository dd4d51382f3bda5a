//! The link's datagrams: one RaptorQ symbol, or a heartbeat with the sender's counters.
//!
//! ```text
//! datagram = "TL" version(1) kind(1) u32 link  u64 epoch  u64 sequence
//!            body
//!            [8] check: the first 8 bytes of SHA-256 over everything before it
//! symbol   = u64 transfer  u64 transfer length  u32 block  u32 symbol id
//!            u16 symbol size  u16 source symbols per block  [symbol size] symbol
//! beat     = u64 transfers started  u64 transfers finished  u64 last transfer
//!            u64 done below  u64 datagrams sent
//! ```
//!
//! Every symbol repeats the transfer's geometry (length, symbol size, symbols per block), so the
//! receiver needs no other message to start reassembling, and a transfer whose first datagrams
//! were lost is still recovered. The check is a plain hash, not a key: the link is a wire inside
//! the court's exchange and the bundle is signed; the check only keeps flipped bits away from the
//! decoder, which would otherwise turn one bad symbol into a wrong block.

use ring::digest::{SHA256, digest};
use tianping_core::{WireError, WireReader, WireWriter};

const MAGIC: &[u8; 2] = b"TL";
const VERSION: u8 = 1;
const KIND_SYMBOL: u8 = 1;
const KIND_BEAT: u8 = 2;
const CHECK: usize = 8;
/// Bytes of the common header.
const HEADER: usize = 2 + 1 + 1 + 4 + 8 + 8;
/// Bytes of a symbol's header.
const SYMBOL_HEADER: usize = 8 + 8 + 4 + 4 + 2 + 2;
/// IPv4 (20) and UDP (8) headers, taken off the link's MTU.
const IP_UDP: usize = 28;
/// Symbols are a multiple of this many bytes (RaptorQ's symbol alignment).
pub const SYMBOL_ALIGN: u8 = 8;
/// The most source symbols in one block.
pub const MAX_BLOCK_SYMBOLS: u16 = 8192;
/// The longest transfer, in bytes (1 TiB).
pub const MAX_TRANSFER: u64 = 1 << 40;
/// The smallest MTU a link may have.
pub const MIN_MTU: u16 = 576;
/// Encoding symbol ids are 24 bits (RFC 6330).
const MAX_SYMBOL_ID: u32 = 1 << 24;

/// Why a datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// The bytes are not a well-formed encoding.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The check does not match: bits were flipped on the way.
    #[error("the datagram's check does not match")]
    Check,
    /// Not a datagram of this format or version.
    #[error("not a link datagram of version 1")]
    Format,
    /// A value outside the format's rules.
    #[error("{0}")]
    Invalid(&'static str),
}

/// What every datagram starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramHeader {
    /// The link, as both ends are configured.
    pub link: u32,
    /// The sender's epoch: new each time the sender starts.
    pub epoch: u64,
    /// The sender's count of datagrams sent before this one in this epoch.
    pub seq: u64,
}

/// Where a symbol belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolHeader {
    /// The transfer's id, from the sender's spool (ids only grow).
    pub transfer: u64,
    /// The transfer's length in bytes.
    pub length: u64,
    /// The block this symbol belongs to.
    pub block: u32,
    /// The RaptorQ encoding symbol id within the block (source symbols first, then repair).
    pub symbol: u32,
    /// The symbol's size in bytes.
    pub symbol_size: u16,
    /// The source symbols in every block but the last.
    pub block_symbols: u16,
}

impl SymbolHeader {
    /// The bytes of every block but the last.
    pub fn block_bytes(&self) -> u64 {
        u64::from(self.symbol_size) * u64::from(self.block_symbols)
    }

    /// How many blocks the transfer has.
    pub fn blocks(&self) -> u64 {
        self.length.div_ceil(self.block_bytes().max(1))
    }

    /// The length of block `block` in bytes.
    pub fn block_len(&self, block: u32) -> u64 {
        let start = u64::from(block).saturating_mul(self.block_bytes());
        self.length.saturating_sub(start).min(self.block_bytes())
    }

    /// Whether two symbols describe the same transfer geometry.
    pub fn same_transfer(&self, other: &SymbolHeader) -> bool {
        (
            self.transfer,
            self.length,
            self.symbol_size,
            self.block_symbols,
        ) == (
            other.transfer,
            other.length,
            other.symbol_size,
            other.block_symbols,
        )
    }
}

/// The sender's counters, sent on a timer so the receiver sees gaps, restarts and silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// Transfers the sender started sending in this epoch.
    pub transfers_started: u64,
    /// Transfers whose every symbol was sent in this epoch.
    pub transfers_finished: u64,
    /// The highest transfer id the sender has been given (0 for none).
    pub last_transfer: u64,
    /// Every transfer with a lower id than this has had its every symbol sent.
    pub done_below: u64,
    /// Datagrams sent in this epoch before this one.
    pub datagrams_sent: u64,
}

/// One datagram, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// A RaptorQ symbol.
    Symbol {
        /// The common header.
        header: DatagramHeader,
        /// Where the symbol belongs.
        symbol: SymbolHeader,
        /// The symbol's bytes.
        data: &'a [u8],
    },
    /// A heartbeat.
    Heartbeat {
        /// The common header.
        header: DatagramHeader,
        /// The sender's counters.
        beat: Heartbeat,
    },
}

/// The largest symbol that fits a datagram on a link of `mtu` bytes (IPv4 and UDP headers
/// taken off), a multiple of [`SYMBOL_ALIGN`]; `None` below [`MIN_MTU`].
pub fn symbol_size_for(mtu: u16) -> Option<u16> {
    if mtu < MIN_MTU {
        return None;
    }
    let room = usize::from(mtu) - IP_UDP - HEADER - SYMBOL_HEADER - CHECK;
    let room = u16::try_from(room).ok()?;
    Some(room - room % u16::from(SYMBOL_ALIGN))
}

impl<'a> Datagram<'a> {
    /// The common header.
    pub fn header(&self) -> &DatagramHeader {
        match self {
            Datagram::Symbol { header, .. } | Datagram::Heartbeat { header, .. } => header,
        }
    }

    /// Appends the encoding to `out` (cleared first, so a buffer can be reused).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), DatagramError> {
        out.clear();
        let mut w = WireWriter::from_vec(std::mem::take(out));
        w.raw(MAGIC);
        w.u8(VERSION);
        let h = self.header();
        match self {
            Datagram::Symbol { symbol, data, .. } => {
                check_symbol(symbol, data.len())?;
                w.u8(KIND_SYMBOL);
                common(&mut w, h);
                w.u64(symbol.transfer);
                w.u64(symbol.length);
                w.u32(symbol.block);
                w.u32(symbol.symbol);
                w.u16(symbol.symbol_size);
                w.u16(symbol.block_symbols);
                w.raw(data);
            }
            Datagram::Heartbeat { beat, .. } => {
                w.u8(KIND_BEAT);
                common(&mut w, h);
                for v in [
                    beat.transfers_started,
                    beat.transfers_finished,
                    beat.last_transfer,
                    beat.done_below,
                    beat.datagrams_sent,
                ] {
                    w.u64(v);
                }
            }
        }
        let check = check_of(w.as_bytes());
        w.raw(&check);
        *out = w.into_bytes();
        Ok(())
    }

    /// Reads a datagram: the check first, then every field, refusing anything
    /// [`encode_into`](Self::encode_into) would not write.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DatagramError> {
        let split = bytes
            .len()
            .checked_sub(CHECK)
            .ok_or(WireError::Truncated("check"))?;
        let (body, check) = bytes.split_at(split);
        if check_of(body) != check {
            return Err(DatagramError::Check);
        }
        let mut r = WireReader::new(body);
        if r.array::<2>("magic")? != *MAGIC || r.u8("version")? != VERSION {
            return Err(DatagramError::Format);
        }
        let kind = r.u8("kind")?;
        let header = DatagramHeader {
            link: r.u32("link")?,
            epoch: r.u64("epoch")?,
            seq: r.u64("sequence")?,
        };
        let d = match kind {
            KIND_SYMBOL => {
                let symbol = SymbolHeader {
                    transfer: r.u64("transfer")?,
                    length: r.u64("transfer length")?,
                    block: r.u32("block")?,
                    symbol: r.u32("symbol id")?,
                    symbol_size: r.u16("symbol size")?,
                    block_symbols: r.u16("block symbols")?,
                };
                let data = r.take(usize::from(symbol.symbol_size), "symbol")?;
                check_symbol(&symbol, data.len())?;
                Datagram::Symbol {
                    header,
                    symbol,
                    data,
                }
            }
            KIND_BEAT => Datagram::Heartbeat {
                header,
                beat: Heartbeat {
                    transfers_started: r.u64("transfers started")?,
                    transfers_finished: r.u64("transfers finished")?,
                    last_transfer: r.u64("last transfer")?,
                    done_below: r.u64("done below")?,
                    datagrams_sent: r.u64("datagrams sent")?,
                },
            },
            _ => return Err(DatagramError::Format),
        };
        r.finish()?;
        Ok(d)
    }
}

fn common(w: &mut WireWriter, h: &DatagramHeader) {
    w.u32(h.link);
    w.u64(h.epoch);
    w.u64(h.seq);
}

fn check_of(body: &[u8]) -> [u8; CHECK] {
    let d = digest(&SHA256, body);
    let mut out = [0u8; CHECK];
    out.copy_from_slice(d.as_ref().get(..CHECK).unwrap_or_default());
    out
}

fn check_symbol(s: &SymbolHeader, data_len: usize) -> Result<(), DatagramError> {
    if s.symbol_size == 0 || s.symbol_size % u16::from(SYMBOL_ALIGN) != 0 {
        return Err(DatagramError::Invalid(
            "the symbol size is not a positive multiple of 8",
        ));
    }
    if data_len != usize::from(s.symbol_size) {
        return Err(DatagramError::Invalid(
            "the symbol is not as long as its header says",
        ));
    }
    if s.block_symbols == 0 || s.block_symbols > MAX_BLOCK_SYMBOLS {
        return Err(DatagramError::Invalid(
            "the symbols per block are not between 1 and 8192",
        ));
    }
    if s.length == 0 || s.length > MAX_TRANSFER {
        return Err(DatagramError::Invalid(
            "the transfer length is not between 1 byte and 1 TiB",
        ));
    }
    if u64::from(s.block) >= s.blocks() {
        return Err(DatagramError::Invalid(
            "the block is past the transfer's end",
        ));
    }
    if s.symbol >= MAX_SYMBOL_ID {
        return Err(DatagramError::Invalid("the symbol id is over 24 bits"));
    }
    Ok(())
}
