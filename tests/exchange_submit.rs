//! `tianping exchange submit` through a running sender (real daemons, real sockets): each
//! refusal is answered with its reason, audited on the sending side as `transfer` deny, and
//! spools nothing — a flow the policy lacks, a flow that does not leave this zone, a kind the
//! flow lacks, too large, a submitter without the roles, a refused label, a release with too few,
//! duplicate and self-made approvals (then met: released and received), a submitter over the
//! flow's rate (the counter survives a restart of the sender), a kind the filter refuses; and an
//! allowed transfer received by the far receiver.

#[path = "common/exchange.rs"]
mod exchange;

#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod submit {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use tianping_certs::{TokenClaims, TokenSigner, UserClaims};
    use tianping_core::{Acr, Clearance, Component, Role};

    use super::exchange::{self, Setup, deadline, receiver, sender, setup, tianping};

    /// The test's flows over the first link (`internet` to `external`), in the policy and
    /// every zone's copy.
    const FLOWS: &str = "
flow submit-test internet -> external {
  kinds text
  max-size 2KiB
  submitters lawyer, machine
  deliver bank-gateway
  rate 3 per hour
  sanitize validate, rebuild
}

flow release-test internet -> external {
  kinds text
  max-size 64KiB
  submitters lawyer
  deliver bank-gateway
  sanitize validate, rebuild
  release {
    refuse secret
    approvers 2 of lawyer
  }
}
";

    fn add_flows(data: &Path) {
        let mut files = vec![data.join("policy.tp")];
        for zone in std::fs::read_dir(data.join("zones")).unwrap() {
            files.push(zone.unwrap().path().join("policy.tp"));
        }
        for f in files.into_iter().filter(|f| f.exists()) {
            let mut text = std::fs::read_to_string(&f).unwrap();
            text.push_str(FLOWS);
            std::fs::write(&f, text).unwrap();
        }
    }

    static TOKENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// Who calls: a subject and its roles, a fresh user token minted for each call (the
    /// sender refuses a token it has seen).
    #[derive(Clone, Copy)]
    struct Who(&'static str, &'static [Role]);

    /// A user token for `sub` with `roles`, signed by the sending zone's gateway for the
    /// sender (as the gateway asserts its users), in a file.
    fn user(s: &Setup, sub: &str, roles: &[Role]) -> PathBuf {
        let (cert, key) = s.dir.node(&s.link.from, Component::Gateway);
        let signer =
            tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
        let chain = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
        let token = TokenSigner::new(Arc::new(signer), &chain)
            .unwrap()
            .sign(
                &TokenClaims::User(UserClaims {
                    sub: sub.parse().unwrap(),
                    roles: roles.to_vec(),
                    court: Some("bj.01".parse().unwrap()),
                    acr: Acr::Otp,
                    clearance: Clearance::None,
                }),
                "exchange-sender",
                tianping_core::Clock::now(&tianping_core::SystemClock),
                Duration::from_secs(60),
            )
            .unwrap();
        let n = TOKENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = s.tmp.path().join(format!("{sub}-{n}.token"));
        std::fs::write(&path, token).unwrap();
        path
    }

    /// `tianping exchange ARGS…`: (success, stdout, stderr).
    fn ex(s: &Setup, args: &[&str]) -> (bool, String, String) {
        let out = tianping(&s.data)
            .arg("exchange")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            // miette wraps its lines: one line of words
            String::from_utf8_lossy(&out.stderr)
                .replace(['│', '×'], " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    struct Submit<'a> {
        flow: &'a str,
        kind: &'a str,
        body: &'a [u8],
        user: Option<Who>,
        labels: &'a [&'a str],
    }

    fn submit(s: &Setup, x: &Submit<'_>) -> (bool, String, String) {
        let file = s.tmp.path().join("payload");
        std::fs::write(&file, x.body).unwrap();
        let zone = s.link.from.to_string();
        let mut args = vec![
            "submit", "--zone", &zone, "--flow", x.flow, "--kind", x.kind, "--file",
        ];
        let f = file.to_str().unwrap().to_owned();
        args.push(&f);
        for l in x.labels {
            args.extend(["--label", l]);
        }
        let u = x
            .user
            .map(|w| user(s, w.0, w.1).to_str().unwrap().to_owned());
        if let Some(u) = &u {
            args.extend(["--as-user", u]);
        }
        ex(s, &args)
    }

    fn ok<'a>(flow: &'a str, body: &'a [u8], u: Who) -> Submit<'a> {
        Submit {
            flow,
            kind: "text",
            body,
            user: Some(u),
            labels: &[],
        }
    }

    /// Reads the daemon's lines until one contains `what` (failing at `by`).
    fn wait_for(d: &mut exchange::Daemon, what: &str, by: std::time::Instant) {
        let mut seen = Vec::new();
        loop {
            let line = d.expect_line(by);
            if line.contains(what) {
                return;
            }
            assert!(!line.contains("refused"), "{line}");
            seen.push(line);
            assert!(seen.len() < 1000, "{seen:?}");
        }
    }

    /// The sending zone's audit events, read from its log once the sender stopped.
    fn audited(s: &Setup) -> Vec<tianping_audit::Event> {
        let log = tianping_audit::AuditLog::open(
            &s.dir.audit_log(&s.link.from, Component::ExchangeSender),
        )
        .unwrap();
        log.entries(0).map(|r| r.unwrap().event).collect()
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one sender's day, step by step")]
    fn refusals_releases_and_the_rate_through_the_sender() {
        let s = setup("127.0.0.1:0");
        add_flows(&s.data);
        let by = deadline(120);
        let mut rx = receiver(&s, &[], by);
        let tx = sender(&s, &[], by);
        let lawyer = Who("p-lawyer-1", &[Role::Lawyer]);
        let other = Who("p-lawyer-2", &[Role::Lawyer]);
        let third = Who("p-lawyer-3", &[Role::Lawyer]);
        let litigant = Who("p-litigant-1", &[Role::Litigant]);

        // an allowed one, received by the far receiver
        let (good, out, err) = submit(&s, &ok("submit-test", b"a filing\n", lawyer));
        assert!(good, "{err}");
        let first = out.trim().to_owned();
        assert_eq!(first, "internet:1");
        wait_for(&mut rx, "transfer internet:1 delivered", by);

        // refusals, each with its reason
        let refusals: Vec<(Submit<'_>, &str)> = vec![
            (ok("no-such-flow", b"x\n", lawyer), "no flow `no-such-flow`"),
            (ok("online-filing", b"x\n", lawyer), "denies"),
            (ok("filing-receipt", b"x\n", lawyer), "not out of this zone"),
            (
                Submit {
                    kind: "pdf",
                    ..ok("submit-test", b"x\n", lawyer)
                },
                "denies",
            ),
            (ok("submit-test", &[b'a'; 4096], lawyer), "max-size"),
            (ok("submit-test", b"x\n", litigant), "denies"),
            (
                Submit {
                    labels: &["secret"],
                    ..ok("release-test", b"x\n", lawyer)
                },
                "denies",
            ),
            (
                ok("submit-test", b"\x00\x01binary", lawyer),
                "filter refused",
            ),
        ];
        for (x, why) in &refusals {
            let (good, out, err) = submit(&s, x);
            assert!(!good, "{} was accepted: {out}", x.flow);
            assert!(err.contains(why), "{}: {err}", x.flow);
        }

        // a release: held, then too few, a duplicate and a self-made approval, then met
        let (good, out, err) = submit(&s, &ok("release-test", b"a judgment\n", lawyer));
        assert!(good, "{err}");
        let held = out.trim().to_owned();
        assert_eq!(
            held, "internet:2",
            "a refusal before admission takes no sequence"
        );
        assert!(err.contains("held for approval"), "{err}");
        let (good, out, _) = ex(&s, &["held", "--zone", "internet"]);
        assert!(good && out.contains(&held), "{out}");
        let approve = |w: Who| {
            let u = user(&s, w.0, w.1);
            ex(
                &s,
                &[
                    "approve",
                    "--zone",
                    "internet",
                    "--transfer",
                    &held,
                    "--as-user",
                    u.to_str().unwrap(),
                ],
            )
        };
        let (good, _, err) = approve(lawyer);
        assert!(!good && err.contains("may not approve"), "self-made: {err}");
        let (good, out, err) = approve(other);
        assert!(good && out.contains("1 more"), "{out}{err}");
        let (good, _, err) = approve(other);
        assert!(!good && err.contains("more than once"), "duplicate: {err}");
        let (good, out, err) = approve(third);
        assert!(good && out.contains("released"), "{out}{err}");
        wait_for(&mut rx, "transfer internet:2 delivered", by);

        // the rate: three per hour for the submitter; the first counted, two more, then 429
        for _ in 0..2 {
            let (good, _, err) = submit(&s, &ok("submit-test", b"more\n", lawyer));
            assert!(good, "{err}");
        }
        let (good, _, err) = submit(&s, &ok("submit-test", b"one too many\n", lawyer));
        assert!(!good && err.contains("rate"), "{err}");
        // another submitter is not counted with them
        let (good, _, err) = submit(&s, &ok("submit-test", b"mine\n", other));
        assert!(good, "{err}");
        drop(tx);
        // the counter survives a restart of the sender
        let tx = sender(&s, &[], deadline(60));
        let (good, _, err) = submit(&s, &ok("submit-test", b"after restart\n", lawyer));
        assert!(!good && err.contains("rate"), "{err}");
        drop(tx);
        drop(rx);

        let events = audited(&s);
        let decisions: Vec<_> = events.iter().filter(|e| e.action == "transfer").collect();
        let denied = decisions.iter().filter(|e| e.outcome == "deny").count();
        let allowed: Vec<_> = decisions.iter().filter(|e| e.outcome == "allow").collect();
        // 8 refusals, the held one, 2 over the rate
        assert_eq!(denied, 8 + 1 + 2, "{decisions:#?}");
        // the first, the released one, two more, the other submitter's
        assert_eq!(allowed.len(), 5);
        assert!(
            allowed
                .iter()
                .all(|e| !e.transfer_id.is_empty() && e.attributes.contains_key("link_transfer"))
        );
        let released = allowed.iter().find(|e| e.transfer_id == held).unwrap();
        assert_eq!(released.approvals.len(), 2, "{released:?}");
        for action in ["transfer.held", "transfer.released"] {
            assert_eq!(
                events.iter().filter(|e| e.action == action).count(),
                1,
                "{action}"
            );
        }
        let approvals: Vec<_> = events
            .iter()
            .filter(|e| e.action == "transfer.approved")
            .map(|e| (e.actor.as_str(), e.outcome.as_str()))
            .collect();
        assert_eq!(
            approvals,
            [
                ("p-lawyer-1", "fail"),
                ("p-lawyer-2", "ok"),
                ("p-lawyer-2", "fail"),
                ("p-lawyer-3", "ok")
            ]
        );
        // nothing refused was spooled: the link carried exactly the five allowed, 1 to 5
        let mut link_ids: Vec<u64> = allowed
            .iter()
            .map(|e| e.attributes["link_transfer"].parse().unwrap())
            .collect();
        link_ids.sort_unstable();
        assert_eq!(link_ids, [1, 2, 3, 4, 5]);
        let _ = exchange::CHUNK;
    }
}
