//! The request pipeline shared by HTTP/1.1, HTTP/2, HTTP/3 and the control socket: refusals
//! made by the framing check (carried as a request extension only this crate can build), host
//! check, path normalization, rate limits, the application's
//! handler, `Alt-Svc`, metrics and the access log.
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::body::{Body, ResponseBody, full};
use crate::config::ServerOptions;
use crate::conns::ConnectionTable;
use crate::h1::H1Refusals;
use crate::handler::{ConnInfo, Handler, Protocol};
use crate::head::REFUSAL_MARKER;
use crate::metrics::Metrics;
use crate::path::normalize_path;
use crate::rate::{RateLimiter, retry_after_secs};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};

/// State shared by every connection of one listener.
pub(crate) struct Shared {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) options: ServerOptions,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) by_addr: Option<Mutex<RateLimiter<IpAddr>>>,
    pub(crate) by_identity: Option<Mutex<RateLimiter<[u8; 32]>>>,
    pub(crate) alt_svc: Option<HeaderValue>,
    /// Open connections, TCP and QUIC together (shared with other listeners if the options say).
    pub(crate) connections: Arc<ConnectionTable>,
    /// Host and path checks apply (not on the control socket and admin listener).
    pub(crate) checks: bool,
}

const MAX_RATE_KEYS: usize = 100_000;

impl Shared {
    pub(crate) fn new(
        handler: Arc<dyn Handler>,
        options: ServerOptions,
        metrics: Arc<Metrics>,
        port: Option<u16>,
    ) -> Self {
        let by_addr = options
            .rate_per_addr
            .map(|r| Mutex::new(RateLimiter::new(r, MAX_RATE_KEYS)));
        let by_identity = options
            .rate_per_identity
            .map(|r| Mutex::new(RateLimiter::new(r, MAX_RATE_KEYS)));
        let alt_svc = match (options.http3, port) {
            (true, Some(p)) => HeaderValue::from_str(&format!("h3=\":{p}\"; ma=86400")).ok(),
            _ => None,
        };
        let connections: Arc<ConnectionTable> = options.connections.clone().unwrap_or_default();
        Self {
            handler,
            options,
            metrics,
            by_addr,
            by_identity,
            alt_svc,
            connections,
            checks: true,
        }
    }
}

/// A plain response with a short text body.
pub(crate) fn status_response(status: u16, close: bool) -> Response<ResponseBody> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = Response::new(full(
        code.canonical_reason().unwrap_or("refused").to_string(),
    ));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if close {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// A refusal decided by the server's own code before the pipeline (the HTTP/1.1 framing check),
/// as a request extension: no client can build one, unlike a header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refused(pub(crate) u16);

/// Runs one request through the pipeline.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<Body>,
    h1: Option<Arc<H1Refusals>>,
) -> Response<ResponseBody> {
    if let Some(status) = h1.as_ref().and_then(|r| r.next_request()) {
        req.extensions_mut().insert(Refused(status));
    }
    let start = Instant::now();
    let method = req.method().clone();
    // The path as the client sent it, for the access log: the URI's bytes are shared, not copied.
    let raw_uri = req.uri().clone();
    let raw_path = raw_uri.path();
    let mut resp = match check(&shared, &conn, &mut req) {
        Err(resp) => resp,
        Ok(()) => {
            let mut resp = shared.handler.call(req).await;
            if let Some(e) = h1.as_ref().and_then(|b| b.take_body()) {
                // Counted by the framing check already.
                resp = status_response(e.status(), true);
            }
            resp
        }
    };
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE
        && matches!(conn.protocol, Protocol::Http1 | Protocol::Control)
    {
        // The rest of an over-limit body is not read: the connection ends after the answer.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if method == http::Method::HEAD && matches!(conn.protocol, Protocol::Http2 | Protocol::Http3) {
        resp = without_content(resp);
    }
    if matches!(
        conn.protocol,
        Protocol::Http1 | Protocol::Http2 | Protocol::Http3
    ) && !resp
        .headers()
        .contains_key(header::STRICT_TRANSPORT_SECURITY)
    {
        // every listener of the fabric is TLS alone: a browser never tries plain HTTP
        resp.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    if conn.protocol != Protocol::Http3 {
        if let Some(v) = &shared.alt_svc {
            resp.headers_mut().insert(header::ALT_SVC, v.clone());
        }
    }
    let status = resp.status().as_u16();
    let took = start.elapsed();
    shared.metrics.request(conn.protocol.as_str(), status, took);
    // The access log names the method, path, status and who; never headers, cookies or tokens.
    tracing::info!(
        target: "tianping_net::access",
        protocol = conn.protocol.as_str(),
        peer = %conn.peer,
        identity = conn.identity.as_ref().map(|i| i.name.as_str()).unwrap_or("-"),
        method = %method,
        path = %raw_path.get(..raw_path.len().min(256)).unwrap_or(""),
        status,
        micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
    );
    resp
}

/// `Strict-Transport-Security` on every answer over TLS (RFC 6797): a year, no subdomains (a
/// zone's hosts are each their own listener, and a court may run other hosts under its domain).
const HSTS: &str = "max-age=31536000";

/// The answer to a `HEAD` over HTTP/2 or HTTP/3: the handler's head, no content (RFC 9110
/// §9.3.2). HTTP/1.1's server drops the body itself; HTTP/2's and HTTP/3's would send it as
/// DATA frames, which a client takes as a protocol error. The length the content would have
/// is kept, as HTTP/1.1 says it.
fn without_content(resp: Response<ResponseBody>) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    if !parts.headers.contains_key(header::CONTENT_LENGTH) {
        if let Some(n) = hyper::body::Body::size_hint(&body).exact() {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    Response::from_parts(parts, crate::body::empty())
}

#[expect(
    clippy::result_large_err,
    reason = "the refusal is the response, built once per refused request"
)]
fn check(
    shared: &Shared,
    conn: &ConnInfo,
    req: &mut Request<Body>,
) -> Result<(), Response<ResponseBody>> {
    let metrics = &shared.metrics;
    if let Some(Refused(status)) = req.extensions().get::<Refused>().copied() {
        return Err(status_response(status, true));
    }
    // The old in-band marker means nothing now; a client's copy is dropped unread.
    req.headers_mut().remove(REFUSAL_MARKER);
    req.extensions_mut().insert(conn.clone());
    // Host: `:authority` (HTTP/2, HTTP/3) and `Host` must agree when both are present.
    let host_header = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().map_err(|_| ()));
    let authority = req.uri().authority();
    let host = match (authority.map(Authority::as_str), host_header) {
        (_, Some(Err(()))) => Err(400),
        (Some(a), Some(Ok(h))) if !a.eq_ignore_ascii_case(h) => Err(400),
        (Some(a), _) => Ok(a),
        (None, Some(Ok(h))) => Ok(h),
        (None, None) => Err(400),
    };
    let host = host.and_then(|h| {
        shared
            .options
            .hosts
            .check(conn.sni.as_deref(), Some(h))
            .map_err(|e| e.status())
    });
    let host = match host {
        _ if !shared.checks => Cow::Borrowed("localhost"),
        Ok(h) => h,
        Err(status) => {
            metrics.refusal("host");
            return Err(status_response(status, conn.protocol == Protocol::Http1));
        }
    };
    // No path (an HTTP/2 or HTTP/3 CONNECT) is refused like a bad path: nothing here tunnels.
    let target = req.uri().path_and_query();
    let normalized = match normalize_path(target.map(PathAndQuery::as_str).unwrap_or("")) {
        Ok(p) => p,
        Err(_) => {
            metrics.refusal("path");
            return Err(status_response(400, conn.protocol == Protocol::Http1));
        }
    };
    let now = shared.options.clock.now();
    let limited = |wait| {
        metrics.refusal("rate");
        let mut r = status_response(429, false);
        if let Ok(v) = HeaderValue::from_str(&retry_after_secs(wait).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    };
    if let Some(l) = &shared.by_addr {
        if let Ok(mut l) = l.lock() {
            l.check(&conn.peer.ip(), now).map_err(limited)?;
        }
    }
    if let (Some(l), Some(id)) = (&shared.by_identity, &conn.identity) {
        if let Ok(mut l) = l.lock() {
            l.check(&id.fingerprint, now).map_err(limited)?;
        }
    }
    // The handler sees only the normalized path. The request's own authority and path, when
    // they are the host and the normalized path already, are shared rather than copied.
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTPS);
    parts.authority = match authority {
        Some(a) if a.as_str() == host => Some(a.clone()),
        _ => Some(Authority::try_from(host.as_ref()).map_err(|_| status_response(400, true))?),
    };
    parts.path_and_query = match target {
        Some(t) if t.path() == normalized.path() && t.query() == normalized.query() => {
            Some(t.clone())
        }
        _ => Some(
            PathAndQuery::try_from(normalized.path_and_query())
                .map_err(|_| status_response(400, true))?,
        ),
    };
    let uri = Uri::from_parts(parts).map_err(|_| status_response(400, true))?;
    *req.uri_mut() = uri;
    req.extensions_mut().insert(normalized);
    Ok(())
}
