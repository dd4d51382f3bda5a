//! The receiving zone's decision on a complete, signature-checked bundle: its own policy copy,
//! the replay record, approvals counted again, and its own filter reproducing the signed bytes.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::Arc;

use tianping_core::{Algorithm, PolicyHash, RingSigner, Role, UnixTime, ZoneName};
use tianping_crossdomain::{
    BundleHeader, ChunkHasher, Filter, FilterInput, Filtered, Filters, Inbound, InboundRefusal,
    Manifest, MemoryBound, Refusal, Step, StepState, Submitter, transfer_id,
};
use tianping_policies::{Approval, DEFAULT_POLICY, FlowInfo, Policy};

/// A filter that passes well-formed bytes unchanged (as a rebuild of an already rebuilt copy
/// does), or upper-cases them (a filter the sender's copy did not pass through), refusing `!`.
#[derive(Debug)]
struct Test {
    kind: &'static str,
    upper: bool,
    /// Whether it reports the payload as the content's text (for the marking check).
    text: bool,
}

impl Filter for Test {
    fn kind(&self) -> &str {
        self.kind
    }
    fn memory(&self) -> MemoryBound {
        MemoryBound::Proportional(1)
    }
    fn run(&self, _: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        if bytes.contains(&b'!') {
            return Err(Refusal::new(self.kind, "the payload holds a `!`"));
        }
        let steps = ["validate", "rebuild", "strip-metadata"]
            .into_iter()
            .map(|s| Step::new(s, StepState::Done))
            .collect();
        Ok(Filtered {
            bytes: if self.upper {
                bytes.to_ascii_uppercase()
            } else {
                bytes.to_vec()
            },
            steps,
            text: if self.text {
                vec![String::from_utf8_lossy(bytes).into_owned()]
            } else {
                Vec::new()
            },
        })
    }
}

fn filters() -> Filters {
    let mut f = Filters::new();
    f.register(Arc::new(Test {
        kind: "pdf",
        upper: false,
        text: false,
    }));
    f.register(Arc::new(Test {
        kind: "text",
        upper: true,
        text: false,
    }));
    f.register(Arc::new(Test {
        kind: "ofd",
        upper: false,
        text: true,
    }));
    f
}

fn policy(source: &str) -> Policy {
    tianping_policies::check("policy.tp", source)
        .into_policy()
        .unwrap()
}

fn zone(z: &str) -> ZoneName {
    z.parse().unwrap()
}

fn filing() -> Manifest {
    Manifest {
        flow: "online-filing".into(),
        source: zone("internet"),
        destination: zone("private"),
        kind: "pdf".into(),
        content_type: "application/pdf".into(),
        schema: None,
        size: 0,
        chunk_size: 4096,
        chunks_hash: [0; 32],
        submitter: Submitter {
            subject: "p-lawyer-0042".parse().unwrap(),
            roles: vec![Role::Lawyer],
            machine: false,
        },
        labels: vec![],
        redacted: false,
        correlation: None,
        time: UnixTime::from_millis(1_764_000_000_000),
        sequence: 42,
        policy_hash: PolicyHash::of(b"p"),
    }
}

fn header(mut m: Manifest, payload: &[u8]) -> BundleHeader {
    let signer = RingSigner::generate(Algorithm::Ed25519).unwrap().0;
    let mut h = ChunkHasher::new(m.chunk_size).unwrap();
    h.update(payload);
    let (size, table) = h.finish();
    m.size = size;
    BundleHeader::sign(
        m,
        vec![b"statement".to_vec()],
        table,
        b"der".to_vec(),
        &signer,
    )
    .unwrap()
}

fn no_approvals(_: &BundleHeader, _: &FlowInfo<'_>) -> Result<Vec<Approval>, String> {
    Ok(Vec::new())
}

fn decide(
    policy: &Policy,
    at: &str,
    h: &BundleHeader,
    payload: &[u8],
    replayed: bool,
) -> Result<tianping_crossdomain::Accepted, InboundRefusal> {
    let (z, f) = (zone(at), filters());
    let inbound = Inbound {
        zone: &z,
        policy,
        filters: &f,
    };
    inbound.decide(h, payload, replayed, &no_approvals)
}

#[test]
fn a_filing_the_receiving_policy_allows_is_accepted_for_its_service() {
    let p = policy(DEFAULT_POLICY);
    let payload = b"%PDF-1.7 a statement of claim";
    let h = header(filing(), payload);
    let got = decide(&p, "private", &h, payload, false).unwrap();
    assert_eq!(got.transfer_id, "internet:42");
    assert_eq!(transfer_id(&h), "internet:42");
    assert_eq!(got.flow, "online-filing");
    assert_eq!(got.service, "filing-intake");
    assert_eq!(got.reply.as_deref(), Some("filing-receipt"));
}

#[test]
fn the_flow_must_exist_and_arrive_in_this_zone_from_the_source() {
    let p = policy(DEFAULT_POLICY);
    let payload = b"%PDF-1.7";
    let h = header(filing(), payload);
    assert_eq!(
        decide(&p, "external", &h, payload, false),
        Err(InboundRefusal::Destination(zone("private")))
    );

    let mut m = filing();
    m.flow = "evidence".into();
    let h = header(m, payload);
    assert_eq!(
        decide(&p, "private", &h, payload, false),
        Err(InboundRefusal::UnknownFlow("evidence".into()))
    );

    // a flow of the policy, but one that runs the other way
    let mut m = filing();
    m.flow = "filing-receipt".into();
    let h = header(m, payload);
    assert!(matches!(
        decide(&p, "private", &h, payload, false),
        Err(InboundRefusal::Direction { .. })
    ));

    // a flow into this zone, but from another source
    let mut m = filing();
    m.source = zone("mobile");
    let h = header(m, payload);
    assert!(matches!(
        decide(&p, "private", &h, payload, false),
        Err(InboundRefusal::Direction { .. })
    ));
}

#[test]
fn a_replayed_bundle_is_refused() {
    let p = policy(DEFAULT_POLICY);
    let payload = b"%PDF-1.7";
    let h = header(filing(), payload);
    assert_eq!(
        decide(&p, "private", &h, payload, true),
        Err(InboundRefusal::Replayed("internet:42".into()))
    );
}

#[test]
fn the_receiving_policy_decides_kind_submitter_and_size() {
    let p = policy(DEFAULT_POLICY);
    let payload = b"plain words";
    let mut m = filing();
    m.kind = "text".into();
    let h = header(m, payload);
    let kind = decide(&p, "private", &h, payload, false);
    assert!(
        matches!(&kind, Err(InboundRefusal::Denied(r)) if r.contains("kind")),
        "{kind:?}"
    );

    let mut m = filing();
    m.submitter.roles = vec![Role::Judge];
    let h = header(m, b"%PDF");
    let who = decide(&p, "private", &h, b"%PDF", false);
    assert!(
        matches!(&who, Err(InboundRefusal::Denied(r)) if r.contains("submitter")),
        "{who:?}"
    );
}

#[test]
fn a_receiving_policy_copy_that_differs_refuses_what_the_sender_allowed() {
    // the receiving zone's copy carries pdf no more on the flow
    let changed = DEFAULT_POLICY
        .replacen(
            "kinds json(filing-form), pdf, png, jpeg, mp4",
            "kinds json(filing-form), png, jpeg, mp4",
            1,
        )
        .replacen("  max-size 50MiB for pdf\n", "", 1)
        .replacen(
            "test transfer online-filing kind pdf size 10MiB by lawyer expect allow\n",
            "",
            1,
        );
    assert_ne!(changed, DEFAULT_POLICY);
    let p = policy(&changed);
    let payload = b"%PDF-1.7";
    let h = header(filing(), payload);
    assert!(decide(&policy(DEFAULT_POLICY), "private", &h, payload, false).is_ok());
    assert!(matches!(
        decide(&p, "private", &h, payload, false),
        Err(InboundRefusal::Denied(_))
    ));
}

#[test]
fn its_own_filter_must_reproduce_the_signed_bytes() {
    let p = policy(DEFAULT_POLICY);
    let h = header(filing(), b"%PDF with a !");
    assert!(matches!(
        decide(&p, "private", &h, b"%PDF with a !", false),
        Err(InboundRefusal::Filter(_))
    ));

    // judgment publication carries text, whose filter here rebuilds lowercase into uppercase
    let mut m = filing();
    m.flow = "judgment-publication".into();
    m.source = zone("private");
    m.destination = zone("internet");
    m.kind = "text".into();
    m.redacted = true;
    m.submitter.roles = vec![Role::Clerk];
    let judges = |_: &BundleHeader, _: &FlowInfo<'_>| {
        Ok(vec![
            Approval {
                by: "p-judge-1".parse().unwrap(),
                role: Role::Judge,
            },
            Approval {
                by: "p-judge-2".parse().unwrap(),
                role: Role::Judge,
            },
        ])
    };
    let (z, f) = (zone("internet"), filters());
    let inbound = Inbound {
        zone: &z,
        policy: &p,
        filters: &f,
    };
    let h = header(m.clone(), b"the judgment");
    assert!(matches!(
        inbound.decide(&h, b"the judgment", false, &judges),
        Err(InboundRefusal::NotReproduced { .. })
    ));
    let h = header(m.clone(), b"THE JUDGMENT");
    let ok = inbound.decide(&h, b"THE JUDGMENT", false, &judges).unwrap();
    assert_eq!(ok.approvals.len(), 2);
    assert_eq!(ok.service, "judgment-portal");

    // a kind no filter rebuilds here
    let mut m = filing();
    m.kind = "png".into();
    let h = header(m, b"\x89PNG");
    let none = decide(&p, "private", &h, b"\x89PNG", false);
    assert!(
        matches!(&none, Err(InboundRefusal::Filter(r)) if r.filter == "filters"),
        "{none:?}"
    );
}

#[test]
fn approvals_are_counted_again() {
    let p = policy(DEFAULT_POLICY);
    let mut m = filing();
    m.flow = "judgment-publication".into();
    m.source = zone("private");
    m.destination = zone("internet");
    m.kind = "text".into();
    m.redacted = true;
    m.submitter.roles = vec![Role::Clerk];
    let h = header(m, b"THE JUDGMENT");
    let (z, f) = (zone("internet"), filters());
    let inbound = Inbound {
        zone: &z,
        policy: &p,
        filters: &f,
    };
    let one = |_: &BundleHeader, _: &FlowInfo<'_>| {
        Ok(vec![Approval {
            by: "p-judge-1".parse().unwrap(),
            role: Role::Judge,
        }])
    };
    let few = inbound.decide(&h, b"THE JUDGMENT", false, &one);
    assert!(
        matches!(&few, Err(InboundRefusal::Denied(r)) if r.contains("2 approvers")),
        "{few:?}"
    );
    let bad = |_: &BundleHeader, _: &FlowInfo<'_>| Err("a statement does not verify".to_owned());
    assert_eq!(
        inbound.decide(&h, b"THE JUDGMENT", false, &bad),
        Err(InboundRefusal::Approvals(
            "a statement does not verify".into()
        ))
    );
    // the flow without a release does not ask for approvals
    let h = header(filing(), b"%PDF");
    let pdf = Inbound {
        zone: &zone("private"),
        policy: &p,
        filters: &f,
    }
    .decide(&h, b"%PDF", false, &bad);
    assert!(pdf.is_ok(), "{pdf:?}");
}

#[test]
fn a_release_whose_text_carries_a_refused_marking_is_refused_here_too() {
    // the sender checks markings before it bundles; a sending zone whose check was skipped or
    // tampered with still gets nothing released past the receiving zone
    let p = policy(DEFAULT_POLICY);
    let mut m = filing();
    m.flow = "judgment-publication".into();
    m.source = zone("private");
    m.destination = zone("internet");
    m.kind = "ofd".into();
    m.content_type = "application/ofd".into();
    m.redacted = true;
    m.submitter.roles = vec![Role::Clerk];
    let two = |_: &BundleHeader, _: &FlowInfo<'_>| {
        Ok(vec![
            Approval {
                by: "p-judge-1".parse().unwrap(),
                role: Role::Judge,
            },
            Approval {
                by: "p-judge-2".parse().unwrap(),
                role: Role::Judge,
            },
        ])
    };
    let (z, f) = (zone("internet"), filters());
    let inbound = Inbound {
        zone: &z,
        policy: &p,
        filters: &f,
    };
    let clean = "判决书 the judgment".as_bytes();
    let ok = inbound.decide(&header(m.clone(), clean), clean, false, &two);
    assert!(ok.is_ok(), "{ok:?}");
    let marked = "判决书 秘密★ the judgment".as_bytes();
    let refused = inbound.decide(&header(m, marked), marked, false, &two);
    assert!(
        matches!(&refused, Err(InboundRefusal::Filter(r)) if r.to_string().contains("秘密")),
        "{refused:?}"
    );
}
