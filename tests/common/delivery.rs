//! What the receiving side's process tests share: a test flow in the receiving zone's policy
//! copy, a service bound anew in `fabric.toml`, hand-made text bundles signed by any zone's
//! sender, the receiver's lines, and its audit log read back.
//!
//! Included with `#[path = "common/delivery.rs"] mod delivery;` beside `exchange`.
#![allow(dead_code, reason = "each test file uses a part of it")]
#![allow(unreachable_pub, reason = "a test's module")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use tianping_core::{Component, DataDir, Link, PolicyHash, Role, ZoneName};
use tianping_crossdomain::{BundleHeader, ChunkHasher, Manifest, Submitter};

use super::exchange::{CHUNK, Setup};

/// The flow the tests send on, added to the receiving zone's policy copy only (the sender's
/// checks are bypassed by `submit-raw`).
pub const FLOW: &str = "court-notice";
/// The service it is delivered to.
pub const SERVICE: &str = "bank-gateway";

/// Adds [`FLOW`] (`text`, by lawyers, to [`SERVICE`]) from the link's source into its
/// destination's policy copy.
pub fn add_flow(s: &Setup) {
    let path = s.dir.zone_policy(&s.link.to);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n# a flow of the delivery tests\nflow {FLOW} {} -> {} {{\n  kinds text\n  max-size 1MiB\n  submitters lawyer\n  deliver {SERVICE}\n  sanitize validate, rebuild\n}}\n",
        s.link.from, s.link.to
    ));
    std::fs::write(&path, text).unwrap();
}

/// `[services.NAME]`'s lines after `zone = …` replaced by `binding` (`folder = "…"`,
/// `url = "…"\nca = "…"`, `component = "…"`).
pub fn bind(fabric: &Path, name: &str, binding: &str) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let header = format!("[services.{name}]");
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with('[') {
            inside = line.trim() == header;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        if inside && ["folder", "url", "ca", "component"].contains(&key) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if inside && key == "zone" {
            out.push_str(binding);
            out.push('\n');
        }
    }
    assert!(out.contains(binding), "no `{header}` in fabric.toml");
    std::fs::write(fabric, out).unwrap();
}

/// A manifest of a text transfer on `flow` over `link`.
pub fn manifest(link: &Link, flow: &str, sequence: u64) -> Manifest {
    Manifest {
        flow: flow.into(),
        source: link.from.clone(),
        destination: link.to.clone(),
        kind: "text".into(),
        content_type: "text/plain; charset=utf-8".into(),
        schema: None,
        size: 0,
        chunk_size: CHUNK,
        chunks_hash: [0; 32],
        submitter: Submitter {
            subject: "p-lawyer-0042".parse().unwrap(),
            roles: vec![Role::Lawyer],
            machine: false,
        },
        labels: vec!["(2026)京01民初1号".into()],
        redacted: false,
        correlation: None,
        time: tianping_core::Clock::now(&tianping_core::SystemClock),
        sequence,
        policy_hash: PolicyHash::of(b"p"),
    }
}

/// A whole bundle of `m` over `payload`, signed by the exchange sender of zone `signer`.
pub fn signed(dir: &DataDir, signer: &ZoneName, mut m: Manifest, payload: &[u8]) -> Vec<u8> {
    let (cert, key) = dir.node(signer, Component::ExchangeSender);
    let key = tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let der = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap()[0].to_vec();
    let mut h = ChunkHasher::new(m.chunk_size).unwrap();
    h.update(payload);
    let (size, table) = h.finish();
    m.size = size;
    let mut b = BundleHeader::sign(m, vec![], table, der, &key)
        .unwrap()
        .encode()
        .unwrap();
    b.extend_from_slice(payload);
    b
}

/// `tianping exchange receive` with both of its output streams read, line by line, into one
/// channel (the link's reports on standard output, the intake's and deliverer's lines on
/// standard error). Killed when dropped.
pub struct Receiver {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Receiver {
    /// Starts the receiver of the link's receiving zone and waits for its ready line.
    pub fn start(s: &Setup, by: Instant) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tianping"))
            .arg("--data")
            .arg(&s.data)
            .args(["exchange", "receive", "--zone", s.link.to.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx2.send(line).is_err() {
                    return;
                }
            }
        });
        let mut r = Self { child, lines };
        r.line_where(by, |l| l.starts_with("receiving into"));
        r
    }

    /// The next line, which must come before `by`.
    pub fn expect_line(&mut self, by: Instant) -> String {
        let wait = by.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(l) => l,
            Err(_) => panic!(
                "receiver: no line in time (exit: {:?})",
                self.child.try_wait()
            ),
        }
    }

    /// Reads lines until one satisfies `want` (returned), failing at `by`.
    pub fn line_where(&mut self, by: Instant, want: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.expect_line(by);
            if want(&line) {
                return line;
            }
        }
    }

    /// SIGKILL, and reaped.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The receiving zone's receiver's audit events (the daemon stopped), as JSON.
pub fn audit_events(s: &Setup) -> Vec<serde_json::Value> {
    let log = s.dir.audit_log(&s.link.to, Component::ExchangeReceiver);
    let out = super::exchange::tianping(&s.data)
        .args(["audit", "search", "--log"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit search: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.get("event").cloned().unwrap_or(v)
        })
        .collect()
}

/// The events of `action`.
pub fn of_action<'a>(events: &'a [serde_json::Value], action: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["action"] == action).collect()
}
