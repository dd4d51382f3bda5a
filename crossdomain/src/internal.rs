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

/// Runs `filter` over `data` twice: never panics, never passes on more than the flow's size,
/// and what it accepts passes it again unchanged (the receiving side's run must reproduce
/// the sender's bytes).
/// The bytes it passed on, when it accepted them.
fn fuzz_filter(filter: &dyn crate::Filter, schema: Option<&str>, data: &[u8]) -> Option<Vec<u8>> {
    let input = crate::FilterInput {
        kind: filter.kind(),
        schema,
        steps: &["validate", "rebuild", "strip-metadata"],
        max_size: 1 << 20,
        release: true,
    };
    let once = filter.run(&input, data).ok()?;
    assert!(once.bytes.len() <= 1 << 20);
    let twice = filter.run(&input, &once.bytes);
    assert_eq!(twice.map(|t| t.bytes).ok().as_ref(), Some(&once.bytes));
    Some(once.bytes)
}

/// The `text` filter: see [`fuzz_filter`].
pub fn fuzz_filter_text(data: &[u8]) {
    fuzz_filter(&crate::TextFilter::new(), None, data);
}

/// The `json` filter with the default schemas and a permissive one (`any`), the first byte
/// choosing the schema: see [`fuzz_filter`].
pub fn fuzz_filter_json(data: &[u8]) {
    static FILTER: std::sync::OnceLock<Option<crate::JsonFilter>> = std::sync::OnceLock::new();
    let filter = FILTER.get_or_init(|| {
        let mut schemas = std::collections::BTreeMap::new();
        for (name, text) in tianping_policies::DEFAULT_SCHEMAS {
            schemas.insert(name.to_owned(), serde_json::from_str(text).ok()?);
        }
        schemas.insert("any".to_owned(), serde_json::json!({}));
        crate::JsonFilter::new(schemas).ok()
    });
    let Some(filter) = filter else { return };
    let (pick, data) = data.split_first().unwrap_or((&0, data));
    let names: Vec<&str> = filter.schemas().collect();
    let schema = names.get(usize::from(*pick) % names.len().max(1)).copied();
    fuzz_filter(filter, schema, data);
}

/// The `png` and `jpeg` filters with small limits, the first byte choosing (even: PNG, odd:
/// JPEG): see [`fuzz_filter`].
pub fn fuzz_filter_image(data: &[u8]) {
    let limits = crate::ImageLimits {
        max_pixels: 1 << 20,
        max_side: 4096,
        max_ratio: 256,
    };
    match data.split_first() {
        Some((pick, rest)) if pick % 2 == 0 => {
            fuzz_filter(&crate::PngFilter::new(limits), None, rest);
        }
        Some((_, rest)) => {
            fuzz_filter(&crate::JpegFilter::new(limits), None, rest);
        }
        None => {}
    }
}

/// The `pdf` filter with small limits: see [`fuzz_filter`].
pub fn fuzz_filter_pdf(data: &[u8]) {
    let filter = crate::PdfFilter::new(crate::PdfLimits {
        max_objects: 2_000,
        max_pages: 50,
        max_depth: 16,
        max_stream: 1 << 20,
        max_ratio: 64,
    });
    fuzz_filter(&filter, None, data);
}

/// The `ofd` filter with small limits: see [`fuzz_filter`]; what it passes on has no more
/// entries than its limit (the end of central directory record's count).
pub fn fuzz_filter_ofd(data: &[u8]) {
    let filter = crate::OfdFilter::new(crate::OfdLimits {
        max_entries: 64,
        max_entry: 1 << 20,
        max_total: 4 << 20,
        max_ratio: 100,
        max_depth: 32,
    });
    if let Some(out) = fuzz_filter(&filter, None, data) {
        let entries = out
            .len()
            .checked_sub(22)
            .and_then(|at| out.get(at + 10..at + 12))
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(u16::from_le_bytes);
        assert!(entries.is_some_and(|n| n <= 64));
    }
}

/// The `mp4` filter with small limits: see [`fuzz_filter`]; its rebuild never grows past the
/// tables it writes again.
pub fn fuzz_filter_mp4(data: &[u8]) {
    let filter = crate::Mp4Filter::new(crate::Mp4Limits {
        max_depth: 8,
        max_boxes: 1_000,
        max_tracks: 4,
        max_samples: 10_000,
    });
    if let Some(out) = fuzz_filter(&filter, None, data) {
        assert!(
            out.len() <= data.len() + 4096,
            "the rebuild grew past its tables"
        );
    }
}

/// The `receipt` filter: see [`fuzz_filter`]; it passes only a receipt in its canonical
/// encoding, as the bytes that came.
pub fn fuzz_filter_receipt(data: &[u8]) {
    if let Some(out) = fuzz_filter(&crate::ReceiptFilter::new(), None, data) {
        assert_eq!(out, data);
        let again = crate::Receipt::decode(data)
            .ok()
            .and_then(|r| r.encode().ok());
        assert_eq!(again.as_deref(), Some(data));
    }
}

/// The trust bundle the update targets judge against: a root and zone `internet`'s CA, made at
/// [`UPDATE_MADE`]. The seeds in `fuzz/corpus/update_trust_bundle` and `update_crl` are made
/// with its keys (`CROSSDOMAIN_WRITE_UPDATE_SEEDS=1 cargo test -p tianping-crossdomain --test
/// update_corpus` writes both again).
pub const UPDATE_TRUST: &str = include_str!("fuzz_update_trust.pem");
/// When [`UPDATE_TRUST`] was made.
pub const UPDATE_MADE: UnixTime = UnixTime::from_secs(1_800_000_000);
/// The time the update targets judge at: a day after [`UPDATE_TRUST`] was made.
pub const UPDATE_NOW: UnixTime = UnixTime::from_secs(1_800_086_400);

fn internet() -> Option<tianping_core::ZoneName> {
    "internet".parse().ok()
}

/// A `policy-update` for zone `internet`, judged against the default policy: never panics;
/// what it passes on is LF text that passes again unchanged. Returns whether it passed.
pub fn fuzz_policy_update(data: &[u8]) -> bool {
    let Some(zone) = internet() else { return false };
    let policy = tianping_policies::DEFAULT_POLICY;
    let Ok(out) = crate::rebuild_policy_update(&zone, "default.tp", policy, data) else {
        return false;
    };
    assert!(!out.contains(&b'\r'));
    let again = crate::rebuild_policy_update(&zone, "default.tp", policy, &out);
    assert_eq!(again.as_ref(), Ok(&out));
    true
}

/// A `trust-bundle` for zone `internet`, judged against [`UPDATE_TRUST`]: never panics; what
/// it passes on is certificates only, and passes again unchanged. Returns whether it passed.
pub fn fuzz_trust_bundle(data: &[u8]) -> bool {
    let Some(zone) = internet() else { return false };
    let installed = UPDATE_TRUST.as_bytes();
    let Ok(out) = crate::rebuild_trust_bundle(&zone, installed, data) else {
        return false;
    };
    let blocks = std::str::from_utf8(&out)
        .ok()
        .and_then(|t| tianping_core::pem_blocks(t).ok());
    assert!(blocks.is_some_and(|b| !b.is_empty() && b.iter().all(|b| b.label == "CERTIFICATE")));
    let again = crate::rebuild_trust_bundle(&zone, installed, &out);
    assert_eq!(again.as_ref(), Ok(&out));
    true
}

/// A `crl`, judged against [`UPDATE_TRUST`] at [`UPDATE_NOW`]: never panics; what it passes on
/// is one list's PEM, and passes again unchanged. Returns whether it passed.
pub fn fuzz_crl(data: &[u8]) -> bool {
    let installed = UPDATE_TRUST.as_bytes();
    let Ok(out) = crate::rebuild_crl(installed, data, UPDATE_NOW) else {
        return false;
    };
    let again = crate::rebuild_crl(installed, &out, UPDATE_NOW);
    assert_eq!(again.as_ref(), Ok(&out));
    true
}
