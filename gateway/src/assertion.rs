//! What a service receives: the client's identity headers taken away, and a `Tianping-Assertion`
//! (a `user` token of the certs crate's profile, signed with the gateway's node key, its chain in
//! `x5c`) put in their place, cached per identity and service until near its expiry.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use tianping_certs::{TokenClaims, TokenError, TokenSigner, USER_TOKEN_HEADER};
use tianping_core::UnixTime;

use crate::config::Limits;
use crate::cookie::SESSION_COOKIE;
use crate::identity::Identity;

/// The header carrying the gateway's request id to the service (and back to the client).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Hop-by-hop headers (RFC 9110 §7.6.1, and the old `Proxy-Connection` and `Keep-Alive`).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers by which proxies and their services commonly pass a user's identity: a client must
/// never be able to set them (oauth2-proxy, Pomerium, Apache `REMOTE_USER`, nginx
/// `auth_request`, client-certificate forwarding).
const IDENTITY_HEADERS: [&str; 18] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-forwarded-client-cert",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-access-token",
    "x-remote-user",
    "remote-user",
    "x-user",
    "x-email",
    "x-client-cert",
    "x-ssl-client-cert",
    "x-ssl-client-dn",
    "x-pomerium-jwt-assertion",
];

/// Headers by which a proxy says where a request came from: the gateway sets its own
/// (`X-Forwarded-For`, `-Host`, `-Proto` to a service bound to a URL), never the client's.
const FORWARDING_HEADERS: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Removes from a request's headers everything a service must not take from the client:
/// hop-by-hop headers and those named by `Connection`, every identity header, every `Tianping-*`
/// header, every forwarding header, the client's `X-Request-Id`, its `Authorization` (the bearer
/// token was for the gateway) and the gateway's session cookie (other cookies stay).
pub fn strip_client_headers(headers: &mut HeaderMap) {
    let named = connection_named(headers);
    let doomed = |k: &HeaderName| {
        let n = k.as_str();
        *k == header::AUTHORIZATION
            || n == REQUEST_ID_HEADER
            || n.starts_with("tianping-")
            || HOP_BY_HOP.contains(&n)
            || IDENTITY_HEADERS.contains(&n)
            || FORWARDING_HEADERS.contains(&n)
            || named.contains(k)
    };
    // Passes over the names the request has (a handful) rather than a lookup of each of the
    // 30-odd names a client must not send. Each pass takes up to 8 names to remove, held on
    // the stack: one pass for nearly every request, and few for any (a head's names are
    // bounded by the listener's header limit).
    loop {
        let mut batch: [Option<HeaderName>; 8] = Default::default();
        let mut found = 0;
        for (slot, k) in batch.iter_mut().zip(headers.keys().filter(|k| doomed(k))) {
            *slot = Some(k.clone());
            found += 1;
        }
        for k in batch.iter_mut().filter_map(Option::take) {
            headers.remove(k);
        }
        if found < 8 {
            break;
        }
    }
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| {
            !c.is_empty()
                && c.split_once('=')
                    .is_none_or(|(name, _)| name.trim() != SESSION_COOKIE)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !cookies.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cookies.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

/// The header names a `Connection` header lists (hop-by-hop for this connection only).
pub(crate) fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Why no assertion could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// The token could not be signed.
    #[error(transparent)]
    Sign(#[from] TokenError),
    /// The token or request id is not a header value.
    #[error("not a header value")]
    Header,
}

/// Makes and caches `Tianping-Assertion`s: one per identity and service, reused until
/// [`Limits::assertion_renew_before`] of its life is left.
///
/// Each is kept as the header value it is sent as (cloning one shares its bytes), marked
/// sensitive: HTTP/2 and HTTP/3 send it as a never-indexed literal (RFC 7541 §7.1.3, RFC 9204
/// §7.1.3), so no proxy on the way may add a credential to a compression table, and a
/// per-person value of a few KiB does not push every other header out of the 4 KiB table.
#[derive(Debug)]
pub struct Assertions {
    signer: TokenSigner,
    limits: Limits,
    /// By [`Identity::write_cache_key`]: the assertion and its expiry.
    cache: Mutex<HashMap<String, (HeaderValue, u64)>>,
}

impl Assertions {
    /// Assertions signed by `signer` (the gateway's node key and chain).
    pub fn new(signer: TokenSigner, limits: Limits) -> Self {
        Self {
            signer,
            limits,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// How many are cached.
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The assertion of `who` for `service` (its audience) at `now`.
    pub fn for_service(
        &self,
        who: &Identity,
        service: &str,
        now: UnixTime,
    ) -> Result<String, AssertionError> {
        let v = self.header_for_service(who, service, now)?;
        v.to_str()
            .map(str::to_owned)
            .map_err(|_| AssertionError::Header)
    }

    /// [`Self::for_service`] as the (sensitive) header value it is sent as.
    fn header_for_service(
        &self,
        who: &Identity,
        service: &str,
        now: UnixTime,
    ) -> Result<HeaderValue, AssertionError> {
        thread_local! {
            /// The key of this thread's last lookup, its capacity kept for the next one.
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let now_s = now.as_secs();
        let renew = self.limits.assertion_renew_before.as_secs();
        // The cached assertion, or the key to cache a new one under.
        let key = KEY.with_borrow_mut(|key| {
            who.write_cache_key(service, key);
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            match cache.get(key.as_str()) {
                Some((token, exp)) if now_s.saturating_add(renew) < *exp => Ok(token.clone()),
                _ => Err(key.clone()),
            }
        });
        let key = match key {
            Ok(token) => return Ok(token),
            Err(key) => key,
        };
        // signed outside the lock: other people's requests do not wait for this signature
        let claims = who.user_claims();
        let life = self.limits.assertion_lifetime;
        let token = self
            .signer
            .sign(&TokenClaims::User(claims), service, now, life)?;
        let value = never_indexed(&token).ok_or(AssertionError::Header)?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.limits.assertion_cache_entries {
            cache.retain(|_, (_, exp)| now_s.saturating_add(renew) < *exp);
        }
        if cache.len() < self.limits.assertion_cache_entries {
            cache.insert(key, (value.clone(), now_s.saturating_add(life.as_secs())));
        }
        Ok(value)
    }

    /// A new assertion of `who` for `audience`, never cached: for a receiver that takes each
    /// token once (the exchange sender refuses a token it has seen).
    pub fn fresh(
        &self,
        who: &Identity,
        audience: &str,
        now: UnixTime,
    ) -> Result<String, AssertionError> {
        let claims = who.user_claims();
        Ok(self.signer.sign(
            &TokenClaims::User(claims),
            audience,
            now,
            self.limits.assertion_lifetime,
        )?)
    }

    /// Strips the client's headers ([`strip_client_headers`]) and adds `who`'s assertion for
    /// `service` and the gateway's `request_id`.
    pub fn prepare(
        &self,
        headers: &mut HeaderMap,
        who: &Identity,
        service: &str,
        request_id: &str,
        now: UnixTime,
    ) -> Result<(), AssertionError> {
        strip_client_headers(headers);
        let token = self.header_for_service(who, service, now)?;
        Self::put(headers, token, request_id)
    }

    /// As [`Self::prepare`], with a [`Self::fresh`] assertion: for a component's control socket,
    /// whose token verifier takes each token once.
    pub fn prepare_fresh(
        &self,
        headers: &mut HeaderMap,
        who: &Identity,
        service: &str,
        request_id: &str,
        now: UnixTime,
    ) -> Result<(), AssertionError> {
        strip_client_headers(headers);
        let token = never_indexed(&self.fresh(who, service, now)?).ok_or(AssertionError::Header)?;
        Self::put(headers, token, request_id)
    }

    fn put(
        headers: &mut HeaderMap,
        token: HeaderValue,
        request_id: &str,
    ) -> Result<(), AssertionError> {
        let id = never_indexed(request_id).ok_or(AssertionError::Header)?;
        headers.insert(HeaderName::from_static(USER_TOKEN_HEADER), token);
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
        Ok(())
    }
}

/// `value` as a header value marked never to be indexed by HPACK or QPACK. For a credential
/// (the assertion), so it is not kept in a table; for a request id, not for secrecy: every id is
/// new, so indexing one only evicts the table's headers that do repeat, and makes the encoder
/// compare each new id with every id it still holds (HPACK chains the values of one name: about
/// 50 ids fill a 4 KiB table, for each request on the connection).
pub(crate) fn never_indexed(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tianping_certs::{
        CaCert, CertKind, KeyAlg, LeafRequest, TokenKind, TokenVerifier, TrustStore, certs_from_pem,
    };
    use tianping_core::{Acr, Clearance, RingSigner, Role, private_key_from_pem};

    use super::*;
    use crate::identity::Credential;

    type R = Result<(), Box<dyn std::error::Error>>;
    const NOW: u64 = 1_800_000_000;

    fn who() -> Result<Identity, Box<dyn std::error::Error>> {
        Ok(Identity {
            sub: "u-1001".parse()?,
            roles: vec![Role::Judge],
            court: Some("bj.01".parse()?),
            clearance: Clearance::None,
            acr: Acr::Otp,
            amr: vec![],
            credential: Credential::Session {
                id: "sess-1".into(),
                sid: None,
                auth_time: UnixTime::from_secs(NOW),
            },
        })
    }

    #[test]
    fn identity_headers_hop_by_hop_and_named_ones_are_stripped() -> R {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", HeaderValue::from_static("admin"));
        h.insert("tianping-assertion", HeaderValue::from_static("forged"));
        h.insert("tianping-anything", HeaderValue::from_static("x"));
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        h.insert("x-request-id", HeaderValue::from_static("client-chosen"));
        h.insert(
            "cookie",
            HeaderValue::from_static("a=1; __Host-tianping-session=sealed; b=2"),
        );
        h.insert("accept", HeaderValue::from_static("text/html"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        h.insert("forwarded", HeaderValue::from_static("for=10.0.0.1"));
        h.insert("x-real-ip", HeaderValue::from_static("10.0.0.1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.append("connection", HeaderValue::from_static("X-Other"));
        h.insert("x-other", HeaderValue::from_static("1"));
        strip_client_headers(&mut h);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(h.get("cookie"), Some(&HeaderValue::from_static("a=1; b=2")));
        assert!(h.contains_key("accept"));
        Ok(())
    }

    #[test]
    fn every_doomed_name_goes_however_many_there_are() -> R {
        for doomed in 0..=20 {
            let mut h = HeaderMap::new();
            for i in 0..5 {
                h.insert(
                    HeaderName::try_from(format!("x-keep-{i}"))?,
                    HeaderValue::from_static("k"),
                );
            }
            for i in 0..doomed {
                h.insert(
                    HeaderName::try_from(format!("tianping-{i}"))?,
                    HeaderValue::from_static("d"),
                );
            }
            strip_client_headers(&mut h);
            let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
            names.sort_unstable();
            assert_eq!(
                names,
                ["x-keep-0", "x-keep-1", "x-keep-2", "x-keep-3", "x-keep-4"],
                "{doomed}"
            );
        }
        Ok(())
    }

    #[test]
    fn the_assertion_verifies_with_the_zone_trust_and_is_cached() -> R {
        let now = UnixTime::from_secs(NOW);
        let root = CaCert::new_root("Court", KeyAlg::EcP256, now)?;
        let zone = root.new_zone(&"private".parse()?, "Court", KeyAlg::EcP256, now)?;
        let leaf = zone.issue(&LeafRequest::new(CertKind::Node, "gateway"), now)?;
        let key = private_key_from_pem(leaf.key_pem.expose())?;
        let signer = RingSigner::from_pkcs8_any(key.expose())?;
        let chain = certs_from_pem(leaf.chain_pem.as_bytes())?;
        let tokens = TokenSigner::new(Arc::new(signer), &chain)?;
        let a = Assertions::new(tokens, Limits::default());
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", HeaderValue::from_static("admin"));
        a.prepare(&mut h, &who()?, "cases", "req-1", now)?;
        assert!(!h.contains_key("x-forwarded-user"));
        let token = h.get(USER_TOKEN_HEADER).ok_or("no assertion")?;
        assert!(token.is_sensitive(), "a credential is never indexed");
        let trust = TrustStore::from_pem(
            format!("{}{}", root.cert_pem(), zone.cert_pem()).as_bytes(),
            &[],
        )?;
        let v = TokenVerifier::new(&trust, &"private".parse()?, "cases", TokenKind::User)?;
        let verified = v.verify_at(token.as_bytes(), now)?;
        let TokenClaims::User(u) = verified.claims else {
            return Err("not a user token".into());
        };
        assert_eq!(u.sub.as_str(), "u-1001");
        let id = h.get(REQUEST_ID_HEADER).ok_or("no request id")?;
        assert_eq!(id, "req-1");
        assert!(
            id.is_sensitive(),
            "a request id, new every time, is never indexed"
        );
        // reused until 15 s before its expiry, then renewed
        let again = a.for_service(&who()?, "cases", UnixTime::from_secs(NOW + 44))?;
        assert_eq!(again.as_bytes(), token.as_bytes());
        let renewed = a.for_service(&who()?, "cases", UnixTime::from_secs(NOW + 45))?;
        assert_ne!(renewed.as_bytes(), token.as_bytes());
        assert_eq!(a.cached(), 1);
        let mut courtless = who()?;
        courtless.court = None;
        courtless.credential = Credential::Session {
            id: "sess-2".into(),
            sid: None,
            auth_time: now,
        };
        // a person outside the courts is asserted without one
        let t = a.for_service(&courtless, "cases", now)?;
        let payload = t.split('.').nth(1).unwrap_or_default();
        let payload =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)?;
        let payload: serde_json::Value = serde_json::from_slice(&payload)?;
        assert_eq!(payload.get("court"), None, "{payload}");
        assert_eq!(payload.get("sub"), Some(&serde_json::json!("u-1001")));
        Ok(())
    }
}
