//! `tianping exchange`: the one-way link's daemons (`send`, `receive`), `status` (both
//! daemons' control sockets), `submit` (a payload streamed to the running sender, which decides
//! on it with the zone's policy and filters, bundles, signs and spools it, and answers the
//! transfer id `<zone>:<sequence>`; the submitter is a user asserted by the gateway, `--as-user
//! TOKEN-FILE`, or else the gateway itself as a machine), `held` and `approve` (releases waiting
//! for approvals), `submit-bundle` (a ready-made bundle streamed to the sender's socket with a
//! node token of the zone's gateway: its manifest is checked against the policy, no filter runs),
//! `resend` (retained transfers sent again, with the
//! sender's own node token) and, for tests, `submit-raw`, which spools a file as a transfer
//! without policy checks. The spool's state is one `sled` database, which one process opens at a
//! time: `submit-raw` works while the sender is stopped (the sender sends what is spooled when it
//! starts); `submit` goes through the running sender.
//!
//! Each daemon serves its control socket (`run/<zone>-exchange-sender.sock`,
//! `run/<zone>-exchange-receiver.sock`, see `tianping_crossdomain`'s control module) and its
//! admin listener (`/healthz`, `/metrics` with the link counters; on port 0 its address is
//! published in `run/<zone>-<component>.addr`).
//!
//! Links come from `fabric.toml` (rate, repair, MTU, retain); a link's id is its `id` there or
//! one derived from its zone names, the same on both sides whatever the order of the links. No link starts out of a zone its policy copy seals, whatever
//! `fabric.toml` says. The sender's spool is `zones/<zone>/exchange-sender/spool/`, the
//! receiver's store `zones/<zone>/exchange-receiver/store/` with bundles delivered into
//! `zones/<zone>/exchange-receiver/delivered/` (a folder sink until delivery comes).

mod receive;
mod send;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_core::{Component, DataDir, Fabric, Link, Listener, SystemClock, ZoneName};
use tianping_crossdomain::{LinkConfig, Spool};

/// `tianping exchange ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ExchangeCmd {
    /// Send every spooled transfer of the zone's links, and keep sending what is spooled.
    Send(ZoneArg),
    /// Receive the links into the zone, storing complete bundles.
    Receive(ZoneArg),
    /// Spool a file as a transfer to another zone, without policy checks (tests only).
    #[command(hide = true)]
    SubmitRaw(SubmitRaw),
    /// Show the zone's sender and receiver: per link, what is spooled, sent, received, lost.
    Status(ZoneArg),
    /// Submit a payload to the running sender: checked against the zone's policy and filters,
    /// bundled, signed and spooled; prints the transfer id.
    Submit(Submit),
    /// Stream a ready-made bundle to the running sender (its manifest checked against the
    /// policy; no filter runs).
    SubmitBundle(SubmitRaw),
    /// The transfers held for approval.
    Held(Held),
    /// Approve a held transfer (as the user of `--as-user`).
    Approve(Approve),
    /// Send again the retained transfers of a link from an id on (an operator's action, when a
    /// receiver started late or lost transfers).
    Resend(Resend),
    /// The receipts the zone keeps, of a transfer or with a correlation id.
    Receipts(receive::ReceiptsArg),
}

/// `resend`.
#[derive(Debug, Args)]
pub(crate) struct Resend {
    /// The sending zone.
    #[arg(long)]
    zone: ZoneName,
    /// The receiving zone.
    #[arg(long)]
    to: ZoneName,
    /// The first transfer id to send again.
    #[arg(long)]
    from: u64,
}

/// A zone.
#[derive(Debug, Args)]
pub(crate) struct ZoneArg {
    /// The zone.
    #[arg(long)]
    zone: ZoneName,
}

/// `submit-raw`.
#[derive(Debug, Args)]
pub(crate) struct SubmitRaw {
    /// The sending zone.
    #[arg(long)]
    zone: ZoneName,
    /// The receiving zone.
    #[arg(long)]
    to: ZoneName,
    /// The bundle to send.
    #[arg(long)]
    file: std::path::PathBuf,
}

pub(crate) fn run(data: &Path, cmd: ExchangeCmd) -> miette::Result<ExitCode> {
    let dir = DataDir::new(data);
    let fabric = Fabric::load(&dir.fabric()).into_diagnostic()?;
    match cmd {
        ExchangeCmd::Send(z) => send::send(&dir, &fabric, &z.zone),
        ExchangeCmd::Receipts(r) => receive::receipts(&dir, &r),
        ExchangeCmd::Receive(z) => receive::receive(&dir, &fabric, &z.zone),
        ExchangeCmd::Status(z) => status(&dir, &z.zone),
        ExchangeCmd::Submit(s) => {
            let c = cred(&dir, &s.zone, s.as_user.as_deref())?;
            let mut target = format!(
                "/exchange/v1/submit?flow={}&kind={}",
                enc(&s.flow),
                enc(&s.kind)
            );
            for (k, v) in [("schema", &s.schema), ("correlation", &s.correlation)] {
                if let Some(v) = v {
                    target.push_str(&format!("&{k}={}", enc(v)));
                }
            }
            for l in &s.labels {
                target.push_str(&format!("&label={}", enc(l)));
            }
            if s.redacted {
                target.push_str("&redacted=1");
            }
            let body = control(&dir, &s.zone, "POST", &target, &c, Some(&s.file))?;
            let id = body
                .get("transfer")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            println!("{id}");
            if body.get("held").and_then(serde_json::Value::as_bool) == Some(true) {
                let need = body.get("need").and_then(serde_json::Value::as_u64);
                eprintln!(
                    "held for approval: {} more approvals needed (`tianping exchange approve --zone {} --transfer {id}`)",
                    need.unwrap_or_default(),
                    s.zone
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ExchangeCmd::Held(h) => {
            let c = cred(&dir, &h.zone, h.as_user.as_deref())?;
            let body = control(&dir, &h.zone, "GET", "/exchange/v1/held", &c, None)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        ExchangeCmd::Approve(a) => {
            let c = cred(&dir, &a.zone, Some(&a.as_user))?;
            let target = format!("/exchange/v1/approve?transfer={}", enc(&a.transfer));
            let body = control(&dir, &a.zone, "POST", &target, &c, None)?;
            let released = body.get("released").and_then(serde_json::Value::as_bool);
            if released == Some(true) {
                println!("{} released", a.transfer);
            } else {
                let need = body.get("need").and_then(serde_json::Value::as_u64);
                println!(
                    "{} approved; {} more approvals needed",
                    a.transfer,
                    need.unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ExchangeCmd::SubmitBundle(s) => {
            link_between(&fabric, &s.zone, &s.to)?;
            let token = Cred::Bearer(node_token(&dir, &s.zone, Component::Gateway)?);
            let target = format!("/exchange/v1/submit-bundle?to={}", s.to);
            let file = s.file.clone();
            let body = control(&dir, &s.zone, "POST", &target, &token, Some(&file))?;
            let transfer = body.get("transfer").and_then(serde_json::Value::as_u64);
            println!("{}", transfer.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        ExchangeCmd::Resend(r) => {
            link_between(&fabric, &r.zone, &r.to)?;
            let token = Cred::Bearer(node_token(&dir, &r.zone, Component::ExchangeSender)?);
            let target = format!("/exchange/v1/resend?to={}&from={}", r.to, r.from);
            let body = control(&dir, &r.zone, "POST", &target, &token, None)?;
            for pair in body
                .get("resent")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
            {
                println!(
                    "{} -> {}",
                    pair.get(0).unwrap_or(&serde_json::Value::Null),
                    pair.get(1).unwrap_or(&serde_json::Value::Null)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ExchangeCmd::SubmitRaw(s) => {
            let (id, _) = link_between(&fabric, &s.zone, &s.to)?;
            let spool = open_spool(&dir, &s.zone)?;
            let mut file = std::fs::File::open(&s.file)
                .into_diagnostic()
                .wrap_err_with(|| format!("reading `{}`", s.file.display()))?;
            let transfer = spool.submit(id, &mut file).into_diagnostic()?;
            println!("{transfer}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn link_between<'a>(
    fabric: &'a Fabric,
    from: &ZoneName,
    to: &ZoneName,
) -> miette::Result<(u32, &'a Link)> {
    if let Some(l) = fabric.link(from, to) {
        return Ok((l.id, l));
    }
    Err(miette!("`fabric.toml` has no link from `{from}` to `{to}`"))
}

pub(super) fn open_spool(dir: &DataDir, zone: &ZoneName) -> miette::Result<Spool> {
    Spool::open(&dir.component(zone, Component::ExchangeSender).join("spool")).into_diagnostic()
}

pub(super) fn config(id: u32, link: &Link) -> LinkConfig {
    LinkConfig {
        link: id,
        mtu: link.mtu,
        repair_percent: u16::from(link.repair_percent),
        block_symbols: u16::try_from(link.block_symbols().min(8192)).unwrap_or(8192),
        ..LinkConfig::new(id)
    }
}

/// Whether the zone's policy copy seals it, and the body limit of a submission to each zone:
/// the largest flow to it and room for a bundle header.
pub(super) fn zone_policy(
    dir: &DataDir,
    zone: &ZoneName,
) -> miette::Result<(bool, std::collections::BTreeMap<String, u64>)> {
    let path = dir.zone_policy(zone);
    let source = std::fs::read_to_string(&path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", path.display()))?;
    let checked = tianping_policies::check(&path.display().to_string(), &source);
    let policy = checked.policy().ok_or_else(|| {
        miette!(
            "the zone's policy `{}` does not pass `tianping policy check`",
            path.display()
        )
    })?;
    let mut limits = std::collections::BTreeMap::new();
    for f in policy.flows().filter(|f| f.from() == zone) {
        let limit = f
            .max_size()
            .saturating_add(tianping_crossdomain::MAX_HEADER as u64 + 4)
            .min(tianping_crossdomain::MAX_TRANSFER);
        let e = limits.entry(f.to().to_string()).or_insert(0);
        *e = limit.max(*e);
    }
    Ok((policy.is_sealed(zone.as_str()), limits))
}

pub(crate) fn runtime() -> miette::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()
}

/// The control socket's verifier: node tokens of the zone for `audience`.
pub(crate) fn node_callers(
    dir: &DataDir,
    zone: &ZoneName,
    audience: &str,
) -> miette::Result<tianping_net::NodeCallers> {
    let trust = zone_trust(dir, zone)?;
    let nodes =
        tianping_certs::TokenVerifier::new(&trust, zone, audience, tianping_certs::TokenKind::Node)
            .into_diagnostic()?;
    tianping_net::NodeCallers::new(nodes).map_err(|e| miette!("{e}"))
}

pub(crate) fn zone_trust(
    dir: &DataDir,
    zone: &ZoneName,
) -> miette::Result<tianping_certs::TrustStore> {
    let trust_path = dir.zone_trust_bundle(zone);
    let trust_pem = std::fs::read(&trust_path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", trust_path.display()))?;
    tianping_certs::TrustStore::from_pem(&trust_pem, &[]).into_diagnostic()
}

/// Sets `stop` on `SIGTERM` or `SIGINT`, from a thread of its own: the daemon's threads end
/// their loops, and its stores are flushed and closed as the daemon returns. The handlers are in
/// place when this returns, before the daemon says it is ready.
pub(super) fn stop_on_signal(stop: Arc<std::sync::atomic::AtomicBool>) -> miette::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let (mut term, mut int) = rt
        .block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })
        .into_diagnostic()?;
    std::thread::Builder::new()
        .name("stop-on-signal".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .into_diagnostic()?;
    Ok(())
}

/// Serves the admin listener of `component` and publishes its address.
pub(crate) async fn admin(
    dir: &DataDir,
    fabric: &Fabric,
    zone: &ZoneName,
    component: Component,
    metrics: Vec<Arc<tianping_net::Metrics>>,
    registry: Arc<tianping_net::Registry>,
) -> miette::Result<tianping_net::AdminHandle> {
    let addr = fabric
        .configured_addr(zone, component, &Listener::Admin)
        .ok_or_else(|| {
            miette!(
                "`fabric.toml` gives zone `{zone}` no admin port for `{}`",
                component.as_str()
            )
        })?;
    let handle = tianping_net::serve_admin_with(addr, metrics, registry)
        .await
        .into_diagnostic()?;
    tianping_core::publish_addr(dir, zone, component, &Listener::Admin, handle.local_addr())
        .into_diagnostic()?;
    Ok(handle)
}

/// A node token of `component` of the zone for the sender's socket (audience
/// `exchange-sender`), signed with its node key.
fn node_token(dir: &DataDir, zone: &ZoneName, component: Component) -> miette::Result<String> {
    let (cert, key) = dir.node(zone, component);
    let key_pem = std::fs::read_to_string(&key)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", key.display()))?;
    let signer = tianping_audit::signer_from_pem(&key_pem)
        .map_err(|e| miette!("`{}`: {e}", key.display()))?;
    let chain_pem = std::fs::read(&cert)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", cert.display()))?;
    let chain = tianping_certs::certs_from_pem(&chain_pem).into_diagnostic()?;
    let signer = tianping_certs::TokenSigner::new(Arc::new(signer), &chain).into_diagnostic()?;
    signer
        .sign(
            &tianping_certs::TokenClaims::Node,
            "exchange-sender",
            tianping_core::Clock::now(&SystemClock),
            std::time::Duration::from_secs(30),
        )
        .into_diagnostic()
}

/// One request to the zone's sender socket, the answer's JSON on 200, its error otherwise.
fn control(
    dir: &DataDir,
    zone: &ZoneName,
    method: &str,
    target: &str,
    token: &Cred,
    file: Option<&Path>,
) -> miette::Result<serde_json::Value> {
    let socket = dir.socket(zone, Component::ExchangeSender);
    let rt = runtime()?;
    let (status, body) = rt.block_on(async {
        let body = match file {
            Some(f) => tianping_net::ControlBody::file(f).await.into_diagnostic()?,
            None => tianping_net::ControlBody::empty(),
        };
        let req = http::Request::builder().method(method).uri(target);
        let req = match token {
            Cred::Bearer(t) => req.header(http::header::AUTHORIZATION, format!("Bearer {t}")),
            Cred::Assertion(t) => req.header(tianping_net::ASSERTION_HEADER, t.as_str()),
        };
        let req = req.body(body).into_diagnostic()?;
        let resp = tianping_net::control_send(&socket, req, tianping_net::CONTROL_TIMEOUT)
            .await
            .map_err(|e| not_running(&socket, "exchange-sender", zone, &e))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().bytes().await.map_err(|e| miette!("{e}"))?;
        miette::Result::<_>::Ok((status, body))
    })?;
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !(200..300).contains(&status) {
        let why = value
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        return Err(miette!("the sender refused ({status}): {why}"));
    }
    Ok(value)
}

fn not_running(
    socket: &Path,
    what: &str,
    zone: &ZoneName,
    e: &tianping_net::NetError,
) -> miette::Report {
    miette!(
        "the {what} of `{zone}` is not running (`{}`: {e})",
        socket.display()
    )
}

/// Prints both daemons' status, saying which is not running.
fn status(dir: &DataDir, zone: &ZoneName) -> miette::Result<ExitCode> {
    let rt = runtime()?;
    let mut code = ExitCode::SUCCESS;
    for (component, what) in [
        (Component::ExchangeSender, "exchange-sender"),
        (Component::ExchangeReceiver, "exchange-receiver"),
    ] {
        let socket = dir.socket(zone, component);
        let got = rt.block_on(tianping_net::control_request(
            &socket,
            "GET",
            tianping_crossdomain::STATUS_PATH,
            Vec::<u8>::new(),
        ));
        match got {
            Ok((200, body)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            Ok((s, _)) => {
                println!("{what} of `{zone}`: status {s}");
                code = ExitCode::FAILURE;
            }
            Err(e) => {
                println!("{}", not_running(&socket, what, zone, &e));
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// `submit`.
#[derive(Debug, Args)]
pub(crate) struct Submit {
    /// The sending zone.
    #[arg(long)]
    zone: ZoneName,
    /// The policy's flow.
    #[arg(long)]
    flow: String,
    /// The payload's kind.
    #[arg(long)]
    kind: String,
    /// The payload.
    #[arg(long)]
    file: std::path::PathBuf,
    /// The schema a `json` payload follows.
    #[arg(long)]
    schema: Option<String>,
    /// A label of the payload (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// The transfer this one answers.
    #[arg(long)]
    correlation: Option<String>,
    /// The payload is redacted for the destination.
    #[arg(long)]
    redacted: bool,
    /// A file holding a user token the gateway asserted: the submitter (else the gateway
    /// submits, as a machine).
    #[arg(long)]
    as_user: Option<std::path::PathBuf>,
}

/// `held`.
#[derive(Debug, Args)]
pub(crate) struct Held {
    /// The sending zone.
    #[arg(long)]
    zone: ZoneName,
    /// A file holding a user token the gateway asserted (else the gateway's node token).
    #[arg(long)]
    as_user: Option<std::path::PathBuf>,
}

/// `approve`.
#[derive(Debug, Args)]
pub(crate) struct Approve {
    /// The sending zone.
    #[arg(long)]
    zone: ZoneName,
    /// The held transfer's id (`<zone>:<sequence>`).
    #[arg(long)]
    transfer: String,
    /// A file holding the approver's user token, as the gateway asserted it.
    #[arg(long)]
    as_user: std::path::PathBuf,
}

/// How the CLI presents itself to the sender's socket.
enum Cred {
    Bearer(String),
    Assertion(String),
}

/// Submits `file` on `flow` from `zone` as a machine (the zone's gateway, its node token), as
/// `exchange submit` without `--as-user` does; returns the transfer id.
pub(crate) fn submit_as_machine(
    dir: &DataDir,
    zone: &ZoneName,
    flow: &str,
    kind: &str,
    labels: &[&str],
    file: &Path,
) -> miette::Result<String> {
    let c = cred(dir, zone, None)?;
    let mut target = format!("/exchange/v1/submit?flow={}&kind={}", enc(flow), enc(kind));
    for l in labels {
        target.push_str(&format!("&label={}", enc(l)));
    }
    let body = control(dir, zone, "POST", &target, &c, Some(file))?;
    Ok(body
        .get("transfer")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

fn cred(dir: &DataDir, zone: &ZoneName, as_user: Option<&Path>) -> miette::Result<Cred> {
    match as_user {
        Some(f) => {
            let t = std::fs::read_to_string(f)
                .into_diagnostic()
                .wrap_err_with(|| format!("reading `{}`", f.display()))?;
            Ok(Cred::Assertion(t.trim().to_owned()))
        }
        None => Ok(Cred::Bearer(node_token(dir, zone, Component::Gateway)?)),
    }
}

/// `s` percent-encoded for a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
