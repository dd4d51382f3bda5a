#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use tianping_policies::{DEFAULT_POLICY, check};

#[test]
fn default_policy_checks_clean() {
    let c = check("default.tp", DEFAULT_POLICY);
    assert!(c.problems().is_empty(), "{}", c.render());
    assert!(c.tests().len() >= 20);
    assert!(c.tests().iter().all(|t| t.passed));
}
