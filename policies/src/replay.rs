//! Replay: re-decide recorded inputs against a policy and report the decisions that flip.

use serde::{Deserialize, Serialize};
use tianping_core::{PolicyHash, UnixTime, Verdict};

use crate::engine::{Decision, Outcome, Subject, TransferRequest};
use crate::model::Policy;

/// A decision as it was recorded (by the gateway, the exchange, or the audit log). A key it
/// does not know is refused (a misspelt `rule` would turn off the retarget check unseen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// Allow or deny (`"allow"` or `"deny"` in JSON).
    pub decision: Verdict,
    /// The rule that decided then, if recorded.
    #[serde(default)]
    pub rule: Option<String>,
    /// The service an allowed request went to then, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The flow an allowed request or transfer went to then, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// The hash of the policy in force then, if recorded.
    #[serde(default)]
    pub policy: Option<PolicyHash>,
}

/// What was asked: a request inside a zone or a transfer on a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Input {
    /// A request to a zone's gateway.
    Request {
        /// The zone.
        zone: String,
        /// The method.
        method: String,
        /// The normalized path.
        path: String,
        /// Who asked.
        subject: Subject,
        /// When, in milliseconds since the epoch (for time windows).
        #[serde(default)]
        at_ms: u64,
    },
    /// A transfer on a flow.
    Transfer {
        /// The flow.
        flow: String,
        /// The transfer.
        transfer: TransferRequest,
    },
}

/// One recorded decision input: what was asked and what was decided then. One JSON object a
/// line in `.jsonl` files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionInput {
    /// What was asked.
    #[serde(flatten)]
    pub input: Input,
    /// What was decided then.
    pub recorded: Recorded,
}

/// A decision that differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flip {
    /// Position of the input in the stream (0-based).
    pub index: usize,
    /// `request internet POST /filings` or `transfer online-filing`.
    pub what: String,
    /// The recorded decision.
    pub was: String,
    /// The decision now.
    pub now: String,
    /// The rule deciding now.
    pub rule: Option<String>,
    /// Why, now.
    pub reason: String,
}

/// The result of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Inputs re-decided.
    pub total: usize,
    /// Inputs whose decision is the same.
    pub same: usize,
    /// Allowed then, denied now.
    pub allow_to_deny: usize,
    /// Denied then, allowed now.
    pub deny_to_allow: usize,
    /// Allowed both times, but to another service or flow.
    pub retargeted: usize,
    /// Every flip, in input order.
    pub flips: Vec<Flip>,
}

fn target(d: &Decision<'_>) -> Option<String> {
    match d.outcome {
        Outcome::Service(s) | Outcome::Flow(s) => Some(s.to_owned()),
        Outcome::Deny => None,
    }
}

impl Policy {
    /// Re-decides one input.
    pub fn decide_input(&self, input: &Input) -> Decision<'_> {
        match input {
            Input::Request {
                zone,
                method,
                path,
                subject,
                at_ms,
            } => self.decide_request(zone, subject, method, path, UnixTime::from_millis(*at_ms)),
            Input::Transfer { flow, transfer } => self.decide_transfer(flow, transfer),
        }
    }

    /// Re-decides every input and reports each decision that flipped (allow/deny changed, or an
    /// allow that now goes by another rule than the recorded one, or to another service or flow
    /// than the recorded one: a rule of the same name may send elsewhere now).
    pub fn replay<'a>(&self, inputs: impl IntoIterator<Item = &'a DecisionInput>) -> ReplayReport {
        let mut r = ReplayReport::default();
        for (index, di) in inputs.into_iter().enumerate() {
            r.total += 1;
            let d = self.decide_input(&di.input);
            let was_allow = di.recorded.decision.is_allow();
            let now_allow = d.is_allow();
            let recorded_target = match (&di.recorded.service, &di.recorded.flow) {
                (Some(s), _) => Some(Outcome::Service(s)),
                (None, Some(f)) => Some(Outcome::Flow(f)),
                (None, None) => None,
            };
            let retargeted = was_allow
                && now_allow
                && (di
                    .recorded
                    .rule
                    .as_deref()
                    .is_some_and(|rule| Some(rule) != d.rule)
                    || recorded_target.is_some_and(|t| t != d.outcome));
            if was_allow == now_allow && !retargeted {
                r.same += 1;
                continue;
            }
            match (was_allow, now_allow) {
                (true, false) => r.allow_to_deny += 1,
                (false, true) => r.deny_to_allow += 1,
                _ => r.retargeted += 1,
            }
            let what = match &di.input {
                Input::Request {
                    zone, method, path, ..
                } => format!("request {zone} {method} {path}"),
                Input::Transfer { flow, transfer } => {
                    format!("transfer {flow} {} {} bytes", transfer.kind, transfer.size)
                }
            };
            let now = match target(&d) {
                Some(t) => format!("allow ({t})"),
                None => "deny".to_owned(),
            };
            r.flips.push(Flip {
                index,
                what,
                was: {
                    let then: Vec<&str> =
                        [&di.recorded.rule, &di.recorded.service, &di.recorded.flow]
                            .into_iter()
                            .filter_map(Option::as_deref)
                            .collect();
                    if then.is_empty() {
                        di.recorded.decision.to_string()
                    } else {
                        format!("{} ({})", di.recorded.decision, then.join(", "))
                    }
                },
                now,
                rule: d.rule.map(str::to_owned),
                reason: d.reason.to_string(),
            });
        }
        r
    }
}
