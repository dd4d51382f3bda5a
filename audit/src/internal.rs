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
        assert_eq!(b.encode(), data);
        let _ = b.check(&Frontier::new(), None, &b.signer);
    }
    if let Ok(a) = Archive::decode(data) {
        assert_eq!(a.encode(), data);
        let _ = a.check(None, &a.batch.signer);
    }
}
