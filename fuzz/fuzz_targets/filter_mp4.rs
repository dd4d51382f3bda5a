//! The `mp4` content filter (with small limits): never panics, never passes on more than the
//! flow allows, never on a file with more boxes, tracks or samples than its limits, and what it
//! accepts passes it again unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_crossdomain::internal::fuzz_filter_mp4(data));
