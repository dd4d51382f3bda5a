//! The directory's machine flow with the fabric `up` runs (port-0 addresses): users added in
//! `private`'s running IdP reach, by themselves, every zone whose `directory-to-<zone>` flow
//! names their role (the private IdP exports, signs and sends the update; each zone's receiver
//! delivers it to its IdP, which applies it), without their password hashes, and no other zone;
//! disabling them in `private` reaches the same zones the same way.
#![expect(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

#[path = "common/exchange.rs"]
mod exchange;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use exchange::{Daemon, tianping};

const ZONES: [&str; 4] = ["internet", "external", "mobile", "classified"];

fn run(data: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = tianping(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits among `up`'s lines until, for every zone, the private IdP sent an update reaching
/// `version` and the zone's receiver delivered that transfer to the zone's IdP (the lines of
/// both come in any order).
fn reached(up: &mut Daemon, version: u64, by: Instant) {
    let mut sent: Vec<(String, String)> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let complete = |sent: &[(String, String)], done: &[String]| {
        ZONES.iter().all(|z| {
            sent.iter().any(|(g, t)| {
                g == z
                    && done.contains(&format!(
                        "{z}/exchange-receiver: transfer {t} delivered to {z}-directory"
                    ))
            })
        })
    };
    while !complete(&sent, &done) {
        let line = up.expect_line(by);
        if let Some(rest) = line.strip_prefix("private/idp: directory: versions ") {
            let (range, rest) = rest.split_once(' ').unwrap();
            let until: u64 = range.split_once("..").unwrap().1.parse().unwrap();
            let zone = rest.split('`').nth(3).unwrap().to_owned();
            let transfer = rest
                .split_once("as transfer ")
                .unwrap()
                .1
                .split_once(' ')
                .unwrap()
                .0
                .to_owned();
            if until >= version {
                sent.push((zone, transfer));
            }
        } else if let Some((head, _)) = line.split_once(" after ") {
            done.push(head.to_owned());
        }
    }
}

/// The latest version of `private`'s directory, from `idp directory export` on the running IdP
/// (it says `versions 1..=N`).
fn latest(data: &Path) -> u64 {
    let out = data.join("probe.update");
    let done = run(
        data,
        &[
            "idp",
            "directory",
            "export",
            "--since",
            "0",
            "--to",
            "internet",
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    );
    ok(&done);
    let said = String::from_utf8_lossy(&done.stderr).into_owned();
    said.split_once("..=")
        .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or_else(|| panic!("{said}"))
}

/// `idp user show` of `sub` in `zone` (its running IdP): the JSON it prints, or `None`.
fn user(data: &Path, zone: &str, sub: &str) -> Option<serde_json::Value> {
    let out = run(data, &["idp", "user", "show", "--zone", zone, sub], "");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn a_user_added_and_disabled_in_private_reaches_every_zone_by_itself() {
    let s = exchange::setup("127.0.0.1:0");
    let data = &s.data;
    let by = Instant::now() + Duration::from_secs(240);
    let mut up = {
        let mut cmd = tianping(data);
        cmd.arg("up").env("TIANPING_AUDIT_SHIP_EVERY", "0");
        Daemon::spawn("up", cmd)
    };
    loop {
        if up.expect_line(by) == "ready" {
            break;
        }
    }
    // a court, a judge and an enforcement officer, added through the running private IdP
    ok(&run(
        data,
        &[
            "idp",
            "court",
            "add",
            "bj",
            "--name",
            "北京市高级人民法院",
            "--zone",
            "private",
        ],
        "",
    ));
    for (sub, login, role) in [
        ("u-1001", "judge.li", "judge"),
        ("u-2001", "officer.zhao", "enforcement"),
    ] {
        ok(&run(
            data,
            &[
                "idp",
                "user",
                "add",
                "--zone",
                "private",
                "--sub",
                sub,
                "--login",
                login,
                "--name",
                login,
                "--court",
                "bj",
                "--role",
                role,
                "--password-stdin",
            ],
            "Court-Passw0rd-2026\n",
        ));
    }
    let version = latest(data);
    assert!(version > 0);
    reached(&mut up, version, by);
    // each zone holds whom its flow's `accounts` name: the judge everywhere but `external`
    // (partners and enforcement only), the officer everywhere but `classified`
    let holds = |z: &str| match z {
        "external" => vec!["u-2001"],
        "classified" => vec!["u-1001"],
        _ => vec!["u-1001", "u-2001"],
    };
    for z in ZONES {
        for sub in ["u-1001", "u-2001"] {
            let u = user(data, z, sub);
            if holds(z).contains(&sub) {
                let u = u.unwrap_or_else(|| panic!("no {sub} in {z}"));
                assert_eq!(u["status"], "enabled", "{z}: {u}");
                assert_eq!(u["court"], "bj", "{z}: {u}");
                // the flows carry no staff password hash out of `private`
                assert_eq!(u["password"], false, "{z}: {u}");
            } else {
                assert!(u.is_none(), "{sub} reached {z}: {u:?}");
            }
        }
    }

    for sub in ["u-1001", "u-2001"] {
        ok(&run(
            data,
            &["idp", "user", "disable", "--zone", "private", sub],
            "",
        ));
    }
    let version = latest(data);
    reached(&mut up, version, by);
    for z in ZONES {
        for sub in holds(z) {
            let u = user(data, z, sub).unwrap();
            assert_eq!(u["status"], "disabled", "{z}: {u}");
        }
    }

    let stop = std::process::Command::new("kill")
        .args(["-INT", &up.pid().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    loop {
        if up.expect_line(by) == "stopped" {
            break;
        }
    }
    // each zone's IdP audited every update it applied under the node that delivered it
    for z in ZONES {
        let log = data.join("zones").join(z).join("idp/audit");
        let out = ok(&run(
            data,
            &[
                "audit",
                "search",
                "--action",
                "idp.directory.apply",
                "--log",
                log.to_str().unwrap(),
            ],
            "",
        ));
        let events: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
            .collect();
        assert!(events.len() >= 2, "{z}: {out}");
        for e in &events {
            let node = format!("node:exchange-receiver.{z}.tianping.localhost");
            assert_eq!(e["actor"], node.as_str(), "{z}: {e}");
        }
    }
}
