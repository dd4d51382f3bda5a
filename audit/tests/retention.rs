//! Retention on real `sled` folders: archiving whole leading records keeps the live log and
//! its proofs verifiable, the archive verifies on its own, nothing young or part of a record is
//! archived, short retention and tampered archives are refused, and a crash between the two
//! steps leaves a log that verifies and an archive that completes when run again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
#![expect(clippy::cast_possible_truncation, reason = "small test values")]

use std::path::Path;

use tianping_audit::{
    Archive, AuditLog, BatchError, Event, Retention, RetentionError, StoreError, danger,
    verify_consistency, verify_inclusion,
};
use tianping_core::{Algorithm, RingSigner, Signer, UnixTime};

const ORIGIN: &str = "tianping.localhost/audit/retention";
const DAY: u64 = 24 * 60 * 60 * 1000;

fn at_day(d: u64, n: u64) -> Event {
    let mut e = Event::new(UnixTime::from_millis(d * DAY + n), "request");
    e.actor = format!("u-{n}");
    e.object = format!("/cases/{d}/{n}");
    e
}

fn day(d: u64) -> UnixTime {
    UnixTime::from_millis(d * DAY)
}

fn signer() -> RingSigner {
    RingSigner::generate(Algorithm::Ed25519).unwrap().0
}

/// A log with one record per slice of days (each `append_many` of a few events is one record),
/// and a checkpoint after each record.
fn log_with_records(dir: &Path, records: &[&[u64]], signer: &dyn Signer) -> AuditLog {
    let log = AuditLog::create(dir, ORIGIN).unwrap();
    let mut n = 0;
    for days in records {
        let events: Vec<Event> = days
            .iter()
            .map(|d| {
                n += 1;
                at_day(*d, n)
            })
            .collect();
        log.append_many(&events).unwrap();
        log.checkpoint(signer).unwrap();
    }
    log
}

fn verify(log: &AuditLog) -> tianping_audit::VerifyReport {
    log.verify(None, &mut |_, _| {}).unwrap()
}

fn read_archive(path: &Path) -> Archive {
    Archive::decode(&std::fs::read(path).unwrap()).unwrap()
}

fn indices(log: &AuditLog) -> Vec<u64> {
    log.entries(0).map(|r| r.unwrap().index).collect()
}

#[test]
fn archiving_keeps_the_live_log_verifiable_and_the_archive_verifies_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let s = signer();
    let log = log_with_records(
        &dir,
        &[&[1, 1, 2, 2], &[3, 4, 5, 6], &[300, 301, 302, 303]],
        &s,
    );
    let leaves: Vec<_> = (0..12).map(|i| log.leaf(i).unwrap()).collect();
    let root_before = log.root();

    let out = tmp.path().join("a1.tpa");
    let report = log
        .archive(day(220), day(400), Retention::default(), &out, &s)
        .unwrap();
    assert_eq!((report.from, report.to), (0, 8));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(
        report.sha256.unwrap().as_slice(),
        ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()
    );
    assert_eq!(report.event, Some(12));
    assert_eq!(log.archived_size(), 8);

    // The live log: same tree, entries 0..8 gone, the archive event appended and signed.
    assert_eq!(log.size(), 13);
    assert_eq!(log.root_at(12).unwrap(), root_before);
    assert_eq!(indices(&log), (8..13).collect::<Vec<_>>());
    assert!(log.get(3).unwrap().is_none());
    let event = log.get(12).unwrap().unwrap().event;
    assert_eq!(event.action, "audit.archive");
    assert_eq!(event.attributes["from"], "0");
    assert_eq!(event.attributes["to"], "8");
    assert_eq!(event.content_hash, hex::encode(report.sha256.unwrap()));
    assert!(matches!(
        log.ship(0),
        Err(StoreError::Archived {
            index: 0,
            archived: 8
        })
    ));
    assert_eq!(log.ship(8).unwrap().entries.len(), 5);
    let r = verify(&log);
    assert_eq!((r.entries, r.archived, r.archived_checked), (13, 8, 0));
    assert_eq!(r.signed_size, 13);
    assert_eq!(
        log.archives().unwrap(),
        vec![(0, 8, report.sha256.unwrap())]
    );

    // The archive on its own: signed, and its entries hash to its checkpoint's root.
    let a1 = read_archive(&out);
    let checked = a1.check(Some(ORIGIN), &s.public_key()).unwrap();
    assert_eq!((checked.from, checked.to), (0, 8));
    assert_eq!(checked.leaves, leaves[..8]);
    assert!(
        a1.batch
            .entries
            .iter()
            .all(|e| Event::decode(e).unwrap().time < day(220))
    );
    let r = log
        .verify_with_archives(None, std::slice::from_ref(&a1), &mut |_, _| {})
        .unwrap();
    assert_eq!((r.archived, r.archived_checked), (8, 8));

    // Reopened, the archived prefix is known; a second archive starts where the first ended and
    // verifies on its own through the subtree roots of the prefix.
    drop(log);
    let log = AuditLog::open(&dir).unwrap();
    assert_eq!(log.archived_size(), 8);
    assert_eq!(verify(&log).archived, 8);
    let out2 = tmp.path().join("a2.tpa");
    let report = log
        .archive(day(500), day(700), Retention::default(), &out2, &s)
        .unwrap();
    assert_eq!((report.from, report.to), (8, 13));
    let a2 = read_archive(&out2);
    assert!(!a2.prefix.is_empty());
    let checked = a2.check(Some(ORIGIN), &s.public_key()).unwrap();
    assert_eq!(
        checked.leaves,
        (8..13).map(|i| log.leaf(i).unwrap()).collect::<Vec<_>>()
    );
    let r = log
        .verify_with_archives(Some(&s.public_key()), &[a1, a2], &mut |_, _| {})
        .unwrap();
    assert_eq!((r.entries, r.archived, r.archived_checked), (14, 13, 13));
    assert_eq!(indices(&log), vec![13]);
}

#[test]
fn young_entries_and_parts_of_records_are_never_archived() {
    let tmp = tempfile::tempdir().unwrap();
    let s = signer();
    // Record 2 holds one entry inside the retention period; record 3 is old but after it.
    let log = log_with_records(&tmp.path().join("log"), &[&[1, 2], &[3, 250, 4], &[5]], &s);
    let out = tmp.path().join("a.tpa");
    let report = log
        .archive(day(220), day(400), Retention::default(), &out, &s)
        .unwrap();
    assert_eq!((report.from, report.to), (0, 2));
    assert_eq!(
        log.get(3).unwrap().unwrap().event.time,
        day(250).saturating_add(std::time::Duration::from_millis(4))
    );
    assert_eq!(indices(&log)[..4], [2, 3, 4, 5]);

    // A cutoff inside a record: only the records wholly before it.
    let tmp = tempfile::tempdir().unwrap();
    let log = log_with_records(&tmp.path().join("log"), &[&[1, 2], &[3, 4], &[5, 6]], &s);
    let out = tmp.path().join("a.tpa");
    let cutoff = UnixTime::from_millis(4 * DAY); // entry 2 (day 3) is older, entry 3 is not
    let report = log
        .archive(cutoff, day(400), Retention::default(), &out, &s)
        .unwrap();
    assert_eq!((report.from, report.to), (0, 2));
    assert_eq!(log.get(2).unwrap().unwrap().index, 2);
    assert!(read_archive(&out).batch.entries.len() == 2);
    verify(&log);

    // Nothing old enough: no file, nothing removed, no event.
    let out = tmp.path().join("none.tpa");
    let size = log.size();
    let report = log
        .archive(day(3), day(400), Retention::default(), &out, &s)
        .unwrap();
    assert_eq!((report.from, report.to, report.sha256), (2, 2, None));
    assert!(!out.exists());
    assert_eq!(log.size(), size);
}

#[test]
fn short_retention_and_too_new_cutoffs_are_refused() {
    assert_eq!(Retention::days(179), Err(RetentionError::TooShort(179)));
    let tmp = tempfile::tempdir().unwrap();
    let s = signer();
    let log = log_with_records(&tmp.path().join("log"), &[&[1, 2], &[100]], &s);
    let out = tmp.path().join("a.tpa");
    // Now is day 200: day 20 is the newest cutoff a 180-day retention allows.
    let err = log
        .archive(day(21), day(200), Retention::default(), &out, &s)
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::Retention(RetentionError::CutoffTooNew { .. })
    ));
    assert!(
        log.archive(day(20), day(200), Retention::days(181).unwrap(), &out, &s)
            .is_err()
    );
    assert!(!out.exists());
    assert_eq!((log.size(), log.archived_size()), (3, 0));
    // Only through `danger`.
    let report = log
        .archive(day(200), day(200), danger::short_retention(0), &out, &s)
        .unwrap();
    assert_eq!((report.from, report.to), (0, 3));
    verify(&log);
}

#[test]
fn tampered_archives_are_reported_and_never_remove_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let s = signer();
    let log = log_with_records(&tmp.path().join("log"), &[&[1, 2], &[3, 4], &[300]], &s);
    let out = tmp.path().join("a.tpa");
    let prepared = log
        .archive_write(day(220), day(400), Retention::default(), &out, &s)
        .unwrap()
        .unwrap();
    assert_eq!((prepared.from, prepared.to), (0, 4));
    let good = std::fs::read(&out).unwrap();
    // Flip one byte of the last entry's bytes (the action `request`).
    let at = good.windows(7).rposition(|w| w == b"request").unwrap();
    let mut bad = good.clone();
    bad[at] ^= 0x20;
    std::fs::write(&out, &bad).unwrap();
    let err = log
        .archive_remove(&out, day(400), Retention::default())
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Batch(BatchError::RootMismatch(4))),
        "{err}"
    );
    assert_eq!(log.archived_size(), 0);
    assert_eq!(indices(&log), (0..5).collect::<Vec<_>>());
    let a = Archive::decode(&bad).unwrap();
    let err = log
        .verify_with_archives(None, &[a], &mut |_, _| {})
        .unwrap_err();
    assert!(matches!(err, StoreError::Tampered { .. }), "{err}");

    // An archive of another log with the same origin and key, valid on its own, is refused.
    let other = log_with_records(&tmp.path().join("other"), &[&[7, 8], &[9, 10]], &s);
    let other_out = tmp.path().join("other.tpa");
    other
        .archive(day(220), day(400), Retention::default(), &other_out, &s)
        .unwrap();
    let err = log
        .archive_remove(&other_out, day(400), Retention::default())
        .unwrap_err();
    assert!(matches!(err, StoreError::ArchiveRefused(_)), "{err}");
    let foreign = read_archive(&other_out);
    assert!(
        log.verify_with_archives(None, &[foreign], &mut |_, _| {})
            .is_err()
    );

    // An existing file that is not an unfinished archive of this log is never overwritten.
    let existing = tmp.path().join("keep.txt");
    std::fs::write(&existing, b"keep").unwrap();
    assert!(matches!(
        log.archive(day(220), day(400), Retention::default(), &existing, &s),
        Err(StoreError::ArchiveRefused(_))
    ));
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep");

    // The good file completes the archive.
    std::fs::write(&out, &good).unwrap();
    let r = log
        .archive_remove(&out, day(400), Retention::default())
        .unwrap();
    assert_eq!((r.from, r.to), (0, 4));
    assert_eq!(log.archived_size(), 4);
}

#[test]
fn a_finished_archive_of_another_log_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let (s1, s2) = (signer(), signer());
    let first = log_with_records(&tmp.path().join("first"), &[&[1, 2], &[300]], &s1);
    let out = tmp.path().join("first.tpa");
    first
        .archive(day(220), day(400), Retention::default(), &out, &s1)
        .unwrap();
    let kept = std::fs::read(&out).unwrap();
    // Both archives start at entry 0: the other log's must not take the first one's file.
    let second = log_with_records(&tmp.path().join("second"), &[&[3, 4], &[300]], &s2);
    let err = second
        .archive(day(220), day(400), Retention::default(), &out, &s2)
        .unwrap_err();
    assert!(matches!(err, StoreError::ArchiveRefused(_)), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), kept);
    assert_eq!(second.archived_size(), 0);
    // Nor does the same log's finished archive get written again.
    let err = first
        .archive(day(220), day(400), Retention::default(), &out, &s1)
        .unwrap();
    assert_eq!((err.from, err.to), (2, 2), "nothing more is old enough");
    assert_eq!(std::fs::read(&out).unwrap(), kept);
    let a = read_archive(&out);
    first
        .verify_with_archives(None, &[a], &mut |_, _| {})
        .unwrap();
}

#[test]
fn an_archive_file_other_than_the_one_recorded_fails_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let s = signer();
    let log = log_with_records(&tmp.path().join("log"), &[&[1, 2], &[300]], &s);
    let out = tmp.path().join("a.tpa");
    log.archive(day(220), day(400), Retention::default(), &out, &s)
        .unwrap();
    let good = read_archive(&out);
    log.verify_with_archives(None, std::slice::from_ref(&good), &mut |_, _| {})
        .unwrap();
    // The cutoff is no signature's: an older one still holds every entry, but it is not the
    // file the log recorded (its SHA-256 is in the `audit.archive` event and the log).
    let mut moved = good.clone();
    moved.cutoff = day(3);
    moved.check(Some(ORIGIN), &s.public_key()).unwrap();
    let err = log
        .verify_with_archives(None, &[moved], &mut |_, _| {})
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Tampered { index: 0, reason } if reason.contains("SHA-256")),
        "{err}"
    );
}

#[test]
fn proofs_of_retained_entries_still_verify_against_old_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let s = signer();
    let log = log_with_records(
        &tmp.path().join("log"),
        &[&[1, 2, 3], &[4, 5], &[300, 301]],
        &s,
    );
    let old = tianping_audit::SignedCheckpoint::verify(
        &log.checkpoint_note_at(7).unwrap().unwrap(),
        &s.public_key(),
    )
    .unwrap();
    let old = old.checkpoint().clone();
    log.archive(
        day(220),
        day(400),
        Retention::default(),
        &tmp.path().join("a.tpa"),
        &s,
    )
    .unwrap();
    assert_eq!(log.archived_size(), 5);
    for index in 5..7 {
        let p = log.prove_inclusion(index, 7).unwrap();
        p.verify().unwrap();
        verify_inclusion(&p.leaf, index, 7, &p.proof, &old.root).unwrap();
        assert_eq!(p.leaf, log.get(index).unwrap().unwrap().leaf);
    }
    let size = log.size();
    let c = log.prove_consistency(7, size).unwrap();
    verify_consistency(7, size, &old.root, &log.root(), &c.proof).unwrap();
    assert!(c.new_checkpoint.is_some());
}

#[test]
fn a_crash_between_writing_the_archive_and_removing_entries_is_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let s = signer();
    let log = log_with_records(&dir, &[&[1, 2], &[3], &[300]], &s);
    let out = tmp.path().join("a.tpa");
    let prepared = log
        .archive_write(day(220), day(400), Retention::default(), &out, &s)
        .unwrap()
        .unwrap();
    assert_eq!((prepared.from, prepared.to), (0, 3));
    drop(log);

    // The file is written, nothing removed: the log verifies as before, with the archive's
    // checkpoint among its own.
    let log = AuditLog::open(&dir).unwrap();
    let r = verify(&log);
    assert_eq!((r.entries, r.archived), (4, 0));
    assert!(log.checkpoint_note_at(3).unwrap().is_some());
    assert_eq!(indices(&log), (0..4).collect::<Vec<_>>());
    let r = log
        .verify_with_archives(None, &[read_archive(&out)], &mut |_, _| {})
        .unwrap();
    assert_eq!(r.archived_checked, 0);

    // Run again with the same file: it completes, writing the same archive.
    let report = log
        .archive(day(220), day(400), Retention::default(), &out, &s)
        .unwrap();
    assert_eq!((report.from, report.to), (0, 3));
    assert_eq!(report.sha256, Some(prepared.sha256));
    let r = log
        .verify_with_archives(None, &[read_archive(&out)], &mut |_, _| {})
        .unwrap();
    assert_eq!((r.entries, r.archived, r.archived_checked), (5, 3, 3));

    // A crash after removing the entries but before appending the event: the event is kept
    // in the store and appended by the next archive.
    let out2 = tmp.path().join("b.tpa");
    log.archive_write(day(500), day(700), Retention::default(), &out2, &s)
        .unwrap()
        .unwrap();
    log.archive_remove(&out2, day(700), Retention::default())
        .unwrap();
    drop(log);
    let log = AuditLog::open(&dir).unwrap();
    assert_eq!(log.archived_size(), 5);
    assert_eq!(verify(&log).archived, 5);
    let size = log.size();
    assert_eq!(log.append_pending_archive_event().unwrap(), Some(size));
    assert_eq!(log.append_pending_archive_event().unwrap(), None);
    let e = log.get(size).unwrap().unwrap().event;
    assert_eq!(e.action, "audit.archive");
    assert_eq!(
        (e.attributes["from"].as_str(), e.attributes["to"].as_str()),
        ("3", "5")
    );
    log.checkpoint(&s).unwrap();
    verify(&log);
}

#[test]
fn mirrors_cannot_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let s = signer();
    let mirror = AuditLog::open_mirror(&tmp.path().join("m"), Some(&s.public_key())).unwrap();
    assert!(matches!(
        mirror.archive(
            day(1),
            day(400),
            Retention::default(),
            &tmp.path().join("a"),
            &s
        ),
        Err(StoreError::IsMirror)
    ));
}

#[test]
fn retained_records_passed_off_as_archived_fail_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let s = signer();
    let log = log_with_records(&dir, &[&[1, 2], &[3, 4], &[300]], &s);
    log.archive(
        day(3),
        day(400),
        Retention::default(),
        &tmp.path().join("a.tpa"),
        &s,
    )
    .unwrap();
    assert_eq!(log.archived_size(), 2);
    drop(log);
    {
        // Replace the retained record at entry 2 by its leaf hashes only, as archiving would.
        // sled's own threads may hold the dropped log's file lock a moment longer: looked at
        // again until it is free (as the exchange spool opens its store)
        let mut tries = 0;
        let db = loop {
            match sled::Config::new().path(&dir).segment_size(8 << 20).open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && tries < 250 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                done => break done.unwrap(),
            }
        };
        let batches = db.open_tree("batches").unwrap();
        let v = batches.get(2u64.to_be_bytes()).unwrap().unwrap();
        // A packed record: 0x03, the count, then the leaf hashes.
        assert_eq!(v[0], 3);
        let count = u32::from_be_bytes(v[1..5].try_into().unwrap()) as usize;
        let mut stub = vec![2u8];
        stub.extend_from_slice(&(count as u32).to_be_bytes());
        stub.extend_from_slice(&v[5..5 + 32 * count]);
        batches.insert(2u64.to_be_bytes(), stub).unwrap();
        db.flush().unwrap();
    }
    let log = AuditLog::open(&dir).unwrap();
    assert_eq!(log.archived_size(), 4);
    match log.verify(None, &mut |_, _| {}) {
        Err(StoreError::Tampered { reason, .. }) => {
            assert!(reason.contains("recorded archives cover `2`"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
