//! The audit event of a request's decision, written into an event that each worker thread
//! keeps and refills: its strings keep their capacity from one request to the next, so recording
//! a decision allocates nothing once the thread is warm. (Building a fresh [`Event`] cost about
//! 20 allocations per request, a fifth of the gateway's: `bench/README.md` has the counts.)
//!
//! [`RequestEvent::fill`] writes every field of the event, those a request event leaves empty
//! included, so nothing of the request before can remain: it destructures [`Event`] whole (the
//! actor's fields written by [`fill_actor`], which the gateway's other events use too), and a
//! field added to it does not compile here until it is filled.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;

use tianping_audit::Event;
use tianping_core::{PolicyHash, UnixTime};

use crate::identity::{Credential, Identity};

/// The longest `reason` recorded, in characters.
const MAX_REASON_CHARS: usize = 512;

/// What a request's decision event records.
pub(super) struct RequestEvent<'a> {
    pub(super) time: UnixTime,
    pub(super) zone: &'a str,
    /// `allow` or `deny`.
    pub(super) outcome: &'a str,
    /// Why (cut to [`MAX_REASON_CHARS`]).
    pub(super) reason: &'a dyn fmt::Display,
    pub(super) request_id: &'a str,
    pub(super) method: &'a str,
    /// The normalized path.
    pub(super) path: &'a str,
    pub(super) policy_hash: PolicyHash,
    /// The peer's address.
    pub(super) source: Option<SocketAddr>,
    /// The rule that decided, if one did.
    pub(super) rule: Option<&'a str>,
    pub(super) who: Option<&'a Identity>,
}

thread_local! {
    static EVENT: RefCell<Event> = RefCell::new(Event::new(UnixTime::from_secs(0), "request"));
}

impl RequestEvent<'_> {
    /// Calls `f` with this event, filled into this thread's reused one.
    pub(super) fn with<T>(&self, f: impl FnOnce(&Event) -> T) -> T {
        EVENT.with(|cell| match cell.try_borrow_mut() {
            Ok(mut e) => {
                self.fill(&mut e);
                f(&e)
            }
            // `f` recording another request on this thread: never done, but not a panic
            Err(_) => {
                let mut e = Event::new(self.time, "request");
                self.fill(&mut e);
                f(&e)
            }
        })
    }

    /// Writes every field of `e`: what this event records, and empty for the rest.
    pub(super) fn fill(&self, e: &mut Event) {
        match self.who {
            Some(who) => {
                // of the attributes, only the actor's remain (`fill_actor` sets them)
                let bearer = matches!(who.credential, Credential::Bearer { .. });
                e.attributes
                    .retain(|k, _| k == "credential" || (bearer && k == "client_id"));
                fill_actor(e, who);
            }
            None => {
                for s in [&mut e.actor, &mut e.court, &mut e.clearance, &mut e.acr] {
                    s.clear();
                }
                e.roles.clear();
                e.attributes.clear();
            }
        }
        let Event {
            time,
            node,
            zone,
            component,
            actor: _,
            source,
            action,
            object,
            outcome,
            reason,
            request_id,
            policy_hash,
            method,
            path,
            roles: _,
            court: _,
            clearance: _,
            acr: _,
            flow,
            kind,
            size,
            labels,
            approvals,
            submitter,
            transfer_id,
            content_hash,
            attributes: _,
        } = e;
        *time = self.time;
        set(action, "request");
        set(zone, self.zone);
        set(component, "gateway");
        set(outcome, self.outcome);
        reason.clear();
        let _ = write!(
            Truncated {
                out: reason,
                left: MAX_REASON_CHARS
            },
            "{}",
            self.reason
        );
        set(request_id, self.request_id);
        set(method, self.method);
        set(path, self.path);
        *policy_hash = Some(self.policy_hash);
        source.clear();
        if let Some(a) = self.source {
            let _ = write!(source, "{a}");
        }
        set(object, self.rule.unwrap_or_default());
        for s in [node, flow, kind, submitter, transfer_id, content_hash] {
            s.clear();
        }
        *size = None;
        labels.clear();
        approvals.clear();
    }
}

/// Writes `who` as the actor of `e` (subject, roles, court, clearance, `acr`, and the
/// `credential` and, for a bearer token, `client_id` attributes), reusing the strings `e`
/// has; any other attribute is left as it is.
pub(super) fn fill_actor(e: &mut Event, who: &Identity) {
    set(&mut e.actor, who.sub.as_str());
    set_list(&mut e.roles, who.roles.iter().map(|r| r.as_str()));
    set(&mut e.court, who.court.as_ref().map_or("", |c| c.as_str()));
    set(&mut e.clearance, who.clearance.as_str());
    set(&mut e.acr, who.acr.as_str());
    set_attribute(&mut e.attributes, "credential", who.credential.as_str());
    if let Credential::Bearer { client_id, .. } = &who.credential {
        set_attribute(&mut e.attributes, "client_id", client_id);
    }
}

fn set(s: &mut String, value: &str) {
    s.clear();
    s.push_str(value);
}

/// `list` made `items`, reusing the strings it has.
fn set_list<'s>(list: &mut Vec<String>, items: impl ExactSizeIterator<Item = &'s str>) {
    list.truncate(items.len());
    for (i, item) in items.enumerate() {
        match list.get_mut(i) {
            Some(s) => set(s, item),
            None => list.push(item.to_owned()),
        }
    }
}

fn set_attribute(map: &mut BTreeMap<String, String>, key: &str, value: &str) {
    match map.get_mut(key) {
        Some(v) => set(v, value),
        None => {
            map.insert(key.to_owned(), value.to_owned());
        }
    }
}

/// Writes at most `left` more characters to `out`, and drops the rest.
struct Truncated<'a> {
    out: &'a mut String,
    left: usize,
}

impl fmt::Write for Truncated<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.left == 0 {
                break;
            }
            self.out.push(c);
            self.left -= 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tianping_core::{Acr, Clearance, Role};

    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

    fn person(
        credential: Credential,
        roles: Vec<Role>,
    ) -> Result<Identity, Box<dyn std::error::Error>> {
        Ok(Identity {
            sub: "u-1001".parse()?,
            roles,
            court: Some("bj.01".parse()?),
            clearance: Clearance::Secret,
            acr: Acr::Otp,
            amr: vec![],
            credential,
        })
    }

    fn event<'a>(
        who: Option<&'a Identity>,
        rule: Option<&'a str>,
        source: Option<SocketAddr>,
        reason: &'a dyn fmt::Display,
        policy_hash: PolicyHash,
    ) -> RequestEvent<'a> {
        RequestEvent {
            time: UnixTime::from_secs(1_800_000_000),
            zone: "private",
            outcome: "allow",
            reason,
            request_id: "r-1",
            method: "GET",
            path: "/cases/1",
            policy_hash,
            source,
            rule,
            who,
        }
    }

    /// Every field set to something, as no request event has it.
    fn dirty() -> Event {
        let mut e = Event::new(UnixTime::from_secs(1), "transfer");
        for s in [
            &mut e.node,
            &mut e.zone,
            &mut e.component,
            &mut e.actor,
            &mut e.source,
            &mut e.object,
            &mut e.outcome,
            &mut e.reason,
            &mut e.request_id,
            &mut e.method,
            &mut e.path,
            &mut e.court,
            &mut e.clearance,
            &mut e.acr,
            &mut e.flow,
            &mut e.kind,
            &mut e.submitter,
            &mut e.transfer_id,
            &mut e.content_hash,
        ] {
            s.push_str("stale");
        }
        e.roles = vec!["a".into(), "b".into(), "c".into()];
        e.labels = vec!["stale".into()];
        e.approvals = vec!["stale".into()];
        e.size = Some(7);
        e.policy_hash = Some(PolicyHash::of(b"old"));
        e.attributes.insert("client_id".into(), "stale".into());
        e.attributes.insert("other".into(), "stale".into());
        e
    }

    #[test]
    fn a_refilled_event_holds_nothing_of_the_one_before() -> R {
        let bearer = person(
            Credential::Bearer {
                jti: "j-1".into(),
                client_id: "case-app".into(),
                expires_at: UnixTime::from_secs(99),
            },
            vec![Role::Judge, Role::Clerk],
        )?;
        let session = person(
            Credential::Session {
                id: "s-1".into(),
                sid: None,
                auth_time: UnixTime::from_secs(5),
            },
            vec![Role::Judge],
        )?;
        let long = "x".repeat(2 * MAX_REASON_CHARS);
        let hash = PolicyHash::of(b"policy");
        let cases = [
            event(
                Some(&bearer),
                Some("case-read"),
                Some("10.0.0.1:443".parse()?),
                &"ok",
                hash,
            ),
            event(Some(&session), None, None, &long, hash),
            event(
                None,
                Some("case-read"),
                Some("[::1]:8443".parse()?),
                &"no one",
                hash,
            ),
        ];
        let mut reused = dirty();
        for r in &cases {
            let mut fresh = Event::new(r.time, "request");
            fresh.zone = r.zone.into();
            fresh.component = "gateway".into();
            fresh.outcome = r.outcome.into();
            fresh.reason = r
                .reason
                .to_string()
                .chars()
                .take(MAX_REASON_CHARS)
                .collect();
            fresh.request_id = r.request_id.into();
            fresh.method = r.method.into();
            fresh.path = r.path.into();
            fresh.policy_hash = Some(r.policy_hash);
            fresh.source = r.source.map(|a| a.to_string()).unwrap_or_default();
            fresh.object = r.rule.unwrap_or_default().into();
            if let Some(who) = r.who {
                fresh.actor = who.sub.to_string();
                fresh.roles = who.roles.iter().map(ToString::to_string).collect();
                fresh.court = who
                    .court
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                fresh.clearance = who.clearance.to_string();
                fresh.acr = who.acr.to_string();
                fresh
                    .attributes
                    .insert("credential".into(), who.credential.as_str().into());
                if let Credential::Bearer { client_id, .. } = &who.credential {
                    fresh
                        .attributes
                        .insert("client_id".into(), client_id.clone());
                }
            }
            r.fill(&mut reused);
            assert_eq!(reused, fresh);
            assert!(reused.reason.chars().count() <= MAX_REASON_CHARS);
            assert_eq!(reused.encode(), fresh.encode());
            // and through the thread's own event
            r.with(|e| assert_eq!(*e, fresh));
        }
        Ok(())
    }
}
