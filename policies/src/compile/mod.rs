//! Compiling a parsed policy: each kind of declaration resolved in its own module, then the
//! rules of DESIGN §2, then the per-zone tries the engine walks.

mod flows;
mod markings;
mod routes;
mod rules;
mod zones;

use std::collections::HashMap;
use std::sync::Arc;

use tianping_core::PolicyHash;

use crate::cx::Cx;
use crate::model::{METHODS, Policy, Service, Window, Zone};
use crate::paths::Node;
use crate::syntax::{Ast, Name};

pub use flows::{ATTRIBUTES, CREDENTIALS, SANITIZE_STEPS};

/// The names declared so far, for the declarations that refer to them.
struct Scope<'a> {
    zones: Vec<Zone>,
    zone_index: HashMap<Box<str>, usize>,
    services: Vec<Service>,
    service_index: HashMap<&'a str, usize>,
    /// Flow declarations by name (their index in the syntax tree).
    flow_decls: HashMap<Box<str>, usize>,
}

impl Scope<'_> {
    fn zone_of(&self, cx: &mut Cx, n: &Name) -> Option<usize> {
        cx.resolve(&self.zone_index, "zone", n)
    }

    fn service_of(&self, cx: &mut Cx, n: &Name) -> Option<usize> {
        cx.resolve(&self.service_index, "service", n)
    }

    fn flow_of(&self, cx: &mut Cx, n: &Name) -> Option<usize> {
        cx.resolve(&self.flow_decls, "flow", n)
    }
}

/// Resolves every declaration of `ast`; `None` when the policy cannot be built at all. Errors
/// go to `cx`; the caller keeps the policy only when there is none.
pub(crate) fn build(cx: &mut Cx, ast: &Ast, file: &str, src: &Arc<str>) -> Option<Policy> {
    let levels = zones::levels(cx, ast);
    let (zones, zone_index) = zones::zones(cx, ast, &levels);
    let (services, service_index) = zones::services(cx, ast, &zone_index);
    let flow_decls = flows::names(cx, ast);
    let scope = Scope {
        zones,
        zone_index,
        services,
        service_index,
        flow_decls,
    };
    let mut flows = Vec::new();
    let mut decls = Vec::new();
    for (d, f) in ast.flows.iter().enumerate() {
        if let Some(f) = flows::flow(cx, &scope, f) {
            flows.push(f);
            decls.push(d);
        }
    }
    // Indexes into the compiled flows (declarations with errors were skipped above).
    let flow_index: HashMap<Box<str>, usize> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str().into(), i))
        .collect();
    let routes = routes::routes(cx, ast, &scope, &flow_index);
    rules::check_flows(cx, ast, &scope, &levels, &flows, &decls);
    for (f, &d) in flows.iter_mut().zip(&decls) {
        f.reply = ast
            .flows
            .get(d)
            .and_then(|fd| fd.reply.as_ref())
            .and_then(|r| flow_index.get(r.text.as_str()).copied());
    }
    let markings = markings::markings(cx, ast, &flows);
    let Scope {
        zones,
        zone_index,
        services,
        ..
    } = scope;
    let mut tries: Vec<[Node; METHODS.len()]> = zones.iter().map(|_| Default::default()).collect();
    for (id, r) in routes.iter().enumerate() {
        let Some(t) = tries.get_mut(r.zone) else {
            continue;
        };
        for (m, node) in t.iter_mut().enumerate() {
            if r.methods & (1 << m) != 0 {
                for (_, segs) in &r.patterns {
                    node.insert(segs, u32::try_from(id).unwrap_or(u32::MAX));
                }
            }
        }
    }
    Some(Policy {
        file: file.to_owned(),
        source: src.clone(),
        hash: PolicyHash::of(src.as_bytes()),
        conf_levels: levels.conf,
        integ_levels: levels.integ,
        zones,
        zone_index,
        services,
        routes,
        flows,
        flow_index,
        markings,
        tries,
    })
}

/// A size as a policy writes it: `20MiB`, `10MB`, `512KiB`, `4096` (bytes); `None` for
/// anything else, or a size over `u64`.
pub fn parse_size(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses `HH:MM` to minutes after midnight.
pub(crate) fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}

fn parse_window(w: &str, off: Option<&str>) -> Option<Window> {
    let (a, b) = w.split_once('-')?;
    let offset_min = match off {
        None => 0,
        Some(o) => {
            let (sign, rest) = match o.as_bytes().first()? {
                b'+' => (1, o.get(1..)?),
                b'-' => (-1, o.get(1..)?),
                _ => return None,
            };
            let m = parse_hhmm(rest)?;
            if m > 14 * 60 {
                return None;
            }
            sign * i32::try_from(m).ok()?
        }
    };
    Some(Window {
        start: parse_hhmm(a)? % 1440,
        // `24:00` may end a window.
        end: parse_hhmm(b)?,
        offset_min,
    })
}

fn rate_secs(unit: &str) -> Option<u64> {
    match unit {
        "second" => Some(1),
        "minute" => Some(60),
        "hour" => Some(3600),
        "day" => Some(86_400),
        _ => None,
    }
}
