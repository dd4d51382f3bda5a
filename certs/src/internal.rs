//! Entry points for the fuzz targets, shared with the test that replays their corpora on stable.

use crate::identity::{fingerprint, identity_of, summarize};
use crate::pem::certs_from_pem;

/// [`identity_of`] and the PEM reader over any bytes: never panics, and an identity it returns
/// is consistent with the certificate.
pub fn fuzz_cert_identity(data: &[u8]) {
    if let Ok(id) = identity_of(data) {
        assert_eq!(id.fingerprint, fingerprint(data));
        assert!(summarize(data).is_ok());
        if id.kind == crate::CertKind::Client {
            assert!(id.subject.is_some() && id.court.is_some());
        }
    }
    if let Ok(certs) = certs_from_pem(data) {
        assert!(!certs.is_empty());
        for c in certs.iter().take(4) {
            let _ = identity_of(c);
        }
    }
    let _ = crate::TrustStore::from_pem(data, &[]);
    let _ = crate::TrustStore::from_pem(b"", &[data]);
}
