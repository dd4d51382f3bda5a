//! PEM text in and out: certificates read from a PEM text, DER written as a PEM block.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::CertError;

/// Every certificate in a PEM text, in order; refuses text with none or with a bad block.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::malformed(format!("bad pem ({e})")))?;
    if certs.is_empty() {
        return Err(CertError::malformed("no certificate in the pem text"));
    }
    Ok(certs)
}

/// `der` as a PEM block labelled `label` (`PRIVATE KEY`, `CERTIFICATE`).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
