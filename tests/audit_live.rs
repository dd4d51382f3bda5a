//! `tianping audit` on a live log: a real control socket in this process serves the log (held
//! open here, so the command cannot open the store itself) through `tianping_audit::handle_request`,
//! and the commands print what they print on the same log stopped; writes are refused naming
//! the socket; a stale `owner.sock` falls back to the store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;
mod live_owner;
use common::tianping;

use std::path::Path;
use std::sync::Arc;

use tianping_audit::{Access, AuditLog, Checkpoint, Reader, handle_request};
use tianping_core::SystemClock;

fn events(range: std::ops::Range<u64>) -> String {
    range
        .map(|i| {
            format!(
                "{{\"time\":{},\"action\":\"transfer\",\"actor\":\"u-{}\",\"outcome\":\"allow\",\"object\":\"case {i}\"}}\n",
                1_700_000_000_000 + i,
                i % 3,
            )
        })
        .collect()
}

/// What a command printed and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Printed {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Printed {
    let out = tianping(args, "");
    Printed {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Serves `log` on `socket` the way a component does: the service inside `spawn_blocking`.
async fn serve(log: Arc<AuditLog>, socket: &Path) -> tianping_net::ControlHandle {
    // Only this process's own uid may connect: the folder was created here, so it is ours.
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
                // The socket lets in this uid only; it stands for the zone's auditor, and
                // for its log shipper on the ship endpoint.
                let reader = if target.starts_with("/audit/v1/ship") {
                    Reader::node("audit-shipper", "private")
                } else {
                    Reader::person("a-1", &["auditor"], "private")
                };
                let access = Access {
                    zone: "private",
                    reader: Some(&reader),
                    clock: &SystemClock,
                    record_to: None,
                };
                handle_request(&log, &access, &method, &target, &body)
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
fn live_log_is_read_through_its_owner() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("audit.key");
    let key = key.to_str().unwrap();
    let public = run(&["audit", "keygen", "--out", key]).stdout;
    let public = public.trim();
    let dir = tmp.path().join("log");
    let log = dir.to_str().unwrap();
    let appended = tianping(
        &[
            "audit", "append", "--log", log, "--key", key, "--every", "5",
        ],
        &events(0..12),
    );
    assert!(appended.status.success());
    let out = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();

    // The commands, with the batch file they write (a new one each run).
    let commands = |run_name: &str| -> Vec<Vec<String>> {
        let ship_out = out(&format!("{run_name}.batch"));
        let ship_out2 = out(&format!("{run_name}-2.batch"));
        [
            vec!["verify", "--key", public],
            vec!["verify"],
            vec!["search", "--actor", "u-1"],
            vec!["search", "--actor", "u-1", "--since", "1700000000004"],
            vec!["search", "--object", "case 11"],
            vec!["export"],
            vec!["prove", "--index", "3"],
            vec!["prove", "--index", "3", "--size", "5"],
            vec!["prove", "--from", "5", "--to", "10"],
            vec!["prove", "--index", "12"],
            vec!["checkpoint"],
            vec!["ship", "--since", "5", "--out", &ship_out],
            vec!["ship", "--since", "13", "--out", &ship_out2],
        ]
        .into_iter()
        .map(|args| {
            let mut v = vec![
                "audit".to_string(),
                args[0].to_string(),
                "--log".into(),
                log.into(),
            ];
            v.extend(args[1..].iter().map(|s| s.to_string()));
            v
        })
        .collect()
    };
    let run_all = |run_name: &str| -> Vec<Printed> {
        commands(run_name)
            .iter()
            .map(|args| run(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect()
    };

    // Stopped: the commands open the store.
    let stopped = run_all("stopped");
    assert_eq!(stopped[0].code, Some(0), "{:?}", stopped[0]);
    assert!(stopped[0].stdout.starts_with("verified 12 entries"));
    assert_eq!(stopped[2].stdout.lines().count(), 4);
    assert_eq!(stopped[5].stdout.lines().count(), 12);
    for i in [1, 3, 4, 6, 7, 8, 10, 11] {
        assert_eq!(stopped[i].code, Some(0), "{:?}", stopped[i]);
        assert!(!stopped[i].stdout.is_empty());
    }
    assert!(
        stopped[10]
            .stdout
            .starts_with("tianping.localhost/audit/log\n12\n")
    );
    assert_eq!(
        stopped[9].code,
        Some(2),
        "proving an entry past the end fails"
    );
    assert_eq!(
        stopped[12].code,
        Some(2),
        "nothing to ship past the last checkpoint"
    );

    // Live: the log is held open here and served on a control socket.
    let live_log = Arc::new(AuditLog::open(&dir).unwrap());
    let socket = tmp.path().join("run").join("a-test.sock");
    std::fs::create_dir(socket.parent().unwrap()).unwrap();
    let ctl = rt.block_on(serve(live_log.clone(), &socket));
    tianping_audit::record_owner(&dir, &socket).unwrap();
    assert_eq!(tianping_audit::owner_socket(&dir), Some(socket.clone()));

    let live = run_all("live");
    for ((args, s), l) in commands("live").iter().zip(&stopped).zip(&live) {
        assert_eq!(s, l, "{args:?}");
    }
    assert_eq!(
        std::fs::read(out("stopped.batch")).unwrap(),
        std::fs::read(out("live.batch")).unwrap()
    );
    // The owner's answers are the library's.
    let search = run(&["audit", "search", "--log", log, "--actor", "u-2"]);
    let mut want = String::new();
    for r in live_log.entries(0).map(Result::unwrap) {
        if r.event.actor == "u-2" {
            want.push_str(&serde_json::to_string(&r).unwrap());
            want.push('\n');
        }
    }
    assert_eq!(search.stdout, want);

    // Without the record the command opens the store, which the owner holds: it fails.
    tianping_audit::clear_owner(&dir).unwrap();
    assert_eq!(run(&["audit", "export", "--log", log]).code, Some(2));
    tianping_audit::record_owner(&dir, &socket).unwrap();

    // Writes need the owner: refused, naming its socket; nothing changes.
    let sock = socket.to_str().unwrap();
    let bad = tmp.path().join("bad.batch");
    std::fs::write(&bad, b"x").unwrap();
    let bad = bad.to_str().unwrap();
    for (args, stdin) in [
        (vec!["append", "--log", log], events(12..13)),
        (vec!["append", "--log", log, "--key", key], events(12..13)),
        (
            vec!["checkpoint", "--log", log, "--key", key],
            String::new(),
        ),
        (vec!["mirror", "--log", log, bad], String::new()),
        (
            vec![
                "archive",
                "--log",
                log,
                "--key",
                key,
                "--out",
                &out("a.archive"),
            ],
            String::new(),
        ),
    ] {
        let all: Vec<&str> = ["audit"].into_iter().chain(args.iter().copied()).collect();
        let o = tianping(&all, &stdin);
        // miette wraps long messages, paths included.
        let stderr = String::from_utf8_lossy(&o.stderr).replace("\n  │ ", "");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(sock) && stderr.contains("live"),
            "{args:?}: {stderr}"
        );
        assert!(o.stdout.is_empty());
    }
    assert_eq!(live_log.size(), 12);
    assert!(!tmp.path().join("a.archive").exists());
    // `--archive` files are read by a stopped log only.
    let o = run(&["audit", "verify", "--log", log, "--archive", bad]);
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.replace("\n  │ ", "").contains(sock),
        "{}",
        o.stderr
    );

    // A forged copy of the checkpoint at size 5: the owner reports the failed verification.
    let (signer, _) =
        tianping_core::RingSigner::generate(tianping_core::Algorithm::Ed25519).unwrap();
    let forged = Checkpoint {
        origin: live_log.origin(),
        size: 5,
        root: [7; 32],
    }
    .sign(&signer)
    .unwrap();
    std::fs::write(dir.join("checkpoint.note"), forged.note()).unwrap();
    let failed_live = run(&["audit", "verify", "--log", log, "--key", public]);
    assert_eq!(failed_live.code, Some(1));
    assert!(
        failed_live.stderr.starts_with(
            "verification FAILED (12 entries stored): verification failed at entry `5`"
        ),
        "{}",
        failed_live.stderr
    );

    // The owner stops without clearing its record: the record is stale, the store is opened.
    rt.block_on(ctl.shutdown());
    drop(live_log);
    assert!(dir.join(tianping_audit::OWNER_FILE).exists());
    let failed_stopped = run(&["audit", "verify", "--log", log, "--key", public]);
    assert_eq!(failed_stopped, failed_live);
    std::fs::remove_file(dir.join("checkpoint.note")).unwrap();
    let again = run_all("again");
    for (i, (s, a)) in stopped.iter().zip(&again).enumerate() {
        if i == 0 || i == 1 {
            // The sidecar is gone: the stored checkpoints still verify.
            assert_eq!(s.code, a.code);
            continue;
        }
        assert_eq!(s, a);
    }
    // A stale record with a plain file where the socket was (no listener) also falls back.
    std::fs::write(&socket, b"").unwrap();
    let o = tianping(&["audit", "append", "--log", log], &events(12..13));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        run(&["audit", "export", "--log", log])
            .stdout
            .lines()
            .count(),
        13
    );
}
