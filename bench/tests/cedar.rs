//! The Cedar translation, built on the public API, gives the text the engine's own translation
//! gave before it moved here (saved in `cedar_default.txt`), and the generated policy's
//! translation has one `permit` per route and flow.

use tianping_bench::{cedar_policies, generated_policy};
use tianping_policies::{DEFAULT_POLICY, check};

#[test]
fn default_policy_translates_as_before() {
    let p = check("default.tp", DEFAULT_POLICY).into_policy().unwrap();
    assert_eq!(cedar_policies(&p), include_str!("cedar_default.txt"));
}

#[test]
fn generated_policy_has_a_permit_per_route_and_flow() {
    let p = check("gen.tp", &generated_policy(10, 1000, 200))
        .into_policy()
        .unwrap();
    let text = cedar_policies(&p);
    assert_eq!(text.matches("@id(\"route:").count(), 1000);
    assert_eq!(text.matches("@id(\"flow:").count(), 200);
}
