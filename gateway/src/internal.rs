//! Entry points for the fuzz targets, shared with the test that replays their corpora on stable.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tianping_core::{Algorithm, RingSigner, Secret, Signer, UnixTime, ZoneName};

use crate::config::Limits;
use crate::cookie::{CookieKey, CookieSealer, Session, session_cookie};
use crate::token::{BearerVerifier, Jwks, JwksKey};

/// The issuer the fuzz targets' tokens name.
pub const FUZZ_ISSUER: &str = "https://idp.fuzz.example";
/// The audience (the gateway) the fuzz targets' tokens are for.
pub const FUZZ_AUDIENCE: &str = "https://gw.fuzz.example";
/// The zone of the fuzz targets.
pub const FUZZ_ZONE: &str = "private";
/// The time the fuzz targets check at.
pub const FUZZ_NOW: UnixTime = UnixTime::from_secs(1_800_000_000);
/// The client certificate (its SHA-256) the `gateway_token` target presents on its second try.
pub const FUZZ_CERT: [u8; 32] = [0x5a; 32];

/// PKCS#8 keys for fuzzing only (the IdP's fuzz keys): published here, so never trusted.
const FUZZ_ES256: &str = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b02010104208b0a62f1689d1c8ee849db67c70adb03b62fc7ec5f366bd5ff7ff0d020be9896a14403420004e4ae1f7bd6ae7380349542890d3271b356794fb70944c9e8b82ce35b5981df0acf009155323780782a9bc01ce158da691a4660ddaaa4a024e6830d5ec0ec07d3";
const FUZZ_ED25519: &str = "302e020100300506032b65700422042057c2fca9ae97a589ab775ee7f75b7af09152158b6e77edc085d4db26fe9924f7";

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

fn signer(alg: Algorithm, hex_der: &str) -> Option<RingSigner> {
    RingSigner::from_pkcs8(alg, &unhex(hex_der)?).ok()
}

static SIGNERS: LazyLock<Vec<(String, RingSigner)>> = LazyLock::new(|| {
    [
        ("fuzz-es", Algorithm::Es256, FUZZ_ES256),
        ("fuzz-ed", Algorithm::Ed25519, FUZZ_ED25519),
    ]
    .into_iter()
    .filter_map(|(kid, alg, der)| signer(alg, der).map(|s| (kid.to_owned(), s)))
    .collect()
});

fn zone() -> Option<ZoneName> {
    FUZZ_ZONE.parse().ok()
}

/// The verifier the `gateway_token` target checks against: both fuzz keys published.
pub fn fuzz_verifier() -> Option<&'static BearerVerifier> {
    static V: LazyLock<Option<BearerVerifier>> = LazyLock::new(|| {
        let keys = SIGNERS
            .iter()
            .map(|(kid, s)| JwksKey {
                kid: kid.clone(),
                key: s.public_key(),
            })
            .collect();
        Some(BearerVerifier::new(
            FUZZ_ISSUER,
            FUZZ_AUDIENCE,
            zone()?,
            Jwks::from_keys(keys),
            Limits::default(),
        ))
    });
    V.as_ref()
}

/// An access token for the fuzz verifier: `claims` under `header` members (`alg`, `typ`, `kid`
/// filled in when absent), signed with the EdDSA key when `eddsa`, else ES256.
pub fn fuzz_access_token(header: &Value, claims: &Value, eddsa: bool) -> Option<String> {
    let (kid, s) = SIGNERS.get(usize::from(eddsa))?;
    let mut h = json!({
        "alg": if eddsa { "EdDSA" } else { "ES256" },
        "typ": "at+jwt",
        "kid": kid,
    });
    if let (Some(h), Some(extra)) = (h.as_object_mut(), header.as_object()) {
        h.extend(extra.clone());
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).ok()?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).ok()?)
    );
    let sig = s.sign(input.as_bytes()).ok()?;
    Some(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(sig.as_bytes())
    ))
}

/// The claims of a valid access token of the fuzz issuer.
pub fn fuzz_claims() -> Value {
    let now = FUZZ_NOW.as_secs();
    json!({"iss": FUZZ_ISSUER, "aud": FUZZ_AUDIENCE, "client_id": "gw", "exp": now + 300,
        "iat": now, "jti": "fuzz-jti-1", "scope": "openid", "sub": "u-1001", "court": "bj.01",
        "roles": ["judge"], "clearance": "none", "acr": "otp", "amr": ["pwd", "otp"],
        "zone": FUZZ_ZONE, "auth_time": now})
}

/// Bearer tokens: never panics; what verifies was signed by a published key with its own
/// algorithm (`ES256` or `EdDSA`), and a certificate-bound token verifies only with its
/// certificate.
pub fn fuzz_token(data: &[u8]) {
    let Some(v) = fuzz_verifier() else {
        return;
    };
    let plain = v.verify(data, None, FUZZ_NOW);
    let with_cert = v.verify(data, Some(&FUZZ_CERT), FUZZ_NOW);
    if let Ok(t) = &plain {
        assert!(t.bound_to.is_none());
        assert!(with_cert.is_ok());
    }
    if let Ok(t) = &with_cert {
        assert!(t.bound_to.is_none_or(|c| c == FUZZ_CERT));
        let alg = data
            .split(|b| *b == b'.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
        assert!(matches!(alg.as_deref(), Some("ES256" | "EdDSA")));
    }
    if let Err(e) = plain {
        let _ = e.www_authenticate();
    }
}

/// The sealer the `gateway_cookie` target opens with: keys 1 and 2 (fixed, fuzzing only).
pub fn fuzz_sealer() -> Option<&'static CookieSealer> {
    static S: LazyLock<Option<CookieSealer>> = LazyLock::new(|| {
        let keys = [(1, 0x11), (2, 0x22)]
            .into_iter()
            .map(|(id, b)| CookieKey::new(id, &Secret::new([b; 32])))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        CookieSealer::new(&zone()?, keys, Limits::default()).ok()
    });
    S.as_ref()
}

/// A session for seeding the `gateway_cookie` corpus.
pub fn fuzz_session() -> Option<Session> {
    let now = FUZZ_NOW.as_secs();
    Some(Session {
        id: "0123456789abcdef0123456789abcdef".into(),
        sid: Some("idp-sid-1".into()),
        sub: "u-1001".parse().ok()?,
        roles: vec!["judge".parse().ok()?],
        court: Some("bj.01".parse().ok()?),
        clearance: tianping_core::Clearance::None,
        acr: tianping_core::Acr::Otp,
        amr: vec![],
        auth_time: now - 60,
        last_used: now - 30,
    })
}

/// Session cookies, as the value and as a whole `Cookie` header: never panics; what opens
/// reseals and opens again to the same session.
pub fn fuzz_cookie(data: &[u8]) {
    let Some(s) = fuzz_sealer() else {
        return;
    };
    let value = session_cookie(data, s.limits().max_cookie_header_bytes).unwrap_or(data);
    if let Ok(session) = s.open(value, FUZZ_NOW) {
        let resealed = s.seal(&session);
        if let Ok(again) = resealed {
            assert_eq!(s.open(again.as_bytes(), FUZZ_NOW).ok(), Some(session));
        }
    }
}

/// `gateway_form`: a query string or form body is decoded without panicking, and what it
/// decodes to, written as a form again, decodes to the same pairs in the same order.
pub fn fuzz_form(data: &[u8]) -> Vec<(String, String)> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Vec::new();
    };
    let pairs = crate::form::decode_list(text);
    let _ = crate::form::decode_pairs(text);
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let again = crate::form::decode_list(&crate::form::form(&borrowed));
    assert_eq!(
        again, pairs,
        "a form written from decoded pairs decodes to them"
    );
    pairs
}
