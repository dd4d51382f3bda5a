//! The court scenario end to end: `tianping up --demo` on port-0 addresses as a child, then
//! `tianping demo --json` against it, once with the fabric's clocks inside the enforcement
//! route's window (10:30 at +08:00) and once outside it (22:30), through `--clock-offset`.
//! Every step must come out as the policy says, the refusals included; then `up` is stopped and,
//! on the folder, every component's log and every mirror of the audit store verifies, and every
//! sender's log reconciles with its receivers' logs.
//!
//! The fabrics run one after another (never side by side: each is some thirty processes on a
//! machine of two cores, and the namespaces have fixed names): the two windows in one test, the
//! `--netns` run in another that waits for the first (`FABRIC`).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly, with what went wrong"
)]

#[path = "common/exchange.rs"]
mod exchange;

use std::path::Path;
use std::time::{Duration, Instant};

use exchange::Daemon;
use serde_json::Value;

/// Held by each test while its fabric runs, so two never run at once.
static FABRIC: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `tianping demo --json`: its exit code and steps.
fn demo(data: &Path) -> (Option<i32>, Vec<Value>, String) {
    let out = exchange::tianping(data)
        .args(["demo", "--json", "--wait", "90"])
        .output()
        .unwrap();
    let steps = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        out.status.code(),
        steps,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn step<'a>(steps: &'a [Value], starts: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["what"].as_str().is_some_and(|w| w.starts_with(starts)))
        .unwrap_or_else(|| panic!("no step `{starts}…` in {steps:#?}"))
}

/// Every audit log folder under `root`: each component's `audit/`, the supervisor's, and the
/// audit store's mirrors.
fn logs(root: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        let is_log = p.join("db").is_file()
            && (p.file_name().is_some_and(|n| n == "audit")
                || p.components().any(|c| c.as_os_str() == "mirrors"));
        if is_log {
            out.push(p);
        } else {
            logs(&p, out);
        }
    }
}

fn tianping_ok(data: &Path, args: &[&str]) -> String {
    let out = exchange::tianping(data).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "tianping {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One whole fabric at `hour`:30 (+08:00), in network namespaces if `netns`: the scenario, then
/// the logs on the stopped folder.
fn fabric_at(hour: u64, netns: bool) -> Vec<Value> {
    let s = exchange::setup("127.0.0.1:0");
    let by = Instant::now() + Duration::from_secs(600);
    let offset = exchange::offset_to(hour);
    let mut cmd = exchange::tianping(&s.data);
    cmd.args(["up", "--demo", "--clock-offset", &offset.to_string()]);
    if netns {
        cmd.arg("--netns");
    }
    let mut up = Daemon::spawn("up", cmd);
    let seen = up.until("ready", by);
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("clock runs {offset} s off"))),
        "{seen:#?}"
    );
    let (code, steps, err) = demo(&s.data);
    up.interrupt();
    up.until("stopped", by);
    // what `up` does after its last line (deleting the namespaces) is done before the next
    up.wait_exit();
    let failed: Vec<&Value> = steps.iter().filter(|s| s["ok"] != true).collect();
    assert!(
        failed.is_empty() && code == Some(0),
        "exit {code:?}; steps that differ: {failed:#?}\n{err}"
    );

    // the stopped folder: every log and mirror verifies, every link reconciles
    let mut all = Vec::new();
    logs(&s.data, &mut all);
    assert!(all.len() >= 20, "{all:#?}");
    for log in &all {
        tianping_ok(
            &s.data,
            &["audit", "verify", "--log", &log.display().to_string()],
        );
    }
    let mirrors = s.data.join("zones/private/audit-store/mirrors");
    for zone in ["internet", "external", "mobile"] {
        assert!(
            std::fs::read_dir(mirrors.join(zone)).unwrap().count() >= 1,
            "{zone}'s logs were not mirrored"
        );
    }
    let fabric = tianping_core::Fabric::load(&s.dir.fabric()).unwrap();
    for z in fabric.zones() {
        let sender = s
            .dir
            .audit_log(&z.zone, tianping_core::Component::ExchangeSender);
        if !sender.join("db").is_file() {
            continue;
        }
        let mut args = vec![
            "audit".to_owned(),
            "reconcile".into(),
            "--sender".into(),
            sender.display().to_string(),
        ];
        for l in fabric.links_from(&z.zone) {
            let r = s
                .dir
                .audit_log(&l.to, tianping_core::Component::ExchangeReceiver);
            if r.join("db").is_file() {
                args.push("--receiver".into());
                args.push(r.display().to_string());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tianping_ok(&s.data, &args);
    }
    steps
}

#[test]
fn the_court_scenario_runs_as_the_policy_says_inside_and_outside_the_enforcement_hours() {
    let _one = FABRIC
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let inside = fabric_at(10, false);
    for want in [
        "litigant.ma signs in on internet",
        "the filing crosses to private",
        "the filing's receipt comes back",
        "clerk.liu signs in on private and is refused the audit records",
        "the judgment reaches internet",
        "a document marked 秘密 is refused",
        "chief.zheng (division chief) approves the inquiry",
        "the bank answers",
        "secadmin-0001 approves",
        "nothing can be sent out of classified",
        "an administrator (sysadmin.qian",
        "every zone's logs are shipped",
        "auditor.lin (security team) signs in",
        "the security team's logs verify",
        "every sender's log reconciles with its receivers' logs",
    ] {
        assert_eq!(step(&inside, want)["ok"], true, "{want}");
    }
    let sent = step(&inside, "officer.zhao (certificate) sends");
    assert!(
        sent["detail"].as_str().unwrap().starts_with("202"),
        "{sent}"
    );

    let outside = fabric_at(22, false);
    let refused = step(&outside, "officer.zhao (certificate) sends");
    assert_eq!(refused["ok"], true, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .starts_with("outside 08:00–20:00 +08:00: refused 403"),
        "{refused}"
    );
    // outside the window there is no approval or answer to wait for
    assert!(
        outside
            .iter()
            .all(|s| !s["what"].as_str().unwrap().starts_with("the bank answers")),
        "{outside:#?}"
    );
}

/// The same scenario with each zone in a network namespace of its own and each link a one-way
/// veth pair (`up --netns`: root, `ip`, `nft`; CI runs as root). Fails, never skips, without them.
#[test]
fn the_court_scenario_runs_with_each_zone_in_its_own_network_namespace() {
    let _one = FABRIC
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let steps = fabric_at(10, true);
    for want in [
        "the filing crosses to private",
        "the bank answers",
        "secadmin-0001 approves",
        "every zone's logs are shipped",
        "every sender's log reconciles with its receivers' logs",
    ] {
        assert_eq!(step(&steps, want)["ok"], true, "{want}");
    }
}
