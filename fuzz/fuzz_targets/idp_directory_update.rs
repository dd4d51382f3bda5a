//! `idp` directory updates as a receiving IdP reads them: never panic; what the validation
//! accepts is signed by the authority's key, decodes to the same update, carries only what the
//! flow allows (registrations: only `p-` subjects), and applied once, a second apply is a replay.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_idp::internal::fuzz_directory_update(data));
