//! `application/x-www-form-urlencoded`: the query strings and form bodies the gateway reads from
//! browsers and the IdP (sign-in callbacks, back-channel logout, approvals, exchange routes),
//! decoded without I/O (a fuzz target, `gateway_form`, runs over it), and the forms it writes.

use std::collections::HashMap;

/// `application/x-www-form-urlencoded` of `pairs`.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// Percent-encodes everything but the unreserved characters.
pub(crate) fn encode(s: &str) -> String {
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

/// The pairs of a query string or form body, decoded (`+` is a space).
pub(crate) fn decode_pairs(s: &str) -> HashMap<String, String> {
    decode_list(s).into_iter().collect()
}

/// [`decode_pairs`] in order, a name repeated as often as it comes.
pub(crate) fn decode_list(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// A path segment percent-decoded (`+` is itself there); `None` when it is not UTF-8 or an
/// escape is cut. (The server's transfer paths; the fuzz build has no server.)
#[cfg(any(feature = "server", test))]
pub(crate) fn decode_segment(s: &str) -> Option<String> {
    unescape(s, false)
}

fn decode(s: &str) -> Option<String> {
    unescape(s, true)
}

fn unescape(s: &str, plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_decode_without_the_form_plus() {
        assert_eq!(
            decode_segment("private%3A23").as_deref(),
            Some("private:23")
        );
        assert_eq!(decode_segment("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_segment("cut%3"), None);
        assert_eq!(decode_segment("%FF"), None);
    }

    #[test]
    fn forms_encode_and_decode_both_ways() {
        let pairs = [("a b", "c&d=e"), ("k", "π/✓"), ("", "")];
        let text = form(&pairs);
        assert_eq!(text, "a%20b=c%26d%3De&k=%CF%80%2F%E2%9C%93&=");
        let back = decode_list(&text);
        assert_eq!(
            back,
            vec![
                ("a b".to_owned(), "c&d=e".to_owned()),
                ("k".to_owned(), "π/✓".to_owned()),
                (String::new(), String::new()),
            ]
        );
        // `+` is a space; a broken escape or bytes that are not UTF-8 drop the pair
        let d = decode_list("x=1+2&bad=%G1&cut=%4&latin=%E9&y");
        assert_eq!(
            d,
            vec![
                ("x".to_owned(), "1 2".to_owned()),
                ("y".to_owned(), String::new())
            ]
        );
        assert_eq!(decode_pairs("x=1&x=2").len(), 1);
    }
}
