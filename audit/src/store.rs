//! The `sled` store: group commit, checkpoints, reading, proofs, verification and mirrors.
//!
//! Layout of a log folder (one `sled` database, which only one process can open):
//!
//! - tree `batches`: key = the big-endian `u64` index of a record's first entry; value = `0x01`,
//!   a `u32` count, then per entry its 32-byte leaf hash, a `u32` length and its canonical
//!   bytes. A commit group is cut into records of about 16 KiB, written as one atomic `sled`
//!   batch, then one `flush` (fsync) for the whole group.
//!   An archived record (see [`AuditLog::archive`]) keeps only its leaf hashes: `0x02`, a `u32`
//!   count, then count × 32-byte leaf hash; archived records are always a prefix of the tree.
//! - tree `archives`: key = the big-endian `u64` first index of an archive; value = the `u64`
//!   index after its last entry and the SHA-256 of the archive file.
//! - tree `checkpoints`: key = the big-endian `u64` size; value = the signed note.
//! - tree `meta`: `origin`, `kind` (`log` or `mirror`), `key` (the pinned checkpoint key), and
//!   `archive.event` (the `audit.archive` event of an archive, until it is appended).
//! - file `checkpoint.note`: a copy of the latest signed checkpoint, replaced atomically. `sled`
//!   treats a damaged record as the torn end of its log and silently drops it and everything
//!   after it on reopening; this copy, kept outside the database, lets `verify` see that loss.
//!
//! Opening reads the stored leaf hashes into memory (32 bytes per entry) for appends and proofs,
//! without rehashing; [`AuditLog::verify`] recomputes everything from the stored bytes and trusts
//! none of them (the stored hashes only let it name the exact entry whose bytes changed).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use sled::Transactional as _;
use tianping_core::{PublicKey, Signer};

use crate::archive::RetentionError;
use crate::batch::{AuditBatch, BatchError};
use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::event::{Event, EventError};
use crate::merkle::{self, Frontier, Hash, ProofError};
use crate::query::{ConsistencyProof, InclusionProof, Query, Receipt, Record};

mod retention;

pub use retention::{ArchiveReport, PreparedArchive};

const RECORD_VERSION: u8 = 1;
/// An archived record: leaf hashes only.
const RECORD_ARCHIVED: u8 = 2;
const KIND_LOG: &[u8] = b"log";
const KIND_MIRROR: &[u8] = b"mirror";
const SIDECAR: &str = "checkpoint.note";
/// sled's segment size; nodes over a quarter of it go to separate blob files.
const SEGMENT_SIZE: usize = 8 << 20;
/// How many stored bytes `verify` reads before hashing them on every core.
const VERIFY_CHUNK: usize = 8 << 20;
/// The size a stored record is cut at.
const RECORD_TARGET: usize = 16 * 1024;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed (or the folder is open in another process).
    #[error("storage error: {0}")]
    Storage(String),
    /// The folder holds no audit log.
    #[error("`{0}` is not an audit log")]
    NotALog(String),
    /// A log already exists there.
    #[error("`{0}` already holds an audit log")]
    Exists(String),
    /// Appends go to the origin log, never to a mirror.
    #[error("this log is a mirror: it only accepts shipped batches")]
    IsMirror,
    /// Batches go to mirrors only.
    #[error("this log is not a mirror")]
    NotMirror,
    /// The stored log cannot be read from this index on.
    #[error("the stored log is damaged at entry `{index}`: {reason}")]
    Damaged {
        /// The first entry affected.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// Verification found the log altered.
    #[error("verification failed at entry `{index}`: {reason}")]
    Tampered {
        /// The first index that does not verify.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// A commit failed; the log refuses appends until reopened.
    #[error("a commit failed ({0}); reopen the log")]
    Poisoned(String),
    /// An event could not be read.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A checkpoint was refused.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A batch was refused.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A proof could not be made.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A different key than the log's pinned checkpoint key.
    #[error("the log's checkpoints are signed by `{pinned}`, not `{given}`")]
    KeyMismatch {
        /// The key the log pinned with its first checkpoint.
        pinned: String,
        /// The key offered.
        given: String,
    },
    /// Nothing to ship or verify against.
    #[error("no checkpoint covers entry `{0}`; write one with `tianping audit checkpoint`")]
    NoCheckpoint(u64),
    /// Checkpoints exist but no key was given or pinned.
    #[error("no key to check the checkpoints; pass `--key`")]
    NoKey,
    /// The retention setting refused an archive.
    #[error(transparent)]
    Retention(#[from] RetentionError),
    /// The entries asked for were archived.
    #[error(
        "entry `{index}` is archived (the first `{archived}` entries are); read the archive files"
    )]
    Archived {
        /// The entry asked for.
        index: u64,
        /// How many entries are archived.
        archived: u64,
    },
    /// An archive was refused; nothing was removed.
    #[error("archive refused: {0}")]
    ArchiveRefused(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

/// What a successful [`AuditLog::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries in the tree (archived ones included).
    pub entries: u64,
    /// Of those, entries archived: the live log holds only their leaf hashes.
    pub archived: u64,
    /// Of the archived entries, those recomputed from the archive files given.
    pub archived_checked: u64,
    /// The root over all of them.
    pub root: Hash,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The size of the latest checkpoint (entries beyond it are covered by no signature yet).
    pub signed_size: u64,
    /// The key the checkpoints were checked with.
    pub key: Option<PublicKey>,
}

#[derive(Default)]
struct Group {
    /// The index of the group's first entry, or why the commit failed.
    done: OnceLock<Result<u64, String>>,
}

struct State {
    leaves: Vec<Hash>,
    frontier: Frontier,
    pending: Vec<(Vec<u8>, Hash)>,
    group: Arc<Group>,
    committing: bool,
    poisoned: Option<String>,
    damaged: Option<(u64, String)>,
    /// How many leading entries are archived.
    archived: u64,
}

struct AutoCheckpoint {
    signer: Arc<dyn Signer>,
    every: u64,
    last_error: Option<String>,
}

/// An audit log (or a mirror of one) in a folder, open by this process only.
///
/// `append` may be called from many threads at once: appends that arrive while a commit is
/// running are written together as one record with one `flush`, and each call returns only once
/// its events are durable. From async code call it inside `spawn_blocking`.
pub struct AuditLog {
    dir: std::path::PathBuf,
    db: sled::Db,
    batches: sled::Tree,
    checkpoints: sled::Tree,
    meta: sled::Tree,
    archives: sled::Tree,
    mirror: bool,
    origin: Mutex<String>,
    state: Mutex<State>,
    cv: Condvar,
    checkpoint_lock: Mutex<Option<AutoCheckpoint>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.origin())
            .field("mirror", &self.mirror)
            .field("size", &self.size())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (every update is one assignment).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn is_log_folder(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// One stored record, parsed: whether it is archived (its entries' bytes are then empty) and
/// its entries with their stored leaf hashes.
type ParsedRecord<'a> = (bool, Vec<(Hash, &'a [u8])>);

/// One stored group record, parsed.
fn parse_record(value: &[u8]) -> Result<ParsedRecord<'_>, &'static str> {
    let (&version, mut r) = value.split_first().ok_or("empty record")?;
    if version == RECORD_ARCHIVED {
        let count = take_u32(&mut r).ok_or("truncated record")? as usize;
        if Some(r.len()) != count.checked_mul(32) {
            return Err("archived record length does not match its count");
        }
        let out = r
            .chunks_exact(32)
            .map(|h| {
                let mut a = [0u8; 32];
                a.copy_from_slice(h);
                (a, &[][..])
            })
            .collect();
        return Ok((true, out));
    }
    if version != RECORD_VERSION {
        return Err("unknown record version");
    }
    let count = take_u32(&mut r).ok_or("truncated record")? as usize;
    if count.saturating_mul(36) > r.len() {
        return Err("record count larger than the record");
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if r.len() < 32 {
            return Err("truncated record");
        }
        let (h, rest) = r.split_at(32);
        r = rest;
        let h: Hash = h.try_into().map_err(|_| "truncated record")?;
        let len = take_u32(&mut r).ok_or("truncated record")? as usize;
        if r.len() < len {
            return Err("truncated record");
        }
        let (bytes, rest) = r.split_at(len);
        r = rest;
        out.push((h, bytes));
    }
    if !r.is_empty() {
        return Err("bytes after the last entry of a record");
    }
    Ok((false, out))
}

/// The stored form of an archived record: its leaf hashes.
fn encode_archived(leaves: &[Hash]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + 32 * leaves.len());
    v.push(RECORD_ARCHIVED);
    v.extend_from_slice(&(leaves.len() as u32).to_be_bytes());
    for h in leaves {
        v.extend_from_slice(h);
    }
    v
}

fn take_u32(r: &mut &[u8]) -> Option<u32> {
    if r.len() < 4 {
        return None;
    }
    let (h, rest) = r.split_at(4);
    *r = rest;
    Some(u32::from_be_bytes(h.try_into().ok()?))
}

fn encode_record(entries: &[(Vec<u8>, Hash)]) -> Vec<u8> {
    let len: usize = entries.iter().map(|(b, _)| b.len() + 36).sum();
    let mut v = Vec::with_capacity(5 + len);
    v.push(RECORD_VERSION);
    v.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (bytes, h) in entries {
        v.extend_from_slice(h);
        v.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        v.extend_from_slice(bytes);
    }
    v
}

fn key_of(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

impl AuditLog {
    /// Creates a new log named `origin` in `dir` (refuses a folder that already holds one).
    pub fn create(dir: &Path, origin: &str) -> Result<Self, StoreError> {
        if is_log_folder(dir) {
            return Err(StoreError::Exists(dir.display().to_string()));
        }
        // The origin must be usable in a checkpoint before anything is written.
        if origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c == '+') {
            return Err(CheckpointError::Malformed(
                "origin must be non-empty with no spaces or `+`",
            )
            .into());
        }
        let log = Self::open_db(dir)?;
        log.meta.insert("origin", origin.as_bytes())?;
        log.meta.insert("kind", KIND_LOG)?;
        log.db.flush()?;
        Self::load(log)
    }

    /// Opens an existing log or mirror.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if !is_log_folder(dir) {
            return Err(StoreError::NotALog(dir.display().to_string()));
        }
        let log = Self::open_db(dir)?;
        if log.meta.get("kind")?.is_none() {
            return Err(StoreError::NotALog(dir.display().to_string()));
        }
        Self::load(log)
    }

    /// Opens the log in `dir`, creating it with `origin` if the folder holds none.
    pub fn open_or_create(dir: &Path, origin: &str) -> Result<Self, StoreError> {
        if is_log_folder(dir) {
            Self::open(dir)
        } else {
            Self::create(dir, origin)
        }
    }

    /// Opens the mirror in `dir`, creating an empty one if the folder holds none. Its origin
    /// and key are set by the first batch (or by `key` here).
    pub fn open_mirror(dir: &Path, key: Option<&PublicKey>) -> Result<Self, StoreError> {
        let log = if is_log_folder(dir) {
            Self::open(dir)?
        } else {
            let log = Self::open_db(dir)?;
            log.meta.insert("kind", KIND_MIRROR)?;
            log.db.flush()?;
            Self::load(log)?
        };
        if !log.mirror {
            return Err(StoreError::NotMirror);
        }
        if let Some(k) = key {
            match log.pinned_key()? {
                Some(p) if &p != k => {
                    return Err(StoreError::KeyMismatch {
                        pinned: p.to_string(),
                        given: k.to_string(),
                    });
                }
                Some(_) => {}
                None => {
                    log.meta.insert("key", k.to_string().as_bytes())?;
                    log.db.flush()?;
                }
            }
        }
        Ok(log)
    }

    fn open_db(dir: &Path) -> Result<Self, StoreError> {
        // Large segments keep tree nodes in the log instead of one blob file per rewrite.
        let config = sled::Config::new()
            .path(dir)
            .segment_size(SEGMENT_SIZE)
            .mode(sled::Mode::HighThroughput);
        // sled's I/O threads may hold the folder's lock for a moment after the same process
        // closed the log; another process holding it is still refused, after a second.
        let mut tries = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && tries < 50 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let batches = db.open_tree("batches")?;
        let checkpoints = db.open_tree("checkpoints")?;
        let meta = db.open_tree("meta")?;
        let archives = db.open_tree("archives")?;
        Ok(Self {
            dir: dir.to_path_buf(),
            db,
            batches,
            checkpoints,
            meta,
            archives,
            mirror: false,
            origin: Mutex::new(String::new()),
            state: Mutex::new(State {
                leaves: Vec::new(),
                frontier: Frontier::new(),
                pending: Vec::new(),
                group: Arc::new(Group::default()),
                committing: false,
                poisoned: None,
                damaged: None,
                archived: 0,
            }),
            cv: Condvar::new(),
            checkpoint_lock: Mutex::new(None),
        })
    }

    /// Reads the stored leaf hashes (not recomputed: [`verify`](Self::verify) does that).
    fn load(mut self) -> Result<Self, StoreError> {
        self.mirror = self.meta.get("kind")?.as_deref() == Some(KIND_MIRROR);
        if let Some(o) = self.meta.get("origin")? {
            *lock(&self.origin) = String::from_utf8_lossy(&o).into_owned();
        }
        let mut leaves = Vec::new();
        let mut frontier = Frontier::new();
        let mut damaged = None;
        let mut archived = 0u64;
        for item in self.batches.iter() {
            let (k, v) = item?;
            let at = leaves.len() as u64;
            if index_of(&k) != Some(at) {
                damaged = Some((
                    at,
                    "a group of entries is missing or out of place".to_owned(),
                ));
                break;
            }
            match parse_record(&v) {
                Ok((is_archived, entries)) => {
                    if is_archived {
                        if archived != at {
                            damaged = Some((at, "an archived record after retained ones".into()));
                            break;
                        }
                        archived += entries.len() as u64;
                    }
                    for (h, _) in entries {
                        leaves.push(h);
                        frontier.push(h);
                    }
                }
                Err(e) => {
                    damaged = Some((at, e.to_owned()));
                    break;
                }
            }
        }
        {
            let st = self
                .state
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            st.leaves = leaves;
            st.frontier = frontier;
            st.damaged = damaged;
            st.archived = archived;
        }
        Ok(self)
    }

    /// The log's origin (the first line of its checkpoints); empty for a new mirror.
    pub fn origin(&self) -> String {
        lock(&self.origin).clone()
    }

    /// Whether this is a mirror.
    pub fn is_mirror(&self) -> bool {
        self.mirror
    }

    /// The number of durable entries.
    pub fn size(&self) -> u64 {
        lock(&self.state).leaves.len() as u64
    }

    /// The root over all durable entries.
    pub fn root(&self) -> Hash {
        lock(&self.state).frontier.root()
    }

    /// The root of the tree of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        let st = lock(&self.state);
        let n = usize::try_from(size).ok().filter(|n| *n <= st.leaves.len());
        let n = n.ok_or(ProofError::IndexOutOfRange {
            index: size,
            size: st.leaves.len() as u64,
        })?;
        Ok(merkle::root_of(st.leaves.get(..n).unwrap_or_default()))
    }

    /// The leaf hash of entry `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let st = lock(&self.state);
        usize::try_from(index)
            .ok()
            .and_then(|i| st.leaves.get(i).copied())
    }

    /// The key the log's checkpoints are signed with (pinned by the first checkpoint).
    pub fn pinned_key(&self) -> Result<Option<PublicKey>, StoreError> {
        let Some(v) = self.meta.get("key")? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&v);
        text.parse()
            .map(Some)
            .map_err(|_| StoreError::Storage("the stored checkpoint key is unreadable".into()))
    }

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
        let encoded: Vec<(Vec<u8>, Hash)> = events
            .iter()
            .map(|e| {
                let b = e.encode();
                let h = merkle::leaf_hash(&b);
                (b, h)
            })
            .collect();
        let hashes: Vec<Hash> = encoded.iter().map(|(_, h)| *h).collect();
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
        let offset = st.pending.len() as u64;
        st.pending.extend(encoded);
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
            let this = std::mem::take(&mut st.group);
            let first = st.leaves.len() as u64;
            drop(st);
            let result = self.write_group(first, &batch);
            st = lock(&self.state);
            st.committing = false;
            match result {
                Ok(()) => {
                    for (_, h) in &batch {
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
                    let _ = st.group.done.set(Err(msg));
                }
            }
            self.cv.notify_all();
            drop(st);
            self.auto_checkpoint();
            st = lock(&self.state);
        }
    }

    fn write_group(&self, first: u64, batch: &[(Vec<u8>, Hash)]) -> Result<(), StoreError> {
        // A group becomes records of at most `RECORD_TARGET` bytes, written as one atomic sled
        // batch: sled rewrites a whole tree node per change, so huge values cost quadratically.
        let mut sb = sled::Batch::default();
        let mut at = first;
        let mut start = 0;
        let mut bytes = 0;
        for (i, (b, _)) in batch.iter().enumerate() {
            bytes += b.len() + 36;
            if bytes >= RECORD_TARGET || i + 1 == batch.len() {
                let part = batch.get(start..=i).unwrap_or_default();
                sb.insert(&key_of(at), encode_record(part));
                at += part.len() as u64;
                start = i + 1;
                bytes = 0;
            }
        }
        self.batches.apply_batch(sb)?;
        self.db.flush()?;
        Ok(())
    }

    /// Signs a checkpoint every `every` entries from now on, from the thread that commits.
    pub fn set_auto_checkpoint(&self, signer: Arc<dyn Signer>, every: u64) {
        *lock(&self.checkpoint_lock) = Some(AutoCheckpoint {
            signer,
            every: every.max(1),
            last_error: None,
        });
    }

    /// Why the last automatic checkpoint failed, if it did.
    pub fn auto_checkpoint_error(&self) -> Option<String> {
        lock(&self.checkpoint_lock)
            .as_ref()
            .and_then(|a| a.last_error.clone())
    }

    fn auto_checkpoint(&self) {
        let mut guard = lock(&self.checkpoint_lock);
        let Some(auto) = guard.as_mut() else {
            return;
        };
        let last = self.latest_size().unwrap_or(0);
        if self.size() >= last.saturating_add(auto.every) {
            let signer = auto.signer.clone();
            auto.last_error = self
                .checkpoint_locked(signer.as_ref())
                .err()
                .map(|e| e.to_string());
        }
    }

    fn latest_size(&self) -> Result<u64, StoreError> {
        Ok(match self.checkpoints.last()? {
            Some((k, _)) => index_of(&k).unwrap_or(0),
            None => 0,
        })
    }

    /// Signs and stores a checkpoint of every durable entry (the first one pins the key; later
    /// ones must use the same key). Returns the latest checkpoint if nothing was added since.
    pub fn checkpoint(&self, signer: &dyn Signer) -> Result<SignedCheckpoint, StoreError> {
        let _guard = lock(&self.checkpoint_lock);
        self.checkpoint_locked(signer)
    }

    fn checkpoint_locked(&self, signer: &dyn Signer) -> Result<SignedCheckpoint, StoreError> {
        if self.mirror {
            return Err(StoreError::IsMirror);
        }
        let key = signer.public_key();
        match self.pinned_key()? {
            Some(p) if p != key => {
                return Err(StoreError::KeyMismatch {
                    pinned: p.to_string(),
                    given: key.to_string(),
                });
            }
            _ => {}
        }
        let (size, root) = {
            let st = lock(&self.state);
            (st.leaves.len() as u64, st.frontier.root())
        };
        if let Some((k, v)) = self.checkpoints.last()? {
            if index_of(&k) == Some(size) {
                let note = String::from_utf8_lossy(&v).into_owned();
                return Ok(SignedCheckpoint::verify(&note, &key)?);
            }
        }
        let cp = Checkpoint {
            origin: self.origin(),
            size,
            root,
        }
        .sign(signer)?;
        self.meta.insert("key", key.to_string().as_bytes())?;
        self.checkpoints
            .insert(key_of(size), cp.note().as_bytes())?;
        self.db.flush()?;
        self.write_sidecar(cp.note())?;
        Ok(cp)
    }

    /// Replaces `checkpoint.note` atomically (write, sync, rename, sync the folder).
    fn write_sidecar(&self, note: &str) -> Result<(), StoreError> {
        use std::io::Write as _;
        let io = |e: std::io::Error| StoreError::Storage(format!("writing `{SIDECAR}`: {e}"));
        let tmp = self.dir.join(format!("{SIDECAR}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(note.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, self.dir.join(SIDECAR)).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// The copy of the latest checkpoint kept beside the database, if any.
    fn read_sidecar(&self) -> Result<Option<String>, StoreError> {
        match std::fs::read(self.dir.join(SIDECAR)) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Storage(format!("reading `{SIDECAR}`: {e}"))),
        }
    }

    /// Every stored checkpoint note, oldest first, with its size (unverified).
    pub fn checkpoint_notes(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let mut out = Vec::new();
        for item in self.checkpoints.iter() {
            let (k, v) = item?;
            let size = index_of(&k).ok_or_else(|| StoreError::Tampered {
                index: 0,
                reason: "a checkpoint key is malformed".into(),
            })?;
            out.push((size, String::from_utf8_lossy(&v).into_owned()));
        }
        Ok(out)
    }

    /// The inclusion proof of entry `index` in the tree of the first `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let st = lock(&self.state);
        Ok(merkle::inclusion_proof(&st.leaves, index, size)?)
    }

    /// The consistency proof from size `first` to size `second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, StoreError> {
        let st = lock(&self.state);
        Ok(merkle::consistency_proof(&st.leaves, first, second)?)
    }

    /// The signed checkpoint note of exactly `size` entries, if the log has one.
    pub fn checkpoint_note_at(&self, size: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .checkpoints
            .get(key_of(size))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// A self-contained inclusion proof of entry `index` in the tree of `size` entries, with
    /// the checkpoint of that size when there is one.
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<InclusionProof, StoreError> {
        let (proof, root, leaf) = {
            let st = lock(&self.state);
            let proof = merkle::inclusion_proof(&st.leaves, index, size)?;
            let n = usize::try_from(size).unwrap_or(usize::MAX);
            let root = merkle::root_of(st.leaves.get(..n).unwrap_or_default());
            let leaf = usize::try_from(index)
                .ok()
                .and_then(|i| st.leaves.get(i).copied())
                .ok_or(ProofError::IndexOutOfRange { index, size })?;
            (proof, root, leaf)
        };
        Ok(InclusionProof {
            index,
            size,
            leaf,
            root,
            proof,
            checkpoint: self.checkpoint_note_at(size)?,
        })
    }

    /// A self-contained consistency proof from `from` to `to` entries, with the checkpoints
    /// of those sizes when there are some.
    pub fn prove_consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, StoreError> {
        let proof = self.consistency_proof(from, to)?;
        Ok(ConsistencyProof {
            from,
            to,
            old_root: self.root_at(from)?,
            new_root: self.root_at(to)?,
            proof,
            old_checkpoint: self.checkpoint_note_at(from)?,
            new_checkpoint: self.checkpoint_note_at(to)?,
        })
    }

    /// Reads entries in order from index `from`, with their stored leaf hashes.
    pub fn entries(&self, from: u64) -> Entries {
        // Start at the group that holds `from`.
        let start = self
            .batches
            .range(..=key_of(from))
            .next_back()
            .and_then(Result::ok)
            .and_then(|(k, _)| index_of(&k))
            .unwrap_or(0);
        Entries {
            iter: self.batches.range(key_of(start)..),
            buffered: Vec::new().into_iter(),
            from,
            next: start,
            failed: false,
        }
    }

    /// The entry at `index`.
    pub fn get(&self, index: u64) -> Result<Option<Record>, StoreError> {
        match self.entries(index).next() {
            Some(Ok(r)) if r.index == index => Ok(Some(r)),
            Some(Err(e)) => Err(e),
            _ => Ok(None),
        }
    }

    /// The entries matching `query`, in order.
    pub fn search<'a>(
        &'a self,
        query: &'a Query,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + 'a {
        self.entries(0)
            .filter(move |r| r.as_ref().map_or(true, |r| query.matches(&r.event)))
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
        if !archives.is_empty() {
            let key = key.as_ref().ok_or(StoreError::NoKey)?;
            for (n, a) in archives.iter().enumerate() {
                let checked = a
                    .check(Some(&origin), key)
                    .map_err(|e| StoreError::Tampered {
                        index: a.batch.old_size,
                        reason: format!("archive file {}: {e}", n + 1),
                    })?;
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
        // A reader thread takes records in chunks and hashes and checks their entries on every
        // core, while this thread folds the previous chunk into the tree in order, so the first
        // bad index is the one reported.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
        let batches = self.batches.clone();
        std::thread::scope(|scope| -> Result<(), StoreError> {
            scope.spawn(move || read_chunks(batches, workers, tx));
            for chunk in rx {
                for (stored_hash, result, is_archived) in chunk.entries {
                    let i = tree.size();
                    let h = result.map_err(|reason| StoreError::Tampered { index: i, reason })?;
                    if h != stored_hash {
                        return Err(StoreError::Tampered {
                            index: i,
                            reason: "the stored bytes do not match their leaf hash".into(),
                        });
                    }
                    if is_archived {
                        if archived != i {
                            return Err(StoreError::Tampered {
                                index: i,
                                reason: "an archived entry after retained ones".into(),
                            });
                        }
                        archived += 1;
                    }
                    if let Some(a) = from_archives.get(&i) {
                        if *a != h {
                            return Err(StoreError::Tampered {
                                index: i,
                                reason:
                                    "the archive file's entry does not match the log's leaf hash"
                                        .into(),
                            });
                        }
                        if is_archived {
                            archived_checked += 1;
                        }
                    }
                    tree.push(h);
                    for (end, root) in &archive_roots {
                        if *end == tree.size() && *root != tree.root() {
                            return Err(StoreError::Tampered {
                                index: i,
                                reason: format!(
                                    "the log's root at size `{end}` is not the archive's"
                                ),
                            });
                        }
                    }
                    check(&tree, &mut next_cp, &mut last_ok)?;
                    if tree.size() % 65_536 == 0 {
                        progress(tree.size(), stored);
                    }
                }
                if let Some(e) = chunk.stop {
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
        for (from, to, _) in self.archives()? {
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
        let record = encode_record(&group);
        let cp_origin = cp.checkpoint().origin.clone();
        let key_text = key.to_string();
        (&self.batches, &self.checkpoints, &self.meta)
            .transaction(|(b, c, m)| {
                if !group.is_empty() {
                    b.insert(&key_of(batch.old_size), record.as_slice())?;
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

/// Why the reader stopped early.
enum ChunkStop {
    Storage(StoreError),
    /// A record out of place or unreadable, at the index after the chunk's entries.
    Bad(String),
}

/// Entries read, hashed and checked by the verification reader.
struct Chunk {
    /// Per entry: the stored leaf hash, the recomputed one, whether it is archived.
    entries: Vec<(Hash, Result<Hash, String>, bool)>,
    stop: Option<ChunkStop>,
}

/// Reads every record in order, hashes and checks entries on `workers` threads, and sends them
/// in chunks; stops at the first record it cannot place or read (or when the receiver is gone).
fn read_chunks(batches: sled::Tree, workers: usize, tx: std::sync::mpsc::SyncSender<Chunk>) {
    let mut iter = batches.iter();
    let mut next_at = 0u64;
    loop {
        let mut records: Vec<sled::IVec> = Vec::new();
        let mut bytes = 0usize;
        let mut stop = None;
        let mut end = false;
        while bytes < VERIFY_CHUNK {
            match iter.next() {
                Some(Ok((k, v))) => {
                    if index_of(&k) != Some(next_at) {
                        stop = Some(ChunkStop::Bad("entries are missing or out of order".into()));
                        break;
                    }
                    // The count in the header places the next record; a record whose body
                    // does not parse is found below.
                    let count = v
                        .get(1..5)
                        .and_then(|c| c.try_into().ok())
                        .map_or(0, u32::from_be_bytes);
                    next_at += u64::from(count);
                    bytes += v.len();
                    records.push(v);
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
        let mut entries: Vec<(Hash, &[u8], bool)> = Vec::new();
        for v in &records {
            match parse_record(v) {
                Ok((archived, e)) => entries.extend(e.into_iter().map(|(h, b)| (h, b, archived))),
                Err(e) => {
                    stop = Some(ChunkStop::Bad(e.to_owned()));
                    break;
                }
            }
        }
        let per = entries.len().div_ceil(workers).max(1);
        let computed: Vec<(Hash, Result<Hash, String>, bool)> = std::thread::scope(|scope| {
            let handles: Vec<_> = entries
                .chunks(per)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(stored, bytes, archived)| {
                                if *archived {
                                    return (*stored, Ok(*stored), true);
                                }
                                let r = Event::validate(bytes)
                                    .map(|()| merkle::leaf_hash(bytes))
                                    .map_err(|e| format!("not a canonical event: {e}"));
                                (*stored, r, false)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![([0; 32], Err("a verification thread failed".into()), false)]
                    })
                })
                .collect()
        });
        let last = stop.is_some() || end;
        if tx
            .send(Chunk {
                entries: computed,
                stop,
            })
            .is_err()
            || last
        {
            return;
        }
    }
}

/// Entries of a log in order (see [`AuditLog::entries`]).
pub struct Entries {
    iter: sled::Iter,
    buffered: std::vec::IntoIter<Result<Record, StoreError>>,
    from: u64,
    next: u64,
    failed: bool,
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries").field("next", &self.next).finish()
    }
}

impl Iterator for Entries {
    type Item = Result<Record, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            match self.buffered.next() {
                Some(Ok(r)) if r.index < self.from => continue,
                Some(Ok(r)) => return Some(Ok(r)),
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                None => {}
            }
            let (k, v) = match self.iter.next()? {
                Ok(kv) => kv,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e.into()));
                }
            };
            let at = self.next;
            let damaged = |reason: String| StoreError::Damaged { index: at, reason };
            if index_of(&k) != Some(at) {
                self.failed = true;
                return Some(Err(damaged("entries are missing or out of order".into())));
            }
            let parsed = match parse_record(&v) {
                Ok((false, p)) => p,
                Ok((true, p)) => {
                    // Archived: only leaf hashes are left here.
                    self.next = at + p.len() as u64;
                    continue;
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(damaged(e.into())));
                }
            };
            let mut out = Vec::with_capacity(parsed.len());
            for (i, (leaf, bytes)) in parsed.into_iter().enumerate() {
                let index = at + i as u64;
                match Event::decode(bytes) {
                    Ok(event) => out.push(Ok(Record { index, leaf, event })),
                    Err(e) => {
                        // Yield what decoded, then the error.
                        out.push(Err(StoreError::Damaged {
                            index,
                            reason: e.to_string(),
                        }));
                        break;
                    }
                }
            }
            self.next = at + out.len() as u64;
            self.buffered = out.into_iter();
        }
    }
}
