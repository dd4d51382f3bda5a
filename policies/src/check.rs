//! The verifier: names resolved, the rules of DESIGN §2 enforced, warnings, `expect`s and tests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tianping_core::{Acr, Clearance, CourtCode, Role, SubjectId, UnixTime, ZoneName};

use crate::diag::{Problem, Severity, SourceProblem, Span};
use crate::engine::{Approval, Outcome, Subject, Submitter, TransferRequest};
use crate::model::{
    ALL_ROLES, CourtCheck, Flow, Kind, METHODS, Policy, ROLES, Rate, Release, Route, Service,
    Target, Window, Zone, mask_roles, method_index, role_bit,
};
use crate::paths::{self, Node};
use crate::reach;
use crate::syntax::{
    self, Axis, CourtCond, CourtRule, ExpectKind, KindDecl, Name, RoleSet, TargetKind, TestInput,
};

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

/// The outcome of checking a policy text: every problem found and, when there is no error, the
/// compiled policy.
#[derive(Debug)]
pub struct Checked {
    file: String,
    source: Arc<str>,
    problems: Vec<Problem>,
    policy: Option<Policy>,
    tests: Vec<TestResult>,
}

/// The result of one test written beside the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test's line.
    pub line: usize,
    /// The test's text.
    pub text: String,
    /// Whether the decision was the expected one.
    pub passed: bool,
    /// The decision, as `allow <rule>` or `deny <rule>: <reason>`.
    pub got: String,
}

impl Checked {
    /// Every error and warning, in source order (errors first at equal position).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }

    /// Whether the policy has no error.
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The compiled policy, when there is no error.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// Takes the compiled policy, when there is no error.
    pub fn into_policy(self) -> Option<Policy> {
        self.policy
    }

    /// The tests beside the policy and how they went (empty when the policy did not compile).
    pub fn tests(&self) -> &[TestResult] {
        &self.tests
    }

    /// Each problem as a `miette` diagnostic pointing into the named source.
    pub fn diagnostics(&self) -> impl Iterator<Item = SourceProblem> + '_ {
        self.problems
            .iter()
            .map(|p| SourceProblem::new(p.clone(), &self.file, self.source.clone()))
    }

    /// Every problem drawn as text with the offending text underlined.
    pub fn render(&self) -> String {
        self.diagnostics().map(|d| d.render()).collect()
    }
}

/// Parses and verifies a policy text read from `file`.
pub fn check(file: &str, source: &str) -> Checked {
    let src: Arc<str> = Arc::from(source);
    let mut cx = Cx::default();
    let mut policy = None;
    let mut tests = Vec::new();
    match syntax::parse(source) {
        Err(p) => cx.problems.push(p),
        Ok(ast) => {
            if let Some(p) = build(&mut cx, &ast, file, &src) {
                if cx.problems.iter().all(|p| p.severity != Severity::Error) {
                    warnings(&mut cx, &p, &ast);
                    expects(&mut cx, &p, &ast);
                    tests = run_tests(&mut cx, &p, &ast, source);
                    if cx.problems.iter().all(|p| p.severity != Severity::Error) {
                        policy = Some(p);
                    }
                }
            }
        }
    }
    for p in &mut cx.problems {
        p.locate(source);
    }
    // Source order; at one place, errors before warnings.
    cx.problems.sort_by(|a, b| {
        a.span
            .offset
            .cmp(&b.span.offset)
            .then(b.severity.cmp(&a.severity))
    });
    Checked {
        file: file.to_owned(),
        source: src,
        problems: cx.problems,
        policy,
        tests,
    }
}

#[derive(Default)]
struct Cx {
    problems: Vec<Problem>,
}

impl Cx {
    fn err(&mut self, message: impl Into<String>, span: Span, label: impl Into<String>) {
        self.problems.push(Problem::error(message, span, label));
    }

    /// Looks `n` up in one of the policy's name indexes; an unknown name is an error at its span.
    fn resolve<K>(&mut self, index: &HashMap<K, usize>, what: &str, n: &Name) -> Option<usize>
    where
        K: std::borrow::Borrow<str> + std::hash::Hash + Eq,
    {
        let found = index.get(n.text.as_str()).copied();
        if found.is_none() {
            self.err(
                format!("unknown {what} `{}`", n.text),
                n.span,
                format!("no {what} of this name is declared"),
            );
        }
        found
    }

    fn role(&mut self, n: &Name) -> Option<Role> {
        match n.text.parse::<Role>() {
            Ok(r) => Some(r),
            Err(_) => {
                self.problems.push(
                    Problem::error(format!("unknown role `{}`", n.text), n.span, "not a role")
                        .with_help(format!(
                            "roles are {}",
                            Role::ALL
                                .iter()
                                .map(|r| format!("`{r}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                );
                None
            }
        }
    }

    fn roles(&mut self, set: &RoleSet) -> u32 {
        match set {
            RoleSet::Any => ALL_ROLES,
            RoleSet::List(names) => names
                .iter()
                .filter_map(|n| self.role(n))
                .fold(0, |m, r| m | role_bit(r)),
        }
    }

    fn acr(&mut self, n: &Name) -> Option<Acr> {
        n.text.parse().map_or_else(
            |_| {
                self.err(
                    format!("unknown acr `{}`", n.text),
                    n.span,
                    "expected `pwd`, `otp` or `cert`",
                );
                None
            },
            Some,
        )
    }

    fn clearance(&mut self, n: &Name) -> Option<Clearance> {
        n.text.parse().map_or_else(
            |_| {
                self.err(
                    format!("unknown clearance `{}`", n.text),
                    n.span,
                    "expected `none`, `secret`, `confidential` or `top-secret`",
                );
                None
            },
            Some,
        )
    }

    fn kind(&mut self, k: &KindDecl) -> Option<(Kind, Option<String>)> {
        let Some(kind) = Kind::parse(&k.name.text) else {
            self.problems.push(
                Problem::error(
                    format!("unknown kind `{}`", k.name.text),
                    k.name.span,
                    "not a content kind",
                )
                .with_help(format!(
                    "kinds are {}",
                    Kind::ALL
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            return None;
        };
        match (&k.schema, kind) {
            (None, Kind::Json) => {
                self.err(
                    "`json` needs a schema name",
                    k.name.span,
                    "write `json(schema-name)`",
                );
                None
            }
            (Some(s), Kind::Json) => Some((kind, Some(s.text.clone()))),
            (Some(s), _) => {
                self.err(
                    format!("only `json` takes a schema, not `{}`", k.name.text),
                    s.span,
                    "remove this schema",
                );
                None
            }
            (None, _) => Some((kind, None)),
        }
    }

    fn name_ok(&mut self, n: &Name, what: &str) -> bool {
        let mut b = n.text.bytes();
        let ok = b.next().is_some_and(|c| c.is_ascii_lowercase())
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && n.text.len() <= 64;
        if !ok {
            self.err(
                format!("`{}` is not a {what} name", n.text),
                n.span,
                "names are lowercase-kebab: a letter, then `a-z`, `0-9` and `-`",
            );
        }
        ok
    }
}

/// Parses `20MiB`, `10MB`, `512KiB`, `4096`.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
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

fn sha256_hex(s: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

#[allow(
    clippy::too_many_lines,
    reason = "one pass over the declarations, in order"
)]
fn build(cx: &mut Cx, ast: &syntax::Ast, file: &str, src: &Arc<str>) -> Option<Policy> {
    // Levels.
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
    let conf_levels = conf_levels.unwrap_or_default();
    let integ_levels = integ_levels.unwrap_or_default();
    let level = |cx: &mut Cx, n: &Option<Name>, list: &[String], axis: &str, zone: &Name| match n {
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
    };

    // Zones.
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
            &z.confidentiality,
            &conf_levels,
            "confidentiality",
            &z.name,
        );
        let integ = level(cx, &z.integrity, &integ_levels, "integrity", &z.name);
        let mut acr = [None; ROLES];
        for (set, a) in &z.acr {
            let mask = cx.roles(set);
            let Some(a) = cx.acr(a) else { continue };
            for (i, slot) in acr.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *slot = Some(a);
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
    let zone_of = |cx: &mut Cx, n: &Name| cx.resolve(&zone_index, "zone", n);

    // Services.
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
    let service_of = |cx: &mut Cx, n: &Name| cx.resolve(&service_index, "service", n);

    // Flows (names first, so replies and routes may refer to any flow).
    let mut flow_index: HashMap<Box<str>, usize> = HashMap::new();
    for (i, f) in ast.flows.iter().enumerate() {
        if cx.name_ok(&f.name, "flow")
            && flow_index.insert(f.name.text.as_str().into(), i).is_some()
        {
            cx.err(
                format!("flow `{}` declared twice", f.name.text),
                f.name.span,
                "second declaration",
            );
        }
    }
    let flow_of = |cx: &mut Cx, n: &Name| cx.resolve(&flow_index, "flow", n);
    let mut flows: Vec<Flow> = Vec::new();
    for f in &ast.flows {
        let from = zone_of(cx, &f.from);
        let to = zone_of(cx, &f.to);
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
            Some(n) => parse_size(&n.text).unwrap_or_else(|| {
                cx.err(
                    format!("`{}` is not a size", n.text),
                    n.span,
                    "expected a number with `B`, `KB`, `KiB`, `MB`, `MiB`, `GB` or `GiB`",
                );
                0
            }),
        };
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
            Some(d) => service_of(cx, d).inspect(|&s| {
                if let (Some(svc), Some(to)) = (services.get(s), to) {
                    if svc.zone != to {
                        cx.err(
                            format!(
                                "flow `{}` delivers to service `{}` of zone `{}`, not of its destination `{}`",
                                f.name.text,
                                d.text,
                                zones.get(svc.zone).map_or("?", |z| z.name.as_str()),
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
        let release = f.release.as_ref().map(|r| {
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
        });
        let reply = f.reply.as_ref().and_then(|r| flow_of(cx, r));
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
        if !directory
            && (f.accounts.is_some() || !f.attributes.is_empty() || !f.credentials.is_empty())
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
            continue;
        };
        let (Some(from_name), Some(to_name)) = (zones.get(from), zones.get(to)) else {
            continue;
        };
        flows.push(Flow {
            name: f.name.text.clone(),
            from,
            to,
            from_name: from_name.name.clone(),
            to_name: to_name.name.clone(),
            kinds,
            max_size,
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
        });
    }

    // Routes.
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
        let zone = zone_of(cx, &r.zone);
        let mut patterns = Vec::new();
        for p in &r.paths {
            match paths::parse_pattern(&p.text) {
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
            Some((TargetKind::Service, n)) => service_of(cx, n).and_then(|s| {
                let svc = services.get(s)?;
                if Some(svc.zone) != zone {
                    cx.problems.push(
                        Problem::error(
                            format!(
                                "route `{}` in zone `{}` leads to service `{}` of zone `{}`",
                                r.name.text,
                                r.zone.text,
                                n.text,
                                zones.get(svc.zone).map_or("?", |z| z.name.as_str())
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
            Some((TargetKind::Flow, n)) => flow_of(cx, n).and_then(|i| {
                let fl = ast.flows.get(i)?;
                if zone_index.get(fl.from.text.as_str()).copied() != zone {
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
                flows
                    .iter()
                    .position(|f| f.name == n.text)
                    .map(Target::Flow)
            }),
        };
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
            continue;
        };
        routes.push(Route {
            name: r.name.text.clone(),
            span: r.name.span,
            zone,
            patterns,
            methods,
            target,
            roles,
            court,
            clearance,
            acr,
            time,
        });
    }

    // The rules that never bend (DESIGN §2).
    for f in &flows {
        let Some(fd) = ast.flows.iter().find(|d| d.name.text == f.name) else {
            continue;
        };
        let (Some(from), Some(to)) = (zones.get(f.from), zones.get(f.to)) else {
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
            let chain = reach::chain_from(&zones, &flows, f);
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
                        conf_levels.get(from.conf).map_or("?", String::as_str),
                        conf_levels.get(to.conf).map_or("?", String::as_str)
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
                        integ_levels.get(from.integ).map_or("?", String::as_str),
                        integ_levels.get(to.integ).map_or("?", String::as_str)
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

    // Indexes into the compiled flows (declarations with errors were skipped above).
    let flow_index: HashMap<Box<str>, usize> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str().into(), i))
        .collect();
    for f in &mut flows {
        let fd = ast.flows.iter().find(|d| d.name.text == f.name);
        f.reply = fd
            .and_then(|fd| fd.reply.as_ref())
            .and_then(|r| flow_index.get(r.text.as_str()).copied());
    }
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
        hash: sha256_hex(src),
        conf_levels,
        integ_levels,
        zones,
        zone_index,
        services,
        routes,
        flows,
        flow_index,
        tries,
    })
}

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

fn warnings(cx: &mut Cx, p: &Policy, _ast: &syntax::Ast) {
    for (j, b) in p.routes.iter().enumerate() {
        if let Some(a) = p.routes.iter().take(j).find(|a| shadows(a, b)) {
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
    for (i, s) in p.services.iter().enumerate() {
        let routed = p.routes.iter().any(|r| r.target == Target::Service(i));
        let delivered = p.flows.iter().any(|f| f.deliver == i);
        if !routed && !delivered {
            cx.problems.push(Problem::warning(
                format!("no route or flow reaches service `{}`", s.name),
                s.span,
                "unreachable service",
            ));
        }
    }
}

fn expects(cx: &mut Cx, p: &Policy, ast: &syntax::Ast) {
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

fn run_tests(cx: &mut Cx, p: &Policy, ast: &syntax::Ast, src: &str) -> Vec<TestResult> {
    let mut out = Vec::new();
    for t in &ast.tests {
        let got = match &t.input {
            TestInput::Request {
                zone,
                method,
                path,
                roles,
                court,
                clearance,
                acr,
                at,
            } => {
                let mut subject = Subject::new(&[]);
                subject.roles = roles.iter().filter_map(|r| cx.role(r)).collect();
                if let Some(c) = court {
                    match c.text.parse() {
                        Ok(c) => subject.court = Some(c),
                        Err(_) => {
                            cx.err(
                                format!("`{}` is not a court code", c.text),
                                c.span,
                                "expected a code such as `bj.01`",
                            );
                            continue;
                        }
                    }
                }
                if let Some(c) = clearance {
                    let Some(c) = cx.clearance(c) else { continue };
                    subject.clearance = c;
                }
                if let Some(a) = acr {
                    let Some(a) = cx.acr(a) else { continue };
                    subject.acr = a;
                }
                let minutes = match at {
                    None => 12 * 60,
                    Some(a) => match parse_hhmm(&a.text) {
                        Some(m) => m,
                        None => {
                            cx.err(
                                format!("`{}` is not a time", a.text),
                                a.span,
                                "expected `HH:MM` (UTC)",
                            );
                            continue;
                        }
                    },
                };
                let d = p.decide_request(
                    &zone.text,
                    &subject,
                    &method.text,
                    &path.text,
                    UnixTime::from_secs(u64::from(minutes) * 60),
                );
                (d.is_allow(), d.rule.map(str::to_owned), d.reason, d.outcome).into_got()
            }
            TestInput::Transfer {
                flow,
                kind,
                size,
                by,
                labels,
                redacted,
                approvals,
            } => {
                let default_kind = p
                    .flow_index
                    .get(flow.text.as_str())
                    .and_then(|&i| p.flows.get(i))
                    .and_then(|f| f.kinds.first().cloned());
                let (kind, schema) = match kind {
                    Some(k) => match cx.kind(k) {
                        Some(k) => k,
                        None => continue,
                    },
                    None => default_kind.unwrap_or((Kind::Text, None)),
                };
                let size = match size {
                    None => 1,
                    Some(s) => match parse_size(&s.text) {
                        Some(s) => s,
                        None => {
                            cx.err(
                                format!("`{}` is not a size", s.text),
                                s.span,
                                "expected a number with an optional unit",
                            );
                            continue;
                        }
                    },
                };
                let mut submitter = Submitter {
                    id: "test-submitter".parse::<SubjectId>().ok(),
                    ..Submitter::default()
                };
                for b in by {
                    if b.text == "machine" {
                        submitter.machine = true;
                    } else if let Some(r) = cx.role(b) {
                        submitter.roles.push(r);
                    }
                }
                let mut appr = Vec::new();
                for (i, a) in approvals.iter().enumerate() {
                    if let (Some(role), Ok(by)) = (
                        cx.role(a),
                        format!("test-approver-{i}").parse::<SubjectId>(),
                    ) {
                        appr.push(Approval { by, role });
                    }
                }
                let req = TransferRequest {
                    kind: kind.as_str().to_owned(),
                    schema,
                    size,
                    submitter,
                    labels: labels.iter().map(|l| l.text.clone()).collect(),
                    redacted: *redacted,
                    approvals: appr,
                };
                let d = p.decide_transfer(&flow.text, &req);
                (d.is_allow(), d.rule.map(str::to_owned), d.reason, d.outcome).into_got()
            }
        };
        let (allowed, rule, text) = got;
        let rule_ok = t
            .rule
            .as_ref()
            .is_none_or(|want| rule.as_deref() == Some(want.text.as_str()));
        let passed = allowed == t.allow && rule_ok;
        let line_text = src
            .get(t.span.offset..t.span.offset + t.span.len)
            .unwrap_or_default()
            .trim()
            .to_owned();
        let mut probe = Problem::error("", t.span, "");
        probe.locate(src);
        if !passed {
            cx.problems.push(Problem::error(
                format!(
                    "test failed: expected {}{}, got {text}",
                    if t.allow { "allow" } else { "deny" },
                    t.rule
                        .as_ref()
                        .map(|r| format!(" by `{}`", r.text))
                        .unwrap_or_default()
                ),
                t.span,
                "this test's decision differs",
            ));
        }
        out.push(TestResult {
            line: probe.line,
            text: line_text,
            passed,
            got: text,
        });
    }
    out
}

trait IntoGot {
    fn into_got(self) -> (bool, Option<String>, String);
}

impl IntoGot for (bool, Option<String>, crate::engine::Reason, Outcome<'_>) {
    fn into_got(self) -> (bool, Option<String>, String) {
        let (allow, rule, reason, outcome) = self;
        let rule_text = rule
            .as_ref()
            .map(|r| format!(" by `{r}`"))
            .unwrap_or_default();
        let text = match outcome {
            Outcome::Service(s) => format!("allow{rule_text} (to service `{s}`)"),
            Outcome::Flow(f) => format!("allow{rule_text} (as flow `{f}`)"),
            Outcome::Deny => format!("deny{rule_text}: {reason}"),
        };
        (allow, rule, text)
    }
}
