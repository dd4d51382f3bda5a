//! A component's audit log in its control-socket status: `{"audit": {"size": N, "checkpoint":
//! M}}` — the entries durable so far and the size of the latest signed checkpoint (`null` before
//! the first) — so `tianping status` shows each log's size and last checkpoint from the running
//! components themselves (their logs are locked while they run); and, for a component that
//! asks, the audit read API of that log (`GET /audit/v1/...`, [`crate::audit_api`]), so
//! `tianping audit verify|search|reconcile` reads it while the component runs.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tianping_audit::AuditLog;
use tianping_net::{Body, BoxFuture, Handler, full};

/// The `audit` member of a component's status.
pub(crate) fn summary(log: &AuditLog) -> Value {
    json!({
        "size": log.size(),
        "checkpoint": log.latest_checkpoint().ok().flatten().map(|(size, _)| size),
    })
}

/// A control-socket handler whose answer to `GET path` (a JSON object) gains the `audit`
/// member of `log`, and which serves the audit read API of `log` once asked to
/// ([`serving_reads`](Self::serving_reads)); every other request is the inner handler's alone.
pub(crate) struct WithAuditStatus<H> {
    inner: H,
    path: &'static str,
    log: Option<Arc<AuditLog>>,
    /// The zone whose callers the read API serves; `None`: no read API.
    reads: Option<String>,
}

/// Where the audit read API's targets start.
const READ_API: &str = "/audit/v1/";

impl<H> WithAuditStatus<H> {
    /// `inner`, its status at `path` showing `log` (none: the inner status as it is).
    pub(crate) fn new(inner: H, path: &'static str, log: Option<Arc<AuditLog>>) -> Self {
        Self {
            inner,
            path,
            log,
            reads: None,
        }
    }

    /// Also serves `GET /audit/v1/...` on the log to the callers the socket verified, as a
    /// component of `zone` (an auditor, or a node of the zone).
    pub(crate) fn serving_reads(mut self, zone: &str) -> Self {
        self.reads = Some(zone.to_owned());
        self
    }
}

impl<H: Handler> Handler for WithAuditStatus<H> {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        if let (Some(log), Some(zone)) = (&self.log, &self.reads)
            && req.method() == Method::GET
            && req.uri().path().starts_with(READ_API)
        {
            return Box::pin(crate::audit_api::serve(Arc::clone(log), zone.clone(), req));
        }
        let log = match &self.log {
            Some(log) if req.method() == Method::GET && req.uri().path() == self.path => {
                Arc::clone(log)
            }
            _ => return self.inner.call(req),
        };
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await;
            if r.status() != StatusCode::OK {
                return r;
            }
            let (mut parts, body) = r.into_parts();
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    let mut r = Response::new(full("the status could not be read\n"));
                    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    return r;
                }
            };
            let mut doc: Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) => return Response::from_parts(parts, full(bytes)),
            };
            if let Some(o) = doc.as_object_mut() {
                o.insert("audit".into(), summary(&log));
            }
            // the body's length changed
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, full(format!("{doc}\n")))
        })
    }
}
