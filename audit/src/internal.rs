//! Entry points for the fuzz targets, shared with the tests that replay their corpora on stable.

use crate::{Archive, AuditBatch, Event, Frontier, SignedCheckpoint};

/// Event decoding: never panics; whatever decodes re-encodes to the same bytes.
pub fn fuzz_event(data: &[u8]) {
    assert_eq!(Event::validate(data).is_ok(), Event::decode(data).is_ok());
    if let Ok(e) = Event::decode(data) {
        assert_eq!(e.encode(), data);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(e) = serde_json::from_str::<Event>(s) {
            assert_eq!(Event::decode(&e.encode()).ok(), Some(e));
        }
    }
}

/// Checkpoint note parsing: never panics; a parsed checkpoint's body re-parses the same.
pub fn fuzz_checkpoint(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = SignedCheckpoint::parse_unverified(s) {
        let again = format!("{}\n\u{2014} k AAAAAAA=\n", c.body());
        assert_eq!(SignedCheckpoint::parse_unverified(&again).ok(), Some(c));
    }
}

/// Batch and archive decoding: never panics; a decoded batch or archive re-encodes to the same
/// bytes, and checking it (against an empty mirror, or on its own) never panics.
pub fn fuzz_batch(data: &[u8]) {
    if let Ok(b) = AuditBatch::decode(data) {
        assert_eq!(b.encode().ok().as_deref(), Some(data));
        let _ = b.check(&Frontier::new(), None, &b.signer);
    }
    if let Ok(a) = Archive::decode(data) {
        assert_eq!(a.encode().ok().as_deref(), Some(data));
        let _ = a.check(None, &a.batch.signer);
    }
}

/// Stored record decoding (packed, plain and archived): never panics, never allocates more
/// than the record's own limit, and a record that opens re-packs to one that opens to the same
/// entries.
pub fn fuzz_record(data: &[u8]) {
    let Ok(opened) = crate::record::open(data, true) else {
        return;
    };
    let Ok(entries) = opened.entries() else {
        return;
    };
    assert_eq!(entries.len(), opened.len());
    if opened.is_archived() {
        return;
    }
    let swapped: Vec<(&[u8], crate::Hash)> = entries.iter().map(|(h, b)| (*b, *h)).collect();
    let again = crate::record::encode(&swapped);
    let reopened = crate::record::open(&again, true).map(|o| {
        o.entries().map(|e| {
            e.into_iter()
                .map(|(h, b)| (h, b.to_vec()))
                .collect::<Vec<_>>()
        })
    });
    let want: Vec<_> = entries.iter().map(|(h, b)| (*h, b.to_vec())).collect();
    assert_eq!(reopened, Ok(Ok(want)));
}

/// A packed record of `entries` (canonical bytes, leaf hash), as the store writes it: for
/// seeding the record fuzz target.
pub fn packed_record(entries: &[(Vec<u8>, crate::Hash)]) -> Vec<u8> {
    crate::record::encode(entries)
}

/// Control-socket request parsing (method on the first line, target after it): never panics,
/// and a request that parses is rebuilt by [`Request::target`](crate::service::Request::target)
/// into a target that parses to the same request.
pub fn fuzz_service_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, target) = text.split_once('\n').unwrap_or(("GET", text));
    if let Ok(req) = crate::service::Request::parse(method, target) {
        let again = crate::service::Request::parse(req.method(), &req.target());
        assert_eq!(again.ok(), Some(req));
    }
}
