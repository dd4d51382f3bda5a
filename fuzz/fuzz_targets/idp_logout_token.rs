//! `idp` back-channel logout tokens as a client checks them: never panic; only a token signed
//! with a published algorithm and key, of type `logout+jwt`, with every required claim and no
//! `nonce`, verifies, and it never passes as an ID token or access token.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_idp::internal::fuzz_logout_token(data));
