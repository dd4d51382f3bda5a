//! The `sled` store: group commit from many threads, checkpoints, proofs, search, tampering
//! found by `verify`, shipping to a mirror and refusing batches that do not extend it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
#![expect(clippy::cast_possible_truncation, reason = "small test values")]

use std::path::Path;
use std::sync::Arc;

use tianping_audit::{
    AuditBatch, AuditLog, BatchError, Event, Query, SignedCheckpoint, StoreError,
    verify_consistency, verify_inclusion,
};
use tianping_core::{Algorithm, RingSigner, Signer, UnixTime};

const ORIGIN: &str = "tianping.localhost/audit/test";

fn event(i: u64) -> Event {
    let mut e = Event::new(
        UnixTime::from_millis(1_000 + i),
        if i % 3 == 0 { "sign-in" } else { "request" },
    );
    e.actor = format!("u-{}", i % 5);
    e.outcome = if i % 4 == 0 { "deny" } else { "allow" }.into();
    e.object = format!("/cases/{i}");
    e.flow = if i % 7 == 0 {
        "filing".into()
    } else {
        String::new()
    };
    e.attributes.insert("n".into(), i.to_string());
    e
}

fn signer() -> RingSigner {
    RingSigner::generate(Algorithm::Ed25519).unwrap().0
}

fn filled(dir: &Path, n: u64, signer: &dyn Signer, checkpoint_every: u64) -> AuditLog {
    let log = AuditLog::create(dir, ORIGIN).unwrap();
    for i in 0..n {
        log.append(&event(i)).unwrap();
        if (i + 1) % checkpoint_every == 0 {
            log.checkpoint(signer).unwrap();
        }
    }
    log
}

#[test]
fn concurrent_appends_are_grouped_and_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::create(dir.path(), ORIGIN).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..100u64)
                    .map(|i| (t * 1000 + i, log.append(&event(t * 1000 + i)).unwrap()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let receipts: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(log.size(), 800);
    let mut seen: Vec<u64> = receipts.iter().map(|(_, r)| r.index).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..800).collect::<Vec<_>>());
    for (n, r) in &receipts {
        let rec = log.get(r.index).unwrap().unwrap();
        assert_eq!(rec.event, event(*n));
        assert_eq!(rec.leaf, r.leaf);
    }
    // A many-event call is one group too.
    let many: Vec<Event> = (0..50).map(event).collect();
    let rs = log.append_many(&many).unwrap();
    assert_eq!(rs.first().unwrap().index, 800);
    assert_eq!(rs.last().unwrap().index, 849);
    drop(log);
    // Reopening keeps everything; the store holds fewer records than events.
    let log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.size(), 850);
    let report = log.verify(None, &mut |_, _| {}).unwrap();
    assert_eq!(report.entries, 850);
    assert_eq!(report.root, log.root());
    drop(log);
    let db = sled_open(dir.path());
    let records = db.open_tree("batches").unwrap().len();
    assert!(records < 850, "{records} records for 850 events");
}

#[test]
fn one_process_per_log_folder() {
    let dir = tempfile::tempdir().unwrap();
    let _log = AuditLog::create(dir.path(), ORIGIN).unwrap();
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(StoreError::Busy(_))
    ));
    assert!(matches!(
        AuditLog::create(dir.path(), ORIGIN),
        Err(StoreError::Exists(_))
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        AuditLog::open(empty.path()),
        Err(StoreError::NotALog(_))
    ));
    assert!(AuditLog::create(&empty.path().join("x"), "bad origin").is_err());
}

#[test]
fn checkpoints_proofs_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let s = signer();
    let log = filled(dir.path(), 40, &s, 16);
    let cp = log.checkpoint(&s).unwrap();
    assert_eq!(cp.checkpoint().size, 40);
    let notes = log.checkpoint_notes().unwrap();
    assert_eq!(
        notes.iter().map(|n| n.0).collect::<Vec<_>>(),
        vec![16, 32, 40]
    );
    // Same size again: the same checkpoint, not a new one.
    assert_eq!(log.checkpoint(&s).unwrap().checkpoint(), cp.checkpoint());
    // Another key is refused.
    assert!(matches!(
        log.checkpoint(&signer()),
        Err(StoreError::KeyMismatch { .. })
    ));
    // Proofs against signed roots, checked with the public functions only.
    let key = s.public_key();
    let old = SignedCheckpoint::verify(&notes[0].1, &key).unwrap();
    for i in [0u64, 7, 15] {
        let p = log.inclusion_proof(i, 16).unwrap();
        verify_inclusion(&log.leaf(i).unwrap(), i, 16, &p, &old.checkpoint().root).unwrap();
    }
    let p = log.consistency_proof(16, 40).unwrap();
    verify_consistency(16, 40, &old.checkpoint().root, &cp.checkpoint().root, &p).unwrap();
    let report = log.verify(Some(&key), &mut |_, _| {}).unwrap();
    assert_eq!(
        (report.entries, report.checkpoints, report.signed_size),
        (40, 3, 40)
    );
    // Search.
    let q = Query {
        actor: Some("u-1".into()),
        outcome: Some("allow".into()),
        since: Some(UnixTime::from_millis(1_010)),
        ..Query::default()
    };
    let found: Vec<u64> = log.search(&q).map(|r| r.unwrap().index).collect();
    let want: Vec<u64> = (10..40).filter(|i| i % 5 == 1 && i % 4 != 0).collect();
    assert_eq!(found, want);
    let flows: Vec<u64> = log
        .search(&Query {
            flow: Some("filing".into()),
            until: Some(UnixTime::from_millis(1_020)),
            ..Query::default()
        })
        .map(|r| r.unwrap().index)
        .collect();
    assert_eq!(flows, vec![0, 7, 14]);
    assert_eq!(
        log.entries(37)
            .map(|r| r.unwrap().index)
            .collect::<Vec<_>>(),
        vec![37, 38, 39]
    );
}

#[test]
fn auto_checkpoints_every_n_entries() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::create(dir.path(), ORIGIN).unwrap();
    let s: Arc<dyn Signer> = Arc::new(signer());
    log.set_auto_checkpoint(s.clone(), 10);
    for i in 0..35 {
        log.append(&event(i)).unwrap();
    }
    let sizes: Vec<u64> = log
        .checkpoint_notes()
        .unwrap()
        .iter()
        .map(|n| n.0)
        .collect();
    assert_eq!(sizes, vec![10, 20, 30]);
    assert!(log.auto_checkpoint_error().is_none());
    log.verify(Some(&s.public_key()), &mut |_, _| {}).unwrap();
}

/// Rewrites the stored group records with `f` (as an attacker with the files would).
fn tamper(dir: &Path, f: impl FnOnce(&sled::Tree)) {
    let db = sled_open(dir);
    let t = db.open_tree("batches").unwrap();
    f(&t);
    db.flush().unwrap();
}

/// A stored packed record (`0x03`, count, leaf hashes, body length, LZ4 body) in the plain
/// form (`0x01`, count, then per entry hash, length, bytes), which the tests edit.
fn unpack(packed: &[u8]) -> Vec<u8> {
    assert_eq!(packed[0], 3);
    let count = u32::from_be_bytes(packed[1..5].try_into().unwrap()) as usize;
    let hashes = &packed[5..5 + 32 * count];
    let at = 5 + 32 * count;
    let body_len = u32::from_be_bytes(packed[at..at + 4].try_into().unwrap()) as usize;
    let mut body = vec![0u8; body_len];
    let n = lz4_flex::block::decompress_into(&packed[at + 4..], &mut body).unwrap();
    assert_eq!(n, body_len);
    let mut out = packed[..5].to_vec();
    out[0] = 1;
    let mut r = &body[..];
    for h in hashes.chunks(32) {
        let len = u32::from_be_bytes(r[..4].try_into().unwrap()) as usize;
        out.extend_from_slice(h);
        out.extend_from_slice(&r[..4 + len]);
        r = &r[4 + len..];
    }
    assert!(r.is_empty());
    out
}

/// The packed form of a plain record, as the store writes it.
fn pack(plain: &[u8]) -> Vec<u8> {
    let spans = entry_spans(plain);
    let mut hashes = Vec::new();
    let mut body = Vec::new();
    for (hash_at, bytes_at, len) in &spans {
        hashes.extend_from_slice(&plain[*hash_at..hash_at + 32]);
        body.extend_from_slice(&plain[bytes_at - 4..bytes_at + len]);
    }
    let mut out = vec![3u8];
    out.extend_from_slice(&(spans.len() as u32).to_be_bytes());
    out.extend_from_slice(&hashes);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&lz4_flex::block::compress(&body));
    out
}

/// Offsets of each entry's (hash, bytes) within a plain group record.
fn entry_spans(record: &[u8]) -> Vec<(usize, usize, usize)> {
    let count = u32::from_be_bytes(record[1..5].try_into().unwrap()) as usize;
    let mut at = 5;
    let mut out = Vec::new();
    for _ in 0..count {
        let hash_at = at;
        let len = u32::from_be_bytes(record[at + 32..at + 36].try_into().unwrap()) as usize;
        let bytes_at = at + 36;
        out.push((hash_at, bytes_at, len));
        at = bytes_at + len;
    }
    out
}

fn verify_fails_at(dir: &Path, key: &tianping_core::PublicKey) -> (u64, String) {
    let log = AuditLog::open(dir).unwrap();
    match log.verify(Some(key), &mut |_, _| {}) {
        Err(StoreError::Tampered { index, reason }) => (index, reason),
        other => panic!("verify did not fail: {other:?}"),
    }
}

#[test]
fn flipping_any_byte_of_any_event_is_named_by_verify() {
    let s = signer();
    let key = s.public_key();
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::create(dir.path(), ORIGIN).unwrap();
    let evs: Vec<Event> = (0..30).map(event).collect();
    log.append_many(&evs[..12]).unwrap();
    log.append_many(&evs[12..]).unwrap();
    log.checkpoint(&s).unwrap();
    drop(log);
    let pristine = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), pristine.path());
    let mut state = 0x5eed_u64;
    let mut checked = 0;
    for _ in 0..24 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let target = (state >> 33) % 30;
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        let (group, local) = if target < 12 {
            (0u64, target)
        } else {
            (12, target - 12)
        };
        let flip_hash = (state >> 20) % 4 == 0;
        tamper(work.path(), |t| {
            let mut v = unpack(&t.get(group.to_be_bytes()).unwrap().unwrap());
            let (hash_at, bytes_at, len) = entry_spans(&v)[local as usize];
            let pos = if flip_hash {
                hash_at + (state as usize >> 8) % 32
            } else {
                bytes_at + (state as usize >> 8) % len
            };
            v[pos] ^= 1 << ((state >> 3) % 8);
            t.insert(group.to_be_bytes(), pack(&v)).unwrap();
        });
        let (index, reason) = verify_fails_at(work.path(), &key);
        assert_eq!(index, target, "{reason}");
        checked += 1;
    }
    assert_eq!(checked, 24);
    // The untouched copy verifies.
    AuditLog::open(pristine.path())
        .unwrap()
        .verify(Some(&key), &mut |_, _| {})
        .unwrap();
}

#[test]
fn flipping_any_stored_byte_of_a_packed_record_is_found_or_changes_no_event() {
    let s = signer();
    let key = s.public_key();
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::create(dir.path(), ORIGIN).unwrap();
    let evs: Vec<Event> = (0..40).map(event).collect();
    log.append_many(&evs).unwrap();
    log.checkpoint(&s).unwrap();
    drop(log);
    let pristine = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), pristine.path());
    let stored = {
        let db = sled_open(pristine.path());
        db.open_tree("batches")
            .unwrap()
            .get(0u64.to_be_bytes())
            .unwrap()
            .unwrap()
            .to_vec()
    };
    let mut state = 0xf11b_u64;
    let (mut found, mut same) = (0, 0);
    for _ in 0..64 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pos = (state >> 33) as usize % stored.len();
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        tamper(work.path(), |t| {
            let mut v = stored.clone();
            v[pos] ^= 1 << ((state >> 3) % 8);
            t.insert(0u64.to_be_bytes(), v).unwrap();
        });
        let log = AuditLog::open(work.path());
        let outcome = log.map(|l| l.verify(Some(&key), &mut |_, _| {}));
        match outcome {
            Ok(Err(StoreError::Tampered { index, .. }))
            | Err(StoreError::Damaged { index, .. }) => {
                assert!(index < 40, "byte {pos}: index {index}");
                found += 1;
            }
            Ok(Ok(_)) => {
                // LZ4 may copy the same bytes from another place: then every event reads back
                // exactly as appended, and nothing the log asserts changed.
                let log = AuditLog::open(work.path()).unwrap();
                let back: Vec<Event> = log.entries(0).map(|r| r.unwrap().event).collect();
                assert_eq!(back, evs, "byte {pos} changed events but verify passed");
                same += 1;
            }
            other => panic!("byte {pos}: {other:?}"),
        }
    }
    assert_eq!(found + same, 64);
    assert!(found > same, "{found} found, {same} unchanged");
}

#[test]
fn reordering_truncating_and_rewriting_are_found() {
    let s = signer();
    let key = s.public_key();
    let pristine = tempfile::tempdir().unwrap();
    let log = AuditLog::create(pristine.path(), ORIGIN).unwrap();
    let evs: Vec<Event> = (0..30).map(event).collect();
    log.append_many(&evs[..10]).unwrap();
    log.checkpoint(&s).unwrap();
    log.append_many(&evs[10..20]).unwrap();
    log.append_many(&evs[20..]).unwrap();
    log.checkpoint(&s).unwrap();
    drop(log);
    let fresh = || {
        let d = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), d.path());
        d
    };

    // Two entries swapped inside a record (hashes moved with them): the signed root breaks.
    let d = fresh();
    tamper(d.path(), |t| {
        let v = unpack(&t.get(10u64.to_be_bytes()).unwrap().unwrap());
        let spans = entry_spans(&v);
        let (a, b) = (spans[2], spans[3]);
        let mut out = v[..a.0].to_vec();
        out.extend_from_slice(&v[b.0..b.1 + b.2]);
        out.extend_from_slice(&v[a.0..a.1 + a.2]);
        out.extend_from_slice(&v[b.1 + b.2..]);
        t.insert(10u64.to_be_bytes(), pack(&out)).unwrap();
    });
    let (index, reason) = verify_fails_at(d.path(), &key);
    assert_eq!(index, 10, "{reason}");
    assert!(
        reason.contains("signed checkpoint at size `30`"),
        "{reason}"
    );

    // Two records swapped.
    let d = fresh();
    tamper(d.path(), |t| {
        let a = t.get(10u64.to_be_bytes()).unwrap().unwrap();
        let b = t.get(20u64.to_be_bytes()).unwrap().unwrap();
        t.insert(10u64.to_be_bytes(), b).unwrap();
        t.insert(20u64.to_be_bytes(), a).unwrap();
    });
    let (index, _) = verify_fails_at(d.path(), &key);
    assert_eq!(index, 10);

    // The last record removed: truncation.
    let d = fresh();
    tamper(d.path(), |t| {
        t.remove(20u64.to_be_bytes()).unwrap();
    });
    let (index, reason) = verify_fails_at(d.path(), &key);
    assert_eq!(index, 20);
    assert!(reason.contains("truncated"), "{reason}");

    // A middle record removed.
    let d = fresh();
    tamper(d.path(), |t| {
        t.remove(10u64.to_be_bytes()).unwrap();
    });
    assert_eq!(verify_fails_at(d.path(), &key).0, 10);

    // An event rewritten with a freshly computed hash: the stored hash agrees, the root does not.
    let d = fresh();
    tamper(d.path(), |t| {
        let v = unpack(&t.get(0u64.to_be_bytes()).unwrap().unwrap());
        let spans = entry_spans(&v);
        let mut forged = event(4);
        forged.outcome = "allow".into();
        let bytes = forged.encode();
        let mut out = v[..spans[4].0].to_vec();
        out.extend_from_slice(&tianping_audit::leaf_hash(&bytes));
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
        out.extend_from_slice(&v[spans[4].1 + spans[4].2..]);
        t.insert(0u64.to_be_bytes(), pack(&out)).unwrap();
    });
    let (index, reason) = verify_fails_at(d.path(), &key);
    assert_eq!(index, 0, "{reason}");

    // A checkpoint note altered.
    let d = fresh();
    {
        let db = sled_open(d.path());
        let t = db.open_tree("checkpoints").unwrap();
        let v = t.get(30u64.to_be_bytes()).unwrap().unwrap().to_vec();
        let text = String::from_utf8(v)
            .unwrap()
            .replacen("\n30\n", "\n31\n", 1);
        t.insert(30u64.to_be_bytes(), text.as_bytes()).unwrap();
        db.flush().unwrap();
    }
    assert_eq!(verify_fails_at(d.path(), &key).0, 30);

    // And a different key than the one pinned is refused outright.
    let log = AuditLog::open(pristine.path()).unwrap();
    assert!(matches!(
        log.verify(Some(&signer().public_key()), &mut |_, _| {}),
        Err(StoreError::KeyMismatch { .. })
    ));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn mirror_rebuilds_from_batches_and_refuses_what_does_not_extend_it() {
    let s = signer();
    let key = s.public_key();
    let src = tempfile::tempdir().unwrap();
    let log = filled(src.path(), 25, &s, 10);
    let b1 = log.ship(0).unwrap(); // 0..20
    assert_eq!(b1.entries.len(), 20);
    log.checkpoint(&s).unwrap();
    let b2 = log.ship(20).unwrap(); // 20..25
    assert_eq!((b2.old_size, b2.entries.len()), (20, 5));
    // Through bytes, as shipped.
    let b1 = AuditBatch::decode(&b1.encode().unwrap()).unwrap();
    let b2 = AuditBatch::decode(&b2.encode().unwrap()).unwrap();

    let mdir = tempfile::tempdir().unwrap();
    let mirror = AuditLog::open_mirror(mdir.path(), Some(&key)).unwrap();
    // Out of order: refused, nothing changes.
    assert!(matches!(
        mirror.apply_batch(&b2),
        Err(StoreError::Batch(BatchError::Gap {
            expected: 0,
            found: 20
        }))
    ));
    assert_eq!(mirror.size(), 0);
    mirror.apply_batch(&b1).unwrap();
    // Again: the mirror holds it whole, and nothing changes.
    mirror.apply_batch(&b1).unwrap();
    assert_eq!(mirror.size(), 20);

    // A batch from a forked log (same key, different history) is refused.
    let fork_dir = tempfile::tempdir().unwrap();
    let fork = AuditLog::create(fork_dir.path(), ORIGIN).unwrap();
    for i in 0..25 {
        let mut e = event(i);
        if i == 3 {
            e.outcome = "failure".into();
        }
        fork.append(&e).unwrap();
    }
    fork.checkpoint(&s).unwrap();
    let forged = fork.ship(20).unwrap();
    assert!(matches!(
        mirror.apply_batch(&forged),
        Err(StoreError::Batch(BatchError::RootMismatch(25)))
    ));
    // A batch signed by another key is refused.
    let other = signer();
    let odir = tempfile::tempdir().unwrap();
    let olog = filled(odir.path(), 25, &other, 25);
    assert!(mirror.apply_batch(&olog.ship(20).unwrap()).is_err());
    // An altered entry inside a good batch is refused.
    let mut bad = b2.clone();
    bad.entries[1] = event(99).encode();
    assert!(mirror.apply_batch(&bad).is_err());
    assert_eq!(mirror.size(), 20);

    mirror.apply_batch(&b2).unwrap();
    assert_eq!(mirror.size(), 25);
    assert_eq!(mirror.root(), log.root());
    assert_eq!(mirror.origin(), ORIGIN);

    assert!(mirror.append(&event(1)).is_err());
    drop(mirror);
    // `verify` accepts the mirror like a local log.
    let mirror = AuditLog::open(mdir.path()).unwrap();
    assert!(mirror.is_mirror());
    let r = mirror.verify(Some(&key), &mut |_, _| {}).unwrap();
    assert_eq!((r.entries, r.signed_size), (25, 25));
}

/// Shippers overlap each batch with the one before, so one lost on the way stalls nothing: the
/// next starts before the mirror's size, its entries the mirror holds are compared one by one,
/// and the rest extends it. An overlap that differs is refused and changes nothing; a batch the
/// mirror holds whole changes nothing; one that starts past the mirror's size is a gap.
#[test]
fn overlapping_batches_make_up_for_a_lost_one() {
    let s = signer();
    let src = tempfile::tempdir().unwrap();
    let log = filled(src.path(), 30, &s, 10);
    let through =
        |since: u64| AuditBatch::decode(&log.ship(since).unwrap().encode().unwrap()).unwrap();
    let mdir = tempfile::tempdir().unwrap();
    let mirror = AuditLog::open_mirror(mdir.path(), Some(&s.public_key())).unwrap();
    // 0..30 in one batch at the checkpoint of 30, then more appended.
    mirror.apply_batch(&through(0)).unwrap();
    assert_eq!(mirror.size(), 30);
    for i in 30..50 {
        log.append(&event(i)).unwrap();
        if i == 39 {
            log.checkpoint(&s).unwrap(); // 30..40 would be the next batch, and is lost
        }
    }
    log.checkpoint(&s).unwrap();
    // The batch after it overlaps 25..30 with the mirror and brings 30..50.
    let next = through(25);
    assert_eq!((next.old_size, next.entries.len()), (25, 25));
    let cp = mirror.apply_batch(&next).unwrap();
    assert_eq!(cp.checkpoint().size, 50);
    assert_eq!((mirror.size(), mirror.root()), (50, log.root()));
    // Held whole: nothing changes.
    mirror.apply_batch(&through(40)).unwrap();
    mirror.apply_batch(&next).unwrap();
    assert_eq!((mirror.size(), mirror.root()), (50, log.root()));

    // An overlap that differs from what the mirror holds (a forked history signed by the same
    // key) is refused at the first entry that differs, and nothing is stored.
    let fork_dir = tempfile::tempdir().unwrap();
    let fork = AuditLog::create(fork_dir.path(), ORIGIN).unwrap();
    for i in 0..60 {
        let mut e = event(i);
        if i == 47 {
            e.outcome = "failure".into();
        }
        fork.append(&e).unwrap();
    }
    fork.checkpoint(&s).unwrap();
    assert!(matches!(
        mirror.apply_batch(&fork.ship(45).unwrap()),
        Err(StoreError::Batch(BatchError::Differs(47)))
    ));
    assert_eq!((mirror.size(), mirror.root()), (50, log.root()));
    // Past the mirror's size: a gap.
    for i in 50..70 {
        log.append(&event(i)).unwrap();
    }
    log.checkpoint(&s).unwrap();
    assert!(matches!(
        mirror.apply_batch(&through(55)),
        Err(StoreError::Batch(BatchError::Gap {
            expected: 50,
            found: 55
        }))
    ));
    // What the overlap stored is on disk: the mirror reopened has it, and takes the next.
    drop(mirror);
    let mirror = AuditLog::open_mirror(mdir.path(), Some(&s.public_key())).unwrap();
    assert_eq!(mirror.size(), 50);
    mirror.apply_batch(&through(48)).unwrap();
    assert_eq!((mirror.size(), mirror.root()), (70, log.root()));
}

/// Opens a log folder's database directly, as an attacker with the files could (the store uses
/// 8 MiB segments).
fn sled_open(dir: &Path) -> sled::Db {
    // sled's own threads may hold a just-dropped log's file lock a moment longer
    let mut tries = 0;
    loop {
        match sled::Config::new().path(dir).segment_size(8 << 20).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && tries < 250 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            done => return done.unwrap(),
        }
    }
}

#[test]
fn an_event_too_large_refuses_the_whole_call_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::create(dir.path(), ORIGIN).unwrap();
    log.append(&event(0)).unwrap();
    let mut big = event(1);
    big.reason = "x".repeat(tianping_audit::MAX_EVENT_BYTES);
    let r = log.append_many(&[event(2), big, event(3)]);
    assert!(
        matches!(
            r,
            Err(StoreError::Event(tianping_audit::EventError::TooLarge(_)))
        ),
        "{r:?}"
    );
    assert_eq!(log.size(), 1);
    log.append(&event(4)).unwrap();
    assert_eq!(log.verify(None, &mut |_, _| {}).unwrap().entries, 2);
}
