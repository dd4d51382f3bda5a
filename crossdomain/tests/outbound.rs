//! The sending zone's decision on a submission (pure): each refusal of the default policy and
//! the filters, a release held until its approvals, the rate windows.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::Arc;

use tianping_core::{Role, UnixTime, ZoneName};
use tianping_crossdomain::{
    Filter, FilterInput, Filtered, Filters, MemoryBound, Outbound, OutboundRefusal, Outgoing,
    RateWindow, Refusal, Step, StepState, Submitter, TextFilter, rate_admit,
};
use tianping_policies::{Approval, DEFAULT_POLICY, Policy, Rate, check};

/// Rebuilds ASCII text upper-cased; refuses anything else.
#[derive(Debug)]
struct Shout(&'static str);

impl Filter for Shout {
    fn kind(&self) -> &str {
        self.0
    }
    fn memory(&self) -> MemoryBound {
        MemoryBound::Proportional(1)
    }
    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        if !bytes.is_ascii() {
            return Err(Refusal::new(self.0, "not ASCII"));
        }
        Ok(Filtered {
            bytes: bytes.to_ascii_uppercase(),
            steps: input
                .steps
                .iter()
                .map(|s| Step::new(*s, StepState::Done))
                .collect(),
            text: vec![],
        })
    }
}

fn policy() -> Policy {
    check("default.tp", DEFAULT_POLICY).into_policy().unwrap()
}

fn filters() -> Filters {
    let mut f = Filters::new();
    f.register(Arc::new(Shout("pdf")));
    f
}

fn zone(z: &str) -> ZoneName {
    z.parse().unwrap()
}

fn submission(flow: &str, kind: &str, who: &str, role: Role) -> Outgoing {
    Outgoing {
        flow: flow.into(),
        kind: kind.into(),
        schema: None,
        size: 100,
        submitter: Submitter {
            subject: who.parse().unwrap(),
            roles: vec![role],
            machine: false,
        },
        labels: vec![],
        redacted: false,
        correlation: None,
    }
}

#[test]
fn the_flow_must_exist_and_leave_this_zone() {
    let (p, f) = (policy(), filters());
    let internet = zone("internet");
    let out = Outbound {
        zone: &internet,
        policy: &p,
        filters: &f,
    };
    let s = submission("no-such-flow", "pdf", "p-lawyer-1", Role::Lawyer);
    assert!(matches!(
        out.decide(&s, &[]),
        Err(OutboundRefusal::UnknownFlow(_))
    ));
    let s = submission("service-of-documents", "pdf", "p-lawyer-1", Role::Lawyer);
    let e = out.decide(&s, &[]).unwrap_err();
    assert!(matches!(e, OutboundRefusal::NotFromHere { .. }), "{e}");
    assert_eq!(e.status(), 403);
    let classified = zone("classified");
    let sealed = Outbound {
        zone: &classified,
        policy: &p,
        filters: &f,
    };
    assert!(matches!(
        sealed.decide(&s, &[]),
        Err(OutboundRefusal::Sealed(_))
    ));
}

#[test]
fn kind_size_submitter_and_labels() {
    let (p, f) = (policy(), filters());
    let private = zone("private");
    let out = Outbound {
        zone: &private,
        policy: &p,
        filters: &f,
    };
    let ok = submission("service-of-documents", "pdf", "p-clerk-1", Role::Clerk);
    let d = out.decide(&ok, &[]).unwrap();
    assert!(d.held, "one approval is needed");
    assert_eq!(d.need, 1);
    assert_eq!(d.destination, zone("internet"));
    assert_eq!(d.rule, "service-of-documents");
    assert_eq!(d.rate.unwrap().count, 500);

    let mut s = ok.clone();
    s.kind = "mp4".into();
    let e = out.decide(&s, &[]).unwrap_err();
    assert!(matches!(e, OutboundRefusal::Denied { .. }), "{e}");
    let mut s = ok.clone();
    s.size = 51 * 1024 * 1024;
    let e = out.decide(&s, &[]).unwrap_err();
    assert_eq!(e.status(), 413, "{e}");
    let s = submission("service-of-documents", "pdf", "p-lawyer-1", Role::Lawyer);
    let e = out.decide(&s, &[]).unwrap_err();
    assert!(e.to_string().contains("denies"), "{e}");
    let mut s = ok.clone();
    s.labels = vec!["secret".into()];
    assert!(matches!(
        out.decide(&s, &[]),
        Err(OutboundRefusal::Denied { .. })
    ));

    // an approval by a judge releases it; by the submitter or a clerk it does not
    let judge = Approval {
        by: "p-judge-1".parse().unwrap(),
        role: Role::Judge,
    };
    assert!(!out.decide(&ok, std::slice::from_ref(&judge)).unwrap().held);
    let own = Approval {
        by: "p-clerk-1".parse().unwrap(),
        role: Role::Judge,
    };
    assert!(out.decide(&ok, &[own]).unwrap().held);
}

#[test]
fn redaction_is_demanded_by_the_release() {
    let (p, f) = (policy(), filters());
    let private = zone("private");
    let out = Outbound {
        zone: &private,
        policy: &p,
        filters: &f,
    };
    let mut s = submission("judgment-publication", "pdf", "p-clerk-1", Role::Clerk);
    assert!(matches!(
        out.decide(&s, &[]),
        Err(OutboundRefusal::Denied { .. })
    ));
    s.redacted = true;
    let d = out.decide(&s, &[]).unwrap();
    assert!(d.held);
    assert_eq!(d.need, 2);
}

#[test]
fn a_release_refuses_marked_text_whatever_its_labels() {
    let p = policy();
    let mut f = Filters::new();
    f.register(Arc::new(TextFilter::new()));
    let private = zone("private");
    let out = Outbound {
        zone: &private,
        policy: &p,
        filters: &f,
    };
    let mut s = submission("judgment-publication", "text", "p-clerk-1", Role::Clerk);
    s.redacted = true;
    let clean = out.filter(&s, "判决书（公开版）\n".as_bytes()).unwrap();
    assert!(!clean.bytes.is_empty());
    // 秘密 is a marking of `secret`, which the judgment release refuses; full-width forms fold
    for text in ["附件：秘密\n", "附件：绝密★\n", "ｓｅｃｒｅｔ 秘密\n"] {
        let e = out.filter(&s, text.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("a marking of `secret`"), "{e}");
    }
    // a flow that is no release carries the same words (online filing refuses no label)
    let internet = zone("internet");
    let filing = Outbound {
        zone: &internet,
        policy: &p,
        filters: &f,
    };
    let mut s = submission("online-filing", "text", "p-lawyer-1", Role::Lawyer);
    s.kind = "text".into();
    assert!(
        filing
            .filter(&s, "附件：秘密\n".as_bytes())
            .map_or_else(|e| !e.to_string().contains("marking"), |_| true)
    );
}

#[test]
fn the_filter_rebuilds_or_refuses() {
    let (p, f) = (policy(), filters());
    let internet = zone("internet");
    let out = Outbound {
        zone: &internet,
        policy: &p,
        filters: &f,
    };
    let s = submission("online-filing", "pdf", "p-lawyer-1", Role::Lawyer);
    let d = out.decide(&s, &[]).unwrap();
    assert!(!d.held);
    let done = out.filter(&s, b"a filing").unwrap();
    assert_eq!(done.bytes, b"A FILING");
    let e = out.filter(&s, "起诉状".as_bytes()).unwrap_err();
    assert_eq!(e.status(), 422, "{e}");
    let mut png = s.clone();
    png.kind = "png".into();
    let e = out.filter(&png, b"x").unwrap_err();
    assert!(e.to_string().contains("no filter"), "{e}");
}

#[test]
fn rate_windows_per_submitter() {
    let rate = Rate {
        count: 3,
        per_secs: 3600,
    };
    let mut w = RateWindow::default();
    for i in 0..3 {
        w = rate_admit(rate, w, UnixTime::from_secs(7200 + i)).unwrap();
    }
    assert_eq!(w.count, 3);
    assert_eq!(
        rate_admit(rate, w, UnixTime::from_secs(7200 + 600)),
        Err(3000)
    );
    let next = rate_admit(rate, w, UnixTime::from_secs(10_800)).unwrap();
    assert_eq!(next.count, 1);
}
