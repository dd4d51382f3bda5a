//! Every `core` parser of outside text: identifiers, levels, keys and signatures.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_core::internal::fuzz_ids(data));
