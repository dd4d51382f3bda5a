//! Where a listener takes its TLS configuration: read once per accepted connection, so a reload
//! applies to new connections and never drops live ones.
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tianping_certs::{CertError, ClientAuth, CourtIdentity};

/// A source of the current server TLS configuration.
pub trait TlsSource: Send + Sync + 'static {
    /// The configuration for the next accepted connection.
    fn current(&self) -> Arc<ServerConfig>;

    /// For a source whose handshake accepts any presented chain
    /// ([`tianping_certs::ClientAuth::Request`]): verifies a presented chain (leaf first) after
    /// the handshake, giving the identity or the precise reason it did not verify. `None` (the
    /// default): the handshake verified whatever it accepted.
    fn verify_presented(
        &self,
        _chain: &[CertificateDer<'static>],
    ) -> Option<Result<CourtIdentity, CertError>> {
        None
    }
}

/// A configuration swapped in place by [`SwapTls::set`]; the simplest [`TlsSource`].
#[derive(Debug)]
pub struct SwapTls(ArcSwap<ServerConfig>);

impl SwapTls {
    /// A source serving `config` until [`set`](Self::set) replaces it.
    pub fn new(config: ServerConfig) -> Self {
        Self(ArcSwap::from_pointee(config))
    }

    /// Replaces the configuration for connections accepted from now on.
    pub fn set(&self, config: ServerConfig) {
        self.0.store(Arc::new(config));
    }
}

impl TlsSource for SwapTls {
    fn current(&self) -> Arc<ServerConfig> {
        self.0.load_full()
    }
}

/// The ALPN list of the TCP listener: HTTP/2 first, then HTTP/1.1.
pub(crate) const TCP_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The connection's config with this listener's ALPN list, unless the source already set one.
pub(crate) fn with_tcp_alpn(cfg: Arc<ServerConfig>) -> Arc<ServerConfig> {
    if !cfg.alpn_protocols.is_empty() {
        return cfg;
    }
    let mut c = (*cfg).clone();
    c.alpn_protocols = TCP_ALPN.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

impl TlsSource for tianping_certs::ReloadableServerConfig {
    fn current(&self) -> Arc<ServerConfig> {
        tianping_certs::ReloadableServerConfig::current(self)
    }

    fn verify_presented(
        &self,
        chain: &[CertificateDer<'static>],
    ) -> Option<Result<CourtIdentity, CertError>> {
        (self.client_auth() == ClientAuth::Request).then(|| {
            tianping_certs::ReloadableServerConfig::verify_presented(
                self,
                chain,
                rustls::pki_types::UnixTime::now(),
            )
        })
    }
}
