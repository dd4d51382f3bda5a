//! Access tokens (RFC 9068 JWTs, `typ: at+jwt`) and ID tokens (OIDC Core §2), both carrying the
//! identity claims of DESIGN §8: `sub`, `court`, `roles`, `clearance`, `acr`, `amr`, `zone`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, CourtCode, Role, SubjectId, UnixTime, ZoneName,
};

use crate::IdpError;
use crate::jwt::{JwtError, KeySet};
use crate::random::{Random, bytes};

/// Who signed in, and how: what every token about a person says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The subject id.
    pub sub: SubjectId,
    /// The subject's court.
    pub court: Option<CourtCode>,
    /// The subject's roles.
    pub roles: Vec<Role>,
    /// The subject's clearance.
    pub clearance: Clearance,
    /// How strongly the subject signed in.
    pub acr: Acr,
    /// The methods used.
    pub amr: Vec<Amr>,
    /// The zone whose IdP signed the subject in.
    pub zone: ZoneName,
    /// When the subject signed in.
    pub auth_time: UnixTime,
    /// The registered device the subject signed in on (its id), when the sign-in presented the
    /// device's certificate; `None` for every other sign-in.
    pub device: Option<String>,
}

/// The identity claims as they appear in a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityClaims {
    /// `sub`.
    pub sub: SubjectId,
    /// `court`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub court: Option<CourtCode>,
    /// `roles`.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// `clearance`.
    pub clearance: Clearance,
    /// `acr`.
    pub acr: Acr,
    /// `amr`.
    pub amr: Vec<Amr>,
    /// `zone`.
    pub zone: ZoneName,
    /// `auth_time`, seconds since the epoch.
    pub auth_time: u64,
    /// `device`: the registered device signed in on, only when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl From<&Identity> for IdentityClaims {
    fn from(i: &Identity) -> Self {
        Self {
            sub: i.sub.clone(),
            court: i.court.clone(),
            roles: i.roles.clone(),
            clearance: i.clearance,
            acr: i.acr,
            amr: i.amr.clone(),
            zone: i.zone.clone(),
            auth_time: i.auth_time.as_secs(),
            device: i.device.clone(),
        }
    }
}

/// The claims of an access token this provider issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// `iss`.
    pub iss: String,
    /// `aud`: the resource the token is for.
    pub aud: String,
    /// `client_id`.
    pub client_id: String,
    /// `exp`.
    pub exp: u64,
    /// `iat`.
    pub iat: u64,
    /// `jti`, the id revocation names.
    pub jti: String,
    /// `scope`, space-separated.
    pub scope: String,
    /// The person, absent for `client_credentials` (then `sub` is the client id).
    #[serde(flatten)]
    pub identity: Option<IdentityClaims>,
    /// `sub` for a client acting as itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_sub: Option<String>,
}

/// An access token and what the store needs to revoke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedAccessToken {
    /// The JWT.
    pub token: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp`.
    pub expires_at: UnixTime,
}

/// What an `id_token_hint` says, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTokenHint {
    /// The subject the hint names.
    pub sub: SubjectId,
    /// The client it was issued to (`azp`, else the `aud`).
    pub client_id: String,
}

/// Issues and checks this provider's tokens.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    issuer: String,
    keys: KeySet,
    /// Access token life (5 minutes by default, so a disabled account's tokens die soon).
    pub access_life: Duration,
    /// ID token life.
    pub id_life: Duration,
}

impl TokenIssuer {
    /// An issuer named `issuer` (the `iss` URL) signing with `keys`.
    pub fn new(issuer: impl Into<String>, keys: KeySet) -> Self {
        Self {
            issuer: issuer.into(),
            keys,
            access_life: Duration::from_secs(300),
            id_life: Duration::from_secs(300),
        }
    }

    /// The `iss` value.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The signing keys.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Rotates the signing key; the old one stays published until its tokens have expired.
    pub fn rotate(&mut self, signer: std::sync::Arc<dyn tianping_core::Signer>, now: UnixTime) {
        let longest = self.access_life.max(self.id_life);
        self.keys.rotate(signer, now, longest);
    }

    /// An access token for `identity` (or for the client itself when `None`).
    pub fn access_token(
        &self,
        identity: Option<&Identity>,
        client_id: &str,
        audience: &str,
        scope: &str,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<IssuedAccessToken, IdpError> {
        self.access_token_with(identity, client_id, audience, scope, now, rng, Map::new())
    }

    /// [`Self::access_token`] with `extra` members in its claims (none may replace a standard
    /// one).
    #[expect(clippy::too_many_arguments, reason = "the token's parts, each named")]
    pub fn access_token_with(
        &self,
        identity: Option<&Identity>,
        client_id: &str,
        audience: &str,
        scope: &str,
        now: UnixTime,
        rng: &dyn Random,
        extra: Map<String, Value>,
    ) -> Result<IssuedAccessToken, IdpError> {
        let jti = URL_SAFE_NO_PAD.encode(bytes::<16>(rng)?);
        let expires_at = now.saturating_add(self.access_life);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: audience.to_owned(),
            client_id: client_id.to_owned(),
            exp: expires_at.as_secs(),
            iat: now.as_secs(),
            jti: jti.clone(),
            scope: scope.to_owned(),
            identity: identity.map(IdentityClaims::from),
            client_sub: identity.is_none().then(|| client_id.to_owned()),
        };
        let mut value = serde_json::to_value(&claims).map_err(|_| IdpError::Internal("claims"))?;
        if let Some(obj) = value.as_object_mut() {
            if let Some(s) = obj.remove("client_sub") {
                obj.insert("sub".into(), s);
            }
            for (k, v) in extra {
                obj.entry(k).or_insert(v);
            }
        }
        Ok(IssuedAccessToken {
            token: self.keys.sign("at+jwt", &value)?,
            jti,
            expires_at,
        })
    }

    /// An ID token for `identity`, issued to `client_id`; `access_token` gives its `at_hash`.
    pub fn id_token(
        &self,
        identity: &Identity,
        client_id: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
        now: UnixTime,
    ) -> Result<String, IdpError> {
        self.id_token_with(identity, client_id, nonce, access_token, now, Map::new())
    }

    /// [`Self::id_token`] with `requested` claims (none may replace a standard one).
    pub fn id_token_with(
        &self,
        identity: &Identity,
        client_id: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
        now: UnixTime,
        requested: Map<String, Value>,
    ) -> Result<String, IdpError> {
        let mut claims = serde_json::to_value(IdentityClaims::from(identity))
            .map_err(|_| IdpError::Internal("claims"))?;
        let extra = json!({
            "iss": self.issuer,
            "aud": client_id,
            "azp": client_id,
            "iat": now.as_secs(),
            "exp": now.saturating_add(self.id_life).as_secs(),
        });
        if let (Some(obj), Value::Object(more)) = (claims.as_object_mut(), extra) {
            obj.extend(more);
            if let Some(n) = nonce {
                obj.insert("nonce".into(), Value::String(n.to_owned()));
            }
            if let Some(at) = access_token {
                let h = at_hash(self.keys.signing_algorithm(), at);
                obj.insert("at_hash".into(), Value::String(h));
            }
            for (k, v) in requested {
                obj.entry(k).or_insert(v);
            }
        }
        self.keys.sign("JWT", &claims)
    }

    /// Checks a bearer access token: this issuer's, signed by a published key, `typ: at+jwt`,
    /// unexpired.
    pub fn verify_access_token(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<AccessClaims, IdpError> {
        let v = self
            .keys
            .verify(token, now)
            .map_err(IdpError::InvalidToken)?;
        if v.typ() != Some("at+jwt") {
            let t = v.typ().unwrap_or_default().to_owned();
            return Err(IdpError::InvalidToken(JwtError::WrongType(t)));
        }
        v.check(&self.issuer, None, now, false)
            .map_err(IdpError::InvalidToken)?;
        let mut claims = v.claims;
        let client_sub = claims
            .get("sub")
            .filter(|_| !claims.contains_key("zone"))
            .cloned();
        if let Some(s) = client_sub {
            claims.remove("sub");
            claims.insert("client_sub".into(), s);
        }
        serde_json::from_value(Value::Object(claims))
            .map_err(|_| IdpError::InvalidToken(JwtError::Malformed("claims")))
    }

    /// Checks an `id_token_hint`: an ID token of this issuer under a published key and algorithm.
    /// An expired hint is accepted (OIDC Core §3.1.2.1); an access token is not.
    pub fn verify_id_token_hint(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<IdTokenHint, IdpError> {
        let bad = IdpError::IdTokenHintInvalid;
        let v = self.keys.verify(token, now).map_err(bad)?;
        // an ID token is typed `JWT` (or not typed): an access token (`at+jwt`) or a logout
        // token (`logout+jwt`) is never taken as one
        if let Some(t) = v.typ().filter(|t| *t != "JWT") {
            return Err(bad(JwtError::WrongType(t.to_owned())));
        }
        v.check(&self.issuer, None, now, true).map_err(bad)?;
        let sub = v
            .str_claim("sub")
            .and_then(|s| s.parse::<SubjectId>().ok())
            .ok_or(bad(JwtError::Malformed("no `sub`")))?;
        let client_id = v
            .str_claim("azp")
            .or_else(|| v.str_claim("aud"))
            .ok_or(bad(JwtError::Malformed("no `aud`")))?
            .to_owned();
        Ok(IdTokenHint { sub, client_id })
    }
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of the hash of the access token, the hash
/// chosen by the signing algorithm (SHA-256 for ES256, SHA-512 for EdDSA over Ed25519).
pub fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let digest = match alg {
        Algorithm::Es256 => ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes()),
        Algorithm::Ed25519 => ring::digest::digest(&ring::digest::SHA512, access_token.as_bytes()),
    };
    let d = digest.as_ref();
    URL_SAFE_NO_PAD.encode(d.get(..d.len() / 2).unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use tianping_core::RingSigner;

    use super::*;
    use crate::random::SeededRandom;

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    pub(crate) fn judge() -> Identity {
        Identity {
            sub: "judge-0001".parse().unwrap(),
            court: Some("bj.01.03".parse().unwrap()),
            roles: vec![Role::Judge],
            clearance: Clearance::Secret,
            acr: Acr::Otp,
            amr: vec![Amr::Pwd, Amr::Otp],
            zone: "private".parse().unwrap(),
            auth_time: UnixTime::from_secs(1_799_999_000),
            device: None,
        }
    }

    fn issuer(alg: Algorithm) -> TokenIssuer {
        let signer = Arc::new(RingSigner::generate(alg).unwrap().0);
        TokenIssuer::new("https://idp.private.example", KeySet::new(signer))
    }

    #[test]
    fn access_tokens_are_rfc9068_with_identity_claims() {
        let iss = issuer(Algorithm::Es256);
        let rng = SeededRandom::new(1);
        let at = iss
            .access_token(
                Some(&judge()),
                "case-app",
                "https://case.example",
                "openid profile",
                NOW,
                &rng,
            )
            .unwrap();
        let v = iss.keys().verify(&at.token, NOW).unwrap();
        assert_eq!(v.typ(), Some("at+jwt"));
        let c = &v.claims;
        for (k, want) in [
            ("iss", json!("https://idp.private.example")),
            ("sub", json!("judge-0001")),
            ("court", json!("bj.01.03")),
            ("roles", json!(["judge"])),
            ("clearance", json!("secret")),
            ("acr", json!("otp")),
            ("amr", json!(["pwd", "otp"])),
            ("zone", json!("private")),
            ("client_id", json!("case-app")),
            ("aud", json!("https://case.example")),
            ("exp", json!(1_800_000_300u64)),
        ] {
            assert_eq!(c[k], want, "{k}");
        }
        let back = iss.verify_access_token(&at.token, NOW).unwrap();
        assert_eq!(back.jti, at.jti);
        assert_eq!(back.identity.unwrap().sub.as_str(), "judge-0001");
        let late = NOW.saturating_add(Duration::from_secs(300));
        assert_eq!(
            iss.verify_access_token(&at.token, late),
            Err(IdpError::InvalidToken(JwtError::Expired))
        );
    }

    #[test]
    fn client_credentials_tokens_name_the_client() {
        let iss = issuer(Algorithm::Ed25519);
        let at = iss
            .access_token(
                None,
                "exchange-n1",
                "https://audit.example",
                "audit.append",
                NOW,
                &SeededRandom::new(2),
            )
            .unwrap();
        let v = iss.keys().verify(&at.token, NOW).unwrap();
        assert_eq!(v.claims["sub"], "exchange-n1");
        assert!(!v.claims.contains_key("zone") && !v.claims.contains_key("client_sub"));
        let back = iss.verify_access_token(&at.token, NOW).unwrap();
        assert_eq!(back.identity, None);
        assert_eq!(back.client_sub.as_deref(), Some("exchange-n1"));
    }

    #[test]
    fn id_tokens_carry_nonce_auth_time_azp_and_at_hash() {
        for alg in Algorithm::ALL {
            let iss = issuer(*alg);
            let id = iss
                .id_token(&judge(), "case-app", Some("n-0S6"), Some("the-token"), NOW)
                .unwrap();
            let v = iss.keys().verify(&id, NOW).unwrap();
            assert_eq!(v.typ(), Some("JWT"));
            assert_eq!(v.claims["nonce"], "n-0S6");
            assert_eq!(v.claims["auth_time"], 1_799_999_000u64);
            assert_eq!(v.claims["azp"], "case-app");
            assert_eq!(v.claims["aud"], "case-app");
            assert_eq!(v.claims["roles"], json!(["judge"]));
            assert_eq!(v.claims["at_hash"], at_hash(*alg, "the-token"));
            // as a hint it names its subject and client, even once expired
            let late = NOW.saturating_add(Duration::from_secs(3600));
            let hint = iss.verify_id_token_hint(&id, late).unwrap();
            assert_eq!(
                (hint.sub.as_str(), hint.client_id.as_str()),
                ("judge-0001", "case-app")
            );
            // an ID token is not an access token
            assert!(matches!(
                iss.verify_access_token(&id, NOW),
                Err(IdpError::InvalidToken(JwtError::WrongType(_)))
            ));
        }
        let none = issuer(Algorithm::Es256)
            .id_token(&judge(), "c", None, None, NOW)
            .unwrap();
        let iss2 = issuer(Algorithm::Es256);
        assert!(iss2.verify_id_token_hint(&none, NOW).is_err());
    }

    #[test]
    fn at_hash_known_answer() {
        // OIDC Core §A.3: access token `jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y`,
        // RS256 (SHA-256) at_hash `77QmUPtjPfzWtF2AnpK9RQ`; ES256 uses the same hash.
        assert_eq!(
            at_hash(
                Algorithm::Es256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn access_tokens_are_refused_as_hints_and_hints_from_others() {
        let iss = issuer(Algorithm::Es256);
        let at = iss
            .access_token(
                Some(&judge()),
                "c",
                "a",
                "openid",
                NOW,
                &SeededRandom::new(3),
            )
            .unwrap();
        assert!(matches!(
            iss.verify_id_token_hint(&at.token, NOW),
            Err(IdpError::IdTokenHintInvalid(JwtError::WrongType(_)))
        ));
        let mut other = issuer(Algorithm::Es256);
        other.issuer = "https://elsewhere".into();
        let mut other = other.clone();
        other.keys = iss.keys().clone();
        let foreign = other.id_token(&judge(), "c", None, None, NOW).unwrap();
        assert_eq!(
            iss.verify_id_token_hint(&foreign, NOW),
            Err(IdpError::IdTokenHintInvalid(JwtError::WrongIssuer))
        );
    }
}
