//! `tianping up`: makes the data folder on first run, reuses it after, refuses a broken policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::process::{Command, Output};

fn up(data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tianping"))
        .arg("--data")
        .arg(data)
        .arg("up")
        .output()
        .unwrap()
}

#[test]
fn up_makes_the_folder_once_then_reuses_it() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let first = up(&data);
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(out.contains("made data folder"), "{out}");
    assert!(out.contains("gw.internet.tianping.localhost:7400"), "{out}");
    let policy_before = std::fs::read(data.join("policy.tp")).unwrap();

    let second = up(&data);
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(out.contains("using data folder"), "{out}");
    assert_eq!(
        std::fs::read(data.join("policy.tp")).unwrap(),
        policy_before
    );
}

#[test]
fn up_refuses_a_policy_that_does_not_check() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    assert!(up(&data).status.success());
    std::fs::write(
        data.join("policy.tp"),
        "zone internet {\n  confidentiality nowhere\n}\n",
    )
    .unwrap();
    let out = up(&data);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing was started"), "{err}");
}
