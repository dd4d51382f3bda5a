//! Entry points for the fuzz targets, shared with the test that replays their corpus on stable.

use crate::check::check;
use crate::engine::{Subject, TransferRequest};
use tianping_core::UnixTime;

/// The parser and the verifier on any bytes: never panics; every problem points inside the text;
/// a policy that checks answers a few decisions and its own diff is empty.
pub fn fuzz_policy_parse(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let c = check("fuzz.tp", s);
    for p in c.problems() {
        assert!(p.span.offset <= s.len(), "span past the end");
        assert!(p.line >= 1 && p.column >= 1);
    }
    let _ = c.render();
    if let Some(p) = c.policy() {
        assert!(c.is_ok());
        assert!(crate::diff(p, p).is_empty());
        let _ = p.to_dot();
        let subject = Subject::new(&[tianping_core::Role::Judge]);
        for z in p.zones() {
            let _ = p.decide_request(z.as_str(), &subject, "GET", "/a/b", UnixTime::from_secs(0));
        }
        let t = TransferRequest {
            kind: "pdf".into(),
            schema: None,
            size: 1,
            submitter: Default::default(),
            labels: Vec::new(),
            redacted: false,
            approvals: Vec::new(),
        };
        for f in p.flows() {
            let d = p.decide_transfer(f.name(), &t);
            assert!(!d.is_allow() || !p.is_sealed(f.from().as_str()));
        }
    }
}
