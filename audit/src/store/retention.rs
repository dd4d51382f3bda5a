//! Retention: archiving whole leading records of the log into an `audit-archive` file.
//!
//! Two steps, each safe to stop after: [`AuditLog::archive_write`] signs a checkpoint of the
//! archived prefix and writes the archive file durably (the live log is unchanged but for that
//! checkpoint); [`AuditLog::archive_remove`] checks the file against the live log and replaces
//! the archived records by their leaf hashes in one atomic `sled` transaction, together with the
//! `audit.archive` event still to append. [`AuditLog::archive`] runs both, appends the event and
//! signs a checkpoint over it.

use std::path::Path;

use tianping_core::{Signer, UnixTime};

use sled::Transactional as _;

use super::{AuditLog, StoreError, index_of, key_of, lock};
use crate::archive::{Archive, Retention};
use crate::batch::AuditBatch;
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::event::Event;
use crate::merkle::{self, Frontier, Hash};
use crate::record;

/// The `meta` key of an `audit.archive` event not appended yet.
const PENDING_EVENT: &str = "archive.event";

/// What [`AuditLog::archive`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The first archived index (the entries archived before).
    pub from: u64,
    /// The index after the last archived entry; equal to `from` when nothing was old enough.
    pub to: u64,
    /// The SHA-256 of the archive file, when one was written.
    pub sha256: Option<Hash>,
    /// The index of the `audit.archive` event appended to the log.
    pub event: Option<u64>,
}

/// An archive file written by [`AuditLog::archive_write`], not yet removed from the live log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedArchive {
    /// The first index archived.
    pub from: u64,
    /// The index after the last one.
    pub to: u64,
    /// The SHA-256 of the file.
    pub sha256: Hash,
}

/// The SHA-256 of `bytes` (an archive file's, as the log records it).
pub(super) fn sha256(bytes: &[u8]) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

fn refused(reason: impl Into<String>) -> StoreError {
    StoreError::ArchiveRefused(reason.into())
}

/// Writes `out` fully or not at all: a temporary file, fsync, rename, fsync of the folder.
fn write_durable(out: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write as _;
    let name = out
        .file_name()
        .ok_or_else(|| refused(format!("`{}` is not a file name", out.display())))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = out.with_file_name(tmp_name);
    let io = |e: std::io::Error| StoreError::Storage(format!("writing `{}`: {e}", out.display()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, out).map_err(io)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

impl AuditLog {
    /// How many leading entries are archived (the live log holds only their leaf hashes).
    pub fn archived_size(&self) -> u64 {
        lock(&self.state).archived
    }

    /// Every archive made of this log, oldest first: (first index, index after the last, the
    /// SHA-256 of the archive file).
    pub fn archives(&self) -> Result<Vec<(u64, u64, Hash)>, StoreError> {
        let mut out = Vec::new();
        for item in self.archives.iter() {
            let (k, v) = item?;
            let bad = || StoreError::Damaged {
                index: 0,
                reason: "an archive record is malformed".into(),
            };
            let from = index_of(&k).ok_or_else(bad)?;
            let to = v.get(..8).and_then(index_of).ok_or_else(bad)?;
            let hash: Hash = v.get(8..).and_then(|h| h.try_into().ok()).ok_or_else(bad)?;
            out.push((from, to, hash));
        }
        Ok(out)
    }

    /// Archives the leading records of the log whose every entry is older than `cutoff` into
    /// the file `out`, then removes their entries from the live log, keeping their leaf hashes
    /// (so roots, checkpoints and proofs of retained entries still verify). Refuses a cutoff
    /// newer than `now` minus `retention`; never cuts a record (archiving stops at the first
    /// record holding an entry at or after the cutoff). Appends an `audit.archive` event with
    /// the range and the file's SHA-256, and signs a checkpoint over it with `signer` (the
    /// log's key).
    ///
    /// `out` must not exist, unless it is the file of an archive that stopped before removing
    /// its entries (it is then written again). Nothing is removed unless the file is durable.
    pub fn archive(
        &self,
        cutoff: UnixTime,
        now: UnixTime,
        retention: Retention,
        out: &Path,
        signer: &dyn Signer,
    ) -> Result<ArchiveReport, StoreError> {
        self.append_pending_archive_event()?;
        let Some(prepared) = self.archive_write(cutoff, now, retention, out, signer)? else {
            let at = self.archived_size();
            return Ok(ArchiveReport {
                from: at,
                to: at,
                sha256: None,
                event: None,
            });
        };
        let mut report = self.archive_remove(out, now, retention)?;
        if report.sha256 != Some(prepared.sha256) {
            return Err(refused("the archive file changed while archiving"));
        }
        report.event = self.append_pending_archive_event()?;
        self.checkpoint(signer)?;
        Ok(report)
    }

    /// The first step of [`archive`](Self::archive): picks the whole leading records older than
    /// `cutoff`, signs (or reuses) a checkpoint of exactly the tree up to their end, and writes
    /// the archive file durably. Removes nothing. `None` when no record is old enough.
    pub fn archive_write(
        &self,
        cutoff: UnixTime,
        now: UnixTime,
        retention: Retention,
        out: &Path,
        signer: &dyn Signer,
    ) -> Result<Option<PreparedArchive>, StoreError> {
        if self.mirror {
            return Err(StoreError::IsMirror);
        }
        retention.check(cutoff, now)?;
        let key = signer.public_key();
        if let Some(p) = self.pinned_key()? {
            if p != key {
                return Err(StoreError::KeyMismatch {
                    pinned: p.to_string(),
                    given: key.to_string(),
                });
            }
        }
        let _guard = lock(&self.checkpoint_lock);
        let (from, size) = {
            let st = lock(&self.state);
            if let Some((index, reason)) = &st.damaged {
                return Err(StoreError::Damaged {
                    index: *index,
                    reason: reason.clone(),
                });
            }
            (st.archived, st.leaves.len() as u64)
        };
        let mut to = from;
        let mut entries: Vec<Vec<u8>> = Vec::new();
        'records: for item in self.batches.range(key_of(from)..) {
            let (k, v) = item?;
            let damaged = |reason: &str| StoreError::Damaged {
                index: to,
                reason: reason.to_owned(),
            };
            if index_of(&k) != Some(to) {
                return Err(damaged("entries are missing or out of order"));
            }
            let opened = record::open(&v, true).map_err(damaged)?;
            if opened.is_archived() {
                return Err(damaged("an archived record after retained ones"));
            }
            let rec = opened.entries().map_err(damaged)?;
            let end = to + rec.len() as u64;
            if end > size {
                break;
            }
            let mut old = Vec::with_capacity(rec.len());
            for (_, bytes) in rec {
                if Event::decode(bytes)?.time >= cutoff {
                    break 'records;
                }
                old.push(bytes.to_vec());
            }
            entries.extend(old);
            to = end;
        }
        if to == from {
            return Ok(None);
        }
        let (prefix, root, proof) = {
            let st = lock(&self.state);
            let n = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
            let mut f = Frontier::new();
            for h in st.leaves.get(..n(from)).unwrap_or_default() {
                f.push(*h);
            }
            let root = merkle::root_of(st.leaves.get(..n(to)).unwrap_or_default());
            (
                f.subtrees(),
                root,
                merkle::consistency_proof(&st.leaves, from, to)?,
            )
        };
        let note = match self.checkpoints.get(key_of(to))? {
            Some(v) => {
                let note = String::from_utf8_lossy(&v).into_owned();
                SignedCheckpoint::verify_for(&note, &self.origin(), &key)?;
                note
            }
            None => {
                let latest = self.latest_size()?;
                let cp = Checkpoint {
                    origin: self.origin(),
                    size: to,
                    root,
                }
                .sign(signer)?;
                self.meta.insert("key", key.to_string().as_bytes())?;
                self.checkpoints.insert(key_of(to), cp.note().as_bytes())?;
                self.db.flush()?;
                if to >= latest {
                    self.write_sidecar(cp.note())?;
                }
                cp.note().to_owned()
            }
        };
        let archive = Archive {
            cutoff,
            prefix,
            batch: AuditBatch {
                signer: key.clone(),
                old_size: from,
                proof,
                note,
                entries,
            },
        };
        let bytes = archive.encode()?;
        match std::fs::read(out) {
            // An archive of this log that stopped before removing its entries: written again.
            // Any other file, another log's archive above all, is never overwritten.
            Ok(old) if self.is_unfinished_archive(&old, from, &key) => {}
            Ok(_) => {
                return Err(refused(format!(
                    "`{}` exists and is not an unfinished archive of this log",
                    out.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Storage(format!(
                    "reading `{}`: {e}",
                    out.display()
                )));
            }
        }
        write_durable(out, &bytes)?;
        Ok(Some(PreparedArchive {
            from,
            to,
            sha256: sha256(&bytes),
        }))
    }

    /// Whether `bytes` are an archive of this log (its origin, signed by `key`) that starts
    /// at `from`, the first entry not archived yet, and whose entries the live log still holds:
    /// the file of an archive that stopped before removing them.
    fn is_unfinished_archive(
        &self,
        bytes: &[u8],
        from: u64,
        key: &tianping_core::PublicKey,
    ) -> bool {
        let Ok(archive) = Archive::decode(bytes) else {
            return false;
        };
        if archive.batch.old_size != from {
            return false;
        }
        let Ok(checked) = archive.check(Some(&self.origin()), key) else {
            return false;
        };
        let st = lock(&self.state);
        let live = usize::try_from(checked.from)
            .ok()
            .zip(usize::try_from(checked.to).ok())
            .and_then(|(a, b)| st.leaves.get(a..b));
        st.archived == from && live == Some(checked.leaves.as_slice())
    }

    /// The second step of [`archive`](Self::archive): reads the archive file `out`, checks it
    /// on its own with the log's key, that its cutoff respects `retention` at `now`, that it
    /// starts where the archived entries end, that its entries are the log's and end on a
    /// record boundary; then, in one atomic transaction, replaces those records by their leaf
    /// hashes and records the `audit.archive` event to append. Refuses (removing nothing)
    /// otherwise.
    pub fn archive_remove(
        &self,
        out: &Path,
        now: UnixTime,
        retention: Retention,
    ) -> Result<ArchiveReport, StoreError> {
        if self.mirror {
            return Err(StoreError::IsMirror);
        }
        let bytes = std::fs::read(out)
            .map_err(|e| StoreError::Storage(format!("reading `{}`: {e}", out.display())))?;
        let archive = Archive::decode(&bytes)?;
        retention.check(archive.cutoff, now)?;
        let key = self.pinned_key()?.ok_or(StoreError::NoKey)?;
        let checked = archive.check(Some(&self.origin()), &key)?;
        let (from, to) = (checked.from, checked.to);
        let _guard = lock(&self.checkpoint_lock);
        let mut st = lock(&self.state);
        if from != st.archived {
            return Err(refused(format!(
                "the archive starts at entry `{from}` but the log has `{}` archived",
                st.archived
            )));
        }
        let live = usize::try_from(from)
            .ok()
            .zip(usize::try_from(to).ok())
            .and_then(|(a, b)| st.leaves.get(a..b));
        if live != Some(checked.leaves.as_slice()) {
            return Err(refused("the archive's entries are not the log's"));
        }
        let mut stubs: Vec<(sled::IVec, Vec<u8>)> = Vec::new();
        let mut at = from;
        for item in self.batches.range(key_of(from)..key_of(to)) {
            let (k, v) = item?;
            if index_of(&k) != Some(at) {
                return Err(StoreError::Damaged {
                    index: at,
                    reason: "entries are missing or out of order".into(),
                });
            }
            let opened = record::open(&v, false).map_err(|e| StoreError::Damaged {
                index: at,
                reason: e.into(),
            })?;
            if opened.is_archived() {
                return Err(refused("a record in the range is archived already"));
            }
            let hashes: Vec<Hash> = opened.leaves().collect();
            at += hashes.len() as u64;
            stubs.push((k, record::encode_archived(&hashes)));
        }
        if at != to {
            return Err(refused(format!(
                "the archive ends at entry `{to}`, inside a record (records end at `{at}`)"
            )));
        }
        let hash = sha256(&bytes);
        let mut event = Event::new(now, "audit.archive");
        event.component = "audit".into();
        event.outcome = "success".into();
        event.object = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        event.content_hash = hex::encode(hash);
        for (name, value) in [
            ("from", from),
            ("to", to),
            ("cutoff", archive.cutoff.as_millis()),
            ("retention_days", retention.in_days()),
        ] {
            event.attributes.insert(name.into(), value.to_string());
        }
        let event = event.encode();
        let mut range = Vec::with_capacity(40);
        range.extend_from_slice(&key_of(to));
        range.extend_from_slice(&hash);
        (&self.batches, &self.archives, &self.meta)
            .transaction(|(b, a, m)| {
                for (k, stub) in &stubs {
                    b.insert(k, stub.as_slice())?;
                }
                a.insert(&key_of(from), range.as_slice())?;
                m.insert(PENDING_EVENT, event.as_slice())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| StoreError::Storage(format!("{e:?}")))?;
        self.db.flush()?;
        st.archived = to;
        Ok(ArchiveReport {
            from,
            to,
            sha256: Some(hash),
            event: None,
        })
    }

    /// Appends the `audit.archive` event an archive left to append, if any (a crash may have
    /// stopped it; it may then be appended twice, never lost). Returns its index.
    pub fn append_pending_archive_event(&self) -> Result<Option<u64>, StoreError> {
        if self.mirror {
            return Ok(None);
        }
        let Some(bytes) = self.meta.get(PENDING_EVENT)? else {
            return Ok(None);
        };
        let event = Event::decode(&bytes)?;
        let receipt = self.append(&event)?;
        self.meta.remove(PENDING_EVENT)?;
        self.db.flush()?;
        Ok(Some(receipt.index))
    }
}
