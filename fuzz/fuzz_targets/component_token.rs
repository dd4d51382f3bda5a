//! An incoming component token (`user`, `delivery`, `node`) against a fixed trust bundle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tianping_certs::internal::fuzz_component_token(data);
});
