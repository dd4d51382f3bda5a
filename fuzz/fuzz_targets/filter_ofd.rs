//! The `ofd` content filter (with small limits): never panics, never passes on more than the
//! flow allows or an archive with more entries than its limit, and what it accepts passes it
//! again unchanged.
#![no_main]

use tianping_crossdomain::{Filter, FilterInput, OfdFilter, OfdLimits};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let filter = OfdFilter::new(OfdLimits {
        max_entries: 64,
        max_entry: 1 << 20,
        max_total: 4 << 20,
        max_ratio: 100,
        max_depth: 32,
    });
    let input = FilterInput {
        kind: "ofd",
        schema: None,
        steps: &["validate", "rebuild", "strip-metadata"],
        max_size: 1 << 20,
        release: true,
    };
    if let Ok(once) = filter.run(&input, data) {
        assert!(once.bytes.len() <= 1 << 20);
        // The central directory's entry count (end of central directory record, bytes 10..12).
        let entries = once
            .bytes
            .len()
            .checked_sub(22)
            .and_then(|at| once.bytes.get(at + 10..at + 12))
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(u16::from_le_bytes);
        assert!(entries.is_some_and(|n| n <= 64));
        let twice = filter.run(&input, &once.bytes);
        assert_eq!(twice.map(|t| t.bytes).ok().as_ref(), Some(&once.bytes));
    }
});
