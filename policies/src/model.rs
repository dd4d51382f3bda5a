//! The checked policy: zones, services, routes and flows resolved to indexes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use tianping_core::{Acr, Clearance, CourtCode, PolicyHash, Role, ZoneName};

use crate::diag::Span;
use crate::paths::{Node, Seg};

/// Number of core roles; role sets are bit masks over [`Role::ALL`].
pub(crate) const ROLES: usize = 16;

/// The bit of a role in a role mask.
pub(crate) fn role_bit(r: Role) -> u32 {
    let i = Role::ALL.iter().position(|x| *x == r).unwrap_or(0);
    1u32 << i
}

/// The mask of a list of roles.
pub(crate) fn role_mask(roles: &[Role]) -> u32 {
    roles.iter().fold(0, |m, r| m | role_bit(*r))
}

/// The roles of a mask, in [`Role::ALL`] order.
pub(crate) fn mask_roles(mask: u32) -> impl Iterator<Item = Role> {
    Role::ALL
        .iter()
        .enumerate()
        .filter(move |(i, _)| mask & (1 << i) != 0)
        .map(|(_, r)| *r)
}

/// The mask holding every role.
pub(crate) const ALL_ROLES: u32 = (1 << ROLES) - 1;

/// HTTP methods a route may name, in index order.
pub(crate) const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

pub(crate) fn method_index(m: &str) -> Option<usize> {
    METHODS.iter().position(|x| *x == m)
}

/// A content kind a flow may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// PDF document.
    Pdf,
    /// OFD document (GB/T 33190).
    Ofd,
    /// JSON of a named schema.
    Json,
    /// PNG image.
    Png,
    /// JPEG image.
    Jpeg,
    /// MP4 video.
    Mp4,
    /// Plain UTF-8 text.
    Text,
    /// A receipt made by an exchange node or a service (machine-made).
    Receipt,
    /// Directory replication records (machine-made).
    DirectoryUpdate,
    /// A batch of audit events (machine-made).
    AuditBatch,
    /// A policy update (machine-made).
    PolicyUpdate,
    /// A certificate revocation list (machine-made).
    Crl,
    /// A trust bundle (machine-made).
    TrustBundle,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 13] = [
        Kind::Pdf,
        Kind::Ofd,
        Kind::Json,
        Kind::Png,
        Kind::Jpeg,
        Kind::Mp4,
        Kind::Text,
        Kind::Receipt,
        Kind::DirectoryUpdate,
        Kind::AuditBatch,
        Kind::PolicyUpdate,
        Kind::Crl,
        Kind::TrustBundle,
    ];

    /// The kind's name in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pdf => "pdf",
            Kind::Ofd => "ofd",
            Kind::Json => "json",
            Kind::Png => "png",
            Kind::Jpeg => "jpeg",
            Kind::Mp4 => "mp4",
            Kind::Text => "text",
            Kind::Receipt => "receipt",
            Kind::DirectoryUpdate => "directory-update",
            Kind::AuditBatch => "audit-batch",
            Kind::PolicyUpdate => "policy-update",
            Kind::Crl => "crl",
            Kind::TrustBundle => "trust-bundle",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Whether records of this kind are made by machines, so a release may need no approver.
    pub fn is_machine_made(self) -> bool {
        matches!(
            self,
            Kind::Receipt
                | Kind::DirectoryUpdate
                | Kind::AuditBatch
                | Kind::PolicyUpdate
                | Kind::Crl
                | Kind::TrustBundle
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A zone of the policy.
#[derive(Debug, Clone)]
pub(crate) struct Zone {
    pub(crate) name: ZoneName,
    pub(crate) conf: usize,
    pub(crate) integ: usize,
    pub(crate) sealed: bool,
    /// The least `acr` per role (by [`Role::ALL`] index); `None`: the role cannot sign in here.
    pub(crate) acr: [Option<Acr>; ROLES],
    pub(crate) signin: u32,
}

impl Zone {
    /// The least `acr` a subject holding the roles of `mask` (already limited to `signin`) needs.
    pub(crate) fn need_acr(&self, mask: u32) -> Acr {
        let mut need = Acr::Pwd;
        for (i, a) in self.acr.iter().enumerate() {
            if mask & (1 << i) != 0 {
                if let Some(a) = a {
                    need = need.max(*a);
                }
            }
        }
        need
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) zone: usize,
    pub(crate) span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Service(usize),
    Flow(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CourtCheck {
    Same,
    Within,
    In(CourtCode),
}

/// A route's daily time window: minutes after midnight, at an offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) offset_min: i32,
}

impl Window {
    pub(crate) fn contains_ms(&self, ms: u64) -> bool {
        let minute = ((ms / 60_000) % 1440) as i64;
        let local =
            u32::try_from((minute + i64::from(self.offset_min)).rem_euclid(1440)).unwrap_or(0);
        if self.start <= self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether every minute of `other` is in `self`.
    pub(crate) fn covers(&self, other: &Window) -> bool {
        if self.offset_min != other.offset_min {
            return false;
        }
        let holds = |w: &Window, m: u32| {
            if w.start <= w.end {
                w.start <= m && m < w.end
            } else {
                m >= w.start || m < w.end
            }
        };
        (0..1440).all(|m| !holds(other, m) || holds(self, m))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )?;
        if self.offset_min != 0 {
            let sign = if self.offset_min < 0 { '-' } else { '+' };
            let o = self.offset_min.unsigned_abs();
            write!(f, " {sign}{:02}:{:02}", o / 60, o % 60)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) span: Span,
    pub(crate) zone: usize,
    pub(crate) zone_name: ZoneName,
    pub(crate) patterns: Vec<(String, Vec<Seg>)>,
    pub(crate) methods: u8,
    pub(crate) target: Target,
    /// `ALL_ROLES` when the route names no roles.
    pub(crate) roles: u32,
    pub(crate) court: Option<CourtCheck>,
    pub(crate) clearance: Clearance,
    pub(crate) acr: Acr,
    pub(crate) time: Option<Window>,
}

/// How many transfers one submitter may make per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rate {
    /// Transfers allowed per period.
    pub count: u32,
    /// The period in seconds.
    pub per_secs: u64,
}

/// A kind as the policy writes it: `pdf`, `json(filing-form)`.
pub(crate) fn kind_text((k, schema): &(Kind, Option<String>)) -> String {
    match schema {
        Some(s) => format!("{k}({s})"),
        None => k.to_string(),
    }
}

impl Flow {
    /// The entry of `kinds` a payload of `kind` (with `schema`, for `json`) is carried as: a
    /// `json` without a schema takes any schema.
    pub(crate) fn kind_of(
        &self,
        kind: Kind,
        schema: Option<&str>,
    ) -> Option<&(Kind, Option<String>)> {
        self.kinds
            .iter()
            .find(|(k, s)| *k == kind && (s.is_none() || s.as_deref() == schema))
    }

    /// The size limit for a payload carried as `entry`: its own, or the flow's.
    pub(crate) fn size_for(&self, entry: &(Kind, Option<String>)) -> u64 {
        self.kind_sizes
            .iter()
            .find(|(k, _)| k == entry)
            .map_or(self.max_size, |(_, n)| *n)
    }
}

/// What a flow to a lower confidentiality demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) redact: bool,
    pub(crate) refuse: Vec<String>,
    pub(crate) approvers: u32,
    pub(crate) approver_roles: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Flow {
    pub(crate) name: String,
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) from_name: ZoneName,
    pub(crate) to_name: ZoneName,
    pub(crate) kinds: Vec<(Kind, Option<String>)>,
    /// The limit for every payload.
    pub(crate) max_size: u64,
    /// Lower limits for some of the kinds (`max-size SIZE for KIND`).
    pub(crate) kind_sizes: Vec<((Kind, Option<String>), u64)>,
    pub(crate) submitters: u32,
    pub(crate) machine: bool,
    pub(crate) deliver: usize,
    pub(crate) rate: Option<Rate>,
    pub(crate) sanitize: Vec<String>,
    pub(crate) release: Option<Release>,
    pub(crate) reply: Option<usize>,
    pub(crate) accounts: u32,
    pub(crate) attributes: Vec<String>,
    pub(crate) credentials: Vec<(String, u32)>,
}

/// `marking LABEL words ...`: the words that mark content as carrying a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marking {
    pub(crate) label: String,
    pub(crate) words: Vec<String>,
}

/// A policy that passed the verifier, compiled for decisions.
#[derive(Debug)]
pub struct Policy {
    pub(crate) file: String,
    pub(crate) source: Arc<str>,
    pub(crate) hash: PolicyHash,
    pub(crate) conf_levels: Vec<String>,
    pub(crate) integ_levels: Vec<String>,
    pub(crate) zones: Vec<Zone>,
    pub(crate) zone_index: HashMap<Box<str>, usize>,
    pub(crate) services: Vec<Service>,
    pub(crate) routes: Vec<Route>,
    pub(crate) flows: Vec<Flow>,
    pub(crate) flow_index: HashMap<Box<str>, usize>,
    /// The `marking` declarations, in declaration order.
    pub(crate) markings: Vec<Marking>,
    /// One trie per zone and method.
    pub(crate) tries: Vec<[Node; METHODS.len()]>,
}

impl Policy {
    /// The file name the policy was read from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The policy text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// SHA-256 of the policy text; named in every decision.
    pub fn hash(&self) -> PolicyHash {
        self.hash
    }

    pub(crate) fn zone_name(&self, i: usize) -> Option<&ZoneName> {
        self.zones.get(i).map(|z| &z.name)
    }

    /// The zones, in declaration order.
    pub fn zones(&self) -> impl Iterator<Item = &ZoneName> {
        self.zones.iter().map(|z| &z.name)
    }

    /// Whether zone `name` is sealed (no flow leaves it).
    pub fn is_sealed(&self, name: &str) -> bool {
        self.zone_index
            .get(name)
            .and_then(|i| self.zones.get(*i))
            .is_some_and(|z| z.sealed)
    }

    /// Every `marking` as (label, its words), in declaration order: a release that refuses the
    /// label refuses content whose text carries any of the words.
    pub fn markings(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.markings
            .iter()
            .map(|m| (m.label.as_str(), m.words.as_slice()))
    }

    /// The words marking `label`; empty when the policy has no `marking` of it.
    pub fn marking_words(&self, label: &str) -> &[String] {
        self.markings
            .iter()
            .find(|m| m.label == label)
            .map_or(&[], |m| m.words.as_slice())
    }

    /// Every service as (name, zone), in declaration order; `tianping init` binds each to a
    /// delivery folder.
    pub fn services(&self) -> impl Iterator<Item = (&str, &ZoneName)> {
        self.services
            .iter()
            .filter_map(|s| Some((s.name.as_str(), self.zone_name(s.zone)?)))
    }
}
