//! Entry points for the fuzz targets, shared with the tests that replay their corpora on stable.

use std::sync::Arc;

use tianping_core::UnixTime;

use crate::{BundleHeader, BundleReader, Datagram, Manifest, PinnedKeys, Receiver, ReceiverConfig};

/// Manifest decoding: never panics, and what decodes re-encodes to the same bytes.
pub fn fuzz_manifest(data: &[u8]) {
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode().ok().as_deref(), Some(data));
    }
}

/// Bundle decoding, whole and streamed: never panics; a header that decodes re-encodes to the
/// same bytes; the streaming reader agrees with the whole-header decoder.
pub fn fuzz_bundle(data: &[u8]) {
    let mut r = tianping_core::WireReader::new(data);
    let header = r
        .len32("header", crate::MAX_HEADER)
        .ok()
        .and_then(|n| r.take(n, "header").ok())
        .and_then(|h| BundleHeader::decode(h).ok().map(|d| (d, 4 + h.len())));
    if let Some((h, len)) = &header {
        assert_eq!(h.encode().ok().as_deref(), data.get(..*len));
    }
    let header = header.map(|(h, _)| h);
    let keys: Vec<_> = header.iter().map(|h| h.signer.clone()).collect();
    let mut reader = BundleReader::new(Arc::new(PinnedKeys(keys)), UnixTime::from_millis(0));
    let mut chunks = 0u64;
    for piece in data.chunks(97) {
        if reader
            .push(piece, &mut |v| {
                if let crate::Verified::Chunk { .. } = v {
                    chunks += 1;
                }
                Ok(())
            })
            .is_err()
        {
            return;
        }
    }
    if let Ok(h) = reader.finish() {
        assert_eq!(chunks, h.manifest.chunk_count());
    }
}

/// Datagram decoding: never panics, what decodes re-encodes to the same bytes, and a receiver
/// fed the datagram (twice) does not panic.
pub fn fuzz_datagram(data: &[u8]) {
    if let Ok(d) = Datagram::decode(data) {
        let mut out = Vec::new();
        assert!(d.encode_into(&mut out).is_ok());
        assert_eq!(out, data);
        let link = d.header().link;
        let mut r = Receiver::new(ReceiverConfig::new(link), None);
        let mut events = Vec::new();
        r.receive(data, UnixTime::from_millis(0), &mut events);
        r.receive(data, UnixTime::from_millis(1), &mut events);
        r.poll(UnixTime::from_secs(3600), &mut events);
    }
}
