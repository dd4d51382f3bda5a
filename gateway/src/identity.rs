//! Who is asking: a session, a bearer token or a client certificate, made into one identity.

use tianping_certs::{CertKind, CourtIdentity, UserClaims};
use tianping_core::{Acr, Amr, Clearance, CourtCode, Role, SubjectId, UnixTime, ZoneName};
use tianping_policies::Subject;

use crate::cookie::Session;
use crate::token::AccessToken;

/// How the identity was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A browser's session cookie (its gateway session id and the IdP's `sid`).
    Session {
        /// The gateway's session id.
        id: String,
        /// The IdP's session id.
        sid: Option<String>,
        /// When the person signed in.
        auth_time: UnixTime,
    },
    /// A bearer access token of the zone's IdP.
    Bearer {
        /// Its `jti`.
        jti: String,
        /// The client it was issued to.
        client_id: String,
        /// When it expires.
        expires_at: UnixTime,
    },
    /// A client certificate of the zone (mTLS).
    Certificate {
        /// SHA-256 of the leaf.
        fingerprint: [u8; 32],
        /// Whether its key is on a PIN-guarded hardware token.
        hardware: bool,
    },
}

impl Credential {
    /// `session`, `bearer` or `certificate`, as the audit log names it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Credential::Session { .. } => "session",
            Credential::Bearer { .. } => "bearer",
            Credential::Certificate { .. } => "certificate",
        }
    }

    /// Whether the asker is a browser (sent to sign in) rather than a client with a token or a
    /// certificate (answered 401 with a challenge).
    pub fn is_browser(&self) -> bool {
        matches!(self, Credential::Session { .. })
    }
}

/// A signed-in person as the gateway decides on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The person.
    pub sub: SubjectId,
    /// Their roles.
    pub roles: Vec<Role>,
    /// Their court.
    pub court: Option<CourtCode>,
    /// Their clearance.
    pub clearance: Clearance,
    /// How strongly they authenticated.
    pub acr: Acr,
    /// The methods used.
    pub amr: Vec<Amr>,
    /// What they presented.
    pub credential: Credential,
}

/// Why a client certificate is not an identity here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a person's (`client`) certificate.
    #[error("a {0} certificate is not a person's")]
    NotAPerson(CertKind),
    /// Issued by another zone's CA.
    #[error("a certificate of zone `{0}`")]
    WrongZone(String),
    /// No subject id in the certificate.
    #[error("the certificate names no subject")]
    NoSubject,
}

impl Identity {
    /// The person of a session.
    pub fn from_session(s: &Session) -> Self {
        Self {
            sub: s.sub.clone(),
            roles: s.roles.clone(),
            court: s.court.clone(),
            clearance: s.clearance,
            acr: s.acr,
            amr: s.amr.clone(),
            credential: Credential::Session {
                id: s.id.clone(),
                sid: s.sid.clone(),
                auth_time: s.signed_in_at(),
            },
        }
    }

    /// The person of a verified access token.
    pub fn from_token(t: &AccessToken) -> Self {
        Self {
            sub: t.sub.clone(),
            roles: t.roles.clone(),
            court: t.court.clone(),
            clearance: t.clearance,
            acr: t.acr,
            amr: t.amr.clone(),
            credential: Credential::Bearer {
                jti: t.jti.clone(),
                client_id: t.client_id.clone(),
                expires_at: t.expires_at,
            },
        }
    }

    /// The person of a client certificate of `zone` (chain already verified by the listener):
    /// roles and court from the certificate, clearance `none` (a certificate carries none),
    /// `acr=cert` only for a hardware-key certificate, `pwd` (one factor) for any other.
    pub fn from_certificate(c: &CourtIdentity, zone: &ZoneName) -> Result<Self, IdentityError> {
        if c.kind != CertKind::Client {
            return Err(IdentityError::NotAPerson(c.kind));
        }
        if c.zone != *zone {
            return Err(IdentityError::WrongZone(c.zone.as_str().to_owned()));
        }
        let sub = c.subject.clone().ok_or(IdentityError::NoSubject)?;
        let (acr, amr) = if c.hardware {
            (Acr::Cert, vec![Amr::Hwk, Amr::Pin, Amr::Mfa])
        } else {
            (Acr::Pwd, vec![Amr::Swk])
        };
        Ok(Self {
            sub,
            roles: c.roles.clone(),
            court: c.court.clone(),
            clearance: Clearance::None,
            acr,
            amr,
            credential: Credential::Certificate {
                fingerprint: c.fingerprint,
                hardware: c.hardware,
            },
        })
    }

    /// The policy engine's view.
    pub fn subject(&self) -> Subject {
        Subject {
            roles: self.roles.clone(),
            court: self.court.clone(),
            clearance: self.clearance,
            acr: self.acr,
        }
    }

    /// The claims of a `Tianping-Assertion` for this person (without `court` for a person
    /// outside the courts).
    pub fn user_claims(&self) -> UserClaims {
        UserClaims {
            sub: self.sub.clone(),
            roles: self.roles.clone(),
            court: self.court.clone(),
            acr: self.acr,
            clearance: self.clearance,
        }
    }

    /// Writes into `s` (emptied first) the key an assertion for `service` is cached under for
    /// this identity: the service, a newline (no policy identifier holds one), then the session
    /// id, the token's subject and `jti`, or the certificate's fingerprint. One string, written
    /// for every forwarded request into a buffer the caller keeps.
    pub fn write_cache_key(&self, service: &str, s: &mut String) {
        s.clear();
        s.push_str(service);
        s.push('\n');
        match &self.credential {
            Credential::Session { id, .. } => {
                s.push_str("s:");
                s.push_str(id);
            }
            Credential::Bearer { jti, .. } => {
                s.push_str("b:");
                s.push_str(self.sub.as_str());
                s.push(':');
                s.push_str(jti);
            }
            Credential::Certificate { fingerprint, .. } => {
                s.push_str("c:");
                let mut hex = [0u8; 64];
                if hex::encode_to_slice(fingerprint, &mut hex).is_ok() {
                    s.push_str(std::str::from_utf8(&hex).unwrap_or_default());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tianping_certs::{CaCert, KeyAlg, LeafRequest, identity_of};

    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

    fn cert(hardware: bool, kind: CertKind) -> Result<CourtIdentity, Box<dyn std::error::Error>> {
        let now = UnixTime::from_secs(1_800_000_000);
        let root = CaCert::new_root("Court", KeyAlg::EcP256, now)?;
        let zone = root.new_zone(&"private".parse()?, "Court", KeyAlg::EcP256, now)?;
        let mut req = LeafRequest::new(kind, "Judge Li");
        if kind == CertKind::Client {
            req.subject = Some("u-1001".parse()?);
            req.court = Some("bj.01".parse()?);
            req.roles = vec![Role::Judge];
            req.hardware = hardware;
        } else {
            req.dns = vec!["gw.private.tianping.localhost".into()];
        }
        let leaf = zone.issue(&req, now)?;
        Ok(identity_of(&leaf.leaf_der)?)
    }

    #[test]
    fn only_a_hardware_certificate_is_acr_cert() -> R {
        let zone: ZoneName = "private".parse()?;
        let hw = Identity::from_certificate(&cert(true, CertKind::Client)?, &zone)?;
        assert_eq!(hw.acr, Acr::Cert);
        assert_eq!(hw.clearance, Clearance::None);
        assert_eq!(hw.roles, vec![Role::Judge]);
        let sw = Identity::from_certificate(&cert(false, CertKind::Client)?, &zone)?;
        assert_eq!(sw.acr, Acr::Pwd);
        assert_eq!(sw.subject().court, Some("bj.01".parse()?));
        assert!(!sw.credential.is_browser());
        Ok(())
    }

    #[test]
    fn a_cache_key_names_the_service_and_the_credential_whatever_the_buffer_held() -> R {
        let zone: ZoneName = "private".parse()?;
        let mut who = Identity::from_certificate(&cert(false, CertKind::Client)?, &zone)?;
        let Credential::Certificate { fingerprint, .. } = who.credential else {
            return Err("a certificate's identity".into());
        };
        let mut key = "left over from another request".to_string();
        who.write_cache_key("case-service", &mut key);
        assert_eq!(key, format!("case-service\nc:{}", hex::encode(fingerprint)));
        who.credential = Credential::Bearer {
            jti: "j-1".into(),
            client_id: "portal".into(),
            expires_at: UnixTime::from_secs(1),
        };
        who.write_cache_key("case-service", &mut key);
        assert_eq!(key, "case-service\nb:u-1001:j-1");
        who.credential = Credential::Session {
            id: "s-9".into(),
            sid: Some("idp-s".into()),
            auth_time: UnixTime::from_secs(1),
        };
        who.write_cache_key("docs", &mut key);
        assert_eq!(key, "docs\ns:s-9");
        Ok(())
    }

    #[test]
    fn another_zones_or_a_servers_certificate_is_no_person_here() -> R {
        let c = cert(false, CertKind::Client)?;
        assert_eq!(
            Identity::from_certificate(&c, &"internet".parse()?),
            Err(IdentityError::WrongZone("private".into()))
        );
        let s = cert(false, CertKind::Server)?;
        assert_eq!(
            Identity::from_certificate(&s, &"private".parse()?),
            Err(IdentityError::NotAPerson(CertKind::Server))
        );
        Ok(())
    }
}
