//! Replays the checked-in fuzz corpora of this crate's targets on stable.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        f(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}

#[test]
fn core_ids_corpus() {
    replay("core_ids", tianping_core::internal::fuzz_ids);
}

#[test]
fn fabric_corpus() {
    replay("fabric", tianping_core::internal::fuzz_fabric);
}

#[test]
fn default_fabric_seed_is_current() {
    // The seed is the default text, so the fuzzer starts from a valid file.
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/fabric/default.toml"),
    )
    .unwrap();
    assert!(tianping_core::Fabric::parse(&seed).is_ok());
}
