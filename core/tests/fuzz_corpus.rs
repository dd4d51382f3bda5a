//! Replays the checked-in fuzz corpora of this crate's targets on stable.

use tianping_core::internal::{corpus, fuzz_fabric, fuzz_ids};

#[test]
fn core_ids_corpus() {
    for (_, data) in corpus("core_ids").unwrap() {
        fuzz_ids(&data);
    }
}

#[test]
fn fabric_corpus() {
    for (_, data) in corpus("fabric").unwrap() {
        fuzz_fabric(&data);
    }
}

#[test]
fn default_fabric_seed_is_current() {
    // The seed is the default text, so the fuzzer starts from a valid file.
    let seed =
        std::fs::read_to_string(tianping_core::internal::corpus_dir("fabric").join("default.toml"))
            .unwrap();
    assert!(tianping_core::Fabric::parse(&seed).is_ok());
    // and the seed of link settings and component bindings loads too
    let seed =
        std::fs::read_to_string(tianping_core::internal::corpus_dir("fabric").join("links.toml"))
            .unwrap();
    let fabric = tianping_core::Fabric::parse(&seed).unwrap();
    assert_eq!(fabric.links()[0].mtu, 9000);
    assert_eq!(fabric.services().len(), 4);
}
