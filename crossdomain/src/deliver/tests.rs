//! The intake and the delivery queue over a real store: checked again, queued, delivered once
//! with retries and across a restart, the receipt after the delivery, replays refused.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tianping_core::{Algorithm, ManualClock, PolicyHash, RingSigner, Role, UnixTime, ZoneName};
use tianping_policies::{DEFAULT_POLICY, SharedPolicy};

use super::*;
use crate::{
    ChunkHasher, Filter, FilterInput, Filtered, Manifest, MemoryBound, Refusal, Step, StepState,
    Submitter,
};

#[derive(Debug)]
struct Same;

impl Filter for Same {
    fn kind(&self) -> &str {
        "pdf"
    }
    fn memory(&self) -> MemoryBound {
        MemoryBound::Proportional(1)
    }
    fn run(&self, _: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        Ok(Filtered {
            bytes: bytes.to_vec(),
            steps: ["validate", "rebuild", "strip-metadata"]
                .into_iter()
                .map(|s| Step::new(s, StepState::Done))
                .collect(),
            text: Vec::new(),
        })
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl Report for Events {
    fn report(&self, e: &ReceiverEvent<'_>) {
        let line = match e {
            ReceiverEvent::Received { header, .. } => {
                format!("received {}", transfer_id(header))
            }
            ReceiverEvent::Refused { reason, .. } => format!("refused {reason}"),
            ReceiverEvent::Delivered { delivery, .. } => {
                format!("delivered {} {}", delivery.transfer_id, delivery.attempts)
            }
            ReceiverEvent::ReceiptSent { receipt, reply, .. } => {
                format!("receipt {receipt} {reply}")
            }
            ReceiverEvent::Failed { .. } => "failed".to_owned(),
        };
        self.0.lock().unwrap().push(line);
    }
}

/// What a target took: transfer ids and payloads.
type Taken = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A target down for its first `down` attempts, and a sender whose first receipt fails.
struct Flaky {
    down: u32,
    taken: Taken,
    receipts: Arc<Mutex<Vec<String>>>,
    receipt_fails: u32,
}

impl Deliver for Flaky {
    fn deliver(&mut self, _: &Target, d: &Delivery<'_>) -> Result<(), Failure> {
        if self.down > 0 {
            self.down -= 1;
            return Err(Failure::Retry("connection refused".to_owned()));
        }
        self.taken
            .lock()
            .unwrap()
            .push((d.queued.transfer_id.clone(), d.payload.to_vec()));
        Ok(())
    }
    fn makes_receipts(&self) -> bool {
        true
    }
    fn send_receipt(&mut self, d: &Delivery<'_>, reply: &str) -> Result<String, Failure> {
        if self.receipt_fails > 0 {
            self.receipt_fails -= 1;
            return Err(Failure::Retry("the sender is not running".to_owned()));
        }
        self.receipts
            .lock()
            .unwrap()
            .push(format!("{reply} {}", d.queued.transfer_id));
        Ok("private:1".to_owned())
    }
}

fn zone(clock: &ManualClock, events: &Arc<Events>) -> Zone {
    let mut filters = Filters::new();
    filters.register(Arc::new(Same));
    let policy = tianping_policies::check("policy.tp", DEFAULT_POLICY)
        .into_policy()
        .unwrap();
    Zone {
        zone: "private".parse().unwrap(),
        policy: Arc::new(SharedPolicy::new(policy)),
        filters: Arc::new(filters),
        count: Arc::new(|_, _| Ok(Vec::new())),
        report: Arc::clone(events) as Arc<dyn Report>,
        clock: Arc::new(clock.clone()),
    }
}

/// A filing bundle written where the store keeps complete ones.
fn bundle(dir: &Path, name: &str, sequence: u64, payload: &[u8]) -> (BundleHeader, PathBuf) {
    let signer = RingSigner::generate(Algorithm::Ed25519).unwrap().0;
    let mut h = ChunkHasher::new(4096).unwrap();
    h.update(payload);
    let (size, table) = h.finish();
    let m = Manifest {
        flow: "online-filing".into(),
        source: "internet".parse::<ZoneName>().unwrap(),
        destination: "private".parse().unwrap(),
        kind: "pdf".into(),
        content_type: "application/pdf".into(),
        schema: None,
        size,
        chunk_size: 4096,
        chunks_hash: [0; 32],
        submitter: Submitter {
            subject: "p-lawyer-0042".parse().unwrap(),
            roles: vec![Role::Lawyer],
            machine: false,
        },
        labels: vec![],
        redacted: false,
        correlation: None,
        time: UnixTime::from_millis(1_764_000_000_000),
        sequence,
        policy_hash: PolicyHash::of(b"p"),
    };
    let header = BundleHeader::sign(m, vec![], table, b"der".to_vec(), &signer).unwrap();
    let mut bytes = header.encode().unwrap();
    bytes.extend_from_slice(payload);
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    (header, path)
}

#[test]
fn a_target_down_gets_the_transfer_once_then_its_receipt_goes_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UnixTime::from_millis(1_764_000_000_000));
    let events = Arc::new(Events::default());
    let store = Store::open_deferred(&tmp.path().join("store")).unwrap();
    let queue = Queue::open(&store).unwrap();
    let mut intake = Intake::new(zone(&clock, &events), queue.clone());
    let (header, path) = bundle(tmp.path(), "b1", 7, b"%PDF a claim");
    intake.deliver(3, 1, &header, &path).unwrap();
    // handed again after a crash: a no-op
    intake.deliver(3, 1, &header, &path).unwrap();
    // the same transfer under another link id: a replay
    intake.deliver(3, 2, &header, &path).unwrap();
    assert_eq!(queue.pending().unwrap().len(), 1);

    let taken = Arc::new(Mutex::new(Vec::new()));
    let receipts = Arc::new(Mutex::new(Vec::new()));
    let targets = BTreeMap::from([(
        "filing-intake".to_owned(),
        Target::Url {
            url: "https://intake.invalid/".into(),
            ca: "ca.pem".into(),
        },
    )]);
    let flaky = |down, receipt_fails| Flaky {
        down,
        taken: Arc::clone(&taken),
        receipts: Arc::clone(&receipts),
        receipt_fails,
    };
    let mut d = Deliverer::new(
        zone(&clock, &events),
        queue.clone(),
        targets.clone(),
        Box::new(flaky(2, 0)),
    );
    // two failed attempts, each waiting its backoff; nothing is due before it
    assert_eq!(d.pass().unwrap(), Some(backoff(1)));
    assert_eq!(d.pass().unwrap(), Some(backoff(1)));
    clock.advance(backoff(1));
    assert_eq!(d.pass().unwrap(), Some(backoff(2)));
    clock.advance(backoff(2));
    d.pass().unwrap();
    assert_eq!(taken.lock().unwrap().len(), 1);
    // delivered; the receipt waits in the queue, and the receiver restarts before it goes
    assert_eq!(queue.pending().unwrap().len(), 1);
    assert!(queue.pending().unwrap()[0].delivered);
    drop(d);
    let mut d = Deliverer::new(
        zone(&clock, &events),
        queue.clone(),
        targets,
        Box::new(flaky(0, 1)),
    );
    d.pass().unwrap();
    clock.advance(RETRY_MAX);
    d.pass().unwrap();
    assert_eq!(d.pass().unwrap(), None);

    assert_eq!(
        *taken.lock().unwrap(),
        vec![("internet:7".to_owned(), b"%PDF a claim".to_vec())]
    );
    assert_eq!(
        *receipts.lock().unwrap(),
        vec!["filing-receipt internet:7".to_owned()]
    );
    assert!(queue.pending().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(tmp.path().join("store/deliveries"))
            .unwrap()
            .count(),
        0
    );
    let log = events.0.lock().unwrap().clone();
    let said = |prefix: &str| log.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(said("received internet:7"), 2, "{log:?}");
    assert_eq!(
        said("refused transfer `internet:7` already arrived"),
        1,
        "{log:?}"
    );
    assert_eq!(said("delivered internet:7 3"), 1, "{log:?}");
    assert_eq!(said("receipt private:1 filing-receipt"), 1, "{log:?}");
    assert_eq!(said("failed"), 3, "{log:?}");
}

#[test]
fn the_queue_survives_a_reopened_store() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UnixTime::from_millis(1_764_000_000_000));
    let events = Arc::new(Events::default());
    {
        let store = Store::open_deferred(&tmp.path().join("store")).unwrap();
        let queue = Queue::open(&store).unwrap();
        let mut intake = Intake::new(zone(&clock, &events), queue);
        let (header, path) = bundle(tmp.path(), "b1", 9, b"%PDF");
        intake.deliver(1, 5, &header, &path).unwrap();
    }
    let store = Store::open_deferred(&tmp.path().join("store")).unwrap();
    let queue = Queue::open(&store).unwrap();
    let pending = queue.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].transfer_id, "internet:9");
    assert_eq!(pending[0].service, "filing-intake");
    assert_eq!(pending[0].reply.as_deref(), Some("filing-receipt"));
    // and a replay of it after the restart is still refused
    let mut intake = Intake::new(zone(&clock, &events), queue.clone());
    let (header, path) = bundle(tmp.path(), "b2", 9, b"%PDF");
    intake.deliver(1, 6, &header, &path).unwrap();
    assert_eq!(queue.pending().unwrap().len(), 1);
}
