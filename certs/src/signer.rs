//! Signing identities: the key of a certificate, a `node` certificate of a zone verified as a
//! signer, and a trust bundle checked against a pinned root before it is believed.

use rustls_pki_types::CertificateDer;
use tianping_core::{PublicKey, ZoneName};

use crate::CertError;
use crate::identity::{CertKind, CourtIdentity, parse_cert};
use crate::pem::certs_from_pem;
use crate::sig::{check_ca_signature, key_of_spki};
use crate::verify::{CertUsage, TrustStore, VerifyTime, verify_chain};

/// The most CAs a trust bundle update may hold ([`TrustStore::from_update`]).
const MAX_UPDATE_CAS: usize = 64;

/// The [`PublicKey`] of a certificate (DER): P-256 as [`tianping_core::Algorithm::Es256`],
/// Ed25519 as [`tianping_core::Algorithm::Ed25519`]; other keys are refused.
pub fn public_key_of(der: &[u8]) -> Result<PublicKey, CertError> {
    key_of_spki(parse_cert(der)?.public_key())
}

/// A component that signs for its zone: its `node` certificate's identity and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerIdentity {
    /// The node certificate's identity (zone, name, fingerprint).
    pub identity: CourtIdentity,
    /// The key its signatures verify under.
    pub key: PublicKey,
}

/// Validates `chain` (leaf first) at `now` as a signer of `zone`: it must chain to `zone`'s CA
/// in `trust` (not another zone's), be valid and unrevoked, and be a `node` certificate. Returns
/// the identity and the key that verifies what it signs.
pub fn verify_signer(
    chain: &[CertificateDer<'_>],
    trust: &TrustStore,
    zone: &ZoneName,
    now: impl Into<VerifyTime>,
) -> Result<SignerIdentity, CertError> {
    let store = trust.for_zone(zone)?;
    let identity = verify_chain(chain, &store, now, CertUsage::OwnKind)?;
    if identity.kind != CertKind::Node {
        return Err(CertError::WrongUsage(format!(
            "signing for zone `{zone}` (it is a {} certificate, not a node one)",
            identity.kind
        )));
    }
    let leaf = chain
        .first()
        .ok_or_else(|| CertError::malformed("no certificate was presented"))?;
    Ok(SignerIdentity {
        key: public_key_of(leaf)?,
        identity,
    })
}

impl TrustStore {
    /// A trust store from a bundle that must be rooted in `pinned_root` (PEM or DER): every CA
    /// in it is that root or a CA the root signed, and the root is in it. A bundle bringing
    /// another root, or a zone CA signed by anything else, is refused whole. This is how an
    /// update to the bundle is checked before it replaces the installed one.
    pub fn from_pinned(
        trust_pem: &[u8],
        crls_pem: &[&[u8]],
        pinned_root: &[u8],
    ) -> Result<Self, CertError> {
        let root_der = match certs_from_pem(pinned_root) {
            Ok(mut v) if v.len() == 1 => v.pop().map(|c| c.to_vec()).unwrap_or_default(),
            Ok(_) => {
                return Err(CertError::Invalid(
                    "the pinned root must be one certificate".to_owned(),
                ));
            }
            Err(_) => pinned_root.to_vec(),
        };
        let (_, root) = x509_parser::parse_x509_certificate(&root_der).map_err(|e| {
            CertError::malformed(format!("the pinned root is not a certificate ({e})"))
        })?;
        let root_key = key_of_spki(root.public_key())?;
        let store = Self::from_pem(trust_pem, crls_pem)?;
        let mut has_root = false;
        for ca in &store.cas {
            if ca.der.as_ref() == root_der.as_slice() {
                has_root = true;
                continue;
            }
            let cert = parse_cert(&ca.der)?;
            let signed_by_root = cert.issuer().as_raw() == root.subject().as_raw()
                && check_ca_signature(
                    &root_key,
                    &cert.signature_algorithm,
                    cert.tbs_certificate.as_ref(),
                    &cert.signature_value.data,
                )
                .is_ok();
            if !signed_by_root {
                return Err(CertError::UnknownIssuer(format!(
                    ": `{}` in the trust bundle is not the pinned root nor signed by it",
                    cert.subject()
                )));
            }
        }
        if !has_root {
            return Err(CertError::UnknownIssuer(
                ": the trust bundle does not hold the pinned root".to_owned(),
            ));
        }
        Ok(store)
    }

    /// A trust bundle (PEM) checked as an update to the `installed` one: every CA in it must
    /// chain, signature by signature, to a root of the installed bundle (a self-signed CA
    /// there). A new root passes only when the bundle also holds it cross-signed by an installed
    /// root (its subject and key in a certificate the old root issued): a rotation is vouched
    /// for by the root it replaces, and a bundle that brings a root of its own is refused whole.
    /// At most 64 CAs.
    pub fn from_update(trust_pem: &[u8], installed_pem: &[u8]) -> Result<Self, CertError> {
        let store = Self::from_pem(trust_pem, &[])?;
        if store.cas.len() > MAX_UPDATE_CAS {
            return Err(CertError::malformed(format!(
                "a trust bundle of {} CAs, more than the {MAX_UPDATE_CAS} allowed",
                store.cas.len()
            )));
        }
        let installed = Self::from_pem(installed_pem, &[])?;
        // (subject, key) of every CA believed so far, the installed roots first.
        let mut trusted: Vec<(Vec<u8>, PublicKey)> = Vec::new();
        for ca in &installed.cas {
            let cert = parse_cert(&ca.der)?;
            if cert.issuer().as_raw() == ca.subject_raw.as_slice()
                && check_ca_signature(
                    &ca.key,
                    &cert.signature_algorithm,
                    cert.tbs_certificate.as_ref(),
                    &cert.signature_value.data,
                )
                .is_ok()
            {
                trusted.push((ca.subject_raw.clone(), ca.key.clone()));
            }
        }
        if trusted.is_empty() {
            return Err(CertError::Invalid(
                "the installed trust bundle holds no root to check the update against".to_owned(),
            ));
        }
        // Each CA waits for a believed CA that signed it; each pair is tried once.
        let mut pending = Vec::new();
        for ca in &store.cas {
            pending.push((ca, parse_cert(&ca.der)?, 0usize));
        }
        loop {
            let before = pending.len();
            let mut rest = Vec::new();
            for (ca, cert, tried) in pending {
                let signed = trusted.iter().skip(tried).any(|(subject, key)| {
                    cert.issuer().as_raw() == subject.as_slice()
                        && check_ca_signature(
                            key,
                            &cert.signature_algorithm,
                            cert.tbs_certificate.as_ref(),
                            &cert.signature_value.data,
                        )
                        .is_ok()
                });
                if signed {
                    trusted.push((ca.subject_raw.clone(), ca.key.clone()));
                } else {
                    rest.push((ca, cert, trusted.len()));
                }
            }
            pending = rest;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        match pending.first() {
            None => Ok(store),
            Some((_, cert, _)) if cert.issuer().as_raw() == cert.subject().as_raw() => {
                Err(CertError::UnknownIssuer(format!(
                    ": `{}` in the trust bundle is a new root that the installed root has not \
                     cross-signed",
                    cert.subject()
                )))
            }
            Some((_, cert, _)) => Err(CertError::UnknownIssuer(format!(
                ": `{}` in the trust bundle does not chain to the installed root",
                cert.subject()
            ))),
        }
    }
}
