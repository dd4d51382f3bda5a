//! PEM text (RFC 7468) and private-key files, in one place for every crate.
//!
//! Key material is decoded straight into a [`Secret`] (zeroized on drop) and written through
//! [`write_private_file`]: mode 0600 from the first byte, whole or not at all.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroize as _;

use crate::Secret;
use crate::files::{FileError, write_private_file};

/// The label of a PKCS#8 private key block.
pub const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";

/// Why PEM text or a key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// The text holds no block with the wanted label.
    #[error("no `{label}` pem block")]
    NoBlock {
        /// The label looked for.
        label: String,
    },
    /// A `BEGIN` line without its `END` line (or an `END` naming another label).
    #[error("the `{label}` pem block has no matching end line")]
    Unterminated {
        /// The label of the `BEGIN` line.
        label: String,
    },
    /// The body of a block is not base64.
    #[error("the `{label}` pem block is not base64")]
    Base64 {
        /// The label of the block.
        label: String,
    },
    /// The file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
}

/// One decoded PEM block: certificates, CRLs, public keys. Private keys go through
/// [`private_key_from_pem`], which keeps them in a [`Secret`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label (`CERTIFICATE`, `X509 CRL`).
    pub label: String,
    /// The DER bytes.
    pub der: Vec<u8>,
}

/// `der` as a PEM block labelled `label`, 64 base64 characters a line.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut b64 = b64;
    b64.zeroize();
    out
}

/// Every block of a PEM text, in order; text outside blocks is ignored (RFC 7468 §5.2).
pub fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, PemError> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = begin_label(line) else {
            continue;
        };
        let mut der = Vec::new();
        decode_body(label, &mut lines, text.len(), &mut der)?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            der,
        });
    }
    Ok(blocks)
}

/// The DER of the first PKCS#8 `PRIVATE KEY` block of `text`, never copied outside a [`Secret`].
pub fn private_key_from_pem(text: &str) -> Result<Secret<Vec<u8>>, PemError> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if begin_label(line) == Some(PRIVATE_KEY_LABEL) {
            let mut der = Secret::new(Vec::with_capacity(text.len()));
            decode_body(PRIVATE_KEY_LABEL, &mut lines, text.len(), der.expose_mut())?;
            return Ok(der);
        }
    }
    Err(PemError::NoBlock {
        label: PRIVATE_KEY_LABEL.to_owned(),
    })
}

/// Reads a PKCS#8 PEM private-key file: the key's DER, as a [`Secret`].
pub fn read_private_key(path: &Path) -> Result<Secret<Vec<u8>>, PemError> {
    let bytes = Secret::new(std::fs::read(path).map_err(|e| FileError::new("read", path, e))?);
    let text = std::str::from_utf8(bytes.expose()).map_err(|_| PemError::NoBlock {
        label: PRIVATE_KEY_LABEL.to_owned(),
    })?;
    private_key_from_pem(text)
}

/// Writes PKCS#8 DER as a new PEM key file at mode 0600, whole or not at all; refuses an
/// existing file.
pub fn write_private_key(path: &Path, pkcs8_der: &[u8]) -> Result<(), FileError> {
    let pem = Secret::new(pem_encode(PRIVATE_KEY_LABEL, pkcs8_der));
    write_private_file(path, pem.expose().as_bytes())
}

/// Reads a PEM file's blocks (certificates, CRLs).
pub fn read_pem(path: &Path) -> Result<Vec<PemBlock>, PemError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::new("read", path, e))?;
    pem_blocks(&text)
}

fn begin_label(line: &str) -> Option<&str> {
    line.trim_end()
        .strip_prefix("-----BEGIN ")?
        .strip_suffix("-----")
}

/// Decodes the lines up to `-----END <label>-----` into `out`. The base64 is gathered in a
/// secret buffer reserved up front (`capacity`), so no copy of a key is left in freed memory.
fn decode_body<'a>(
    label: &str,
    lines: &mut impl Iterator<Item = &'a str>,
    capacity: usize,
    out: &mut Vec<u8>,
) -> Result<(), PemError> {
    let mut b64 = Secret::new(String::with_capacity(capacity));
    for line in lines.by_ref() {
        let line = line.trim();
        if let Some(end) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if end != label {
                break;
            }
            return STANDARD
                .decode_vec(b64.expose().as_bytes(), out)
                .map_err(|_| PemError::Base64 {
                    label: label.to_owned(),
                });
        }
        b64.expose_mut().push_str(line);
    }
    Err(PemError::Unterminated {
        label: label.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_read_back() {
        let der: Vec<u8> = (0..=255).collect();
        let pem = pem_encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64), "{pem}");
        let text = format!("intro text\n{pem}{}", pem_encode("X509 CRL", b"crl"));
        let blocks = pem_blocks(&text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            (blocks[0].label.as_str(), &blocks[0].der),
            ("CERTIFICATE", &der)
        );
        assert_eq!(
            (blocks[1].label.as_str(), blocks[1].der.as_slice()),
            ("X509 CRL", &b"crl"[..])
        );
        assert_eq!(pem_blocks("").unwrap(), []);
    }

    #[test]
    fn private_keys_are_found_among_other_blocks() {
        let text = format!(
            "{}{}",
            pem_encode("CERTIFICATE", b"cert"),
            pem_encode(PRIVATE_KEY_LABEL, b"pkcs8")
        );
        assert_eq!(private_key_from_pem(&text).unwrap().expose(), b"pkcs8");
        assert_eq!(
            private_key_from_pem(&pem_encode("CERTIFICATE", b"c")).unwrap_err(),
            PemError::NoBlock {
                label: PRIVATE_KEY_LABEL.into()
            }
        );
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let cases = [
            (
                "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
                "not base64",
            ),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n", "no matching end"),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END CERTIFICATE-----\n",
                "no matching end",
            ),
        ];
        for (text, want) in cases {
            let err = private_key_from_pem(text).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            let err = pem_blocks(text).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn key_files_round_trip_at_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("node.key");
        write_private_key(&path, b"pkcs8 der").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_private_key(&path).unwrap().expose(), b"pkcs8 der");
        assert!(
            matches!(write_private_key(&path, b"other"), Err(e) if e.reason.contains("already exists"))
        );
        assert!(matches!(
            read_private_key(&dir.path().join("none")),
            Err(PemError::File(_))
        ));
        assert_eq!(read_pem(&path).unwrap()[0].label, PRIVATE_KEY_LABEL);
    }
}
