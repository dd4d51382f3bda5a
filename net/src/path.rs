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
//!   (Tomcat and Spring read them, others do not) and `;`, `?` or `#` encoded (`%3B`, `%3F`, `%23`:
//!   a service that decodes before routing would read `/admin%3B` as `/admin;`), a fragment, NUL
//!   and control characters (raw or encoded), raw non-ASCII, encoded bytes that are not valid UTF-8
//!   (overlong forms such as `%C0%AF` for `/`, surrogates, stray continuation bytes, truncated
//!   sequences: a lenient decoder reads some of them as `/` or `.`), a target that is not
//!   origin-form.
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
    /// `;`, `?` or `#` percent-encoded in the path.
    #[error("encoded `;`, `?` or `#` in path")]
    EncodedDelimiter,
    /// Percent-encoded bytes that are not valid UTF-8 (overlong, surrogate, truncated).
    #[error("encoded bytes that are not valid utf-8")]
    BadUtf8,
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

/// The byte encoded as `%XX` at `bytes[i..i + 3]`.
fn decode_at(bytes: &[u8], i: usize) -> Result<u8, PathError> {
    match (
        bytes.get(i + 1).copied().and_then(hex),
        bytes.get(i + 2).copied().and_then(hex),
    ) {
        (Some(h), Some(l)) => Ok(h * 16 + l),
        _ => Err(PathError::BadEncoding),
    }
}

fn push_encoded(out: &mut String, d: u8) {
    out.push('%');
    out.push_str(&format!("{d:02X}"));
}

/// Ends a run of encoded bytes above 0x7f: strict UTF-8 (no overlong form, surrogate or
/// truncated sequence), kept encoded. Raw ASCII never continues a sequence, so a run is whole.
fn end_run(high: &mut Vec<u8>, out: &mut String) -> Result<(), PathError> {
    if high.is_empty() {
        return Ok(());
    }
    std::str::from_utf8(high).map_err(|_| PathError::BadUtf8)?;
    for d in high.drain(..) {
        push_encoded(out, d);
    }
    Ok(())
}

/// Normalizes an origin-form request target (`/path?query`); see the module docs for the rules.
pub fn normalize_path(target: &str) -> Result<NormalizedPath, PathError> {
    normalize(target, true)
}

/// Checks that `target` normalizes, without keeping the result: for a framing check that reads
/// every request's target before the pipeline normalizes it.
pub(crate) fn check_path(target: &str) -> Result<(), PathError> {
    let (raw_path, query) = split_target(target)?;
    if is_normal(raw_path) {
        return Ok(());
    }
    normalize_in_full(raw_path, query).map(drop)
}

/// A path that is its own normalized form: `/` then segments of the bytes kept as they are (no
/// `%`, `\`, `;`, `#`, control or non-ASCII), none `.` or `..`, none empty but the last (a
/// trailing `/`). Most requests' paths are, and take this one pass with no allocation.
fn is_normal(raw_path: &str) -> bool {
    let Some(rest) = raw_path.strip_prefix('/') else {
        return false;
    };
    if !rest
        .bytes()
        .all(|b| matches!(b, 0x21..=0x7e) && !matches!(b, b'%' | b'\\' | b';' | b'#'))
    {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// The path and the query of an origin-form target, the query checked.
fn split_target(target: &str) -> Result<(&str, Option<&str>), PathError> {
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
    Ok((raw_path, query))
}

/// [`normalize_path`], with (`fast`) or without the one-pass check for a path that is
/// already normal; the fuzz target compares the two.
pub(crate) fn normalize(target: &str, fast: bool) -> Result<NormalizedPath, PathError> {
    let (raw_path, query) = split_target(target)?;
    if fast && is_normal(raw_path) {
        return Ok(NormalizedPath {
            path: raw_path.to_owned(),
            query: query.map(str::to_owned),
        });
    }
    normalize_in_full(raw_path, query)
}

fn normalize_in_full(raw_path: &str, query: Option<&str>) -> Result<NormalizedPath, PathError> {
    if !raw_path.starts_with('/') {
        return Err(PathError::NotOrigin);
    }
    // First pass: decode unreserved bytes once, keep the rest encoded, refuse the dangerous ones.
    let bytes = raw_path.as_bytes();
    let mut decoded = String::with_capacity(raw_path.len());
    // A run of encoded bytes above 0x7f, checked as UTF-8 when it ends.
    let mut high: Vec<u8> = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let d = match b {
            b'%' => Some(decode_at(bytes, i)?),
            _ => None,
        };
        if !matches!(d, Some(0x80..)) {
            end_run(&mut high, &mut decoded)?;
        }
        match (b, d) {
            (_, Some(d)) => {
                match d {
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    b'%' => return Err(PathError::DoubleEncoding),
                    b';' | b'?' | b'#' => return Err(PathError::EncodedDelimiter),
                    0..=0x20 | 0x7f => return Err(PathError::Control),
                    0x80.. => high.push(d),
                    _ if is_unreserved(d) => decoded.push(char::from(d)),
                    _ => push_encoded(&mut decoded, d),
                }
                i += 3;
            }
            (b'\\', None) => return Err(PathError::Backslash),
            (b';', None) => return Err(PathError::Parameter),
            (b'#', None) => return Err(PathError::Fragment),
            (0x21..=0x7e, None) => {
                decoded.push(char::from(b));
                i += 1;
            }
            _ => return Err(PathError::Control),
        }
    }
    end_run(&mut high, &mut decoded)?;
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

    #[test]
    fn refuses_encoded_delimiters_in_any_case() {
        for form in ["%3B", "%3b", "%3F", "%3f", "%23"] {
            for path in [
                format!("/admin{form}"),
                format!("/a{form}b/c"),
                format!("/{form}"),
            ] {
                assert_eq!(n(&path), Err(PathError::EncodedDelimiter), "{path}");
            }
        }
        // In the query they are the application's to read.
        assert_eq!(n("/a?x=%3B%3F%23").unwrap(), "/a?x=%3B%3F%23");
    }

    #[test]
    fn keeps_encoded_utf8_and_refuses_every_invalid_form() {
        assert_eq!(n("/%e6%b3%95/%C3%A9").unwrap(), "/%E6%B3%95/%C3%A9");
        assert_eq!(n("/%F0%9F%98%80").unwrap(), "/%F0%9F%98%80");
        let invalid = [
            "%C0%AF",          // overlong `/`
            "%c0%ae",          // overlong `.`
            "%C1%9C",          // overlong `\`
            "%E0%80%AF",       // three-byte overlong `/`
            "%F0%80%80%AF",    // four-byte overlong `/`
            "%ED%A0%80",       // a surrogate
            "%F4%90%80%80",    // above U+10FFFF
            "%F8%88%80%80%80", // five-byte form
            "%FF",
            "%80",       // a stray continuation byte
            "%C3",       // truncated
            "%E6%B3",    // truncated
            "%C3%A9%A9", // a continuation too many
        ];
        for form in invalid {
            for path in [
                format!("/{form}"),
                format!("/a{form}/b"),
                format!("/a/{form}x"),
            ] {
                assert_eq!(n(&path), Err(PathError::BadUtf8), "{path}");
            }
        }
        // A sequence cut by a raw byte is two truncated runs.
        assert_eq!(n("/%C3x%A9"), Err(PathError::BadUtf8));
    }

    #[test]
    fn the_one_pass_check_agrees_with_the_full_normalization() {
        // every byte that matters at every place, and seeded random targets built of them
        let parts = [
            "/", "//", "/.", "/..", ".", "..", "a", "b.c", "~", "%61", "%2F", "%25", ";", "\\",
            "#", "?", "?x=1", " ", "\u{e9}", "%C3%A9", "-_", "%7e", "",
        ];
        let mut targets: Vec<String> = Vec::new();
        for a in parts {
            for b in parts {
                for c in parts {
                    targets.push(format!("{a}{b}{c}"));
                    targets.push(format!("/{a}{b}/{c}"));
                }
            }
        }
        let mut seed: u64 = 0x7469_616e_7069_6e67;
        for _ in 0..20_000 {
            let mut t = String::from("/");
            for _ in 0..6 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = usize::try_from(seed % parts.len() as u64).unwrap_or(0);
                t.push_str(parts.get(i).copied().unwrap_or(""));
            }
            targets.push(t);
        }
        let mut fast = 0;
        for t in &targets {
            let full = normalize(t, false);
            assert_eq!(normalize_path(t), full, "{t:?}");
            assert_eq!(
                check_path(t),
                full.as_ref().map(drop).map_err(Clone::clone),
                "{t:?}"
            );
            let (raw, query) = t
                .split_once('?')
                .map_or((t.as_str(), None), |(p, q)| (p, Some(q)));
            // a path already normal is kept as it is, whenever the query passes
            if is_normal(raw) && split_target(t).is_ok() {
                fast += 1;
                let p = full.as_ref().map_err(Clone::clone);
                assert_eq!(p.clone().map(NormalizedPath::path), Ok(raw), "{t:?}");
                assert_eq!(p.map(NormalizedPath::query), Ok(query), "{t:?}");
            }
        }
        assert!(
            fast > 1_000,
            "the one-pass check took {fast} of {}",
            targets.len()
        );
    }
}
