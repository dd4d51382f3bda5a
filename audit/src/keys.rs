//! Checkpoint keys in files: PKCS#8 PEM private keys (as `certs` writes them).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tianping_core::RingSigner;

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
    let body = text
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END PRIVATE KEY-----").next())
        .ok_or(KeyFileError::NoBlock)?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = zeroizing(STANDARD.decode(b64).map_err(|_| KeyFileError::Base64)?);
    RingSigner::from_pkcs8_any(der.expose()).map_err(|_| KeyFileError::Unsupported)
}

fn zeroizing(v: Vec<u8>) -> tianping_core::Secret<Vec<u8>> {
    tianping_core::Secret::new(v)
}

/// PKCS#8 DER as PEM text.
pub fn pkcs8_to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
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
