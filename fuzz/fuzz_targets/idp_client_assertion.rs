//! `idp` client assertions (`private_key_jwt`) and client JWKS: never panic, only a registered
//! key of a published algorithm verifies, and only within the assertion policy.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_idp::fuzz_client_assertion(data));
