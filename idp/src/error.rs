//! One error enum for the provider: each variant is exactly one OAuth/OIDC `error` code and one
//! HTTP status, so every refusal has one answer on the wire.

use std::fmt;

use crate::jwt::JwtError;

/// An OAuth 2.0 / OpenID Connect `error` code (RFC 6749 §4.1.2.1 and §5.2, OIDC Core §3.1.2.6,
/// RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client`.
    InvalidClient,
    /// `invalid_grant`.
    InvalidGrant,
    /// `unauthorized_client`.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `unsupported_response_type`.
    UnsupportedResponseType,
    /// `invalid_scope`.
    InvalidScope,
    /// `access_denied`.
    AccessDenied,
    /// `login_required`.
    LoginRequired,
    /// `consent_required`.
    ConsentRequired,
    /// `interaction_required`.
    InteractionRequired,
    /// `request_not_supported`.
    RequestNotSupported,
    /// `request_uri_not_supported`.
    RequestUriNotSupported,
    /// `invalid_token` (RFC 6750).
    InvalidToken,
    /// `server_error`.
    ServerError,
    /// `authorization_pending` (RFC 8628 §3.5).
    AuthorizationPending,
    /// `slow_down` (RFC 8628 §3.5).
    SlowDown,
    /// `expired_token` (RFC 8628 §3.5).
    ExpiredToken,
    /// `temporarily_unavailable` (RFC 6749 §4.1.2.1).
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::ServerError => "server_error",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status a token-endpoint style JSON answer carries for this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::AccessDenied => 403,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the provider refused a request. [`code`](Self::code) and [`status`](Self::status) give
/// its one answer on the wire; the message is for logs and error pages (it never holds a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdpError {
    // ---- the request itself
    /// The query or body is not `application/x-www-form-urlencoded` text.
    #[error("the request is not valid form encoding")]
    MalformedForm,
    /// A parameter appears more than once (RFC 6749 §3.1).
    #[error("parameter `{0}` appears more than once")]
    DuplicateParameter(String),
    /// A required parameter is missing.
    #[error("parameter `{0}` is missing")]
    MissingParameter(&'static str),
    /// A parameter has a value outside its grammar.
    #[error("parameter `{name}` is invalid: {reason}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// `response_type` other than `code`.
    #[error("response type `{0}` is not supported: only `code`")]
    UnsupportedResponseType(String),
    /// A `request` object (OIDC Core §6.1); refused as unsupported.
    #[error("request objects are not supported")]
    RequestObjectNotSupported,
    /// A `request_uri` (OIDC Core §6.2); refused as unsupported.
    #[error("`request_uri` is not supported")]
    RequestUriNotSupported,
    /// `scope` without `openid` at the authorization endpoint.
    #[error("scope must include `openid`")]
    OpenidScopeMissing,
    /// A scope the client may not ask for.
    #[error("scope `{0}` is not allowed for this client")]
    ScopeNotAllowed(String),
    /// The `redirect_uri` is not one the client registered (shown as a page, never redirected).
    #[error("redirect URI `{0}` is not registered for this client")]
    RedirectUriNotRegistered(String),
    /// No `redirect_uri` while the client registered several.
    #[error("`redirect_uri` is required: the client registered more than one")]
    RedirectUriRequired,

    // ---- clients
    /// No such client.
    #[error("unknown client `{0}`")]
    UnknownClient(String),
    /// The client's credentials are missing, wrong, or sent by a method it did not register.
    #[error("client authentication failed")]
    ClientAuthFailed,
    /// Credentials sent by two methods, or a `client_id` that disagrees with them.
    #[error("client credentials are sent more than once or disagree")]
    ConflictingCredentials,
    /// A grant type this provider does not know.
    #[error("grant type `{0}` is not supported")]
    UnsupportedGrantType(String),
    /// A grant type the client is not registered for.
    #[error("the client may not use grant `{0}`")]
    GrantNotAllowed(&'static str),

    // ---- PKCE (RFC 7636)
    /// No `code_challenge` in an authorization request: every client must use PKCE.
    #[error("`code_challenge` is required (PKCE with `S256`)")]
    PkceRequired,
    /// A `code_challenge_method` other than `S256` (`plain` included).
    #[error("code challenge method `{0}` is not supported: only `S256`")]
    PkceMethodNotSupported(String),
    /// A `code_verifier` outside the RFC 7636 grammar.
    #[error("`code_verifier` must be 43 to 128 unreserved characters")]
    PkceVerifierMalformed,
    /// The code was issued with a challenge and no verifier was sent.
    #[error("`code_verifier` is missing")]
    PkceVerifierMissing,
    /// The verifier does not match the challenge.
    #[error("`code_verifier` does not match the challenge")]
    PkceMismatch,
    /// A verifier sent for a code issued without a challenge.
    #[error("`code_verifier` sent for a code issued without a challenge")]
    PkceDowngrade,

    // ---- codes and refresh tokens
    /// The authorization code is unknown or expired.
    #[error("the authorization code is invalid or expired")]
    CodeInvalid,
    /// The authorization code was already used; every token issued from it is revoked.
    #[error("the authorization code was already used")]
    CodeReused,
    /// The code was issued to another client or another redirect URI.
    #[error("the authorization code was issued to another client or redirect URI")]
    CodeMismatch,
    /// The refresh token is unknown, expired or revoked.
    #[error("the refresh token is invalid, expired or revoked")]
    RefreshInvalid,
    /// A rotated refresh token was used again; its whole family is revoked.
    #[error("the refresh token was already used; its family is revoked")]
    RefreshReused,
    /// The refresh token belongs to another client.
    #[error("the refresh token was issued to another client")]
    RefreshWrongClient,
    /// The account behind a grant is locked or disabled (the answer says not which).
    #[error("the account may not be issued tokens")]
    AccountInactive,

    // ---- sign-in
    /// Unknown account or wrong password: one answer for both.
    #[error("the account or password is wrong")]
    SignInFailed,
    /// Too many failures: no attempt is checked before `not_before` (seconds since the epoch).
    #[error("too many failed sign-ins; try again later")]
    AccountLocked {
        /// When the next attempt is looked at, seconds since the epoch.
        not_before: u64,
    },
    /// A TOTP code that is wrong or outside the window.
    #[error("the one-time code is wrong")]
    TotpWrong,
    /// A TOTP code already accepted once.
    #[error("the one-time code was already used")]
    TotpReplayed,
    /// A new password that breaks a rule.
    #[error("the password is too weak: {0}")]
    PasswordTooWeak(&'static str),
    /// A new password equal to one of the last few.
    #[error("the password was used recently")]
    PasswordReused,
    /// `prompt=none` without a usable session.
    #[error("sign-in is required")]
    LoginRequired,
    /// `prompt=none` and the client needs consent.
    #[error("consent is required")]
    ConsentRequired,
    /// `prompt=none` and the user must act (a further factor, a required action).
    #[error("the user must act before a token is issued")]
    InteractionRequired,
    /// The session is unknown or timed out.
    #[error("the session has ended")]
    SessionExpired,
    /// A form without its CSRF token, or with another session's.
    #[error("the form's CSRF token is missing or wrong")]
    CsrfMismatch,

    // ---- tokens presented to the provider
    /// A bearer access token that does not check (RFC 6750).
    #[error("invalid access token: {0}")]
    InvalidToken(JwtError),
    /// An `id_token_hint` that does not check.
    #[error("invalid `id_token_hint`: {0}")]
    IdTokenHintInvalid(JwtError),

    // ---- the provider itself
    /// Randomness, hashing or signing failed.
    #[error("internal failure: {0}")]
    Internal(&'static str),
    /// The store failed.
    #[error("store failure: {0}")]
    Store(String),

    // ---- the device authorization grant (RFC 8628)
    /// Nobody approved or denied the device's authorization yet: poll again.
    #[error("the authorization is pending: the user has not decided yet")]
    AuthorizationPending,
    /// The device polled sooner than its interval: it grows by 5 seconds.
    #[error("polling too fast: wait 5 more seconds between polls")]
    SlowDown,
    /// The device code's life is over: the device starts again.
    #[error("the device code expired")]
    DeviceCodeExpired,
    /// The user denied the device's authorization.
    #[error("the user denied the authorization")]
    DeviceAccessDenied,
    /// A device code this provider did not issue, issued to another client, or already used.
    #[error("the device code is invalid")]
    DeviceCodeInvalid,
    /// A user code that is malformed, unknown, expired or already decided.
    #[error("the user code is invalid or expired")]
    UserCodeInvalid,
    /// Too many device authorizations are pending: the device asks again later.
    #[error("too many device authorizations are pending; try again later")]
    DeviceTableFull,

    // ---- the directory
    /// A directory change that breaks a rule (a duplicate, an unknown court, two separated
    /// administrator roles, no such user).
    #[error("{0}")]
    Directory(String),
}

impl From<tianping_core::WireError> for IdpError {
    fn from(e: tianping_core::WireError) -> Self {
        Self::Store(format!("a stored record is damaged: {e}"))
    }
}

impl IdpError {
    /// The one OAuth/OIDC `error` code for this refusal.
    pub fn code(&self) -> ErrorCode {
        use IdpError as E;
        match self {
            E::MalformedForm
            | E::DuplicateParameter(_)
            | E::MissingParameter(_)
            | E::BadParameter { .. }
            | E::RedirectUriNotRegistered(_)
            | E::RedirectUriRequired
            | E::ConflictingCredentials
            | E::PkceRequired
            | E::PkceMethodNotSupported(_)
            | E::PkceVerifierMalformed
            | E::PasswordTooWeak(_)
            | E::PasswordReused
            | E::CsrfMismatch
            | E::IdTokenHintInvalid(_)
            | E::Directory(_) => ErrorCode::InvalidRequest,
            E::InvalidToken(_) => ErrorCode::InvalidToken,
            E::UnsupportedResponseType(_) => ErrorCode::UnsupportedResponseType,
            E::RequestObjectNotSupported => ErrorCode::RequestNotSupported,
            E::RequestUriNotSupported => ErrorCode::RequestUriNotSupported,
            E::OpenidScopeMissing | E::ScopeNotAllowed(_) => ErrorCode::InvalidScope,
            E::UnknownClient(_) | E::ClientAuthFailed => ErrorCode::InvalidClient,
            E::UnsupportedGrantType(_) => ErrorCode::UnsupportedGrantType,
            E::GrantNotAllowed(_) => ErrorCode::UnauthorizedClient,
            E::PkceVerifierMissing
            | E::PkceMismatch
            | E::PkceDowngrade
            | E::CodeInvalid
            | E::CodeReused
            | E::CodeMismatch
            | E::RefreshInvalid
            | E::RefreshReused
            | E::RefreshWrongClient
            | E::AccountInactive
            | E::DeviceCodeInvalid => ErrorCode::InvalidGrant,
            E::AuthorizationPending => ErrorCode::AuthorizationPending,
            E::SlowDown => ErrorCode::SlowDown,
            E::DeviceCodeExpired => ErrorCode::ExpiredToken,
            E::DeviceAccessDenied => ErrorCode::AccessDenied,
            E::UserCodeInvalid => ErrorCode::InvalidRequest,
            E::DeviceTableFull => ErrorCode::TemporarilyUnavailable,
            E::SignInFailed | E::AccountLocked { .. } | E::TotpWrong | E::TotpReplayed => {
                ErrorCode::AccessDenied
            }
            E::LoginRequired | E::SessionExpired => ErrorCode::LoginRequired,
            E::ConsentRequired => ErrorCode::ConsentRequired,
            E::InteractionRequired => ErrorCode::InteractionRequired,
            E::Internal(_) | E::Store(_) => ErrorCode::ServerError,
        }
    }

    /// The one HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            // A form posted without its token is forbidden, not malformed.
            IdpError::CsrfMismatch => 403,
            // Too many attempts (RFC 6585).
            IdpError::AccountLocked { .. } => 429,
            // RFC 8628 §3.5: the token endpoint's errors, a denial included, are 400
            IdpError::DeviceAccessDenied => 400,
            other => other.code().status(),
        }
    }
}

/// Shortens user input quoted in an error so a huge value cannot flood a log or a page.
pub(crate) fn quoted(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", s.get(..end).unwrap_or_default()),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_one_code_and_status() {
        let cases = [
            (
                IdpError::MissingParameter("response_type"),
                "invalid_request",
                400,
            ),
            (IdpError::UnknownClient("x".into()), "invalid_client", 401),
            (IdpError::ClientAuthFailed, "invalid_client", 401),
            (IdpError::CodeReused, "invalid_grant", 400),
            (IdpError::PkceDowngrade, "invalid_grant", 400),
            (
                IdpError::GrantNotAllowed("refresh_token"),
                "unauthorized_client",
                400,
            ),
            (
                IdpError::UnsupportedGrantType("password".into()),
                "unsupported_grant_type",
                400,
            ),
            (IdpError::OpenidScopeMissing, "invalid_scope", 400),
            (IdpError::LoginRequired, "login_required", 400),
            (IdpError::ConsentRequired, "consent_required", 400),
            (
                IdpError::RequestObjectNotSupported,
                "request_not_supported",
                400,
            ),
            (
                IdpError::RequestUriNotSupported,
                "request_uri_not_supported",
                400,
            ),
            (IdpError::SignInFailed, "access_denied", 403),
            (
                IdpError::AccountLocked { not_before: 1 },
                "access_denied",
                429,
            ),
            (IdpError::CsrfMismatch, "invalid_request", 403),
            (IdpError::Internal("rng"), "server_error", 500),
            (IdpError::AuthorizationPending, "authorization_pending", 400),
            (IdpError::SlowDown, "slow_down", 400),
            (IdpError::DeviceCodeExpired, "expired_token", 400),
            (IdpError::DeviceAccessDenied, "access_denied", 400),
            (IdpError::DeviceCodeInvalid, "invalid_grant", 400),
            (IdpError::UserCodeInvalid, "invalid_request", 400),
            (IdpError::DeviceTableFull, "temporarily_unavailable", 503),
        ];
        for (e, code, status) in cases {
            assert_eq!(e.code().as_str(), code, "{e}");
            assert_eq!(e.status(), status, "{e}");
        }
    }

    #[test]
    fn messages_are_lowercase_and_quote_input() {
        let e = IdpError::DuplicateParameter("state".into());
        assert_eq!(e.to_string(), "parameter `state` appears more than once");
        assert!(IdpError::CodeReused.to_string().starts_with("the "));
    }
}
