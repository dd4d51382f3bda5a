//! The checked policy as other crates read it: its routes, flows and sign-in floors, without
//! the engine's internals.

use tianping_core::{Acr, Clearance, CourtCode, Role, ZoneName};

use crate::engine::Outcome;
use crate::model::{
    CourtCheck, Flow, Kind, METHODS, Policy, Rate, Route, Target, Window, mask_roles, role_bit,
};

/// A flow of a checked policy, as the exchange reads it.
#[derive(Debug, Clone, Copy)]
pub struct FlowInfo<'p> {
    policy: &'p Policy,
    flow: &'p Flow,
}

impl<'p> FlowInfo<'p> {
    /// The flow's name.
    pub fn name(&self) -> &'p str {
        &self.flow.name
    }
    /// The source zone.
    pub fn from(&self) -> &'p ZoneName {
        &self.flow.from_name
    }
    /// The destination zone.
    pub fn to(&self) -> &'p ZoneName {
        &self.flow.to_name
    }
    /// The service of the destination zone the transfers are delivered to.
    pub fn deliver(&self) -> &'p str {
        self.policy
            .services
            .get(self.flow.deliver)
            .map_or("", |s| s.name.as_str())
    }
    /// The content kinds, each with its schema for `json`.
    pub fn kinds(&self) -> impl Iterator<Item = (Kind, Option<&'p str>)> + 'p {
        self.flow.kinds.iter().map(|(k, s)| (*k, s.as_deref()))
    }
    /// The size limit in bytes for every payload, whatever its kind.
    pub fn max_size(&self) -> u64 {
        self.flow.max_size
    }
    /// The size limit in bytes for a payload of `kind` (with `schema`, for `json`): the
    /// kind's own (`max-size SIZE for KIND`) or the flow's; `None` when the flow does not carry
    /// the kind.
    pub fn max_size_for(&self, kind: &str, schema: Option<&str>) -> Option<u64> {
        let entry = self.flow.kind_of(Kind::parse(kind)?, schema)?;
        Some(self.flow.size_for(entry))
    }
    /// The admission limit per submitter, if any.
    pub fn rate(&self) -> Option<Rate> {
        self.flow.rate
    }
    /// The sanitize steps, in order.
    pub fn sanitize(&self) -> impl Iterator<Item = &'p str> + 'p {
        self.flow.sanitize.iter().map(String::as_str)
    }
    /// The number of approvers a release needs (0 when the flow has no release).
    pub fn approvers(&self) -> u32 {
        self.flow.release.as_ref().map_or(0, |r| r.approvers)
    }
    /// The roles that may approve a release.
    pub fn approver_roles(&self) -> impl Iterator<Item = Role> + 'p {
        mask_roles(self.flow.release.as_ref().map_or(0, |r| r.approver_roles))
    }
    /// Whether the release demands redaction.
    pub fn redact(&self) -> bool {
        self.flow.release.as_ref().is_some_and(|r| r.redact)
    }
    /// The flow carrying this flow's replies.
    pub fn reply(&self) -> Option<&'p str> {
        self.flow
            .reply
            .and_then(|i| self.policy.flows.get(i))
            .map(|f| f.name.as_str())
    }
    /// The roles whose holders may submit.
    pub fn submitter_roles(&self) -> impl Iterator<Item = Role> + 'p {
        mask_roles(self.flow.submitters)
    }
    /// Whether a machine (an exchange node, the IdP, the audit shipper) may submit.
    pub fn machine_submits(&self) -> bool {
        self.flow.machine
    }
    /// Whether the flow has `release` terms.
    pub fn has_release(&self) -> bool {
        self.flow.release.is_some()
    }
    /// The labels the release refuses.
    pub fn refused_labels(&self) -> impl Iterator<Item = &'p str> + 'p {
        self.flow
            .release
            .iter()
            .flat_map(|r| r.refuse.iter().map(String::as_str))
    }
    /// The labels the release refuses that the policy marks, each with its words (from the
    /// policy's `marking` lines): the exchange refuses content whose text carries any of them.
    pub fn refused_markings(&self) -> impl Iterator<Item = (&'p str, &'p [String])> + 'p {
        let policy = self.policy;
        self.refused_labels()
            .map(move |l| (l, policy.marking_words(l)))
            .filter(|(_, words)| !words.is_empty())
    }
    /// For directory flows: the accounts (by role) that may replicate.
    pub fn accounts(&self) -> impl Iterator<Item = Role> + 'p {
        mask_roles(self.flow.accounts)
    }
    /// For directory flows: the attributes that may go.
    pub fn attributes(&self) -> impl Iterator<Item = &'p str> + 'p {
        self.flow.attributes.iter().map(String::as_str)
    }
    /// For directory flows: whether credential `cred` (`password-hash`, `otp-seed`, `cert`) of
    /// an account holding `role` may go.
    pub fn credential_allowed(&self, cred: &str, role: Role) -> bool {
        let bit = role_bit(role);
        self.flow
            .credentials
            .iter()
            .any(|(c, m)| c == cred && m & bit != 0)
    }
}

/// A route of a checked policy.
#[derive(Debug, Clone, Copy)]
pub struct RouteInfo<'p> {
    policy: &'p Policy,
    route: &'p Route,
}

/// A route's court condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CourtCondition<'p> {
    /// `court same`: the path's `{court}` is the subject's court.
    Same,
    /// `court within`: the path's `{court}` is the subject's court or below it.
    Within,
    /// `court in COURT`: the subject's court is within this one.
    In(&'p CourtCode),
}

impl<'p> RouteInfo<'p> {
    /// The route's name.
    pub fn name(&self) -> &'p str {
        &self.route.name
    }
    /// The zone whose gateway applies it.
    pub fn zone(&self) -> &'p ZoneName {
        &self.route.zone_name
    }
    /// Where the route leads: [`Outcome::Service`] or [`Outcome::Flow`] (never a deny).
    pub fn target(&self) -> Outcome<'p> {
        self.policy.outcome_of(self.route.target)
    }
    /// The path patterns as written (`/cases/{court}/**`).
    pub fn paths(&self) -> impl Iterator<Item = &'p str> + 'p {
        self.route.patterns.iter().map(|(text, _)| text.as_str())
    }
    /// The methods, in `GET HEAD POST PUT PATCH DELETE OPTIONS` order.
    pub fn methods(&self) -> impl Iterator<Item = &'static str> + 'p {
        let mask = self.route.methods;
        METHODS
            .iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1 << i) != 0)
            .map(|(_, m)| *m)
    }
    /// The roles the route names (every role when it names none), in [`Role::ALL`] order.
    pub fn roles(&self) -> impl Iterator<Item = Role> + 'p {
        mask_roles(self.route.roles)
    }
    /// The court condition, if any.
    pub fn court(&self) -> Option<CourtCondition<'p>> {
        self.route.court.as_ref().map(|c| match c {
            CourtCheck::Same => CourtCondition::Same,
            CourtCheck::Within => CourtCondition::Within,
            CourtCheck::In(code) => CourtCondition::In(code),
        })
    }
    /// The least clearance.
    pub fn clearance(&self) -> Clearance {
        self.route.clearance
    }
    /// The least `acr` the route itself asks (the zone's floor for the role applies as well:
    /// [`Policy::least_acr`]).
    pub fn acr(&self) -> Acr {
        self.route.acr
    }
    /// The daily time window, if any.
    pub fn window(&self) -> Option<Window> {
        self.route.time
    }
    /// Where it is declared (its name).
    pub fn span(&self) -> crate::Span {
        self.route.span
    }
}

impl Window {
    /// Start, in minutes after local midnight.
    pub fn start_min(&self) -> u32 {
        self.start
    }
    /// End (exclusive), in minutes after local midnight; `1440` for `24:00`.
    pub fn end_min(&self) -> u32 {
        self.end
    }
    /// The offset of local time from UTC, in minutes.
    pub fn offset_min(&self) -> i32 {
        self.offset_min
    }
}

impl Policy {
    /// The outcome of allowing to `target`.
    pub(crate) fn outcome_of(&self, target: Target) -> Outcome<'_> {
        match target {
            Target::Service(s) => {
                Outcome::Service(self.services.get(s).map_or("", |s| s.name.as_str()))
            }
            Target::Flow(f) => Outcome::Flow(self.flows.get(f).map_or("", |f| f.name.as_str())),
        }
    }

    /// Every flow, in declaration order.
    pub fn flows(&self) -> impl Iterator<Item = FlowInfo<'_>> {
        self.flows.iter().map(|f| FlowInfo {
            policy: self,
            flow: f,
        })
    }

    /// The flow named `name`.
    pub fn flow(&self, name: &str) -> Option<FlowInfo<'_>> {
        let i = *self.flow_index.get(name)?;
        Some(FlowInfo {
            policy: self,
            flow: self.flows.get(i)?,
        })
    }

    /// Every route, in policy order (the order in which they decide).
    pub fn routes(&self) -> impl Iterator<Item = RouteInfo<'_>> {
        self.routes.iter().map(|r| RouteInfo {
            policy: self,
            route: r,
        })
    }

    /// The least `acr` a subject holding `role` needs to sign in to zone `zone` (the zone's
    /// `acr ROLE >= ACR` line); `None` when the role cannot sign in there or the zone is not in
    /// the policy. A route may ask more ([`RouteInfo::acr`]); a subject holding several roles
    /// needs the highest floor among those that sign in.
    pub fn least_acr(&self, zone: &str, role: Role) -> Option<Acr> {
        let z = self.zones.get(*self.zone_index.get(zone)?)?;
        if z.signin & role_bit(role) == 0 {
            return None;
        }
        Some(z.need_acr(role_bit(role)))
    }
}

#[cfg(test)]
mod tests {
    use tianping_core::{Acr, Role};

    use crate::{DEFAULT_POLICY, Outcome, check};

    #[test]
    fn least_acr_and_routes_read_the_policy() {
        let p = check("default.tp", DEFAULT_POLICY).into_policy().unwrap();
        assert_eq!(p.least_acr("internet", Role::Lawyer), Some(Acr::Pwd));
        assert_eq!(p.least_acr("private", Role::Judge), Some(Acr::Otp));
        assert_eq!(p.least_acr("private", Role::Auditor), Some(Acr::Cert));
        assert_eq!(p.least_acr("internet", Role::Judge), None, "cannot sign in");
        assert_eq!(p.least_acr("nowhere", Role::Judge), None);
        let r = p.routes().next().unwrap();
        assert!(r.paths().next().is_some());
        assert!(r.methods().next().is_some());
        assert!(!matches!(r.target(), Outcome::Deny));
    }
}
