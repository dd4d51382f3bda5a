//! The engine's decisions written as Cedar policies, for the benchmark that compares the
//! engines.
//!
//! Routes become `permit`s on actions named by method; flows `permit`s on `Action::"transfer"`;
//! each zone's sign-in floor a `forbid`. Where Cedar cannot express a step the request context
//! carries it precomputed (path segments read as courts, approvals counted): see
//! [`cedar_request_context`] and [`cedar_transfer_context`]. A single-segment `*` becomes
//! Cedar's `like "*"`, which also matches across `/`.

use std::fmt::Write as _;

use tianping_core::{CourtCode, Role, SubjectId, UnixTime};
use tianping_policies::{CourtCondition, Policy, RouteInfo, Subject, TransferRequest};

fn quoted<S: std::fmt::Display>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Cedar condition on `context.path` of one pattern as written, and the index of its
/// `{court}` segment if any.
fn path_condition(pattern: &str) -> (String, Option<usize>) {
    let body = pattern.strip_prefix('/').unwrap_or(pattern);
    let mut pat = String::new();
    let mut court_pos = None;
    let mut prefix_only = None;
    let segs = body.split('/').filter(|s| !s.is_empty());
    for (i, s) in segs.enumerate() {
        match s {
            "*" => pat.push_str("/*"),
            "{court}" => {
                court_pos = Some(i);
                pat.push_str("/*");
            }
            "**" => prefix_only = Some(pat.clone()),
            lit => {
                pat.push('/');
                pat.push_str(lit);
            }
        }
    }
    let cond = match prefix_only {
        Some(prefix) if prefix.is_empty() => "true".to_owned(),
        Some(prefix) => {
            format!("(context.path like \"{prefix}\" || context.path like \"{prefix}/*\")")
        }
        None if pat.is_empty() => "context.path == \"/\"".to_owned(),
        None => format!("context.path like \"{pat}\""),
    };
    (cond, court_pos)
}

fn route_permit(p: &Policy, r: &RouteInfo<'_>, out: &mut String) {
    let zone = r.zone().as_str();
    let actions: Vec<String> = r.methods().map(|m| format!("Action::\"{m}\"")).collect();
    let mut conds = vec![format!("context.zone == \"{zone}\"")];
    let mut alts = Vec::new();
    let mut court_pos = None;
    for pattern in r.paths() {
        let (cond, pos) = path_condition(pattern);
        alts.push(cond);
        court_pos = pos.or(court_pos);
    }
    conds.push(format!("({})", alts.join(" || ")));
    let signing_in = r.roles().filter(|&role| p.least_acr(zone, role).is_some());
    conds.push(format!(
        "context.roles.containsAny([{}])",
        quoted(signing_in.map(Role::as_str))
    ));
    conds.push(format!("context.acr >= {}", r.acr() as u8));
    conds.push(format!("context.clearance >= {}", r.clearance() as u8));
    match (r.court(), court_pos) {
        (Some(CourtCondition::Same), Some(k)) => conds.push(format!(
            "context.court_seg has p{k} && context.court_seg.p{k} == context.court"
        )),
        (Some(CourtCondition::Within), Some(k)) => conds.push(format!(
            "context.court_at has p{k} && context.court_at.p{k}.contains(context.court)"
        )),
        (Some(CourtCondition::In(code)), _) => {
            conds.push(format!("context.court_chain.contains(\"{code}\")"));
        }
        (Some(_), None) => conds.push("false".to_owned()),
        (None, _) => {}
    }
    if let Some(w) = r.window() {
        let shift = |m: u32| (i64::from(m) - i64::from(w.offset_min())).rem_euclid(1440);
        let (s, e) = (shift(w.start_min()), shift(w.end_min()));
        conds.push(if s == e && w.start_min() != w.end_min() {
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
        r.name(),
        actions.join(", "),
        conds.join(" &&\n  ")
    );
}

/// The policy `p` as a Cedar policy set (see the module's documentation).
pub fn cedar_policies(p: &Policy) -> String {
    let mut out = String::new();
    for r in p.routes() {
        route_permit(p, &r, &mut out);
    }
    for z in p.zones() {
        for &role in Role::ALL.iter() {
            let Some(floor) = p.least_acr(z.as_str(), role) else {
                continue;
            };
            if floor as u8 > 0 {
                let _ = writeln!(
                    out,
                    "forbid(principal, action, resource) when {{ context.zone == \"{z}\" && context.roles.contains(\"{role}\") && context.acr < {} }};",
                    floor as u8
                );
            }
        }
    }
    for f in p.flows() {
        let kinds: Vec<String> = f
            .kinds()
            .map(|(k, s)| match s {
                Some(s) => format!("(context.kind == \"{k}\" && context.schema == \"{s}\")"),
                None => format!("context.kind == \"{k}\""),
            })
            .collect();
        let mut conds = vec![
            format!("context.flow == \"{}\"", f.name()),
            format!("({})", kinds.join(" || ")),
            format!("context.size <= {}", f.max_size().min(i64::MAX as u64)),
            format!(
                "(context.roles.containsAny([{}]) || (context.machine && {}))",
                quoted(f.submitter_roles().map(Role::as_str)),
                f.machine_submits()
            ),
        ];
        if f.has_release() {
            let refused: Vec<&str> = f.refused_labels().collect();
            if !refused.is_empty() {
                conds.push(format!(
                    "!context.labels.containsAny([{}])",
                    quoted(refused)
                ));
            }
            if f.redact() {
                conds.push("context.redacted".to_owned());
            }
            let _ = writeln!(
                out,
                "// approvers of {}",
                quoted(f.approver_roles().map(Role::as_str))
            );
            conds.push(format!("context.approvals >= {}", f.approvers()));
        }
        let _ = writeln!(
            out,
            "@id(\"flow:{}\")\npermit(principal, action == Action::\"transfer\", resource) when {{\n  {}\n}};",
            f.name(),
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
        if seg.parse::<CourtCode>().is_ok() {
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
pub fn cedar_transfer_context(p: &Policy, flow: &str, t: &TransferRequest) -> serde_json::Value {
    let roles: Vec<Role> = p
        .flow(flow)
        .map(|f| f.approver_roles().collect())
        .unwrap_or_default();
    let mut seen: Vec<&SubjectId> = Vec::new();
    for a in &t.approvals {
        if roles.contains(&a.role)
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
