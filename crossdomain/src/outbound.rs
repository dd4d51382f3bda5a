//! The sending zone's decision on a submission (pure): the transfer is checked against the
//! sending zone's own policy and run through its filters before anything is spooled (DESIGN §6).
//!
//! In order, and the first that fails refuses ([`OutboundRefusal`], each a reason for the
//! `transfer` deny audit event):
//! 1. the flow exists in this zone's policy and leaves this zone, and the zone is not sealed (a
//!    checked policy never has a flow out of a sealed zone; this is checked anyway);
//! 2. the size is within the flow's `max-size` (before any payload byte is read, from the size
//!    the submitter declares or the bytes read so far);
//! 3. [`Policy::decide_transfer`] on kind (+schema), size, submitter and roles, labels,
//!    redaction and the approvals counted so far; a release whose only shortfall is its
//!    approvals is *held* ([`Decided::held`]) rather than refused;
//! 4. the rate: `rate N per WINDOW` per submitter, over counters the caller keeps
//!    ([`rate_admit`] is the window arithmetic; the spool keeps the counters in `sled` and
//!    updates them in the step that takes the transfer's sequence);
//! 5. the zone's filter of the kind ([`Filters::run`] with the flow's sanitize steps, `release`
//!    when the flow has release terms): its rebuilt bytes are what is bundled;
//! 6. on a release refusing a label with `marking` words, the rebuilt content's text must carry
//!    none of them ([`marking_check`](crate::marking_check)), whatever labels were declared.

use tianping_core::{PolicyHash, UnixTime, ZoneName};
use tianping_policies::{Approval, FlowInfo, Policy, Rate, Reason, TransferRequest};

use crate::{FilterInput, Filtered, Filters, Refusal, Submitter};

/// What a submitter asks to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The flow.
    pub flow: String,
    /// The kind of payload.
    pub kind: String,
    /// The schema it claims, for `json`.
    pub schema: Option<String>,
    /// The payload's size in bytes (as read; the rebuilt copy may differ).
    pub size: u64,
    /// Who submits, as the sender authenticated them.
    pub submitter: Submitter,
    /// The payload's labels.
    pub labels: Vec<String>,
    /// Whether the submitter says it is redacted for the destination.
    pub redacted: bool,
    /// The transfer this one answers, if any.
    pub correlation: Option<String>,
}

/// Why the sending zone refused a submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundRefusal {
    /// The policy has no such flow.
    #[error("the policy has no flow `{0}`")]
    UnknownFlow(String),
    /// The flow does not leave this zone.
    #[error("flow `{flow}` runs from `{from}`, not out of this zone `{zone}`")]
    NotFromHere {
        /// The flow.
        flow: String,
        /// Where it starts.
        from: ZoneName,
        /// This zone.
        zone: ZoneName,
    },
    /// This zone is sealed: nothing leaves it.
    #[error("zone `{0}` is sealed: nothing leaves it")]
    Sealed(ZoneName),
    /// The payload is over the flow's limit.
    #[error("the payload is {size} bytes or more, over flow `{flow}`'s max-size of {max}")]
    TooLarge {
        /// The flow.
        flow: String,
        /// The size (or the bytes read so far).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The policy denies it.
    #[error("the policy denies it (flow `{rule}`): {reason}")]
    Denied {
        /// The rule (flow) that decided.
        rule: String,
        /// Why.
        reason: String,
    },
    /// The submitter is over the flow's rate.
    #[error(
        "over flow `{flow}`'s rate of {count} per {per_secs} s for this submitter; the next may go in {retry_secs} s"
    )]
    Rate {
        /// The flow.
        flow: String,
        /// Transfers allowed per window.
        count: u32,
        /// The window in seconds.
        per_secs: u64,
        /// Seconds until the next window.
        retry_secs: u64,
    },
    /// The zone's filter refused the payload.
    #[error("{0}")]
    Filter(#[from] Refusal),
}

impl OutboundRefusal {
    /// The HTTP status the sender's socket answers with: 403 policy, 413 size, 422 filter, 429
    /// rate.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            Self::Rate { .. } => 429,
            Self::Filter(_) => 422,
            _ => 403,
        }
    }
}

/// The policy's answer on a submission that may go (now, or once approved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The flow that decided (the decision's rule).
    pub rule: String,
    /// The hash of the policy that decided.
    pub policy_hash: PolicyHash,
    /// The destination zone.
    pub destination: ZoneName,
    /// The destination's service.
    pub service: String,
    /// Whether it waits for approvals (a release whose approvals are not yet met).
    pub held: bool,
    /// The approvals still needed when held.
    pub need: u32,
    /// The flow's rate, if any.
    pub rate: Option<Rate>,
}

/// What the sending zone decides on with.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    /// This (the sending) zone.
    pub zone: &'a ZoneName,
    /// Its policy copy, checked.
    pub policy: &'a Policy,
    /// Its filters, by kind.
    pub filters: &'a Filters,
}

impl<'a> Outbound<'a> {
    /// The flow `name`, when it exists and leaves this (unsealed) zone.
    pub fn flow(&self, name: &str) -> Result<FlowInfo<'a>, OutboundRefusal> {
        if self.policy.is_sealed(self.zone.as_str()) {
            return Err(OutboundRefusal::Sealed(self.zone.clone()));
        }
        let flow = self
            .policy
            .flow(name)
            .ok_or_else(|| OutboundRefusal::UnknownFlow(name.to_owned()))?;
        if flow.from() != self.zone {
            return Err(OutboundRefusal::NotFromHere {
                flow: name.to_owned(),
                from: flow.from().clone(),
                zone: self.zone.clone(),
            });
        }
        Ok(flow)
    }

    /// The largest payload flow `name` takes, when it exists and leaves this zone.
    pub fn limit(&self, name: &str) -> Result<u64, OutboundRefusal> {
        Ok(self.flow(name)?.max_size())
    }

    /// The policy's decision on `s` with the approvals counted so far: a denial refuses; a
    /// release short only of approvals is held.
    pub fn decide(&self, s: &Outgoing, approvals: &[Approval]) -> Result<Decided, OutboundRefusal> {
        let flow = self.flow(&s.flow)?;
        if s.size > flow.max_size() {
            return Err(OutboundRefusal::TooLarge {
                flow: s.flow.clone(),
                size: s.size,
                max: flow.max_size(),
            });
        }
        let decision = self.policy.decide_transfer(&s.flow, &request(s, approvals));
        let rule = decision.rule.unwrap_or(flow.name()).to_owned();
        let (held, need) = match decision.reason {
            Reason::Allowed => (false, 0),
            Reason::Approvals { need, have } => (true, need.saturating_sub(have)),
            ref other => {
                return Err(OutboundRefusal::Denied {
                    rule,
                    reason: other.to_string(),
                });
            }
        };
        Ok(Decided {
            rule,
            policy_hash: decision.policy,
            destination: flow.to().clone(),
            service: flow.deliver().to_owned(),
            held,
            need,
            rate: flow.rate(),
        })
    }

    /// Runs the zone's filter of `s.kind` over `payload` with the flow's sanitize steps, then
    /// the marking check of a release: the rebuilt bytes are what is bundled.
    pub fn filter(&self, s: &Outgoing, payload: &[u8]) -> Result<Filtered, OutboundRefusal> {
        let flow = self.flow(&s.flow)?;
        let steps: Vec<&str> = flow.sanitize().collect();
        let input = FilterInput {
            kind: &s.kind,
            schema: s.schema.as_deref(),
            steps: &steps,
            max_size: flow
                .max_size_for(&s.kind, s.schema.as_deref())
                .unwrap_or(flow.max_size()),
            release: flow.has_release(),
        };
        let filtered = self.filters.run(&input, payload)?;
        crate::marking_check(&flow, &filtered)?;
        Ok(filtered)
    }
}

/// The policy's view of a submission.
pub fn request(s: &Outgoing, approvals: &[Approval]) -> TransferRequest {
    TransferRequest {
        kind: s.kind.clone(),
        schema: s.schema.clone(),
        size: s.size,
        submitter: tianping_policies::Submitter {
            id: (!s.submitter.machine).then(|| s.submitter.subject.clone()),
            roles: s.submitter.roles.clone(),
            machine: s.submitter.machine,
        },
        labels: s.labels.clone(),
        redacted: s.redacted,
        approvals: approvals.to_vec(),
    }
}

/// A submitter's count in a rate window: the window's start (ms since the epoch) and how many
/// were admitted in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateWindow {
    /// The window's start, in milliseconds since the epoch.
    pub start_ms: u64,
    /// Transfers admitted in it.
    pub count: u32,
}

impl RateWindow {
    /// The 12-byte form kept in `sled`.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        let (a, b) = out.split_at_mut(8);
        a.copy_from_slice(&self.start_ms.to_be_bytes());
        b.copy_from_slice(&self.count.to_be_bytes());
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s form (anything else reads as an empty window).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let (Some(a), Some(b)) = (bytes.get(..8), bytes.get(8..12)) else {
            return Self::default();
        };
        let (mut s, mut c) = ([0u8; 8], [0u8; 4]);
        s.copy_from_slice(a);
        c.copy_from_slice(b);
        Self {
            start_ms: u64::from_be_bytes(s),
            count: u32::from_be_bytes(c),
        }
    }
}

/// The rate arithmetic: fixed windows of `rate.per_secs` aligned on the epoch. Admitting one
/// more at `now` gives the new window, or `Err(seconds until the next window)`.
pub fn rate_admit(rate: Rate, was: RateWindow, now: UnixTime) -> Result<RateWindow, u64> {
    let per_ms = rate.per_secs.saturating_mul(1000).max(1);
    let now_ms = now.as_millis();
    let start_ms = now_ms - now_ms % per_ms;
    let count = if was.start_ms == start_ms {
        was.count
    } else {
        0
    };
    if count >= rate.count {
        let next = start_ms.saturating_add(per_ms);
        return Err(next.saturating_sub(now_ms).div_ceil(1000));
    }
    Ok(RateWindow {
        start_ms,
        count: count + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let rate = Rate {
            count: 2,
            per_secs: 60,
        };
        let t = |s| UnixTime::from_secs(s);
        let w = rate_admit(rate, RateWindow::default(), t(120)).unwrap();
        assert_eq!(
            w,
            RateWindow {
                start_ms: 120_000,
                count: 1
            }
        );
        let w = rate_admit(rate, w, t(150)).unwrap();
        assert_eq!(w.count, 2);
        assert_eq!(rate_admit(rate, w, t(170)), Err(10));
        let w = rate_admit(rate, w, t(180)).unwrap();
        assert_eq!(
            w,
            RateWindow {
                start_ms: 180_000,
                count: 1
            }
        );
        assert_eq!(RateWindow::from_bytes(&w.to_bytes()), w);
        assert_eq!(RateWindow::from_bytes(b"x"), RateWindow::default());
    }
}
