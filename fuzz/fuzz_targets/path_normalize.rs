//! The path normalizer of `net`: its output is a normalized path (idempotent, no `//`, no dots).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_net::internal::fuzz_path_normalize(data));
