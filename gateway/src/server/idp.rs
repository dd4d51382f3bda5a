//! The gateway's side of its zone's IdP: the discovery document and the JWKS, fetched over HTTPS
//! with the zone's trust (and the gateway's node certificate, which is also how it authenticates
//! at the token endpoint: `tls_client_auth`), bearer tokens verified against that JWKS (fetched
//! again on an unknown `kid` at most once per [`Limits::jwks_refresh_min`], failing closed when
//! it cannot be had), the authorization code redeemed, and the ID and logout tokens checked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use tianping_core::{Algorithm, Signature, UnixTime, ZoneName};
use tianping_net::HttpsClient;

use crate::config::Limits;
use crate::token::{BearerError, BearerVerifier, Jwks, JwksSchedule, VerifiedBearer};

/// The IdP's endpoints, from its discovery document.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) authorization: String,
    pub(crate) token: String,
    pub(crate) jwks: String,
    /// Where a browser ends its sign-in at the IdP (RP-Initiated Logout), when it says.
    pub(crate) end_session: Option<String>,
}

/// The keys in force: the bearer verifier (with its cache) and the JWKS document as fetched.
struct Keys {
    verifier: Arc<BearerVerifier>,
    document: Arc<[u8]>,
}

/// The most logout-token `jti`s remembered against replay.
const MAX_LOGOUT_JTIS: usize = 10_000;

/// The zone's IdP as the gateway sees it.
pub(crate) struct IdpLink {
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    zone: ZoneName,
    audience: String,
    http: HttpsClient,
    limits: Limits,
    endpoints: Mutex<Option<Endpoints>>,
    keys: RwLock<Keys>,
    /// Whether the keys in force came from a fetch that succeeded (and when: the schedule).
    fetched: Mutex<(bool, JwksSchedule)>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    logout_jtis: Mutex<VecDeque<String>>,
}

/// Why the IdP could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IdpError {
    /// Unreachable, refused, or answering something that is not what was asked.
    #[error("the zone's IdP: {0}")]
    Unavailable(String),
    /// It answered, refusing.
    #[error("the zone's IdP refused: {0}")]
    Refused(String),
    /// A token it gave does not check.
    #[error("{0}")]
    Token(String),
}

impl IdpLink {
    pub(crate) fn new(
        issuer: String,
        client_id: String,
        zone: ZoneName,
        audience: String,
        http: HttpsClient,
        limits: Limits,
    ) -> Self {
        let verifier = BearerVerifier::new(
            issuer.clone(),
            audience.clone(),
            zone.clone(),
            Jwks::default(),
            limits.clone(),
        );
        Self {
            issuer,
            client_id,
            zone,
            audience,
            http,
            limits,
            endpoints: Mutex::new(None),
            keys: RwLock::new(Keys {
                verifier: Arc::new(verifier),
                document: Arc::from(&b"{\"keys\":[]}"[..]),
            }),
            fetched: Mutex::new((false, JwksSchedule::default())),
            fetching: tokio::sync::Mutex::new(()),
            logout_jtis: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn keys(&self) -> (Arc<BearerVerifier>, Arc<[u8]>) {
        let k = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        (Arc::clone(&k.verifier), Arc::clone(&k.document))
    }

    /// The discovery document's endpoints (fetched once; its `issuer` must be ours exactly).
    pub(crate) async fn endpoints(&self) -> Result<Endpoints, IdpError> {
        if let Some(e) = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(e);
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let doc = self.get_json(&url).await?;
        let field = |name: &str| {
            doc.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| IdpError::Unavailable(format!("`{url}` has no `{name}`")))
        };
        if field("issuer")? != self.issuer {
            return Err(IdpError::Unavailable(format!(
                "`{url}` names another issuer than `{}`",
                self.issuer
            )));
        }
        let e = Endpoints {
            authorization: field("authorization_endpoint")?,
            token: field("token_endpoint")?,
            jwks: field("jwks_uri")?,
            end_session: doc
                .get("end_session_endpoint")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        *self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
        Ok(e)
    }

    async fn get_json(&self, url: &str) -> Result<Value, IdpError> {
        let r = self
            .http
            .get(url)
            .await
            .map_err(|e| IdpError::Unavailable(e.to_string()))?;
        if !r.status.is_success() {
            return Err(IdpError::Unavailable(format!(
                "`{url}` answered {}",
                r.status
            )));
        }
        serde_json::from_slice(&r.body)
            .map_err(|_| IdpError::Unavailable(format!("`{url}` did not answer JSON")))
    }

    /// Fetches the JWKS now. On failure the keys are kept only while they are younger than
    /// [`Limits::jwks_max_age`]; past that no token verifies (fail closed).
    async fn fetch_keys(&self, now: UnixTime) -> Result<(), IdpError> {
        let _one = self.fetching.lock().await;
        let result = async {
            let e = self.endpoints().await?;
            let r = self
                .http
                .get(&e.jwks)
                .await
                .map_err(|e| IdpError::Unavailable(e.to_string()))?;
            if !r.status.is_success() {
                return Err(IdpError::Unavailable(format!(
                    "`{}` answered {}",
                    e.jwks, r.status
                )));
            }
            let jwks = Jwks::parse(&r.body).map_err(|e| IdpError::Unavailable(e.to_string()))?;
            Ok((jwks, r.body))
        }
        .await;
        let mut fetched = self.fetched.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok((jwks, body)) => {
                let mut k = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                k.verifier = Arc::new(k.verifier.with_jwks(jwks));
                k.document = Arc::from(body.as_ref());
                fetched.0 = true;
                fetched.1.fetched(now);
                Ok(())
            }
            Err(e) => {
                if fetched.1.is_stale(&self.limits, now) {
                    let mut k = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                    k.verifier = Arc::new(BearerVerifier::new(
                        self.issuer.clone(),
                        self.audience.clone(),
                        self.zone.clone(),
                        Jwks::default(),
                        self.limits.clone(),
                    ));
                    fetched.0 = false;
                }
                // an unknown kid may not cause another fetch before the interval either way
                fetched.1.fetched(now);
                Err(e)
            }
        }
    }

    /// Makes sure keys are in force: fetched when none were yet (or they are stale).
    pub(crate) async fn ensure_keys(&self, now: UnixTime) -> Result<(), BearerError> {
        let (ok, stale, may) = {
            let f = self.fetched.lock().unwrap_or_else(PoisonError::into_inner);
            (
                f.0,
                f.1.is_stale(&self.limits, now),
                f.1.may_refresh(&self.limits, now),
            )
        };
        if ok && !stale {
            return Ok(());
        }
        if !ok && !may {
            return Err(BearerError::KeysUnavailable(
                "the last fetch failed; not tried again yet".into(),
            ));
        }
        // boxed (rare): every bearer check's future would otherwise hold the fetch's
        match Box::pin(self.fetch_keys(now)).await {
            Ok(()) => Ok(()),
            Err(e) if !ok => Err(BearerError::KeysUnavailable(e.to_string())),
            Err(e) => {
                let still = self
                    .fetched
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                if still {
                    Ok(())
                } else {
                    Err(BearerError::KeysUnavailable(e.to_string()))
                }
            }
        }
    }

    /// Verifies a bearer access token over a connection that presented `cert` (SHA-256).
    pub(crate) async fn verify_bearer(
        &self,
        token: &[u8],
        cert: Option<&[u8; 32]>,
        now: UnixTime,
    ) -> Result<VerifiedBearer, BearerError> {
        self.ensure_keys(now).await?;
        let (v, _) = self.keys();
        match v.verify_person(token, cert, now) {
            Err(BearerError::UnknownKid(kid)) => {
                let may = self
                    .fetched
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .1
                    .may_refresh(&self.limits, now);
                if !may {
                    return Err(BearerError::UnknownKid(kid));
                }
                Box::pin(self.fetch_keys(now))
                    .await
                    .map_err(|e| BearerError::KeysUnavailable(e.to_string()))?;
                self.keys().0.verify_person(token, cert, now)
            }
            r => r,
        }
    }

    /// The JWKS document in force (fetched first if none is).
    async fn jwks_document(&self, now: UnixTime) -> Result<Arc<[u8]>, IdpError> {
        self.ensure_keys(now)
            .await
            .map_err(|e| IdpError::Unavailable(e.to_string()))?;
        Ok(self.keys().1)
    }

    /// Redeems an authorization code (PKCE verifier, `tls_client_auth` with the node
    /// certificate); the ID token's claims, checked (signature, issuer, audience, expiry, nonce)
    /// with `openidconnect`.
    pub(crate) async fn redeem(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        nonce: &str,
        now: UnixTime,
    ) -> Result<Map<String, Value>, IdpError> {
        let e = self.endpoints().await?;
        let body = form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
            ("client_id", &self.client_id),
        ]);
        let r = self
            .http
            .post(&e.token, "application/x-www-form-urlencoded", body)
            .await
            .map_err(|e| IdpError::Unavailable(e.to_string()))?;
        let answer: Value = serde_json::from_slice(&r.body)
            .map_err(|_| IdpError::Unavailable("the token endpoint did not answer JSON".into()))?;
        if !r.status.is_success() {
            let error = answer.get("error").and_then(Value::as_str).unwrap_or("?");
            return Err(IdpError::Refused(format!(
                "token endpoint {}: {error}",
                r.status
            )));
        }
        let id_token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| IdpError::Token("the token answer has no ID token".into()))?;
        let mut doc = self.jwks_document(now).await?;
        let mut result = self.check_id_token(id_token, &doc, nonce);
        if result.is_err() {
            // a key rotated since the last fetch: once more with a fresh key set
            let may = self
                .fetched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .1
                .may_refresh(&self.limits, now);
            if may && self.fetch_keys(now).await.is_ok() {
                doc = self.keys().1;
                result = self.check_id_token(id_token, &doc, nonce);
            }
        }
        result
    }

    fn check_id_token(
        &self,
        id_token: &str,
        jwks: &[u8],
        nonce: &str,
    ) -> Result<Map<String, Value>, IdpError> {
        use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
        use openidconnect::{ClientId, IssuerUrl, Nonce};
        let bad = |what: &str| IdpError::Token(format!("the ID token: {what}"));
        let set: CoreJsonWebKeySet =
            serde_json::from_slice(jwks).map_err(|_| bad("the IdP's key set does not parse"))?;
        let issuer = IssuerUrl::new(self.issuer.clone()).map_err(|_| bad("issuer URL"))?;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.client_id.clone()),
            issuer,
            set,
        )
        .set_allowed_algs([
            openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            openidconnect::core::CoreJwsSigningAlgorithm::EdDsa,
        ]);
        let token: CoreIdToken = id_token.parse().map_err(|_| bad("not a JWT"))?;
        token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| bad(&e.to_string()))?;
        // verified: its claims (the identity ones too, which the core claims type leaves out)
        let payload = id_token.split('.').nth(1).ok_or_else(|| bad("parts"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| bad("payload"))?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(bad("payload")),
        }
    }

    /// Checks a back-channel logout token (OpenID Back-Channel Logout 1.0 §2.6): signed by a
    /// key of the JWKS, this issuer, for this client, the logout event, a `sid` or `sub`, no
    /// `nonce`, recent, and a `jti` not seen before. Its `(sid, sub)`.
    pub(crate) async fn check_logout_token(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<(Option<String>, Option<String>), IdpError> {
        let bad = |what: &str| IdpError::Token(format!("the logout token: {what}"));
        if token.len() > self.limits.max_token_bytes {
            return Err(bad("too long"));
        }
        let doc = self.jwks_document(now).await?;
        let jwks = Jwks::parse(&doc).map_err(|e| IdpError::Unavailable(e.to_string()))?;
        let claims = verify_jws(token, &jwks).map_err(bad)?;
        let s = |k: &str| claims.get(k).and_then(Value::as_str);
        if s("iss") != Some(self.issuer.as_str()) {
            return Err(bad("another issuer"));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.client_id,
            Some(Value::Array(l)) => l.iter().any(|a| a.as_str() == Some(&self.client_id)),
            _ => false,
        };
        if !aud_ok {
            return Err(bad("not for this gateway"));
        }
        let event = claims
            .get("events")
            .and_then(|e| e.get("http://schemas.openid.net/event/backchannel-logout"));
        if !matches!(event, Some(Value::Object(_))) {
            return Err(bad("no back-channel logout event"));
        }
        if claims.contains_key("nonce") {
            return Err(bad("a nonce"));
        }
        let skew = self.limits.clock_skew.as_secs();
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("no iat"))?;
        // logout tokens live two minutes at most (they are retried, each freshly signed)
        if iat > now.as_secs().saturating_add(skew)
            || iat.saturating_add(120).saturating_add(skew) < now.as_secs()
        {
            return Err(bad("not recent"));
        }
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64)
            && exp.saturating_add(skew) <= now.as_secs()
        {
            return Err(bad("expired"));
        }
        let jti = s("jti").ok_or_else(|| bad("no jti"))?.to_owned();
        let (sid, sub) = (s("sid").map(str::to_owned), s("sub").map(str::to_owned));
        if sid.is_none() && sub.is_none() {
            return Err(bad("neither sid nor sub"));
        }
        let mut seen = self
            .logout_jtis
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen.contains(&jti) {
            return Err(bad("replayed"));
        }
        if seen.len() >= MAX_LOGOUT_JTIS {
            seen.pop_front();
        }
        seen.push_back(jti);
        Ok((sid, sub))
    }
}

/// The claims of a compact JWS signed (ES256 or EdDSA) by a key of `jwks`, by `kid`.
fn verify_jws(token: &str, jwks: &Jwks) -> Result<Map<String, Value>, &'static str> {
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS");
    };
    let obj = |part: &str| -> Result<Map<String, Value>, &'static str> {
        let b = URL_SAFE_NO_PAD.decode(part).map_err(|_| "not base64url")?;
        match serde_json::from_slice(&b) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err("not a JSON object"),
        }
    };
    let header = obj(h64)?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => Algorithm::Es256,
        Some("EdDSA") => Algorithm::Ed25519,
        _ => return Err("an algorithm the IdP does not sign with"),
    };
    let kid = header.get("kid").and_then(Value::as_str).ok_or("no kid")?;
    let key = jwks.get(kid).ok_or("an unknown kid")?;
    if key.algorithm() != alg {
        return Err("a key of another algorithm");
    }
    let sig = URL_SAFE_NO_PAD.decode(s64).map_err(|_| "signature")?;
    let sig = Signature::new(alg, sig).map_err(|_| "signature")?;
    let signed = token.get(..h64.len() + 1 + p64.len()).ok_or("parts")?;
    key.verify(signed.as_bytes(), &sig)
        .map_err(|_| "the signature does not verify")?;
    obj(p64)
}

pub(crate) use crate::form::{decode_list, decode_pairs, encode, form};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jws_verifies_only_with_its_key_and_algorithm() {
        use tianping_core::{RingSigner, Signer as _};
        let (signer, _) = RingSigner::generate(Algorithm::Es256).unwrap_or_else(|_| unreachable!());
        let jwks = Jwks::from_keys(vec![crate::token::JwksKey {
            kid: "k".into(),
            key: signer.public_key(),
        }]);
        let make = |header: &str| {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode("{\"sub\":\"u\"}")
            );
            let sig = signer
                .sign(input.as_bytes())
                .unwrap_or_else(|_| unreachable!());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_bytes()))
        };
        let good = make("{\"alg\":\"ES256\",\"kid\":\"k\"}");
        assert_eq!(
            verify_jws(&good, &jwks)
                .ok()
                .and_then(|m| m.get("sub").cloned()),
            Some(Value::String("u".into()))
        );
        assert_eq!(
            verify_jws(&make("{\"alg\":\"ES256\",\"kid\":\"other\"}"), &jwks),
            Err("an unknown kid")
        );
        assert_eq!(
            verify_jws(&make("{\"alg\":\"EdDSA\",\"kid\":\"k\"}"), &jwks),
            Err("a key of another algorithm")
        );
        assert!(verify_jws(&make("{\"alg\":\"HS256\",\"kid\":\"k\"}"), &jwks).is_err());
        let mut flipped = good.into_bytes();
        if let Some(b) = flipped.get_mut(10) {
            *b ^= 1;
        }
        assert!(verify_jws(&String::from_utf8_lossy(&flipped), &jwks).is_err());
        assert_eq!(verify_jws("a.b", &jwks), Err("not a compact JWS"));
    }
}
