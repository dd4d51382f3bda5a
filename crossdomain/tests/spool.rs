//! The sender's spool and the receiver's store (feature `daemon`): ids per link, a fresh epoch
//! at each start, every spooled transfer resumed, bundles handed on whole and never twice.
#![cfg(feature = "daemon")]
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod bundles;

use std::sync::Arc;

use tianping_core::{Algorithm, RingSigner, Signer, UnixTime};
use tianping_crossdomain::{
    Arrival, Assembler, Ended, FolderSink, LinkConfig, PinnedKeys, Receiver, ReceiverConfig,
    Sender, Spool, Store, TransferSource,
};

fn read_all(source: &mut dyn TransferSource) -> Vec<u8> {
    let mut buf = vec![0u8; usize::try_from(source.len()).unwrap()];
    source.read_at(0, &mut buf).unwrap();
    buf
}

#[test]
fn the_spool_numbers_per_link_takes_fresh_epochs_and_resumes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let first_epoch = spool.epoch();
    assert_eq!(spool.submit(7, &mut &b"one"[..]).unwrap(), 1);
    assert_eq!(spool.submit(7, &mut &b"two"[..]).unwrap(), 2);
    assert_eq!(spool.submit(8, &mut &b"other link"[..]).unwrap(), 1);
    assert_eq!(spool.submit(7, &mut &b"three"[..]).unwrap(), 3);
    assert!(
        spool.submit(7, &mut &b""[..]).is_err(),
        "empty payloads are refused"
    );
    spool.sent(7, 2).unwrap();
    drop(spool);

    let spool = Spool::open(dir.path()).unwrap();
    assert!(spool.epoch() > first_epoch);
    let mut pending = spool.pending(7).unwrap();
    let ids: Vec<u64> = pending.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [1, 3]);
    assert_eq!(read_all(&mut pending[1].1), b"three");
    assert_eq!(spool.pending(8).unwrap().len(), 1);
    // numbering goes on after the restart, and an id taken before is never reused
    assert_eq!(spool.submit(7, &mut &b"four"[..]).unwrap(), 4);
    assert_eq!(spool.len(), 4);
}

/// Every datagram of the spooled transfers of link 5, in order, then a few heartbeats.
fn datagrams(spool: &Spool) -> Vec<Vec<u8>> {
    let mut sender = Sender::new(LinkConfig::new(5), spool.epoch()).unwrap();
    for (id, file) in spool.pending(5).unwrap() {
        sender.submit(id, Box::new(file)).unwrap();
    }
    let mut out = Vec::new();
    let mut all = Vec::new();
    while let Some(sent) = sender.next_datagram(&mut out).unwrap() {
        all.push(out.clone());
        if sent.finished {
            spool.sent(5, sent.transfer).unwrap();
        }
    }
    for _ in 0..3 {
        sender.heartbeat(&mut out).unwrap();
        all.push(out.clone());
    }
    all
}

fn receive(
    store: &mut Store,
    trust: &Arc<PinnedKeys>,
    sink: &mut FolderSink,
    wire: &[Vec<u8>],
) -> Vec<(u64, Ended)> {
    let floor = store.floor(5).unwrap();
    let mut asm = Assembler::new(
        Receiver::new(ReceiverConfig::new(5), Some(floor)),
        trust.clone(),
    );
    let mut arrivals: Vec<Arrival> = Vec::new();
    let mut ended = Vec::new();
    for d in wire {
        asm.receive(d, UnixTime::from_secs(1_764_000_000), &mut arrivals);
        for a in arrivals.drain(..) {
            ended.extend(store.accept(5, a, sink).unwrap());
        }
    }
    ended
}

#[test]
fn the_store_hands_on_whole_bundles_once_even_when_the_link_replays() {
    let (signer, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
    let other = RingSigner::generate(Algorithm::Ed25519).unwrap().0;
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let good = [
        bundles::bundle(&[7u8; 200_000], &signer, 64 * 1024),
        bundles::bundle(b"a ruling", &signer, 64 * 1024),
    ];
    let forged = bundles::bundle(b"not from a node of the zone", &other, 64 * 1024);
    assert_eq!(spool.submit(5, &mut &good[0][..]).unwrap(), 1);
    assert_eq!(spool.submit(5, &mut &forged[..]).unwrap(), 2);
    assert_eq!(spool.submit(5, &mut &good[1][..]).unwrap(), 3);
    let wire = datagrams(&spool);
    assert!(spool.is_empty(), "sent transfers leave the spool");

    let trust = Arc::new(PinnedKeys(vec![signer.public_key()]));
    let mut sink = FolderSink::new(&dir.path().join("delivered")).unwrap();
    let mut store = Store::open(&dir.path().join("store"), &mut sink).unwrap();
    let mut ended = receive(&mut store, &trust, &mut sink, &wire);
    ended.sort_by_key(|(id, _)| *id);
    assert_eq!(
        ended,
        [
            (1, Ended::Delivered),
            (2, Ended::Refused),
            (3, Ended::Delivered)
        ]
    );
    assert_eq!(std::fs::read(sink.path(5, 1)).unwrap(), good[0]);
    assert_eq!(std::fs::read(sink.path(5, 3)).unwrap(), good[1]);
    assert!(
        !sink.path(5, 2).exists(),
        "a refused bundle is never handed on"
    );
    std::fs::remove_file(sink.path(5, 1)).unwrap();
    drop(store);

    // the receiver restarts and the same datagrams come again: nothing is handed on twice
    let mut store = Store::open(&dir.path().join("store"), &mut sink).unwrap();
    assert_eq!(store.floor(5).unwrap(), 4);
    assert_eq!(receive(&mut store, &trust, &mut sink, &wire), []);
    assert!(!sink.path(5, 1).exists());
    assert_eq!(store.ended(5, 2).unwrap(), Some(Ended::Refused));
}

#[test]
fn sent_transfers_are_retained_for_their_window_resent_under_new_ids_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = UnixTime::from_secs(1_000_000);
    let day = std::time::Duration::from_secs(86_400);
    {
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.submit(7, &mut &b"first"[..]).unwrap(), 1);
        assert_eq!(spool.submit(7, &mut &b"second"[..]).unwrap(), 2);
        spool
            .sent_retained(7, 1, t0, t0.saturating_add(day))
            .unwrap();
        spool
            .sent_retained(7, 2, t0, t0.saturating_add(day))
            .unwrap();
        // retention 0: gone at once
        assert_eq!(spool.submit(7, &mut &b"third"[..]).unwrap(), 3);
        spool.sent_retained(7, 3, t0, t0).unwrap();
        assert!(spool.is_empty());
    }
    // kept across a restart
    let spool = Spool::open(dir.path()).unwrap();
    let kept: Vec<u64> = spool.retained(7).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(kept, [1, 2]);
    assert!(spool.resend(7, 3).is_err(), "3 was not retained");
    assert!(spool.resend(8, 1).is_err(), "nothing on another link");
    // resent from 2 on: spooled anew under the next id, the same bytes
    assert_eq!(spool.resend(7, 2).unwrap(), [(2, 4)]);
    let mut pending = spool.pending(7).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0, 4);
    assert_eq!(read_all(&mut pending[0].1), b"second");
    assert_eq!(spool.last_id(7).unwrap(), 4);
    // pruned once the window passed, not before
    assert_eq!(spool.prune(t0).unwrap(), 0);
    assert_eq!(spool.prune(t0.saturating_add(day)).unwrap(), 2);
    assert!(spool.retained(7).unwrap().is_empty());
    assert!(spool.resend(7, 1).is_err(), "expired");
    // the resent copy is still whole after its original went
    let mut again = spool.open_pending(7, 4).unwrap();
    assert_eq!(read_all(&mut again), b"second");
}

#[test]
fn the_store_keeps_a_bounded_record_of_ended_ids_and_still_refuses_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = FolderSink::new(&dir.path().join("delivered")).unwrap();
    let mut store = Store::open(&dir.path().join("store"), &mut sink).unwrap();
    let to = tianping_crossdomain::KEEP_ENDED + 5_001;
    let ended = store
        .accept(4, Arrival::LostRange { from: 1, to }, &mut sink)
        .unwrap();
    assert_eq!(ended.len() as u64, to - 1);
    assert_eq!(store.floor(4).unwrap(), to);
    assert!(store.recorded(4) as u64 <= tianping_crossdomain::KEEP_ENDED);
    // old ids: record pruned, still ended; recent ones keep how they ended
    assert_eq!(store.ended(4, 1).unwrap(), None);
    assert!(store.is_ended(4, 1).unwrap());
    assert_eq!(store.ended(4, to - 1).unwrap(), Some(Ended::Lost));
    assert!(!store.is_ended(4, to).unwrap());
    // a late lost report of a pruned id changes nothing
    let again = store
        .accept(4, Arrival::LostRange { from: 1, to: 3 }, &mut sink)
        .unwrap();
    assert!(again.is_empty());
}

#[test]
fn a_transfer_waits_to_be_sent_only_once_its_record_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let stage = |bytes: &[u8]| {
        let path = spool.staging().unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // the record is asked with the id the transfer gets, before it waits
    let mut seen = Vec::new();
    let first = stage(b"recorded");
    let id = spool
        .commit_audited(3, &first, 8, None, &mut |id| {
            seen.push(id);
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, [id]);
    // a record that fails: refused, its bytes gone, nothing waits to be sent
    let second = stage(b"unrecorded");
    let refused =
        spool.commit_audited(3, &second, 10, None, &mut |_| Err("the log is full".into()));
    assert!(
        matches!(&refused, Err(tianping_crossdomain::SpoolError::NotRecorded(w)) if w == "the log is full"),
        "{refused:?}"
    );
    assert!(!second.exists());
    let pending: Vec<u64> = spool
        .pending(3)
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(pending, [id]);
    drop(spool);
    // and after a restart, still only the recorded one
    let spool = Spool::open(dir.path()).unwrap();
    let pending: Vec<u64> = spool
        .pending(3)
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(pending, [id]);
    let leftover = std::fs::read_dir(dir.path().join("payloads"))
        .unwrap()
        .count();
    assert_eq!(leftover, 1, "only the recorded transfer's bytes are kept");
}
