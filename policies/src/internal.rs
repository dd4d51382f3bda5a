//! Entry points for the fuzz targets, shared with the test that replays their corpus on stable.

use crate::check::check;
use crate::engine::{Subject, TransferRequest};
use tianping_core::UnixTime;

/// The parser and the verifier on any bytes: never panics; every problem points inside the text;
/// a policy that checks answers a few decisions and its own diff is empty.
pub fn fuzz_policy_parse(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let c = check("fuzz.tp", s);
    for p in c.problems() {
        assert!(p.span.offset <= s.len(), "span past the end");
        assert!(p.line >= 1 && p.column >= 1);
    }
    let _ = c.render();
    if let Some(p) = c.policy() {
        assert!(c.is_ok());
        assert!(crate::diff(p, p).is_empty());
        let _ = p.to_dot();
        let subject = Subject::new(&[tianping_core::Role::Judge]);
        for z in p.zones() {
            let _ = p.decide_request(z.as_str(), &subject, "GET", "/a/b", UnixTime::from_secs(0));
        }
        let t = TransferRequest {
            kind: "pdf".into(),
            schema: None,
            size: 1,
            submitter: Default::default(),
            labels: Vec::new(),
            redacted: false,
            approvals: Vec::new(),
        };
        for f in p.flows() {
            let d = p.decide_transfer(f.name(), &t);
            assert!(!d.is_allow() || !p.is_sealed(f.from().as_str()));
        }
    }
}

/// The same decisions written as Cedar policies, for the benchmark that compares the engines.
///
/// Routes become `permit`s on actions named by method; flows `permit`s on `Action::"transfer"`;
/// each zone's sign-in floor a `forbid`. Where Cedar cannot express a step the request context
/// carries it precomputed (path segments read as courts, approvals counted): see
/// [`cedar_request_context`] and [`cedar_transfer_context`]. A single-segment `*` becomes
/// Cedar's `like "*"`, which also matches across `/`.
pub fn cedar_policies(p: &crate::Policy) -> String {
    use crate::model::{CourtCheck, METHODS, mask_roles};
    use crate::paths::Seg;
    use std::fmt::Write as _;

    let roles_list = |mask: u32| -> String {
        mask_roles(mask)
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    for r in &p.routes {
        let Some(zone) = p.zones.get(r.zone) else {
            continue;
        };
        let actions: Vec<String> = METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| r.methods & (1 << i) != 0)
            .map(|(_, m)| format!("Action::\"{m}\""))
            .collect();
        let mut conds = vec![format!("context.zone == \"{}\"", zone.name)];
        let mut alts = Vec::new();
        let mut court_pos = None;
        for (_, segs) in &r.patterns {
            let mut pat = String::new();
            let mut prefix_only = None;
            for (i, s) in segs.iter().enumerate() {
                match s {
                    Seg::Lit(l) => {
                        pat.push('/');
                        pat.push_str(l);
                    }
                    Seg::Any => pat.push_str("/*"),
                    Seg::Court => {
                        court_pos = Some(i);
                        pat.push_str("/*");
                    }
                    Seg::Rest => prefix_only = Some(pat.clone()),
                }
            }
            alts.push(match prefix_only {
                Some(prefix) if prefix.is_empty() => "true".to_owned(),
                Some(prefix) => {
                    format!("(context.path like \"{prefix}\" || context.path like \"{prefix}/*\")")
                }
                None if pat.is_empty() => "context.path == \"/\"".to_owned(),
                None => format!("context.path like \"{pat}\""),
            });
        }
        conds.push(format!("({})", alts.join(" || ")));
        let mask = r.roles & zone.signin;
        conds.push(format!("context.roles.containsAny([{}])", roles_list(mask)));
        conds.push(format!("context.acr >= {}", r.acr as u8));
        conds.push(format!("context.clearance >= {}", r.clearance as u8));
        match (&r.court, court_pos) {
            (Some(CourtCheck::Same), Some(k)) => conds.push(format!(
                "context.court_seg has p{k} && context.court_seg.p{k} == context.court"
            )),
            (Some(CourtCheck::Within), Some(k)) => conds.push(format!(
                "context.court_at has p{k} && context.court_at.p{k}.contains(context.court)"
            )),
            (Some(CourtCheck::In(code)), _) => {
                conds.push(format!("context.court_chain.contains(\"{code}\")"));
            }
            (Some(_), None) => conds.push("false".to_owned()),
            (None, _) => {}
        }
        if let Some(w) = r.time {
            let shift = |m: u32| (i64::from(m) - i64::from(w.offset_min)).rem_euclid(1440);
            let (s, e) = (shift(w.start), shift(w.end));
            conds.push(if s == e && w.start != w.end {
                "true".to_owned()
            } else if s <= e {
                format!("(context.minute >= {s} && context.minute < {e})")
            } else {
                format!("(context.minute >= {s} || context.minute < {e})")
            });
        }
        let _ = writeln!(
            out,
            "@id(\"route:{}\")\npermit(principal, action in [{}], resource) when {{\n  {}\n}};",
            r.name,
            actions.join(", "),
            conds.join(" &&\n  ")
        );
    }
    for z in &p.zones {
        for role in mask_roles(z.signin) {
            let floor = z.need_acr(crate::model::role_bit(role));
            if floor as u8 > 0 {
                let _ = writeln!(
                    out,
                    "forbid(principal, action, resource) when {{ context.zone == \"{}\" && context.roles.contains(\"{role}\") && context.acr < {} }};",
                    z.name, floor as u8
                );
            }
        }
    }
    for f in &p.flows {
        let kinds: Vec<String> = f
            .kinds
            .iter()
            .map(|(k, s)| match s {
                Some(s) => format!("(context.kind == \"{k}\" && context.schema == \"{s}\")"),
                None => format!("context.kind == \"{k}\""),
            })
            .collect();
        let mut conds = vec![
            format!("context.flow == \"{}\"", f.name),
            format!("({})", kinds.join(" || ")),
            format!("context.size <= {}", f.max_size.min(i64::MAX as u64)),
            format!(
                "(context.roles.containsAny([{}]) || (context.machine && {}))",
                roles_list(f.submitters),
                f.machine
            ),
        ];
        if let Some(rel) = &f.release {
            if !rel.refuse.is_empty() {
                let refused: Vec<String> = rel.refuse.iter().map(|l| format!("\"{l}\"")).collect();
                conds.push(format!(
                    "!context.labels.containsAny([{}])",
                    refused.join(", ")
                ));
            }
            if rel.redact {
                conds.push("context.redacted".to_owned());
            }
            let _ = writeln!(out, "// approvers of {}", roles_list(rel.approver_roles));
            conds.push(format!("context.approvals >= {}", rel.approvers));
        }
        let _ = writeln!(
            out,
            "@id(\"flow:{}\")\npermit(principal, action == Action::\"transfer\", resource) when {{\n  {}\n}};",
            f.name,
            conds.join(" &&\n  ")
        );
    }
    out
}

fn court_chain(c: &str) -> Vec<String> {
    let mut out = vec!["spc".to_owned()];
    let mut acc = String::new();
    for seg in c.split('.') {
        if !acc.is_empty() {
            acc.push('.');
        }
        acc.push_str(seg);
        if acc != "spc" {
            out.push(acc.clone());
        }
    }
    out
}

/// The Cedar request context of a request (see [`cedar_policies`]); the action is the method.
pub fn cedar_request_context(
    zone: &str,
    subject: &Subject,
    path: &str,
    at: UnixTime,
) -> serde_json::Value {
    let mut court_at = serde_json::Map::new();
    let mut court_seg = serde_json::Map::new();
    for (i, seg) in path.trim_start_matches('/').split('/').enumerate() {
        if seg.parse::<tianping_core::CourtCode>().is_ok() {
            court_at.insert(format!("p{i}"), court_chain(seg).into());
            court_seg.insert(format!("p{i}"), seg.into());
        }
    }
    let court = subject.court.as_ref().map_or("", |c| c.as_str());
    serde_json::json!({
        "zone": zone,
        "path": path,
        "roles": subject.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "acr": subject.acr as u8,
        "clearance": subject.clearance as u8,
        "court": court,
        "court_chain": if court.is_empty() { Vec::new() } else { court_chain(court) },
        "court_at": court_at,
        "court_seg": court_seg,
        "minute": (at.as_millis() / 60_000) % 1440,
    })
}

/// The Cedar request context of a transfer on `flow` (approvals counted as the engine counts
/// them, for the flow's approver roles).
pub fn cedar_transfer_context(
    p: &crate::Policy,
    flow: &str,
    t: &TransferRequest,
) -> serde_json::Value {
    let roles = p
        .flow_index
        .get(flow)
        .and_then(|&i| p.flows.get(i))
        .and_then(|f| f.release.as_ref())
        .map_or(0, |r| r.approver_roles);
    let mut seen: Vec<&tianping_core::SubjectId> = Vec::new();
    for a in &t.approvals {
        if crate::model::role_bit(a.role) & roles != 0
            && t.submitter.id.as_ref() != Some(&a.by)
            && !seen.contains(&&a.by)
        {
            seen.push(&a.by);
        }
    }
    serde_json::json!({
        "flow": flow,
        "kind": t.kind,
        "schema": t.schema.clone().unwrap_or_default(),
        "size": t.size,
        "roles": t.submitter.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "machine": t.submitter.machine,
        "labels": t.labels,
        "redacted": t.redacted,
        "approvals": seen.len(),
    })
}
