//! Verification: every stored byte rehashed on worker threads, every checkpoint checked.

use tianping_core::PublicKey;

use super::{AuditLog, SIDECAR, StoreError, VerifyReport, index_of};
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::event::Event;
use crate::merkle::{self, Frontier, Hash};
use crate::record;

/// A caller's decision about a log's checkpoint key, given the key and the certificate the
/// log records for it: `Ok` to accept it, `Err(reason)` to refuse it.
pub type KeyTrust<'a> = dyn Fn(&PublicKey, Option<&[u8]>) -> Result<(), String> + 'a;

/// The `meta` key of the certificate of the log's checkpoint key (DER), stored once.
const SIGNER_CERT: &str = "signer.cert";

impl AuditLog {
    /// Records the certificate (DER) of the key that signs this log's checkpoints, such as a
    /// component's `node` certificate, so that a verifier holding only the trust bundle can
    /// decide whether that key may sign the log ([`verify_trusted`](Self::verify_trusted)).
    pub fn set_signer_certificate(&self, der: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(SIGNER_CERT, der)?;
        self.db.flush()?;
        Ok(())
    }

    /// The certificate recorded by [`set_signer_certificate`](Self::set_signer_certificate).
    pub fn signer_certificate(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(SIGNER_CERT)?.map(|v| v.to_vec()))
    }

    /// [`verify_with_archives`](Self::verify_with_archives) with the key the log pinned, once
    /// `trust` accepts it: `trust` is given the key and the recorded signer certificate and
    /// answers `Err(reason)` to refuse (e.g. a certificate that is not a `node` certificate of
    /// the log's zone, checked against a trust bundle). A log with no checkpoint asks nothing.
    pub fn verify_trusted(
        &self,
        trust: &KeyTrust<'_>,
        archives: &[crate::archive::Archive],
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<VerifyReport, StoreError> {
        let key = self.pinned_key()?;
        if let Some(key) = &key {
            let cert = self.signer_certificate()?;
            trust(key, cert.as_deref()).map_err(|reason| StoreError::UntrustedKey {
                key: key.to_string(),
                reason,
            })?;
        }
        self.verify_with_archives(key.as_ref(), archives, progress)
    }

    /// Recomputes the whole tree from the stored bytes, checks every checkpoint's signature with
    /// `key` (or the key the log pinned) and that each checkpoint's root is the root of the
    /// entries up to its size; so each extends the one before. Names the first bad index.
    /// `progress` is called now and then with (entries done, entries stored).
    ///
    /// Archived entries are checked by their stored leaf hashes only (the roots still cover
    /// them); [`verify_with_archives`](Self::verify_with_archives) recomputes them too.
    pub fn verify(
        &self,
        key: Option<&PublicKey>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<VerifyReport, StoreError> {
        self.verify_with_archives(key, &[], progress)
    }

    /// [`verify`](Self::verify), and also checks each archive file on its own (signature,
    /// root, cutoff) and that its entries are the archived entries of this log: their leaf
    /// hashes match and the tree up to its end has its checkpoint's root.
    pub fn verify_with_archives(
        &self,
        key: Option<&PublicKey>,
        archives: &[crate::archive::Archive],
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<VerifyReport, StoreError> {
        let origin = self.origin();
        let pinned = self.pinned_key()?;
        if let (Some(k), Some(p)) = (key, &pinned) {
            if k != p {
                return Err(StoreError::KeyMismatch {
                    pinned: p.to_string(),
                    given: k.to_string(),
                });
            }
        }
        let key = key.cloned().or(pinned);
        let mut notes = self.checkpoint_notes()?;
        if let Some(note) = self.read_sidecar()? {
            // The copy outside the database: a checkpoint the database may have lost.
            let size = SignedCheckpoint::parse_unverified(&note)
                .map_err(|e| StoreError::Tampered {
                    index: 0,
                    reason: format!("`{SIDECAR}`: {e}"),
                })?
                .size;
            match notes.iter().find(|(s, _)| *s == size) {
                Some((_, n)) if *n == note => {}
                Some(_) => {
                    return Err(StoreError::Tampered {
                        index: size,
                        reason: format!(
                            "`{SIDECAR}` differs from the stored checkpoint at size `{size}`"
                        ),
                    });
                }
                None => {
                    notes.push((size, note));
                    notes.sort_by_key(|(s, _)| *s);
                }
            }
        }
        let mut cps: Vec<Checkpoint> = Vec::with_capacity(notes.len());
        if !notes.is_empty() {
            let key = key.as_ref().ok_or(StoreError::NoKey)?;
            for (size, note) in &notes {
                let cp = SignedCheckpoint::verify_for(note, &origin, key).map_err(|e| {
                    StoreError::Tampered {
                        index: *size,
                        reason: format!("checkpoint at size `{size}`: {e}"),
                    }
                })?;
                if cp.checkpoint().size != *size {
                    return Err(StoreError::Tampered {
                        index: *size,
                        reason: format!(
                            "checkpoint stored at size `{size}` says `{}`",
                            cp.checkpoint().size
                        ),
                    });
                }
                cps.push(cp.checkpoint().clone());
            }
        }
        // Leaf hashes recomputed from the archive files, and the roots they were signed with.
        let mut from_archives: std::collections::HashMap<u64, Hash> =
            std::collections::HashMap::new();
        let mut archive_roots: Vec<(u64, Hash)> = Vec::new();
        // the archives the log recorded: each file given is checked against its record, and
        // the archived prefix must be what they cover
        let recorded = self.archives()?;
        if !archives.is_empty() {
            let key = key.as_ref().ok_or(StoreError::NoKey)?;
            for (n, a) in archives.iter().enumerate() {
                let checked = a
                    .check(Some(&origin), key)
                    .map_err(|e| StoreError::Tampered {
                        index: a.batch.old_size,
                        reason: format!("archive file {}: {e}", n + 1),
                    })?;
                // every byte of the file, the parts no signature covers (its cutoff, its
                // signer's name) too, is the file the log recorded when it archived them
                let hash = super::retention::sha256(&a.encode()?);
                match recorded
                    .iter()
                    .find(|(f, t, _)| (*f, *t) == (checked.from, checked.to))
                {
                    Some((_, _, h)) if *h == hash => {}
                    Some((_, _, h)) => {
                        return Err(StoreError::Tampered {
                            index: checked.from,
                            reason: format!(
                                "archive file {}: its SHA-256 is `{}`, but the log recorded `{}` for its entries `{}` to `{}`",
                                n + 1,
                                hex::encode(hash),
                                hex::encode(h),
                                checked.from,
                                checked.to
                            ),
                        });
                    }
                    // not recorded: the file of an archive that stopped before removing its
                    // entries (they are checked as live ones), or no archive of this log
                    None => {}
                }
                for (i, h) in checked.leaves.iter().enumerate() {
                    from_archives.insert(checked.from + i as u64, *h);
                }
                archive_roots.push((checked.to, checked.checkpoint.checkpoint().root));
            }
        }
        let stored = self.size();
        let mut archived = 0u64;
        let mut archived_checked = 0u64;
        let mut tree = Frontier::new();
        let mut next_cp = cps.iter().peekable();
        let mut last_ok = 0u64;
        let check = |tree: &Frontier,
                     next_cp: &mut std::iter::Peekable<std::slice::Iter<'_, Checkpoint>>,
                     last_ok: &mut u64|
         -> Result<(), StoreError> {
            while let Some(cp) = next_cp.peek() {
                if cp.size != tree.size() {
                    break;
                }
                if cp.root != tree.root() {
                    return Err(StoreError::Tampered {
                        index: *last_ok,
                        reason: format!(
                            "entries from `{}` to `{}` do not match the signed checkpoint at size `{}`",
                            last_ok,
                            cp.size.saturating_sub(1),
                            cp.size
                        ),
                    });
                }
                *last_ok = cp.size;
                next_cp.next();
            }
            Ok(())
        };
        check(&tree, &mut next_cp, &mut last_ok)?;
        // A reader thread hands runs of records to one worker per core in turn; each worker
        // decompresses, checks and hashes its records' entries, and hashes them further into
        // the largest whole subtrees that end at no checkpoint or archive boundary. This thread
        // folds the results into the tree in order, so the first bad index is the one reported.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let mut bounds: Vec<u64> = cps
            .iter()
            .map(|c| c.size)
            .chain(archive_roots.iter().map(|(end, _)| *end))
            .collect();
        bounds.sort_unstable();
        bounds.dedup();
        let ctx = VerifyContext {
            bounds: &bounds,
            from_archives: &from_archives,
        };
        let batches = self.batches.clone();
        let mut next_progress = 65_536u64;
        std::thread::scope(|scope| -> Result<(), StoreError> {
            let mut job_txs = Vec::with_capacity(workers);
            let mut done_rxs = Vec::with_capacity(workers);
            for _ in 0..workers {
                let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<VerifyJob>(2);
                let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<VerifyDone>(2);
                let ctx = &ctx;
                scope.spawn(move || {
                    for job in job_rx {
                        if done_tx.send(ctx.check_job(job)).is_err() {
                            return;
                        }
                    }
                });
                job_txs.push(job_tx);
                done_rxs.push(done_rx);
            }
            scope.spawn(move || read_jobs(batches, job_txs));
            for done_rx in done_rxs.iter().cycle() {
                // The reader hands job `n` to worker `n % workers`: taking results in the same
                // turn keeps them in order. A closed channel is the end of the log.
                let Ok(done) = done_rx.recv() else { break };
                for rec in done.records {
                    if rec.archived {
                        if archived != rec.first {
                            return Err(StoreError::Tampered {
                                index: rec.first,
                                reason: "an archived entry after retained ones".into(),
                            });
                        }
                        archived += rec.count;
                    }
                    archived_checked += rec.archived_checked;
                    for (height, hash) in rec.subtrees {
                        if !tree.push_subtree(height, hash) {
                            return Err(StoreError::Storage(
                                "verification folded a subtree out of place".into(),
                            ));
                        }
                        let last = tree.size().saturating_sub(1);
                        for (end, root) in &archive_roots {
                            if *end == tree.size() && *root != tree.root() {
                                return Err(StoreError::Tampered {
                                    index: last,
                                    reason: format!(
                                        "the log's root at size `{end}` is not the archive's"
                                    ),
                                });
                            }
                        }
                        check(&tree, &mut next_cp, &mut last_ok)?;
                        if tree.size() >= next_progress {
                            progress(tree.size(), stored);
                            next_progress = (tree.size() / 65_536 + 1) * 65_536;
                        }
                    }
                    if let Some((index, reason)) = rec.bad {
                        return Err(StoreError::Tampered { index, reason });
                    }
                }
                if let Some(e) = done.stop {
                    return Err(match e {
                        ChunkStop::Storage(e) => e,
                        ChunkStop::Bad(reason) => StoreError::Tampered {
                            index: tree.size(),
                            reason,
                        },
                    });
                }
            }
            Ok(())
        })?;
        if let Some(cp) = next_cp.next() {
            return Err(StoreError::Tampered {
                index: tree.size(),
                reason: format!(
                    "the log was truncated: a checkpoint covers `{}` entries but only `{}` are stored",
                    cp.size,
                    tree.size()
                ),
            });
        }
        progress(tree.size(), stored);
        // The archived prefix must be exactly what the recorded archives cover, each ending at
        // a signed checkpoint.
        let mut covered = 0u64;
        for &(from, to, _) in &recorded {
            if from != covered || to <= from || !cps.iter().any(|c| c.size == to) {
                return Err(StoreError::Tampered {
                    index: from,
                    reason: format!(
                        "the recorded archive of entries `{from}` to `{to}` does not follow the one before or has no checkpoint"
                    ),
                });
            }
            covered = to;
        }
        if covered != archived {
            return Err(StoreError::Tampered {
                index: covered.min(archived),
                reason: format!(
                    "`{archived}` entries are archived but the recorded archives cover `{covered}`"
                ),
            });
        }
        if let Some((end, _)) = archive_roots.iter().find(|(end, _)| *end > tree.size()) {
            return Err(StoreError::Tampered {
                index: tree.size(),
                reason: format!("an archive ends at `{end}`, beyond the log"),
            });
        }
        Ok(VerifyReport {
            entries: tree.size(),
            archived,
            archived_checked,
            root: tree.root(),
            checkpoints: cps.len() as u64,
            signed_size: last_ok,
            key,
        })
    }
}

/// Why the reader stopped early.
enum ChunkStop {
    Storage(StoreError),
    /// A record out of place, at the index after the entries before it.
    Bad(String),
}

/// Stored bytes the verification reader hands to one worker at a time.
const VERIFY_JOB: usize = 1 << 20;

/// Consecutive records for one verification worker (key, value).
struct VerifyJob {
    records: Vec<(u64, sled::IVec)>,
    /// Why reading stopped after these records, if it did.
    stop: Option<ChunkStop>,
}

/// What a worker found in one job.
struct VerifyDone {
    records: Vec<CheckedRecord>,
    stop: Option<ChunkStop>,
}

/// One record, checked: its entries folded into subtree roots (up to the first bad entry).
struct CheckedRecord {
    first: u64,
    count: u64,
    archived: bool,
    /// Entries also found in an archive file, and equal there.
    archived_checked: u64,
    /// (height, root) of consecutive perfect subtrees, in order, from `first`.
    subtrees: Vec<(u32, Hash)>,
    /// The first bad entry (after those the subtrees cover), and why.
    bad: Option<(u64, String)>,
}

/// What every verification worker checks against.
struct VerifyContext<'a> {
    /// Sizes at which the root is checked (checkpoints, archive ends), sorted: no subtree
    /// crosses one.
    bounds: &'a [u64],
    /// Leaf hashes recomputed from archive files.
    from_archives: &'a std::collections::HashMap<u64, Hash>,
}

impl VerifyContext<'_> {
    fn check_job(&self, job: VerifyJob) -> VerifyDone {
        let mut records = Vec::with_capacity(job.records.len());
        let mut stop = job.stop;
        for (first, value) in &job.records {
            match self.check_record(*first, value) {
                Ok(rec) => {
                    let bad = rec.bad.is_some();
                    records.push(rec);
                    if bad {
                        break;
                    }
                }
                Err(reason) => {
                    stop = Some(ChunkStop::Bad(reason.to_owned()));
                    break;
                }
            }
        }
        VerifyDone { records, stop }
    }

    fn check_record(&self, first: u64, value: &[u8]) -> Result<CheckedRecord, &'static str> {
        let opened = record::open(value, true)?;
        let entries = opened.entries()?;
        let archived = opened.is_archived();
        let mut leaves: Vec<Hash> = Vec::with_capacity(entries.len());
        let mut bad = None;
        let mut archived_checked = 0;
        for (i, (stored, bytes)) in entries.iter().enumerate() {
            let index = first + i as u64;
            let h = if archived {
                *stored
            } else {
                if let Err(e) = Event::validate(bytes) {
                    bad = Some((index, format!("not a canonical event: {e}")));
                    break;
                }
                let h = merkle::leaf_hash(bytes);
                if h != *stored {
                    bad = Some((
                        index,
                        "the stored bytes do not match their leaf hash".into(),
                    ));
                    break;
                }
                h
            };
            if !self.from_archives.is_empty() {
                if let Some(a) = self.from_archives.get(&index) {
                    if *a != h {
                        bad = Some((
                            index,
                            "the archive file's entry does not match the log's leaf hash".into(),
                        ));
                        break;
                    }
                    if archived {
                        archived_checked += 1;
                    }
                }
            }
            leaves.push(h);
        }
        Ok(CheckedRecord {
            first,
            count: entries.len() as u64,
            archived,
            archived_checked,
            subtrees: self.subtrees(first, &mut leaves),
            bad,
        })
    }

    /// Cuts the leaves from index `first` into the largest aligned perfect subtrees that cross
    /// no bound, and hashes each.
    fn subtrees(&self, first: u64, leaves: &mut [Hash]) -> Vec<(u32, Hash)> {
        let end = first + leaves.len() as u64;
        let mut out = Vec::new();
        let mut at = first;
        let mut bounds = self
            .bounds
            .iter()
            .copied()
            .filter(|b| *b > first)
            .peekable();
        while at < end {
            while bounds.next_if(|b| *b <= at).is_some() {}
            let limit = bounds.peek().map_or(end, |b| (*b).min(end));
            let mut height = at.trailing_zeros().min(62);
            while (1u64 << height) > limit - at {
                height -= 1;
            }
            let Ok(from) = usize::try_from(at - first) else {
                break;
            };
            let to = from + (1usize << height);
            let Some(root) = leaves.get_mut(from..to).and_then(merkle::subtree_root) else {
                break;
            };
            out.push((height, root));
            at += 1u64 << height;
        }
        out
    }
}

/// Reads every record in order and hands runs of them to the workers in turn (job `n` to
/// worker `n % workers`); stops at the first record out of place or unreadable, or when a
/// worker is gone.
fn read_jobs(batches: sled::Tree, workers: Vec<std::sync::mpsc::SyncSender<VerifyJob>>) {
    let mut iter = batches.iter();
    let mut next_at = 0u64;
    for worker in workers.iter().cycle() {
        let mut records = Vec::new();
        let mut bytes = 0usize;
        let mut stop = None;
        let mut end = false;
        while bytes < VERIFY_JOB {
            match iter.next() {
                Some(Ok((k, v))) => {
                    if index_of(&k) != Some(next_at) {
                        stop = Some(ChunkStop::Bad("entries are missing or out of order".into()));
                        break;
                    }
                    // The count in the header places the next record; a record whose body
                    // does not parse is found by the worker.
                    let first = next_at;
                    next_at += u64::from(record::count(&v).unwrap_or(0));
                    bytes += v.len();
                    records.push((first, v));
                }
                Some(Err(e)) => {
                    stop = Some(ChunkStop::Storage(e.into()));
                    break;
                }
                None => {
                    end = true;
                    break;
                }
            }
        }
        let last = stop.is_some() || end;
        if worker.send(VerifyJob { records, stop }).is_err() || last {
            return;
        }
    }
}
