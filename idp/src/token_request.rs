//! Token requests (RFC 6749 §4.1.3, §6, §4.4): the grant and the client's credentials, sent by
//! `client_secret_basic`, `client_secret_post` or a client assertion (`private_key_jwt`, RFC 7523
//! §2.2) but never by two of them, and never disagreeing. A request with a `client_id` alone is
//! a public client's, or one authenticating by its TLS certificate (`tls_client_auth`): which,
//! the registered client says.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tianping_core::Secret;

use crate::IdpError;
use crate::client::{ClientAuthMethod, ClientCredentials, GrantType};
use crate::client_auth::{CLIENT_ASSERTION_TYPE, assertion_subject};
use crate::error::quoted;
use crate::form::{Params, decode};

/// What is being exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenGrant {
    /// `authorization_code`.
    AuthorizationCode {
        /// The code.
        code: String,
        /// The redirect URI, when the authorization request carried one.
        redirect_uri: Option<String>,
        /// The PKCE verifier.
        code_verifier: Option<String>,
    },
    /// `refresh_token`.
    RefreshToken {
        /// The refresh token.
        refresh_token: String,
        /// A narrower scope, if asked.
        scope: Option<Vec<String>>,
    },
    /// `client_credentials`.
    ClientCredentials {
        /// The scopes asked for.
        scope: Vec<String>,
    },
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4): a device polling for
    /// the authorization a person approves on the verification page.
    DeviceCode {
        /// The device code `/device_authorization` gave.
        device_code: String,
    },
}

impl TokenGrant {
    /// The grant type a client registers for; `None` for the device grant, which only the
    /// provider's device client may use (`Idp::with_device_grant`).
    pub fn grant_type(&self) -> Option<GrantType> {
        match self {
            TokenGrant::AuthorizationCode { .. } => Some(GrantType::AuthorizationCode),
            TokenGrant::RefreshToken { .. } => Some(GrantType::RefreshToken),
            TokenGrant::ClientCredentials { .. } => Some(GrantType::ClientCredentials),
            TokenGrant::DeviceCode { .. } => None,
        }
    }

    /// The grant's name on the wire.
    pub fn name(&self) -> &'static str {
        match self.grant_type() {
            Some(g) => g.as_str(),
            None => crate::device_grant::DEVICE_CODE_GRANT,
        }
    }
}

/// A parsed token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Who is asking, as they said (not yet checked: see `Client::authenticate`).
    pub client: ClientCredentials,
    /// What for.
    pub grant: TokenGrant,
}

fn basic(header: &str) -> Result<(String, Secret<String>), IdpError> {
    let (scheme, value) = header
        .trim()
        .split_once(' ')
        .ok_or(IdpError::ClientAuthFailed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(IdpError::ClientAuthFailed);
    }
    let raw = STANDARD
        .decode(value.trim())
        .map_err(|_| IdpError::ClientAuthFailed)?;
    let raw = Secret::new(raw);
    let colon = raw
        .expose()
        .iter()
        .position(|b| *b == b':')
        .ok_or(IdpError::ClientAuthFailed)?;
    let (id, secret) = raw.expose().split_at(colon);
    // RFC 6749 §2.3.1: both halves are form-encoded before being joined.
    let id = decode(id).map_err(|_| IdpError::ClientAuthFailed)?;
    let secret =
        decode(secret.get(1..).unwrap_or_default()).map_err(|_| IdpError::ClientAuthFailed)?;
    if id.is_empty() {
        return Err(IdpError::ClientAuthFailed);
    }
    Ok((id, Secret::new(secret)))
}

fn scopes(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// The client credentials of a request to the token, revocation or introspection endpoint: from
/// its form parameters and its `Authorization` header, if any.
pub(crate) fn client_credentials(
    p: &Params,
    authorization: Option<&str>,
) -> Result<ClientCredentials, IdpError> {
    let body_id = p.get("client_id")?;
    let body_secret = p.get("client_secret")?;
    let assertion_type = p.get("client_assertion_type")?;
    let assertion = p.get("client_assertion")?;
    if assertion_type.is_some() || assertion.is_some() {
        if authorization.is_some() || body_secret.is_some() {
            return Err(IdpError::ConflictingCredentials);
        }
        match assertion_type {
            Some(CLIENT_ASSERTION_TYPE) => {}
            Some(_) => {
                return Err(IdpError::BadParameter {
                    name: "client_assertion_type",
                    reason: "only `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`",
                });
            }
            None => return Err(IdpError::MissingParameter("client_assertion_type")),
        }
        let assertion = assertion.ok_or(IdpError::MissingParameter("client_assertion"))?;
        // RFC 7523 §3: the assertion's `sub` names the client when no `client_id` is sent; it is
        // checked against the client once the signature verified.
        let client_id = match body_id {
            Some(id) => id.to_owned(),
            None => assertion_subject(assertion).ok_or(IdpError::ClientAuthFailed)?,
        };
        return Ok(ClientCredentials {
            client_id,
            secret: Some(Secret::new(assertion.to_owned())),
            method: ClientAuthMethod::PrivateKeyJwt,
        });
    }
    match authorization {
        Some(h) => {
            let (id, secret) = basic(h)?;
            if body_secret.is_some() || body_id.is_some_and(|b| b != id) {
                return Err(IdpError::ConflictingCredentials);
            }
            Ok(ClientCredentials {
                client_id: id,
                secret: Some(secret),
                method: ClientAuthMethod::ClientSecretBasic,
            })
        }
        None => {
            let id = body_id.ok_or(IdpError::ClientAuthFailed)?;
            Ok(ClientCredentials {
                client_id: id.to_owned(),
                secret: body_secret.map(|s| Secret::new(s.to_owned())),
                method: if body_secret.is_some() {
                    ClientAuthMethod::ClientSecretPost
                } else {
                    ClientAuthMethod::None
                },
            })
        }
    }
}

/// Parses a token request from its form body and its `Authorization` header, if any.
pub fn parse_token_request(
    body: &[u8],
    authorization: Option<&str>,
) -> Result<TokenRequest, IdpError> {
    let p = Params::parse(body)?;
    let client = client_credentials(&p, authorization)?;
    let grant_type = p.require("grant_type")?;
    if grant_type == crate::device_grant::DEVICE_CODE_GRANT {
        let grant = TokenGrant::DeviceCode {
            device_code: p.require("device_code")?.to_owned(),
        };
        return Ok(TokenRequest { client, grant });
    }
    let grant = match GrantType::parse(grant_type) {
        Some(GrantType::AuthorizationCode) => TokenGrant::AuthorizationCode {
            code: p.require("code")?.to_owned(),
            redirect_uri: p.get("redirect_uri")?.map(str::to_owned),
            code_verifier: p.get("code_verifier")?.map(str::to_owned),
        },
        Some(GrantType::RefreshToken) => TokenGrant::RefreshToken {
            refresh_token: p.require("refresh_token")?.to_owned(),
            scope: p.get("scope")?.map(|s| scopes(Some(s))),
        },
        Some(GrantType::ClientCredentials) => TokenGrant::ClientCredentials {
            scope: scopes(p.get("scope")?),
        },
        None => return Err(IdpError::UnsupportedGrantType(quoted(grant_type))),
    };
    Ok(TokenRequest { client, grant })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic_header(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn authorization_code_with_basic() {
        let h = basic_header("case-app", "s3cret%3Aa");
        let r = parse_token_request(
            b"grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fcase.example%2Fcb&code_verifier=v",
            Some(&h),
        )
        .unwrap();
        assert_eq!(r.client.client_id, "case-app");
        assert_eq!(r.client.secret.as_ref().unwrap().expose(), "s3cret:a");
        assert_eq!(r.client.method, ClientAuthMethod::ClientSecretBasic);
        assert_eq!(
            r.grant,
            TokenGrant::AuthorizationCode {
                code: "abc".into(),
                redirect_uri: Some("https://case.example/cb".into()),
                code_verifier: Some("v".into()),
            }
        );
        // the same client_id in the body is allowed
        parse_token_request(
            b"grant_type=client_credentials&client_id=case-app",
            Some(&h),
        )
        .unwrap();
    }

    #[test]
    fn post_and_public_clients() {
        let r = parse_token_request(
            b"grant_type=refresh_token&refresh_token=rt&client_id=case-app&client_secret=s&scope=openid",
            None,
        )
        .unwrap();
        assert_eq!(r.client.method, ClientAuthMethod::ClientSecretPost);
        assert_eq!(
            r.grant,
            TokenGrant::RefreshToken {
                refresh_token: "rt".into(),
                scope: Some(vec!["openid".into()])
            }
        );
        let r = parse_token_request(b"grant_type=client_credentials&client_id=desk", None).unwrap();
        assert_eq!(r.client.method, ClientAuthMethod::None);
        assert_eq!(r.grant.grant_type(), Some(GrantType::ClientCredentials));
    }

    #[test]
    fn duplicate_or_conflicting_credentials_are_refused() {
        let h = basic_header("case-app", "s");
        assert_eq!(
            parse_token_request(b"grant_type=client_credentials&client_secret=s", Some(&h)),
            Err(IdpError::ConflictingCredentials)
        );
        assert_eq!(
            parse_token_request(b"grant_type=client_credentials&client_id=other", Some(&h)),
            Err(IdpError::ConflictingCredentials)
        );
        assert!(matches!(
            parse_token_request(
                b"grant_type=client_credentials&client_id=a&client_id=a&client_secret=s",
                None
            ),
            Err(IdpError::DuplicateParameter(_))
        ));
        assert!(matches!(
            parse_token_request(
                b"grant_type=authorization_code&code=a&code=b&client_id=a",
                None
            ),
            Err(IdpError::DuplicateParameter(_))
        ));
        for bad in [
            "Bearer abc",
            "Basic !!!",
            "Basic Y2FzZS1hcHA=",
            "Basic OnM=",
            "Basic",
        ] {
            assert_eq!(
                parse_token_request(b"grant_type=client_credentials", Some(bad)),
                Err(IdpError::ClientAuthFailed),
                "{bad}"
            );
        }
        assert_eq!(
            parse_token_request(b"grant_type=client_credentials", None),
            Err(IdpError::ClientAuthFailed)
        );
    }

    #[test]
    fn client_assertions() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let part = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.c2ln",
            part(r#"{"alg":"ES256","kid":"k"}"#),
            part(r#"{"sub":"rp-1","iss":"rp-1"}"#)
        );
        let t = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
        let body = format!(
            "grant_type=client_credentials&client_assertion_type={t}&client_assertion={jwt}"
        );
        let r = parse_token_request(body.as_bytes(), None).unwrap();
        assert_eq!(r.client.client_id, "rp-1", "named by the assertion's `sub`");
        assert_eq!(r.client.method, ClientAuthMethod::PrivateKeyJwt);
        assert_eq!(r.client.secret.as_ref().unwrap().expose(), &jwt);
        let named = format!("{body}&client_id=rp-2");
        let r = parse_token_request(named.as_bytes(), None).unwrap();
        assert_eq!(
            r.client.client_id, "rp-2",
            "the form's `client_id` is checked later"
        );
        assert_eq!(
            parse_token_request(format!("{body}&client_secret=s").as_bytes(), None),
            Err(IdpError::ConflictingCredentials)
        );
        assert_eq!(
            parse_token_request(body.as_bytes(), Some(&basic_header("rp-1", "s"))),
            Err(IdpError::ConflictingCredentials)
        );
        let other_type = body.replace("jwt-bearer", "saml2-bearer");
        assert!(matches!(
            parse_token_request(other_type.as_bytes(), None),
            Err(IdpError::BadParameter {
                name: "client_assertion_type",
                ..
            })
        ));
        assert_eq!(
            parse_token_request(
                format!("grant_type=client_credentials&client_assertion={jwt}").as_bytes(),
                None
            ),
            Err(IdpError::MissingParameter("client_assertion_type"))
        );
        assert_eq!(
            parse_token_request(
                format!("grant_type=client_credentials&client_assertion_type={t}").as_bytes(),
                None
            ),
            Err(IdpError::MissingParameter("client_assertion"))
        );
        assert_eq!(
            parse_token_request(
                format!(
                    "grant_type=client_credentials&client_assertion_type={t}&client_assertion=x.y.z"
                )
                .as_bytes(),
                None
            ),
            Err(IdpError::ClientAuthFailed)
        );
    }

    #[test]
    fn grant_errors() {
        assert_eq!(
            parse_token_request(b"grant_type=password&client_id=a", None),
            Err(IdpError::UnsupportedGrantType("password".into()))
        );
        assert_eq!(
            parse_token_request(b"client_id=a", None),
            Err(IdpError::MissingParameter("grant_type"))
        );
        assert_eq!(
            parse_token_request(b"grant_type=authorization_code&client_id=a", None),
            Err(IdpError::MissingParameter("code"))
        );
    }
}
