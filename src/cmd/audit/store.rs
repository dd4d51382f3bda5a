//! `tianping audit store --zone private`: the security team's audit store, the component that
//! keeps a mirror of every zone's logs (DESIGN §9), fed by the `audit-batch` transfers of the
//! policy's `audit-from-*` flows.
//!
//! The zone's exchange receiver delivers each batch on the store's control socket
//! (`POST /audit/v1/import`, a node token of the zone for the audience `audit-store`, the
//! transfer's manifest in `Tianping-*` headers). The batch's checkpoint names the log it comes
//! from (`<domain>/audit/<zone>/<component>`): it must be a component's log of the zone the
//! transfer came from, and is applied to the mirror `mirrors/<zone>/<component>` under the
//! store's folder (made on the first batch, which pins the log's checkpoint key; every later
//! batch must be signed by it). A batch may overlap what the mirror holds (shippers overlap
//! each batch with the one before, so one lost on the link is made up by the next): the
//! overlap must be equal entry by entry, and only the rest is stored.
//!
//! A batch that cannot be applied — it starts past the mirror's end (a gap: the batch before it
//! was lost and did not overlap), differs from what the mirror holds, is signed by another key,
//! or names another zone's log — is **taken** (answered `200` with `{"applied": false,
//! "reason": …}`) and audited as `audit.batch.refused`: delivering the same bytes again cannot
//! make it apply, and a delivery that is never taken would hold up every transfer queued behind
//! it. The mirror is left as it was; the next overlapping batch catches it up. Only the store's
//! own failures (its disk) are answered `503`, so the receiver tries again.
//!
//! `GET /status` (open) lists the mirrors with their sizes.
//!
//! `tianping audit verify|search|prove|reconcile` read the store's own log (`GET
//! /audit/v1/...`) and each mirror (`GET /mirrors/<zone>/<component>/audit/v1/...`, the
//! prefix recorded in the mirror folder's `owner.sock`) on this socket while the store runs,
//! for an auditor of the zone or a node of it; a read of a mirror is recorded in the store's own
//! log, never in the mirror (which its batches alone write).
//!
//! Auditors read the mirrors through the private zone's gateway (route `audit-read`, service
//! `audit-store`), which forwards `GET /audit/**` to this socket under
//! `/gateway/v1/audit-store/` with the person's `Tianping-Assertion` (a `user` token for the
//! audience `audit-store`, signed by the zone's gateway node certificate). The store verifies it
//! against the zone's trust bundle and answers only a person with the `auditor` role (the
//! gateway decided so already; this is the second check): `GET …/audit` lists the mirrors
//! (zone, component, entries, last checkpoint, whether it verifies), `GET
//! …/audit/<zone>/<component>` is one mirror's summary. A node token is not a person and is
//! refused there. Every applied batch is audited as
//! `audit.batch.applied` in the store's own log (`zones/<zone>/audit-store/audit`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use miette::{IntoDiagnostic, WrapErr, miette};
use serde_json::{Value, json};
use tianping_audit::{AuditLog, BatchReader, Event, SignedCheckpoint, StoreError};
use tianping_core::{Clock, Component, DataDir, Fabric, Role, SystemClock, ZoneName};
use tianping_net::{Body, BoxFuture, Caller, Credential, Handler, ResponseBody};

/// Where the zone's gateway forwards the `audit-read` route's requests.
const GATEWAY_PATH: &str = "/gateway/v1/audit-store/audit";

/// The path batches are delivered on (the receiver's `component_path("audit-batch")`).
const IMPORT_PATH: &str = "/audit/v1/import";
/// The largest batch taken: the default policy's `audit-from-*` flows allow 1 GiB; a batch is
/// read whole before it is applied, so this bounds the store's memory per delivery.
const MAX_BATCH: u64 = 1 << 30;
/// How many entries the store's own log gathers before it signs a checkpoint.
const CHECKPOINT_EVERY: u64 = 64;

/// The store: its mirrors, opened once each (a sled store is held by one process).
struct AuditStore {
    domain: String,
    root: PathBuf,
    /// The store's control socket (absolute), recorded as each mirror's owner.
    socket: PathBuf,
    mirrors: Mutex<BTreeMap<(String, String), Arc<AuditLog>>>,
    log: Arc<AuditLog>,
    zone: ZoneName,
}

/// Why a batch was not applied, for its answer and audit event.
enum NotApplied {
    /// Taken, not applied: the reason.
    Refused(String),
    /// The store's own failure: to be tried again.
    Failed(String),
}

impl AuditStore {
    /// The mirror of `(zone, component)`, opened (or made) on first use.
    fn mirror(&self, zone: &str, component: &str) -> Result<Arc<AuditLog>, StoreError> {
        let mut open = self
            .mirrors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (zone.to_owned(), component.to_owned());
        if let Some(m) = open.get(&key) {
            return Ok(Arc::clone(m));
        }
        let dir = self.root.join(zone).join(component);
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Storage(e.to_string()))?;
        let m = Arc::new(AuditLog::open_mirror(&dir, None)?);
        tianping_audit::record_owner_under(&dir, &self.socket, &mirror_prefix(zone, component))
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        open.insert(key, Arc::clone(&m));
        Ok(m)
    }

    /// The mirror of `(zone, component)` if it is open (every mirror on disk is, from the start).
    fn open_mirror(&self, zone: &str, component: &str) -> Option<Arc<AuditLog>> {
        self.mirrors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(zone.to_owned(), component.to_owned()))
            .cloned()
    }

    /// Clears the owner records of the store's log and of every mirror, as it stops.
    fn clear_owners(&self) {
        let open = self
            .mirrors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (z, c) in open.keys() {
            let _ = tianping_audit::clear_owner(&self.root.join(z).join(c));
        }
    }

    /// Applies one delivered batch from `source`.
    fn import(&self, source: &str, bytes: &[u8]) -> Result<(String, u64, u64), NotApplied> {
        let refused = |why: String| NotApplied::Refused(why);
        let reader = BatchReader::new(bytes).map_err(|e| refused(format!("not a batch: {e}")))?;
        let head = reader.head();
        let cp = SignedCheckpoint::verify(&head.note, &head.signer)
            .map_err(|e| refused(format!("its checkpoint does not verify: {e}")))?;
        let origin = cp.checkpoint().origin.clone();
        let component = origin
            .strip_prefix(&format!("{}/audit/{source}/", self.domain))
            .filter(|c| Component::ALL.iter().any(|k| k.as_str() == *c))
            .ok_or_else(|| {
                refused(format!(
                    "its log `{origin}` is not a component's log of `{source}`, whence it came"
                ))
            })?;
        let mirror = self
            .mirror(source, component)
            .map_err(|e| NotApplied::Failed(e.to_string()))?;
        match mirror.apply_batch_from(bytes) {
            Ok(cp) => Ok((origin, head.old_size, cp.checkpoint().size)),
            Err(e @ (StoreError::Storage(_) | StoreError::Poisoned(_))) => {
                Err(NotApplied::Failed(e.to_string()))
            }
            Err(e) => Err(refused(format!(
                "the mirror of `{origin}` (size {}) is unchanged: {e}",
                mirror.size()
            ))),
        }
    }

    fn audit(&self, action: &str, outcome: &str, attrs: &[(&str, String)], reason: &str) {
        let mut e = Event::new(SystemClock.now(), action);
        e.zone = self.zone.to_string();
        e.component = Component::AuditStore.as_str().into();
        e.node = Component::AuditStore.as_str().into();
        e.outcome = outcome.into();
        e.reason = reason.into();
        for (k, v) in attrs {
            e.attributes.insert((*k).to_owned(), v.clone());
        }
        if let Err(err) = self.log.append(&e) {
            eprintln!("audit store: its own log: {err}");
        }
    }

    /// One mirror's summary: its entries, last checkpoint, and whether that checkpoint verifies
    /// with the pinned key and matches the mirror's tree.
    fn summary(zone: &str, component: &str, m: &AuditLog) -> Value {
        let size = m.size();
        let latest = m.latest_checkpoint().ok().flatten();
        let key = m.pinned_key().ok().flatten();
        let origin = m.origin();
        let (checkpoint, verifies) = match (&latest, &key) {
            (Some((at, note)), Some(key)) => {
                let ok = SignedCheckpoint::verify_for(note, &origin, key).is_ok_and(|cp| {
                    m.root_at(cp.checkpoint().size)
                        .is_ok_and(|r| r == cp.checkpoint().root)
                });
                (json!(at), ok)
            }
            (Some((at, _)), None) => (json!(at), false),
            (None, _) => (Value::Null, size == 0),
        };
        json!({
            "zone": zone,
            "component": component,
            "origin": origin,
            "entries": size,
            "last_checkpoint": checkpoint,
            "verifies": verifies,
        })
    }

    /// The auditor's listing (`None`) or one mirror's summary, `None` if there is no such mirror.
    fn read(&self, which: Option<(&str, &str)>) -> Option<Value> {
        let open = self
            .mirrors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match which {
            None => {
                let mirrors: Vec<Value> = open
                    .iter()
                    .map(|((z, c), m)| Self::summary(z, c, m))
                    .collect();
                Some(json!({"zone": self.zone.as_str(), "mirrors": mirrors}))
            }
            Some((z, c)) => open
                .get(&(z.to_owned(), c.to_owned()))
                .map(|m| Self::summary(z, c, m)),
        }
    }

    fn status(&self) -> Value {
        let open = self
            .mirrors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mirrors: Vec<Value> = open
            .iter()
            .map(|((z, c), m)| json!({"zone": z, "component": c, "origin": m.origin(), "size": m.size()}))
            .collect();
        json!({
            "component": "audit-store",
            "zone": self.zone.as_str(),
            "mirrors": mirrors,
            "audit": crate::audit_status::summary(&self.log),
        })
    }
}

/// The prefix a mirror's read API is served under on the store's socket.
fn mirror_prefix(zone: &str, component: &str) -> String {
    format!("/mirrors/{zone}/{component}")
}

/// Where the store's own log's read API is served, and the mirrors' under their prefix.
const READ_API: &str = "/audit/v1/";

fn answer(status: StatusCode, v: &Value) -> Response<ResponseBody> {
    let mut r = Response::new(tianping_net::full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

struct Control(Arc<AuditStore>);

impl Handler for Control {
    fn call(&self, mut req: Request<Body>) -> BoxFuture {
        let store = Arc::clone(&self.0);
        Box::pin(async move {
            match (req.method().as_str(), req.uri().path()) {
                ("GET", "/status") => answer(StatusCode::OK, &store.status()),
                ("GET", p) if p.starts_with(READ_API) => {
                    let zone = store.zone.to_string();
                    crate::audit_api::serve(Arc::clone(&store.log), zone, req).await
                }
                ("GET", p) if p.starts_with("/mirrors/") => mirror_read(&store, req).await,
                ("GET", p) if p == GATEWAY_PATH || p.starts_with(&format!("{GATEWAY_PATH}/")) => {
                    let rest = p
                        .strip_prefix(GATEWAY_PATH)
                        .unwrap_or_default()
                        .trim_matches('/')
                        .to_owned();
                    gateway_read(&store, &req, &rest)
                }
                ("POST", IMPORT_PATH) => {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let (source, transfer) =
                        (header("tianping-source"), header("tianping-transfer"));
                    req.body_mut().set_limit(MAX_BATCH);
                    let body = match req.into_body().bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            let status =
                                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
                            return answer(status, &json!({"error": e.to_string()}));
                        }
                    };
                    let done = tokio::task::spawn_blocking(move || {
                        let r = store.import(&source, &body);
                        let mut attrs = vec![
                            ("source", source.clone()),
                            ("transfer", transfer.clone()),
                            ("bytes", body.len().to_string()),
                        ];
                        match r {
                            Ok((origin, from, size)) => {
                                attrs.push(("log", origin.clone()));
                                attrs.push(("from", from.to_string()));
                                attrs.push(("size", size.to_string()));
                                store.audit("audit.batch.applied", "success", &attrs, "");
                                println!(
                                    "batch {transfer} from `{source}` applied: `{origin}` holds {size} entries"
                                );
                                (
                                    StatusCode::OK,
                                    json!({"applied": true, "log": origin, "size": size}),
                                )
                            }
                            Err(NotApplied::Refused(why)) => {
                                store.audit("audit.batch.refused", "fail", &attrs, &why);
                                println!("batch {transfer} from `{source}` not applied: {why}");
                                (StatusCode::OK, json!({"applied": false, "reason": why}))
                            }
                            Err(NotApplied::Failed(why)) => (
                                StatusCode::SERVICE_UNAVAILABLE,
                                json!({"error": why}),
                            ),
                        }
                    })
                    .await;
                    match done {
                        Ok((status, v)) => answer(status, &v),
                        Err(_) => answer(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &json!({"error": "the import task failed"}),
                        ),
                    }
                }
                _ => answer(StatusCode::NOT_FOUND, &json!({"error": "no such endpoint"})),
            }
        })
    }
}

/// A read of one mirror's API (`/mirrors/<zone>/<component>/audit/v1/...`), recorded in the
/// store's own log.
async fn mirror_read(store: &AuditStore, req: Request<Body>) -> Response<ResponseBody> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let rest = target.strip_prefix("/mirrors/").unwrap_or_default();
    let mut parts = rest.splitn(3, '/');
    let (Some(zone), Some(component), Some(api)) = (parts.next(), parts.next(), parts.next())
    else {
        return answer(StatusCode::NOT_FOUND, &json!({"error": "no such mirror"}));
    };
    let Some(mirror) = store.open_mirror(zone, component) else {
        return answer(StatusCode::NOT_FOUND, &json!({"error": "no such mirror"}));
    };
    let api = format!("/{api}");
    if !api.starts_with(READ_API) {
        return answer(StatusCode::NOT_FOUND, &json!({"error": "no such endpoint"}));
    }
    crate::audit_api::serve_on(
        mirror,
        Arc::clone(&store.log),
        store.zone.to_string(),
        api,
        req,
    )
    .await
}

/// An auditor's read through the gateway: `rest` is empty (the listing) or `<zone>/<component>`.
fn gateway_read(store: &AuditStore, req: &Request<Body>, rest: &str) -> Response<ResponseBody> {
    let Some(caller) = req.extensions().get::<Caller>() else {
        return answer(StatusCode::UNAUTHORIZED, &json!({"error": "no caller"}));
    };
    if !matches!(caller.credential, Some(Credential::Assertion(_))) {
        return answer(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "the mirrors are read by people, through the zone's gateway"}),
        );
    }
    let who = match caller.require(&Role::Auditor) {
        Ok(id) => id.name.clone(),
        Err(refusal) => return refusal,
    };
    let which = match rest.split('/').collect::<Vec<_>>().as_slice() {
        [""] => None,
        [z, c] => Some((*z, *c)),
        _ => {
            return answer(
                StatusCode::NOT_FOUND,
                &json!({"error": "no such path: `/audit` or `/audit/<zone>/<component>`"}),
            );
        }
    };
    let found = store.read(which);
    store.audit(
        "audit.mirror.read",
        if found.is_some() { "success" } else { "fail" },
        &[("by", who), ("path", format!("/audit/{rest}"))],
        if found.is_some() {
            ""
        } else {
            "no such mirror"
        },
    );
    match found {
        Some(v) => answer(StatusCode::OK, &v),
        None => answer(StatusCode::NOT_FOUND, &json!({"error": "no such mirror"})),
    }
}

/// The store's own checkpoint key: its node key.
fn node_signer(dir: &DataDir, zone: &ZoneName) -> miette::Result<tianping_core::RingSigner> {
    let (_, key) = dir.node(zone, Component::AuditStore);
    let pem = std::fs::read_to_string(&key)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", key.display()))?;
    tianping_audit::signer_from_pem(&pem).map_err(|e| miette!("`{}`: {e}", key.display()))
}

/// Runs the store of `zone` until `SIGINT` or `SIGTERM`.
pub(super) fn serve(data: &std::path::Path, zone: &ZoneName) -> miette::Result<ExitCode> {
    let dir = DataDir::new(data);
    let fabric = Fabric::load(&dir.fabric()).into_diagnostic()?;
    let runs = fabric
        .zones()
        .find(|z| &z.zone == zone)
        .is_some_and(|z| z.components().any(|c| c == Component::AuditStore));
    if !runs {
        return Err(miette!(
            "`fabric.toml` runs no audit store in zone `{zone}` (it gives it no admin port)"
        ));
    }
    let base = dir.component(zone, Component::AuditStore);
    let log_dir = dir.audit_log(zone, Component::AuditStore);
    let origin = format!("{}/audit/{zone}/audit-store", fabric.domain);
    let log = Arc::new(
        AuditLog::open_or_create(&log_dir, &origin)
            .into_diagnostic()
            .wrap_err_with(|| format!("opening the audit log `{}`", log_dir.display()))?,
    );
    log.set_auto_checkpoint(Arc::new(node_signer(&dir, zone)?), CHECKPOINT_EVERY);
    let root = base.join("mirrors");
    let path = dir.socket(zone, Component::AuditStore);
    let store = Arc::new(AuditStore {
        domain: fabric.domain.clone(),
        root: root.clone(),
        socket: std::path::absolute(&path).into_diagnostic()?,
        mirrors: Mutex::new(BTreeMap::new()),
        log: Arc::clone(&log),
        zone: zone.clone(),
    });
    // the mirrors made before: open now, so `/status` shows them from the start
    for z in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for c in std::fs::read_dir(z.path()).into_iter().flatten().flatten() {
            let (Some(z), Some(c)) = (
                z.file_name().to_str().map(str::to_owned),
                c.file_name().to_str().map(str::to_owned),
            ) else {
                continue;
            };
            store
                .mirror(&z, &c)
                .into_diagnostic()
                .wrap_err_with(|| format!("opening the mirror `{z}/{c}`"))?;
        }
    }
    let rt = crate::cmd::exchange::runtime()?;
    let registry = tianping_net::Registry::new();
    rt.block_on(async {
        let users = crate::assertion::GatewayUsers::new(&dir, &fabric, zone, "audit-store")?;
        let people = crate::login_tokens::People {
            logins: crate::login_tokens::LoginTokens::spawn(
                &dir,
                &fabric,
                zone,
                &tokio::runtime::Handle::current(),
            )?,
            asserted: users,
        };
        let callers =
            crate::cmd::exchange::node_callers(&dir, zone, "audit-store")?.or(Arc::new(people));
        let options =
            tianping_net::ControlOptions::new(&[]).verified(Arc::new(callers), ["/status"]);
        let ctl = tianping_net::serve_control_with(&path, options, Control(Arc::clone(&store)))
            .await
            .into_diagnostic()?;
        tianping_audit::record_owner(&log_dir, &store.socket).into_diagnostic()?;
        let adm = crate::cmd::exchange::admin(
            &dir,
            &fabric,
            zone,
            Component::AuditStore,
            vec![ctl.metrics()],
            Arc::clone(&registry),
        )
        .await?;
        println!(
            "audit store of `{zone}`: {} mirrors under `{}`, control socket `{}`, admin on {}",
            store.mirrors.lock().map_or(0, |m| m.len()),
            root.display(),
            path.display(),
            adm.local_addr()
        );
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).into_diagnostic()?;
        let mut int = signal(SignalKind::interrupt()).into_diagnostic()?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        ctl.shutdown().await;
        drop(adm);
        miette::Result::<()>::Ok(())
    })?;
    store.clear_owners();
    log.sync().into_diagnostic()?;
    tianping_audit::clear_owner(&log_dir).into_diagnostic()?;
    println!("audit store of `{zone}` stopped");
    Ok(ExitCode::SUCCESS)
}
