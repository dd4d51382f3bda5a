//! The `sled` store: opening, checkpoints and proofs here; group commit and queued appends in
//! `commit`, reading in `entries`, verification in `verify`, shipping and mirrors in `mirror`,
//! archives in `retention`.
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
//!   A mirror stores each shipped batch cut into records the same way; records past its latest
//!   checkpoint are what a crash left of a batch still being stored, removed on opening.
//! - tree `archives`: key = the big-endian `u64` first index of an archive; value = the `u64`
//!   index after its last entry and the SHA-256 of the archive file.
//! - tree `checkpoints`: key = the big-endian `u64` size; value = the signed note.
//! - tree `meta`: `origin`, `kind` (`log` or `mirror`), `key` (the pinned checkpoint key),
//!   `signer.cert` (the DER certificate of that key, when recorded), and `archive.event` (the
//!   `audit.archive` event of an archive, until it is appended).
//! - file `checkpoint.note`: a copy of the latest signed checkpoint, replaced atomically. `sled`
//!   treats a damaged record as the torn end of its log and silently drops it and everything
//!   after it on reopening; this copy, kept outside the database, lets `verify` see that loss.
//!
//! Opening reads the stored leaf hashes into memory (32 bytes per entry) for appends and proofs,
//! without rehashing; [`AuditLog::verify`] recomputes everything from the stored bytes and trusts
//! none of them (the stored hashes only let it name the exact entry whose bytes changed).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tianping_core::{PublicKey, Signer};

use crate::archive::RetentionError;
use crate::batch::BatchError;
use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::event::EventError;
use crate::merkle::{self, Frontier, Hash, ProofError};
use crate::query::{ConsistencyProof, InclusionProof};
use crate::record;

mod commit;
mod entries;
mod mirror;
mod retention;
mod verify;

pub use commit::{Durable, Queued};
use commit::{Encoded, Group};
pub use entries::Entries;
pub use verify::KeyTrust;

pub use retention::{ArchiveReport, PreparedArchive};

const KIND_LOG: &[u8] = b"log";
const KIND_MIRROR: &[u8] = b"mirror";
const SIDECAR: &str = "checkpoint.note";
/// sled's segment size; nodes over a quarter of it go to separate blob files.
const SEGMENT_SIZE: usize = 8 << 20;
/// Encoding buffers of large calls kept for reuse, and the largest kept: at most 32 MiB held.
const SPARE_BUFFERS: usize = 16;
const SPARE_CAPACITY: usize = 2 << 20;
/// Encodings of small calls (a request's event) kept for reuse, and the largest kept: at most
/// 4 MiB held, as many as a commit group of a busy gateway's requests (a few hundred in 20 ms).
const SMALL_SPARES: usize = 1024;
const SMALL_SPARE_CAPACITY: usize = 4 << 10;
/// The entry bytes a stored record is cut at (before packing: see [`crate::record`]).
const RECORD_TARGET: usize = 64 * 1024;
/// The longest a queued event waits for its commit to start, by default.
const QUEUE_WINDOW: std::time::Duration = std::time::Duration::from_millis(20);

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// Another process has the log open (it holds the folder's lock): nothing was read.
    #[error(
        "the log `{0}` is open in another process (it holds the folder's lock): try again once it is closed, or ask the process that owns it"
    )]
    Busy(String),
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
    /// An entry past the end of the log was asked for.
    #[error("entry `{index}` is beyond the log, which holds `{size}` entries")]
    BeyondLog {
        /// The entry asked for.
        index: u64,
        /// How many entries the log holds.
        size: u64,
    },
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
    /// The caller's trust refused the key the log's checkpoints are signed with.
    #[error("the log's checkpoints are signed by `{key}`, which is not trusted: {reason}")]
    UntrustedKey {
        /// The log's checkpoint key.
        key: String,
        /// Why the caller refused it.
        reason: String,
    },
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

struct State {
    leaves: Vec<Hash>,
    frontier: Frontier,
    /// Calls waiting for the next commit, and how many events they hold.
    pending: Vec<Encoded>,
    pending_len: u64,
    /// Entries of the group being committed.
    in_flight: u64,
    /// When the oldest queued event still pending was queued.
    queued_since: Option<std::time::Instant>,
    /// Whether a prompt append waits: the queue's committer then commits without a window.
    prompt: bool,
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
/// its events are durable. From async code use [`AuditLog::append_prompt`] and await
/// [`Queued::durable`] instead.
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
    /// The encodings of committed calls, reused by the next ones.
    spare: Mutex<commit::Spares>,
    /// The longest a queued event waits for its commit to start.
    queue_window: Mutex<std::time::Duration>,
    /// Whether the queue's committer thread runs.
    flusher: std::sync::atomic::AtomicBool,
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.commit_queued_on_drop();
    }
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
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    return Err(StoreError::Busy(dir.display().to_string()));
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
                in_flight: 0,
                queued_since: None,
                prompt: false,
                group: Arc::new(Group::default()),
                committing: false,
                poisoned: None,
                damaged: None,
                archived: 0,
            }),
            cv: Condvar::new(),
            checkpoint_lock: Mutex::new(None),
            spare: Mutex::new(commit::Spares::default()),
            queue_window: Mutex::new(QUEUE_WINDOW),
            flusher: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Reads the stored leaf hashes (not recomputed: [`verify`](Self::verify) does that).
    fn load(mut self) -> Result<Self, StoreError> {
        self.mirror = self.meta.get("kind")?.as_deref() == Some(KIND_MIRROR);
        if let Some(o) = self.meta.get("origin")? {
            *lock(&self.origin) = String::from_utf8_lossy(&o).into_owned();
        }
        if self.mirror {
            if let Some(signed) = self.unfinished_batch()? {
                self.remove_from(signed)?;
            }
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
}
