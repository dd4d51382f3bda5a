//! What the application sees: the [`Handler`] it is, and the [`ConnInfo`] every request carries
//! (the protocol, the peer, SNI, the client's chain and the identity it proved).
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use rustls::pki_types::CertificateDer;
use tianping_certs::{CertError, CourtIdentity};

use crate::body::{Body, ResponseBody};
use crate::tls::TlsSource;

/// The protocol a request arrived over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 (or 1.0) over TLS.
    Http1,
    /// HTTP/2 over TLS.
    Http2,
    /// HTTP/3 over QUIC.
    Http3,
    /// HTTP/1.1 over the local control socket.
    Control,
    /// Plain HTTP/1.1 on the loopback admin listener.
    Admin,
}

impl Protocol {
    /// A short name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Http3 => "http3",
            Self::Control => "control",
            Self::Admin => "admin",
        }
    }
}

/// What the server knows about the connection a request came on; every request carries one
/// as a request extension (`req.extensions().get::<ConnInfo>()`).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address (unspecified for the control socket).
    pub peer: SocketAddr,
    /// The protocol.
    pub protocol: Protocol,
    /// The TLS server name the client asked for, lower case.
    pub sni: Option<Arc<str>>,
    /// The client certificate's leaf, when one was presented (validated by TLS, except under
    /// [`tianping_certs::ClientAuth::Request`]: see [`ConnInfo::unverified`]).
    pub client_cert: Option<Arc<CertificateDer<'static>>>,
    /// The whole chain the client presented, leaf first.
    pub presented_chain: Option<Arc<[CertificateDer<'static>]>>,
    /// The court identity of the client certificate: only for a chain that verified (against
    /// the trust bundle, CRLs and zone of the TLS configuration).
    pub identity: Option<Arc<CourtIdentity>>,
    /// Under [`tianping_certs::ClientAuth::Request`], why the presented chain did not verify
    /// (revoked, expired, another zone's, …); the handler can show a page and log it. The chain
    /// then gives no identity.
    pub unverified: Option<Arc<CertError>>,
    /// The peer's user id, on the control socket.
    pub peer_uid: Option<u32>,
    /// The peer's process id, on the control socket (when the kernel gives it).
    pub peer_pid: Option<i32>,
}

impl ConnInfo {
    pub(crate) fn new(peer: SocketAddr, protocol: Protocol) -> Self {
        Self {
            peer,
            protocol,
            sni: None,
            client_cert: None,
            presented_chain: None,
            identity: None,
            unverified: None,
            peer_uid: None,
            peer_pid: None,
        }
    }

    /// Records the chain the client presented (leaf first) and the identity it proves: read
    /// from the leaf when the handshake verified it, or verified now by `source` when the
    /// handshake accepted any chain.
    pub(crate) fn with_chain(
        mut self,
        chain: Option<Vec<CertificateDer<'static>>>,
        source: &dyn TlsSource,
    ) -> Self {
        let Some(chain) = chain.filter(|c| !c.is_empty()) else {
            return self;
        };
        let identity = match source.verify_presented(&chain) {
            None => chain
                .first()
                .and_then(|c| tianping_certs::identity_of(c).ok()),
            Some(Ok(id)) => Some(id),
            Some(Err(e)) => {
                self.unverified = Some(Arc::new(e));
                None
            }
        };
        self.identity = identity.map(Arc::new);
        self.client_cert = chain.first().cloned().map(Arc::new);
        self.presented_chain = Some(chain.into());
        self
    }
}

/// A boxed response future.
pub type BoxFuture = Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>;

/// The application: takes a request whose URI path is already normalized (the
/// [`crate::NormalizedPath`] and [`ConnInfo`] are request extensions), returns a response.
/// Any `Fn(Request<Body>) -> impl Future<Output = Response<ResponseBody>>` is a handler.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, req: Request<Body>) -> BoxFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request<Body>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    fn call(&self, req: Request<Body>) -> BoxFuture {
        Box::pin(self(req))
    }
}
