//! Crash safety of `tianping audit append`: the child is fed a stream of events and killed with
//! SIGKILL at seeded-random points 20 times; after each restart every receipt it printed before
//! the kill is in the log with the same leaf hash, and `verify` passes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use tianping_audit::{Receipt, Record};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tianping"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn receipts_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("audit.key");
    let key = key.to_str().unwrap();
    let out = run(&["audit", "keygen", "--out", key, "--alg", "es256"]);
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let log = tmp.path().join("log");
    let log = log.to_str().unwrap();

    let mut seed = 0x7469_616e_7069_6e67_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut acked: BTreeMap<u64, Receipt> = BTreeMap::new();
    let mut sent = 0u64;
    for round in 0..20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tianping"))
            .args([
                "audit", "append", "--log", log, "--key", key, "--every", "64",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let start = sent;
        // Feeds events until the child dies (the write then fails with a broken pipe).
        let writer = std::thread::spawn(move || {
            let mut i = start;
            loop {
                let mut chunk = String::new();
                for _ in 0..16 {
                    chunk.push_str(&format!(
                        "{{\"time\":{i},\"action\":\"request\",\"actor\":\"u-{}\",\"object\":\"/r/{i}\"}}\n",
                        i % 7
                    ));
                    i += 1;
                }
                if stdin.write_all(chunk.as_bytes()).is_err() || stdin.flush().is_err() {
                    return i;
                }
                if i - start > 20_000 {
                    return i;
                }
            }
        });
        let kill_after = next() % 400;
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut got = 0;
        while got < kill_after {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let r: Receipt = serde_json::from_str(line.trim()).unwrap();
            assert!(
                acked.insert(r.index, r).is_none(),
                "index {} given twice",
                r.index
            );
            got += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        sent = writer.join().unwrap();

        let v = run(&["audit", "verify", "--log", log, "--key", &public]);
        assert!(
            v.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }
    assert!(
        acked.len() > 500,
        "only {} receipts in 20 rounds",
        acked.len()
    );

    let out = run(&["audit", "export", "--log", log]);
    assert!(out.status.success());
    let stored: BTreeMap<u64, Record> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let r: Record = serde_json::from_str(l).unwrap();
            (r.index, r)
        })
        .collect();
    for (index, r) in &acked {
        let s = stored
            .get(index)
            .unwrap_or_else(|| panic!("acknowledged entry {index} lost"));
        assert_eq!(s.leaf, r.leaf, "entry {index} changed");
    }
    // Indices are dense: nothing acknowledged was skipped or reused.
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (0..stored.len() as u64).collect::<Vec<_>>()
    );
}
