//! The layout of a data folder (DESIGN §9): every path a component or command uses is named here.
//!
//! ```text
//! DIR/fabric.toml  policy.tp  schemas/        the authority's copies (in `private`)
//! DIR/pki/trust.pem  pki/zones/<zone>/crl.pem  the PKI (see `tianping_certs::Pki`)
//! DIR/zones/<zone>/policy.tp  trust.pem  crl/<zone>.pem  schemas/   the zone's installed copies
//! DIR/zones/<zone>/<component>/tls.{pem,key}  node.{pem,key}  audit/  keys/
//! DIR/run/<zone>-<component>.sock  .addr      control sockets and bound addresses
//! DIR/run/admin-<zone>.token                  the signed-in administrator's token
//! ```

use std::path::{Path, PathBuf};

use crate::{Component, ZoneName};

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
    /// `DIR/policy.tp`, the authority's copy of the policy in force.
    pub fn policy(&self) -> PathBuf {
        self.0.join("policy.tp")
    }
    /// `DIR/schemas/`, the authority's copy of the JSON schemas of the policy's payloads.
    pub fn schemas(&self) -> PathBuf {
        self.0.join("schemas")
    }
    /// `DIR/pki`.
    pub fn pki(&self) -> PathBuf {
        self.0.join("pki")
    }
    /// `DIR/pki/trust.pem`: the root and every zone CA (the authority's copy).
    pub fn trust_bundle(&self) -> PathBuf {
        self.pki().join("trust.pem")
    }
    /// `DIR/pki/zones/<zone>/crl.pem` (the authority's copy).
    pub fn crl(&self, zone: &ZoneName) -> PathBuf {
        self.pki().join("zones").join(zone.as_str()).join("crl.pem")
    }
    /// `DIR/zones/<zone>/`: everything a zone's machines hold.
    pub fn zone(&self, zone: &ZoneName) -> PathBuf {
        self.0.join("zones").join(zone.as_str())
    }
    /// `DIR/zones/<zone>/policy.tp`: the policy the zone's components load, replaced by updates
    /// delivered into the zone.
    pub fn zone_policy(&self, zone: &ZoneName) -> PathBuf {
        self.zone(zone).join("policy.tp")
    }
    /// `DIR/zones/<zone>/trust.pem`: the trust bundle the zone's components load.
    pub fn zone_trust_bundle(&self, zone: &ZoneName) -> PathBuf {
        self.zone(zone).join("trust.pem")
    }
    /// `DIR/zones/<zone>/crl/`: the CRLs the zone's components load, one per zone.
    pub fn zone_crls(&self, zone: &ZoneName) -> PathBuf {
        self.zone(zone).join("crl")
    }
    /// `DIR/zones/<zone>/crl/<of>.pem`: zone `of`'s CRL as installed in `zone`.
    pub fn zone_crl(&self, zone: &ZoneName, of: &ZoneName) -> PathBuf {
        self.zone_crls(zone).join(format!("{of}.pem"))
    }
    /// `DIR/zones/<zone>/schemas/`: the JSON schemas the zone's components load.
    pub fn zone_schemas(&self, zone: &ZoneName) -> PathBuf {
        self.zone(zone).join("schemas")
    }
    /// `DIR/zones/<zone>/delivery/<service>/`: the default delivery folder of a service.
    pub fn delivery(&self, zone: &ZoneName, service: &str) -> PathBuf {
        self.zone(zone).join("delivery").join(service)
    }
    /// `DIR/zones/<zone>/<component>/`: the component's own stores and audit log.
    pub fn component(&self, zone: &ZoneName, component: Component) -> PathBuf {
        self.zone(zone).join(component.as_str())
    }
    /// `DIR/zones/<zone>/<component>/tls.{pem,key}`: the component's TLS server certificate.
    pub fn tls(&self, zone: &ZoneName, component: Component) -> (PathBuf, PathBuf) {
        let dir = self.component(zone, component);
        (dir.join("tls.pem"), dir.join("tls.key"))
    }
    /// `DIR/zones/<zone>/<component>/node.{pem,key}`: the component's one signing key and its
    /// `node` certificate, which sign everything it signs but OIDC tokens (checkpoints, tokens
    /// between components, approvals, directory records, bundles, receipts).
    pub fn node(&self, zone: &ZoneName, component: Component) -> (PathBuf, PathBuf) {
        let dir = self.component(zone, component);
        (dir.join("node.pem"), dir.join("node.key"))
    }
    /// `DIR/zones/<zone>/<component>/keys/`: symmetric keys (the gateway's cookie key).
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
    /// `DIR/run/<zone>-<component>.addr`: the addresses the component's listeners bound (see
    /// [`crate::publish_addr`]).
    pub fn addr_file(&self, zone: &ZoneName, component: Component) -> PathBuf {
        self.run().join(format!("{zone}-{component}.addr"))
    }
    /// `DIR/run/admin-<zone>.token`: the signed-in administrator's token.
    pub fn admin_token(&self, zone: &ZoneName) -> PathBuf {
        self.run().join(format!("admin-{zone}.token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_paths() {
        let d = DataDir::new("/d");
        let z: ZoneName = "mobile".parse().unwrap();
        let p: ZoneName = "private".parse().unwrap();
        let cases = [
            (d.socket(&z, Component::Idp), "/d/run/mobile-idp.sock"),
            (
                d.tls(&z, Component::Gateway).1,
                "/d/zones/mobile/gateway/tls.key",
            ),
            (d.crl(&z), "/d/pki/zones/mobile/crl.pem"),
            (
                d.addr_file(&p, Component::AuditStore),
                "/d/run/private-audit-store.addr",
            ),
            (
                d.node(&p, Component::AuditStore).0,
                "/d/zones/private/audit-store/node.pem",
            ),
            (d.zone_policy(&z), "/d/zones/mobile/policy.tp"),
            (d.zone_trust_bundle(&z), "/d/zones/mobile/trust.pem"),
            (d.zone_crl(&z, &p), "/d/zones/mobile/crl/private.pem"),
            (d.zone_schemas(&z), "/d/zones/mobile/schemas"),
            (
                d.delivery(&z, "mobile-casefiles"),
                "/d/zones/mobile/delivery/mobile-casefiles",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, Path::new(want));
        }
    }
}
