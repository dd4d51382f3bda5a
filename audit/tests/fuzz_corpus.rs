//! Replays the checked-in fuzz corpora of this crate's targets on stable, and checks that the
//! valid seeds still decode (so the fuzzer starts from real inputs).
//!
//! `AUDIT_WRITE_SEEDS=1 cargo test -p tianping-audit --test fuzz_corpus -- --test-threads 1`
//! rewrites the seeds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::PathBuf;

use tianping_audit::{AuditBatch, Checkpoint, Event, SignedCheckpoint, internal};
use tianping_core::{Algorithm, RingSigner, UnixTime};

fn corpus(target: &str) -> PathBuf {
    tianping_core::internal::corpus_dir(target)
}

fn replay(target: &str, f: fn(&[u8])) {
    for (_, data) in tianping_core::internal::corpus(target).unwrap() {
        f(&data);
    }
}

fn sample_event(i: u64) -> Event {
    let mut e = Event::new(UnixTime::from_millis(1_764_000_000_000 + i), "transfer");
    e.node = "n1".into();
    e.zone = "internet".into();
    e.actor = "p-alice".into();
    e.outcome = "allow".into();
    e.flow = "filing".into();
    e.size = Some(4096);
    e.roles = vec!["litigant".into()];
    e.attributes
        .insert("case".into(), "(2026)京01民初1号".into());
    e
}

fn write_seeds() {
    let w = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(corpus(target)).unwrap();
        std::fs::write(corpus(target).join(name), bytes).unwrap();
    };
    w("audit_event", "full.bin", &sample_event(1).encode());
    w(
        "audit_event",
        "minimal.bin",
        &Event::new(UnixTime::from_millis(0), "sign-in").encode(),
    );
    w(
        "audit_event",
        "event.json",
        serde_json::to_string(&sample_event(2)).unwrap().as_bytes(),
    );
    let mut cut = sample_event(3).encode();
    cut.truncate(40);
    w("audit_event", "truncated.bin", &cut);

    let origin = "tianping.localhost/audit/n1";
    for alg in Algorithm::ALL {
        let (s, _) = RingSigner::generate(*alg).unwrap();
        let cp = Checkpoint {
            origin: origin.into(),
            size: 5,
            root: [9; 32],
        }
        .sign(&s)
        .unwrap();
        w(
            "audit_checkpoint",
            &format!("{alg}.note"),
            cp.note().as_bytes(),
        );
    }
    w(
        "audit_checkpoint",
        "extension.note",
        b"o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next\n\n\xe2\x80\x94 k AAAAAAA=\n",
    );

    let (s, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
    let entries: Vec<Vec<u8>> = (0..5).map(|i| sample_event(i).encode()).collect();
    let leaves: Vec<_> = entries
        .iter()
        .map(|e| tianping_audit::leaf_hash(e))
        .collect();
    let cp = Checkpoint {
        origin: origin.into(),
        size: 5,
        root: tianping_audit::root_of(&leaves),
    }
    .sign(&s)
    .unwrap();
    let full = AuditBatch {
        signer: tianping_core::Signer::public_key(&s),
        old_size: 0,
        proof: vec![],
        note: cp.note().to_owned(),
        entries: entries.clone(),
    };
    w("audit_batch", "first.batch", &full.encode().unwrap());
    let tail = AuditBatch {
        old_size: 3,
        proof: tianping_audit::consistency_proof(&leaves, 3, 5).unwrap(),
        entries: entries[3..].to_vec(),
        ..full
    };
    w("audit_batch", "extends.batch", &tail.encode().unwrap());
    let mut prefix = tianping_audit::Frontier::new();
    for h in &leaves[..3] {
        prefix.push(*h);
    }
    let archive = tianping_audit::Archive {
        cutoff: UnixTime::from_millis(1_764_000_000_100),
        prefix: prefix.subtrees(),
        batch: tail,
    };
    w("audit_batch", "tail.archive", &archive.encode().unwrap());

    let record: Vec<(Vec<u8>, tianping_audit::Hash)> = entries.into_iter().zip(leaves).collect();
    w(
        "audit_record",
        "five.packed",
        &internal::packed_record(&record),
    );
    w(
        "audit_record",
        "one.packed",
        &internal::packed_record(&record[..1]),
    );
    let mut archived = vec![2u8, 0, 0, 0, 2];
    archived.extend_from_slice(&[7u8; 64]);
    w("audit_record", "two.archived", &archived);
}

#[test]
fn audit_event_corpus() {
    if std::env::var_os("AUDIT_WRITE_SEEDS").is_some() {
        write_seeds();
    }
    replay("audit_event", internal::fuzz_event);
    let full = std::fs::read(corpus("audit_event").join("full.bin")).unwrap();
    assert!(Event::decode(&full).is_ok(), "the event seed is stale");
}

#[test]
fn audit_checkpoint_corpus() {
    replay("audit_checkpoint", internal::fuzz_checkpoint);
    let note = std::fs::read_to_string(corpus("audit_checkpoint").join("ed25519.note")).unwrap();
    assert_eq!(SignedCheckpoint::parse_unverified(&note).unwrap().size, 5);
}

#[test]
fn audit_batch_corpus() {
    replay("audit_batch", internal::fuzz_batch);
    for name in ["first.batch", "extends.batch"] {
        let b = std::fs::read(corpus("audit_batch").join(name)).unwrap();
        let b = AuditBatch::decode(&b).unwrap_or_else(|e| panic!("{name}: {e}"));
        if b.old_size == 0 {
            b.check(&tianping_audit::Frontier::new(), None, &b.signer)
                .unwrap();
        }
    }
    let a = std::fs::read(corpus("audit_batch").join("tail.archive")).unwrap();
    let a = tianping_audit::Archive::decode(&a).unwrap();
    let checked = a.check(None, &a.batch.signer).unwrap();
    assert_eq!((checked.from, checked.to), (3, 5));
}

#[test]
fn audit_record_corpus() {
    replay("audit_record", internal::fuzz_record);
    let five = std::fs::read(corpus("audit_record").join("five.packed")).unwrap();
    assert_eq!(five[0], 3, "the record seed is stale");
    assert_eq!(u32::from_be_bytes(five[1..5].try_into().unwrap()), 5);
}

#[test]
fn audit_service_request_corpus() {
    replay("audit_service_request", internal::fuzz_service_request);
    assert!(corpus("audit_service_request").join("search").exists());
}
