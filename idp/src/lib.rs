//! The OpenID Connect provider of a zone (DESIGN §5): its protocol core, free of I/O.
//!
//! Every function here takes bytes and a [`Clock`](tianping_core::Clock) reading and returns a
//! decision and bytes; sockets, files and the sled store come later behind the `server` and
//! `store` features. The pieces:
//!
//! - one error enum, [`IdpError`], each variant mapped to exactly one OAuth/OIDC `error` code
//!   ([`ErrorCode`]) and one HTTP status;
//! - PKCE, `S256` only ([`CodeChallenge`], [`check_verifier`], [`verify_pkce`]);
//! - TOTP (RFC 6238) with a window of one step and each code accepted once ([`TotpConfig`]),
//!   its `otpauth://` URI and QR code as inline SVG ([`TotpEnrolment`]);
//! - passwords: argon2id, MLPS complexity, history, expiry, a dummy hash for unknown accounts
//!   ([`Passwords`], [`PasswordRecord`]);
//! - lockout after repeated password or TOTP failures, as a "not before" time
//!   ([`LockoutPolicy`], [`LockoutState`]);
//! - signed JWTs over [`tianping_core::Signer`]s (ES256 default, EdDSA), a JWKS with `kid`s and
//!   rotation ([`KeySet`]), incoming JWTs checked against the published keys only;
//! - access tokens (RFC 9068) and ID tokens with the identity claims ([`TokenIssuer`],
//!   [`Identity`]);
//! - clients with exact redirect-URI matching (RFC 8252 loopback ports for native clients
//!   registered so) ([`Client`]);
//! - the authorization request, errors shown as a page or redirected with `iss` (RFC 9207)
//!   ([`parse_authorization`], [`AuthorizeError`]), and the token request, credentials by
//!   `client_secret_basic`, `client_secret_post` or a client assertion ([`parse_token_request`]);
//! - client authentication by key (`private_key_jwt`: a JWKS or a JWKS URI, each assertion's
//!   `jti` used once) and by the zone node certificate (`tls_client_auth`), whose access tokens
//!   are bound to it (`cnf` `x5t#S256`) ([`verify_assertion`], [`verify_tls_client`],
//!   [`JwksCache`]);
//! - codes (single use, 60 s, reuse revokes) and refresh-token families (rotated, reuse revokes
//!   the family, bound to the client) as state machines ([`Grants`]);
//! - sessions rotated at sign-in and logout with idle and absolute timeouts, and CSRF tokens
//!   ([`Sessions`]); an account's sessions listed and ended by an administrator, each with the
//!   clients and refresh families it started ([`account_sessions`], [`logout_account`]);
//! - back-channel logout (OpenID Back-Channel Logout 1.0): logout tokens made and checked
//!   ([`make_logout_token`], [`verify_logout_token`]) and queued durably for the clients of an
//!   ended session that registered a URI, retried with bounded backoff ([`queue_logouts`],
//!   [`retry_delay`]); with the `server` feature, `Idp::deliver_logouts` sends them through a
//!   `LogoutSender` (`ZoneHttps`: HTTPS with the zone's trust, also the fetcher of clients'
//!   JWKS URIs), and `spawn_logout_delivery` runs the rounds when a logout is queued and when a
//!   retry is due;
//! - the directory of courts, users and clients, its rules checked before any write
//!   ([`Directory`], [`User`], [`Court`]);
//! - directory updates: signed, versioned records of the directory's changes, filtered by the
//!   directory flow's terms and checked by one validation function ([`check_update`],
//!   [`FlowTerms`], [`UpdateBody::sign`]);
//! - the storage trait ([`Store`]) with an in-memory implementation for tests ([`MemoryStore`])
//!   and, with the `store` feature, the sled one (`SledStore`), records on the wire codec;
//! - with the `server` feature, the HTTP endpoints (`Idp`): discovery, JWKS, token (the
//!   `authorization_code`, `refresh_token` and `client_credentials` grants), the sign-in of
//!   `/authorize`, UserInfo, revocation (RFC 7009), introspection (RFC 7662) and RP-initiated
//!   logout. PKCE `S256` is required of every client, confidential ones too: a deliberate
//!   departure from the OpenID Foundation's Basic OP plan, where it is optional, which discovery
//!   states (`tianping_pkce_required`);
//! - with the `server` feature, the interactive sign-in over HTML forms (`SignInParts`,
//!   `Idp::with_sign_in`): password, TOTP or its enrolment, required actions, lockout counting
//!   both factors, the least `acr` per role, `prompt`, `max_age`, registration in `internet`;
//! - with the `server` feature, certificate sign-in (`CertSignIn`, `Idp::with_cert_sign_in`):
//!   a presented client certificate verified against the zone's CA and CRL, mapped to a user by
//!   its subject id, `acr=cert` from a hardware-token certificate alone or a software one with
//!   TOTP, each refusal (revoked, expired, other zone, unmapped, stale CRL) a page and an audit
//!   event; devices registered to a user by their certificate ([`Device`], [`Devices`]), on
//!   which the person still gives their own factors;
//! - the device authorization grant (RFC 8628) as a state machine over a bounded table
//!   ([`DeviceGrants`]), and with the `server` feature `/device_authorization`, the verification
//!   page `/device` behind the provider's sign-in and the `device_code` grant
//!   (`Idp::with_device_grant`); with it the person-token verifier of the zone's control
//!   sockets (`PersonTokens`), which `tianping login` gets its token for;
//! - strict form decoding, duplicates refused ([`Params`]);
//! - randomness behind [`Random`] ([`OsRandom`]; [`danger::SeededRandom`] for tests).
//!
//! ```
//! use tianping_idp::{ErrorCode, IdpError};
//!
//! let e = IdpError::MissingParameter("response_type");
//! assert_eq!(e.code(), ErrorCode::InvalidRequest);
//! assert_eq!(e.status(), 400);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod account;
mod authorize;
mod backchannel;
#[cfg(feature = "server")]
mod cert_signin;
mod client;
mod client_auth;
mod device;
mod device_grant;
mod directory;
mod directory_update;
#[cfg(feature = "server")]
mod endpoints;
mod error;
mod form;
mod grants;
#[doc(hidden)]
pub mod internal;
mod jwt;
#[cfg(feature = "store")]
mod keys;
mod lockout;
mod logout_token;
mod metrics;
#[cfg(feature = "server")]
mod outbound;
#[cfg(feature = "server")]
mod pages;
mod password;
#[cfg(feature = "server")]
mod person_token;
mod pkce;
mod random;
#[cfg(feature = "store")]
mod records;
#[cfg(feature = "server")]
mod server;
mod session;
#[cfg(feature = "server")]
mod signin;
#[cfg(feature = "store")]
mod sled_store;
mod store;
mod token_request;
mod tokens;
mod totp;

pub use account::{
    AccountSession, EndedSession, account_sessions, end_session, logout_account,
    note_session_client, session_clients, session_handle, session_sid,
};
pub use authorize::{
    AuthorizationRequest, AuthorizeError, ClaimsRequest, ErrorRedirect, MAX_PARAM_BYTES, Prompt,
    RequestedClaim, UiLocale, parse_authorization, success_location,
};
#[cfg(feature = "server")]
pub use backchannel::LogoutSender;
pub use backchannel::{
    Attempt, BackchannelRegistration, PendingLogout, backchannel_registration, pending_logouts,
    queue_logouts, record_attempt, register_backchannel,
};
#[cfg(feature = "server")]
pub use cert_signin::{
    CertFailure, CertHolder, CertSignIn, ClientCertVerifier, SOFTWARE_KEY_AMR, TrustStoreVerifier,
    VerifiedCert,
};
pub use client::{Client, ClientAuthMethod, ClientCredentials, GrantType, STANDARD_SCOPES};
pub use client_auth::{
    ASSERTION_ALGS, AssertionPolicy, CLIENT_ASSERTION_TYPE, ClientAssertion, ClientAuthError,
    ClientKeys, FetchFuture, JwksCache, JwksFetch, MAX_JTI_BYTES, MAX_JWKS_BYTES, PresentedCert,
    X5T_S256, assertion_kid, assertion_subject, binding_holds, cnf_claim, parse_jwks,
    verify_assertion, verify_tls_client, x5t_s256,
};
#[doc(hidden)]
pub use client_auth::{FUZZ_CLIENT, fuzz_client_assertion};
pub use device::{Device, Devices};
pub use device_grant::{
    DEVICE_CODE_GRANT, Decision, DeviceAuthorization, DeviceGranted, DeviceGrants, DevicePolicy,
    PendingDevice, SLOW_DOWN_STEP, USER_CODE_ALPHABET, USER_CODE_LEN, normalize_user_code,
};
pub use directory::{
    Applied, ApplyError, Court, Directory, RequiredAction, TotpCredential, User, UserStatus,
    applied_key, apply_update, check_login, export_update,
};
pub use directory_update::{
    ATTRIBUTES, CREDENTIALS, Change, DirectoryUpdate, Expect, FlowTerms, MAX_UPDATE,
    MAX_UPDATE_CHAIN, Record, SignerCheck, UPDATE_CONTEXT, UPDATE_FORMAT, UpdateBody, UpdateKind,
    UpdateRefusal, UserRecord, check_update,
};
pub use error::{ErrorCode, IdpError};
pub use form::{MAX_FORM_BYTES, Params, encode as form_encode, encode_pairs as form_encode_pairs};
pub use grants::{CodeRecord, FamilyId, GrantPolicy, Grants, MAX_ROTATED, RefreshFamily};
pub use jwt::{
    JwtError, KeySet, MAX_JWT_BYTES, PublishedKey, VerifiedJwt, jwk, jws_alg, keys_from_jwks,
    kid_of, verify_with,
};
#[cfg(feature = "store")]
pub use keys::{KEYS_FILE, KeyDir, KeyError, KeyInfo};
pub use lockout::{Factor, LockoutPolicy, LockoutState};
pub use logout_token::{
    BACKCHANNEL_LOGOUT_EVENT, IAT_SKEW, LOGOUT_TOKEN_LIFE, LOGOUT_TOKEN_TYPE, LogoutClaims,
    MAX_ATTEMPTS, RETRY_CAP, RETRY_FIRST, logout_form, make_logout_token, retry_delay,
    verify_logout_token,
};
pub use metrics::{IdpMetrics, NoMetrics};
#[cfg(feature = "server")]
pub use outbound::{ZoneHttps, spawn_logout_delivery};
pub use password::{PasswordParams, PasswordPolicy, PasswordRecord, Passwords};
#[cfg(feature = "server")]
pub use person_token::{IssuerSource, PERSON_TOKEN_LIFE, PersonTokens, control_audience};
pub use pkce::{CodeChallenge, check_verifier, verify as verify_pkce};
pub use random::{OsRandom, Random};
#[cfg(feature = "server")]
pub use server::{DeviceGrantParts, DeviceTable, Idp, IdpParts};
pub use session::{
    SESSION_COOKIE, Session, SessionPolicy, Sessions, clear_session_cookie, session_cookie,
    session_key,
};
#[cfg(feature = "server")]
pub use signin::{LeastAcr, SignInParts};
#[cfg(feature = "store")]
pub use sled_store::SledStore;
pub use store::{Flushed, MemoryStore, Records, Store, TryUpdate, Update};
pub use token_request::{TokenGrant, TokenRequest, parse_token_request};
pub use tokens::{
    AccessClaims, IdTokenHint, Identity, IdentityClaims, IssuedAccessToken, TokenIssuer, at_hash,
};
pub use totp::{TotpAlgorithm, TotpConfig, TotpEnrolment, TotpSecret, qr_svg};

/// What weakens security and exists for tests only.
pub mod danger {
    pub use crate::random::SeededRandom;
}
