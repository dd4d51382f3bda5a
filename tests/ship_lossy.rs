//! A zone's audit batch lost on the real one-way link, and the mirror caught up by the next.
//!
//! The external zone's exchange receiver ships its own log on request (`SIGUSR1`) through its
//! zone's exchange sender, over the link `external` → `private` (UDP), to `private`'s receiver
//! and on to the audit store. Between the sender and the receiver runs a relay of the test's
//! own that forwards every datagram except those of one chosen transfer on that link (read from
//! each symbol's header), so the receiver sees none of its symbols and can only report it
//! lost. The next batch overlaps the lost one from where the mirror ends, and the store takes
//! it: the mirror then holds every entry of the receiver's log, entry for entry, and verifies.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

#[path = "common/exchange.rs"]
mod exchange;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exchange::{Daemon, Setup, deadline, tianping};
use tianping_core::{Component, Fabric, Listener};
use tianping_crossdomain::Datagram;

/// How many datagrams of each transfer the relay passed and dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    passed: u64,
    dropped: u64,
}

/// A UDP relay between a link's sender and its receiver that drops every symbol of the
/// transfers in `drop` on link `link`, and forwards everything else (heartbeats included, so
/// the receiver learns the dropped transfer was sent and reports it lost).
struct Relay {
    addr: SocketAddr,
    seen: Arc<Mutex<BTreeMap<u64, Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(to: SocketAddr, link: u32, drop: Vec<u64>) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // how often the loop looks at `stop`, not a wait standing in for a datagram
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(BTreeMap::<u64, Seen>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let out = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut buf = vec![0u8; 65_536];
            while !stop2.load(Ordering::Relaxed) {
                let n = match socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => panic!("relay: {e}"),
                };
                let bytes = &buf[..n];
                if let Ok(Datagram::Symbol { header, symbol, .. }) = Datagram::decode(bytes) {
                    let dropped = header.link == link && drop.contains(&symbol.transfer);
                    let mut seen = seen2.lock().unwrap();
                    let s = seen.entry(symbol.transfer).or_default();
                    if dropped {
                        s.dropped += 1;
                        continue;
                    }
                    s.passed += 1;
                }
                // a receiver's socket buffer that is full drops it, as a real link would
                let _ = out.send_to(bytes, to);
            }
        });
        Self {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> BTreeMap<u64, Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The address of the `[[links]]` table from `from` to `to` set to `addr`.
fn set_link_address(fabric: &Path, from: &str, to: &str, addr: SocketAddr) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let (mut in_link, mut ends) = (false, (String::new(), String::new()));
    let mut out = String::new();
    let mut done = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_link = line.trim() == "[[links]]";
            ends = (String::new(), String::new());
        }
        let value = |l: &str| {
            l.split_once('=')
                .unwrap()
                .1
                .trim()
                .trim_matches('"')
                .to_owned()
        };
        let t = line.trim_start();
        if in_link && t.starts_with("from") {
            ends.0 = value(t);
        } else if in_link && t.starts_with("to") {
            ends.1 = value(t);
        }
        if in_link && t.starts_with("address") && ends == (from.to_owned(), to.to_owned()) {
            out.push_str(&format!("address = \"{addr}\"\n"));
            done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        done,
        "no link `{from}` -> `{to}` (its address after from and to)"
    );
    std::fs::write(fabric, out).unwrap();
}

/// `tianping exchange send|receive --zone ZONE` (or `audit store`), shipping only on request,
/// started and ready.
fn daemon(s: &Setup, args: &[&str], zone: &str, ready: &str, by: Instant) -> Daemon {
    let mut cmd = tianping(&s.data);
    cmd.args(args)
        .args(["--zone", zone])
        .env("TIANPING_AUDIT_SHIP_EVERY", "0");
    let mut d = Daemon::spawn(&format!("{zone}/{}", args.join(" ")), cmd);
    d.ready(ready, by);
    d
}

/// Lines of `d` until one `want` accepts, which must come before `by`.
fn line_where(d: &mut Daemon, by: Instant, want: impl Fn(&str) -> bool) -> String {
    loop {
        let line = d.expect_line(by);
        if want(&line) {
            return line;
        }
    }
}

/// A note submitted on `link-test` (internet → external), seen delivered by the external
/// receiver: its log then holds the transfer's entries.
fn deliver_note(s: &Setup, rx: &mut Daemon, n: usize, by: Instant) {
    let file = s.tmp.path().join(format!("note-{n}.txt"));
    std::fs::write(&file, format!("note {n} for the bank\n")).unwrap();
    let out = tianping(&s.data)
        .args([
            "exchange",
            "submit",
            "--zone",
            "internet",
            "--flow",
            "link-test",
        ])
        .args(["--kind", "text", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let want = format!("transfer {id} delivered to bank-gateway");
    line_where(rx, by, |l| l.starts_with(&want));
}

/// Asks the external receiver to ship (`SIGUSR1`); the batch's (since, size, transfer id).
fn ship(rx: &mut Daemon, by: Instant) -> (u64, u64, String) {
    let ok = Command::new("kill")
        .args(["-USR1", &rx.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let line = line_where(rx, by, |l| l.starts_with("audit: entries "));
    let rest = line.strip_prefix("audit: entries ").unwrap();
    let (range, rest) = rest.split_once(' ').unwrap();
    let (since, size) = range.split_once("..").unwrap();
    let transfer = rest
        .split_once("shipped as transfer ")
        .unwrap()
        .1
        .split_once(' ')
        .unwrap()
        .0;
    (
        since.parse().unwrap(),
        size.parse().unwrap(),
        transfer.to_owned(),
    )
}

/// The audit store's mirrors: origin → size.
fn mirrors(s: &Setup) -> BTreeMap<String, u64> {
    let status = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(s.data.join("run/private-audit-store.sock"))
        .arg("http://store/status")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    v["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["origin"].as_str().unwrap().to_owned(),
                m["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The leaves of the log at `dir`, in order (`audit search`).
fn leaves(s: &Setup, dir: &Path) -> Vec<serde_json::Value> {
    let out = tianping(&s.data)
        .args(["audit", "search", "--log"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["leaf"].clone())
        .collect()
}

#[test]
fn a_batch_lost_on_the_link_is_made_up_by_the_next_one() {
    let s = exchange::setup("127.0.0.1:0");
    let by = deadline(180);
    let fabric = Fabric::load(&s.dir.fabric()).unwrap();
    let link = fabric
        .links()
        .iter()
        .find(|l| l.from.as_str() == "external" && l.to.as_str() == "private")
        .unwrap()
        .id;
    let origin = format!("{}/audit/external/exchange-receiver", fabric.domain);

    let mut store = daemon(&s, &["audit", "store"], "private", "audit store of", by);
    let mut private_rx = daemon(
        &s,
        &["exchange", "receive"],
        "private",
        "receiving into",
        by,
    );
    // the link's second transfer (the receiver's second batch) never reaches the receiver
    let published = tianping_core::published_addrs(
        &s.dir,
        &"private".parse().unwrap(),
        Component::ExchangeReceiver,
    )
    .unwrap();
    let receiver_addr = published[&Listener::Link {
        from: "external".parse().unwrap(),
    }];
    let relay = Relay::start(receiver_addr, link, vec![2]);
    // the external sender, started after this, sends the link's datagrams to the relay
    set_link_address(&s.dir.fabric(), "external", "private", relay.addr);
    let mut external_rx = daemon(
        &s,
        &["exchange", "receive"],
        "external",
        "receiving into",
        by,
    );
    let _external_tx = daemon(&s, &["exchange", "send"], "external", "sending from", by);
    let _internet_tx = daemon(&s, &["exchange", "send"], "internet", "sending from", by);

    // batch 1: the receiver's whole log, applied
    deliver_note(&s, &mut external_rx, 1, by);
    let (since, first, t1) = ship(&mut external_rx, by);
    assert_eq!(since, 0);
    assert!(first > 0);
    let want = format!("batch {t1} from `external` applied: `{origin}` holds {first} entries");
    line_where(&mut store, by, |l| l == want);

    // batch 2 (from 0 again, overlapping batch 1): every datagram dropped on the link; the
    // receiver, told by the sender's heartbeats that it was sent, reports it lost
    deliver_note(&s, &mut external_rx, 2, by);
    let (since, second, _t2) = ship(&mut external_rx, by);
    assert_eq!(since, 0);
    assert!(second > first);
    let lost = format!("link {link} transfer 2 lost");
    line_where(&mut private_rx, by, |l| l == lost);
    assert_eq!(
        mirrors(&s).get(&origin),
        Some(&first),
        "batch 2 never arrived"
    );

    // batch 3 starts where batch 1 ended, at the mirror's size: applied, the mirror up to date
    deliver_note(&s, &mut external_rx, 3, by);
    let (since, third, t3) = ship(&mut external_rx, by);
    assert_eq!(since, first, "batch 3 overlaps the lost batch 2");
    assert!(third > second);
    let want = format!("batch {t3} from `external` applied: `{origin}` holds {third} entries");
    line_where(&mut store, by, |l| l == want);
    assert_eq!(mirrors(&s).get(&origin), Some(&third));

    let seen = relay.seen();
    assert!(seen[&1].passed > 0 && seen[&1].dropped == 0, "{seen:?}");
    assert!(seen[&2].dropped > 0 && seen[&2].passed == 0, "{seen:?}");
    assert!(seen[&3].passed > 0 && seen[&3].dropped == 0, "{seen:?}");

    // stopped, the receiver's log holds what the mirror does, entry for entry, and the mirror
    // verifies
    external_rx.interrupt();
    external_rx.wait_exit();
    store.interrupt();
    store.wait_exit();
    let own = leaves(
        &s,
        &s.dir
            .audit_log(&"external".parse().unwrap(), Component::ExchangeReceiver),
    );
    let mirror = s
        .data
        .join("zones/private/audit-store/mirrors/external/exchange-receiver");
    assert_eq!(
        own.len() as u64,
        third,
        "the receiver's log grew after batch 3"
    );
    assert_eq!(leaves(&s, &mirror), own);
    let verify = tianping(&s.data)
        .args(["audit", "verify", "--log"])
        .arg(&mirror)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    eprintln!(
        "mirror of `{origin}`: {first} entries, batch 2 ({second}) lost on link {link} \
         ({} datagrams dropped), batch 3 {first}..{third} applied; relay {seen:?}",
        seen[&2].dropped
    );
}
