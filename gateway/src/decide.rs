//! The gateway's answer to a request: the policy engine's decision on the normalized path, turned
//! into forward, transfer, 403, a browser sent to sign in (with `acr_values` when the sign-in was
//! too weak) or a client's 401 with an RFC 6750 / RFC 9470 challenge.

use tianping_core::{Acr, UnixTime};
use tianping_policies::{Decision, Outcome, Policy, Reason, Subject};

use crate::identity::Identity;
use crate::token::bearer_challenge;

/// The reserved prefix of the gateway's own endpoints, which no policy route may declare.
pub const RESERVED_PREFIX: &str = "/.tianping/";

/// What the gateway does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'p> {
    /// Forward to this service of the zone.
    Forward(&'p str),
    /// Turn the request into a transfer on this flow.
    Transfer(&'p str),
    /// 403: the policy refuses this person.
    Forbidden,
    /// A browser is sent to sign in (again): `acr` is the strength to ask for (`acr_values`),
    /// when the sign-in it has was too weak.
    SignIn {
        /// The `acr_values` to ask the IdP for.
        acr: Option<Acr>,
    },
    /// 401 for a client (bearer token, certificate, or nothing): the `WWW-Authenticate` value.
    Unauthorized {
        /// The challenge.
        challenge: String,
    },
}

impl Action<'_> {
    /// The HTTP status this action answers with (forwarding: the service's own).
    pub fn status(&self) -> u16 {
        match self {
            Action::Forward(_) => 200,
            Action::Transfer(_) => 202,
            Action::Forbidden => 403,
            Action::SignIn { .. } | Action::Unauthorized { .. } => 401,
        }
    }
}

/// A decision and what it makes the gateway do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayDecision<'p> {
    /// The policy engine's decision (rule, reason, policy hash: what the audit event carries).
    pub decision: Decision<'p>,
    /// What the gateway does.
    pub action: Action<'p>,
}

/// Decides a request to `zone` by `who` (`None`: no credential, or one that was refused);
/// `browser` says whether the asker is a browser (it has, or could have, a session cookie).
/// `path` is the listener's normalized path.
pub fn decide<'p>(
    policy: &'p Policy,
    zone: &str,
    who: Option<&Identity>,
    browser: bool,
    method: &str,
    path: &str,
    now: UnixTime,
) -> GatewayDecision<'p> {
    let subject = who.map_or_else(|| Subject::new(&[]), Identity::subject);
    let decision = policy.decide_request(zone, &subject, method, path, now);
    let action = match (decision.outcome, who) {
        (Outcome::Service(s), Some(_)) => Action::Forward(s),
        (Outcome::Flow(f), Some(_)) => Action::Transfer(f),
        // nobody signed in: a browser signs in, a client is told how to authenticate
        (_, None) if browser => Action::SignIn { acr: None },
        (_, None) => Action::Unauthorized {
            challenge: "Bearer realm=\"tianping\"".to_owned(),
        },
        (Outcome::Deny, Some(id)) => match decision.reason {
            Reason::Acr { need, .. } | Reason::ZoneAcr { need, .. } => {
                if id.credential.is_browser() {
                    Action::SignIn { acr: Some(need) }
                } else {
                    Action::Unauthorized {
                        challenge: format!(
                            "{}, acr_values=\"{need}\"",
                            bearer_challenge(
                                "insufficient_user_authentication",
                                &decision.reason.to_string(),
                            )
                        ),
                    }
                }
            }
            _ => Action::Forbidden,
        },
    };
    GatewayDecision { decision, action }
}

#[cfg(test)]
mod tests {
    use tianping_core::{Clearance, Role};
    use tianping_policies::{DEFAULT_POLICY, check};

    use super::*;
    use crate::identity::Credential;

    type R = Result<(), Box<dyn std::error::Error>>;

    const POLICY: &str = r#"
levels confidentiality public < internal
levels integrity untrusted < court
zone private {
  confidentiality internal
  integrity court
  acr any >= pwd
}
service cases in private
route case-read in private {
  path /cases/**
  methods GET
  to service cases
  roles judge, clerk
}
route case-sign in private {
  path /cases/*/sign
  methods POST
  to service cases
  roles judge
  acr >= cert
}
"#;

    fn who(acr: Acr, browser: bool) -> Result<Identity, Box<dyn std::error::Error>> {
        let credential = if browser {
            Credential::Session {
                id: "s".into(),
                sid: None,
                auth_time: UnixTime::from_secs(0),
            }
        } else {
            Credential::Bearer {
                jti: "j".into(),
                client_id: "c".into(),
                expires_at: UnixTime::from_secs(0),
            }
        };
        Ok(Identity {
            sub: "u-1001".parse()?,
            roles: vec![Role::Judge],
            court: Some("bj.01".parse()?),
            clearance: Clearance::None,
            acr,
            amr: vec![],
            credential,
        })
    }

    #[test]
    fn allow_deny_sign_in_and_challenges() -> R {
        let checked = check("t.tp", POLICY);
        let policy = checked.policy().ok_or_else(|| checked.render())?;
        let t = UnixTime::from_secs(0);
        let judge = who(Acr::Pwd, true)?;
        let d = decide(policy, "private", Some(&judge), true, "GET", "/cases/1", t);
        assert_eq!(d.action, Action::Forward("cases"));
        assert_eq!(d.decision.rule, Some("case-read"));
        let d = decide(
            policy,
            "private",
            Some(&judge),
            true,
            "DELETE",
            "/cases/1",
            t,
        );
        assert_eq!(d.action, Action::Forbidden);
        let d = decide(
            policy,
            "private",
            Some(&judge),
            true,
            "POST",
            "/cases/1/sign",
            t,
        );
        assert_eq!(
            d.action,
            Action::SignIn {
                acr: Some(Acr::Cert)
            }
        );
        let bearer = who(Acr::Otp, false)?;
        let d = decide(
            policy,
            "private",
            Some(&bearer),
            false,
            "POST",
            "/cases/1/sign",
            t,
        );
        let Action::Unauthorized { challenge } = &d.action else {
            return Err(format!("{:?}", d.action).into());
        };
        assert!(challenge.contains("error=\"insufficient_user_authentication\""));
        assert!(challenge.contains("acr_values=\"cert\""));
        let d = decide(policy, "private", None, true, "GET", "/cases/1", t);
        assert_eq!(d.action, Action::SignIn { acr: None });
        let d = decide(policy, "private", None, false, "GET", "/cases/1", t);
        assert_eq!(d.action.status(), 401);
        Ok(())
    }

    #[test]
    fn the_default_policy_decides_through_the_gateway() -> R {
        let checked = check("default.tp", DEFAULT_POLICY);
        let policy = checked.policy().ok_or_else(|| checked.render())?;
        let mut lawyer = who(Acr::Otp, true)?;
        lawyer.roles = vec![Role::Lawyer];
        lawyer.court = None;
        let d = decide(
            policy,
            "internet",
            Some(&lawyer),
            true,
            "POST",
            "/filings",
            UnixTime::from_secs(0),
        );
        assert_eq!(d.action, Action::Transfer("online-filing"));
        assert_eq!(d.decision.policy, policy.hash());
        Ok(())
    }
}
