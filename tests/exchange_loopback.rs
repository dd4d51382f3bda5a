//! `tianping exchange` as real processes over loopback: a batch of mixed sizes spooled while no
//! sender or receiver runs is lost from nothing; once both run, every transfer arrives in the
//! receiving zone byte-identical, signed by the sending zone's node certificate.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use tianping_core::{Component, DataDir, Fabric, PolicyHash};
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

/// A flow over the first link (`internet` to `external`, which the default policy lacks) in
/// the policy and every zone's copy: the receiving zone checks each transfer against it.
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

/// Every link's address and every admin port 0, so the daemons pick them and publish them.
fn ports_to_zero(fabric: &Path) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let mut in_link = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_link = line.trim() == "[[links]]";
        }
        if in_link && line.trim_start().starts_with("address") {
            out.push_str("address = \"127.0.0.1:0\"\n");
        } else if line.starts_with("admin = {") {
            let zeroed: Vec<String> = line
                .trim_end_matches(" }")
                .split(", ")
                .map(|kv| match kv.rsplit_once(" = ") {
                    Some((k, _)) => format!("{k} = 0"),
                    None => kv.to_owned(),
                })
                .collect();
            out.push_str(&zeroed.join(", "));
            out.push_str(" }\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(fabric, out).unwrap();
}

#[test]
fn a_spooled_batch_arrives_byte_identical_over_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let init = tianping(&data).arg("init").output().unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let dir = DataDir::new(&data);
    ports_to_zero(&dir.fabric());
    add_link_test_flow(&data);
    let fabric = Fabric::load(&dir.fabric()).unwrap();
    let link = fabric.links()[0].clone();

    // bundles signed by the sending zone's exchange node
    let (cert, key) = dir.node(&link.from, Component::ExchangeSender);
    let signer = tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let der = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap()[0].to_vec();
    let sizes = [2_000_000, 64 * 1024, 1, 1_400, 300_000, 5_000];
    let mut bundles = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let payload = bytes(*n, i as u64);
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
            sequence: i as u64 + 1,
            policy_hash: PolicyHash::of(b"p"),
        };
        let header = BundleHeader::sign(m, vec![], table, der.clone(), &signer).unwrap();
        let mut b = header.encode().unwrap();
        b.extend_from_slice(&payload);
        let file = tmp.path().join(format!("bundle-{i}"));
        std::fs::write(&file, &b).unwrap();
        // spooled with nothing running: the id comes back once the bytes are durable
        let out = tianping(&data)
            .args(["exchange", "submit-raw", "--zone", link.from.as_str()])
            .args(["--to", link.to.as_str(), "--file"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            (i + 1).to_string()
        );
        bundles.push(payload);
    }

    let mut receiver = Daemon(
        tianping(&data)
            .args(["exchange", "receive", "--zone", link.to.as_str()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(receiver.0.stdout.take().unwrap()).lines();
    // the receiver prints this once its sockets are bound and published
    assert!(lines.next().unwrap().unwrap().starts_with("receiving into"));
    let _sender = Daemon(
        tianping(&data)
            .args(["exchange", "send", "--zone", link.from.as_str()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut delivered = BTreeSet::new();
    // each transfer delivered once into the flow's service (a folder), as `<from>:<sequence>`
    let prefix = format!("transfer {}:", link.from);
    while delivered.len() < sizes.len() {
        let line = lines.next().unwrap().unwrap();
        assert!(!line.contains("refused"), "{line}");
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let words: Vec<&str> = rest.split(' ').collect();
        if words.get(1) != Some(&"delivered") {
            continue;
        }
        assert!(
            delivered.insert(words[0].parse::<u64>().unwrap()),
            "twice: {line}"
        );
    }
    assert_eq!(delivered, (1..=sizes.len() as u64).collect());
    let folder = data
        .join("zones")
        .join(link.to.as_str())
        .join("delivery/bank-gateway");
    for (b, id) in bundles.iter().zip(1..) {
        let got = std::fs::read(folder.join(format!("{}-{id}.text", link.from))).unwrap();
        assert!(got == *b, "transfer {id} differs");
    }
}
