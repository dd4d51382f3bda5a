//! The exchange daemons' control sockets (feature `daemon`): `run/<zone>-exchange-sender.sock`
//! and `run/<zone>-exchange-receiver.sock`, served with `tianping_net::serve_control_with`.
//!
//! The sender's ([`SenderControl`]):
//! - `GET /exchange/v1/status` (open: no credential): per link, what is spooled, being sent,
//!   sent since the start and retained, the last transfer id, the epoch, the rate and the peer;
//! - `POST /exchange/v1/submit?to=ZONE` (a node token of the zone): the body, a bundle, is
//!   streamed into the spool (a limit per link: the largest flow to that zone and a header, given
//!   by the daemon; over it 413 before more is read), fsynced and renamed, and only then is the
//!   transfer id answered (`{"link": L, "transfer": N}`);
//! - `POST /exchange/v1/resend?to=ZONE&from=ID` (a node token of the zone): every retained
//!   transfer of the link from `ID` on is spooled again under new ids (`{"resent": [[old,
//!   new], …]}`), and the daemon's `on_resend` hook records it (an audit event when the daemon
//!   has a log).
//!
//! The receiver's ([`ReceiverControl`]): `GET /exchange/v1/status` (open): per link, transfers
//! received, lost (the recent ids), refused, late symbols, repaired blocks, the sender's last
//! heartbeat and when it came, whether the link is silent, and the sender epochs seen.
//!
//! The peer's uid is checked by the socket before a byte is read; a credential is then checked
//! by the socket's verifier (node tokens of the zone), and the handler asks for a node identity.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::Sender as Outbox;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tianping_certs::CertKind;
use tianping_core::{Clock, SystemClock};
use tianping_net::{Body, BoxFuture, Caller, Handler, ResponseBody, full};
use tokio::io::AsyncWriteExt as _;

use crate::{ReceiveStatus, SendStatus, Spool, SpoolError};

/// The status path, open on both sockets.
pub const STATUS_PATH: &str = "/exchange/v1/status";
const SUBMIT_PATH: &str = "/exchange/v1/submit";
const RESEND_PATH: &str = "/exchange/v1/resend";

/// One of the sender's links as its control socket sees it.
#[derive(Debug)]
pub struct SenderLink {
    /// The receiving zone.
    pub to: String,
    /// The link's id.
    pub id: u32,
    /// Tells the link's loop of a transfer spooled for it.
    pub inbox: Mutex<Outbox<u64>>,
    /// The link's state.
    pub status: Arc<SendStatus>,
    /// The largest body `submit` takes for the link.
    pub limit: u64,
}

/// Told of every resend: who asked, the receiving zone, the (retained, new) ids.
pub type ResendHook = Box<dyn Fn(&Caller, &str, &[(u64, u64)]) + Send + Sync>;

struct SenderInner {
    zone: String,
    spool: Arc<Spool>,
    links: BTreeMap<String, SenderLink>,
    on_resend: Option<ResendHook>,
}

/// The sender's control socket handler.
#[derive(Clone)]
pub struct SenderControl(Arc<SenderInner>);

impl std::fmt::Debug for SenderControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderControl")
            .field("zone", &self.0.zone)
            .field("links", &self.0.links.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SenderControl {
    /// The handler for the sender of `zone` over `spool`, with its running links; `on_resend`
    /// is told of every resend (who asked, the receiving zone, the ids).
    pub fn new(
        zone: &str,
        spool: Arc<Spool>,
        links: impl IntoIterator<Item = SenderLink>,
        on_resend: Option<ResendHook>,
    ) -> Self {
        Self(Arc::new(SenderInner {
            zone: zone.to_owned(),
            spool,
            links: links.into_iter().map(|l| (l.to.clone(), l)).collect(),
            on_resend,
        }))
    }

    /// The paths answered without a credential.
    pub fn open_paths() -> Vec<String> {
        vec![STATUS_PATH.to_owned()]
    }
}

fn answer(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let mut r = Response::new(full(format!("{body}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<ResponseBody> {
    answer(status, &json!({ "error": message.to_string() }))
}

/// The value of `key` in the request's query.
fn query<'a>(req: &'a Request<Body>, key: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The caller's identity when it is a node of the zone (the socket's verifier admits only
/// node tokens of the zone); else the answer.
#[expect(clippy::result_large_err, reason = "the answer is sent at once")]
fn node_caller(req: &Request<Body>) -> Result<Caller, Response<ResponseBody>> {
    let caller = req.extensions().get::<Caller>().cloned();
    match caller {
        Some(c)
            if c.identity
                .as_ref()
                .is_some_and(|i| i.kind == CertKind::Node) =>
        {
            Ok(c)
        }
        Some(c) if c.identity.is_some() => Err(error(
            StatusCode::FORBIDDEN,
            "only a node of the zone may submit or resend",
        )),
        _ => Err(error(StatusCode::UNAUTHORIZED, "a node token is required")),
    }
}

impl Handler for SenderControl {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let inner = Arc::clone(&self.0);
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            match (req.method().clone(), path.as_str()) {
                (Method::GET, STATUS_PATH) => answer(StatusCode::OK, &sender_status(&inner)),
                (Method::POST, SUBMIT_PATH) => submit(&inner, req).await,
                (Method::POST, RESEND_PATH) => resend(&inner, req).await,
                (_, STATUS_PATH | SUBMIT_PATH | RESEND_PATH) => {
                    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                }
                _ => error(StatusCode::NOT_FOUND, format!("no endpoint `{path}`")),
            }
        })
    }
}

fn sender_status(inner: &SenderInner) -> Value {
    let links: Vec<Value> = inner
        .links
        .values()
        .map(|l| {
            let s = &l.status;
            json!({
                "link": l.id,
                "to": l.to,
                "rate_mbps": s.rate_mbps,
                "epoch": s.epoch,
                "spooled": s.spooled.get(),
                "sending": s.sending.get(),
                "sent": s.sent.get(),
                "retained": s.retained.get(),
                "last_transfer": s.last_transfer.get(),
                "datagrams": s.datagrams.get(),
                "send_errors": s.send_errors.get(),
                "peer": s.peer().map(|p| p.to_string()),
            })
        })
        .collect();
    json!({ "zone": inner.zone, "component": "exchange-sender", "epoch": inner.spool.epoch(), "links": links })
}

#[expect(clippy::result_large_err, reason = "the answer is sent at once")]
fn link_of<'a>(
    inner: &'a SenderInner,
    req: &Request<Body>,
) -> Result<&'a SenderLink, Response<ResponseBody>> {
    let to = query(req, "to").ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "`to` (the receiving zone) is missing",
        )
    })?;
    inner.links.get(to).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no running link from `{}` to `{to}`", inner.zone),
        )
    })
}

fn spool_answer(e: &SpoolError) -> Response<ResponseBody> {
    match e {
        SpoolError::Refused(why) => error(StatusCode::BAD_REQUEST, why),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the spool failed"),
    }
}

async fn submit(inner: &Arc<SenderInner>, req: Request<Body>) -> Response<ResponseBody> {
    if let Err(r) = node_caller(&req) {
        return r;
    }
    let link = match link_of(inner, &req) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let (id, limit) = (link.id, link.limit);
    let mut body = req.into_body();
    body.set_limit(limit);
    let staging = match inner.spool.staging() {
        Ok(p) => p,
        Err(e) => return spool_answer(&e),
    };
    let written = stream_to(&staging, &mut body).await;
    let len = match written {
        Ok(len) => len,
        Err(r) => {
            let _ = tokio::fs::remove_file(&staging).await;
            return r;
        }
    };
    let spool = Arc::clone(&inner.spool);
    let staged = staging.clone();
    let committed = tokio::task::spawn_blocking(move || spool.commit(id, &staged, len)).await;
    match committed {
        Ok(Ok(transfer)) => {
            if let Ok(inbox) = link.inbox.lock() {
                // a link whose loop ended takes the transfer from the spool at its next start
                let _ = inbox.send(transfer);
            }
            answer(StatusCode::OK, &json!({ "link": id, "transfer": transfer }))
        }
        Ok(Err(e)) => spool_answer(&e),
        Err(_) => {
            let _ = tokio::fs::remove_file(&staging).await;
            error(StatusCode::INTERNAL_SERVER_ERROR, "the spool failed")
        }
    }
}

/// Streams `body` into a new file at `path` and fsyncs it; returns its length.
async fn stream_to(path: &Path, body: &mut Body) -> Result<u64, Response<ResponseBody>> {
    let failed = |_| error(StatusCode::INTERNAL_SERVER_ERROR, "the spool failed");
    let mut file = tokio::fs::File::create(path).await.map_err(failed)?;
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            error(status, e)
        })?;
        if let Ok(data) = frame.into_data() {
            file.write_all(&data).await.map_err(failed)?;
            len += data.len() as u64;
        }
    }
    file.flush().await.map_err(failed)?;
    file.sync_all().await.map_err(failed)?;
    Ok(len)
}

async fn resend(inner: &Arc<SenderInner>, req: Request<Body>) -> Response<ResponseBody> {
    let caller = match node_caller(&req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let link = match link_of(inner, &req) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(from) = query(&req, "from").and_then(|f| f.parse::<u64>().ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "`from` (the first transfer id to send again) is missing or not a number",
        );
    };
    let (spool, id) = (Arc::clone(&inner.spool), link.id);
    let done = tokio::task::spawn_blocking(move || spool.resend(id, from)).await;
    let pairs = match done {
        Ok(Ok(pairs)) => pairs,
        Ok(Err(e)) => return spool_answer(&e),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the spool failed"),
    };
    if let Ok(inbox) = link.inbox.lock() {
        for (_, new) in &pairs {
            let _ = inbox.send(*new);
        }
    }
    if let Some(hook) = &inner.on_resend {
        hook(&caller, &link.to, &pairs);
    }
    answer(StatusCode::OK, &json!({ "link": id, "resent": pairs }))
}

/// The receiver's control socket handler: its status.
#[derive(Debug, Clone)]
pub struct ReceiverControl {
    zone: String,
    links: Arc<Vec<Arc<ReceiveStatus>>>,
}

impl ReceiverControl {
    /// The handler for the receiver of `zone` with its running links.
    pub fn new(zone: &str, links: Vec<Arc<ReceiveStatus>>) -> Self {
        Self {
            zone: zone.to_owned(),
            links: Arc::new(links),
        }
    }

    /// The paths answered without a credential.
    pub fn open_paths() -> Vec<String> {
        vec![STATUS_PATH.to_owned()]
    }

    fn status(&self) -> Value {
        let now = SystemClock.now();
        let links: Vec<Value> = self
            .links
            .iter()
            .map(|s| {
                let d = s.detail();
                let beat = d.last_beat.map(|(at, b)| {
                    json!({
                        "at_ms": at.as_millis(),
                        "ago_ms": u64::try_from(now.saturating_since(at).as_millis()).unwrap_or(u64::MAX),
                        "transfers_started": b.transfers_started,
                        "transfers_finished": b.transfers_finished,
                        "last_transfer": b.last_transfer,
                        "done_below": b.done_below,
                        "datagrams_sent": b.datagrams_sent,
                    })
                });
                json!({
                    "link": s.link,
                    "from": s.from,
                    "received": s.received.get(),
                    "last_received": d.last_received,
                    "lost": s.lost.get(),
                    "lost_ids": d.lost_ids,
                    "refused": s.refused.get(),
                    "refused_ids": d.refused_ids,
                    "late": s.late.get(),
                    "repaired": s.repaired.get(),
                    "datagrams": s.datagrams.get(),
                    "malformed": s.malformed.get(),
                    "last_heartbeat": beat,
                    "silent": d.silent_since.is_some(),
                    "silent_since_ms": d.silent_since.map(|t| t.as_millis()),
                    "epochs": d.epochs,
                })
            })
            .collect();
        json!({ "zone": self.zone, "component": "exchange-receiver", "links": links })
    }
}

impl Handler for ReceiverControl {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let this = self.clone();
        Box::pin(async move {
            match (req.method(), req.uri().path()) {
                (&Method::GET, STATUS_PATH) => answer(StatusCode::OK, &this.status()),
                (_, STATUS_PATH) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                (_, path) => error(StatusCode::NOT_FOUND, format!("no endpoint `{path}`")),
            }
        })
    }
}
