//! What the gateway's command-line tests share: the `tianping` binary run on a data folder, its
//! daemons (killed when dropped) and their readiness (addresses published), and the folder
//! made ready for them (ports 0, the `private` zone's policy copy, its IdP initialised).
//! Included by path (`#[path = "common/gateway.rs"]`) beside `common`.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::panic, reason = "tests fail loudly")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tianping_core::{Component, DataDir, Listener, ZoneName};

/// `tianping init` in `tmp/data` with every port 0, `policy` as the `private` zone's copy, and
/// the zone's IdP initialised; the data folder.
pub(crate) fn private_zone(tmp: &Path, policy: &str) -> PathBuf {
    let data = tmp.join("data");
    ok(&run(&data, &["init"], ""));
    let dir = DataDir::new(&data);
    ports_to_zero(&dir.fabric());
    std::fs::write(dir.zone_policy(&"private".parse().unwrap()), policy).unwrap();
    ok(&run(&data, &["idp", "init", "--zone", "private"], ""));
    data
}

pub(crate) fn run(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["--data", data.to_str().unwrap()];
    all.extend_from_slice(args);
    crate::common::tianping(&all, stdin)
}

pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every listener of every zone on port 0.
pub(crate) fn ports_to_zero(fabric: &Path) {
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

/// Binds `case-management` to `url` (its certificate under the zone's trust bundle).
pub(crate) fn bind_service(fabric: &Path, url: &str) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let head = "[services.case-management]\n";
    let start = text.find(head).unwrap() + head.len();
    let rest = text.get(start..).unwrap();
    let end = rest.find("\n\n").map_or(text.len(), |i| start + i);
    let new = format!(
        "{}zone = \"private\"\nurl = \"{url}\"\nca = \"zones/private/trust.pem\"{}",
        text.get(..start).unwrap(),
        text.get(end..).unwrap()
    );
    std::fs::write(fabric, new).unwrap();
}

/// Kills the child when dropped (SIGKILL), so a failing test leaves no daemon behind.
pub(crate) struct Daemon(pub(crate) Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// SIGTERM, then waits (bounded) for it to exit.
    pub(crate) fn stop(mut self) {
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
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `tianping <args>` as a daemon, and its public and admin addresses once it published both
/// (the same readiness for `idp serve` and `gateway`).
pub(crate) fn start(
    data: &Path,
    args: &[&str],
    zone: &ZoneName,
    c: Component,
) -> (Daemon, SocketAddr, SocketAddr) {
    let mut d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tianping"))
            .arg("--data")
            .arg(data)
            .args(args)
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
            panic!("{args:?} exited early: {status}");
        }
        let a = tianping_core::published_addrs(&dir, zone, c).unwrap_or_default();
        if let (Some(p), Some(a)) = (a.get(&Listener::Public), a.get(&Listener::Admin)) {
            return (d, *p, *a);
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never published its addresses"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
