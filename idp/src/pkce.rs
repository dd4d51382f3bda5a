//! PKCE (RFC 7636), `S256` only: every client must send a challenge, `plain` is refused, and a
//! verifier sent for a code issued without a challenge is refused (no downgrade).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::IdpError;

/// An `S256` code challenge: base64url (no padding) of a SHA-256 digest, 43 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// The challenge from an authorization request's `code_challenge` and
    /// `code_challenge_method`: the method must be `S256` (RFC 7636 §4.3 makes a missing method
    /// mean `plain`, so it is refused too).
    pub fn from_request(challenge: Option<&str>, method: Option<&str>) -> Result<Self, IdpError> {
        let challenge = challenge.ok_or(IdpError::PkceRequired)?;
        match method {
            Some("S256") => {}
            Some(other) => {
                return Err(IdpError::PkceMethodNotSupported(crate::error::quoted(
                    other,
                )));
            }
            None => return Err(IdpError::PkceMethodNotSupported("plain".into())),
        }
        let ok = challenge.len() == 43
            && URL_SAFE_NO_PAD
                .decode(challenge)
                .is_ok_and(|d| d.len() == 32);
        if ok {
            Ok(Self(challenge.to_owned()))
        } else {
            Err(IdpError::BadParameter {
                name: "code_challenge",
                reason: "expected the base64url SHA-256 of the verifier",
            })
        }
    }

    /// The challenge a verifier makes: `BASE64URL(SHA256(ASCII(verifier)))`.
    pub fn of_verifier(verifier: &str) -> Result<Self, IdpError> {
        check_verifier(verifier)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        Ok(Self(URL_SAFE_NO_PAD.encode(digest.as_ref())))
    }

    /// The challenge as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A challenge read back from the store (checked when it was first made).
    #[cfg(feature = "store")]
    pub(crate) fn from_stored(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Checks the verifier grammar: 43 to 128 of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
pub fn check_verifier(verifier: &str) -> Result<(), IdpError> {
    let ok = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(IdpError::PkceVerifierMalformed)
    }
}

/// The token endpoint's check of a `code_verifier` against the challenge the code was issued
/// with. A code without a challenge is never redeemed: with a verifier it is a downgrade, without
/// one it breaks the rule that every client uses PKCE.
pub fn verify(challenge: Option<&CodeChallenge>, verifier: Option<&str>) -> Result<(), IdpError> {
    match (challenge, verifier) {
        (Some(c), Some(v)) => {
            let made = CodeChallenge::of_verifier(v)?;
            if tianping_core::ct_eq(made.0.as_bytes(), c.0.as_bytes()) {
                Ok(())
            } else {
                Err(IdpError::PkceMismatch)
            }
        }
        (Some(_), None) => Err(IdpError::PkceVerifierMissing),
        (None, Some(_)) => Err(IdpError::PkceDowngrade),
        (None, None) => Err(IdpError::PkceRequired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Vector {
        verifier_octets: Vec<u8>,
        code_verifier: String,
        code_challenge: String,
        code_challenge_method: String,
    }

    fn vector() -> Vector {
        serde_json::from_str(include_str!("../tests/data/rfc7636.json")).unwrap()
    }

    #[test]
    fn rfc7636_appendix_b() {
        let v = vector();
        assert_eq!(URL_SAFE_NO_PAD.encode(&v.verifier_octets), v.code_verifier);
        let made = CodeChallenge::of_verifier(&v.code_verifier).unwrap();
        assert_eq!(made.as_str(), v.code_challenge);
        let parsed =
            CodeChallenge::from_request(Some(&v.code_challenge), Some(&v.code_challenge_method))
                .unwrap();
        assert_eq!(parsed, made);
        verify(Some(&parsed), Some(&v.code_verifier)).unwrap();
    }

    #[test]
    fn plain_and_missing_are_refused() {
        let v = vector();
        let c = Some(v.code_challenge.as_str());
        assert_eq!(
            CodeChallenge::from_request(c, Some("plain")),
            Err(IdpError::PkceMethodNotSupported("plain".into()))
        );
        assert_eq!(
            CodeChallenge::from_request(c, None),
            Err(IdpError::PkceMethodNotSupported("plain".into()))
        );
        assert_eq!(
            CodeChallenge::from_request(None, Some("S256")),
            Err(IdpError::PkceRequired)
        );
        assert!(CodeChallenge::from_request(Some("short"), Some("S256")).is_err());
    }

    #[test]
    fn wrong_missing_and_downgraded_verifiers() {
        let v = vector();
        let c = CodeChallenge::of_verifier(&v.code_verifier).unwrap();
        let other = "a".repeat(43);
        assert_eq!(verify(Some(&c), Some(&other)), Err(IdpError::PkceMismatch));
        assert_eq!(verify(Some(&c), None), Err(IdpError::PkceVerifierMissing));
        assert_eq!(
            verify(None, Some(&v.code_verifier)),
            Err(IdpError::PkceDowngrade)
        );
        assert_eq!(verify(None, None), Err(IdpError::PkceRequired));
    }

    #[test]
    fn verifier_grammar() {
        assert!(check_verifier(&"a".repeat(43)).is_ok());
        assert!(check_verifier(&"~._-".repeat(32)).is_ok());
        for bad in [
            "a".repeat(42),
            "a".repeat(129),
            format!("{}+", "a".repeat(42)),
            format!("{} ", "a".repeat(43)),
            "é".repeat(30),
        ] {
            assert_eq!(
                check_verifier(&bad),
                Err(IdpError::PkceVerifierMalformed),
                "{bad}"
            );
        }
    }
}
