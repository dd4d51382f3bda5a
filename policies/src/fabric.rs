//! The policy against a `fabric.toml`: every service of the policy bound in its own zone, and no
//! binding of a service or zone the policy does not know. Each mismatch points at the line it is
//! about: the policy's `service` line, or the fabric's `[services.<name>]` header.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, SourceCode};
use tianping_core::{Fabric, FabricError};

use crate::diag::{Lines, Problem, SourceProblem};
use crate::model::Policy;

/// One way a fabric does not fit a policy, as a `miette` diagnostic on the line it concerns.
#[derive(Debug)]
pub enum FabricMismatch {
    /// At a `service` line of the policy: the service has no binding, or one in another zone.
    Policy(SourceProblem),
    /// At a `[services.<name>]` header of the fabric: it binds a service the policy lacks.
    Fabric(FabricError),
}

impl FabricMismatch {
    /// What is wrong, in one sentence.
    pub fn message(&self) -> &str {
        match self {
            Self::Policy(p) => &p.problem().message,
            Self::Fabric(f) => f.problem().map_or("", |p| p.message.as_str()),
        }
    }

    /// The 1-based line it points at, in the file named by [`FabricMismatch::in_policy`].
    pub fn line(&self) -> usize {
        match self {
            Self::Policy(p) => p.problem().line,
            Self::Fabric(f) => f.problem().map_or(0, |p| p.line),
        }
    }

    /// Whether it points into the policy (else into the fabric).
    pub fn in_policy(&self) -> bool {
        matches!(self, Self::Policy(_))
    }

    /// The diagnostic drawn as text, the offending text underlined (no colours).
    pub fn render(&self) -> String {
        match self {
            Self::Policy(p) => p.render(),
            Self::Fabric(f) => f.render(),
        }
    }

    fn inner(&self) -> &dyn Diagnostic {
        match self {
            Self::Policy(p) => p,
            Self::Fabric(f) => f,
        }
    }
}

impl fmt::Display for FabricMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for FabricMismatch {}

impl Diagnostic for FabricMismatch {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner().code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Error)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner().help()
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.inner().source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.inner().labels()
    }
}

impl Policy {
    /// Every mismatch between this policy's services and `fabric`'s bindings: a service without
    /// a binding or bound in another zone (at the policy's `service` line), then a binding of a
    /// service the policy does not declare (at the fabric's `[services.<name>]`). Empty when the
    /// fabric fits.
    pub fn check_fabric(&self, fabric: &Fabric) -> Vec<FabricMismatch> {
        let lines = Lines::new(&self.source);
        let source: Arc<str> = Arc::clone(&self.source);
        let mut out = Vec::new();
        let bindings = fabric.services();
        for s in &self.services {
            let Some(zone) = self.zone_name(s.zone) else {
                continue;
            };
            let problem = match bindings.get(&s.name) {
                None => Problem::error(
                    format!(
                        "service `{}` of zone `{zone}` has no binding in the fabric",
                        s.name
                    ),
                    s.span,
                    "not bound",
                )
                .with_help(format!(
                    "add `[services.{}]` with `zone = \"{zone}\"` and a `url`, `folder` or \
                     `component` to fabric.toml",
                    s.name
                )),
                Some(b) if &b.zone != zone => {
                    let line = fabric_line(fabric, b.span().offset());
                    Problem::error(
                        format!(
                            "service `{}` is in zone `{zone}` but the fabric binds it in zone `{}`",
                            s.name, b.zone
                        ),
                        s.span,
                        format!("declared in `{zone}`"),
                    )
                    .with_help(format!(
                        "set `zone = \"{zone}\"` under `[services.{}]` (fabric.toml line {line}), \
                         or move the service",
                        s.name
                    ))
                }
                Some(_) => continue,
            };
            let mut problem = problem;
            problem.locate(&lines);
            out.push(FabricMismatch::Policy(SourceProblem::new(
                problem,
                &self.file,
                Arc::clone(&source),
            )));
        }
        let declared: HashSet<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
        let mut unknown: Vec<_> = bindings
            .iter()
            .filter(|(name, _)| !declared.contains(name.as_str()))
            .collect();
        unknown.sort_by_key(|(_, b)| b.span().offset());
        for (name, b) in unknown {
            let zone_known = self.zone_index.contains_key(b.zone.as_str());
            let help = if zone_known {
                format!(
                    "declare `service {name} in {}` in the policy, or remove the binding",
                    b.zone
                )
            } else {
                format!(
                    "the policy has no zone `{}` either; remove the binding or fix its name",
                    b.zone
                )
            };
            out.push(FabricMismatch::Fabric(fabric.problem_at(
                b.span(),
                format!("the fabric binds service `{name}`, which the policy does not declare"),
                "unknown service",
                Some(help),
            )));
        }
        out
    }
}

/// The 1-based line of byte `offset` of the fabric's text.
fn fabric_line(fabric: &Fabric, offset: usize) -> usize {
    Lines::new(fabric.text()).line_col(offset).0
}

#[cfg(test)]
mod tests {
    use tianping_core::{Fabric, ZoneName};

    use crate::{DEFAULT_POLICY, Policy, check};

    fn policy() -> Policy {
        check("default.tp", DEFAULT_POLICY).into_policy().unwrap()
    }

    /// The default fabric of `p`'s services, after `edit` changed the list of bindings.
    fn fabric(p: &Policy, edit: impl FnOnce(&mut Vec<(String, ZoneName)>)) -> Fabric {
        let mut services: Vec<(String, ZoneName)> = p
            .services()
            .map(|(s, z)| (s.to_owned(), z.clone()))
            .collect();
        edit(&mut services);
        let sealed: Vec<ZoneName> = p
            .zones()
            .filter(|z| p.is_sealed(z.as_str()))
            .cloned()
            .collect();
        Fabric::parse_named("fabric.toml", &Fabric::default_text(&services, &sealed)).unwrap()
    }

    /// 1-based line of the first line of `text` starting with `start`.
    fn line_of(text: &str, start: &str) -> usize {
        text.lines().position(|l| l.starts_with(start)).unwrap() + 1
    }

    #[test]
    fn the_default_fabric_fits_the_default_policy() {
        let p = policy();
        let found = p.check_fabric(&fabric(&p, |_| {}));
        assert!(
            found.is_empty(),
            "{:?}",
            found.iter().map(|m| m.render()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_service_without_binding_points_at_the_policy() {
        let p = policy();
        let f = fabric(&p, |s| s.retain(|(n, _)| n != "filing-intake"));
        let found = p.check_fabric(&f);
        assert_eq!(found.len(), 1);
        let m = &found[0];
        assert!(m.in_policy());
        assert_eq!(m.line(), line_of(DEFAULT_POLICY, "service filing-intake "));
        assert!(m.message().contains("`filing-intake`"), "{}", m.message());
        assert!(m.message().contains("has no binding"), "{}", m.message());
        let shown = m.render();
        assert!(shown.contains("default.tp"), "{shown}");
        assert!(shown.contains("[services.filing-intake]"), "{shown}");
    }

    #[test]
    fn a_binding_of_an_unknown_service_points_at_the_fabric() {
        let p = policy();
        let f = fabric(&p, |s| {
            s.push(("ghost-archive".into(), "private".parse().unwrap()))
        });
        let found = p.check_fabric(&f);
        assert_eq!(found.len(), 1);
        let m = &found[0];
        assert!(!m.in_policy());
        assert_eq!(m.line(), line_of(f.text(), "[services.ghost-archive]"));
        assert!(m.message().contains("`ghost-archive`"), "{}", m.message());
        assert!(m.render().contains("fabric.toml"), "{}", m.render());
    }

    #[test]
    fn a_binding_in_the_wrong_zone_points_at_the_policy() {
        let p = policy();
        let (_, home) = p.services().find(|(s, _)| *s == "filing-intake").unwrap();
        let other: ZoneName = p.zones().find(|z| *z != home).unwrap().clone();
        let f = fabric(&p, |s| {
            for (n, z) in s.iter_mut() {
                if n == "filing-intake" {
                    *z = other.clone();
                }
            }
        });
        let found = p.check_fabric(&f);
        assert_eq!(
            found.len(),
            1,
            "{:?}",
            found.iter().map(|m| m.message()).collect::<Vec<_>>()
        );
        let m = &found[0];
        assert!(m.in_policy());
        assert_eq!(m.line(), line_of(DEFAULT_POLICY, "service filing-intake "));
        assert!(
            m.message().contains(&format!(
                "in zone `{home}` but the fabric binds it in zone `{other}`"
            )),
            "{}",
            m.message()
        );
        let help = format!(
            "fabric.toml line {}",
            line_of(f.text(), "[services.filing-intake]")
        );
        assert!(m.render().contains(&help), "{}", m.render());
    }
}
