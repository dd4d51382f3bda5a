//! The component token profile: each kind made and verified, and each refusal — another zone's
//! node, a signer that is not a node certificate, `alg` other than ES256 (`none`, HS256), a wrong
//! `typ`, an expired, future or long-lived token, a wrong audience, a replayed `jti` (with the
//! cache bounded and pruned by expiry), a bad signature and header members that would bring
//! their own key.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tianping_certs::{
    CaCert, CertError, CertKind, DeliveryClaims, IssuedCert, KeyAlg, LeafRequest, Revocation,
    RevokeReason, TokenClaims, TokenError, TokenKind, TokenSigner, TokenVerifier, TrustStore,
    UserClaims, certs_from_pem,
};
use tianping_core::{Algorithm, ManualClock, RingSigner, Signer as _, UnixTime, ZoneName};

const T0: u64 = 1_800_000_000;

fn zone(z: &str) -> ZoneName {
    z.parse().unwrap()
}

fn now() -> UnixTime {
    UnixTime::from_secs(T0)
}

struct Court {
    private: CaCert,
    trust: TrustStore,
    bundle: String,
    internet: CaCert,
}

fn court() -> Court {
    let root = CaCert::new_root("Court", KeyAlg::EcP256, now()).unwrap();
    let private = root
        .new_zone(&zone("private"), "Court", KeyAlg::EcP256, now())
        .unwrap();
    let internet = root
        .new_zone(&zone("internet"), "Court", KeyAlg::EcP256, now())
        .unwrap();
    let bundle = format!(
        "{}{}{}",
        root.cert_pem(),
        private.cert_pem(),
        internet.cert_pem()
    );
    Court {
        trust: TrustStore::from_pem(bundle.as_bytes(), &[]).unwrap(),
        bundle,
        private,
        internet,
    }
}

fn ring_signer(issued: &IssuedCert) -> RingSigner {
    let der =
        rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(issued.key_pem.expose().as_bytes())
            .unwrap();
    RingSigner::from_pkcs8(Algorithm::Es256, der.secret_pkcs8_der()).unwrap()
}

fn chain(issued: &IssuedCert) -> Vec<CertificateDer<'static>> {
    certs_from_pem(issued.chain_pem.as_bytes()).unwrap()
}

fn node(ca: &CaCert, name: &str) -> (IssuedCert, TokenSigner) {
    let issued = ca
        .issue(&LeafRequest::new(CertKind::Node, name), now())
        .unwrap();
    let signer = TokenSigner::new(Arc::new(ring_signer(&issued)), &chain(&issued)).unwrap();
    (issued, signer)
}

fn verifier(c: &Court, kind: TokenKind) -> TokenVerifier {
    TokenVerifier::new(&c.trust, &zone("private"), "audit-store", kind).unwrap()
}

fn user() -> TokenClaims {
    TokenClaims::User(UserClaims {
        sub: "u-1001".parse().unwrap(),
        roles: vec!["judge".parse().unwrap()],
        court: Some("bj.01.03".parse().unwrap()),
        acr: "cert".parse().unwrap(),
        clearance: "secret".parse().unwrap(),
    })
}

const MINUTE: Duration = Duration::from_secs(60);

/// A token with the given header and payload JSON, signed by `key` over the usual input.
fn craft(header: &str, payload: &str, key: &RingSigner) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_bytes()))
}

fn x5c(issued: &IssuedCert) -> String {
    let certs: Vec<String> = chain(issued)
        .iter()
        .map(|c| format!("\"{}\"", STANDARD.encode(c)))
        .collect();
    format!("[{}]", certs.join(","))
}

fn node_payload(iat: u64, exp: u64, jti: &str) -> String {
    format!(r#"{{"aud":"audit-store","iat":{iat},"exp":{exp},"jti":"{jti}"}}"#)
}

#[test]
fn each_kind_round_trips_with_its_claims_and_header() {
    let c = court();
    let (issued, signer) = node(&c.private, "gateway");
    let clock = ManualClock::new(now());

    let token = signer.sign(&user(), "audit-store", now(), MINUTE).unwrap();
    let v = verifier(&c, TokenKind::User)
        .verify(token.as_bytes(), &clock)
        .unwrap();
    assert_eq!(v.claims, user());
    assert_eq!(v.signer.name, "gateway");
    assert_eq!(v.signer.zone, zone("private"));
    assert_eq!(
        v.signer.fingerprint,
        tianping_certs::fingerprint(&issued.leaf_der)
    );
    assert_eq!(v.audience, "audit-store");
    assert_eq!(v.expires_at.as_secs() - v.issued_at.as_secs(), 60);
    assert_eq!(v.jti.len(), 32);

    // a person outside the courts (a litigant): no `court` member, read back as none
    let litigant = TokenClaims::User(UserClaims {
        sub: "p-0202".parse().unwrap(),
        roles: vec!["litigant".parse().unwrap()],
        court: None,
        acr: "otp".parse().unwrap(),
        clearance: "none".parse().unwrap(),
    });
    let token = signer
        .sign(&litigant, "audit-store", now(), MINUTE)
        .unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert!(!payload.contains("court"), "{payload}");
    let v = verifier(&c, TokenKind::User)
        .verify(token.as_bytes(), &clock)
        .unwrap();
    assert_eq!(v.claims, litigant);

    let delivery = TokenClaims::Delivery(DeliveryClaims {
        flow: "case-filing".to_owned(),
        transfer: "t-0001".to_owned(),
        content_sha256: [7; 32],
    });
    let token = signer
        .sign(&delivery, "audit-store", now(), Duration::from_secs(10))
        .unwrap();
    let v = verifier(&c, TokenKind::Delivery)
        .verify(token.as_bytes(), &clock)
        .unwrap();
    assert_eq!(v.claims, delivery);

    let token = signer
        .sign(&TokenClaims::Node, "audit-store", now(), MINUTE)
        .unwrap();
    let header = TokenKind::Node.header_value(&token);
    assert!(header.starts_with("Bearer "));
    let inner = TokenKind::Node.token_in_header(header.as_bytes()).unwrap();
    let v = verifier(&c, TokenKind::Node).verify(inner, &clock).unwrap();
    assert_eq!(v.claims, TokenClaims::Node);
    assert!(TokenKind::Node.token_in_header(token.as_bytes()).is_err());
    assert_eq!(TokenKind::User.header_name(), "tianping-assertion");
    assert_eq!(TokenKind::Delivery.header_name(), "tianping-delivery");
    assert_eq!(TokenKind::Node.header_name(), "authorization");

    // The header is exactly alg, typ and x5c.
    let first = token.split('.').next().unwrap();
    let header = String::from_utf8(URL_SAFE_NO_PAD.decode(first).unwrap()).unwrap();
    assert!(
        header.starts_with(r#"{"alg":"ES256","typ":"node","x5c":["#),
        "{header}"
    );
}

#[test]
fn another_zones_node_is_refused() {
    let c = court();
    let (_, theirs) = node(&c.internet, "internet-gateway");
    let token = theirs
        .sign(&TokenClaims::Node, "audit-store", now(), MINUTE)
        .unwrap();
    let err = verifier(&c, TokenKind::Node)
        .verify_at(token.as_bytes(), now())
        .unwrap_err();
    assert!(
        matches!(err, TokenError::Signer(CertError::UnknownIssuer(ref m)) if m.contains("private")),
        "{err}"
    );
    // The same token is good in its own zone.
    TokenVerifier::new(&c.trust, &zone("internet"), "audit-store", TokenKind::Node)
        .unwrap()
        .verify_at(token.as_bytes(), now())
        .unwrap();
    // And a node of a whole other court is refused too.
    let other = court();
    let (_, foreign) = node(&other.private, "gateway");
    let token = foreign
        .sign(&TokenClaims::Node, "audit-store", now(), MINUTE)
        .unwrap();
    assert!(matches!(
        verifier(&c, TokenKind::Node).verify_at(token.as_bytes(), now()),
        Err(TokenError::Signer(_))
    ));
    assert!(!c.bundle.is_empty());
}

#[test]
fn a_signer_that_is_not_a_node_certificate_is_refused() {
    let c = court();
    let mut req = LeafRequest::new(CertKind::Client, "Judge Li");
    req.subject = Some("u-1001".parse().unwrap());
    req.court = Some("bj.01".parse().unwrap());
    let person = c.private.issue(&req, now()).unwrap();
    // The signer refuses to make one ...
    let err = TokenSigner::new(Arc::new(ring_signer(&person)), &chain(&person)).unwrap_err();
    assert!(err.to_string().contains("node certificate"), "{err}");
    // ... and a hand-made one is refused by the verifier.
    let header = format!(r#"{{"alg":"ES256","typ":"node","x5c":{}}}"#, x5c(&person));
    let token = craft(
        &header,
        &node_payload(T0, T0 + 60, "0123456789abcdef"),
        &ring_signer(&person),
    );
    let err = verifier(&c, TokenKind::Node)
        .verify_at(token.as_bytes(), now())
        .unwrap_err();
    assert!(
        matches!(err, TokenError::Signer(CertError::WrongUsage(ref m)) if m.contains("not a node")),
        "{err}"
    );

    // A revoked node is refused.
    let (issued, signer) = node(&c.private, "gateway");
    let crl = c
        .private
        .crl(
            &[Revocation {
                serial: issued.serial.clone(),
                at: T0 as i64,
                reason: RevokeReason::KeyCompromise,
            }],
            now(),
            7,
        )
        .unwrap();
    let internet_crl = c.internet.crl(&[], now(), 7).unwrap();
    let trust = TrustStore::from_pem(
        c.bundle.as_bytes(),
        &[crl.as_bytes(), internet_crl.as_bytes()],
    )
    .unwrap();
    let token = signer
        .sign(&TokenClaims::Node, "audit-store", now(), MINUTE)
        .unwrap();
    let err = TokenVerifier::new(&trust, &zone("private"), "audit-store", TokenKind::Node)
        .unwrap()
        .verify_at(token.as_bytes(), now())
        .unwrap_err();
    assert_eq!(err, TokenError::Signer(CertError::Revoked));
}

#[test]
fn algorithms_other_than_es256_are_refused() {
    let c = court();
    let (issued, _) = node(&c.private, "gateway");
    let key = ring_signer(&issued);
    let payload = node_payload(T0, T0 + 60, "0123456789abcdef");
    let v = verifier(&c, TokenKind::Node);
    for alg in ["none", "HS256", "RS256", "ES384", "EdDSA", "es256"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"node","x5c":{}}}"#, x5c(&issued));
        let token = craft(&header, &payload, &key);
        assert_eq!(
            v.verify_at(token.as_bytes(), now()).unwrap_err(),
            TokenError::Algorithm(alg.to_owned()),
            "{alg}"
        );
        // `none` with an empty signature, as attackers send it.
        let unsigned = format!("{}.", token.rsplit_once('.').unwrap().0);
        assert!(v.verify_at(unsigned.as_bytes(), now()).is_err());
    }
    // The genuine header signs and verifies, so the refusals above are the `alg`'s doing.
    let header = format!(r#"{{"alg":"ES256","typ":"node","x5c":{}}}"#, x5c(&issued));
    v.verify_at(craft(&header, &payload, &key).as_bytes(), now())
        .unwrap();

    // An Ed25519 node key cannot make an ES256 token.
    let mut req = LeafRequest::new(CertKind::Node, "ed-node");
    req.key = KeyAlg::Ed25519;
    let ed = c.private.issue(&req, now()).unwrap();
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(ed.key_pem.expose().as_bytes())
        .unwrap();
    let ed_signer = RingSigner::from_pkcs8(Algorithm::Ed25519, der.secret_pkcs8_der()).unwrap();
    assert!(TokenSigner::new(Arc::new(ed_signer), &chain(&ed)).is_err());
}

#[test]
fn header_members_that_bring_a_key_and_a_wrong_typ_are_refused() {
    let c = court();
    let (issued, signer) = node(&c.private, "gateway");
    let key = ring_signer(&issued);
    let payload = node_payload(T0, T0 + 60, "0123456789abcdef");
    let v = verifier(&c, TokenKind::Node);
    for extra in [
        r#""kid":"k1""#,
        r#""jku":"https://x/""#,
        r#""jwk":{}"#,
        r#""crit":["exp"]"#,
    ] {
        let header = format!(
            r#"{{"alg":"ES256","typ":"node","x5c":{},{extra}}}"#,
            x5c(&issued)
        );
        let err = v
            .verify_at(craft(&header, &payload, &key).as_bytes(), now())
            .unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{extra}: {err}");
    }
    // A user token where a node token is expected, and the reverse.
    let token = signer.sign(&user(), "audit-store", now(), MINUTE).unwrap();
    assert!(matches!(
        v.verify_at(token.as_bytes(), now()),
        Err(TokenError::WrongKind {
            expected: TokenKind::Node,
            ..
        })
    ));
    let token = signer
        .sign(&TokenClaims::Node, "audit-store", now(), MINUTE)
        .unwrap();
    assert!(matches!(
        verifier(&c, TokenKind::User).verify_at(token.as_bytes(), now()),
        Err(TokenError::WrongKind {
            expected: TokenKind::User,
            ..
        })
    ));
    // A node token carrying a user's claims.
    let header = format!(r#"{{"alg":"ES256","typ":"node","x5c":{}}}"#, x5c(&issued));
    let stuffed = r#"{"aud":"audit-store","iat":1800000000,"exp":1800000060,"jti":"0123456789abcdef","sub":"u-1001"}"#;
    assert!(matches!(
        v.verify_at(craft(&header, stuffed, &key).as_bytes(), now()),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn expired_future_and_long_lived_tokens_are_refused() {
    let c = court();
    let (issued, signer) = node(&c.private, "gateway");
    let v = verifier(&c, TokenKind::Node);
    let token = signer
        .sign(&TokenClaims::Node, "audit-store", now(), MINUTE)
        .unwrap();
    // 60 s of life and 5 s of skew: good at 64 s, expired at 65 s.
    assert!(matches!(
        v.verify_at(token.as_bytes(), UnixTime::from_secs(T0 + 65)),
        Err(TokenError::Expired { exp, now }) if exp == T0 + 60 && now == T0 + 65
    ));
    v.verify_at(token.as_bytes(), UnixTime::from_secs(T0 + 64))
        .unwrap();

    // Issued 6 s in the future: refused; 5 s: taken.
    let future = signer
        .sign(
            &TokenClaims::Node,
            "audit-store",
            UnixTime::from_secs(T0 + 6),
            MINUTE,
        )
        .unwrap();
    assert!(matches!(
        v.verify_at(future.as_bytes(), now()),
        Err(TokenError::NotYetValid { iat, .. }) if iat == T0 + 6
    ));
    let near = signer
        .sign(
            &TokenClaims::Node,
            "audit-store",
            UnixTime::from_secs(T0 + 5),
            MINUTE,
        )
        .unwrap();
    v.verify_at(near.as_bytes(), now()).unwrap();

    // Over 60 s of life: not made, and refused when hand-made; so is a non-positive one.
    assert_eq!(
        signer
            .sign(
                &TokenClaims::Node,
                "audit-store",
                now(),
                Duration::from_secs(61)
            )
            .unwrap_err(),
        TokenError::Lifetime(61)
    );
    let header = format!(r#"{{"alg":"ES256","typ":"node","x5c":{}}}"#, x5c(&issued));
    let key = ring_signer(&issued);
    for (iat, exp, life) in [(T0, T0 + 61, 61), (T0, T0, 0), (T0 + 10, T0, -10)] {
        let token = craft(&header, &node_payload(iat, exp, "fedcba9876543210"), &key);
        assert_eq!(
            v.verify_at(token.as_bytes(), now()).unwrap_err(),
            TokenError::Lifetime(life)
        );
    }
}

#[test]
fn a_wrong_audience_and_a_bad_signature_are_refused() {
    let c = court();
    let (_, signer) = node(&c.private, "gateway");
    let token = signer
        .sign(&TokenClaims::Node, "idp", now(), MINUTE)
        .unwrap();
    assert_eq!(
        verifier(&c, TokenKind::Node)
            .verify_at(token.as_bytes(), now())
            .unwrap_err(),
        TokenError::WrongAudience {
            expected: "audit-store".to_owned(),
            found: "idp".to_owned()
        }
    );
    // One payload byte changed (the audience re-aimed), the signature kept.
    let token = signer
        .sign(&TokenClaims::Node, "audit-storf", now(), MINUTE)
        .unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
    let fixed = String::from_utf8(payload)
        .unwrap()
        .replace("audit-storf", "audit-store");
    parts[1] = URL_SAFE_NO_PAD.encode(fixed);
    assert_eq!(
        verifier(&c, TokenKind::Node)
            .verify_at(parts.join(".").as_bytes(), now())
            .unwrap_err(),
        TokenError::BadSignature
    );
    for junk in [&b""[..], b"a.b", b"a.b.c.d", b"!!.!!.!!", &[b'a'; 20_000]] {
        assert!(matches!(
            verifier(&c, TokenKind::Node).verify_at(junk, now()),
            Err(TokenError::Malformed(_))
        ));
    }
}

#[test]
fn a_reusable_verifier_takes_an_assertion_again_within_its_life_only() {
    let c = court();
    let (_, signer) = node(&c.private, "gateway");
    let clock = ManualClock::new(now());
    let v = verifier(&c, TokenKind::User).reusable();
    let a = signer.sign(&user(), "audit-store", now(), MINUTE).unwrap();
    for _ in 0..3 {
        assert_eq!(v.verify(a.as_bytes(), &clock).unwrap().claims, user());
    }
    // everything else is still checked: another audience, and the end of its life
    let other = signer
        .sign(&user(), "case-management", now(), MINUTE)
        .unwrap();
    assert!(v.verify(other.as_bytes(), &clock).is_err());
    clock.advance(Duration::from_secs(66));
    assert!(v.verify(a.as_bytes(), &clock).is_err());
}

#[test]
fn a_replayed_jti_is_refused_and_the_cache_is_bounded_and_pruned() {
    let c = court();
    let (_, signer) = node(&c.private, "gateway");
    let clock = ManualClock::new(now());
    let v = verifier(&c, TokenKind::Node).with_replay_capacity(2);
    let a = signer
        .sign(&TokenClaims::Node, "audit-store", now(), MINUTE)
        .unwrap();
    v.verify(a.as_bytes(), &clock).unwrap();
    assert_eq!(
        v.verify(a.as_bytes(), &clock).unwrap_err(),
        TokenError::Replayed
    );

    let b = signer
        .sign(&TokenClaims::Node, "audit-store", now(), MINUTE)
        .unwrap();
    v.verify(b.as_bytes(), &clock).unwrap();
    // Two live tokens fill the cache: a third is refused rather than one forgotten.
    let d = signer
        .sign(&TokenClaims::Node, "audit-store", now(), MINUTE)
        .unwrap();
    assert_eq!(
        v.verify(d.as_bytes(), &clock).unwrap_err(),
        TokenError::ReplayCacheFull
    );

    // Once `a` and `b` are past expiry and skew they are pruned and a new token fits; `a`
    // itself stays refused, now as expired.
    clock.advance(Duration::from_secs(66));
    let e = signer
        .sign(&TokenClaims::Node, "audit-store", clock_now(&clock), MINUTE)
        .unwrap();
    v.verify(e.as_bytes(), &clock).unwrap();
    assert!(matches!(
        v.verify(a.as_bytes(), &clock),
        Err(TokenError::Expired { .. })
    ));
    assert_eq!(
        v.verify(e.as_bytes(), &clock).unwrap_err(),
        TokenError::Replayed
    );
}

fn clock_now(clock: &ManualClock) -> UnixTime {
    use tianping_core::Clock as _;
    clock.now()
}
