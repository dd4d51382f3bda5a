//! `crossdomain` datagram decoding: never panics, what decodes re-encodes the same, and a
//! receiver fed it does not panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_crossdomain::internal::fuzz_datagram(data));
