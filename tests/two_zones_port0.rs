//! Two full sets of the components that run as daemons today, side by side on one machine with
//! every port 0 in `fabric.toml`: in each of two data folders from `tianping init`, the IdP of
//! `private` (`idp serve`) and the first link's receiver and sender (`exchange receive|send`).
//! Each listener publishes the address it got; the test waits on those files, checks the IdP
//! answers discovery over TLS and `/healthz` on its admin listener, that each sender found its
//! receiver by the published address, and that no two listeners of the two sets share a port.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::indexing_slicing, reason = "tests fail loudly")]
#![expect(clippy::panic, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tianping_core::{Component, DataDir, Fabric, Listener, ZoneName};

/// Kills the child when dropped, so a failing test leaves no daemon behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tianping(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tianping"));
    c.arg("--data").arg(data).stdin(Stdio::null());
    c
}

fn ok(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every listener of every zone and every link on port 0.
fn ports_to_zero(fabric: &Path) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("gateway = ") || t.starts_with("idp = ") {
            let (k, _) = t.split_once(" = ").unwrap();
            out.push_str(&format!("{k} = 0"));
        } else if t.starts_with("admin = {") {
            let mut last_digit = false;
            for c in t.chars() {
                if c.is_ascii_digit() {
                    if !last_digit {
                        out.push('0');
                    }
                } else {
                    out.push(c);
                }
                last_digit = c.is_ascii_digit();
            }
        } else if t.starts_with("address = \"127.0.0.1:") {
            out.push_str("address = \"127.0.0.1:0\"");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    std::fs::write(fabric, out).unwrap();
}

/// The addresses `component` of `zone` published, once `want` are all there (bounded wait).
fn wait_published(
    dir: &DataDir,
    zone: &ZoneName,
    component: Component,
    want: &[Listener],
    d: &mut Daemon,
) -> Vec<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = d.0.try_wait().unwrap() {
            panic!("{component} of `{zone}` exited early: {status}");
        }
        let a = tianping_core::published_addrs(dir, zone, component).unwrap_or_default();
        let got: Option<Vec<SocketAddr>> = want.iter().map(|l| a.get(l).copied()).collect();
        if let Some(got) = got {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{component} of `{zone}` never published {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One installation's running set.
struct Set {
    _daemons: Vec<Daemon>,
    data: PathBuf,
    idp: SocketAddr,
    admin: SocketAddr,
    link: SocketAddr,
}

fn start_set(root: &Path) -> Set {
    let data = root.join("data");
    ok(tianping(&data).arg("init"));
    let dir = DataDir::new(&data);
    ports_to_zero(&dir.fabric());
    let fabric = Fabric::load(&dir.fabric()).unwrap();
    let private: ZoneName = "private".parse().unwrap();
    ok(tianping(&data).args(["idp", "init", "--zone", "private"]));

    let mut idp = Daemon(
        tianping(&data)
            .args(["idp", "serve", "--zone", "private"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let link = fabric.links()[0].clone();
    let mut receiver = Daemon(
        tianping(&data)
            .args(["exchange", "receive", "--zone", link.to.as_str()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let from = Listener::Link {
        from: link.from.clone(),
    };
    let link_addr = wait_published(
        &dir,
        &link.to,
        Component::ExchangeReceiver,
        &[from],
        &mut receiver,
    )[0];
    let mut sender = Daemon(
        tianping(&data)
            .args(["exchange", "send", "--zone", link.from.as_str()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // the sender names how many links it started: the one whose receiver published runs
    let first = BufReader::new(sender.0.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let started: usize = first
        .strip_prefix(&format!("sending from `{}` on ", link.from))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    assert!(started >= 1, "{first}");
    assert!(sender.0.try_wait().unwrap().is_none(), "the sender stopped");

    let got = wait_published(
        &dir,
        &private,
        Component::Idp,
        &[Listener::Public, Listener::Admin],
        &mut idp,
    );
    Set {
        _daemons: vec![sender, receiver, idp],
        data,
        idp: got[0],
        admin: got[1],
        link: link_addr,
    }
}

async fn answers(set: &Set) {
    let dir = DataDir::new(&set.data);
    let zone: ZoneName = "private".parse().unwrap();
    let fabric = Fabric::load(&dir.fabric()).unwrap();
    let host = fabric.zone(&zone).unwrap().idp_host.clone();
    let trust = std::fs::read(dir.zone_trust_bundle(&zone)).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .resolve(&host, set.idp);
    for cert in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
        b = b.add_root_certificate(cert);
    }
    let http = b.build().unwrap();
    let base = format!("https://{host}:{}", set.idp.port());
    let d: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{base}/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(d["issuer"], base.as_str());
    let health = reqwest::get(format!("http://{}/healthz", set.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_full_sets_of_components_run_side_by_side_on_port_0() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = start_set(a.path());
    let two = start_set(b.path());
    answers(&one).await;
    answers(&two).await;
    // each set trusts only its own installation's CA: the other's IdP is refused
    let crossed = Set {
        _daemons: Vec::new(),
        data: one.data.clone(),
        idp: two.idp,
        admin: two.admin,
        link: two.link,
    };
    let refused = tokio::spawn(async move { answers(&crossed).await }).await;
    assert!(
        refused.is_err(),
        "one installation's CA vouched for the other's IdP"
    );

    let tcp: BTreeSet<u16> = [one.idp, one.admin, two.idp, two.admin]
        .iter()
        .map(SocketAddr::port)
        .collect();
    assert_eq!(tcp.len(), 4, "TCP ports shared: {tcp:?}");
    let udp: BTreeSet<u16> = [one.link, two.link, one.idp, two.idp]
        .iter()
        .map(SocketAddr::port)
        .collect();
    // the IdPs' QUIC sockets take their TCP port's number; the links are their own
    assert_eq!(udp.len(), 4, "UDP ports shared: {udp:?}");
    assert!(tcp.iter().chain(&udp).all(|p| *p != 0));
}
