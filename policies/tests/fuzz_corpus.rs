//! Replays the checked-in corpus of the `policy_parse` fuzz target on stable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use tianping_core::internal::{corpus, corpus_dir};

#[test]
fn policy_parse_corpus() {
    for (_, data) in corpus("policy_parse").unwrap() {
        tianping_policies::internal::fuzz_policy_parse(&data);
    }
}

#[test]
fn default_policy_seed_is_current() {
    let seed = std::fs::read_to_string(corpus_dir("policy_parse").join("default.tp")).unwrap();
    assert_eq!(seed, tianping_policies::DEFAULT_POLICY);
}
