//! `tianping idp device add|list|remove` on a stopped IdP's store and on a running IdP
//! through its control socket (the store is the daemon's then): the same answers, the same
//! refusals (a certificate registered twice, an unknown user, a person's certificate), nothing
//! changed by a refusal, and each change in the IdP's audit log.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::panic, reason = "tests fail loudly")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tianping_core::{Component, DataDir, Listener, ZoneName};

const STRONG: &str = "Court-Passw0rd-2026";

fn run(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["--data", data.to_str().unwrap()];
    all.extend_from_slice(args);
    common::tianping(&all, stdin)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every listener of every zone on port 0.
fn ports_to_zero(fabric: &Path) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        let zeroed = if t.starts_with("gateway = ") || t.starts_with("idp = ") {
            let (k, _) = t.split_once(" = ").unwrap();
            format!("{k} = 0")
        } else if t.starts_with("admin = {") {
            let mut s = String::new();
            let mut in_num = false;
            for c in t.chars() {
                if c.is_ascii_digit() {
                    if !in_num {
                        s.push('0');
                    }
                    in_num = true;
                } else {
                    in_num = false;
                    s.push(c);
                }
            }
            s
        } else if t.starts_with("address = \"127.0.0.1:") {
            "address = \"127.0.0.1:0\"".to_owned()
        } else {
            line.to_owned()
        };
        out.push_str(&zeroed);
        out.push('\n');
    }
    std::fs::write(fabric, out).unwrap();
}

/// Kills the child when dropped, so a failing test leaves no daemon behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// SIGTERM, then waits (bounded) for the IdP to finish what it was doing and exit.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the IdP did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A data folder with the `private` zone's IdP initialised, every port 0.
fn world(tmp: &Path) -> (PathBuf, ZoneName) {
    let data = tmp.join("data");
    ok(&run(&data, &["init"], ""));
    ports_to_zero(&DataDir::new(&data).fabric());
    ok(&run(&data, &["idp", "init", "--zone", "private"], ""));
    (data, "private".parse().unwrap())
}

/// `idp serve`, and its public address once published (bounded wait).
fn serve(data: &Path, zone: &ZoneName) -> (Daemon, SocketAddr) {
    let mut d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tianping"))
            .arg("--data")
            .arg(data)
            .args(["idp", "serve", "--zone", zone.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let dir = DataDir::new(data);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = d.0.try_wait().unwrap() {
            panic!("idp serve exited early: {status}");
        }
        let a = tianping_core::published_addrs(&dir, zone, Component::Idp).unwrap_or_default();
        if let (Some(p), Some(_)) = (a.get(&Listener::Public), a.get(&Listener::Admin)) {
            return (d, *p);
        }
        assert!(
            Instant::now() < deadline,
            "the IdP never published its addresses"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a refusal, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `certs issue --kind KIND` in the zone's PKI; the chain's path.
fn issue(data: &Path, kind: &str, name: &str, extra: &[&str]) -> PathBuf {
    let out = data.parent().unwrap().join(name);
    let mut args = vec![
        "certs",
        "issue",
        "--zone",
        "private",
        "--kind",
        kind,
        "--name",
        name,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&run(data, &args, ""));
    out.with_extension("pem")
}

#[test]
fn devices_are_registered_listed_and_removed_on_a_stopped_and_a_running_idp() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, zone) = world(tmp.path());
    let idp = |args: &[&str]| {
        let mut all = vec!["idp", "device"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--zone", "private"]);
        run(&data, &all, "")
    };
    ok(&run(
        &data,
        &[
            "idp",
            "user",
            "add",
            "--zone",
            "private",
            "--sub",
            "judge-0009",
            "--login",
            "zhou",
            "--name",
            "周",
            "--password-stdin",
        ],
        &format!("{STRONG}\n"),
    ));
    let t7 = issue(&data, "device", "tablet-7", &[]);
    let t8 = issue(&data, "device", "tablet-8", &[]);
    let person = issue(
        &data,
        "client",
        "judge",
        &[
            "--subject-id",
            "judge-0009",
            "--court",
            "bj.01",
            "--role",
            "judge",
        ],
    );
    let s = |p: &Path| p.to_str().unwrap().to_owned();

    // stopped: to the store
    let added = ok(&idp(&[
        "add",
        "--id",
        "tablet-07",
        "--user",
        "zhou",
        "--cert",
        &s(&t7),
        "--name",
        "Tablet 7",
    ]));
    assert!(
        added.starts_with("device `tablet-07` registered to `judge-0009` (zhou), certificate "),
        "{added}"
    );
    let listed = ok(&idp(&["list"]));
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.starts_with("tablet-07  judge-0009  ") && listed.trim_end().ends_with("Tablet 7")
    );

    // running: through the control socket (the daemon holds the store)
    let (daemon, _) = serve(&data, &zone);
    assert_eq!(
        ok(&idp(&["list"])),
        listed,
        "the same listing from the running IdP"
    );
    let added = ok(&idp(&[
        "add",
        "--id",
        "tablet-08",
        "--user",
        "judge-0009",
        "--cert",
        &s(&t8),
    ]));
    assert!(
        added.contains("`tablet-08` registered to `judge-0009`"),
        "{added}"
    );
    for (args, says) in [
        (
            vec![
                "add",
                "--id",
                "tablet-09",
                "--user",
                "zhou",
                "--cert",
                &s(&t7),
            ],
            "`tablet-07`",
        ),
        (
            vec![
                "add",
                "--id",
                "tablet-10",
                "--user",
                "nobody",
                "--cert",
                &s(&t8),
            ],
            "nobody",
        ),
        (
            vec![
                "add",
                "--id",
                "judge-pc",
                "--user",
                "zhou",
                "--cert",
                &s(&person),
            ],
            "client",
        ),
        (vec!["remove", "--id", "tablet-99"], "tablet-99"),
    ] {
        let err = refused(&idp(&args));
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let listed = ok(&idp(&["list"]));
    let ids: Vec<&str> = listed
        .lines()
        .map(|l| l.split("  ").next().unwrap())
        .collect();
    assert_eq!(ids, ["tablet-07", "tablet-08"], "{listed}");
    assert_eq!(
        ok(&idp(&["remove", "--id", "tablet-07"])),
        "device `tablet-07` removed\n"
    );
    daemon.stop();

    // stopped again: the store shows what the running IdP did
    let listed = ok(&idp(&["list"]));
    let ids: Vec<&str> = listed
        .lines()
        .map(|l| l.split("  ").next().unwrap())
        .collect();
    assert_eq!(ids, ["tablet-08"], "{listed}");
    let dir = DataDir::new(&data);
    let log = tianping_audit::AuditLog::open(&dir.audit_log(&zone, Component::Idp)).unwrap();
    let events: Vec<(String, String)> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action.starts_with("idp.device."))
        .map(|e| (e.action, e.object))
        .collect();
    let want = [
        ("idp.device.add", "tablet-07"),
        ("idp.device.add", "tablet-08"),
        ("idp.device.remove", "tablet-07"),
    ]
    .map(|(a, o)| (a.to_owned(), o.to_owned()));
    assert_eq!(events, want);
}
