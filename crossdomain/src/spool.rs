//! The sender's durable spool (feature `daemon`): payload bytes in files, state in `sled`.
//!
//! A submission is written to a staging file, fsynced, given the link's next transfer id (kept
//! in `sled`, flushed), renamed to its place and the folder fsynced, and only then is its id
//! returned: an id once returned is never lost by a crash of the sender. Ids on a link are
//! consecutive from 1; an id taken by a submission that crashed before its rename is a gap the
//! receiver reports lost, which nobody was told of. Every [`Spool::open`] takes a fresh epoch,
//! and [`Spool::pending`] gives back every transfer not yet sent in full, so a restart resumes
//! them all. A transfer leaves the spool when its last datagram was sent ([`Spool::sent`]).
//!
//! Retention: [`Spool::sent_retained`] moves a sent transfer's file into `retained/` instead of
//! deleting it, with the time it may go (the link's `retain` in `fabric.toml`, 24 hours by
//! default), and [`Spool::prune`] deletes what has expired. A one-way link cannot tell the
//! sender that a receiver was not running; within the window an operator can send the
//! retained transfers again ([`Spool::resend`]): each one is spooled anew under the link's next
//! id (a hard link, no copy), since the receiver has already ended the old id (reported it
//! lost) and never hands on an id twice.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tianping_core::UnixTime;

use crate::TransferSource;
use crate::record::TransferRecord;

/// Why the spool or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file could not be read or written.
    #[error("spool file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The state database failed.
    #[error("spool state: {0}")]
    State(#[from] sled::Error),
    /// A transfer the link refuses.
    #[error("transfer refused: {0}")]
    Refused(&'static str),
    /// The caller's record of the transfer (its audit event) could not be made durable, so
    /// the transfer was not spooled to be sent.
    #[error("the transfer could not be recorded: {0}")]
    NotRecorded(String),
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Fsyncs a folder so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

pub(crate) fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = bytes.get(..8) {
        b.copy_from_slice(src);
    }
    u64::from_be_bytes(b)
}

/// Increments the counter at `key` in `tree`, returning the new value.
pub(crate) fn bump(tree: &sled::Tree, key: &[u8]) -> Result<u64, SpoolError> {
    let new = tree.update_and_fetch(key, |old| {
        let n = old.map_or(0, be_u64).saturating_add(1);
        Some(n.to_be_bytes().to_vec())
    })?;
    Ok(new.as_deref().map_or(0, be_u64))
}

pub(crate) fn link_key(link: u32, id: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    let (l, i) = k.split_at_mut(4);
    l.copy_from_slice(&link.to_be_bytes());
    i.copy_from_slice(&id.to_be_bytes());
    k
}

/// A sender's spool in one folder.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    db: sled::Db,
    /// link ++ id → length, for every transfer not yet sent in full.
    pending: sled::Tree,
    /// link ++ id → (when it may go, milliseconds since the epoch; length), for every transfer sent
    /// and kept for a resend.
    retained: sled::Tree,
    epoch: u64,
}

/// A sent transfer kept for a resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    /// Its id.
    pub id: u64,
    /// Its length in bytes.
    pub len: u64,
    /// When it may be deleted.
    pub expires: UnixTime,
}

/// Opens the sled database at `path`. sled's I/O threads may hold the folder's lock for a
/// moment after the same process closed it; another process holding it is still refused,
/// after a second.
pub(crate) fn open_db(path: &Path) -> Result<sled::Db, sled::Error> {
    let mut tries = 0;
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && tries < 50 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            done => return done,
        }
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, taking a fresh epoch.
    pub fn open(dir: &Path) -> Result<Self, SpoolError> {
        for sub in ["payloads", "retained"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        let db = open_db(&dir.join("state"))?;
        let pending = db.open_tree("pending")?;
        let retained = db.open_tree("retained")?;
        let epoch = bump(&db, b"epoch")?;
        db.flush()?;
        let spool = Self {
            dir: dir.to_path_buf(),
            db,
            pending,
            retained,
            epoch,
        };
        spool.reconcile()?;
        Ok(spool)
    }

    /// A named tree of the spool's database (the sender's counters and held transfers).
    pub(crate) fn tree(&self, name: &str) -> Result<sled::Tree, SpoolError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Makes every change to the spool's database durable.
    pub(crate) fn flush(&self) -> Result<(), SpoolError> {
        self.db.flush()?;
        Ok(())
    }

    /// The spool's folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// This start's epoch: never used by an earlier start of this spool.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn payload(&self, link: u32, id: u64) -> PathBuf {
        self.dir.join("payloads").join(format!("{link}-{id}"))
    }

    fn retained_path(&self, link: u32, id: u64) -> PathBuf {
        self.dir.join("retained").join(format!("{link}-{id}"))
    }

    /// Payload files renamed into place whose entry a crash kept from `sled` are entered now
    /// (their id may have been returned); entries without a file are dropped; staging files
    /// are removed.
    fn reconcile(&self) -> Result<(), SpoolError> {
        let payloads = self.dir.join("payloads");
        for entry in fs::read_dir(&payloads).map_err(io_at(&payloads))? {
            let entry = entry.map_err(io_at(&payloads))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let parsed = name
                .split_once('-')
                .and_then(|(l, i)| Some((l.parse::<u32>().ok()?, i.parse::<u64>().ok()?)));
            match parsed {
                Some((link, id)) => {
                    let len = entry.metadata().map_err(io_at(&entry.path()))?.len();
                    self.pending
                        .insert(link_key(link, id), &len.to_be_bytes())?;
                }
                None => fs::remove_file(entry.path()).map_err(io_at(&entry.path()))?,
            }
        }
        for item in self.pending.iter() {
            let (key, _) = item?;
            let (link, id) = split_key(&key);
            if !self.payload(link, id).exists() {
                self.pending.remove(&key)?;
            }
        }
        // A retained file a crash kept from `sled` is kept for a day; an entry without its
        // file is dropped.
        let kept = self.dir.join("retained");
        for entry in fs::read_dir(&kept).map_err(io_at(&kept))? {
            let entry = entry.map_err(io_at(&kept))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let parsed = name
                .split_once('-')
                .and_then(|(l, i)| Some((l.parse::<u32>().ok()?, i.parse::<u64>().ok()?)));
            match parsed {
                Some((link, id)) if !self.retained.contains_key(link_key(link, id))? => {
                    let len = entry.metadata().map_err(io_at(&entry.path()))?.len();
                    let until = UnixTime::from_system_time(std::time::SystemTime::now())
                        .saturating_add(std::time::Duration::from_secs(86_400))
                        .as_millis();
                    self.retained
                        .insert(link_key(link, id), &retained_value(until, len))?;
                }
                Some(_) => {}
                None => fs::remove_file(entry.path()).map_err(io_at(&entry.path()))?,
            }
        }
        for item in self.retained.iter() {
            let (key, _) = item?;
            let (link, id) = split_key(&key);
            if !self.retained_path(link, id).exists() {
                self.retained.remove(&key)?;
            }
        }
        self.db.flush()?;
        Ok(())
    }

    /// Spools the bytes read from `payload` for `link` durably and returns their transfer id.
    pub fn submit(&self, link: u32, payload: &mut dyn Read) -> Result<u64, SpoolError> {
        let staging = self.staging()?;
        let len = {
            let mut file = File::create(&staging).map_err(io_at(&staging))?;
            let len = io::copy(payload, &mut file).map_err(io_at(&staging))?;
            file.flush().map_err(io_at(&staging))?;
            file.sync_all().map_err(io_at(&staging))?;
            len
        };
        self.commit(link, &staging, len)
    }

    /// A fresh staging path in the spool's folder, for a caller that writes a submission
    /// itself (an async body): it writes and fsyncs the file there, then calls
    /// [`commit`](Self::commit). A staging file left by a crash is removed at the next open.
    pub fn staging(&self) -> Result<PathBuf, SpoolError> {
        Ok(self.dir.join("payloads").join(format!(
            "staging.{}.{}",
            self.epoch,
            bump(&self.db, b"staging")?
        )))
    }

    /// Gives the fsynced staging file `staging` of `len` bytes the next id of `link`, renames it
    /// into place and returns the id once all of it is durable. An empty file is refused (and
    /// removed).
    pub fn commit(&self, link: u32, staging: &Path, len: u64) -> Result<u64, SpoolError> {
        self.commit_recorded(link, staging, len, None)
    }

    /// [`commit`](Self::commit), entering `record` (what the transfer is, for a look-up by its
    /// id) in the same flush as the transfer's entry.
    pub fn commit_recorded(
        &self,
        link: u32,
        staging: &Path,
        len: u64,
        record: Option<&TransferRecord>,
    ) -> Result<u64, SpoolError> {
        self.commit_audited(link, staging, len, record, &mut |_| Ok(()))
    }

    /// [`commit_recorded`](Self::commit_recorded), calling `audit` with the transfer's id once
    /// its bytes are in place and *before* it waits to be sent: a sender records its decision
    /// there (durably, naming the id), so nothing is ever sent that its log does not hold. When
    /// `audit` fails, the transfer is not spooled (its bytes are removed, its id stays unused).
    /// A crash after `audit` and before the transfer waits leaves a decision recorded and
    /// nothing sent: a transfer the reconciliation finds lost, never one sent unrecorded.
    pub fn commit_audited(
        &self,
        link: u32,
        staging: &Path,
        len: u64,
        record: Option<&TransferRecord>,
        audit: &mut dyn FnMut(u64) -> Result<(), String>,
    ) -> Result<u64, SpoolError> {
        if len == 0 {
            fs::remove_file(staging).map_err(io_at(staging))?;
            return Err(SpoolError::Refused("the payload is empty"));
        }
        let id = bump(&self.db, &link.to_be_bytes())?;
        self.db.flush()?;
        let target = self.payload(link, id);
        fs::rename(staging, &target).map_err(io_at(&target))?;
        sync_dir(&self.dir.join("payloads"))?;
        if let Err(why) = audit(id) {
            let _ = fs::remove_file(&target);
            return Err(SpoolError::NotRecorded(why));
        }
        self.pending
            .insert(link_key(link, id), &len.to_be_bytes())?;
        if let Some(r) = record {
            self.enter_record(r, link, id)?;
        }
        self.db.flush()?;
        Ok(id)
    }

    /// Whether transfer `id` of `link` waits to be sent.
    pub(crate) fn is_pending(&self, link: u32, id: u64) -> Result<bool, SpoolError> {
        Ok(self.pending.contains_key(link_key(link, id))?)
    }

    /// Whether transfer `id` of `link` was sent and is kept for a resend.
    pub(crate) fn is_retained(&self, link: u32, id: u64) -> Result<bool, SpoolError> {
        Ok(self.retained.contains_key(link_key(link, id))?)
    }

    /// Every transfer of `link` not yet sent in full, in id order, with its bytes.
    pub fn pending(&self, link: u32) -> Result<Vec<(u64, SpooledFile)>, SpoolError> {
        let mut out = Vec::new();
        for item in self.pending.scan_prefix(link.to_be_bytes()) {
            let (key, _) = item?;
            let (_, id) = split_key(&key);
            out.push((id, SpooledFile::open(&self.payload(link, id))?));
        }
        Ok(out)
    }

    /// The transfer's last datagram was sent: it leaves the spool.
    pub fn sent(&self, link: u32, id: u64) -> Result<(), SpoolError> {
        self.pending.remove(link_key(link, id))?;
        self.db.flush()?;
        let path = self.payload(link, id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at(&path)(e)),
            _ => Ok(()),
        }
    }

    /// The transfer's last datagram was sent: it leaves the spool, its bytes kept for a resend
    /// until `expires` (deleted at once when that is not after `now`).
    pub fn sent_retained(
        &self,
        link: u32,
        id: u64,
        now: UnixTime,
        expires: UnixTime,
    ) -> Result<(), SpoolError> {
        if expires <= now {
            return self.sent(link, id);
        }
        let (from, to) = (self.payload(link, id), self.retained_path(link, id));
        match fs::rename(&from, &to) {
            Ok(()) => {
                let len = fs::metadata(&to).map_err(io_at(&to))?.len();
                sync_dir(&self.dir.join("retained"))?;
                self.retained.insert(
                    link_key(link, id),
                    &retained_value(expires.as_millis(), len),
                )?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&to)(e)),
        }
        self.pending.remove(link_key(link, id))?;
        self.db.flush()?;
        Ok(())
    }

    /// The transfers of `link` kept for a resend, in id order.
    pub fn retained(&self, link: u32) -> Result<Vec<Retained>, SpoolError> {
        let mut out = Vec::new();
        for item in self.retained.scan_prefix(link.to_be_bytes()) {
            let (key, value) = item?;
            let (_, id) = split_key(&key);
            out.push(Retained {
                id,
                len: be_u64(value.get(8..).unwrap_or_default()),
                expires: UnixTime::from_millis(be_u64(&value)),
            });
        }
        Ok(out)
    }

    /// Deletes every retained transfer whose time has come; returns how many. The records of
    /// transfers gone for [`KEEP_RECORDS`](crate::KEEP_RECORDS) go too.
    pub fn prune(&self, now: UnixTime) -> Result<usize, SpoolError> {
        let mut pruned = 0;
        for item in self.retained.iter() {
            let (key, value) = item?;
            if be_u64(&value) > now.as_millis() {
                continue;
            }
            let (link, id) = split_key(&key);
            let path = self.retained_path(link, id);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_at(&path)(e)),
                _ => {}
            }
            self.retained.remove(&key)?;
            pruned += 1;
        }
        if pruned > 0 {
            self.db.flush()?;
        }
        self.prune_records(now)?;
        Ok(pruned)
    }

    /// Spools every retained transfer of `link` from id `from` on again, each under the link's
    /// next id, in order; returns the pairs (retained id, new id). Nothing retained from `from`
    /// on is an error naming what is.
    pub fn resend(&self, link: u32, from: u64) -> Result<Vec<(u64, u64)>, SpoolError> {
        let kept: Vec<Retained> = self
            .retained(link)?
            .into_iter()
            .filter(|r| r.id >= from)
            .collect();
        if kept.is_empty() {
            return Err(SpoolError::Refused(
                "no transfer from that id on is retained (never sent, still spooled, or expired)",
            ));
        }
        let mut out = Vec::new();
        for r in kept {
            let staging = self.staging()?;
            let source = self.retained_path(link, r.id);
            fs::hard_link(&source, &staging).map_err(io_at(&source))?;
            let new = self.commit(link, &staging, r.len)?;
            self.move_record(link, r.id, new)?;
            out.push((r.id, new));
        }
        self.db.flush()?;
        Ok(out)
    }

    /// The transfer `id` of `link`, still spooled, with its bytes.
    pub fn open_pending(&self, link: u32, id: u64) -> Result<SpooledFile, SpoolError> {
        SpooledFile::open(&self.payload(link, id))
    }

    /// How many transfers of `link` wait to be sent.
    pub fn pending_len(&self, link: u32) -> usize {
        self.pending.scan_prefix(link.to_be_bytes()).count()
    }

    /// The last id given on `link` (0 for none).
    pub fn last_id(&self, link: u32) -> Result<u64, SpoolError> {
        Ok(self
            .db
            .get(link.to_be_bytes())?
            .as_deref()
            .map_or(0, be_u64))
    }

    /// How many transfers of every link wait to be sent.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

fn retained_value(expires_ms: u64, len: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    let (e, l) = v.split_at_mut(8);
    e.copy_from_slice(&expires_ms.to_be_bytes());
    l.copy_from_slice(&len.to_be_bytes());
    v
}

pub(crate) fn split_key(key: &[u8]) -> (u32, u64) {
    let mut l = [0u8; 4];
    if let Some(src) = key.get(..4) {
        l.copy_from_slice(src);
    }
    (
        u32::from_be_bytes(l),
        be_u64(key.get(4..).unwrap_or_default()),
    )
}

/// A spooled payload, read where the sender asks.
#[derive(Debug)]
pub struct SpooledFile {
    file: File,
    len: u64,
}

impl SpooledFile {
    /// Opens the file at `path`.
    pub fn open(path: &Path) -> Result<Self, SpoolError> {
        let file = File::open(path).map_err(io_at(path))?;
        let len = file.metadata().map_err(io_at(path))?.len();
        Ok(Self { file, len })
    }
}

impl TransferSource for SpooledFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}
