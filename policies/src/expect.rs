//! `expect` declarations: properties the author states and the verifier proves or refutes.

use tianping_core::{Acr, Role};

use crate::cx::Cx;
use crate::diag::Problem;
use crate::model::{Policy, mask_roles};
use crate::reach;
use crate::syntax::{Ast, ExpectKind, Name};

/// Each `expect` checked against the compiled policy; a failed one is an error with a
/// counterexample.
pub(crate) fn expects(cx: &mut Cx, p: &Policy, ast: &Ast) {
    for e in &ast.expects {
        match &e.kind {
            ExpectKind::NoPath { from, to } => {
                let (Some(&a), Some(&b)) = (
                    p.zone_index.get(from.text.as_str()),
                    p.zone_index.get(to.text.as_str()),
                ) else {
                    unknown_zones(cx, p, &[from, to]);
                    continue;
                };
                if let Some(path) = reach::path(p, a, b) {
                    cx.problems.push(
                        Problem::error(
                            format!(
                                "expectation failed: a path leads from `{}` to `{}`",
                                from.text, to.text
                            ),
                            e.span,
                            "this expectation does not hold",
                        )
                        .with_help(format!("counterexample: {}", reach::describe(p, a, &path))),
                    );
                }
            }
            ExpectKind::OnlyFlows { flows, from, to } => {
                let (Some(&a), Some(&b)) = (
                    p.zone_index.get(from.text.as_str()),
                    p.zone_index.get(to.text.as_str()),
                ) else {
                    unknown_zones(cx, p, &[from, to]);
                    continue;
                };
                let mut allowed = Vec::new();
                for f in flows {
                    match p.flow_index.get(f.text.as_str()) {
                        Some(&i) => allowed.push(i),
                        None => cx.err(
                            format!("unknown flow `{}`", f.text),
                            f.span,
                            "no flow of this name is declared",
                        ),
                    }
                }
                for (i, f) in p.flows.iter().enumerate() {
                    if f.from == a && f.to == b && !allowed.contains(&i) {
                        cx.problems.push(
                            Problem::error(
                                format!(
                                    "expectation failed: flow `{}` also goes from `{}` to `{}`",
                                    f.name, from.text, to.text
                                ),
                                e.span,
                                "this expectation does not hold",
                            )
                            .with_help(format!(
                                "counterexample: {} -> {} via `{}`",
                                from.text, to.text, f.name
                            )),
                        );
                    }
                }
            }
            ExpectKind::RouteAcr { route, acr } => {
                let Some(r) = p.routes.iter().find(|r| r.name == route.text) else {
                    cx.err(
                        format!("unknown route `{}`", route.text),
                        route.span,
                        "no route of this name is declared",
                    );
                    continue;
                };
                let Some(want) = cx.acr(acr) else { continue };
                let Some(zone) = p.zones.get(r.zone) else {
                    continue;
                };
                let weakest = mask_roles(r.roles & zone.signin)
                    .map(|role| {
                        let z = zone
                            .acr
                            .get(Role::ALL.iter().position(|x| *x == role).unwrap_or(0))
                            .copied()
                            .flatten()
                            .unwrap_or(Acr::Pwd);
                        (role, z.max(r.acr))
                    })
                    .min_by_key(|(_, a)| *a);
                if let Some((role, got)) = weakest {
                    if got < want {
                        cx.problems.push(
                            Problem::error(
                                format!(
                                    "expectation failed: route `{}` admits acr `{got}`, below `{want}`",
                                    r.name
                                ),
                                e.span,
                                "this expectation does not hold",
                            )
                            .with_help(format!(
                                "counterexample: a `{role}` signed in with `{got}` in zone `{}`",
                                zone.name
                            )),
                        );
                    }
                }
            }
        }
    }
}

fn unknown_zones(cx: &mut Cx, p: &Policy, names: &[&Name]) {
    for n in names {
        if !p.zone_index.contains_key(n.text.as_str()) {
            cx.err(
                format!("unknown zone `{}`", n.text),
                n.span,
                "no zone of this name is declared",
            );
        }
    }
}
