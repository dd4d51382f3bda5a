//! The receiver's durable store (feature `daemon`): a bundle is staged in a file as it arrives
//! and handed to a [`Sink`] only once complete and checked, never partly and never twice.
//!
//! At [`Arrival::Complete`] the staged file (the bundle: its header, then its payload) is
//! fsynced and renamed into `complete/`, the transfer is marked complete in `sled`, the
//! [`Sink`] takes it, and the transfer is marked delivered. A crash between those steps is
//! finished at the next [`Store::open`] (complete but not delivered: handed to the sink again,
//! which must take a transfer it already has as a no-op, as [`FolderSink`] does). Lost and
//! refused transfers are recorded too, and the receiver's floor, so that a restarted receiver
//! ([`Store::floor`]) neither hands on nor reports again what already ended.
//!
//! Memory and disk stay bounded over a long run. A transfer below the floor is refused by the
//! floor alone (the [`Receiver`](crate::Receiver) drops its symbols as late), so the store
//! keeps the record of how each ended only for the last [`KEEP_ENDED`] ids below the floor of
//! each link (for status and [`Store::ended`]) and prunes older ones as the floor moves; the
//! receiver's own set of ended ids holds only ids above its floor, which moves up as transfers
//! end (every transfer ends: complete, lost, or lost by timeout).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::spool::{be_u64, io_at, link_key, split_key, sync_dir};
use crate::{Arrival, BundleHeader, SpoolError};

/// Where complete bundles go.
pub trait Sink: Send {
    /// Takes the bundle of transfer `transfer` on `link`, stored at `bundle` (the header
    /// `header` with its length in front, then the payload). Must be a no-op for a transfer it
    /// already took.
    fn deliver(
        &mut self,
        link: u32,
        transfer: u64,
        header: &BundleHeader,
        bundle: &Path,
    ) -> io::Result<()>;
}

/// A sink that moves each bundle into a folder as `<link>-<transfer>.bundle`.
#[derive(Debug, Clone)]
pub struct FolderSink {
    dir: PathBuf,
}

impl FolderSink {
    /// Delivers into `dir`, creating it.
    pub fn new(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Where transfer `transfer` of `link` is delivered.
    pub fn path(&self, link: u32, transfer: u64) -> PathBuf {
        self.dir.join(format!("{link}-{transfer}.bundle"))
    }
}

impl Sink for FolderSink {
    fn deliver(
        &mut self,
        link: u32,
        transfer: u64,
        _: &BundleHeader,
        bundle: &Path,
    ) -> io::Result<()> {
        let target = self.path(link, transfer);
        if target.exists() {
            return Ok(());
        }
        let part = target.with_extension("part");
        fs::copy(bundle, &part)?;
        File::open(&part)?.sync_all()?;
        fs::rename(&part, &target)?;
        File::open(&self.dir)?.sync_all()
    }
}

/// How a transfer ended, as the store recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Handed to the sink.
    Delivered,
    /// Lost on the link.
    Lost,
    /// Arrived but refused (signature, signer or a chunk hash).
    Refused,
}

/// Records of ended transfers kept per link below its floor; older ones are pruned. Any id
/// below the floor is refused whether or not its record is kept.
pub const KEEP_ENDED: u64 = 65_536;

const COMPLETE: u8 = 0;
const DELIVERED: u8 = 1;
const LOST: u8 = 2;
const REFUSED: u8 = 3;

/// A receiver's store in one folder.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    /// link ++ id → state byte.
    ended: sled::Tree,
    /// link → floor.
    floors: sled::Tree,
    staged: BTreeMap<(u32, u64), (File, Box<BundleHeader>)>,
}

impl Store {
    /// Opens (or creates) the store in `dir`, handing `sink` what a crash left complete but
    /// not delivered and dropping half-staged files.
    pub fn open(dir: &Path, sink: &mut dyn Sink) -> Result<Self, SpoolError> {
        let store = Self::open_deferred(dir)?;
        store.hand_on_pending(sink)?;
        Ok(store)
    }

    /// Opens (or creates) the store in `dir` as [`open`](Self::open) does, but hands nothing
    /// on yet: for a sink made from the store's own trees ([`tree`](Self::tree)), which then
    /// takes what a crash left complete through [`hand_on_pending`](Self::hand_on_pending).
    pub fn open_deferred(dir: &Path) -> Result<Self, SpoolError> {
        for sub in ["staging", "complete"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        let staging = dir.join("staging");
        for entry in fs::read_dir(&staging).map_err(io_at(&staging))? {
            let path = entry.map_err(io_at(&staging))?.path();
            fs::remove_file(&path).map_err(io_at(&path))?;
        }
        let db = crate::spool::open_db(&dir.join("state"))?;
        let store = Self {
            dir: dir.to_path_buf(),
            ended: db.open_tree("ended")?,
            floors: db.open_tree("floors")?,
            db,
            staged: BTreeMap::new(),
        };
        Ok(store)
    }

    /// Hands `sink` every transfer a crash left complete but not handed on.
    pub fn hand_on_pending(&self, sink: &mut dyn Sink) -> Result<(), SpoolError> {
        for item in self.ended.iter() {
            let (key, state) = item?;
            if state.first() == Some(&COMPLETE) {
                let (link, id) = split_key(&key);
                self.hand_on(link, id, sink)?;
            }
        }
        Ok(())
    }

    /// The tree `name` of the store's database (the delivery queue, the record of transfer ids
    /// that arrived, receipts), created when new; the store's own trees are not given out.
    pub fn tree(&self, name: &str) -> Result<sled::Tree, SpoolError> {
        if matches!(name, "ended" | "floors" | "__sled__default") {
            return Err(SpoolError::Refused(
                "the store's own trees are not given out",
            ));
        }
        Ok(self.db.open_tree(name)?)
    }

    /// The checked header of transfer `id` on `link` while it is being staged.
    pub fn staged_header(&self, link: u32, id: u64) -> Option<&BundleHeader> {
        self.staged.get(&(link, id)).map(|(_, h)| &**h)
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first transfer id on `link` that has not ended (ids start at 1): what a restarted
    /// [`Receiver`](crate::Receiver) is given, so it neither waits for nor reports again what
    /// already ended.
    pub fn floor(&self, link: u32) -> Result<u64, SpoolError> {
        Ok(self
            .floors
            .get(link.to_be_bytes())?
            .as_deref()
            .map_or(1, be_u64))
    }

    /// Whether transfer `id` on `link` has ended (below the floor, or recorded as ended): such a
    /// transfer is never handed on again.
    pub fn is_ended(&self, link: u32, id: u64) -> Result<bool, SpoolError> {
        Ok(id < self.floor(link)? || self.ended(link, id)?.is_some())
    }

    /// How many records of ended transfers the store keeps for `link`.
    pub fn recorded(&self, link: u32) -> usize {
        self.ended.scan_prefix(link.to_be_bytes()).count()
    }

    /// How transfer `id` on `link` ended, if it did and its record was not pruned (see
    /// [`KEEP_ENDED`]; [`is_ended`](Self::is_ended) answers for pruned ones too).
    pub fn ended(&self, link: u32, id: u64) -> Result<Option<Ended>, SpoolError> {
        Ok(
            match self
                .ended
                .get(link_key(link, id))?
                .as_deref()
                .and_then(<[u8]>::first)
            {
                Some(&DELIVERED | &COMPLETE) => Some(Ended::Delivered),
                Some(&LOST) => Some(Ended::Lost),
                Some(&REFUSED) => Some(Ended::Refused),
                _ => None,
            },
        )
    }

    fn complete_path(&self, link: u32, id: u64) -> PathBuf {
        self.dir.join("complete").join(format!("{link}-{id}"))
    }

    fn staging_path(&self, link: u32, id: u64) -> PathBuf {
        self.dir.join("staging").join(format!("{link}-{id}"))
    }

    /// Takes one arrival on `link`. Returns the transfers that ended now.
    pub fn accept(
        &mut self,
        link: u32,
        arrival: Arrival,
        sink: &mut dyn Sink,
    ) -> Result<Vec<(u64, Ended)>, SpoolError> {
        let mut ended = Vec::new();
        match arrival {
            Arrival::Header { transfer, header } => {
                if !self.is_ended(link, transfer)? {
                    let path = self.staging_path(link, transfer);
                    let mut file = File::create(&path).map_err(io_at(&path))?;
                    let encoded = header
                        .encode()
                        .map_err(|_| SpoolError::Refused("the header cannot be encoded"))?;
                    file.write_all(&encoded).map_err(io_at(&path))?;
                    self.staged.insert((link, transfer), (file, header));
                }
            }
            Arrival::Chunk {
                transfer, bytes, ..
            } => {
                if let Some((file, _)) = self.staged.get_mut(&(link, transfer)) {
                    let path = self.dir.join("staging");
                    file.write_all(&bytes).map_err(io_at(&path))?;
                }
            }
            Arrival::Complete { transfer, .. } => {
                if let Some((file, _header)) = self.staged.remove(&(link, transfer)) {
                    let staged = self.staging_path(link, transfer);
                    file.sync_all().map_err(io_at(&staged))?;
                    drop(file);
                    let target = self.complete_path(link, transfer);
                    fs::rename(&staged, &target).map_err(io_at(&target))?;
                    sync_dir(&self.dir.join("complete"))?;
                    self.mark(link, transfer, COMPLETE)?;
                    self.hand_on(link, transfer, sink)?;
                    ended.push((transfer, Ended::Delivered));
                }
            }
            Arrival::Lost { transfer, .. } => {
                self.drop_staged(link, transfer)?;
                if !self.is_ended(link, transfer)? {
                    self.mark(link, transfer, LOST)?;
                    ended.push((transfer, Ended::Lost));
                }
            }
            Arrival::Refused { transfer, .. } => {
                self.drop_staged(link, transfer)?;
                if !self.is_ended(link, transfer)? {
                    self.mark(link, transfer, REFUSED)?;
                    ended.push((transfer, Ended::Refused));
                }
            }
            Arrival::LostRange { from, to } => {
                for id in from..to {
                    if !self.is_ended(link, id)? {
                        self.ended.insert(link_key(link, id), &[LOST])?;
                        ended.push((id, Ended::Lost));
                    }
                }
                self.record_floor(link)?;
                self.db.flush()?;
            }
            Arrival::Restarted { .. } | Arrival::Silent { .. } => {}
        }
        Ok(ended)
    }

    fn drop_staged(&mut self, link: u32, id: u64) -> Result<(), SpoolError> {
        if self.staged.remove(&(link, id)).is_some() {
            let path = self.staging_path(link, id);
            fs::remove_file(&path).map_err(io_at(&path))?;
        }
        Ok(())
    }

    /// Moves the floor past the transfers that ended.
    fn record_floor(&self, link: u32) -> Result<(), SpoolError> {
        let old = self.floor(link)?;
        let mut floor = old;
        while self.ended.contains_key(link_key(link, floor))? {
            floor += 1;
        }
        if floor != old {
            self.floors
                .insert(link.to_be_bytes(), &floor.to_be_bytes())?;
            self.prune(link, floor)?;
        }
        Ok(())
    }

    /// Drops the records of ended transfers more than [`KEEP_ENDED`] below the floor (a
    /// complete one not yet handed on stays until it is).
    fn prune(&self, link: u32, floor: u64) -> Result<(), SpoolError> {
        let below = floor.saturating_sub(KEEP_ENDED);
        if below == 0 {
            return Ok(());
        }
        for item in self.ended.range(link_key(link, 0)..link_key(link, below)) {
            let (key, state) = item?;
            if state.first() != Some(&COMPLETE) {
                self.ended.remove(key)?;
            }
        }
        Ok(())
    }

    fn mark(&self, link: u32, id: u64, state: u8) -> Result<(), SpoolError> {
        self.ended.insert(link_key(link, id), &[state])?;
        self.record_floor(link)?;
        self.db.flush()?;
        Ok(())
    }

    fn hand_on(&self, link: u32, id: u64, sink: &mut dyn Sink) -> Result<(), SpoolError> {
        let path = self.complete_path(link, id);
        let header = read_header(&path)?;
        sink.deliver(link, id, &header, &path)
            .map_err(io_at(&path))?;
        self.ended.insert(link_key(link, id), &[DELIVERED])?;
        self.db.flush()?;
        fs::remove_file(&path).map_err(io_at(&path))
    }
}

/// The header of a stored bundle (its `u32` length, then the header) and where its payload
/// starts.
pub(crate) fn read_header(path: &Path) -> Result<BundleHeader, SpoolError> {
    read_header_at(path).map(|(h, _)| h)
}

/// The header of a stored bundle and the offset of its payload.
pub(crate) fn read_header_at(path: &Path) -> Result<(BundleHeader, u64), SpoolError> {
    use std::io::Read;
    let mut file = File::open(path).map_err(io_at(path))?;
    let mut len = [0u8; 4];
    file.read_exact(&mut len).map_err(io_at(path))?;
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len > crate::MAX_HEADER {
        return Err(SpoolError::Refused("a stored header is too long"));
    }
    let mut bytes = vec![0u8; len];
    file.read_exact(&mut bytes).map_err(io_at(path))?;
    let header = BundleHeader::decode(&bytes)
        .map_err(|_| SpoolError::Refused("a stored header is unreadable"))?;
    Ok((header, 4 + len as u64))
}
