//! Client authentication by key and by certificate: `private_key_jwt` (RFC 7523 §2.2 and §3,
//! OIDC Core §9) and `tls_client_auth` (RFC 8705 §2.1), and the certificate binding of access
//! tokens (RFC 8705 §3, `cnf` with `x5t#S256`).
//!
//! The verification here is pure: bytes, keys and a time in, a decision out. What needs the
//! store (the `jti` remembered until the assertion expires) or the network (a client's JWKS URI)
//! is done by the caller; [`JwksCache`] keeps what a [`JwksFetch`] brought, refetching on an
//! unknown `kid` at most once per interval.
//!
//! An assertion is refused, each with its own [`ClientAuthError`] (all answered
//! `invalid_client`), when:
//!
//! - its `alg` is not one this provider publishes (`ES256`, `EdDSA`): `none`, every `HS*` (an
//!   HMAC keyed with a public key), `RS*`; or a `crit` header;
//! - its `kid` names no key the client registered (a `kid` is required), or the signature does
//!   not verify;
//! - `iss` or `sub` is not the client id;
//! - `aud` names neither the token endpoint nor the issuer;
//! - it has expired, is not yet valid (`nbf`), was issued in the future (`iat`), beyond a skew of
//!   [`AssertionPolicy::skew`]; or it lives longer than [`AssertionPolicy::max_life`] (which
//!   bounds how long its `jti` must be remembered);
//! - it has no `jti`, or its `jti` was seen before (the caller's store says).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use tianping_core::UnixTime;

use crate::IdpError;
use crate::client::ClientAuthMethod;
use crate::jwt::{JwtError, MAX_JWT_BYTES, PublishedKey, json_object, keys_from_jwks, verify_with};

/// The `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The JWS algorithms a client assertion may be signed with (discovery's
/// `token_endpoint_auth_signing_alg_values_supported`).
pub const ASSERTION_ALGS: &[&str] = &["ES256", "EdDSA"];

/// The most bytes a client's JWKS may hold, registered or fetched.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// The most bytes of a `jti`.
pub const MAX_JTI_BYTES: usize = 256;

/// The confirmation member naming a certificate's SHA-256 thumbprint (RFC 8705 §3.1).
pub const X5T_S256: &str = "x5t#S256";

/// What a client proves itself with, beyond a secret: its public keys (a JWKS, or the HTTPS URI
/// it is published at) or the subject of its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeys {
    /// A JWKS document, as registered (JSON text).
    Jwks(String),
    /// An `https` URI the client publishes its JWKS at.
    JwksUri(String),
    /// The common name of the zone node certificate the client presents.
    TlsSubject(String),
}

impl ClientKeys {
    /// Checks keys for registration with `method`: a JWKS that parses (public keys only, at
    /// least one usable signing key) or an `https` URI for `private_key_jwt`, a subject for
    /// `tls_client_auth`; no keys at all for the other methods.
    pub fn check_for(keys: Option<&Self>, method: ClientAuthMethod) -> Result<(), IdpError> {
        let bad = |what: &str| Err(IdpError::Directory(what.to_owned()));
        match (method, keys) {
            (ClientAuthMethod::PrivateKeyJwt, Some(ClientKeys::Jwks(text))) => {
                match parse_jwks(text.as_bytes()) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(IdpError::Directory(format!("the client's JWKS: {e}"))),
                }
            }
            (ClientAuthMethod::PrivateKeyJwt, Some(ClientKeys::JwksUri(uri))) => {
                let host = uri
                    .strip_prefix("https://")
                    .and_then(|r| r.split(['/', '?', '#']).next())
                    .unwrap_or_default();
                if host.is_empty() || host.contains('@') || uri.contains('#') {
                    bad("a JWKS URI must be https, with a host, no user info and no fragment")
                } else {
                    Ok(())
                }
            }
            (ClientAuthMethod::PrivateKeyJwt, _) => {
                bad("a `private_key_jwt` client registers a JWKS or a JWKS URI")
            }
            (ClientAuthMethod::TlsClientAuth, Some(ClientKeys::TlsSubject(s))) => {
                if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
                    bad("a certificate subject is 1 to 256 characters, no control characters")
                } else {
                    Ok(())
                }
            }
            (ClientAuthMethod::TlsClientAuth, _) => {
                bad("a `tls_client_auth` client registers its certificate's subject")
            }
            (_, Some(_)) => bad("only `private_key_jwt` and `tls_client_auth` clients have keys"),
            (_, None) => Ok(()),
        }
    }
}

/// Why a client's key or certificate did not authenticate it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    /// Not a compact JWS of JSON objects, or a claim of the wrong type.
    #[error("the client assertion is malformed: {0}")]
    Malformed(&'static str),
    /// The signature, its algorithm or its key (see [`JwtError`]).
    #[error("the client assertion's signature: {0}")]
    Signature(JwtError),
    /// `iss` or `sub` is not the client id.
    #[error("the client assertion's `iss` and `sub` must both be the client id")]
    WrongClient,
    /// `aud` names neither the token endpoint nor the issuer.
    #[error("the client assertion is for another audience")]
    WrongAudience,
    /// Past `exp`.
    #[error("the client assertion has expired")]
    Expired,
    /// Before `nbf`.
    #[error("the client assertion is not valid yet")]
    NotYetValid,
    /// `iat` in the future.
    #[error("the client assertion was issued in the future")]
    IssuedInFuture,
    /// `exp` further away than the policy allows.
    #[error("the client assertion lives longer than {0} seconds")]
    TooLong(u64),
    /// Its `jti` was seen before.
    #[error("the client assertion was already used")]
    Replayed,
    /// The client's published keys could not be had.
    #[error("the client's keys could not be fetched: {0}")]
    KeysUnavailable(String),
    /// A JWKS that does not parse.
    #[error("the JWKS is not valid: {0}")]
    BadJwks(&'static str),
    /// No client certificate on the connection.
    #[error("no client certificate was presented")]
    NoCertificate,
    /// A certificate that did not verify against the zone's trust.
    #[error("the client certificate did not verify")]
    CertificateNotVerified,
    /// A verified certificate of another subject or kind.
    #[error("the client certificate is not the one registered for the client")]
    WrongCertificate,
    /// Credentials of another method than the client registered.
    #[error("the client authenticates by `{0}`")]
    WrongMethod(&'static str),
}

/// What an assertion is checked against besides the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionPolicy {
    /// The `aud` values accepted: the token endpoint and the issuer.
    pub audiences: Vec<String>,
    /// How far clocks may disagree (for `nbf` and `iat`).
    pub skew: Duration,
    /// The longest an assertion may live from now (its `jti` is remembered that long).
    pub max_life: Duration,
}

impl AssertionPolicy {
    /// The policy of the provider `issuer`: its token endpoint or itself as `aud`, a skew of a
    /// minute, assertions living at most ten minutes.
    pub fn for_issuer(issuer: &str) -> Self {
        Self {
            audiences: vec![format!("{issuer}/token"), issuer.to_owned()],
            skew: Duration::from_secs(60),
            max_life: Duration::from_secs(600),
        }
    }
}

/// An assertion that verified: whose it is, and the `jti` to remember until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAssertion {
    /// The client (`iss` and `sub`).
    pub client_id: String,
    /// `jti`.
    pub jti: String,
    /// `exp`.
    pub expires_at: UnixTime,
}

fn part(token: &str, index: usize) -> Option<Map<String, Value>> {
    if token.len() > MAX_JWT_BYTES {
        return None;
    }
    json_object(token.split('.').nth(index)?, "part").ok()
}

/// The `kid` of an assertion's header, unverified (to choose the keys to verify it with).
pub fn assertion_kid(assertion: &str) -> Option<String> {
    part(assertion, 0)?
        .get("kid")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The `sub` of an assertion, unverified: the client it claims to be, for a request that sent
/// no `client_id` (RFC 7523 §3). [`verify_assertion`] checks it.
pub fn assertion_subject(assertion: &str) -> Option<String> {
    part(assertion, 1)?
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The public signing keys of a JWKS: EC P-256 and OKP Ed25519 keys with a `kid`; keys marked
/// for another `use` or algorithm are skipped; a private key (`d`) anywhere refuses the whole
/// document, as does one without a usable key.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<PublishedKey>, ClientAuthError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(ClientAuthError::BadJwks("too long"));
    }
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|_| ClientAuthError::BadJwks("not JSON"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(ClientAuthError::BadJwks("no `keys` array"))?;
    let mut usable = Vec::new();
    for k in keys {
        let obj = k
            .as_object()
            .ok_or(ClientAuthError::BadJwks("a key is not an object"))?;
        if ["d", "p", "q", "k"].iter().any(|f| obj.contains_key(*f)) {
            return Err(ClientAuthError::BadJwks("it holds a private or secret key"));
        }
        let use_ok = obj.get("use").is_none_or(|u| u.as_str() == Some("sig"));
        let alg_ok = match obj.get("alg") {
            None => true,
            Some(a) => matches!(
                (a.as_str(), obj.get("crv").and_then(Value::as_str)),
                (Some("ES256"), Some("P-256")) | (Some("EdDSA"), Some("Ed25519"))
            ),
        };
        if use_ok && alg_ok {
            usable.push(k.clone());
        }
    }
    let keys = keys_from_jwks(&json!({ "keys": usable }))
        .map_err(|_| ClientAuthError::BadJwks("a key does not parse"))?;
    if keys.is_empty() {
        return Err(ClientAuthError::BadJwks("no ES256 or EdDSA signing key"));
    }
    Ok(keys)
}

fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, ClientAuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(ClientAuthError::Malformed(
            "a time claim is not a whole number",
        )),
    }
}

/// Verifies a client assertion for `client_id` against the client's `keys` at `now`. The
/// caller still has to see that its `jti` was not used before (and remember it until
/// [`ClientAssertion::expires_at`]).
pub fn verify_assertion(
    assertion: &str,
    client_id: &str,
    keys: &[PublishedKey],
    policy: &AssertionPolicy,
    now: UnixTime,
) -> Result<ClientAssertion, ClientAuthError> {
    let v = verify_with(assertion, keys).map_err(|e| match e {
        JwtError::Malformed(m) => ClientAuthError::Malformed(m),
        other => ClientAuthError::Signature(other),
    })?;
    let c = &v.claims;
    let iss = c.get("iss").and_then(Value::as_str);
    let sub = c.get("sub").and_then(Value::as_str);
    if iss != Some(client_id) || sub != Some(client_id) {
        return Err(ClientAuthError::WrongClient);
    }
    let aud_ok = |a: &str| policy.audiences.iter().any(|x| x == a);
    let aud_matches = match c.get("aud") {
        Some(Value::String(a)) => aud_ok(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(aud_ok),
        _ => false,
    };
    if !aud_matches {
        return Err(ClientAuthError::WrongAudience);
    }
    let exp = seconds(c, "exp")?.ok_or(ClientAuthError::Malformed("no `exp`"))?;
    let now_s = now.as_secs();
    let skew = policy.skew.as_secs();
    if now_s >= exp {
        return Err(ClientAuthError::Expired);
    }
    if seconds(c, "nbf")?.is_some_and(|nbf| nbf > now_s.saturating_add(skew)) {
        return Err(ClientAuthError::NotYetValid);
    }
    if seconds(c, "iat")?.is_some_and(|iat| iat > now_s.saturating_add(skew)) {
        return Err(ClientAuthError::IssuedInFuture);
    }
    let max = policy.max_life.as_secs();
    if exp - now_s > max {
        return Err(ClientAuthError::TooLong(max));
    }
    let jti = c
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| (1..=MAX_JTI_BYTES).contains(&j.len()))
        .ok_or(ClientAuthError::Malformed("no `jti` of 1 to 256 bytes"))?;
    Ok(ClientAssertion {
        client_id: client_id.to_owned(),
        jti: jti.to_owned(),
        expires_at: UnixTime::from_secs(exp),
    })
}

// ---------------------------------------------------------------- certificates

/// The `x5t#S256` of a DER certificate: base64url of its SHA-256 (RFC 8705 §3.1).
pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// The certificate a connection presented, as the listener saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedCert<'a> {
    /// The leaf, DER.
    pub der: &'a [u8],
    /// The leaf's common name and kind (`node`, `client`, ...) when the chain verified against
    /// the zone's trust; `None` when it did not.
    pub verified: Option<(&'a str, &'a str)>,
}

/// Checks `tls_client_auth` (RFC 8705 §2.1): a zone node certificate that verified, with the
/// registered subject; gives the `x5t#S256` its access tokens are bound to.
pub fn verify_tls_client(
    subject: &str,
    presented: Option<PresentedCert<'_>>,
) -> Result<String, ClientAuthError> {
    let cert = presented.ok_or(ClientAuthError::NoCertificate)?;
    let (name, kind) = cert
        .verified
        .ok_or(ClientAuthError::CertificateNotVerified)?;
    if kind != "node" || name != subject {
        return Err(ClientAuthError::WrongCertificate);
    }
    Ok(x5t_s256(cert.der))
}

/// The `cnf` claim binding a token to the certificate whose thumbprint is `x5t`.
pub fn cnf_claim(x5t: &str) -> Value {
    json!({ X5T_S256: x5t })
}

/// Whether a token with confirmation `cnf` (its `cnf` claim, if any) may be used over a
/// connection that presented `presented` (the leaf's DER): a token without `cnf` anywhere; a
/// bound one only with the very certificate.
pub fn binding_holds(cnf: Option<&Value>, presented: Option<&[u8]>) -> bool {
    let Some(cnf) = cnf else { return true };
    let Some(want) = cnf.get(X5T_S256).and_then(Value::as_str) else {
        return false;
    };
    presented.is_some_and(|der| {
        let got = x5t_s256(der);
        tianping_core::ct_eq(got.as_bytes(), want.as_bytes())
    })
}

// ---------------------------------------------------------------- JWKS URIs

/// What a [`JwksFetch`] returns: the document's bytes, or why not.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;

/// Fetches a client's JWKS from its URI (over HTTPS with the zone's trust).
pub trait JwksFetch: Send + Sync {
    /// The bytes at `uri`.
    fn fetch<'a>(&'a self, uri: &'a str) -> FetchFuture<'a>;
}

#[derive(Debug, Clone)]
struct Cached {
    keys: Option<Vec<PublishedKey>>,
    /// When the keys were fetched.
    fetched_at: UnixTime,
    /// When a fetch was last started.
    attempted_at: UnixTime,
}

/// The JWKS of clients registered by URI, as last fetched: a `kid` the cached keys lack starts
/// a refetch, at most once per [`refetch_interval`](Self::refetch_interval); keys older than
/// [`max_age`](Self::max_age) are fetched again (and kept while a fetch fails).
pub struct JwksCache {
    fetch: Arc<dyn JwksFetch>,
    /// The least time between two fetches of one URI.
    pub refetch_interval: Duration,
    /// How long fetched keys are used without asking again.
    pub max_age: Duration,
    entries: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("refetch_interval", &self.refetch_interval)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache over `fetch` refetching at most once per `refetch_interval`, keys kept an hour.
    pub fn new(fetch: Arc<dyn JwksFetch>, refetch_interval: Duration) -> Self {
        Self {
            fetch,
            refetch_interval,
            max_age: Duration::from_secs(3600),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The keys published at `uri` for an assertion naming `kid`.
    pub async fn keys(
        &self,
        uri: &str,
        kid: Option<&str>,
        now: UnixTime,
    ) -> Result<Vec<PublishedKey>, ClientAuthError> {
        let poisoned = || ClientAuthError::KeysUnavailable("the cache's lock was poisoned".into());
        let cached = {
            let mut entries = self.entries.lock().map_err(|_| poisoned())?;
            let entry = entries.get(uri).cloned();
            if let Some(Cached {
                keys: Some(keys),
                fetched_at,
                ..
            }) = &entry
            {
                let fresh = now < fetched_at.saturating_add(self.max_age);
                let known = kid.is_none_or(|k| keys.iter().any(|x| x.kid == k));
                if fresh && known {
                    return Ok(keys.clone());
                }
            }
            let may_fetch = entry
                .as_ref()
                .is_none_or(|e| now >= e.attempted_at.saturating_add(self.refetch_interval));
            if !may_fetch {
                return match entry.and_then(|e| e.keys) {
                    Some(keys) => Ok(keys),
                    None => Err(ClientAuthError::KeysUnavailable(
                        "fetched too recently to try again".into(),
                    )),
                };
            }
            let mut next = entry.clone().unwrap_or(Cached {
                keys: None,
                fetched_at: now,
                attempted_at: now,
            });
            next.attempted_at = now;
            entries.insert(uri.to_owned(), next);
            entry.and_then(|e| e.keys)
        };
        let fetched = self
            .fetch
            .fetch(uri)
            .await
            .and_then(|bytes| parse_jwks(&bytes).map_err(|e| e.to_string()));
        match fetched {
            Ok(keys) => {
                let mut entries = self.entries.lock().map_err(|_| poisoned())?;
                entries.insert(
                    uri.to_owned(),
                    Cached {
                        keys: Some(keys.clone()),
                        fetched_at: now,
                        attempted_at: now,
                    },
                );
                Ok(keys)
            }
            Err(e) => cached.ok_or(ClientAuthError::KeysUnavailable(e)),
        }
    }
}

// ---------------------------------------------------------------- fuzzing

/// The client the `idp_client_assertion` fuzz target's assertions are checked for.
pub const FUZZ_CLIENT: &str = "fuzz-client";

/// The `idp_client_assertion` fuzz target: the input is an assertion, then optionally a newline
/// and a JWKS the client registered besides the fuzz keys (those of
/// [`fuzz_issuers`](crate::internal::fuzz_issuers)). Never panics; what verifies was signed by a
/// registered key of a published algorithm, is the fuzz client's, and lives within the policy;
/// a JWKS that parses has a key.
pub fn fuzz_client_assertion(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (assertion, jwks) = text.split_once('\n').unwrap_or((&text, ""));
    let kid = assertion_kid(assertion);
    let sub = assertion_subject(assertion);
    let body = crate::form::encode_pairs([
        ("grant_type", "client_credentials"),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", assertion),
    ]);
    if let Ok(req) = crate::parse_token_request(body.as_bytes(), None) {
        assert_eq!(req.client.method, ClientAuthMethod::PrivateKeyJwt);
        assert_eq!(Some(req.client.client_id), sub.clone());
    }
    let mut keys: Vec<PublishedKey> = crate::internal::fuzz_issuers()
        .iter()
        .flat_map(|i| i.keys().published(crate::internal::FUZZ_NOW))
        .collect();
    if let Some(Ok(registered)) = (!jwks.is_empty()).then(|| parse_jwks(jwks.as_bytes())) {
        assert!(!registered.is_empty());
        keys.extend(registered);
    }
    let policy = AssertionPolicy::for_issuer(crate::internal::FUZZ_ISSUER);
    let now = crate::internal::FUZZ_NOW;
    if let Ok(a) = verify_assertion(assertion, FUZZ_CLIENT, &keys, &policy, now) {
        let alg = part(assertion, 0)
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        assert!(ASSERTION_ALGS.contains(&alg.as_str()));
        assert!(kid.is_some_and(|k| keys.iter().any(|p| p.kid == k)));
        assert_eq!(sub.as_deref(), Some(FUZZ_CLIENT));
        assert_eq!(a.client_id, FUZZ_CLIENT);
        assert!(!a.jti.is_empty() && a.jti.len() <= MAX_JTI_BYTES);
        assert!(now < a.expires_at && a.expires_at <= now.saturating_add(policy.max_life));
    }
}

// ---------------------------------------------------------------- at the endpoints

/// A client the token, revocation or introspection endpoint authenticated, and the
/// `x5t#S256` of the certificate its access tokens are bound to (`tls_client_auth`).
#[cfg(feature = "server")]
pub(crate) struct Authenticated {
    pub(crate) client: crate::client::Client,
    pub(crate) x5t: Option<String>,
}

/// The client certificate of a connection, as [`verify_tls_client`] takes it.
#[cfg(feature = "server")]
pub(crate) fn presented(conn: Option<&tianping_net::ConnInfo>) -> Option<PresentedCert<'_>> {
    let conn = conn?;
    let der: &[u8] = conn.client_cert.as_deref()?;
    Some(PresentedCert {
        der,
        verified: conn
            .identity
            .as_deref()
            .map(|i| (i.name.as_str(), i.kind.as_str())),
    })
}

/// The `cnf` claim of one of this provider's access tokens, if it has one.
#[cfg(feature = "server")]
pub(crate) fn token_cnf(p: &crate::server::IdpParts, token: &str, now: UnixTime) -> Option<Value> {
    p.issuer
        .keys()
        .verify(token, now)
        .ok()?
        .claims
        .get("cnf")
        .cloned()
}

/// Authenticates the client of a request by the method it registered: a secret
/// ([`Client::authenticate`](crate::Client::authenticate)), an assertion verified against its
/// JWKS (registered, or fetched from its URI through `ctx`'s cache) whose `jti` is then noted in
/// the store, or the zone node certificate of `conn`. A refused key or certificate is audited
/// (`client.auth_refused`, naming why) and answered `invalid_client`.
#[cfg(feature = "server")]
pub(crate) async fn authenticate(
    ctx: crate::endpoints::Ctx<'_>,
    creds: &crate::client::ClientCredentials,
    conn: Option<&tianping_net::ConnInfo>,
    now: UnixTime,
) -> Result<Authenticated, IdpError> {
    let client = ctx
        .client(&creds.client_id)?
        .ok_or(IdpError::ClientAuthFailed)?;
    let outcome = match client.auth_method {
        ClientAuthMethod::PrivateKeyJwt => {
            by_key(ctx, &client.id, creds, now).await?.map(|()| None)
        }
        ClientAuthMethod::TlsClientAuth => by_certificate(ctx, &client.id, creds, conn)?.map(Some),
        _ => {
            client.authenticate(creds)?;
            Ok(None)
        }
    };
    match outcome {
        Ok(x5t) => Ok(Authenticated { client, x5t }),
        Err(why) => {
            refused(ctx.parts, now, &client.id, client.auth_method, &why).await?;
            Err(IdpError::ClientAuthFailed)
        }
    }
}

#[cfg(feature = "server")]
async fn by_key(
    ctx: crate::endpoints::Ctx<'_>,
    client_id: &str,
    creds: &crate::client::ClientCredentials,
    now: UnixTime,
) -> Result<Result<(), ClientAuthError>, IdpError> {
    let assertion = match (&creds.secret, creds.method) {
        (Some(a), ClientAuthMethod::PrivateKeyJwt) => a.expose().as_str(),
        _ => return Ok(Err(ClientAuthError::WrongMethod("private_key_jwt"))),
    };
    let keys = match ctx.parts.store.client_keys(client_id)? {
        Some(ClientKeys::Jwks(text)) => parse_jwks(text.as_bytes()),
        Some(ClientKeys::JwksUri(uri)) => match ctx.jwks {
            Some(cache) => {
                cache
                    .keys(&uri, assertion_kid(assertion).as_deref(), now)
                    .await
            }
            None => Err(ClientAuthError::KeysUnavailable(
                "this provider fetches no JWKS URIs".into(),
            )),
        },
        _ => Err(ClientAuthError::KeysUnavailable(
            "the client registered no keys".into(),
        )),
    };
    let keys = match keys {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    let policy = AssertionPolicy::for_issuer(ctx.parts.issuer.issuer());
    let verified = match verify_assertion(assertion, client_id, &keys, &policy, now) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let first =
        ctx.parts
            .store
            .note_assertion(client_id, &verified.jti, verified.expires_at, now)?;
    Ok(if first {
        Ok(())
    } else {
        Err(ClientAuthError::Replayed)
    })
}

#[cfg(feature = "server")]
fn by_certificate(
    ctx: crate::endpoints::Ctx<'_>,
    client_id: &str,
    creds: &crate::client::ClientCredentials,
    conn: Option<&tianping_net::ConnInfo>,
) -> Result<Result<String, ClientAuthError>, IdpError> {
    if creds.method != ClientAuthMethod::None {
        return Ok(Err(ClientAuthError::WrongMethod("tls_client_auth")));
    }
    let Some(ClientKeys::TlsSubject(subject)) = ctx.parts.store.client_keys(client_id)? else {
        return Ok(Err(ClientAuthError::KeysUnavailable(
            "the client registered no certificate subject".into(),
        )));
    };
    Ok(verify_tls_client(&subject, presented(conn)))
}

/// Records a refused key or certificate durably; the answer waits for it.
#[cfg(feature = "server")]
async fn refused(
    p: &crate::server::IdpParts,
    now: UnixTime,
    client_id: &str,
    method: ClientAuthMethod,
    why: &ClientAuthError,
) -> Result<(), IdpError> {
    crate::endpoints::record_outcome(
        p,
        now,
        "client.auth_refused",
        client_id,
        method.as_str(),
        "denied",
        &why.to_string(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    use super::*;

    const ISS: &str = "https://idp.private.example";
    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    struct Key {
        pair: EcdsaKeyPair,
        kid: String,
    }

    fn key(kid: &str) -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Key {
            pair,
            kid: kid.into(),
        }
    }

    impl Key {
        fn jwk(&self) -> Value {
            let p = self.pair.public_key().as_ref();
            json!({
                "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(p.get(1..33).unwrap()),
                "y": URL_SAFE_NO_PAD.encode(p.get(33..65).unwrap()),
            })
        }

        fn sign(&self, header: &Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = self
                .pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }

        fn assert(&self, claims: &Value) -> String {
            self.sign(&json!({"alg": "ES256", "kid": self.kid}), claims)
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "rp-1", "sub": "rp-1", "aud": format!("{ISS}/token"),
            "exp": NOW.as_secs() + 60, "iat": NOW.as_secs(), "jti": "j-1",
        })
    }

    fn with(mut c: Value, k: &str, v: Value) -> Value {
        c.as_object_mut().unwrap().insert(k.into(), v);
        c
    }

    fn verify(k: &Key, token: &str) -> Result<ClientAssertion, ClientAuthError> {
        let keys = parse_jwks(json!({ "keys": [k.jwk()] }).to_string().as_bytes()).unwrap();
        verify_assertion(token, "rp-1", &keys, &AssertionPolicy::for_issuer(ISS), NOW)
    }

    #[test]
    fn a_good_assertion_and_each_refusal() {
        let k = key("k1");
        let ok = verify(&k, &k.assert(&claims())).unwrap();
        assert_eq!(ok.jti, "j-1");
        assert_eq!(ok.expires_at.as_secs(), NOW.as_secs() + 60);
        // the issuer itself, and a list, as audience
        verify(&k, &k.assert(&with(claims(), "aud", json!(ISS)))).unwrap();
        verify(&k, &k.assert(&with(claims(), "aud", json!(["x", ISS])))).unwrap();
        let s = NOW.as_secs();
        for (c, want) in [
            (
                with(claims(), "aud", json!("https://other")),
                ClientAuthError::WrongAudience,
            ),
            (
                with(claims(), "aud", json!(["x"])),
                ClientAuthError::WrongAudience,
            ),
            (with(claims(), "exp", json!(s)), ClientAuthError::Expired),
            (
                with(claims(), "nbf", json!(s + 120)),
                ClientAuthError::NotYetValid,
            ),
            (
                with(claims(), "iat", json!(s + 120)),
                ClientAuthError::IssuedInFuture,
            ),
            (
                with(claims(), "exp", json!(s + 3600)),
                ClientAuthError::TooLong(600),
            ),
            (
                with(claims(), "iss", json!("rp-2")),
                ClientAuthError::WrongClient,
            ),
            (
                with(claims(), "sub", json!("rp-2")),
                ClientAuthError::WrongClient,
            ),
            (
                with(claims(), "jti", json!("")),
                ClientAuthError::Malformed("no `jti` of 1 to 256 bytes"),
            ),
            (
                with(claims(), "exp", json!(1.5)),
                ClientAuthError::Malformed("a time claim is not a whole number"),
            ),
        ] {
            assert_eq!(verify(&k, &k.assert(&c)), Err(want), "{c}");
        }
        // within the skew is fine
        verify(&k, &k.assert(&with(claims(), "iat", json!(s + 30)))).unwrap();
        // another key, an unknown kid, a bad signature
        let other = key("k1");
        assert_eq!(
            verify(&k, &other.assert(&claims())),
            Err(ClientAuthError::Signature(JwtError::BadSignature))
        );
        let stranger = key("k9");
        assert!(matches!(
            verify(&k, &stranger.assert(&claims())),
            Err(ClientAuthError::Signature(JwtError::UnknownKey(_)))
        ));
    }

    #[test]
    fn unpublished_algorithms_are_refused() {
        let k = key("k1");
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        for alg in ["none", "HS256", "RS256", "ES384"] {
            let h = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": "k1"}).to_string());
            let t = format!("{h}.{body}.{}", URL_SAFE_NO_PAD.encode(b"sig"));
            assert!(
                matches!(
                    verify(&k, &t),
                    Err(ClientAuthError::Signature(JwtError::AlgorithmNotAllowed(_)))
                ),
                "{alg}"
            );
        }
        let crit = k.sign(
            &json!({"alg": "ES256", "kid": "k1", "crit": ["x"]}),
            &claims(),
        );
        assert_eq!(
            verify(&k, &crit),
            Err(ClientAuthError::Signature(JwtError::CriticalHeader))
        );
    }

    #[test]
    fn unverified_peeks() {
        let k = key("k7");
        let t = k.assert(&claims());
        assert_eq!(assertion_kid(&t).as_deref(), Some("k7"));
        assert_eq!(assertion_subject(&t).as_deref(), Some("rp-1"));
        assert_eq!(assertion_subject("a.b.c"), None);
        assert_eq!(assertion_kid(""), None);
    }

    #[test]
    fn jwks_parsing_refuses_private_keys_and_needs_a_signing_key() {
        let k = key("k1");
        let mut private = k.jwk();
        private["d"] = json!("AAAA");
        let doc = |keys: Value| json!({ "keys": keys }).to_string();
        assert!(parse_jwks(doc(json!([private])).as_bytes()).is_err());
        let mut enc = k.jwk();
        enc["use"] = json!("enc");
        assert_eq!(
            parse_jwks(doc(json!([enc])).as_bytes()),
            Err(ClientAuthError::BadJwks("no ES256 or EdDSA signing key"))
        );
        let rsa = json!({"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"});
        assert_eq!(
            parse_jwks(doc(json!([rsa, k.jwk()])).as_bytes())
                .unwrap()
                .len(),
            1
        );
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(&vec![b' '; MAX_JWKS_BYTES + 1]).is_err());
        let jwks = ClientKeys::Jwks(doc(json!([k.jwk()])));
        ClientKeys::check_for(Some(&jwks), ClientAuthMethod::PrivateKeyJwt).unwrap();
        for (keys, method) in [
            (None, ClientAuthMethod::PrivateKeyJwt),
            (
                Some(ClientKeys::JwksUri("http://rp/jwks".into())),
                ClientAuthMethod::PrivateKeyJwt,
            ),
            (
                Some(ClientKeys::TlsSubject("n1".into())),
                ClientAuthMethod::PrivateKeyJwt,
            ),
            (None, ClientAuthMethod::TlsClientAuth),
            (
                Some(ClientKeys::TlsSubject(String::new())),
                ClientAuthMethod::TlsClientAuth,
            ),
            (Some(jwks.clone()), ClientAuthMethod::ClientSecretBasic),
        ] {
            assert!(
                ClientKeys::check_for(keys.as_ref(), method).is_err(),
                "{keys:?} {method:?}"
            );
        }
        let uri = ClientKeys::JwksUri("https://rp.example/jwks".into());
        ClientKeys::check_for(Some(&uri), ClientAuthMethod::PrivateKeyJwt).unwrap();
    }

    #[test]
    fn certificates_and_bindings() {
        let der = b"not really a certificate";
        let node = PresentedCert {
            der,
            verified: Some(("exchange-n1", "node")),
        };
        let x5t = verify_tls_client("exchange-n1", Some(node)).unwrap();
        assert_eq!(x5t, x5t_s256(der));
        assert_eq!(URL_SAFE_NO_PAD.decode(&x5t).unwrap().len(), 32);
        assert_eq!(
            verify_tls_client("exchange-n2", Some(node)),
            Err(ClientAuthError::WrongCertificate)
        );
        let person = PresentedCert {
            der,
            verified: Some(("exchange-n1", "client")),
        };
        assert_eq!(
            verify_tls_client("exchange-n1", Some(person)),
            Err(ClientAuthError::WrongCertificate)
        );
        let unverified = PresentedCert {
            der,
            verified: None,
        };
        assert_eq!(
            verify_tls_client("exchange-n1", Some(unverified)),
            Err(ClientAuthError::CertificateNotVerified)
        );
        assert_eq!(
            verify_tls_client("exchange-n1", None),
            Err(ClientAuthError::NoCertificate)
        );
        let cnf = cnf_claim(&x5t);
        assert!(binding_holds(Some(&cnf), Some(der)));
        assert!(!binding_holds(Some(&cnf), Some(b"another")));
        assert!(!binding_holds(Some(&cnf), None));
        assert!(!binding_holds(Some(&json!({})), Some(der)));
        assert!(binding_holds(None, None));
    }

    struct Counting {
        calls: AtomicUsize,
        doc: Mutex<Vec<u8>>,
    }

    impl JwksFetch for Counting {
        fn fetch<'a>(&'a self, _uri: &'a str) -> FetchFuture<'a> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let doc = self.doc.lock().unwrap().clone();
            Box::pin(async move { Ok(doc) })
        }
    }

    #[test]
    fn the_cache_refetches_an_unknown_kid_once_per_interval() {
        let (a, b) = (key("a"), key("b"));
        let doc = |keys: &[&Key]| {
            let keys: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
            json!({ "keys": keys }).to_string().into_bytes()
        };
        let f = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            doc: Mutex::new(doc(&[&a])),
        });
        let cache = JwksCache::new(f.clone(), Duration::from_secs(60));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let uri = "https://rp.example/jwks";
        let got = |kid: &str, at: u64| {
            rt.block_on(cache.keys(uri, Some(kid), NOW.saturating_add(Duration::from_secs(at))))
        };
        assert_eq!(got("a", 0).unwrap().len(), 1);
        assert_eq!(got("a", 1).unwrap().len(), 1);
        assert_eq!(
            f.calls.load(Ordering::SeqCst),
            1,
            "a known kid is served from the cache"
        );
        *f.doc.lock().unwrap() = doc(&[&a, &b]);
        // `b` unknown: refetch at most once per interval
        assert_eq!(got("b", 70).unwrap().len(), 2);
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
        assert_eq!(got("c", 71).unwrap().len(), 2);
        assert_eq!(got("c", 72).unwrap().len(), 2);
        assert_eq!(
            f.calls.load(Ordering::SeqCst),
            2,
            "no refetch within the interval"
        );
        assert_eq!(got("c", 131).unwrap().len(), 2);
        assert_eq!(f.calls.load(Ordering::SeqCst), 3);
        // a document that stops parsing keeps the keys had before
        *f.doc.lock().unwrap() = b"{}".to_vec();
        assert_eq!(got("d", 200).unwrap().len(), 2);
        assert_eq!(f.calls.load(Ordering::SeqCst), 4);
    }
}
