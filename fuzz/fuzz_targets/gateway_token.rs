//! `gateway` bearer access tokens: never panic; only the IdP's published keys and algorithms
//! verify, and a certificate-bound token only with its certificate.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_gateway::internal::fuzz_token(data));
