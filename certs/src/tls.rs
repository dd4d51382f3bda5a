//! rustls configurations built from the PKI's files: a reloadable server configuration with
//! client certificates checked against the trust bundle and CRLs, and a client configuration.
//!
//! Defaults and why: TLS 1.3 only (1.2 only when asked, and then only ECDHE with AEAD suites);
//! no 0-RTT data (it can be replayed); client certificates verified by `webpki` with CRLs, then
//! mapped to a court identity whose zone must be its issuing CA's zone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use tianping_core::ZoneName;

use crate::identity::CourtIdentity;
use crate::verify::{TrustStore, verify_client};
use crate::{CertError, certs_from_pem};

/// Whether a server asks TLS clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// It does not ask.
    #[default]
    None,
    /// It asks, and accepts clients that send none; a certificate sent must validate.
    ///
    /// Why this weakening is safe: it gives up only the refusal of clients with no certificate,
    /// never the check of one presented (a bad chain still fails the handshake). A connection
    /// without a certificate carries no identity, so an application that needs one sees none
    /// and refuses; it must not read "no identity" as anything but anonymous.
    Optional,
    /// It asks, and refuses clients without a valid certificate.
    Required,
    /// It asks and accepts the handshake whatever chain is presented (or none): the chain is
    /// handed to the application, verified after the handshake with
    /// [`ReloadableServerConfig::verify_presented`], so it can show a page ("your certificate
    /// was revoked") and log the attempt instead of a bare TLS alert.
    ///
    /// Why this is safe: the client still proves it holds the presented leaf's key (the
    /// handshake signature is checked against the leaf's public key), and the chain gives no
    /// identity unless it verifies against the trust bundle, CRLs and zone the builder was given
    /// (`tianping_net` fills `ConnInfo::identity` only then). An application must take identity
    /// only from the verified result, never from the presented chain.
    Request,
}

/// The ring provider restricted to TLS 1.3 suites and TLS 1.2 ECDHE+AEAD suites, AES-128-GCM
/// first.
///
/// Why AES-128 first: the key exchange (X25519 or P-256) gives 128-bit security, so AES-256
/// adds nothing to a session; `TLS_AES_128_GCM_SHA256` is the suite TLS 1.3 makes mandatory
/// (RFC 8446 §9.1) and the one Go and BoringSSL prefer; and SHA-256 has CPU instructions on
/// common servers (SHA-NI, ARMv8) where SHA-384 has none, which makes each handshake's
/// transcript hashing and key schedule cheaper. Servers pick by this order
/// (`ignore_client_order`).
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| CertError::io("read", path, &e))
}

/// Parses a PKCS#8 (or SEC1) private key from PEM.
pub fn key_from_pem(key_pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| CertError::malformed(format!("bad private key pem ({e})")))
}

fn tls_err(e: impl std::fmt::Display) -> CertError {
    CertError::Tls(e.to_string().to_lowercase())
}

/// The TLS 1.3 session tickets a server sends after each handshake unless
/// [`ServerTlsBuilder::session_tickets`] says otherwise: one, enough for a client to resume its
/// next connection (rustls' own default is two; the second costs every full handshake about
/// 7 % more CPU in the gateway's benchmark and serves only clients opening connections in
/// parallel, which fall back to a full handshake).
pub const DEFAULT_TLS13_TICKETS: usize = 1;

/// Builds a [`ReloadableServerConfig`] from the paths of a certificate chain, its key, and
/// (for client certificates) the trust bundle and CRLs.
#[derive(Debug, Clone)]
pub struct ServerTlsBuilder {
    cert_path: PathBuf,
    key_path: PathBuf,
    client_auth: ClientAuth,
    trust_path: Option<PathBuf>,
    crl_paths: Vec<PathBuf>,
    client_zone: Option<ZoneName>,
    tls12: bool,
    alpn: Vec<Vec<u8>>,
    tls13_tickets: usize,
}

impl ServerTlsBuilder {
    /// A server presenting the chain at `cert_chain_pem_path` (leaf first) with the key at
    /// `key_pem_path`; TLS 1.3 only, no client certificates, no ALPN.
    pub fn new(cert_chain_pem_path: impl Into<PathBuf>, key_pem_path: impl Into<PathBuf>) -> Self {
        Self {
            cert_path: cert_chain_pem_path.into(),
            key_path: key_pem_path.into(),
            client_auth: ClientAuth::None,
            trust_path: None,
            crl_paths: Vec::new(),
            client_zone: None,
            tls12: false,
            alpn: Vec::new(),
            tls13_tickets: DEFAULT_TLS13_TICKETS,
        }
    }

    /// Asks clients for certificates per `mode`, validated against the trust bundle at
    /// `trust_pem_path` and the CRLs at `crl_paths`. An empty path means no bundle, which
    /// [`ServerTlsBuilder::build`] refuses unless `mode` is [`ClientAuth::None`].
    pub fn client_auth(
        mut self,
        mode: ClientAuth,
        trust_pem_path: impl Into<PathBuf>,
        crl_paths: Vec<PathBuf>,
    ) -> Self {
        let p: PathBuf = trust_pem_path.into();
        self.client_auth = mode;
        self.trust_path = (!p.as_os_str().is_empty()).then_some(p);
        self.crl_paths = crl_paths;
        self
    }

    /// Accepts only client certificates issued by `zone`'s CA.
    pub fn client_zone(mut self, zone: ZoneName) -> Self {
        self.client_zone = Some(zone);
        self
    }

    /// Also offers TLS 1.2 (ECDHE with AEAD suites only).
    ///
    /// Why this weakening is safe when asked for: only forward-secret ECDHE key exchange with
    /// AES-GCM or ChaCha20-Poly1305 is offered (no CBC, no RSA key transport, no renegotiation,
    /// extended master secret as rustls requires), so what is given up is TLS 1.3's encrypted
    /// handshake and shorter round trips, not the confidentiality of the session. Off by default;
    /// for old court clients only.
    pub fn tls12(mut self, on: bool) -> Self {
        self.tls12 = on;
        self
    }

    /// The ALPN protocols offered, most preferred first.
    pub fn alpn(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// How many TLS 1.3 session tickets are sent after each handshake (default
    /// [`DEFAULT_TLS13_TICKETS`]); 0 turns resumption off.
    ///
    /// A ticket names a session kept in the server's memory (rustls' stateful cache, 256
    /// sessions; no ticket key exists to steal), and a client resumes with it once: a resumed
    /// handshake still runs a fresh X25519 exchange (PSK-DHE), so its traffic keeps forward
    /// secrecy, and it gets a new ticket for the next connection. One ticket is what a client
    /// needs to resume its next connection; more only serve clients opening several at once,
    /// at the cost of making and storing each on every full handshake, resumed or not.
    pub fn session_tickets(mut self, n: usize) -> Self {
        self.tls13_tickets = n;
        self
    }

    /// Reads the files and builds the configuration.
    pub fn build(self) -> Result<ReloadableServerConfig, CertError> {
        let loaded = self.load()?;
        Ok(ReloadableServerConfig {
            inner: Arc::new(Reloadable {
                builder: self,
                current: ArcSwap::from_pointee(loaded),
            }),
        })
    }

    fn trust(&self) -> Result<Option<TrustStore>, CertError> {
        let Some(path) = &self.trust_path else {
            return Ok(None);
        };
        let trust = TrustStore::load(path, &self.crl_paths)?;
        Ok(Some(match &self.client_zone {
            Some(z) => trust.for_zone(z)?,
            None => trust,
        }))
    }

    fn load(&self) -> Result<Loaded, CertError> {
        let chain = certs_from_pem(&read(&self.cert_path)?)?;
        let key = key_from_pem(&read(&self.key_path)?)?;
        let provider = provider();
        let versions: &[&'static SupportedProtocolVersion] = if self.tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(tls_err)?;
        let trust = self.trust()?;
        let builder = match (self.client_auth, &trust) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(CertError::Tls(
                    "client certificates are asked for but no trust bundle is given".to_owned(),
                ));
            }
            (mode, Some(trust)) => {
                builder.with_client_cert_verifier(court_verifier(mode, trust.clone(), provider)?)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(tls_err)?;
        config.max_early_data_size = 0;
        // The suite order of `provider()` decides, not the client's.
        config.ignore_client_order = true;
        config.alpn_protocols.clone_from(&self.alpn);
        config.send_tls13_tickets = self.tls13_tickets;
        Ok(Loaded {
            config: Arc::new(config),
            trust,
        })
    }
}

/// A loaded configuration and the trust store its client checks use.
#[derive(Debug)]
struct Loaded {
    config: Arc<ServerConfig>,
    trust: Option<TrustStore>,
}

fn court_verifier(
    mode: ClientAuth,
    trust: TrustStore,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, CertError> {
    let mut roots = RootCertStore::empty();
    for der in trust.anchor_certs() {
        roots.add(der).map_err(tls_err)?;
    }
    let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !trust.crl_ders().is_empty() {
        b = b
            .with_crls(trust.crl_ders().to_vec())
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    if matches!(mode, ClientAuth::Optional | ClientAuth::Request) {
        b = b.allow_unauthenticated();
    }
    let inner = b.build().map_err(tls_err)?;
    // `Request`: any chain (or none) is accepted at the handshake, to be verified after it by
    // the handler; the handshake signature is still checked against the presented leaf's key.
    let trust = (mode != ClientAuth::Request).then_some(trust);
    Ok(Arc::new(CourtClientVerifier { inner, trust }))
}

/// The webpki verifier, then the court checks of [`verify_client`] (identity, zone, kind); with
/// no trust ([`ClientAuth::Request`]) it asks for a certificate and accepts whatever comes, only
/// the handshake signature checked.
#[derive(Debug)]
struct CourtClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust: Option<TrustStore>,
}

impl ClientCertVerifier for CourtClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.trust.is_none() || self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.trust.is_some() && self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let Some(trust) = &self.trust else {
            return Ok(ClientCertVerified::assertion());
        };
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let mut chain = Vec::with_capacity(intermediates.len() + 1);
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        verify_client(&chain, trust, now).map_err(to_rustls)?;
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn to_rustls(e: CertError) -> rustls::Error {
    use rustls::CertificateError as C;
    rustls::Error::InvalidCertificate(match e {
        CertError::Expired { .. } => C::Expired,
        CertError::NotYetValid { .. } => C::NotValidYet,
        CertError::Revoked => C::Revoked,
        CertError::UnknownIssuer(_) => C::UnknownIssuer,
        CertError::WrongUsage(_) => C::InvalidPurpose,
        CertError::Malformed(_) => C::BadEncoding,
        other => C::Other(rustls::OtherError(Arc::new(other))),
    })
}

#[derive(Debug)]
struct Reloadable {
    builder: ServerTlsBuilder,
    current: ArcSwap<Loaded>,
}

/// A server configuration that can be re-read from its files while connections go on; each
/// new connection takes [`ReloadableServerConfig::current`].
#[derive(Debug, Clone)]
pub struct ReloadableServerConfig {
    inner: Arc<Reloadable>,
}

impl ReloadableServerConfig {
    /// The configuration to accept the next connection with.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.inner.current.load().config.clone()
    }

    /// How clients are asked for certificates.
    pub fn client_auth(&self) -> ClientAuth {
        self.inner.builder.client_auth
    }

    /// Verifies a chain a client presented (leaf first) against the trust bundle, CRLs and zone
    /// of the current configuration, at `now`: what [`ClientAuth::Request`] leaves to after the
    /// handshake. The error is the precise reason (revoked, expired, another zone's CA, …).
    pub fn verify_presented(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<CourtIdentity, CertError> {
        match &self.inner.current.load().trust {
            Some(trust) => verify_client(chain, trust, now),
            None => Err(CertError::Tls(
                "no trust bundle to verify a client certificate against".to_owned(),
            )),
        }
    }

    /// Re-reads the certificate, key, trust bundle and CRLs; on any error keeps the old
    /// configuration and returns the error.
    pub fn reload(&self) -> Result<(), CertError> {
        let loaded = self.inner.builder.load()?;
        self.inner.current.store(Arc::new(loaded));
        Ok(())
    }
}

/// A client configuration trusting the CAs of `trust_pem` (TLS 1.3 and 1.2), presenting
/// `client_cert` (chain PEM, key PEM) when given.
pub fn client_config(
    trust_pem: &[u8],
    client_cert: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, CertError> {
    let mut roots = RootCertStore::empty();
    for der in certs_from_pem(trust_pem)? {
        roots.add(der).map_err(tls_err)?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_root_certificates(roots);
    match client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((chain_pem, key_pem)) => builder
            .with_client_auth_cert(certs_from_pem(chain_pem)?, key_from_pem(key_pem)?)
            .map_err(tls_err),
    }
}
