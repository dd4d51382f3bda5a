//! The `ofd` content filter (with small limits): never panics, never passes on more than the
//! flow allows or an archive with more entries than its limit, and what it accepts passes it
//! again unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_crossdomain::internal::fuzz_filter_ofd(data));
