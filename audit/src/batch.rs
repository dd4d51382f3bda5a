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

use tianping_core::PublicKey;

use crate::checkpoint::{CheckpointError, MAX_NOTE_BYTES, SignedCheckpoint};
use crate::event::{Event, EventError, MAX_EVENT_BYTES};
use crate::merkle::{Frontier, Hash, ProofError, leaf_hash, verify_consistency};

const MAGIC: &[u8; 8] = b"TPAUDITB";
const VERSION: u8 = 1;

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
    /// The batch starts somewhere other than where the mirror ends.
    #[error("batch starts at entry `{found}` but the mirror has `{expected}` entries")]
    Gap {
        /// The mirror's size.
        expected: u64,
        /// The batch's first index.
        found: u64,
    },
    /// The entries do not hash to the checkpoint's root.
    #[error("entries do not match the checkpoint root at size `{0}`")]
    RootMismatch(u64),
    /// The consistency proof does not show the checkpoint extends the mirror.
    #[error("checkpoint does not extend the mirror: {0}")]
    NotExtending(ProofError),
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
    /// The batch's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        let key = self.signer.to_string();
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&self.old_size.to_be_bytes());
        out.extend_from_slice(&(self.proof.len() as u16).to_be_bytes());
        for h in &self.proof {
            out.extend_from_slice(h);
        }
        out.extend_from_slice(&(self.note.len() as u32).to_be_bytes());
        out.extend_from_slice(self.note.as_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&(e.len() as u32).to_be_bytes());
            out.extend_from_slice(e);
        }
        out
    }

    /// Reads a batch: structure, key, note syntax, and that every entry is a canonical event
    /// and that their number is what the checkpoint says. Signatures are checked by
    /// [`check`](Self::check).
    pub fn decode(bytes: &[u8]) -> Result<Self, BatchError> {
        use BatchError::Malformed;
        let mut r = bytes;
        if take(&mut r, 8)? != MAGIC {
            return Err(Malformed("not an audit batch"));
        }
        if take(&mut r, 1)? != [VERSION] {
            return Err(Malformed("unknown version"));
        }
        let klen = u16_be(take(&mut r, 2)?) as usize;
        let key_text =
            std::str::from_utf8(take(&mut r, klen)?).map_err(|_| Malformed("signer key"))?;
        let signer: PublicKey = key_text.parse().map_err(|_| Malformed("signer key"))?;
        let old_size = u64_be(take(&mut r, 8)?);
        let plen = u16_be(take(&mut r, 2)?) as usize;
        if plen > 128 {
            return Err(Malformed("proof too long"));
        }
        let mut proof = Vec::with_capacity(plen);
        for _ in 0..plen {
            let h: Hash = take(&mut r, 32)?
                .try_into()
                .map_err(|_| Malformed("proof"))?;
            proof.push(h);
        }
        let nlen = u32_be(take(&mut r, 4)?) as usize;
        if nlen > MAX_NOTE_BYTES {
            return Err(Malformed("note too large"));
        }
        let note = std::str::from_utf8(take(&mut r, nlen)?)
            .map_err(|_| Malformed("note is not UTF-8"))?
            .to_owned();
        let cp = SignedCheckpoint::parse_unverified(&note)?;
        let count = u32_be(take(&mut r, 4)?) as usize;
        if count.saturating_mul(4) > r.len() {
            return Err(Malformed("entry count larger than the batch"));
        }
        if Some(count as u64) != cp.size.checked_sub(old_size) {
            return Err(Malformed("entry count does not match the checkpoint size"));
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count as u64 {
            let len = u32_be(take(&mut r, 4)?) as usize;
            if len > MAX_EVENT_BYTES {
                return Err(Malformed("entry too large"));
            }
            let e = take(&mut r, len)?;
            Event::decode(e).map_err(|source| BatchError::Entry {
                index: old_size + i,
                source,
            })?;
            entries.push(e.to_vec());
        }
        if !r.is_empty() {
            return Err(Malformed("bytes after the last entry"));
        }
        Ok(Self {
            signer,
            old_size,
            proof,
            note,
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

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], BatchError> {
    if r.len() < n {
        return Err(BatchError::Malformed("truncated"));
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Ok(head)
}

fn u16_be(b: &[u8]) -> u16 {
    b.iter().fold(0u16, |a, x| (a << 8) | u16::from(*x))
}

fn u32_be(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x))
}

fn u64_be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x))
}
