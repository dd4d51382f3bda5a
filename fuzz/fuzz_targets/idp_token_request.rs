//! `idp` token request parsing: never panics, never accepts credentials sent two ways.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_idp::internal::fuzz_token_request(data));
