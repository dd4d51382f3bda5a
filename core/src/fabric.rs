//! The installation's `fabric.toml` (DESIGN §9): zones and their listeners, links between zones,
//! and the bindings of the policy's service names to addresses or delivery folders; and the
//! layout of the data folder around it.
//!
//! Loading is strict: an unknown key, a bad value or an inconsistent binding is refused with the
//! line and column it stands on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::ZoneName;

/// A component process of a zone, each with its own folder, certificate and control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// The zone's front door.
    Gateway,
    /// The zone's OpenID Connect provider.
    Idp,
    /// The sending end of the zone's outgoing links.
    ExchangeSender,
    /// The receiving end of the zone's incoming links.
    ExchangeReceiver,
}

impl Component {
    /// Every component, in start-up order.
    pub const ALL: [Component; 4] = [
        Component::ExchangeReceiver,
        Component::ExchangeSender,
        Component::Idp,
        Component::Gateway,
    ];

    /// The component's name in paths and sockets.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Idp => "idp",
            Component::ExchangeSender => "exchange-sender",
            Component::ExchangeReceiver => "exchange-receiver",
        }
    }

    /// Whether the component signs bundles, checkpoints or assertions as an exchange node and so
    /// also holds `node.{pem,key}`.
    pub fn is_exchange_node(self) -> bool {
        matches!(
            self,
            Component::ExchangeSender | Component::ExchangeReceiver
        )
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The layout of a data folder (DESIGN §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(PathBuf);

impl DataDir {
    /// The layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }
    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.0
    }
    /// `DIR/fabric.toml`.
    pub fn fabric(&self) -> PathBuf {
        self.0.join("fabric.toml")
    }
    /// `DIR/policy.tp`, the policy in force.
    pub fn policy(&self) -> PathBuf {
        self.0.join("policy.tp")
    }
    /// `DIR/pki`.
    pub fn pki(&self) -> PathBuf {
        self.0.join("pki")
    }
    /// `DIR/pki/trust.pem`: the root and every zone CA.
    pub fn trust_bundle(&self) -> PathBuf {
        self.pki().join("trust.pem")
    }
    /// `DIR/pki/zones/<zone>/crl.pem`.
    pub fn crl(&self, zone: &ZoneName) -> PathBuf {
        self.pki().join("zones").join(zone.as_str()).join("crl.pem")
    }
    /// `DIR/zones/<zone>/<component>/`: the component's own stores and audit log.
    pub fn component(&self, zone: &ZoneName, component: Component) -> PathBuf {
        self.0
            .join("zones")
            .join(zone.as_str())
            .join(component.as_str())
    }
    /// `DIR/zones/<zone>/<component>/tls.{pem,key}`.
    pub fn tls(&self, zone: &ZoneName, component: Component) -> (PathBuf, PathBuf) {
        let dir = self.component(zone, component);
        (dir.join("tls.pem"), dir.join("tls.key"))
    }
    /// `DIR/zones/<zone>/<component>/node.{pem,key}` for exchange nodes.
    pub fn node(&self, zone: &ZoneName, component: Component) -> (PathBuf, PathBuf) {
        let dir = self.component(zone, component);
        (dir.join("node.pem"), dir.join("node.key"))
    }
    /// `DIR/zones/<zone>/<component>/keys/`: the gateway's assertion and cookie keys.
    pub fn keys(&self, zone: &ZoneName, component: Component) -> PathBuf {
        self.component(zone, component).join("keys")
    }
    /// `DIR/zones/<zone>/<component>/audit/`: the component's own audit log.
    pub fn audit_log(&self, zone: &ZoneName, component: Component) -> PathBuf {
        self.component(zone, component).join("audit")
    }
    /// `DIR/run/`.
    pub fn run(&self) -> PathBuf {
        self.0.join("run")
    }
    /// `DIR/run/<zone>-<component>.sock`: the component's control socket.
    pub fn socket(&self, zone: &ZoneName, component: Component) -> PathBuf {
        self.run().join(format!("{zone}-{component}.sock"))
    }
    /// `DIR/run/admin-<zone>.token`: the signed-in administrator's token.
    pub fn admin_token(&self, zone: &ZoneName) -> PathBuf {
        self.run().join(format!("admin-{zone}.token"))
    }
}

/// Why a `fabric.toml` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FabricError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// A syntax error, an unknown key, a bad value or an inconsistency, at a place in the file.
    #[error("fabric.toml line {line}, column {column}: {message}")]
    Invalid {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, in the user's terms.
        message: String,
    },
}

impl FabricError {
    fn at(text: &str, offset: usize, message: impl Into<String>) -> Self {
        let before = text.get(..offset.min(text.len())).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        FabricError::Invalid {
            line,
            column,
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFabric {
    fabric: RawHeader,
    zones: BTreeMap<Spanned<ZoneName>, RawZone>,
    #[serde(default)]
    links: Vec<RawLink>,
    #[serde(default)]
    services: BTreeMap<Spanned<String>, RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    domain: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawZone {
    address: IpAddr,
    gateway: Spanned<u16>,
    idp: Spanned<u16>,
    admin: RawAdmin,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAdmin {
    gateway: Spanned<u16>,
    idp: Spanned<u16>,
    exchange_sender: Spanned<u16>,
    exchange_receiver: Spanned<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLink {
    from: Spanned<ZoneName>,
    to: Spanned<ZoneName>,
    address: Spanned<SocketAddr>,
    rate_mbps: Spanned<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawService {
    zone: Spanned<ZoneName>,
    url: Option<Spanned<String>>,
    ca: Option<PathBuf>,
    folder: Option<PathBuf>,
}

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
    /// The gateway's port (TCP for TLS, UDP for QUIC).
    pub gateway_port: u16,
    /// The IdP's port.
    pub idp_port: u16,
    /// The admin listener (`/healthz`, `/metrics`) of each component.
    pub admin_ports: BTreeMap<Component, u16>,
}

/// One one-way link, carrying every flow from one zone to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The sending zone.
    pub from: ZoneName,
    /// The receiving zone.
    pub to: ZoneName,
    /// The UDP address the receiver listens on.
    pub address: SocketAddr,
    /// The sender's pacing rate, in megabits per second.
    pub rate_mbps: u32,
}

/// Where a service of the policy is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceTarget {
    /// An HTTPS URL, with the CA file (relative to the data folder) that serves it.
    Url {
        /// `https://…`.
        url: String,
        /// The CA bundle that verifies the service's certificate.
        ca: PathBuf,
    },
    /// A delivery folder (relative to the data folder) where files are written atomically.
    Folder(PathBuf),
}

/// The binding of a service name to its zone and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceBinding {
    /// The zone the service lives in.
    pub zone: ZoneName,
    /// Where it is reached.
    pub target: ServiceTarget,
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
}

/// Port numbers of the default fabric: zone `i` uses `ZONE_BASE + 10 i ..`, links `LINK_BASE ..`.
const ZONE_BASE: u16 = 7400;
const LINK_BASE: u16 = 7600;

impl Fabric {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, FabricError> {
        let text = std::fs::read_to_string(path).map_err(|e| FabricError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text)
    }

    /// Parses and checks the text of a `fabric.toml`.
    pub fn parse(text: &str) -> Result<Self, FabricError> {
        let raw: RawFabric = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            FabricError::at(text, offset, e.message().to_owned())
        })?;
        let err = |offset: usize, msg: String| FabricError::at(text, offset, msg);

        let domain = raw.fabric.domain.get_ref();
        let domain_ok = !domain.is_empty()
            && domain.len() <= 200
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !domain_ok {
            return Err(err(
                raw.fabric.domain.span().start,
                format!("`{domain}` is not a DNS name"),
            ));
        }

        let mut ports_seen: BTreeMap<(IpAddr, u16), String> = BTreeMap::new();
        let mut claim = |ip: IpAddr, port: &Spanned<u16>, who: String| -> Result<(), FabricError> {
            let p = *port.get_ref();
            if p == 0 {
                return Err(err(
                    port.span().start,
                    format!("{who}: port 0 is not allowed"),
                ));
            }
            if let Some(other) = ports_seen.insert((ip, p), who.clone()) {
                return Err(err(
                    port.span().start,
                    format!("{who}: port {p} on {ip} is already used by {other}"),
                ));
            }
            Ok(())
        };

        let mut zones = BTreeMap::new();
        for (name, z) in raw.zones {
            let zone = name.into_inner();
            claim(z.address, &z.gateway, format!("`{zone}` gateway"))?;
            claim(z.address, &z.idp, format!("`{zone}` idp"))?;
            let admin = [
                (Component::Gateway, &z.admin.gateway),
                (Component::Idp, &z.admin.idp),
                (Component::ExchangeSender, &z.admin.exchange_sender),
                (Component::ExchangeReceiver, &z.admin.exchange_receiver),
            ];
            let mut admin_ports = BTreeMap::new();
            for (c, port) in admin {
                claim(z.address, port, format!("`{zone}` {c} admin"))?;
                admin_ports.insert(c, *port.get_ref());
            }
            zones.insert(
                zone.clone(),
                ZoneListeners {
                    gateway_host: format!("gw.{zone}.{domain}"),
                    idp_host: format!("idp.{zone}.{domain}"),
                    address: z.address,
                    gateway_port: *z.gateway.get_ref(),
                    idp_port: *z.idp.get_ref(),
                    admin_ports,
                    zone,
                },
            );
        }

        let mut links = Vec::new();
        let mut pairs = BTreeSet::new();
        let mut link_addrs = BTreeSet::new();
        for l in raw.links {
            for end in [&l.from, &l.to] {
                if !zones.contains_key(end.get_ref()) {
                    return Err(err(
                        end.span().start,
                        format!("unknown zone `{}`", end.get_ref()),
                    ));
                }
            }
            let (from, to) = (l.from.get_ref().clone(), l.to.get_ref().clone());
            if from == to {
                return Err(err(
                    l.to.span().start,
                    format!("a link from `{from}` to itself"),
                ));
            }
            if !pairs.insert((from.clone(), to.clone())) {
                return Err(err(
                    l.from.span().start,
                    format!("a second link from `{from}` to `{to}`"),
                ));
            }
            if !link_addrs.insert(*l.address.get_ref()) {
                return Err(err(
                    l.address.span().start,
                    format!("link address `{}` is used twice", l.address.get_ref()),
                ));
            }
            let rate = *l.rate_mbps.get_ref();
            if !(1..=100_000).contains(&rate) {
                return Err(err(
                    l.rate_mbps.span().start,
                    format!("rate-mbps {rate} is outside 1..=100000"),
                ));
            }
            links.push(Link {
                from,
                to,
                address: *l.address.get_ref(),
                rate_mbps: rate,
            });
        }

        let mut services = BTreeMap::new();
        for (name, s) in raw.services {
            let start = name.span().start;
            let name = name.into_inner();
            let name_ok = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !name_ok {
                return Err(err(start, format!("`{name}` is not a service name")));
            }
            if !zones.contains_key(s.zone.get_ref()) {
                return Err(err(
                    s.zone.span().start,
                    format!("unknown zone `{}`", s.zone.get_ref()),
                ));
            }
            let target = match (s.url, s.ca, s.folder) {
                (Some(url), Some(ca), None) => {
                    if !url.get_ref().starts_with("https://") {
                        return Err(err(
                            url.span().start,
                            format!("service `{name}`: `{}` is not an https URL", url.get_ref()),
                        ));
                    }
                    ServiceTarget::Url {
                        url: url.into_inner(),
                        ca,
                    }
                }
                (Some(url), None, None) => {
                    return Err(err(
                        url.span().start,
                        format!("service `{name}`: a `url` needs the `ca` that serves it"),
                    ));
                }
                (None, None, Some(folder)) => {
                    if folder.is_absolute()
                        || folder
                            .components()
                            .any(|c| matches!(c, std::path::Component::ParentDir))
                    {
                        return Err(err(
                            start,
                            format!(
                                "service `{name}`: folder must be relative and inside the data folder"
                            ),
                        ));
                    }
                    ServiceTarget::Folder(folder)
                }
                _ => {
                    return Err(err(
                        start,
                        format!("service `{name}`: give either `url` and `ca`, or `folder`"),
                    ));
                }
            };
            services.insert(
                name,
                ServiceBinding {
                    zone: s.zone.into_inner(),
                    target,
                },
            );
        }

        Ok(Fabric {
            name: raw.fabric.name,
            domain: domain.clone(),
            zones,
            links,
            services,
        })
    }

    /// The text of the default `fabric.toml`: the five zones on `127.0.0.1`, one link per ordered
    /// pair of zones, and each `(service, zone)` bound to a delivery folder in its zone.
    pub fn default_text(services: &[(String, ZoneName)]) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# Tianping fabric: zones and their listeners, one-way links, service bindings.\n\
             # Host names are gw.<zone>.<domain> and idp.<zone>.<domain>.\n\n\
             [fabric]\nname = \"tianping\"\ndomain = \"tianping.localhost\"\n"
        );
        let zones: Vec<ZoneName> = crate::DEFAULT_ZONES
            .iter()
            .filter_map(|z| z.parse().ok())
            .collect();
        for (i, zone) in zones.iter().enumerate() {
            let base = ZONE_BASE + 10 * u16::try_from(i).unwrap_or(0);
            let _ = writeln!(
                t,
                "[zones.{zone}]\naddress = \"127.0.0.1\"\ngateway = {}\nidp = {}\n\
                 admin = {{ gateway = {}, idp = {}, exchange-sender = {}, exchange-receiver = {} }}\n",
                base,
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 5
            );
        }
        let mut port = LINK_BASE;
        for from in &zones {
            for to in &zones {
                if from != to {
                    let _ = writeln!(
                        t,
                        "[[links]]\nfrom = \"{from}\"\nto = \"{to}\"\naddress = \"127.0.0.1:{port}\"\nrate-mbps = 200\n"
                    );
                    port += 1;
                }
            }
        }
        for (name, zone) in services {
            let _ = writeln!(
                t,
                "[services.{name}]\nzone = \"{zone}\"\nfolder = \"zones/{zone}/delivery/{name}\"\n"
            );
        }
        t
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

    /// Every service binding by name.
    pub fn services(&self) -> &BTreeMap<String, ServiceBinding> {
        &self.services
    }

    /// Resolves one of the fabric's host names (`gw.<zone>.<domain>`, `idp.<zone>.<domain>`) to
    /// the address and port that serve it.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Vec<(String, ZoneName)> {
        vec![
            ("filing-intake".into(), "private".parse().unwrap()),
            ("judgment-site".into(), "internet".parse().unwrap()),
        ]
    }

    #[test]
    fn default_fabric_loads() {
        let f = Fabric::parse(&Fabric::default_text(&services())).unwrap();
        assert_eq!(f.zones().count(), 5);
        assert_eq!(f.links().len(), 20);
        let internet: ZoneName = "internet".parse().unwrap();
        let private: ZoneName = "private".parse().unwrap();
        let z = f.zone(&internet).unwrap();
        assert_eq!(z.gateway_host, "gw.internet.tianping.localhost");
        assert_eq!(
            f.resolve("idp.private.tianping.localhost").unwrap().port(),
            7431
        );
        assert!(f.link(&internet, &private).is_some());
        assert!(matches!(
            f.services()["judgment-site"].target,
            ServiceTarget::Folder(ref p) if p == Path::new("zones/internet/delivery/judgment-site")
        ));
    }

    fn line_of(text: &str) -> (usize, String) {
        match Fabric::parse(text).unwrap_err() {
            FabricError::Invalid { line, message, .. } => (line, message),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn unknown_key_points_at_its_line() {
        let text =
            Fabric::default_text(&[]).replacen("idp = 7401", "idp = 7401\ncolour = \"red\"", 1);
        let expected = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
        let (line, msg) = line_of(&text);
        assert_eq!(line, expected);
        assert!(msg.contains("colour"), "{msg}");
    }

    #[test]
    fn bad_values_point_at_their_line() {
        let base = Fabric::default_text(&services());
        let cases = [
            (
                "address = \"127.0.0.1:7600\"",
                "address = \"127.0.0.1:7601\"",
                "used twice",
            ),
            ("to = \"private\"", "to = \"Private\"", "not a zone name"),
            ("to = \"private\"", "to = \"moon\"", "unknown zone `moon`"),
            ("rate-mbps = 200", "rate-mbps = 0", "outside"),
            ("idp = 7401", "idp = 7400", "already used"),
            (
                "folder = \"zones/private/delivery/filing-intake\"",
                "folder = \"../etc\"",
                "inside the data folder",
            ),
            (
                "folder = \"zones/private/delivery/filing-intake\"",
                "url = \"http://x\"\nca = \"a.pem\"",
                "not an https URL",
            ),
        ];
        for (from, to, want) in cases {
            let text = base.replacen(from, to, 1);
            assert_ne!(text, base, "{from}");
            let (line, msg) = line_of(&text);
            assert!(msg.contains(want), "{msg} should contain {want}");
            let bad_line = text.lines().nth(line - 1).unwrap();
            assert!(
                to.lines().any(|l| bad_line.contains(l))
                    || bad_line.starts_with("[services")
                    || bad_line.starts_with("from"),
                "line {line} `{bad_line}` for {to}"
            );
        }
    }

    #[test]
    fn data_dir_paths() {
        let d = DataDir::new("/d");
        let z: ZoneName = "mobile".parse().unwrap();
        assert_eq!(
            d.socket(&z, Component::Idp),
            Path::new("/d/run/mobile-idp.sock")
        );
        assert_eq!(
            d.tls(&z, Component::Gateway).1,
            Path::new("/d/zones/mobile/gateway/tls.key")
        );
        assert_eq!(d.crl(&z), Path::new("/d/pki/zones/mobile/crl.pem"));
    }
}
