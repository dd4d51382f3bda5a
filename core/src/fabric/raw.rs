//! The shape of `fabric.toml` as read, before any check: unknown keys are refused here, and
//! every value a check may point at keeps its span.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::ZoneName;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFabric {
    pub(super) fabric: RawHeader,
    pub(super) zones: BTreeMap<Spanned<ZoneName>, RawZone>,
    #[serde(default)]
    pub(super) links: Vec<Spanned<RawLink>>,
    #[serde(default)]
    pub(super) services: BTreeMap<Spanned<String>, RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeader {
    pub(super) name: String,
    pub(super) domain: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawZone {
    pub(super) address: IpAddr,
    pub(super) gateway: Spanned<u16>,
    pub(super) idp: Spanned<u16>,
    pub(super) admin: RawAdmin,
    /// The gateway's per-subject limits; absent, the gateway's defaults.
    pub(super) subject_rate: Option<Spanned<i64>>,
    pub(super) subject_burst: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawAdmin {
    pub(super) gateway: Spanned<u16>,
    pub(super) idp: Spanned<u16>,
    pub(super) exchange_sender: Spanned<u16>,
    pub(super) exchange_receiver: Spanned<u16>,
    /// Only the zone that runs the audit store (`private` by default) has one.
    pub(super) audit_store: Option<Spanned<u16>>,
}

/// Numbers with limits are read wide, so a value out of range gets the limit and its reason
/// rather than the parser's "expected u16".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawLink {
    pub(super) id: Option<Spanned<i64>>,
    pub(super) from: Spanned<ZoneName>,
    pub(super) to: Spanned<ZoneName>,
    pub(super) address: Spanned<SocketAddr>,
    pub(super) rate_mbps: Spanned<i64>,
    pub(super) repair: Option<Spanned<i64>>,
    pub(super) mtu: Option<Spanned<i64>>,
    pub(super) block_size: Option<Spanned<i64>>,
    pub(super) retain: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawService {
    pub(super) zone: Spanned<ZoneName>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) ca: Option<PathBuf>,
    pub(super) folder: Option<PathBuf>,
    pub(super) component: Option<Spanned<String>>,
}
