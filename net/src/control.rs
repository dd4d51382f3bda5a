//! The local control socket (DESIGN §9): HTTP/1.1 over a Unix socket, file mode 0600, and the
//! peer's user id checked on every connection; components offer their administrative API on it
//! with the same [`Handler`] interface. [`control_request`] is the client the CLI uses.
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

use crate::body::{Body, Source};
use crate::config::ServerOptions;
use crate::error::{NetError, io_err};
use crate::host::HostSet;
use crate::metrics::Metrics;
use crate::service::{ConnInfo, Handler, Protocol, Shared, serve};

/// A running control socket.
#[derive(Debug)]
pub struct ControlHandle {
    path: PathBuf,
    shutdown: watch::Sender<bool>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl ControlHandle {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, finishes in-flight requests, removes the socket file.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(d) = self.done.take() {
            let _ = d.await;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves `handler` on a Unix socket at `path` (mode 0600), accepting peers whose uid is in
/// `allowed_uids`, or — when empty — this process's own uid and root.
pub async fn serve_control(
    path: &Path,
    allowed_uids: &[u32],
    handler: impl Handler,
) -> Result<ControlHandle, NetError> {
    if path.exists() {
        // A socket someone still answers on belongs to a running process: never take it over.
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(NetError::Io {
                what: format!("bind `{}`", path.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process serves this control socket",
                ),
            });
        }
        // A stale socket left by a process that ended.
        std::fs::remove_file(path)
            .map_err(io_err(format!("remove stale socket `{}`", path.display())))?;
    }
    let listener = bind_0600(path)?;
    // The socket file was just created by this process: its owner is our effective uid.
    let own = std::fs::metadata(path)
        .map_err(io_err(format!("stat `{}`", path.display())))?
        .uid();
    let allowed: Vec<u32> = if allowed_uids.is_empty() {
        vec![own, 0]
    } else {
        allowed_uids.to_vec()
    };
    let mut options = ServerOptions::new(HostSet::new(["localhost"]));
    options.http3 = false;
    let mut shared = Shared::new(
        Arc::new(handler),
        options,
        Arc::new(Metrics::default()),
        None,
    );
    shared.checks = false;
    let shared = Arc::new(shared);
    let (tx, mut rx) = watch::channel(false);
    let done = tokio::spawn(async move {
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        loop {
            tokio::select! {
                _ = rx.changed() => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let uid = match stream.peer_cred() {
                        Ok(c) if allowed.contains(&c.uid()) => c.uid(),
                        _ => {
                            shared.metrics.refusal("peer_uid");
                            continue;
                        }
                    };
                    let (shared, alive, mut stop) = (shared.clone(), alive_tx.clone(), rx.clone());
                    tokio::spawn(async move {
                        let _alive = alive;
                        let mut info = ConnInfo::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), Protocol::Control);
                        info.peer_uid = Some(uid);
                        let info = Arc::new(info);
                        let limits = shared.options.limits.clone();
                        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let (shared, info) = (shared.clone(), info.clone());
                            let (max, idle) = (limits.head.max_body, limits.body_idle_timeout);
                            async move {
                                let req = req.map(|b| Body::new(Source::Hyper(b), max, idle));
                                Ok::<_, std::convert::Infallible>(serve(shared, info, req, None).await)
                            }
                        });
                        let mut b = hyper::server::conn::http1::Builder::new();
                        b.timer(TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(10));
                        let conn = b.serve_connection(TokioIo::new(stream), svc);
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => return,
                            _ = stop.changed() => {}
                        }
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    });
                }
            }
        }
        drop(alive_tx);
        let _ = alive_rx.recv().await;
    });
    Ok(ControlHandle {
        path: path.to_path_buf(),
        shutdown: tx,
        done: Some(done),
    })
}

/// Binds a Unix socket at `path` that never has another mode than 0600 there: it is bound inside
/// a fresh directory of mode 0700 beside `path` (`bind` gives it the umask's mode), made 0600,
/// then linked at `path`. Linking, unlike renaming, fails if `path` appeared meanwhile: a socket
/// another process has just bound is not replaced. No process-wide umask change (threads).
fn bind_0600(path: &Path) -> Result<UnixListener, NetError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    let mut attempts = 0;
    let private = loop {
        // Short names: a Unix socket path is limited to 107 bytes.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!(".tpc{}-{n}", std::process::id()));
        attempts += 1;
        match builder.create(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 64 => {}
            Err(e) => return Err(io_err(format!("create `{}`", dir.display()))(e)),
        }
    };
    let tmp = private.join("s");
    let bound = (|| {
        let listener =
            UnixListener::bind(&tmp).map_err(io_err(format!("bind `{}`", tmp.display())))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(format!("chmod `{}`", tmp.display())))?;
        std::fs::hard_link(&tmp, path).map_err(|e| {
            let e = if e.kind() == std::io::ErrorKind::AlreadyExists {
                std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process serves this control socket",
                )
            } else {
                e
            };
            io_err(format!("bind `{}`", path.display()))(e)
        })?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&private);
    bound
}

/// How long [`control_request`] waits for a control socket: connecting, sending, and the whole
/// answer (a stuck owner must not hang the CLI).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request to a control socket and returns the status and body, within
/// [`CONTROL_TIMEOUT`].
pub async fn control_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: impl Into<Bytes>,
) -> Result<(u16, Bytes), NetError> {
    control_request_within(socket, method, path, body, CONTROL_TIMEOUT).await
}

/// Sends one request to a control socket and returns the status and body; an exchange not done
/// within `timeout` (connect included) fails with [`NetError::ControlTimeout`].
pub async fn control_request_within(
    socket: &Path,
    method: &str,
    path: &str,
    body: impl Into<Bytes>,
    timeout: Duration,
) -> Result<(u16, Bytes), NetError> {
    let exchange = exchange(socket, method, path, body.into());
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(NetError::ControlTimeout {
                socket: socket.to_path_buf(),
                after: timeout,
            })
        })
}

async fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), NetError> {
    let err = |e: &dyn std::fmt::Display| NetError::Control(e.to_string());
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(io_err(format!("connect `{}`", socket.display())))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| err(&e))?;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost")
        .body(Full::new(body))
        .map_err(|e| err(&e))?;
    let ask = async move {
        let resp = sender.send_request(req).await.map_err(|e| err(&e))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err(&e))?
            .to_bytes();
        Ok((status, body))
    };
    // The connection is driven here, not in a task of its own: a timeout drops it with the rest.
    tokio::pin!(ask, conn);
    tokio::select! {
        r = &mut ask => r,
        // Closed after answering (or not): the answer is complete, or the exchange fails.
        _ = &mut conn => ask.await,
    }
}
