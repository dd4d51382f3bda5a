//! Tianping's zone gateway.
//!
//! Every request to a zone's services passes here: a session cookie, a bearer token or a client
//! certificate becomes one identity, the zone's policy decides on the normalized path, and an
//! allowed request is forwarded with a signed `Tianping-Assertion` in place of whatever identity
//! headers the client sent.
//!
//! The core is free of I/O: bytes and a time in, decisions and bytes out. With the `server`
//! feature, `Gateway` serves it: the `tianping_net::Handler` of the zone's TLS listener
//! (bearer token, session cookie or client certificate; the decision queued in the audit log
//! before anything is forwarded; forwarding over pooled HTTP/2 or HTTP/1.1 TLS; the OIDC
//! sign-in with `openidconnect` and the endpoints under [`RESERVED_PREFIX`]), which the binary's
//! `tianping gateway --zone Z` runs.
//!
//! - [`Limits`]: every limit, with the reason for its default;
//! - [`CookieSealer`]: the AEAD-sealed `__Host-` session cookie ([`Session`]), a key ring whose
//!   newest key seals and all open, idle and absolute timeouts, and [`Revocations`] fed by
//!   logouts;
//! - [`BearerVerifier`]: RFC 9068 access tokens of the zone's IdP against its [`Jwks`], cached
//!   until expiry, certificate-bound tokens only with their certificate;
//! - [`Identity`]: who is asking, from a session, a token or a client certificate;
//! - [`SubjectRates`]: per-subject rate limits for signed-in people;
//! - [`decide`]: the policy's decision made into forward, transfer, 403, sign-in or 401;
//! - [`Assertions`]: the `Tianping-Assertion` a service gets, cached per identity and service,
//!   after [`strip_client_headers`] took away whatever identity the client claimed.
//!
//! # Threat model and defaults
//!
//! - **A forged or altered cookie**: AES-256-GCM with the cookie name and zone as associated
//!   data; a cookie of another zone, another key or with one bit changed does not open.
//! - **A stolen cookie kept alive**: the absolute timeout counts from the sign-in, whatever the
//!   use; a back-channel logout ends it at once.
//! - **A token the IdP did not sign**: only ES256 and EdDSA with a `kid` of the IdP's JWKS; no
//!   key is taken from the token; `none`, `HS*` and `RS*` are refused before any key is looked
//!   at; a JWKS that cannot be fetched means no token verifies (fail closed).
//! - **A token replayed from elsewhere**: exact issuer, audience and zone; a certificate-bound
//!   token only over a connection presenting that certificate.
//!
//! ```
//! use tianping_core::{Acr, Clearance, Secret, UnixTime};
//! use tianping_gateway::{CookieKey, CookieSealer, Limits, Session};
//!
//! let (key, _bytes) = CookieKey::generate(1)?;
//! let sealer = CookieSealer::new(&"private".parse()?, vec![key], Limits::default())?;
//! let now = UnixTime::from_secs(1_800_000_000);
//! let session = Session {
//!     id: "0123456789abcdef".into(), sid: None, sub: "u-1001".parse()?, roles: vec![],
//!     court: None, clearance: Clearance::None, acr: Acr::Pwd, amr: vec![],
//!     auth_time: now.as_secs(), last_used: now.as_secs(),
//! };
//! let cookie = sealer.seal(&session)?;
//! assert_eq!(sealer.open(cookie.as_bytes(), now)?, session);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod assertion;
mod config;
mod cookie;
mod decide;
mod form;
mod identity;
#[doc(hidden)]
pub mod internal;
mod rate;
#[cfg(feature = "server")]
mod server;
mod token;

/// The path prefix a request forwarded to a component's control socket is put under:
/// `/gateway/v1/<service>/<the request's path>`, so the component tells a gatewayed user request
/// (with the user's `Tianping-Assertion`) from its own admin API.
pub const COMPONENT_PREFIX: &str = "/gateway/v1/";

pub use assertion::{AssertionError, Assertions, REQUEST_ID_HEADER, strip_client_headers};
pub use config::{Limits, UpstreamHttp};
pub use cookie::{
    CookieError, CookieKey, CookieSealer, Revocations, RevocationsFull, SESSION_COOKIE, Session,
    session_cookie,
};
pub use decide::{Action, GatewayDecision, RESERVED_PREFIX, decide};
pub use identity::{Credential, Identity, IdentityError};
pub use rate::{MAX_SUBJECTS, SubjectRates};
#[cfg(feature = "server")]
pub use server::{Gateway, GatewayParts, SIGNIN_COOKIE, ServeError, ServiceBinding};
pub use token::{
    AccessToken, BearerError, BearerVerifier, Jwks, JwksKey, JwksSchedule, MAX_JWKS_BYTES,
    MAX_JWKS_KEYS, VerifiedBearer, bearer_challenge,
};
