//! Stored records: the values of the store's `batches` tree, each a run of consecutive entries.
//! I/O-free, so that one fuzz target covers every way a record is read.
//!
//! Three forms, told apart by the first byte:
//!
//! - packed (`0x03`, what the store writes): a `u32` count, count × 32-byte leaf hash, a `u32`
//!   body length, then the body as one LZ4 block. The body is, per entry, a `u32` length and the
//!   entry's canonical bytes. Leaf hashes stay outside the block, so opening a log reads them
//!   without decompressing anything.
//! - stored (`0x04`): a packed record whose body did not shrink by a sixteenth, kept as it is.
//! - plain (`0x01`, written by earlier versions, still read): a `u32` count, then per entry its
//!   32-byte leaf hash, a `u32` length and its canonical bytes.
//! - archived (`0x02`, see `AuditLog::archive`): a `u32` count, then count × 32-byte leaf hash.
//!
//! Events of one node repeat most of their fields (node, zone, component, policy hash, source,
//! court), so a 64 KiB body usually packs to a quarter of its size or less; every byte not
//! written is one `sled` does not copy, rewrite on compaction, and send to the disk.

use std::borrow::Cow;

use tianping_core::WireReader;

use crate::event::MAX_EVENT_BYTES;
use crate::merkle::Hash;

const PLAIN: u8 = 1;
const ARCHIVED: u8 = 2;
const PACKED: u8 = 3;
const STORED: u8 = 4;

/// The largest body a packed record may claim: what decompressing it may allocate.
const MAX_BODY: usize = 64 << 20;
const TRUNCATED: &str = "truncated record";

/// A stored record, opened: its leaf hashes, and its entries' bytes unless it is archived.
pub(crate) struct Opened<'a> {
    archived: bool,
    /// The leaf hashes, 32 bytes each (plain records interleave them with the entries).
    hashes: Cow<'a, [u8]>,
    /// Per entry, `u32` length then bytes; empty for an archived record.
    body: Cow<'a, [u8]>,
    count: usize,
}

impl Opened<'_> {
    /// Whether only the leaf hashes are left.
    pub(crate) fn is_archived(&self) -> bool {
        self.archived
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The leaf hashes in order.
    pub(crate) fn leaves(&self) -> impl Iterator<Item = Hash> + '_ {
        self.hashes.chunks_exact(32).map(|h| {
            let mut a = [0u8; 32];
            a.copy_from_slice(h);
            a
        })
    }

    /// Each entry's stored leaf hash and bytes (empty bytes when archived).
    pub(crate) fn entries(&self) -> Result<Vec<(Hash, &[u8])>, &'static str> {
        if self.archived {
            return Ok(self.leaves().map(|h| (h, &[][..])).collect());
        }
        let mut out = Vec::with_capacity(self.count);
        let mut r = WireReader::new(&self.body);
        for h in self.leaves() {
            out.push((h, r.bytes32("entry").map_err(|_| TRUNCATED)?));
        }
        r.finish()
            .map_err(|_| "bytes after the last entry of a record")?;
        Ok(out)
    }
}

/// The entry count in a record's header: where the next record starts, read before the rest.
#[cfg_attr(
    not(feature = "store"),
    expect(dead_code, reason = "used by the store")
)]
pub(crate) fn count(value: &[u8]) -> Option<u32> {
    WireReader::new(value.get(1..)?).u32("count").ok()
}

/// Reads a record's header and leaf hashes; with `bytes`, also its entries' bytes
/// (decompressing a packed body). Without `bytes`, [`Opened::entries`] of a packed or plain
/// record finds no bytes and fails.
pub(crate) fn open(value: &[u8], bytes: bool) -> Result<Opened<'_>, &'static str> {
    let mut r = WireReader::new(value);
    let version = r.u8("version").map_err(|_| "empty record")?;
    let count = r.len32("count", usize::MAX).map_err(|_| TRUNCATED)?;
    match version {
        ARCHIVED => {
            if Some(r.remaining()) != count.checked_mul(32) {
                return Err("archived record length does not match its count");
            }
            Ok(Opened {
                archived: true,
                hashes: Cow::Borrowed(r.rest()),
                body: Cow::Borrowed(&[]),
                count,
            })
        }
        PACKED | STORED => {
            let hashes_len = count.checked_mul(32).ok_or("record count too large")?;
            let hashes = r.take(hashes_len, "leaf hashes").map_err(|_| TRUNCATED)?;
            let body_len = r.len32("body", usize::MAX).map_err(|_| TRUNCATED)?;
            if body_len > MAX_BODY || body_len > count.saturating_mul(4 + MAX_EVENT_BYTES) {
                return Err("record body larger than its entries can be");
            }
            if body_len < count.saturating_mul(4) {
                return Err("record body shorter than its count");
            }
            let rest = r.rest();
            let body = if version == STORED {
                if rest.len() != body_len {
                    return Err("record body length does not match");
                }
                Cow::Borrowed(if bytes { rest } else { &[][..] })
            } else if bytes {
                let mut out = vec![0u8; body_len];
                match lz4_flex::block::decompress_into(rest, &mut out) {
                    Ok(n) if n == body_len => Cow::Owned(out),
                    Ok(_) => return Err("record body shorter than it says"),
                    Err(_) => return Err("record body does not decompress"),
                }
            } else {
                Cow::Borrowed(&[][..])
            };
            Ok(Opened {
                archived: false,
                hashes: Cow::Borrowed(hashes),
                body,
                count,
            })
        }
        PLAIN => {
            if count.saturating_mul(36) > r.remaining() {
                return Err("record count larger than the record");
            }
            let mut hashes = Vec::with_capacity(count * 32);
            let mut body = Vec::with_capacity(if bytes { r.remaining() } else { 0 });
            for _ in 0..count {
                hashes.extend_from_slice(r.take(32, "leaf hash").map_err(|_| TRUNCATED)?);
                let head = r.rest();
                let entry = r.bytes32("entry").map_err(|_| TRUNCATED)?;
                if bytes {
                    body.extend_from_slice(head.get(..4 + entry.len()).unwrap_or_default());
                }
            }
            r.finish()
                .map_err(|_| "bytes after the last entry of a record")?;
            Ok(Opened {
                archived: false,
                hashes: Cow::Owned(hashes),
                body: Cow::Owned(body),
                count,
            })
        }
        _ => Err("unknown record version"),
    }
}

/// The packed record of `entries` (canonical bytes, leaf hash), in order.
pub(crate) fn encode<B: AsRef<[u8]>>(entries: &[(B, Hash)]) -> Vec<u8> {
    let mut p = Packer::default();
    for (b, h) in entries {
        p.push(b.as_ref(), h);
    }
    p.finish().to_vec()
}

/// Builds packed records one after another, reusing its buffers.
#[derive(Default)]
pub(crate) struct Packer {
    hashes: Vec<u8>,
    body: Vec<u8>,
    out: Vec<u8>,
}

impl Packer {
    /// Adds an entry to the record being built.
    pub(crate) fn push(&mut self, bytes: &[u8], leaf: &Hash) {
        self.hashes.extend_from_slice(leaf);
        self.body.extend_from_slice(&be32(bytes.len()));
        self.body.extend_from_slice(bytes);
    }

    /// Entries added since the last [`finish`](Self::finish).
    pub(crate) fn len(&self) -> usize {
        self.hashes.len() / 32
    }

    /// Bytes of entries added since the last [`finish`](Self::finish), before packing.
    #[cfg_attr(
        not(feature = "store"),
        expect(dead_code, reason = "used by the store")
    )]
    pub(crate) fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Whether the body's first 4 KiB shrink by a sixteenth when packed: a large body that
    /// does not is stored as it is without spending the time to pack all of it.
    fn worth_packing(&mut self) -> bool {
        const SAMPLE: usize = 4096;
        let Some(sample) = self.body.get(..SAMPLE) else {
            return true;
        };
        if self.body.len() < 4 * SAMPLE {
            return true;
        }
        let mut scratch = vec![0u8; lz4_flex::block::get_maximum_output_size(SAMPLE)];
        lz4_flex::block::compress_into(sample, &mut scratch).is_ok_and(|n| n < SAMPLE - SAMPLE / 16)
    }

    /// The packed record of the entries added since the last call; starts the next one.
    pub(crate) fn finish(&mut self) -> &[u8] {
        let count = self.len();
        self.out.clear();
        self.out.push(PACKED);
        self.out.extend_from_slice(&be32(count));
        self.out.extend_from_slice(&self.hashes);
        self.out.extend_from_slice(&be32(self.body.len()));
        let head = self.out.len();
        let packed = if self.worth_packing() {
            self.pack_body(head)
        } else {
            false
        };
        if !packed {
            self.out.truncate(head);
            self.out.extend_from_slice(&self.body);
            if let Some(v) = self.out.first_mut() {
                *v = STORED;
            }
        }
        self.hashes.clear();
        self.body.clear();
        &self.out
    }

    /// Packs the body after the header's `head` bytes of `out`; `false` when that would not
    /// save a sixteenth (reading it back would cost decompression for no gain).
    fn pack_body(&mut self, head: usize) -> bool {
        self.out.resize(
            head + lz4_flex::block::get_maximum_output_size(self.body.len()),
            0,
        );
        let written = self
            .out
            .get_mut(head..)
            .and_then(|out| lz4_flex::block::compress_into(&self.body, out).ok());
        match written {
            Some(n) if n < self.body.len() - self.body.len() / 16 => {
                self.out.truncate(head + n);
                true
            }
            _ => false,
        }
    }
}

/// The plain record of `entries`: what earlier versions wrote.
#[cfg(test)]
pub(crate) fn encode_plain<B: AsRef<[u8]>>(entries: &[(B, Hash)]) -> Vec<u8> {
    let len: usize = entries.iter().map(|(b, _)| b.as_ref().len() + 36).sum();
    let mut v = Vec::with_capacity(5 + len);
    v.push(PLAIN);
    v.extend_from_slice(&be32(entries.len()));
    for (bytes, h) in entries {
        let bytes = bytes.as_ref();
        v.extend_from_slice(h);
        v.extend_from_slice(&be32(bytes.len()));
        v.extend_from_slice(bytes);
    }
    v
}

/// The archived record of `leaves`: their hashes only.
#[cfg_attr(
    not(feature = "store"),
    expect(dead_code, reason = "used by the store")
)]
pub(crate) fn encode_archived(leaves: &[Hash]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + 32 * leaves.len());
    v.push(ARCHIVED);
    v.extend_from_slice(&be32(leaves.len()));
    for h in leaves {
        v.extend_from_slice(h);
    }
    v
}

/// A length or count as the big-endian `u32` of the formats. Callers bound entries to
/// [`MAX_EVENT_BYTES`] and records to a few MiB, far below 4 GiB; a length that still did not
/// fit would be written as `u32::MAX`, which no record opens with, never cut short silently.
fn be32(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
#[expect(clippy::cast_possible_truncation, reason = "small test values")]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<(Vec<u8>, Hash)> {
        (0..n)
            .map(|i| {
                let bytes = format!("event {i} from node n1 in zone private").into_bytes();
                (bytes, [i as u8; 32])
            })
            .collect()
    }

    #[test]
    fn packed_and_plain_records_read_back_the_same() {
        let e = entries(300);
        for value in [encode(&e), encode_plain(&e)] {
            assert_eq!(count(&value), Some(300));
            let opened = open(&value, true).unwrap();
            assert!(!opened.is_archived());
            assert_eq!(opened.len(), 300);
            let got = opened.entries().unwrap();
            assert_eq!(got.len(), 300);
            for ((b, h), (gh, gb)) in e.iter().zip(got) {
                assert_eq!((h, b.as_slice()), (&gh, gb));
            }
            let leaves: Vec<Hash> = open(&value, false).unwrap().leaves().collect();
            assert_eq!(leaves, e.iter().map(|(_, h)| *h).collect::<Vec<_>>());
        }
        // The leaf hashes stay as they are; the repeated text of the entries packs.
        assert!(encode(&e).len() < encode_plain(&e).len() * 3 / 5);
    }

    #[test]
    fn bodies_that_do_not_pack_are_stored_as_they_are() {
        // Bytes without repeats: LZ4 cannot shrink them. 40 entries are packed and found not
        // to shrink; 100 (over 16 KiB) are judged by a sample and not packed at all.
        for n in [40u8, 100] {
            stored_as_they_are(n);
        }
    }

    fn stored_as_they_are(n: u8) {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let e: Vec<(Vec<u8>, Hash)> = (0..n)
            .map(|i| {
                let bytes = (0..200)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                (bytes, [i; 32])
            })
            .collect();
        let value = encode(&e);
        assert_eq!(value[0], STORED);
        let opened = open(&value, true).unwrap();
        let got = opened.entries().unwrap();
        assert!(
            e.iter()
                .zip(&got)
                .all(|((b, h), (gh, gb))| h == gh && b == gb)
        );
        let mut cut = value.clone();
        cut.pop();
        assert!(open(&cut, true).is_err());
    }

    #[test]
    fn archived_records_have_hashes_only() {
        let leaves = [[1u8; 32], [2u8; 32]];
        let value = encode_archived(&leaves);
        let opened = open(&value, true).unwrap();
        assert!(opened.is_archived());
        assert_eq!(opened.leaves().collect::<Vec<_>>(), leaves);
        assert!(opened.entries().unwrap().iter().all(|(_, b)| b.is_empty()));
    }

    #[test]
    fn damaged_records_are_refused() {
        let value = encode(&entries(50));
        // Every truncation and a flipped byte in each part of the record.
        for cut in 0..value.len() {
            let r = open(&value[..cut], true).and_then(|o| o.entries().map(|_| ()));
            assert!(r.is_err(), "a record cut at {cut} was accepted");
        }
        let mut body_flip = value.clone();
        let last = body_flip.len() - 3;
        body_flip[last] ^= 0xff;
        let r = open(&body_flip, true).and_then(|o| o.entries().map(|e| e.len()));
        // A flipped literal may still decompress: then it changes an entry's bytes, which the
        // leaf hash check finds; otherwise the record is refused here.
        if let Ok(n) = r {
            assert_eq!(n, 50);
        }
        let mut huge = value.clone();
        let at = 5 + 32 * 50;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(open(&huge, true).is_err());
        let mut version = value;
        version[0] = 9;
        assert_eq!(open(&version, true).err(), Some("unknown record version"));
    }
}
