//! The court scenario under SIGKILL (issue 19): `tianping up --demo` on port-0 addresses as a
//! child, `tianping demo --json` against it, and, after seeded steps of the demo (read as it
//! prints them), a seeded component (an IdP, a gateway, an exchange sender or receiver, the
//! audit store) killed with SIGKILL by its pid in `run/up.json`; each time the test waits until
//! `up` has started it again and it answers `/healthz`. A step running while a component is
//! down may fail; what was acknowledged must survive:
//!
//! - every transfer the demo was answered 202 for is audited by its zone's sender, and once
//!   released (not held, or approved as the demo reported) it is delivered at its service in
//!   the receiving zone; the filing's receipt comes back to the internet receiver, where a
//!   person the internet gateway asserts reads it;
//! - every audit entry the audit store held before a kill (its `/status` mirror sizes) is still
//!   in the mirror after the stop, the mirror a prefix of its component's own log, leaf by
//!   leaf; every entry a killed component said was durable (the `audit` size of its control
//!   socket's status, where it tells) is in its log, which verifies.
//!
//! Then `tianping demo --json` runs once more without kills, every step as the policy says;
//! `up` is stopped with SIGINT, and on the folder every log and mirror verifies and every
//! sender reconciles with its receivers. The fabric's clocks are at 10:30 (+08:00) through
//! `--clock-offset`, inside the enforcement route's window.
//!
//! The seed is fixed; `TIANPING_KILL_SEED` runs another.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly, with what went wrong"
)]

#[path = "common/exchange.rs"]
mod exchange;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exchange::{Daemon, Rng};
use serde_json::Value;
use tianping_certs::{TokenClaims, TokenSigner, UserClaims};
use tianping_core::{Acr, Clearance, Clock as _, Component, DataDir, Listener, SystemClock};

/// The kill points' seed.
const SEED: u64 = 0x6b69_6c6c_0019;

/// How many components are killed during the first run of the demo.
const KILLS: usize = 4;

/// The components a kill may pick: `(zone, component)` as `run/up.json` names them.
const VICTIMS: &[(&str, &str)] = &[
    ("internet", "idp"),
    ("private", "idp"),
    ("internet", "gateway"),
    ("private", "gateway"),
    ("internet", "exchange-sender"),
    ("private", "exchange-sender"),
    ("internet", "exchange-receiver"),
    ("private", "exchange-receiver"),
    ("external", "exchange-receiver"),
    ("private", "audit-store"),
];

fn component(name: &str) -> Component {
    match name {
        "idp" => Component::Idp,
        "gateway" => Component::Gateway,
        "exchange-sender" => Component::ExchangeSender,
        "exchange-receiver" => Component::ExchangeReceiver,
        "audit-store" => Component::AuditStore,
        other => panic!("no component `{other}`"),
    }
}

/// `run/up.json`'s entry for `zone/component` (`None` while the file is being replaced).
fn board_entry(dir: &DataDir, zone: &str, component: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.run().join("up.json")).ok()?;
    let runs: Vec<Value> = serde_json::from_str(&text).ok()?;
    runs.into_iter()
        .find(|r| r["zone"] == zone && r["component"] == component)
}

/// The status code of `GET /healthz` on `addr`, if anything answers.
fn healthz(addr: std::net::SocketAddr) -> Option<u16> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `GET path` on a control socket, with `assertion` as `Tianping-Assertion` if given: the
/// status and the JSON answer (`None` when the socket does not answer).
fn control_get(socket: &Path, path: &str, assertion: Option<&str>) -> Option<(u16, Value)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut req = http::Request::builder().method("GET").uri(path);
    if let Some(a) = assertion {
        req = req.header("tianping-assertion", a);
    }
    let req = req
        .body(tianping_net::ControlBody::bytes(bytes::Bytes::new()))
        .unwrap();
    rt.block_on(async {
        let r = tianping_net::control_send(socket, req, Duration::from_secs(10))
            .await
            .ok()?;
        let status = r.status().as_u16();
        let body = r.into_body().bytes().await.ok()?;
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    })
}

/// SIGKILLs `zone/component` and waits until `up` has started it again (another pid, one more
/// restart, ready) and it answers `/healthz` itself; the time it was down.
fn kill_and_wait(dir: &DataDir, zone: &str, name: &str, by: Instant) -> Duration {
    let before = board_entry(dir, zone, name).unwrap();
    let (pid, restarts) = (
        before["pid"].as_u64().unwrap(),
        before["restarts"].as_u64().unwrap(),
    );
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill {zone}/{name} ({pid})");
    let at = Instant::now();
    let z = zone.parse().unwrap();
    loop {
        let again = board_entry(dir, zone, name).filter(|e| {
            e["ready"] == true
                && e["pid"].as_u64().is_some_and(|p| p != pid)
                && e["restarts"].as_u64() == Some(restarts + 1)
        });
        let healthy = again.is_some()
            && tianping_core::published_addrs(dir, &z, component(name))
                .ok()
                .and_then(|a| a.get(&Listener::Admin).copied())
                .and_then(healthz)
                == Some(200);
        if healthy {
            return at.elapsed();
        }
        assert!(
            Instant::now() < by,
            "{zone}/{name} was not started again after its kill: {:?}",
            board_entry(dir, zone, name)
        );
        // the interval between two looks at the board, not a wait standing in for it
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `up`, stopped with SIGINT when dropped before the test stops it (a failing assertion): a
/// SIGKILL of `up` alone would leave its children running.
struct Up(Option<Daemon>);

impl Up {
    /// SIGINT, then its lines until `stopped`, then its exit.
    fn stop(&mut self, by: Instant) {
        if let Some(mut up) = self.0.take() {
            up.interrupt();
            up.until("stopped", by);
            // what `up` does after its last line is done before the folder is read
            up.wait_exit();
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(up) = self.0.take() {
            up.interrupt();
            let by = Instant::now() + Duration::from_secs(30);
            while up.line_by(by).is_some_and(|l| l != "stopped") {}
        }
    }
}

/// A run of `tianping demo --json` as a child, its steps read as it prints them.
struct Demo {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Demo {
    fn start(data: &Path, wait: u64) -> Self {
        let mut child = exchange::tianping(data)
            .args(["demo", "--json", "--wait", &wait.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The next step, `None` once the demo's output ended.
    fn step(&mut self) -> Option<Value> {
        loop {
            let line = self.lines.next()?.unwrap();
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return Some(v);
            }
        }
    }

    fn exit(mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn what(step: &Value) -> &str {
    step["what"].as_str().unwrap_or_default()
}

fn step<'a>(steps: &'a [Value], starts: &str) -> Option<&'a Value> {
    steps.iter().find(|s| what(s).starts_with(starts))
}

/// The transfer id of a step answered `202: transfer ID …`.
fn accepted(step: &Value) -> Option<String> {
    let rest = step["detail"].as_str()?.strip_prefix("202: transfer ")?;
    Some(rest.split_once(' ').map_or(rest, |(id, _)| id).to_owned())
}

/// Every audit log folder under `root`: each component's `audit/`, the supervisor's, and the
/// audit store's mirrors.
fn logs(root: &Path, out: &mut Vec<PathBuf>) {
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

/// A stopped log's entries, in order: each one's leaf hash and event.
fn entries(data: &Path, log: &Path) -> Vec<(Value, Value)> {
    let log = log.display().to_string();
    tianping_ok(data, &["audit", "search", "--log", &log])
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["leaf"].clone(), v["event"].clone())
        })
        .collect()
}

/// The folder of a service's delivery of `transfer` in any zone (its `manifest.json` names
/// the transfer), if there is one.
fn delivered(data: &Path, transfer: &str) -> Option<PathBuf> {
    let zones = std::fs::read_dir(data.join("zones")).ok()?;
    for zone in zones.flatten() {
        let mut dirs = Vec::new();
        for (under, inner) in [("services", Some("received")), ("delivery", None)] {
            for s in std::fs::read_dir(zone.path().join(under))
                .into_iter()
                .flatten()
                .flatten()
            {
                dirs.push(inner.map_or(s.path(), |i| s.path().join(i)));
            }
        }
        for d in dirs {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let m: Value = std::fs::read(e.path().join("manifest.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null);
                if m["transfer"] == transfer {
                    return Some(e.path());
                }
            }
        }
    }
    None
}

/// A `Tianping-Assertion` of litigant.ma (`p-0202`) by the internet gateway's node key, for
/// the internet receiver's receipt store.
fn litigant_assertion(dir: &DataDir) -> String {
    let zone = "internet".parse().unwrap();
    let (cert, key) = dir.node(&zone, Component::Gateway);
    let signer = tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let chain = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
    TokenSigner::new(Arc::new(signer), &chain)
        .unwrap()
        .sign(
            &TokenClaims::User(UserClaims {
                sub: "p-0202".parse().unwrap(),
                roles: vec![tianping_core::Role::Litigant],
                court: None,
                acr: Acr::Otp,
                clearance: Clearance::None,
            }),
            "receipt-store",
            SystemClock.now(),
            Duration::from_secs(60),
        )
        .unwrap()
}

/// The transfers the receivers reported lost, by `(sending zone, receiving zone)`: a
/// transfer its sender finished while the receiver was down (or that a busy receiver dropped)
/// is reported lost by the receiver, told by the sender's heartbeats, and never dropped unsaid.
/// A receiver's status lists only what the running process saw, so every receiver is asked
/// after each step and before each kill. The sender retains what it sent, and the operator
/// sends a link's transfers again from the first lost one (`tianping exchange resend`).
#[derive(Default)]
struct Losses {
    lost: BTreeMap<(String, String), std::collections::BTreeSet<u64>>,
    /// Up to which id each link's losses were sent again.
    done: BTreeMap<(String, String), u64>,
    resent: Vec<String>,
}

impl Losses {
    fn look(&mut self, dir: &DataDir) {
        for to in ["internet", "private", "external", "mobile", "classified"] {
            let socket = dir.socket(&to.parse().unwrap(), Component::ExchangeReceiver);
            let Some((200, v)) = control_get(&socket, "/exchange/v1/status", None) else {
                continue;
            };
            for l in v["links"].as_array().into_iter().flatten() {
                let from = l["from"].as_str().unwrap().to_owned();
                let ids = l["lost_ids"].as_array().into_iter().flatten();
                self.lost
                    .entry((from, to.to_owned()))
                    .or_default()
                    .extend(ids.filter_map(Value::as_u64));
            }
        }
    }

    /// Sends again, from the first lost id not sent again yet, each link's transfers.
    fn resend(&mut self, data: &Path, offset: i64) {
        for ((from, to), ids) in &self.lost {
            let done = self.done.get(&(from.clone(), to.clone())).copied();
            let Some(&first) = ids.iter().find(|id| done.is_none_or(|d| **id > d)) else {
                continue;
            };
            // the operator's clock is the fabric's (its token is dated by it)
            let out = exchange::tianping(data)
                .env("TIANPING_CLOCK_OFFSET", offset.to_string())
                .args(["exchange", "resend", "--zone", from, "--to", to])
                .args(["--from", &first.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "resend {from} -> {to} from {first}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // `old -> new` per transfer sent again
            let pairs = String::from_utf8_lossy(&out.stdout).into_owned();
            let last_new = pairs
                .lines()
                .filter_map(|l| l.split_once(" -> ")?.1.trim().parse::<u64>().ok())
                .max()
                .unwrap_or(first);
            self.done.insert((from.clone(), to.clone()), last_new);
            self.resent
                .push(format!("{from} -> {to} from {first}: {}", pairs.trim()));
        }
    }
}

/// What the test saw durable before its kills.
#[derive(Default)]
struct Durable {
    /// The largest size the audit store's `/status` gave each mirror, by `(zone, component)`.
    mirrored: BTreeMap<(String, String), u64>,
    /// The largest size of its own log a killed component's status gave, by `(zone,
    /// component)`.
    own: BTreeMap<(String, String), u64>,
}

impl Durable {
    fn look(&mut self, dir: &DataDir, victim: (&str, &str)) {
        let store = dir.socket(&"private".parse().unwrap(), Component::AuditStore);
        if let Some((200, v)) = control_get(&store, "/status", None) {
            for m in v["mirrors"].as_array().into_iter().flatten() {
                let key = (
                    m["zone"].as_str().unwrap().to_owned(),
                    m["component"].as_str().unwrap().to_owned(),
                );
                let size = m["size"].as_u64().unwrap();
                let e = self.mirrored.entry(key).or_default();
                *e = (*e).max(size);
            }
        }
        // the victim's own log: the entries durable so far, in its control socket's status
        // (`audit.size`; a gateway says `audit_durable` too), where it tells
        let (zone, name) = victim;
        let path = if name.starts_with("exchange-") {
            "/exchange/v1/status"
        } else {
            "/status"
        };
        let socket = dir.socket(&zone.parse().unwrap(), component(name));
        if let Some((200, v)) = control_get(&socket, path, None) {
            let size = v["audit"]["size"].as_u64().or(v["audit_durable"].as_u64());
            if let Some(size) = size {
                let e = self
                    .own
                    .entry((zone.to_owned(), name.to_owned()))
                    .or_default();
                *e = (*e).max(size);
            }
        }
    }
}

#[test]
fn what_was_acknowledged_survives_components_killed_during_the_court_scenario() {
    let seed = std::env::var("TIANPING_KILL_SEED")
        .ok()
        .map_or(SEED, |s| s.parse().unwrap());
    let mut rng = Rng::new(seed);
    let s = exchange::setup("127.0.0.1:0");
    // `TIANPING_KILL_KEEP=1` keeps the folder for a look after a failure
    let kept = std::env::var_os("TIANPING_KILL_KEEP").map(|_| s.tmp.path().to_path_buf());
    if let Some(k) = &kept {
        eprintln!("keeping `{}`", k.display());
        std::mem::forget(s.tmp);
    }
    let by = Instant::now() + Duration::from_secs(600);
    let offset = exchange::offset_to(10);
    // what the test signs is dated by the fabric's clock
    SystemClock::set_offset_ms(offset * 1000);
    let mut cmd = exchange::tianping(&s.data);
    cmd.args(["up", "--demo", "--clock-offset", &offset.to_string()]);
    let mut up = Daemon::spawn("up", cmd);
    up.until("ready", by);
    let mut up = Up(Some(up));

    // the kill points: after which step, which component
    let mut plan: BTreeMap<u64, (&str, &str)> = BTreeMap::new();
    while plan.len() < KILLS {
        let after = rng.between(1..=17);
        let victim = VICTIMS[usize::try_from(rng.between(0..=9)).unwrap()];
        plan.entry(after).or_insert(victim);
    }
    eprintln!("seed {seed:#x}: kills {plan:?}");

    let mut durable = Durable::default();
    let mut losses = Losses::default();
    let mut steps = Vec::new();
    let mut downs = Vec::new();
    let mut demo = Demo::start(&s.data, 20);
    while let Some(v) = demo.step() {
        let n = v["step"].as_u64().unwrap();
        steps.push(v);
        losses.look(&s.dir);
        if let Some(&(zone, name)) = plan.get(&n) {
            durable.look(&s.dir, (zone, name));
            losses.look(&s.dir);
            let down = kill_and_wait(&s.dir, zone, name, by);
            downs.push(format!("{zone}/{name} after step {n}: back in {down:?}"));
        }
    }
    let code = demo.exit();
    // the one-time codes of its sign-ins (each taken once)
    let totp = tianping_idp::TotpConfig::default();
    let first_codes = totp.step_at(SystemClock.now());
    eprintln!(
        "with kills: exit {code:?}; {}; steps: {steps:#?}",
        downs.join("; "),
    );
    assert_eq!(downs.len(), KILLS, "the demo ended before every kill point");

    // every acknowledged transfer that was released is delivered at its service
    let released = [
        ("litigant.ma files a complaint", None),
        (
            "clerk.liu submits a redacted judgment",
            Some("judge.li and judge.wang approve"),
        ),
        (
            "officer.zhao (certificate) sends",
            Some("chief.zheng (division chief) approves"),
        ),
        (
            "clerk.liu (certificate) submits a file for import",
            Some("secadmin-0001 approves"),
        ),
    ];
    let mut acknowledged = Vec::new();
    for (submitted, approved) in released {
        let Some(t) = step(&steps, submitted).and_then(accepted) else {
            continue;
        };
        let released = approved.is_none_or(|a| step(&steps, a).is_some_and(|s| s["ok"] == true));
        acknowledged.push((t, released));
    }
    assert!(
        !acknowledged.is_empty(),
        "no transfer was acknowledged: {steps:#?}"
    );
    // what the receivers reported lost is sent again (`Losses`) until every acknowledged,
    // released transfer is delivered and the filing's receipt is back
    let receipt = acknowledged
        .iter()
        .find(|(t, _)| t.starts_with("internet:"))
        .map(|(t, _)| format!("/gateway/v1/receipt-store/receipts/{t}"));
    let internet_receiver = s
        .dir
        .socket(&"internet".parse().unwrap(), Component::ExchangeReceiver);
    let soon = Instant::now() + Duration::from_secs(60);
    loop {
        losses.look(&s.dir);
        losses.resend(&s.data, offset);
        let undelivered: Vec<&String> = acknowledged
            .iter()
            .filter(|(t, released)| *released && delivered(&s.data, t).is_none())
            .map(|(t, _)| t)
            .collect();
        // the filing's receipt, read as litigant.ma through the internet receiver
        let got = receipt
            .as_ref()
            .map(|path| control_get(&internet_receiver, path, Some(&litigant_assertion(&s.dir))));
        let receipt_back = got.as_ref().is_none_or(|g| {
            g.as_ref().is_some_and(|(code, v)| {
                *code == 200 && !v["receipts"].as_array().unwrap().is_empty()
            })
        });
        if undelivered.is_empty() && receipt_back {
            break;
        }
        assert!(
            Instant::now() < soon,
            "acknowledged transfers never delivered: {undelivered:?}; the filing's receipt: \
             {got:?}; resent: {:#?}",
            losses.resent
        );
        // the interval between two looks, not a wait standing in for it
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "resent: {:#?}; own logs' sizes before the kills: {:?}",
        losses.resent, durable.own
    );

    // once more, nothing killed: every step as the policy says, its people signing in with
    // codes of a later step than the first run's (a code is taken once)
    while totp.step_at(SystemClock.now()) == first_codes {
        // the interval between two looks at the clock, not a wait standing in for it
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut demo = Demo::start(&s.data, 60);
    let mut again = Vec::new();
    while let Some(v) = demo.step() {
        again.push(v);
    }
    let code = demo.exit();
    let failed: Vec<&Value> = again.iter().filter(|s| s["ok"] != true).collect();
    assert!(
        failed.is_empty() && code == Some(0) && again.len() >= 16,
        "the run without kills: exit {code:?}; steps that differ: {failed:#?}"
    );

    up.stop(by);

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
    let fabric = tianping_core::Fabric::load(&s.dir.fabric()).unwrap();
    for z in fabric.zones() {
        let sender = s.dir.audit_log(&z.zone, Component::ExchangeSender);
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
            let r = s.dir.audit_log(&l.to, Component::ExchangeReceiver);
            if r.join("db").is_file() {
                args.push("--receiver".into());
                args.push(r.display().to_string());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tianping_ok(&s.data, &args);
    }

    // what was durable before a kill is still there
    let mirrors = s.data.join("zones/private/audit-store/mirrors");
    for ((zone, name), size) in &durable.mirrored {
        let mirror = entries(&s.data, &mirrors.join(zone).join(name));
        let own = entries(
            &s.data,
            &s.dir.audit_log(&zone.parse().unwrap(), component(name)),
        );
        assert!(
            mirror.len() as u64 >= *size && own.len() >= mirror.len(),
            "{zone}/{name}: {size} entries mirrored before a kill, {} after the stop, {} in its \
             own log",
            mirror.len(),
            own.len()
        );
        let leaves = |l: &[(Value, Value)]| l.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>();
        assert_eq!(
            leaves(&mirror),
            leaves(&own[..mirror.len()]),
            "{zone}/{name}: the mirror is not its log's prefix"
        );
    }
    for ((zone, name), size) in &durable.own {
        let own = entries(
            &s.data,
            &s.dir.audit_log(&zone.parse().unwrap(), component(name)),
        );
        assert!(
            own.len() as u64 >= *size,
            "{zone}/{name}: {size} entries durable before its kill, {} after the stop",
            own.len()
        );
    }
    // each acknowledged transfer is in its sender's log
    for (t, _) in &acknowledged {
        let zone = t.split_once(':').unwrap().0;
        let sent = entries(
            &s.data,
            &s.dir
                .audit_log(&zone.parse().unwrap(), Component::ExchangeSender),
        );
        let needle = format!("\"{t}\"");
        assert!(
            sent.iter().any(|(_, e)| e.to_string().contains(&needle)),
            "acknowledged transfer {t} is not in {zone}'s sender log"
        );
    }
}
