//! Replays the checked-in fuzz corpora of this crate's targets on stable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

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
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/path_normalize");
    let results: Vec<bool> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let s = std::fs::read_to_string(e.unwrap().path()).unwrap();
            tianping_net::normalize_path(&s).is_ok()
        })
        .collect();
    assert!(results.contains(&true) && results.contains(&false));
}
