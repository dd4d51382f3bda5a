//! Decisions, replay, diff, graph and atomic reload on the default policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tianping_core::{Acr, Clearance, PolicyHash, Role, UnixTime, Verdict};
use tianping_policies::{
    Approval, DEFAULT_POLICY, DecisionInput, Input, Outcome, Policy, Reason, Recorded,
    SharedPolicy, Subject, Submitter, TransferRequest, check, diff,
};

fn default() -> Policy {
    check("default.tp", DEFAULT_POLICY).into_policy().unwrap()
}

fn subject(roles: &[Role], court: &str, acr: Acr) -> Subject {
    Subject {
        roles: roles.to_vec(),
        court: Some(court.parse().unwrap()),
        clearance: Clearance::None,
        acr,
    }
}

const NOON: UnixTime = UnixTime::from_secs(12 * 3600);

#[test]
fn requests_name_rule_reason_and_hash() {
    let p = default();
    let hash = PolicyHash::of(DEFAULT_POLICY.as_bytes());
    let judge = subject(&[Role::Judge], "bj.01", Acr::Otp);
    let d = p.decide_request("private", &judge, "GET", "/courts/bj.01.03/cases/9", NOON);
    assert_eq!(d.outcome, Outcome::Service("case-management"));
    assert_eq!(d.rule, Some("case-read"));
    assert_eq!(d.reason, Reason::Allowed);
    assert_eq!(d.policy, hash);
    // Another court's cases.
    let d = p.decide_request("private", &judge, "GET", "/courts/sh/cases/9", NOON);
    assert_eq!(
        (d.outcome, d.rule, d.reason),
        (Outcome::Deny, Some("case-read"), Reason::Court)
    );
    // A segment that is no court code is within no court, however it starts (it was read as
    // text: `bj.01.` began with `bj.01.` and was let through to the service); the Supreme
    // Court's judges too.
    let spc = subject(&[Role::Judge], "spc", Acr::Otp);
    for bogus in ["bj.01.", "bj.01..x", "bj.01.%2e", "bj.01.t2.x.y.z", "BJ.01"] {
        for who in [&judge, &spc] {
            let d = p.decide_request(
                "private",
                who,
                "GET",
                &format!("/courts/{bogus}/cases/1"),
                NOON,
            );
            assert_eq!(
                (d.outcome, d.rule, d.reason),
                (Outcome::Deny, Some("case-read"), Reason::Court),
                "{bogus}"
            );
        }
    }
    // Default deny names no rule.
    let d = p.decide_request("private", &judge, "GET", "/nothing/here", NOON);
    assert_eq!(
        (d.outcome, d.rule, d.reason),
        (Outcome::Deny, None, Reason::NoRoute)
    );
    assert_eq!(d.policy, hash);
    // A gateway of an unknown zone, an unknown method.
    assert_eq!(
        p.decide_request("moon", &judge, "GET", "/", NOON).reason,
        Reason::UnknownZone
    );
    assert_eq!(
        p.decide_request("private", &judge, "BREW", "/courts/bj.01/cases/1", NOON)
            .reason,
        Reason::UnknownMethod
    );
    // The zone's floor: a judge may not sign in to `internet` at all.
    let d = p.decide_request("internet", &judge, "GET", "/judgments/1", NOON);
    assert_eq!(d.outcome, Outcome::Deny);
    // Exchange routes become flows.
    let lawyer = subject(&[Role::Lawyer], "bj", Acr::Pwd);
    let d = p.decide_request("internet", &lawyer, "POST", "/filings", NOON);
    assert_eq!(d.outcome, Outcome::Flow("online-filing"));
    let j = d.to_json();
    assert_eq!(j["decision"], "allow");
    assert_eq!(j["rule"], "file-case");
    assert_eq!(j["flow"], "online-filing");
    // acr below the route's.
    let d = p.decide_request(
        "private",
        &subject(&[Role::Auditor], "bj", Acr::Otp),
        "GET",
        "/audit/x",
        NOON,
    );
    assert_eq!(
        d.reason,
        Reason::Acr {
            need: Acr::Cert,
            have: Acr::Otp
        }
    );
    // Clearance.
    let d = p.decide_request(
        "classified",
        &subject(&[Role::Judge], "bj", Acr::Cert),
        "GET",
        "/cases/1",
        NOON,
    );
    assert_eq!(
        d.reason,
        Reason::Clearance {
            need: Clearance::Secret,
            have: Clearance::None
        }
    );
}

#[test]
fn time_windows_use_the_given_clock() {
    let p = default();
    let officer = subject(&[Role::Enforcement], "bj.01", Acr::Cert);
    // 08:00-20:00 at +08:00 is 00:00-12:00 UTC.
    let at = |h: u64| UnixTime::from_secs(20_000 * 86_400 + h * 3600);
    for (h, allow) in [(0, true), (11, true), (12, false), (23, false)] {
        let d = p.decide_request("private", &officer, "POST", "/enforcement/inquiries", at(h));
        assert_eq!(d.is_allow(), allow, "{h}:00 UTC");
        if !allow {
            assert_eq!(d.reason, Reason::Time);
        }
    }
}

fn transfer(kind: &str, size: u64, roles: &[Role]) -> TransferRequest {
    TransferRequest {
        kind: kind.into(),
        schema: None,
        size,
        submitter: Submitter {
            id: Some("clerk-1".parse().unwrap()),
            roles: roles.to_vec(),
            machine: false,
        },
        labels: Vec::new(),
        redacted: false,
        approvals: Vec::new(),
    }
}

#[test]
fn transfers() {
    let p = default();
    let mut t = transfer("pdf", 1000, &[Role::Clerk]);
    t.redacted = true;
    let d = p.decide_transfer("judgment-publication", &t);
    assert_eq!(d.reason, Reason::Approvals { need: 2, have: 0 });
    // The same judge twice counts once; the submitter never counts.
    t.approvals = vec![
        Approval {
            by: "judge-a".parse().unwrap(),
            role: Role::Judge,
        },
        Approval {
            by: "judge-a".parse().unwrap(),
            role: Role::Judge,
        },
        Approval {
            by: "clerk-1".parse().unwrap(),
            role: Role::Judge,
        },
    ];
    assert_eq!(
        p.decide_transfer("judgment-publication", &t).reason,
        Reason::Approvals { need: 2, have: 1 }
    );
    t.approvals.push(Approval {
        by: "judge-b".parse().unwrap(),
        role: Role::Judge,
    });
    let d = p.decide_transfer("judgment-publication", &t);
    assert_eq!(d.outcome, Outcome::Service("judgment-portal"));
    assert_eq!(d.rule, Some("judgment-publication"));
    t.labels = vec!["minor".into()];
    assert_eq!(
        p.decide_transfer("judgment-publication", &t).reason,
        Reason::RefusedLabel
    );
    // Kinds, schemas, size, submitter.
    let mut f = transfer("json", 10, &[Role::Lawyer]);
    assert_eq!(p.decide_transfer("online-filing", &f).reason, Reason::Kind);
    f.schema = Some("filing-form".into());
    assert!(p.decide_transfer("online-filing", &f).is_allow());
    // The form's own limit (`max-size 1MiB for json(filing-form)`), not the flow's 500 MiB.
    f.size = (1 << 20) + 1;
    assert_eq!(
        p.decide_transfer("online-filing", &f).reason,
        Reason::TooLarge { max: 1 << 20 }
    );
    let r = transfer("receipt", 10, &[]);
    assert_eq!(
        p.decide_transfer("filing-receipt", &r).reason,
        Reason::Submitter
    );
    let mut r = r;
    r.submitter.machine = true;
    assert!(p.decide_transfer("filing-receipt", &r).is_allow());
    assert_eq!(
        p.decide_transfer("no-such-flow", &r).reason,
        Reason::UnknownFlow
    );
}

#[test]
fn services_and_flow_view() {
    let p = default();
    let services: Vec<(&str, &str)> = p.services().map(|(s, z)| (s, z.as_str())).collect();
    assert!(services.contains(&("filing-intake", "private")));
    assert!(services.contains(&("receipt-store", "internet")));
    assert!(
        services
            .iter()
            .all(|(s, _)| s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
    );
    let f = p.flow("online-filing").unwrap();
    assert_eq!(
        (f.from().as_str(), f.to().as_str(), f.deliver()),
        ("internet", "private", "filing-intake")
    );
    assert_eq!(f.reply(), Some("filing-receipt"));
    assert_eq!(f.rate().unwrap().count, 20);
    let d = p.flow("directory-to-internet").unwrap();
    assert!(d.credential_allowed("password-hash", Role::Public));
    assert!(!d.credential_allowed("password-hash", Role::Judge));
    assert!(p.is_sealed("classified"));
    assert!(p.flows().all(|f| f.from().as_str() != "classified"));
    assert_eq!(p.flow_path("private", "internet").unwrap().len(), 1);
    assert_eq!(p.flow_path("classified", "private"), None);
}

#[test]
fn replay_reports_flips() {
    let old = default();
    // The new policy closes the filing route to litigants.
    let new_src = DEFAULT_POLICY.replacen(
        "  to flow online-filing\n  roles lawyer, litigant",
        "  to flow online-filing\n  roles lawyer",
        1,
    );
    assert_ne!(new_src, DEFAULT_POLICY);
    let new = check("new.tp", &new_src).into_policy().unwrap();
    let mk = |roles: Vec<Role>| DecisionInput {
        input: Input::Request {
            zone: "internet".into(),
            method: "POST".into(),
            path: "/filings".into(),
            subject: Subject::new(&roles),
            at_ms: 0,
        },
        recorded: Recorded {
            decision: Verdict::Allow,
            rule: Some("file-case".into()),
            service: None,
            flow: Some("online-filing".into()),
            policy: None,
        },
    };
    let inputs = vec![mk(vec![Role::Lawyer]), mk(vec![Role::Litigant])];
    // JSON lines round-trip.
    let line = serde_json::to_string(&inputs[1]).unwrap();
    assert!(line.contains("\"type\":\"request\""));
    let back: DecisionInput = serde_json::from_str(&line).unwrap();
    assert_eq!(back, inputs[1]);
    // a misspelt key of what was recorded is refused, not read as "no rule recorded"
    let typo = line.replace("\"rule\":", "\"rulee\":");
    assert_ne!(typo, line);
    let err = serde_json::from_str::<DecisionInput>(&typo).unwrap_err();
    assert!(err.to_string().contains("rulee"), "{err}");
    let same = old.replay(&inputs);
    assert_eq!((same.total, same.same, same.flips.len()), (2, 2, 0));
    let r = new.replay(&inputs);
    assert_eq!(
        (r.total, r.same, r.allow_to_deny, r.deny_to_allow),
        (2, 1, 1, 0)
    );
    assert_eq!(r.flips[0].index, 1);
    assert_eq!(r.flips[0].now, "deny");
}

#[test]
fn diff_lists_rules_and_reachability() {
    let old = default();
    let new_src = DEFAULT_POLICY
        .replacen(
            "max-size 20MiB\n  submitters clerk, assistant, judge\n  deliver judgment-portal",
            "max-size 30MiB\n  submitters clerk, assistant, judge\n  deliver judgment-portal",
            1,
        )
        .replace(
            "route audit-read in private {",
            "route audit-read-all in private {",
        )
        .replace("expect allow audit-read\n", "expect allow audit-read-all\n")
        .replace(
            "expect route enforcement-query",
            "# expect route enforcement-query",
        )
        + "\nflow bank-direct external -> internet {\n  kinds pdf\n  max-size 1MiB\n  submitters partner\n  deliver receipt-store\n  release {\n    approvers 1 of partner\n  }\n}\n";
    let c = check("new.tp", &new_src);
    assert!(c.is_ok(), "{}", c.render());
    let new = c.into_policy().unwrap();
    let d = diff(&old, &new);
    assert_eq!(d.flows_added.len(), 1);
    assert!(d.flows_added[0].starts_with("flow bank-direct external -> internet"));
    assert_eq!(d.flows_changed.len(), 1);
    assert_eq!(d.flows_changed[0].name, "judgment-publication");
    assert_eq!(d.routes_added.len(), 1);
    assert_eq!(d.routes_removed.len(), 1);
    assert!(d.reach_added.is_empty(), "{:?}", d.reach_added); // external already reached internet via private
    let text = d.to_string();
    assert!(text.contains("~ flow judgment-publication"));
    assert!(diff(&old, &old).is_empty());
    // Removing the only flow between two zones removes that reachability.
    let two = "levels confidentiality c\nlevels integrity i\nzone a {\n  confidentiality c\n  integrity i\n  acr judge >= pwd\n}\nzone b {\n  confidentiality c\n  integrity i\n}\nservice s in b\n";
    let with = format!(
        "{two}flow f a -> b {{\n  kinds pdf\n  max-size 1MiB\n  submitters judge\n  deliver s\n}}\n"
    );
    let (p1, p2) = (
        check("1.tp", &with).into_policy().unwrap(),
        check("2.tp", two).into_policy().unwrap(),
    );
    let d = diff(&p1, &p2);
    assert_eq!(d.reach_removed, vec!["a -> b".to_owned()]);
    assert_eq!(d.flows_removed.len(), 1);
    assert_eq!(diff(&p2, &p1).reach_added, vec!["a -> b".to_owned()]);
}

#[test]
fn diff_shows_marking_changes() {
    let old = check("old.tp", DEFAULT_POLICY).into_policy().unwrap();
    let src = DEFAULT_POLICY.replacen("\"绝密\",\n", "\n", 1).replacen(
        "# ---------------------------------------------------------------------------- flows",
        "marking minor words \"未成年人\"\n\n# ----------------------------------------------------------------------------- flows",
        1,
    );
    let c = check("new.tp", &src);
    assert!(c.is_ok(), "{}", c.render());
    let new = c.into_policy().unwrap();
    let d = diff(&old, &new);
    assert_eq!(
        d.markings_added,
        vec!["marking minor words \"未成年人\"".to_owned()]
    );
    assert_eq!(d.markings_changed.len(), 1);
    assert_eq!(d.markings_changed[0].name, "secret");
    assert!(d.markings_changed[0].old.contains("\"绝密\""));
    assert!(!d.markings_changed[0].new.contains("\"绝密\","));
    assert!(d.markings_removed.is_empty());
    assert!(d.to_string().contains("~ marking secret"));
    assert!(diff(&new, &old).markings_removed.len() == 1);
}

#[test]
fn graph_marks_sealed_zones_and_colours_flows() {
    let dot = default().to_dot();
    assert!(dot.starts_with("digraph policy {"));
    assert!(dot.contains("\"classified\" [label=\"classified\\nsecret / court\\nsealed\""));
    assert!(dot.contains("\"internet\" -> \"private\" [label=\"online-filing\\nsanitize"));
    assert!(dot.contains("color=blue"));
    assert!(dot.contains("color=red"));
    assert!(!dot.contains("\"classified\" ->"));
}

#[test]
fn reload_is_atomic_and_refuses_bad_text() {
    let shared = Arc::new(SharedPolicy::new(default()));
    let old_hash = shared.load().hash();
    let err = shared.reload("bad.tp", "zone {").unwrap_err();
    assert!(err.to_string().contains("unchanged"));
    assert_eq!(shared.load().hash(), old_hash);
    let v2 = DEFAULT_POLICY.replacen("roles lawyer, litigant\n}", "roles lawyer\n}", 1);
    let v2_hash = PolicyHash::of(v2.as_bytes());
    // Readers see either policy whole: the hash and the decision always agree.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let shared = shared.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let litigant = Subject::new(&[Role::Litigant]);
            let mut seen = 0u32;
            while !stop.load(Ordering::Relaxed) || seen == 0 {
                let p = shared.load();
                let d = p.decide_request("internet", &litigant, "POST", "/filings", NOON);
                if d.policy == old_hash {
                    assert!(d.is_allow());
                } else {
                    assert_eq!(d.policy, v2_hash);
                    assert!(!d.is_allow());
                }
                seen += 1;
            }
            seen
        })
    };
    for i in 0..50 {
        let src = if i % 2 == 0 {
            v2.clone()
        } else {
            DEFAULT_POLICY.to_owned()
        };
        shared.reload("p.tp", &src).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(shared.load().hash(), old_hash);
}

#[test]
fn diff_shows_zone_order_expect_and_test_changes() {
    let old = default();
    let changed = |from: &str, to: &str| {
        assert!(DEFAULT_POLICY.contains(from), "{from}");
        let c = check("new.tp", &DEFAULT_POLICY.replacen(from, to, 1));
        assert!(c.is_ok(), "{}", c.render());
        diff(&old, &c.into_policy().unwrap())
    };
    // A zone's acr floor: clerks of the private network sign in with a password now.
    let d = changed(
        "acr judge, assistant, clerk, enforcement, police, assessor >= otp",
        "acr judge, assistant, clerk, enforcement, police, assessor >= pwd",
    );
    assert_eq!(d.zones_changed.len(), 1, "{d}");
    assert_eq!(d.zones_changed[0].name, "private");
    assert!(
        d.zones_changed[0]
            .new
            .contains("acr judge, assistant, clerk, enforcement, police, assessor >= pwd"),
        "{d}"
    );
    assert!(d.to_string().contains("~ zone private"), "{d}");
    // The seal of a zone.
    let d = changed("  sealed\n", "");
    assert_eq!(d.zones_changed.len(), 1, "{d}");
    assert!(d.zones_changed[0].old.contains("; sealed;"), "{d}");
    assert!(!d.zones_changed[0].new.contains("sealed"), "{d}");
    // Who may sign in.
    let d = changed(
        "  acr sysadmin, secadmin, auditor >= cert\n",
        "  acr sysadmin, secadmin, auditor >= cert\n  acr lawyer, public >= pwd\n",
    );
    assert_eq!(d.zones_changed.len(), 1, "{d}");
    assert!(
        d.zones_changed[0].new.contains("lawyer, public >= pwd"),
        "{d}"
    );
    // Expectations and tests.
    let d = changed("expect no path from classified to internet\n", "");
    assert_eq!(
        d.expects_removed,
        vec!["expect no path from classified to internet".to_owned()]
    );
    assert!(
        !d.is_empty() && d.to_string().contains("- expect no path"),
        "{d}"
    );
    let line = DEFAULT_POLICY
        .lines()
        .find(|l| l.starts_with("test request"))
        .unwrap();
    let d = changed(&format!("{line}\n"), "");
    assert_eq!(d.tests_removed.len(), 1, "{d}");
    assert!(line.starts_with(&d.tests_removed[0]), "{d}");
    // The order of two routes that match the same request.
    let base = "levels confidentiality c\nlevels integrity i\nzone a {\n  confidentiality c\n  integrity i\n  acr lawyer >= pwd\n}\nservice portal in a\nservice archive in a\n";
    let docs = "route docs in a {\n  path /docs/**\n  methods GET\n  to service portal\n  roles lawyer\n}\n";
    let old_docs = "route old-docs in a {\n  path /docs/old/**\n  methods GET\n  to service archive\n  roles lawyer\n}\n";
    let other = "route other in a {\n  path /other\n  methods GET\n  to service archive\n  roles lawyer\n}\n";
    let policy = |routes: &[&str]| {
        let c = check("o.tp", &format!("{base}{}", routes.concat()));
        c.into_policy().unwrap()
    };
    let d = diff(
        &policy(&[docs, old_docs, other]),
        &policy(&[other, old_docs, docs]),
    );
    assert_eq!(d.routes_reordered.len(), 1, "{d}");
    assert!(
        d.routes_reordered[0].contains("`docs` came first, now `old-docs` does"),
        "{d}"
    );
    assert!(
        d.to_string()
            .contains("~ order: routes `docs` and `old-docs`"),
        "{d}"
    );
    assert!(d.routes_changed.is_empty() && d.routes_added.is_empty());
}

#[test]
fn replay_sees_a_rule_that_now_sends_elsewhere() {
    let old = default();
    // `read-judgments` keeps its name and now sends to another service.
    let from = "  to service judgment-portal\n";
    let at = DEFAULT_POLICY.find("route read-judgments").unwrap();
    let cut = at + DEFAULT_POLICY[at..].find(from).unwrap();
    let new_src = format!(
        "{}  to service receipt-store\n{}",
        &DEFAULT_POLICY[..cut],
        &DEFAULT_POLICY[cut + from.len()..]
    );
    let c = check("new.tp", &new_src);
    assert!(c.is_ok(), "{}", c.render());
    let new = c.into_policy().unwrap();
    let line = r#"{"type":"request","zone":"internet","method":"GET","path":"/judgments/2","subject":{"roles":["public"],"acr":"pwd"},"recorded":{"decision":"allow","rule":"read-judgments","service":"judgment-portal"}}"#;
    let input: DecisionInput = serde_json::from_str(line).unwrap();
    let d = old.decide_input(&input.input);
    assert_eq!(
        (d.rule, d.outcome),
        (Some("read-judgments"), Outcome::Service("judgment-portal"))
    );
    assert_eq!(old.replay([&input]).same, 1);
    let r = new.replay([&input]);
    assert_eq!((r.same, r.retargeted), (0, 1), "{r:?}");
    assert_eq!(r.flips[0].was, "allow (read-judgments, judgment-portal)");
    assert_eq!(r.flips[0].now, "allow (receipt-store)");
}
