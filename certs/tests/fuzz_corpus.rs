//! Replays the checked-in `cert_identity` fuzz corpus on stable.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

#[test]
fn cert_identity_corpus() {
    let mut identities = 0;
    for (_, data) in tianping_core::internal::corpus("cert_identity").unwrap() {
        tianping_certs::internal::fuzz_cert_identity(&data);
        identities += usize::from(tianping_certs::identity_of(&data).is_ok());
    }
    // The seeds include real certificates, so the fuzzer starts from valid input.
    assert!(
        identities >= 3,
        "only {identities} seeds parse as identities"
    );
}
