//! Approvals counted against a real zone trust (feature `daemon`): statements signed by a node
//! of the manifest's source zone count; a node of another zone, another transfer, other
//! content, a duplicate, the submitter and a role the flow does not name are each refused.
#![cfg(feature = "daemon")]
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use tianping_certs::{CaCert, CertKind, IssuedCert, KeyAlg, LeafRequest, TrustStore};
use tianping_core::{Algorithm, PolicyHash, RingSigner, Role, SubjectId, UnixTime};
use tianping_crossdomain::{
    ApprovalError, ApprovalStatement, Approving, Manifest, Submitter, ZoneTrust, count_approvals,
    manifest_transfer_id,
};
use tianping_policies::{DEFAULT_POLICY, Policy, TransferRequest, check};

const T0: u64 = 1_800_000_000;

fn now() -> UnixTime {
    UnixTime::from_secs(T0)
}

fn signer_of(cert: &IssuedCert) -> RingSigner {
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert.key_pem.expose().as_bytes())
        .map(|k: rustls_pki_types::PrivatePkcs8KeyDer<'_>| k.secret_pkcs8_der().to_vec())
        .unwrap();
    RingSigner::from_pkcs8(Algorithm::Ed25519, &der).unwrap()
}

fn manifest() -> Manifest {
    Manifest {
        flow: "judgment-publication".into(),
        source: "private".parse().unwrap(),
        destination: "internet".parse().unwrap(),
        kind: "pdf".into(),
        content_type: "application/pdf".into(),
        schema: None,
        size: 100,
        chunk_size: 64,
        chunks_hash: [9; 32],
        submitter: Submitter {
            subject: "p-clerk-7".parse().unwrap(),
            roles: vec![Role::Clerk],
            machine: false,
        },
        labels: vec![],
        redacted: true,
        correlation: None,
        time: now(),
        sequence: 41,
        policy_hash: PolicyHash::of(b"policy"),
    }
}

struct Node {
    cert: IssuedCert,
    signer: RingSigner,
}

impl Node {
    fn approve(&self, m: &Manifest, id: &str, who: &str, roles: &[Role]) -> Vec<u8> {
        let subject: SubjectId = who.parse().unwrap();
        ApprovalStatement::sign(
            &Approving {
                transfer_id: id,
                content_hash: m.chunks_hash,
                subject: &subject,
                roles,
                time: m.time,
            },
            self.cert.leaf_der.clone(),
            &self.signer,
        )
        .unwrap()
        .encode()
        .unwrap()
    }
}

fn setup() -> (ZoneTrust, Node, Node, Policy) {
    let root = CaCert::new_root("Court", KeyAlg::Ed25519, now()).unwrap();
    let private = root
        .new_zone(&"private".parse().unwrap(), "Court", KeyAlg::Ed25519, now())
        .unwrap();
    let internet = root
        .new_zone(
            &"internet".parse().unwrap(),
            "Court",
            KeyAlg::Ed25519,
            now(),
        )
        .unwrap();
    let pem = format!(
        "{}{}{}",
        root.cert_pem(),
        private.cert_pem(),
        internet.cert_pem()
    );
    let trust = ZoneTrust::new(TrustStore::from_pem(pem.as_bytes(), &[]).unwrap());
    let req = |name: &str| {
        let mut r = LeafRequest::new(CertKind::Node, name);
        r.key = KeyAlg::Ed25519;
        r
    };
    let ours = private.issue(&req("exchange-sender"), now()).unwrap();
    let theirs = internet.issue(&req("exchange-sender"), now()).unwrap();
    let policy = check("default.tp", DEFAULT_POLICY).into_policy().unwrap();
    (
        trust,
        Node {
            signer: signer_of(&ours),
            cert: ours,
        },
        Node {
            signer: signer_of(&theirs),
            cert: theirs,
        },
        policy,
    )
}

fn request(m: &Manifest, approvals: Vec<tianping_policies::Approval>) -> TransferRequest {
    TransferRequest {
        kind: m.kind.clone(),
        schema: None,
        size: m.size,
        submitter: tianping_policies::Submitter {
            id: Some(m.submitter.subject.clone()),
            roles: m.submitter.roles.clone(),
            machine: false,
        },
        labels: vec![],
        redacted: true,
        approvals,
    }
}

#[test]
fn two_judges_release_a_judgment() {
    let (trust, ours, _, policy) = setup();
    let flow = policy.flow("judgment-publication").unwrap();
    let m = manifest();
    let id = manifest_transfer_id(&m);
    assert_eq!(id, "private:41");
    let one = ours.approve(&m, &id, "p-judge-1", &[Role::Judge]);
    let two = ours.approve(&m, &id, "p-judge-2", &[Role::Clerk, Role::Judge]);

    let counted = count_approvals(std::slice::from_ref(&one), &trust, &m, &flow).unwrap();
    let d = policy.decide_transfer(&m.flow, &request(&m, counted));
    assert!(!d.is_allow(), "one judge of two is too few");

    let counted = count_approvals(&[one, two], &trust, &m, &flow).unwrap();
    assert_eq!(counted.len(), 2);
    assert!(counted.iter().all(|a| a.role == Role::Judge));
    let d = policy.decide_transfer(&m.flow, &request(&m, counted));
    assert!(d.is_allow(), "{}", d.reason);
}

#[test]
fn each_bad_statement_refuses_the_set() {
    let (trust, ours, theirs, policy) = setup();
    let flow = policy.flow("judgment-publication").unwrap();
    let m = manifest();
    let id = manifest_transfer_id(&m);
    let good = ours.approve(&m, &id, "p-judge-1", &[Role::Judge]);
    let count = |s: Vec<Vec<u8>>| count_approvals(&s, &trust, &m, &flow).unwrap_err();

    // signed by a node of another zone
    let e = count(vec![
        good.clone(),
        theirs.approve(&m, &id, "p-judge-2", &[Role::Judge]),
    ]);
    assert!(
        matches!(e, ApprovalError::Untrusted { index: 1, .. }),
        "{e}"
    );
    // another transfer
    let e = count(vec![ours.approve(
        &m,
        "private:40",
        "p-judge-2",
        &[Role::Judge],
    )]);
    assert!(matches!(e, ApprovalError::OtherTransfer { .. }), "{e}");
    // other content
    let mut other = m.clone();
    other.chunks_hash = [1; 32];
    let e = count(vec![ours.approve(&other, &id, "p-judge-2", &[Role::Judge])]);
    assert!(matches!(e, ApprovalError::OtherContent { .. }), "{e}");
    // the same judge twice (two statements, even signed at different times)
    let mut later = m.clone();
    later.time = UnixTime::from_secs(T0 + 5);
    let again = ours.approve(&later, &id, "p-judge-1", &[Role::Judge]);
    assert_ne!(again, good);
    let e = count(vec![good.clone(), again]);
    assert!(matches!(e, ApprovalError::Duplicate(_)), "{e}");
    // the submitter approving their own transfer
    let e = count(vec![ours.approve(&m, &id, "p-clerk-7", &[Role::Judge])]);
    assert!(matches!(e, ApprovalError::Submitter(_)), "{e}");
    // a role the flow's approvers do not name
    let e = count(vec![ours.approve(
        &m,
        &id,
        "p-chief-1",
        &[Role::DivisionChief],
    )]);
    assert!(matches!(e, ApprovalError::Role { .. }), "{e}");
    // a flipped byte in the signed part
    let mut flipped = good;
    let last = flipped.len() - 70;
    if let Some(b) = flipped.get_mut(last) {
        *b ^= 0x40;
    }
    let e = count(vec![flipped]);
    assert!(matches!(e, ApprovalError::Malformed { .. }), "{e}");
}
