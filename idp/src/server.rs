//! The provider over HTTP (the `server` feature): an [`Idp`] is a [`tianping_net::Handler`]
//! serving discovery, the JWKS, the token endpoint and the first step of `/authorize`; `tianping_net::serve_tls` puts it on a
//! listener. Every grant is in the audit log, durably, before the response that carries it.

use std::collections::HashMap;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tianping_audit::{AuditLog, Event};
use tianping_core::{Clock, UnixTime};
use tianping_net::{Body, BoxFuture, Handler, ResponseBody, full};

use crate::client::Client;
use crate::endpoints::{self, Ctx};
use crate::error::IdpError;
use crate::grants::{GrantPolicy, Grants};
use crate::pages;
use crate::random::Random;
use crate::session::SessionPolicy;
use crate::store::Store;
use crate::token_request::{TokenGrant, parse_token_request};
use crate::tokens::{IssuedAccessToken, TokenIssuer};

mod commit;
mod device;
mod login;

pub use device::{DeviceGrantParts, DeviceTable};

/// What an [`Idp`] is made of.
pub struct IdpParts {
    /// Signs the tokens; its issuer is the base of every endpoint URL.
    pub issuer: TokenIssuer,
    /// The `aud` of access tokens.
    pub audience: String,
    /// Codes, refresh families, sessions, lockouts.
    pub store: Arc<dyn Store>,
    /// The registered clients.
    pub clients: Vec<Client>,
    /// Where grants are recorded.
    pub audit: Arc<AuditLog>,
    /// The zone, as audit events name it.
    pub zone: String,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Token and family randomness.
    pub rng: Arc<dyn Random>,
    /// Code and refresh-token lives.
    pub grants: GrantPolicy,
    /// Session timeouts.
    pub sessions: SessionPolicy,
}

/// The provider's HTTP handler; cheap to clone.
#[derive(Clone)]
pub struct Idp {
    inner: Arc<Inner>,
}

struct Inner {
    parts: IdpParts,
    /// Sends the back-channel logout tokens queued in the store; without it they wait there.
    backchannel: Option<Arc<dyn crate::backchannel::LogoutSender>>,
    /// One delivery round at a time.
    delivering: tokio::sync::Mutex<()>,
    clients: HashMap<String, Client>,
    /// The interactive sign-in; without it `/login` answers an error page.
    sign_in: Option<crate::signin::SignInParts>,
    /// Certificate sign-in; without it no certificate is offered or taken.
    cert: Option<crate::cert_signin::CertSignIn>,
    /// Counts grants, sign-ins, failures and lockouts.
    metrics: Arc<dyn crate::metrics::IdpMetrics>,
    /// The JWKS of `private_key_jwt` clients registered by URI; without it they cannot
    /// authenticate.
    jwks: Option<crate::client_auth::JwksCache>,
    /// The device authorization grant (RFC 8628); without it its endpoints are refused.
    device: Option<device::DeviceState>,
    /// Refresh rotations and their audit events, made durable together in groups.
    commits: commit::GrantCommits,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp")
            .field("issuer", &self.inner.parts.issuer.issuer())
            .field("clients", &self.inner.clients.len())
            .finish_non_exhaustive()
    }
}

impl Idp {
    /// A provider from its parts.
    pub fn new(parts: IdpParts) -> Self {
        let clients = parts
            .clients
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        let commits = commit::GrantCommits::new(Arc::clone(&parts.store), Arc::clone(&parts.audit));
        Self {
            inner: Arc::new(Inner {
                commits,
                parts,
                backchannel: None,
                delivering: tokio::sync::Mutex::new(()),
                clients,
                sign_in: None,
                cert: None,
                metrics: Arc::new(crate::metrics::NoMetrics),
                jwks: None,
                device: None,
            }),
        }
    }

    /// Makes again in `store`, if it [journals rotations](Store::journals_rotations), the
    /// refresh rotations whose `token.refresh` events `audit` holds after the store's last
    /// checkpoint and that the store lost (a crash before its flush), then checkpoints it; the
    /// rotations made again. [`Idp::new`] does this before serving; this is for reading a
    /// store after a crash without serving it.
    pub fn recover_rotations(store: &dyn Store, audit: &AuditLog) -> Result<usize, IdpError> {
        if store.journals_rotations() {
            commit::replay(store, audit)
        } else {
            Ok(0)
        }
    }

    /// A provider from its parts with the interactive sign-in (password, TOTP, required
    /// actions, registration in `internet`) at `/login` and `/register`.
    pub fn with_sign_in(parts: IdpParts, sign_in: crate::signin::SignInParts) -> Self {
        let mut this = Self::new(parts);
        if let Some(inner) = Arc::get_mut(&mut this.inner) {
            inner.sign_in = Some(sign_in);
        }
        this
    }

    /// This provider taking certificate sign-in (before it is cloned or served): the listener
    /// asks for client certificates (`ClientAuth::Request`) and the sign-in page offers one
    /// that came with the request. See [`crate::CertSignIn`].
    #[must_use]
    pub fn with_cert_sign_in(mut self, cert: crate::cert_signin::CertSignIn) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.cert = Some(cert);
        }
        self
    }

    /// This provider taking the device authorization grant (RFC 8628) for `parts.client_id`
    /// (before it is cloned or served): `/device_authorization`, the verification page
    /// `/device`, and the `device_code` grant at the token endpoint, which discovery then lists.
    #[must_use]
    pub fn with_device_grant(mut self, parts: DeviceGrantParts) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.device = Some(device::DeviceState::new(parts, None));
        }
        self
    }

    /// [`with_device_grant`](Self::with_device_grant) over `table`, which outlives this
    /// provider: a provider rebuilt with rotated keys or a new client keeps the pending
    /// authorizations.
    #[must_use]
    pub fn with_device_table(mut self, parts: DeviceGrantParts, table: DeviceTable) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.device = Some(device::DeviceState::new(parts, Some(table)));
        }
        self
    }

    /// This provider fetching the JWKS of clients registered by URI with `fetch` (over HTTPS
    /// with the zone's trust), refetching on an unknown `kid` at most once per
    /// `refetch_interval` (before it is cloned or served).
    #[must_use]
    pub fn with_jwks_fetch(
        mut self,
        fetch: Arc<dyn crate::client_auth::JwksFetch>,
        refetch_interval: std::time::Duration,
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.jwks = Some(crate::client_auth::JwksCache::new(fetch, refetch_interval));
        }
        self
    }

    /// This provider sending back-channel logout tokens through `sender` (before it is cloned or
    /// served): discovery then says `backchannel_logout_supported`, and
    /// [`deliver_logouts`](Self::deliver_logouts) sends what is due.
    #[must_use]
    pub fn with_backchannel(mut self, sender: Arc<dyn crate::backchannel::LogoutSender>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.backchannel = Some(sender);
        }
        self
    }

    /// Sends every back-channel logout token due now (one round at a time): each signed anew
    /// with the keys in force and the same `jti`, POSTed as `logout_token=`, and each attempt
    /// audited (`logout.backchannel`, outcome `ok` or `failed` with the reason); a failed one is
    /// due again after its backoff and given up after its last attempt. The deliveries made.
    /// Without a sender nothing is sent.
    pub async fn deliver_logouts(&self) -> Result<usize, IdpError> {
        let inner = &self.inner;
        let Some(sender) = &inner.backchannel else {
            return Ok(0);
        };
        let _round = inner.delivering.lock().await;
        let p = &inner.parts;
        let now = p.clock.now();
        let mut delivered = 0;
        for d in crate::backchannel::pending_logouts(&*p.store)? {
            if d.due_ms > now.as_millis() {
                continue;
            }
            let claims = crate::logout_token::LogoutClaims::new(
                p.issuer.issuer(),
                &d.client_id,
                &d.jti,
                d.sub.as_deref(),
                d.sid.as_deref(),
                now,
            );
            let token = crate::logout_token::make_logout_token(p.issuer.keys(), &claims)?;
            let sent = sender
                .post(&d.uri, crate::logout_token::logout_form(&token))
                .await;
            let why = sent.as_ref().err().cloned();
            let attempt = crate::backchannel::record_attempt(&*p.store, &d, sent, now)?;
            let attempt_no = d.failed.saturating_add(1);
            let (outcome, reason) = match (&attempt, why) {
                (crate::backchannel::Attempt::Delivered, _) => {
                    delivered += 1;
                    ("ok", format!("delivered at attempt {attempt_no}"))
                }
                (crate::backchannel::Attempt::Retry(_), why) => (
                    "failed",
                    format!(
                        "attempt {attempt_no}, tried again later: {}",
                        why.unwrap_or_default()
                    ),
                ),
                (crate::backchannel::Attempt::GaveUp, why) => (
                    "failed",
                    format!(
                        "given up after {attempt_no} attempts: {}",
                        why.unwrap_or_default()
                    ),
                ),
            };
            endpoints::record_outcome(
                p,
                now,
                "logout.backchannel",
                &d.client_id,
                &format!("logout:{}", d.jti),
                outcome,
                &reason,
            )
            .await?;
        }
        Ok(delivered)
    }

    /// This provider reporting its grants, sign-ins, failures and lockouts to `metrics`
    /// (before it is cloned or served; a clone keeps the hook it was made with).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<dyn crate::metrics::IdpMetrics>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metrics = metrics;
        }
        self
    }
}

impl Handler for Idp {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.handle(req).await })
    }
}

fn json_response(status: StatusCode, value: &Value, no_store: bool) -> Response<ResponseBody> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if no_store {
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r
}

/// An OAuth error response: the variant's code and its one status.
fn error_response(e: &IdpError) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({ "error": e.code().as_str(), "error_description": e.to_string() });
    let mut r = json_response(status, &body, true);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"tianping\""),
        );
    }
    r
}

impl Inner {
    async fn handle(self: Arc<Self>, req: Request<Body>) -> Response<ResponseBody> {
        let now = self.parts.clock.now();
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/.well-known/openid-configuration") => {
                json_response(StatusCode::OK, &self.discovery(now), false)
            }
            (&Method::GET, "/jwks") => {
                json_response(StatusCode::OK, &self.parts.issuer.keys().jwks(now), false)
            }
            (&Method::POST, "/token") => match self.token(req, now).await {
                Ok(v) => json_response(StatusCode::OK, &v, true),
                Err(e) => error_response(&e),
            },
            (&Method::GET, "/authorize") => {
                let query = req.uri().query().unwrap_or_default().as_bytes().to_vec();
                let cookie = login::session_id(req.headers());
                let cert = login::presents_certificate(&req);
                self.authorize_request(query, cookie, cert, now).await
            }
            (&Method::POST, "/authorize") => {
                let cookie = login::session_id(req.headers());
                let cert = login::presents_certificate(&req);
                match req.into_body().bytes().await {
                    Ok(body) => {
                        self.authorize_request(body.to_vec(), cookie, cert, now)
                            .await
                    }
                    Err(_) => pages::error_page(&IdpError::MissingParameter("client_id")),
                }
            }
            (&Method::POST, "/login") => {
                let cookie = login::session_id(req.headers());
                let chain = login::presented_chain(&req);
                match req.into_body().bytes().await {
                    Ok(body) => self.login(cookie, &body, chain, now).await,
                    Err(_) => pages::error_page(&IdpError::MalformedForm),
                }
            }
            (&Method::POST, "/device_authorization") => self.device_authorization(req, now).await,
            (&Method::GET, "/device") => self.device_page(&req, now),
            (&Method::POST, "/device") => self.device_decide(req, now).await,
            (_, "/device_authorization" | "/device") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            (&Method::GET, "/register") => self.register(login::session_id(req.headers()), now),
            (_, "/login" | "/register") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            (&Method::GET | &Method::POST, "/userinfo") => {
                endpoints::userinfo(self.ctx(), req, now).await
            }
            (&Method::POST, "/revoke") => endpoints::revoke(self.ctx(), req, now).await,
            (&Method::POST, "/introspect") => endpoints::introspect(self.ctx(), req, now).await,
            (&Method::GET | &Method::POST, "/logout") => {
                endpoints::logout(self.ctx(), req, now).await
            }
            (_, "/userinfo" | "/revoke" | "/introspect" | "/logout") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            (_, "/.well-known/openid-configuration" | "/jwks" | "/token" | "/authorize") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            parts: &self.parts,
            clients: &self.clients,
            jwks: self.jwks.as_ref(),
        }
    }

    fn discovery(&self, now: UnixTime) -> Value {
        let iss = self.parts.issuer.issuer();
        let mut d = json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/authorize"),
            "token_endpoint": format!("{iss}/token"),
            "jwks_uri": format!("{iss}/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": self.parts.issuer.keys().algorithms(now),
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth",
            ],
            "token_endpoint_auth_signing_alg_values_supported": crate::client_auth::ASSERTION_ALGS,
            "tls_client_certificate_bound_access_tokens": true,
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": crate::client::STANDARD_SCOPES,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "ui_locales_supported": ["zh-CN", "en"],
        });
        if let Some(obj) = d.as_object_mut() {
            obj.extend(endpoints::discovery_entries(iss));
            let bcl = self.backchannel.is_some();
            obj.insert("backchannel_logout_supported".into(), bcl.into());
            obj.insert("backchannel_logout_session_supported".into(), bcl.into());
            if self.device.is_some() {
                obj.insert(
                    "device_authorization_endpoint".into(),
                    format!("{iss}/device_authorization").into(),
                );
                if let Some(Value::Array(grants)) = obj.get_mut("grant_types_supported") {
                    grants.push(crate::device_grant::DEVICE_CODE_GRANT.into());
                }
            }
        }
        d
    }

    async fn token(&self, req: Request<Body>, now: UnixTime) -> Result<Value, IdpError> {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| IdpError::ClientAuthFailed)?;
        let conn = req.extensions().get::<tianping_net::ConnInfo>().cloned();
        let body = req
            .into_body()
            .bytes()
            .await
            .map_err(|_| IdpError::MissingParameter("grant_type"))?;
        let request = parse_token_request(&body, authorization.as_deref())?;
        let authenticated =
            crate::client_auth::authenticate(self.ctx(), &request.client, conn.as_ref(), now)
                .await?;
        let client = &authenticated.client;
        if let TokenGrant::DeviceCode { device_code } = &request.grant {
            let answer = self.device_token(client, device_code, now).await;
            if answer.is_ok() {
                self.metrics.grant(request.grant.name());
            }
            return answer;
        }
        if let Some(g) = request.grant.grant_type() {
            client.allows(g)?;
        }
        // RFC 8705 §3: the access tokens of a client that authenticated by its certificate are
        // bound to it
        let mut bound = serde_json::Map::new();
        if let Some(x5t) = &authenticated.x5t {
            bound.insert("cnf".into(), crate::client_auth::cnf_claim(x5t));
        }
        let kind = request.grant.name();
        let p = &self.parts;
        let answer = match request.grant {
            TokenGrant::ClientCredentials { scope } => {
                if let Some(s) = scope.iter().find(|s| !client.may_ask(s)) {
                    return Err(IdpError::ScopeNotAllowed(s.clone()));
                }
                let scope = scope.join(" ");
                let at = p.issuer.access_token_with(
                    None,
                    &client.id,
                    &p.audience,
                    &scope,
                    now,
                    &*p.rng,
                    bound.clone(),
                )?;
                self.audit(now, "token.client_credentials", &client.id, &at)
                    .await?;
                Ok(token_json(&at, now, &scope, None))
            }
            TokenGrant::RefreshToken {
                refresh_token,
                scope,
            } => {
                let grants = Grants::new(&*p.store, p.grants);
                let mut granted = String::new();
                // The account is checked and the access token signed before the family
                // rotates, and recorded in the same store update as the rotation.
                let mut issue = |family: &crate::grants::RefreshFamily| {
                    endpoints::account_may_get_tokens(p, &family.identity.sub, now)?;
                    let asked = match &scope {
                        Some(asked) => {
                            if let Some(s) = asked.iter().find(|s| !family.scope.contains(s)) {
                                return Err(IdpError::ScopeNotAllowed(s.clone()));
                            }
                            asked
                        }
                        None => &family.scope,
                    };
                    granted = asked.join(" ");
                    p.issuer.access_token_with(
                        Some(&family.identity),
                        &client.id,
                        &p.audience,
                        &granted,
                        now,
                        &*p.rng,
                        bound.clone(),
                    )
                };
                let rotated = grants.rotate_refresh_deferred(
                    &refresh_token,
                    &client.id,
                    now,
                    &*p.rng,
                    &mut issue,
                );
                let (family, next, at) = match rotated {
                    Err(IdpError::RefreshReused) => {
                        endpoints::audit_refresh_reuse(p, &refresh_token, &client.id, now).await?;
                        return Err(IdpError::RefreshReused);
                    }
                    other => other?,
                };
                let scope = granted;
                // The rotation and the audit record are both durable before the answer: one
                // group commit covers every rotation written before its event was handed over,
                // shared with concurrent grants. The event records what the rotation changed,
                // which is how a journalling store (sled) makes it durable (see commit.rs).
                let mut event = self.grant_event(now, "token.refresh", &client.id, &at);
                commit::journal(
                    &mut event,
                    &crate::grants::JournalledRotation {
                        family: family.id,
                        from: crate::grants::sha256(refresh_token.as_bytes()),
                        to: family.current,
                        client_id: client.id.clone(),
                        time: now,
                        access: (at.jti.clone(), at.expires_at),
                    },
                );
                self.commits.commit(event).await?;
                Ok(token_json(&at, now, &scope, Some(&next)))
            }
            TokenGrant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                endpoints::authorization_code(
                    self.ctx(),
                    client,
                    &code,
                    redirect_uri.as_deref(),
                    code_verifier.as_deref(),
                    bound,
                    now,
                )
                .await
            }
            TokenGrant::DeviceCode { .. } => Err(IdpError::Internal("device grant answered above")),
        };
        if answer.is_ok() {
            self.metrics.grant(kind);
        }
        answer
    }

    /// The audit event of a grant.
    fn grant_event(
        &self,
        now: UnixTime,
        action: &str,
        client_id: &str,
        at: &IssuedAccessToken,
    ) -> Event {
        let mut e = Event::new(now, action);
        e.zone.clone_from(&self.parts.zone);
        e.component = "idp".into();
        e.actor = client_id.to_owned();
        e.object = at.jti.clone();
        e.outcome = "ok".into();
        e
    }

    /// Records a grant durably; the response waits for it.
    async fn audit(
        &self,
        now: UnixTime,
        action: &str,
        client_id: &str,
        at: &IssuedAccessToken,
    ) -> Result<(), IdpError> {
        let e = self.grant_event(now, action, client_id, at);
        // Awaited without a thread of its own: the log's committer wakes this task once the
        // event's group is durable.
        let audit_error = |e: tianping_audit::StoreError| IdpError::Store(format!("audit: {e}"));
        self.parts
            .audit
            .append_prompt(&e)
            .map_err(audit_error)?
            .durable()
            .await
            .map_err(audit_error)
    }
}

fn token_json(at: &IssuedAccessToken, now: UnixTime, scope: &str, refresh: Option<&str>) -> Value {
    let mut v = json!({
        "access_token": at.token,
        "token_type": "Bearer",
        "expires_in": at.expires_at.saturating_since(now).as_secs(),
        "scope": scope,
    });
    if let (Some(rt), Some(obj)) = (refresh, v.as_object_mut()) {
        obj.insert("refresh_token".into(), rt.into());
    }
    v
}
