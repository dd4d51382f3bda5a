//! The `fabric.toml` loader never panics and refuses with a line inside the text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tianping_core::internal::fuzz_fabric(data));
