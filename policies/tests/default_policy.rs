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

#[test]
fn default_policy_marks_secret_and_ships_its_schemas() {
    use tianping_policies::{DEFAULT_SCHEMAS, Kind};
    let p = check("default.tp", DEFAULT_POLICY).into_policy().unwrap();
    let words = p.marking_words("secret");
    for w in ["秘密", "机密", "绝密", "秘密★", "机密★", "绝密★"] {
        assert!(words.iter().any(|x| x == w), "{w}");
    }
    let release = p.flow("service-of-documents").unwrap();
    assert!(release.refused_markings().any(|(l, _)| l == "secret"));
    // Every `json(NAME)` of the default policy has its schema, and every schema shipped is used.
    let mut named: Vec<&str> = p
        .flows()
        .flat_map(|f| f.kinds().collect::<Vec<_>>())
        .filter(|(k, _)| *k == Kind::Json)
        .filter_map(|(_, s)| s)
        .collect();
    named.sort_unstable();
    named.dedup();
    let shipped: Vec<&str> = DEFAULT_SCHEMAS.iter().map(|(n, _)| *n).collect();
    assert_eq!(named, shipped);
    for (name, text) in DEFAULT_SCHEMAS {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["title"], name, "{name}");
        assert_eq!(v["additionalProperties"], false, "{name}");
    }
}
