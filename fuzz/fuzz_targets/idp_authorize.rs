//! `idp` authorization request parsing: never panics, never redirects to an unregistered URI.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_idp::internal::fuzz_authorize(data));
