//! A `policy-update` for zone `internet` judged against the default policy, as the exchange's
//! filter and the receiver's installer judge it: never panics; what passes is LF text that
//! passes again unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tianping_crossdomain::internal::fuzz_policy_update(data);
});
