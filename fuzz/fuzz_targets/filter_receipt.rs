//! The `receipt` filter: never panics, never passes on more than the flow allows, passes only a
//! receipt that decodes and re-encodes to the same bytes, and what it accepts passes it again
//! unchanged.
#![no_main]

use tianping_crossdomain::{Filter, FilterInput, Receipt, ReceiptFilter};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let input = FilterInput {
        kind: "receipt",
        schema: None,
        steps: &["validate", "rebuild", "strip-metadata"],
        max_size: 64 * 1024,
        release: true,
    };
    if let Ok(once) = ReceiptFilter::new().run(&input, data) {
        assert!(once.bytes.len() <= 64 * 1024);
        assert_eq!(once.bytes, data);
        let decoded = Receipt::decode(data).ok().and_then(|r| r.encode().ok());
        assert_eq!(decoded.as_deref(), Some(data));
        let twice = ReceiptFilter::new().run(&input, &once.bytes);
        assert_eq!(twice.map(|t| t.bytes).ok().as_ref(), Some(&once.bytes));
    }
});
