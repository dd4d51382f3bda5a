//! A mirror fed a batch larger than one stored record may be (64 MiB of events) stores it cut
//! into records, verifies it and reads back every entry; the batch streams in from a file; a
//! refused batch leaves nothing behind, even when it was refused only at its end.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::Write as _;

use tianping_audit::{
    AuditBatch, AuditLog, BatchError, Checkpoint, Event, StoreError, empty_root, leaf_hash, root_of,
};
use tianping_core::{Algorithm, RingSigner, Signer, UnixTime};

const ORIGIN: &str = "tianping.localhost/audit/big";
/// Each event carries this much filler: 700 of them are about 70 MiB.
const FILLER: usize = 100_000;
const COUNT: u64 = 700;

fn event(i: u64) -> Event {
    let mut e = Event::new(UnixTime::from_millis(1_000 + i), "request");
    e.object = format!("/cases/{i}");
    // Cheap to make, and not all alike, so each entry is its own.
    let c = char::from(b'a' + u8::try_from(i % 26).unwrap());
    e.attributes
        .insert("body".into(), c.to_string().repeat(FILLER));
    e
}

/// A batch of `COUNT` large events from size 0, signed as a log would sign it.
fn big_batch(signer: &dyn Signer) -> AuditBatch {
    let entries: Vec<Vec<u8>> = (0..COUNT).map(|i| event(i).encode()).collect();
    let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(e)).collect();
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: COUNT,
        root: root_of(&leaves),
    }
    .sign(signer)
    .unwrap();
    AuditBatch {
        signer: signer.public_key(),
        old_size: 0,
        proof: Vec::new(),
        note: cp.note().to_owned(),
        entries,
    }
}

#[test]
fn a_batch_over_64_mib_is_stored_verified_and_read_back_whole() {
    let s = RingSigner::generate(Algorithm::Ed25519).unwrap().0;
    let batch = big_batch(&s);
    let total: usize = batch.entries.iter().map(Vec::len).sum();
    assert!(total > 64 << 20, "{total} bytes of events");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.batch");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(&batch.encode().unwrap())
        .unwrap();
    drop(batch);

    // Altered at its very last entry: refused at the end, and nothing stays stored.
    let mut bad = big_batch(&s);
    if let Some(last) = bad.entries.last_mut() {
        *last = event(COUNT + 1).encode();
    }
    let mdir = tmp.path().join("mirror");
    let mirror = AuditLog::open_mirror(&mdir, Some(&s.public_key())).unwrap();
    assert!(matches!(
        mirror.apply_batch(&bad),
        Err(StoreError::Batch(BatchError::RootMismatch(COUNT)))
    ));
    drop(bad);
    assert_eq!(mirror.size(), 0);
    assert_eq!(
        mirror.entries(0).count(),
        0,
        "no record of the refused batch stays"
    );
    assert_eq!(mirror.root(), empty_root());

    let cp = mirror
        .apply_batch_from(std::io::BufReader::new(std::fs::File::open(&file).unwrap()))
        .unwrap();
    assert_eq!(cp.checkpoint().size, COUNT);
    drop(mirror);

    let mirror = AuditLog::open(&mdir).unwrap();
    let report = mirror.verify(None, &mut |_, _| {}).unwrap();
    assert_eq!((report.entries, report.signed_size), (COUNT, COUNT));
    let mut n = 0u64;
    for r in mirror.entries(0) {
        let r = r.unwrap();
        assert_eq!(r.index, n);
        assert_eq!(r.event, event(n));
        n += 1;
    }
    assert_eq!(n, COUNT);
}
