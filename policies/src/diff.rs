//! What changed between two policies: levels, zones, routes (and the order of those that
//! match the same requests), flows, markings, zone-to-zone reachability, `expect`s and tests.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use tianping_core::{Acr, Role};

use crate::model::{ALL_ROLES, CourtCheck, METHODS, Policy, Target, kind_text, mask_roles};
use crate::paths::overlaps;
use crate::reach::reachable_pairs;
use crate::syntax;

/// One changed rule: its name and its canonical text before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// The rule's name.
    pub name: String,
    /// Before.
    pub old: String,
    /// After.
    pub new: String,
}

/// The difference between two checked policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyDiff {
    /// Level lists (`levels confidentiality`, `levels integrity`) whose levels changed.
    pub levels_changed: Vec<Changed>,
    /// Zones only in the new policy (canonical text: levels, `sealed`, who signs in).
    pub zones_added: Vec<String>,
    /// Zones only in the old policy.
    pub zones_removed: Vec<String>,
    /// Zones in both whose levels, seal or sign-in (roles and their `acr` floors) changed.
    pub zones_changed: Vec<Changed>,
    /// Routes only in the new policy (canonical text).
    pub routes_added: Vec<String>,
    /// Routes only in the old policy.
    pub routes_removed: Vec<String>,
    /// Routes in both whose meaning changed.
    pub routes_changed: Vec<Changed>,
    /// Pairs of routes in both, of one zone, that can match the same request and whose order
    /// changed: the first that matches decides, so the other one now does.
    pub routes_reordered: Vec<String>,
    /// Flows only in the new policy.
    pub flows_added: Vec<String>,
    /// Flows only in the old policy.
    pub flows_removed: Vec<String>,
    /// Flows in both whose meaning changed.
    pub flows_changed: Vec<Changed>,
    /// Zone pairs `from -> to` data can travel between now and could not before.
    pub reach_added: Vec<String>,
    /// Zone pairs data could travel between before and cannot now.
    pub reach_removed: Vec<String>,
    /// `marking` lines only in the new policy (canonical text).
    pub markings_added: Vec<String>,
    /// `marking` lines only in the old policy: releases no longer look for their words.
    pub markings_removed: Vec<String>,
    /// Labels marked in both whose words changed.
    pub markings_changed: Vec<Changed>,
    /// `expect` lines only in the new policy (as written, whitespace and comments dropped).
    pub expects_added: Vec<String>,
    /// `expect` lines only in the old policy: the verifier no longer proves them.
    pub expects_removed: Vec<String>,
    /// `test` lines only in the new policy.
    pub tests_added: Vec<String>,
    /// `test` lines only in the old policy.
    pub tests_removed: Vec<String>,
}

impl PolicyDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.levels_changed.is_empty()
            && self.zones_added.is_empty()
            && self.zones_removed.is_empty()
            && self.zones_changed.is_empty()
            && self.routes_added.is_empty()
            && self.routes_removed.is_empty()
            && self.routes_changed.is_empty()
            && self.routes_reordered.is_empty()
            && self.flows_added.is_empty()
            && self.flows_removed.is_empty()
            && self.flows_changed.is_empty()
            && self.reach_added.is_empty()
            && self.reach_removed.is_empty()
            && self.markings_added.is_empty()
            && self.markings_removed.is_empty()
            && self.markings_changed.is_empty()
            && self.expects_added.is_empty()
            && self.expects_removed.is_empty()
            && self.tests_added.is_empty()
            && self.tests_removed.is_empty()
    }
}

fn roles_text(mask: u32) -> String {
    if mask == ALL_ROLES {
        "any".to_owned()
    } else {
        mask_roles(mask)
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn zone_text(p: &Policy, i: usize) -> Option<(String, String)> {
    let z = p.zones.get(i)?;
    let mut s = format!(
        "zone {}: confidentiality {}; integrity {}",
        z.name,
        p.conf_levels.get(z.conf)?,
        p.integ_levels.get(z.integ)?
    );
    if z.sealed {
        s.push_str("; sealed");
    }
    for acr in [Acr::Pwd, Acr::Otp, Acr::Cert] {
        let roles: Vec<&str> = Role::ALL
            .iter()
            .zip(&z.acr)
            .filter(|(_, a)| **a == Some(acr))
            .map(|(r, _)| r.as_str())
            .collect();
        if !roles.is_empty() {
            s.push_str(&format!("; acr {} >= {acr}", roles.join(", ")));
        }
    }
    if z.signin == 0 {
        s.push_str("; no role signs in");
    }
    Some((z.name.to_string(), s))
}

/// Pairs of routes of one zone in both policies that can match one request, whose order
/// changed.
fn reordered(old: &Policy, new: &Policy) -> Vec<String> {
    let pn: BTreeMap<&str, usize> = new
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let mut out = Vec::new();
    for (i, a) in old.routes.iter().enumerate() {
        for b in old.routes.iter().skip(i + 1) {
            let (Some(&na), Some(&nb)) = (pn.get(a.name.as_str()), pn.get(b.name.as_str())) else {
                continue;
            };
            let (Some(ra), Some(rb)) = (new.routes.get(na), new.routes.get(nb)) else {
                continue;
            };
            let meet = |x: &crate::model::Route, y: &crate::model::Route| {
                x.zone_name == y.zone_name
                    && x.methods & y.methods != 0
                    && x.patterns
                        .iter()
                        .any(|(_, s)| y.patterns.iter().any(|(_, t)| overlaps(s, t)))
            };
            // Both orders are read in their own policy: a route may have moved or changed.
            if nb < na && meet(a, b) && meet(ra, rb) {
                out.push(format!(
                    "routes `{}` and `{}` of zone `{}` can match the same request: `{}` came \
                     first, now `{}` does",
                    a.name, b.name, ra.zone_name, a.name, b.name
                ));
            }
        }
    }
    out
}

/// A statement as written, comments and runs of whitespace dropped.
fn statement_text(source: &str, span: crate::Span) -> String {
    let text = source
        .get(span.offset..span.offset + span.len)
        .unwrap_or_default();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The policy's `expect` and `test` lines, as written (a checked policy parses).
fn expects_and_tests(p: &Policy) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let Ok(ast) = syntax::parse(&p.source) else {
        return Default::default();
    };
    let keyed = |t: String| (t.clone(), t);
    (
        ast.expects
            .iter()
            .map(|e| keyed(statement_text(&p.source, e.span)))
            .collect(),
        ast.tests
            .iter()
            .map(|t| keyed(statement_text(&p.source, t.span)))
            .collect(),
    )
}

fn route_text(p: &Policy, i: usize) -> Option<(String, String)> {
    let r = p.routes.get(i)?;
    let zone = p.zones.get(r.zone)?;
    let methods: Vec<&str> = METHODS
        .iter()
        .enumerate()
        .filter(|(m, _)| r.methods & (1 << m) != 0)
        .map(|(_, m)| *m)
        .collect();
    let paths: Vec<&str> = r.patterns.iter().map(|(p, _)| p.as_str()).collect();
    let target = match r.target {
        Target::Service(s) => format!("service {}", p.services.get(s)?.name),
        Target::Flow(f) => format!("flow {}", p.flows.get(f)?.name),
    };
    let mut s = format!(
        "route {} in {}: {} {} -> {target}; roles {}; acr >= {}; clearance >= {}",
        r.name,
        zone.name,
        methods.join(","),
        paths.join(","),
        roles_text(r.roles),
        r.acr,
        r.clearance
    );
    match &r.court {
        Some(CourtCheck::Same) => s.push_str("; court same"),
        Some(CourtCheck::Within) => s.push_str("; court within"),
        Some(CourtCheck::In(c)) => s.push_str(&format!("; court in {c}")),
        None => {}
    }
    if let Some(w) = r.time {
        s.push_str(&format!("; time {w}"));
    }
    Some((r.name.clone(), s))
}

fn flow_text(p: &Policy, i: usize) -> Option<(String, String)> {
    let f = p.flows.get(i)?;
    let kinds: Vec<String> = f.kinds.iter().map(kind_text).collect();
    let mut s = format!(
        "flow {} {} -> {}: kinds {}; max-size {}; submitters {}{}; deliver {}",
        f.name,
        f.from_name,
        f.to_name,
        kinds.join(", "),
        f.max_size,
        roles_text(f.submitters),
        if f.machine { ", machine" } else { "" },
        p.services.get(f.deliver)?.name
    );
    for (k, n) in &f.kind_sizes {
        s.push_str(&format!("; max-size {n} for {}", kind_text(k)));
    }
    if let Some(r) = f.rate {
        s.push_str(&format!("; rate {} per {}s", r.count, r.per_secs));
    }
    if !f.sanitize.is_empty() {
        s.push_str(&format!("; sanitize {}", f.sanitize.join(", ")));
    }
    if let Some(r) = &f.release {
        s.push_str(&format!(
            "; release{} refuse [{}] approvers {} of {}",
            if r.redact { " redact" } else { "" },
            r.refuse.join(", "),
            r.approvers,
            roles_text(r.approver_roles)
        ));
    }
    if let Some(r) = f.reply.and_then(|r| p.flows.get(r)) {
        s.push_str(&format!("; reply {}", r.name));
    }
    if f.accounts != 0 {
        s.push_str(&format!("; accounts {}", roles_text(f.accounts)));
    }
    if !f.attributes.is_empty() {
        s.push_str(&format!("; attributes {}", f.attributes.join(", ")));
    }
    for (c, m) in &f.credentials {
        s.push_str(&format!("; credential {c} for {}", roles_text(*m)));
    }
    Some((f.name.clone(), s))
}

fn compare(
    old: BTreeMap<String, String>,
    new: BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>, Vec<Changed>) {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut changed = Vec::new();
    for (name, text) in &new {
        match old.get(name) {
            None => added.push(text.clone()),
            Some(o) if o != text => changed.push(Changed {
                name: name.clone(),
                old: o.clone(),
                new: text.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, text) in &old {
        if !new.contains_key(name) {
            removed.push(text.clone());
        }
    }
    (added, removed, changed)
}

/// Compares two checked policies.
pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    let routes = |p: &Policy| -> BTreeMap<String, String> {
        (0..p.routes.len())
            .filter_map(|i| route_text(p, i))
            .collect()
    };
    let flows = |p: &Policy| -> BTreeMap<String, String> {
        (0..p.flows.len()).filter_map(|i| flow_text(p, i)).collect()
    };
    let zones = |p: &Policy| -> BTreeMap<String, String> {
        (0..p.zones.len()).filter_map(|i| zone_text(p, i)).collect()
    };
    let levels = |p: &Policy| -> BTreeMap<String, String> {
        [
            ("confidentiality", &p.conf_levels),
            ("integrity", &p.integ_levels),
        ]
        .into_iter()
        .map(|(axis, l)| {
            (
                format!("levels {axis}"),
                format!("levels {axis} {}", l.join(" < ")),
            )
        })
        .collect()
    };
    let (_, _, levels_changed) = compare(levels(old), levels(new));
    let (zones_added, zones_removed, zones_changed) = compare(zones(old), zones(new));
    let (routes_added, routes_removed, routes_changed) = compare(routes(old), routes(new));
    let (flows_added, flows_removed, flows_changed) = compare(flows(old), flows(new));
    let markings = |p: &Policy| -> BTreeMap<String, String> {
        p.markings
            .iter()
            .map(|m| {
                let words: Vec<String> = m.words.iter().map(|w| format!("{w:?}")).collect();
                (
                    m.label.clone(),
                    format!("marking {} words {}", m.label, words.join(", ")),
                )
            })
            .collect()
    };
    let (markings_added, markings_removed, markings_changed) =
        compare(markings(old), markings(new));
    let ((eo, to), (en, tn)) = (expects_and_tests(old), expects_and_tests(new));
    let (expects_added, expects_removed, _) = compare(eo, en);
    let (tests_added, tests_removed, _) = compare(to, tn);
    let ro = reachable_pairs(old);
    let rn = reachable_pairs(new);
    PolicyDiff {
        levels_changed,
        zones_added,
        zones_removed,
        zones_changed,
        routes_added,
        routes_removed,
        routes_changed,
        routes_reordered: reordered(old, new),
        flows_added,
        flows_removed,
        flows_changed,
        reach_added: rn
            .difference(&ro)
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect(),
        reach_removed: ro
            .difference(&rn)
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect(),
        markings_added,
        markings_removed,
        markings_changed,
        expects_added,
        expects_removed,
        tests_added,
        tests_removed,
    }
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no change");
        }
        for c in &self.levels_changed {
            writeln!(f, "~ {}\n    was: {}\n    now: {}", c.name, c.old, c.new)?;
        }
        for z in &self.zones_added {
            writeln!(f, "+ {z}")?;
        }
        for z in &self.zones_removed {
            writeln!(f, "- {z}")?;
        }
        for c in &self.zones_changed {
            writeln!(
                f,
                "~ zone {}\n    was: {}\n    now: {}",
                c.name, c.old, c.new
            )?;
        }
        for r in &self.routes_added {
            writeln!(f, "+ {r}")?;
        }
        for r in &self.routes_removed {
            writeln!(f, "- {r}")?;
        }
        for c in &self.routes_changed {
            writeln!(
                f,
                "~ route {}\n    was: {}\n    now: {}",
                c.name, c.old, c.new
            )?;
        }
        for r in &self.routes_reordered {
            writeln!(f, "~ order: {r}")?;
        }
        for r in &self.flows_added {
            writeln!(f, "+ {r}")?;
        }
        for r in &self.flows_removed {
            writeln!(f, "- {r}")?;
        }
        for c in &self.flows_changed {
            writeln!(
                f,
                "~ flow {}\n    was: {}\n    now: {}",
                c.name, c.old, c.new
            )?;
        }
        for r in &self.reach_added {
            writeln!(f, "+ reach {r}")?;
        }
        for r in &self.reach_removed {
            writeln!(f, "- reach {r}")?;
        }
        for m in &self.markings_added {
            writeln!(f, "+ {m}")?;
        }
        for m in &self.markings_removed {
            writeln!(f, "- {m}")?;
        }
        for c in &self.markings_changed {
            writeln!(
                f,
                "~ marking {}\n    was: {}\n    now: {}",
                c.name, c.old, c.new
            )?;
        }
        for e in &self.expects_added {
            writeln!(f, "+ {e}")?;
        }
        for e in &self.expects_removed {
            writeln!(f, "- {e}")?;
        }
        for t in &self.tests_added {
            writeln!(f, "+ {t}")?;
        }
        for t in &self.tests_removed {
            writeln!(f, "- {t}")?;
        }
        Ok(())
    }
}
