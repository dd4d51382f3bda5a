//! One-way links between zones and the settings of their datagrams: pacing rate, repair
//! overhead, MTU and RaptorQ block size (RFC 6330), each checked against limits whose reasons are
//! written beside them.

use std::net::SocketAddr;
use std::time::Duration;

use miette::SourceSpan;

use crate::ZoneName;

/// Repair symbols sent per block, as a percentage of its source symbols (default 5 %): enough
/// to ride out the scattered drops of a loaded receiver on a diode, which cannot ask again.
pub const DEFAULT_REPAIR_PERCENT: u8 = 5;
/// At most 100 % (each block sent twice over): a link losing more than that is broken, and more
/// repair only adds load to a receiver already dropping datagrams.
pub const MAX_REPAIR_PERCENT: u8 = 100;

/// The default MTU, Ethernet's 1500 bytes.
pub const DEFAULT_MTU: u16 = 1500;
/// The least MTU: 576 bytes, the datagram size every IPv4 host must accept (RFC 791). It also
/// leaves room for the IP and UDP headers, the link's datagram header and a symbol of at least
/// [`MIN_SYMBOL_SIZE`] bytes.
pub const MIN_MTU: u16 = 576;
/// The largest MTU: an IP datagram's length field is 16 bits.
pub const MAX_MTU: u16 = 65535;
/// IP and UDP headers, counted for the larger family (IPv6 40 bytes, UDP 8), so a link's
/// datagrams fit whichever family its address is.
pub const IP_UDP_HEADER: u16 = 48;
/// Room kept in every datagram for the link's own header (transfer, block and symbol ids,
/// authentication tag), so the symbol size follows from the MTU alone.
pub const DATAGRAM_HEADER: u16 = 64;
/// RaptorQ symbols are a multiple of the alignment (RFC 6330 §4.3, `Al`, 8 in the `raptorq`
/// crate).
pub const SYMBOL_ALIGNMENT: u16 = 8;
/// The least symbol: below this the headers outweigh the data.
pub const MIN_SYMBOL_SIZE: u16 = 256;

const _: () = assert!(MIN_MTU >= IP_UDP_HEADER + DATAGRAM_HEADER + MIN_SYMBOL_SIZE);

/// Source symbols of a block by default (1,024, about 1.4 MB at the default MTU): decoding cost
/// grows with a block's symbols, and a lost block costs a whole block's resend, so blocks stay
/// moderate.
pub const DEFAULT_BLOCK_SYMBOLS: u32 = 1024;
/// The least block: 16 symbols; below that a repair percentage rounds to whole symbols so
/// coarsely that the overhead sent is not the one configured.
pub const MIN_BLOCK_SYMBOLS: u32 = 16;
/// The most source symbols in a block that RFC 6330 allows (`K'max`, §5.1.2).
pub const MAX_BLOCK_SYMBOLS: u32 = 56_403;
/// The largest block: 64 MiB, since the receiver holds each block in memory until it decodes, and
/// must bound what a sender can make it hold.
pub const MAX_BLOCK_SIZE: u32 = 64 * 1024 * 1024;

/// The sender's pacing rate bounds, in megabits per second.
pub const RATE_MBPS: std::ops::RangeInclusive<u32> = 1..=100_000;

/// Ids a `[[links]]` table may give itself with `id = N`: 1 to 2³¹ − 1. Ids derived from the
/// zone names ([`derived_link_id`]) have the top bit set, so the two never meet.
pub const EXPLICIT_LINK_IDS: std::ops::RangeInclusive<u32> = 1..=0x7fff_ffff;

/// The id of the link from `from` to `to` when its table gives none: the FNV-1a hash of
/// `from>to` with the top bit set. It names the link, not its place in `fabric.toml`, so
/// reordering the links changes no id, and both ends compute it from the same names.
pub fn derived_link_id(from: &ZoneName, to: &ZoneName) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in from
        .as_str()
        .bytes()
        .chain(*b">")
        .chain(to.as_str().bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    0x8000_0000 | h
}

/// How long the sender keeps a sent transfer's bytes by default (24 hours), so that a receiver
/// started late, or one that lost transfers, can be served again (`tianping exchange resend`)
/// within a working day and a night.
pub const DEFAULT_RETAIN: Duration = Duration::from_secs(24 * 3600);
/// The longest retention, 30 days: retained bytes fill the sender's disk.
pub const MAX_RETAIN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Reads a retention: a whole number with a unit `s`, `m`, `h` or `d` (`"36h"`), or `"0"` for
/// none; `None` for anything else or over [`MAX_RETAIN`].
pub fn parse_retain(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let digits = text.get(..text.len() - 1)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    let d = Duration::from_secs(secs);
    (d <= MAX_RETAIN).then_some(d)
}

/// One one-way link, carrying every flow from one zone to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The link's id in every datagram, the same at both ends: `id = N` in its table, else
    /// [`derived_link_id`] of its zones. Never its position in `fabric.toml`.
    pub id: u32,
    /// The sending zone.
    pub from: ZoneName,
    /// The receiving zone.
    pub to: ZoneName,
    /// The UDP address the receiver listens on (port 0: chosen at start and published, see
    /// [`crate::publish_addr`]).
    pub address: SocketAddr,
    /// The sender's pacing rate, in megabits per second.
    pub rate_mbps: u32,
    /// Repair symbols per block, as a percentage of its source symbols.
    pub repair_percent: u8,
    /// The largest IP datagram sent.
    pub mtu: u16,
    /// Bytes of a transfer per RaptorQ source block.
    pub block_size: u32,
    /// How long the sender keeps a sent transfer's bytes for a resend (`retain`).
    pub retain: Duration,
    pub(crate) span: SourceSpan,
}

impl Link {
    /// The RaptorQ symbol size the MTU leaves: the MTU less the IP, UDP and datagram headers,
    /// rounded down to the alignment.
    pub fn symbol_size(&self) -> u16 {
        symbol_size(self.mtu)
    }

    /// Source symbols in a full block.
    pub fn block_symbols(&self) -> u32 {
        self.block_size.div_ceil(u32::from(self.symbol_size()))
    }

    /// Repair symbols sent for a block of `source` symbols (rounded up, so any repair set above 0
    /// sends at least one).
    pub fn repair_symbols(&self, source: u32) -> u32 {
        let r = u64::from(source) * u64::from(self.repair_percent);
        u32::try_from(r.div_ceil(100)).unwrap_or(u32::MAX)
    }

    /// The `[[links]]` table this link was read from, for diagnostics about it (see
    /// [`crate::Fabric::problem_at`]).
    pub fn span(&self) -> SourceSpan {
        self.span
    }
}

/// The symbol size an MTU leaves.
pub fn symbol_size(mtu: u16) -> u16 {
    let room = mtu.saturating_sub(IP_UDP_HEADER + DATAGRAM_HEADER);
    room - room % SYMBOL_ALIGNMENT
}

/// The default block size at an MTU: [`DEFAULT_BLOCK_SYMBOLS`] symbols.
pub fn default_block_size(mtu: u16) -> u32 {
    DEFAULT_BLOCK_SYMBOLS * u32::from(symbol_size(mtu))
}

/// The block sizes allowed at an MTU.
pub fn block_size_range(mtu: u16) -> std::ops::RangeInclusive<u32> {
    let t = u32::from(symbol_size(mtu));
    MIN_BLOCK_SYMBOLS * t..=(MAX_BLOCK_SYMBOLS * t).min(MAX_BLOCK_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_from_the_mtu() {
        assert_eq!(symbol_size(1500), 1384);
        assert_eq!(symbol_size(MIN_MTU), 464);
        assert_eq!(symbol_size(MIN_MTU) % SYMBOL_ALIGNMENT, 0);
        assert!(symbol_size(MIN_MTU) >= MIN_SYMBOL_SIZE);
        assert_eq!(default_block_size(1500), 1024 * 1384);
        let r = block_size_range(MAX_MTU);
        assert_eq!(*r.end(), MAX_BLOCK_SIZE);
        assert!(block_size_range(1500).contains(&default_block_size(1500)));
        let link = Link {
            id: 1,
            retain: DEFAULT_RETAIN,
            from: "internet".parse().unwrap(),
            to: "private".parse().unwrap(),
            address: "127.0.0.1:0".parse().unwrap(),
            rate_mbps: 200,
            repair_percent: 5,
            mtu: 1500,
            block_size: default_block_size(1500),
            span: SourceSpan::from(0..0),
        };
        assert_eq!(link.block_symbols(), 1024);
        assert_eq!(link.repair_symbols(1024), 52);
        assert_eq!(link.repair_symbols(1), 1);
    }

    #[test]
    fn derived_ids_name_the_zones_and_stay_out_of_explicit_ones() {
        let (a, b): (ZoneName, ZoneName) =
            ("internet".parse().unwrap(), "private".parse().unwrap());
        let (ab, ba) = (derived_link_id(&a, &b), derived_link_id(&b, &a));
        assert_ne!(ab, ba);
        assert_eq!(ab, derived_link_id(&a, &b));
        assert!(!EXPLICIT_LINK_IDS.contains(&ab) && !EXPLICIT_LINK_IDS.contains(&ba));
    }

    #[test]
    fn retention_reads_units_and_refuses_the_rest() {
        assert_eq!(parse_retain("36h"), Some(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_retain("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_retain("0"), Some(Duration::ZERO));
        assert_eq!(parse_retain("30d"), Some(MAX_RETAIN));
        for bad in ["31d", "", "h", "1.5h", "-1h", "10", "1w", "+1h"] {
            assert_eq!(parse_retain(bad), None, "{bad}");
        }
    }
}
