//! The log shipper: a component's own audit log sent, in batches, to the security team's audit
//! store in `private`, as `audit-batch` transfers on the flow of the zone's policy that carries
//! them (`audit-from-<zone>` in the default policy).
//!
//! Each component ships its own log, since only the process that holds a log reads it. Every
//! [`SHIP_EVERY`], and at once on `SIGUSR1` ("on request"), the shipper signs a checkpoint of
//! what is durable (with the log's own key), and, if the log grew since the last batch, submits
//! a batch to the zone's exchange sender (its control socket, a node token of the component: the
//! submitter is a machine). Batches **overlap**: each one starts where the batch before the last
//! one ended, so it holds the whole of the last batch again and one batch lost on the link is
//! made up by the next (the store compares the overlap entry by entry and stores the rest). What
//! was shipped is kept in `audit-shipped.json` beside the log, so a restarted component goes on
//! from there. A submission the sender refuses, or a sender not running, is said on standard
//! error and tried again at the next turn; nothing is lost, the log holds it all.
//!
//! Two batches lost in a row leave the mirror behind the next one's start (a gap the store
//! takes but does not apply): `SIGUSR2` makes the next batch start from the log's first entry
//! (its first not archived), which the store then applies in full.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, header};
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_audit::AuditLog;
use tianping_certs::{TokenClaims, TokenSigner};
use tianping_core::{Clock, Component, DataDir, Signer, SystemClock, ZoneName};

/// How often a log is shipped: the store is at most this far behind, and a batch carries about
/// this much of a component's activity. `TIANPING_AUDIT_SHIP_EVERY` (seconds; `0`: only on
/// request) sets another period.
pub(crate) const SHIP_EVERY: Duration = Duration::from_secs(60);

/// The period in force: [`SHIP_EVERY`] or `TIANPING_AUDIT_SHIP_EVERY`; `None`: only on request.
fn period() -> Option<Duration> {
    match std::env::var("TIANPING_AUDIT_SHIP_EVERY") {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(0) => None,
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => {
                eprintln!(
                    "audit: TIANPING_AUDIT_SHIP_EVERY={v:?} is not a number of seconds; shipping every {} s",
                    SHIP_EVERY.as_secs()
                );
                Some(SHIP_EVERY)
            }
        },
        Err(_) => Some(SHIP_EVERY),
    }
}
/// How long one submission may take (a batch is streamed to the sender's spool).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// What was sent of a growing log to a receiver that cannot answer (a one-way link): the ends
/// of the last two sends. The next send starts where the one before the last ended, so it
/// holds the whole of the last again and one lost on the way is made up by the next. The
/// audit shipper keeps one per log, the directory pusher one per destination.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Overlap {
    /// Where the send before the last one ended: the next one starts here.
    pub(crate) before: u64,
    /// Where the last one ended.
    pub(crate) last: u64,
}

impl Overlap {
    /// Where the next send starts when the source holds `latest` (`from_start`: from 0).
    pub(crate) fn next_since(&self, latest: u64, from_start: bool) -> u64 {
        if from_start || self.before > latest {
            0
        } else {
            self.before
        }
    }

    /// After a send that ended at `latest`.
    pub(crate) fn sent(&self, latest: u64) -> Self {
        Self {
            before: self.last.min(latest),
            last: latest,
        }
    }
}

/// Reads the JSON state at `path` (its default when there is none or it does not read).
pub(crate) fn read_state<T: serde::de::DeserializeOwned + Default>(path: &std::path::Path) -> T {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes the JSON state at `path`, whole or not at all.
pub(crate) fn write_state<T: serde::Serialize>(
    path: &std::path::Path,
    state: &T,
) -> Result<(), String> {
    let text = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    tianping_core::write_atomic(
        path,
        &text,
        tianping_core::FileMode::Public,
        tianping_core::Existing::Replace,
    )
    .map_err(|e| e.to_string())
}

/// A component's log shipper.
pub(crate) struct Shipper {
    name: String,
    log: Arc<AuditLog>,
    checkpoints: Arc<dyn Signer>,
    tokens: TokenSigner,
    flow: String,
    sender: PathBuf,
    state: PathBuf,
}

/// A token signer of `component`'s node key in `zone`, its certificate in `x5c`.
pub(crate) fn node_tokens(
    dir: &DataDir,
    zone: &ZoneName,
    component: Component,
) -> miette::Result<TokenSigner> {
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
    TokenSigner::new(Arc::new(signer), &chain).into_diagnostic()
}

/// Submits `bytes` of `kind` on `flow` to the zone's exchange sender at `sender`, as the
/// machine whose node key `tokens` holds; returns the transfer id.
pub(crate) async fn submit(
    sender: &std::path::Path,
    tokens: &TokenSigner,
    flow: &str,
    kind: &str,
    bytes: Vec<u8>,
) -> Result<String, String> {
    let token = tokens
        .sign(
            &TokenClaims::Node,
            Component::ExchangeSender.as_str(),
            SystemClock.now(),
            Duration::from_secs(60),
        )
        .map_err(|e| e.to_string())?;
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/exchange/v1/submit?flow={flow}&kind={kind}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(tianping_net::ControlBody::bytes(bytes))
        .map_err(|e| e.to_string())?;
    let resp = tianping_net::control_send(sender, req, SUBMIT_TIMEOUT)
        .await
        .map_err(|e| format!("`{}`: {e}", sender.display()))?;
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "the sender answered {status}: {}",
            String::from_utf8_lossy(body.get(..body.len().min(300)).unwrap_or_default())
        ));
    }
    Ok(serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("transfer")?.as_str().map(str::to_owned))
        .unwrap_or_default())
}

impl Shipper {
    /// The shipper of `component`'s log in `zone`, whose checkpoints `checkpoints` signs;
    /// `None` when the zone's policy has no flow out of the zone carrying `audit-batch` (a
    /// sealed zone, or `private`, where the store is).
    pub(crate) fn new(
        dir: &DataDir,
        zone: &ZoneName,
        component: Component,
        log: Arc<AuditLog>,
        checkpoints: Arc<dyn Signer>,
    ) -> miette::Result<Option<Self>> {
        let path = dir.zone_policy(zone);
        let source = std::fs::read_to_string(&path)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading `{}`", path.display()))?;
        let checked = tianping_policies::check(&path.display().to_string(), &source);
        let Some(policy) = checked.policy() else {
            return Ok(None);
        };
        let flow = policy
            .flows()
            .find(|f| f.from() == zone && f.kinds().any(|(k, _)| k.as_str() == "audit-batch"));
        let Some(flow) = flow else {
            return Ok(None);
        };
        Ok(Some(Self {
            name: format!("{zone}/{}", component.as_str()),
            flow: flow.name().to_owned(),
            log,
            checkpoints,
            tokens: node_tokens(dir, zone, component)?,
            sender: dir.socket(zone, Component::ExchangeSender),
            state: dir.component(zone, component).join("audit-shipped.json"),
        }))
    }

    /// Ships what the log holds past the last batch; `Ok(None)` when there is nothing new.
    /// `from_start`: this batch starts at the log's first entry it still holds.
    async fn ship_once(&self, from_start: bool) -> Result<Option<(String, u64, u64)>, String> {
        let (log, signer) = (Arc::clone(&self.log), Arc::clone(&self.checkpoints));
        let shipped: Overlap = read_state(&self.state);
        let made = tokio::task::spawn_blocking(move || {
            log.sync().map_err(|e| e.to_string())?;
            let cp = log.checkpoint(&*signer).map_err(|e| e.to_string())?;
            let size = cp.checkpoint().size;
            if size == shipped.last && !from_start {
                return Ok(None);
            }
            let since = shipped
                .next_since(size, from_start)
                .max(log.archived_size());
            let mut bytes = Vec::new();
            log.ship_to(since, &mut bytes).map_err(|e| e.to_string())?;
            Ok::<_, String>(Some((since, size, bytes)))
        })
        .await
        .map_err(|_| "the shipping task failed".to_owned())??;
        let Some((since, size, bytes)) = made else {
            return Ok(None);
        };
        let transfer = submit(&self.sender, &self.tokens, &self.flow, "audit-batch", bytes).await?;
        write_state(&self.state, &shipped.sent(size))?;
        Ok(Some((transfer, since, size)))
    }

    /// Ships every [`SHIP_EVERY`] (see [`period`]) and on `SIGUSR1` (`SIGUSR2`: from the log's start), on a
    /// thread of its own, for as long as the process runs.
    pub(crate) fn spawn(self) -> miette::Result<()> {
        // the runtime and its signal handlers are made on the shipper's thread (a caller may
        // be inside a runtime already); this returns once they are in place, so a signal sent
        // after the component said it is ready never meets the default (ending the process)
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
        std::thread::Builder::new()
            .name("audit-shipper".into())
            .spawn(move || {
                let made = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        let signals = rt.block_on(async {
                            use tokio::signal::unix::{SignalKind, signal};
                            Ok::<_, std::io::Error>((
                                signal(SignalKind::user_defined1())?,
                                signal(SignalKind::user_defined2())?,
                            ))
                        })?;
                        Ok((rt, signals))
                    });
                let (rt, (mut usr1, mut usr2)) = match made {
                    Ok(m) => {
                        let _ = ready_tx.send(Ok(()));
                        m
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let every = period();
                    let mut tick = tokio::time::interval(every.unwrap_or(SHIP_EVERY));
                    tick.tick().await;
                    loop {
                        let (asked, from_start) = tokio::select! {
                            _ = tick.tick(), if every.is_some() => (false, false),
                            _ = usr1.recv() => (true, false),
                            _ = usr2.recv() => (true, true),
                        };
                        match self.ship_once(from_start).await {
                            Ok(Some((transfer, since, size))) => println!(
                                "audit: entries {since}..{size} of `{}` shipped as transfer {transfer} on `{}`",
                                self.log.origin(),
                                self.flow
                            ),
                            Ok(None) if asked => println!(
                                "audit: nothing new to ship in `{}`",
                                self.log.origin()
                            ),
                            Ok(None) => {}
                            Err(e) => eprintln!(
                                "{}: audit: shipping on `{}` failed, tried again at the next turn: {e}",
                                self.name, self.flow
                            ),
                        }
                    }
                });
            })
            .into_diagnostic()?;
        ready_rx
            .recv()
            .map_err(|_| miette!("the audit shipper did not start"))?
            .map_err(|e| miette!("the audit shipper did not start: {e}"))
    }
}
