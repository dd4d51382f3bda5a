//! `tianping up`: makes the data folder on first run, reuses it after, refuses a broken policy.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

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

#[test]
fn up_shows_a_refused_fabric_as_a_diagnostic_on_its_line() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    assert!(up(&data).status.success());
    let fabric = data.join("fabric.toml");
    let good = std::fs::read_to_string(&fabric).unwrap();
    let cases = [
        (
            "mtu = 1500",
            "mtu = 70000",
            "mtu 70000 is outside 576..=65535",
            "576",
        ),
        (
            "repair = 5",
            "repair = 150",
            "repair 150 is outside 0..=100",
            "only adds load",
        ),
        (
            "mtu = 1500",
            "mtu = 1500\nblock-size = 12",
            "block-size 12 is outside",
            "64 MiB",
        ),
        (
            "component = \"audit-store\"",
            "component = \"gateway\"",
            "serves no service",
            "may be bound to",
        ),
    ];
    for (from, to, message, help) in cases {
        let text = good.replacen(from, to, 1);
        assert_ne!(text, good, "{from}");
        std::fs::write(&fabric, &text).unwrap();
        let line = text
            .lines()
            .position(|l| to.lines().last() == Some(l))
            .unwrap()
            + 1;
        let out = up(&data);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        // miette wraps the help: compare with runs of spaces and line breaks as one space
        let flat = err.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(message), "{err}");
        assert!(flat.contains(help), "{err}");
        // the diagnostic names the file and line, and shows the offending text
        assert!(
            err.contains(&format!("fabric.toml:{line}:")),
            "line {line}: {err}"
        );
        assert!(err.contains(to.lines().last().unwrap()), "{err}");
    }
}
