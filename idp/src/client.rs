//! Registered clients (relying parties): their redirect URIs, grants and how they authenticate.
//!
//! Redirect URIs match exactly, byte for byte: no wildcards, no prefix or path normalisation, no
//! `localhost` leniency. The one exception is RFC 8252 §7.3: a native client registered with
//! [`Client::native_loopback`] and a loopback redirect (`http://127.0.0.1/...` or
//! `http://[::1]/...`) may use any port on that literal address, the rest of the URI unchanged.

use std::fmt;

use tianping_core::{Secret, ct_eq};

use crate::IdpError;

/// A grant type a client may use at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    /// `authorization_code`.
    AuthorizationCode,
    /// `refresh_token`.
    RefreshToken,
    /// `client_credentials`.
    ClientCredentials,
}

impl GrantType {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    /// The grant named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuthMethod {
    /// `client_secret_basic`: HTTP Basic with the id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `none`: a public native client, held to PKCE only.
    None,
    /// `private_key_jwt`: a JWT signed with a key the client registered (RFC 7523 §2.2, OIDC
    /// Core §9), checked by [`crate::client_auth`].
    PrivateKeyJwt,
    /// `tls_client_auth`: the zone node certificate the client registered the subject of, on
    /// the TLS connection (RFC 8705 §2.1); its access tokens are bound to it.
    TlsClientAuth,
}

impl ClientAuthMethod {
    /// The name in discovery and registration.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
            ClientAuthMethod::None => "none",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
            ClientAuthMethod::TlsClientAuth => "tls_client_auth",
        }
    }

    /// Every method, in the order discovery lists them.
    pub const ALL: [ClientAuthMethod; 5] = [
        ClientAuthMethod::ClientSecretBasic,
        ClientAuthMethod::ClientSecretPost,
        ClientAuthMethod::PrivateKeyJwt,
        ClientAuthMethod::TlsClientAuth,
        ClientAuthMethod::None,
    ];

    /// The method named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the client holds a secret the provider made (the `client_secret_*` methods).
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost
        )
    }
}

/// A registered client.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    /// The `client_id`.
    pub id: String,
    /// SHA-256 of the client secret. Secrets are 256 random bits made by the provider and shown
    /// once, so a fast hash suffices (unlike passwords).
    pub secret_sha256: Option<[u8; 32]>,
    /// How it authenticates.
    pub auth_method: ClientAuthMethod,
    /// Registered redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// Registered post-logout redirect URIs, matched exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// The grants it may use.
    pub grants: Vec<GrantType>,
    /// A native app allowed any port on its registered loopback redirect URIs (RFC 8252 §7.3).
    pub native_loopback: bool,
    /// Scopes beyond the standard ones (`openid`, `profile`, `email`, `phone`, `address`,
    /// `offline_access`) that it may ask for.
    pub extra_scopes: Vec<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("auth_method", &self.auth_method)
            .field("redirect_uris", &self.redirect_uris)
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

/// The standard scopes every client may ask for.
pub const STANDARD_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "phone",
    "address",
    "offline_access",
];

/// The credentials a token request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The client id.
    pub client_id: String,
    /// The secret, if one was sent; for `private_key_jwt`, the client assertion.
    pub secret: Option<Secret<String>>,
    /// How they were sent.
    pub method: ClientAuthMethod,
}

impl Client {
    /// SHA-256 of a client secret, as [`secret_sha256`](Self::secret_sha256) keeps it.
    pub fn hash_secret(secret: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(
            ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref(),
        );
        out
    }

    /// Checks a redirect URI for registration: absolute `https` (or `http` on a loopback
    /// address), no fragment, no user info.
    pub fn check_registered_uri(uri: &str) -> Result<(), IdpError> {
        let bad = |reason| IdpError::BadParameter {
            name: "redirect_uri",
            reason,
        };
        if uri.contains('#') {
            return Err(bad("a fragment is not allowed"));
        }
        if loopback_parts(uri).is_some() {
            return Ok(());
        }
        if let Some(rest) = uri.strip_prefix("https://") {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            if authority.is_empty() || authority.contains('@') {
                return Err(bad("expected a host and no user info"));
            }
            return Ok(());
        }
        // a private-use scheme of a native app (RFC 8252 §7.1), e.g. `cn.court.desk:/cb`
        let private_use = uri.split_once(":/").is_some_and(|(scheme, _)| {
            scheme.contains('.')
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        });
        if private_use {
            Ok(())
        } else {
            Err(bad(
                "expected an https URI, a loopback http URI or a reverse-domain scheme",
            ))
        }
    }

    /// Whether `uri` is one of the registered redirect URIs (exactly, or by RFC 8252 loopback
    /// port for a native client registered so).
    pub fn matches_redirect(&self, uri: &str) -> bool {
        if self.redirect_uris.iter().any(|r| r == uri) {
            return true;
        }
        if !self.native_loopback {
            return false;
        }
        let Some((host, _, rest)) = loopback_parts(uri) else {
            return false;
        };
        self.redirect_uris
            .iter()
            .any(|r| loopback_parts(r).is_some_and(|(rh, _, rr)| rh == host && rr == rest))
    }

    /// Whether `uri` is a registered post-logout redirect URI (exactly).
    pub fn matches_post_logout(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    /// Checks credentials: the registered method, and the secret in constant time. A client
    /// authenticating by key or certificate never passes here: see [`crate::client_auth`].
    pub fn authenticate(&self, creds: &ClientCredentials) -> Result<(), IdpError> {
        if creds.client_id != self.id || creds.method != self.auth_method {
            return Err(IdpError::ClientAuthFailed);
        }
        match (self.auth_method, &self.secret_sha256, &creds.secret) {
            (ClientAuthMethod::PrivateKeyJwt | ClientAuthMethod::TlsClientAuth, _, _) => {
                Err(IdpError::ClientAuthFailed)
            }
            (ClientAuthMethod::None, _, None) => Ok(()),
            (ClientAuthMethod::None, _, Some(_)) => Err(IdpError::ClientAuthFailed),
            (_, Some(stored), Some(sent)) => {
                if ct_eq(&Self::hash_secret(sent.expose()), stored) {
                    Ok(())
                } else {
                    Err(IdpError::ClientAuthFailed)
                }
            }
            _ => Err(IdpError::ClientAuthFailed),
        }
    }

    /// Refuses a grant the client is not registered for.
    pub fn allows(&self, grant: GrantType) -> Result<(), IdpError> {
        if self.grants.contains(&grant) {
            Ok(())
        } else {
            Err(IdpError::GrantNotAllowed(grant.as_str()))
        }
    }

    /// Whether the client may ask for `scope`.
    pub fn may_ask(&self, scope: &str) -> bool {
        STANDARD_SCOPES.contains(&scope) || self.extra_scopes.iter().any(|s| s == scope)
    }
}

/// An `http` loopback URI split into host literal, port and the rest (path and query).
fn loopback_parts(uri: &str) -> Option<(&str, Option<&str>, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = if let Some(h) = authority.strip_prefix("[::1]") {
        ("[::1]", h)
    } else if let Some(h) = authority.strip_prefix("127.0.0.1") {
        ("127.0.0.1", h)
    } else {
        return None;
    };
    let port = match port {
        "" => None,
        p => {
            let digits = p.strip_prefix(':')?;
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            Some(digits)
        }
    };
    Some((host, port, tail))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn web_client() -> Client {
        Client {
            id: "case-app".into(),
            secret_sha256: Some(Client::hash_secret("s3cret-case-app")),
            auth_method: ClientAuthMethod::ClientSecretBasic,
            redirect_uris: vec!["https://case.example/cb".into()],
            post_logout_redirect_uris: vec!["https://case.example/bye".into()],
            grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            native_loopback: false,
            extra_scopes: vec![],
        }
    }

    pub(crate) fn native_client() -> Client {
        Client {
            id: "desk-app".into(),
            secret_sha256: None,
            auth_method: ClientAuthMethod::None,
            redirect_uris: vec!["http://127.0.0.1/cb".into(), "http://[::1]:8400/cb".into()],
            post_logout_redirect_uris: vec![],
            grants: vec![GrantType::AuthorizationCode],
            native_loopback: true,
            extra_scopes: vec![],
        }
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let c = web_client();
        assert!(c.matches_redirect("https://case.example/cb"));
        for bad in [
            "https://case.example/cb/",
            "https://case.example/cb?x=1",
            "https://case.example/cb#f",
            "https://case.example/CB",
            "https://CASE.example/cb",
            "https://case.example:443/cb",
            "https://case.example/cb/../cb",
            "https://case.example/cb/..;/evil",
            "https://case.example@evil.example/cb",
            "https://evil.example/?https://case.example/cb",
            "http://case.example/cb",
            "https://case.example.evil.example/cb",
            "https://case.example/c*",
        ] {
            assert!(!c.matches_redirect(bad), "{bad}");
        }
    }

    #[test]
    fn loopback_ports_only_for_native_clients_registered_so() {
        let n = native_client();
        assert!(n.matches_redirect("http://127.0.0.1/cb"));
        assert!(n.matches_redirect("http://127.0.0.1:51004/cb"));
        assert!(n.matches_redirect("http://[::1]:1/cb"));
        for bad in [
            "http://localhost:51004/cb",
            "http://127.0.0.1:51004/cb2",
            "http://127.0.0.1:51004/cb?x",
            "http://127.0.0.2:51004/cb",
            "http://127.0.0.1:/cb",
            "http://127.0.0.1:123456/cb",
            "http://127.0.0.1:80@evil.example/cb",
            "https://127.0.0.1:51004/cb",
            "http://[::1]:1/cb/",
        ] {
            assert!(!n.matches_redirect(bad), "{bad}");
        }
        let mut strict = native_client();
        strict.native_loopback = false;
        assert!(!strict.matches_redirect("http://127.0.0.1:51004/cb"));
        assert!(strict.matches_redirect("http://127.0.0.1/cb"));
    }

    #[test]
    fn registration_refuses_fragments_and_userinfo() {
        for ok in [
            "https://case.example/cb",
            "http://127.0.0.1/cb",
            "cn.court.desk:/cb",
        ] {
            Client::check_registered_uri(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "https://case.example/cb#x",
            "https://u@case.example/cb",
            "http://case.example/cb",
            "https:///cb",
            "cb",
            "javascript:alert(1)",
        ] {
            assert!(Client::check_registered_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn authentication_by_the_registered_method_only() {
        let c = web_client();
        let creds = |method, secret: Option<&str>| ClientCredentials {
            client_id: "case-app".into(),
            secret: secret.map(|s| Secret::new(s.to_owned())),
            method,
        };
        c.authenticate(&creds(
            ClientAuthMethod::ClientSecretBasic,
            Some("s3cret-case-app"),
        ))
        .unwrap();
        for wrong in [
            creds(ClientAuthMethod::ClientSecretBasic, Some("s3cret-case-apq")),
            creds(ClientAuthMethod::ClientSecretPost, Some("s3cret-case-app")),
            creds(ClientAuthMethod::ClientSecretBasic, None),
            creds(ClientAuthMethod::None, None),
        ] {
            assert_eq!(c.authenticate(&wrong), Err(IdpError::ClientAuthFailed));
        }
        let n = native_client();
        let public = ClientCredentials {
            client_id: "desk-app".into(),
            secret: None,
            method: ClientAuthMethod::None,
        };
        n.authenticate(&public).unwrap();
        assert_eq!(
            c.allows(GrantType::ClientCredentials),
            Err(IdpError::GrantNotAllowed("client_credentials"))
        );
        c.allows(GrantType::RefreshToken).unwrap();
        assert!(!format!("{c:?}").contains("secret_sha256"));
    }

    #[test]
    fn key_and_certificate_methods_never_pass_by_secret() {
        for m in ClientAuthMethod::ALL {
            assert_eq!(ClientAuthMethod::parse(m.as_str()), Some(m));
        }
        assert_eq!(ClientAuthMethod::parse("client_secret_jwt"), None);
        for method in [
            ClientAuthMethod::PrivateKeyJwt,
            ClientAuthMethod::TlsClientAuth,
        ] {
            let mut c = web_client();
            c.auth_method = method;
            let creds = ClientCredentials {
                client_id: "case-app".into(),
                secret: Some(Secret::new("s3cret-case-app".to_owned())),
                method,
            };
            assert_eq!(c.authenticate(&creds), Err(IdpError::ClientAuthFailed));
            assert!(!method.uses_secret());
        }
    }
}
