//! Validating chains and reading identities: valid, expired, not yet valid, revoked, other zone,
//! wrong usage, foreign CA, and bad input that must be refused without a panic.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use proptest::prelude::*;
use rustls_pki_types::CertificateDer;
use tianping_certs::{
    CaCert, CertError, CertKind, CertUsage, KeyAlg, LeafRequest, Revocation, RevokeReason,
    TrustStore, certs_from_pem, identity_of, verify_chain, verify_client,
};
use tianping_core::{UnixTime, ZoneName};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

struct Fixture {
    root: CaCert,
    private: CaCert,
    internet: CaCert,
}

fn zone(z: &str) -> ZoneName {
    z.parse().unwrap()
}

fn fixture() -> Fixture {
    let now = UnixTime::from_secs(T0);
    let root = CaCert::new_root("Court", KeyAlg::EcP256, now).unwrap();
    let private = root
        .new_zone(&zone("private"), "Court", KeyAlg::EcP256, now)
        .unwrap();
    let internet = root
        .new_zone(&zone("internet"), "Court", KeyAlg::EcP256, now)
        .unwrap();
    Fixture {
        root,
        private,
        internet,
    }
}

impl Fixture {
    fn trust(&self, crls: &[&[u8]]) -> TrustStore {
        let pem = format!(
            "{}{}{}",
            self.root.cert_pem(),
            self.private.cert_pem(),
            self.internet.cert_pem()
        );
        TrustStore::from_pem(pem.as_bytes(), crls).unwrap()
    }
}

fn judge() -> LeafRequest {
    let mut r = LeafRequest::new(CertKind::Client, "Judge Li");
    r.subject = Some("u-1001".parse().unwrap());
    r.court = Some("bj.01.03".parse().unwrap());
    r.roles = vec!["judge".parse().unwrap(), "president".parse().unwrap()];
    r.days = 30;
    r
}

fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
    certs_from_pem(pem.as_bytes()).unwrap()
}

#[test]
fn valid_client_gives_its_identity() {
    let f = fixture();
    let leaf = f.private.issue(&judge(), UnixTime::from_secs(T0)).unwrap();
    let id = verify_client(
        &chain(&leaf.chain_pem),
        &f.trust(&[]),
        UnixTime::from_secs(T0 + DAY),
    )
    .unwrap();
    assert_eq!(id.subject.unwrap().as_str(), "u-1001");
    assert_eq!(id.court.unwrap().as_str(), "bj.01.03");
    assert_eq!(
        id.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        ["judge", "president"]
    );
    assert_eq!(id.zone.as_str(), "private");
    assert_eq!(id.kind, CertKind::Client);
    assert_eq!(id.name, "Judge Li");
    assert_eq!(id.fingerprint, tianping_certs::fingerprint(&leaf.leaf_der));
    assert_eq!(
        identity_of(&leaf.leaf_der).unwrap().fingerprint,
        id.fingerprint
    );
    // The serial is 16 random bytes.
    assert_eq!(leaf.serial.len(), 32);
}

#[test]
fn rustls_time_is_accepted_too() {
    let f = fixture();
    let leaf = f.private.issue(&judge(), UnixTime::from_secs(T0)).unwrap();
    let t = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(T0 + 60));
    assert!(verify_client(&chain(&leaf.chain_pem), &f.trust(&[]), t).is_ok());
}

#[test]
fn expired_and_not_yet_valid() {
    let f = fixture();
    let leaf = f.private.issue(&judge(), UnixTime::from_secs(T0)).unwrap();
    let c = chain(&leaf.chain_pem);
    let err = verify_client(&c, &f.trust(&[]), UnixTime::from_secs(T0 + 31 * DAY)).unwrap_err();
    assert!(matches!(err, CertError::Expired { .. }), "{err}");
    let err = verify_client(&c, &f.trust(&[]), UnixTime::from_secs(T0 - DAY)).unwrap_err();
    assert!(matches!(err, CertError::NotYetValid { .. }), "{err}");
}

#[test]
fn revoked_by_crl() {
    let f = fixture();
    let now = UnixTime::from_secs(T0);
    let leaf = f.private.issue(&judge(), now).unwrap();
    let other = f.private.issue(&judge(), now).unwrap();
    let crl = f
        .private
        .crl(
            &[Revocation {
                serial: leaf.serial.clone(),
                at: T0 as i64,
                reason: RevokeReason::KeyCompromise,
            }],
            now,
            7,
        )
        .unwrap();
    let empty_internet = f.internet.crl(&[], now, 7).unwrap();
    let trust = f.trust(&[crl.as_bytes(), empty_internet.as_bytes()]);
    let at = UnixTime::from_secs(T0 + 60);
    assert_eq!(
        verify_client(&chain(&leaf.chain_pem), &trust, at).unwrap_err(),
        CertError::Revoked
    );
    assert!(verify_client(&chain(&other.chain_pem), &trust, at).is_ok());
}

#[test]
fn other_zone_is_refused_when_narrowed() {
    let f = fixture();
    let now = UnixTime::from_secs(T0);
    let leaf = f.internet.issue(&judge(), now).unwrap();
    let trust = f.trust(&[]);
    assert!(verify_client(&chain(&leaf.chain_pem), &trust, now).is_ok());
    let narrowed = trust.for_zone(&zone("private")).unwrap();
    let err = verify_client(&chain(&leaf.chain_pem), &narrowed, now).unwrap_err();
    assert!(matches!(err, CertError::UnknownIssuer(_)), "{err}");
    assert!(err.to_string().contains("`private`"), "{err}");
    assert!(trust.for_zone(&zone("classified")).is_err());
}

#[test]
fn foreign_ca_is_unknown() {
    let f = fixture();
    let other = fixture();
    let now = UnixTime::from_secs(T0);
    let leaf = other.private.issue(&judge(), now).unwrap();
    let err = verify_client(&chain(&leaf.chain_pem), &f.trust(&[]), now).unwrap_err();
    assert!(matches!(err, CertError::UnknownIssuer(_)), "{err}");
}

#[test]
fn usage_fits_the_kind() {
    let f = fixture();
    let now = UnixTime::from_secs(T0);
    let mut server = LeafRequest::new(CertKind::Server, "gw");
    server.dns = vec!["gw.private.tianping.localhost".into()];
    let s = f.private.issue(&server, now).unwrap();
    let err = verify_client(&chain(&s.chain_pem), &f.trust(&[]), now).unwrap_err();
    assert!(matches!(err, CertError::WrongUsage(_)), "{err}");
    let id = verify_chain(&chain(&s.chain_pem), &f.trust(&[]), now, CertUsage::Server).unwrap();
    assert_eq!(id.kind, CertKind::Server);

    let node = f
        .private
        .issue(&LeafRequest::new(CertKind::Node, "exchange-sender"), now)
        .unwrap();
    for usage in [CertUsage::Client, CertUsage::Server, CertUsage::OwnKind] {
        assert!(verify_chain(&chain(&node.chain_pem), &f.trust(&[]), now, usage).is_ok());
    }
    let device = f
        .private
        .issue(&LeafRequest::new(CertKind::Device, "tablet-7"), now)
        .unwrap();
    assert!(verify_client(&chain(&device.chain_pem), &f.trust(&[]), now).is_ok());
    let err = verify_chain(
        &chain(&device.chain_pem),
        &f.trust(&[]),
        now,
        CertUsage::Server,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::WrongUsage(_)), "{err}");
    // A CA presented as a leaf.
    let err = verify_client(&chain(f.private.cert_pem()), &f.trust(&[]), now).unwrap_err();
    assert!(matches!(err, CertError::WrongUsage(_)), "{err}");
}

#[test]
fn ed25519_keys_work() {
    let now = UnixTime::from_secs(T0);
    let root = CaCert::new_root("Court", KeyAlg::Ed25519, now).unwrap();
    let z = root
        .new_zone(&zone("mobile"), "Court", KeyAlg::Ed25519, now)
        .unwrap();
    let mut req = judge();
    req.key = KeyAlg::Ed25519;
    let leaf = z.issue(&req, now).unwrap();
    assert!(leaf.key_pem.expose().contains("PRIVATE KEY"));
    let trust = TrustStore::from_pem(
        format!("{}{}", root.cert_pem(), z.cert_pem()).as_bytes(),
        &[],
    )
    .unwrap();
    assert_eq!(
        verify_client(&chain(&leaf.chain_pem), &trust, now)
            .unwrap()
            .zone
            .as_str(),
        "mobile"
    );
}

#[test]
fn requests_outside_the_rules_are_refused() {
    let f = fixture();
    let now = UnixTime::from_secs(T0);
    let mut r = LeafRequest::new(CertKind::Client, "Nobody");
    assert!(matches!(
        f.private.issue(&r, now),
        Err(CertError::Invalid(_))
    ));
    r = LeafRequest::new(CertKind::Server, "gw");
    assert!(f.private.issue(&r, now).is_err(), "a server needs a name");
    r.dns = (0..100).map(|i| format!("h{i}.example")).collect();
    let err = f.private.issue(&r, now).unwrap_err();
    assert!(err.to_string().contains("more than"), "{err}");
    r.dns = vec!["bad name".into()];
    assert!(f.private.issue(&r, now).is_err());
    r.dns = vec!["ok.example".into()];
    r.days = 0;
    assert!(f.private.issue(&r, now).is_err());
    r.days = 30 * 365;
    assert!(f.private.issue(&r, now).is_err());
    // Leaves come from zone CAs only.
    r.days = 30;
    assert!(f.root.issue(&r, now).is_err());
    // A key that does not belong to the certificate.
    assert!(CaCert::from_pem(f.private.cert_pem(), f.internet.key_pem().expose()).is_err());
    // Keys never show in debug output.
    assert!(!format!("{:?}", f.private).contains("PRIVATE KEY"));
}

/// A certificate made with rcgen directly, to hold what our issuer refuses to make.
fn raw_leaf(f: &Fixture, sans: Vec<rcgen::SanType>) -> Vec<u8> {
    let mut p = rcgen::CertificateParams::default();
    p.subject_alt_names = sans;
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer_key = rcgen::KeyPair::from_pem(f.private.key_pem().expose()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(f.private.cert_pem(), issuer_key).unwrap();
    p.signed_by(&key, &issuer).unwrap().der().to_vec()
}

fn urn(s: &str) -> rcgen::SanType {
    rcgen::SanType::URI(s.try_into().unwrap())
}

#[test]
fn bad_identities_are_refused_clearly() {
    let f = fixture();
    let court = raw_leaf(
        &f,
        vec![
            urn("urn:tianping:zone:private"),
            urn("urn:tianping:kind:client"),
            urn("urn:tianping:subject:u-1"),
            urn("urn:tianping:court:BJ..01"),
        ],
    );
    let err = identity_of(&court).unwrap_err();
    assert!(matches!(err, CertError::MissingIdentity(_)), "{err}");
    assert!(
        err.to_string().contains("`urn:tianping:court:BJ..01`"),
        "{err}"
    );

    let no_zone = raw_leaf(&f, vec![urn("urn:tianping:kind:device")]);
    assert!(matches!(
        identity_of(&no_zone),
        Err(CertError::MissingIdentity(_))
    ));
    let two_zones = raw_leaf(
        &f,
        vec![
            urn("urn:tianping:zone:private"),
            urn("urn:tianping:zone:internet"),
            urn("urn:tianping:kind:device"),
        ],
    );
    assert!(matches!(
        identity_of(&two_zones),
        Err(CertError::MissingIdentity(_))
    ));
    let client_without_court = raw_leaf(
        &f,
        vec![
            urn("urn:tianping:zone:private"),
            urn("urn:tianping:kind:client"),
        ],
    );
    assert!(identity_of(&client_without_court).is_err());

    // A leaf naming another zone than its CA's does not validate.
    let lying = raw_leaf(
        &f,
        vec![
            urn("urn:tianping:zone:internet"),
            urn("urn:tianping:kind:device"),
        ],
    );
    let ca = certs_from_pem(f.private.cert_pem().as_bytes()).unwrap();
    let lying_chain = vec![CertificateDer::from(lying), ca[0].clone()];
    let mut trust_pem = f.root.cert_pem().to_owned();
    trust_pem.push_str(f.private.cert_pem());
    trust_pem.push_str(f.internet.cert_pem());
    let trust = TrustStore::from_pem(trust_pem.as_bytes(), &[]).unwrap();
    let err = verify_client(&lying_chain, &trust, UnixTime::from_secs(T0)).unwrap_err();
    assert!(matches!(err, CertError::UnknownIssuer(_)), "{err}");

    let huge: Vec<rcgen::SanType> = (0..500)
        .map(|i| rcgen::SanType::DnsName(format!("h{i}.example").try_into().unwrap()))
        .collect();
    let err = identity_of(&raw_leaf(&f, huge)).unwrap_err();
    assert!(matches!(err, CertError::Malformed(_)), "{err}");
    assert!(
        err.to_string().contains("subject alternative names"),
        "{err}"
    );
}

#[test]
fn garbage_and_truncation_are_malformed() {
    let f = fixture();
    let leaf = f.private.issue(&judge(), UnixTime::from_secs(T0)).unwrap();
    for n in [0, 1, 10, leaf.leaf_der.len() / 2, leaf.leaf_der.len() - 1] {
        let err = identity_of(&leaf.leaf_der[..n]).unwrap_err();
        assert!(matches!(err, CertError::Malformed(_)), "{n}: {err}");
    }
    let mut trailing = leaf.leaf_der.clone();
    trailing.push(0);
    assert!(matches!(
        identity_of(&trailing),
        Err(CertError::Malformed(_))
    ));
    assert!(certs_from_pem(b"hello").is_err());
    assert!(
        certs_from_pem(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").is_err()
    );
    assert!(TrustStore::from_pem(b"garbage", &[]).is_err());
    assert!(TrustStore::from_pem(f.root.cert_pem().as_bytes(), &[b"not a crl"]).is_err());
    // A leaf in the trust bundle is refused.
    assert!(TrustStore::from_pem(leaf.chain_pem.as_bytes(), &[]).is_err());
    assert!(matches!(
        verify_client(&[], &f.trust(&[]), UnixTime::from_secs(T0)),
        Err(CertError::Malformed(_))
    ));
    let oversized = vec![0x30u8; 70_000];
    assert!(
        identity_of(&oversized)
            .unwrap_err()
            .to_string()
            .contains("bytes")
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        tianping_certs::internal::fuzz_cert_identity(&data);
    }

    #[test]
    fn mutated_certificates_never_panic(pos in 0usize..2000, byte in any::<u8>()) {
        static LEAF: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let der = LEAF.get_or_init(|| {
            fixture().private.issue(&judge(), UnixTime::from_secs(T0)).unwrap().leaf_der
        });
        let mut d = der.clone();
        let i = pos % d.len();
        d[i] = byte;
        tianping_certs::internal::fuzz_cert_identity(&d);
    }
}

#[test]
fn an_expired_zone_ca_fails_its_leaves() {
    let f = fixture();
    // rcgen's default validity runs to 4096, past the zone CA's ten years.
    let leaf = raw_leaf(
        &f,
        vec![
            urn("urn:tianping:zone:private"),
            urn("urn:tianping:kind:device"),
        ],
    );
    let ca = certs_from_pem(f.private.cert_pem().as_bytes()).unwrap();
    let chain = vec![CertificateDer::from(leaf), ca[0].clone()];
    assert!(verify_client(&chain, &f.trust(&[]), UnixTime::from_secs(T0 + DAY)).is_ok());
    let err = verify_client(
        &chain,
        &f.trust(&[]),
        UnixTime::from_secs(T0 + 11 * 365 * DAY),
    )
    .unwrap_err();
    assert!(err.to_string().contains("zone CA expired"), "{err}");
}

fn subject_strategy() -> impl Strategy<Value = String> {
    "[a-z0-9-]{3,20}"
}

fn court_strategy() -> impl Strategy<Value = String> {
    (
        "[a-z]{2,8}",
        proptest::collection::vec("[a-z0-9]{1,8}", 0..4),
    )
        .prop_map(|(first, rest)| {
            std::iter::once(first)
                .chain(rest)
                .collect::<Vec<_>>()
                .join(".")
        })
        .prop_filter("spc has no sub-codes in this grammar", |c| {
            !c.starts_with("spc.")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, rng_seed: proptest::test_runner::RngSeed::Fixed(11), ..ProptestConfig::default() })]

    /// What is issued is what `identity_of` and `verify_client` read back.
    #[test]
    fn issue_then_read_is_identity(
        subject in subject_strategy(),
        court in court_strategy(),
        role_mask in 0u16..(1 << 10),
        name in "[A-Za-z][A-Za-z .-]{0,30}",
    ) {
        static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
        let f = F.get_or_init(fixture);
        let all = ["judge", "assistant", "clerk", "enforcement", "police", "assessor", "president", "division-chief", "committee", "lawyer"];
        let roles: Vec<tianping_core::Role> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| role_mask & (1 << i) != 0)
            .map(|(_, r)| r.parse().unwrap())
            .collect();
        let mut req = LeafRequest::new(CertKind::Client, name.clone());
        req.subject = Some(subject.parse().unwrap());
        req.court = Some(court.parse().unwrap());
        req.roles = roles.clone();
        let leaf = f.private.issue(&req, UnixTime::from_secs(T0)).unwrap();
        let id = identity_of(&leaf.leaf_der).unwrap();
        prop_assert_eq!(id.subject.as_ref().map(|s| s.as_str()), Some(subject.as_str()));
        prop_assert_eq!(id.court.as_ref().map(|c| c.as_str()), Some(court.as_str()));
        prop_assert_eq!(&id.roles, &roles);
        prop_assert_eq!(&id.name, &name);
        let verified = verify_client(&chain(&leaf.chain_pem), &f.trust(&[]), UnixTime::from_secs(T0)).unwrap();
        prop_assert_eq!(verified, id);
    }
}
