//! The `sled` store: group commit, checkpoints, reading, proofs, verification and mirrors.
//!
//! Layout of a log folder (one `sled` database, which only one process can open):
//!
//! - tree `batches`: key = the big-endian `u64` index of a record's first entry; value = a
//!   record of consecutive entries (see `record.rs`): a packed record holds the entries' leaf
//!   hashes as they are and their canonical bytes as one LZ4 block. A commit group is cut into
//!   records of about 64 KiB before packing, written as one atomic `sled` batch, then one
//!   `flush` (fsync) for the whole group.
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
use crate::event::{Event, EventError, MAX_EVENT_BYTES};
use crate::merkle::{self, Frontier, Hash, ProofError};
use crate::query::{ConsistencyProof, InclusionProof, Query, Receipt, Record};
use crate::record;

mod retention;

pub use retention::{ArchiveReport, PreparedArchive};

const KIND_LOG: &[u8] = b"log";
const KIND_MIRROR: &[u8] = b"mirror";
const SIDECAR: &str = "checkpoint.note";
/// sled's segment size; nodes over a quarter of it go to separate blob files.
const SEGMENT_SIZE: usize = 8 << 20;
/// Encoding buffers kept for reuse, and the largest kept: at most 32 MiB held.
const SPARE_BUFFERS: usize = 16;
const SPARE_CAPACITY: usize = 2 << 20;
/// The entry bytes a stored record is cut at (before packing: see [`crate::record`]).
const RECORD_TARGET: usize = 64 * 1024;

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

/// The events of one `append_many` call, encoded back to back.
struct Encoded {
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

struct State {
    leaves: Vec<Hash>,
    frontier: Frontier,
    /// Calls waiting for the next commit, and how many events they hold.
    pending: Vec<Encoded>,
    pending_len: u64,
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
    /// Encoding buffers of committed calls, reused by the next ones: a fresh buffer of a few
    /// hundred KiB costs the kernel a page fault and a zeroed page per 4 KiB.
    spare: Mutex<Vec<Vec<u8>>>,
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

/// Adds entries to `packer`, handing each record that reaches [`RECORD_TARGET`] bytes to `emit`
/// (its entry count and stored value); the rest stays in the packer.
fn pack_entries<'a>(
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
fn pack_rest(packer: &mut record::Packer, emit: &mut impl FnMut(u64, &[u8])) {
    if packer.len() > 0 {
        let n = packer.len() as u64;
        emit(n, packer.finish());
    }
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
                pending_len: 0,
                group: Arc::new(Group::default()),
                committing: false,
                poisoned: None,
                damaged: None,
                archived: 0,
            }),
            cv: Condvar::new(),
            checkpoint_lock: Mutex::new(None),
            spare: Mutex::new(Vec::new()),
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
            // Leaf hashes only: packed bodies stay packed until read or verified.
            match record::open(&v, false) {
                Ok(rec) => {
                    if rec.is_archived() {
                        if archived != at {
                            damaged = Some((at, "an archived record after retained ones".into()));
                            break;
                        }
                        archived += rec.len() as u64;
                    }
                    for h in rec.leaves() {
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

    /// The latest stored checkpoint note with its size (unverified).
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        let Some((k, v)) = self.checkpoints.last()? else {
            return Ok(None);
        };
        let size = index_of(&k).ok_or_else(|| StoreError::Tampered {
            index: 0,
            reason: "a checkpoint key is malformed".into(),
        })?;
        Ok(Some((size, String::from_utf8_lossy(&v).into_owned())))
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
            let from = (at - first) as usize;
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
            let opened = match record::open(&v, true) {
                Ok(r) if r.is_archived() => {
                    // Archived: only leaf hashes are left here.
                    self.next = at + r.len() as u64;
                    continue;
                }
                Ok(r) => r,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(damaged(e.into())));
                }
            };
            let parsed = match opened.entries() {
                Ok(p) => p,
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
