//! Routes: which requests a zone's gateway lets through, to a service or into a flow.

use std::collections::{HashMap, HashSet};

use tianping_core::{Acr, Clearance, CourtCode};

use crate::cx::Cx;
use crate::diag::{Problem, Span};
use crate::model::{ALL_ROLES, CourtCheck, METHODS, Route, Target, method_index};
use crate::paths;
use crate::syntax::{Ast, CourtCond, CourtRule, RouteDecl, TargetKind};

use super::{Scope, parse_window};

/// Every route declaration compiled, in policy order; a name declared twice is an error.
pub(super) fn routes(
    cx: &mut Cx,
    ast: &Ast,
    scope: &Scope<'_>,
    flow_index: &HashMap<Box<str>, usize>,
) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    let mut route_names: HashSet<&str> = HashSet::new();
    for r in &ast.routes {
        if cx.name_ok(&r.name, "route") && !route_names.insert(&r.name.text) {
            cx.err(
                format!("route `{}` declared twice", r.name.text),
                r.name.span,
                "second declaration",
            );
        }
        routes.extend(route(cx, ast, scope, flow_index, r));
    }
    routes
}

/// One route declaration compiled, or `None` when an error leaves it without a zone or a target.
fn route(
    cx: &mut Cx,
    ast: &Ast,
    scope: &Scope<'_>,
    flow_index: &HashMap<Box<str>, usize>,
    r: &RouteDecl,
) -> Option<Route> {
    let zone = scope.zone_of(cx, &r.zone);
    let mut patterns = Vec::new();
    for p in &r.paths {
        match paths::parse_pattern(&p.text) {
            Ok(segs) if paths::is_reserved(&segs) => cx.problems.push(
                Problem::error(
                    format!(
                        "path `{}` is under the gateway's reserved `/.tianping/`",
                        p.text
                    ),
                    p.span,
                    "reserved for the gateway",
                )
                .with_help(
                    "the gateway's own endpoints (sign-in, logout, transfers, approvals) live \
                     under `/.tianping/`; choose another first segment",
                ),
            ),
            Ok(segs) => patterns.push((p.text.clone(), segs)),
            Err(why) => cx.err(format!("bad path pattern `{}`", p.text), p.span, why),
        }
    }
    if r.paths.is_empty() {
        cx.err(
            format!("route `{}` has no path", r.name.text),
            r.name.span,
            "add `path /prefix/**`",
        );
    }
    let mut methods = 0u8;
    for m in &r.methods {
        if m.text == "ANY" {
            methods = u8::MAX >> 1;
        } else if let Some(i) = method_index(&m.text) {
            methods |= 1 << i;
        } else {
            cx.err(
                format!("unknown method `{}`", m.text),
                m.span,
                format!("expected {} or ANY", METHODS.join(", ")),
            );
        }
    }
    if r.methods.is_empty() {
        cx.err(
            format!("route `{}` names no method", r.name.text),
            r.name.span,
            "add `methods GET, HEAD`",
        );
    }
    let target = match &r.target {
        None => {
            cx.err(
                format!("route `{}` leads nowhere", r.name.text),
                r.name.span,
                "add `to service NAME` or `to flow NAME`",
            );
            None
        }
        Some((TargetKind::Service, n)) => scope.service_of(cx, n).and_then(|s| {
            let svc = scope.services.get(s)?;
            if Some(svc.zone) != zone {
                cx.problems.push(
                    Problem::error(
                        format!(
                            "route `{}` in zone `{}` leads to service `{}` of zone `{}`",
                            r.name.text,
                            r.zone.text,
                            n.text,
                            scope.zones.get(svc.zone).map_or("?", |z| z.name.as_str())
                        ),
                        n.span,
                        "a service of another zone",
                    )
                    .with_help(
                        "a gateway never forwards a request to another zone; declare a flow and use `to flow`",
                    ),
                );
                return None;
            }
            Some(Target::Service(s))
        }),
        Some((TargetKind::Flow, n)) => scope.flow_of(cx, n).and_then(|i| {
            let fl = ast.flows.get(i)?;
            if scope.zone_index.get(fl.from.text.as_str()).copied() != zone {
                cx.err(
                    format!(
                        "route `{}` in zone `{}` leads to flow `{}`, which leaves zone `{}`",
                        r.name.text, r.zone.text, n.text, fl.from.text
                    ),
                    n.span,
                    "an exchange route starts a flow of its own zone",
                );
                return None;
            }
            flow_index.get(n.text.as_str()).copied().map(Target::Flow)
        }),
    };
    if r.roles.is_none() {
        // open to every role that may sign in to the zone: said, not left to be guessed
        cx.problems.push(
            Problem::warning(
                format!(
                    "route `{}` names no roles: every role that may sign in to zone `{}` may use it",
                    r.name.text, r.zone.text
                ),
                r.name.span,
                "no `roles` line",
            )
            .with_help("write `roles any` if every role is meant, or name the roles"),
        );
    }
    let roles = r.roles.as_ref().map_or(ALL_ROLES, |s| cx.roles(s));
    let court = match &r.court {
        None => None,
        Some(CourtCond::Path(rule, span)) => {
            if !patterns.iter().all(|(_, segs)| paths::has_court(segs)) {
                cx.err(
                    "`court same` and `court within` need a `{court}` segment in every path",
                    *span,
                    "no `{court}` segment to compare with",
                );
            }
            Some(match rule {
                CourtRule::Same => CourtCheck::Same,
                CourtRule::Within => CourtCheck::Within,
            })
        }
        Some(CourtCond::In(code)) => match code.text.parse::<CourtCode>() {
            Ok(c) => Some(CourtCheck::In(c)),
            Err(_) => {
                cx.err(
                    format!("`{}` is not a court code", code.text),
                    code.span,
                    "expected a code such as `bj.01`",
                );
                None
            }
        },
    };
    let clearance = r
        .clearance
        .as_ref()
        .and_then(|c| cx.clearance(c))
        .unwrap_or(Clearance::None);
    let acr = r.acr.as_ref().and_then(|a| cx.acr(a)).unwrap_or(Acr::Pwd);
    let time = r.time.as_ref().and_then(|(w, off)| {
        let parsed = parse_window(&w.text, off.as_ref().map(|o| o.text.as_str()));
        if parsed.is_none() {
            let span = off.as_ref().map_or(w.span, |o| {
                Span::new(w.span.offset, o.span.offset + o.span.len - w.span.offset)
            });
            cx.err(
                format!("`{}` is not a time window", w.text),
                span,
                "expected `HH:MM-HH:MM`, optionally followed by an offset such as `+08:00`",
            );
        }
        parsed
    });
    let (Some(zone), Some(target)) = (zone, target) else {
        return None;
    };
    Some(Route {
        name: r.name.text.clone(),
        span: r.name.span,
        zone,
        zone_name: scope.zones.get(zone)?.name.clone(),
        patterns,
        methods,
        target,
        roles,
        court,
        clearance,
        acr,
        time,
    })
}
