//! The PKI every IdP test serves TLS from: a root, the `private` zone's CA and a server
//! certificate for one host name, written as `tls.pem`, `tls.key` and `trust.pem` under a folder.

use std::path::Path;

use tianping_certs::{
    CaCert, CertKind, ClientAuth, KeyAlg, LeafRequest, ReloadableServerConfig, ServerTlsBuilder,
};
use tianping_core::UnixTime;

/// The server's TLS settings for `host` (no client certificates asked), and the root
/// certificate, as PEM, that a client of the test trusts.
pub(crate) fn zone_tls(dir: &Path, host: &str) -> (ReloadableServerConfig, String) {
    let real_now = UnixTime::from_system_time(std::time::SystemTime::now());
    let root = CaCert::new_root("Court", KeyAlg::EcP256, real_now).unwrap();
    let zone_ca = root
        .new_zone(
            &"private".parse().unwrap(),
            "Court",
            KeyAlg::EcP256,
            real_now,
        )
        .unwrap();
    let mut req = LeafRequest::new(CertKind::Server, "idp");
    req.dns = vec![host.to_owned()];
    let leaf = zone_ca.issue(&req, real_now).unwrap();
    let p = |n: &str| dir.join(n);
    std::fs::write(p("tls.pem"), &leaf.chain_pem).unwrap();
    std::fs::write(p("tls.key"), leaf.key_pem.expose()).unwrap();
    std::fs::write(p("trust.pem"), root.cert_pem()).unwrap();
    let tls = ServerTlsBuilder::new(p("tls.pem"), p("tls.key"))
        .client_auth(ClientAuth::None, p("trust.pem"), vec![])
        .build()
        .unwrap();
    (tls, root.cert_pem().to_owned())
}
