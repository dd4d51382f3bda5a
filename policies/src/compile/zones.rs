//! Levels, zones and services: the declarations every other one refers to.

use std::collections::HashMap;

use tianping_core::ZoneName;

use crate::cx::Cx;
use crate::diag::{Problem, Span};
use crate::model::{ALL_ROLES, ROLES, Service, Zone, role_bit};
use crate::syntax::{Ast, Axis, Name, RoleSet};

/// The two level lists, low to high.
pub(super) struct Levels {
    pub(super) conf: Vec<String>,
    pub(super) integ: Vec<String>,
}

/// The `levels` declarations; a second list of one axis is an error.
pub(super) fn levels(cx: &mut Cx, ast: &Ast) -> Levels {
    let mut conf_levels: Option<Vec<String>> = None;
    let mut integ_levels: Option<Vec<String>> = None;
    for l in &ast.levels {
        let slot = match l.axis {
            Axis::Confidentiality => &mut conf_levels,
            Axis::Integrity => &mut integ_levels,
        };
        if slot.is_some() {
            cx.err(
                "levels declared twice",
                l.keyword,
                "the second declaration of this level list",
            );
            continue;
        }
        let mut names = Vec::new();
        for n in &l.names {
            if names.contains(&n.text) {
                cx.err(
                    format!("level `{}` listed twice", n.text),
                    n.span,
                    "already in this list",
                );
            }
            names.push(n.text.clone());
        }
        *slot = Some(names);
    }
    Levels {
        conf: conf_levels.unwrap_or_default(),
        integ: integ_levels.unwrap_or_default(),
    }
}

/// The index of a zone's level in `list`; a missing or unknown level is an error.
fn level(cx: &mut Cx, n: Option<&Name>, list: &[String], axis: &str, zone: &Name) -> Option<usize> {
    match n {
        None => {
            cx.err(
                format!("zone `{}` has no {axis} level", zone.text),
                zone.span,
                format!("add `{axis} LEVEL` to this zone"),
            );
            None
        }
        Some(n) => {
            let found = list.iter().position(|l| *l == n.text);
            if found.is_none() {
                cx.problems.push(
                    Problem::error(
                        format!("unknown {axis} level `{}`", n.text),
                        n.span,
                        "not in the declared level list",
                    )
                    .with_help(if list.is_empty() {
                        format!("declare the list first: `levels {axis} low < high`")
                    } else {
                        format!("{axis} levels are {}", list.join(" < "))
                    }),
                );
            }
            found
        }
    }
}

/// The zones, in declaration order, and their index by name.
pub(super) fn zones(
    cx: &mut Cx,
    ast: &Ast,
    levels: &Levels,
) -> (Vec<Zone>, HashMap<Box<str>, usize>) {
    let mut zones: Vec<Zone> = Vec::new();
    let mut zone_index: HashMap<Box<str>, usize> = HashMap::new();
    for z in &ast.zones {
        let Ok(name) = z.name.text.parse::<ZoneName>() else {
            cx.err(
                format!("`{}` is not a zone name", z.name.text),
                z.name.span,
                "a letter, then up to 31 of `a-z`, `0-9` and `-`",
            );
            continue;
        };
        if zone_index.contains_key(z.name.text.as_str()) {
            cx.err(
                format!("zone `{}` declared twice", z.name.text),
                z.name.span,
                "second declaration",
            );
            continue;
        }
        let conf = level(
            cx,
            z.confidentiality.as_ref(),
            &levels.conf,
            "confidentiality",
            &z.name,
        );
        let integ = level(
            cx,
            z.integrity.as_ref(),
            &levels.integ,
            "integrity",
            &z.name,
        );
        let mut acr = [None; ROLES];
        // Where each role was given its acr: a second line for a role would replace the first.
        let mut given: [Option<Span>; ROLES] = [None; ROLES];
        for (set, a) in &z.acr {
            let level = cx.acr(a);
            let roles: Vec<(u32, Span, String)> = match set {
                RoleSet::Any => vec![(ALL_ROLES, a.span, "`any`".to_owned())],
                RoleSet::List(names) => names
                    .iter()
                    .filter_map(|n| Some((role_bit(cx.role(n)?), n.span, format!("`{}`", n.text))))
                    .collect(),
            };
            for (mask, span, what) in roles {
                let again = (0..ROLES).find_map(|i| {
                    let first = given.get(i).copied().flatten()?;
                    (mask & (1 << i) != 0).then_some(first)
                });
                if let Some(first) = again {
                    cx.problems.push(
                        Problem::error(
                            format!("{what} is given an `acr` twice in zone `{}`", z.name.text),
                            span,
                            "given again here",
                        )
                        .with_related(first, "first given here")
                        .with_help(
                            "a role has one `acr` line per zone; keep the one that is meant",
                        ),
                    );
                    continue;
                }
                for (i, (slot, at)) in acr.iter_mut().zip(given.iter_mut()).enumerate() {
                    if mask & (1 << i) != 0 {
                        *slot = level;
                        *at = Some(span);
                    }
                }
            }
        }
        let signin = acr
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_some())
            .fold(0u32, |m, (i, _)| m | (1 << i));
        zone_index.insert(z.name.text.as_str().into(), zones.len());
        zones.push(Zone {
            name,
            conf: conf.unwrap_or(0),
            integ: integ.unwrap_or(0),
            sealed: z.sealed,
            acr,
            signin,
        });
    }

    (zones, zone_index)
}

/// The services, each in a declared zone, and their index by name.
pub(super) fn services<'a>(
    cx: &mut Cx,
    ast: &'a Ast,
    zone_index: &HashMap<Box<str>, usize>,
) -> (Vec<Service>, HashMap<&'a str, usize>) {
    let zone_of = |cx: &mut Cx, n: &Name| cx.resolve(zone_index, "zone", n);
    let mut services: Vec<Service> = Vec::new();
    let mut service_index: HashMap<&str, usize> = HashMap::new();
    for s in &ast.services {
        if !cx.name_ok(&s.name, "service") {
            continue;
        }
        let Some(zone) = zone_of(cx, &s.zone) else {
            continue;
        };
        if service_index.contains_key(s.name.text.as_str()) {
            cx.err(
                format!("service `{}` declared twice", s.name.text),
                s.name.span,
                "second declaration",
            );
            continue;
        }
        service_index.insert(&s.name.text, services.len());
        services.push(Service {
            name: s.name.text.clone(),
            zone,
            span: s.name.span,
        });
    }
    (services, service_index)
}
