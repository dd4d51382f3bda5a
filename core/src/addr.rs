//! Addresses that listeners bound (ports may be 0 in `fabric.toml`): each listener publishes the
//! address it got in `run/<zone>-<component>.addr`, and the CLI and other components read it
//! there, falling back to the port `fabric.toml` gives when no address is published.
//!
//! The file holds one line per listener, `<listener> <address>`:
//!
//! ```text
//! public 127.0.0.1:41733
//! admin 127.0.0.1:41735
//! link-from-internet 127.0.0.1:50211
//! ```
//!
//! A component removes its address file when it starts, but what it bound is also kept in
//! `run/<zone>-<component>.ports` (same format), which nothing removes: a component started
//! again binds its port-0 listeners on the ports it had ([`rebind_addr`]), so what its peers
//! learnt of it still holds — an IdP's issuer URL, a gateway's redirect URI registered at the
//! IdP, a receiver's link port a sender sends to.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Mutex;

use crate::files::{Existing, FileError, FileMode, write_atomic};
use crate::{Component, DataDir, Fabric, ZoneName};

/// One listener of a component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Listener {
    /// The gateway's or the IdP's TLS/QUIC listener (`gateway`, `idp` in `[zones.<zone>]`).
    Public,
    /// The component's admin listener (`/healthz`, `/metrics`).
    Admin,
    /// The receiver's UDP socket for the link from a zone.
    Link {
        /// The sending zone.
        from: ZoneName,
    },
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Public => f.write_str("public"),
            Listener::Admin => f.write_str("admin"),
            Listener::Link { from } => write!(f, "link-from-{from}"),
        }
    }
}

impl FromStr for Listener {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "public" => Ok(Listener::Public),
            "admin" => Ok(Listener::Admin),
            _ => {
                let from = s.strip_prefix("link-from-").ok_or(())?;
                Ok(Listener::Link {
                    from: from.parse().map_err(|_| ())?,
                })
            }
        }
    }
}

/// Why an address could not be published or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The address file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The address file holds a line that is not `<listener> <address>`.
    #[error("`{path}` line {line}: `{text}` is not `<listener> <address>`")]
    Malformed {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// The line (shortened).
        text: String,
    },
    /// `fabric.toml` has no such listener.
    #[error("`fabric.toml` gives zone `{zone}`'s {component} no {listener} listener")]
    NoListener {
        /// The zone.
        zone: ZoneName,
        /// The component.
        component: Component,
        /// The listener.
        listener: String,
    },
    /// The port is 0 in `fabric.toml` and no address is published.
    #[error(
        "zone `{zone}`'s {component} has published no {listener} address in `{path}` and \
         `fabric.toml` gives port 0 (is it running?)"
    )]
    NotPublished {
        /// The zone.
        zone: ZoneName,
        /// The component.
        component: Component,
        /// The listener.
        listener: String,
        /// The address file.
        path: String,
    },
}

/// Serializes read-modify-write of address files within a process (each file has one owner
/// process, whose listeners may start on several threads).
static PUBLISHING: Mutex<()> = Mutex::new(());

/// Publishes the address `listener` bound, replacing the file in one rename so a reader sees the
/// old addresses or the new ones.
pub fn publish_addr(
    data: &DataDir,
    zone: &ZoneName,
    component: Component,
    listener: &Listener,
    addr: SocketAddr,
) -> Result<(), AddrError> {
    let _guard = PUBLISHING.lock().unwrap_or_else(|p| p.into_inner());
    let path = data.addr_file(zone, component);
    let mut addrs = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&path.display().to_string(), &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(FileError::new("read", &path, e).into()),
    };
    addrs.insert(listener.clone(), addr);
    write_atomic(
        &path,
        render(&addrs).as_bytes(),
        FileMode::Public,
        Existing::Replace,
    )?;
    // what it bound, kept for its next start (a file that does not parse is started afresh)
    let kept = ports_file(data, zone, component);
    let mut ports = kept_ports(&kept);
    if ports.get(listener) != Some(&addr) {
        ports.insert(listener.clone(), addr);
        write_atomic(
            &kept,
            render(&ports).as_bytes(),
            FileMode::Public,
            Existing::Replace,
        )?;
    }
    Ok(())
}

/// An address file's text: one `<listener> <address>` line each.
fn render(addrs: &BTreeMap<Listener, SocketAddr>) -> String {
    addrs.iter().map(|(l, a)| format!("{l} {a}\n")).collect()
}

/// `DIR/run/<zone>-<component>.ports`: the addresses the component's listeners last bound.
fn ports_file(data: &DataDir, zone: &ZoneName, component: Component) -> std::path::PathBuf {
    data.run().join(format!("{zone}-{component}.ports"))
}

/// The addresses kept in a ports file; none when it is missing or does not parse.
fn kept_ports(path: &std::path::Path) -> BTreeMap<Listener, SocketAddr> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| parse("", &t).ok())
        .unwrap_or_default()
}

/// Where `listener` binds: `configured`, or, when its port is 0 and the component bound that
/// listener on the same IP before, the port it had then, so a restarted component keeps the
/// address its peers know. A caller that cannot bind the returned address (the port was taken
/// meanwhile) binds `configured`.
pub fn rebind_addr(
    data: &DataDir,
    zone: &ZoneName,
    component: Component,
    listener: &Listener,
    configured: SocketAddr,
) -> SocketAddr {
    if configured.port() != 0 {
        return configured;
    }
    kept_ports(&ports_file(data, zone, component))
        .get(listener)
        .copied()
        .filter(|a| a.ip() == configured.ip())
        .unwrap_or(configured)
}

/// Removes a component's published addresses (at its start, before it binds, so nobody reads a
/// previous run's).
pub fn clear_published_addrs(
    data: &DataDir,
    zone: &ZoneName,
    component: Component,
) -> Result<(), AddrError> {
    let path = data.addr_file(zone, component);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::new("remove", &path, e).into()),
    }
}

/// Every address a component published (none when it has published nothing).
pub fn published_addrs(
    data: &DataDir,
    zone: &ZoneName,
    component: Component,
) -> Result<BTreeMap<Listener, SocketAddr>, AddrError> {
    let path = data.addr_file(zone, component);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&path.display().to_string(), &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(FileError::new("read", &path, e).into()),
    }
}

/// Where to reach a listener: the address it published, else the one `fabric.toml` gives unless
/// its port is 0.
pub fn listener_addr(
    data: &DataDir,
    fabric: &Fabric,
    zone: &ZoneName,
    component: Component,
    listener: &Listener,
) -> Result<SocketAddr, AddrError> {
    if let Some(a) = published_addrs(data, zone, component)?.get(listener) {
        return Ok(*a);
    }
    let configured = fabric
        .configured_addr(zone, component, listener)
        .ok_or_else(|| AddrError::NoListener {
            zone: zone.clone(),
            component,
            listener: listener.to_string(),
        })?;
    if configured.port() == 0 {
        return Err(AddrError::NotPublished {
            zone: zone.clone(),
            component,
            listener: listener.to_string(),
            path: data.addr_file(zone, component).display().to_string(),
        });
    }
    Ok(configured)
}

impl Fabric {
    /// The address `fabric.toml` gives a listener (port 0: chosen at start), if it has one.
    pub fn configured_addr(
        &self,
        zone: &ZoneName,
        component: Component,
        listener: &Listener,
    ) -> Option<SocketAddr> {
        let z = self.zone(zone)?;
        match listener {
            Listener::Public => match component {
                Component::Gateway => Some(SocketAddr::new(z.address, z.gateway_port)),
                Component::Idp => Some(SocketAddr::new(z.address, z.idp_port)),
                _ => None,
            },
            // an admin listener is on loopback: the zone's own when it is one, else the
            // machine's (a zone on its own address, as in `--netns` mode)
            Listener::Admin => Some(SocketAddr::new(
                if z.address.is_loopback() {
                    z.address
                } else {
                    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
                },
                *z.admin_ports.get(&component)?,
            )),
            Listener::Link { from } if component == Component::ExchangeReceiver => {
                Some(self.link(from, zone)?.address)
            }
            Listener::Link { .. } => None,
        }
    }
}

fn parse(path: &str, text: &str) -> Result<BTreeMap<Listener, SocketAddr>, AddrError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let parsed = line
            .split_once(' ')
            .and_then(|(l, a)| Some((l.parse::<Listener>().ok()?, a.parse::<SocketAddr>().ok()?)));
        let Some((listener, addr)) = parsed else {
            return Err(AddrError::Malformed {
                path: path.to_owned(),
                line: i + 1,
                text: line.chars().take(80).collect(),
            });
        };
        out.insert(listener, addr);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(s: &str) -> ZoneName {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_round_trip_and_fall_back_to_the_fabric() {
        let tmp = tempfile::TempDir::new().unwrap();
        let data = DataDir::new(tmp.path());
        std::fs::create_dir(data.run()).unwrap();
        let text = Fabric::default_text(&[], &[]).replace("gateway = 7400", "gateway = 0");
        let fabric = Fabric::parse(&text).unwrap();
        let (internet, private) = (zone("internet"), zone("private"));
        let gw = Component::Gateway;

        // port 0 and nothing published: refused, naming the file
        let err = listener_addr(&data, &fabric, &internet, gw, &Listener::Public).unwrap_err();
        assert!(err.to_string().contains("internet-gateway.addr"), "{err}");
        // a fixed port: the fabric's
        let admin = listener_addr(&data, &fabric, &internet, gw, &Listener::Admin).unwrap();
        assert_eq!(admin.port(), 7402);

        let bound: SocketAddr = "127.0.0.1:41733".parse().unwrap();
        publish_addr(&data, &internet, gw, &Listener::Public, bound).unwrap();
        let link = Listener::Link {
            from: internet.clone(),
        };
        let rx = Component::ExchangeReceiver;
        let udp: SocketAddr = "[::1]:50211".parse().unwrap();
        publish_addr(&data, &private, rx, &link, udp).unwrap();
        publish_addr(&data, &private, rx, &Listener::Admin, bound).unwrap();
        assert_eq!(
            listener_addr(&data, &fabric, &internet, gw, &Listener::Public).unwrap(),
            bound
        );
        assert_eq!(
            listener_addr(&data, &fabric, &private, rx, &link).unwrap(),
            udp
        );
        assert_eq!(published_addrs(&data, &private, rx).unwrap().len(), 2);
        let text = std::fs::read_to_string(data.addr_file(&private, rx)).unwrap();
        assert_eq!(
            text,
            "admin 127.0.0.1:41733\nlink-from-internet [::1]:50211\n"
        );

        // unknown listeners and broken files are refused
        let err = listener_addr(&data, &fabric, &internet, rx, &Listener::Public).unwrap_err();
        assert!(matches!(err, AddrError::NoListener { .. }), "{err}");
        std::fs::write(data.addr_file(&internet, gw), "public nowhere\n").unwrap();
        let err = published_addrs(&data, &internet, gw).unwrap_err();
        assert!(matches!(err, AddrError::Malformed { line: 1, .. }), "{err}");

        clear_published_addrs(&data, &internet, gw).unwrap();
        clear_published_addrs(&data, &internet, gw).unwrap();
        assert!(published_addrs(&data, &internet, gw).unwrap().is_empty());
    }

    #[test]
    fn a_restarted_component_binds_the_ports_it_had() {
        let tmp = tempfile::TempDir::new().unwrap();
        let data = DataDir::new(tmp.path());
        std::fs::create_dir(data.run()).unwrap();
        let internet = zone("internet");
        let idp = Component::Idp;
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // never bound: the configured address
        assert_eq!(
            rebind_addr(&data, &internet, idp, &Listener::Public, any),
            any
        );
        let got: SocketAddr = "127.0.0.1:41733".parse().unwrap();
        publish_addr(&data, &internet, idp, &Listener::Public, got).unwrap();
        // started again: its published addresses are gone, its port is kept
        clear_published_addrs(&data, &internet, idp).unwrap();
        assert!(published_addrs(&data, &internet, idp).unwrap().is_empty());
        assert_eq!(
            rebind_addr(&data, &internet, idp, &Listener::Public, any),
            got
        );
        // another listener, a configured port, another IP: as configured
        assert_eq!(
            rebind_addr(&data, &internet, idp, &Listener::Admin, any),
            any
        );
        let fixed: SocketAddr = "127.0.0.1:7401".parse().unwrap();
        assert_eq!(
            rebind_addr(&data, &internet, idp, &Listener::Public, fixed),
            fixed
        );
        let elsewhere: SocketAddr = "10.77.0.1:0".parse().unwrap();
        assert_eq!(
            rebind_addr(&data, &internet, idp, &Listener::Public, elsewhere),
            elsewhere
        );
    }

    #[test]
    fn listener_names_round_trip() {
        for l in [
            Listener::Public,
            Listener::Admin,
            Listener::Link {
                from: zone("mobile"),
            },
        ] {
            assert_eq!(l.to_string().parse::<Listener>(), Ok(l));
        }
        assert!("link-from-Moon".parse::<Listener>().is_err());
    }
}
