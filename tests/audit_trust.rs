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
    let flat = text
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (out.status.code().unwrap(), flat)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `audit append` of `n` events to `log`, signed by `key` with `cert` recorded (when given).
fn append(log: &Path, key: &Path, cert: Option<&Path>, n: u64) -> (i32, String) {
    let mut args = vec!["audit", "append", "--log", path(log), "--key", path(key)];
    if let Some(cert) = cert {
        args.extend(["--cert", path(cert)]);
    }
    args.extend(["--every", "10"]);
    run(&args, &events(n))
}

/// `audit verify --trust` of `log`, with `--zone` when given.
fn verify(log: &Path, trust: &Path, zone: Option<&str>) -> (i32, String) {
    let mut args = vec![
        "audit",
        "verify",
        "--log",
        path(log),
        "--trust",
        path(trust),
    ];
    if let Some(zone) = zone {
        args.extend(["--zone", zone]);
    }
    run(&args, "")
}

#[test]
fn a_node_signed_log_verifies_against_its_zones_trust_and_no_other() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (code, text) = run(&["--data", path(&data), "init"], "");
    assert_eq!(code, 0, "{text}");
    let file = |zone: &str, component: &str, name: &str| {
        data.join("zones").join(zone).join(component).join(name)
    };
    let store_key = file("private", "audit-store", "node.key");
    let store_cert = file("private", "audit-store", "node.pem");
    let trust = data.join("zones/private/trust.pem");
    let log = |name: &str| file("private", "audit-store", name);

    // The private audit store's log, signed by its node key with its certificate recorded.
    let own = log("audit-own");
    let (code, text) = append(&own, &store_key, Some(&store_cert), 25);
    assert_eq!(code, 0, "{text}");
    let (code, text) = verify(&own, &trust, None);
    assert_eq!(code, 0, "{text}");

    // The same log checked as if it belonged to `internet`: its signer is not one of that zone.
    let (code, text) = verify(&own, &trust, Some("internet"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a signer of zone `internet`"), "{text}");

    // A private-zone log signed by the internet gateway's node key: refused.
    let foreign = log("audit-foreign");
    let gw_key = file("internet", "gateway", "node.key");
    let gw_cert = file("internet", "gateway", "node.pem");
    let (code, text) = append(&foreign, &gw_key, Some(&gw_cert), 3);
    assert_eq!(code, 0, "{text}");
    let (code, text) = verify(&foreign, &trust, None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a signer of zone `private`"), "{text}");

    // A certificate that is not the signing key's is refused at append.
    let other_cert = file("private", "gateway", "node.pem");
    let (code, text) = append(&log("audit-mismatch"), &store_key, Some(&other_cert), 1);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("not the certificate of the signing key"),
        "{text}"
    );

    // A log with no certificate recorded fails `--trust`, and still verifies by its own key.
    let bare = log("audit-bare");
    let (code, text) = append(&bare, &store_key, None, 2);
    assert_eq!(code, 0, "{text}");
    let (code, text) = verify(&bare, &trust, None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("records no certificate"), "{text}");
    assert_eq!(run(&["audit", "verify", "--log", path(&bare)], "").0, 0);
}
