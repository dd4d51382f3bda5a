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

/// Appends `n` events to the log at `log` (made on first use under the origin of the internet
/// zone's gateway), a checkpoint after each, signed by `key`.
fn append(data: &Path, log: &Path, key: &Path, from: usize, n: usize) {
    let mut child = tianping(data)
        .args(["audit", "append", "--every", "1", "--origin"])
        .arg("tianping.localhost/audit/internet/gateway")
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
    let log = s.data.join("zones/internet/gateway/audit");

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
        "tianping.localhost/audit/internet/gateway"
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
        .join("zones/private/audit-store/mirrors/internet/gateway");
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
