//! Signed JWTs (JWS compact form, RFC 7515/7519) over [`Signer`]s: ES256 by default, EdDSA
//! (Ed25519) available. A [`KeySet`] publishes its keys as a JWKS with `kid`s and keeps a
//! rotated-out key published until every token it signed has expired.
//!
//! An incoming JWT is checked against the published algorithms and keys only: its `alg` must be
//! `ES256` or `EdDSA` and its `kid` one of the set's keys of that algorithm. `none`, every `HS*`
//! (so an HMAC keyed with a public key cannot pass), `RS*`, JWE and `crit` are refused before any
//! key is looked at.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use tianping_core::{Algorithm, PublicKey, Signature, Signer, UnixTime};

use crate::IdpError;
use crate::error::quoted;

/// The most bytes an incoming JWT may hold.
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// Why an incoming JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON objects.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// An `alg` this provider does not publish (`none`, `HS256`, `RS256`, ...).
    #[error("algorithm `{0}` is not accepted")]
    AlgorithmNotAllowed(String),
    /// A `crit` header: no extension is understood.
    #[error("critical header extensions are not supported")]
    CriticalHeader,
    /// No published key has this `kid` and algorithm.
    #[error("no published key `{0}` for this algorithm")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// `iss` is not this provider.
    #[error("the token was issued by someone else")]
    WrongIssuer,
    /// `aud` does not name the expected audience.
    #[error("the token is for another audience")]
    WrongAudience,
    /// The `typ` header is not the one this use takes (an access token offered as an ID token).
    #[error("token type `{0}` is not accepted here")]
    WrongType(String),
}

/// The JWS `alg` name for a signature algorithm.
pub fn jws_alg(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Es256 => "ES256",
        Algorithm::Ed25519 => "EdDSA",
    }
}

fn algorithm_of(alg: &str) -> Option<Algorithm> {
    Algorithm::ALL.iter().copied().find(|a| jws_alg(*a) == alg)
}

/// A key's id: base64url of the first 16 bytes of its fingerprint.
pub fn kid_of(key: &PublicKey) -> String {
    URL_SAFE_NO_PAD.encode(key.fingerprint().get(..16).unwrap_or_default())
}

/// A public key as a JWK (RFC 7517; EC P-256 per RFC 7518, OKP Ed25519 per RFC 8037).
pub fn jwk(key: &PublicKey, kid: &str) -> Value {
    let b = key.as_bytes();
    match key.algorithm() {
        Algorithm::Es256 => json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(b.get(1..33).unwrap_or_default()),
            "y": URL_SAFE_NO_PAD.encode(b.get(33..65).unwrap_or_default()),
        }),
        Algorithm::Ed25519 => json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(b),
        }),
    }
}

/// The keys of a JWKS document (the inverse of [`jwk`]), as a relying party reads them: EC
/// P-256 and OKP Ed25519 keys with a `kid`; keys of other types are skipped.
pub fn keys_from_jwks(jwks: &Value) -> Result<Vec<PublishedKey>, JwtError> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwtError::Malformed("jwks"))?;
    let field = |k: &Value, name: &str| -> Result<Vec<u8>, JwtError> {
        let v = k
            .get(name)
            .and_then(Value::as_str)
            .ok_or(JwtError::Malformed("jwk"))?;
        URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|_| JwtError::Malformed("jwk"))
    };
    let mut out = Vec::new();
    for k in keys {
        let (algorithm, bytes) = match (
            k.get("kty").and_then(Value::as_str),
            k.get("crv").and_then(Value::as_str),
        ) {
            (Some("EC"), Some("P-256")) => {
                let mut b = vec![4u8];
                b.extend(field(k, "x")?);
                b.extend(field(k, "y")?);
                (Algorithm::Es256, b)
            }
            (Some("OKP"), Some("Ed25519")) => (Algorithm::Ed25519, field(k, "x")?),
            _ => continue,
        };
        let kid = k
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(JwtError::Malformed("jwk"))?;
        let key = PublicKey::new(algorithm, bytes).map_err(|_| JwtError::Malformed("jwk"))?;
        out.push(PublishedKey {
            kid: kid.to_owned(),
            key,
            until: None,
        });
    }
    Ok(out)
}

/// A key the set publishes, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    /// The key's id.
    pub kid: String,
    /// The key.
    pub key: PublicKey,
    /// When it stops being published (`None` for the signing key).
    pub until: Option<UnixTime>,
}

/// A JWT whose signature checked, not yet its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJwt {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
}

impl VerifiedJwt {
    /// The `typ` header, if any.
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }

    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Checks `iss`, `exp` (unless `allow_expired`) and, if given, that `aud` names `audience`.
    pub fn check(
        &self,
        issuer: &str,
        audience: Option<&str>,
        now: UnixTime,
        allow_expired: bool,
    ) -> Result<(), JwtError> {
        if self.str_claim("iss") != Some(issuer) {
            return Err(JwtError::WrongIssuer);
        }
        let exp = self
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(JwtError::Malformed("no `exp`"))?;
        if !allow_expired && now.as_secs() >= exp {
            return Err(JwtError::Expired);
        }
        if let Some(aud) = audience {
            let ok = match self.claims.get("aud") {
                Some(Value::String(s)) => s == aud,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(aud)),
                _ => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        Ok(())
    }
}

/// The provider's token-signing keys: one signing key, and the keys rotated out of signing that
/// stay published until the tokens they signed have expired.
#[derive(Debug, Clone)]
pub struct KeySet {
    signer: Arc<dyn Signer>,
    kid: String,
    previous: Vec<PublishedKey>,
}

impl KeySet {
    /// A set that signs with `signer`.
    pub fn new(signer: Arc<dyn Signer>) -> Self {
        let kid = kid_of(&signer.public_key());
        Self {
            signer,
            kid,
            previous: Vec::new(),
        }
    }

    /// A set that signs with `signer` and still publishes `previous` (keys rotated out of
    /// signing, each until its `until`), as a key folder kept them; those expired at `now`, and
    /// any without an `until`, are dropped.
    pub fn restore(signer: Arc<dyn Signer>, previous: Vec<PublishedKey>, now: UnixTime) -> Self {
        let mut set = Self::new(signer);
        set.previous = previous.into_iter().filter(|k| k.kid != set.kid).collect();
        set.prune(now);
        set
    }

    /// The signing key's id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs with `signer` from now on; the old key stays published for `longest_token_life`
    /// (the longest life of a token it signed) from `now`.
    pub fn rotate(&mut self, signer: Arc<dyn Signer>, now: UnixTime, longest_token_life: Duration) {
        let old = PublishedKey {
            kid: self.kid.clone(),
            key: self.signer.public_key(),
            until: Some(now.saturating_add(longest_token_life)),
        };
        self.kid = kid_of(&signer.public_key());
        self.signer = signer;
        self.previous.retain(|k| k.kid != old.kid);
        self.previous.push(old);
        self.prune(now);
    }

    /// Forgets rotated-out keys whose tokens have all expired.
    pub fn prune(&mut self, now: UnixTime) {
        self.previous.retain(|k| k.until.is_some_and(|u| now < u));
    }

    /// The keys published at `now`, the signing key first.
    pub fn published(&self, now: UnixTime) -> Vec<PublishedKey> {
        let current = PublishedKey {
            kid: self.kid.clone(),
            key: self.signer.public_key(),
            until: None,
        };
        std::iter::once(current)
            .chain(
                self.previous
                    .iter()
                    .filter(|k| k.until.is_some_and(|u| now < u))
                    .cloned(),
            )
            .collect()
    }

    /// The JWKS document (`{"keys": [...]}`) at `now`.
    pub fn jwks(&self, now: UnixTime) -> Value {
        let keys: Vec<Value> = self
            .published(now)
            .iter()
            .map(|k| jwk(&k.key, &k.kid))
            .collect();
        json!({ "keys": keys })
    }

    /// The JWS `alg` values the set signs and accepts, for the discovery document.
    pub fn algorithms(&self, now: UnixTime) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = Vec::new();
        for k in self.published(now) {
            let a = jws_alg(k.key.algorithm());
            if !algs.contains(&a) {
                algs.push(a);
            }
        }
        algs
    }

    /// The algorithm of the signing key.
    pub fn signing_algorithm(&self) -> Algorithm {
        self.signer.algorithm()
    }

    /// Signs `claims` as a compact JWS with header `typ`.
    pub fn sign(&self, typ: &str, claims: &Value) -> Result<String, IdpError> {
        let header = json!({
            "alg": jws_alg(self.signer.algorithm()),
            "typ": typ,
            "kid": self.kid,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .signer
            .sign(input.as_bytes())
            .map_err(|_| IdpError::Internal("token signing"))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_bytes())
        ))
    }

    /// Checks an incoming JWT's header and signature against the keys published at `now`.
    pub fn verify(&self, token: &str, now: UnixTime) -> Result<VerifiedJwt, JwtError> {
        verify_with(token, &self.published(now))
    }
}

/// A JWS part decoded: base64url of a JSON object, else `Malformed(what)`.
pub(crate) fn json_object(part: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Malformed(what)),
    }
}

/// Checks a compact JWS against `keys`: the published algorithms and keys only.
pub fn verify_with(token: &str, keys: &[PublishedKey]) -> Result<VerifiedJwt, JwtError> {
    if token.len() > MAX_JWT_BYTES {
        return Err(JwtError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("expected three parts"));
    };
    let header = json_object(h, "header")?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed("no `alg`"))?;
    let algorithm = algorithm_of(alg).ok_or_else(|| JwtError::AlgorithmNotAllowed(quoted(alg)))?;
    if header.contains_key("crit") {
        return Err(JwtError::CriticalHeader);
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed("no `kid`"))?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid && k.key.algorithm() == algorithm)
        .ok_or_else(|| JwtError::UnknownKey(quoted(kid)))?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| Signature::new(algorithm, b).ok())
        .ok_or(JwtError::BadSignature)?;
    let signed = token
        .get(..h.len() + 1 + p.len())
        .ok_or(JwtError::Malformed("parts"))?;
    key.key
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::BadSignature)?;
    let claims = json_object(p, "claims")?;
    Ok(VerifiedJwt { header, claims })
}

#[cfg(test)]
mod tests {
    use tianping_core::RingSigner;

    use super::*;

    fn set(alg: Algorithm) -> KeySet {
        KeySet::new(Arc::new(RingSigner::generate(alg).unwrap().0))
    }

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    #[test]
    fn sign_and_verify_each_algorithm() {
        for alg in Algorithm::ALL {
            let ks = set(*alg);
            let t = ks
                .sign("JWT", &json!({"iss": "i", "exp": 1_800_000_060u64}))
                .unwrap();
            let v = ks.verify(&t, NOW).unwrap();
            assert_eq!(v.header["alg"], jws_alg(*alg));
            assert_eq!(v.header["kid"], ks.kid());
            v.check("i", None, NOW, false).unwrap();
            assert_eq!(v.check("j", None, NOW, false), Err(JwtError::WrongIssuer));
            let later = NOW.saturating_add(Duration::from_secs(60));
            assert_eq!(v.check("i", None, later, false), Err(JwtError::Expired));
            v.check("i", None, later, true).unwrap();
            // a flipped bit in the claims breaks the signature
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(r#"{"iss":"i","exp":1900000000}"#);
            assert_eq!(
                ks.verify(&parts.join("."), NOW),
                Err(JwtError::BadSignature)
            );
            // another set's key is unknown
            assert!(matches!(
                set(*alg).verify(&t, NOW),
                Err(JwtError::UnknownKey(_))
            ));
        }
    }

    #[test]
    fn jwks_lists_kids_in_the_rfc_shapes() {
        let ec = set(Algorithm::Es256);
        let jwks = ec.jwks(NOW);
        let k = &jwks["keys"][0];
        assert_eq!(
            (k["kty"].as_str(), k["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        assert_eq!(k["kid"], ec.kid());
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(k["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(k["y"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        let ed = set(Algorithm::Ed25519);
        let k = &ed.jwks(NOW)["keys"][0];
        assert_eq!(
            (k["kty"].as_str(), k["alg"].as_str()),
            (Some("OKP"), Some("EdDSA"))
        );
    }

    #[test]
    fn rotation_keeps_the_old_key_until_its_tokens_expire() {
        let mut ks = set(Algorithm::Es256);
        let old_kid = ks.kid().to_owned();
        let t = ks.sign("JWT", &json!({})).unwrap();
        let life = Duration::from_secs(300);
        ks.rotate(
            Arc::new(RingSigner::generate(Algorithm::Ed25519).unwrap().0),
            NOW,
            life,
        );
        assert_ne!(ks.kid(), old_kid);
        let kids: Vec<String> = ks.published(NOW).into_iter().map(|k| k.kid).collect();
        assert_eq!(kids, [ks.kid().to_owned(), old_kid.clone()]);
        assert_eq!(ks.algorithms(NOW), ["EdDSA", "ES256"]);
        ks.verify(&t, NOW.saturating_add(life - Duration::from_secs(1)))
            .unwrap();
        let after = NOW.saturating_add(life);
        assert!(matches!(ks.verify(&t, after), Err(JwtError::UnknownKey(_))));
        assert_eq!(ks.jwks(after)["keys"].as_array().unwrap().len(), 1);
        ks.prune(after);
        assert_eq!(ks.published(NOW).len(), 1);
    }

    fn forged(header: Value, claims: &Value, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn alg_none_and_hs256_with_the_public_key_are_refused() {
        let ks = set(Algorithm::Es256);
        let kid = ks.kid().to_owned();
        let claims = json!({"iss": "i", "sub": "judge-0001", "exp": 1_900_000_000u64});
        let none = forged(json!({"alg": "none", "kid": kid}), &claims, b"");
        assert_eq!(
            ks.verify(&none, NOW),
            Err(JwtError::AlgorithmNotAllowed("none".into()))
        );
        let none = format!("{}.", none.trim_end_matches('.'));
        assert!(ks.verify(&none, NOW).is_err());
        // HS256 keyed with the published public key (the classic confusion attack)
        let public = ks.published(NOW)[0].key.as_bytes().to_vec();
        let header = json!({"alg": "HS256", "kid": kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public);
        let tag = ring::hmac::sign(&key, input.as_bytes());
        let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_eq!(
            ks.verify(&hs, NOW),
            Err(JwtError::AlgorithmNotAllowed("HS256".into()))
        );
        // an EdDSA header on the ES256 key: no such key for that algorithm
        let ed = forged(json!({"alg": "EdDSA", "kid": kid}), &claims, &[0; 64]);
        assert!(matches!(ks.verify(&ed, NOW), Err(JwtError::UnknownKey(_))));
        for alg in ["RS256", "ES384", "es256", "PS256"] {
            let t = forged(json!({"alg": alg, "kid": kid}), &claims, &[0; 64]);
            assert!(
                matches!(ks.verify(&t, NOW), Err(JwtError::AlgorithmNotAllowed(_))),
                "{alg}"
            );
        }
        let crit = forged(
            json!({"alg": "ES256", "kid": kid, "crit": ["x"]}),
            &claims,
            &[0; 64],
        );
        assert_eq!(ks.verify(&crit, NOW), Err(JwtError::CriticalHeader));
    }

    #[test]
    fn malformed_tokens() {
        let ks = set(Algorithm::Es256);
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d.e",
            "!!.!!.!!",
            "e30.e30.",
            "W10.e30.AA",
        ] {
            assert!(
                matches!(ks.verify(bad, NOW), Err(JwtError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(ks.verify(&"a".repeat(MAX_JWT_BYTES + 1), NOW).is_err());
    }
}
