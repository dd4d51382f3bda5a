//! The `png` and `jpeg` content filters: never panic, never pass on more than the flow allows,
//! and what they accept passes them again unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_crossdomain::internal::fuzz_filter_image(data));
