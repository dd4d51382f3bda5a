//! Checkpoint keys in files: PKCS#8 PEM private keys (as `certs` writes them), read and written
//! through `tianping_core`'s one PEM module.

use tianping_core::{PRIVATE_KEY_LABEL, PemError, RingSigner, pem_encode, private_key_from_pem};

/// Why a key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// No `PRIVATE KEY` block.
    #[error("no PKCS#8 `PRIVATE KEY` block")]
    NoBlock,
    /// The block is not base64.
    #[error("the key block is not base64")]
    Base64,
    /// Not an ES256 or Ed25519 key.
    #[error("not an ES256 or Ed25519 PKCS#8 key")]
    Unsupported,
}

/// A signer from PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`), ES256 or Ed25519.
pub fn signer_from_pem(text: &str) -> Result<RingSigner, KeyFileError> {
    let der = private_key_from_pem(text).map_err(|e| match e {
        PemError::Base64 { .. } => KeyFileError::Base64,
        _ => KeyFileError::NoBlock,
    })?;
    RingSigner::from_pkcs8_any(der.expose()).map_err(|_| KeyFileError::Unsupported)
}

/// PKCS#8 DER as PEM text.
pub fn pkcs8_to_pem(der: &[u8]) -> String {
    pem_encode(PRIVATE_KEY_LABEL, der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tianping_core::{Algorithm, Signer};

    #[test]
    fn pem_round_trip() {
        for alg in Algorithm::ALL {
            let (s, der) = RingSigner::generate(*alg).unwrap();
            let pem = pkcs8_to_pem(der.expose());
            assert_eq!(signer_from_pem(&pem).unwrap().public_key(), s.public_key());
        }
        assert_eq!(
            signer_from_pem("nothing").unwrap_err(),
            KeyFileError::NoBlock
        );
        assert_eq!(
            signer_from_pem("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n")
                .unwrap_err(),
            KeyFileError::Base64
        );
    }
}
