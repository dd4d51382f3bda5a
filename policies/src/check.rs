//! Checking a policy text: parse, compile, then warnings, `expect`s and the policy's own tests,
//! every problem located on its line.

use std::sync::Arc;

use crate::compile;
use crate::cx::Cx;
use crate::diag::{Lines, Problem, Severity, SourceProblem};
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
    let lines = Lines::new(source);
    let mut cx = Cx::default();
    let mut policy = None;
    let mut tests = Vec::new();
    match syntax::parse(source) {
        Err(p) => cx.problems.push(p),
        Ok(ast) => {
            if let Some(p) = compile::build(&mut cx, &ast, file, &src) {
                if cx.problems.iter().all(|p| p.severity != Severity::Error) {
                    lint::warnings(&mut cx, &p);
                    expect::expects(&mut cx, &p, &ast);
                    tests = selftest::run_tests(&mut cx, &p, &ast, &lines);
                    if cx.problems.iter().all(|p| p.severity != Severity::Error) {
                        policy = Some(p);
                    }
                }
            }
        }
    }
    for p in &mut cx.problems {
        p.locate(&lines);
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
