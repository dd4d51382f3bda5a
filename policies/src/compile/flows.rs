//! Flows: what may cross from one zone to another, and on what terms.

use std::collections::HashMap;

use crate::cx::Cx;
use crate::diag::Problem;
use crate::model::{ALL_ROLES, Flow, Kind, Rate, Release, kind_text, role_bit};
use crate::syntax::{Ast, FlowDecl, Name, ReleaseDecl};

use super::{Scope, parse_size, rate_secs};

/// Sanitize steps a flow may name.
pub const SANITIZE_STEPS: [&str; 6] = [
    "validate",
    "rebuild",
    "strip-metadata",
    "scan",
    "transcode",
    "flatten",
];

/// Credentials a directory flow may carry.
pub const CREDENTIALS: [&str; 3] = ["password-hash", "otp-seed", "cert"];

/// Attributes a directory flow may carry.
pub const ATTRIBUTES: [&str; 8] = [
    "sub",
    "name",
    "court",
    "roles",
    "clearance",
    "phone",
    "email",
    "status",
];

/// The flow declarations by name (index in the syntax tree), first, so that replies and routes
/// may refer to any flow; a name declared twice is an error.
pub(super) fn names(cx: &mut Cx, ast: &Ast) -> HashMap<Box<str>, usize> {
    let mut flow_decls: HashMap<Box<str>, usize> = HashMap::new();
    for (i, f) in ast.flows.iter().enumerate() {
        if cx.name_ok(&f.name, "flow")
            && flow_decls.insert(f.name.text.as_str().into(), i).is_some()
        {
            cx.err(
                format!("flow `{}` declared twice", f.name.text),
                f.name.span,
                "second declaration",
            );
        }
    }
    flow_decls
}

/// One flow declaration compiled, or `None` when an error leaves it without a source, a
/// destination or a service to deliver to.
pub(super) fn flow(cx: &mut Cx, scope: &Scope<'_>, f: &FlowDecl) -> Option<Flow> {
    let from = scope.zone_of(cx, &f.from);
    let to = scope.zone_of(cx, &f.to);
    let mut kinds = Vec::new();
    for k in &f.kinds {
        if let Some(k) = cx.kind(k) {
            kinds.push(k);
        }
    }
    if f.kinds.is_empty() {
        cx.err(
            format!("flow `{}` carries no kind", f.name.text),
            f.name.span,
            "add `kinds pdf, json(schema), ...`",
        );
    }
    let max_size = match &f.max_size {
        None => {
            cx.err(
                format!("flow `{}` has no size limit", f.name.text),
                f.name.span,
                "add `max-size 20MiB`",
            );
            0
        }
        Some(n) => size(cx, n),
    };
    let kind_sizes = kind_sizes(cx, f, &kinds, max_size);
    let mut submitters = 0;
    let mut machine = false;
    for s in &f.submitters {
        if s.text == "machine" {
            machine = true;
        } else if let Some(r) = cx.role(s) {
            submitters |= role_bit(r);
        }
    }
    if f.submitters.is_empty() {
        cx.err(
            format!("flow `{}` names no submitter", f.name.text),
            f.name.span,
            "add `submitters ROLE, ...` or `submitters machine`",
        );
    }
    let deliver = match &f.deliver {
        None => {
            cx.err(
                format!("flow `{}` delivers nowhere", f.name.text),
                f.name.span,
                "add `deliver SERVICE` (a service of the destination zone)",
            );
            None
        }
        Some(d) => scope.service_of(cx, d).inspect(|&s| {
            if let (Some(svc), Some(to)) = (scope.services.get(s), to) {
                if svc.zone != to {
                    cx.err(
                        format!(
                            "flow `{}` delivers to service `{}` of zone `{}`, not of its destination `{}`",
                            f.name.text,
                            d.text,
                            scope.zones.get(svc.zone).map_or("?", |z| z.name.as_str()),
                            f.to.text
                        ),
                        d.span,
                        "a service of another zone",
                    );
                }
            }
        }),
    };
    let rate = f.rate.as_ref().and_then(|(n, unit)| {
        let count = n.text.parse::<u32>().ok().filter(|c| *c > 0);
        if count.is_none() {
            cx.err(
                format!("`{}` is not a positive count", n.text),
                n.span,
                "expected a number",
            );
        }
        let per = rate_secs(&unit.text);
        if per.is_none() {
            cx.err(
                format!("unknown period `{}`", unit.text),
                unit.span,
                "expected `second`, `minute`, `hour` or `day`",
            );
        }
        Some(Rate {
            count: count?,
            per_secs: per?,
        })
    });
    for s in &f.sanitize {
        if !SANITIZE_STEPS.contains(&s.text.as_str()) {
            cx.problems.push(
                Problem::error(
                    format!("unknown sanitize step `{}`", s.text),
                    s.span,
                    "not a sanitize step",
                )
                .with_help(format!("steps are {}", SANITIZE_STEPS.join(", "))),
            );
        }
    }
    let release = f.release.as_ref().map(|r| release(cx, r));
    let reply = f.reply.as_ref().and_then(|r| scope.flow_of(cx, r));
    let accounts = f.accounts.as_ref().map_or(0, |a| cx.roles(a));
    let directory = kinds.iter().any(|(k, _)| *k == Kind::DirectoryUpdate);
    for a in &f.attributes {
        if !ATTRIBUTES.contains(&a.text.as_str()) {
            cx.err(
                format!("unknown attribute `{}`", a.text),
                a.span,
                format!("expected one of {}", ATTRIBUTES.join(", ")),
            );
        }
    }
    let mut credentials = Vec::new();
    for c in &f.credentials {
        let mask = c.for_roles.as_ref().map_or(ALL_ROLES, |r| cx.roles(r));
        for n in &c.creds {
            if CREDENTIALS.contains(&n.text.as_str()) {
                credentials.push((n.text.clone(), mask));
            } else {
                cx.err(
                    format!("unknown credential `{}`", n.text),
                    n.span,
                    format!("expected one of {}", CREDENTIALS.join(", ")),
                );
            }
        }
    }
    if !directory && (f.accounts.is_some() || !f.attributes.is_empty() || !f.credentials.is_empty())
    {
        cx.err(
            format!(
                "flow `{}` names accounts, attributes or credentials but carries no `directory-update`",
                f.name.text
            ),
            f.name.span,
            "only directory flows say which accounts and attributes go",
        );
    }
    let (Some(from), Some(to), Some(deliver)) = (from, to, deliver) else {
        return None;
    };
    let (Some(from_name), Some(to_name)) = (scope.zones.get(from), scope.zones.get(to)) else {
        return None;
    };
    Some(Flow {
        name: f.name.text.clone(),
        from,
        to,
        from_name: from_name.name.clone(),
        to_name: to_name.name.clone(),
        kinds,
        max_size,
        kind_sizes,
        submitters,
        machine,
        deliver,
        rate,
        sanitize: f.sanitize.iter().map(|n| n.text.clone()).collect(),
        release,
        reply,
        accounts,
        attributes: f.attributes.iter().map(|n| n.text.clone()).collect(),
        credentials,
    })
}

/// A size in the policy's units, or an error at its span (and 0).
fn size(cx: &mut Cx, n: &Name) -> u64 {
    parse_size(&n.text).unwrap_or_else(|| {
        cx.err(
            format!("`{}` is not a size", n.text),
            n.span,
            "expected a number with `B`, `KB`, `KiB`, `MB`, `MiB`, `GB` or `GiB`",
        );
        0
    })
}

/// A flow's `max-size SIZE for KIND, ...` statements: each kind one the flow carries, named
/// once, its limit no higher than the flow's own (which bounds every payload, whatever its
/// kind: what a sender spools and a receiver reassembles before the kind is known).
fn kind_sizes(
    cx: &mut Cx,
    f: &FlowDecl,
    kinds: &[(Kind, Option<String>)],
    max_size: u64,
) -> Vec<((Kind, Option<String>), u64)> {
    let mut out: Vec<((Kind, Option<String>), u64)> = Vec::new();
    for (n, decls) in &f.kind_sizes {
        let limit = size(cx, n);
        if limit > max_size && f.max_size.is_some() {
            cx.problems.push(
                Problem::error(
                    format!(
                        "`{}` is above flow `{}`'s own `max-size`",
                        n.text, f.name.text
                    ),
                    n.span,
                    "a kind's limit can only be lower",
                )
                .with_help("the flow's `max-size` bounds every payload it carries; raise it first"),
            );
        }
        for d in decls {
            let Some(k) = cx.kind(d) else { continue };
            if !kinds.contains(&k) {
                cx.err(
                    format!("flow `{}` carries no `{}`", f.name.text, kind_text(&k)),
                    d.name.span,
                    "not one of the flow's `kinds`",
                );
            } else if out.iter().any(|(seen, _)| *seen == k) {
                cx.err(
                    format!("flow `{}` limits `{}` twice", f.name.text, kind_text(&k)),
                    d.name.span,
                    "a second limit for this kind",
                );
            } else {
                out.push((k, limit));
            }
        }
    }
    out
}

/// A flow's `release { ... }` terms.
fn release(cx: &mut Cx, r: &ReleaseDecl) -> Release {
    let (approvers, approver_roles) = match &r.approvers {
        None => (0, 0),
        Some((n, roles)) => {
            let count = n.text.parse::<u32>().unwrap_or_else(|_| {
                cx.err(
                    format!("`{}` is not a count", n.text),
                    n.span,
                    "expected a number",
                );
                0
            });
            let mut mask = 0;
            for r in roles {
                if let Some(role) = cx.role(r) {
                    mask |= role_bit(role);
                }
            }
            if count > 0 && roles.is_empty() {
                cx.err(
                    format!("{count} approvers of no role"),
                    n.span,
                    "add `of ROLE, ...`",
                );
            }
            (count, mask)
        }
    };
    Release {
        redact: r.redact,
        refuse: r.refuse.iter().map(|n| n.text.clone()).collect(),
        approvers,
        approver_roles,
    }
}
