//! The daemons' loops over real UDP on loopback (feature `daemon`): spooled transfers of mixed
//! sizes arrive in the store byte-identical; after both ends restart, numbering goes on in a
//! fresh epoch and nothing already delivered is handed on again.
#![cfg(feature = "daemon")]
#![expect(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

mod bundles;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, mpsc};

use tianping_core::{Algorithm, RingSigner, Signer, SystemClock};
use tianping_crossdomain::{
    Ended, FolderSink, LinkConfig, PinnedKeys, ReceiverConfig, Spool, Store, Submission, bind_udp,
    receive_into, send_spooled,
};

/// Runs both ends once over loopback until `expect` transfers ended; returns how they ended.
fn run_once(dir: &Path, trust: &Arc<PinnedKeys>, expect: usize) -> Vec<(u64, Ended)> {
    let rx_socket = bind_udp("127.0.0.1:0".parse().unwrap(), 32 << 20, 0).unwrap();
    let peer = rx_socket.local_addr().unwrap();
    let store_dir = dir.join("store");
    let sink_dir = dir.join("delivered");
    let trust = trust.clone();
    let receiving = std::thread::spawn(move || {
        let mut sink = FolderSink::new(&sink_dir).unwrap();
        let mut store = Store::open(&store_dir, &mut sink).unwrap();
        let mut ended = Vec::new();
        receive_into(
            &mut store,
            ReceiverConfig::new(3),
            trust,
            rx_socket,
            &SystemClock,
            &mut sink,
            |id, how| {
                ended.push((id, how));
                if ended.len() == expect {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .unwrap();
        ended
    });
    let spool = Spool::open(&dir.join("spool")).unwrap();
    let (inbox_tx, inbox) = mpsc::channel::<Submission>();
    drop(inbox_tx);
    let socket = bind_udp("127.0.0.1:0".parse().unwrap(), 0, 4 << 20).unwrap();
    // 300 Mbit/s: modest for loopback, so nothing is lost to a full buffer
    send_spooled(
        &spool,
        LinkConfig::new(3),
        300,
        socket,
        peer,
        &SystemClock,
        &inbox,
    )
    .unwrap();
    assert!(spool.is_empty(), "every sent transfer left the spool");
    let mut ended = receiving.join().unwrap();
    ended.sort_by_key(|(id, _)| *id);
    ended
}

#[test]
fn spooled_transfers_arrive_whole_and_once_across_restarts() {
    let (signer, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
    let trust = Arc::new(PinnedKeys(vec![signer.public_key()]));
    let dir = tempfile::tempdir().unwrap();
    let sizes = [3_000_000, 64 * 1024, 1, 1_400, 300_000];
    let bundles: Vec<Vec<u8>> = sizes
        .iter()
        .zip(1..)
        .map(|(n, seed)| bundles::bundle(&bundles::bytes(*n, seed), &signer, 256 * 1024))
        .collect();
    {
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        for (b, want) in bundles.iter().zip(1..) {
            assert_eq!(spool.submit(3, &mut &b[..]).unwrap(), want);
        }
    }
    let ended = run_once(dir.path(), &trust, sizes.len());
    let want: Vec<(u64, Ended)> = (1..=5).map(|id| (id, Ended::Delivered)).collect();
    assert_eq!(ended, want);
    let sink = FolderSink::new(&dir.path().join("delivered")).unwrap();
    for (b, id) in bundles.iter().zip(1..) {
        assert_eq!(
            &std::fs::read(sink.path(3, id)).unwrap(),
            b,
            "transfer {id}"
        );
    }

    // both ends restart; a new transfer takes the next id and is the only one handed on
    let late = bundles::bundle(b"filed after the restart", &signer, 256 * 1024);
    {
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        assert_eq!(spool.submit(3, &mut &late[..]).unwrap(), 6);
    }
    std::fs::remove_file(sink.path(3, 1)).unwrap();
    assert_eq!(run_once(dir.path(), &trust, 1), [(6, Ended::Delivered)]);
    assert_eq!(std::fs::read(sink.path(3, 6)).unwrap(), late);
    assert!(!sink.path(3, 1).exists(), "nothing is delivered twice");
}

/// Polls `done` (bounded) until it holds.
fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..3000 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("never: {what}");
}

#[test]
fn the_daemon_loops_keep_their_status_and_see_a_sender_restart() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tianping_crossdomain::{ReceiveStatus, SendOptions, SendStatus, run_receiver, run_sender};

    let (signer, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
    let trust = Arc::new(PinnedKeys(vec![signer.public_key()]));
    let dir = tempfile::tempdir().unwrap();
    let registry = tianping_net::Registry::new();
    let rx_status = Arc::new(ReceiveStatus::new(&registry, 3, "a", "b").unwrap());
    let rx_socket = bind_udp("127.0.0.1:0".parse().unwrap(), 32 << 20, 0).unwrap();
    let peer = rx_socket.local_addr().unwrap();
    let rx_stop = Arc::new(AtomicBool::new(false));
    let receiving = {
        let (status, stop, dir) = (rx_status.clone(), rx_stop.clone(), dir.path().to_owned());
        let trust: Arc<dyn tianping_crossdomain::SignerTrust> = trust.clone();
        std::thread::spawn(move || {
            let mut sink = FolderSink::new(&dir.join("delivered")).unwrap();
            let mut store = Store::open(&dir.join("store"), &mut sink).unwrap();
            let config = ReceiverConfig::new(3);
            run_receiver(
                &mut store,
                config,
                trust,
                &rx_socket,
                &SystemClock,
                &mut sink,
                &status,
                &stop,
                |_, _| {},
            )
            .unwrap();
        })
    };
    let send_once = |payload: &[u8], want_received: u64| {
        let spool = Arc::new(Spool::open(&dir.path().join("spool")).unwrap());
        spool
            .submit(3, &mut &bundles::bundle(payload, &signer, 256 * 1024)[..])
            .unwrap();
        let status = Arc::new(SendStatus::new(&registry, 3, "a", "b", 300, spool.epoch()).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let (_tx, inbox) = mpsc::channel::<u64>();
        let options = SendOptions {
            config: LinkConfig::new(3),
            mbps: 300,
            retain: std::time::Duration::from_secs(3600),
            beat_every: std::time::Duration::from_millis(20),
        };
        let socket = bind_udp("127.0.0.1:0".parse().unwrap(), 0, 4 << 20).unwrap();
        let sending = {
            let (spool, status, stop) = (spool.clone(), status.clone(), stop.clone());
            std::thread::spawn(move || {
                run_sender(
                    &spool,
                    options,
                    &socket,
                    &mut || Some(peer),
                    &SystemClock,
                    &inbox,
                    &status,
                    &stop,
                )
                .unwrap();
            })
        };
        eventually("received", || rx_status.received.get() == want_received);
        eventually("sent", || status.sent.get() == want_received);
        assert_eq!(status.peer(), Some(peer));
        // The sender beats every 20 ms while it runs; wait for one to arrive before stopping it.
        let beats_before = rx_status.detail().last_beat;
        eventually("a heartbeat", || {
            rx_status.detail().last_beat != beats_before
        });
        stop.store(true, Ordering::Relaxed);
        sending.join().unwrap();
        assert_eq!(spool.retained(3).unwrap().len() as u64, want_received);
        assert!(spool.is_empty());
        spool.epoch()
    };
    let first = send_once(b"before the restart", 1);
    let second = send_once(b"after the restart", 2);
    eventually("both epochs seen", || {
        rx_status.detail().epochs == [first, second]
    });
    let detail = rx_status.detail();
    assert_eq!(detail.last_received, Some(2));
    assert!(detail.last_beat.is_some());
    assert!(detail.lost_ids.is_empty());
    assert!(
        registry
            .render()
            .contains("tianping_exchange_received_total{from=\"a\",link=\"3\",to=\"b\"} 2")
    );
    rx_stop.store(true, Ordering::Relaxed);
    receiving.join().unwrap();
}
