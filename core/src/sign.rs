//! Signatures whose keys and values always carry their algorithm id (DESIGN §8), behind a
//! [`Signer`] trait so a hardware key or SM2 can be added without changing a format.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

use crate::Secret;

/// A signature algorithm, named in every signed format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Algorithm {
    /// ECDSA over P-256 with SHA-256; public keys are uncompressed points (65 bytes) and
    /// signatures the fixed 64-byte `r || s`.
    Es256,
    /// Ed25519 (RFC 8032); 32-byte public keys, 64-byte signatures.
    Ed25519,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: &'static [Algorithm] = &[Algorithm::Es256, Algorithm::Ed25519];

    /// The algorithm id: `es256` or `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Es256 => "es256",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    /// A stable one-byte code, for binary formats.
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Es256 => 1,
            Algorithm::Ed25519 => 2,
        }
    }

    /// The algorithm with a given [`code`](Self::code).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.code() == code)
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::Ed25519 => &signature::ED25519,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = VerifyError;
    fn from_str(s: &str) -> Result<Self, VerifyError> {
        Self::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| VerifyError::UnknownAlgorithm(s.chars().take(32).collect()))
    }
}

impl TryFrom<String> for Algorithm {
    type Error = VerifyError;
    fn try_from(s: String) -> Result<Self, VerifyError> {
        s.parse()
    }
}

impl From<Algorithm> for &'static str {
    fn from(a: Algorithm) -> &'static str {
        a.as_str()
    }
}

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// An algorithm id this build does not know.
    #[error("unknown signature algorithm `{0}`")]
    UnknownAlgorithm(String),
    /// A key or signature made for one algorithm presented with another.
    #[error("algorithm mismatch: key is `{key}`, signature is `{signature}`")]
    AlgorithmMismatch {
        /// The key's algorithm.
        key: Algorithm,
        /// The signature's algorithm.
        signature: Algorithm,
    },
    /// The text or bytes are not a well-formed key or signature.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The signature does not verify under the key.
    #[error("bad signature")]
    BadSignature,
}

/// Why signing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The key material could not be read.
    #[error("unreadable `{0}` private key")]
    BadKey(Algorithm),
    /// The signing device or library failed.
    #[error("signing with `{0}` failed")]
    Failed(Algorithm),
}

fn split_tagged(s: &str, what: &'static str) -> Result<(Algorithm, Vec<u8>), VerifyError> {
    let (alg, b64) = s.split_once(':').ok_or(VerifyError::Malformed(what))?;
    let alg: Algorithm = alg.parse()?;
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| VerifyError::Malformed(what))?;
    Ok((alg, bytes))
}

/// A public key with its algorithm. Text form: `<alg>:<base64url of the raw key>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    algorithm: Algorithm,
    bytes: Vec<u8>,
}

impl PublicKey {
    /// A key from its algorithm and raw bytes, checking the length the algorithm needs.
    pub fn new(algorithm: Algorithm, bytes: Vec<u8>) -> Result<Self, VerifyError> {
        let ok = match algorithm {
            Algorithm::Es256 => bytes.len() == 65 && bytes.first() == Some(&4),
            Algorithm::Ed25519 => bytes.len() == 32,
        };
        if ok {
            Ok(Self { algorithm, bytes })
        } else {
            Err(VerifyError::Malformed("public key"))
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 over the algorithm id, a zero byte and the raw key: a name for the key.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(self.algorithm.as_str().as_bytes());
        ctx.update(&[0]);
        ctx.update(&self.bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Checks `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), VerifyError> {
        if signature.algorithm != self.algorithm {
            return Err(VerifyError::AlgorithmMismatch {
                key: self.algorithm,
                signature: signature.algorithm,
            });
        }
        signature::UnparsedPublicKey::new(self.algorithm.verification(), &self.bytes)
            .verify(message, &signature.bytes)
            .map_err(|_| VerifyError::BadSignature)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.algorithm,
            URL_SAFE_NO_PAD.encode(&self.bytes)
        )
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = VerifyError;
    fn from_str(s: &str) -> Result<Self, VerifyError> {
        let (alg, bytes) = split_tagged(s.trim(), "public key")?;
        Self::new(alg, bytes)
    }
}

/// A signature with its algorithm. Text form: `<alg>:<base64url of the raw signature>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    algorithm: Algorithm,
    bytes: Vec<u8>,
}

impl Signature {
    /// A signature from its algorithm and raw bytes (64 bytes for both algorithms).
    pub fn new(algorithm: Algorithm, bytes: Vec<u8>) -> Result<Self, VerifyError> {
        if bytes.len() == 64 {
            Ok(Self { algorithm, bytes })
        } else {
            Err(VerifyError::Malformed("signature"))
        }
    }

    /// The signature's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The raw signature.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.algorithm,
            URL_SAFE_NO_PAD.encode(&self.bytes)
        )
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = VerifyError;
    fn from_str(s: &str) -> Result<Self, VerifyError> {
        let (alg, bytes) = split_tagged(s.trim(), "signature")?;
        Self::new(alg, bytes)
    }
}

/// Something that signs: a key in memory ([`RingSigner`]), or later a UKey or HSM.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The algorithm this signer uses.
    fn algorithm(&self) -> Algorithm;
    /// The public key that verifies this signer's signatures.
    fn public_key(&self) -> PublicKey;
    /// Signs `message`.
    fn sign(&self, message: &[u8]) -> Result<Signature, SignError>;
}

enum RingKey {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A [`Signer`] over a PKCS#8 key held in memory by `ring`.
pub struct RingSigner {
    key: RingKey,
    rng: SystemRandom,
}

impl fmt::Debug for RingSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingSigner({})", self.public_key())
    }
}

impl RingSigner {
    /// Makes a new key; returns the signer and its PKCS#8 document to store.
    pub fn generate(algorithm: Algorithm) -> Result<(Self, Secret<Vec<u8>>), SignError> {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            Algorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            Algorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| SignError::Failed(algorithm))?;
        let der = Secret::new(pkcs8.as_ref().to_vec());
        Ok((Self::from_pkcs8(algorithm, der.expose())?, der))
    }

    /// A signer from a PKCS#8 DER key of the given algorithm.
    pub fn from_pkcs8(algorithm: Algorithm, der: &[u8]) -> Result<Self, SignError> {
        let rng = SystemRandom::new();
        let key = match algorithm {
            Algorithm::Es256 => {
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                    .map(RingKey::Es256)
            }
            Algorithm::Ed25519 => {
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map(RingKey::Ed25519)
            }
        }
        .map_err(|_| SignError::BadKey(algorithm))?;
        Ok(Self { key, rng })
    }

    /// A signer from a PKCS#8 DER key, finding its algorithm.
    pub fn from_pkcs8_any(der: &[u8]) -> Result<Self, SignError> {
        Self::from_pkcs8(Algorithm::Es256, der)
            .or_else(|_| Self::from_pkcs8(Algorithm::Ed25519, der))
    }
}

impl Signer for RingSigner {
    fn algorithm(&self) -> Algorithm {
        match self.key {
            RingKey::Es256(_) => Algorithm::Es256,
            RingKey::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    fn public_key(&self) -> PublicKey {
        let bytes = match &self.key {
            RingKey::Es256(k) => k.public_key().as_ref().to_vec(),
            RingKey::Ed25519(k) => k.public_key().as_ref().to_vec(),
        };
        PublicKey {
            algorithm: self.algorithm(),
            bytes,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Signature, SignError> {
        let algorithm = self.algorithm();
        let bytes = match &self.key {
            RingKey::Es256(k) => k
                .sign(&self.rng, message)
                .map_err(|_| SignError::Failed(algorithm))?
                .as_ref()
                .to_vec(),
            RingKey::Ed25519(k) => k.sign(message).as_ref().to_vec(),
        };
        Ok(Signature { algorithm, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_each_algorithm() {
        for alg in Algorithm::ALL {
            let (signer, pkcs8) = RingSigner::generate(*alg).unwrap();
            let sig = signer.sign(b"hello").unwrap();
            let pk = signer.public_key();
            assert_eq!(pk.algorithm(), *alg);
            pk.verify(b"hello", &sig).unwrap();
            assert_eq!(pk.verify(b"hellO", &sig), Err(VerifyError::BadSignature));
            // text forms round-trip and name the algorithm
            let pk2: PublicKey = pk.to_string().parse().unwrap();
            let sig2: Signature = sig.to_string().parse().unwrap();
            assert!(pk.to_string().starts_with(alg.as_str()));
            pk2.verify(b"hello", &sig2).unwrap();
            // reloading the stored key gives the same public key
            let again = RingSigner::from_pkcs8_any(pkcs8.expose()).unwrap();
            assert_eq!(again.public_key(), pk);
            assert_eq!(Algorithm::from_code(alg.code()), Some(*alg));
        }
    }

    #[test]
    fn cross_algorithm_is_refused() {
        let (ec, _) = RingSigner::generate(Algorithm::Es256).unwrap();
        let (ed, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
        let sig = ed.sign(b"m").unwrap();
        assert!(matches!(
            ec.public_key().verify(b"m", &sig),
            Err(VerifyError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn rfc8032_test_1() {
        // RFC 8032 §7.1 TEST 1: empty message.
        let pk = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .unwrap();
        let sig = hex::decode("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b").unwrap();
        let pk = PublicKey::new(Algorithm::Ed25519, pk).unwrap();
        pk.verify(b"", &Signature::new(Algorithm::Ed25519, sig).unwrap())
            .unwrap();
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in ["", "es256", "rsa:AAAA", "ed25519:!!", "ed25519:AAAA"] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
            assert!(bad.parse::<Signature>().is_err(), "{bad}");
        }
    }
}
