//! The audit read API of a component's own log on its control socket (`/audit/v1/...`), so
//! `tianping audit` reads a running component's log through it (the log's store is locked
//! while the component holds it).

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use tianping_audit::AuditLog;
use tianping_core::SystemClock;
use tianping_net::{Body, ResponseBody, full};

/// The audit read API on `log`, the component's own (`tianping audit verify|search|…` while it
/// runs), for the caller its socket verified: a person is served with the `auditor` role only,
/// every read recorded in the log; a node of the zone by its node token; anyone else is refused
/// by `tianping_audit::handle_request`.
pub(crate) async fn serve(
    log: Arc<AuditLog>,
    zone: String,
    req: Request<Body>,
) -> Response<ResponseBody> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    serve_on(Arc::clone(&log), log, zone, target, req).await
}

/// The audit read API on `log` at `target` (`/audit/v1/...`, the request's own target with any
/// prefix taken off), every read recorded in `record_to` (the owner's own log: a mirror the
/// owner keeps is written by its batches alone).
pub(crate) async fn serve_on(
    log: Arc<AuditLog>,
    record_to: Arc<AuditLog>,
    zone: String,
    target: String,
    req: Request<Body>,
) -> Response<ResponseBody> {
    let method = req.method().as_str().to_owned();
    let reader = req
        .extensions()
        .get::<tianping_net::Caller>()
        .and_then(|c| c.identity.as_deref())
        .map(|id| match (id.kind, &id.subject) {
            (tianping_certs::CertKind::Node, _) | (_, None) => {
                tianping_audit::Reader::node(id.name.clone(), id.zone.to_string())
            }
            (_, Some(sub)) => {
                let roles: Vec<&str> = id.roles.iter().map(|r| r.as_str()).collect();
                tianping_audit::Reader::person(sub.to_string(), &roles, id.zone.to_string())
            }
        });
    let body = req.into_body().bytes().await.unwrap_or_default();
    let answered = tokio::task::spawn_blocking(move || {
        let access = tianping_audit::Access {
            zone: &zone,
            reader: reader.as_ref(),
            clock: &SystemClock,
            record_to: Some(&record_to),
        };
        tianping_audit::handle_request(&log, &access, &method, &target, &body)
    })
    .await;
    let (status, content_type, body) = match answered {
        Ok(r) => (
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY),
            http::HeaderValue::from_static(r.content_type),
            r.body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            http::HeaderValue::from_static("text/plain"),
            b"the audit task failed\n".to_vec(),
        ),
    };
    let mut r: Response<ResponseBody> = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, content_type);
    r
}
