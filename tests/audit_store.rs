//! The audit store in `private` keeps a mirror of a zone's log from the `audit-batch` transfers
//! of the policy's `audit-from-*` flow, across the real link, with the fabric run by `up` on
//! port-0 addresses: batches overlap the one before, so one lost on the way is made up by the
//! next; a batch that leaves a gap is taken but not applied (audited), and does not hold up the
//! one after it; a forged batch changes nothing; the mirror verifies, holding what the log does.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

#[path = "common/exchange.rs"]
mod exchange;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exchange::{Daemon, tianping};

/// Appends `n` events to the log at `log` (made on first use as the log of an audit store in
/// `internet`, a component that does not run there, so that nothing else ships into its
/// mirror), a checkpoint after each, signed by `key`.
fn append(data: &Path, log: &Path, key: &Path, from: usize, n: usize) {
    let mut child = tianping(data)
        .args(["audit", "append", "--every", "1", "--origin"])
        .arg("tianping.localhost/audit/internet/audit-store")
        .arg("--log")
        .arg(log)
        .arg("--key")
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for i in from..from + n {
        writeln!(
            stdin,
            r#"{{"time": {}, "action": "request", "actor": "u-{i}", "outcome": "success"}}"#,
            1_796_000_000_000u64 + i as u64
        )
        .unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// `audit ship --since since` of `log` into a file of its own.
fn ship(data: &Path, log: &Path, since: u64, name: &str) -> PathBuf {
    let out = data.join(format!("{name}.batch"));
    let done = tianping(data)
        .args(["audit", "ship", "--since", &since.to_string(), "--log"])
        .arg(log)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    out
}

/// Submits `file` on `audit-from-internet`, as the internet zone's gateway (a machine).
fn submit(data: &Path, file: &Path) -> String {
    let out = tianping(data)
        .args([
            "exchange",
            "submit",
            "--zone",
            "internet",
            "--flow",
            "audit-from-internet",
            "--kind",
            "audit-batch",
            "--file",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The store's line about `transfer`, waited for among `up`'s lines.
fn store_line(up: &mut Daemon, transfer: &str, by: Instant) -> String {
    let want = format!("private/audit-store: batch {transfer} from `internet` ");
    loop {
        let line = up.expect_line(by);
        if line.starts_with(&want) {
            return line;
        }
    }
}

#[test]
fn shipped_batches_keep_the_store_s_mirror_whole_through_a_loss_and_a_gap() {
    let s = exchange::setup("127.0.0.1:0");
    let by = Instant::now() + Duration::from_secs(180);
    let mut up = {
        let mut cmd = tianping(&s.data);
        cmd.arg("up");
        Daemon::spawn("up", cmd)
    };
    loop {
        if up.expect_line(by) == "ready" {
            break;
        }
    }
    let key = s.data.join("gateway-log.key");
    let keygen = tianping(&s.data)
        .args(["audit", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let log = s.data.join("test-log");

    append(&s.data, &log, &key, 0, 3);
    let b1 = ship(&s.data, &log, 0, "b1");
    append(&s.data, &log, &key, 3, 2);
    // b2 is lost on the way (never sent); b3 overlaps it from where b1 ended
    let _b2 = ship(&s.data, &log, 3, "b2");
    append(&s.data, &log, &key, 5, 2);
    let b3 = ship(&s.data, &log, 3, "b3");

    let t1 = submit(&s.data, &b1);
    let line = store_line(&mut up, &t1, by);
    assert!(line.ends_with("holds 3 entries"), "{line}");
    let t3 = submit(&s.data, &b3);
    let line = store_line(&mut up, &t3, by);
    assert!(line.ends_with("holds 7 entries"), "{line}");

    // a batch from 8 on leaves a gap after 7: taken, not applied; the next one still is
    append(&s.data, &log, &key, 7, 3);
    let gap = ship(&s.data, &log, 8, "gap");
    let t = submit(&s.data, &gap);
    let line = store_line(&mut up, &t, by);
    assert!(line.contains("not applied"), "{line}");
    assert!(line.contains("size 7"), "{line}");

    // a batch cut short in its last entry: the sender's `audit-batch` filter refuses it, and
    // nothing is sent
    let after = ship(&s.data, &log, 7, "after");
    let good = std::fs::read(&after).unwrap();
    let mut cut = good.clone();
    let last = cut.len() - 1;
    cut[last] ^= 0x20;
    let cut_file = s.data.join("cut.batch");
    std::fs::write(&cut_file, &cut).unwrap();
    let refused = tianping(&s.data)
        .args([
            "exchange",
            "submit",
            "--zone",
            "internet",
            "--flow",
            "audit-from-internet",
            "--kind",
            "audit-batch",
            "--file",
        ])
        .arg(&cut_file)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("(422)") && err.contains("audit-batch"),
        "{err}"
    );

    // a well-formed batch whose entry was altered (`u-9` made `u-8`): it crosses, and the
    // store refuses it, its mirror unchanged
    let at = good.windows(3).position(|w| w == b"u-9").unwrap();
    let mut forged = good.clone();
    forged[at + 2] = b'8';
    let forged_file = s.data.join("forged.batch");
    std::fs::write(&forged_file, &forged).unwrap();
    let t = submit(&s.data, &forged_file);
    let line = store_line(&mut up, &t, by);
    assert!(line.contains("not applied"), "{line}");
    assert!(line.contains("size 7"), "{line}");

    let t = submit(&s.data, &after);
    let line = store_line(&mut up, &t, by);
    assert!(line.ends_with("holds 10 entries"), "{line}");

    // the store's status names the mirror
    let status = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(s.data.join("run/private-audit-store.sock"))
        .arg("http://store/status")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let mirrors = v["mirrors"].as_array().unwrap();
    assert_eq!(mirrors.len(), 1, "{v}");
    assert_eq!(
        mirrors[0]["origin"],
        "tianping.localhost/audit/internet/audit-store"
    );
    assert_eq!(mirrors[0]["size"], 10);

    let ok = Command::new("kill")
        .args(["-INT", &up.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    loop {
        if up.expect_line(by) == "stopped" {
            break;
        }
    }
    drop(up);

    // the mirror verifies and holds the log's entries, one by one
    let mirror = s
        .data
        .join("zones/private/audit-store/mirrors/internet/audit-store");
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
    let entries = |dir: &Path| {
        let out = tianping(&s.data)
            .args(["audit", "search", "--log"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["leaf"].clone())
            .collect::<Vec<_>>()
    };
    let own = entries(&log);
    assert_eq!(own.len(), 10);
    assert_eq!(entries(&mirror), own);

    // the store audited each batch it took
    let store_log = s.data.join("zones/private/audit-store/audit");
    let out = tianping(&s.data)
        .args(["audit", "search", "--log"])
        .arg(&store_log)
        .output()
        .unwrap();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect();
    let applied = events
        .iter()
        .filter(|e| e["action"] == "audit.batch.applied")
        .count();
    let not_applied = events
        .iter()
        .filter(|e| e["action"] == "audit.batch.refused")
        .count();
    assert_eq!(applied, 3, "{events:#?}");
    assert_eq!(not_applied, 2, "{events:#?}");
}

/// `run/up.json`'s pid of `zone/component`.
fn pid_of(data: &Path, zone: &str, component: &str) -> u64 {
    let text = std::fs::read_to_string(data.join("run").join("up.json")).unwrap();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    runs.iter()
        .find(|r| r["zone"] == zone && r["component"] == component)
        .and_then(|r| r["pid"].as_u64())
        .unwrap()
}

fn signal(pid: u64, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The shipper's line of `who` (`zone/component`): (since, size, transfer).
fn shipped(up: &mut Daemon, who: &str, by: Instant) -> (u64, u64, String) {
    let want = format!("{who}: audit: entries ");
    loop {
        let line = up.expect_line(by);
        let Some(rest) = line.strip_prefix(&want) else {
            continue;
        };
        let (range, rest) = rest.split_once(' ').unwrap();
        let (since, size) = range.split_once("..").unwrap();
        let transfer = rest
            .split_once("shipped as transfer ")
            .unwrap()
            .1
            .split_once(' ')
            .unwrap()
            .0;
        return (
            since.parse().unwrap(),
            size.parse().unwrap(),
            transfer.to_owned(),
        );
    }
}

#[test]
fn components_ship_their_own_logs_in_overlapping_batches_on_request() {
    let s = exchange::setup("127.0.0.1:0");
    let by = Instant::now() + Duration::from_secs(180);
    let mut up = {
        let mut cmd = tianping(&s.data);
        // only on request: no turn of the clock ships between the test's requests
        cmd.arg("up").env("TIANPING_AUDIT_SHIP_EVERY", "0");
        Daemon::spawn("up", cmd)
    };
    loop {
        if up.expect_line(by) == "ready" {
            break;
        }
    }
    let sender = pid_of(&s.data, "internet", "exchange-sender");
    let who = "internet/exchange-sender";
    // an idle sender's log is empty: nothing to ship
    signal(sender, "-USR1");
    loop {
        let line = up.expect_line(by);
        if line.starts_with(who) && line.contains("audit: nothing new to ship") {
            break;
        }
    }
    // a transfer makes its first entry
    let text = s.data.join("note.txt");
    std::fs::write(&text, "a note for the bank\n").unwrap();
    let out = tianping(&s.data)
        .args([
            "exchange",
            "submit",
            "--zone",
            "internet",
            "--flow",
            "link-test",
            "--kind",
            "text",
            "--file",
        ])
        .arg(&text)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // the first batch: the whole log so far
    signal(sender, "-USR1");
    let (since, first, t1) = shipped(&mut up, who, by);
    assert_eq!(since, 0);
    assert!(first > 0);
    let line = store_line(&mut up, &t1, by);
    assert!(line.ends_with(&format!("holds {first} entries")), "{line}");

    // the second starts where the one before the last ended (0): it holds the first again
    signal(sender, "-USR1");
    let (since, second, t2) = shipped(&mut up, who, by);
    assert_eq!(since, 0);
    assert!(second > first, "the first submission was logged: {second}");
    let line = store_line(&mut up, &t2, by);
    assert!(line.ends_with(&format!("holds {second} entries")), "{line}");

    // the third from where the first ended: it overlaps the second
    signal(sender, "-USR1");
    let (since, third, t3) = shipped(&mut up, who, by);
    assert_eq!(since, first);
    let line = store_line(&mut up, &t3, by);
    assert!(line.ends_with(&format!("holds {third} entries")), "{line}");

    // the receiver that took the note ships its own log through its zone's sender
    signal(pid_of(&s.data, "external", "exchange-receiver"), "-USR1");
    let (since, size, t) = shipped(&mut up, "external/exchange-receiver", by);
    assert_eq!(since, 0);
    let want = format!("private/audit-store: batch {t} from `external` ");
    let line = loop {
        let line = up.expect_line(by);
        if line.starts_with(&want) {
            break line;
        }
    };
    assert!(line.ends_with(&format!("holds {size} entries")), "{line}");

    // the gateway too, once a request it decided is in its log
    let addrs = tianping_core::published_addrs(
        &s.dir,
        &"internet".parse().unwrap(),
        tianping_core::Component::Gateway,
    )
    .unwrap();
    let port = addrs[&tianping_core::Listener::Public].port();
    let host = "gw.internet.tianping.localhost";
    let asked = Command::new("curl")
        .args([
            "-s",
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--resolve",
        ])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/filings"))
        .output()
        .unwrap();
    assert!(!asked.stdout.is_empty());
    signal(pid_of(&s.data, "internet", "gateway"), "-USR1");
    let (since, size, t) = shipped(&mut up, "internet/gateway", by);
    assert_eq!(since, 0);
    assert!(size > 0);
    let line = store_line(&mut up, &t, by);
    assert!(line.ends_with(&format!("holds {size} entries")), "{line}");

    // the IdP of the zone ships its own log the same way
    signal(pid_of(&s.data, "internet", "idp"), "-USR1");
    let (since, size, t) = shipped(&mut up, "internet/idp", by);
    assert_eq!(since, 0);
    assert!(size > 0);
    let line = store_line(&mut up, &t, by);
    assert!(line.ends_with(&format!("holds {size} entries")), "{line}");

    signal(u64::from(up.pid()), "-INT");
    loop {
        if up.expect_line(by) == "stopped" {
            break;
        }
    }
    drop(up);
    for mirror in [
        "internet/exchange-sender",
        "external/exchange-receiver",
        "internet/idp",
        "internet/gateway",
    ] {
        let mirror = s
            .data
            .join("zones/private/audit-store/mirrors")
            .join(mirror);
        let verify = tianping(&s.data)
            .args(["audit", "verify", "--log"])
            .arg(&mirror)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}: {}",
            mirror.display(),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    // what was shipped is remembered beside the log
    let kept: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            s.data
                .join("zones/internet/exchange-sender/audit-shipped.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(kept["before"], second);
    assert_eq!(kept["last"], third);
}
