//! `gateway` query strings and form bodies (sign-in callbacks, back-channel logout, approvals,
//! exchange routes): never panic; what decodes, written as a form again, decodes the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tianping_gateway::internal::fuzz_form(data);
});
