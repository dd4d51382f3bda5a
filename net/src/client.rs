//! An HTTPS client for the requests a component makes on its own (the IdP's back-channel
//! logout POSTs and its fetches of clients' JWKS, deliveries to a service): TLS 1.3 only, the
//! server verified against the trust roots it is given (a zone's root and zone CA), an optional
//! client certificate (a node's, for mTLS), one timeout over the whole exchange and a cap on the
//! answer's body.
//!
//! Threat model: the server at the other end may be hostile or broken (a client registered a URL
//! pointing anywhere). So only `https` URLs are fetched, without userinfo; redirects are not
//! followed (a `3xx` is the answer); the answer's body is never held beyond
//! [`ClientLimits::max_response_body`]; and no exchange outlives [`ClientLimits::timeout`], so a
//! server that accepts and then says nothing cannot hold the caller.
//!
//! ```no_run
//! # async fn f(trust_pem: &[u8]) -> Result<(), tianping_net::ClientError> {
//! let client = tianping_net::HttpsClientBuilder::new(trust_pem).build()?;
//! let answer = client.get("https://rp.private.example/jwks").await?;
//! assert!(answer.status.is_success());
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// Limits of an [`HttpsClient`], with the reasons for their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// The longest a whole exchange may take, from the TCP connect through the handshake and the
    /// request to the last byte of the answer (default 10 s: a peer in the court's networks
    /// answers in well under a second; one that accepts and stalls must not hold a delivery
    /// round or a token request longer than this).
    pub timeout: Duration,
    /// The largest answer body read, in bytes (default 1 MiB: what is fetched is a JWKS, a
    /// logout acknowledgement or a delivery's short answer; a larger one is refused, not read,
    /// so a hostile server cannot fill the caller's memory).
    pub max_response_body: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_response_body: 1024 * 1024,
        }
    }
}

/// Why a request of an [`HttpsClient`] failed, or why one could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The builder's parts do not make a client (no trust roots, a bad certificate or key).
    #[error("https client: {0}")]
    Config(String),
    /// The URL is not an `https` URL.
    #[error("`{0}` is not an https URL")]
    NotHttps(String),
    /// The URL does not parse, names no host, or carries userinfo.
    #[error("`{url}`: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The TCP connection could not be made.
    #[error("`{url}`: cannot connect: {why}")]
    Connect {
        /// The URL.
        url: String,
        /// Why not.
        why: String,
    },
    /// The TLS handshake failed (among others: a server certificate the trust roots do not
    /// vouch for, or one for another name).
    #[error("`{url}`: tls: {why}")]
    Tls {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The HTTP exchange failed after the handshake.
    #[error("`{url}`: {why}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The exchange did not finish within [`ClientLimits::timeout`].
    #[error("`{url}` did not answer within {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// The answer's body is larger than [`ClientLimits::max_response_body`].
    #[error("`{url}`: the answer's body is over {limit} bytes")]
    BodyTooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
}

/// An answer, its body read whole (within the limit).
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl ClientResponse {
    /// The start of the body as text, at most `n` bytes, for error messages.
    pub fn body_start(&self, n: usize) -> String {
        String::from_utf8_lossy(self.body.get(..self.body.len().min(n)).unwrap_or_default())
            .into_owned()
    }
}

/// Builds an [`HttpsClient`]; [`build`](Self::build) checks the parts.
pub struct HttpsClientBuilder {
    trust_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    limits: ClientLimits,
    resolve: Vec<(String, SocketAddr)>,
}

impl std::fmt::Debug for HttpsClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClientBuilder")
            .field("identity", &self.identity.as_ref().map(|_| "[redacted]"))
            .field("limits", &self.limits)
            .field("resolve", &self.resolve)
            .finish_non_exhaustive()
    }
}

impl HttpsClientBuilder {
    /// A client trusting the CA certificates in `trust_pem` (a zone's trust bundle: the root CA
    /// and the zone CA), presenting no certificate, with the default [`ClientLimits`].
    pub fn new(trust_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            trust_pem: trust_pem.into(),
            identity: None,
            limits: ClientLimits::default(),
            resolve: Vec::new(),
        }
    }

    /// Presents the certificate chain `chain_pem` (leaf first) with its key `key_pem` when a
    /// server asks (mTLS with a node's certificate).
    pub fn client_cert(
        mut self,
        chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((chain_pem.into(), key_pem.into()));
        self
    }

    /// The limits.
    pub fn limits(mut self, limits: ClientLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Connects to `addr` for URLs naming `host`, instead of asking the resolver (a fabric's
    /// hosts that DNS does not know, a test's listener); the certificate is still checked
    /// against `host`.
    pub fn resolve(mut self, host: impl Into<String>, addr: SocketAddr) -> Self {
        self.resolve.push((host.into().to_ascii_lowercase(), addr));
        self
    }

    /// Reads the roots and the certificate: refused without a trust root, with a certificate
    /// or key that does not parse or do not match, or with a zero limit.
    pub fn build(self) -> Result<HttpsClient, ClientError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ClientError::Config(format!("{what}: {}", e.to_string().to_lowercase()))
        };
        if self.limits.timeout.is_zero() {
            return Err(ClientError::Config("the timeout is zero".into()));
        }
        if self.limits.max_response_body == 0 {
            return Err(ClientError::Config("the body limit is zero".into()));
        }
        let mut roots = RootCertStore::empty();
        for der in certs(&self.trust_pem).map_err(|e| bad("the trust roots", &e))? {
            roots.add(der).map_err(|e| bad("a trust root", &e))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Config("no trust roots were given".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| bad("tls", &e))?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain = certs(chain).map_err(|e| bad("the client certificate", &e))?;
                if chain.is_empty() {
                    return Err(ClientError::Config(
                        "the client certificate's pem holds no certificate".into(),
                    ));
                }
                let key =
                    <PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(
                        key,
                    )
                    .map_err(|e| bad("the client key", &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad("the client certificate", &e))?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpsClient {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            limits: self.limits,
            resolve: self.resolve,
        })
    }
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    <CertificateDer<'static> as rustls::pki_types::pem::PemObject>::pem_slice_iter(pem).collect()
}

/// An HTTPS/1.1 client: one connection per request, TLS 1.3, limits per [`ClientLimits`].
/// Cheap to clone.
#[derive(Clone)]
pub struct HttpsClient {
    connector: tokio_rustls::TlsConnector,
    limits: ClientLimits,
    resolve: Vec<(String, SocketAddr)>,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HttpsClient {
    /// The limits in force.
    pub fn limits(&self) -> &ClientLimits {
        &self.limits
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<ClientResponse, ClientError> {
        self.request(Method::GET, url, &HeaderMap::new(), Bytes::new())
            .await
    }

    /// `POST url` with `body` of `content_type`.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> Result<ClientResponse, ClientError> {
        let mut headers = HeaderMap::new();
        let ct = HeaderValue::from_str(content_type).map_err(|_| ClientError::BadUrl {
            url: url.to_owned(),
            why: format!("content type `{content_type}` is not a header value"),
        })?;
        headers.insert(header::CONTENT_TYPE, ct);
        self.request(Method::POST, url, &headers, body.into()).await
    }

    /// `method url` with `headers` (the client sets `Host`) and `body`, the answer read whole
    /// within the limits.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<ClientResponse, ClientError> {
        let target = Target::parse(url)?;
        let after = self.limits.timeout;
        tokio::time::timeout(after, self.exchange(&target, method, headers, body))
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.to_owned(),
                after,
            })?
    }

    async fn exchange(
        &self,
        t: &Target,
        method: Method,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<ClientResponse, ClientError> {
        let url = || t.url.clone();
        let fixed = self
            .resolve
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(&t.host))
            .map(|(_, a)| SocketAddr::new(a.ip(), t.port));
        let tcp = match fixed {
            Some(addr) => tokio::net::TcpStream::connect(addr).await,
            None => tokio::net::TcpStream::connect((t.host.as_str(), t.port)).await,
        }
        .map_err(|e| ClientError::Connect {
            url: url(),
            why: e.to_string(),
        })?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(t.name.clone(), tcp)
            .await
            .map_err(|e| ClientError::Tls {
                url: url(),
                why: e.to_string().to_lowercase(),
            })?;
        let http = |e: &dyn std::fmt::Display| ClientError::Http {
            url: url(),
            why: e.to_string(),
        };
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| http(&e))?;
        // the connection's driver ends with the exchange (the timeout or the answer read)
        let driver = AbortOnDrop(tokio::spawn(conn));
        let mut req = Request::builder()
            .method(method)
            .uri(t.origin_form.as_str())
            .body(Full::new(body))
            .map_err(|e| http(&e))?;
        *req.headers_mut() = headers.clone();
        let host = HeaderValue::from_str(&t.authority).map_err(|e| http(&e))?;
        req.headers_mut().insert(header::HOST, host);
        let resp = send.send_request(req).await.map_err(|e| http(&e))?;
        let limit = self.limits.max_response_body;
        let too_large = || ClientError::BodyTooLarge { url: url(), limit };
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    http(&e)
                }
            })?
            .to_bytes();
        drop(driver);
        Ok(ClientResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a URL names: checked before anything is sent.
struct Target {
    url: String,
    host: String,
    port: u16,
    name: ServerName<'static>,
    authority: String,
    origin_form: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(ClientError::NotHttps(url.to_owned()));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("userinfo is not allowed"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let name = ServerName::try_from(host.clone()).map_err(|_| bad("not a host name"))?;
        Ok(Self {
            url: url.to_owned(),
            port: authority.port_u16().unwrap_or(443),
            name,
            authority: authority.as_str().to_owned(),
            origin_form: uri
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str)
                .to_owned(),
            host,
        })
    }
}
