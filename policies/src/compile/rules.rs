//! The rules that never bend (DESIGN §2), checked on the compiled flows.

use tianping_core::Role;

use crate::cx::Cx;
use crate::diag::Problem;
use crate::model::{Flow, role_bit};
use crate::reach;
use crate::syntax::Ast;

use super::Scope;
use super::zones::Levels;

/// No flow to itself or out of a sealed zone; `release` down, `sanitize` up; approvers who can
/// sign in where they approve; replies that flow back. `decls[i]` is flow `i`'s declaration.
pub(super) fn check_flows(
    cx: &mut Cx,
    ast: &Ast,
    scope: &Scope<'_>,
    levels: &Levels,
    flows: &[Flow],
    decls: &[usize],
) {
    for (f, &d) in flows.iter().zip(decls) {
        let Some(fd) = ast.flows.get(d) else {
            continue;
        };
        let (Some(from), Some(to)) = (scope.zones.get(f.from), scope.zones.get(f.to)) else {
            continue;
        };
        if f.from == f.to {
            cx.err(
                format!(
                    "flow `{}` goes from zone `{}` to itself",
                    f.name, fd.from.text
                ),
                fd.to.span,
                "a flow crosses a zone boundary",
            );
        }
        if from.sealed {
            let chain = reach::chain_from(&scope.zones, flows, f);
            cx.problems.push(
                Problem::error(
                    format!(
                        "flow `{}` carries data out of sealed zone `{}`",
                        f.name, from.name
                    ),
                    fd.from.span,
                    "a sealed zone: no flow may leave it",
                )
                .with_help(format!("data could travel {chain}")),
            );
        }
        if to.conf < from.conf && f.release.is_none() {
            cx.problems.push(
                Problem::error(
                    format!(
                        "flow `{}` goes to lower confidentiality (`{}` to `{}`) without `release`",
                        f.name,
                        levels.conf.get(from.conf).map_or("?", String::as_str),
                        levels.conf.get(to.conf).map_or("?", String::as_str)
                    ),
                    fd.name.span,
                    "this flow needs a `release { ... }`",
                )
                .with_help("add `release { redact  approvers 2 of judge }` or similar"),
            );
        }
        if to.integ > from.integ && f.sanitize.is_empty() {
            cx.problems.push(
                Problem::error(
                    format!(
                        "flow `{}` goes to higher integrity (`{}` to `{}`) without `sanitize`",
                        f.name,
                        levels.integ.get(from.integ).map_or("?", String::as_str),
                        levels.integ.get(to.integ).map_or("?", String::as_str)
                    ),
                    fd.name.span,
                    "this flow needs `sanitize validate, rebuild`",
                )
                .with_help("add `sanitize validate, rebuild`"),
            );
        }
        if let (Some(rel), Some(rd)) = (&f.release, &fd.release) {
            let span = rd.approvers.as_ref().map_or(rd.keyword, |(n, _)| n.span);
            if rel.approvers == 0 {
                if let Some((k, _)) = f.kinds.iter().find(|(k, _)| !k.is_machine_made()) {
                    cx.problems.push(
                        Problem::error(
                            format!(
                                "flow `{}` releases `{k}` with no approver",
                                f.name
                            ),
                            span,
                            "zero approvers only for machine-made kinds",
                        )
                        .with_help("machine-made kinds: receipt, directory-update, audit-batch, policy-update, crl, trust-bundle"),
                    );
                }
            }
            if let Some((_, names)) = &rd.approvers {
                for n in names {
                    if let Ok(role) = n.text.parse::<Role>() {
                        if from.signin & role_bit(role) == 0 {
                            cx.problems.push(
                                Problem::error(
                                    format!(
                                        "approver role `{}` cannot sign in to source zone `{}`",
                                        n.text, from.name
                                    ),
                                    n.span,
                                    "no one of this role can approve in the source zone",
                                )
                                .with_help(format!(
                                    "add `acr {} >= cert` to zone `{}`",
                                    n.text, from.name
                                )),
                            );
                        }
                    }
                }
            }
        }
        if let (Some(reply), Some(rn)) = (f.reply.and_then(|i| ast.flows.get(i)), &fd.reply) {
            if reply.from.text != fd.to.text || reply.to.text != fd.from.text {
                cx.err(
                    format!(
                        "reply flow `{}` goes from `{}` to `{}`, not back from `{}` to `{}`",
                        rn.text, reply.from.text, reply.to.text, fd.to.text, fd.from.text
                    ),
                    rn.span,
                    "a reply flows the other way",
                );
            }
        }
    }
}
