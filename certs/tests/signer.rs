//! Signing identities and the checks an update filter needs: the key of a certificate, a node
//! certificate verified as its zone's signer, forged and stale CRLs, a bundle with a foreign
//! root, and the hardware-key mark.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use rustls_pki_types::CertificateDer;
use tianping_certs::danger::RevocationLeniency;
use tianping_certs::{
    CaCert, CertError, CertKind, KeyAlg, LeafRequest, Revocation, RevokeReason, TrustStore,
    certs_from_pem, identity_of, public_key_of, verify_client, verify_signer,
};
use tianping_core::{Algorithm, RingSigner, Signer as _, UnixTime, ZoneName};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn zone(z: &str) -> ZoneName {
    z.parse().unwrap()
}

fn now() -> UnixTime {
    UnixTime::from_secs(T0)
}

/// A root with a `private` and an `internet` zone CA, and the bundle of all three.
struct Court {
    root: CaCert,
    private: CaCert,
    internet: CaCert,
}

impl Court {
    fn new(alg: KeyAlg) -> Self {
        let root = CaCert::new_root("Court", alg, now()).unwrap();
        let private = root
            .new_zone(&zone("private"), "Court", alg, now())
            .unwrap();
        let internet = root
            .new_zone(&zone("internet"), "Court", alg, now())
            .unwrap();
        Self {
            root,
            private,
            internet,
        }
    }

    fn bundle(&self) -> String {
        format!(
            "{}{}{}",
            self.root.cert_pem(),
            self.private.cert_pem(),
            self.internet.cert_pem()
        )
    }

    fn trust(&self, crls: &[&[u8]]) -> TrustStore {
        TrustStore::from_pem(self.bundle().as_bytes(), crls).unwrap()
    }
}

fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
    certs_from_pem(pem.as_bytes()).unwrap()
}

fn judge() -> LeafRequest {
    let mut r = LeafRequest::new(CertKind::Client, "Judge Li");
    r.subject = Some("u-1001".parse().unwrap());
    r.court = Some("bj.01.03".parse().unwrap());
    r
}

#[test]
fn a_certificates_key_verifies_what_its_private_key_signs() {
    for (alg, core_alg) in [
        (KeyAlg::EcP256, Algorithm::Es256),
        (KeyAlg::Ed25519, Algorithm::Ed25519),
    ] {
        let court = Court::new(alg);
        let mut req = LeafRequest::new(CertKind::Node, "gateway");
        req.key = alg;
        let node = court.private.issue(&req, now()).unwrap();
        let key = public_key_of(&node.leaf_der).unwrap();
        assert_eq!(key.algorithm(), core_alg);
        let der =
            rustls_pki_types::pem::PemObject::from_pem_slice(node.key_pem.expose().as_bytes())
                .map(|k: rustls_pki_types::PrivatePkcs8KeyDer<'_>| k.secret_pkcs8_der().to_vec())
                .unwrap();
        let signer = RingSigner::from_pkcs8(core_alg, &der).unwrap();
        assert_eq!(signer.public_key(), key);
        key.verify(b"checkpoint", &signer.sign(b"checkpoint").unwrap())
            .unwrap();
    }
    assert!(public_key_of(b"not a certificate").is_err());
}

#[test]
fn a_node_certificate_of_the_zone_is_its_signer() {
    let court = Court::new(KeyAlg::EcP256);
    let trust = court.trust(&[]);
    let node = court
        .private
        .issue(&LeafRequest::new(CertKind::Node, "exchange-sender"), now())
        .unwrap();
    let who = verify_signer(&chain(&node.chain_pem), &trust, &zone("private"), now()).unwrap();
    assert_eq!(who.identity.kind, CertKind::Node);
    assert_eq!(who.identity.name, "exchange-sender");
    assert_eq!(who.identity.zone, zone("private"));
    assert_eq!(who.key, public_key_of(&node.leaf_der).unwrap());

    // Another zone's node does not sign for this one.
    let err = verify_signer(&chain(&node.chain_pem), &trust, &zone("internet"), now()).unwrap_err();
    assert!(
        matches!(err, CertError::UnknownIssuer(ref m) if m.contains("internet")),
        "{err}"
    );

    // A person's or a device's certificate of the zone is not a signer.
    for req in [judge(), LeafRequest::new(CertKind::Device, "scanner")] {
        let leaf = court.private.issue(&req, now()).unwrap();
        let err =
            verify_signer(&chain(&leaf.chain_pem), &trust, &zone("private"), now()).unwrap_err();
        assert!(
            matches!(err, CertError::WrongUsage(ref m) if m.contains("not a node")),
            "{err}"
        );
    }

    // Expired, and revoked.
    let late = UnixTime::from_secs(T0 + 400 * DAY);
    assert!(matches!(
        verify_signer(&chain(&node.chain_pem), &trust, &zone("private"), late),
        Err(CertError::Expired { .. })
    ));
    let crl = court
        .private
        .crl(
            &[Revocation {
                serial: node.serial.clone(),
                at: T0 as i64,
                reason: RevokeReason::KeyCompromise,
            }],
            now(),
            7,
        )
        .unwrap();
    let revoked = court.trust(&[crl.as_bytes()]);
    assert_eq!(
        verify_signer(&chain(&node.chain_pem), &revoked, &zone("private"), now()).unwrap_err(),
        CertError::Revoked
    );
}

#[test]
fn a_forged_crl_is_refused() {
    let court = Court::new(KeyAlg::EcP256);
    // Same names as the court's private CA, another key: its CRL claims to be the private zone's.
    let forger = Court::new(KeyAlg::EcP256);
    let forged = forger.private.crl(&[], now(), 7).unwrap();
    let err = TrustStore::from_pem(court.bundle().as_bytes(), &[forged.as_bytes()]).unwrap_err();
    assert!(
        matches!(err, CertError::UnknownIssuer(ref m) if m.contains("forged")),
        "{err}"
    );

    // A CRL of a CA that is not in the bundle at all.
    let stranger = CaCert::new_root("Elsewhere", KeyAlg::EcP256, now()).unwrap();
    let theirs = stranger
        .new_zone(&zone("private"), "Elsewhere", KeyAlg::EcP256, now())
        .unwrap()
        .crl(&[], now(), 7)
        .unwrap();
    let err = TrustStore::from_pem(court.bundle().as_bytes(), &[theirs.as_bytes()]).unwrap_err();
    assert!(
        matches!(err, CertError::UnknownIssuer(ref m) if m.contains("not of a CA")),
        "{err}"
    );

    // Ed25519 CAs' CRLs are checked too, and the genuine ones load.
    let ed = Court::new(KeyAlg::Ed25519);
    let genuine = ed.private.crl(&[], now(), 7).unwrap();
    TrustStore::from_pem(ed.bundle().as_bytes(), &[genuine.as_bytes()]).unwrap();
    let forged_ed = Court::new(KeyAlg::Ed25519)
        .private
        .crl(&[], now(), 7)
        .unwrap();
    assert!(TrustStore::from_pem(ed.bundle().as_bytes(), &[forged_ed.as_bytes()]).is_err());
}

#[test]
fn a_missing_or_stale_crl_refuses_unless_relaxed_by_danger() {
    let court = Court::new(KeyAlg::EcP256);
    let leaf = court.internet.issue(&judge(), now()).unwrap();
    let private_crl = court.private.crl(&[], now(), 7).unwrap();
    let internet_crl = court.internet.crl(&[], now(), 7).unwrap();

    // The store holds CRLs, but not the internet zone's.
    let only_private = court.trust(&[private_crl.as_bytes()]);
    assert_eq!(
        verify_client(&chain(&leaf.chain_pem), &only_private, now()).unwrap_err(),
        CertError::RevocationUnknown
    );
    let lenient = only_private.with_revocation_leniency(RevocationLeniency {
        allow_unknown_status: true,
        ..RevocationLeniency::default()
    });
    verify_client(&chain(&leaf.chain_pem), &lenient, now()).unwrap();

    // The internet zone's CRL, eight days on, is past its next update.
    let both = court.trust(&[private_crl.as_bytes(), internet_crl.as_bytes()]);
    verify_client(&chain(&leaf.chain_pem), &both, now()).unwrap();
    let later = UnixTime::from_secs(T0 + 8 * DAY);
    assert!(matches!(
        verify_client(&chain(&leaf.chain_pem), &both, later),
        Err(CertError::StaleCrl { .. })
    ));
    let lenient = both.with_revocation_leniency(RevocationLeniency {
        accept_stale_crls: true,
        ..RevocationLeniency::default()
    });
    verify_client(&chain(&leaf.chain_pem), &lenient, later).unwrap();

    // A store given no CRL at all checks none.
    verify_client(&chain(&leaf.chain_pem), &court.trust(&[]), later).unwrap();
}

#[test]
fn a_bundle_is_believed_only_under_its_pinned_root() {
    let court = Court::new(KeyAlg::EcP256);
    let pinned = court.root.cert_pem().as_bytes();
    let store = TrustStore::from_pinned(court.bundle().as_bytes(), &[], pinned).unwrap();
    assert_eq!(store.zones().len(), 2);
    // The root given as DER works the same.
    let root_der = chain(court.root.cert_pem()).remove(0);
    TrustStore::from_pinned(court.bundle().as_bytes(), &[], &root_der).unwrap();

    // An update bringing its own root and zone CA, beside the genuine ones.
    let other = Court::new(KeyAlg::EcP256);
    let with_foreign_root = format!("{}{}", court.bundle(), other.root.cert_pem());
    let err = TrustStore::from_pinned(with_foreign_root.as_bytes(), &[], pinned).unwrap_err();
    assert!(
        matches!(err, CertError::UnknownIssuer(ref m) if m.contains("pinned root")),
        "{err}"
    );
    let with_foreign_zone = format!("{}{}", court.bundle(), other.private.cert_pem());
    assert!(TrustStore::from_pinned(with_foreign_zone.as_bytes(), &[], pinned).is_err());
    // A whole other court's bundle.
    assert!(TrustStore::from_pinned(other.bundle().as_bytes(), &[], pinned).is_err());
    // The pinned root missing from the bundle.
    let no_root = format!("{}{}", court.private.cert_pem(), court.internet.cert_pem());
    let err = TrustStore::from_pinned(no_root.as_bytes(), &[], pinned).unwrap_err();
    assert!(
        err.to_string().contains("does not hold the pinned root"),
        "{err}"
    );
}

#[test]
fn the_hardware_mark_is_read_and_only_on_client_certificates() {
    let court = Court::new(KeyAlg::EcP256);
    let mut req = judge();
    req.hardware = true;
    let token = court.private.issue(&req, now()).unwrap();
    let id = identity_of(&token.leaf_der).unwrap();
    assert!(id.hardware);
    assert!(
        !identity_of(&court.private.issue(&judge(), now()).unwrap().leaf_der)
            .unwrap()
            .hardware
    );
    let verified = verify_client(&chain(&token.chain_pem), &court.trust(&[]), now()).unwrap();
    assert!(verified.hardware);

    let mut node = LeafRequest::new(CertKind::Node, "gateway");
    node.hardware = true;
    let err = court.private.issue(&node, now()).unwrap_err();
    assert!(err.to_string().contains("--hardware"), "{err}");
}
