//! Certificates and CRLs read from PEM text, through `tianping_core`'s one PEM reader.

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use tianping_core::pem_blocks;

use crate::CertError;

/// The DER of every block labelled `label`, in order; refuses text with none or a bad block.
fn blocks(pem: &[u8], label: &str, what: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| CertError::malformed(format!("bad {what} pem (not text)")))?;
    let ders: Vec<Vec<u8>> = pem_blocks(text)
        .map_err(|e| CertError::malformed(format!("bad {what} pem ({e})")))?
        .into_iter()
        .filter(|b| b.label == label)
        .map(|b| b.der)
        .collect();
    if ders.is_empty() {
        return Err(CertError::malformed(format!("no {what} in the pem text")));
    }
    Ok(ders)
}

/// Every certificate in a PEM text, in order; refuses text with none or with a bad block.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    Ok(blocks(pem, "CERTIFICATE", "certificate")?
        .into_iter()
        .map(CertificateDer::from)
        .collect())
}

/// Every CRL in a PEM text, or the one CRL of a DER file.
pub(crate) fn crls_from_pem_or_der(
    text: &[u8],
) -> Result<Vec<CertificateRevocationListDer<'static>>, CertError> {
    if !text.windows(10).any(|w| w == b"-----BEGIN") {
        return Ok(vec![CertificateRevocationListDer::from(text.to_vec())]);
    }
    Ok(blocks(text, "X509 CRL", "crl")?
        .into_iter()
        .map(CertificateRevocationListDer::from)
        .collect())
}
