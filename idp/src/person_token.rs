//! The person-token verifier of a zone's control sockets (the `server` feature): the token
//! `tianping login` keeps (`run/admin-<zone>.token`) turned into the court identity the socket's
//! handlers ask roles of (`tianping_net::Caller::require`).
//!
//! A token passes when it is an access token (`typ: at+jwt`) of the zone's IdP signed by a key
//! it publishes, unexpired, for the zone's control sockets ([`control_audience`]), about a
//! person, not revoked (`tianping logout` revokes it at the IdP) and of an account that may
//! still be issued tokens (enabled, not locked out). Anything else is refused with its reason.

use std::sync::Arc;

use tianping_certs::{CertKind, CourtIdentity};
use tianping_core::UnixTime;
use tianping_net::{CallerRefusal, CallerVerifier, Credential};

use crate::directory::Directory;
use crate::store::Store;
use crate::tokens::TokenIssuer;

/// The longest life of an administrator's token: 15 minutes.
pub const PERSON_TOKEN_LIFE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The audience of the tokens a zone's control sockets accept.
pub fn control_audience(zone: &str) -> String {
    format!("tianping-control:{zone}")
}

/// Where the verifier reads the IdP's keys in force (they rotate).
pub type IssuerSource = Arc<dyn Fn() -> Option<TokenIssuer> + Send + Sync>;

/// Verifies people's tokens for the control sockets of one zone.
pub struct PersonTokens {
    issuer: IssuerSource,
    audience: String,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for PersonTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonTokens")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl PersonTokens {
    /// Tokens signed by the keys `issuer` gives, for the control sockets of `zone`, checked
    /// against the revocations and accounts of `store`.
    pub fn new(issuer: IssuerSource, zone: &str, store: Arc<dyn Store>) -> Self {
        Self {
            issuer,
            audience: control_audience(zone),
            store,
        }
    }

    /// The court identity `token` names at `now`, or why it is refused.
    pub fn check(&self, token: &str, now: UnixTime) -> Result<CourtIdentity, String> {
        let issuer = (self.issuer)().ok_or("the IdP is not started yet")?;
        let claims = issuer
            .verify_access_token(token, now)
            .map_err(|e| e.to_string())?;
        if claims.aud != self.audience {
            return Err(format!(
                "the token is for `{}`, not `{}`",
                crate::error::quoted(&claims.aud),
                self.audience
            ));
        }
        let person = claims.identity.ok_or("the token names no person")?;
        if claims.exp.saturating_sub(claims.iat) > PERSON_TOKEN_LIFE.as_secs() {
            return Err("the token lives longer than 15 minutes".into());
        }
        if self
            .store
            .is_token_revoked(&claims.jti)
            .map_err(|e| e.to_string())?
        {
            return Err("the token was revoked (logout)".into());
        }
        let user = Directory::new(&*self.store)
            .user(&person.sub)
            .map_err(|e| e.to_string())?
            .ok_or("the token's person is not in the directory")?;
        if !user.is_enabled() {
            return Err("the token's account is disabled".into());
        }
        let locked = self.store.lockout(&user.login).map_err(|e| e.to_string())?;
        if crate::lockout::LockoutPolicy::default()
            .check(&locked, now)
            .is_err()
        {
            return Err("the token's account is locked out".into());
        }
        Ok(CourtIdentity {
            subject: Some(person.sub.clone()),
            court: person.court,
            // the roles the directory holds now: one taken away since sign-in is gone
            roles: user.roles.clone(),
            zone: person.zone,
            kind: CertKind::Client,
            name: person.sub.to_string(),
            fingerprint: [0; 32],
            hardware: false,
        })
    }
}

impl CallerVerifier for PersonTokens {
    fn verify(
        &self,
        credential: &Credential,
        now: UnixTime,
    ) -> Result<CourtIdentity, CallerRefusal> {
        match credential {
            Credential::Bearer(_) => self
                .check(credential.token(), now)
                .map_err(CallerRefusal::Refused),
            Credential::Assertion(_) => Err(CallerRefusal::Refused(
                "a control socket takes a person's token, not a gateway assertion".into(),
            )),
        }
    }
}
