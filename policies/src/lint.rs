//! Warnings: what checks but is probably not what the author meant.

use crate::cx::Cx;
use crate::diag::Problem;
use crate::model::{METHODS, Policy, Route, Target};
use crate::paths;

/// Whether route `a` (earlier) takes every request route `b` would take.
fn shadows(a: &Route, b: &Route) -> bool {
    a.zone == b.zone
        && a.methods & b.methods == b.methods
        && b.patterns
            .iter()
            .all(|(_, pb)| a.patterns.iter().any(|(_, pa)| paths::covers(pa, pb)))
        && a.roles & b.roles == b.roles
        && a.acr <= b.acr
        && a.clearance <= b.clearance
        && (a.court.is_none() || a.court == b.court)
        && match (&a.time, &b.time) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(x), Some(y)) => x.covers(y),
        }
}

/// Shadowed routes, routes no subject can satisfy, services nothing reaches.
pub(crate) fn warnings(cx: &mut Cx, p: &Policy) {
    for (j, b) in p.routes.iter().enumerate() {
        if let Some(a) = first_shadowing(p, j, b) {
            cx.problems.push(
                Problem::warning(
                    format!("route `{}` is shadowed by route `{}`", b.name, a.name),
                    b.span,
                    "never decides: an earlier route takes every request it would",
                )
                .with_help(format!("move it above `{}` or remove it", a.name)),
            );
        }
        let Some(zone) = p.zones.get(b.zone) else {
            continue;
        };
        let why = if b.roles & zone.signin == 0 {
            Some(format!(
                "none of its roles may sign in to zone `{}`",
                zone.name
            ))
        } else if b.time.is_some_and(|w| w.is_empty()) {
            Some("its time window is empty".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            cx.problems.push(Problem::warning(
                format!("no subject can satisfy route `{}`: {why}", b.name),
                b.span,
                "this route never allows",
            ));
        }
    }
    let mut reached = vec![false; p.services.len()];
    let routed = p.routes.iter().filter_map(|r| match r.target {
        Target::Service(s) => Some(s),
        Target::Flow(_) => None,
    });
    for s in routed.chain(p.flows.iter().map(|f| f.deliver)) {
        if let Some(r) = reached.get_mut(s) {
            *r = true;
        }
    }
    for (s, &reached) in p.services.iter().zip(&reached) {
        if !reached {
            cx.problems.push(Problem::warning(
                format!("no route or flow reaches service `{}`", s.name),
                s.span,
                "unreachable service",
            ));
        }
    }
}

/// The first route before route `j` (`b`) that shadows it. Only a route of `b`'s zone with one
/// of `b`'s methods and a pattern covering `b`'s first pattern can, and the zone's trie for that
/// method yields just those: the check stays near-linear in the routes of a zone.
fn first_shadowing<'p>(p: &'p Policy, j: usize, b: &Route) -> Option<&'p Route> {
    let method = (0..METHODS.len()).find(|m| b.methods & (1 << m) != 0);
    let (Some((_, first)), Some(method)) = (b.patterns.first(), method) else {
        // No pattern or no method (never in a policy that compiled): compare with every route.
        return p.routes.iter().take(j).find(|a| shadows(a, b));
    };
    let trie = p.tries.get(b.zone)?.get(method)?;
    let mut ids = Vec::new();
    trie.covering(first, &mut ids);
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| id as usize)
        .take_while(|&id| id < j)
        .filter_map(|id| p.routes.get(id))
        .find(|a| shadows(a, b))
}
