//! `audit` control-socket requests (method, then target): never panics, and what parses is
//! rebuilt into a target that parses the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_audit::internal::fuzz_service_request(data));
