//! The TLS listener (TCP: HTTP/1.1 and HTTP/2 by ALPN) and its handle: connection limits,
//! handshake timeout, hyper settings, graceful shutdown.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::body::{Body, Source};
use crate::config::ServerOptions;
use crate::conns::ConnSlot;
use crate::error::{NetError, io_err};
use crate::h1::{H1Guard, H1Refusals};
use crate::handler::{ConnInfo, Handler, Protocol};
use crate::idle::{Activity, Tracked, Watched};
use crate::metrics::Metrics;
use crate::quic::QuicSide;
use crate::service::{Shared, serve};
use crate::stall::{SendProgress, Streams, WriteStall};
use crate::tls::{TlsSource, with_tcp_alpn};

/// hyper's own limit on an HTTP/1.1 request's header fields when none is set (its
/// `DEFAULT_MAX_HEADERS`), which is also [`crate::HeadLimits`]'s default.
const HYPER_MAX_HEADERS: usize = 100;

/// Caches the listener's view of the source's config (with ALPN) until the source changes.
struct TlsCache {
    source: Arc<dyn TlsSource>,
    last: Mutex<Option<(Arc<ServerConfig>, Arc<ServerConfig>)>>,
}

impl TlsCache {
    fn current(&self) -> Arc<ServerConfig> {
        let cur = self.source.current();
        if let Ok(mut g) = self.last.lock() {
            if let Some((src, derived)) = g.as_ref() {
                if Arc::ptr_eq(src, &cur) {
                    return derived.clone();
                }
            }
            let derived = with_tcp_alpn(cur.clone());
            *g = Some((cur, derived.clone()));
            return derived;
        }
        with_tcp_alpn(cur)
    }
}

/// A running listener: its address, counters, reload and shutdown.
pub struct ServerHandle {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    done: Option<tokio::task::JoinHandle<()>>,
    quic: Option<QuicSide>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ServerHandle {
    /// The TCP address (the QUIC socket has the same port number on UDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listener's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Applies the TLS source's current configuration to QUIC now. Without this call it is
    /// applied before the next QUIC connection is accepted, as TCP reads the source per
    /// connection; live connections are kept either way.
    pub fn reload(&self) -> Result<(), NetError> {
        match &self.quic {
            Some(q) => q.reload(),
            None => Ok(()),
        }
    }

    /// Stops accepting, lets in-flight requests finish, closes idle connections, then returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
        if let Some(q) = self.quic.take() {
            q.shutdown().await;
        }
    }
}

/// Starts a listener on `addr` (TCP, and UDP on the same port number when HTTP/3 is on).
///
/// With port 0 the OS picks a TCP port and the same number is then bound on UDP (retried a few
/// times if that UDP port is taken).
pub async fn serve_tls(
    addr: SocketAddr,
    tls: Arc<dyn TlsSource>,
    options: ServerOptions,
    handler: impl Handler,
) -> Result<ServerHandle, NetError> {
    let handler: Arc<dyn Handler> = Arc::new(handler);
    let metrics = Arc::new(Metrics::default());
    let mut attempt = 0;
    // One `Shared` for TCP and QUIC: the rate limits count a client's requests over both.
    let (listener, shared, quic) = loop {
        attempt += 1;
        let listener =
            bind_tcp(addr, options.reuse_port).map_err(io_err(format!("bind tcp `{addr}`")))?;
        let local = listener.local_addr().map_err(io_err("tcp local address"))?;
        let shared = Arc::new(Shared::new(
            handler.clone(),
            options.clone(),
            metrics.clone(),
            Some(local.port()),
        ));
        if !options.http3 {
            break (listener, shared, None);
        }
        match QuicSide::start(local, tls.clone(), shared.clone()) {
            Ok(q) => break (listener, shared, Some(q)),
            Err(e) if addr.port() == 0 && attempt < 8 => {
                tracing::debug!("udp port {} taken, retrying: {e}", local.port());
            }
            Err(e) => return Err(e),
        }
    };
    let local = listener.local_addr().map_err(io_err("tcp local address"))?;
    let (tx, rx) = watch::channel(false);
    let cache = Arc::new(TlsCache {
        source: tls,
        last: Mutex::new(None),
    });
    let done = tokio::spawn(accept_loop(listener, cache, shared, rx));
    Ok(ServerHandle {
        addr: local,
        metrics,
        shutdown: tx,
        done: Some(done),
        quic,
    })
}

fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<TlsCache>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let counter = shared.connections.clone();
    // Each connection task holds a sender; when all are dropped, every connection has finished.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let limits = &shared.options.limits;
                let Some(slot) = counter.acquire(peer.ip(), limits.max_connections_per_addr, limits.max_connections) else {
                    shared.metrics.refusal("connection_limit");
                    drop(tcp);
                    continue;
                };
                shared.metrics.connection();
                let _ = tcp.set_nodelay(true);
                let conn = Conn { tls: tls.current(), source: tls.source.clone(), shared: shared.clone(), stop: stop.clone(), _alive: alive_tx.clone(), _slot: slot };
                tokio::spawn(conn.run(tcp, peer));
            }
        }
    }
    drop(listener);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

struct Conn {
    tls: Arc<ServerConfig>,
    source: Arc<dyn TlsSource>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
    _slot: ConnSlot,
}

impl Conn {
    async fn run(mut self, tcp: TcpStream, peer: SocketAddr) {
        let limits = self.shared.options.limits.clone();
        let accept = TlsAcceptor::from(self.tls.clone()).accept(tcp);
        let stream = match tokio::time::timeout(limits.handshake_timeout, accept).await {
            Ok(Ok(s)) => {
                self.shared.metrics.handshake(true);
                s
            }
            _ => {
                self.shared.metrics.handshake(false);
                return;
            }
        };
        let (_, session) = stream.get_ref();
        let h2 = session.alpn_protocol() == Some(b"h2");
        let mut info = ConnInfo::new(peer, if h2 { Protocol::Http2 } else { Protocol::Http1 });
        info.sni = session
            .server_name()
            .map(|s| Arc::from(s.to_ascii_lowercase()));
        let chain = session
            .peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect());
        let info = Arc::new(info.with_chain(chain, self.source.as_ref()));
        // A client that stops reading the socket: its connection is closed.
        let stream = WriteStall::new(stream, limits.body_idle_timeout);
        let shared = self.shared.clone();
        let body_limits = limits.clone();
        if h2 {
            let activity = Activity::new();
            let watched = activity.clone();
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (shared, info) = (shared.clone(), info.clone());
                let body_limits = body_limits.clone();
                let in_flight = watched.begin();
                async move {
                    // Polled in the stream's own task, which runs under `SendStallExec`.
                    let progress = SendProgress::current();
                    let req = req.map(|b| Body::new(Source::Hyper(b), &body_limits));
                    let resp = serve(shared, info, req, None).await;
                    Ok::<_, std::convert::Infallible>(
                        resp.map(|b| Tracked::new(b, in_flight, progress)),
                    )
                }
            });
            // A response the client takes nothing of for the body idle timeout (a window never
            // opened) has its stream reset.
            let streams = Streams::new(limits.body_idle_timeout, self.shared.metrics.clone());
            let mut b = hyper::server::conn::http2::Builder::new(streams.exec());
            b.timer(TokioTimer::new())
                .max_concurrent_streams(limits.max_concurrent_streams)
                .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
                .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
                .max_header_list_size(limits.max_header_list_size)
                .keep_alive_interval(Some(limits.header_read_timeout))
                .keep_alive_timeout(limits.header_read_timeout);
            // Idle (no request in progress, no frame but PINGs received) for the header timeout,
            // from the handshake on: ended with GOAWAY. This also bounds a missing preface.
            let io = Watched::new(stream, activity.clone());
            let conn = b.serve_connection(TokioIo::new(io), svc);
            tokio::pin!(conn);
            // The connection's one stall sweep, for as long as it runs, its shutdown included.
            let sweep = streams.sweep();
            tokio::pin!(sweep);
            let idle_close = tokio::select! {
                _ = conn.as_mut() => return,
                _ = self.stop.changed() => false,
                _ = activity.idle(limits.header_read_timeout) => true,
                () = sweep.as_mut() => return,
            };
            conn.as_mut().graceful_shutdown();
            let finish = async {
                if idle_close {
                    // A silent peer never acknowledges the GOAWAY's PING: do not wait long on it.
                    let _ = tokio::time::timeout(limits.header_read_timeout, conn).await;
                } else {
                    let _ = conn.await;
                }
            };
            tokio::select! {
                () = finish => {}
                () = sweep => {}
            }
        } else {
            let refusal = Arc::new(H1Refusals::default());
            // Bodies up to the ceiling pass the framing check; the route's limit decides.
            let mut framing = limits.head.clone();
            framing.max_body = framing.max_body.max(limits.body_ceiling);
            let guard = H1Guard::new(
                stream,
                framing,
                refusal.clone(),
                self.shared.metrics.clone(),
            );
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (shared, info, refusal) = (shared.clone(), info.clone(), refusal.clone());
                let body_limits = body_limits.clone();
                async move {
                    let req = req.map(|b| Body::new(Source::Hyper(b), &body_limits));
                    Ok::<_, std::convert::Infallible>(serve(shared, info, req, Some(refusal)).await)
                }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true);
            // The framing check has counted the fields already; hyper's own limit is only a second
            // one. Set to anything, even its default, hyper fills two arrays of that many entries
            // for every request (2 × 100 entries: about 1,700 of the gateway's 192,000 instructions
            // per request, by callgrind); left at its default, it takes them uninitialised.
            if limits.head.max_headers != HYPER_MAX_HEADERS {
                b.max_headers(limits.head.max_headers.max(1));
            }
            let conn = b.serve_connection(TokioIo::new(guard), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = self.stop.changed() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
