//! `tianping up`: makes the data folder on first run, reuses it after, refuses a broken policy
//! (these with `--dry-run`, which starts nothing); and, run for real on port-0 addresses, starts
//! every zone's components as supervised children, says `ready` once each answers its health
//! check, starts a killed one again, stops on `SIGINT` and resumes on the same folder (its
//! supervisor's log kept, a transfer spooled while it was stopped sent and delivered).
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

#[path = "common/exchange.rs"]
mod exchange;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use exchange::Daemon;

fn up(data: &Path) -> Output {
    up_with(data, &[])
}

/// `tianping up --dry-run` with more arguments.
fn up_with(data: &Path, more: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tianping"))
        .arg("--data")
        .arg(data)
        .args(["up", "--dry-run"])
        .args(more)
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
fn up_refuses_a_clock_offset_further_back_than_the_certificates_grace_and_makes_nothing() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let out = up_with(&data, &["--demo", "--clock-offset", "-2400"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2400 s behind"), "{err}");
    assert!(err.contains("`--clock-offset 84000`"), "{err}");
    assert!(!data.exists(), "a refused `up` made {}", data.display());

    // within the grace, the offset is taken
    let out = up_with(&data, &["--demo", "--clock-offset", "-300"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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

/// `run/up.json`: what `up` runs.
fn board(data: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(data.join("run").join("up.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `tianping status --json`: its exit code and document.
fn status(data: &Path) -> (Option<i32>, serde_json::Value) {
    let out = exchange::tianping(data)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
        .unwrap();
    (out.status.code(), doc)
}

/// The events of the supervisor's audit log, as `audit search` prints them.
fn supervisor_events(data: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_tianping"))
        .arg("--data")
        .arg(data)
        .args(["audit", "search", "--log"])
        .arg(data.join("supervisor").join("audit"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect()
}

#[test]
fn up_supervises_every_component_restarts_a_killed_one_and_resumes() {
    let s = exchange::setup("127.0.0.1:0");
    let by = Instant::now() + Duration::from_secs(120);
    // as the README runs it: the data folder named relative to the working directory (every
    // component records absolute paths for the others all the same)
    let start = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tianping"));
        cmd.current_dir(s.tmp.path()).args(["--data", "data", "up"]);
        Daemon::spawn("up", cmd)
    };
    let mut first = start();
    let seen = first.until("ready", by);
    // every zone's IdP ran `idp init` once, then serves
    for zone in ["internet", "external", "mobile", "private", "classified"] {
        assert!(
            seen.iter()
                .any(|l| l.starts_with(&format!("{zone}/idp: idp of `{zone}`: https://"))),
            "{zone}: {seen:#?}"
        );
    }
    let runs = board(&s.data);
    // an IdP in each zone; a receiver where a flow enters; a sender where one leaves, none in
    // the sealed `classified`
    let has = |zone: &str, component: &str| {
        runs.iter()
            .any(|r| r["zone"] == zone && r["component"] == component)
    };
    for zone in ["internet", "external", "mobile", "private", "classified"] {
        assert!(has(zone, "idp"), "{runs:#?}");
        assert!(has(zone, "gateway"), "{runs:#?}");
    }
    assert!(has("private", "audit-store"), "{runs:#?}");
    assert!(has("private", "exchange-receiver"), "{runs:#?}");
    assert!(has("classified", "exchange-receiver"), "{runs:#?}");
    assert!(has("internet", "exchange-sender"), "{runs:#?}");
    assert!(!has("classified", "exchange-sender"), "{runs:#?}");
    assert!(
        runs.iter()
            .all(|r| r["ready"] == true && r["restarts"] == 0),
        "{runs:#?}"
    );

    // each one's admin listener answers its health check
    for r in &runs {
        let zone: tianping_core::ZoneName = r["zone"].as_str().unwrap().parse().unwrap();
        let component = match r["component"].as_str().unwrap() {
            "idp" => tianping_core::Component::Idp,
            "exchange-receiver" => tianping_core::Component::ExchangeReceiver,
            "exchange-sender" => tianping_core::Component::ExchangeSender,
            "audit-store" => tianping_core::Component::AuditStore,
            "gateway" => tianping_core::Component::Gateway,
            // ClamAV's daemon, where it is installed, answers on a socket (`tests/up_clamd.rs`)
            "clamd" => continue,
            other => panic!("{other}"),
        };
        let addrs = tianping_core::published_addrs(&s.dir, &zone, component).unwrap();
        let admin = addrs.get(&tianping_core::Listener::Admin).unwrap();
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{admin}/healthz"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{r}");
    }

    // `status` finds every component answering, each link at both ends, the audit store
    let shown = status(&s.data);
    assert_eq!(shown.0, Some(0), "{:#}", shown.1);
    let listed = shown.1["components"].as_array().unwrap();
    assert_eq!(listed.len(), runs.len());
    assert!(
        listed.iter().all(|c| c["up"] == true && c["restarts"] == 0),
        "{listed:#?}"
    );
    // each component's audit log, from its own status: entries durable, the latest checkpoint
    // at or below them
    for c in listed.iter().filter(|c| c["component"] != "clamd") {
        let size = c["audit"]["size"].as_u64();
        assert!(size.is_some(), "{c:#}");
        let checkpoint = &c["audit"]["checkpoint"];
        assert!(checkpoint.is_null() || checkpoint.as_u64() <= size, "{c:#}");
    }
    assert!(
        listed.iter().any(|c| c["audit"]["size"].as_u64() > Some(0)),
        "{listed:#?}"
    );
    let links = shown.1["links"].as_array().unwrap();
    let online = links
        .iter()
        .find(|l| l["from"] == "internet" && l["to"] == "private")
        .unwrap();
    assert_eq!(online["sender"]["send_errors"], 0, "{online}");
    assert_eq!(online["receiver"]["lost"], 0, "{online}");
    // nothing is sent out of the sealed zone: no sender answers there
    assert!(
        links
            .iter()
            .filter(|l| l["from"] == "classified")
            .all(|l| l["sender"].is_null()),
        "{links:#?}"
    );
    assert_eq!(shown.1["audit_stores"][0]["zone"], "private");
    // the flow that asks `scan` is named, whether or not a ClamAV daemon answers here
    assert_eq!(
        shown.1["scan"]["flows"][0], "classified-import",
        "{:#}",
        shown.1
    );
    assert!(
        shown.1["zones"]["private"]["policy"]
            .as_str()
            .unwrap()
            .len()
            >= 16
    );

    // SIGKILL the private IdP: `up` starts it again and it serves once more
    let victim = runs
        .iter()
        .find(|r| r["zone"] == "private" && r["component"] == "idp")
        .unwrap();
    let pid = victim["pid"].as_u64().unwrap();
    let ok = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    loop {
        let line = first.expect_line(by);
        if line.starts_with("private/idp: idp of `private`: https://") {
            break;
        }
    }
    let after = loop {
        // the board is written before the child is looked at for readiness: wait for it
        let runs = board(&s.data);
        let r = runs
            .iter()
            .find(|r| r["zone"] == "private" && r["component"] == "idp")
            .unwrap()
            .clone();
        if r["ready"] == true {
            break r;
        }
        assert!(Instant::now() < by, "{r}");
        std::thread::yield_now();
    };
    assert_eq!(after["restarts"], 1, "{after}");
    assert_ne!(after["pid"].as_u64().unwrap(), pid);

    // SIGINT stops everything cleanly
    first.interrupt();
    first.until("stopped", by);
    let events = supervisor_events(&s.data);
    let count = |action: &str| events.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("component.start"), runs.len(), "{events:#?}");
    assert_eq!(count("component.exit"), 1, "{events:#?}");
    assert_eq!(count("component.restart"), 1, "{events:#?}");
    assert_eq!(count("component.stop"), runs.len(), "{events:#?}");
    drop(first);
    let stopped = status(&s.data);
    assert_eq!(stopped.0, Some(1));
    assert!(
        stopped.1["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["up"] == false),
        "{:#}",
        stopped.1
    );

    // a transfer spooled while `up` is stopped is sent by the next run and delivered whole
    let payload = b"spooled while the fabric was stopped\n";
    let across = exchange::bundle(&s.dir, &s.link, 4242, payload);
    exchange::spool_bytes(&s, "across", &across);

    // a second run on the same folder: nothing initialised again, the earlier entries kept
    let mut second = start();
    let seen = second.until("ready", by);
    let file = exchange::delivered(&s, 4242);
    exchange::wait_files(&second, std::slice::from_ref(&file), by, |_| {});
    assert_eq!(std::fs::read(&file).unwrap(), payload);
    assert!(
        !seen.iter().any(|l| l.contains("identity provider store")),
        "{seen:#?}"
    );
    second.interrupt();
    second.until("stopped", by);
    let again = supervisor_events(&s.data);
    assert_eq!(again.get(..events.len()), Some(&events[..]));
    assert_eq!(again.len(), events.len() + 2 * runs.len());
    let verify = exchange::tianping(&s.data)
        .args(["audit", "verify", "--log"])
        .arg(s.data.join("supervisor").join("audit"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // signed to its last entry by the supervisor's own key
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(
        said.contains(&format!("signed up to {}", again.len())),
        "{said}"
    );
    let key = s.data.join("supervisor").join("checkpoint.key");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn up_demo_seeds_one_person_of_every_role_who_reaches_the_zones_their_flows_name() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = exchange::setup("127.0.0.1:0");
    let by = Instant::now() + Duration::from_secs(180);
    let start = || {
        let mut cmd = exchange::tianping(&s.data);
        cmd.args(["up", "--demo"])
            .env("TIANPING_AUDIT_SHIP_EVERY", "0");
        Daemon::spawn("up", cmd)
    };
    let mut first = start();
    let seen = first.until("ready", by);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("demo: 4 courts and 16 people")),
        "{seen:#?}"
    );
    let file = s.data.join("demo-users.txt");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    let people: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(people.len(), 16);
    // every role (and a system administrator and an auditor beside the three `idp init` makes),
    // each with a TOTP secret
    for role in [
        "judge",
        "assistant",
        "clerk",
        "enforcement",
        "police",
        "assessor",
        "president",
        "division-chief",
        "committee",
        "partner",
        "lawyer",
        "litigant",
        "public",
        "sysadmin",
        "auditor",
    ] {
        assert!(people.iter().any(|p| p[1] == role), "{role}");
    }
    assert!(
        people
            .iter()
            .all(|p| p[4].len() >= 32 && p[5].starts_with("otpauth://totp/"))
    );

    let show = |zone: &str, login: &str| {
        let out = exchange::tianping(&s.data)
            .args(["idp", "user", "show", "--zone", zone, login])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
    };
    let judge = show("private", "judge.li").unwrap();
    assert_eq!(judge["totp"], true, "{judge}");
    assert_eq!(judge["password"], true, "{judge}");
    // the directory's own flow carries the judge to `classified`, never to `external`, the
    // lawyer to `internet`, and the public member's registration from `internet` to `private`
    let reached = |zone: &str, login: &str| loop {
        if let Some(u) = show(zone, login) {
            break u;
        }
        assert!(Instant::now() < by, "{login} never reached {zone}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let judge = reached("classified", "u-0101");
    assert_eq!(judge["court"], "bj.01.03", "{judge}");
    let lawyer = reached("internet", "p-0201");
    assert_eq!(lawyer["roles"][0], "lawyer", "{lawyer}");
    let public = reached("private", "p-0203");
    assert_eq!(public["roles"][0], "public", "{public}");
    assert!(show("external", "u-0101").is_none());

    first.interrupt();
    first.until("stopped", by);
    drop(first);
    // a second run seeds nothing again
    let mut second = start();
    let seen = second.until("ready", by);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("demo: the folder was seeded before")),
        "{seen:#?}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    second.interrupt();
    second.until("stopped", by);
}

/// Whether process `pid` still runs a component of the fabric in `data` (a reused pid runs
/// something else; a zombie runs nothing).
fn runs_component(pid: u64, data: &Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    if state.starts_with('Z') || state.starts_with('X') {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(data.to_str().unwrap()))
}

#[test]
fn a_killed_up_takes_every_component_with_it() {
    let s = exchange::setup("127.0.0.1:0");
    let by = Instant::now() + Duration::from_secs(120);
    let mut cmd = exchange::tianping(&s.data);
    cmd.arg("up");
    let mut up = Daemon::spawn("up", cmd);
    up.until("ready", by);
    // every child, the ClamAV daemon included where it is installed (started through
    // `setpriv --pdeathsig`)
    let pids: Vec<u64> = board(&s.data)
        .iter()
        .map(|r| r["pid"].as_u64().unwrap())
        .collect();
    assert!(pids.len() >= 10, "{pids:?}");
    assert!(pids.iter().all(|&p| runs_component(p, &s.data)), "{pids:?}");
    // SIGKILL: up stops nothing itself; the kernel's parent-death signal stops each component
    up.kill();
    loop {
        let left: Vec<u64> = pids
            .iter()
            .copied()
            .filter(|&p| runs_component(p, &s.data))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < by,
            "still running after up was killed: {left:?}"
        );
        // a poll interval, not a wait standing in for the condition
        std::thread::sleep(Duration::from_millis(20));
    }
}
