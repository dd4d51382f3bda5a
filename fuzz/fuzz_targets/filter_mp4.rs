//! The `mp4` content filter (with small limits): never panics, never passes on more than the
//! flow allows, never on a file with more boxes, tracks or samples than its limits, and what it
//! accepts passes it again unchanged.
#![no_main]

use tianping_crossdomain::{Filter, FilterInput, Mp4Filter, Mp4Limits};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let filter = Mp4Filter::new(Mp4Limits {
        max_depth: 8,
        max_boxes: 1_000,
        max_tracks: 4,
        max_samples: 10_000,
    });
    let input = FilterInput {
        kind: "mp4",
        schema: None,
        steps: &["validate", "rebuild", "strip-metadata"],
        max_size: 1 << 20,
        release: true,
    };
    if let Ok(once) = filter.run(&input, data) {
        assert!(once.bytes.len() <= 1 << 20);
        assert!(
            once.bytes.len() <= data.len() + 4096,
            "the rebuild grew past its tables"
        );
        let twice = filter.run(&input, &once.bytes);
        assert_eq!(twice.map(|t| t.bytes).ok().as_ref(), Some(&once.bytes));
    }
});
