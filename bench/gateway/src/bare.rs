//! `gateway-bench serve-proxy CERT KEY TRUST UPSTREAM_ADDR HOST ADDR_FILE THREADS`: the floor
//! under the gateway, a process of its own so its CPU time is its own. It is the gateway's
//! stack with none of the gateway's work: the same listener (`tianping_net::serve_tls`: TLS 1.3,
//! HTTP/1.1 and HTTP/2 by ALPN, the same framing checks, limits and request pipeline) in front
//! of one multiplexed HTTP/2 connection to the upstream over rustls (hyper's client, as the
//! gateway's), on one multi-threaded tokio runtime of THREADS workers. No token is checked, no
//! policy decided, no audit event written, no assertion added and no header stripped but
//! `Host` (HTTP/2 carries it as `:authority`) and `Connection`.
//!
//! What it measures: how close any proxy built from these parts can come to nginx on this
//! machine. The gateway's rate against it is the cost of the gateway's own work; its rate
//! against nginx is the cost of the parts.
//!
//! It serves `HOST` with the certificate at CERT and key at KEY (the gateway's, as nginx does),
//! reaches the upstream at UPSTREAM_ADDR as `localhost`, verified against the trust bundle at
//! TRUST, writes its address to ADDR_FILE (aside, then renamed) once listening, and stops when
//! its standard input closes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri, Version, header};
use http_body_util::BodyExt as _;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tianping_certs::ServerTlsBuilder;
use tianping_net::{Body, BoxError, HostSet, ResponseBody, ServerOptions, full, serve_tls};
use tokio::io::AsyncReadExt as _;

use crate::Res;

/// Runs the proxy; returns when standard input closes.
pub fn main(args: &[String]) -> Res<()> {
    let [cert, key, trust, upstream, host, addr_file, threads] = args else {
        return Err(
            "usage: gateway-bench serve-proxy CERT KEY TRUST UPSTREAM_ADDR HOST ADDR_FILE THREADS"
                .into(),
        );
    };
    let threads: usize = threads.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let trust = std::fs::read(trust)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(serve(
        Path::new(cert),
        Path::new(key),
        trust,
        upstream,
        host,
        Path::new(addr_file),
    ))
}

async fn serve(
    cert: &Path,
    key: &Path,
    trust: Vec<u8>,
    upstream: SocketAddr,
    host: &str,
    addr_file: &Path,
) -> Res<()> {
    let to = Arc::new(Upstream {
        trust,
        addr: upstream,
        authority: format!("localhost:{}", upstream.port()).parse()?,
        send: Mutex::new(None),
    });
    // at once, so a proxy that cannot reach the upstream fails before it says it listens
    to.sender().await?;
    let handler = move |req: Request<Body>| {
        let to = Arc::clone(&to);
        async move {
            to.forward(req).await.unwrap_or_else(|e| {
                let mut r = Response::new(full(format!("bad gateway: {e}\n")));
                *r.status_mut() = StatusCode::BAD_GATEWAY;
                r
            })
        }
    };
    let mut options = ServerOptions::new(HostSet::new([host, "127.0.0.1"]));
    // the load client comes from 127.0.0.1
    options.limits.max_connections_per_addr = 100_000;
    let tls = Arc::new(ServerTlsBuilder::new(cert, key).build()?);
    let server = serve_tls(([127, 0, 0, 1], 0).into(), tls, options, handler).await?;
    let aside = addr_file.with_extension("tmp");
    std::fs::write(&aside, format!("{}\n", server.local_addr()))?;
    std::fs::rename(&aside, addr_file)?;
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while stdin.read(&mut sink).await? > 0 {}
    server.shutdown().await;
    Ok(())
}

/// The upstream: one HTTP/2 connection, made again when it has closed (the upstream ends an
/// idle one, as it did while other rows ran).
struct Upstream {
    trust: Vec<u8>,
    addr: SocketAddr,
    authority: Authority,
    send: Mutex<Option<http2::SendRequest<Body>>>,
}

impl Upstream {
    async fn sender(&self) -> Res<http2::SendRequest<Body>> {
        if let Some(s) = self
            .send
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|s| !s.is_closed())
        {
            return Ok(s.clone());
        }
        let s = connect(&self.trust, self.addr).await?;
        *self.send.lock().unwrap_or_else(PoisonError::into_inner) = Some(s.clone());
        Ok(s)
    }

    async fn forward(&self, req: Request<Body>) -> Res<Response<ResponseBody>> {
        let mut send = self.sender().await?;
        let (mut parts, body) = req.into_parts();
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTPS);
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = Uri::from_parts(uri)?;
        parts.version = Version::HTTP_2;
        parts.headers.remove(header::HOST);
        parts.headers.remove(header::CONNECTION);
        let answer = send.send_request(Request::from_parts(parts, body)).await?;
        let (parts, body) = answer.into_parts();
        let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
        Ok(Response::from_parts(parts, body))
    }
}

/// One HTTP/2 connection to the upstream, its task spawned.
async fn connect(trust: &[u8], upstream: SocketAddr) -> Res<http2::SendRequest<Body>> {
    let mut config = tianping_certs::client_config(trust, None)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(upstream).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("the upstream did not choose h2 (serve-proxy needs `--upstream any`)".into());
    }
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(send)
}
