//! `audit` stored-record decoding (LZ4-packed, plain, archived): never panics, and what opens
//! re-packs to the same entries.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_audit::internal::fuzz_record(data));
