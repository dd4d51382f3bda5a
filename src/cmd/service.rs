//! `tianping service NAME --zone Z`: a sample case service of the policy (filing intake, case
//! management, the bank gateway, …), the HTTPS service a flow delivers to or a gateway route
//! forwards to, for `tianping up --demo`.
//!
//! It serves TLS with a certificate of the zone CA for `NAME.<zone>.<domain>`, made on first need
//! under `zones/<zone>/services/NAME/`, and publishes the address it bound in
//! `run/<zone>-service-NAME.addr` (`https ADDR`, and `admin ADDR`: its loopback `/healthz` and
//! `/metrics`). Every request but `GET /healthz` carries
//! either
//!
//! - `Tianping-Delivery`: a `delivery` token for audience `NAME`, signed by a node of the zone,
//!   whose `sha256` is the body's and whose flow and transfer are the `Tianping-Flow` and
//!   `Tianping-Transfer` headers; the delivery is stored atomically under `received/<id>/`
//!   (`payload` and `manifest.json`), once (the same transfer again is answered 200 and
//!   changes nothing); or
//! - `Tianping-Assertion`: a `user` token for audience `NAME` signed by the zone's gateway: the
//!   person reads `/` (what arrived, newest first), `/<transfer-id>` (its manifest),
//!   `/<transfer-id>/payload` (the payload) and `/courts/<court>/cases/<n>` (a sample case),
//!   as HTML, or JSON with `Accept: application/json`.
//!
//! Anything else is answered 401 with the reason, and the refusal printed to stderr.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use http::{Request, Response, StatusCode, header};
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_certs::{
    CertKind, LeafRequest, Pki, ServerTlsBuilder, TokenClaims, TokenKind, TokenVerifier,
};
use tianping_core::{
    Clock as _, DataDir, Existing, Fabric, FileMode, SystemClock, ZoneName, write_atomic,
};
use tianping_net::{Body, HostSet, ResponseBody, ServerOptions, full, serve_tls};

/// Options of `tianping service`.
#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    /// The service's name in the policy (`filing-intake`, `bank-gateway`, …).
    name: String,
    /// The zone it serves in.
    #[arg(long)]
    zone: ZoneName,
    /// The address to listen on (default: the zone's address, port 0).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// The largest delivery taken, in bytes.
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// `DIR/zones/<zone>/services/NAME`.
pub(crate) fn service_dir(dir: &DataDir, zone: &ZoneName, name: &str) -> PathBuf {
    dir.zone(zone).join("services").join(name)
}

/// `DIR/run/<zone>-service-NAME.addr`.
pub(crate) fn addr_file(dir: &DataDir, zone: &ZoneName, name: &str) -> PathBuf {
    dir.run().join(format!("{zone}-service-{name}.addr"))
}

/// The address of `listener` (`https` or `admin`) a running service published, if it did.
pub(crate) fn published(
    dir: &DataDir,
    zone: &ZoneName,
    name: &str,
    listener: &str,
) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(addr_file(dir, zone, name)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(listener)?.strip_prefix(' '))
        .and_then(|a| a.trim().parse().ok())
}

/// The service's TLS certificate, issued by the zone CA on first need.
fn certificate(
    dir: &DataDir,
    zone: &ZoneName,
    host: &str,
    name: &str,
) -> miette::Result<(PathBuf, PathBuf)> {
    let base = service_dir(dir, zone, name);
    let (pem, key) = (base.join("tls.pem"), base.join("tls.key"));
    if pem.exists() && key.exists() {
        return Ok((pem, key));
    }
    std::fs::create_dir_all(&base).into_diagnostic()?;
    let pki = Pki::open(&dir.pki()).into_diagnostic()?;
    let mut req = LeafRequest::new(CertKind::Server, host);
    req.dns = vec![host.to_owned()];
    let issued = pki
        // the machine's time, not a demonstration's offset clock: TLS peers check validity
        // against their own clocks
        .issue(
            zone,
            &req,
            tianping_core::UnixTime::from_system_time(std::time::SystemTime::now()),
        )
        .into_diagnostic()
        .wrap_err_with(|| format!("issuing the certificate of `{host}`"))?;
    let _ = std::fs::remove_file(&pem);
    let _ = std::fs::remove_file(&key);
    Pki::write_issued(&issued, &base.join("tls")).into_diagnostic()
}

struct Service {
    dir: DataDir,
    domain: String,
    name: String,
    zone: ZoneName,
    gateway: String,
    received: PathBuf,
    deliveries: TokenVerifier,
    users: TokenVerifier,
    /// The first path segments of the zone's routes to this service (`filings` of
    /// `/filings/**`): the gateway forwards the route's path as it came, so the service reads
    /// its pages under each of them as under `/`.
    mounts: Vec<String>,
}

/// The literal first segments of the paths of `policy`'s routes to `service` (none for a path
/// starting with a variable, or with `courts`, which the case pages read whole).
fn mounts(policy: &tianping_policies::Policy, service: &str) -> Vec<String> {
    let mut out: Vec<String> = policy
        .routes()
        .filter(|r| r.target() == tianping_policies::Outcome::Service(service))
        .flat_map(|r| r.paths().collect::<Vec<_>>())
        .filter_map(|p| {
            p.trim_start_matches('/')
                .split('/')
                .next()
                .map(str::to_owned)
        })
        .filter(|s| !s.is_empty() && !s.starts_with('{') && !s.contains('*') && s != "courts")
        .collect();
    out.sort();
    out.dedup();
    out
}

/// [`mounts`] of the zone's own policy copy (none when it does not check: the service then
/// answers under `/` alone).
fn zone_mounts(dir: &DataDir, zone: &ZoneName, service: &str) -> Vec<String> {
    let path = dir.zone_policy(zone);
    let Ok(source) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let checked = tianping_policies::check(&path.display().to_string(), &source);
    checked
        .policy()
        .map(|p| mounts(p, service))
        .unwrap_or_default()
}

/// Who a request is from, once its token verified.
enum Caller {
    Delivery {
        flow: String,
        transfer: String,
        sha256: [u8; 32],
    },
    User {
        sub: String,
        roles: Vec<String>,
        court: Option<String>,
    },
}

pub(crate) fn run(data: &Path, args: ServiceArgs) -> miette::Result<std::process::ExitCode> {
    let dir = DataDir::new(data);
    let fabric = Fabric::load(&dir.fabric()).map_err(miette::Report::new)?;
    let zl = fabric
        .zone(&args.zone)
        .ok_or_else(|| miette!("`fabric.toml` has no zone `{}`", args.zone))?;
    if !args
        .name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || args.name.is_empty()
    {
        return Err(miette!("`{}` is not a service name", args.name));
    }
    let host = format!("{}.{}.{}", args.name, args.zone, fabric.domain);
    let (pem, key) = certificate(&dir, &args.zone, &host, &args.name)?;
    let trust = super::exchange::zone_trust(&dir, &args.zone)?;
    let deliveries = TokenVerifier::new(&trust, &args.zone, args.name.clone(), TokenKind::Delivery)
        .into_diagnostic()?;
    // the gateway reuses a person's assertion for this service until near its expiry
    let users = TokenVerifier::new(&trust, &args.zone, args.name.clone(), TokenKind::User)
        .into_diagnostic()?
        .reusable();
    let received = service_dir(&dir, &args.zone, &args.name).join("received");
    std::fs::create_dir_all(&received).into_diagnostic()?;
    let service = Arc::new(Service {
        dir: dir.clone(),
        domain: fabric.domain.clone(),
        name: args.name.clone(),
        zone: args.zone.clone(),
        gateway: zl.gateway_host.clone(),
        received,
        deliveries,
        users,
        mounts: zone_mounts(&dir, &args.zone, &args.name),
    });
    let tls = ServerTlsBuilder::new(pem, key)
        .build()
        .into_diagnostic()
        .wrap_err("the service's TLS certificate")?;
    let listen = args.listen.unwrap_or(SocketAddr::new(zl.address, 0));
    let addr_path = addr_file(&dir, &args.zone, &args.name);
    let _ = std::fs::remove_file(&addr_path);
    let rt = super::exchange::runtime()?;
    rt.block_on(async move {
        let mut options = ServerOptions::new(HostSet::new([host.clone()]));
        options.limits.body_ceiling = options.limits.body_ceiling.max(MAX_BODY);
        let handler = {
            let service = Arc::clone(&service);
            move |req: Request<Body>| {
                let service = Arc::clone(&service);
                async move { service.answer(req).await }
            }
        };
        let server = serve_tls(listen, Arc::new(tls), options, handler)
            .await
            .into_diagnostic()?;
        let bound = server.local_addr();
        let admin = tianping_net::serve_admin(
            SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0),
            vec![server.metrics()],
        )
        .await
        .into_diagnostic()?;
        write_atomic(
            &addr_path,
            format!("https {bound}\nadmin {}\n", admin.local_addr()).as_bytes(),
            FileMode::Public,
            Existing::Replace,
        )
        .into_diagnostic()?;
        println!(
            "service {} of zone {} on https://{host}:{} ({bound}); ready",
            service.name,
            service.zone,
            bound.port()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .into_diagnostic()?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = std::fs::remove_file(&addr_path);
        drop(admin);
        drop(server);
        Ok::<_, miette::Report>(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn header_str<'a>(req: &'a Request<Body>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn answer(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut resp = Response::new(full(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<ResponseBody> {
    answer(status, "application/json", v.to_string())
}

fn refuse(status: StatusCode, why: &str) -> Response<ResponseBody> {
    json(status, &serde_json::json!({ "error": why }))
}

/// `<`, `>`, `&` and quotes written as entities.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The folder of a transfer id: letters, digits, `.` and `-` kept, anything else `_XX`.
fn folder(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "_{b:02x}");
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(h) = bytes.get(i + 1..i + 3)
            && let Ok(h) = std::str::from_utf8(h)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Service {
    fn caller(&self, req: &Request<Body>) -> Result<Caller, String> {
        let now = SystemClock.now();
        if let Some(t) = req.headers().get(TokenKind::Delivery.header_name()) {
            let v = self
                .deliveries
                .verify_at(t.as_bytes(), now)
                .map_err(|e| format!("delivery token refused: {e}"))?;
            return match v.claims {
                TokenClaims::Delivery(d) => Ok(Caller::Delivery {
                    flow: d.flow,
                    transfer: d.transfer,
                    sha256: d.content_sha256,
                }),
                _ => Err("not a delivery token".to_owned()),
            };
        }
        if let Some(t) = req.headers().get(TokenKind::User.header_name()) {
            let v = self
                .users
                .verify_at(t.as_bytes(), now)
                .map_err(|e| format!("assertion refused: {e}"))?;
            if v.signer.name != self.gateway {
                return Err(format!(
                    "assertions come from the zone's gateway `{}`, not from `{}`",
                    self.gateway, v.signer.name
                ));
            }
            return match v.claims {
                TokenClaims::User(u) => Ok(Caller::User {
                    sub: u.sub.to_string(),
                    roles: u.roles.iter().map(|r| r.as_str().to_owned()).collect(),
                    court: u.court.map(|c| c.to_string()),
                }),
                _ => Err("not a user token".to_owned()),
            };
        }
        Err("neither a `Tianping-Delivery` nor a `Tianping-Assertion` token".to_owned())
    }

    async fn answer(&self, req: Request<Body>) -> Response<ResponseBody> {
        if req.uri().path() == "/healthz" && req.method() == http::Method::GET {
            return answer(StatusCode::OK, "text/plain", "ok\n");
        }
        let caller = match self.caller(&req) {
            Ok(c) => c,
            Err(why) => {
                eprintln!(
                    "service {}: refused {} {}: {why}",
                    self.name,
                    req.method(),
                    req.uri().path()
                );
                return refuse(StatusCode::UNAUTHORIZED, &why);
            }
        };
        match caller {
            Caller::Delivery {
                flow,
                transfer,
                sha256,
            } => {
                if req.method() != http::Method::POST {
                    return refuse(StatusCode::METHOD_NOT_ALLOWED, "a delivery is a POST");
                }
                match self.take(req, &flow, &transfer, sha256).await {
                    Ok(done) => json(StatusCode::OK, &done),
                    Err((status, why)) => {
                        eprintln!("service {}: delivery {transfer} refused: {why}", self.name);
                        refuse(status, &why)
                    }
                }
            }
            Caller::User { sub, roles, court } => {
                if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
                    return refuse(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "a reader only reads (GET, HEAD)",
                    );
                }
                let wants_json =
                    header_str(&req, "accept").is_some_and(|a| a.contains("application/json"));
                let who = Reader { sub, roles, court };
                self.read(req.uri().path(), &who, wants_json)
            }
        }
    }

    /// Checks and stores a delivery.
    async fn take(
        &self,
        req: Request<Body>,
        flow: &str,
        transfer: &str,
        sha256: [u8; 32],
    ) -> Result<serde_json::Value, (StatusCode, String)> {
        let bad = |why: String| (StatusCode::UNAUTHORIZED, why);
        if header_str(&req, "tianping-flow") != Some(flow) {
            return Err(bad(format!(
                "the token's flow `{flow}` is not the `Tianping-Flow` header's"
            )));
        }
        if header_str(&req, "tianping-transfer") != Some(transfer) {
            return Err(bad(format!(
                "the token's transfer `{transfer}` is not the `Tianping-Transfer` header's"
            )));
        }
        let mut manifest = serde_json::Map::new();
        for (k, v) in req.headers() {
            if let Some(field) = k.as_str().strip_prefix("tianping-")
                && field != "delivery"
                && let Ok(v) = v.to_str()
            {
                let v = match field {
                    "correlation" | "schema" => percent_decode(v),
                    _ => v.to_owned(),
                };
                manifest.insert(field.to_owned(), serde_json::Value::from(v));
            }
        }
        let body = req
            .into_body()
            .bytes()
            .await
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("the body: {e}")))?;
        if tianping_crossdomain::sha256(&body) != sha256 {
            return Err(bad("the body's SHA-256 is not the token's".to_owned()));
        }
        let hex = tianping_crossdomain::hex(&sha256);
        manifest.insert("content-sha256".into(), hex.clone().into());
        manifest.insert("size".into(), body.len().into());
        manifest.insert("received".into(), SystemClock.now().as_secs().into());
        let place = self.received.join(folder(transfer));
        if place.exists() {
            return Ok(serde_json::json!({ "transfer": transfer, "stored": "before" }));
        }
        let tmp = self.received.join(format!(".{}.tmp", folder(transfer)));
        let stored = (|| -> std::io::Result<()> {
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)?;
            write_atomic(
                &tmp.join("payload"),
                &body,
                FileMode::Public,
                Existing::Replace,
            )
            .map_err(std::io::Error::other)?;
            let text = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
            write_atomic(
                &tmp.join("manifest.json"),
                &text,
                FileMode::Public,
                Existing::Replace,
            )
            .map_err(std::io::Error::other)?;
            std::fs::rename(&tmp, &place)
        })();
        stored.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("storing: {e}")))?;
        println!(
            "service {}: received {transfer} on {flow} ({} bytes, sha256 {hex})",
            self.name,
            body.len()
        );
        if self.name == "bank-gateway" && flow == "enforcement-inquiry" {
            let notice: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let (dir, domain, inquiry) =
                (self.dir.clone(), self.domain.clone(), transfer.to_owned());
            tokio::spawn(async move {
                match bank_answer(&dir, &domain, &inquiry, &notice).await {
                    Ok(id) => {
                        println!("service bank-gateway: answered {inquiry} with transfer {id}")
                    }
                    Err(e) => eprintln!("service bank-gateway: no answer to {inquiry}: {e}"),
                }
            });
        }
        Ok(serde_json::json!({ "transfer": transfer, "stored": "now" }))
    }

    /// Every stored delivery's manifest, newest first.
    fn list(&self) -> Vec<serde_json::Value> {
        let mut items: Vec<serde_json::Value> = std::fs::read_dir(&self.received)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .filter_map(|e| std::fs::read(e.path().join("manifest.json")).ok())
                    .filter_map(|b| serde_json::from_slice(&b).ok())
                    .collect()
            })
            .unwrap_or_default();
        let at = |v: &serde_json::Value| v.get("received").and_then(serde_json::Value::as_u64);
        items.sort_by_key(|b| std::cmp::Reverse(at(b)));
        items
    }

    fn read(&self, path: &str, who: &Reader, wants_json: bool) -> Response<ResponseBody> {
        let mut parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        // under a route's mount (`/filings/…`), the links keep it
        let mount = match parts.first() {
            Some(first) if self.mounts.iter().any(|m| m == first) => {
                let m = format!("/{first}");
                parts.remove(0);
                m
            }
            _ => String::new(),
        };
        match parts.as_slice() {
            [] => {
                let items = self.list();
                if wants_json {
                    return json(
                        StatusCode::OK,
                        &serde_json::json!({ "service": self.name, "reader": who.sub, "received": items }),
                    );
                }
                let mut rows = String::new();
                for m in &items {
                    let f = |k: &str| esc(m.get(k).map(value_text).unwrap_or_default().as_str());
                    let id = m.get("transfer").map(value_text).unwrap_or_default();
                    let _ = writeln!(
                        rows,
                        "<tr><td><a href=\"{mount}/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
                         <td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&tianping_crossdomain::percent(&id)),
                        esc(&id),
                        f("flow"),
                        f("kind"),
                        f("size"),
                        f("content-sha256"),
                        f("submitter"),
                        f("received"),
                        f("correlation"),
                    );
                }
                self.page(
                    who,
                    &format!("{} received", items.len()),
                    &format!(
                        "<table><tr><th>transfer</th><th>flow</th><th>kind</th><th>size</th>\
                         <th>sha256</th><th>submitter</th><th>received (unix time)</th><th>in reply to</th></tr>\n{rows}</table>"
                    ),
                )
            }
            ["courts", court, "cases", n] => {
                let case = sample_case(court, n);
                if wants_json {
                    return json(StatusCode::OK, &case);
                }
                let mut body = String::new();
                if let Some(o) = case.as_object() {
                    for (k, v) in o {
                        let _ = write!(body, "<p><b>{}</b>: {}</p>", esc(k), esc(&value_text(v)));
                    }
                }
                self.page(who, &format!("case {n} of court {court}"), &body)
            }
            [id] => {
                let id = percent_decode(id);
                let Some(m) = self.manifest(&id) else {
                    return refuse(StatusCode::NOT_FOUND, "no such transfer here");
                };
                if wants_json {
                    return json(StatusCode::OK, &m);
                }
                let pretty = serde_json::to_string_pretty(&m).unwrap_or_default();
                self.page(
                    who,
                    &format!("transfer {id}"),
                    &format!(
                        "<pre>{}</pre><p><a href=\"{mount}/{}/payload\">download the payload</a></p>",
                        esc(&pretty),
                        esc(&tianping_crossdomain::percent(&id))
                    ),
                )
            }
            [id, "payload"] => {
                let id = percent_decode(id);
                let Some(m) = self.manifest(&id) else {
                    return refuse(StatusCode::NOT_FOUND, "no such transfer here");
                };
                let ct = m
                    .get("content-type")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                match std::fs::read(self.received.join(folder(&id)).join("payload")) {
                    Ok(bytes) => answer(StatusCode::OK, &ct, bytes),
                    Err(e) => refuse(StatusCode::NOT_FOUND, &e.to_string()),
                }
            }
            _ => refuse(StatusCode::NOT_FOUND, "no such page"),
        }
    }

    fn manifest(&self, id: &str) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.received.join(folder(id)).join("manifest.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn page(&self, who: &Reader, title: &str, body: &str) -> Response<ResponseBody> {
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{name}: {title}</title>\
             </head><body><h1>{name} ({zone})</h1><p>signed in: {sub} ({roles}{court})</p>\
             <h2>{title}</h2>\n{body}\n</body></html>\n",
            name = esc(&self.name),
            zone = esc(self.zone.as_str()),
            title = esc(title),
            sub = esc(&who.sub),
            roles = esc(&who.roles.join(", ")),
            court = who
                .court
                .as_deref()
                .map(|c| format!(", court {}", esc(c)))
                .unwrap_or_default(),
        );
        answer(StatusCode::OK, "text/html; charset=utf-8", html)
    }
}

/// The demo partner who answers for the bank, with a hardware client certificate of `external`.
const BANK_PARTNER: &str = "bank.feng";

/// The bank's answer to the inquiry `inquiry` (its assistance notice `notice`): an
/// `inquiry-result`, submitted as [`BANK_PARTNER`] (mTLS, `acr cert`) through the external
/// gateway's `/answers` route on the `enforcement-answer` flow, in reply to the inquiry; tried
/// again with backoff for a minute while the gateway does not take it. Returns the answer's
/// transfer id.
async fn bank_answer(
    dir: &DataDir,
    domain: &str,
    inquiry: &str,
    notice: &serde_json::Value,
) -> Result<String, String> {
    let zone: ZoneName = "external".parse().map_err(|e| format!("{e}"))?;
    let certs = dir.root().join("demo-certs");
    let chain = std::fs::read(certs.join(format!("{BANK_PARTNER}.pem")))
        .map_err(|e| format!("{BANK_PARTNER}'s certificate: {e}"))?;
    let key = std::fs::read(certs.join(format!("{BANK_PARTNER}.key")))
        .map_err(|e| format!("{BANK_PARTNER}'s key: {e}"))?;
    let trust = std::fs::read(dir.zone_trust_bundle(&zone)).map_err(|e| e.to_string())?;
    let host = format!("gw.{zone}.{domain}");
    let text = |k: &str| {
        notice
            .get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let answer = serde_json::json!({
        "notice_no": text("notice_no").unwrap_or_else(|| inquiry.chars().take(64).collect()),
        "bank": text("bank").unwrap_or_else(|| "示例银行".to_owned()),
        "status": "found",
        "accounts": [{
            "account": "6222-0200-0001",
            "currency": "CNY",
            "balance_fen": 1_234_500
        }],
        "answered_at": rfc3339(SystemClock.now().as_secs()),
    });
    let mut wait = std::time::Duration::from_millis(250);
    let by = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let tried = async {
            let addr =
                tianping_core::published_addrs(dir, &zone, tianping_core::Component::Gateway)
                    .map_err(|e| e.to_string())?
                    .get(&tianping_core::Listener::Public)
                    .copied()
                    .ok_or("the external gateway has published no address")?;
            let http = tianping_net::HttpsClientBuilder::new(trust.clone())
                .resolve(host.clone(), addr)
                .client_cert(chain.clone(), key.clone())
                .build()
                .map_err(|e| e.to_string())?;
            let url = format!(
                "https://{host}:{}/answers?kind=json&schema=inquiry-result&correlation={}",
                addr.port(),
                tianping_crossdomain::percent(inquiry)
            );
            let r = http
                .post(&url, "application/json", answer.to_string())
                .await
                .map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            if r.status.is_success() {
                Ok(v.get("transfer")
                    .map(value_text)
                    .unwrap_or_else(|| v.to_string()))
            } else {
                Err(format!("the gateway answered {}: {v}", r.status))
            }
        }
        .await;
        match tried {
            Ok(id) => return Ok(id),
            Err(e) if std::time::Instant::now() > by => return Err(e),
            Err(e) => {
                eprintln!("service bank-gateway: answering {inquiry}: {e}; again in {wait:?}")
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(10));
    }
}

/// `secs` since the epoch as an RFC 3339 time in UTC (`2026-12-04T00:30:00Z`).
fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // days to a civil date (H. Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The person reading.
struct Reader {
    sub: String,
    roles: Vec<String>,
    court: Option<String>,
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A sample case of a court: made up from its number, the same every time.
fn sample_case(court: &str, n: &str) -> serde_json::Value {
    let seed = n
        .bytes()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    let causes = ["合同纠纷", "民间借贷纠纷", "劳动争议", "房屋租赁合同纠纷"];
    let judges = ["李明", "王芳"];
    let pick = |list: &[&'static str], k: u32| -> &'static str {
        let len = u32::try_from(list.len()).unwrap_or(1).max(1);
        list.get(usize::try_from(k % len).unwrap_or(0))
            .copied()
            .unwrap_or_default()
    };
    serde_json::json!({
        "court": court,
        "number": format!("(2026)京0105民初{n}号"),
        "cause": pick(&causes, seed),
        "judge": pick(&judges, seed / 7),
        "parties": ["马先生", "某某银行股份有限公司"],
        "status": "审理中",
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_service_reads_its_pages_under_its_routes_mounts() {
        let p = tianping_policies::check("default.tp", tianping_policies::DEFAULT_POLICY)
            .into_policy()
            .unwrap_or_else(|| unreachable!("the default policy checks"));
        assert_eq!(super::mounts(&p, "filing-intake"), ["filings"]);
        assert_eq!(super::mounts(&p, "enforcement-desk"), ["enforcement"]);
        assert_eq!(super::mounts(&p, "judgment-portal"), ["judgments"]);
        // `/courts/{court}/cases/**` is read whole
        assert!(super::mounts(&p, "case-management").is_empty());
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_344_200), "2026-12-04T00:30:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
