//! The receiving zone's decision on a bundle that arrived complete and signature-checked
//! (pure): the transfer is checked again against the receiving zone's own policy copy before
//! anything is delivered (DESIGN §6).
//!
//! In order, and the first that fails refuses ([`InboundRefusal`], each a reason for the
//! `transfer.refused` audit event):
//! 1. the manifest names this zone as its destination, and the flow exists in this zone's
//!    policy and runs from the bundle's source into this zone;
//! 2. the transfer `(source, sequence)` has not ended here before (a replayed bundle; the
//!    receiver's store keeps that record and says so through `replayed`);
//! 3. the approvals the bundle carries are verified and counted again (the caller passes the
//!    counting, `approval::count_approvals` over the zone's trust);
//! 4. [`Policy::decide_transfer`] on the manifest (kind, schema, size, submitter and roles,
//!    labels, redaction) with the approvals just counted;
//! 5. the zone's own filter of the manifest's kind, run over the payload with the flow's
//!    sanitize steps, reproduces the signed payload byte for byte (filters are deterministic and
//!    idempotent, so a payload the sender rebuilt passes unchanged; anything else was not rebuilt
//!    by a filter the receiving zone trusts);
//! 6. on a release refusing a label with `marking` words, the payload's text carries none of
//!    them ([`marking_check`](crate::marking_check)): the sender checks it too, but the receiving
//!    zone does not take the sending zone's word for it.
//!
//! What is accepted ([`Accepted`]) names the service to deliver to and the flow's reply flow.

use tianping_core::ZoneName;
use tianping_policies::{Approval, FlowInfo, Policy, TransferRequest};

use crate::{BundleHeader, FilterInput, Filters, Refusal};

/// Why the receiving zone refused a transfer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundRefusal {
    /// The manifest is addressed to another zone.
    #[error("the transfer is addressed to zone `{0}`, not to this one")]
    Destination(ZoneName),
    /// The receiving policy has no such flow.
    #[error("the receiving zone's policy has no flow `{0}`")]
    UnknownFlow(String),
    /// The flow exists but does not run from the bundle's source into this zone.
    #[error("flow `{flow}` runs from `{from}` to `{to}`, not from `{source_zone}` into this zone")]
    Direction {
        /// The flow.
        flow: String,
        /// Its source zone in the receiving policy.
        from: ZoneName,
        /// Its destination zone in the receiving policy.
        to: ZoneName,
        /// The bundle's source zone.
        source_zone: ZoneName,
    },
    /// The transfer `(source, sequence)` already ended here.
    #[error("transfer `{0}` already arrived here: a replayed bundle")]
    Replayed(String),
    /// The approvals do not verify or count.
    #[error("the approvals do not hold: {0}")]
    Approvals(String),
    /// The receiving policy denies the transfer.
    #[error("the receiving zone's policy denies it: {0}")]
    Denied(String),
    /// The payload is longer than the receiving side reads.
    #[error("the payload is {size} bytes, over the flow's limit of {max}")]
    TooLarge {
        /// The payload's size.
        size: u64,
        /// The flow's limit.
        max: u64,
    },
    /// The zone's filter refused the payload.
    #[error("{0}")]
    Filter(#[from] Refusal),
    /// The zone's filter rebuilt the payload into other bytes than those signed.
    #[error(
        "the receiving zone's `{kind}` filter does not reproduce the signed payload ({signed} bytes signed, {rebuilt} rebuilt)"
    )]
    NotReproduced {
        /// The kind.
        kind: String,
        /// The signed payload's length.
        signed: usize,
        /// The rebuilt copy's length.
        rebuilt: usize,
    },
}

/// A transfer the receiving zone accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The transfer's id, `<source>:<sequence>`.
    pub transfer_id: String,
    /// The flow.
    pub flow: String,
    /// The service of this zone it is delivered to.
    pub service: String,
    /// The flow carrying replies to it, if the flow declares one.
    pub reply: Option<String>,
    /// The approvals counted again.
    pub approvals: Vec<Approval>,
}

/// The id of a transfer: `<source zone>:<sequence>`.
pub fn transfer_id(header: &BundleHeader) -> String {
    format!("{}:{}", header.manifest.source, header.manifest.sequence)
}

/// What the receiving zone decides on with.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The receiving zone.
    pub zone: &'a ZoneName,
    /// Its policy copy (`zones/<zone>/policy.tp`), checked.
    pub policy: &'a Policy,
    /// Its filters, by kind.
    pub filters: &'a Filters,
}

/// Counts the approvals a bundle carries against a flow: `approval::count_approvals` over the
/// receiving zone's trust, or a test's own.
pub type CountApprovals<'a> =
    &'a dyn Fn(&BundleHeader, &FlowInfo<'_>) -> Result<Vec<Approval>, String>;

impl<'a> Inbound<'a> {
    /// The flow a bundle names, when it exists and runs from the bundle's source into this
    /// zone (the first checks, before any payload byte is read).
    pub fn flow(&self, header: &BundleHeader) -> Result<FlowInfo<'a>, InboundRefusal> {
        let m = &header.manifest;
        if &m.destination != self.zone {
            return Err(InboundRefusal::Destination(m.destination.clone()));
        }
        let flow = self
            .policy
            .flow(&m.flow)
            .ok_or_else(|| InboundRefusal::UnknownFlow(m.flow.clone()))?;
        if flow.from() != &m.source || flow.to() != self.zone {
            return Err(InboundRefusal::Direction {
                flow: m.flow.clone(),
                from: flow.from().clone(),
                to: flow.to().clone(),
                source_zone: m.source.clone(),
            });
        }
        if m.size > flow.max_size() {
            return Err(InboundRefusal::TooLarge {
                size: m.size,
                max: flow.max_size(),
            });
        }
        Ok(flow)
    }

    /// Decides on a complete, signature-checked bundle: `header` and its `payload`;
    /// `replayed` when the store already saw `(source, sequence)` end; `count` verifies and
    /// counts the approvals.
    pub fn decide(
        &self,
        header: &BundleHeader,
        payload: &[u8],
        replayed: bool,
        count: CountApprovals<'_>,
    ) -> Result<Accepted, InboundRefusal> {
        self.decide_with(header, replayed, count, &mut |flow, input| {
            self.reproduce(flow, input, payload)
        })
    }

    /// Whether the zone's filter run over `payload` gives it back unchanged, and, on a release,
    /// whether its text is free of the markings `flow` refuses.
    pub fn reproduce(
        &self,
        flow: &FlowInfo<'_>,
        input: &FilterInput<'_>,
        payload: &[u8],
    ) -> Result<(), InboundRefusal> {
        let filtered = self.filters.run(input, payload)?;
        if filtered.bytes != payload {
            return Err(InboundRefusal::NotReproduced {
                kind: input.kind.to_owned(),
                signed: payload.len(),
                rebuilt: filtered.bytes.len(),
            });
        }
        crate::marking_check(flow, &filtered)?;
        Ok(())
    }

    /// [`decide`](Self::decide) with the filter's part left to `reproduce`, which must pass
    /// only a payload the zone's filter gives back unchanged and, on a release, free of the
    /// flow's refused markings (a streaming check of a payload too large to hold,
    /// [`Filters::check_unchanged`](crate::Filters::check_unchanged), which never takes a
    /// release, else [`reproduce`](Self::reproduce)).
    pub fn decide_with(
        &self,
        header: &BundleHeader,
        replayed: bool,
        count: CountApprovals<'_>,
        reproduce: &mut dyn FnMut(&FlowInfo<'_>, &FilterInput<'_>) -> Result<(), InboundRefusal>,
    ) -> Result<Accepted, InboundRefusal> {
        let flow = self.flow(header)?;
        let m = &header.manifest;
        let id = transfer_id(header);
        if replayed {
            return Err(InboundRefusal::Replayed(id));
        }
        let approvals = if flow.has_release() {
            count(header, &flow).map_err(InboundRefusal::Approvals)?
        } else {
            Vec::new()
        };
        let request = TransferRequest {
            kind: m.kind.clone(),
            schema: m.schema.clone(),
            size: m.size,
            submitter: tianping_policies::Submitter {
                id: (!m.submitter.machine).then(|| m.submitter.subject.clone()),
                roles: m.submitter.roles.clone(),
                machine: m.submitter.machine,
            },
            labels: m.labels.clone(),
            redacted: m.redacted,
            approvals: approvals.clone(),
        };
        let decision = self.policy.decide_transfer(&m.flow, &request);
        if !decision.is_allow() {
            return Err(InboundRefusal::Denied(decision.reason.to_string()));
        }
        let steps: Vec<&str> = flow.sanitize().collect();
        let input = FilterInput {
            kind: &m.kind,
            schema: m.schema.as_deref(),
            steps: &steps,
            max_size: flow
                .max_size_for(&m.kind, m.schema.as_deref())
                .unwrap_or(flow.max_size()),
            release: flow.has_release(),
        };
        reproduce(&flow, &input)?;
        Ok(Accepted {
            transfer_id: id,
            flow: m.flow.clone(),
            service: flow.deliver().to_owned(),
            reply: flow.reply().map(str::to_owned),
            approvals,
        })
    }
}
