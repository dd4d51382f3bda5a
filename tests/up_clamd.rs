//! `up` supervises the ClamAV daemon it runs for the flows that ask `scan` (`classified-import`
//! in the default policy) as it does every component: started before them, listed in
//! `run/up.json` and `tianping status`, and started again when it dies, audited. Around a
//! SIGKILL of it the scan flow works: the EICAR test file is refused by its signature and a
//! clean file held for the security administrator, who approves; the classified zone's
//! receiver scans it again and delivers it.
//!
//! Needs `/usr/sbin/clamd` (Debian `clamav-daemon`, which `.ci/run` installs).
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

#[path = "common/exchange.rs"]
mod exchange;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exchange::{Daemon, Setup, deadline, tianping};
use tianping_certs::{TokenClaims, TokenSigner, UserClaims};
use tianping_core::{Acr, Clearance, Component, Role};

/// The EICAR anti-virus test file (eicar.org), 68 bytes, which the database `up` writes (or
/// the machine's) names.
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A user token of `private`'s gateway for its exchange sender, in a file.
fn user(s: &Setup, sub: &str, role: Role, n: usize) -> PathBuf {
    let zone = "private".parse().unwrap();
    let (cert, key) = s.dir.node(&zone, Component::Gateway);
    let signer = tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let chain = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
    let token = TokenSigner::new(Arc::new(signer), &chain)
        .unwrap()
        .sign(
            &TokenClaims::User(UserClaims {
                sub: sub.parse().unwrap(),
                roles: vec![role],
                court: Some("bj.01".parse().unwrap()),
                acr: Acr::Cert,
                clearance: Clearance::Secret,
            }),
            "exchange-sender",
            tianping_core::Clock::now(&tianping_core::SystemClock),
            Duration::from_secs(60),
        )
        .unwrap();
    let path = s.tmp.path().join(format!("{sub}-{n}.token"));
    std::fs::write(&path, token).unwrap();
    path
}

/// `exchange submit` of `body` as text on `classified-import`, as clerk `clerk-0001`:
/// (success, stdout, stderr).
fn import(s: &Setup, body: &[u8], n: usize) -> (bool, String, String) {
    let file = s.tmp.path().join(format!("import-{n}.txt"));
    std::fs::write(&file, body).unwrap();
    let token = user(s, "clerk-0001", Role::Clerk, n);
    let out = tianping(&s.data)
        .args(["exchange", "submit", "--zone", "private"])
        .args(["--flow", "classified-import", "--kind", "text", "--file"])
        .arg(&file)
        .arg("--as-user")
        .arg(&token)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr)
            .replace(['│', '×'], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The scan flow at the sender: EICAR refused by its signature, a clean text held for
/// approval (its id).
fn scans(s: &Setup, n: usize) -> String {
    let (ok, _, err) = import(s, EICAR, n);
    assert!(!ok, "EICAR was taken");
    assert!(err.contains("(422)") && err.contains("EICAR"), "{err}");
    let (ok, id, err) = import(
        s,
        format!("extract {n} for the classified network\n").as_bytes(),
        n + 1,
    );
    assert!(ok, "{err}");
    assert!(err.contains("held for approval"), "{err}");
    id
}

/// `run/up.json`'s entry of the ClamAV daemon.
fn clamd_entry(data: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(data.join("run").join("up.json")).unwrap();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    runs.into_iter()
        .find(|r| r["component"] == "clamd")
        .unwrap()
}

/// Whether process `pid` exists.
fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn up_restarts_a_killed_clamd_and_the_scan_flow_works_again() {
    // `.ci/run` installs it; a machine without it says so rather than pass in silence
    assert!(
        Path::new("/usr/sbin/clamd").exists(),
        "/usr/sbin/clamd is not installed (Debian: `apt install clamav-daemon`)"
    );
    let s = exchange::setup("127.0.0.1:0");
    let by = deadline(300);
    let mut cmd = tianping(&s.data);
    cmd.arg("up").env("TIANPING_AUDIT_SHIP_EVERY", "0");
    let mut up = Daemon::spawn("up", cmd);
    let seen = up.until("ready", by);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("runs classified/clamd: ")),
        "{seen:#?}"
    );
    let first = clamd_entry(&s.data);
    assert_eq!(first["zone"], "classified", "{first}");
    assert_eq!(first["ready"], true, "{first}");
    assert_eq!(first["restarts"], 0, "{first}");
    let pid = first["pid"].as_u64().unwrap();
    let held_before = scans(&s, 0);

    // SIGKILL: `up` starts it again, and it answers again
    let ok = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let again = loop {
        let r = clamd_entry(&s.data);
        if r["restarts"] == 1 && r["ready"] == true {
            break r;
        }
        assert!(Instant::now() < by, "clamd not back: {r}");
        // the interval between two looks at the board, not a wait standing in for it
        std::thread::sleep(Duration::from_millis(50));
    };
    let new_pid = again["pid"].as_u64().unwrap();
    assert_ne!(new_pid, pid);
    assert!(!alive(pid));

    // `status` lists it up, restarted once
    let out = tianping(&s.data)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "clamd")
        .unwrap()
        .clone();
    assert_eq!(listed["up"], true, "{listed}");
    assert_eq!(listed["restarts"], 1, "{listed}");
    assert_eq!(listed["pid"].as_u64(), Some(new_pid), "{listed}");
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert_eq!(doc["scan"]["answers"], true, "{doc:#}");

    // the scan flow works again, end to end: refused, held, approved, scanned again in
    // classified and delivered
    let held = scans(&s, 2);
    let approver = user(&s, "secadmin-0001", Role::Secadmin, 4);
    let out = tianping(&s.data)
        .args([
            "exchange",
            "approve",
            "--zone",
            "private",
            "--transfer",
            &held,
        ])
        .arg("--as-user")
        .arg(&approver)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!(
        "classified/exchange-receiver: transfer {held} delivered to classified-import-desk"
    );
    loop {
        let line = up.expect_line(by);
        assert!(!line.contains("refused"), "{line}");
        if line.starts_with(&want) {
            break;
        }
    }

    // stopped with `up`; its start, death, restart and stop audited
    up.interrupt();
    up.until("stopped", by);
    up.wait_exit();
    assert!(!alive(new_pid), "clamd outlived `up`");
    let out = tianping(&s.data)
        .args(["audit", "search", "--log"])
        .arg(s.data.join("supervisor").join("audit"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let events: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .filter(|e| e["object"] == "classified/clamd")
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events,
        [
            "component.start",
            "component.exit",
            "component.restart",
            "component.stop"
        ],
        "{events:?}"
    );
    eprintln!(
        "clamd {pid} killed, {new_pid} restarted; held {held_before} and {held}, the latter delivered"
    );
}
