//! Decisions: requests inside a zone and transfers between zones, default deny.

use std::fmt;

use serde::{Deserialize, Serialize};
use tianping_core::{Acr, Clearance, CourtCode, PolicyHash, Role, SubjectId, UnixTime, Verdict};

use crate::model::{
    CourtCheck, Kind, Policy, Route, mask_roles, method_index, role_bit, role_mask,
};

fn default_clearance() -> Clearance {
    Clearance::None
}

fn default_acr() -> Acr {
    Acr::Pwd
}

/// Who is asking: the claims a zone's IdP vouched for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The subject's roles.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// The subject's court, if any.
    #[serde(default)]
    pub court: Option<CourtCode>,
    /// The subject's clearance.
    #[serde(default = "default_clearance")]
    pub clearance: Clearance,
    /// How strongly the subject authenticated.
    #[serde(default = "default_acr")]
    pub acr: Acr,
}

impl Subject {
    /// A subject with `roles`, no court, no clearance, password strength.
    pub fn new(roles: &[Role]) -> Self {
        Self {
            roles: roles.to_vec(),
            court: None,
            clearance: Clearance::None,
            acr: Acr::Pwd,
        }
    }
}

/// Who submits a transfer: a person with roles, or the node itself (`machine`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitter {
    /// The submitter's id, when a person.
    #[serde(default)]
    pub id: Option<SubjectId>,
    /// The submitter's roles.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Whether a machine (an exchange node, the IdP, the audit shipper) submits.
    #[serde(default)]
    pub machine: bool,
}

/// One signed approval of a release, as counted again by the receiving side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved.
    pub by: SubjectId,
    /// The role they approved in.
    pub role: Role,
}

/// This crate's view of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The content kind (`pdf`, `json`, `directory-update`...).
    pub kind: String,
    /// For `json`, the schema name.
    #[serde(default)]
    pub schema: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Who submits it.
    #[serde(default)]
    pub submitter: Submitter,
    /// Labels on the content.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Whether the content was redacted.
    #[serde(default)]
    pub redacted: bool,
    /// Approvals of the release.
    #[serde(default)]
    pub approvals: Vec<Approval>,
}

/// Why a decision went the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Every condition of the rule holds.
    Allowed,
    /// The zone is not in the policy.
    UnknownZone,
    /// The method is not one a route can name.
    UnknownMethod,
    /// No route of the zone matches the method and path.
    NoRoute,
    /// None of the subject's roles may sign in to the zone.
    NoSignIn,
    /// The zone demands a stronger sign-in for the subject's roles.
    ZoneAcr {
        /// Needed.
        need: Acr,
        /// Presented.
        have: Acr,
    },
    /// The subject holds none of the route's roles.
    Role,
    /// The route demands a stronger sign-in.
    Acr {
        /// Needed.
        need: Acr,
        /// Presented.
        have: Acr,
    },
    /// The route demands a higher clearance.
    Clearance {
        /// Needed.
        need: Clearance,
        /// Presented.
        have: Clearance,
    },
    /// The subject has no court, or the court does not satisfy the route.
    Court,
    /// Outside the route's time window.
    Time,
    /// The flow is not in the policy.
    UnknownFlow,
    /// The flow does not carry this kind (or this schema).
    Kind,
    /// Larger than the flow's limit.
    TooLarge {
        /// The limit in bytes.
        max: u64,
    },
    /// The submitter may not submit on this flow.
    Submitter,
    /// The content carries a label the release refuses.
    RefusedLabel,
    /// The release demands redaction and the content is not redacted.
    NotRedacted,
    /// Too few distinct approvers of the right roles.
    Approvals {
        /// Needed.
        need: u32,
        /// Counted.
        have: u32,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Allowed => f.write_str("every condition holds"),
            Reason::UnknownZone => f.write_str("no such zone in the policy"),
            Reason::UnknownMethod => f.write_str("the method is not one a route can name"),
            Reason::NoRoute => f.write_str("no route matches (default deny)"),
            Reason::NoSignIn => f.write_str("none of the subject's roles may sign in to the zone"),
            Reason::ZoneAcr { need, have } => {
                write!(
                    f,
                    "the zone needs acr `{need}` for these roles, got `{have}`"
                )
            }
            Reason::Role => f.write_str("the subject holds none of the route's roles"),
            Reason::Acr { need, have } => write!(f, "the route needs acr `{need}`, got `{have}`"),
            Reason::Clearance { need, have } => {
                write!(f, "the route needs clearance `{need}`, got `{have}`")
            }
            Reason::Court => f.write_str("the court condition does not hold"),
            Reason::Time => f.write_str("outside the route's time window"),
            Reason::UnknownFlow => f.write_str("no such flow in the policy"),
            Reason::Kind => f.write_str("the flow does not carry this kind"),
            Reason::TooLarge { max } => write!(f, "larger than the flow's limit of {max} bytes"),
            Reason::Submitter => f.write_str("the submitter may not submit on this flow"),
            Reason::RefusedLabel => f.write_str("the content carries a label the release refuses"),
            Reason::NotRedacted => f.write_str("the release needs redacted content"),
            Reason::Approvals { need, have } => {
                write!(f, "the release needs {need} approvers, got {have}")
            }
        }
    }
}

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'p> {
    /// Forward to this service of the zone (for a transfer: deliver to it).
    Service(&'p str),
    /// Turn the request into a transfer on this flow.
    Flow(&'p str),
    /// Refuse.
    Deny,
}

/// A decision: the outcome, the rule that decided (if any), why, and the policy's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    /// Allow (to a service or a flow) or deny.
    pub outcome: Outcome<'p>,
    /// The route or flow that decided; `None` for a default deny.
    pub rule: Option<&'p str>,
    /// Why.
    pub reason: Reason,
    /// SHA-256 of the policy text.
    pub policy: PolicyHash,
}

impl Decision<'_> {
    /// Whether the decision allows.
    pub fn is_allow(&self) -> bool {
        !matches!(self.outcome, Outcome::Deny)
    }

    /// Allow or deny.
    pub fn verdict(&self) -> Verdict {
        if self.is_allow() {
            Verdict::Allow
        } else {
            Verdict::Deny
        }
    }

    /// The decision as one JSON object
    /// `{"decision","rule","reason","service"|"flow","policy"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "decision": self.verdict().as_str(),
            "rule": self.rule,
            "reason": self.reason.to_string(),
            "policy": self.policy.to_hex(),
        });
        if let Some(obj) = v.as_object_mut() {
            match self.outcome {
                Outcome::Service(s) => {
                    obj.insert("service".into(), s.into());
                }
                Outcome::Flow(s) => {
                    obj.insert("flow".into(), s.into());
                }
                Outcome::Deny => {}
            }
        }
        v
    }
}

/// Whether `inner` (a path's segment) is a court code and is `outer` or below it, on text,
/// without allocating. A segment that is no court code (`bj.01.03.`, `bj.01.03..x`) is within
/// no court.
fn court_within(inner: &str, outer: &str) -> bool {
    if !CourtCode::is_valid(inner) {
        return false;
    }
    outer == CourtCode::SUPREME
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.'))
}

impl Policy {
    fn deny<'p>(&'p self, rule: Option<&'p str>, reason: Reason) -> Decision<'p> {
        Decision {
            outcome: Outcome::Deny,
            rule,
            reason,
            policy: self.hash,
        }
    }

    /// Checks a route's conditions; `Err` says which failed.
    fn route_conditions(
        route: &Route,
        roles: u32,
        subject: &Subject,
        captured: Option<&str>,
        at: UnixTime,
    ) -> Result<(), Reason> {
        if route.roles & roles == 0 {
            return Err(Reason::Role);
        }
        if subject.acr < route.acr {
            return Err(Reason::Acr {
                need: route.acr,
                have: subject.acr,
            });
        }
        if subject.clearance < route.clearance {
            return Err(Reason::Clearance {
                need: route.clearance,
                have: subject.clearance,
            });
        }
        if let Some(check) = &route.court {
            let Some(court) = &subject.court else {
                return Err(Reason::Court);
            };
            let ok = match check {
                CourtCheck::Same => captured == Some(court.as_str()),
                CourtCheck::Within => captured.is_some_and(|c| court_within(c, court.as_str())),
                CourtCheck::In(code) => court.is_within(code),
            };
            if !ok {
                return Err(Reason::Court);
            }
        }
        if let Some(w) = &route.time {
            if !w.contains_ms(at.as_millis()) {
                return Err(Reason::Time);
            }
        }
        Ok(())
    }

    /// Decides a request to `zone`'s gateway: the first route (in policy order) whose method,
    /// path and conditions match allows; otherwise deny. `path` is already normalized.
    pub fn decide_request<'p>(
        &'p self,
        zone: &str,
        subject: &Subject,
        method: &str,
        path: &str,
        at: UnixTime,
    ) -> Decision<'p> {
        let Some((z, tries)) = self
            .zone_index
            .get(zone)
            .and_then(|&i| Some((self.zones.get(i)?, self.tries.get(i)?)))
        else {
            return self.deny(None, Reason::UnknownZone);
        };
        let Some(trie) = method_index(method).and_then(|m| tries.get(m)) else {
            return self.deny(None, Reason::UnknownMethod);
        };
        let roles = role_mask(&subject.roles) & z.signin;
        let mut best: Option<u32> = None;
        let mut first_fail: Option<(u32, Reason)> = None;
        let mut matched = false;
        trie.walk(path.trim_start_matches('/'), None, &mut |id, captured| {
            matched = true;
            if best.is_some_and(|b| b <= id) {
                return false;
            }
            let Some(route) = self.routes.get(id as usize) else {
                return false;
            };
            match Self::route_conditions(route, roles, subject, captured, at) {
                Ok(()) => best = Some(id),
                Err(reason) => {
                    if first_fail.is_none_or(|(f, _)| id < f) {
                        first_fail = Some((id, reason));
                    }
                }
            }
            false
        });
        if !matched {
            return self.deny(None, Reason::NoRoute);
        }
        let Some(route) = best.and_then(|b| self.routes.get(b as usize)) else {
            let (rule, reason) = first_fail
                .and_then(|(id, reason)| Some((self.routes.get(id as usize)?, reason)))
                .map_or((None, Reason::NoRoute), |(r, reason)| {
                    (Some(r.name.as_str()), reason)
                });
            return self.deny(rule, reason);
        };
        // The zone's sign-in floor applies whatever route matched.
        if roles == 0 {
            return self.deny(Some(&route.name), Reason::NoSignIn);
        }
        let need = z.need_acr(roles);
        if subject.acr < need {
            return self.deny(
                Some(&route.name),
                Reason::ZoneAcr {
                    need,
                    have: subject.acr,
                },
            );
        }
        Decision {
            outcome: self.outcome_of(route.target),
            rule: Some(&route.name),
            reason: Reason::Allowed,
            policy: self.hash,
        }
    }

    /// Decides a transfer on flow `flow`: kind, size, submitter, and the release terms (refused
    /// labels, redaction, distinct approvers of the named roles, never the submitter).
    pub fn decide_transfer<'p>(&'p self, flow: &str, t: &TransferRequest) -> Decision<'p> {
        let Some(f) = self.flow_index.get(flow).and_then(|&i| self.flows.get(i)) else {
            return self.deny(None, Reason::UnknownFlow);
        };
        let rule = Some(f.name.as_str());
        let Some(entry) = Kind::parse(&t.kind).and_then(|k| f.kind_of(k, t.schema.as_deref()))
        else {
            return self.deny(rule, Reason::Kind);
        };
        let max = f.size_for(entry);
        if t.size > max {
            return self.deny(rule, Reason::TooLarge { max });
        }
        let by_person = role_mask(&t.submitter.roles) & f.submitters != 0;
        if !(by_person || t.submitter.machine && f.machine) {
            return self.deny(rule, Reason::Submitter);
        }
        if let Some(rel) = &f.release {
            if t.labels.iter().any(|l| rel.refuse.contains(l)) {
                return self.deny(rule, Reason::RefusedLabel);
            }
            if rel.redact && !t.redacted {
                return self.deny(rule, Reason::NotRedacted);
            }
            let mut have = 0u32;
            for (i, a) in t.approvals.iter().enumerate() {
                let counts = role_bit(a.role) & rel.approver_roles != 0
                    && t.submitter.id.as_ref() != Some(&a.by)
                    && !t
                        .approvals
                        .iter()
                        .take(i)
                        .any(|b| b.by == a.by && role_bit(b.role) & rel.approver_roles != 0);
                if counts {
                    have += 1;
                }
            }
            if have < rel.approvers {
                return self.deny(
                    rule,
                    Reason::Approvals {
                        need: rel.approvers,
                        have,
                    },
                );
            }
        }
        Decision {
            outcome: Outcome::Service(self.services.get(f.deliver).map_or("", |s| s.name.as_str())),
            rule,
            reason: Reason::Allowed,
            policy: self.hash,
        }
    }

    /// The roles of the policy's zone `zone` that may sign in there.
    pub fn signin_roles(&self, zone: &str) -> Vec<Role> {
        self.zone_index
            .get(zone)
            .and_then(|&i| self.zones.get(i))
            .map(|z| mask_roles(z.signin).collect())
            .unwrap_or_default()
    }
}
