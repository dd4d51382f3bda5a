//! The one path normalization: every routing and policy decision, and what is forwarded, use its output.
//!
//! Threat model: a path that one component reads as `/public` and another as `/admin` bypasses the
//! policy (the Envoy `%2F` and `..` advisories, the Pingora path confusion fixes). So the server
//! normalizes once, refuses anything whose meaning depends on a later decoder, and hands the
//! application only the normalized path:
//!
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, once; other encoded
//!   bytes stay encoded with upper-case hex;
//! - dot segments are resolved and duplicate slashes collapsed; a path that climbs above the root is
//!   refused (it means an attack, never a link);
//! - refused: an encoded `/` or `\`, a second level of encoding (`%25`), raw `\`, `;` parameters
//!   (Tomcat and Spring read them, others do not), a fragment, NUL and control characters (raw or
//!   encoded), raw non-ASCII, a target that is not origin-form.
//!
//! The query is kept as sent (it is the application's to parse), after a check for control bytes.
use thiserror::Error;

/// Why a request path was refused; every variant is answered with 400.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PathError {
    /// The target does not start with `/`.
    #[error("request target is not an absolute path")]
    NotOrigin,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadEncoding,
    /// An encoded `/` or `\`.
    #[error("encoded slash or backslash")]
    EncodedSlash,
    /// `%25`: a second level of encoding.
    #[error("double percent-encoding")]
    DoubleEncoding,
    /// A raw backslash.
    #[error("backslash in path")]
    Backslash,
    /// A `;` path parameter.
    #[error("path parameter")]
    Parameter,
    /// A `#` fragment in a request target.
    #[error("fragment in request target")]
    Fragment,
    /// NUL, control, space or non-ASCII bytes, raw or encoded.
    #[error("control or non-ASCII character in path")]
    Control,
    /// `..` segments climb above the root.
    #[error("path leaves the root")]
    OutsideRoot,
}

/// A normalized origin-form target: the path (always starting with `/`, no `//`, no dot segments)
/// and the query as sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NormalizedPath {
    path: String,
    query: Option<String>,
}

impl NormalizedPath {
    /// The normalized path, without the query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Path and query, the form that is forwarded.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

impl std::fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path_and_query())
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalizes an origin-form request target (`/path?query`); see the module docs for the rules.
pub fn normalize_path(target: &str) -> Result<NormalizedPath, PathError> {
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if let Some(q) = query {
        if q.contains('#') {
            return Err(PathError::Fragment);
        }
        if !q.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(PathError::Control);
        }
    }
    if !raw_path.starts_with('/') {
        return Err(PathError::NotOrigin);
    }
    // First pass: decode unreserved bytes once, keep the rest encoded, refuse the dangerous ones.
    let bytes = raw_path.as_bytes();
    let mut decoded = String::with_capacity(raw_path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEncoding);
                };
                let d = h * 16 + l;
                match d {
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    b'%' => return Err(PathError::DoubleEncoding),
                    0..=0x20 | 0x7f => return Err(PathError::Control),
                    _ if is_unreserved(d) => decoded.push(char::from(d)),
                    _ => {
                        decoded.push('%');
                        decoded.push_str(&format!("{d:02X}"));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Parameter),
            b'#' => return Err(PathError::Fragment),
            0x21..=0x7e => {
                decoded.push(char::from(b));
                i += 1;
            }
            _ => return Err(PathError::Control),
        }
    }
    // Second pass: segments.
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split('/').skip(1) {
        trailing = false;
        match seg {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                out.pop().ok_or(PathError::OutsideRoot)?;
                trailing = true;
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if trailing || out.is_empty() {
        path.push('/');
    }
    Ok(NormalizedPath {
        path,
        query: query.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Result<String, PathError> {
        normalize_path(s).map(|p| p.path_and_query())
    }

    #[test]
    fn normalizes() {
        assert_eq!(n("/").unwrap(), "/");
        assert_eq!(n("/a/../admin").unwrap(), "/admin");
        assert_eq!(n("//admin").unwrap(), "/admin");
        assert_eq!(n("/a/./b/").unwrap(), "/a/b/");
        assert_eq!(n("/%61dmin").unwrap(), "/admin");
        assert_eq!(n("/a%3ab?x=%2F").unwrap(), "/a%3Ab?x=%2F");
        assert_eq!(n("/a/..").unwrap(), "/");
    }

    #[test]
    fn refuses() {
        assert_eq!(n("/admin#x"), Err(PathError::Fragment));
        assert_eq!(n("/%2e%2e/admin"), Err(PathError::OutsideRoot));
        assert_eq!(n("/../admin"), Err(PathError::OutsideRoot));
        assert_eq!(n("/admin%2F"), Err(PathError::EncodedSlash));
        assert_eq!(n("/admin%5c"), Err(PathError::EncodedSlash));
        assert_eq!(n("/admin;x=1"), Err(PathError::Parameter));
        assert_eq!(n("\\admin"), Err(PathError::NotOrigin));
        assert_eq!(n("/\\admin"), Err(PathError::Backslash));
        assert_eq!(n("/%2561dmin"), Err(PathError::DoubleEncoding));
        assert_eq!(n("/a%00"), Err(PathError::Control));
        assert_eq!(n("/a%0"), Err(PathError::BadEncoding));
        assert_eq!(n("/é"), Err(PathError::Control));
        assert_eq!(n("*"), Err(PathError::NotOrigin));
        assert_eq!(n("http://x/"), Err(PathError::NotOrigin));
    }
}
