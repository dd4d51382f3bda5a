//! The policy parser and verifier: any text gets errors with spans or a checked policy, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_policies::internal::fuzz_policy_parse(data));
