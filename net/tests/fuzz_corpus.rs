//! Replays the checked-in fuzz corpora of this crate's targets on stable.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use tianping_core::internal::corpus;

fn replay(target: &str, f: fn(&[u8])) {
    for (_, data) in corpus(target).unwrap() {
        f(&data);
    }
}

#[test]
fn http_head_corpus() {
    replay("http_head", tianping_net::internal::fuzz_http_head);
}

#[test]
fn path_normalize_corpus() {
    replay(
        "path_normalize",
        tianping_net::internal::fuzz_path_normalize,
    );
}

#[test]
fn seeds_cover_both_answers() {
    // The seeds hold accepted and refused inputs, so the fuzzer starts on both sides.
    let results: Vec<bool> = corpus("path_normalize")
        .unwrap()
        .into_iter()
        .map(|(_, data)| tianping_net::normalize_path(&String::from_utf8_lossy(&data)).is_ok())
        .collect();
    assert!(results.contains(&true) && results.contains(&false));
}
