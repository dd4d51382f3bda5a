//! Checking a policy text: parse, compile, then warnings, `expect`s and the policy's own tests,
//! every problem located on its line.

use std::sync::Arc;

use crate::compile;
use crate::cx::Cx;
use crate::diag::{Lines, Problem, Severity, SourceProblem, Span};
use crate::expect;
use crate::lint;
use crate::model::Policy;
use crate::selftest::{self, TestResult};
use crate::syntax;

/// The outcome of checking a policy text: every problem found and, when there is no error, the
/// compiled policy.
#[derive(Debug)]
pub struct Checked {
    file: String,
    source: Arc<str>,
    problems: Vec<Problem>,
    policy: Option<Policy>,
    tests: Vec<TestResult>,
    sizes: Vec<SizeSite>,
}

/// Where a flow's limit for one of its kinds is written: the kind's own `max-size ... for`, or
/// the flow's `max-size`.
#[derive(Debug)]
struct SizeSite {
    flow: String,
    kind: String,
    limit: u64,
    span: Span,
}

/// A size for a person: `500 MiB`, `1.5 GiB`, `4096 bytes`.
fn size_text(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if n >= unit {
            return if n % unit == 0 {
                format!("{} {name}", n / unit)
            } else {
                #[expect(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
                let v = n as f64 / unit as f64;
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{n} bytes")
}

/// The limit of every kind of every flow, and where it is written.
fn size_sites(ast: &syntax::Ast, policy: &Policy) -> Vec<SizeSite> {
    let mut out = Vec::new();
    for f in &ast.flows {
        let Some(info) = policy.flow(&f.name.text) else {
            continue;
        };
        let Some(flow_span) = f.max_size.as_ref().map(|n| n.span) else {
            continue;
        };
        for k in &f.kinds {
            let schema = k.schema.as_ref().map(|s| s.text.as_str());
            let Some(limit) = info.max_size_for(&k.name.text, schema) else {
                continue;
            };
            let same = |d: &syntax::KindDecl| {
                d.name.text == k.name.text && d.schema.as_ref().map(|s| s.text.as_str()) == schema
            };
            let span = f
                .kind_sizes
                .iter()
                .find(|(_, kinds)| kinds.iter().any(same))
                .map_or(flow_span, |(n, _)| n.span);
            out.push(SizeSite {
                flow: f.name.text.clone(),
                kind: k.name.text.clone(),
                limit,
                span,
            });
        }
    }
    out
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

    /// Warns at each `max-size` under which a payload of some kind needs more memory to
    /// filter than `budget` bytes. `need(kind, size)` is how many bytes the node's filter for
    /// `kind` holds to check and rebuild a payload of `size` bytes; `None` when it has no
    /// filter for the kind (the kind is refused, whatever its size). A warning, not an error:
    /// a payload that large is refused, never filtered in part, but the flow promises what the
    /// node cannot keep.
    pub fn warn_memory(&mut self, budget: u64, need: impl Fn(&str, u64) -> Option<u64>) {
        for site in &self.sizes {
            let Some(bytes) = need(&site.kind, site.limit).filter(|b| *b > budget) else {
                continue;
            };
            let mut p = Problem::warning(
                format!(
                    "flow `{}`: a `{}` of up to {} needs up to {} of memory to filter, over the \
                     node's {}",
                    site.flow,
                    site.kind,
                    size_text(site.limit),
                    size_text(bytes),
                    size_text(budget)
                ),
                site.span,
                format!("the limit for `{}`", site.kind),
            )
            .with_help(format!(
                "lower it with `max-size SIZE for {}`, or give the exchange's filters more memory",
                site.kind
            ));
            p.locate(&Lines::new(&self.source));
            self.problems.push(p);
        }
        source_order(&mut self.problems);
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

/// Source order; at one place, errors before warnings.
fn source_order(problems: &mut [Problem]) {
    problems.sort_by(|a, b| {
        a.span
            .offset
            .cmp(&b.span.offset)
            .then(b.severity.cmp(&a.severity))
    });
}

/// Whether a CR stands anywhere but before an LF (CR-only line endings are not supported).
fn has_lone_cr(source: &str) -> bool {
    source
        .match_indices('\r')
        .any(|(i, _)| source.as_bytes().get(i + 1) != Some(&b'\n'))
}

/// Parses and verifies a policy text read from `file`.
pub fn check(file: &str, source: &str) -> Checked {
    let src: Arc<str> = Arc::from(source);
    let lines = Lines::new(source);
    let mut cx = Cx::default();
    let mut policy = None;
    let mut tests = Vec::new();
    let mut sizes = Vec::new();
    match syntax::parse(source) {
        Err(mut p) => {
            if source.contains('\r') && p.help.is_none() && has_lone_cr(source) {
                p.help = Some(
                    "this text has carriage returns (CR) with no line feed after them: they are read \
                     as spaces, not as line ends; save it with LF or CRLF line endings"
                        .to_owned(),
                );
            }
            cx.problems.push(p);
        }
        Ok(ast) => {
            if let Some(p) = compile::build(&mut cx, &ast, file, &src) {
                if cx.problems.iter().all(|p| p.severity != Severity::Error) {
                    lint::warnings(&mut cx, &p);
                    expect::expects(&mut cx, &p, &ast);
                    tests = selftest::run_tests(&mut cx, &p, &ast, &lines);
                    if cx.problems.iter().all(|p| p.severity != Severity::Error) {
                        sizes = size_sites(&ast, &p);
                        policy = Some(p);
                    }
                }
            }
        }
    }
    for p in &mut cx.problems {
        p.locate(&lines);
    }
    source_order(&mut cx.problems);
    Checked {
        file: file.to_owned(),
        source: src,
        problems: cx.problems,
        policy,
        tests,
        sizes,
    }
}
