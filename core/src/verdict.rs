//! What a policy decision carries into the audit log and back out in replay: the policy's hash
//! and the verdict, as types rather than strings.

use std::fmt;
use std::str::FromStr;

/// SHA-256 of a policy's text; named in every decision and every audit event it decided.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyHash([u8; 32]);

impl PolicyHash {
    /// The hash of `text`.
    pub fn of(text: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, text);
        let mut h = [0u8; 32];
        h.copy_from_slice(d.as_ref());
        Self(h)
    }

    /// Wraps a digest computed elsewhere.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, as printed and stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for PolicyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PolicyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyHash({self})")
    }
}

/// A policy hash or verdict that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerdictError {
    /// Not 64 lowercase hex digits.
    #[error("`{0}` is not a policy hash (64 lowercase hex digits)")]
    PolicyHash(String),
    /// Neither `allow` nor `deny`.
    #[error("`{0}` is not a verdict (`allow` or `deny`)")]
    Verdict(String),
}

impl FromStr for PolicyHash {
    type Err = VerdictError;
    fn from_str(s: &str) -> Result<Self, VerdictError> {
        let bad = || VerdictError::PolicyHash(s.chars().take(80).collect());
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        let mut h = [0u8; 32];
        hex::decode_to_slice(s, &mut h).map_err(|_| bad())?;
        Ok(Self(h))
    }
}

impl serde::Serialize for PolicyHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PolicyHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a decision said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The request or transfer may go on.
    Allow,
    /// It may not.
    Deny,
}

impl Verdict {
    /// `"allow"` or `"deny"`, as printed and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }

    /// Whether this is [`Verdict::Allow`].
    pub const fn is_allow(self) -> bool {
        matches!(self, Self::Allow)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = VerdictError;
    fn from_str(s: &str) -> Result<Self, VerdictError> {
        match s {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            _ => Err(VerdictError::Verdict(s.chars().take(80).collect())),
        }
    }
}

impl serde::Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Verdict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_verdicts_round_trip_and_refuse_the_rest() {
        let h = PolicyHash::of(b"zone internet {}");
        assert_eq!(h.to_string().parse::<PolicyHash>(), Ok(h));
        assert!(
            "AB".repeat(32).parse::<PolicyHash>().is_err(),
            "uppercase refused"
        );
        assert!("ab".repeat(31).parse::<PolicyHash>().is_err());
        assert_eq!("allow".parse::<Verdict>(), Ok(Verdict::Allow));
        assert_eq!(Verdict::Deny.to_string(), "deny");
        assert!("Allow".parse::<Verdict>().is_err());
    }
}
