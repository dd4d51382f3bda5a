//! The sender's control socket: status, a streamed submit, resend.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::Sender as Outbox;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tianping_net::{Body, BoxFuture, Caller, Handler, ResponseBody};
use tokio::io::AsyncWriteExt as _;

use super::{STATUS_PATH, answer, error, node_caller, query};
use crate::{SendStatus, Spool, SpoolError};

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
