//! Who calls a control socket: the peer process (uid and pid, from the kernel) and the credential
//! it presented, turned into a court identity by the owner's [`CallerVerifier`].
//!
//! The peer's uid is checked when the connection is accepted, before a byte is read. Then, per
//! request, unless the owner marked the path open (status, health): `Authorization: Bearer …` (a
//! person's token from `tianping login`, or a node token of another component of the zone) or
//! `Tianping-Assertion: …` (a user asserted by the zone's gateway) is handed to the verifier; no
//! credential, or one it refuses, is answered 401 before the handler runs. The handler finds the
//! [`Caller`] as a request extension and asks for a role with [`Caller::require`] (403 naming the
//! role). The credential headers are taken off the request, so a handler cannot log them by
//! mistake; the token stays readable in [`Caller::credential`].
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use thiserror::Error;
use tianping_certs::CourtIdentity;
use tianping_core::{Role, Secret, UnixTime};

use crate::body::{Body, ResponseBody, full};

/// The header a gateway asserts a signed-in user in (a `typ` `user` token).
pub const ASSERTION_HEADER: &str = "tianping-assertion";

/// The credential a caller presented.
#[derive(Clone)]
pub enum Credential {
    /// `Authorization: Bearer <token>`: a person's token or a node token.
    Bearer(Arc<Secret<String>>),
    /// `Tianping-Assertion: <token>`: a user asserted by the zone's gateway.
    Assertion(Arc<Secret<String>>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer([redacted])"),
            Self::Assertion(_) => f.write_str("Assertion([redacted])"),
        }
    }
}

impl Credential {
    /// The token as presented.
    pub fn token(&self) -> &str {
        match self {
            Self::Bearer(t) | Self::Assertion(t) => t.expose(),
        }
    }

    /// Reads the credential of a request: a `Bearer` authorization, else an assertion. A
    /// malformed `Authorization` (another scheme, not text) counts as a refused credential.
    pub fn from_headers(headers: &http::HeaderMap) -> Result<Option<Self>, CallerRefusal> {
        let text = |v: &HeaderValue| {
            v.to_str()
                .map(|s| Arc::new(Secret::new(s.trim().to_string())))
                .map_err(|_| CallerRefusal::Refused("credential is not text".into()))
        };
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            let t = text(v)?;
            let token = t
                .expose()
                .strip_prefix("Bearer ")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| CallerRefusal::Refused("authorization is not `Bearer`".into()))?;
            return Ok(Some(Self::Bearer(Arc::new(Secret::new(token.to_string())))));
        }
        headers
            .get(ASSERTION_HEADER)
            .map(|v| text(v).map(Self::Assertion))
            .transpose()
    }
}

/// Why a caller was refused; each maps to one status.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CallerRefusal {
    /// No credential on a path that needs one (401).
    #[error("no credential presented")]
    Missing,
    /// The verifier refused the credential (401), with its reason.
    #[error("credential refused: {0}")]
    Refused(String),
    /// The caller is known but lacks the role (403).
    #[error("role `{0}` required")]
    MissingRole(Role),
}

impl CallerRefusal {
    /// The one HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing | Self::Refused(_) => 401,
            Self::MissingRole(_) => 403,
        }
    }

    /// The answer: the status and the reason as text (no credential in it).
    pub fn response(&self) -> Response<ResponseBody> {
        let mut r = Response::new(full(self.to_string()));
        *r.status_mut() = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        if self.status() == 401 {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Turns a presented credential into a court identity, or refuses it. The owner of a control
/// socket plugs one in ([`crate::ControlOptions::verifier`]): the certs crate's node-token
/// verifier, a person-token verifier, one for the gateway's assertions, or one that tries each.
pub trait CallerVerifier: Send + Sync + 'static {
    /// Verifies `credential` at `now`.
    fn verify(
        &self,
        credential: &Credential,
        now: UnixTime,
    ) -> Result<CourtIdentity, CallerRefusal>;
}

/// The caller of one control-socket request, as a request extension
/// (`req.extensions().get::<Caller>()`).
#[derive(Clone, Debug)]
pub struct Caller {
    /// The peer process's user id (checked against the socket's allowed uids at accept).
    pub uid: u32,
    /// The peer process's id, when the kernel gives it.
    pub pid: Option<i32>,
    /// The credential presented, if any.
    pub credential: Option<Credential>,
    /// The court identity the verifier read from the credential; `None` on an open path called
    /// without one, or on a socket with no verifier.
    pub identity: Option<Arc<CourtIdentity>>,
}

impl Caller {
    /// The caller's identity if it holds `role`; otherwise the answer to send: 401 without an
    /// identity, 403 naming the role.
    #[expect(
        clippy::result_large_err,
        reason = "the refusal is the response, returned straight from the handler"
    )]
    pub fn require(&self, role: &Role) -> Result<&CourtIdentity, Response<ResponseBody>> {
        let Some(id) = self.identity.as_deref() else {
            return Err(CallerRefusal::Missing.response());
        };
        if id.roles.contains(role) {
            Ok(id)
        } else {
            Err(CallerRefusal::MissingRole(*role).response())
        }
    }
}

/// Who may call which path of a control socket: the verifier and the open paths.
#[derive(Clone)]
pub(crate) struct CallerCheck {
    pub(crate) verifier: Option<Arc<dyn CallerVerifier>>,
    pub(crate) open_paths: Arc<[String]>,
    pub(crate) clock: Arc<dyn tianping_core::Clock>,
}

impl CallerCheck {
    /// Reads and verifies the caller of `req` (whose path is normalized), puts the [`Caller`] in
    /// its extensions and takes the credential headers off; or the 401 to answer.
    #[expect(
        clippy::result_large_err,
        reason = "the refusal is the response, built once per refused request"
    )]
    pub(crate) fn admit(
        &self,
        req: &mut Request<Body>,
        uid: u32,
        pid: Option<i32>,
    ) -> Result<(), Response<ResponseBody>> {
        let credential = Credential::from_headers(req.headers());
        req.headers_mut().remove(header::AUTHORIZATION);
        req.headers_mut().remove(ASSERTION_HEADER);
        let open = self.open_paths.iter().any(|p| p == req.uri().path());
        let mut caller = Caller {
            uid,
            pid,
            credential: None,
            identity: None,
        };
        match (&self.verifier, credential) {
            (None, c) => caller.credential = c.ok().flatten(),
            (Some(_), Ok(None)) if open => {}
            (Some(_), Ok(None)) => return Err(CallerRefusal::Missing.response()),
            (Some(_), Err(e)) => return Err(e.response()),
            (Some(v), Ok(Some(c))) => {
                let id = v.verify(&c, self.clock.now()).map_err(|e| e.response())?;
                caller.identity = Some(Arc::new(id));
                caller.credential = Some(c);
            }
        }
        req.extensions_mut().insert(caller);
        Ok(())
    }
}

/// Helpers for other crates' tests.
pub mod testing {
    use std::collections::BTreeMap;

    use tianping_certs::CourtIdentity;
    use tianping_core::{UnixTime, ct_eq};

    use super::{CallerRefusal, CallerVerifier, Credential};

    /// A verifier holding a fixed table of tokens, for tests (and only tests: real tokens are
    /// signed and expire). Bearer tokens and assertions are separate tables; tokens are compared
    /// in constant time.
    #[derive(Clone, Debug, Default)]
    pub struct StaticVerifier {
        bearer: BTreeMap<String, CourtIdentity>,
        assertion: BTreeMap<String, CourtIdentity>,
    }

    impl StaticVerifier {
        /// An empty table: every credential refused.
        pub fn new() -> Self {
            Self::default()
        }

        /// Accepts `Authorization: Bearer <token>` as `identity`.
        pub fn bearer(mut self, token: &str, identity: CourtIdentity) -> Self {
            self.bearer.insert(token.to_string(), identity);
            self
        }

        /// Accepts `Tianping-Assertion: <token>` as `identity`.
        pub fn assertion(mut self, token: &str, identity: CourtIdentity) -> Self {
            self.assertion.insert(token.to_string(), identity);
            self
        }
    }

    impl CallerVerifier for StaticVerifier {
        fn verify(
            &self,
            credential: &Credential,
            _now: UnixTime,
        ) -> Result<CourtIdentity, CallerRefusal> {
            let table = match credential {
                Credential::Bearer(_) => &self.bearer,
                Credential::Assertion(_) => &self.assertion,
            };
            let given = credential.token().as_bytes();
            let mut found = None;
            for (token, id) in table {
                if ct_eq(token.as_bytes(), given) {
                    found = Some(id.clone());
                }
            }
            found.ok_or_else(|| CallerRefusal::Refused("unknown token".into()))
        }
    }
}
