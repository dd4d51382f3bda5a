//! Replays the checked-in `cert_identity` and `component_token` fuzz corpora on stable.

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

#[test]
fn component_token_corpus() {
    let mut accepted = Vec::new();
    for (name, data) in tianping_core::internal::corpus("component_token").unwrap() {
        if tianping_certs::internal::fuzz_component_token(&data) > 0 {
            accepted.push(name.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    accepted.sort();
    // One valid seed of each kind (and the bearer form), so the fuzzer starts past the
    // signature; the other-zone, expired, other-audience and `alg` seeds are refused.
    assert_eq!(accepted, ["delivery", "node", "node-bearer", "user"]);
}
