//! What changed between two policies: routes, flows and markings, and zone-to-zone
//! reachability.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::model::{ALL_ROLES, CourtCheck, METHODS, Policy, Target, kind_text, mask_roles};
use crate::reach::reachable_pairs;

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
    /// Routes only in the new policy (canonical text).
    pub routes_added: Vec<String>,
    /// Routes only in the old policy.
    pub routes_removed: Vec<String>,
    /// Routes in both whose meaning changed.
    pub routes_changed: Vec<Changed>,
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
}

impl PolicyDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.routes_added.is_empty()
            && self.routes_removed.is_empty()
            && self.routes_changed.is_empty()
            && self.flows_added.is_empty()
            && self.flows_removed.is_empty()
            && self.flows_changed.is_empty()
            && self.reach_added.is_empty()
            && self.reach_removed.is_empty()
            && self.markings_added.is_empty()
            && self.markings_removed.is_empty()
            && self.markings_changed.is_empty()
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
    let ro = reachable_pairs(old);
    let rn = reachable_pairs(new);
    PolicyDiff {
        routes_added,
        routes_removed,
        routes_changed,
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
    }
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no change");
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
        Ok(())
    }
}
