//! Entry points for the fuzz targets, shared with the tests that replay their corpora on stable.

use crate::head::{ChunkedChecker, Framing, HeadLimits, HeadParser, parse_head};
use crate::path::{check_path, normalize, normalize_path};

/// The strict head parser and, after a head, the chunked-body checker over the rest of the input;
/// panics only when an invariant breaks.
pub fn fuzz_http_head(data: &[u8]) {
    let limits = HeadLimits {
        max_request_line: 512,
        max_headers: 16,
        max_head_bytes: 2048,
        max_body: 1 << 20,
    };
    // Feeding the same bytes in two pieces must give the same answer as feeding them at once.
    let whole = parse_head(data, &limits);
    if let Ok(Some((head, n))) = &whole {
        // A resumed parser, fed a prefix and then all of it, reaches the same head.
        let mut resumed = HeadParser::new(limits.clone());
        let mid = *n / 2;
        let first = resumed.feed(data.get(..mid).unwrap_or_default());
        if let Ok(None) = first {
            assert_eq!(resumed.feed(data).ok().flatten(), Some((head.clone(), *n)));
        }
        assert!(*n <= data.len());
        assert!(head.header_count <= limits.max_headers);
        let prefix = data.get(..*n).unwrap_or_default();
        assert_eq!(
            parse_head(prefix, &limits).ok().flatten(),
            Some((head.clone(), *n))
        );
        if head.framing == Framing::Chunked {
            let body = data.get(*n..).unwrap_or_default();
            let mut one = ChunkedChecker::new(limits.max_body);
            let a = one.feed(body);
            let mut split = ChunkedChecker::new(limits.max_body);
            let mid = body.len() / 2;
            let first = split.feed(body.get(..mid).unwrap_or_default());
            let b = match first {
                Ok(None) => split
                    .feed(body.get(mid..).unwrap_or_default())
                    .map(|r| r.map(|k| k + mid)),
                other => other,
            };
            assert_eq!(a.is_ok(), b.is_ok());
            if let (Ok(x), Ok(y)) = (&a, &b) {
                assert_eq!(x, y);
            }
        }
    }
    if let Ok(None) = whole {
        assert!(data.len() <= limits.max_head_bytes);
    }
}

/// The path normalizer: its output is normalized (idempotent, starts with `/`, no `//`, no dot
/// segments), its one-pass check for a path already normal agrees with the full normalization,
/// and so does the framing check's; panics only when an invariant breaks.
pub fn fuzz_path_normalize(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let result = normalize_path(s);
    assert_eq!(
        result,
        normalize(s, false),
        "the fast path differs for {s:?}"
    );
    assert_eq!(
        check_path(s),
        result.as_ref().map(drop).map_err(Clone::clone)
    );
    if let Ok(p) = result {
        let path = p.path();
        assert!(path.starts_with('/'));
        assert!(!path.contains("//"), "{path}");
        assert!(
            !path.split('/').any(|seg| seg == "." || seg == ".."),
            "{path}"
        );
        let again = normalize_path(&p.path_and_query());
        assert_eq!(
            again.as_ref(),
            Ok(&p),
            "normalized output must be a fixed point"
        );
    }
}
