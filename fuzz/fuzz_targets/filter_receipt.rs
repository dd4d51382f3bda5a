//! The `receipt` filter: never panics, never passes on more than the flow allows, passes only a
//! receipt that decodes and re-encodes to the same bytes, and what it accepts passes it again
//! unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| tianping_crossdomain::internal::fuzz_filter_receipt(data)
);
