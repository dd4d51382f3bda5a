//! `audit append --cert` and `audit verify --trust`: a log signed by a component's node key is
//! accepted against the zone's trust bundle, and refused when signed by another zone's node,
//! by a key its recorded certificate does not certify, or with no certificate recorded.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::path::Path;

use common::tianping;

fn events(n: u64) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"time\":{},\"action\":\"sign-in\",\"actor\":\"u-{i}\",\"outcome\":\"allow\"}}\n",
                1_700_000_000_000 + i
            )
        })
        .collect()
}

fn run(args: &[&str], stdin: &str) -> (i32, String) {
    let out = tianping(args, stdin);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // miette wraps long messages inside a frame: read them as one line.
    let flat = text.replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    (out.status.code().unwrap(), flat)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_node_signed_log_verifies_against_its_zones_trust_and_no_other() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (code, text) = run(&["--data", path(&data), "init"], "");
    assert_eq!(code, 0, "{text}");
    let node =
        |zone: &str, file: &str| data.join("zones").join(zone).join("audit-store").join(file);
    let gw = |zone: &str, file: &str| data.join("zones").join(zone).join("gateway").join(file);
    let trust = data.join("zones/private/trust.pem");

    // The private audit store's log, signed by its node key with its certificate recorded.
    let log = data.join("zones/private/audit-store/audit-test");
    let (code, text) = run(
        &[
            "audit",
            "append",
            "--log",
            path(&log),
            "--key",
            path(&node("private", "node.key")),
            "--cert",
            path(&node("private", "node.pem")),
            "--every",
            "10",
        ],
        &events(25),
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(
        &[
            "audit",
            "verify",
            "--log",
            path(&log),
            "--trust",
            path(&trust),
        ],
        "",
    );
    assert_eq!(code, 0, "{text}");

    // The same log checked as if it belonged to `internet`: its signer is not one of that zone.
    let (code, text) = run(
        &[
            "audit",
            "verify",
            "--log",
            path(&log),
            "--trust",
            path(&trust),
            "--zone",
            "internet",
        ],
        "",
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a signer of zone `internet`"), "{text}");

    // A private-zone log signed by the internet gateway's node key: refused.
    let foreign = data.join("zones/private/audit-store/audit-foreign");
    let (code, text) = run(
        &[
            "audit",
            "append",
            "--log",
            path(&foreign),
            "--key",
            path(&gw("internet", "node.key")),
            "--cert",
            path(&gw("internet", "node.pem")),
        ],
        &events(3),
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(
        &[
            "audit",
            "verify",
            "--log",
            path(&foreign),
            "--trust",
            path(&trust),
        ],
        "",
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a signer of zone `private`"), "{text}");

    // A certificate that is not the signing key's is refused at append, and a log with no
    // certificate recorded fails `--trust`.
    let mismatched = data.join("zones/private/audit-store/audit-mismatch");
    let (code, text) = run(
        &[
            "audit",
            "append",
            "--log",
            path(&mismatched),
            "--key",
            path(&node("private", "node.key")),
            "--cert",
            path(&gw("private", "node.pem")),
        ],
        &events(1),
    );
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("not the certificate of the signing key"),
        "{text}"
    );
    let bare = data.join("zones/private/audit-store/audit-bare");
    let (code, text) = run(
        &[
            "audit",
            "append",
            "--log",
            path(&bare),
            "--key",
            path(&node("private", "node.key")),
        ],
        &events(2),
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(
        &[
            "audit",
            "verify",
            "--log",
            path(&bare),
            "--trust",
            path(&trust),
        ],
        "",
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("records no certificate"), "{text}");
    // Without `--trust` the same log still verifies against its own pinned key.
    assert_eq!(run(&["audit", "verify", "--log", path(&bare)], "").0, 0);
}
