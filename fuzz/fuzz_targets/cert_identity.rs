//! `identity_of`, the PEM reader and the trust-bundle and CRL loaders over any bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_certs::internal::fuzz_cert_identity(data));
