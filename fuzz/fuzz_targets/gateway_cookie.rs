//! `gateway` session cookies, as a value and as a `Cookie` header: never panic; what opens
//! reseals and opens again to the same session.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_gateway::internal::fuzz_cookie(data));
