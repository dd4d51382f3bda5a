//! A `crl` judged against an installed trust bundle: never panics; what passes is one list
//! signed by a zone's CA, still current, and passes again unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tianping_crossdomain::internal::fuzz_crl(data);
});
