//! `application/x-www-form-urlencoded` text (the query of a GET, the body of a POST), read
//! strictly: a parameter the provider reads may appear only once (RFC 6749 §3.1).

use crate::IdpError;
use crate::error::quoted;

/// The parameters of a query or form body, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

/// The most bytes a query or form body may hold.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

impl Params {
    /// Parses form-encoded bytes; `+` is a space, `%XX` a byte, and the result must be UTF-8.
    /// Empty pieces (`a=1&&b=2`) are skipped; a name without `=` has an empty value.
    pub fn parse(bytes: &[u8]) -> Result<Self, IdpError> {
        if bytes.len() > MAX_FORM_BYTES {
            return Err(IdpError::MalformedForm);
        }
        let mut out = Vec::new();
        for piece in bytes.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match piece.iter().position(|b| *b == b'=') {
                Some(i) => (
                    piece.get(..i).unwrap_or_default(),
                    piece.get(i + 1..).unwrap_or_default(),
                ),
                None => (piece, &[][..]),
            };
            out.push((decode(name)?, decode(value)?));
        }
        Ok(Self(out))
    }

    /// The value of `name`, refusing a parameter sent twice. An empty value counts as absent
    /// (OIDC Core §3.1.2.1 treats empty parameters as omitted).
    pub fn get(&self, name: &str) -> Result<Option<&str>, IdpError> {
        let mut found = self.0.iter().filter(|(n, _)| n == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(IdpError::DuplicateParameter(quoted(name)));
        }
        Ok(first.map(|(_, v)| v.as_str()).filter(|v| !v.is_empty()))
    }

    /// Like [`get`](Self::get), refusing an absent parameter.
    pub fn require(&self, name: &'static str) -> Result<&str, IdpError> {
        self.get(name)?.ok_or(IdpError::MissingParameter(name))
    }

    /// Every (name, value) pair, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form-encoded name or value.
pub(crate) fn decode(s: &[u8]) -> Result<String, IdpError> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter();
    while let Some(&b) = it.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = it.next().copied().and_then(hex_val);
                let lo = it.next().copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(IdpError::MalformedForm),
                }
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map_err(|_| IdpError::MalformedForm)
}

/// Percent-encodes everything but the RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Form-encodes pairs: `a=1&b=x%20y`.
pub fn encode_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (n, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode(n));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_duplicates() {
        let p = Params::parse(b"a=1&b=x+y%21&&c&d=%E6%B3%95&b2=").unwrap();
        assert_eq!(p.get("a").unwrap(), Some("1"));
        assert_eq!(p.get("b").unwrap(), Some("x y!"));
        assert_eq!(p.get("c").unwrap(), None);
        assert_eq!(p.get("b2").unwrap(), None);
        assert_eq!(p.get("d").unwrap(), Some("法"));
        assert_eq!(p.require("zz"), Err(IdpError::MissingParameter("zz")));
        let dup = Params::parse(b"state=1&state=2").unwrap();
        assert_eq!(
            dup.get("state"),
            Err(IdpError::DuplicateParameter("state".into()))
        );
    }

    #[test]
    fn malformed_encodings() {
        for bad in [&b"a=%"[..], b"a=%4", b"a=%zz", b"a=%ff", b"\xff=1"] {
            assert_eq!(Params::parse(bad), Err(IdpError::MalformedForm));
        }
        assert!(Params::parse(&vec![b'a'; MAX_FORM_BYTES + 1]).is_err());
    }

    #[test]
    fn encode_round_trips() {
        let s = "https://rp.example/cb?x=1 法&~";
        let enc = encode_pairs([("redirect_uri", s), ("state", "a b")]);
        let p = Params::parse(enc.as_bytes()).unwrap();
        assert_eq!(p.get("redirect_uri").unwrap(), Some(s));
        assert_eq!(p.get("state").unwrap(), Some("a b"));
    }
}
