//! `tianping audit reconcile` over the logs of real daemons: a batch submitted through a
//! running `tianping exchange send` to a running `tianping exchange receive` (ports from the
//! OS) of which three are delivered, one is refused by the receiving zone (its policy copy lacks
//! the flow the sending zone's has), one is refused by the sender, one is lost on the link (sent
//! while no receiver ran), one is still spooled when both stop, and one bundle spooled behind
//! the sender's back (`submit-raw`, never decided) is delivered. The `--json` lines report each
//! as such; `--retain 0` turns the spooled one missing; `--flow` leaves out the others' flows and
//! exits 0; `audit search --transfer` picks one transfer's events; a receiver's log whose bytes
//! were flipped is refused by name before anything is reconciled. Logs whose owners run are
//! read through them: the same lines as stopped.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

#[path = "common/exchange.rs"]
mod exchange;
mod live_owner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use exchange::{Daemon, Setup, deadline, receiver, sender, setup, spool_bytes, tianping};
use tianping_core::Component;

/// A text flow over the first link (`internet` to `external`), submitted by machines.
fn flow(name: &str) -> String {
    format!(
        "\nflow {name} internet -> external {{\n  kinds text\n  max-size 64KiB\n  \
         submitters machine\n  deliver bank-gateway\n  sanitize validate, rebuild\n}}\n"
    )
}

fn append(path: &Path, text: &str) {
    let mut t = std::fs::read_to_string(path).unwrap();
    t.push_str(text);
    std::fs::write(path, t).unwrap();
}

/// `reconcile-test` in the policy and every zone's copy; `reconcile-only-here` in the sending
/// zone's copy only, so the receiving zone refuses it.
fn add_flows(s: &Setup) {
    let mut files = vec![s.data.join("policy.tp")];
    for zone in std::fs::read_dir(s.data.join("zones")).unwrap() {
        files.push(zone.unwrap().path().join("policy.tp"));
    }
    for f in files.iter().filter(|f| f.exists()) {
        append(f, &flow("reconcile-test"));
    }
    append(
        &s.dir.zone_policy(&s.link.from),
        &flow("reconcile-only-here"),
    );
}

/// `tianping exchange submit` as the gateway (a machine): (success, stdout, stderr).
fn submit(s: &Setup, flow: &str, kind: &str, body: &[u8]) -> (bool, String, String) {
    let file = s.tmp.path().join("payload");
    std::fs::write(&file, body).unwrap();
    let out = tianping(&s.data)
        .args(["exchange", "submit", "--zone", s.link.from.as_str()])
        .args(["--flow", flow, "--kind", kind, "--file"])
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn submitted(s: &Setup, flow: &str, body: &[u8]) -> String {
    let (ok, out, err) = submit(s, flow, "text", body);
    assert!(ok, "submit on `{flow}`: {err}");
    out
}

/// Reads the receiver's lines until each of `wants` was in one (failing at `by`).
fn wait_all(d: &mut Daemon, wants: &[&str], by: Instant) {
    let mut left: Vec<&str> = wants.to_vec();
    while !left.is_empty() {
        let line = d.expect_line(by);
        left.retain(|w| !line.contains(w));
    }
}

/// Waits until the sender's status counts `n` transfers sent on the first link.
fn wait_sent(s: &Setup, n: u64, by: Instant) {
    let want = format!("\"sent\": {n}");
    loop {
        let out = tianping(&s.data)
            .args(["exchange", "status", "--zone", s.link.from.as_str()])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(&want) {
            return;
        }
        assert!(Instant::now() < by, "the sender never sent {n}");
    }
}

struct Reconciled {
    code: Option<i32>,
    lines: Vec<serde_json::Value>,
    stdout: String,
    stderr: String,
}

impl Reconciled {
    /// The line of transfer `id` (`None`: the one without an id).
    fn of(&self, id: Option<&str>) -> &serde_json::Value {
        let want = id.map_or(serde_json::Value::Null, |i| i.into());
        let found: Vec<_> = self
            .lines
            .iter()
            .filter(|l| l["transfer"] == want)
            .collect();
        assert_eq!(found.len(), 1, "{id:?} in {:#?}", self.lines);
        found[0]
    }

    fn states(&self) -> BTreeMap<String, String> {
        self.lines
            .iter()
            .map(|l| {
                (
                    l["transfer"].as_str().unwrap_or("-").to_owned(),
                    l["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

fn reconcile(s: &Setup, receiver_log: &Path, extra: &[&str]) -> Reconciled {
    let out = tianping(&s.data)
        .args(["audit", "reconcile", "--sender"])
        .arg(s.dir.audit_log(&s.link.from, Component::ExchangeSender))
        .arg("--receiver")
        .arg(receiver_log)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = if extra.contains(&"--json") {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        Vec::new()
    };
    Reconciled {
        code: out.status.code(),
        lines,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A copy of the log folder `from` at `to` with one bit flipped in the leaf hash of its
/// entry `index` (leaf hashes are stored as they are, the entries packed).
fn tampered_copy(s: &Setup, from: &Path, to: &Path, index: usize) {
    let out = tianping(&s.data)
        .args(["audit", "search", "--log"])
        .arg(from)
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .nth(index)
        .unwrap()
        .to_owned();
    let r: serde_json::Value = serde_json::from_str(&line).unwrap();
    let hex = r["leaf"].as_str().unwrap();
    let leaf: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    std::fs::create_dir(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        } else {
            std::fs::create_dir(to.join(e.file_name())).unwrap();
        }
    }
    // every place the store holds it (older versions of its pages too), so whichever it reads
    let mut db = std::fs::read(to.join("db")).unwrap();
    let places: Vec<usize> = (0..db.len().saturating_sub(31))
        .filter(|at| db[*at..*at + 32] == leaf[..])
        .collect();
    assert!(!places.is_empty(), "the entry's leaf hash is in the store");
    for at in places {
        db[at + 7] ^= 0x10;
    }
    std::fs::write(to.join("db"), db).unwrap();
}

#[test]
#[expect(clippy::too_many_lines, reason = "one batch, step by step")]
fn a_batch_with_a_refusal_on_each_side_and_a_loss_reconciles_transfer_by_transfer() {
    let s = setup("127.0.0.1:0");
    add_flows(&s);
    let by = deadline(180);
    // spooled behind the sender's back: the link carries it, the sender's log never decided it
    let raw = exchange::bundle(&s.dir, &s.link, 100, b"a bundle nobody decided\n");
    assert_eq!(spool_bytes(&s, "raw", &raw), 1);

    let mut r = receiver(&s, &[], by);
    let snd = sender(&s, &[], by);
    let t1 = submitted(&s, "reconcile-test", b"notice of hearing\n");
    let t2 = submitted(&s, "reconcile-only-here", b"a flow only the sender has\n");
    let (ok, _, err) = submit(&s, "reconcile-test", "pdf", b"%PDF-1.7\n");
    assert!(!ok, "a kind the flow lacks was accepted");
    assert!(err.contains("denies"), "{err}");
    let t3 = submitted(&s, "reconcile-test", b"summons\n");
    assert_eq!(
        [t1.as_str(), t2.as_str(), t3.as_str()],
        ["internet:1", "internet:2", "internet:3"]
    );
    wait_all(
        &mut r,
        &[
            "transfer internet:100 delivered to",
            "transfer internet:1 delivered to",
            "transfer internet:2 refused: ",
            "transfer internet:3 delivered to",
        ],
        by,
    );

    // lost: sent in full while no receiver runs; the restarted receiver reports it lost
    r.kill();
    let t4 = submitted(&s, "reconcile-test", b"sent into the void\n");
    wait_sent(&s, 5, by);
    let mut r = receiver(&s, &[], by);
    wait_all(&mut r, &["transfer 5 lost"], by);
    // the receiver records a loss just after it prints it: once a later transfer is delivered
    // through the same link's thread, the loss is in its log
    let t5 = submitted(&s, "reconcile-test", b"after the loss\n");
    wait_all(&mut r, &[&format!("transfer {t5} delivered to")], by);
    r.kill();
    // spooled and not received when everything stops
    let t6 = submitted(&s, "reconcile-test", b"still on its way\n");
    snd.kill();

    let receiver_log = s.dir.audit_log(&s.link.to, Component::ExchangeReceiver);
    let got = reconcile(&s, &receiver_log, &["--json"]);
    assert_eq!(got.code, Some(1), "an unexpected transfer: {}", got.stderr);
    let want: BTreeMap<String, String> = [
        (t1.as_str(), "delivered"),
        (t2.as_str(), "refused-by-receiver"),
        ("-", "refused-by-sender"),
        (t3.as_str(), "delivered"),
        (t4.as_str(), "lost"),
        (t5.as_str(), "delivered"),
        (t6.as_str(), "in-flight"),
        ("internet:100", "unexpected"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(got.states(), want, "{:#?}", got.lines);
    assert_eq!(got.lines.len(), 8);
    let l = got.of(Some(&t1));
    assert_eq!(l["service"], "bank-gateway");
    assert_eq!(l["flow"], "reconcile-test");
    assert_eq!(l["to"], "external");
    assert_eq!(l["link"], s.link.id);
    assert_eq!(l["link_transfer"], 2);
    assert!(l["time"].as_u64().unwrap() >= l["decided"].as_u64().unwrap());
    let l = got.of(Some(&t2));
    assert!(
        l["reason"]
            .as_str()
            .unwrap()
            .contains("no flow `reconcile-only-here`"),
        "{l}"
    );
    let l = got.of(None);
    assert!(l["reason"].as_str().unwrap().contains("denies"), "{l}");
    assert_eq!(l["kind"], "pdf");
    let l = got.of(Some(&t4));
    assert_eq!(l["link_transfer"], 5, "matched by its link transfer: {l}");
    assert_eq!(l["reason"], "never-seen");
    let l = got.of(Some(&t6));
    assert!(
        l["reason"].as_str().unwrap().contains("not yet received"),
        "{l}"
    );
    let l = got.of(Some("internet:100"));
    assert_eq!(l["flow"], "link-test");
    assert_eq!(l["link_transfer"], 1);
    assert_eq!(l["service"], "bank-gateway");
    assert!(
        got.stderr.contains(
            "8 transfers: 3 delivered, 1 refused by the receiver, 1 refused by the sender, \
             0 held, 1 lost, 1 in flight, 0 missing, 1 unexpected"
        ),
        "{}",
        got.stderr
    );
    assert!(got.stderr.contains("must never happen"), "{}", got.stderr);
    assert!(got.stderr.contains("verified"), "{}", got.stderr);

    // with no retention the spooled one, never received nor reported lost, is missing
    let got = reconcile(&s, &receiver_log, &["--json", "--retain", "0"]);
    assert_eq!(got.code, Some(1));
    assert_eq!(got.of(Some(&t6))["state"], "missing");
    assert_eq!(got.of(Some(&t1))["state"], "delivered");

    // one flow: the other flows' transfers are not reported, and nothing is amiss
    let got = reconcile(&s, &receiver_log, &["--flow", "reconcile-test"]);
    assert_eq!(got.code, Some(0), "{}{}", got.stdout, got.stderr);
    assert!(got.stdout.starts_with("TRANSFER"), "{}", got.stdout);
    for want in [
        t1.as_str(),
        t3.as_str(),
        t4.as_str(),
        t5.as_str(),
        t6.as_str(),
        "lost",
        "in flight",
    ] {
        assert!(got.stdout.contains(want), "no `{want}`: {}", got.stdout);
    }
    for gone in [t2.as_str(), "internet:100"] {
        assert!(!got.stdout.contains(gone), "`{gone}`: {}", got.stdout);
    }
    assert!(
        got.stdout.trim_end().ends_with(
            "6 transfers: 3 delivered, 0 refused by the receiver, 1 refused by the sender, \
             0 held, 1 lost, 1 in flight, 0 missing, 0 unexpected"
        ),
        "{}",
        got.stdout
    );

    // one transfer's events in the receiver's log: received, then delivered
    let out = tianping(&s.data)
        .args(["audit", "search", "--log"])
        .arg(&receiver_log)
        .args(["--transfer", &t1])
        .output()
        .unwrap();
    assert!(out.status.success());
    let actions: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(r["event"]["transfer_id"], t1.as_str());
            r["event"]["action"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(actions, ["transfer.received", "transfer.delivered"]);

    // a receiver's log that does not verify: refused by name, nothing reconciled
    let bad: PathBuf = s.tmp.path().join("tampered-audit");
    tampered_copy(&s, &receiver_log, &bad, 2);
    let got = reconcile(&s, &bad, &["--json"]);
    assert_eq!(got.code, Some(2), "{}", got.stderr);
    assert!(got.stdout.is_empty(), "{}", got.stdout);
    let err = got.stderr.replace(['│', '×', '\n'], " ");
    assert!(err.contains("tampered-audit"), "{err}");
    assert!(
        err.contains("does not verify") || err.contains("cannot be read"),
        "{err}"
    );
}

/// Serves `log` on `socket` as a component does, to this uid as the zone's auditor.
async fn serve(log: Arc<tianping_audit::AuditLog>, socket: &Path) -> tianping_net::ControlHandle {
    let uid = std::fs::metadata(socket.parent().unwrap()).unwrap();
    let uid = std::os::unix::fs::MetadataExt::uid(&uid);
    let handler = move |req: http::Request<tianping_net::Body>| {
        let log = log.clone();
        async move {
            let method = req.method().as_str().to_string();
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let body = req.into_body().bytes().await.unwrap_or_default();
            let r = tokio::task::spawn_blocking(move || {
                let reader = tianping_audit::Reader::person("a-1", &["auditor"], "private");
                let access = tianping_audit::Access {
                    zone: "private",
                    reader: Some(&reader),
                    clock: &tianping_core::SystemClock,
                    record_to: None,
                };
                tianping_audit::handle_request(&log, &access, &method, &target, &body)
            })
            .await
            .unwrap();
            live_owner::audit_answer(r)
        }
    };
    tianping_net::serve_control(socket, &[uid], handler)
        .await
        .unwrap()
}

#[test]
fn live_logs_are_read_through_their_owners() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tianping"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let t = 1_700_000_000_000u64;
    let spooled = |i: u64| {
        format!(
            "{{\"time\":{},\"zone\":\"internet\",\"action\":\"transfer\",\"outcome\":\"allow\",\"flow\":\"filing\",\"transfer_id\":\"internet:{i}\",\"attributes\":{{\"link\":\"7\",\"epoch\":\"1\",\"link_transfer\":\"{i}\"}}}}\n",
            t + i
        )
    };
    let seen = |i: u64, action: &str, id: &str| {
        format!(
            "{{\"time\":{},\"zone\":\"private\",\"action\":\"{action}\",\"transfer_id\":\"{id}\",\"reason\":\"never-seen\",\"attributes\":{{\"link\":\"7\",\"epoch\":\"1\",\"link_transfer\":\"{i}\",\"service\":\"filing-intake\"}}}}\n",
            t + 100 + i
        )
    };
    let sent: String = (1..=3).map(spooled).collect();
    let received = [
        seen(1, "transfer.received", "internet:1"),
        seen(1, "transfer.delivered", "internet:1"),
        seen(2, "transfer.lost", ""),
        seen(9, "transfer.delivered", "internet:9"),
    ]
    .concat();
    let key = tmp.path().join("k.pem");
    let key = key.to_str().unwrap();
    assert!(run(&["audit", "keygen", "--out", key], "").status.success());
    let (sender, receiver) = (tmp.path().join("sender"), tmp.path().join("receiver"));
    for (dir, events) in [(&sender, &sent), (&receiver, &received)] {
        let out = run(
            &[
                "audit",
                "append",
                "--log",
                dir.to_str().unwrap(),
                "--key",
                key,
            ],
            events,
        );
        assert!(out.status.success());
    }
    let (s, r) = (sender.to_str().unwrap(), receiver.to_str().unwrap());
    let commands: [&[&str]; 3] = [
        &[
            "audit",
            "reconcile",
            "--sender",
            s,
            "--receiver",
            r,
            "--json",
        ],
        &["audit", "reconcile", "--sender", s, "--receiver", r],
        &["audit", "search", "--log", r, "--transfer", "internet:1"],
    ];
    let outputs = || -> Vec<(Option<i32>, String)> {
        commands
            .iter()
            .map(|args| {
                let out = run(args, "");
                (out.status.code(), String::from_utf8(out.stdout).unwrap())
            })
            .collect()
    };
    let stopped = outputs();
    assert_eq!(stopped[0].0, Some(1), "internet:9 is unexpected");
    let states: Vec<String> = stopped[0]
        .1
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {}",
                v["transfer"].as_str().unwrap(),
                v["state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            "internet:1 delivered",
            "internet:2 lost",
            "internet:3 missing",
            "internet:9 unexpected"
        ]
    );
    assert_eq!(stopped[2].1.lines().count(), 2, "received, delivered");

    // both held open here and served on control sockets: read through their owners
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    std::fs::create_dir(tmp.path().join("run")).unwrap();
    let mut serving = Vec::new();
    for (dir, name) in [(&sender, "s.sock"), (&receiver, "r.sock")] {
        let log = Arc::new(tianping_audit::AuditLog::open(dir).unwrap());
        let socket = tmp.path().join("run").join(name);
        serving.push((rt.block_on(serve(Arc::clone(&log), &socket)), log));
        tianping_audit::record_owner(dir, &socket).unwrap();
    }
    assert_eq!(outputs(), stopped);
    // without the records the commands open the stores, which the owners hold
    tianping_audit::clear_owner(&receiver).unwrap();
    let out = run(commands[0], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).replace(['│', '\n'], " ");
    assert!(err.contains("receiver"), "{err}");
    drop(serving);
}
