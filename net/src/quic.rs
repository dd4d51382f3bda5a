//! HTTP/3 over QUIC on the TCP listener's port number: address validation by Retry, no 0-RTT,
//! idle timeout, stream and window limits, migration off unless configured; certificates reload
//! through `Endpoint::set_server_config` without touching live connections.
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use h3::server::{RequestResolver, RequestStream};
use http_body_util::BodyExt;
use quinn::crypto::rustls::{HandshakeData, QuicServerConfig};
use quinn::{Endpoint, IdleTimeout, TransportConfig, VarInt};
use tokio::sync::{mpsc, watch};

use crate::body::{Body, Source};
use crate::config::Limits;
use crate::error::{NetError, io_err};
use crate::handler::{ConnInfo, Protocol};
use crate::idle::Activity;
use crate::service::{Shared, serve};
use crate::stall::PIECE;
use crate::tls::TlsSource;

pub(crate) struct QuicSide {
    endpoint: Endpoint,
    source: Arc<dyn TlsSource>,
    base: Arc<quinn::ServerConfig>,
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

fn quic_crypto(source: &dyn TlsSource) -> Result<Arc<QuicServerConfig>, NetError> {
    let mut tls = (*source.current()).clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    // No 0-RTT: early data can be replayed, and the handlers here change state.
    tls.max_early_data_size = 0;
    Ok(Arc::new(
        QuicServerConfig::try_from(Arc::new(tls)).map_err(|e| NetError::Quic(e.to_string()))?,
    ))
}

/// The endpoint's config with the source's current certificates; the rest (and the Retry token
/// key, so tokens issued before a reload stay valid) is kept from `base`.
fn reloaded(
    base: &quinn::ServerConfig,
    source: &dyn TlsSource,
) -> Result<quinn::ServerConfig, NetError> {
    let mut c = base.clone();
    c.crypto = quic_crypto(source)?;
    Ok(c)
}

fn quinn_config(source: &dyn TlsSource, limits: &Limits) -> Result<quinn::ServerConfig, NetError> {
    let mut sc = quinn::ServerConfig::with_crypto(quic_crypto(source)?);
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(
        IdleTimeout::try_from(limits.quic_idle_timeout)
            .map_err(|e| NetError::Quic(e.to_string()))?,
    ))
    .max_concurrent_bidi_streams(VarInt::from_u32(limits.max_concurrent_streams))
    .max_concurrent_uni_streams(VarInt::from_u32(8))
    .stream_receive_window(VarInt::from_u32(limits.quic_stream_window))
    .receive_window(VarInt::from_u32(limits.quic_connection_window));
    sc.transport_config(Arc::new(t));
    sc.migration(limits.quic_migration);
    sc.max_incoming(limits.max_connections.max(1));
    Ok(sc)
}

/// The kernel receive buffer asked for the QUIC socket. One socket takes every client's
/// datagrams, and the default (208 KiB on Linux) overflows under load: a bench of 64 connections
/// lost 9.5k–49k datagrams per 10 s at the server's socket, each a retransmission and a p99 of
/// 260–315 ms. 4 MiB holds about 3,000 full datagrams; the kernel caps it at `net.core.rmem_max`.
const QUIC_RECV_BUFFER: usize = 4 << 20;

/// The UDP socket of a QUIC listener on `addr`, with [`QUIC_RECV_BUFFER`].
fn quic_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // a smaller buffer than asked (the kernel's cap) is still a listener
    let _ = socket.set_recv_buffer_size(QUIC_RECV_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl QuicSide {
    pub(crate) fn start(
        addr: SocketAddr,
        source: Arc<dyn TlsSource>,
        shared: Arc<Shared>,
    ) -> Result<Self, NetError> {
        let limits = shared.options.limits.clone();
        let base = Arc::new(quinn_config(source.as_ref(), &limits)?);
        let socket = quic_socket(addr).map_err(io_err(format!("bind udp `{addr}`")))?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| std::io::Error::other("QUIC needs a tokio runtime to run on"))
            .map_err(io_err(format!("bind udp `{addr}`")))?;
        let endpoint = Endpoint::new(
            quinn::EndpointConfig::default(),
            Some((*base).clone()),
            socket,
            runtime,
        )
        .map_err(io_err(format!("bind udp `{addr}`")))?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            endpoint.clone(),
            source.clone(),
            base.clone(),
            shared,
            stop_rx,
        ));
        Ok(Self {
            endpoint,
            source,
            base,
            task,
            stop,
        })
    }

    pub(crate) fn reload(&self) -> Result<(), NetError> {
        self.endpoint
            .set_server_config(Some(reloaded(&self.base, self.source.as_ref())?));
        Ok(())
    }

    /// Stops accepting connections, sends GOAWAY on live ones, waits for their in-flight
    /// requests, then closes the endpoint.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.endpoint.close(VarInt::from_u32(0x100), b"shutdown"); // H3_NO_ERROR
        self.endpoint.wait_idle().await;
    }
}

async fn accept_loop(
    endpoint: Endpoint,
    source: Arc<dyn TlsSource>,
    base: Arc<quinn::ServerConfig>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let counter = shared.connections.clone();
    // The source's config the endpoint was last given: a change (a reload) is applied before the
    // next connection is accepted, as TCP reads the source per connection.
    let mut last = source.current();
    // Each connection and request task holds a sender; all dropped means all finished.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    loop {
        let incoming = tokio::select! {
            _ = stop.changed() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let limits = &shared.options.limits;
        let current = source.current();
        if !Arc::ptr_eq(&current, &last) {
            match reloaded(&base, source.as_ref()) {
                Ok(c) => endpoint.set_server_config(Some(c)),
                Err(e) => tracing::warn!("quic keeps its previous tls configuration: {e}"),
            }
            last = current;
        }
        if limits.quic_retry && !incoming.remote_address_validated() {
            // Address validation: a Retry costs the server no state.
            let _ = incoming.retry();
            continue;
        }
        let peer = incoming.remote_address();
        let Some(slot) = counter.acquire(
            peer.ip(),
            limits.max_connections_per_addr,
            limits.max_connections,
        ) else {
            shared.metrics.refusal("connection_limit");
            incoming.refuse();
            continue;
        };
        shared.metrics.connection();
        let (shared, alive, stop) = (shared.clone(), alive_tx.clone(), stop.clone());
        let source = source.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(conn) = incoming.accept() else { return };
            let conn =
                match tokio::time::timeout(shared.options.limits.handshake_timeout, conn).await {
                    Ok(Ok(c)) => {
                        shared.metrics.handshake(true);
                        c
                    }
                    _ => {
                        shared.metrics.handshake(false);
                        return;
                    }
                };
            let mut info = ConnInfo::new(peer, Protocol::Http3);
            info.sni = conn
                .handshake_data()
                .and_then(|h| h.downcast::<HandshakeData>().ok())
                .and_then(|h| h.server_name)
                .map(|s| Arc::from(s.to_ascii_lowercase()));
            let chain = conn
                .peer_identity()
                .and_then(|p| {
                    p.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                        .ok()
                })
                .map(|v| *v);
            let info = Arc::new(info.with_chain(chain, source.as_ref()));
            serve_h3(conn, shared, info, alive, stop).await;
        });
    }
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

async fn serve_h3(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    alive: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = shared.options.limits.clone();
    let built = h3::server::builder()
        .max_field_section_size(u64::from(limits.max_header_list_size))
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await;
    let Ok(mut h3c) = built else { return };
    // Idle from the handshake on: quinn's own idle timeout restarts on every packet, PINGs
    // included, so it alone would let a client holding no request keep the connection.
    let activity = Activity::new();
    let spawn = |resolver: RequestResolver<h3_quinn::Connection, Bytes>| {
        let (shared, info, alive) = (shared.clone(), info.clone(), alive.clone());
        let in_flight = activity.begin();
        tokio::spawn(async move {
            let (_alive, _in_flight) = (alive, in_flight);
            let Ok((req, stream)) = resolver.resolve_request().await else {
                return;
            };
            let _ = answer(shared, info, req, stream).await;
        });
    };
    let idle_close = loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break false,
            () = activity.idle(limits.header_read_timeout) => break true,
            a = h3c.accept() => a,
        };
        match accepted {
            Ok(Some(resolver)) => spawn(resolver),
            _ => return,
        }
    };
    // GOAWAY: no new requests; requests already accepted are answered, then the connection is
    // closed (with H3_NO_ERROR, as `h3c` drops) unless the client has gone away first.
    let _ = h3c.shutdown(0).await;
    let gone = async {
        while let Ok(Some(resolver)) = h3c.accept().await {
            spawn(resolver);
        }
    };
    if idle_close {
        // A client that does not go away is closed after one more timeout.
        let _ = tokio::time::timeout(limits.header_read_timeout, gone).await;
    } else {
        tokio::select! {
            () = gone => {}
            () = activity.drained() => {}
        }
    }
    activity.drained().await;
}

async fn answer<S>(
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    req: http::Request<()>,
    stream: RequestStream<S, Bytes>,
) -> Result<(), h3::error::StreamError>
where
    S: h3::quic::BidiStream<Bytes> + Send + 'static,
    S::RecvStream: Send + 'static,
    S::SendStream: Send + 'static,
{
    let limits = &shared.options.limits;
    let (send, mut recv) = stream.split();
    // A request of a method without body semantics and no declared length: its stream's end
    // (the client's FIN, sent with the headers) is read before the handler runs, so an empty
    // body is known to be empty, as HTTP/1.1 and HTTP/2 know it. (Not knowing made the gateway
    // forward such a GET without end-of-stream; a service answering without reading reset the
    // stream, and enough resets closed the gateway's upstream connection, 502 to all on it.)
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bodiless = matches!(
        *req.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::DELETE
    ) && declared.is_none();
    let mut first = None;
    if bodiless || declared == Some(0) {
        match tokio::time::timeout(limits.body_idle_timeout, recv.recv_data()).await {
            Ok(Ok(None)) => {
                let req = req.map(|()| Body::new(Source::Empty, limits));
                return respond(shared, info, req, send).await;
            }
            Ok(Ok(Some(mut chunk))) => first = Some(chunk.copy_to_bytes(chunk.remaining())),
            Ok(Err(e)) => return Err(e),
            // nothing yet: the body streams as any other
            Err(_) => {}
        }
    }
    // The body is pumped through a small channel: back-pressure, never buffered whole.
    let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(2);
    tokio::spawn(async move {
        if let Some(b) = first
            && tx.send(Ok(b)).await.is_err()
        {
            return;
        }
        loop {
            match recv.recv_data().await {
                Ok(Some(mut chunk)) => {
                    let b = chunk.copy_to_bytes(chunk.remaining());
                    if tx.send(Ok(b)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    break;
                }
            }
        }
    });
    // A declared length lets an over-limit body be refused before it is read.
    let req = req.map(|()| Body::new(Source::Channel(rx, declared), limits));
    respond(shared, info, req, send).await
}

/// Serves `req` and sends its response on `send`.
async fn respond<S>(
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    req: http::Request<Body>,
    mut send: RequestStream<S, Bytes>,
) -> Result<(), h3::error::StreamError>
where
    S: h3::quic::SendStream<Bytes> + Send + 'static,
{
    let stall = shared.options.limits.body_idle_timeout;
    let metrics = shared.metrics.clone();
    let resp = serve(shared, info, req, None).await;
    let (parts, mut body) = resp.into_parts();
    // Each write must be taken by the client's flow control within the body idle timeout, or the
    // stream is reset (the send-stall timeout); data goes in pieces, so a steady reader keeps up.
    let sent = async {
        let timed_out = |_| StreamErrorOrStall::Stall;
        tokio::time::timeout(
            stall,
            send.send_response(http::Response::from_parts(parts, ())),
        )
        .await
        .map_err(timed_out)??;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(mut data) = frame.into_data() {
                while !data.is_empty() {
                    let piece = data.split_to(data.len().min(PIECE));
                    tokio::time::timeout(stall, send.send_data(piece))
                        .await
                        .map_err(timed_out)??;
                }
            }
        }
        Ok(())
    };
    match sent.await {
        Ok(()) => send.finish().await,
        Err(StreamErrorOrStall::Stream(e)) => Err(e),
        Err(StreamErrorOrStall::Stall) => {
            metrics.refusal("send_stall");
            send.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
            Ok(())
        }
    }
}

/// Why sending a response ended early.
enum StreamErrorOrStall {
    Stream(h3::error::StreamError),
    /// The client took nothing for the body idle timeout.
    Stall,
}

impl From<h3::error::StreamError> for StreamErrorOrStall {
    fn from(e: h3::error::StreamError) -> Self {
        Self::Stream(e)
    }
}
