//! A `trust-bundle` for zone `internet` judged against an installed bundle: never panics; what
//! passes is certificates only, chaining to the installed root, and passes again unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tianping_crossdomain::internal::fuzz_trust_bundle(data);
});
