//! `audit` batch decoding: never panics, and what decodes re-encodes the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_audit::internal::fuzz_batch(data));
