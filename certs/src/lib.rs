//! The court PKI (DESIGN §4): one root CA and one CA per zone; issuing server, client (a
//! person), device and node certificates that carry a court identity; CRLs; validating a
//! presented chain and mapping it to a [`CourtIdentity`]; and the rustls configurations every
//! listener is built from ([`ServerTlsBuilder`], [`client_config`]).
//!
//! A leaf names its identity in SAN URIs: `urn:tianping:zone:<zone>` and
//! `urn:tianping:kind:<kind>` on every leaf; a person's `urn:tianping:subject:<id>`,
//! `urn:tianping:court:<code>` and `urn:tianping:role:<role>`. Keys are held in
//! [`tianping_core::Secret`] and never printed.
//!
//! ```
//! use tianping_certs::{CaCert, CertKind, KeyAlg, LeafRequest, TrustStore, identity_of, verify_client};
//! use tianping_core::UnixTime;
//!
//! let now = UnixTime::from_secs(1_800_000_000);
//! let root = CaCert::new_root("Court", KeyAlg::EcP256, now)?;
//! let zone = root.new_zone(&"private".parse()?, "Court", KeyAlg::EcP256, now)?;
//! let mut req = LeafRequest::new(CertKind::Client, "Judge Li");
//! req.subject = Some("u-1001".parse()?);
//! req.court = Some("bj.01".parse()?);
//! let leaf = zone.issue(&req, now)?;
//!
//! let id = identity_of(&leaf.leaf_der)?;
//! assert_eq!(id.zone.as_str(), "private");
//! let trust = TrustStore::from_pem(format!("{}{}", root.cert_pem(), zone.cert_pem()).as_bytes(), &[])?;
//! let chain = tianping_certs::certs_from_pem(leaf.chain_pem.as_bytes())?;
//! assert_eq!(verify_client(&chain, &trust, now)?.court, id.court);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod identity;
#[doc(hidden)]
pub mod internal;
mod issue;
mod pki;
mod tls;
mod verify;

pub use error::CertError;
pub use identity::{
    CertKind, CertSummary, CourtIdentity, MAX_CERT_DER, MAX_SANS, certs_from_pem, fingerprint,
    identity_of, summarize,
};
pub use issue::{CaCert, IssuedCert, KeyAlg, LeafRequest, MAX_LEAF_DAYS, Revocation, RevokeReason};
pub use pki::{
    DEFAULT_CRL_DAYS, Pki, PkiInit, format_time, pem_encode, random_secret, write_private,
};
pub use rustls_pki_types::{CertificateDer, UnixTime as PkiUnixTime};
pub use tls::{ClientAuth, ReloadableServerConfig, ServerTlsBuilder, client_config, key_from_pem};
pub use verify::{CertUsage, TrustStore, VerifyTime, verify_chain, verify_client};
