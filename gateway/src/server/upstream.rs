//! Forwarding to a service of the zone bound to an `https` URL: TLS 1.3 with the binding's CA
//! (and the gateway's node certificate for services that ask for one), HTTP/2 or HTTP/1.1 by
//! ALPN, pooled connections (one multiplexed HTTP/2 connection, or idle HTTP/1.1 ones), a
//! connect timeout and a response-head timeout; bodies stream both ways (the listener's idle
//! timeouts hold them).
//!
//! An HTTP/1.1 connection goes back to the idle pool when its answer's body has been read to
//! its end (not before: it cannot carry another request until then), the most recently used
//! first; an answer whose body is dropped unread takes its connection with it.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::BodyExt as _;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tianping_net::{Body, BoxError, ResponseBody};

/// The longest a connection to a service may take, TCP and TLS (a service of the zone answers
/// at once or is down).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a service may take to start its answer (its head).
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request could not be forwarded (502 or 504).
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("the service's URL `{0}` is not an https URL with a host")]
    Url(String),
    #[error("the service's TLS settings: {0}")]
    Tls(String),
    #[error("cannot reach the service: {0}")]
    Connect(String),
    #[error("the service did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the service's answer failed: {0}")]
    Http(String),
}

impl UpstreamError {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::Timeout(_) => 504,
            _ => 502,
        }
    }
}

/// One service reached over HTTPS.
pub(crate) struct Upstream {
    host: String,
    port: u16,
    authority: String,
    /// The authority as HTTP/2's `:authority` and HTTP/1.1's `Host`, made once.
    authority_uri: http::uri::Authority,
    host_header: HeaderValue,
    prefix: String,
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    h2: Mutex<Option<http2::SendRequest<Body>>>,
    h1: Arc<IdlePool>,
}

/// The idle HTTP/1.1 connections to one service, the most recently used last.
struct IdlePool {
    conns: Mutex<Vec<http1::SendRequest<Body>>>,
    max: usize,
}

impl IdlePool {
    /// Keeps `s` for the next request, unless it is closed or the pool is full.
    fn put(&self, s: http1::SendRequest<Body>) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max {
            idle.push(s);
        }
    }

    /// The most recently used connection still open.
    fn take(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Upstream {
    /// The service at `url`, its certificate verified by `ca_pem`, `client` (chain and key PEM)
    /// presented when it asks for a certificate; `http` offered, at most `max_idle` idle
    /// HTTP/1.1 connections kept.
    pub(crate) fn new(
        url: &str,
        ca_pem: &[u8],
        client: Option<(&[u8], &[u8])>,
        http: crate::config::UpstreamHttp,
        max_idle: usize,
    ) -> Result<Self, UpstreamError> {
        let uri: Uri = url.parse().map_err(|_| UpstreamError::Url(url.into()))?;
        let authority = uri
            .authority()
            .filter(|_| uri.scheme_str() == Some("https"))
            .filter(|a| !a.as_str().contains('@'))
            .ok_or_else(|| UpstreamError::Url(url.into()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name =
            ServerName::try_from(host.clone()).map_err(|_| UpstreamError::Url(url.into()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in
            <CertificateDer<'static> as rustls::pki_types::pem::PemObject>::pem_slice_iter(ca_pem)
        {
            let c = c.map_err(|e| UpstreamError::Tls(e.to_string()))?;
            roots
                .add(c)
                .map_err(|e| UpstreamError::Tls(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(UpstreamError::Tls(
                "the CA file holds no certificate".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| UpstreamError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match client {
            Some((chain, key)) => {
                let chain: Vec<CertificateDer<'static>> =
                    <CertificateDer<'static> as rustls::pki_types::pem::PemObject>::pem_slice_iter(
                        chain,
                    )
                    .collect::<Result<_, _>>()
                    .map_err(|e| UpstreamError::Tls(e.to_string()))?;
                let key =
                    <PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(
                        key,
                    )
                    .map_err(|e| UpstreamError::Tls(e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| UpstreamError::Tls(e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = http.alpn();
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| UpstreamError::Url(url.into()))?;
        Ok(Self {
            authority_uri: authority.clone(),
            host_header,
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_owned(),
            host,
            prefix,
            name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            h2: Mutex::new(None),
            h1: Arc::new(IdlePool {
                conns: Mutex::new(Vec::new()),
                max: max_idle,
            }),
        })
    }

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        // a sample case service of the fabric is reached where it published its address (a URL
        // of port 0 means nothing else; DNS does not know the fabric's hosts)
        let tcp = match tianping_core::ServiceTarget::published_service_addr(&self.host) {
            Some(addr) => tokio::net::TcpStream::connect(addr).await,
            None => tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await,
        }
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| UpstreamError::Connect(format!("tls: {e}")))?;
        // a service that chose no protocol speaks HTTP/1.1 (RFC 7301 §3.2 lets it ignore ALPN)
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (send, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
            tokio::spawn(conn);
            *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(send.clone());
            Ok(Sender::H2(send))
        } else {
            let (send, conn) = http1::handshake(io)
                .await
                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
            tokio::spawn(conn);
            Ok(Sender::H1(send))
        }
    }

    /// A sender ready for a request: the HTTP/2 connection, an idle HTTP/1.1 one, or a new one.
    async fn sender(&self) -> Result<Sender, UpstreamError> {
        {
            let mut h2 = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
            match h2.as_ref() {
                Some(s) if !s.is_closed() => return Ok(Sender::H2(s.clone())),
                Some(_) => *h2 = None,
                None => {}
            }
        }
        // a connection whose last answer was read to its end: ready as soon as its task has
        // seen that end (at once, or after one turn of the runtime)
        while let Some(mut s) = self.h1.take() {
            if s.ready().await.is_ok() {
                return Ok(Sender::H1(s));
            }
        }
        // boxed (rare once the pool is warm): every request's future would otherwise hold it
        tokio::time::timeout(CONNECT_TIMEOUT, Box::pin(self.connect()))
            .await
            .map_err(|_| UpstreamError::Timeout(CONNECT_TIMEOUT))?
    }

    /// Sends `req` (its headers already made what the service may see) and gives the answer,
    /// its body streaming.
    pub(crate) async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        let target = self.target(&parts.uri)?;
        let sender = self.sender().await?;
        let resp = match sender {
            Sender::H2(mut s) => {
                let mut uri = http::uri::Parts::default();
                uri.scheme = Some(http::uri::Scheme::HTTPS);
                uri.authority = Some(self.authority_uri.clone());
                uri.path_and_query = Some(target);
                parts.uri = Uri::from_parts(uri).map_err(|e| UpstreamError::Url(e.to_string()))?;
                parts.version = http::Version::HTTP_2;
                parts.headers.remove(header::HOST);
                let req = Request::from_parts(parts, body);
                tokio::time::timeout(RESPONSE_TIMEOUT, s.send_request(req))
                    .await
                    .map_err(|_| UpstreamError::Timeout(RESPONSE_TIMEOUT))?
                    .map_err(|e| UpstreamError::Http(e.to_string()))?
            }
            Sender::H1(mut s) => {
                parts.uri = Uri::from(target);
                parts.version = http::Version::HTTP_11;
                parts.headers.insert(header::HOST, self.host_header.clone());
                let req = Request::from_parts(parts, body);
                let answer = tokio::time::timeout(RESPONSE_TIMEOUT, s.send_request(req))
                    .await
                    .map_err(|_| UpstreamError::Timeout(RESPONSE_TIMEOUT))?
                    .map_err(|e| UpstreamError::Http(e.to_string()))?;
                // back to the pool once this answer's body has been read to its end
                let (mut parts, body) = answer.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let body = Returning::new(body, s, &self.h1);
                return Ok(Response::from_parts(parts, body.boxed()));
            }
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
        Ok(Response::from_parts(parts, body))
    }

    /// The request's path and query under the service URL's path (shared, not copied, when
    /// the URL has none).
    fn target(&self, uri: &Uri) -> Result<http::uri::PathAndQuery, UpstreamError> {
        let pq = uri.path_and_query().cloned();
        match pq {
            Some(pq) if self.prefix.is_empty() => Ok(pq),
            pq => {
                let pq = pq.as_ref().map_or("/", http::uri::PathAndQuery::as_str);
                let target = format!("{}{pq}", self.prefix);
                target
                    .parse()
                    .map_err(|_| UpstreamError::Url(target.clone()))
            }
        }
    }

    /// How many idle HTTP/1.1 connections are kept now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.h1.len()
    }
}

/// An HTTP/1.1 answer's body that gives its connection back to the idle pool at its end.
struct Returning {
    inner: hyper::body::Incoming,
    back: Option<(http1::SendRequest<Body>, Arc<IdlePool>)>,
}

impl Returning {
    fn new(
        inner: hyper::body::Incoming,
        s: http1::SendRequest<Body>,
        pool: &Arc<IdlePool>,
    ) -> Self {
        let mut r = Self {
            inner,
            back: Some((s, Arc::clone(pool))),
        };
        // an empty body may never be polled
        if hyper::body::Body::is_end_stream(&r.inner) {
            r.release();
        }
        r
    }

    fn release(&mut self) {
        if let Some((s, pool)) = self.back.take() {
            pool.put(s);
        }
    }
}

impl hyper::body::Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            // a connection whose answer failed is not used again
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled.map(|f| f.map(|r| r.map_err(|e| -> BoxError { Box::new(e) })))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Takes the hop-by-hop headers (and those `Connection` names) and any `Set-Cookie` of the
/// gateway's own cookies off a service's answer.
fn strip_hop_by_hop(h: &mut http::HeaderMap) {
    const HOP_BY_HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
    ];
    let named = crate::assertion::connection_named(h);
    // one pass over the answer's names (a handful) rather than a lookup of each
    let doomed: Vec<http::HeaderName> = h
        .keys()
        .filter(|k| HOP_BY_HOP.contains(&k.as_str()) || named.contains(k))
        .cloned()
        .collect();
    for n in doomed {
        h.remove(n);
    }
    // a service may set its own cookies, never the gateway's (its session, its sign-in)
    let ours = |v: &HeaderValue| {
        v.as_bytes()
            .get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"__Host-tianping-"))
    };
    if h.get_all(header::SET_COOKIE).iter().any(ours) {
        let cookies: Vec<HeaderValue> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| !ours(v))
            .cloned()
            .collect();
        h.remove(header::SET_COOKIE);
        for c in cookies {
            h.append(header::SET_COOKIE, c);
        }
    }
}

/// A body of `data`, for the gateway's own answers.
pub(crate) fn text(data: impl Into<Bytes>) -> ResponseBody {
    tianping_net::full(data)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use http::Request;
    use tianping_certs::{CaCert, CertKind, KeyAlg, LeafRequest, ServerTlsBuilder};
    use tianping_core::UnixTime;
    use tianping_net::{ConnInfo, HostSet, ServerHandle, ServerOptions, full, serve_tls};
    use tokio::sync::{Notify, Semaphore};

    use super::*;
    use crate::config::UpstreamHttp;

    type R = Result<(), BoxError>;

    #[test]
    fn an_answer_loses_its_hop_by_hop_headers_and_the_gateways_cookies_only() {
        let mut h = http::HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, X-Trace"));
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("__Host-tianping-session=forged; Path=/"),
        );
        h.append(header::SET_COOKIE, HeaderValue::from_static("case=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("view=2"));
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(http::HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "set-cookie"]);
        let cookies: Vec<&[u8]> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        assert_eq!(cookies, [b"case=1".as_slice(), b"view=2"]);
        // no cookie of the gateway's: the answer's own are left as they were
        let mut h = http::HeaderMap::new();
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get_all(header::SET_COOKIE).iter().count(), 1);
    }

    /// A service offering HTTP/1.1 alone that notes the client port (one per connection) of
    /// each request and answers once `gate` gives it a permit.
    struct Service {
        handle: ServerHandle,
        ports: Arc<Mutex<Vec<u16>>>,
        arrived: Arc<Notify>,
        gate: Arc<Semaphore>,
        ca_pem: String,
        _dir: tempfile::TempDir,
    }

    impl Service {
        fn connections(&self) -> usize {
            let ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
            ports.iter().collect::<HashSet<_>>().len()
        }

        fn requests(&self) -> usize {
            self.ports
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
        }

        /// Returns once the service has been asked `n` requests in all.
        async fn asked(&self, n: usize) {
            while self.requests() < n {
                self.arrived.notified().await;
            }
        }
    }

    async fn service() -> Result<Service, BoxError> {
        let dir = tempfile::tempdir()?;
        let now = UnixTime::from_system_time(std::time::SystemTime::now());
        let root = CaCert::new_root("Court", KeyAlg::EcP256, now)?;
        let zone = root.new_zone(&"private".parse()?, "Court", KeyAlg::EcP256, now)?;
        let mut req = LeafRequest::new(CertKind::Server, "cases");
        req.dns = vec!["localhost".into()];
        let leaf = zone.issue(&req, now)?;
        let (pem, key) = (dir.path().join("s.pem"), dir.path().join("s.key"));
        std::fs::write(&pem, &leaf.chain_pem)?;
        std::fs::write(&key, leaf.key_pem.expose())?;
        let tls = ServerTlsBuilder::new(pem, key)
            .alpn(vec![b"http/1.1".to_vec()])
            .build()?;
        let mut options = ServerOptions::new(HostSet::new(["localhost"]));
        options.http3 = false;
        let ports = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let arrived = Arc::new(Notify::new());
        let (p, a, g) = (Arc::clone(&ports), Arc::clone(&arrived), Arc::clone(&gate));
        let handle = serve_tls(
            "127.0.0.1:0".parse()?,
            Arc::new(tls),
            options,
            move |req: Request<Body>| {
                let (p, a, g) = (Arc::clone(&p), Arc::clone(&a), Arc::clone(&g));
                async move {
                    if let Some(c) = req.extensions().get::<ConnInfo>() {
                        p.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(c.peer.port());
                    }
                    a.notify_one();
                    if let Ok(permit) = g.acquire().await {
                        permit.forget();
                    }
                    let mut r = Response::new(full("case 1\n"));
                    if req.method() == http::Method::HEAD {
                        *r.body_mut() = tianping_net::empty();
                    }
                    r
                }
            },
        )
        .await?;
        Ok(Service {
            handle,
            ports,
            arrived,
            gate,
            ca_pem: format!("{}{}", root.cert_pem(), zone.cert_pem()),
            _dir: dir,
        })
    }

    fn get(method: http::Method) -> Result<Request<Body>, http::Error> {
        Request::builder()
            .method(method)
            .uri("/cases/1")
            .body(Body::empty())
    }

    async fn read(r: Response<ResponseBody>) -> Result<Bytes, BoxError> {
        Ok(r.into_body().collect().await?.to_bytes())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_http1_connection_is_used_again_once_its_answer_is_read() -> R {
        let s = service().await?;
        s.gate.add_permits(1_000);
        let url = format!("https://localhost:{}/", s.handle.local_addr().port());
        let up = Upstream::new(&url, s.ca_pem.as_bytes(), None, UpstreamHttp::Any, 4)?;
        for _ in 0..20 {
            let r = up.send(get(http::Method::GET)?).await?;
            assert_eq!(r.status(), 200);
            assert_eq!(read(r).await?.as_ref(), b"case 1\n");
        }
        // an answer with no body gives its connection back without being read
        let r = up.send(get(http::Method::HEAD)?).await?;
        assert_eq!(r.status(), 200);
        let r = up.send(get(http::Method::GET)?).await?;
        assert_eq!(read(r).await?.as_ref(), b"case 1\n");
        assert_eq!(s.requests(), 22);
        assert_eq!(s.connections(), 1, "one connection, used again and again");
        assert_eq!(up.idle(), 1);
        // an answer dropped unread takes its connection with it
        let r = up.send(get(http::Method::GET)?).await?;
        drop(r);
        assert_eq!(up.idle(), 0);
        let r = up.send(get(http::Method::GET)?).await?;
        assert_eq!(read(r).await?.as_ref(), b"case 1\n");
        assert_eq!(s.connections(), 2);
        s.handle.shutdown().await;
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn as_many_http1_connections_as_requests_in_flight_are_kept_up_to_the_limit() -> R {
        let s = service().await?;
        let url = format!("https://localhost:{}/", s.handle.local_addr().port());
        let up = Arc::new(Upstream::new(
            &url,
            s.ca_pem.as_bytes(),
            None,
            UpstreamHttp::Http1,
            6,
        )?);
        // 8 requests held by the service at once need 8 connections
        let round = |n: usize| -> Vec<tokio::task::JoinHandle<Result<Bytes, BoxError>>> {
            (0..n)
                .map(|_| {
                    let up = Arc::clone(&up);
                    tokio::spawn(async move {
                        let r = up.send(get(http::Method::GET)?).await?;
                        read(r).await
                    })
                })
                .collect()
        };
        let tasks = round(8);
        s.asked(8).await;
        s.gate.add_permits(8);
        for t in tasks {
            assert_eq!(t.await??.as_ref(), b"case 1\n");
        }
        assert_eq!(s.connections(), 8);
        assert_eq!(up.idle(), 6, "kept up to the pool's size");
        // 6 in flight again: all on kept connections, none opened
        let tasks = round(6);
        s.asked(14).await;
        s.gate.add_permits(6);
        for t in tasks {
            assert_eq!(t.await??.as_ref(), b"case 1\n");
        }
        assert_eq!(s.connections(), 8);
        assert_eq!(up.idle(), 6);
        s.handle.shutdown().await;
        Ok(())
    }
}
