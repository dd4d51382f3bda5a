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
//! # Threat model and defaults
//!
//! - **A certificate from the wrong place** (another zone's CA, a forged or self-made chain, a
//!   CA used as a leaf): chains are validated by `webpki` against the trust bundle, at most 8
//!   certificates, and the leaf's zone must be the zone of the CA that issued it; a store narrowed
//!   with [`TrustStore::for_zone`] accepts only that zone's leaves. Trust anchors carry no validity
//!   of their own in `webpki`, so a zone CA's dates are checked here.
//! - **A certificate used for what it is not** (a server certificate presented by a client, a
//!   device signing for a zone): key usages come from the kind ([`CertKind`]) and are checked on
//!   use; only `node` certificates sign for their zone ([`verify_signer`]).
//! - **A revoked certificate still accepted**: a store given CRLs refuses a leaf whose CA has
//!   none among them and every leaf of a CA whose CRL is past `nextUpdate`; each CRL's signature
//!   is checked against its CA when loaded, so a forged CRL (one that un-revokes) is refused. A
//!   store given no CRL at all checks no revocation: that is asked for by the caller, never
//!   defaulted by a file gone missing. Giving way is [`danger::RevocationLeniency`].
//! - **A swapped trust bundle** (an update bringing its own root): [`TrustStore::from_pinned`]
//!   refuses a bundle whose CAs are not the pinned root or signed by it.
//! - **Hostile bytes** (certificates, PEM, CRLs from peers and files): parsing is bounded
//!   ([`MAX_CERT_DER`], [`MAX_SANS`]), never panics, and is fuzzed (`fuzz/`, `cert_identity`);
//!   duplicate or malformed Tianping names are refused rather than picked from.
//! - **Keys leaking**: private keys live in [`tianping_core::Secret`] (zeroized, `Debug`
//!   redacted) and are written with mode 0600 to new files only.
//! - **Tokens between components** (a forged, replayed, re-aimed or long-lived assertion, or one
//!   signed by another zone): one profile ([`TokenSigner`], [`TokenVerifier`]), ES256 only, the
//!   signer's chain in `x5c` verified as a `node` certificate of the verifier's zone, an exact
//!   `aud`, at most 60 s of life with 5 s of clock skew, every `jti` remembered until expiry in a
//!   bounded [`ReplayCache`] that refuses when full rather than forgets. Unknown header members
//!   (`kid`, `jku`, `jwk`, `crit`) are refused, so no key is ever taken from the token itself.
//! - **`acr=cert` from a copied key**: only a client certificate marked [`HARDWARE_KEY_URI`]
//!   (`certs issue --hardware`: the issuer put its key on a PIN-guarded token) counts as
//!   `acr=cert` on its own ([`CourtIdentity::hardware`]); a software key is one factor.
//!
//! Not covered: the root key's safekeeping (it may be kept offline with `certs init
//! --root-key`), and OCSP (revocation is by CRL only).
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

pub mod danger;
mod error;
mod identity;
#[doc(hidden)]
pub mod internal;
mod issue;
mod pem;
mod pki;
mod replay;
mod sig;
mod signer;
mod tls;
mod token;
mod verify;

pub use error::{CertError, format_time};
pub use identity::{
    CertKind, CertSummary, CourtIdentity, HARDWARE_KEY_URI, MAX_CERT_DER, MAX_SANS, fingerprint,
    identity_of, summarize,
};
pub use issue::{BACKDATE_SECS, CaCert, IssuedCert, KeyAlg, LeafRequest, Revocation, RevokeReason};
pub use pem::certs_from_pem;
pub use pki::{DEFAULT_CRL_DAYS, Pki, PkiInit, random_secret};
pub use replay::ReplayCache;
pub use rustls_pki_types::CertificateDer;
pub use signer::{SignerIdentity, public_key_of, verify_signer};
pub use tls::{
    ClientAuth, DEFAULT_TLS13_TICKETS, ReloadableServerConfig, ServerTlsBuilder, client_config,
    key_from_pem,
};
pub use token::{
    CLOCK_SKEW_SECS, DELIVERY_TOKEN_HEADER, DeliveryClaims, MAX_TOKEN_BYTES,
    MAX_TOKEN_LIFETIME_SECS, NODE_TOKEN_HEADER, TokenClaims, TokenError, TokenKind, TokenSigner,
    TokenVerifier, USER_TOKEN_HEADER, UserClaims, VerifiedToken,
};
pub use verify::{CertUsage, TrustStore, VerifyTime, verify_chain, verify_client};
