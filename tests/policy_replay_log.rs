//! `tianping policy replay --log`: decisions recorded in a real audit log, re-decided under a
//! policy; a changed policy's flips are listed, and a tampered log is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn tianping(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tianping"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

const EVENTS: &str = r#"{"time":1700000000000,"zone":"internet","action":"sign-in","actor":"lawyer-1","outcome":"success"}
{"time":1700000001000,"zone":"internet","action":"request","actor":"lawyer-1","method":"POST","path":"/filings","roles":["lawyer"],"acr":"otp","outcome":"allow","attributes":{"rule":"file-case"}}
{"time":1700000002000,"zone":"internet","action":"request","actor":"p-0001","method":"POST","path":"/filings","roles":["public"],"acr":"pwd","outcome":"deny"}
{"time":1700000003000,"zone":"internet","action":"transfer","actor":"lawyer-1","flow":"online-filing","kind":"pdf","size":1000,"submitter":"lawyer-1","roles":["lawyer"],"outcome":"allow","attributes":{"rule":"online-filing"}}
"#;

fn make_log(dir: &Path) {
    let out = tianping(
        &["audit", "append", "--log", dir.to_str().unwrap()],
        Some(EVENTS),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
}

fn replay(policy: &Path, log: &Path) -> Output {
    tianping(
        &[
            "policy",
            "replay",
            policy.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--json",
        ],
        None,
    )
}

#[test]
fn replay_of_a_log_lists_the_flips_of_a_changed_policy() {
    let tmp = tempfile::TempDir::new().unwrap();
    let log = tmp.path().join("log");
    make_log(&log);

    let same = tmp.path().join("same.tp");
    std::fs::write(&same, tianping_policies::DEFAULT_POLICY).unwrap();
    let out = replay(&same, &log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["total"], 3,
        "the sign-in is not a decision: {report}"
    );
    assert_eq!(report["same"], 3, "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 entries verified"));

    // Lawyers may no longer file online: their recorded request and transfer flip to deny (the
    // policy's own tests that say otherwise go too, or `check` refuses the policy).
    let changed_text = tianping_policies::DEFAULT_POLICY
        .replacen(
            "  to flow online-filing\n  roles lawyer, litigant",
            "  to flow online-filing\n  roles litigant",
            1,
        )
        .replacen(
            "  submitters lawyer, litigant\n  deliver filing-intake",
            "  submitters litigant\n  deliver filing-intake",
            1,
        )
        .lines()
        .filter(|l| {
            !l.starts_with("test request internet POST /filings roles lawyer")
                && !l.starts_with("test transfer online-filing kind pdf size 10MiB by lawyer")
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(changed_text, tianping_policies::DEFAULT_POLICY);
    let changed = tmp.path().join("changed.tp");
    std::fs::write(&changed, changed_text).unwrap();
    let out = replay(&changed, &log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["allow_to_deny"], 2, "{report}");
    assert_eq!(report["deny_to_allow"], 0, "{report}");
    let flips = report["flips"].as_array().unwrap();
    assert!(
        flips[0]["what"].as_str().unwrap().contains("POST /filings"),
        "{report}"
    );
    assert!(
        flips[1]["what"].as_str().unwrap().contains("online-filing"),
        "{report}"
    );
}

#[test]
fn a_bad_decision_event_is_named() {
    let tmp = tempfile::TempDir::new().unwrap();
    let log = tmp.path().join("log");
    let bad = r#"{"time":1,"zone":"internet","action":"request","method":"GET","path":"/","roles":["emperor"],"outcome":"allow"}
"#;
    let out = tianping(
        &["audit", "append", "--log", log.to_str().unwrap()],
        Some(bad),
    );
    assert!(out.status.success());
    let policy = tmp.path().join("p.tp");
    std::fs::write(&policy, tianping_policies::DEFAULT_POLICY).unwrap();
    let out = replay(&policy, &log);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("audit entry 0") && err.contains("emperor"),
        "{err}"
    );
}
