//! The local control socket (DESIGN §9): HTTP/1.1 over a Unix socket, file mode 0600, and the
//! peer's user id checked on every connection before a byte is read; components offer their
//! administrative API on it with the same [`Handler`] interface. Each request carries a
//! [`crate::Caller`] (peer uid and pid, the credential and the identity the owner's verifier read
//! from it). Bodies stream both ways; each endpoint's limit is the handler's to set
//! ([`crate::Body::set_limit`]) over a small default ([`ControlOptions::body_limit`]).
//! [`crate::control_request`] is the client the CLI uses.
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tianping_core::{Clock, SystemClock};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

use crate::body::{Body, Source};
use crate::caller::{CallerCheck, CallerVerifier};
use crate::config::ServerOptions;
use crate::error::{NetError, io_err};
use crate::handler::{BoxFuture, ConnInfo, Handler, Protocol};
use crate::host::HostSet;
use crate::metrics::Metrics;
use crate::service::{Shared, serve};

/// Who may call a control socket and how much a request may send.
#[derive(Clone)]
pub struct ControlOptions {
    /// Peer uids allowed to connect, checked at accept before anything is read; empty: this
    /// process's own uid and root.
    pub allowed_uids: Vec<u32>,
    /// Turns a presented credential into a court identity ([`crate::Caller::identity`]); a
    /// request without a credential, or with one it refuses, is answered 401 unless its path is
    /// open. `None`: no credential is asked for (every path open, no identity).
    pub verifier: Option<Arc<dyn CallerVerifier>>,
    /// Normalized paths answered without a credential (status, health).
    pub open_paths: Vec<String>,
    /// Every endpoint's body limit until its handler sets its own with
    /// [`crate::Body::set_limit`] (default 64 KiB; no ceiling: the owner decides per endpoint).
    pub body_limit: u64,
    /// Where the verifier reads the time.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ControlOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlOptions")
            .field("allowed_uids", &self.allowed_uids)
            .field("verifier", &self.verifier.is_some())
            .field("open_paths", &self.open_paths)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl ControlOptions {
    /// Peers with these uids (empty: ours and root), no verifier, a 64 KiB body limit.
    pub fn new(allowed_uids: &[u32]) -> Self {
        Self {
            allowed_uids: allowed_uids.to_vec(),
            verifier: None,
            open_paths: Vec::new(),
            body_limit: 64 * 1024,
            clock: Arc::new(SystemClock),
        }
    }

    /// Verifies credentials with `verifier`; every path but `open_paths` needs one.
    pub fn verified(
        mut self,
        verifier: Arc<dyn CallerVerifier>,
        open_paths: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.verifier = Some(verifier);
        self.open_paths = open_paths.into_iter().map(Into::into).collect();
        self
    }
}

/// The owner's handler behind the caller check.
struct Checked<H> {
    check: CallerCheck,
    inner: H,
}

impl<H: Handler> Handler for Checked<H> {
    fn call(&self, mut req: http::Request<Body>) -> BoxFuture {
        let peer = req
            .extensions()
            .get::<ConnInfo>()
            .map(|c| (c.peer_uid, c.peer_pid));
        let (uid, pid) = peer.unwrap_or_default();
        match self.check.admit(&mut req, uid.unwrap_or(u32::MAX), pid) {
            Ok(()) => self.inner.call(req),
            Err(resp) => Box::pin(async move { resp }),
        }
    }
}

/// A running control socket.
#[derive(Debug)]
pub struct ControlHandle {
    metrics: Arc<Metrics>,
    path: PathBuf,
    shutdown: watch::Sender<bool>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl ControlHandle {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The socket's counters (refusals such as `peer_uid`, requests).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
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
/// `allowed_uids`, or — when empty — this process's own uid and root; no credential is asked
/// for. [`serve_control_with`] takes a verifier and the other [`ControlOptions`].
pub async fn serve_control(
    path: &Path,
    allowed_uids: &[u32],
    handler: impl Handler,
) -> Result<ControlHandle, NetError> {
    serve_control_with(path, ControlOptions::new(allowed_uids), handler).await
}

/// Serves `handler` on a Unix socket at `path` (mode 0600) with `control`'s peer uids, caller
/// verification and body limit.
pub async fn serve_control_with(
    path: &Path,
    control: ControlOptions,
    handler: impl Handler,
) -> Result<ControlHandle, NetError> {
    let allowed_uids = control.allowed_uids.as_slice();
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
    options.limits.head.max_body = control.body_limit;
    options.limits.body_ceiling = u64::MAX;
    let handler = Checked {
        check: CallerCheck {
            verifier: control.verifier.clone(),
            open_paths: control.open_paths.clone().into(),
            clock: control.clock.clone(),
        },
        inner: handler,
    };
    let metrics = Arc::new(Metrics::default());
    let mut shared = Shared::new(Arc::new(handler), options, metrics.clone(), None);
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
                    let (uid, pid) = match stream.peer_cred() {
                        Ok(c) if allowed.contains(&c.uid()) => (c.uid(), c.pid()),
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
                        info.peer_pid = pid;
                        let info = Arc::new(info);
                        let limits = shared.options.limits.clone();
                        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let (shared, info) = (shared.clone(), info.clone());
                            let limits = limits.clone();
                            async move {
                                let req = req.map(|b| Body::new(Source::Hyper(b), &limits));
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
        metrics,
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
