//! Replays the checked-in `cert_identity` fuzz corpus on stable.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

use std::path::Path;

#[test]
fn cert_identity_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/cert_identity");
    let mut n = 0;
    let mut identities = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        tianping_certs::internal::fuzz_cert_identity(&data);
        identities += usize::from(tianping_certs::identity_of(&data).is_ok());
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
    // The seeds include real certificates, so the fuzzer starts from valid input.
    assert!(
        identities >= 3,
        "only {identities} seeds parse as identities"
    );
}
