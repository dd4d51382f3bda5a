//! Bearer access tokens: RFC 9068 JWTs (`typ: at+jwt`) of the zone's IdP, verified against its
//! JWKS, with a cache of verified tokens until their expiry.
//!
//! Only what the zone's IdP signs with is taken: `ES256` (EC P-256) and `EdDSA` (Ed25519), each
//! with a `kid` of the JWKS and the key's own algorithm. Everything else is refused before a key
//! is looked at: `none`, every `HS*` (so an HMAC keyed with the public key cannot pass), `RS*`
//! and `PS*` (the IdP publishes no RSA key), a `crit` header, a `jku`/`jwk`/`x5u`/`x5c` header
//! (no key is ever taken from the token itself). Then the claims: this zone's issuer, this
//! gateway's audience, `exp`, `nbf` and `iat` within the clock skew, the identity claims of
//! DESIGN §8 for this zone, and a certificate-bound token (`cnf.x5t#S256`, RFC 8705) only over a
//! connection presenting that certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};
use serde::Deserialize;
use serde_json::{Map, Value};
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, CourtCode, PublicKey, Role, Signature, SubjectId, UnixTime,
    ZoneName, ct_eq,
};

use crate::config::Limits;
use crate::identity::Identity;

/// Why a bearer token was refused. Each is a 401 with an RFC 6750 `invalid_token` challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// Not a compact JWS of JSON objects, too long, or a claim of the wrong shape.
    #[error("malformed access token: {0}")]
    Malformed(&'static str),
    /// An `alg` the IdP does not sign with (`none`, `HS256`, `RS256`, ...).
    #[error("access token algorithm `{0}` is refused")]
    Algorithm(String),
    /// A header member that would take a key or an extension from the token.
    #[error("access token header member `{0}` is refused")]
    Header(&'static str),
    /// Not typed `at+jwt` (an ID token or a logout token offered as an access token).
    #[error("not an access token (typ `{0}`)")]
    Type(String),
    /// No key of the JWKS has this `kid` (a refresh of the JWKS may bring it).
    #[error("no key `{0}` in the IdP's key set")]
    UnknownKid(String),
    /// The key with this `kid` is of another algorithm than the header says.
    #[error("key `{0}` is not a key of the token's algorithm")]
    KeyAlgorithm(String),
    /// The signature does not verify.
    #[error("the access token's signature does not verify")]
    BadSignature,
    /// Issued by another issuer.
    #[error("the access token was issued by `{0}`, not this zone's IdP")]
    WrongIssuer(String),
    /// Made for another audience.
    #[error("the access token is not for this gateway")]
    WrongAudience,
    /// Past `exp` (and the skew).
    #[error("the access token expired at {exp} (unix seconds; now {now})")]
    Expired {
        /// `exp`.
        exp: u64,
        /// The time it was checked.
        now: u64,
    },
    /// `nbf` or `iat` after now (beyond the skew).
    #[error("the access token is not valid before {at} (unix seconds; now {now})")]
    NotYetValid {
        /// `nbf` or `iat`.
        at: u64,
        /// The time it was checked.
        now: u64,
    },
    /// Vouches for a person of another zone.
    #[error("the access token is for zone `{0}`")]
    WrongZone(String),
    /// Bound to a certificate (`cnf.x5t#S256`) the connection did not present.
    #[error("the access token is bound to a client certificate this connection did not present")]
    CertificateBinding,
    /// The JWKS could not be had (unreachable, refused, or not a key set): fail closed.
    #[error("the IdP's keys are not available: {0}")]
    KeysUnavailable(String),
}

impl BearerError {
    /// The RFC 6750 `WWW-Authenticate` value for this refusal.
    pub fn www_authenticate(&self) -> String {
        bearer_challenge("invalid_token", &self.to_string())
    }
}

/// An RFC 6750 §3 challenge (`error_description` with `"` and `\` dropped, which it may not hold).
pub fn bearer_challenge(error: &str, description: &str) -> String {
    let desc: String = description
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect();
    format!("Bearer realm=\"tianping\", error=\"{error}\", error_description=\"{desc}\"")
}

/// One key of the IdP's JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksKey {
    /// Its `kid`.
    pub kid: String,
    /// The key (its algorithm with it).
    pub key: PublicKey,
}

/// The IdP's published keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<JwksKey>,
}

/// The most keys a JWKS may hold (the IdP publishes its signing key and those rotated out).
pub const MAX_JWKS_KEYS: usize = 64;
/// The largest JWKS document read, in bytes.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

impl Jwks {
    /// The key set in a JWKS document (RFC 7517): EC P-256 and OKP Ed25519 keys with a `kid`;
    /// keys of other types (RSA, symmetric `oct`) are skipped, so they can never verify.
    pub fn parse(doc: &[u8]) -> Result<Self, BearerError> {
        let unavailable = |w: &str| BearerError::KeysUnavailable(w.to_owned());
        if doc.len() > MAX_JWKS_BYTES {
            return Err(unavailable("the key set is too large"));
        }
        let v: Value = serde_json::from_slice(doc).map_err(|_| unavailable("not JSON"))?;
        let list = v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| unavailable("no `keys` array"))?;
        if list.len() > MAX_JWKS_KEYS {
            return Err(unavailable("too many keys"));
        }
        let b64 = |k: &Value, name: &str| -> Result<Vec<u8>, BearerError> {
            k.get(name)
                .and_then(Value::as_str)
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
                .ok_or_else(|| unavailable("a key's coordinates"))
        };
        let mut keys = Vec::new();
        for k in list {
            let (alg, bytes) = match (
                k.get("kty").and_then(Value::as_str),
                k.get("crv").and_then(Value::as_str),
            ) {
                (Some("EC"), Some("P-256")) => {
                    let mut b = vec![4u8];
                    b.extend(b64(k, "x")?);
                    b.extend(b64(k, "y")?);
                    (Algorithm::Es256, b)
                }
                (Some("OKP"), Some("Ed25519")) => (Algorithm::Ed25519, b64(k, "x")?),
                _ => continue,
            };
            if k.get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Some(kid) = k.get("kid").and_then(Value::as_str) else {
                continue;
            };
            let key =
                PublicKey::new(alg, bytes).map_err(|_| unavailable("a key that is not one"))?;
            keys.push(JwksKey {
                kid: kid.to_owned(),
                key,
            });
        }
        Ok(Self { keys })
    }

    /// A key set of these keys.
    pub fn from_keys(keys: Vec<JwksKey>) -> Self {
        Self { keys }
    }

    /// The key with `kid`.
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| &k.key)
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A verified access token: who it vouches for, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// `sub`.
    pub sub: SubjectId,
    /// `roles`.
    pub roles: Vec<Role>,
    /// `court`.
    pub court: Option<CourtCode>,
    /// `clearance` (`none` when absent).
    pub clearance: Clearance,
    /// `acr` (`pwd` when absent).
    pub acr: Acr,
    /// `amr`.
    pub amr: Vec<Amr>,
    /// `client_id`: the client the token was issued to.
    pub client_id: String,
    /// `scope`.
    pub scope: String,
    /// `jti`.
    pub jti: String,
    /// `exp`.
    pub expires_at: UnixTime,
    /// `cnf.x5t#S256`: the certificate it is bound to.
    pub bound_to: Option<[u8; 32]>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    #[serde(default)]
    aud: Option<Value>,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    sub: SubjectId,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    jti: String,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default)]
    court: Option<CourtCode>,
    #[serde(default)]
    clearance: Option<Clearance>,
    #[serde(default)]
    acr: Option<Acr>,
    #[serde(default)]
    amr: Vec<Amr>,
    zone: Option<ZoneName>,
    #[serde(default)]
    cnf: Option<Map<String, Value>>,
}

/// Verifies the zone IdP's access tokens for one gateway, caching verified ones.
#[derive(Debug)]
pub struct BearerVerifier {
    issuer: String,
    audience: String,
    zone: ZoneName,
    jwks: Jwks,
    limits: Limits,
    /// Shared, so a hit costs a reference count, not a copy of the claims.
    cache: Mutex<HashMap<[u8; 32], VerifiedBearer>>,
}

/// A verified access token and the identity it vouches for, made once when it is first
/// verified: a request with a cached token copies neither (two reference counts).
#[derive(Debug, Clone)]
pub struct VerifiedBearer {
    /// The token.
    pub token: Arc<AccessToken>,
    /// Its person.
    pub identity: Arc<Identity>,
}

impl BearerVerifier {
    /// A verifier of tokens issued by `issuer` for `audience`, vouching for people of `zone`,
    /// under the key set `jwks`.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        zone: ZoneName,
        jwks: Jwks,
        limits: Limits,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            zone,
            jwks,
            limits,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same verifier with a new key set (cached tokens stay: their signatures were checked).
    pub fn with_jwks(&self, jwks: Jwks) -> Self {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Self {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            zone: self.zone.clone(),
            jwks,
            limits: self.limits.clone(),
            cache: Mutex::new(cache),
        }
    }

    /// The key set in use.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// How many verified tokens are cached.
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Verifies `token` at `now`, over a connection that presented the client certificate whose
    /// SHA-256 is `client_cert` (if any). A token verified before is taken from the cache; its
    /// expiry and certificate binding are checked again.
    pub fn verify(
        &self,
        token: &[u8],
        client_cert: Option<&[u8; 32]>,
        now: UnixTime,
    ) -> Result<Arc<AccessToken>, BearerError> {
        self.verify_person(token, client_cert, now).map(|v| v.token)
    }

    /// [`Self::verify`], with the identity the token vouches for (cached with it).
    pub fn verify_person(
        &self,
        token: &[u8],
        client_cert: Option<&[u8; 32]>,
        now: UnixTime,
    ) -> Result<VerifiedBearer, BearerError> {
        if token.len() > self.limits.max_token_bytes {
            return Err(BearerError::Malformed("too long"));
        }
        let id: [u8; 32] = digest(&SHA256, token)
            .as_ref()
            .try_into()
            .map_err(|_| BearerError::Malformed("digest"))?;
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        let v = match cached {
            Some(v) => v,
            None => {
                let token = Arc::new(self.check(token, now)?);
                let v = VerifiedBearer {
                    identity: Arc::new(Identity::from_token(&token)),
                    token,
                };
                self.remember(id, &v, now);
                v
            }
        };
        self.check_live(&v.token, client_cert, now)?;
        Ok(v)
    }

    fn remember(&self, id: [u8; 32], v: &VerifiedBearer, now: UnixTime) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.limits.token_cache_entries {
            let skew = self.limits.clock_skew.as_secs();
            cache.retain(|_, v| v.token.expires_at.as_secs().saturating_add(skew) > now.as_secs());
        }
        if cache.len() < self.limits.token_cache_entries {
            cache.insert(id, v.clone());
        }
    }

    fn check_live(
        &self,
        t: &AccessToken,
        client_cert: Option<&[u8; 32]>,
        now: UnixTime,
    ) -> Result<(), BearerError> {
        let skew = self.limits.clock_skew.as_secs();
        let exp = t.expires_at.as_secs();
        if now.as_secs() >= exp.saturating_add(skew) {
            return Err(BearerError::Expired {
                exp,
                now: now.as_secs(),
            });
        }
        if let Some(bound) = &t.bound_to {
            match client_cert {
                Some(c) if ct_eq(c, bound) => {}
                _ => return Err(BearerError::CertificateBinding),
            }
        }
        Ok(())
    }

    /// Everything but expiry and binding, which [`Self::check_live`] checks on every use.
    fn check(&self, token: &[u8], now: UnixTime) -> Result<AccessToken, BearerError> {
        let text = std::str::from_utf8(token).map_err(|_| BearerError::Malformed("not text"))?;
        let mut parts = text.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BearerError::Malformed("expected three parts"));
        };
        let header = object(h64, "header")?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(BearerError::Malformed("no `alg`"))?;
        let algorithm = match alg {
            "ES256" => Algorithm::Es256,
            "EdDSA" => Algorithm::Ed25519,
            other => return Err(BearerError::Algorithm(other.chars().take(32).collect())),
        };
        for member in ["crit", "jku", "jwk", "x5u", "x5c"] {
            if header.contains_key(member) {
                return Err(BearerError::Header(member));
            }
        }
        match header.get("typ").and_then(Value::as_str) {
            Some(t)
                if t.eq_ignore_ascii_case("at+jwt")
                    || t.eq_ignore_ascii_case("application/at+jwt") => {}
            other => {
                return Err(BearerError::Type(
                    other.unwrap_or_default().chars().take(32).collect(),
                ));
            }
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(BearerError::Malformed("no `kid`"))?;
        let key = self
            .jwks
            .get(kid)
            .ok_or_else(|| BearerError::UnknownKid(kid.chars().take(64).collect()))?;
        if key.algorithm() != algorithm {
            return Err(BearerError::KeyAlgorithm(kid.chars().take(64).collect()));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s64)
            .map_err(|_| BearerError::Malformed("signature"))?;
        let sig = Signature::new(algorithm, sig).map_err(|_| BearerError::BadSignature)?;
        let signed = text
            .get(..h64.len() + 1 + p64.len())
            .ok_or(BearerError::Malformed("parts"))?;
        key.verify(signed.as_bytes(), &sig)
            .map_err(|_| BearerError::BadSignature)?;

        let payload = URL_SAFE_NO_PAD
            .decode(p64)
            .map_err(|_| BearerError::Malformed("payload"))?;
        let c: Claims =
            serde_json::from_slice(&payload).map_err(|_| BearerError::Malformed("claims"))?;
        if !ct_eq(c.iss.as_bytes(), self.issuer.as_bytes()) {
            return Err(BearerError::WrongIssuer(c.iss.chars().take(128).collect()));
        }
        let aud_ok = match &c.aud {
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&self.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(BearerError::WrongAudience);
        }
        let skew = self.limits.clock_skew.as_secs();
        let now_s = now.as_secs();
        for at in [c.nbf, c.iat].into_iter().flatten() {
            if at > now_s.saturating_add(skew) {
                return Err(BearerError::NotYetValid { at, now: now_s });
            }
        }
        match &c.zone {
            Some(z) if *z == self.zone => {}
            Some(z) => return Err(BearerError::WrongZone(z.as_str().to_owned())),
            None => return Err(BearerError::Malformed("no `zone` (not a person's token)")),
        }
        let bound_to = match &c.cnf {
            None => None,
            Some(cnf) => {
                let x5t = cnf
                    .get("x5t#S256")
                    .and_then(Value::as_str)
                    .ok_or(BearerError::Malformed("`cnf` without `x5t#S256`"))?;
                let bytes = URL_SAFE_NO_PAD
                    .decode(x5t)
                    .map_err(|_| BearerError::Malformed("`x5t#S256`"))?;
                Some(
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map_err(|_| BearerError::Malformed("`x5t#S256`"))?,
                )
            }
        };
        Ok(AccessToken {
            sub: c.sub,
            roles: c.roles,
            court: c.court,
            clearance: c.clearance.unwrap_or(Clearance::None),
            acr: c.acr.unwrap_or(Acr::Pwd),
            amr: c.amr,
            client_id: c.client_id,
            scope: c.scope,
            jti: c.jti,
            expires_at: UnixTime::from_secs(c.exp),
            bound_to,
        })
    }
}

fn object(part: &str, what: &'static str) -> Result<Map<String, Value>, BearerError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| BearerError::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(BearerError::Malformed(what)),
    }
}

/// When the JWKS may be fetched again: on an unknown `kid` at most once per
/// [`Limits::jwks_refresh_min`], and whenever it is older than [`Limits::jwks_max_age`].
#[derive(Debug, Clone, Default)]
pub struct JwksSchedule {
    last_fetch: Option<u64>,
}

impl JwksSchedule {
    /// Notes a fetch (successful or not) at `now`.
    pub fn fetched(&mut self, now: UnixTime) {
        self.last_fetch = Some(now.as_secs());
    }

    /// Whether an unknown `kid` seen at `now` may cause a fetch.
    pub fn may_refresh(&self, limits: &Limits, now: UnixTime) -> bool {
        self.last_fetch
            .is_none_or(|t| now.as_secs() >= t.saturating_add(limits.jwks_refresh_min.as_secs()))
    }

    /// Whether the key set is due to be fetched again at `now`.
    pub fn is_stale(&self, limits: &Limits, now: UnixTime) -> bool {
        self.last_fetch
            .is_none_or(|t| now.as_secs() >= t.saturating_add(limits.jwks_max_age.as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ring::hmac;
    use serde_json::json;
    use tianping_core::{RingSigner, Signer};

    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;
    const ISS: &str = "https://idp.private.tianping.localhost:9443";
    const AUD: &str = "https://gw.private.tianping.localhost:8443";
    const NOW: u64 = 1_800_000_000;

    struct Idp {
        signer: RingSigner,
        kid: String,
    }

    impl Idp {
        fn new(alg: Algorithm, kid: &str) -> Result<Self, Box<dyn std::error::Error>> {
            Ok(Self {
                signer: RingSigner::generate(alg)?.0,
                kid: kid.into(),
            })
        }

        fn jwk(&self) -> Value {
            let k = self.signer.public_key();
            let b = k.as_bytes();
            match k.algorithm() {
                Algorithm::Es256 => json!({"kty":"EC","crv":"P-256","use":"sig","kid":self.kid,
                    "x": URL_SAFE_NO_PAD.encode(b.get(1..33).unwrap_or_default()),
                    "y": URL_SAFE_NO_PAD.encode(b.get(33..65).unwrap_or_default())}),
                Algorithm::Ed25519 => {
                    json!({"kty":"OKP","crv":"Ed25519","kid":self.kid,"x":URL_SAFE_NO_PAD.encode(b)})
                }
            }
        }

        fn sign_raw(
            &self,
            header: &Value,
            claims: &Value,
        ) -> Result<String, Box<dyn std::error::Error>> {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?),
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
            );
            let sig = self.signer.sign(input.as_bytes())?;
            Ok(format!(
                "{input}.{}",
                URL_SAFE_NO_PAD.encode(sig.as_bytes())
            ))
        }

        fn sign(&self, claims: &Value) -> Result<String, Box<dyn std::error::Error>> {
            let alg = match self.signer.algorithm() {
                Algorithm::Es256 => "ES256",
                Algorithm::Ed25519 => "EdDSA",
            };
            self.sign_raw(&json!({"alg":alg,"typ":"at+jwt","kid":self.kid}), claims)
        }
    }

    fn claims() -> Value {
        json!({"iss":ISS,"aud":AUD,"client_id":"gw-private","exp":NOW+300,"iat":NOW,
            "jti":"j-1","scope":"openid","sub":"u-1001","court":"bj.01","roles":["judge"],
            "clearance":"none","acr":"otp","amr":["pwd","otp"],"zone":"private","auth_time":NOW})
    }

    fn verifier(idps: &[&Idp]) -> Result<BearerVerifier, Box<dyn std::error::Error>> {
        let doc = json!({"keys": idps.iter().map(|i| i.jwk()).collect::<Vec<_>>()});
        let jwks = Jwks::parse(&serde_json::to_vec(&doc)?)?;
        Ok(BearerVerifier::new(
            ISS,
            AUD,
            "private".parse()?,
            jwks,
            Limits::default(),
        ))
    }

    fn at(s: u64) -> UnixTime {
        UnixTime::from_secs(s)
    }

    #[test]
    fn tokens_of_both_idp_algorithms_verify_and_are_cached() -> R {
        let es = Idp::new(Algorithm::Es256, "k-es")?;
        let ed = Idp::new(Algorithm::Ed25519, "k-ed")?;
        let v = verifier(&[&es, &ed])?;
        let t = v.verify(es.sign(&claims())?.as_bytes(), None, at(NOW))?;
        assert_eq!(t.sub.as_str(), "u-1001");
        assert_eq!(t.acr, Acr::Otp);
        assert_eq!(t.roles, vec![Role::Judge]);
        let t2 = v.verify(ed.sign(&claims())?.as_bytes(), None, at(NOW))?;
        assert_eq!(t2.court, t.court);
        assert_eq!(v.cached(), 2);
        Ok(())
    }

    fn refused(v: &BearerVerifier, token: &str) -> Result<BearerError, Box<dyn std::error::Error>> {
        match v.verify(token.as_bytes(), None, at(NOW)) {
            Ok(_) => Err("accepted".into()),
            Err(e) => Ok(e),
        }
    }

    #[test]
    fn alg_none_and_hs256_with_the_public_key_are_refused() -> R {
        let es = Idp::new(Algorithm::Es256, "k-es")?;
        let v = verifier(&[&es])?;
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt","kid":"k-es"}"#);
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims())?);
        assert_eq!(
            refused(&v, &format!("{h}.{p}."))?,
            BearerError::Algorithm("none".into())
        );
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"at+jwt","kid":"k-es"}"#);
        let input = format!("{h}.{p}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, es.signer.public_key().as_bytes());
        let mac = hmac::sign(&key, input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        assert_eq!(refused(&v, &token)?, BearerError::Algorithm("HS256".into()));
        let rs = es.sign_raw(
            &json!({"alg":"RS256","typ":"at+jwt","kid":"k-es"}),
            &claims(),
        )?;
        assert_eq!(refused(&v, &rs)?, BearerError::Algorithm("RS256".into()));
        let jwk = es.sign_raw(
            &json!({"alg":"ES256","typ":"at+jwt","kid":"k-es","jwk":es.jwk()}),
            &claims(),
        )?;
        assert_eq!(refused(&v, &jwk)?, BearerError::Header("jwk"));
        let id_token = es.sign_raw(&json!({"alg":"ES256","typ":"JWT","kid":"k-es"}), &claims())?;
        assert_eq!(refused(&v, &id_token)?, BearerError::Type("JWT".into()));
        Ok(())
    }

    #[test]
    fn expired_not_yet_valid_audience_issuer_and_zone_are_refused() -> R {
        let es = Idp::new(Algorithm::Es256, "k-es")?;
        let v = verifier(&[&es])?;
        let with = |k: &str, val: Value| -> Value {
            let mut c = claims();
            if let Some(o) = c.as_object_mut() {
                o.insert(k.into(), val);
            }
            c
        };
        let skew = Limits::default().clock_skew.as_secs();
        let e = refused(&v, &es.sign(&with("exp", json!(NOW - skew)))?)?;
        assert_eq!(
            e,
            BearerError::Expired {
                exp: NOW - skew,
                now: NOW
            }
        );
        assert!(
            v.verify(
                es.sign(&with("exp", json!(NOW - skew + 1)))?.as_bytes(),
                None,
                at(NOW)
            )
            .is_ok()
        );
        let e = refused(&v, &es.sign(&with("nbf", json!(NOW + skew + 1)))?)?;
        assert_eq!(
            e,
            BearerError::NotYetValid {
                at: NOW + skew + 1,
                now: NOW
            }
        );
        let e = refused(&v, &es.sign(&with("iat", json!(NOW + 3600)))?)?;
        assert!(matches!(e, BearerError::NotYetValid { .. }));
        let e = refused(
            &v,
            &es.sign(&with(
                "aud",
                json!("https://gw.internet.tianping.localhost"),
            ))?,
        )?;
        assert_eq!(e, BearerError::WrongAudience);
        assert!(
            v.verify(
                es.sign(&with("aud", json!(["x", AUD])))?.as_bytes(),
                None,
                at(NOW)
            )
            .is_ok()
        );
        let e = refused(
            &v,
            &es.sign(&with(
                "iss",
                json!("https://idp.internet.tianping.localhost"),
            ))?,
        )?;
        assert!(matches!(e, BearerError::WrongIssuer(_)));
        let e = refused(&v, &es.sign(&with("zone", json!("internet")))?)?;
        assert_eq!(e, BearerError::WrongZone("internet".into()));
        Ok(())
    }

    #[test]
    fn an_unknown_kid_and_one_bit_changed_are_refused() -> R {
        let es = Idp::new(Algorithm::Es256, "k-es")?;
        let other = Idp::new(Algorithm::Es256, "k-other")?;
        let v = verifier(&[&es])?;
        assert_eq!(
            refused(&v, &other.sign(&claims())?)?,
            BearerError::UnknownKid("k-other".into())
        );
        let token = es.sign(&claims())?;
        let (input, sig) = token.rsplit_once('.').ok_or("no dot")?;
        let mut raw = URL_SAFE_NO_PAD.decode(sig)?;
        if let Some(b) = raw.get_mut(10) {
            *b ^= 0x01;
        }
        let flipped = format!("{input}.{}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(refused(&v, &flipped)?, BearerError::BadSignature);
        // the key of the same kid with another algorithm
        let ed = Idp::new(Algorithm::Ed25519, "k-es")?;
        assert_eq!(
            refused(&v, &ed.sign(&claims())?)?,
            BearerError::KeyAlgorithm("k-es".into())
        );
        // a refreshed key set brings the new key
        let v2 = v.with_jwks(Jwks::from_keys(vec![JwksKey {
            kid: "k-other".into(),
            key: other.signer.public_key(),
        }]));
        assert!(
            v2.verify(other.sign(&claims())?.as_bytes(), None, at(NOW))
                .is_ok()
        );
        Ok(())
    }

    #[test]
    fn a_certificate_bound_token_needs_its_certificate() -> R {
        let es = Idp::new(Algorithm::Es256, "k-es")?;
        let v = verifier(&[&es])?;
        let cert = [7u8; 32];
        let mut c = claims();
        if let Some(o) = c.as_object_mut() {
            o.insert(
                "cnf".into(),
                json!({"x5t#S256": URL_SAFE_NO_PAD.encode(cert)}),
            );
        }
        let token = es.sign(&c)?;
        assert_eq!(refused(&v, &token)?, BearerError::CertificateBinding);
        assert_eq!(
            v.verify(token.as_bytes(), Some(&[8u8; 32]), at(NOW)),
            Err(BearerError::CertificateBinding)
        );
        let t = v.verify(token.as_bytes(), Some(&cert), at(NOW))?;
        assert_eq!(t.bound_to, Some(cert));
        // cached, still checked
        assert_eq!(refused(&v, &token)?, BearerError::CertificateBinding);
        Ok(())
    }

    #[test]
    fn a_cached_token_still_expires() -> R {
        let es = Idp::new(Algorithm::Es256, "k-es")?;
        let v = verifier(&[&es])?;
        let token = es.sign(&claims())?;
        v.verify(token.as_bytes(), None, at(NOW))?;
        let later = NOW + 300 + Limits::default().clock_skew.as_secs();
        assert!(matches!(
            v.verify(token.as_bytes(), None, at(later)),
            Err(BearerError::Expired { .. })
        ));
        Ok(())
    }

    #[test]
    fn jwks_refresh_is_rate_limited() {
        let limits = Limits::default();
        let mut s = JwksSchedule::default();
        assert!(s.may_refresh(&limits, at(NOW)));
        s.fetched(at(NOW));
        assert!(!s.may_refresh(&limits, at(NOW + 59)));
        assert!(s.may_refresh(&limits, at(NOW + 60)));
        assert!(!s.is_stale(&limits, at(NOW + 599)));
        assert!(s.is_stale(&limits, at(NOW + Duration::from_secs(600).as_secs())));
    }

    #[test]
    fn a_jwks_without_usable_keys_verifies_nothing() -> R {
        let j = Jwks::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k"},{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"}]}"#)?;
        assert!(j.is_empty());
        assert!(matches!(
            Jwks::parse(b"[]"),
            Err(BearerError::KeysUnavailable(_))
        ));
        Ok(())
    }
}
