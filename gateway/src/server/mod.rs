//! The serving gateway (feature `server`): a [`Gateway`] is the [`tianping_net::Handler`] of the
//! zone's TLS listener. Each request's identity comes from a bearer token (verified against the
//! IdP's JWKS), the session cookie, or the verified client certificate, in that order; the
//! policy decides on the normalized path; the decision is queued in the audit log (group commit)
//! before anything is forwarded; an allowed request goes to its service with the client's
//! identity headers taken away and a `Tianping-Assertion` and `X-Request-Id` put in (to a
//! service bound to a component, over its control socket under [`crate::COMPONENT_PREFIX`], with
//! a fresh assertion each request, since a component's verifier takes each token once); a request
//! on a route bound to a flow is streamed into a transfer through the zone's exchange sender
//! (202 with its transfer id).
//!
//! The gateway's own endpoints live under [`crate::RESERVED_PREFIX`]:
//!
//! | path | what |
//! |---|---|
//! | `GET /.tianping/callback` | the OIDC redirect: `state`, RFC 9207 `iss`, code + PKCE redeemed, the ID token checked (nonce), the session cookie set |
//! | `GET /.tianping/me` | who is signed in (JSON with `Accept: application/json`), with a sign-out button |
//! | `POST /.tianping/logout` | ends the session (revoked, cookie removed) |
//! | `POST /.tianping/backchannel-logout` | the IdP's logout token ends sessions by `sid` or subject |
//! | `GET /.tianping/jwks.json` | the assertion key, for services that verify by JWKS |
//! | `GET /.tianping/approvals` | the releases held for approval that the signed-in person may approve (JSON), with the CSRF token a browser's approval carries |
//! | `GET /.tianping/transfers/{id}` | the transfer's state (held, spooled, sent, retained) and the receipts this zone's receiver keeps for it, to its submitter only (404 for anyone else, as for an unknown id); a page for a browser |
//! | `POST /.tianping/transfers/{id}/approve` | the person's approval, signed by the exchange sender (a browser's with its CSRF token) |
//!
//! The gateway is a client of its zone's IdP registered with `tls_client_auth` on its node
//! certificate (no secret to keep): see the binary's `tianping gateway` for the command an
//! operator runs.

mod component;
mod exchange;
mod idp;
mod request_event;
mod session;
mod transfers;
mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::{Value, json};
use tianping_audit::{AuditLog, Event};
use tianping_certs::TokenSigner;
use tianping_core::{Clock, PublicKey, UnixTime, ZoneName};
use tianping_net::{Body, BoxFuture, ConnInfo, Handler, HttpsClient, Registry, ResponseBody};
use tianping_policies::Policy;

use crate::assertion::{Assertions, REQUEST_ID_HEADER};
use crate::config::Limits;
use crate::cookie::{CookieKey, CookieSealer, Revocations, Session, session_cookie};
use crate::decide::{Action, RESERVED_PREFIX, decide};
use crate::identity::Identity;
use crate::rate::SubjectRates;
use crate::token::BearerError;
use idp::IdpLink;
use request_event::{RequestEvent, fill_actor};
use upstream::{Upstream, text};

pub use session::SIGNIN_COOKIE;

/// The longest life of a token on the control socket (as the IdP's `tianping login` tokens).
const PERSON_TOKEN_LIFE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Where a service of the policy is reached, as the binary read it from `fabric.toml`.
#[derive(Debug, Clone)]
pub enum ServiceBinding {
    /// An `https` URL, with the CA bundle (PEM) that verifies it.
    Url {
        /// `https://…`, perhaps with a path prefix.
        url: String,
        /// The CA certificates.
        ca_pem: Vec<u8>,
    },
    /// A delivery folder: reached through the exchange, never through the gateway (503).
    Folder(PathBuf),
    /// A component's control socket (`directory-authority`, `audit-store`, …): forwarded over
    /// the socket, the path under [`crate::COMPONENT_PREFIX`]`<service>/`.
    Component {
        /// The component's name.
        component: String,
        /// Its control socket, `run/<zone>-<component>.sock`.
        socket: PathBuf,
    },
}

/// Everything a [`Gateway`] is made of.
pub struct GatewayParts {
    /// The zone.
    pub zone: ZoneName,
    /// The zone's policy copy (checked).
    pub policy: Policy,
    /// The bindings of the policy's services of this zone.
    pub services: BTreeMap<String, ServiceBinding>,
    /// The gateway's public origin (`https://gw.<zone>.<domain>[:port]`), its redirect URI's.
    pub public_url: String,
    /// The IdP's issuer URL.
    pub issuer: String,
    /// The gateway's `client_id` at the IdP.
    pub client_id: String,
    /// The audience of the IdP's access tokens the gateway accepts (`tianping`).
    pub token_audience: String,
    /// HTTPS to the IdP with the zone's trust and the gateway's node certificate.
    pub idp_http: HttpsClient,
    /// The cookie keys (the highest id seals).
    pub cookie_keys: Vec<CookieKey>,
    /// Signs the `Tianping-Assertion`s (the node key and chain).
    pub assertion_signer: TokenSigner,
    /// The node key's public half and its chain (DER, leaf first), for `/.tianping/jwks.json`.
    pub assertion_key: (PublicKey, Vec<Vec<u8>>),
    /// The node certificate and key (PEM), presented to services that ask for one.
    pub node_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The gateway's audit log.
    pub audit: Arc<AuditLog>,
    /// Every limit.
    pub limits: Limits,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Registry>,
    /// The control socket of the zone's exchange sender, which exchange routes submit to.
    pub exchange_sender: Option<PathBuf>,
    /// The control socket of the zone's exchange receiver, which keeps the receipts
    /// `/.tianping/transfers/{id}` shows.
    pub exchange_receiver: Option<PathBuf>,
    /// `sync` mode: every request's decision durable in the audit log before it is acted on
    /// (each request waits for a commit), instead of queued and committed in groups within the
    /// log's window (20 ms; a crash loses at most that window). Off by default.
    pub audit_sync: bool,
}

/// Why a gateway could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The cookie keys.
    #[error(transparent)]
    Cookie(#[from] crate::cookie::CookieError),
    /// A service binding.
    #[error("service `{service}`: {reason}")]
    Service {
        /// The service.
        service: String,
        /// What is wrong.
        reason: String,
    },
}

/// The `X-Forwarded-*` headers the gateway sets for a service bound to a URL.
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");

enum Target {
    Url(Upstream),
    Component(component::ComponentTarget),
    Unavailable(String),
}

struct Inner {
    zone: ZoneName,
    policy: arc_swap::ArcSwap<Policy>,
    targets: HashMap<String, Target>,
    public_url: String,
    redirect_uri: String,
    idp: IdpLink,
    cookies: arc_swap::ArcSwap<CookieSealer>,
    revocations: Mutex<Revocations>,
    assertions: Assertions,
    jwks: String,
    audit: Arc<AuditLog>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    rates: SubjectRates,
    pending: Mutex<HashMap<String, session::Pending>>,
    rng: SystemRandom,
    /// Request ids: this process's random prefix and a counter.
    request_prefix: [u8; 8],
    request_seq: std::sync::atomic::AtomicU64,
    metrics: Arc<Registry>,
    /// `tianping_gateway_decisions_total`, registered once: a lookup by name and labels on
    /// every request would cost a lock and a few allocations.
    decisions: Decisions,
    exchange_sender: Option<PathBuf>,
    exchange_receiver: Option<PathBuf>,
    audit_sync: bool,
}

/// The decision counters, by outcome.
struct Decisions {
    allow: Option<tianping_net::Counter>,
    deny: Option<tianping_net::Counter>,
}

impl Decisions {
    fn new(metrics: &Registry) -> Self {
        let counter = |outcome| {
            metrics
                .counter(
                    "tianping_gateway_decisions_total",
                    "Decisions on requests, by outcome.",
                    &[("outcome", outcome)],
                )
                .ok()
        };
        Self {
            allow: counter("allow"),
            deny: counter("deny"),
        }
    }

    fn count(&self, allowed: bool) {
        let c = if allowed { &self.allow } else { &self.deny };
        if let Some(c) = c {
            c.inc();
        }
    }
}

/// The zone gateway, a [`Handler`] for `tianping_net::serve_tls`. Cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("zone", &self.0.zone)
            .field("public_url", &self.0.public_url)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway of `parts`.
    pub fn new(parts: GatewayParts) -> Result<Self, ServeError> {
        let mut targets = HashMap::new();
        for (name, b) in parts.services {
            let t = match b {
                ServiceBinding::Url { url, ca_pem } => {
                    let client = parts
                        .node_identity
                        .as_ref()
                        .map(|(c, k)| (c.as_slice(), k.as_slice()));
                    Target::Url(
                        Upstream::new(
                            &url,
                            &ca_pem,
                            client,
                            parts.limits.upstream_http,
                            parts.limits.upstream_idle_connections,
                        )
                        .map_err(|e| ServeError::Service {
                            service: name.clone(),
                            reason: e.to_string(),
                        })?,
                    )
                }
                ServiceBinding::Folder(p) => Target::Unavailable(format!(
                    "service `{name}` is bound to the delivery folder `{}`: it is reached through \
                     the exchange, not forwarded by the gateway",
                    p.display()
                )),
                ServiceBinding::Component { socket, .. } => {
                    Target::Component(component::ComponentTarget {
                        service: name.clone(),
                        socket,
                    })
                }
            };
            targets.insert(name, t);
        }
        let cookies = CookieSealer::new(&parts.zone, parts.cookie_keys, parts.limits.clone())?;
        let idp = IdpLink::new(
            parts.issuer,
            parts.client_id,
            parts.zone.clone(),
            parts.token_audience,
            parts.idp_http,
            parts.limits.clone(),
        );
        let jwks = assertion_jwks(&parts.assertion_key.0, &parts.assertion_key.1).to_string();
        let public_url = parts.public_url.trim_end_matches('/').to_owned();
        let rng = SystemRandom::new();
        let mut request_prefix = [0u8; 8];
        if rng.fill(&mut request_prefix).is_err() {
            tracing::error!("the system's random number generator failed");
            request_prefix = parts.clock.now().as_secs().to_be_bytes();
        }
        Ok(Self(Arc::new(Inner {
            redirect_uri: format!("{public_url}/.tianping/callback"),
            public_url,
            zone: parts.zone,
            policy: arc_swap::ArcSwap::from_pointee(parts.policy),
            targets,
            idp,
            revocations: Mutex::new(Revocations::new(&parts.limits)),
            cookies: arc_swap::ArcSwap::from_pointee(cookies),
            assertions: Assertions::new(parts.assertion_signer, parts.limits.clone()),
            jwks,
            audit: parts.audit,
            rates: SubjectRates::new(&parts.limits),
            limits: parts.limits,
            clock: parts.clock,
            pending: Mutex::new(HashMap::new()),
            rng,
            request_prefix,
            request_seq: std::sync::atomic::AtomicU64::new(0),
            decisions: Decisions::new(&parts.metrics),
            metrics: parts.metrics,
            exchange_sender: parts.exchange_sender,
            exchange_receiver: parts.exchange_receiver,
            audit_sync: parts.audit_sync,
        })))
    }

    /// Fetches the IdP's keys now if they are not fetched yet (or are stale), so that
    /// [`control_caller`](Self::control_caller) can check tokens without waiting on the IdP.
    pub async fn fetch_idp_keys(&self) -> Result<(), crate::BearerError> {
        self.0.idp.ensure_keys(self.0.now()).await
    }

    /// The person a token presented on the gateway's control socket names: an access token of
    /// the zone's IdP for the zone's control sockets (audience `tianping-control:<zone>`, the
    /// one `tianping login` keeps), living at most 15 minutes, checked against the IdP's keys the
    /// gateway holds (no fetch: this runs on the socket's accept path; an unknown key is
    /// refused). Unlike the IdP's own socket, the gateway cannot see a logout's revocation or a
    /// disabled account, so a token stays good here until it expires (15 minutes at most).
    pub fn control_caller(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<tianping_certs::CourtIdentity, String> {
        let g = &self.0;
        let (keys, _) = g.idp.keys();
        let verifier = crate::BearerVerifier::new(
            g.idp.issuer.clone(),
            format!("tianping-control:{}", g.zone),
            g.zone.clone(),
            keys.jwks().clone(),
            g.limits.clone(),
        );
        let t = verifier
            .verify(token.as_bytes(), None, now)
            .map_err(|e| e.to_string())?;
        let longest = PERSON_TOKEN_LIFE.saturating_add(g.limits.clock_skew);
        if t.expires_at > now.saturating_add(longest) {
            return Err("a control token lives at most 15 minutes".into());
        }
        Ok(tianping_certs::CourtIdentity {
            subject: Some(t.sub.clone()),
            court: t.court.clone(),
            roles: t.roles.clone(),
            zone: g.zone.clone(),
            kind: tianping_certs::CertKind::Client,
            name: t.sub.to_string(),
            fingerprint: [0; 32],
            hardware: false,
        })
    }

    /// The redirect URI the gateway's IdP client must be registered with.
    pub fn redirect_uri(&self) -> &str {
        &self.0.redirect_uri
    }

    /// The back-channel logout URI the gateway's IdP client is registered with.
    pub fn backchannel_logout_uri(&self) -> String {
        format!("{}/.tianping/backchannel-logout", self.0.public_url)
    }

    /// The hash of the policy in force.
    pub fn policy_hash(&self) -> tianping_core::PolicyHash {
        self.0.policy.load().hash()
    }

    /// Replaces the cookie keys: the one with the highest id seals from now on, all open (so a
    /// key added is rotated in without signing anyone out, and a key left out ends the sessions
    /// it sealed). The keys are checked first; on error the old ones stay.
    pub fn reload_cookie_keys(&self, keys: Vec<CookieKey>) -> Result<Option<u32>, ServeError> {
        let g = &self.0;
        let sealer = CookieSealer::new(&g.zone, keys, g.limits.clone())?;
        let sealing = sealer.sealing_key();
        g.cookies.store(Arc::new(sealer));
        Ok(sealing)
    }

    /// Replaces the policy in force with the one `source` (named `file` in diagnostics) holds,
    /// if it passes the policy check; requests already decided keep their decision, the next
    /// ones are decided by the new policy. Either way the attempt is audited (`policy.reload`,
    /// durable before this returns). The new hash, or the check's rendered diagnostics (the old
    /// policy stays).
    pub async fn reload_policy(
        &self,
        file: &str,
        source: &str,
    ) -> Result<tianping_core::PolicyHash, String> {
        let g = &self.0;
        let now = g.now();
        let old = g.policy.load().hash();
        let checked = tianping_policies::check(file, source);
        let rendered = checked.render();
        let mut e = Event::new(now, "policy.reload");
        e.zone = g.zone.to_string();
        e.component = "gateway".into();
        e.object = file.chars().take(256).collect();
        e.attributes.insert("previous".into(), old.to_string());
        let result = match checked.into_policy() {
            Some(p) => {
                let hash = p.hash();
                g.policy.store(Arc::new(p));
                e.outcome = "ok".into();
                e.policy_hash = Some(hash);
                Ok(hash)
            }
            None => {
                e.outcome = "refused".into();
                e.policy_hash = Some(old);
                e.reason = rendered.chars().take(1024).collect();
                Err(rendered)
            }
        };
        match g.audit.append_prompt(&e) {
            Ok(q) => {
                if let Err(err) = q.durable().await {
                    tracing::error!("audit of a policy reload: {err}");
                }
            }
            Err(err) => tracing::error!("audit of a policy reload: {err}"),
        }
        result
    }
}

/// A request's id: 32 lower-case hex digits.
#[derive(Clone, Copy)]
struct RequestId([u8; 32]);

impl RequestId {
    /// The id of request number `n` of the process whose prefix is `prefix`.
    fn new(prefix: &[u8; 8], n: u64) -> Self {
        let mut bytes = [0u8; 16];
        let (p, count) = bytes.split_at_mut(8);
        p.copy_from_slice(prefix);
        count.copy_from_slice(&n.to_be_bytes());
        let mut id = Self([0; 32]);
        // 16 bytes fill the 32 digits exactly
        let _ = hex::encode_to_slice(bytes, &mut id.0);
        id
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Handler for Gateway {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let g = Arc::clone(&self.0);
        Box::pin(async move {
            let request_id = g.request_id();
            let request_id = request_id.as_str();
            let mut resp = g.handle(req, request_id).await;
            if let Some(v) = crate::assertion::never_indexed(request_id) {
                resp.headers_mut()
                    .insert(http::HeaderName::from_static(REQUEST_ID_HEADER), v);
            }
            resp
        })
    }
}

/// Who asked, as the request presented it.
struct Asker {
    who: Option<Arc<Identity>>,
    /// A bearer token that was refused, with why.
    refused: Option<BearerError>,
    /// A session cookie that did not open (the reason goes to the audit log).
    cookie_refused: Option<String>,
    /// The session, to reseal when due.
    session: Option<Session>,
    browser: bool,
}

/// The reason a request's event records: the decision's, and why a credential was refused.
struct DecisionReason<'a> {
    decision: &'a tianping_policies::Reason,
    asker: &'a Asker,
}

impl std::fmt::Display for DecisionReason<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.decision)?;
        if let Some(e) = &self.asker.refused {
            write!(f, "; bearer token refused: {e}")
        } else if let Some(e) = &self.asker.cookie_refused {
            write!(f, "; session cookie refused: {e}")
        } else {
            Ok(())
        }
    }
}

pub(crate) fn answer(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<ResponseBody> {
    let mut r = Response::new(text(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A page of the gateway's own (200, HTML): its content security policy allows no script, no
/// style from elsewhere, and forms posting back to the gateway alone.
pub(crate) fn html_page(page: String) -> Response<ResponseBody> {
    let mut r = answer(StatusCode::OK, "text/html; charset=utf-8", page);
    r.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static(PAGE_CSP),
    );
    r
}

/// The CSP of the gateway's own pages: no script, no style from elsewhere, forms to the
/// gateway alone, never in a frame.
pub(crate) const PAGE_CSP: &str = "default-src 'none'; form-action 'self'; frame-ancestors 'none'";

pub(crate) fn plain(status: StatusCode, body: impl Into<String>) -> Response<ResponseBody> {
    let mut b = body.into();
    if !b.ends_with('\n') {
        b.push('\n');
    }
    answer(status, "text/plain; charset=utf-8", b)
}

/// An address as a header value, written on the stack (the header copies it once).
fn ip_header(ip: std::net::IpAddr) -> Option<HeaderValue> {
    use std::io::Write as _;
    // the longest IPv6 text form is 45 characters
    let mut buf = [0u8; 64];
    let left = {
        let mut w = &mut buf[..];
        write!(w, "{ip}").ok()?;
        w.len()
    };
    HeaderValue::from_bytes(buf.get(..buf.len() - left)?).ok()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Inner {
    fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// An audit event `action` of this gateway, for request `request_id`.
    fn event(&self, now: UnixTime, action: &str, request_id: &str) -> Event {
        let mut e = Event::new(now, action);
        e.zone = self.zone.to_string();
        e.component = "gateway".into();
        e.request_id = request_id.into();
        e
    }

    /// `n` random bytes in hex; `None` if the system's generator failed.
    fn try_random_hex(&self, n: usize) -> Option<String> {
        let mut b = vec![0u8; n];
        self.rng.fill(&mut b).ok()?;
        Some(hex::encode(b))
    }

    /// A request id, unique: this process's random prefix and the request's number, in 32 hex
    /// digits. Not a secret (it is shown to the client and written in the log), so no system
    /// call for randomness on every request, and no allocation either.
    fn request_id(&self) -> RequestId {
        let n = self
            .request_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RequestId::new(&self.request_prefix, n)
    }

    fn count(&self, name: &str, help: &str, labels: &[(&str, &str)]) {
        if let Ok(c) = self.metrics.counter(name, help, labels) {
            c.inc();
        }
    }

    async fn handle(&self, req: Request<Body>, request_id: &str) -> Response<ResponseBody> {
        if let Some(own) = req.uri().path().strip_prefix(RESERVED_PREFIX) {
            let own = own.to_owned();
            // boxed, as the other rare paths below: the request path's future stays small (it
            // is moved onto the heap for every request, and the sign-in's would dominate it)
            let r = Box::pin(self.own(req, &own, request_id)).await;
            self.count(
                "tianping_gateway_own_requests_total",
                "Requests to the gateway's own endpoints, by status.",
                &[("status", r.status().as_str())],
            );
            return r;
        }
        let now = self.now();
        let asker = self.asker(&req, now).await;
        if let Some(who) = &asker.who
            && !self.rates.allow(&who.sub, now)
        {
            let _ = self.audit_request(&req, None, &asker, "deny", &"rate limit", request_id, now);
            let mut r = plain(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        let policy = self.policy.load_full();
        let d = decide(
            &policy,
            self.zone.as_str(),
            asker.who.as_deref(),
            asker.browser,
            req.method().as_str(),
            req.uri().path(),
            now,
        );
        let allowed = matches!(d.action, Action::Forward(_) | Action::Transfer(_));
        let queued = self.audit_request(
            &req,
            Some((&d.decision, d.decision.rule.unwrap_or_default())),
            &asker,
            if allowed { "allow" } else { "deny" },
            &DecisionReason {
                decision: &d.decision.reason,
                asker: &asker,
            },
            request_id,
            now,
        );
        self.decisions.count(allowed);
        let Some(queued) = queued else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the audit log refuses appends; nothing is served (request {request_id})"),
            );
        };
        // `sync` mode: the decision durable before it is acted on
        if self.audit_sync
            && let Err(e) = queued.durable().await
        {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the audit log failed: {e} (request {request_id})"),
            );
        }
        match d.action {
            Action::Forward(service) => {
                let Some(who) = asker.who else {
                    return plain(
                        StatusCode::FORBIDDEN,
                        format!("forbidden (request {request_id})"),
                    );
                };
                let mut r = self.forward(req, &who, service, request_id, now).await;
                if let Some(s) = &asker.session
                    && self.cookies.load().needs_refresh(s, now)
                {
                    let mut s = s.clone();
                    s.last_used = now.as_secs();
                    let cookies = self.cookies.load();
                    if let Ok(sealed) = cookies.seal(&s)
                        && let Ok(v) = HeaderValue::from_str(&cookies.set_cookie(&sealed))
                    {
                        r.headers_mut().append(header::SET_COOKIE, v);
                    }
                }
                r
            }
            Action::Transfer(flow) => {
                let Some(who) = asker.who else {
                    return plain(
                        StatusCode::FORBIDDEN,
                        format!("forbidden (request {request_id})"),
                    );
                };
                let flow = flow.to_owned();
                Box::pin(exchange::submit(
                    self, req, &who, &flow, &policy, request_id, now,
                ))
                .await
            }
            Action::Forbidden => plain(
                StatusCode::FORBIDDEN,
                format!("forbidden: {} (request {request_id})", d.decision.reason),
            ),
            Action::SignIn { acr } => {
                let return_to = if req.method() == Method::GET {
                    req.uri()
                        .path_and_query()
                        .map_or("/", http::uri::PathAndQuery::as_str)
                        .to_owned()
                } else {
                    "/".to_owned()
                };
                let peer = req.extensions().get::<ConnInfo>().map(|c| c.peer.ip());
                Box::pin(session::sign_in(
                    self, peer, &return_to, acr, request_id, now,
                ))
                .await
            }
            Action::Unauthorized { challenge } => {
                let challenge = match &asker.refused {
                    Some(e) => e.www_authenticate(),
                    None => challenge,
                };
                let mut r = plain(
                    StatusCode::UNAUTHORIZED,
                    format!("not authenticated (request {request_id})"),
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                r
            }
        }
    }

    /// Who is asking: a bearer token, else the session cookie, else the client certificate.
    async fn asker(&self, req: &Request<Body>, now: UnixTime) -> Asker {
        let conn = req.extensions().get::<ConnInfo>();
        let cert_fp: Option<[u8; 32]> = conn
            .and_then(|c| c.client_cert.as_deref())
            .and_then(|der| digest(&SHA256, der.as_ref()).as_ref().try_into().ok());
        let mut a = Asker {
            who: None,
            refused: None,
            cookie_refused: None,
            session: None,
            browser: false,
        };
        if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| {
                    let (scheme, t) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then_some(t.trim())
                })
                .filter(|t| !t.is_empty());
            match token {
                None => a.refused = Some(BearerError::Malformed("not a Bearer authorization")),
                Some(t) => match self
                    .idp
                    .verify_bearer(t.as_bytes(), cert_fp.as_ref(), now)
                    .await
                {
                    Ok(v) => a.who = Some(v.identity),
                    Err(e) => a.refused = Some(e),
                },
            }
            return a;
        }
        let cookie_header = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .find_map(|v| session_cookie(v.as_bytes(), self.limits.max_cookie_header_bytes));
        if let Some(value) = cookie_header {
            a.browser = true;
            let revocations = self
                .revocations
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match self.cookies.load().open_checked(value, now, &revocations) {
                Ok(s) => {
                    a.who = Some(Arc::new(Identity::from_session(&s)));
                    a.session = Some(s);
                    return a;
                }
                Err(e) => a.cookie_refused = Some(e.to_string()),
            }
        }
        if let Some(id) = conn.and_then(|c| c.identity.as_deref())
            && let Ok(who) = Identity::from_certificate(id, &self.zone)
        {
            a.who = Some(Arc::new(who));
            a.browser = false;
            return a;
        }
        let html = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
        a.browser = a.browser || html;
        a
    }

    /// Queues the request's decision in the audit log (group commit; in `sync` mode a commit
    /// that starts at once); `None` if the log refused.
    #[expect(clippy::too_many_arguments, reason = "the event's parts, each named")]
    fn audit_request(
        &self,
        req: &Request<Body>,
        decision: Option<(&tianping_policies::Decision<'_>, &str)>,
        asker: &Asker,
        outcome: &str,
        reason: &dyn std::fmt::Display,
        request_id: &str,
        now: UnixTime,
    ) -> Option<tianping_audit::Queued> {
        let event = RequestEvent {
            time: now,
            zone: self.zone.as_str(),
            outcome,
            reason,
            request_id,
            method: req.method().as_str(),
            path: req.uri().path(),
            policy_hash: decision.map_or_else(|| self.policy.load().hash(), |(d, _)| d.policy),
            source: req.extensions().get::<ConnInfo>().map(|c| c.peer),
            rule: decision.map(|(_, rule)| rule),
            who: asker.who.as_deref(),
        };
        // `sync` mode: the commit starts as soon as no other runs, not after the queue's window
        // (the request waits for it); otherwise it is queued for the next group commit
        let appended = event.with(|e| {
            if self.audit_sync {
                self.audit.append_prompt(e)
            } else {
                self.audit.append_queued(e)
            }
        });
        match appended {
            Ok(q) => Some(q),
            Err(err) => {
                tracing::error!("audit append refused: {err}");
                None
            }
        }
    }

    async fn forward(
        &self,
        req: Request<Body>,
        who: &Identity,
        service: &str,
        request_id: &str,
        now: UnixTime,
    ) -> Response<ResponseBody> {
        let target = match self.targets.get(service) {
            Some(Target::Url(u)) => u,
            Some(Target::Component(c)) => {
                let (mut parts, body) = req.into_parts();
                if let Err(e) =
                    self.assertions
                        .prepare_fresh(&mut parts.headers, who, service, request_id, now)
                {
                    return plain(
                        StatusCode::FORBIDDEN,
                        format!("no assertion can be made: {e} (request {request_id})"),
                    );
                }
                parts.extensions = http::Extensions::new();
                return match Box::pin(c.send(Request::from_parts(parts, body))).await {
                    Ok(r) => r,
                    Err((status, why)) => {
                        tracing::warn!("forwarding to `{service}`: {why}");
                        plain(
                            status,
                            format!("service `{service}`: {why} (request {request_id})"),
                        )
                    }
                };
            }
            Some(Target::Unavailable(why)) => {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{why} (request {request_id})"),
                );
            }
            None => {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "service `{service}` has no binding in `fabric.toml` (request {request_id})"
                    ),
                );
            }
        };
        let (mut parts, body) = req.into_parts();
        // room for the five headers added here and in `prepare`, made once
        parts.headers.reserve(5);
        if let Err(e) = self
            .assertions
            .prepare(&mut parts.headers, who, service, request_id, now)
        {
            return plain(
                StatusCode::FORBIDDEN,
                format!("no assertion can be made: {e} (request {request_id})"),
            );
        }
        // where the request came from, as the gateway saw it (never as the client claims)
        let peer = parts.extensions.get::<ConnInfo>().map(|c| c.peer.ip());
        let host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        // the client's own forwarding headers went with `prepare`
        if let Some(ip) = peer.and_then(ip_header) {
            parts.headers.insert(X_FORWARDED_FOR, ip);
        }
        if let Some(h) = host {
            parts.headers.insert(X_FORWARDED_HOST, h);
        }
        parts
            .headers
            .insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        parts.extensions = http::Extensions::new();
        match target.send(Request::from_parts(parts, body)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("forwarding to `{service}`: {e}");
                plain(
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY),
                    format!("service `{service}`: {e} (request {request_id})"),
                )
            }
        }
    }

    async fn own(
        &self,
        req: Request<Body>,
        path: &str,
        request_id: &str,
    ) -> Response<ResponseBody> {
        match (req.method().as_str(), path) {
            ("GET", "callback") => session::callback(self, &req, request_id).await,
            ("GET", "me") => session::me(self, &req).await,
            ("POST", "logout") => session::logout(self, &req, request_id).await,
            ("POST", "backchannel-logout") => {
                session::backchannel_logout(self, req, request_id).await
            }
            ("GET", "approvals") => exchange::approvals(self, &req, request_id).await,
            ("POST", p) if p.starts_with("transfers/") && p.ends_with("/approve") => {
                // the approvals page writes the id percent-encoded (`private%3A23`)
                let Some(id) = crate::form::decode_segment(
                    p.trim_start_matches("transfers/")
                        .trim_end_matches("/approve"),
                ) else {
                    return plain(StatusCode::BAD_REQUEST, "not a transfer id\n");
                };
                exchange::approve(self, req, &id, request_id).await
            }
            ("GET", p) if p.starts_with("transfers/") => {
                let id = crate::form::decode_segment(p.trim_start_matches("transfers/"))
                    .unwrap_or_default();
                transfers::transfer(self, &req, &id, request_id).await
            }
            ("GET", "jwks.json") => {
                let mut r = answer(StatusCode::OK, "application/json", self.jwks.clone());
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=300"),
                );
                r
            }
            (_, "callback" | "me" | "logout" | "backchannel-logout" | "jwks.json") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => plain(StatusCode::NOT_FOUND, "no such gateway endpoint\n"),
        }
    }
}

/// The JWKS of the assertion key: one EC P-256 key, `kid` the hex SHA-256 of the key, its chain
/// in `x5c`.
fn assertion_jwks(key: &PublicKey, chain: &[Vec<u8>]) -> Value {
    let bytes = key.as_bytes();
    let kid: String = key.fingerprint().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let x5c: Vec<String> = chain.iter().map(|c| STANDARD.encode(c)).collect();
    let jwk = match (bytes.first(), bytes.get(1..33), bytes.get(33..65)) {
        (Some(4), Some(x), Some(y)) if bytes.len() == 65 => json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y), "x5c": x5c,
        }),
        _ => json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(bytes), "x5c": x5c,
        }),
    };
    json!({ "keys": [jwk] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_the_prefix_and_the_number_in_hex() {
        let prefix = [0xab, 0, 1, 2, 3, 4, 5, 0xff];
        assert_eq!(
            RequestId::new(&prefix, 0x1234).as_str(),
            "ab000102030405ff0000000000001234"
        );
        assert_eq!(
            RequestId::new(&prefix, u64::MAX).as_str(),
            "ab000102030405ffffffffffffffffff"
        );
    }

    #[test]
    fn an_address_header_is_the_address_in_text() -> Result<(), std::net::AddrParseError> {
        for ip in [
            "10.0.0.1",
            "255.255.255.255",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let parsed: std::net::IpAddr = ip.parse()?;
            let v = ip_header(parsed);
            assert_eq!(
                v.as_ref().map(HeaderValue::as_bytes),
                Some(parsed.to_string().as_bytes())
            );
        }
        Ok(())
    }
}
