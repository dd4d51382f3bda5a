//! `tianping gateway --zone Z`: the zone's gateway on its `gateway` host and port from
//! `fabric.toml` (port 0: the address it got is published in `run/<zone>-gateway.addr`), the
//! admin listener (`/healthz`, `/metrics`) on loopback, and the control socket
//! `run/<zone>-gateway.sock`: `GET /status` (open: the policy in force, the reload generation,
//! the audit events durable so far) and `POST /reload` (a reload as SIGHUP's, for a
//! `sysadmin`, audited as `admin.reload` before it is done), and the audit read API on its own
//! log (`/audit/v1/…`, an `auditor`'s: `tianping audit verify|search` of the live log). A
//! credential presented there is
//! a node token of the zone (audience `gateway`) or a person's token from `tianping login`
//! (checked against the IdP's keys the gateway holds: see `Gateway::control_caller`); each
//! endpoint asks its role of it with `Caller::require`. Stops on SIGINT or SIGTERM, finishing requests in flight and
//! removing what it published. On SIGHUP it reads the zone's policy copy again (taken if it
//! passes the check, refused with the old one staying otherwise; audited either way), its
//! cookie keys and its TLS certificate, without dropping a connection; each policy reload
//! taken counts one more on the generation (`/status`, and `tianping_gateway_reload_generation`
//! on `/metrics`). A change of the policy copy or the zone's CRL (modification time or length,
//! looked at every second) is a reload as SIGHUP is; a SIGHUP that finds the files as such a
//! reload read them reads the keys and certificates again, not the policy.
//!
//! The per-subject rate limit of signed-in people is the zone's in `fabric.toml`
//! (`subject-rate`, `subject-burst` in `[zones.<zone>]`; absent, the gateway's defaults of 50 per
//! second with a burst of 200); over it, 429 with `Retry-After`.
//!
//! It reads the zone's policy copy, trust bundle and CRL, its TLS and node certificates under
//! `zones/<zone>/gateway/`, and its cookie keys under `keys/` (`cookie.key` is key 1,
//! `cookie-<n>.key` key `n`; the highest seals, all open; one is made on first start if there is
//! none). Its IdP is the zone's, at the address the IdP published (so the IdP starts first).
//!
//! The gateway signs people in as the IdP's client `gateway`, authenticated by its node
//! certificate (`tls_client_auth`). At start, once its address is known, it registers itself
//! through the running IdP's control socket if that client does not exist yet; otherwise (an
//! IdP on another machine, or a registration naming another port) the operator runs what the
//! gateway prints:
//!
//! ```text
//! tianping idp client add gateway --zone Z --auth-method tls_client_auth \
//!     --tls-subject gw.Z.<domain> --redirect-uri https://gw.Z.<domain>:PORT/.tianping/callback \
//!     --backchannel-logout-uri https://gw.Z.<domain>:PORT/.tianping/backchannel-logout \
//!     --backchannel-logout-session-required
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Args;
use http::{Request, Response, StatusCode};
use miette::{IntoDiagnostic, WrapErr, miette};
use serde_json::json;
use tianping_audit::AuditLog;
use tianping_certs::{ClientAuth, ServerTlsBuilder, TokenSigner, certs_from_pem};
use tianping_core::{
    Clock, Component, DataDir, Fabric, Listener, RingSigner, Role, Secret, ServiceTarget,
    Signer as _, SystemClock, ZoneName, clear_published_addrs, listener_addr, private_key_from_pem,
    publish_addr, write_private_file,
};
use tianping_gateway::{CookieKey, Gateway, GatewayParts, Limits, ServiceBinding};
use tianping_net::{
    Body, BoxFuture, ControlOptions, Handler, HostSet, HttpsClientBuilder, Registry, ResponseBody,
    ServerOptions, full, serve_admin_with, serve_control_with,
};

/// The gateway's `client_id` at its zone's IdP.
pub(crate) const CLIENT_ID: &str = "gateway";
/// How many audit events between checkpoints signed with the gateway's node key.
const CHECKPOINT_EVERY: u64 = 1000;
/// The audience of the IdP's access tokens.
const TOKEN_AUDIENCE: &str = "tianping";

/// `tianping gateway`.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// The zone.
    #[arg(long)]
    zone: ZoneName,
    /// Make every request's decision durable in the audit log before acting on it, instead
    /// of queueing it and committing in groups within 20 ms.
    #[arg(long)]
    audit_sync: bool,
    /// The HTTP versions offered to the services forwarded to: `any` (the service chooses:
    /// one multiplexed HTTP/2 connection, or pooled HTTP/1.1 ones), `1.1` (a pool of HTTP/1.1
    /// connections, as many as the requests in flight) or `2`.
    #[arg(long, default_value = "any")]
    upstream_http: tianping_gateway::UpstreamHttp,
    /// TLS 1.3 session tickets sent after each handshake, for clients that resume their next
    /// connection (0: none, every connection a full handshake).
    #[arg(long, default_value_t = tianping_certs::DEFAULT_TLS13_TICKETS)]
    tls13_tickets: usize,
}

pub(crate) fn run(data: &Path, args: GatewayArgs) -> miette::Result<ExitCode> {
    let dir = DataDir::new(data);
    let fabric = Fabric::load(&dir.fabric()).into_diagnostic()?;
    let zl = fabric
        .zone(&args.zone)
        .ok_or_else(|| miette!("`fabric.toml` has no zone `{}`", args.zone))?;
    if !zl.runs(Component::Gateway) {
        return Err(miette!(
            "zone `{}` runs no gateway in `fabric.toml`",
            args.zone
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let mut limits = zone_limits(zl);
    limits.upstream_http = args.upstream_http;
    rt.block_on(serve(
        &dir,
        &fabric,
        &args.zone,
        args.audit_sync,
        args.tls13_tickets,
        limits,
    ))
}

/// The gateway's limits: the defaults, with the per-subject rate and burst the zone's section
/// of `fabric.toml` sets (`subject-rate`, `subject-burst`).
fn zone_limits(zl: &tianping_core::ZoneListeners) -> Limits {
    let d = Limits::default();
    Limits {
        subject_rate: zl.subject_rate.unwrap_or(d.subject_rate),
        subject_burst: zl.subject_burst.unwrap_or(d.subject_burst),
        ..d
    }
}

fn read(path: &Path) -> miette::Result<Vec<u8>> {
    std::fs::read(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", path.display()))
}

/// The cookie keys under `keys/` (`cookie.key` is id 1, `cookie-<n>.key` id `n`); one made
/// when there is none.
fn cookie_keys(dir: &DataDir, zone: &ZoneName) -> miette::Result<Vec<CookieKey>> {
    let keys = dir.keys(zone, Component::Gateway);
    std::fs::create_dir_all(&keys)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot make `{}`", keys.display()))?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&keys).into_diagnostic()? {
        let path = entry.into_diagnostic()?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let id = match name {
            "cookie.key" => 1,
            n => match n
                .strip_prefix("cookie-")
                .and_then(|r| r.strip_suffix(".key"))
                .and_then(|i| i.parse::<u32>().ok())
            {
                Some(i) => i,
                None => continue,
            },
        };
        let bytes = read(&path)?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            miette!(
                "`{}` is not a cookie key (32 bytes; it has {})",
                path.display(),
                bytes.len()
            )
        })?;
        found.push(CookieKey::new(id, &Secret::new(bytes)).into_diagnostic()?);
    }
    if found.is_empty() {
        let (key, bytes) = CookieKey::generate(1).into_diagnostic()?;
        write_private_file(&keys.join("cookie.key"), bytes.expose()).into_diagnostic()?;
        eprintln!(
            "gateway of `{zone}`: made its cookie key `{}`",
            keys.join("cookie.key").display()
        );
        found.push(key);
    }
    Ok(found)
}

async fn serve(
    dir: &DataDir,
    fabric: &Fabric,
    zone: &ZoneName,
    audit_sync: bool,
    tls13_tickets: usize,
    limits: Limits,
) -> miette::Result<ExitCode> {
    let zl = fabric
        .zone(zone)
        .ok_or_else(|| miette!("`fabric.toml` has no zone `{zone}`"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let policy_path = dir.zone_policy(zone);
    let source = String::from_utf8(read(&policy_path)?)
        .map_err(|_| miette!("`{}` is not UTF-8", policy_path.display()))?;
    let policy = tianping_policies::check(&policy_path.display().to_string(), &source)
        .into_policy()
        .ok_or_else(|| {
            miette!(
                "the zone's policy `{}` does not pass `tianping policy check`",
                policy_path.display()
            )
        })?;
    let mut services = BTreeMap::new();
    for (name, b) in fabric.services() {
        if b.zone != *zone {
            continue;
        }
        let binding = match &b.target {
            ServiceTarget::Url { url, ca } => ServiceBinding::Url {
                url: url.clone(),
                ca_pem: read(&dir.root().join(ca))?,
            },
            ServiceTarget::Folder(p) => ServiceBinding::Folder(dir.root().join(p)),
            ServiceTarget::Component(c) => ServiceBinding::Component {
                component: c.to_string(),
                socket: dir.socket(zone, *c),
            },
        };
        services.insert(name.clone(), binding);
    }

    // the zone's IdP, where it published itself (it starts before the gateway)
    let idp_addr = listener_addr(dir, fabric, zone, Component::Idp, &Listener::Public)
        .into_diagnostic()
        .wrap_err("the zone's IdP must be running before its gateway starts")?;
    let issuer = if idp_addr.port() == 443 {
        format!("https://{}", zl.idp_host)
    } else {
        format!("https://{}:{}", zl.idp_host, idp_addr.port())
    };
    let trust = read(&dir.zone_trust_bundle(zone))?;
    let (node_pem_path, node_key_path) = dir.node(zone, Component::Gateway);
    let node_pem = read(&node_pem_path)?;
    let node_key = read(&node_key_path)?;
    let idp_http = HttpsClientBuilder::new(trust.clone())
        .client_cert(node_pem.clone(), node_key.clone())
        .resolve(zl.idp_host.clone(), idp_addr)
        .build()
        .into_diagnostic()
        .wrap_err("the gateway's https client")?;
    let key_text = String::from_utf8(node_key.clone())
        .map_err(|_| miette!("`{}` is not PEM", node_key_path.display()))?;
    let pkcs8 = private_key_from_pem(&key_text).into_diagnostic()?;
    let signer = RingSigner::from_pkcs8_any(pkcs8.expose()).into_diagnostic()?;
    let public = signer.public_key();
    let chain = certs_from_pem(&node_pem).into_diagnostic()?;
    let chain_der: Vec<Vec<u8>> = chain.iter().map(|c| c.as_ref().to_vec()).collect();
    // the assertion carries the node certificate alone: services verify it against the
    // zone's trust bundle, which holds the zone CA, so the CA's certificate in every forwarded
    // request (about 1 KB of its 2) would only be more to send, encrypt and parse
    let assertion_signer = TokenSigner::new(Arc::new(signer), chain.get(..1).unwrap_or_default())
        .into_diagnostic()
        .wrap_err("the gateway's node certificate")?;

    let audit_dir = dir.audit_log(zone, Component::Gateway);
    let audit = Arc::new(
        AuditLog::open_or_create(
            &audit_dir,
            &format!("{}/audit/{zone}/gateway", fabric.domain),
        )
        .into_diagnostic()
        .wrap_err_with(|| {
            format!(
                "is zone `{zone}`'s gateway already running? (`{}`)",
                dir.socket(zone, Component::Gateway).display()
            )
        })?,
    );
    let node_text = String::from_utf8_lossy(&node_key).into_owned();
    let checkpoints: Arc<dyn tianping_core::Signer> =
        Arc::new(tianping_audit::signer_from_pem(&node_text).into_diagnostic()?);
    audit.set_auto_checkpoint(Arc::clone(&checkpoints), CHECKPOINT_EVERY);
    // its own log's shipper, in a zone with a flow that carries it to the audit store
    if let Some(s) = crate::ship::Shipper::new(
        dir,
        zone,
        Component::Gateway,
        Arc::clone(&audit),
        checkpoints,
    )? {
        s.spawn()?;
    }

    // a client certificate is asked for, never required: a person's is an identity, a browser
    // without one signs in at the IdP
    let (pem, key) = dir.tls(zone, Component::Gateway);
    let tls = ServerTlsBuilder::new(pem, key)
        .client_auth(
            ClientAuth::Request,
            dir.zone_trust_bundle(zone),
            vec![dir.zone_crl(zone, zone)],
        )
        .client_zone(zone.clone())
        .session_tickets(tls13_tickets)
        .build()
        .into_diagnostic()
        .wrap_err("the gateway's TLS certificate")?;
    let tls = Arc::new(tls);

    clear_published_addrs(dir, zone, Component::Gateway).into_diagnostic()?;
    let registry = Registry::new();
    // the public origin needs the bound port: bind first, then build the handler it serves
    let slot: Arc<std::sync::OnceLock<Gateway>> = Arc::new(std::sync::OnceLock::new());
    let mut options = ServerOptions::new(HostSet::new([zl.gateway_host.clone()]));
    // an exchange route sets its flow's max-size on the request; the listener allows up to the
    // largest of the flows out of this zone
    let largest = policy
        .flows()
        .filter(|f| f.from() == zone)
        .map(|f| f.max_size())
        .max()
        .unwrap_or(0);
    options.limits.body_ceiling = options.limits.body_ceiling.max(largest);
    // on port 0 the port it had before: the redirect URI registered at the IdP stays
    let server = super::serve_public_again(
        dir,
        zone,
        Component::Gateway,
        SocketAddr::new(zl.address, zl.gateway_port),
        tls.clone(),
        options,
        || Front(Arc::clone(&slot)),
    )
    .await?;
    let bound = server.local_addr();
    let public_url = if bound.port() == 443 {
        format!("https://{}", zl.gateway_host)
    } else {
        format!("https://{}:{}", zl.gateway_host, bound.port())
    };
    let gateway = Gateway::new(GatewayParts {
        zone: zone.clone(),
        policy,
        services,
        public_url: public_url.clone(),
        issuer,
        client_id: CLIENT_ID.into(),
        token_audience: TOKEN_AUDIENCE.into(),
        idp_http,
        cookie_keys: cookie_keys(dir, zone)?,
        assertion_signer,
        assertion_key: (public, chain_der),
        node_identity: Some((node_pem, node_key)),
        audit: Arc::clone(&audit),
        limits,
        clock,
        metrics: Arc::clone(&registry),
        exchange_sender: zl
            .runs(Component::ExchangeSender)
            .then(|| dir.socket(zone, Component::ExchangeSender)),
        exchange_receiver: zl
            .runs(Component::ExchangeReceiver)
            .then(|| dir.socket(zone, Component::ExchangeReceiver)),
        audit_sync,
    })
    .into_diagnostic()?;
    let registration = format!(
        "tianping idp client add {CLIENT_ID} --zone {zone} --auth-method tls_client_auth \
         --tls-subject {} --redirect-uri {} --backchannel-logout-uri {} \
         --backchannel-logout-session-required",
        zl.gateway_host,
        gateway.redirect_uri(),
        gateway.backchannel_logout_uri()
    );
    let reloads = Arc::new(Reloads::default());
    register(dir, zone, &zl.gateway_host, &gateway, &registration).await;
    // the IdP's keys, so person tokens on the control socket check without a fetch
    if let Err(e) = gateway.fetch_idp_keys().await {
        eprintln!("gateway of `{zone}`: the IdP's keys are not fetched yet: {e}");
    }
    let _ = slot.set(gateway);

    let admin_ip = if zl.address.is_loopback() {
        zl.address
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let admin_port = zl
        .admin_ports
        .get(&Component::Gateway)
        .copied()
        .unwrap_or(0);
    let admin = serve_admin_with(
        SocketAddr::new(admin_ip, admin_port),
        vec![server.metrics()],
        Arc::clone(&registry),
    )
    .await
    .into_diagnostic()?;
    let socket = dir.socket(zone, Component::Gateway);
    let callers =
        crate::cmd::exchange::node_callers(dir, zone, "gateway")?.or(Arc::new(ControlTokens {
            gateway: Arc::clone(&slot),
        }));
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let control = serve_control_with(
        &socket,
        ControlOptions::new(&[]).verified(Arc::new(callers), [STATUS_PATH]),
        Control {
            reload: reload_tx,
            fixed: json!({
                "component": "gateway",
                "zone": zone.as_str(),
                "public_url": public_url,
                "client_registration": registration,
            }),
            gateway: Arc::clone(&slot),
            reloads: Arc::clone(&reloads),
            audit: Arc::clone(&audit),
        },
    )
    .await
    .into_diagnostic()?;
    let mut signals = Signals::new(
        vec![policy_path.clone(), dir.zone_crl(zone, zone)],
        reload_rx,
    )?;
    tianping_audit::record_owner(&audit_dir, &socket).into_diagnostic()?;
    publish_addr(dir, zone, Component::Gateway, &Listener::Public, bound).into_diagnostic()?;
    publish_addr(
        dir,
        zone,
        Component::Gateway,
        &Listener::Admin,
        admin.local_addr(),
    )
    .into_diagnostic()?;
    println!(
        "gateway of `{zone}`: {public_url} on {bound}, admin on {}, control socket `{}`",
        admin.local_addr(),
        control.path().display()
    );

    let generation = registry
        .gauge(
            "tianping_gateway_reload_generation",
            "Reloads of the policy and certificates taken (SIGHUP); 0 until the first.",
            &[],
        )
        .into_diagnostic()?;
    while let Signal::Reload { policy } = signals.next().await {
        let Some(g) = slot.get() else { continue };
        if !policy {
            match cookie_keys(dir, zone).and_then(|k| g.reload_cookie_keys(k).into_diagnostic()) {
                Ok(_) => {}
                Err(e) => eprintln!("gateway of `{zone}`: cookie keys not reloaded: {e:?}"),
            }
            let tls_reloaded = tls
                .reload()
                .map_err(|e| e.to_string())
                .and_then(|()| server.reload().map_err(|e| e.to_string()));
            if let Err(e) = tls_reloaded {
                eprintln!("gateway of `{zone}`: certificates not reloaded: {e}");
            }
            eprintln!(
                "gateway of `{zone}`: the policy file is as its last reload read it; keys and \
                 certificates read again"
            );
            continue;
        }
        let source = std::fs::read(&policy_path)
            .map_err(|e| e.to_string())
            .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8".to_owned()));
        let result = match source {
            Ok(text) => {
                g.reload_policy(&policy_path.display().to_string(), &text)
                    .await
            }
            Err(e) => Err(format!("cannot read `{}`: {e}", policy_path.display())),
        };
        // the cookie keys too: a key added under keys/ seals from now on, one taken away
        // ends the sessions it sealed
        match cookie_keys(dir, zone).and_then(|k| g.reload_cookie_keys(k).into_diagnostic()) {
            Ok(sealing) => eprintln!(
                "gateway of `{zone}`: cookie keys reloaded, key {} seals",
                sealing.unwrap_or_default()
            ),
            Err(e) => eprintln!("gateway of `{zone}`: cookie keys not reloaded: {e:?}"),
        }
        match result {
            Ok(hash) => {
                let tls_reloaded = tls
                    .reload()
                    .map_err(|e| e.to_string())
                    .and_then(|()| server.reload().map_err(|e| e.to_string()));
                if let Err(e) = tls_reloaded {
                    eprintln!("gateway of `{zone}`: certificates not reloaded: {e}");
                }
                let n = reloads.taken.fetch_add(1, Ordering::SeqCst) + 1;
                generation.set(i64::try_from(n).unwrap_or(i64::MAX));
                eprintln!("gateway of `{zone}`: reloaded (generation {n}), policy {hash}");
            }
            Err(e) => {
                reloads.refused.fetch_add(1, Ordering::SeqCst);
                eprintln!(
                    "gateway of `{zone}`: the new policy is refused; the old one stays:\n{e}"
                );
            }
        }
    }
    control.shutdown().await;
    server.shutdown().await;
    admin.shutdown().await;
    let _ = audit.sync();
    tianping_audit::clear_owner(&audit_dir).into_diagnostic()?;
    clear_published_addrs(dir, zone, Component::Gateway).into_diagnostic()?;
    println!("gateway of `{zone}` stopped");
    Ok(ExitCode::SUCCESS)
}

/// Registers the gateway as the IdP's client `gateway` through the running IdP's control socket
/// when it is not registered yet; says on stderr what to run when that cannot be done, or when
/// the registration names another redirect URI (a gateway on a port chosen at start: the IdP
/// has no update of a client's URIs).
async fn register(dir: &DataDir, zone: &ZoneName, subject: &str, gateway: &Gateway, command: &str) {
    let socket = dir.socket(zone, Component::Idp);
    let token = std::fs::read_to_string(dir.admin_token(zone))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let ask = |body: serde_json::Value| {
        let socket = socket.clone();
        let token = token.clone();
        async move {
            let mut b = Request::builder()
                .method("POST")
                .uri("/directory")
                .header(http::header::CONTENT_TYPE, "application/json");
            if let Some(t) = &token {
                b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let req = b
                .body(tianping_net::ControlBody::bytes(body.to_string()))
                .map_err(|e| e.to_string())?;
            let resp = tianping_net::control_send(&socket, req, tianping_net::CONTROL_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp.into_body().bytes().await.map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            Ok::<_, String>((status, v))
        }
    };
    let redirect = gateway.redirect_uri().to_owned();
    match ask(json!({ "op": "client-show", "id": CLIENT_ID })).await {
        Ok((200, v)) => {
            let has = v
                .get("redirect_uris")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|l| l.iter().any(|u| u.as_str() == Some(redirect.as_str())));
            if !has {
                eprintln!(
                    "gateway of `{zone}`: the IdP's client `{CLIENT_ID}` is registered with \
                     other redirect URIs than `{redirect}`: sign-in fails until it is \
                     registered again ({command})"
                );
            }
            return;
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!(
                "gateway of `{zone}`: the IdP's control socket does not answer ({e}); register \
                 the gateway with: {command}"
            );
            return;
        }
    }
    let add = json!({
        "op": "client-add",
        "id": CLIENT_ID,
        "redirect_uris": [redirect],
        "post_logout_redirect_uris": [],
        "grants": ["authorization_code"],
        "auth_method": "tls_client_auth",
        "native_loopback": false,
        "scopes": [],
        "tls_subject": subject,
        "backchannel_logout_uri": gateway.backchannel_logout_uri(),
        "backchannel_logout_session_required": true,
    });
    match ask(add).await {
        Ok((200, _)) => eprintln!(
            "gateway of `{zone}`: registered as the IdP's client `{CLIENT_ID}` \
             (tls_client_auth, redirect URI `{redirect}`)"
        ),
        Ok((status, v)) => eprintln!(
            "gateway of `{zone}`: the IdP refused to register it ({status}: {v}); register it \
             with: {command}"
        ),
        Err(e) => eprintln!(
            "gateway of `{zone}`: registering at the IdP failed ({e}); register it with: \
             {command}"
        ),
    }
}

/// The public listener's handler: the gateway once it is built (503 before).
struct Front(Arc<std::sync::OnceLock<Gateway>>);

impl Handler for Front {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        match self.0.get() {
            Some(g) => g.call(req),
            None => Box::pin(async {
                let mut r = Response::new(full("starting\n"));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r
            }),
        }
    }
}

/// Reloads taken and refused, as the control socket shows them (tests wait on them).
#[derive(Default)]
struct Reloads {
    taken: AtomicU64,
    refused: AtomicU64,
}

/// The control socket's open path.
const STATUS_PATH: &str = "/status";

/// People's tokens on the control socket, checked by the gateway once it is built.
struct ControlTokens {
    gateway: Arc<std::sync::OnceLock<Gateway>>,
}

impl tianping_net::CallerVerifier for ControlTokens {
    fn verify(
        &self,
        credential: &tianping_net::Credential,
        now: tianping_core::UnixTime,
    ) -> Result<tianping_certs::CourtIdentity, tianping_net::CallerRefusal> {
        use tianping_net::CallerRefusal;
        let tianping_net::Credential::Bearer(_) = credential else {
            return Err(CallerRefusal::Refused(
                "the gateway's control socket takes a node token or a person's token, not an \
                 assertion"
                    .into(),
            ));
        };
        let Some(g) = self.gateway.get() else {
            return Err(CallerRefusal::Refused("the gateway is starting".into()));
        };
        g.control_caller(credential.token(), now)
            .map_err(CallerRefusal::Refused)
    }
}

/// The control socket: `GET /status` (open: the policy in force, the reload generation, the
/// audit events durable so far) and `POST /reload` (a `sysadmin`).
struct Control {
    /// Asks the signal loop for a reload.
    reload: tokio::sync::mpsc::Sender<()>,
    fixed: serde_json::Value,
    gateway: Arc<std::sync::OnceLock<Gateway>>,
    reloads: Arc<Reloads>,
    audit: Arc<AuditLog>,
}

impl Handler for Control {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let mut status = self.fixed.clone();
        if let Some(o) = status.as_object_mut() {
            if let Some(g) = self.gateway.get() {
                o.insert("policy".into(), g.policy_hash().to_string().into());
            }
            o.insert(
                "reload_generation".into(),
                self.reloads.taken.load(Ordering::SeqCst).into(),
            );
            o.insert(
                "reloads_refused".into(),
                self.reloads.refused.load(Ordering::SeqCst).into(),
            );
            // the audit events made durable so far (requests are queued and committed in
            // groups within 20 ms; every one counted here survives a crash)
            o.insert("audit_durable".into(), self.audit.size().into());
            o.insert("audit".into(), crate::audit_status::summary(&self.audit));
        }
        let (reload, audit, zone) = (
            self.reload.clone(),
            Arc::clone(&self.audit),
            self.fixed
                .get("zone")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        );
        Box::pin(async move {
            let (code, body) = match (req.method().as_str(), req.uri().path()) {
                ("GET", STATUS_PATH) => (StatusCode::OK, status),
                ("POST", "/reload") => {
                    let who = match req.extensions().get::<tianping_net::Caller>() {
                        Some(c) => match c.require(&Role::Sysadmin) {
                            Ok(id) => id.clone(),
                            Err(refused) => return refused,
                        },
                        None => return tianping_net::CallerRefusal::Missing.response(),
                    };
                    match reload_asked(&audit, &zone, &who, &reload).await {
                        Ok(()) => (
                            StatusCode::ACCEPTED,
                            json!({
                                "reload": "requested",
                                "by": who.name,
                                "reload_generation": status.get("reload_generation"),
                            }),
                        ),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": why })),
                    }
                }
                (_, p) if p.starts_with("/audit/v1/") => {
                    return crate::audit_api::serve(audit, zone, req).await;
                }
                (_, STATUS_PATH | "/reload") => (
                    StatusCode::METHOD_NOT_ALLOWED,
                    json!({ "error": "method not allowed" }),
                ),
                _ => (
                    StatusCode::NOT_FOUND,
                    json!({ "error": "no such endpoint" }),
                ),
            };
            let mut r: Response<ResponseBody> = Response::new(full(body.to_string()));
            *r.status_mut() = code;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        })
    }
}

/// A reload asked for on the control socket: audited (durable) under who asked, then handed to
/// the signal loop.
async fn reload_asked(
    audit: &Arc<AuditLog>,
    zone: &str,
    who: &tianping_certs::CourtIdentity,
    reload: &tokio::sync::mpsc::Sender<()>,
) -> Result<(), String> {
    let mut e = tianping_audit::Event::new(SystemClock.now(), "admin.reload");
    e.zone = zone.to_owned();
    e.component = "gateway".into();
    e.actor = who.name.clone();
    e.roles = who.roles.iter().map(|r| r.to_string()).collect();
    e.outcome = "ok".into();
    let queued = audit.append_prompt(&e).map_err(|e| e.to_string())?;
    queued.durable().await.map_err(|e| e.to_string())?;
    // a full queue already holds a reload that reads the files as they are now
    let _ = reload.try_send(());
    Ok(())
}

enum Signal {
    Stop,
    /// Reload; `policy` false when a SIGHUP finds the policy file as a reload on its change
    /// already read it (the cookie keys and certificates are still read again).
    Reload {
        policy: bool,
    },
}

/// SIGINT and SIGTERM (stop) and SIGHUP (reload), caught from before the gateway says it is
/// ready; and a change of a watched file (the zone's policy copy, its CRL: modification time or
/// length, looked at every [`WATCH_EVERY`]) is a reload too.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    watched: Vec<(PathBuf, Option<(std::time::SystemTime, u64)>)>,
    /// Reloads asked for on the control socket.
    asked: tokio::sync::mpsc::Receiver<()>,
    tick: tokio::time::Interval,
    /// The last reload was a file change's, and nothing changed since.
    watcher_took: bool,
}

/// How often the watched files are looked at.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A file's modification time and length, `None` if it cannot be read.
fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Signals {
    fn new(watch: Vec<PathBuf>, asked: tokio::sync::mpsc::Receiver<()>) -> miette::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            term: signal(SignalKind::terminate()).into_diagnostic()?,
            int: signal(SignalKind::interrupt()).into_diagnostic()?,
            hup: signal(SignalKind::hangup()).into_diagnostic()?,
            watched: watch
                .into_iter()
                .map(|p| {
                    let s = stamp(&p);
                    (p, s)
                })
                .collect(),
            asked,
            tick,
            watcher_took: false,
        })
    }

    /// Whether a watched file changed since last looked at (each change counted once).
    fn changed(&mut self) -> bool {
        let mut any = false;
        for (path, seen) in &mut self.watched {
            let now = stamp(path);
            if now != *seen {
                *seen = now;
                eprintln!("`{}` changed: reloading", path.display());
                any = true;
            }
        }
        any
    }

    async fn next(&mut self) -> Signal {
        loop {
            tokio::select! {
                _ = self.term.recv() => return Signal::Stop,
                _ = self.int.recv() => return Signal::Stop,
                _ = self.hup.recv() => {
                    // the files as read by this reload: no second reload for the same change,
                    // whichever of the signal and the change was seen first
                    let changed = self.changed();
                    let policy = changed || !self.watcher_took;
                    self.watcher_took = false;
                    return Signal::Reload { policy };
                }
                Some(()) = self.asked.recv() => {
                    // as a SIGHUP: no second policy reload for a change the watcher took
                    let changed = self.changed();
                    let policy = changed || !self.watcher_took;
                    self.watcher_took = false;
                    return Signal::Reload { policy };
                }
                _ = self.tick.tick() => {
                    if self.changed() {
                        self.watcher_took = true;
                        return Signal::Reload { policy: true };
                    }
                }
            }
        }
    }
}
