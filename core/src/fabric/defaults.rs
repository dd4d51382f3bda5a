//! The default `fabric.toml` that `init` writes.

use std::fmt::Write as _;

use super::service::default_binding;
use crate::{Fabric, ZoneName};

/// Port numbers of the default fabric: zone `i` uses `ZONE_BASE + 10 i ..`, links `LINK_BASE ..`.
const ZONE_BASE: u16 = 7400;
const LINK_BASE: u16 = 7600;

/// The zone whose machines run the audit store by default (DESIGN §9).
pub const AUDIT_STORE_ZONE: &str = "private";

impl Fabric {
    /// The text of the default `fabric.toml`: the five zones on `127.0.0.1` (the audit store in
    /// [`AUDIT_STORE_ZONE`]), one link per ordered pair of zones but none out of a `sealed` zone,
    /// and each `(service, zone)` bound to its component ([`crate::default_binding`]) or else to
    /// a delivery folder in its zone.
    pub fn default_text(services: &[(String, ZoneName)], sealed: &[ZoneName]) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# Tianping fabric: zones and their listeners, one-way links, service bindings.\n\
             # Host names are gw.<zone>.<domain> and idp.<zone>.<domain>. A port of 0 is chosen\n\
             # when the listener starts and published in run/<zone>-<component>.addr.\n\n\
             [fabric]\nname = \"tianping\"\ndomain = \"tianping.localhost\"\n"
        );
        let zones: Vec<ZoneName> = crate::DEFAULT_ZONES
            .iter()
            .filter_map(|z| z.parse().ok())
            .collect();
        for (i, zone) in zones.iter().enumerate() {
            let base = ZONE_BASE + 10 * u16::try_from(i).unwrap_or(0);
            let audit_store = if zone.as_str() == AUDIT_STORE_ZONE {
                format!(", audit-store = {}", base + 6)
            } else {
                String::new()
            };
            let _ = writeln!(
                t,
                "[zones.{zone}]\naddress = \"127.0.0.1\"\ngateway = {}\nidp = {}\n\
                 admin = {{ gateway = {}, idp = {}, exchange-sender = {}, exchange-receiver = {}{audit_store} }}\n",
                base,
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 5
            );
        }
        let _ = writeln!(
            t,
            "# Each link: repair = percent of repair symbols per block, mtu = largest datagram,\n\
             # block-size = bytes per RaptorQ source block (defaults 5, 1500, 1024 symbols),\n\
             # retain = how long sent transfers are kept for `tianping exchange resend` (24h),\n\
             # id = the link's number in datagrams (default: derived from the zone names).\n"
        );
        let mut port = LINK_BASE;
        for from in zones.iter().filter(|z| !sealed.contains(z)) {
            for to in zones.iter().filter(|to| *to != from) {
                let _ = writeln!(
                    t,
                    "[[links]]\nfrom = \"{from}\"\nto = \"{to}\"\naddress = \"127.0.0.1:{port}\"\n\
                     rate-mbps = 200\nrepair = 5\nmtu = 1500\n"
                );
                port += 1;
            }
        }
        for (name, zone) in services {
            let _ = match default_binding(name) {
                Some(c) => writeln!(
                    t,
                    "[services.{name}]\nzone = \"{zone}\"\ncomponent = \"{c}\"\n"
                ),
                None => writeln!(
                    t,
                    "[services.{name}]\nzone = \"{zone}\"\nfolder = \"zones/{zone}/delivery/{name}\"\n"
                ),
            };
        }
        t
    }
}
