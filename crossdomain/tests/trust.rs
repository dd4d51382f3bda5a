//! `ZoneTrust` (feature `daemon`): a bundle is trusted when a node certificate of the
//! manifest's source zone signed it, and refused for another zone's node, a person's
//! certificate, or a key the certificate does not hold.
#![cfg(feature = "daemon")]
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod bundles;

use tianping_certs::{CaCert, CertKind, IssuedCert, KeyAlg, LeafRequest, TrustStore};
use tianping_core::{Algorithm, RingSigner, UnixTime};
use tianping_crossdomain::{BundleHeader, ZoneTrust};

const T0: u64 = 1_800_000_000;

fn now() -> UnixTime {
    UnixTime::from_secs(T0)
}

fn signer_of(cert: &IssuedCert) -> RingSigner {
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert.key_pem.expose().as_bytes())
        .map(|k: rustls_pki_types::PrivatePkcs8KeyDer<'_>| k.secret_pkcs8_der().to_vec())
        .unwrap();
    RingSigner::from_pkcs8(Algorithm::Ed25519, &der).unwrap()
}

fn header(source: &str, cert: &IssuedCert, signer: &RingSigner) -> BundleHeader {
    BundleHeader::sign(
        bundles::manifest(source, 64 * 1024),
        vec![],
        vec![],
        cert.leaf_der.clone(),
        signer,
    )
    .unwrap()
}

#[test]
fn only_a_node_of_the_source_zone_signs_its_bundles() {
    let root = CaCert::new_root("Court", KeyAlg::Ed25519, now()).unwrap();
    let private = root
        .new_zone(&"private".parse().unwrap(), "Court", KeyAlg::Ed25519, now())
        .unwrap();
    let internet = root
        .new_zone(
            &"internet".parse().unwrap(),
            "Court",
            KeyAlg::Ed25519,
            now(),
        )
        .unwrap();
    let bundle = format!(
        "{}{}{}",
        root.cert_pem(),
        private.cert_pem(),
        internet.cert_pem()
    );
    let trust = ZoneTrust::new(TrustStore::from_pem(bundle.as_bytes(), &[]).unwrap());
    let node_req = || {
        let mut r = LeafRequest::new(CertKind::Node, "exchange-sender");
        r.key = KeyAlg::Ed25519;
        r
    };
    let node = private.issue(&node_req(), now()).unwrap();
    let signer = signer_of(&node);

    header("private", &node, &signer)
        .verify(&trust, now())
        .unwrap();

    // the same node cannot speak for another zone
    let err = header("internet", &node, &signer)
        .verify(&trust, now())
        .unwrap_err();
    assert!(err.to_string().contains("internet"), "{err}");

    // a certificate with another key than the one that signed
    let other = private.issue(&node_req(), now()).unwrap();
    let err = header("private", &other, &signer)
        .verify(&trust, now())
        .unwrap_err();
    assert!(err.to_string().contains("not by the key"), "{err}");

    // a device's certificate of the zone is not a signer
    let mut device = LeafRequest::new(CertKind::Device, "scanner");
    device.key = KeyAlg::Ed25519;
    let device = private.issue(&device, now()).unwrap();
    let err = header("private", &device, &signer_of(&device))
        .verify(&trust, now())
        .unwrap_err();
    assert!(err.to_string().contains("not a node"), "{err}");

    // an expired node certificate
    let late = UnixTime::from_secs(T0 + 400 * 86_400);
    assert!(
        header("private", &node, &signer)
            .verify(&trust, late)
            .is_err()
    );
}
