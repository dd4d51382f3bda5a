//! A flow's `max-size SIZE for KIND`: a lower limit for some of its kinds, decided, checked,
//! diffed, and weighed against the memory a node's filters hold (`Checked::warn_memory`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use tianping_core::Role;
use tianping_policies::{
    Checked, Policy, Reason, Severity, Submitter, TransferRequest, check, diff, parse_size,
};

/// Two zones and one flow between them, its body `body`.
fn with_flow(body: &str) -> String {
    format!(
        "levels confidentiality c\nlevels integrity i\n\
         zone a {{\n  confidentiality c\n  integrity i\n  acr clerk >= pwd\n}}\n\
         zone b {{\n  confidentiality c\n  integrity i\n}}\n\
         service s in b\n\
         flow f a -> b {{\n{body}  submitters clerk\n  deliver s\n}}\n"
    )
}

const SIZED: &str =
    "  kinds pdf, mp4, json(form)\n  max-size 1GiB\n  max-size 50MiB for pdf, json(form)\n";

fn policy(text: &str) -> Policy {
    let c = check("p.tp", text);
    assert!(c.is_ok(), "{}", c.render());
    c.into_policy().unwrap()
}

fn transfer(kind: &str, schema: Option<&str>, size: u64) -> TransferRequest {
    TransferRequest {
        kind: kind.into(),
        schema: schema.map(Into::into),
        size,
        submitter: Submitter {
            id: Some("clerk-1".parse().unwrap()),
            roles: vec![Role::Clerk],
            machine: false,
        },
        labels: Vec::new(),
        redacted: false,
        approvals: Vec::new(),
    }
}

#[test]
fn a_kind_is_held_to_its_own_limit_and_the_others_to_the_flows() {
    let p = policy(&with_flow(SIZED));
    let decide = |kind, schema, size| p.decide_transfer("f", &transfer(kind, schema, size)).reason;
    assert_eq!(decide("pdf", None, 50 << 20), Reason::Allowed);
    assert_eq!(
        decide("pdf", None, (50 << 20) + 1),
        Reason::TooLarge { max: 50 << 20 }
    );
    assert_eq!(
        decide("json", Some("form"), (50 << 20) + 1),
        Reason::TooLarge { max: 50 << 20 }
    );
    assert_eq!(decide("mp4", None, 1 << 30), Reason::Allowed);
    assert_eq!(
        decide("mp4", None, (1 << 30) + 1),
        Reason::TooLarge { max: 1 << 30 }
    );
    let f = p.flow("f").unwrap();
    assert_eq!(f.max_size(), 1 << 30);
    assert_eq!(f.max_size_for("pdf", None), Some(50 << 20));
    assert_eq!(f.max_size_for("json", Some("form")), Some(50 << 20));
    assert_eq!(f.max_size_for("mp4", None), Some(1 << 30));
    assert_eq!(f.max_size_for("json", Some("other")), None);
    assert_eq!(f.max_size_for("png", None), None);
}

/// Each mistake an error at the offending word, the policy refused.
#[test]
fn mistakes_are_errors_where_they_are_written() {
    let cases = [
        (
            "  kinds pdf\n  max-size 1MiB\n  max-size 2MiB for pdf\n",
            "`2MiB` is above flow `f`'s own `max-size`",
            "2MiB for",
        ),
        (
            "  kinds pdf\n  max-size 1MiB\n  max-size 1KiB for mp4\n",
            "flow `f` carries no `mp4`",
            "mp4\n",
        ),
        (
            "  kinds pdf, mp4\n  max-size 1MiB\n  max-size 1KiB for pdf\n  max-size 2KiB for mp4, pdf\n",
            "flow `f` limits `pdf` twice",
            "pdf\n  submitters",
        ),
        (
            "  kinds pdf\n  max-size 1MiB\n  max-size 1KiB for docx\n",
            "unknown kind `docx`",
            "docx",
        ),
        (
            "  kinds pdf\n  max-size 1MiB\n  max-size lots for pdf\n",
            "`lots` is not a size",
            "lots",
        ),
        (
            "  kinds json(form)\n  max-size 1MiB\n  max-size 1KiB for json(other)\n",
            "flow `f` carries no `json(other)`",
            "json(other)",
        ),
    ];
    for (body, message, at) in cases {
        let text = with_flow(body);
        let c = check("p.tp", &text);
        assert!(c.policy().is_none(), "{body}");
        let e = c
            .errors()
            .find(|e| e.message == message)
            .unwrap_or_else(|| panic!("{body}: {}", c.render()));
        assert_eq!(e.span.offset, text.find(at).unwrap(), "{message}");
    }
}

#[test]
fn a_diff_shows_a_kinds_limit() {
    let old = policy(&with_flow("  kinds pdf, mp4\n  max-size 1GiB\n"));
    let new = policy(&with_flow(
        "  kinds pdf, mp4\n  max-size 1GiB\n  max-size 50MiB for pdf\n",
    ));
    let d = diff(&old, &new);
    assert_eq!(d.flows_changed.len(), 1);
    assert!(d.to_string().contains("max-size 52428800 for pdf"), "{d}");
    assert_ne!(old.hash(), new.hash());
}

/// The memory a test node's filters hold: a PDF 72 times its length, a video 3 times, JSON
/// not at all (no filter for it).
fn need(kind: &str, size: u64) -> Option<u64> {
    match kind {
        "pdf" => Some(size * 72),
        "mp4" => Some(size * 3),
        _ => None,
    }
}

fn warnings(c: &Checked) -> Vec<(String, usize)> {
    c.problems()
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .map(|p| (p.message.clone(), p.line))
        .collect()
}

#[test]
fn a_limit_a_filter_cannot_hold_is_warned_at_the_line_that_sets_it() {
    let text = with_flow(SIZED);
    let line = |start: &str| {
        text.lines()
            .position(|l| l.starts_with(start))
            .map(|i| i + 1)
            .unwrap()
    };
    let mut c = check("p.tp", &text);
    c.warn_memory(parse_size("4GiB").unwrap(), need);
    let w = warnings(&c);
    // The video at the flow's 1 GiB needs 3 GiB: within 4 GiB; the PDF at 50 MiB 3.5 GiB.
    assert!(w.is_empty(), "{w:?}");

    let mut c = check("p.tp", &text);
    c.warn_memory(parse_size("2GiB").unwrap(), need);
    // In source order: the flow's limit (the video's) comes first.
    assert_eq!(
        warnings(&c),
        vec![
            (
                "flow `f`: a `mp4` of up to 1 GiB needs up to 3 GiB of memory to filter, over \
                 the node's 2 GiB"
                    .to_owned(),
                line("  max-size 1GiB"),
            ),
            (
                "flow `f`: a `pdf` of up to 50 MiB needs up to 3.5 GiB of memory to filter, over \
                 the node's 2 GiB"
                    .to_owned(),
                line("  max-size 50MiB"),
            ),
        ]
    );
    // Still a policy: warnings refuse nothing.
    assert!(c.is_ok() && c.policy().is_some());
    assert!(c.render().contains("lower it with `max-size SIZE for pdf`"));
}
