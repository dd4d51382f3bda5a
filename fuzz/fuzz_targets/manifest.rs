//! `crossdomain` manifest decoding: never panics, and what decodes re-encodes the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_crossdomain::internal::fuzz_manifest(data));
