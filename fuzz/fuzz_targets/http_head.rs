//! The strict HTTP/1.1 request-head parser and chunked-body checker of `net`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_net::internal::fuzz_http_head(data));
