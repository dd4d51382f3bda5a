//! Appends: events encoded on the callers' threads, committed in groups (one sled batch and one
//! `flush` per group).

use super::*;

#[derive(Default)]
pub(super) struct Group {
    /// The index of the group's first entry, or why the commit failed.
    done: OnceLock<Result<u64, String>>,
}

/// The events of one `append_many` call, encoded back to back.
pub(super) struct Encoded {
    bytes: Vec<u8>,
    /// Where each event's bytes end in `bytes`.
    ends: Vec<usize>,
    leaves: Vec<Hash>,
    /// The call's own records (entry count, stored value), packed on the caller's thread when
    /// the call is large enough to fill records alone; empty for the committer to pack.
    packed: Vec<(u64, Vec<u8>)>,
}

impl Encoded {
    /// Encodes `events` into `bytes` (a spare buffer, emptied here).
    fn new(events: &[Event], mut bytes: Vec<u8>) -> Self {
        bytes.clear();
        bytes.reserve(events.len() * 320);
        let mut ends = Vec::with_capacity(events.len());
        let mut leaves = Vec::with_capacity(events.len());
        for e in events {
            let start = bytes.len();
            e.encode_into(&mut bytes);
            leaves.push(merkle::leaf_hash(bytes.get(start..).unwrap_or_default()));
            ends.push(bytes.len());
        }
        Self {
            bytes,
            ends,
            leaves,
            packed: Vec::new(),
        }
    }

    /// Packs the call's own records when it holds at least half a record, so that packing
    /// runs on every caller's thread instead of only the committer's.
    fn pack(&mut self) {
        if self.bytes.len() < RECORD_TARGET / 2 {
            return;
        }
        let mut packer = record::Packer::default();
        let mut packed = Vec::new();
        let mut keep = |n: u64, value: &[u8]| packed.push((n, value.to_vec()));
        pack_entries(&mut packer, self.entries(), &mut keep);
        pack_rest(&mut packer, &mut keep);
        self.packed = packed;
    }

    /// Each event's bytes and leaf hash, in order.
    fn entries(&self) -> impl Iterator<Item = (&[u8], &Hash)> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| self.bytes.get(a..b).unwrap_or_default())
            .zip(&self.leaves)
    }
}

/// Adds entries to `packer`, handing each record that reaches [`RECORD_TARGET`] bytes to `emit`
/// (its entry count and stored value); the rest stays in the packer.
pub(super) fn pack_entries<'a>(
    packer: &mut record::Packer,
    entries: impl Iterator<Item = (&'a [u8], &'a Hash)>,
    emit: &mut impl FnMut(u64, &[u8]),
) {
    for (bytes, leaf) in entries {
        packer.push(bytes, leaf);
        if packer.body_len() >= RECORD_TARGET {
            pack_rest(packer, emit);
        }
    }
}

/// Hands what is in `packer` to `emit` as one record, if anything is.
pub(super) fn pack_rest(packer: &mut record::Packer, emit: &mut impl FnMut(u64, &[u8])) {
    if packer.len() > 0 {
        let n = packer.len() as u64;
        emit(n, packer.finish());
    }
}

impl AuditLog {
    /// Appends one event; returns once it is durable.
    pub fn append(&self, event: &Event) -> Result<Receipt, StoreError> {
        let mut r = self.append_many(std::slice::from_ref(event))?;
        r.pop()
            .ok_or_else(|| StoreError::Storage("no receipt for an appended event".into()))
    }

    /// Appends events in order, committed together with whatever other threads append at the
    /// same time; returns their receipts once all are durable.
    pub fn append_many(&self, events: &[Event]) -> Result<Vec<Receipt>, StoreError> {
        if self.mirror {
            return Err(StoreError::IsMirror);
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // Encoding and hashing happen here, on the caller's thread, outside the lock.
        let buffer = lock(&self.spare).pop().unwrap_or_default();
        let mut encoded = Encoded::new(events, buffer);
        // One event too large for `verify` to accept refuses the whole call, before any of
        // it is queued.
        let mut start = 0;
        for end in &encoded.ends {
            if end - start > MAX_EVENT_BYTES {
                return Err(EventError::TooLarge(end - start).into());
            }
            start = *end;
        }
        encoded.pack();
        let hashes = encoded.leaves.clone();
        let mut st = lock(&self.state);
        if let Some(p) = &st.poisoned {
            return Err(StoreError::Poisoned(p.clone()));
        }
        if let Some((index, reason)) = &st.damaged {
            return Err(StoreError::Damaged {
                index: *index,
                reason: reason.clone(),
            });
        }
        let group = st.group.clone();
        let offset = st.pending_len;
        st.pending_len += hashes.len() as u64;
        st.pending.push(encoded);
        loop {
            if let Some(result) = group.done.get() {
                let first = result.clone().map_err(StoreError::Poisoned)?;
                drop(st);
                return Ok(hashes
                    .into_iter()
                    .enumerate()
                    .map(|(i, leaf)| Receipt {
                        index: first + offset + i as u64,
                        leaf,
                    })
                    .collect());
            }
            if st.committing {
                st = self
                    .cv
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            // Lead: commit everything pending (our own events are among them).
            st.committing = true;
            let batch = std::mem::take(&mut st.pending);
            st.pending_len = 0;
            let this = std::mem::take(&mut st.group);
            let first = st.leaves.len() as u64;
            drop(st);
            let result = self.write_group(first, &batch);
            st = lock(&self.state);
            st.committing = false;
            match result {
                Ok(()) => {
                    for h in batch.iter().flat_map(|e| &e.leaves) {
                        st.leaves.push(*h);
                        st.frontier.push(*h);
                    }
                    let _ = this.done.set(Ok(first));
                }
                Err(e) => {
                    let msg = e.to_string();
                    st.poisoned = Some(msg.clone());
                    let _ = this.done.set(Err(msg.clone()));
                    // Whatever queued meanwhile can no longer be given indices safely.
                    st.pending.clear();
                    st.pending_len = 0;
                    let _ = st.group.done.set(Err(msg));
                }
            }
            self.cv.notify_all();
            drop(st);
            {
                let mut spare = lock(&self.spare);
                for call in batch {
                    if spare.len() < SPARE_BUFFERS && call.bytes.capacity() <= SPARE_CAPACITY {
                        spare.push(call.bytes);
                    }
                }
            }
            self.auto_checkpoint();
            st = lock(&self.state);
        }
    }

    fn write_group(&self, first: u64, batch: &[Encoded]) -> Result<(), StoreError> {
        // A group becomes records of about `RECORD_TARGET` bytes before packing, written as
        // one atomic sled batch: sled rewrites a whole tree node per change, so huge values
        // cost quadratically.
        // Calls packed by their callers keep their records; the others are packed together.
        let mut sb = sled::Batch::default();
        let mut packer = record::Packer::default();
        let mut at = first;
        let mut put = |n: u64, value: &[u8]| {
            sb.insert(&key_of(at), value);
            at += n;
        };
        for call in batch {
            if call.packed.is_empty() {
                pack_entries(&mut packer, call.entries(), &mut put);
                continue;
            }
            pack_rest(&mut packer, &mut put);
            for (n, value) in &call.packed {
                put(*n, value);
            }
        }
        pack_rest(&mut packer, &mut put);
        self.batches.apply_batch(sb)?;
        self.db.flush()?;
        Ok(())
    }
}
