//! The one token profile components assert to each other (DESIGN §4): a compact JWS, ES256,
//! signed with the component's node key, its certificate chain in `x5c`, verified against the
//! zone's trust bundle. I/O-free: bytes and a time in, a verified token or a refusal out.
//!
//! ```text
//! header  {"alg":"ES256","typ":"user"|"delivery"|"node","x5c":[<base64 DER, leaf first>]}
//! payload {"aud","iat","exp","jti", user: "sub","roles",["court"],"acr","clearance",
//!          delivery: "flow","transfer","sha256"}
//! ```
//!
//! Refused: any `alg` but `ES256` (`none`, `HS256`, ...), a `typ` other than the one expected,
//! any other header or payload member (`kid`, `jku`, `jwk`, `crit`, ...), a signer that is not a
//! valid, unrevoked `node` certificate of the verifier's zone, a bad signature, another audience,
//! a lifetime over [`MAX_TOKEN_LIFETIME_SECS`], a token expired or issued in the future by more
//! than [`CLOCK_SKEW_SECS`], and a `jti` seen before.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom as _, SystemRandom};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tianping_core::{
    Acr, Algorithm, Clearance, Clock, CourtCode, Role, Signature, Signer, SubjectId, UnixTime,
    ZoneName,
};

use crate::CertError;
use crate::identity::{CertKind, CourtIdentity, identity_of};
use crate::replay::{ReplayCache, ReplayRefusal};
use crate::signer::{public_key_of, verify_signer};
use crate::verify::{MAX_CHAIN, TrustStore};

/// The header carrying a `user` token (the gateway asserting a signed-in user). Lowercase, as
/// HTTP/2 and `http::HeaderName` spell it; on HTTP/1.1 it reads `Tianping-Assertion`.
pub const USER_TOKEN_HEADER: &str = "tianping-assertion";
/// The header carrying a `delivery` token (a receiving node delivering a transfer).
pub const DELIVERY_TOKEN_HEADER: &str = "tianping-delivery";
/// The header carrying a `node` token, as `Bearer <token>` (a component calling another's
/// control socket).
pub const NODE_TOKEN_HEADER: &str = "authorization";
/// The longest a token may live, `exp - iat`, in seconds.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 60;
/// How far apart two components' clocks may be: a token is taken this long before its `iat` and
/// after its `exp`.
pub const CLOCK_SKEW_SECS: u64 = 5;
/// The longest token accepted, in bytes (a chain of a few certificates fits with room).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Which of the three kinds a token is: its header's `typ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// The gateway asserting a signed-in user to a service or to the exchange sender.
    User,
    /// A receiving node delivering a transfer to a service.
    Delivery,
    /// A component calling another's control socket.
    Node,
}

impl TokenKind {
    /// The `typ` value: `user`, `delivery` or `node`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::User => "user",
            TokenKind::Delivery => "delivery",
            TokenKind::Node => "node",
        }
    }

    /// The HTTP header that carries this kind of token (lowercase).
    pub fn header_name(self) -> &'static str {
        match self {
            TokenKind::User => USER_TOKEN_HEADER,
            TokenKind::Delivery => DELIVERY_TOKEN_HEADER,
            TokenKind::Node => NODE_TOKEN_HEADER,
        }
    }

    /// The header value for `token`: the token itself, or `Bearer <token>` for a node token.
    pub fn header_value(self, token: &str) -> String {
        match self {
            TokenKind::Node => format!("Bearer {token}"),
            TokenKind::User | TokenKind::Delivery => token.to_owned(),
        }
    }

    /// The token in a header value of this kind (the `Bearer` scheme is matched without regard
    /// to case, as RFC 9110 says).
    pub fn token_in_header(self, value: &[u8]) -> Result<&[u8], TokenError> {
        match self {
            TokenKind::Node => value
                .get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
                .and_then(|_| value.get(7..))
                .ok_or_else(|| TokenError::Malformed("not a `Bearer` credential".to_owned())),
            TokenKind::User | TokenKind::Delivery => Ok(value),
        }
    }
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signed-in user, as the gateway asserts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserClaims {
    /// The person.
    pub sub: SubjectId,
    /// The person's roles.
    pub roles: Vec<Role>,
    /// The person's court; none for a person outside the courts (a litigant, a lawyer, a
    /// member of the public, a partner), whose token then has no `court`.
    pub court: Option<CourtCode>,
    /// How strongly the person signed in.
    pub acr: Acr,
    /// The person's clearance.
    pub clearance: Clearance,
}

/// A transfer delivered by a receiving node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryClaims {
    /// The flow of the policy the transfer came by (`[a-z0-9.-]`, 1 to 64 bytes).
    pub flow: String,
    /// The transfer's id (printable ASCII without spaces, 1 to 128 bytes).
    pub transfer: String,
    /// SHA-256 of the delivered content.
    pub content_sha256: [u8; 32],
}

/// What a token asserts, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenClaims {
    /// A `user` token.
    User(UserClaims),
    /// A `delivery` token.
    Delivery(DeliveryClaims),
    /// A `node` token: the signer is the caller, nothing more is asserted.
    Node,
}

impl TokenClaims {
    /// The kind of token these claims make.
    pub fn kind(&self) -> TokenKind {
        match self {
            TokenClaims::User(_) => TokenKind::User,
            TokenClaims::Delivery(_) => TokenKind::Delivery,
            TokenClaims::Node => TokenKind::Node,
        }
    }
}

/// A token that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The node certificate that signed it (its zone is the verifier's).
    pub signer: CourtIdentity,
    /// The audience it was made for (the verifier's).
    pub audience: String,
    /// `iat`.
    pub issued_at: UnixTime,
    /// `exp`.
    pub expires_at: UnixTime,
    /// `jti`.
    pub jti: String,
    /// What it asserts.
    pub claims: TokenClaims,
}

/// Why a token was refused (each an HTTP 401), or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed token of this profile.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// An `alg` other than `ES256`.
    #[error("token algorithm `{0}` is refused (only ES256 is accepted)")]
    Algorithm(String),
    /// A `typ` other than the one expected.
    #[error("a `{found}` token where a `{expected}` token is expected")]
    WrongKind {
        /// The kind the verifier takes.
        expected: TokenKind,
        /// The token's `typ`.
        found: String,
    },
    /// The `x5c` chain is not a valid `node` certificate of the verifier's zone.
    #[error("the token's signer is refused: {0}")]
    Signer(CertError),
    /// The signature does not verify under the signer's key.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// Made for another audience.
    #[error("the token is for `{found}`, not `{expected}`")]
    WrongAudience {
        /// The verifier's audience.
        expected: String,
        /// The token's `aud`.
        found: String,
    },
    /// Past its `exp` (and the allowed skew).
    #[error("the token expired at {exp} (unix seconds; checked at {now})")]
    Expired {
        /// `exp`.
        exp: u64,
        /// The verification time.
        now: u64,
    },
    /// Issued after the verification time (beyond the allowed skew).
    #[error("the token is issued in the future, at {iat} (unix seconds; checked at {now})")]
    NotYetValid {
        /// `iat`.
        iat: u64,
        /// The verification time.
        now: u64,
    },
    /// `exp - iat` over [`MAX_TOKEN_LIFETIME_SECS`], or not positive.
    #[error("a token lifetime of {0} s (1 to 60 s are allowed)")]
    Lifetime(i128),
    /// Its `jti` was accepted before.
    #[error("the token was already used (replayed `jti`)")]
    Replayed,
    /// The replay cache is full of live tokens; refusing is safer than forgetting one.
    #[error("too many live tokens to remember; try again shortly")]
    ReplayCacheFull,
    /// The token could not be made (a bad signer, chain or claim).
    #[error("cannot make the token: {0}")]
    Sign(String),
}

impl From<ReplayRefusal> for TokenError {
    fn from(r: ReplayRefusal) -> Self {
        match r {
            ReplayRefusal::Replayed => TokenError::Replayed,
            ReplayRefusal::Full => TokenError::ReplayCacheFull,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    typ: String,
    x5c: Vec<String>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Payload {
    aud: String,
    iat: u64,
    exp: u64,
    jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<SubjectId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<Role>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    court: Option<CourtCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acr: Option<Acr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clearance: Option<Clearance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transfer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

fn malformed(what: impl Into<String>) -> TokenError {
    TokenError::Malformed(what.into())
}

fn check_text(value: &str, what: &str, max: usize, ok: fn(u8) -> bool) -> Result<(), String> {
    if value.is_empty() || value.len() > max || !value.bytes().all(ok) {
        return Err(format!("a bad `{what}` (1 to {max} bytes of its alphabet)"));
    }
    Ok(())
}

fn check_flow(flow: &str) -> Result<(), String> {
    check_text(flow, "flow", 64, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
    })
}

fn check_transfer(id: &str) -> Result<(), String> {
    check_text(id, "transfer", 128, |b| b.is_ascii_graphic())
}

fn check_jti(jti: &str) -> Result<(), String> {
    check_text(jti, "jti", 64, |b| {
        b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
    })
    .and_then(|()| {
        (jti.len() >= 16)
            .then_some(())
            .ok_or_else(|| "a `jti` shorter than 16 bytes".to_owned())
    })
}

fn check_audience(aud: &str) -> Result<(), String> {
    check_text(aud, "aud", 256, |b| b.is_ascii_graphic())
}

impl Payload {
    fn new(claims: &TokenClaims, aud: &str, iat: u64, exp: u64, jti: String) -> Self {
        let mut p = Payload {
            aud: aud.to_owned(),
            iat,
            exp,
            jti,
            ..Payload::default()
        };
        match claims {
            TokenClaims::User(u) => {
                p.sub = Some(u.sub.clone());
                p.roles = Some(u.roles.clone());
                p.court = u.court.clone();
                p.acr = Some(u.acr);
                p.clearance = Some(u.clearance);
            }
            TokenClaims::Delivery(d) => {
                p.flow = Some(d.flow.clone());
                p.transfer = Some(d.transfer.clone());
                p.sha256 = Some(hex::encode(d.content_sha256));
            }
            TokenClaims::Node => {}
        }
        p
    }

    /// The claims of `kind`, refusing a member of another kind and a missing one.
    fn claims(self, kind: TokenKind) -> Result<TokenClaims, TokenError> {
        let user_part = self.sub.is_some()
            || self.roles.is_some()
            || self.court.is_some()
            || self.acr.is_some()
            || self.clearance.is_some();
        let delivery_part = self.flow.is_some() || self.transfer.is_some() || self.sha256.is_some();
        let missing = |m: &str| malformed(format!("a `{kind}` token without `{m}`"));
        match kind {
            TokenKind::User if !delivery_part => Ok(TokenClaims::User(UserClaims {
                sub: self.sub.ok_or_else(|| missing("sub"))?,
                roles: self.roles.ok_or_else(|| missing("roles"))?,
                court: self.court,
                acr: self.acr.ok_or_else(|| missing("acr"))?,
                clearance: self.clearance.ok_or_else(|| missing("clearance"))?,
            })),
            TokenKind::Delivery if !user_part => {
                let flow = self.flow.ok_or_else(|| missing("flow"))?;
                let transfer = self.transfer.ok_or_else(|| missing("transfer"))?;
                let hash = self.sha256.ok_or_else(|| missing("sha256"))?;
                check_flow(&flow)
                    .and_then(|()| check_transfer(&transfer))
                    .map_err(malformed)?;
                let mut content_sha256 = [0u8; 32];
                hex::decode_to_slice(&hash, &mut content_sha256)
                    .ok()
                    .filter(|()| hash.bytes().all(|b| !b.is_ascii_uppercase()))
                    .ok_or_else(|| malformed("`sha256` is not 64 lowercase hex digits"))?;
                Ok(TokenClaims::Delivery(DeliveryClaims {
                    flow,
                    transfer,
                    content_sha256,
                }))
            }
            TokenKind::Node if !user_part && !delivery_part => Ok(TokenClaims::Node),
            _ => Err(malformed(format!(
                "a `{kind}` token carrying another kind's claims"
            ))),
        }
    }
}

fn b64_json<T: Serialize>(value: &T) -> Result<String, TokenError> {
    let json = serde_json::to_vec(value).map_err(|e| TokenError::Sign(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn unb64(part: &[u8], what: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(format!("the {what} is not base64url")))
}

fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, TokenError> {
    serde_json::from_slice(bytes).map_err(|e| {
        // serde's message names the field, never a type of ours; the input is not echoed.
        malformed(format!("the {what} ({e})"))
    })
}

/// Makes tokens with a component's node key and certificate chain.
#[derive(Debug, Clone)]
pub struct TokenSigner {
    signer: Arc<dyn Signer>,
    x5c: Vec<String>,
    rng: SystemRandom,
}

impl TokenSigner {
    /// A token signer over `signer` (an ES256 key) and its certificate chain (leaf first, a
    /// `node` certificate whose key is `signer`'s).
    pub fn new(signer: Arc<dyn Signer>, chain: &[CertificateDer<'_>]) -> Result<Self, TokenError> {
        let sign_err = |e: CertError| TokenError::Sign(e.to_string());
        let leaf = chain
            .first()
            .ok_or_else(|| TokenError::Sign("no certificate chain".to_owned()))?;
        if chain.len() > MAX_CHAIN {
            return Err(TokenError::Sign(format!(
                "a chain over {MAX_CHAIN} certificates"
            )));
        }
        if signer.algorithm() != Algorithm::Es256 {
            return Err(TokenError::Sign(format!(
                "the key is `{}`; tokens are signed with es256",
                signer.algorithm()
            )));
        }
        if public_key_of(leaf).map_err(sign_err)? != signer.public_key() {
            return Err(TokenError::Sign(
                "the key does not belong to the certificate".to_owned(),
            ));
        }
        let kind = identity_of(leaf).map_err(sign_err)?.kind;
        if kind != CertKind::Node {
            return Err(TokenError::Sign(format!(
                "a {kind} certificate; tokens are signed with a node certificate"
            )));
        }
        Ok(Self {
            signer,
            x5c: chain.iter().map(|c| STANDARD.encode(c)).collect(),
            rng: SystemRandom::new(),
        })
    }

    /// A token asserting `claims` to `audience`, issued at `now` for `lifetime` (1 to 60 s).
    pub fn sign(
        &self,
        claims: &TokenClaims,
        audience: &str,
        now: UnixTime,
        lifetime: Duration,
    ) -> Result<String, TokenError> {
        let secs = lifetime.as_secs();
        if secs == 0 || secs > MAX_TOKEN_LIFETIME_SECS {
            return Err(TokenError::Lifetime(i128::from(secs)));
        }
        check_audience(audience).map_err(TokenError::Sign)?;
        if let TokenClaims::Delivery(d) = claims {
            check_flow(&d.flow)
                .and_then(|()| check_transfer(&d.transfer))
                .map_err(TokenError::Sign)?;
        }
        let mut jti = [0u8; 16];
        self.rng
            .fill(&mut jti)
            .map_err(|_| TokenError::Sign("no randomness for a jti".to_owned()))?;
        let header = Header {
            alg: "ES256".to_owned(),
            typ: claims.kind().as_str().to_owned(),
            x5c: self.x5c.clone(),
        };
        let iat = now.as_secs();
        let payload = Payload::new(claims, audience, iat, iat + secs, hex::encode(jti));
        let input = format!("{}.{}", b64_json(&header)?, b64_json(&payload)?);
        let sig = self
            .signer
            .sign(input.as_bytes())
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_bytes())
        ))
    }
}

/// Verifies one kind of token for one audience in one zone, remembering `jti`s.
#[derive(Debug)]
pub struct TokenVerifier {
    trust: TrustStore,
    zone: ZoneName,
    audience: String,
    kind: TokenKind,
    replay: Mutex<ReplayCache>,
    /// Whether a token may come again within its life (see [`reusable`](Self::reusable)).
    reusable: bool,
}

impl TokenVerifier {
    /// A verifier of `kind` tokens made for `audience`, signed by a `node` certificate of
    /// `zone` under `trust` (the zone's trust bundle and CRLs), with a
    /// [`ReplayCache::DEFAULT_CAPACITY`] replay cache.
    pub fn new(
        trust: &TrustStore,
        zone: &ZoneName,
        audience: impl Into<String>,
        kind: TokenKind,
    ) -> Result<Self, CertError> {
        let audience = audience.into();
        check_audience(&audience).map_err(CertError::Invalid)?;
        Ok(Self {
            trust: trust.for_zone(zone)?,
            zone: zone.clone(),
            audience,
            kind,
            replay: Mutex::new(ReplayCache::default()),
            reusable: false,
        })
    }

    /// The same verifier taking a token again within its life: for a service reading the
    /// `user` assertions a gateway reuses for one session and service until near their expiry
    /// (short-lived and made for this audience alone), where a replay cache would refuse a
    /// person's second request. A receiver that acts once per token (the exchange sender) keeps
    /// the replay check.
    pub fn reusable(self) -> Self {
        Self {
            reusable: true,
            ..self
        }
    }

    /// The same verifier with a replay cache of `capacity` live tokens.
    pub fn with_replay_capacity(self, capacity: usize) -> Self {
        Self {
            replay: Mutex::new(ReplayCache::new(capacity)),
            ..self
        }
    }

    /// The kind of token it takes.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// Verifies `token` at the clock's time, and records its `jti`.
    pub fn verify(&self, token: &[u8], clock: &dyn Clock) -> Result<VerifiedToken, TokenError> {
        self.verify_at(token, clock.now())
    }

    /// Verifies `token` at `now`, and records its `jti`.
    pub fn verify_at(&self, token: &[u8], now: UnixTime) -> Result<VerifiedToken, TokenError> {
        let verified = self.check(token, now)?;
        if self.reusable {
            return Ok(verified);
        }
        let forget_after = verified
            .expires_at
            .as_secs()
            .saturating_add(CLOCK_SKEW_SECS);
        self.replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(&verified.jti, forget_after, now.as_secs())?;
        Ok(verified)
    }

    /// Everything but the replay check.
    fn check(&self, token: &[u8], now: UnixTime) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(malformed(format!(
                "{} bytes, more than the {MAX_TOKEN_BYTES} allowed",
                token.len()
            )));
        }
        let mut parts = token.split(|b| *b == b'.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("not three dot-separated parts"));
        };
        let header_json = unb64(h64, "header")?;
        let header: Header = from_json(&header_json, "header")?;
        if header.alg != "ES256" {
            return Err(TokenError::Algorithm(header.alg.chars().take(16).collect()));
        }
        if header.typ != self.kind.as_str() {
            return Err(TokenError::WrongKind {
                expected: self.kind,
                found: header.typ.chars().take(16).collect(),
            });
        }
        if header.x5c.is_empty() || header.x5c.len() > MAX_CHAIN {
            return Err(malformed(format!(
                "an `x5c` of 1 to {MAX_CHAIN} certificates is needed"
            )));
        }
        let chain = header
            .x5c
            .iter()
            .map(|c| STANDARD.decode(c).map(CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| malformed("an `x5c` entry is not base64"))?;
        let signer =
            verify_signer(&chain, &self.trust, &self.zone, now).map_err(TokenError::Signer)?;
        if signer.key.algorithm() != Algorithm::Es256 {
            return Err(TokenError::Algorithm(format!(
                "ES256 with a {} key",
                signer.key.algorithm()
            )));
        }
        let sig = Signature::new(Algorithm::Es256, unb64(s64, "signature")?)
            .map_err(|_| malformed("the signature is not 64 bytes"))?;
        let signed_len = h64.len() + 1 + p64.len();
        let signed = token
            .get(..signed_len)
            .ok_or_else(|| malformed("truncated"))?;
        signer
            .key
            .verify(signed, &sig)
            .map_err(|_| TokenError::BadSignature)?;

        let payload_json = unb64(p64, "payload")?;
        let payload: Payload = from_json(&payload_json, "payload")?;
        if payload.aud != self.audience {
            return Err(TokenError::WrongAudience {
                expected: self.audience.clone(),
                found: payload.aud.chars().take(64).collect(),
            });
        }
        let (iat, exp) = (payload.iat, payload.exp);
        let lifetime = i128::from(exp) - i128::from(iat);
        if lifetime <= 0 || lifetime > i128::from(MAX_TOKEN_LIFETIME_SECS) {
            return Err(TokenError::Lifetime(lifetime));
        }
        let at = now.as_secs();
        if iat > at.saturating_add(CLOCK_SKEW_SECS) {
            return Err(TokenError::NotYetValid { iat, now: at });
        }
        if at >= exp.saturating_add(CLOCK_SKEW_SECS) {
            return Err(TokenError::Expired { exp, now: at });
        }
        check_jti(&payload.jti).map_err(malformed)?;
        let jti = payload.jti.clone();
        let audience = payload.aud.clone();
        Ok(VerifiedToken {
            signer: signer.identity,
            audience,
            issued_at: UnixTime::from_secs(iat),
            expires_at: UnixTime::from_secs(exp),
            jti,
            claims: payload.claims(self.kind)?,
        })
    }
}
