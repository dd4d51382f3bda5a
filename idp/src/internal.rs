//! Entry points for the fuzz targets, shared with the test that replays their corpora on stable.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tianping_core::{Algorithm, RingSigner, UnixTime};

use crate::client::{Client, ClientAuthMethod, GrantType};
use crate::jwt::{KeySet, jws_alg};
use crate::tokens::TokenIssuer;
use crate::{AuthorizeError, parse_authorization, parse_token_request};

/// The issuer the fuzz targets' tokens name.
pub const FUZZ_ISSUER: &str = "https://idp.fuzz.example";
/// The time the fuzz targets check tokens at.
pub const FUZZ_NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

/// PKCS#8 keys for fuzzing only: published here, so never trusted by anything.
const FUZZ_ES256: &str = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b02010104208b0a62f1689d1c8ee849db67c70adb03b62fc7ec5f366bd5ff7ff0d020be9896a14403420004e4ae1f7bd6ae7380349542890d3271b356794fb70944c9e8b82ce35b5981df0acf009155323780782a9bc01ce158da691a4660ddaaa4a024e6830d5ec0ec07d3";
const FUZZ_ED25519: &str = "302e020100300506032b65700422042057c2fca9ae97a589ab775ee7f75b7af09152158b6e77edc085d4db26fe9924f7";

fn fuzz_signer(alg: Algorithm, hex_der: &str) -> Option<Arc<RingSigner>> {
    let der = hex::decode(hex_der).ok()?;
    RingSigner::from_pkcs8(alg, &der).ok().map(Arc::new)
}

/// The token issuers the `idp_jwt` target checks against: signing with ES256 (first) and with
/// EdDSA, each publishing the other's key as rotated out, so seeds of either algorithm verify.
pub fn fuzz_issuers() -> &'static [TokenIssuer] {
    static ISSUERS: LazyLock<Vec<TokenIssuer>> = LazyLock::new(|| {
        let (Some(ec), Some(ed)) = (
            fuzz_signer(Algorithm::Es256, FUZZ_ES256),
            fuzz_signer(Algorithm::Ed25519, FUZZ_ED25519),
        ) else {
            return Vec::new();
        };
        let life = Duration::from_secs(10 * 365 * 24 * 3600);
        // signs with ES256, publishes EdDSA as rotated out
        let mut es256 = KeySet::new(ed.clone());
        es256.rotate(ec.clone(), FUZZ_NOW, life);
        // signs with EdDSA, publishes ES256 as rotated out
        let mut eddsa = KeySet::new(ec);
        eddsa.rotate(ed, FUZZ_NOW, life);
        vec![
            TokenIssuer::new(FUZZ_ISSUER, es256),
            TokenIssuer::new(FUZZ_ISSUER, eddsa),
        ]
    });
    &ISSUERS
}

/// The clients the `idp_authorize` target knows: a confidential web client and a native client
/// with RFC 8252 loopback redirects.
pub fn fuzz_clients() -> Vec<Client> {
    vec![
        Client {
            id: "case-app".into(),
            secret_sha256: Some(Client::hash_secret("s3cret")),
            auth_method: ClientAuthMethod::ClientSecretBasic,
            redirect_uris: vec![
                "https://case.example/cb".into(),
                "https://case.example/cb2?x=1".into(),
            ],
            post_logout_redirect_uris: vec![],
            grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            native_loopback: false,
            extra_scopes: vec!["case.read".into()],
        },
        Client {
            id: "desk-app".into(),
            secret_sha256: None,
            auth_method: ClientAuthMethod::None,
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            post_logout_redirect_uris: vec![],
            grants: vec![GrantType::AuthorizationCode],
            native_loopback: true,
            extra_scopes: vec![],
        },
    ]
}

/// The authorization request parser: never panics; what it accepts, and every redirect it
/// makes, goes to a redirect URI the client registered.
pub fn fuzz_authorize(data: &[u8]) {
    let clients = fuzz_clients();
    let find = |id: &str| clients.iter().find(|c| c.id == id).cloned();
    match parse_authorization(data, FUZZ_ISSUER, &find) {
        Ok((req, client)) => {
            assert!(client.matches_redirect(&req.redirect_uri));
            assert!(req.scope.iter().any(|s| s == "openid"));
            let loc =
                crate::success_location(&req.redirect_uri, "c", req.state.as_deref(), FUZZ_ISSUER);
            assert!(loc.starts_with(&req.redirect_uri));
        }
        Err(AuthorizeError::Redirect(r)) => {
            assert!(clients.iter().any(|c| c.matches_redirect(&r.redirect_uri)));
            let loc = r.location();
            assert!(
                loc.starts_with(&r.redirect_uri) && loc.contains("&iss=") || loc.contains("?iss=")
            );
        }
        Err(AuthorizeError::Page(e)) => {
            let _ = (e.code(), e.status(), e.to_string());
        }
    }
}

/// The token request parser. The input is the `Authorization` header (empty for none), a
/// newline, then the form body. Never panics; credentials by two methods never pass.
pub fn fuzz_token_request(data: &[u8]) {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            data.get(..i).unwrap_or_default(),
            data.get(i + 1..).unwrap_or_default(),
        ),
        None => (&[][..], data),
    };
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let header = (!header.is_empty()).then_some(header);
    if let Ok(req) = parse_token_request(body, header) {
        if header.is_some() {
            assert_eq!(req.client.method, ClientAuthMethod::ClientSecretBasic);
        } else {
            assert_ne!(req.client.method, ClientAuthMethod::ClientSecretBasic);
        }
    }
}

/// Incoming JWTs (`id_token_hint`, bearer tokens): never panics; what verifies was signed with
/// a published algorithm and key.
pub fn fuzz_jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    for issuer in fuzz_issuers() {
        if let Ok(v) = issuer.keys().verify(token, FUZZ_NOW) {
            let alg = v
                .header
                .get("alg")
                .and_then(|a| a.as_str())
                .unwrap_or_default();
            let kid = v
                .header
                .get("kid")
                .and_then(|a| a.as_str())
                .unwrap_or_default();
            let published = issuer.keys().published(FUZZ_NOW);
            assert!(
                published
                    .iter()
                    .any(|k| k.kid == kid && jws_alg(k.key.algorithm()) == alg)
            );
            let _ = v.check(FUZZ_ISSUER, Some("case-app"), FUZZ_NOW, false);
        }
        let _ = issuer.verify_id_token_hint(token, FUZZ_NOW);
        let _ = issuer.verify_access_token(token, FUZZ_NOW);
    }
}

/// The audience the `idp_logout_token` target's tokens name.
pub const FUZZ_LOGOUT_AUDIENCE: &str = "case-app";

/// Logout tokens as a client receives them (the `logout_token` form value): never panics; what
/// verifies was signed with a published algorithm and key, has `typ` `logout+jwt`, names this
/// issuer and audience, is unexpired, carries the back-channel logout event and `sub` or `sid`,
/// and no `nonce`; it never passes as an ID token hint or an access token.
pub fn fuzz_logout_token(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    for issuer in fuzz_issuers() {
        let published = issuer.keys().published(FUZZ_NOW);
        let Ok(c) = crate::logout_token::verify_logout_token(
            token,
            &published,
            FUZZ_ISSUER,
            FUZZ_LOGOUT_AUDIENCE,
            FUZZ_NOW,
        ) else {
            continue;
        };
        assert!(c.sub.is_some() || c.sid.is_some());
        assert!(!c.jti.is_empty() && c.exp > FUZZ_NOW.as_secs());
        let v = crate::jwt::verify_with(token, &published);
        assert!(v.as_ref().is_ok_and(|v| {
            v.typ() == Some(crate::logout_token::LOGOUT_TOKEN_TYPE)
                && !v.claims.contains_key("nonce")
        }));
        assert!(issuer.verify_id_token_hint(token, FUZZ_NOW).is_err());
        assert!(issuer.verify_access_token(token, FUZZ_NOW).is_err());
    }
}

/// The node key the `idp_directory_update` target believes as the directory authority (and as
/// the internet IdP, for registrations): the fuzz ES256 key, published here, so never trusted
/// by anything else.
pub fn fuzz_directory_signer() -> Option<Arc<RingSigner>> {
    fuzz_signer(Algorithm::Es256, FUZZ_ES256)
}

/// The terms the `idp_directory_update` target checks records against: `directory-to-internet`
/// of the default policy (registrations too, so that their `p-` rule is what refuses staff).
pub fn fuzz_directory_terms() -> crate::FlowTerms {
    use tianping_core::Role;
    crate::FlowTerms {
        accounts: Role::ALL.to_vec(),
        attributes: ["sub", "name", "court", "roles", "status", "phone", "email"]
            .map(String::from)
            .to_vec(),
        credentials: vec![
            (
                "password-hash".into(),
                vec![Role::Public, Role::Lawyer, Role::Litigant],
            ),
            ("cert".into(), Role::ALL.to_vec()),
            ("otp-seed".into(), Role::ALL.to_vec()),
        ],
    }
}

/// Believes only the fuzz key, whatever the chain.
struct FuzzAuthority(tianping_core::PublicKey);

impl crate::SignerCheck for FuzzAuthority {
    fn check(
        &self,
        _chain: &[Vec<u8>],
        key: &tianping_core::PublicKey,
        _zone: &tianping_core::ZoneName,
        _time: UnixTime,
    ) -> Result<(), String> {
        if *key == self.0 {
            Ok(())
        } else {
            Err("not the fuzz authority's key".into())
        }
    }
}

/// Directory updates as a receiving IdP reads them, from `private` to `internet` and as
/// registrations back: never panics; what [`crate::check_update`] accepts decodes to the same
/// update, is signed by the authority's key, carries only what the terms allow (registrations:
/// only `p-` subjects); applied to an empty store, a second apply is refused as a replay.
pub fn fuzz_directory_update(data: &[u8]) {
    use crate::{ApplyError, Change, Expect, UpdateKind, UpdateRefusal};
    let Some(signer) = fuzz_directory_signer() else {
        return;
    };
    let authority = FuzzAuthority(tianping_core::Signer::public_key(&*signer));
    let decoded = crate::DirectoryUpdate::decode(data);
    let terms = fuzz_directory_terms();
    let (Ok(private), Ok(internet)) = (
        "private".parse::<tianping_core::ZoneName>(),
        "internet".parse::<tianping_core::ZoneName>(),
    ) else {
        return;
    };
    for kind in [UpdateKind::Directory, UpdateKind::Registration] {
        let (source, to) = match kind {
            UpdateKind::Directory => (&private, &internet),
            UpdateKind::Registration => (&internet, &private),
        };
        let expect = Expect {
            kind,
            source,
            to,
            terms: &terms,
            signers: &authority,
            last_applied: None,
        };
        let Ok(u) = crate::check_update(data, &expect) else {
            continue;
        };
        assert!(decoded.as_ref().is_ok_and(|d| *d == u));
        assert!(u.signer == authority.0);
        for rec in &u.body.records {
            if let Change::User(r) = &rec.change {
                assert!(terms.check(r).is_ok());
                assert!(kind == UpdateKind::Directory || r.sub.as_str().starts_with("p-"));
            }
        }
        let store = crate::MemoryStore::new();
        let rng = crate::random::SeededRandom::new(1);
        if crate::apply_update(&store, data, &expect, FUZZ_NOW, &rng).is_ok() {
            let again = crate::apply_update(&store, data, &expect, FUZZ_NOW, &rng);
            assert!(matches!(
                again,
                Err(ApplyError::Refused(UpdateRefusal::Replay { .. }))
            ));
        }
    }
}
