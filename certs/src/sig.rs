//! The keys of certificates and the signatures CAs make over certificates and CRLs: P-256 ECDSA
//! and Ed25519, the two kinds this PKI issues ([`crate::KeyAlg`]); anything else is refused.

use ring::signature;
use tianping_core::{Algorithm, PublicKey};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ED25519,
};
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::CertError;

/// A certificate's public key as `tianping_core` names it.
pub(crate) fn key_of_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKey, CertError> {
    let oid = &spki.algorithm.algorithm;
    let raw = spki.subject_public_key.data.to_vec();
    let algorithm = if *oid == OID_SIG_ED25519 {
        Algorithm::Ed25519
    } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == OID_EC_P256)
    {
        Algorithm::Es256
    } else {
        return Err(CertError::malformed(format!(
            "a public key of algorithm `{oid}` (expected p-256 or ed25519)"
        )));
    };
    PublicKey::new(algorithm, raw)
        .map_err(|e| CertError::malformed(format!("bad public key ({e})")))
}

/// Checks a CA's signature (`sig_alg`, `sig`) over `signed`, made with `key`.
pub(crate) fn check_ca_signature(
    key: &PublicKey,
    sig_alg: &AlgorithmIdentifier<'_>,
    signed: &[u8],
    sig: &[u8],
) -> Result<(), CertError> {
    let oid = &sig_alg.algorithm;
    let verifier: &dyn signature::VerificationAlgorithm = match (
        key.algorithm(),
        *oid == OID_SIG_ECDSA_WITH_SHA256,
        *oid == OID_SIG_ED25519,
    ) {
        (Algorithm::Es256, true, _) => &signature::ECDSA_P256_SHA256_ASN1,
        (Algorithm::Ed25519, _, true) => &signature::ED25519,
        _ => {
            return Err(CertError::malformed(format!(
                "a signature of algorithm `{oid}` by a `{}` key",
                key.algorithm()
            )));
        }
    };
    signature::UnparsedPublicKey::new(verifier, key.as_bytes())
        .verify(signed, sig)
        .map_err(|_| {
            CertError::UnknownIssuer(": the signature does not match the issuer".to_owned())
        })
}
