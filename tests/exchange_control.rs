//! The exchange daemons' control sockets as real processes over loopback UDP: bundles
//! submitted to the running sender's socket arrive byte-identical; `status` answers for both
//! daemons with the counts; `/metrics` shows the link counters; a submit without a node token
//! is refused; a transfer sent while the receiver was down is reported lost and, resent from
//! the sender's retention, arrives under a new id.
#![expect(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tianping_core::{Component, DataDir, Fabric, Listener, PolicyHash};
use tianping_crossdomain::{BundleHeader, ChunkHasher, Manifest, Submitter};

fn tianping(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tianping"));
    c.arg("--data").arg(data);
    c
}

/// Kills the child when dropped, so a failing test leaves no daemon behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a daemon and hands its stdout lines to a channel.
fn start(data: &Path, args: &[&str]) -> (Daemon, mpsc::Receiver<String>) {
    let mut child = tianping(data)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    (Daemon(child), rx)
}

/// Waits (bounded) for lines containing each of `wants`, in any order.
fn wait_all(lines: &mpsc::Receiver<String>, wants: &[&str]) {
    let mut left: Vec<&str> = wants.to_vec();
    while !left.is_empty() {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("waiting for {left:?}: {e}"));
        left.retain(|w| !line.contains(w));
    }
}

/// Waits (bounded) for a line containing `want`.
fn wait_for(lines: &mpsc::Receiver<String>, want: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("waiting for `{want}`: {e}"));
        eprintln!("daemon: {line}");
        if line.contains(want) {
            return line;
        }
    }
}

/// `n` bytes of text (lowercase letters in lines of 64), as the `text` filter passes unchanged.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    (0..n as u64)
        .map(|i| {
            if i % 64 == 63 || i + 1 == n as u64 {
                b'\n'
            } else {
                b'a' + (((i ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) % 26) as u8
            }
        })
        .collect()
}

/// Every port of the fabric 0: the OS picks them and the listeners publish them.
fn ports_to_zero(fabric: &Path) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("address = \"127.0.0.1:") {
            out.push_str("address = \"127.0.0.1:0\"");
        } else if t.starts_with("gateway = ") || t.starts_with("idp = ") {
            let (k, _) = t.split_once(" = ").unwrap();
            out.push_str(&format!("{k} = 0"));
        } else if t.starts_with("admin = {") {
            let zeroed: String = t
                .split(", ")
                .map(|kv| match kv.rsplit_once(" = ") {
                    Some((k, _)) => format!("{k} = 0"),
                    None => kv.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&zeroed);
            out.push_str(" }");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    std::fs::write(fabric, out).unwrap();
}

fn run(data: &Path, args: &[&str]) -> (bool, String) {
    let out = tianping(data).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A flow over the first link (`internet` to `external`, which the default policy lacks) in
/// the policy and every zone's copy, for the bundles `submit-bundle` checks against it.
fn add_link_test_flow(data: &Path) {
    let flow = "\nflow link-test internet -> external {\n  kinds text\n  max-size 1GiB\n  \
                submitters machine\n  deliver bank-gateway\n  sanitize validate, rebuild\n}\n";
    let mut files = vec![data.join("policy.tp")];
    for zone in std::fs::read_dir(data.join("zones")).unwrap() {
        files.push(zone.unwrap().path().join("policy.tp"));
    }
    for f in files.into_iter().filter(|f| f.exists()) {
        let mut text = std::fs::read_to_string(&f).unwrap();
        text.push_str(flow);
        std::fs::write(&f, text).unwrap();
    }
}

#[test]
fn submit_status_metrics_refusal_and_resend_through_the_sockets() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (ok, out) = run(&data, &["init"]);
    assert!(ok, "{out}");
    let dir = DataDir::new(&data);
    ports_to_zero(&dir.fabric());
    add_link_test_flow(&data);
    let fabric = Fabric::load(&dir.fabric()).unwrap();
    let link = fabric.links()[0].clone();
    let (from, to) = (link.from.to_string(), link.to.to_string());

    let (cert, key) = dir.node(&link.from, Component::ExchangeSender);
    let signer = tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let der = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap()[0].to_vec();
    let bundle = |n: usize, seq: u64| {
        let payload = bytes(n, seq);
        let mut h = ChunkHasher::new(256 * 1024).unwrap();
        h.update(&payload);
        let (size, table) = h.finish();
        let m = Manifest {
            flow: "link-test".into(),
            source: link.from.clone(),
            destination: link.to.clone(),
            kind: "text".into(),
            content_type: "text/plain; charset=utf-8".into(),
            schema: None,
            size,
            chunk_size: 256 * 1024,
            chunks_hash: [0; 32],
            submitter: Submitter {
                subject: "exchange-sender".parse().unwrap(),
                roles: vec![],
                machine: true,
            },
            labels: vec![],
            redacted: false,
            correlation: None,
            time: tianping_core::Clock::now(&tianping_core::SystemClock),
            sequence: seq,
            policy_hash: PolicyHash::of(b"p"),
        };
        let header = BundleHeader::sign(m, vec![], table, der.clone(), &signer).unwrap();
        let mut b = header.encode().unwrap();
        b.extend_from_slice(&payload);
        let file = tmp.path().join(format!("bundle-{seq}"));
        std::fs::write(&file, &b).unwrap();
        (file, payload)
    };
    let submit = |file: &Path| {
        let (ok, out) = run(
            &data,
            &[
                "exchange",
                "submit-bundle",
                "--zone",
                &from,
                "--to",
                &to,
                "--file",
                file.to_str().unwrap(),
            ],
        );
        assert!(ok, "{out}");
        out.trim().parse::<u64>().unwrap()
    };
    // delivered into the flow's service, a folder: the payload of transfer `<from>:<seq>`
    let delivered = data.join("zones").join(&to).join("delivery/bank-gateway");
    let got = |seq: u64| std::fs::read(delivered.join(format!("{from}-{seq}.text"))).unwrap();

    let (receiver, rx_lines) = start(&data, &["exchange", "receive", "--zone", &to]);
    wait_for(&rx_lines, "receiving into");
    let (_sender, tx_lines) = start(&data, &["exchange", "send", "--zone", &from]);
    wait_for(&tx_lines, "sending from");

    // two bundles through the sender's socket, each id returned once spooled
    let (f1, b1) = bundle(700_000, 1);
    let (f2, b2) = bundle(1_500, 2);
    assert_eq!(submit(&f1), 1);
    assert_eq!(submit(&f2), 2);
    wait_all(
        &rx_lines,
        &[
            &format!("transfer {from}:1 delivered"),
            &format!("transfer {from}:2 delivered"),
        ],
    );
    assert!(got(1) == b1 && got(2) == b2, "byte-identical");

    // status: the receiving zone's receiver counts both; its sender is not running
    let (ok, out) = run(&data, &["exchange", "status", "--zone", &to]);
    assert!(!ok, "one daemon of the zone is down: {out}");
    assert!(out.contains("\"received\": 2"), "{out}");
    assert!(out.contains("exchange-sender of"), "{out}");
    assert!(out.contains("is not running"), "{out}");
    // the sending zone's sender counts both sent, last id 2
    let sent = (0..600)
        .map(|_| {
            let (_, out) = run(&data, &["exchange", "status", "--zone", &from]);
            out
        })
        .find(|out| out.contains("\"sent\": 2"))
        .unwrap();
    assert!(sent.contains("\"last_transfer\": 2"), "{sent}");
    assert!(sent.contains(&format!("\"link\": {}", link.id)), "{sent}");

    // the receiver's /metrics has the link's counters
    let admin = *tianping_core::published_addrs(&dir, &link.to, Component::ExchangeReceiver)
        .unwrap()
        .get(&Listener::Admin)
        .unwrap();
    let metrics = http_get(admin, "/metrics");
    let series = format!(
        "tianping_exchange_received_total{{from=\"{from}\",link=\"{}\",to=\"{to}\"}} 2",
        link.id
    );
    assert!(metrics.contains(&series), "{metrics}");
    assert!(
        metrics.contains("tianping_exchange_lost_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tianping_exchange_late_total"),
        "{metrics}"
    );
    let sender_admin = *tianping_core::published_addrs(&dir, &link.from, Component::ExchangeSender)
        .unwrap()
        .get(&Listener::Admin)
        .unwrap();
    let metrics = http_get(sender_admin, "/metrics");
    assert!(
        metrics.contains("tianping_exchange_sent_total{"),
        "{metrics}"
    );

    // a submit with no token, and one with a token that is not a node's, are refused
    let socket = dir.socket(&link.from, Component::ExchangeSender);
    for auth in ["", "Authorization: Bearer not-a-token\r\n"] {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        write!(
            s,
            "POST /exchange/v1/submit-bundle?to={to} HTTP/1.1\r\nHost: localhost\r\n{auth}\
             Content-Length: 3\r\nConnection: close\r\n\r\nabc"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }

    // the receiver goes down; a transfer is sent into the void, then lost when it comes back
    drop(receiver);
    let (f3, b3) = bundle(40_000, 3);
    assert_eq!(submit(&f3), 3);
    (0..600)
        .map(|_| run(&data, &["exchange", "status", "--zone", &from]).1)
        .find(|out| out.contains("\"sent\": 3"))
        .unwrap();
    let (_receiver, rx_lines) = start(&data, &["exchange", "receive", "--zone", &to]);
    wait_for(&rx_lines, "receiving into");
    wait_for(&rx_lines, "transfer 3 lost");
    let (ok, out) = run(&data, &["exchange", "status", "--zone", &to]);
    assert!(out.contains("\"lost_ids\": [\n        3\n"), "{ok} {out}");
    // resent from the sender's retention, it arrives under the next id
    let (ok, out) = run(
        &data,
        &[
            "exchange", "resend", "--zone", &from, "--to", &to, "--from", "3",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "3 -> 4");
    wait_for(&rx_lines, &format!("transfer {from}:3 delivered"));
    assert!(got(3) == b3, "the resent transfer is byte-identical");
    // nothing retained from an id on that was never sent
    let (ok, out) = run(
        &data,
        &[
            "exchange", "resend", "--zone", &from, "--to", &to, "--from", "99",
        ],
    );
    assert!(
        !ok && out.contains("no transfer from that id on is retained"),
        "{out}"
    );
}
