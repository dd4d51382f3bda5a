//! Maps audit events to the policy engine's replay inputs (DESIGN §4: the binary wires the two
//! crates, which know nothing of each other).
//!
//! Two kinds of recorded decision are replayed:
//! - `action = "request"`: a gateway's decision on a request — `zone`, `method`, normalized `path`,
//!   the subject's `roles`, `court`, `clearance`, `acr`, and the `time`;
//! - `action = "transfer"`: a sending side's decision on a transfer — `flow`, `kind` (with the json
//!   schema in attribute `schema`), `size`, `submitter` (a subject id, or `machine`), `roles` (the
//!   submitter's), `labels`, `approvals` (`<subject>:<role>`) and attribute `redacted`.
//!
//! In both, `outcome` is the decision then (`allow` or `deny`), attribute `rule` the rule that made
//! it and `policy_hash` the policy in force. Other events are not decisions and are skipped.

use tianping_audit::Event;
use tianping_core::{Acr, Clearance, PolicyHash, Role, SubjectId, Verdict};
use tianping_policies::{
    Approval, DecisionInput, Input, Recorded, Subject, Submitter, TransferRequest,
};

/// Why a decision event could not be read as a replay input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MapError {
    /// A field holds a value outside the vocabulary.
    #[error("field `{field}`: {reason}")]
    Field {
        /// The event's field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A field the decision needs is empty.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
}

fn field<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, MapError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| MapError::Field {
        field: name,
        reason: e.to_string(),
    })
}

fn required<'a>(name: &'static str, value: &'a str) -> Result<&'a str, MapError> {
    if value.is_empty() {
        Err(MapError::Missing(name))
    } else {
        Ok(value)
    }
}

fn roles(event: &Event) -> Result<Vec<Role>, MapError> {
    event.roles.iter().map(|r| field("roles", r)).collect()
}

/// The replay input recorded by `event`, or `None` when the event records no decision.
pub(crate) fn decision_input(event: &Event) -> Option<Result<DecisionInput, MapError>> {
    let input = match event.action.as_str() {
        "request" => request(event),
        "transfer" => transfer(event),
        _ => return None,
    };
    Some(input.and_then(|input| {
        let decision = match event.outcome.as_str() {
            "" => return Err(MapError::Missing("outcome")),
            outcome => field::<Verdict>("outcome", outcome)?,
        };
        Ok(DecisionInput {
            input,
            recorded: Recorded {
                decision,
                rule: recorded_rule(event),
                // the events name the rule, not its service or flow: retargets are seen by the
                // rule that now decides
                service: None,
                flow: None,
                policy: policy_hash(event)?,
            },
        })
    }))
}

/// The rule the event recorded as deciding: the exchange sender names it in the `rule`
/// attribute, the gateway (whose request events are on its hot path) in `object`.
fn recorded_rule(event: &Event) -> Option<String> {
    match event.attributes.get("rule") {
        Some(rule) => Some(rule.clone()),
        None if event.action == "request" && !event.object.is_empty() => Some(event.object.clone()),
        None => None,
    }
}

/// The recorded policy hash (the audit event reads it typed: a malformed one never decodes).
fn policy_hash(event: &Event) -> Result<Option<PolicyHash>, MapError> {
    Ok(event.policy_hash)
}

fn request(event: &Event) -> Result<Input, MapError> {
    let mut subject = Subject::new(&roles(event)?);
    if !event.court.is_empty() {
        subject.court = Some(field("court", &event.court)?);
    }
    if !event.clearance.is_empty() {
        subject.clearance = field::<Clearance>("clearance", &event.clearance)?;
    }
    if !event.acr.is_empty() {
        subject.acr = field::<Acr>("acr", &event.acr)?;
    }
    Ok(Input::Request {
        zone: required("zone", &event.zone)?.to_owned(),
        method: required("method", &event.method)?.to_owned(),
        path: required("path", &event.path)?.to_owned(),
        subject,
        at_ms: event.time.as_millis(),
    })
}

fn transfer(event: &Event) -> Result<Input, MapError> {
    let submitter = match event.submitter.as_str() {
        "machine" => Submitter {
            id: None,
            roles: Vec::new(),
            machine: true,
        },
        "" => Submitter {
            id: None,
            roles: roles(event)?,
            machine: false,
        },
        id => Submitter {
            id: Some(field::<SubjectId>("submitter", id)?),
            roles: roles(event)?,
            machine: false,
        },
    };
    let approvals = event
        .approvals
        .iter()
        .map(|a| {
            let (by, role) = a.split_once(':').ok_or_else(|| MapError::Field {
                field: "approvals",
                reason: format!("`{a}` is not `<subject>:<role>`"),
            })?;
            Ok(Approval {
                by: field("approvals", by)?,
                role: field("approvals", role)?,
            })
        })
        .collect::<Result<_, MapError>>()?;
    Ok(Input::Transfer {
        flow: required("flow", &event.flow)?.to_owned(),
        transfer: TransferRequest {
            kind: required("kind", &event.kind)?.to_owned(),
            schema: event.attributes.get("schema").cloned(),
            size: event.size.ok_or(MapError::Missing("size"))?,
            submitter,
            labels: event.labels.clone(),
            redacted: event
                .attributes
                .get("redacted")
                .is_some_and(|v| v == "true"),
            approvals,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tianping_core::UnixTime;

    #[test]
    fn request_event_maps_to_a_request_input() {
        let mut e = Event::new(UnixTime::from_secs(100), "request");
        e.zone = "internet".into();
        e.method = "POST".into();
        e.path = "/filings".into();
        e.roles = vec!["lawyer".into()];
        e.acr = "otp".into();
        e.outcome = "allow".into();
        e.attributes.insert("rule".into(), "file-online".into());
        let di = decision_input(&e).unwrap().unwrap();
        match di.input {
            Input::Request {
                zone,
                subject,
                at_ms,
                ..
            } => {
                assert_eq!(zone, "internet");
                assert_eq!(subject.roles, vec![Role::Lawyer]);
                assert_eq!(subject.acr, Acr::Otp);
                assert_eq!(at_ms, 100_000);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(di.recorded.rule.as_deref(), Some("file-online"));
        assert_eq!(di.recorded.decision, Verdict::Allow);
        assert_eq!(di.recorded.policy, None);
    }

    #[test]
    fn a_gateway_request_event_records_its_rule_in_object() {
        // as `gateway/src/server/request_event.rs` writes a decision: the rule in `object`
        let mut e = Event::new(UnixTime::from_secs(100), "request");
        e.component = "gateway".into();
        e.zone = "internet".into();
        e.method = "GET".into();
        e.path = "/judgments/1".into();
        e.roles = vec!["public".into()];
        e.outcome = "allow".into();
        e.object = "read-judgments".into();
        let di = decision_input(&e).unwrap().unwrap();
        assert_eq!(di.recorded.rule.as_deref(), Some("read-judgments"));
        e.object.clear();
        let di = decision_input(&e).unwrap().unwrap();
        assert_eq!(di.recorded.rule, None);
    }

    #[test]
    fn transfer_event_maps_approvals_and_submitter() {
        let mut e = Event::new(UnixTime::from_secs(1), "transfer");
        e.flow = "judgment-publication".into();
        e.kind = "pdf".into();
        e.size = Some(10);
        e.submitter = "clerk-1".into();
        e.roles = vec!["clerk".into()];
        e.approvals = vec!["judge-1:judge".into(), "judge-2:judge".into()];
        e.attributes.insert("redacted".into(), "true".into());
        e.outcome = "deny".into();
        let di = decision_input(&e).unwrap().unwrap();
        let Input::Transfer { transfer, .. } = di.input else {
            panic!()
        };
        assert_eq!(transfer.approvals.len(), 2);
        assert!(transfer.redacted);
        assert_eq!(transfer.submitter.id.unwrap().as_str(), "clerk-1");
    }

    #[test]
    fn bad_or_missing_fields_are_named() {
        let mut e = Event::new(UnixTime::from_secs(1), "request");
        e.outcome = "allow".into();
        assert_eq!(decision_input(&e).unwrap(), Err(MapError::Missing("zone")));
        e.zone = "internet".into();
        e.method = "GET".into();
        e.path = "/".into();
        e.roles = vec!["king".into()];
        assert!(matches!(
            decision_input(&e).unwrap(),
            Err(MapError::Field { field: "roles", .. })
        ));
        e.roles = vec!["judge".into()];
        e.policy_hash = Some("ab".repeat(32).parse().unwrap());
        let di = decision_input(&e).unwrap().unwrap();
        assert_eq!(
            di.recorded.policy.map(|h| h.to_hex()),
            Some("ab".repeat(32))
        );
        e.outcome = "maybe".into();
        assert!(matches!(
            decision_input(&e).unwrap(),
            Err(MapError::Field {
                field: "outcome",
                ..
            })
        ));
        let sign_in = Event::new(UnixTime::from_secs(1), "sign-in");
        assert!(decision_input(&sign_in).is_none());
    }
}
