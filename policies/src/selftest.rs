//! The tests written beside a policy (`test request ...`, `test transfer ...`), run on the
//! compiled policy.

use tianping_core::{SubjectId, UnixTime};

use crate::compile::{parse_hhmm, parse_size};
use crate::cx::Cx;
use crate::diag::{Lines, Problem};
use crate::engine::{Approval, Outcome, Subject, Submitter, TransferRequest};
use crate::model::{Kind, METHODS, Policy, method_index};
use crate::syntax::{Ast, TestInput};

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

/// Runs every `test` of the policy; a failing one is an error at its line.
pub(crate) fn run_tests(cx: &mut Cx, p: &Policy, ast: &Ast, lines: &Lines<'_>) -> Vec<TestResult> {
    let src = lines.text();
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
                // A typo would make a deny test pass without testing anything.
                if cx.resolve(&p.zone_index, "zone", zone).is_none() {
                    continue;
                }
                if method_index(&method.text).is_none() {
                    cx.problems.push(
                        Problem::error(
                            format!("unknown method `{}`", method.text),
                            method.span,
                            "not a method a route can name",
                        )
                        .with_help(format!("methods are {}", METHODS.join(", "))),
                    );
                    continue;
                }
                if let Some(r) = &t.rule {
                    if !p.routes.iter().any(|route| route.name == r.text) {
                        cx.err(
                            format!("unknown route `{}`", r.text),
                            r.span,
                            "no route of this name is declared",
                        );
                        continue;
                    }
                }
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
                if cx.resolve(&p.flow_index, "flow", flow).is_none() {
                    continue;
                }
                if let Some(r) = t.rule.as_ref().filter(|r| r.text != flow.text) {
                    cx.problems.push(
                        Problem::error(
                            format!(
                                "a transfer on flow `{}` is never decided by `{}`",
                                flow.text, r.text
                            ),
                            r.span,
                            "not this test's flow",
                        )
                        .with_help(format!(
                            "a transfer's rule is its flow: `expect ... {}`",
                            flow.text
                        )),
                    );
                    continue;
                }
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
            line: lines.line_col(t.span.offset).0,
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
