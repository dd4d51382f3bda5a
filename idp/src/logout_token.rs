//! OpenID Back-Channel Logout 1.0, the pure parts: the logout token made and checked, and the
//! retry schedule of its delivery. No I/O: the queue and the sending are elsewhere.
//!
//! A logout token is a JWT signed with the provider's token key, header `typ: logout+jwt`, with
//! `iss`, `aud` (the client), `iat`, `exp`, `jti`, `events` naming
//! [`BACKCHANNEL_LOGOUT_EVENT`] with an empty object, and `sid` and/or `sub`; never `nonce`
//! (§2.4), so that it can never pass for an ID token.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tianping_core::UnixTime;

use crate::IdpError;
use crate::jwt::{JwtError, KeySet, PublishedKey, verify_with};

/// The `events` member a logout token carries.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The `typ` header of a logout token.
pub const LOGOUT_TOKEN_TYPE: &str = "logout+jwt";

/// How long a logout token is valid after it is made (each delivery attempt makes a new one,
/// with the same `jti`).
pub const LOGOUT_TOKEN_LIFE: Duration = Duration::from_secs(120);

/// How far in the future a received token's `iat` may be (clock skew).
pub const IAT_SKEW: Duration = Duration::from_secs(60);

/// How many times a delivery is tried before it is given up (and audited so).
pub const MAX_ATTEMPTS: u32 = 10;

/// The first retry's delay; each next one doubles, up to [`RETRY_CAP`].
pub const RETRY_FIRST: Duration = Duration::from_secs(2);

/// The longest delay between two attempts.
pub const RETRY_CAP: Duration = Duration::from_secs(300);

/// The claims of a logout token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    /// `iss`: the provider.
    pub iss: String,
    /// `aud`: the client told.
    pub aud: String,
    /// `iat`, seconds since the epoch.
    pub iat: u64,
    /// `exp`, seconds since the epoch.
    pub exp: u64,
    /// `jti`: the same for every attempt of one delivery, so a client can drop a second copy.
    pub jti: String,
    /// `sub`, when the client is told who.
    pub sub: Option<String>,
    /// `sid`, when the client is told which session.
    pub sid: Option<String>,
}

impl LogoutClaims {
    /// The claims of a token made at `now` for `aud`.
    pub fn new(
        iss: &str,
        aud: &str,
        jti: &str,
        sub: Option<&str>,
        sid: Option<&str>,
        now: UnixTime,
    ) -> Self {
        Self {
            iss: iss.to_owned(),
            aud: aud.to_owned(),
            iat: now.as_secs(),
            exp: now.saturating_add(LOGOUT_TOKEN_LIFE).as_secs(),
            jti: jti.to_owned(),
            sub: sub.map(str::to_owned),
            sid: sid.map(str::to_owned),
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("iss".into(), self.iss.clone().into());
        m.insert("aud".into(), self.aud.clone().into());
        m.insert("iat".into(), self.iat.into());
        m.insert("exp".into(), self.exp.into());
        m.insert("jti".into(), self.jti.clone().into());
        m.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
        if let Some(s) = &self.sub {
            m.insert("sub".into(), s.clone().into());
        }
        if let Some(s) = &self.sid {
            m.insert("sid".into(), s.clone().into());
        }
        Value::Object(m)
    }
}

/// Signs a logout token with the provider's keys; refuses claims naming neither `sub` nor
/// `sid` (§2.4: one of them is required).
pub fn make_logout_token(keys: &KeySet, claims: &LogoutClaims) -> Result<String, IdpError> {
    if claims.sub.is_none() && claims.sid.is_none() {
        return Err(IdpError::Internal("a logout token names a sub or a sid"));
    }
    keys.sign(LOGOUT_TOKEN_TYPE, &claims.to_json())
}

/// Checks a logout token as a client does (§2.6): signed by one of `keys` with a published
/// algorithm, `typ` `logout+jwt`, issued by `issuer` to `audience`, not expired, `iat` not in the
/// future, a `jti`, the back-channel logout event, `sub` or `sid`, and no `nonce`.
pub fn verify_logout_token(
    token: &str,
    keys: &[PublishedKey],
    issuer: &str,
    audience: &str,
    now: UnixTime,
) -> Result<LogoutClaims, JwtError> {
    let v = verify_with(token, keys)?;
    match v.typ() {
        Some(LOGOUT_TOKEN_TYPE) => {}
        other => return Err(JwtError::WrongType(other.unwrap_or("none").to_owned())),
    }
    v.check(issuer, Some(audience), now, false)?;
    if v.claims.contains_key("nonce") {
        return Err(JwtError::Malformed("a logout token carries no nonce"));
    }
    let iat = v
        .claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(JwtError::Malformed("no `iat`"))?;
    if iat > now.saturating_add(IAT_SKEW).as_secs() {
        return Err(JwtError::Malformed("`iat` in the future"));
    }
    let exp = v
        .claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(JwtError::Malformed("no `exp`"))?;
    let jti = v
        .str_claim("jti")
        .filter(|j| !j.is_empty())
        .ok_or(JwtError::Malformed("no `jti`"))?
        .to_owned();
    let event = v
        .claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(JwtError::Malformed("no back-channel logout event"));
    }
    let string = |name: &str| -> Result<Option<String>, JwtError> {
        match v.claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(JwtError::Malformed("`sub` and `sid` are strings")),
        }
    };
    let (sub, sid) = (string("sub")?, string("sid")?);
    if sub.is_none() && sid.is_none() {
        return Err(JwtError::Malformed("neither `sub` nor `sid`"));
    }
    Ok(LogoutClaims {
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        iat,
        exp,
        jti,
        sub,
        sid,
    })
}

/// When the attempt after `failed` failed attempts comes, counted from the last one: `None`
/// once [`MAX_ATTEMPTS`] have failed (the delivery is given up). The delay doubles from
/// [`RETRY_FIRST`] and never exceeds [`RETRY_CAP`].
pub fn retry_delay(failed: u32) -> Option<Duration> {
    if failed == 0 {
        return Some(Duration::ZERO);
    }
    if failed >= MAX_ATTEMPTS {
        return None;
    }
    let doublings = (failed - 1).min(16);
    Some(RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_CAP))
}

/// The body a logout token is POSTed with (`application/x-www-form-urlencoded`).
pub fn logout_form(token: &str) -> String {
    crate::form::encode_pairs([("logout_token", token)])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tianping_core::{Algorithm, RingSigner};

    use super::*;

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);
    const ISS: &str = "https://idp.private.example";

    fn keys() -> KeySet {
        KeySet::new(Arc::new(RingSigner::generate(Algorithm::Es256).unwrap().0))
    }

    #[test]
    fn a_token_made_here_verifies_with_every_claim() {
        let k = keys();
        let c = LogoutClaims::new(ISS, "case-app", "j1", Some("judge-0001"), Some("s1"), NOW);
        let t = make_logout_token(&k, &c).unwrap();
        let got = verify_logout_token(&t, &k.published(NOW), ISS, "case-app", NOW).unwrap();
        assert_eq!(got, c);
        assert_eq!(
            verify_logout_token(&t, &k.published(NOW), ISS, "other", NOW),
            Err(JwtError::WrongAudience)
        );
        assert_eq!(
            verify_logout_token(&t, &k.published(NOW), "https://x", "case-app", NOW),
            Err(JwtError::WrongIssuer)
        );
        let late = NOW.saturating_add(LOGOUT_TOKEN_LIFE);
        assert_eq!(
            verify_logout_token(&t, &k.published(NOW), ISS, "case-app", late),
            Err(JwtError::Expired)
        );
        let other = keys();
        assert!(verify_logout_token(&t, &other.published(NOW), ISS, "case-app", NOW).is_err());
    }

    #[test]
    fn tokens_without_sub_and_sid_or_with_nonce_or_another_type_are_refused() {
        let k = keys();
        let c = LogoutClaims::new(ISS, "a", "j", None, None, NOW);
        assert!(make_logout_token(&k, &c).is_err());
        let published = k.published(NOW);
        let mut claims = LogoutClaims::new(ISS, "a", "j", Some("u"), None, NOW).to_json();
        claims["nonce"] = "n".into();
        let t = k.sign(LOGOUT_TOKEN_TYPE, &claims).unwrap();
        assert!(verify_logout_token(&t, &published, ISS, "a", NOW).is_err());
        let ok = LogoutClaims::new(ISS, "a", "j", Some("u"), None, NOW).to_json();
        let id_token = k.sign("JWT", &ok).unwrap();
        assert!(matches!(
            verify_logout_token(&id_token, &published, ISS, "a", NOW),
            Err(JwtError::WrongType(_))
        ));
        let mut no_event = ok.clone();
        no_event["events"] = json!({});
        let t = k.sign(LOGOUT_TOKEN_TYPE, &no_event).unwrap();
        assert!(verify_logout_token(&t, &published, ISS, "a", NOW).is_err());
    }

    #[test]
    fn retries_double_to_their_cap_and_stop() {
        assert_eq!(retry_delay(0), Some(Duration::ZERO));
        assert_eq!(retry_delay(1), Some(Duration::from_secs(2)));
        assert_eq!(retry_delay(2), Some(Duration::from_secs(4)));
        assert_eq!(retry_delay(8), Some(Duration::from_secs(256)));
        assert_eq!(retry_delay(9), Some(RETRY_CAP));
        assert_eq!(retry_delay(MAX_ATTEMPTS), None);
        assert_eq!(retry_delay(u32::MAX), None);
    }
}
