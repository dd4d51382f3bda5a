//! The `pdf` content filter (with small limits): never panics, never passes on more than the
//! flow allows, and what it accepts passes it again unchanged.
#![no_main]

use tianping_crossdomain::{Filter, FilterInput, PdfFilter, PdfLimits};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let filter = PdfFilter::new(PdfLimits {
        max_objects: 2_000,
        max_pages: 50,
        max_depth: 16,
        max_stream: 1 << 20,
        max_ratio: 64,
    });
    let input = FilterInput {
        kind: "pdf",
        schema: None,
        steps: &["validate", "rebuild", "strip-metadata"],
        max_size: 1 << 20,
        release: true,
    };
    if let Ok(once) = filter.run(&input, data) {
        assert!(once.bytes.len() <= 1 << 20);
        let twice = filter.run(&input, &once.bytes);
        assert_eq!(twice.map(|t| t.bytes).ok().as_ref(), Some(&once.bytes));
    }
});
