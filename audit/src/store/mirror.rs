//! Shipping a log's entries to a mirror, and a mirror's side of it, both streamed: memory stays
//! bounded whatever the batch's size.
//!
//! A mirror stores a batch as the log's own writer stores a commit group: cut into records of
//! about 64 KiB. The records are written first, in sled batches of a bounded
//! size, and the batch's checkpoint last; records past the mirror's latest checkpoint are the
//! remains of a batch that was refused or cut short by a crash, and are removed (on refusal at
//! once, after a crash when the mirror is next opened).

use std::io::{Read, Write};

use sled::Transactional as _;

use tianping_core::WireWriter;

use super::{
    AuditLog, StoreError,
    commit::{pack_entries, pack_rest},
    index_of, key_of, lock,
};
use crate::batch::{AuditBatch, BatchError, BatchHead, BatchReader};
use crate::checkpoint::SignedCheckpoint;
use crate::merkle::{self, Hash};
use crate::record;

/// Stored bytes a mirror writes per sled batch while a shipped batch streams in.
const WRITE_CHUNK: usize = 8 << 20;

impl AuditLog {
    /// A batch of the entries from `since` up to the latest checkpoint, with that checkpoint and
    /// a consistency proof from size `since` (in memory: [`ship_to`](Self::ship_to) streams).
    pub fn ship(&self, since: u64) -> Result<AuditBatch, StoreError> {
        let mut bytes = Vec::new();
        self.ship_to(since, &mut bytes)?;
        Ok(AuditBatch::decode(&bytes)?)
    }

    /// Writes the `audit-batch` of [`ship`](Self::ship) to `out` entry by entry; returns its
    /// head and how many entries it holds.
    pub fn ship_to(&self, since: u64, out: &mut dyn Write) -> Result<(BatchHead, u64), StoreError> {
        let stored = self.size();
        if since > stored {
            return Err(StoreError::BeyondLog {
                index: since,
                size: stored,
            });
        }
        let (size, note) = self
            .checkpoint_notes()?
            .pop()
            .ok_or(StoreError::NoCheckpoint(since))?;
        if since > size {
            return Err(StoreError::NoCheckpoint(since));
        }
        let archived = self.archived_size();
        if since < archived {
            return Err(StoreError::Archived {
                index: since,
                archived,
            });
        }
        let head = BatchHead {
            signer: self.pinned_key()?.ok_or(StoreError::NoKey)?,
            old_size: since,
            proof: self.consistency_proof(since, size)?,
            note,
        };
        let count = size - since;
        let io = |e: std::io::Error| StoreError::Storage(format!("writing the batch: {e}"));
        let n = usize::try_from(count).map_err(|_| BatchError::Malformed("too many entries"))?;
        out.write_all(&head.encode(n)?).map_err(io)?;
        let mut buf = Vec::new();
        for r in self.entries(since) {
            let r = r?;
            if r.index >= size {
                break;
            }
            buf.clear();
            let mut w = WireWriter::from_vec(std::mem::take(&mut buf));
            w.len32(r.event.encoded_len(), "entry")
                .map_err(BatchError::from)?;
            buf = w.into_bytes();
            r.event.encode_into(&mut buf);
            out.write_all(&buf).map_err(io)?;
        }
        out.flush().map_err(io)?;
        Ok((head, count))
    }

    /// Adds a shipped batch to this mirror if it extends it (see [`AuditBatch::check`]);
    /// otherwise refuses it and changes nothing. The first batch pins the origin and, unless a
    /// key was given when the mirror was opened, the batch's signer key.
    ///
    /// A batch may start at or before the mirror's size (shippers overlap each batch with the
    /// one before, so that one lost on the way is made up by the next): the entries the mirror
    /// already holds must be equal to the batch's, one by one, and only the rest is stored. A
    /// batch the mirror already holds whole changes nothing and is answered with its checkpoint.
    /// A batch that starts past the mirror's size is refused ([`BatchError::Gap`]).
    pub fn apply_batch(&self, batch: &AuditBatch) -> Result<SignedCheckpoint, StoreError> {
        self.apply_batch_from(batch.encode()?.as_slice())
    }

    /// [`apply_batch`](Self::apply_batch) of a batch read from `input` entry by entry: the
    /// checkpoint is checked before any entry is stored, each entry as it arrives, and the
    /// root and consistency proof at the end; a refused batch leaves the mirror as it was.
    pub fn apply_batch_from(&self, input: impl Read) -> Result<SignedCheckpoint, StoreError> {
        if !self.mirror {
            return Err(StoreError::NotMirror);
        }
        let _guard = lock(&self.checkpoint_lock);
        let mut reader = BatchReader::new(input)?;
        let head = reader.head().clone();
        let key = self.pinned_key()?.unwrap_or_else(|| head.signer.clone());
        let origin = self.origin();
        let mut st = lock(&self.state);
        if let Some((index, reason)) = &st.damaged {
            return Err(StoreError::Damaged {
                index: *index,
                reason: reason.clone(),
            });
        }
        let cp = match origin.as_str() {
            "" => SignedCheckpoint::verify(&head.note, &key),
            o => SignedCheckpoint::verify_for(&head.note, o, &key),
        }
        .map_err(BatchError::from)?;
        let size = st.frontier.size();
        if head.old_size > size {
            return Err(BatchError::Gap {
                expected: size,
                found: head.old_size,
            }
            .into());
        }
        let c = cp.checkpoint();
        // The entries the mirror holds already: equal, one by one, to its own.
        let held = c.size.min(size);
        let mut buf = Vec::new();
        for index in head.old_size..held {
            if !reader.next_entry(&mut buf)? {
                return Err(
                    BatchError::Malformed("fewer entries than the checkpoint covers").into(),
                );
            }
            let own = usize::try_from(index).ok().and_then(|i| st.leaves.get(i));
            if own != Some(&merkle::leaf_hash(&buf)) {
                return Err(BatchError::Differs(index).into());
            }
        }
        if c.size <= size {
            if reader.next_entry(&mut buf)? {
                return Err(BatchError::Malformed("bytes after the last entry").into());
            }
            return Ok(cp);
        }
        let mut tree = st.frontier.clone();
        let mut hashes: Vec<Hash> = Vec::new();
        let stored = self.store_entries(&mut reader, size, |h| {
            tree.push(h);
            hashes.push(h);
        });
        let checked = stored.and_then(|()| {
            if tree.size() != c.size || tree.root() != c.root {
                return Err(BatchError::RootMismatch(c.size).into());
            }
            // From where the mirror ends, the proof shows the checkpoint extends it. A batch
            // that overlapped needs none: the mirror's own leaves are the overlap's, compared
            // above, and the root over them and the new ones is the checkpoint's.
            if head.old_size < size {
                return Ok(());
            }
            merkle::verify_consistency(size, c.size, &st.frontier.root(), &c.root, &head.proof)
                .map_err(|e| StoreError::Batch(BatchError::NotExtending(e)))
        });
        if let Err(e) = checked {
            self.remove_from(size)?;
            return Err(e);
        }
        let cp_origin = c.origin.clone();
        let key_text = key.to_string();

        (&self.checkpoints, &self.meta)
            .transaction(|(cps, m)| {
                cps.insert(&key_of(c.size), cp.note().as_bytes())?;
                m.insert("origin", cp_origin.as_bytes())?;
                m.insert("key", key_text.as_bytes())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| StoreError::Storage(format!("{e:?}")))?;
        self.db.flush()?;
        self.write_sidecar(cp.note())?;
        for h in hashes {
            st.leaves.push(h);
            st.frontier.push(h);
        }
        *lock(&self.origin) = cp_origin;
        Ok(cp)
    }

    /// Reads every entry of `reader`, hashing each (handed to `leaf`) and storing them from
    /// index `first` in records cut as the log's writer cuts them, flushed at the end.
    fn store_entries(
        &self,
        reader: &mut BatchReader<impl Read>,
        first: u64,
        mut leaf: impl FnMut(Hash),
    ) -> Result<(), StoreError> {
        let mut packer = record::Packer::default();
        let mut sb = sled::Batch::default();
        let mut sb_bytes = 0usize;
        let mut at = first;
        let mut failed: Option<sled::Error> = None;
        let batches = &self.batches;
        let mut put = |n: u64, value: &[u8]| {
            sb.insert(&key_of(at), value);
            sb_bytes += value.len();
            at += n;
            if sb_bytes >= WRITE_CHUNK && failed.is_none() {
                failed = batches.apply_batch(std::mem::take(&mut sb)).err();
                sb_bytes = 0;
            }
        };
        let mut buf = Vec::new();
        while reader.next_entry(&mut buf)? {
            let h = merkle::leaf_hash(&buf);
            leaf(h);
            pack_entries(&mut packer, std::iter::once((buf.as_slice(), &h)), &mut put);
        }
        pack_rest(&mut packer, &mut put);
        if let Some(e) = failed {
            return Err(e.into());
        }
        self.batches.apply_batch(sb)?;
        self.db.flush()?;
        Ok(())
    }

    /// Removes the records from index `first` on (the remains of an unfinished batch).
    pub(super) fn remove_from(&self, first: u64) -> Result<(), StoreError> {
        let mut sb = sled::Batch::default();
        for item in self.batches.range(key_of(first)..) {
            let (k, _) = item?;
            sb.remove(k);
        }
        self.batches.apply_batch(sb)?;
        self.db.flush()?;
        Ok(())
    }

    /// For a mirror: the size records past the latest checkpoint start at, if there are any.
    pub(super) fn unfinished_batch(&self) -> Result<Option<u64>, StoreError> {
        let signed = match self.checkpoints.last()? {
            Some((k, _)) => index_of(&k).unwrap_or(0),
            None => 0,
        };
        Ok(self
            .batches
            .range(key_of(signed)..)
            .next()
            .transpose()?
            .map(|_| signed))
    }
}
