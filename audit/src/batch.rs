//! `audit-batch`: a run of entries shipped to a mirror, with the signed checkpoint that covers
//! them and a consistency proof from the size the mirror had.
//!
//! Binary layout, version 1 (big-endian integers):
//!
//! ```text
//! "TPAUDITB" 0x01
//! u16 len, signer's public key text (`es256:...` / `ed25519:...`)
//! u64 old size (the first entry's index)
//! u16 count, count × 32-byte consistency proof hashes (old size -> checkpoint size)
//! u32 len, checkpoint note (UTF-8)
//! u32 count, count × (u32 len, canonical event bytes)
//! ```

use std::io::Read;

use tianping_core::{PublicKey, WireError, WireReader, WireWriter};

use crate::checkpoint::{CheckpointError, MAX_NOTE_BYTES, SignedCheckpoint};
use crate::event::{Event, EventError, MAX_EVENT_BYTES};
use crate::merkle::{Frontier, Hash, ProofError, leaf_hash, verify_consistency};

const MAGIC: &[u8; 8] = b"TPAUDITB";
const VERSION: u8 = 1;
/// The most consistency-proof hashes a batch may carry (a proof has at most 2 per tree level).
const MAX_PROOF: usize = 128;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The bytes are not a batch (with what is wrong).
    #[error("malformed audit batch: {0}")]
    Malformed(&'static str),
    /// An entry is not a canonical event.
    #[error("entry `{index}` of the batch: {source}")]
    Entry {
        /// The entry's log index.
        index: u64,
        /// What is wrong with it.
        source: EventError,
    },
    /// The checkpoint is malformed or not signed by the trusted key.
    #[error("batch checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The batch starts past where the mirror ends.
    #[error("batch starts at entry `{found}` but the mirror has `{expected}` entries")]
    Gap {
        /// The mirror's size.
        expected: u64,
        /// The batch's first index.
        found: u64,
    },
    /// An entry the mirror already holds differs from the batch's entry at the same index.
    #[error("entry `{0}` of the batch differs from the one the mirror holds")]
    Differs(u64),
    /// The entries do not hash to the checkpoint's root.
    #[error("entries do not match the checkpoint root at size `{0}`")]
    RootMismatch(u64),
    /// The consistency proof does not show the checkpoint extends the mirror.
    #[error("checkpoint does not extend the mirror: {0}")]
    NotExtending(ProofError),
    /// A field is truncated, too long or not UTF-8.
    #[error("malformed audit batch: {0}")]
    Wire(#[from] WireError),
    /// The batch could not be read from its source.
    #[error("reading the audit batch: {0}")]
    Read(String),
}

/// What comes before a batch's entries: enough to check its checkpoint before any entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHead {
    /// The key that signed the checkpoint (a hint: mirrors check it against the key they trust).
    pub signer: PublicKey,
    /// The index of the first entry (the size the receiving mirror must have).
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The checkpoint note covering the entries.
    pub note: String,
}

impl BatchHead {
    /// Writes the head and the entry count that follows it.
    pub fn encode(&self, count: usize) -> Result<Vec<u8>, BatchError> {
        let mut w = WireWriter::with_capacity(128 + self.note.len() + 32 * self.proof.len());
        w.raw(MAGIC);
        w.u8(VERSION);
        w.bytes16(self.signer.to_string().as_bytes(), "signer key")?;
        w.u64(self.old_size);
        if self.proof.len() > MAX_PROOF {
            return Err(WireError::TooLong {
                field: "proof",
                len: self.proof.len(),
                max: MAX_PROOF,
            }
            .into());
        }
        w.len16(self.proof.len(), "proof")?;
        for h in &self.proof {
            w.raw(h);
        }
        w.bytes32(self.note.as_bytes(), "note")?;
        w.len32(count, "entries")?;
        Ok(w.into_bytes())
    }

    /// The entry count the checkpoint implies (its size less `old_size`).
    fn count(&self) -> Result<u64, BatchError> {
        let cp = SignedCheckpoint::parse_unverified(&self.note)?;
        cp.size
            .checked_sub(self.old_size)
            .ok_or(BatchError::Malformed(
                "the checkpoint is older than the first entry",
            ))
    }
}

/// Reads a batch from a stream, one entry at a time, so memory stays bounded whatever the
/// batch's size: the head first, then each entry checked to be a canonical event, then the end.
#[derive(Debug)]
pub struct BatchReader<R> {
    input: R,
    head: BatchHead,
    left: u64,
    next: u64,
}

impl<R: Read> BatchReader<R> {
    /// Reads and checks the head (structure, key, note syntax, entry count against the
    /// checkpoint's size); signatures are checked by whoever applies the batch.
    pub fn new(mut input: R) -> Result<Self, BatchError> {
        use BatchError::Malformed;
        let fixed: [u8; 11] = read_array(&mut input, "magic")?;
        let mut r = WireReader::new(&fixed);
        if r.take(8, "magic")? != MAGIC {
            return Err(Malformed("not an audit batch"));
        }
        if r.u8("version")? != VERSION {
            return Err(Malformed("unknown version"));
        }
        let klen = usize::from(r.u16("signer key")?);
        let key = read_vec(&mut input, klen, "signer key")?;
        let signer: PublicKey = std::str::from_utf8(&key)
            .ok()
            .and_then(|k| k.parse().ok())
            .ok_or(Malformed("signer key"))?;
        let fixed: [u8; 10] = read_array(&mut input, "old size")?;
        let mut r = WireReader::new(&fixed);
        let old_size = r.u64("old size")?;
        let plen = usize::from(r.u16("proof")?);
        if plen > MAX_PROOF {
            return Err(Malformed("proof too long"));
        }
        let hashes = read_vec(&mut input, plen * 32, "proof")?;
        let mut r = WireReader::new(&hashes);
        let proof = (0..plen)
            .map(|_| r.array::<32>("proof"))
            .collect::<Result<Vec<Hash>, _>>()?;
        let nlen = read_u32(&mut input, "note")?;
        if nlen > MAX_NOTE_BYTES {
            return Err(Malformed("note too large"));
        }
        let note = String::from_utf8(read_vec(&mut input, nlen, "note")?)
            .map_err(|_| Malformed("note is not UTF-8"))?;
        let head = BatchHead {
            signer,
            old_size,
            proof,
            note,
        };
        let wanted = head.count()?;
        let count = read_u32(&mut input, "entries")? as u64;
        if count != wanted {
            return Err(Malformed("entry count does not match the checkpoint size"));
        }
        Ok(Self {
            input,
            head,
            left: count,
            next: old_size,
        })
    }

    /// The head read by [`new`](Self::new).
    pub fn head(&self) -> &BatchHead {
        &self.head
    }

    /// How many entries are still to be read.
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// Reads the next entry into `buf` (emptied first), checked to be a canonical event;
    /// `false` once every entry is read and nothing follows the last.
    pub fn next_entry(&mut self, buf: &mut Vec<u8>) -> Result<bool, BatchError> {
        if self.left == 0 {
            let mut one = [0u8; 1];
            return match self.input.read(&mut one) {
                Ok(0) => Ok(false),
                Ok(_) => Err(BatchError::Malformed("bytes after the last entry")),
                Err(e) => Err(BatchError::Read(e.to_string())),
            };
        }
        let len = read_u32(&mut self.input, "entry")?;
        if len > MAX_EVENT_BYTES {
            return Err(BatchError::Malformed("entry too large"));
        }
        buf.clear();
        buf.resize(len, 0);
        read_exact(&mut self.input, buf, "entry")?;
        Event::validate(buf).map_err(|source| BatchError::Entry {
            index: self.next,
            source,
        })?;
        self.left -= 1;
        self.next += 1;
        Ok(true)
    }
}

fn read_exact(
    input: &mut impl Read,
    buf: &mut [u8],
    field: &'static str,
) -> Result<(), BatchError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WireError::Truncated(field).into(),
        _ => BatchError::Read(e.to_string()),
    })
}

fn read_array<const N: usize>(
    input: &mut impl Read,
    field: &'static str,
) -> Result<[u8; N], BatchError> {
    let mut b = [0u8; N];
    read_exact(input, &mut b, field)?;
    Ok(b)
}

fn read_vec(input: &mut impl Read, n: usize, field: &'static str) -> Result<Vec<u8>, BatchError> {
    let mut b = vec![0u8; n];
    read_exact(input, &mut b, field)?;
    Ok(b)
}

/// A `u32` length as `usize`.
fn read_u32(input: &mut impl Read, field: &'static str) -> Result<usize, BatchError> {
    let b: [u8; 4] = read_array(input, field)?;
    Ok(WireReader::new(&b).len32(field, usize::MAX)?)
}

/// A decoded `audit-batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditBatch {
    /// The key that signed the checkpoint (a hint: mirrors check it against the key they trust).
    pub signer: PublicKey,
    /// The index of the first entry (the size the receiving mirror must have).
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The checkpoint note covering the entries.
    pub note: String,
    /// The canonical bytes of each entry.
    pub entries: Vec<Vec<u8>>,
}

impl AuditBatch {
    /// The head of this batch.
    pub fn head(&self) -> BatchHead {
        BatchHead {
            signer: self.signer.clone(),
            old_size: self.old_size,
            proof: self.proof.clone(),
            note: self.note.clone(),
        }
    }

    /// The batch's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, BatchError> {
        let mut w = WireWriter::from_vec(self.head().encode(self.entries.len())?);
        for e in &self.entries {
            w.bytes32(e, "entry")?;
        }
        Ok(w.into_bytes())
    }

    /// Reads a batch: structure, key, note syntax, and that every entry is a canonical event
    /// and that their number is what the checkpoint says. Signatures are checked by
    /// [`check`](Self::check).
    pub fn decode(bytes: &[u8]) -> Result<Self, BatchError> {
        let mut r = BatchReader::new(bytes)?;
        let mut entries = Vec::with_capacity(
            usize::try_from(r.remaining())
                .unwrap_or(0)
                .min(bytes.len() / 4),
        );
        let mut buf = Vec::new();
        while r.next_entry(&mut buf)? {
            entries.push(std::mem::take(&mut buf));
        }
        let head = r.head;
        Ok(Self {
            signer: head.signer,
            old_size: head.old_size,
            proof: head.proof,
            note: head.note,
            entries,
        })
    }

    /// Checks that this batch extends a mirror whose tree is `mirror`: it starts at the
    /// mirror's size, its checkpoint is signed by `key` (for `origin` when given), the mirror's
    /// tree plus the entries hash to the checkpoint's root, and the consistency proof holds.
    /// Returns the verified checkpoint and the entries' leaf hashes. Changes nothing.
    pub fn check(
        &self,
        mirror: &Frontier,
        origin: Option<&str>,
        key: &PublicKey,
    ) -> Result<(SignedCheckpoint, Vec<Hash>), BatchError> {
        let cp = match origin {
            Some(o) => SignedCheckpoint::verify_for(&self.note, o, key)?,
            None => SignedCheckpoint::verify(&self.note, key)?,
        };
        if self.old_size != mirror.size() {
            return Err(BatchError::Gap {
                expected: mirror.size(),
                found: self.old_size,
            });
        }
        let mut tree = mirror.clone();
        let hashes: Vec<Hash> = self.entries.iter().map(|e| leaf_hash(e)).collect();
        for h in &hashes {
            tree.push(*h);
        }
        let c = cp.checkpoint();
        if tree.size() != c.size || tree.root() != c.root {
            return Err(BatchError::RootMismatch(c.size));
        }
        verify_consistency(self.old_size, c.size, &mirror.root(), &c.root, &self.proof)
            .map_err(BatchError::NotExtending)?;
        Ok((cp, hashes))
    }
}
