//! Property: for random policies that pass `check`, no sequence of allowed flows carries data out
//! of a sealed zone; and any random policy with a flow out of a sealed zone is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tianping_core::Role;
use tianping_policies::{Approval, Submitter, TransferRequest, check};

#[derive(Debug, Clone)]
struct Spec {
    zones: Vec<(usize, usize, bool)>,
    flows: Vec<(usize, usize)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (2usize..6)
        .prop_flat_map(|n| {
            (
                prop::collection::vec((0usize..3, 0usize..3, prop::bool::weighted(0.3)), n),
                prop::collection::vec((0..n, 0..n), 0..12),
            )
        })
        .prop_map(|(zones, flows)| Spec {
            zones,
            flows: flows.into_iter().filter(|(a, b)| a != b).collect(),
        })
}

fn text(s: &Spec) -> String {
    let mut t =
        String::from("levels confidentiality l0 < l1 < l2\nlevels integrity i0 < i1 < i2\n");
    for (i, (c, g, sealed)) in s.zones.iter().enumerate() {
        t += &format!(
            "zone z{i} {{\n  confidentiality l{c}\n  integrity i{g}\n{}  acr any >= pwd\n}}\nservice s{i} in z{i}\n",
            if *sealed { "  sealed\n" } else { "" }
        );
    }
    for (k, (a, b)) in s.flows.iter().enumerate() {
        t += &format!(
            "flow f{k} z{a} -> z{b} {{\n  kinds pdf\n  max-size 1MiB\n  submitters judge\n  deliver s{b}\n  sanitize validate\n  release {{\n    approvers 1 of judge\n  }}\n}}\n"
        );
    }
    t
}

fn approved_pdf() -> TransferRequest {
    TransferRequest {
        kind: "pdf".into(),
        schema: None,
        size: 100,
        submitter: Submitter {
            id: Some("clerk-1".parse().unwrap()),
            roles: vec![Role::Judge],
            machine: false,
        },
        labels: Vec::new(),
        redacted: true,
        approvals: vec![Approval {
            by: "judge-2".parse().unwrap(),
            role: Role::Judge,
        }],
    }
}

#[test]
fn no_allowed_chain_leaves_a_sealed_zone() {
    let config = Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let passed = std::cell::Cell::new(0u32);
    let refused = std::cell::Cell::new(0u32);
    runner
        .run(&spec(), |s| {
            let src = text(&s);
            let leaks = s.flows.iter().any(|(a, _)| s.zones[*a].2);
            let c = check("gen.tp", &src);
            match c.policy() {
                None => {
                    // Refused only because of a sealed zone.
                    prop_assert!(leaks, "refused without a leak:\n{}", c.render());
                    prop_assert!(c.errors().all(|e| e.message.contains("out of sealed zone")));
                    refused.set(refused.get() + 1);
                }
                Some(p) => {
                    prop_assert!(!leaks);
                    // Walk the flows the engine allows, from each sealed zone.
                    let t = approved_pdf();
                    for (z, (_, _, sealed)) in s.zones.iter().enumerate() {
                        if !sealed {
                            continue;
                        }
                        let mut reached = BTreeSet::from([format!("z{z}")]);
                        loop {
                            let before = reached.len();
                            for f in p.flows() {
                                if reached.contains(f.from().as_str())
                                    && p.decide_transfer(f.name(), &t).is_allow()
                                {
                                    reached.insert(f.to().to_string());
                                }
                            }
                            if reached.len() == before {
                                break;
                            }
                        }
                        prop_assert_eq!(reached.len(), 1, "data left z{}", z);
                        for other in 0..s.zones.len() {
                            let (from, to) = (format!("z{z}"), format!("z{other}"));
                            prop_assert!(p.flow_path(&from, &to).is_none());
                        }
                    }
                    passed.set(passed.get() + 1);
                }
            }
            Ok(())
        })
        .unwrap();
    // Both sides of the property were exercised.
    let (passed, refused) = (passed.get(), refused.get());
    assert!(
        passed > 50 && refused > 50,
        "passed {passed}, refused {refused}"
    );
}
