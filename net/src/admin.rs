//! The per-process admin listener: plain HTTP on loopback with `/healthz` and Prometheus
//! `/metrics` (the listeners' counters and the components' own [`Registry`]). Plain because it
//! never leaves the machine; loopback-only is enforced.
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{ResponseBody, full};
use crate::error::{NetError, io_err};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// A running admin listener.
#[derive(Debug)]
pub struct AdminHandle {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl AdminHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the listener.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(d) = self.done.take() {
            let _ = d.await;
        }
    }
}

fn answer(
    req: &Request<hyper::body::Incoming>,
    metrics: &[Arc<Metrics>],
    registry: &Registry,
) -> Response<ResponseBody> {
    let (status, ctype, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics
                .iter()
                .map(|m| m.render())
                .chain([registry.render()])
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// Serves `/healthz` and `/metrics` (the given listeners' counters) on a loopback address.
pub async fn serve_admin(
    addr: SocketAddr,
    metrics: Vec<Arc<Metrics>>,
) -> Result<AdminHandle, NetError> {
    serve_admin_with(addr, metrics, Registry::new()).await
}

/// Serves `/healthz` and `/metrics` on a loopback address: the given listeners' counters, then
/// whatever the components register on `registry` (now or later).
pub async fn serve_admin_with(
    addr: SocketAddr,
    metrics: Vec<Arc<Metrics>>,
    registry: Arc<Registry>,
) -> Result<AdminHandle, NetError> {
    if !addr.ip().is_loopback() {
        return Err(NetError::Io {
            what: format!("admin listener `{addr}`"),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "admin listener must be on loopback",
            ),
        });
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(io_err(format!("bind `{addr}`")))?;
    let local = listener
        .local_addr()
        .map_err(io_err("admin local address"))?;
    let metrics = Arc::new(metrics);
    let (tx, mut rx) = watch::channel(false);
    let done = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = rx.changed() => break,
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let (metrics, registry) = (metrics.clone(), registry.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let r = answer(&req, &metrics, &registry);
                            async move { Ok::<_, std::convert::Infallible>(r) }
                        });
                        let mut b = hyper::server::conn::http1::Builder::new();
                        b.timer(TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(5));
                        let _ = b.serve_connection(TokioIo::new(tcp), svc).await;
                    });
                }
            }
        }
    });
    Ok(AdminHandle {
        addr: local,
        shutdown: tx,
        done: Some(done),
    })
}
