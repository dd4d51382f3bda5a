//! A real PKI, a test handler and raw clients shared by the integration tests.
#![expect(dead_code, unreachable_pub, reason = "each test binary uses a part")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tianping_certs::{
    CaCert, CertKind, ClientAuth, KeyAlg, LeafRequest, ReloadableServerConfig, ServerTlsBuilder,
};
use tianping_core::UnixTime;
use tianping_net::{
    Body, ConnInfo, HostSet, NormalizedPath, ResponseBody, ServerHandle, ServerOptions, full,
    serve_tls,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const HOST: &str = "gw.a.tianping.localhost";
pub const OTHER: &str = "idp.a.tianping.localhost";
/// A host of another zone: not served by the test listener, so 421.
pub const OTHER_ZONE: &str = "gw.b.tianping.localhost";

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub root: CaCert,
    pub zone: CaCert,
    pub trust_pem: String,
    pub client_chain: String,
    pub client_key: String,
    pub client_serial: String,
}

impl Pki {
    pub fn new() -> Self {
        let now = UnixTime::from_system_time(std::time::SystemTime::now());
        let root = CaCert::new_root("Court", KeyAlg::EcP256, now).unwrap();
        let zone = root
            .new_zone(&"private".parse().unwrap(), "Court", KeyAlg::EcP256, now)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let trust_pem = format!("{}{}", root.cert_pem(), zone.cert_pem());
        std::fs::write(dir.path().join("trust.pem"), &trust_pem).unwrap();
        let mut req = LeafRequest::new(CertKind::Client, "Judge Li");
        req.subject = Some("u-1001".parse().unwrap());
        req.court = Some("bj.01".parse().unwrap());
        let client = zone.issue(&req, now).unwrap();
        let pki = Self {
            dir,
            root,
            zone,
            trust_pem,
            client_chain: client.chain_pem.clone(),
            client_key: client.key_pem.expose().clone(),
            client_serial: client.serial.clone(),
        };
        pki.issue_server("server-1");
        pki
    }

    /// Issues a server certificate named `cn` and writes it as the served one.
    pub fn issue_server(&self, cn: &str) -> Vec<u8> {
        let now = UnixTime::from_system_time(std::time::SystemTime::now());
        let mut req = LeafRequest::new(CertKind::Server, cn);
        req.dns = vec![HOST.into(), OTHER.into(), "localhost".into()];
        let leaf = self.zone.issue(&req, now).unwrap();
        std::fs::write(self.path("tls.pem"), &leaf.chain_pem).unwrap();
        std::fs::write(self.path("tls.key"), leaf.key_pem.expose()).unwrap();
        leaf.leaf_der
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn server_config(&self, auth: ClientAuth) -> ReloadableServerConfig {
        ServerTlsBuilder::new(self.path("tls.pem"), self.path("tls.key"))
            .client_auth(auth, self.path("trust.pem"), vec![])
            .build()
            .unwrap()
    }

    pub fn client_config(&self, with_cert: bool, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let cert = with_cert.then_some((self.client_chain.as_bytes(), self.client_key.as_bytes()));
        let mut c = tianping_certs::client_config(self.trust_pem.as_bytes(), cert).unwrap();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        c
    }
}

/// Answers `proto=.. path=.. identity=.. body=<bytes read>`; `/admin` answers `admin`.
pub async fn handler(req: Request<Body>) -> Response<ResponseBody> {
    let info = req.extensions().get::<ConnInfo>().cloned().unwrap();
    let normalized = req.extensions().get::<NormalizedPath>().cloned();
    let path = req.uri().path().to_string();
    assert_eq!(normalized.map(|n| n.path().to_string()), Some(path.clone()));
    let body = match req.into_body().bytes().await {
        Ok(b) => b.len().to_string(),
        Err(e) => {
            let mut r = Response::new(full(e.to_string()));
            *r.status_mut() = http::StatusCode::from_u16(e.status()).unwrap();
            return r;
        }
    };
    if path == "/admin" {
        return Response::new(full("admin"));
    }
    let identity = info
        .identity
        .as_ref()
        .map(|i| {
            format!(
                "{}@{}",
                i.subject.as_ref().map(|s| s.as_str()).unwrap_or("-"),
                i.court.as_ref().map(|c| c.as_str()).unwrap_or("-")
            )
        })
        .unwrap_or_else(|| "-".into());
    Response::new(full(format!(
        "proto={} path={path} identity={identity} body={body}",
        info.protocol.as_str()
    )))
}

pub fn options() -> ServerOptions {
    ServerOptions::new(HostSet::new([HOST, OTHER]))
}

pub async fn start(
    pki: &Pki,
    auth: ClientAuth,
    options: ServerOptions,
) -> (ServerHandle, ReloadableServerConfig) {
    start_with(pki, auth, options, handler).await
}

/// [`start`] with a handler of the test's own.
pub async fn start_with(
    pki: &Pki,
    auth: ClientAuth,
    options: ServerOptions,
    handler: impl tianping_net::Handler,
) -> (ServerHandle, ReloadableServerConfig) {
    let tls = pki.server_config(auth);
    let server = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(tls.clone()),
        options,
        handler,
    )
    .await
    .unwrap();
    (server, tls)
}

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection with SNI `sni` and ALPN http/1.1.
pub async fn raw_connect(pki: &Pki, addr: SocketAddr, sni: &str) -> Tls {
    let cfg = Arc::new(pki.client_config(false, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Writes `bytes` on a fresh connection and reads until the server closes it.
pub async fn raw(pki: &Pki, addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = raw_connect(pki, addr, HOST).await;
    // The server may close before reading everything it was sent (a refused head).
    let _ = s.write_all(bytes).await;
    read_to_close(&mut s).await
}

pub async fn read_to_close(s: &mut Tls) -> String {
    let mut out = Vec::new();
    // A guard against a hung test, not a timing assertion.
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Status codes of every response in a raw HTTP/1.1 transcript.
pub fn statuses(transcript: &str) -> Vec<u16> {
    transcript
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|s| s.get(..3)?.parse().ok())
        .collect()
}

/// One HTTP/2 request on a fresh TLS connection with SNI [`HOST`], to `authority` and `path`
/// with the extra `headers`: the status and body.
pub async fn h2_request(
    pki: &Pki,
    addr: SocketAddr,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let cfg = Arc::new(pki.client_config(false, &[b"h2"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let drive = tokio::spawn(conn);
    let mut req = http::Request::get(format!("https://{authority}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    drop(send);
    let _ = drive.await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// One HTTP/3 request on a fresh QUIC connection with SNI [`HOST`], to `authority` and `path`
/// with the extra `headers`: the status and body.
pub async fn h3_request_once(
    pki: &Pki,
    addr: SocketAddr,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut h3 = H3Client::connect(pki, addr).await;
    let mut req = http::Request::get(format!("https://{authority}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut stream = h3.send.send_request(req.body(()).unwrap()).await.unwrap();
    stream.finish().await.unwrap();
    let resp = stream.recv_response().await.unwrap();
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    h3.close();
    (resp.status().as_u16(), String::from_utf8(body).unwrap())
}

/// An HTTP/3 client on a fresh QUIC connection with SNI [`HOST`] (no 0-RTT).
pub struct H3Client {
    pub send: h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>,
    drive: tokio::task::JoinHandle<()>,
    ep: quinn::Endpoint,
}

impl H3Client {
    pub async fn connect(pki: &Pki, addr: SocketAddr) -> Self {
        let mut tls = pki.client_config(false, &[b"h3"]);
        tls.enable_early_data = false;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = ep.connect(addr, HOST).unwrap().await.unwrap();
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .unwrap();
        let drive = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Self { send, drive, ep }
    }

    /// Ends the connection.
    pub fn close(self) {
        drop(self.send);
        self.drive.abort();
        self.ep.close(0u32.into(), b"done");
    }
}

/// Writes `bytes` on a fresh connection to the control socket at `socket` and reads until it
/// is closed.
pub async fn control_raw(socket: &std::path::Path, bytes: &[u8]) -> String {
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A `GET` of `path` on the control socket at `socket` with `headers`: the status and the body
/// as text.
pub async fn control_get(
    socket: &std::path::Path,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(tianping_net::ControlBody::empty()).unwrap();
    let resp = tianping_net::control_send(socket, req, tianping_net::CONTROL_TIMEOUT)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().bytes().await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}
