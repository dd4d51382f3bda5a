//! `idp` incoming JWTs: never panic, only published algorithms and keys verify.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_idp::internal::fuzz_jwt(data));
