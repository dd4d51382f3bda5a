//! `tianping status` shows the transfers a sender holds for approval, from its control socket:
//! a release on `judgment-publication` (two judges approve) submitted in `private` is listed
//! with no approval, then one of two, and is gone once the second judge released it; in the
//! tables and in `--json`.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

#[path = "common/exchange.rs"]
mod exchange;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use exchange::{Daemon, Setup, deadline, tianping};
use tianping_certs::{TokenClaims, TokenSigner, UserClaims};
use tianping_core::{Acr, Clearance, Component, Role};

/// A user token of `private`'s gateway for its exchange sender, in a file.
fn user(s: &Setup, sub: &str, role: Role) -> PathBuf {
    let zone = "private".parse().unwrap();
    let (cert, key) = s.dir.node(&zone, Component::Gateway);
    let signer = tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let chain = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
    let token = TokenSigner::new(Arc::new(signer), &chain)
        .unwrap()
        .sign(
            &TokenClaims::User(UserClaims {
                sub: sub.parse().unwrap(),
                roles: vec![role],
                court: Some("bj.01".parse().unwrap()),
                acr: Acr::Otp,
                clearance: Clearance::None,
            }),
            "exchange-sender",
            tianping_core::Clock::now(&tianping_core::SystemClock),
            Duration::from_secs(60),
        )
        .unwrap();
    let path = s.tmp.path().join(format!("{sub}.token"));
    std::fs::write(&path, token).unwrap();
    path
}

/// `tianping exchange ARGS…` to success: its standard output and error.
fn exchange(s: &Setup, args: &[&str]) -> (String, String) {
    let out = tianping(&s.data)
        .arg("exchange")
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{args:?}: {stderr}");
    (stdout, stderr)
}

/// `tianping status` (`--json` parsed, or the tables).
fn status(s: &Setup, json: bool) -> (serde_json::Value, String) {
    let mut c: Command = tianping(&s.data);
    c.arg("status");
    if json {
        c.arg("--json");
    }
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let doc = if json {
        serde_json::from_str(&text).unwrap()
    } else {
        serde_json::Value::Null
    };
    (doc, text)
}

#[test]
fn status_lists_the_releases_a_sender_holds_with_their_approvals() {
    let s = exchange::setup("127.0.0.1:0");
    let by = deadline(120);
    let mut cmd = tianping(&s.data);
    cmd.args(["exchange", "send", "--zone", "private"])
        .env("TIANPING_AUDIT_SHIP_EVERY", "0");
    let mut sender = Daemon::spawn("sender", cmd);
    sender.ready("sending from", by);

    // nothing held yet: the zone's list is empty
    let (doc, _) = status(&s, true);
    assert_eq!(doc["held"]["private"]["count"], 0, "{doc:#}");

    let file = s.tmp.path().join("judgment.txt");
    std::fs::write(
        &file,
        "judgment of case (2026) jing 0105 min chu 1, redacted\n",
    )
    .unwrap();
    let clerk = user(&s, "clerk-0001", Role::Clerk);
    let (id, err) = exchange(
        &s,
        &[
            "submit",
            "--zone",
            "private",
            "--flow",
            "judgment-publication",
            "--kind",
            "text",
            "--redacted",
            "--file",
            file.to_str().unwrap(),
            "--as-user",
            clerk.to_str().unwrap(),
        ],
    );
    assert!(err.contains("held for approval"), "{err}");

    let (doc, _) = status(&s, true);
    let held = &doc["held"]["private"];
    assert_eq!(held["count"], 1, "{doc:#}");
    assert_eq!(held["by_flow"]["judgment-publication"], 1, "{doc:#}");
    let t = &held["transfers"][0];
    assert_eq!(t["transfer"], id.as_str(), "{doc:#}");
    assert_eq!(t["flow"], "judgment-publication", "{doc:#}");
    assert_eq!(t["approvals"], 0, "{doc:#}");
    assert_eq!(t["needs"], 2, "{doc:#}");

    // one judge approves: one of two, in the document and the tables
    let judge = user(&s, "judge-0001", Role::Judge);
    exchange(
        &s,
        &[
            "approve",
            "--zone",
            "private",
            "--transfer",
            &id,
            "--as-user",
            judge.to_str().unwrap(),
        ],
    );
    let (doc, _) = status(&s, true);
    assert_eq!(
        doc["held"]["private"]["transfers"][0]["approvals"], 1,
        "{doc:#}"
    );
    let (_, tables) = status(&s, false);
    assert!(
        tables.contains("held for approval in `private`: 1 (1 on judgment-publication)"),
        "{tables}"
    );
    let row = tables
        .lines()
        .find(|l| l.trim_start().starts_with(&id))
        .unwrap_or_else(|| panic!("no row of {id}: {tables}"));
    assert!(
        row.contains("judgment-publication") && row.ends_with("1 of 2 approvals"),
        "{row}"
    );

    // the second judge releases it: nothing is held any more
    let second = user(&s, "judge-0002", Role::Judge);
    exchange(
        &s,
        &[
            "approve",
            "--zone",
            "private",
            "--transfer",
            &id,
            "--as-user",
            second.to_str().unwrap(),
        ],
    );
    let (doc, _) = status(&s, true);
    assert_eq!(doc["held"]["private"]["count"], 0, "{doc:#}");
    assert_eq!(
        doc["held"]["private"]["transfers"].as_array().map(Vec::len),
        Some(0),
        "{doc:#}"
    );
    let (_, tables) = status(&s, false);
    assert!(
        tables.contains("held for approval in `private`: none"),
        "{tables}"
    );
    sender.interrupt();
    sender.wait_exit();
}
