//! Reachability over flows: which zones data can reach, and a concrete path as counterexample.

use std::collections::{BTreeSet, VecDeque};

use crate::model::{Flow, Policy, Zone};

/// Shortest chain of flows (indexes) from zone `a` to zone `b`, if any (BFS over flows).
pub(crate) fn path_in(zones: usize, flows: &[Flow], a: usize, b: usize) -> Option<Vec<usize>> {
    let mut prev: Vec<Option<usize>> = vec![None; zones];
    let mut seen = vec![false; zones];
    let mut queue = VecDeque::new();
    if let Some(s) = seen.get_mut(a) {
        *s = true;
    }
    queue.push_back(a);
    while let Some(z) = queue.pop_front() {
        if z == b && z != a {
            break;
        }
        for (i, f) in flows.iter().enumerate() {
            if f.from == z && seen.get(f.to) == Some(&false) {
                if let Some(s) = seen.get_mut(f.to) {
                    *s = true;
                }
                if let Some(p) = prev.get_mut(f.to) {
                    *p = Some(i);
                }
                queue.push_back(f.to);
            }
        }
    }
    if a == b || !seen.get(b).copied().unwrap_or(false) {
        return None;
    }
    let mut out = Vec::new();
    let mut z = b;
    while z != a {
        let i = (*prev.get(z)?)?;
        out.push(i);
        z = flows.get(i)?.from;
    }
    out.reverse();
    Some(out)
}

/// Shortest chain of flows from zone `a` to zone `b` of a checked policy.
pub(crate) fn path(p: &Policy, a: usize, b: usize) -> Option<Vec<usize>> {
    path_in(p.zones.len(), &p.flows, a, b)
}

/// `private -> internet (via `x`) -> ...`.
pub(crate) fn describe_in(zones: &[Zone], flows: &[Flow], a: usize, path: &[usize]) -> String {
    let name = |z: usize| zones.get(z).map_or("?", |z| z.name.as_str());
    let mut s = name(a).to_owned();
    for &i in path {
        if let Some(f) = flows.get(i) {
            s.push_str(&format!(" -> {} (flow `{}`)", name(f.to), f.name));
        }
    }
    s
}

pub(crate) fn describe(p: &Policy, a: usize, path: &[usize]) -> String {
    describe_in(&p.zones, &p.flows, a, path)
}

/// The longest shortest chain that starts with flow `first`, described, for the sealed-zone error.
pub(crate) fn chain_from(zones: &[Zone], flows: &[Flow], first: &Flow) -> String {
    let Some(first_i) = flows.iter().position(|f| f.name == first.name) else {
        return String::new();
    };
    let mut best: Vec<usize> = vec![first_i];
    for target in 0..zones.len() {
        if target == first.from || target == first.to {
            continue;
        }
        if let Some(p) = path_in(zones.len(), flows, first.to, target) {
            if p.len() + 1 > best.len() {
                best = std::iter::once(first_i).chain(p).collect();
            }
        }
    }
    describe_in(zones, flows, first.from, &best)
}

/// Every ordered pair of zone names (from, to) such that data can travel from one to the other.
pub(crate) fn reachable_pairs(p: &Policy) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for a in 0..p.zones.len() {
        for b in 0..p.zones.len() {
            if a != b && path(p, a, b).is_some() {
                if let (Some(za), Some(zb)) = (p.zones.get(a), p.zones.get(b)) {
                    out.insert((za.name.to_string(), zb.name.to_string()));
                }
            }
        }
    }
    out
}

impl Policy {
    /// The shortest chain of flows carrying data from zone `from` to zone `to`, as flow names,
    /// or `None` when no chain exists.
    pub fn flow_path(&self, from: &str, to: &str) -> Option<Vec<&str>> {
        let a = *self.zone_index.get(from)?;
        let b = *self.zone_index.get(to)?;
        let p = path(self, a, b)?;
        Some(
            p.iter()
                .filter_map(|&i| self.flows.get(i).map(|f| f.name.as_str()))
                .collect(),
        )
    }
}
