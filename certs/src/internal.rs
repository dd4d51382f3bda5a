//! Entry points for the fuzz targets, shared with the test that replays their corpora on stable.

use crate::identity::{fingerprint, identity_of, summarize};
use crate::pem::certs_from_pem;

/// [`identity_of`] and the PEM reader over any bytes: never panics, and an identity it returns
/// is consistent with the certificate.
pub fn fuzz_cert_identity(data: &[u8]) {
    if let Ok(id) = identity_of(data) {
        assert_eq!(id.fingerprint, fingerprint(data));
        assert!(summarize(data).is_ok());
        if id.kind == crate::CertKind::Client {
            assert!(id.subject.is_some() && id.court.is_some());
        }
    }
    if let Ok(certs) = certs_from_pem(data) {
        assert!(!certs.is_empty());
        for c in certs.iter().take(4) {
            let _ = identity_of(c);
        }
    }
    let _ = crate::TrustStore::from_pem(data, &[]);
    let _ = crate::TrustStore::from_pem(b"", &[data]);
}

/// The trust bundle the token fuzz target verifies against (root, `private` and `internet`
/// zone CAs, made at unix 1,800,000,000); the seeds in `fuzz/corpus/component_token` are signed
/// by nodes of it.
const FUZZ_TRUST: &str = include_str!("fuzz_trust.pem");
/// The time the token fuzz target verifies at, a day after the bundle was made.
const FUZZ_NOW: tianping_core::UnixTime = tianping_core::UnixTime::from_secs(1_800_086_400);

/// An incoming component token, as each of the three kinds to a `private` zone audience
/// `fuzz`: never panics, what verifies keeps the profile's promises and cannot be used twice.
/// Returns how many kinds accepted it.
pub fn fuzz_component_token(data: &[u8]) -> usize {
    use crate::{TokenError, TokenKind, TokenVerifier, TrustStore};
    static TRUST: std::sync::OnceLock<Option<TrustStore>> = std::sync::OnceLock::new();
    let Some(trust) = TRUST
        .get_or_init(|| TrustStore::from_pem(FUZZ_TRUST.as_bytes(), &[]).ok())
        .as_ref()
    else {
        return 0;
    };
    let Ok(zone) = "private".parse::<tianping_core::ZoneName>() else {
        return 0;
    };
    let mut accepted = 0;
    for kind in [TokenKind::User, TokenKind::Delivery, TokenKind::Node] {
        let Ok(verifier) = TokenVerifier::new(trust, &zone, "fuzz", kind) else {
            continue;
        };
        let token = match kind {
            TokenKind::Node => kind.token_in_header(data).unwrap_or(data),
            TokenKind::User | TokenKind::Delivery => data,
        };
        if let Ok(t) = verifier.verify_at(token, FUZZ_NOW) {
            accepted += 1;
            assert_eq!(t.claims.kind(), kind);
            assert_eq!(t.signer.zone, zone);
            assert_eq!(t.signer.kind, crate::CertKind::Node);
            assert_eq!(t.audience, "fuzz");
            let life = t.expires_at.as_secs().saturating_sub(t.issued_at.as_secs());
            assert!((1..=60).contains(&life));
            assert_eq!(
                verifier.verify_at(token, FUZZ_NOW),
                Err(TokenError::Replayed)
            );
        }
    }
    accepted
}
