//! Shipping a log's entries to a mirror, and a mirror's side of it.

use super::*;

impl AuditLog {
    /// A batch of the entries from `since` up to the latest checkpoint, with that checkpoint and
    /// a consistency proof from size `since`.
    pub fn ship(&self, since: u64) -> Result<AuditBatch, StoreError> {
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
        let signer = self.pinned_key()?.ok_or(StoreError::NoKey)?;
        let proof = self.consistency_proof(since, size)?;
        let mut entries = Vec::new();
        for r in self.entries(since) {
            let r = r?;
            if r.index >= size {
                break;
            }
            entries.push(r.event.encode());
        }
        Ok(AuditBatch {
            signer,
            old_size: since,
            proof,
            note,
            entries,
        })
    }

    /// Adds a shipped batch to this mirror if it extends it (see [`AuditBatch::check`]);
    /// otherwise refuses it and changes nothing. The first batch pins the origin and, unless a
    /// key was given when the mirror was opened, the batch's signer key.
    pub fn apply_batch(&self, batch: &AuditBatch) -> Result<SignedCheckpoint, StoreError> {
        if !self.mirror {
            return Err(StoreError::NotMirror);
        }
        let _guard = lock(&self.checkpoint_lock);
        let key = self.pinned_key()?.unwrap_or_else(|| batch.signer.clone());
        let origin = self.origin();
        let mut st = lock(&self.state);
        if let Some((index, reason)) = &st.damaged {
            return Err(StoreError::Damaged {
                index: *index,
                reason: reason.clone(),
            });
        }
        let (cp, hashes) = batch.check(
            &st.frontier,
            (!origin.is_empty()).then_some(origin.as_str()),
            &key,
        )?;
        let size = cp.checkpoint().size;
        let group: Vec<(Vec<u8>, Hash)> = batch.entries.iter().cloned().zip(hashes).collect();
        let value = record::encode(&group);
        let cp_origin = cp.checkpoint().origin.clone();
        let key_text = key.to_string();
        (&self.batches, &self.checkpoints, &self.meta)
            .transaction(|(b, c, m)| {
                if !group.is_empty() {
                    b.insert(&key_of(batch.old_size), value.as_slice())?;
                }
                c.insert(&key_of(size), cp.note().as_bytes())?;
                m.insert("origin", cp_origin.as_bytes())?;
                m.insert("key", key_text.as_bytes())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| StoreError::Storage(format!("{e:?}")))?;
        self.db.flush()?;
        self.write_sidecar(cp.note())?;
        for (_, h) in &group {
            st.leaves.push(*h);
            st.frontier.push(*h);
        }
        *lock(&self.origin) = cp_origin;
        Ok(cp)
    }
}
