//! `tianping idp serve --zone Z`: the provider on the zone's `idp` host and port from
//! `fabric.toml` (port 0: the address it got is published in `run/<zone>-idp.addr`), the admin
//! listener (`/healthz`, `/metrics`) on loopback, and the control socket `run/<zone>-idp.sock`.
//! Stops on SIGINT or SIGTERM, finishing requests in flight and removing what it published.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use miette::{IntoDiagnostic, WrapErr, miette};
use serde_json::{Value, json};
use tianping_audit::AuditLog;
use tianping_certs::{ClientAuth, ServerTlsBuilder};
use tianping_core::{
    Algorithm, Clock, Component, DataDir, Fabric, Listener, SystemClock, clear_published_addrs,
    publish_addr,
};
use tianping_idp::{
    GrantPolicy, Idp, IdpParts, KeySet, LockoutPolicy, OsRandom, PasswordParams, PasswordPolicy,
    Passwords, SessionPolicy, SignInParts, Store, TokenIssuer, TotpConfig,
};
use tianping_net::{
    Body, BoxFuture, ControlOptions, Handler, HostSet, Registry, ResponseBody, ServerOptions, full,
    serve_admin_with, serve_control_with,
};

use super::directory::{Op, audit_events, execute};
use super::{Alg, Paths, longest_token_life, origin};

/// The control socket's paths a caller may reach without a token: the handler then asks (the
/// local operator acts only before an administrator is in charge; the audit read API serves
/// nobody without a credential, in its own words).
const CONTROL_PATHS: &[&str] = &[
    "/status",
    "/audit/v1/status",
    "/audit/v1/verify",
    "/audit/v1/search",
    "/audit/v1/prove",
    "/audit/v1/checkpoint",
    "/audit/v1/ship",
    "/directory",
    "/devices",
    "/keys/rotate",
    "/directory/apply",
    "/directory/export",
    "/idp/v1/directory-update",
];

/// How many audit events between checkpoints signed with the IdP's node key.
const CHECKPOINT_EVERY: u64 = 1000;

/// The least time between two fetches of a client's JWKS URI (an unknown `kid` refetches).
const JWKS_REFETCH: std::time::Duration = std::time::Duration::from_secs(60);

pub(crate) fn run(dir: &DataDir, fabric: &Fabric, p: &Paths) -> miette::Result<ExitCode> {
    p.require_initialised()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    rt.block_on(serve(dir, fabric, p))
}

/// What the provider is rebuilt from when its keys change.
struct Template {
    issuer: String,
    store: Arc<dyn Store>,
    audit: Arc<AuditLog>,
    zone: String,
    clock: Arc<dyn Clock>,
    /// The keys in force.
    keys: KeySet,
    /// The interactive sign-in (password, TOTP, required actions).
    sign_in: SignInParts,
    /// Certificate sign-in, verified against the zone's CA and CRL.
    cert_sign_in: tianping_idp::CertSignIn,
    /// Back-channel logout POSTs and JWKS fetches, with the zone's trust.
    outbound: Arc<tianping_idp::ZoneHttps>,
    /// The pending device authorizations of `tianping login`, kept when the provider is rebuilt.
    devices: tianping_idp::DeviceTable,
}

/// The provider in force, swapped whole when its keys rotate.
pub(crate) struct LiveIdp {
    current: RwLock<Option<Idp>>,
    template: Mutex<Option<Template>>,
    key_dir: tianping_idp::KeyDir,
    metrics: Arc<Registry>,
    /// Wakes the back-channel delivery task: a logout may have been queued.
    logouts: Arc<tokio::sync::Notify>,
}

impl LiveIdp {
    /// The provider signing with `keys`, serving the clients the directory holds now.
    fn build(t: &Template, keys: KeySet) -> Result<Idp, String> {
        let mut clients = tianping_idp::Directory::new(&*t.store)
            .clients()
            .map_err(|e| format!("reading the directory's clients: {e}"))?;
        // `tianping login`'s client, unless the directory registers one of that id
        if !clients.iter().any(|c| c.id == super::admin::CLI_CLIENT) {
            clients.push(super::admin::cli_client(&t.issuer));
        }
        Ok(Idp::with_sign_in(
            IdpParts {
                issuer: TokenIssuer::new(t.issuer.clone(), keys),
                audience: "tianping".into(),
                store: Arc::clone(&t.store),
                clients,
                audit: Arc::clone(&t.audit),
                zone: t.zone.clone(),
                clock: Arc::clone(&t.clock),
                rng: Arc::new(OsRandom::new()),
                grants: GrantPolicy::default(),
                sessions: SessionPolicy::default(),
            },
            t.sign_in.clone(),
        )
        .with_cert_sign_in(t.cert_sign_in.clone())
        .with_device_table(
            tianping_idp::DeviceGrantParts {
                client_id: super::admin::CLI_CLIENT.into(),
                audience: tianping_idp::control_audience(&t.zone),
                token_life: tianping_idp::PERSON_TOKEN_LIFE,
                policy: tianping_idp::DevicePolicy::default(),
            },
            Arc::clone(&t.devices),
        )
        .with_backchannel(Arc::clone(&t.outbound) as Arc<dyn tianping_idp::LogoutSender>)
        .with_jwks_fetch(Arc::clone(&t.outbound) as _, JWKS_REFETCH))
    }

    fn install(&self, t: Template) -> miette::Result<()> {
        let idp = Self::build(&t, t.keys.clone()).map_err(|e| miette!("{e}"))?;
        *self.template.lock().map_err(|_| miette!("poisoned"))? = Some(t);
        *self.current.write().map_err(|_| miette!("poisoned"))? = Some(idp);
        Ok(())
    }

    fn current(&self) -> Option<Idp> {
        self.current.read().ok().and_then(|g| g.clone())
    }

    /// Rotates the keys on disk and swaps the provider; the old key stays in the JWKS.
    fn rotate(&self, alg: Algorithm, actor: &super::admin::Actor) -> Result<String, String> {
        // one rotation at a time: the template's lock is held throughout
        let mut template = self.template.lock().map_err(|_| "poisoned".to_owned())?;
        let t = template.as_mut().ok_or("the provider is not started yet")?;
        let now = t.clock.now();
        let life = longest_token_life(t.keys.clone());
        let before = t.keys.kid().to_owned();
        let set = self
            .key_dir
            .rotate(alg, now, life)
            .map_err(|e| e.to_string())?;
        let kid = set.kid().to_owned();
        let idp = Self::build(t, set.clone())?;
        t.keys = set;
        *self.current.write().map_err(|_| "poisoned".to_owned())? = Some(idp);
        let mut e = tianping_audit::Event::new(now, "idp.keys.rotate");
        e.zone.clone_from(&t.zone);
        e.component = "idp".into();
        e.actor = actor.name();
        e.roles = actor.roles();
        e.object.clone_from(&kid);
        e.outcome = "ok".into();
        e.reason = json!({ "before": { "signing_kid": before }, "after": { "signing_kid": kid } })
            .to_string();
        t.audit.append(&e).map_err(|e| format!("audit: {e}"))?;
        Ok(kid)
    }

    /// Carries out a directory op on the store; a registered client is served at once.
    fn directory(&self, op: &Op, actor: &super::admin::Actor) -> Result<Value, String> {
        let template = self.template.lock().map_err(|_| "poisoned".to_owned())?;
        let t = template.as_ref().ok_or("the provider is not started yet")?;
        super::directory::check_assigns(&t.zone, op)?;
        // the user's record before and after, for the audit record of the change
        let show = |user: &str| {
            execute(
                &*t.store,
                &Op::UserShow {
                    user: user.to_owned(),
                },
            )
            .unwrap_or(Value::Null)
        };
        let changed = super::admin::op_user(op).filter(|_| !op.reads());
        let before = changed.map(show);
        let answer = execute(&*t.store, op)?;
        self.logouts.notify_one();
        if !op.reads() {
            let after = changed.map(show);
            for (i, mut e) in audit_events(&t.zone, op, &answer, t.clock.now())
                .into_iter()
                .enumerate()
            {
                e.actor = actor.name();
                e.roles = actor.roles();
                actor.mark(&mut e);
                if i == 0 {
                    let (before, after) = match (&before, &after) {
                        (Some(b), Some(a)) => (b.clone(), a.clone()),
                        _ => (Value::Null, super::directory::audited(&answer)),
                    };
                    let change = json!({ "before": before, "after": after }).to_string();
                    e.reason = if e.reason.is_empty() {
                        change
                    } else {
                        format!("{}; {change}", e.reason)
                    };
                }
                t.audit.append(&e).map_err(|e| format!("audit: {e}"))?;
            }
        }
        if matches!(op, Op::ClientAdd { .. }) {
            let idp = Self::build(t, t.keys.clone())?;
            *self.current.write().map_err(|_| "poisoned".to_owned())? = Some(idp);
        }
        Ok(answer)
    }

    fn count(&self, name: &str, help: &str, labels: &[(&str, &str)]) {
        if let Ok(c) = self.metrics.counter(name, help, labels) {
            c.inc();
        }
    }
}

/// The public listener's handler: the provider in force, counted at its boundary.
struct Front(Arc<LiveIdp>);

fn endpoint(path: &str) -> &'static str {
    match path {
        "/.well-known/openid-configuration" => "discovery",
        "/jwks" => "jwks",
        "/token" => "token",
        "/authorize" => "authorize",
        "/userinfo" => "userinfo",
        "/revoke" => "revoke",
        "/introspect" => "introspect",
        "/logout" => "logout",
        "/login" => "login",
        _ => "other",
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r
}

impl Handler for Front {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let live = Arc::clone(&self.0);
        Box::pin(async move {
            let ep = endpoint(req.uri().path());
            let Some(idp) = live.current() else {
                return plain(StatusCode::SERVICE_UNAVAILABLE, "starting\n");
            };
            let resp = idp.call(req).await;
            if ep == "logout" {
                live.logouts.notify_one();
            }
            let status = resp.status();
            live.count(
                "tianping_idp_requests_total",
                "Requests to the IdP by endpoint and status.",
                &[("endpoint", ep), ("status", status.as_str())],
            );
            if ep != "token" {
                return resp;
            }
            // token answers are small JSON: read the outcome, then send them on unchanged
            let (parts, body) = resp.into_parts();
            let Ok(collected) = body.collect().await else {
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "token answer failed\n");
            };
            let bytes = collected.to_bytes();
            if !status.is_success() {
                let error = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into());
                live.count(
                    "tianping_idp_grant_failures_total",
                    "Token requests refused, by OAuth error code.",
                    &[("error", &error)],
                );
            }
            Response::from_parts(parts, full(bytes))
        })
    }
}

/// The control socket: status (open), key rotation, the directory and its devices; the
/// directory administration the zone's gateway forwards (under [`super::admin::GATEWAY_PREFIX`],
/// the gateway's name last).
struct ControlHandler(
    Arc<LiveIdp>,
    Arc<super::replicate::Replicator>,
    super::admin::Gate,
    Arc<str>,
);

fn json_answer(status: StatusCode, v: &Value) -> Response<ResponseBody> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

impl Handler for ControlHandler {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let live = Arc::clone(&self.0);
        let replicator = Arc::clone(&self.1);
        let gate = self.2.clone();
        let gateway = Arc::clone(&self.3);
        Box::pin(async move {
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            let caller = req.extensions().get::<tianping_net::Caller>().cloned();
            if let Err(e) = gate.note(caller.as_ref()) {
                return json_answer(StatusCode::INTERNAL_SERVER_ERROR, &json!({ "error": e }));
            }
            if let Some(rest) = path.strip_prefix(super::admin::GATEWAY_PREFIX) {
                let rest = rest.to_owned();
                return gatewayed(req, &live, caller.as_ref(), &gateway, &rest).await;
            }
            // the gateway's assertions are taken on its prefix only: the admin API is the CLI's
            if caller.as_ref().is_some_and(|c| {
                matches!(c.credential, Some(tianping_net::Credential::Assertion(_)))
            }) {
                return json_answer(
                    StatusCode::UNAUTHORIZED,
                    &json!({ "error": format!("a gateway's assertion is taken under `{}` only", super::admin::GATEWAY_PREFIX) }),
                );
            }
            #[expect(
                clippy::result_large_err,
                reason = "the refusal is the response, returned straight from the handler"
            )]
            let may = |roles: &[tianping_core::Role]| {
                super::admin::authorise(caller.as_ref(), roles, &gate)
            };
            match (method.as_str(), path.as_str()) {
                // who the presented token names, as this IdP verified it (commands that act
                // elsewhere, such as `policy publish`, ask it the caller's roles)
                ("GET", "/whoami") => match caller.as_ref().and_then(|c| c.identity.as_deref()) {
                    Some(id) if id.subject.is_some() => json_answer(
                        StatusCode::OK,
                        &json!({
                            "subject": id.subject.as_ref().map(ToString::to_string),
                            "name": id.name,
                            "roles": id.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                            "zone": id.zone.to_string(),
                        }),
                    ),
                    _ => json_answer(
                        StatusCode::UNAUTHORIZED,
                        &json!({ "error": "no person's token was presented" }),
                    ),
                },
                // an administrative action carried out by a command elsewhere (`policy publish`):
                // the role it needs checked here, on the person's token, and the action audited
                // under their subject id with its before and after, before the command acts
                ("POST", "/actions/policy-publish") => {
                    let actor = match may(&[tianping_core::Role::Secadmin]) {
                        Ok(a @ super::admin::Actor::Admin { .. }) => a,
                        Ok(_) => {
                            return json_answer(
                                StatusCode::FORBIDDEN,
                                &json!({ "error": "role `secadmin` required: a person's token (tianping login) publishes, never a node or the local operator" }),
                            );
                        }
                        Err(refused) => return refused,
                    };
                    let body = req.into_body().bytes().await.unwrap_or_default();
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let hash = |k: &str| {
                        v.get(k)
                            .and_then(Value::as_str)
                            .filter(|h| {
                                h.len() <= 128
                                    && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':')
                            })
                            .map(str::to_owned)
                    };
                    let (Some(before), Some(after)) = (hash("before"), hash("after")) else {
                        return json_answer(
                            StatusCode::BAD_REQUEST,
                            &json!({ "error": "the body must be {\"before\": HASH, \"after\": HASH}" }),
                        );
                    };
                    let audit =
                        live.template.lock().ok().and_then(|t| {
                            t.as_ref().map(|t| (Arc::clone(&t.audit), t.zone.clone()))
                        });
                    let Some((audit, zone)) = audit else {
                        return plain(StatusCode::SERVICE_UNAVAILABLE, "starting\n");
                    };
                    let mut e = tianping_audit::Event::new(SystemClock.now(), "policy.publish");
                    e.zone = zone;
                    e.component = "idp".into();
                    e.actor = actor.name();
                    e.roles = actor.roles();
                    e.object.clone_from(&after);
                    e.outcome = "ok".into();
                    e.reason =
                        json!({ "before": { "policy": before }, "after": { "policy": after } })
                            .to_string();
                    let done = tokio::task::spawn_blocking(move || {
                        audit.append(&e).and_then(|_| audit.sync())
                    })
                    .await;
                    match done {
                        Ok(Ok(())) => json_answer(
                            StatusCode::OK,
                            &json!({ "subject": actor.name(), "roles": actor.roles() }),
                        ),
                        _ => json_answer(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &json!({ "error": "the action could not be audited; do not act" }),
                        ),
                    }
                }
                ("POST", "/directory/apply" | "/idp/v1/directory-update" | "/directory/export") => {
                    let allowed = match path.as_str() {
                        "/idp/v1/directory-update" => {
                            super::admin::node_or_sysadmin(caller.as_ref(), &gate)
                        }
                        _ => may(&[tianping_core::Role::Sysadmin]),
                    };
                    let actor = match allowed {
                        Ok(a) => a.name(),
                        Err(refused) => return refused,
                    };
                    let body = req.into_body().bytes().await.unwrap_or_default();
                    let parts = live.template.lock().ok().and_then(|t| {
                        t.as_ref()
                            .map(|t| (Arc::clone(&t.store), Arc::clone(&t.audit)))
                    });
                    let Some((store, audit)) = parts else {
                        return plain(StatusCode::SERVICE_UNAVAILABLE, "starting\n");
                    };
                    let r = tokio::task::spawn_blocking(move || {
                        super::replicate::handle(
                            &replicator,
                            &*store,
                            &audit,
                            &path,
                            &body,
                            Some(&actor),
                        )
                    })
                    .await;
                    live.logouts.notify_one();
                    match r {
                        Ok((status, content_type, body)) => {
                            let mut resp = Response::new(full(body));
                            *resp.status_mut() =
                                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static(content_type),
                            );
                            resp
                        }
                        Err(_) => {
                            plain(StatusCode::INTERNAL_SERVER_ERROR, "directory task failed\n")
                        }
                    }
                }
                ("GET", "/status") => {
                    let (issuer, audit) = live
                        .template
                        .lock()
                        .ok()
                        .and_then(|t| {
                            t.as_ref()
                                .map(|t| (t.issuer.clone(), crate::audit_status::summary(&t.audit)))
                        })
                        .unzip();
                    json_answer(
                        StatusCode::OK,
                        &json!({ "component": "idp", "issuer": issuer, "audit": audit }),
                    )
                }
                ("POST", "/keys/rotate") => {
                    let actor = match may(&[tianping_core::Role::Secadmin]) {
                        Ok(a) => a,
                        Err(refused) => return refused,
                    };
                    let body = match req.into_body().bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            let status =
                                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
                            return json_answer(status, &json!({ "error": e.to_string() }));
                        }
                    };
                    let alg = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("alg")?.as_str().and_then(Alg::parse));
                    let Some(alg) = alg else {
                        return json_answer(
                            StatusCode::BAD_REQUEST,
                            &json!({ "error": "the body must be {\"alg\": \"ES256\" | \"EdDSA\"}" }),
                        );
                    };
                    let answer =
                        tokio::task::spawn_blocking(move || live.rotate(alg.algorithm(), &actor))
                            .await
                            .unwrap_or_else(|_| Err("the rotation task failed".into()));
                    match answer {
                        Ok(kid) => json_answer(StatusCode::OK, &json!({ "kid": kid })),
                        Err(e) => {
                            json_answer(StatusCode::INTERNAL_SERVER_ERROR, &json!({ "error": e }))
                        }
                    }
                }
                (_, p) if p.starts_with("/audit/v1/") => {
                    let log =
                        live.template.lock().ok().and_then(|t| {
                            t.as_ref().map(|t| (Arc::clone(&t.audit), t.zone.clone()))
                        });
                    let Some((log, zone)) = log else {
                        return plain(StatusCode::SERVICE_UNAVAILABLE, "starting\n");
                    };
                    crate::audit_api::serve(log, zone, req).await
                }
                ("POST", "/devices") => {
                    let body = req.into_body().bytes().await.unwrap_or_default();
                    let op: super::device::DeviceOp = match serde_json::from_slice(&body) {
                        Ok(op) => op,
                        Err(e) => {
                            return json_answer(
                                StatusCode::BAD_REQUEST,
                                &json!({ "error": format!("not a device operation: {e}") }),
                            );
                        }
                    };
                    let parts = live.template.lock().ok().and_then(|t| {
                        t.as_ref()
                            .map(|t| (Arc::clone(&t.store), Arc::clone(&t.audit), t.zone.clone()))
                    });
                    let Some((store, audit, zone)) = parts else {
                        return plain(StatusCode::SERVICE_UNAVAILABLE, "starting\n");
                    };
                    let roles: &[tianping_core::Role] = match op {
                        super::device::DeviceOp::List => {
                            &[tianping_core::Role::Sysadmin, tianping_core::Role::Secadmin]
                        }
                        _ => &[tianping_core::Role::Sysadmin],
                    };
                    let actor = match may(roles) {
                        Ok(a) => a.name(),
                        Err(refused) => return refused,
                    };
                    let mut op = op;
                    match &mut op {
                        super::device::DeviceOp::Add { actor: a, .. }
                        | super::device::DeviceOp::Remove { actor: a, .. } => *a = actor,
                        super::device::DeviceOp::List => {}
                    }
                    let answer = tokio::task::spawn_blocking(move || {
                        super::device::execute(&*store, &audit, &zone, &op)
                    })
                    .await
                    .unwrap_or_else(|_| Err("the device task failed".into()));
                    match answer {
                        Ok(v) => json_answer(StatusCode::OK, &v),
                        Err(e) => {
                            json_answer(StatusCode::UNPROCESSABLE_ENTITY, &json!({ "error": e }))
                        }
                    }
                }
                ("POST", "/directory") => {
                    let body = match req.into_body().bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            let status =
                                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
                            return json_answer(status, &json!({ "error": e.to_string() }));
                        }
                    };
                    let op: Op = match serde_json::from_slice(&body) {
                        Ok(op) => op,
                        Err(e) => {
                            return json_answer(
                                StatusCode::BAD_REQUEST,
                                &json!({ "error": format!("not a directory operation: {e}") }),
                            );
                        }
                    };
                    let actor = match may(super::admin::op_roles(&op)) {
                        Ok(a) => a,
                        Err(refused) => return refused,
                    };
                    let answer = tokio::task::spawn_blocking(move || live.directory(&op, &actor))
                        .await
                        .unwrap_or_else(|_| Err("the directory task failed".into()));
                    match answer {
                        Ok(v) => json_answer(StatusCode::OK, &v),
                        Err(e) => {
                            json_answer(StatusCode::UNPROCESSABLE_ENTITY, &json!({ "error": e }))
                        }
                    }
                }
                _ => json_answer(
                    StatusCode::NOT_FOUND,
                    &json!({ "error": "no such endpoint" }),
                ),
            }
        })
    }
}

/// A request the zone's gateway forwarded on the `directory-admin` route: the person it
/// asserts as the caller, the path mapped onto the directory operation
/// ([`super::admin::gateway_op`]), carried out as on the socket's `POST /directory` with the
/// same roles, and audited under the person with the gateway and its request id.
async fn gatewayed(
    req: Request<Body>,
    live: &Arc<LiveIdp>,
    caller: Option<&tianping_net::Caller>,
    gateway: &str,
    rest: &str,
) -> Response<ResponseBody> {
    // the gateway's own request id, kept only if it looks like one
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or_default()
        .to_owned();
    let method = req.method().as_str().to_owned();
    let body = match req.into_body().bytes().await {
        Ok(b) => b,
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return json_answer(status, &json!({ "error": e.to_string() }));
        }
    };
    // who asks is decided before what they ask is read: no assertion, no answer about the API
    if let Err(refused) = super::admin::gatewayed(caller, &Op::UserList, gateway, &request_id)
        && refused.status() == StatusCode::UNAUTHORIZED
    {
        return refused;
    }
    let op = match super::admin::gateway_op(&method, rest, &body) {
        Ok(op) => op,
        Err((status, e)) => return super::admin::json_error(status, e),
    };
    let actor = match super::admin::gatewayed(caller, &op, gateway, &request_id) {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let live = Arc::clone(live);
    let answer = tokio::task::spawn_blocking(move || live.directory(&op, &actor))
        .await
        .unwrap_or_else(|_| Err("the directory task failed".into()));
    match answer {
        Ok(v) => json_answer(StatusCode::OK, &v),
        Err(e) => json_answer(StatusCode::UNPROCESSABLE_ENTITY, &json!({ "error": e })),
    }
}

async fn serve(dir: &DataDir, fabric: &Fabric, p: &Paths) -> miette::Result<ExitCode> {
    let zone = &p.zone;
    let zl = fabric
        .zone(zone)
        .ok_or_else(|| miette!("`fabric.toml` has no zone `{zone}`"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = p
        .keys
        .load_or_create(Algorithm::Es256, clock.now())
        .into_diagnostic()?;
    let store: Arc<dyn Store> = Arc::new(p.open_store().wrap_err_with(|| {
        format!(
            "is zone `{zone}`'s IdP already running? (`{}`)",
            p.socket.display()
        )
    })?);
    let audit =
        Arc::new(AuditLog::open_or_create(&p.audit, &origin(fabric, zone)).into_diagnostic()?);
    let (_, node_key) = dir.node(zone, Component::Idp);
    let node_pem = std::fs::read_to_string(&node_key)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading the IdP's node key `{}`", node_key.display()))?;
    let node: Arc<dyn tianping_core::Signer> =
        Arc::new(tianping_audit::signer_from_pem(&node_pem).into_diagnostic()?);
    audit.set_auto_checkpoint(Arc::clone(&node), CHECKPOINT_EVERY);
    // its own log's shipper, in a zone with a flow that carries it to the audit store
    if let Some(s) = crate::ship::Shipper::new(dir, zone, Component::Idp, Arc::clone(&audit), node)?
    {
        s.spawn()?;
    }

    // a client certificate is asked for, never required: a person's signs them in, a node's
    // authenticates a client (`tls_client_auth`); a browser without one gets the password page
    let (pem, key) = dir.tls(zone, Component::Idp);
    let tls = ServerTlsBuilder::new(pem, key)
        .client_auth(
            ClientAuth::Request,
            dir.zone_trust_bundle(zone),
            vec![dir.zone_crl(zone, zone)],
        )
        .client_zone(zone.clone())
        .build()
        .into_diagnostic()
        .wrap_err("the IdP's TLS certificate")?;

    let sign_in = sign_in(dir, zone)?;
    clear_published_addrs(dir, zone, Component::Idp).into_diagnostic()?;
    let registry = Registry::new();
    let live = Arc::new(LiveIdp {
        current: RwLock::new(None),
        template: Mutex::new(None),
        key_dir: p.keys.clone(),
        metrics: Arc::clone(&registry),
        logouts: Arc::new(tokio::sync::Notify::new()),
    });
    let options = ServerOptions::new(HostSet::new([zl.idp_host.clone()]));
    let tls = Arc::new(tls);
    // on port 0 the port it had before: the issuer the gateway and the tokens name stays
    let server = crate::cmd::serve_public_again(
        dir,
        zone,
        Component::Idp,
        SocketAddr::new(zl.address, zl.idp_port),
        tls,
        options,
        || Front(Arc::clone(&live)),
    )
    .await?;
    let bound = server.local_addr();
    let issuer = if bound.port() == 443 {
        format!("https://{}", zl.idp_host)
    } else {
        format!("https://{}:{}", zl.idp_host, bound.port())
    };
    live.install(Template {
        issuer: issuer.clone(),
        store,
        audit: Arc::clone(&audit),
        zone: zone.to_string(),
        clock,
        keys,
        sign_in,
        cert_sign_in: tianping_idp::CertSignIn::new(Arc::new(super::device::zone_cert_verifier(
            dir, zone,
        )?)),
        outbound: Arc::new(outbound(dir, fabric, zone)?),
        devices: Arc::new(Mutex::new(tianping_idp::DeviceGrants::new(
            tianping_idp::DevicePolicy::default(),
        ))),
    })?;

    let admin_ip = if zl.address.is_loopback() {
        zl.address
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let admin_port = zl.admin_ports.get(&Component::Idp).copied().unwrap_or(0);
    let admin = serve_admin_with(
        SocketAddr::new(admin_ip, admin_port),
        vec![server.metrics()],
        Arc::clone(&registry),
    )
    .await
    .into_diagnostic()?;
    // Peer uid checked (this user and root); a presented token is checked (a person's from
    // `tianping login`, or a node token of the zone for the `idp` audience) before the handler,
    // which asks each action's role of it (`admin`); a caller without one reaches the handler
    // as the local operator (the audit read API refuses it).
    let people = {
        let l = Arc::clone(&live);
        let source: tianping_idp::IssuerSource = Arc::new(move || {
            let t = l.template.lock().ok()?;
            t.as_ref()
                .map(|t| TokenIssuer::new(t.issuer.clone(), t.keys.clone()))
        });
        let store = live
            .template
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|t| Arc::clone(&t.store)))
            .ok_or_else(|| miette!("the provider is not installed"))?;
        tianping_idp::PersonTokens::new(source, zone.as_str(), store)
    };
    // and people the zone's gateway asserts, on the `directory-admin` route's prefix
    let asserted = crate::assertion::GatewayUsers::new(dir, fabric, zone, "directory-authority")?;
    let gateway: Arc<str> = asserted.gateway().into();
    let people = super::admin::People {
        tokens: people,
        asserted,
        store: live
            .template
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|t| Arc::clone(&t.store)))
            .ok_or_else(|| miette!("the provider is not installed"))?,
    };
    let verifier =
        crate::cmd::exchange::node_callers(dir, zone, "idp")?.or(Arc::new(people) as Arc<_>);
    let replicator = Arc::new(super::replicate::Replicator::new(dir, fabric, zone));
    let control = serve_control_with(
        &p.socket,
        ControlOptions::new(&[]).verified(Arc::new(verifier), CONTROL_PATHS.iter().copied()),
        ControlHandler(
            Arc::clone(&live),
            Arc::clone(&replicator),
            super::admin::Gate::new(&p.base),
            gateway,
        ),
    )
    .await
    .into_diagnostic()?;
    // the live log's commands (`tianping audit verify|search`) ask this socket
    tianping_audit::record_owner(&p.audit, &p.socket).into_diagnostic()?;
    publish_addr(dir, zone, Component::Idp, &Listener::Public, bound).into_diagnostic()?;
    publish_addr(
        dir,
        zone,
        Component::Idp,
        &Listener::Admin,
        admin.local_addr(),
    )
    .into_diagnostic()?;
    println!(
        "idp of `{zone}`: {issuer} on {bound}, admin on {}, control socket `{}`",
        admin.local_addr(),
        control.path().display()
    );

    let (stop_tail, tail_stopped) = tokio::sync::watch::channel(false);
    let logouts = {
        let l = Arc::clone(&live);
        let store = l
            .template
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|t| Arc::clone(&t.store)));
        let store = store.ok_or_else(|| miette!("the provider is not installed"))?;
        tianping_idp::spawn_logout_delivery(
            Arc::new(move || l.current()),
            store,
            Arc::new(SystemClock),
            Arc::clone(&live.logouts),
            tail_stopped.clone(),
        )
    };
    // what changes in the directory leaves the zone by itself, on the policy's directory flows
    let pushing = {
        let store = live
            .template
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|t| Arc::clone(&t.store)))
            .ok_or_else(|| miette!("the provider is not installed"))?;
        match super::push::Pusher::new(dir, zone, store, Arc::clone(&replicator), &p.base)? {
            Some(pusher) => Some(pusher.spawn(tail_stopped.clone())?),
            None => None,
        }
    };
    let tail = tail_audit(Arc::clone(&audit), Arc::clone(&registry), tail_stopped);

    stopped().await?;
    let _ = stop_tail.send(true);
    let _ = tail.await;
    let _ = logouts.await;
    if let Some(p) = pushing {
        let _ = p.await;
    }
    control.shutdown().await;
    server.shutdown().await;
    admin.shutdown().await;
    tianping_audit::clear_owner(&p.audit).into_diagnostic()?;
    clear_published_addrs(dir, zone, Component::Idp).into_diagnostic()?;
    println!("idp of `{zone}` stopped");
    Ok(ExitCode::SUCCESS)
}

/// How often the audit log is read for the counters of what it records.
const TAIL_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Counts what the log recorded from index `from` (sign-ins, their failures and lockouts by
/// reason, grants by type, revocations by reason); returns the next index to read.
fn count_audited(log: &AuditLog, from: u64, registry: &Registry) -> u64 {
    let mut next = from;
    for r in log.entries(from) {
        let Ok(r) = r else { break };
        next = r.index + 1;
        let e = &r.event;
        let (name, help, label, value) = match e.action.as_str() {
            "signin.ok" => (
                "tianping_idp_sign_ins_total",
                "Completed sign-ins, by the acr reached.",
                "acr",
                e.reason.as_str(),
            ),
            "signin.failure" => (
                "tianping_idp_sign_in_failures_total",
                "Refused sign-in steps, by reason.",
                "reason",
                e.reason.as_str(),
            ),
            "signin.lockout" => (
                "tianping_idp_lockouts_total",
                "Accounts locked after repeated failures, by the failure that locked them.",
                "reason",
                e.reason.as_str(),
            ),
            "token.revoke" => (
                "tianping_idp_revocations_total",
                "Tokens revoked, by reason.",
                "reason",
                e.reason.as_str(),
            ),
            a => match a.strip_prefix("token.") {
                Some(g @ ("client_credentials" | "refresh" | "authorization_code")) => (
                    "tianping_idp_grants_total",
                    "Tokens issued by the token endpoint, by grant.",
                    "grant",
                    g,
                ),
                _ => continue,
            },
        };
        if let Ok(c) = registry.counter(name, help, &[(label, value)]) {
            c.inc();
        }
    }
    next
}

/// Keeps the audited counters up to date until the IdP stops.
fn tail_audit(
    log: Arc<AuditLog>,
    registry: Arc<Registry>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut next = log.size();
        let mut tick = tokio::time::interval(TAIL_EVERY);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {}
            }
            if log.size() <= next {
                continue;
            }
            let (l, r) = (Arc::clone(&log), Arc::clone(&registry));
            match tokio::task::spawn_blocking(move || count_audited(&l, next, &r)).await {
                Ok(n) => next = n,
                Err(_) => break,
            }
        }
    })
}

/// The sign-in as the zone's policy copy sets it: the least `acr` of an account is the highest
/// its roles need in the zone (a role that may not sign in there needs `cert`, the strongest).
fn sign_in(dir: &DataDir, zone: &tianping_core::ZoneName) -> miette::Result<SignInParts> {
    let path = dir.zone_policy(zone);
    let source = std::fs::read_to_string(&path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", path.display()))?;
    let policy = tianping_policies::check(&path.display().to_string(), &source)
        .into_policy()
        .ok_or_else(|| {
            miette!(
                "the zone's policy `{}` does not pass `tianping policy check`",
                path.display()
            )
        })?;
    let name = zone.to_string();
    let least_acr = {
        let name = name.clone();
        move |roles: &[tianping_core::Role]| {
            roles
                .iter()
                .map(|r| {
                    policy
                        .least_acr(&name, *r)
                        .unwrap_or(tianping_core::Acr::Cert)
                })
                .max()
                .unwrap_or(tianping_core::Acr::Pwd)
        }
    };
    let passwords = Passwords::new(
        PasswordParams::default(),
        PasswordPolicy::default(),
        &OsRandom::new(),
    )
    .into_diagnostic()?;
    Ok(SignInParts {
        passwords: Arc::new(passwords),
        lockout: LockoutPolicy::default(),
        totp: TotpConfig::default(),
        least_acr: Arc::new(least_acr),
        zone: zone.clone(),
        self_registration: name == "internet",
        totp_issuer: format!("Tianping {name}"),
    })
}

/// The IdP's HTTPS client: the zone's trust bundle (root and zone CA) verifies the servers, and
/// the IdP's node certificate is presented to those that ask. The fabric's host names (each
/// zone's `gw.` and `idp.` hosts, which DNS need not know) are reached at their zone's address,
/// so a back-channel logout finds the zone's gateway.
fn outbound(
    dir: &DataDir,
    fabric: &Fabric,
    zone: &tianping_core::ZoneName,
) -> miette::Result<tianping_idp::ZoneHttps> {
    let read = |path: std::path::PathBuf| {
        std::fs::read(&path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read `{}`", path.display()))
    };
    let (node_pem, node_key) = dir.node(zone, Component::Idp);
    let mut client = tianping_net::HttpsClientBuilder::new(read(dir.zone_trust_bundle(zone))?)
        .client_cert(read(node_pem)?, read(node_key)?);
    for z in fabric.zones() {
        for host in [&z.gateway_host, &z.idp_host] {
            client = client.resolve(host.clone(), SocketAddr::new(z.address, 0));
        }
    }
    let client = client
        .build()
        .into_diagnostic()
        .wrap_err("the IdP's https client")?;
    Ok(tianping_idp::ZoneHttps::new(client))
}

/// Waits for SIGINT or SIGTERM.
async fn stopped() -> miette::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).into_diagnostic()?;
    let mut int = signal(SignalKind::interrupt()).into_diagnostic()?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
