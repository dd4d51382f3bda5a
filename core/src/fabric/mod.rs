//! The installation's `fabric.toml` (DESIGN §9): zones and their listeners, links between zones,
//! and the bindings of the policy's service names to addresses, delivery folders or components.
//!
//! Loading is strict: an unknown key, a bad value or an inconsistent binding is refused as a
//! diagnostic pointing at the text it stands on ([`FabricError`]).

mod defaults;
mod error;
mod link;
mod raw;
mod service;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use miette::SourceSpan;
use toml::Spanned;

pub use defaults::AUDIT_STORE_ZONE;
use error::FabricSource;
pub use error::{FabricError, FabricProblem};
pub use link::{
    DATAGRAM_HEADER, DEFAULT_BLOCK_SYMBOLS, DEFAULT_MTU, DEFAULT_REPAIR_PERCENT, IP_UDP_HEADER,
    Link, MAX_BLOCK_SIZE, MAX_BLOCK_SYMBOLS, MAX_MTU, MAX_REPAIR_PERCENT, MIN_BLOCK_SYMBOLS,
    MIN_MTU, MIN_SYMBOL_SIZE, RATE_MBPS, SYMBOL_ALIGNMENT, block_size_range, default_block_size,
    symbol_size,
};
pub use link::{DEFAULT_RETAIN, EXPLICIT_LINK_IDS, MAX_RETAIN, derived_link_id, parse_retain};
use raw::{RawFabric, RawLink, RawService, RawZone};
pub use service::{ServiceBinding, ServiceTarget, default_binding};

use crate::{Component, ZoneName};

/// The listeners of one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneListeners {
    /// The zone.
    pub zone: ZoneName,
    /// The address every listener of the zone binds (its own address in `--netns` mode).
    pub address: IpAddr,
    /// `gw.<zone>.<domain>`.
    pub gateway_host: String,
    /// `idp.<zone>.<domain>`.
    pub idp_host: String,
    /// The gateway's port (TCP for TLS, UDP for QUIC); 0 when chosen at start.
    pub gateway_port: u16,
    /// The IdP's port; 0 when chosen at start.
    pub idp_port: u16,
    /// The admin listener (`/healthz`, `/metrics`) of each component the zone runs.
    pub admin_ports: BTreeMap<Component, u16>,
    /// `subject-rate`: requests per second the zone's gateway lets one signed-in subject make
    /// (1..=100000); absent, the gateway's default (50).
    pub subject_rate: Option<u32>,
    /// `subject-burst`: the burst allowed above it (1..=100000); absent, the gateway's
    /// default (200).
    pub subject_burst: Option<u32>,
}

impl ZoneListeners {
    /// The components the zone runs, in start-up order: the four every zone runs, and the audit
    /// store where the zone's `admin` gives it a port.
    pub fn components(&self) -> impl Iterator<Item = Component> + '_ {
        Component::ALL
            .into_iter()
            .filter(|c| self.admin_ports.contains_key(c))
    }

    /// Whether the zone runs `component`.
    pub fn runs(&self, component: Component) -> bool {
        self.admin_ports.contains_key(&component)
    }
}

/// A checked `fabric.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fabric {
    /// The installation's name.
    pub name: String,
    /// The DNS suffix of every host name (`tianping.localhost`).
    pub domain: String,
    zones: BTreeMap<ZoneName, ZoneListeners>,
    links: Vec<Link>,
    services: BTreeMap<String, ServiceBinding>,
    source: FabricSource,
}

impl Fabric {
    /// Reads and checks `path`; diagnostics name the file.
    pub fn load(path: &Path) -> Result<Self, FabricError> {
        let text = std::fs::read_to_string(path).map_err(|e| FabricError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse_named(&path.display().to_string(), &text)
    }

    /// Parses and checks the text of a `fabric.toml`.
    pub fn parse(text: &str) -> Result<Self, FabricError> {
        Self::parse_named("fabric.toml", text)
    }

    /// Parses and checks the text of a `fabric.toml` named `name` in diagnostics.
    pub fn parse_named(name: &str, text: &str) -> Result<Self, FabricError> {
        let src = FabricSource::new(name, text);
        let raw: RawFabric = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            // The TOML parser leaves some messages empty (a control character in a string).
            let message = match e.message().trim() {
                "" => "not valid TOML here".to_owned(),
                m => m.to_owned(),
            };
            src.problem(span, message, "here", None)
        })?;
        let domain = raw.fabric.domain.get_ref();
        let domain_ok = !domain.is_empty()
            && domain.len() <= 200
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !domain_ok {
            return Err(src.problem(
                raw.fabric.domain.span(),
                format!("`{domain}` is not a DNS name"),
                "not a DNS name",
                Some("lowercase labels of letters, digits and `-`, joined by dots".into()),
            ));
        }
        let domain = domain.clone();
        let mut ports = Ports::default();
        let mut zones = BTreeMap::new();
        for (name, z) in raw.zones {
            let zl = zone(&src, &mut ports, &domain, name.into_inner(), z)?;
            zones.insert(zl.zone.clone(), zl);
        }
        let mut links = Vec::new();
        for l in raw.links {
            links.push(link(&src, &zones, &links, l)?);
        }
        let mut services = BTreeMap::new();
        for (name, s) in raw.services {
            let span = SourceSpan::from(name.span());
            let name = name.into_inner();
            services.insert(name.clone(), service(&src, &zones, span, &name, s)?);
        }
        Ok(Fabric {
            name: raw.fabric.name,
            domain,
            zones,
            links,
            services,
            source: src,
        })
    }

    /// Every zone's listeners.
    pub fn zones(&self) -> impl Iterator<Item = &ZoneListeners> {
        self.zones.values()
    }

    /// One zone's listeners.
    pub fn zone(&self, zone: &ZoneName) -> Option<&ZoneListeners> {
        self.zones.get(zone)
    }

    /// Every link.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The link from one zone to another.
    pub fn link(&self, from: &ZoneName, to: &ZoneName) -> Option<&Link> {
        self.links.iter().find(|l| &l.from == from && &l.to == to)
    }

    /// The links out of a zone (the policy's check refuses any out of a sealed zone).
    pub fn links_from<'a>(&'a self, zone: &'a ZoneName) -> impl Iterator<Item = &'a Link> + 'a {
        self.links.iter().filter(move |l| &l.from == zone)
    }

    /// Every service binding by name.
    pub fn services(&self) -> &BTreeMap<String, ServiceBinding> {
        &self.services
    }

    /// A diagnostic pointing into this `fabric.toml` (at a [`Link::span`] or
    /// [`ServiceBinding::span`]), for checks that need the policy as well, which this loader
    /// cannot know.
    pub fn problem_at(
        &self,
        span: SourceSpan,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) -> FabricError {
        self.source.problem(span, message, label, help)
    }

    /// The text the fabric was read from.
    pub fn text(&self) -> &str {
        self.source.text()
    }

    /// Resolves one of the fabric's host names (`gw.<zone>.<domain>`, `idp.<zone>.<domain>`) to
    /// the address and port configured for it (port 0 when chosen at start: see
    /// [`crate::listener_addr`]).
    pub fn resolve(&self, host: &str) -> Option<SocketAddr> {
        self.zones.values().find_map(|z| {
            if host == z.gateway_host {
                Some(SocketAddr::new(z.address, z.gateway_port))
            } else if host == z.idp_host {
                Some(SocketAddr::new(z.address, z.idp_port))
            } else {
                None
            }
        })
    }
}

/// The ports claimed so far, so no two listeners share one (port 0 is chosen at start, so never
/// collides).
#[derive(Default)]
struct Ports(BTreeMap<(IpAddr, u16), String>);

impl Ports {
    fn claim(
        &mut self,
        src: &FabricSource,
        ip: IpAddr,
        port: &Spanned<u16>,
        who: String,
    ) -> Result<(), FabricError> {
        let p = *port.get_ref();
        if p == 0 {
            return Ok(());
        }
        match self.0.insert((ip, p), who.clone()) {
            Some(other) => Err(src.problem(
                port.span(),
                format!("{who}: port {p} on {ip} is already used by {other}"),
                "already used",
                Some("give each listener its own port, or 0 to have one chosen at start".into()),
            )),
            None => Ok(()),
        }
    }
}

fn zone(
    src: &FabricSource,
    ports: &mut Ports,
    domain: &str,
    zone: ZoneName,
    z: RawZone,
) -> Result<ZoneListeners, FabricError> {
    ports.claim(src, z.address, &z.gateway, format!("`{zone}` gateway"))?;
    ports.claim(src, z.address, &z.idp, format!("`{zone}` idp"))?;
    let admin = [
        (Component::Gateway, Some(&z.admin.gateway)),
        (Component::Idp, Some(&z.admin.idp)),
        (Component::ExchangeSender, Some(&z.admin.exchange_sender)),
        (
            Component::ExchangeReceiver,
            Some(&z.admin.exchange_receiver),
        ),
        (Component::AuditStore, z.admin.audit_store.as_ref()),
    ];
    let mut admin_ports = BTreeMap::new();
    for (c, port) in admin {
        if let Some(port) = port {
            ports.claim(src, z.address, port, format!("`{zone}` {c} admin"))?;
            admin_ports.insert(c, *port.get_ref());
        }
    }
    let per_subject = |v: Option<&Spanned<i64>>, key: &str| {
        v.map(|v| {
            bounded(
                src,
                Some(v),
                key,
                1..=100_000u32,
                1,
                "a gateway's per-subject limit is at least one request, and at most what one \
                 gateway serves",
            )
        })
        .transpose()
    };
    let subject_rate = per_subject(z.subject_rate.as_ref(), "subject-rate")?;
    let subject_burst = per_subject(z.subject_burst.as_ref(), "subject-burst")?;
    Ok(ZoneListeners {
        subject_rate,
        subject_burst,
        gateway_host: format!("gw.{zone}.{domain}"),
        idp_host: format!("idp.{zone}.{domain}"),
        address: z.address,
        gateway_port: *z.gateway.get_ref(),
        idp_port: *z.idp.get_ref(),
        admin_ports,
        zone,
    })
}

/// A number of a link within `range`, or the default when absent.
fn bounded<T: TryFrom<i64> + Copy + Into<i64>>(
    src: &FabricSource,
    value: Option<&Spanned<i64>>,
    key: &str,
    range: std::ops::RangeInclusive<T>,
    default: T,
    why: &str,
) -> Result<T, FabricError> {
    let Some(v) = value else {
        return Ok(default);
    };
    let n = *v.get_ref();
    let (lo, hi) = ((*range.start()).into(), (*range.end()).into());
    match T::try_from(n) {
        Ok(t) if (lo..=hi).contains(&n) => Ok(t),
        _ => Err(src.problem(
            v.span(),
            format!("{key} {n} is outside {lo}..={hi}"),
            format!("outside {lo}..={hi}"),
            Some(why.to_owned()),
        )),
    }
}

fn link(
    src: &FabricSource,
    zones: &BTreeMap<ZoneName, ZoneListeners>,
    earlier: &[Link],
    raw: Spanned<RawLink>,
) -> Result<Link, FabricError> {
    let span = SourceSpan::from(raw.span());
    let l = raw.into_inner();
    for end in [&l.from, &l.to] {
        if !zones.contains_key(end.get_ref()) {
            return Err(unknown_zone(src, end, zones));
        }
    }
    let (from, to) = (l.from.get_ref().clone(), l.to.get_ref().clone());
    if from == to {
        return Err(src.problem(
            l.to.span(),
            format!("a link from `{from}` to itself"),
            "the sending zone again",
            None,
        ));
    }
    if earlier.iter().any(|e| e.from == from && e.to == to) {
        return Err(src.problem(
            l.from.span(),
            format!("a second link from `{from}` to `{to}`"),
            "second link",
            Some("one link per ordered pair of zones carries every flow between them".into()),
        ));
    }
    let address = *l.address.get_ref();
    if address.port() != 0 && earlier.iter().any(|e| e.address == address) {
        return Err(src.problem(
            l.address.span(),
            format!("link address `{address}` is used twice"),
            "used by another link",
            None,
        ));
    }
    let rate_mbps = bounded(
        src,
        Some(&l.rate_mbps),
        "rate-mbps",
        RATE_MBPS,
        0,
        "the pacing rate in megabits per second",
    )?;
    let repair_percent = bounded(
        src,
        l.repair.as_ref(),
        "repair",
        0..=MAX_REPAIR_PERCENT,
        DEFAULT_REPAIR_PERCENT,
        "repair symbols per block in percent of its source symbols; over 100 only adds load",
    )?;
    let why = format!(
        "a datagram holds the IP, UDP and link headers ({} bytes) and a symbol of at least {} \
         bytes; {MIN_MTU} is the least every IPv4 host accepts",
        IP_UDP_HEADER + DATAGRAM_HEADER,
        MIN_SYMBOL_SIZE
    );
    let mtu = bounded(
        src,
        l.mtu.as_ref(),
        "mtu",
        MIN_MTU..=MAX_MTU,
        DEFAULT_MTU,
        &why,
    )?;
    let range = block_size_range(mtu);
    let why = format!(
        "from {MIN_BLOCK_SYMBOLS} to {MAX_BLOCK_SYMBOLS} symbols of {} bytes at mtu {mtu}, and at \
         most {} MiB, which the receiver holds in memory until the block decodes",
        symbol_size(mtu),
        MAX_BLOCK_SIZE / (1024 * 1024)
    );
    let block_size = bounded(
        src,
        l.block_size.as_ref(),
        "block-size",
        range,
        default_block_size(mtu),
        &why,
    )?;
    let id = match &l.id {
        Some(v) => bounded(
            src,
            Some(v),
            "id",
            EXPLICIT_LINK_IDS,
            1,
            "ids from 2^31 up are the ones derived from the zone names when a link gives none",
        )?,
        None => derived_link_id(&from, &to),
    };
    if let Some(other) = earlier.iter().find(|e| e.id == id) {
        let span = l.id.as_ref().map_or(l.from.span(), Spanned::span);
        return Err(src.problem(
            span,
            format!(
                "link id {id} is used twice (also by the link from `{}` to `{}`)",
                other.from, other.to
            ),
            "used by another link",
            Some("give each link its own `id = N`; both ends read the id from here".into()),
        ));
    }
    let retain = match &l.retain {
        Some(v) => parse_retain(v.get_ref()).ok_or_else(|| {
            src.problem(
                v.span(),
                format!("retain `{}` is not a retention", v.get_ref()),
                "not a retention",
                Some(format!(
                    "a whole number and a unit s, m, h or d (\"36h\"), or \"0\"; at most {} days, \
                     since retained bytes fill the sender's disk",
                    MAX_RETAIN.as_secs() / 86_400
                )),
            )
        })?,
        None => DEFAULT_RETAIN,
    };
    Ok(Link {
        id,
        retain,
        from,
        to,
        address,
        rate_mbps,
        repair_percent,
        mtu,
        block_size,
        span,
    })
}

fn unknown_zone(
    src: &FabricSource,
    zone: &Spanned<ZoneName>,
    zones: &BTreeMap<ZoneName, ZoneListeners>,
) -> FabricError {
    let known: Vec<&str> = zones.keys().map(ZoneName::as_str).collect();
    src.problem(
        zone.span(),
        format!("unknown zone `{}`", zone.get_ref()),
        "no such `[zones.…]`",
        Some(format!("the zones are {}", known.join(", "))),
    )
}

fn service(
    src: &FabricSource,
    zones: &BTreeMap<ZoneName, ZoneListeners>,
    span: SourceSpan,
    name: &str,
    s: RawService,
) -> Result<ServiceBinding, FabricError> {
    if !service::is_service_name(name) {
        return Err(src.problem(
            span,
            format!("`{name}` is not a service name"),
            "not a service name",
            Some("up to 64 lowercase letters, digits and `-`".into()),
        ));
    }
    let Some(zl) = zones.get(s.zone.get_ref()) else {
        return Err(unknown_zone(src, &s.zone, zones));
    };
    let either = "give `url` and `ca`, or `folder`, or `component`";
    let target = match (s.url, s.ca, s.folder, s.component) {
        (Some(url), Some(ca), None, None) => {
            if !url.get_ref().starts_with("https://") {
                return Err(src.problem(
                    url.span(),
                    format!("service `{name}`: `{}` is not an https URL", url.get_ref()),
                    "not https",
                    None,
                ));
            }
            ServiceTarget::Url {
                url: url.into_inner(),
                ca,
            }
        }
        (Some(url), None, None, None) => {
            return Err(src.problem(
                url.span(),
                format!("service `{name}`: a `url` needs the `ca` that serves it"),
                "no `ca`",
                Some("add `ca = \"<file>\"`, relative to the data folder".into()),
            ));
        }
        (None, None, Some(folder), None) => {
            if folder.is_absolute()
                || folder
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(src.problem(
                    span,
                    format!("service `{name}`: folder must be relative and inside the data folder"),
                    "folder outside the data folder",
                    None,
                ));
            }
            ServiceTarget::Folder(folder)
        }
        (None, None, None, Some(component)) => {
            let serving: Vec<&str> = Component::SERVING.iter().map(|c| c.as_str()).collect();
            let help = Some(format!("a service may be bound to {}", serving.join(", ")));
            let c = match component.get_ref().parse::<Component>() {
                Ok(c) if Component::SERVING.contains(&c) => c,
                Ok(c) => {
                    return Err(src.problem(
                        component.span(),
                        format!("service `{name}`: the {c} serves no service"),
                        "not a serving component",
                        help,
                    ));
                }
                Err(e) => {
                    return Err(src.problem(component.span(), e.to_string(), "unknown", help));
                }
            };
            if !zl.runs(c) {
                return Err(src.problem(
                    component.span(),
                    format!("service `{name}`: zone `{}` runs no {c}", zl.zone),
                    format!("not run in `{}`", zl.zone),
                    Some(format!(
                        "give `[zones.{}]`'s `admin` an `{c}` port, or bind the service in the \
                         zone that runs it",
                        zl.zone
                    )),
                ));
            }
            ServiceTarget::Component(c)
        }
        _ => {
            return Err(src.problem(
                span,
                format!("service `{name}`: {either}"),
                "needs one target",
                None,
            ));
        }
    };
    Ok(ServiceBinding {
        zone: s.zone.into_inner(),
        target,
        span,
    })
}

#[cfg(test)]
mod tests;
