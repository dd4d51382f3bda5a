//! Placeholder until its crate's parser exists; replaced by the crate's issue.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});
