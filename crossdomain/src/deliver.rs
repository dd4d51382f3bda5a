//! The receiving zone's intake and delivery (feature `daemon`): a complete bundle the link
//! handed on is checked again ([`Inbound`]), queued durably, and delivered to the flow's service
//! inside the zone, retried until it is taken.
//!
//! - [`Intake`] is the [`Sink`] the receiver's [`Store`] hands complete bundles to. It reports
//!   `transfer.received`, decides with the zone's policy copy, its filters and the approvals
//!   counted again, and either reports `transfer.refused` (nothing is delivered) or queues the
//!   transfer: the bundle is hard-linked into the store's `deliveries/` folder, its record put
//!   in the `deliveries` tree and `(source, sequence)` in the `arrived` tree, and the database
//!   flushed, before the store marks it handed on. A bundle whose `(source, sequence)` arrived
//!   before (on this link, under any link id) is refused as replayed.
//! - [`Deliverer`] takes queued transfers in order and hands each to its service's binding in
//!   `fabric.toml` ([`Target`]): an HTTPS POST (the manifest in `Tianping-*` headers, a
//!   `delivery` token of the receiver's node key in `Tianping-Delivery`), a folder (written
//!   under a temporary name in the folder's `.partial/`, fsynced, renamed: no partial file is
//!   ever visible), a component's control socket (a node token of the receiver), or the
//!   receiver itself ([`crate::install`]). A failed attempt is retried after
//!   [`RETRY_FIRST`], doubling up to [`RETRY_MAX`] between attempts, until it succeeds; the
//!   record is removed only after the target took it, so a target down for a while gets it when
//!   it is back, also across a receiver restart. The transfer id travels with every delivery
//!   (header, token, file name), so a target that took a transfer just before a crash and sees
//!   it again can tell.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod net;
mod receipts;
#[cfg(test)]
mod tests;

pub use net::{Install, MakeReceipt, NetDeliver};
pub use receipts::{KeptReceipt, ReceiptBook};

use ring::digest::{Context, SHA256};
use serde_json::{Value, json};
use tianping_core::{Clock, Component, DataDir, Fabric, ServiceTarget, ZoneName};
use tianping_policies::{Approval, FlowInfo, SharedPolicy};

use crate::spool::{io_at, link_key, sync_dir};
use crate::store::read_header_at;
use crate::{
    BundleHeader, Filters, Inbound, InboundRefusal, Refusal, Sink, SpoolError, Store, Unchanged,
    transfer_id,
};

/// The first wait before a failed delivery is tried again.
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two attempts of one delivery (the wait doubles up to it).
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long one attempt over HTTPS or a control socket may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The path a component's control socket takes deliveries of a kind on: `audit-batch` to the
/// audit store, `directory-update` to the IdP, anything else to `/exchange/v1/deliver`.
pub fn component_path(kind: &str) -> &'static str {
    match kind {
        "audit-batch" => "/audit/v1/import",
        "directory-update" => "/idp/v1/directory-update",
        _ => "/exchange/v1/deliver",
    }
}

/// Where a service of the zone is reached, resolved against the data folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An HTTPS URL, and the CA file that verifies its certificate.
    Url {
        /// `https://…`.
        url: String,
        /// The CA bundle (PEM).
        ca: PathBuf,
    },
    /// A delivery folder.
    Folder(PathBuf),
    /// A component's control socket.
    Component {
        /// The component.
        component: Component,
        /// Its socket.
        socket: PathBuf,
    },
    /// The receiver itself: it installs the zone's policy, trust bundle and CRLs, and keeps
    /// receipts.
    Receiver,
}

impl Target {
    /// `url`, `folder` or `component`, as the `transfer.delivered` event's `target` says.
    pub fn as_str(&self) -> &'static str {
        match self {
            Target::Url { .. } => "url",
            Target::Folder(_) => "folder",
            Target::Component { .. } | Target::Receiver => "component",
        }
    }
}

/// The zone's services and their targets, from `fabric.toml`.
pub fn targets(fabric: &Fabric, dir: &DataDir, zone: &ZoneName) -> BTreeMap<String, Target> {
    fabric
        .services()
        .iter()
        .filter(|(_, b)| &b.zone == zone)
        .map(|(name, b)| {
            let t = match &b.target {
                ServiceTarget::Url { url, ca } => Target::Url {
                    url: url.clone(),
                    ca: dir.root().join(ca),
                },
                ServiceTarget::Folder(p) => Target::Folder(dir.root().join(p)),
                ServiceTarget::Component(Component::ExchangeReceiver) => Target::Receiver,
                ServiceTarget::Component(c) => Target::Component {
                    component: *c,
                    socket: dir.socket(zone, *c),
                },
            };
            (name.clone(), t)
        })
        .collect()
}

/// What the receiver tells its audit log.
#[derive(Debug)]
pub enum ReceiverEvent<'a> {
    /// A bundle arrived whole, its signature and chunks checked.
    Received {
        /// Its header.
        header: &'a BundleHeader,
        /// The link.
        link: u32,
        /// Its id on the link.
        link_transfer: u64,
    },
    /// The receiving zone refused it; nothing is delivered.
    Refused {
        /// Its header.
        header: &'a BundleHeader,
        /// The link.
        link: u32,
        /// Its id on the link.
        link_transfer: u64,
        /// Why.
        reason: String,
    },
    /// A delivery was taken by its target.
    Delivered {
        /// The transfer.
        delivery: &'a Queued,
        /// `url`, `folder` or `component`.
        target: &'static str,
    },
    /// The delivery receipt of a delivered transfer was taken by the zone's sender.
    ReceiptSent {
        /// The delivered transfer.
        delivery: &'a Queued,
        /// The reply flow.
        reply: String,
        /// The receipt transfer's id, as the sender answered it.
        receipt: String,
    },
    /// A delivery attempt failed; it is tried again.
    Failed {
        /// The transfer.
        delivery: &'a Queued,
        /// Why.
        reason: String,
    },
}

/// Where the receiver's events go (the binary writes them to the audit log).
pub trait Report: Send + Sync {
    /// Records one event.
    fn report(&self, event: &ReceiverEvent<'_>);
}

/// Counts approvals again: `count_approvals` over the zone's trust.
pub type Counter =
    Arc<dyn Fn(&BundleHeader, &FlowInfo<'_>) -> Result<Vec<Approval>, String> + Send + Sync>;

/// A transfer waiting for delivery, as the `deliveries` tree keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// `<source>:<sequence>`.
    pub transfer_id: String,
    /// The link it came on.
    pub link: u32,
    /// Its id on the link.
    pub link_transfer: u64,
    /// The flow.
    pub flow: String,
    /// The service it goes to.
    pub service: String,
    /// The kind.
    pub kind: String,
    /// The flow carrying replies, if any.
    pub reply: Option<String>,
    /// Lowercase hex of the manifest's chunks hash.
    pub content_hash: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before (ms since the epoch).
    pub next_ms: u64,
    /// Delivered already; what waits is the delivery receipt on the reply flow.
    pub delivered: bool,
}

impl Queued {
    fn to_json(&self) -> Vec<u8> {
        json!({
            "transfer_id": self.transfer_id, "link": self.link,
            "link_transfer": self.link_transfer, "flow": self.flow, "service": self.service,
            "kind": self.kind, "reply": self.reply, "content_hash": self.content_hash,
            "attempts": self.attempts, "next_ms": self.next_ms, "delivered": self.delivered,
        })
        .to_string()
        .into_bytes()
    }

    fn from_json(bytes: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        Some(Self {
            transfer_id: s("transfer_id")?,
            link: u32::try_from(n("link")?).ok()?,
            link_transfer: n("link_transfer")?,
            flow: s("flow")?,
            service: s("service")?,
            kind: s("kind")?,
            reply: s("reply"),
            content_hash: s("content_hash")?,
            attempts: u32::try_from(n("attempts")?).unwrap_or(u32::MAX),
            next_ms: n("next_ms")?,
            delivered: v.get("delivered").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    fn key(&self) -> [u8; 12] {
        link_key(self.link, self.link_transfer)
    }
}

/// The trees and folder of the delivery queue, in the receiver's store.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
    db: sled::Tree,
    arrived: sled::Tree,
}

impl Queue {
    /// The queue of `store`: its `deliveries/` folder and trees.
    pub fn open(store: &Store) -> Result<Self, SpoolError> {
        let dir = store.dir().join("deliveries");
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        Ok(Self {
            dir,
            db: store.tree("deliveries")?,
            arrived: store.tree("arrived")?,
        })
    }

    fn file(&self, link: u32, id: u64) -> PathBuf {
        self.dir.join(format!("{link}-{id}"))
    }

    /// The transfers waiting, in the order they arrived.
    pub fn pending(&self) -> Result<Vec<Queued>, SpoolError> {
        let mut out = Vec::new();
        for item in self.db.iter() {
            let (_, v) = item?;
            if let Some(q) = Queued::from_json(&v) {
                out.push(q);
            }
        }
        Ok(out)
    }

    /// Whether `(source, sequence)` arrived before, under another link id than `link_transfer`.
    fn replayed(&self, header: &BundleHeader, link: u32, id: u64) -> Result<bool, SpoolError> {
        let key = transfer_id(header);
        Ok(self
            .arrived
            .get(key.as_bytes())?
            .is_some_and(|v| v.as_ref() != link_key(link, id)))
    }
}

/// The zone's state the intake decides with, shared with the deliverer (which installs
/// policy updates).
#[derive(Clone)]
pub struct Zone {
    /// The receiving zone.
    pub zone: ZoneName,
    /// Its policy copy in force.
    pub policy: Arc<SharedPolicy>,
    /// Its filters.
    pub filters: Arc<Filters>,
    /// The approvals' counting.
    pub count: Counter,
    /// Where events go.
    pub report: Arc<dyn Report>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Zone({})", self.zone)
    }
}

/// The [`Sink`] that checks a complete bundle again and queues it for delivery.
#[derive(Debug)]
pub struct Intake {
    zone: Zone,
    queue: Queue,
    wake: Mutex<Option<mpsc::Sender<()>>>,
}

impl Intake {
    /// The intake of `zone` into `queue`.
    pub fn new(zone: Zone, queue: Queue) -> Self {
        Self {
            zone,
            queue,
            wake: Mutex::new(None),
        }
    }

    /// Wakes `deliverer`'s loop whenever a transfer is queued.
    pub fn wake(&self, tx: mpsc::Sender<()>) {
        if let Ok(mut w) = self.wake.lock() {
            *w = Some(tx);
        }
    }

    fn take(
        &mut self,
        link: u32,
        id: u64,
        header: &BundleHeader,
        bundle: &Path,
    ) -> Result<(), SpoolError> {
        let q = &self.queue;
        let tid = transfer_id(header);
        if q.db.contains_key(link_key(link, id))?
            || q.arrived.get(tid.as_bytes())?.as_deref() == Some(&link_key(link, id)[..])
        {
            return Ok(()); // taken before a crash
        }
        let report = &self.zone.report;
        report.report(&ReceiverEvent::Received {
            header,
            link,
            link_transfer: id,
        });
        let refuse = |reason: String| {
            report.report(&ReceiverEvent::Refused {
                header,
                link,
                link_transfer: id,
                reason,
            });
            Ok(())
        };
        let policy = self.zone.policy.load();
        let inbound = Inbound {
            zone: &self.zone.zone,
            policy: &policy,
            filters: &self.zone.filters,
        };
        if let Err(e) = inbound.flow(header) {
            return refuse(e.to_string());
        }
        let replayed = q.replayed(header, link, id)?;
        let count = &self.zone.count;
        let decided = if header.manifest.size > HOLD_MAX {
            // checked in pieces when the kind's filter can, else held as the filter declares;
            // a bundle of the store's that cannot be read is the store's error, not a refusal
            let mut failed: Option<SpoolError> = None;
            let mut unread = |e: SpoolError| {
                let why = e.to_string();
                failed = Some(e);
                InboundRefusal::from(Refusal::new("intake", why))
            };
            let decided =
                inbound.decide_with(header, replayed, &|h, f| count(h, f), &mut |flow, input| {
                    let mut reader = payload_reader(bundle).map_err(&mut unread)?;
                    match inbound.filters.check_unchanged(input, &mut reader) {
                        Some(Unchanged::Passed(_)) => Ok(()),
                        Some(Unchanged::Refused(r)) => Err(r.into()),
                        Some(Unchanged::Io(source)) => Err(unread(SpoolError::Io {
                            path: bundle.to_path_buf(),
                            source,
                        })),
                        None => {
                            let payload = read_payload(bundle).map_err(&mut unread)?;
                            inbound.reproduce(flow, input, &payload)
                        }
                    }
                });
            if let Some(e) = failed {
                return Err(e);
            }
            decided
        } else {
            let payload = read_payload(bundle)?;
            inbound.decide(header, &payload, replayed, &|h, f| count(h, f))
        };
        let accepted = match decided {
            Ok(a) => a,
            Err(e) => return refuse(e.to_string()),
        };
        let file = q.file(link, id);
        if file.exists() {
            fs::remove_file(&file).map_err(io_at(&file))?;
        }
        if fs::hard_link(bundle, &file).is_err() {
            fs::copy(bundle, &file).map_err(io_at(&file))?;
            File::open(&file)
                .and_then(|f| f.sync_all())
                .map_err(io_at(&file))?;
        }
        sync_dir(&q.dir)?;
        let record = Queued {
            transfer_id: accepted.transfer_id.clone(),
            link,
            link_transfer: id,
            flow: accepted.flow,
            service: accepted.service,
            kind: header.manifest.kind.clone(),
            reply: accepted.reply,
            content_hash: hex(&header.manifest.chunks_hash),
            attempts: 0,
            next_ms: 0,
            delivered: false,
        };
        q.db.insert(record.key(), record.to_json())?;
        q.arrived
            .insert(accepted.transfer_id.as_bytes(), &link_key(link, id))?;
        q.db.flush()?;
        if let Ok(w) = self.wake.lock()
            && let Some(tx) = w.as_ref()
        {
            let _ = tx.send(());
        }
        Ok(())
    }
}

impl Sink for Intake {
    fn deliver(
        &mut self,
        link: u32,
        transfer: u64,
        header: &BundleHeader,
        bundle: &Path,
    ) -> io::Result<()> {
        self.take(link, transfer, header, bundle)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The largest payload the receiver reads whole for its filter and its delivery; a larger one
/// is checked in pieces where its kind's filter can ([`Filters::check_unchanged`]) and written
/// into a folder in pieces (64 MiB: a few of these at once stay well under a receiver's
/// memory; a filter that must hold its input holds this much times its
/// [`MemoryBound`](crate::MemoryBound)).
pub(crate) const HOLD_MAX: u64 = 64 << 20;

/// The payload of the bundle at `bundle`, as a reader.
fn payload_reader(bundle: &Path) -> Result<io::BufReader<File>, SpoolError> {
    let (_, offset) = read_header_at(bundle)?;
    let mut f = File::open(bundle).map_err(io_at(bundle))?;
    f.seek(io::SeekFrom::Start(offset)).map_err(io_at(bundle))?;
    Ok(io::BufReader::with_capacity(64 << 10, f))
}

fn read_payload(bundle: &Path) -> Result<Vec<u8>, SpoolError> {
    let (_, offset) = read_header_at(bundle)?;
    let mut f = File::open(bundle).map_err(io_at(bundle))?;
    f.seek(io::SeekFrom::Start(offset)).map_err(io_at(bundle))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out).map_err(io_at(bundle))?;
    Ok(out)
}

/// One delivery's content, read from the queue.
#[derive(Debug)]
pub struct Delivery<'a> {
    /// The queue's record.
    pub queued: &'a Queued,
    /// The bundle's header.
    pub header: &'a BundleHeader,
    /// The payload.
    pub payload: &'a [u8],
    /// SHA-256 of the payload.
    pub sha256: [u8; 32],
}

/// Why a delivery attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The target is not reachable or failed: tried again later.
    Retry(String),
    /// The receiver refuses the content for good (a policy update that does not check): the
    /// transfer is refused, nothing installed.
    Refuse(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Retry(s)
    }
}

/// Hands one delivery to a target; the binary gives the tokens and the installer.
pub trait Deliver: Send {
    /// Hands `d` to `target`.
    fn deliver(&mut self, target: &Target, d: &Delivery<'_>) -> Result<(), Failure>;

    /// Whether it makes and sends delivery receipts.
    fn makes_receipts(&self) -> bool {
        false
    }

    /// Sends the delivery receipt of `d` on flow `reply` through the zone's sender; the
    /// receipt transfer's id.
    fn send_receipt(&mut self, d: &Delivery<'_>, reply: &str) -> Result<String, Failure> {
        let _ = (d, reply);
        Err(Failure::Refuse(
            "this receiver makes no receipts".to_owned(),
        ))
    }
}

/// Takes queued transfers to their targets, retrying until each is taken.
pub struct Deliverer {
    zone: Zone,
    queue: Queue,
    targets: BTreeMap<String, Target>,
    how: Box<dyn Deliver>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Deliverer({}, {} targets)",
            self.zone.zone,
            self.targets.len()
        )
    }
}

/// The wait before attempt `attempts + 1` (after `attempts` failed).
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1u32 << shift).min(RETRY_MAX)
}

impl Deliverer {
    /// Delivers what `queue` holds to `targets`, with `how`.
    pub fn new(
        zone: Zone,
        queue: Queue,
        targets: BTreeMap<String, Target>,
        how: Box<dyn Deliver>,
    ) -> Self {
        Self {
            zone,
            queue,
            targets,
            how,
        }
    }

    /// One pass over the queue: every transfer due is tried once. Returns how long until the
    /// next one is due, if any waits.
    pub fn pass(&mut self) -> Result<Option<Duration>, SpoolError> {
        let now = self.zone.clock.now();
        let mut next: Option<u64> = None;
        for mut q in self.queue.pending()? {
            if q.next_ms > now.as_millis() {
                next = Some(next.map_or(q.next_ms, |n| n.min(q.next_ms)));
                continue;
            }
            q.attempts = q.attempts.saturating_add(1);
            if q.delivered {
                let Some(reply) = self.receipt_flow(&q) else {
                    self.forget(&q)?;
                    continue;
                };
                match self.receipt(&q, &reply) {
                    Ok(receipt) => {
                        self.zone.report.report(&ReceiverEvent::ReceiptSent {
                            delivery: &q,
                            reply,
                            receipt,
                        });
                        self.forget(&q)?;
                    }
                    Err(Failure::Refuse(reason)) => {
                        self.zone.report.report(&ReceiverEvent::Failed {
                            delivery: &q,
                            reason: format!("the receipt is refused for good: {reason}"),
                        });
                        self.forget(&q)?;
                    }
                    Err(Failure::Retry(reason)) => {
                        self.zone.report.report(&ReceiverEvent::Failed {
                            delivery: &q,
                            reason: format!("the receipt: {reason}"),
                        });
                        self.later(&mut q, &mut next)?;
                    }
                }
                continue;
            }
            match self.attempt(&q) {
                Ok(target) => {
                    self.zone.report.report(&ReceiverEvent::Delivered {
                        delivery: &q,
                        target,
                    });
                    if self.receipt_flow(&q).is_some() {
                        // the receipt waits in the same record, so it survives a restart
                        q.delivered = true;
                        q.attempts = 0;
                        q.next_ms = 0;
                        next = Some(0);
                        self.queue.db.insert(q.key(), q.to_json())?;
                        self.queue.db.flush()?;
                    } else {
                        self.forget(&q)?;
                    }
                }
                Err(Failure::Refuse(reason)) => {
                    let file = self.queue.file(q.link, q.link_transfer);
                    if let Ok((header, _)) = read_header_at(&file) {
                        self.zone.report.report(&ReceiverEvent::Refused {
                            header: &header,
                            link: q.link,
                            link_transfer: q.link_transfer,
                            reason,
                        });
                    }
                    self.queue.db.remove(q.key())?;
                    self.queue.db.flush()?;
                    fs::remove_file(&file).map_err(io_at(&file))?;
                }
                Err(Failure::Retry(reason)) => {
                    self.zone.report.report(&ReceiverEvent::Failed {
                        delivery: &q,
                        reason,
                    });
                    self.later(&mut q, &mut next)?;
                }
            }
        }
        let now = self.zone.clock.now().as_millis();
        Ok(next.map(|n| Duration::from_millis(n.saturating_sub(now))))
    }

    /// Puts `q` back for its next attempt after its backoff.
    fn later(&self, q: &mut Queued, next: &mut Option<u64>) -> Result<(), SpoolError> {
        let wait = u64::try_from(backoff(q.attempts).as_millis()).unwrap_or(u64::MAX);
        q.next_ms = self.zone.clock.now().as_millis().saturating_add(wait);
        *next = Some(next.map_or(q.next_ms, |n| n.min(q.next_ms)));
        self.queue.db.insert(q.key(), q.to_json())?;
        self.queue.db.flush()?;
        Ok(())
    }

    /// Removes `q` from the queue, and its bundle.
    fn forget(&self, q: &Queued) -> Result<(), SpoolError> {
        self.queue.db.remove(q.key())?;
        self.queue.db.flush()?;
        let file = self.queue.file(q.link, q.link_transfer);
        fs::remove_file(&file).map_err(io_at(&file))
    }

    /// The reply flow a delivery receipt of `q` goes on: the flow's `reply`, when it carries
    /// `receipt` and receipts are made (a receipt is never receipted).
    fn receipt_flow(&self, q: &Queued) -> Option<String> {
        if q.kind == "receipt" || !self.how.makes_receipts() {
            return None;
        }
        let reply = q.reply.as_deref()?;
        let policy = self.zone.policy.load();
        let carries = policy
            .flow(reply)?
            .kinds()
            .any(|(k, _)| k.as_str() == "receipt");
        carries.then(|| reply.to_owned())
    }

    fn receipt(&mut self, q: &Queued, reply: &str) -> Result<String, Failure> {
        let file = self.queue.file(q.link, q.link_transfer);
        let (header, _) = read_header_at(&file).map_err(|e| e.to_string())?;
        let payload = read_payload(&file).map_err(|e| e.to_string())?;
        let d = Delivery {
            queued: q,
            header: &header,
            payload: &payload,
            sha256: sha256(&payload),
        };
        self.how.send_receipt(&d, reply)
    }

    fn attempt(&mut self, q: &Queued) -> Result<&'static str, Failure> {
        let target = self
            .targets
            .get(&q.service)
            .ok_or_else(|| format!("service `{}` has no binding in `fabric.toml`", q.service))?
            .clone();
        let file = self.queue.file(q.link, q.link_transfer);
        let (header, _) = read_header_at(&file).map_err(|e| e.to_string())?;
        if let Target::Folder(dir) = &target
            && header.manifest.size > HOLD_MAX
        {
            deliver_folder_from(dir, q, &header, &file).map_err(Failure::Retry)?;
            return Ok(target.as_str());
        }
        let payload = read_payload(&file).map_err(|e| e.to_string())?;
        let payload = payload.as_slice();
        let sha256 = sha256(payload);
        let d = Delivery {
            queued: q,
            header: &header,
            payload,
            sha256,
        };
        match &target {
            Target::Folder(dir) => {
                deliver_folder(dir, &d).map_err(|e| Failure::Retry(e.to_string()))?;
            }
            t => self.how.deliver(t, &d)?,
        }
        Ok(target.as_str())
    }

    /// Runs passes until `stop`, waking when `wake` says a transfer was queued or the next
    /// retry is due.
    pub fn run(&mut self, wake: &mpsc::Receiver<()>, stop: &AtomicBool) -> Result<(), SpoolError> {
        let tick = Duration::from_millis(200);
        while !stop.load(Ordering::Relaxed) {
            let next = self.pass()?;
            let wait = next.map_or(tick, |n| n.min(tick));
            match wake.recv_timeout(wait) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
        Ok(())
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The file name a transfer is delivered under in a folder: its id with `:` as `-`, and the
/// kind as extension (`internet-42.pdf`); its manifest beside it as `<name>.manifest.json`,
/// written first.
pub fn folder_name(transfer_id: &str, kind: &str) -> String {
    let id: String = transfer_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let kind: String = kind
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("{id}.{kind}")
}

/// The manifest of a delivery as JSON (the folder's sidecar, a component's body header).
pub fn manifest_json(d: &Delivery<'_>) -> Value {
    let m = &d.header.manifest;
    json!({
        "transfer": d.queued.transfer_id,
        "flow": m.flow,
        "source": m.source.as_str(),
        "destination": m.destination.as_str(),
        "kind": m.kind,
        "content_type": m.content_type,
        "schema": m.schema,
        "size": m.size,
        "sha256": hex(&d.sha256),
        "chunks_hash": d.queued.content_hash,
        "submitter": m.submitter.subject.as_str(),
        "roles": m.submitter.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "machine": m.submitter.machine,
        "labels": m.labels,
        "redacted": m.redacted,
        "correlation": m.correlation,
        "time_ms": m.time.as_millis(),
        "sequence": m.sequence,
        "policy_hash": m.policy_hash.to_string(),
    })
}

/// Writes `d` into `dir` atomically: the manifest, then the payload, each under a temporary
/// name in `dir/.partial/`, fsynced, and renamed into `dir`.
fn deliver_folder(dir: &Path, d: &Delivery<'_>) -> io::Result<()> {
    deliver_folder_with(dir, d, &mut |f| f.write_all(d.payload))
}

/// [`deliver_folder`] of a payload too large to hold ([`HOLD_MAX`]), read from the queued
/// bundle at `bundle` once, in pieces: copied under `.partial` while its SHA-256 (the
/// manifest's) is computed.
fn deliver_folder_from(
    dir: &Path,
    queued: &Queued,
    header: &BundleHeader,
    bundle: &Path,
) -> Result<(), String> {
    let mut reader = payload_reader(bundle).map_err(|e| e.to_string())?;
    let partial = dir.join(".partial");
    let name = folder_name(&queued.transfer_id, &queued.kind);
    let mut ctx = Context::new(&SHA256);
    let written = fs::create_dir_all(&partial).and_then(|()| {
        write_partial(&partial, &name, &mut |f| {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf)?;
                let Some(piece) = buf.get(..n).filter(|p| !p.is_empty()) else {
                    return Ok(());
                };
                ctx.update(piece);
                f.write_all(piece)?;
            }
        })
    });
    written.map_err(|e| format!("`{}`: {e}", partial.join(&name).display()))?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(ctx.finish().as_ref());
    // the manifest reads the header, the record and the hash, never the payload
    let d = Delivery {
        queued,
        header,
        payload: &[],
        sha256,
    };
    publish(dir, &partial, &d, &name).map_err(|e| e.to_string())
}

fn deliver_folder_with(
    dir: &Path,
    d: &Delivery<'_>,
    payload: &mut dyn FnMut(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let partial = dir.join(".partial");
    fs::create_dir_all(&partial)?;
    let name = folder_name(&d.queued.transfer_id, &d.queued.kind);
    write_partial(&partial, &name, payload)?;
    publish(dir, &partial, d, &name)
}

/// Writes `name` in `partial` with `write`, fsynced.
fn write_partial(
    partial: &Path,
    name: &str,
    write: &mut dyn FnMut(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut f = File::create(partial.join(name))?;
    write(&mut f)?;
    f.sync_all()
}

/// Writes `d`'s manifest in `partial`, then renames it and the payload `name` already there
/// into `dir`, in that order, the folder fsynced after each: a reader never sees a payload
/// without its manifest, nor a partial file.
fn publish(dir: &Path, partial: &Path, d: &Delivery<'_>, name: &str) -> io::Result<()> {
    let manifest_name = format!("{name}.manifest.json");
    let manifest = format!("{:#}\n", manifest_json(d));
    write_partial(partial, &manifest_name, &mut |f| {
        f.write_all(manifest.as_bytes())
    })?;
    for n in [manifest_name.as_str(), name] {
        fs::rename(partial.join(n), dir.join(n))?;
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The `Tianping-*` headers of a delivery (values percent-encoded where they are not visible
/// ASCII).
pub fn manifest_headers(d: &Delivery<'_>) -> Vec<(&'static str, String)> {
    let m = &d.header.manifest;
    let mut h = vec![
        ("tianping-transfer", d.queued.transfer_id.clone()),
        ("tianping-flow", m.flow.clone()),
        ("tianping-source", m.source.to_string()),
        ("tianping-destination", m.destination.to_string()),
        ("tianping-kind", m.kind.clone()),
        ("tianping-content-type", m.content_type.clone()),
        ("tianping-size", m.size.to_string()),
        ("tianping-content-sha256", hex(&d.sha256)),
        ("tianping-chunks-hash", d.queued.content_hash.clone()),
        ("tianping-submitter", m.submitter.subject.to_string()),
        (
            "tianping-submitter-roles",
            m.submitter
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("tianping-machine", m.submitter.machine.to_string()),
        (
            "tianping-labels",
            m.labels
                .iter()
                .map(|l| percent(l))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("tianping-redacted", m.redacted.to_string()),
        ("tianping-time", m.time.as_millis().to_string()),
        ("tianping-sequence", m.sequence.to_string()),
        ("tianping-policy-hash", m.policy_hash.to_string()),
    ];
    if let Some(s) = &m.schema {
        h.push(("tianping-schema", percent(s)));
    }
    if let Some(c) = &m.correlation {
        h.push(("tianping-correlation", percent(c)));
    }
    h
}

/// Percent-encodes everything but unreserved ASCII.
pub fn percent(s: &str) -> String {
    use std::fmt::Write as _;
    s.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'(' | b')') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}
