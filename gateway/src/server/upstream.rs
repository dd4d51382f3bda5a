//! Forwarding to a service of the zone bound to an `https` URL: TLS 1.3 with the binding's CA
//! (and the gateway's node certificate for services that ask for one), HTTP/2 or HTTP/1.1 by
//! ALPN, pooled connections (one multiplexed HTTP/2 connection, or idle HTTP/1.1 ones), a
//! connect timeout and a response-head timeout; bodies stream both ways (the listener's idle
//! timeouts hold them).

use std::sync::{Arc, Mutex, PoisonError};
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
/// Idle HTTP/1.1 connections kept per service.
const MAX_IDLE: usize = 64;

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
    prefix: String,
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    h2: Mutex<Option<http2::SendRequest<Body>>>,
    h1: Mutex<Vec<http1::SendRequest<Body>>>,
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
    /// presented when it asks for a certificate.
    pub(crate) fn new(
        url: &str,
        ca_pem: &[u8],
        client: Option<(&[u8], &[u8])>,
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
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_owned(),
            host,
            prefix,
            name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            h2: Mutex::new(None),
            h1: Mutex::new(Vec::new()),
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
        {
            let mut idle = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
            idle.retain(|s| !s.is_closed());
            if let Some(i) = idle.iter().position(http1::SendRequest::is_ready) {
                return Ok(Sender::H1(idle.swap_remove(i)));
            }
        }
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
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
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let target = format!("{}{path_and_query}", self.prefix);
        let sender = self.sender().await?;
        let resp = match sender {
            Sender::H2(mut s) => {
                parts.uri = format!("https://{}{target}", self.authority)
                    .parse()
                    .map_err(|_| UpstreamError::Url(target.clone()))?;
                parts.version = http::Version::HTTP_2;
                parts.headers.remove(header::HOST);
                let req = Request::from_parts(parts, body);
                tokio::time::timeout(RESPONSE_TIMEOUT, s.send_request(req))
                    .await
                    .map_err(|_| UpstreamError::Timeout(RESPONSE_TIMEOUT))?
                    .map_err(|e| UpstreamError::Http(e.to_string()))?
            }
            Sender::H1(mut s) => {
                parts.uri = target
                    .parse()
                    .map_err(|_| UpstreamError::Url(target.clone()))?;
                parts.version = http::Version::HTTP_11;
                let host = HeaderValue::from_str(&self.authority)
                    .map_err(|_| UpstreamError::Url(self.authority.clone()))?;
                parts.headers.insert(header::HOST, host);
                let req = Request::from_parts(parts, body);
                let answer = tokio::time::timeout(RESPONSE_TIMEOUT, s.send_request(req))
                    .await
                    .map_err(|_| UpstreamError::Timeout(RESPONSE_TIMEOUT))?
                    .map_err(|e| UpstreamError::Http(e.to_string()))?;
                // back to the pool: ready again once this answer's body has been read
                let mut idle = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
                idle.retain(|s| !s.is_closed());
                if idle.len() < MAX_IDLE {
                    idle.push(s);
                }
                answer
            }
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
        Ok(Response::from_parts(parts, body))
    }
}

/// Takes the hop-by-hop headers (and those `Connection` names) and any `Set-Cookie` of the
/// gateway's own cookies off a service's answer.
fn strip_hop_by_hop(h: &mut http::HeaderMap) {
    let named: Vec<http::HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| http::HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    // a service may set its own cookies, never the gateway's (its session, its sign-in)
    let cookies: Vec<http::HeaderValue> = h
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            !v.as_bytes()
                .get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"__Host-tianping-"))
        })
        .cloned()
        .collect();
    h.remove(header::SET_COOKIE);
    for c in cookies {
        h.append(header::SET_COOKIE, c);
    }
    for n in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
    ] {
        h.remove(n);
    }
}

/// A body of `data`, for the gateway's own answers.
pub(crate) fn text(data: impl Into<Bytes>) -> ResponseBody {
    tianping_net::full(data)
}
