//! Checkpoints signed with a component's node key, verified by a caller's decision about that
//! key and the certificate the log records for it.

use tianping_audit::{AuditLog, Event, StoreError};
use tianping_core::{Algorithm, PublicKey, RingSigner, Signer, UnixTime};

#[test]
fn a_log_verifies_only_when_the_callers_trust_accepts_its_signer() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::create(tmp.path(), "tianping.localhost/audit/private/idp").unwrap();
    // Unsigned so far: nothing to ask.
    let never = |_: &PublicKey, _: Option<&[u8]>| -> Result<(), String> { Err("asked".into()) };
    assert!(log.verify_trusted(&never, &[], &mut |_, _| {}).is_ok());

    let (node, _) = RingSigner::generate(Algorithm::Es256).unwrap();
    let (other, _) = RingSigner::generate(Algorithm::Es256).unwrap();
    for i in 0..5 {
        log.append(&Event::new(UnixTime::from_millis(i), "sign-in"))
            .unwrap();
    }
    log.set_signer_certificate(b"node certificate of private/idp")
        .unwrap();
    log.checkpoint(&node).unwrap();
    assert_eq!(
        log.signer_certificate().unwrap().as_deref(),
        Some(&b"node certificate of private/idp"[..])
    );

    // A trust that knows the zone's node key by its certificate.
    let zone_key = node.public_key();
    let zone_trust = |key: &PublicKey, cert: Option<&[u8]>| -> Result<(), String> {
        match cert {
            Some(c) if c == b"node certificate of private/idp" && *key == zone_key => Ok(()),
            Some(_) => Err("not a node certificate of zone `private`".into()),
            None => Err("no signer certificate".into()),
        }
    };
    let r = log
        .verify_trusted(&zone_trust, &[], &mut |_, _| {})
        .unwrap();
    assert_eq!(
        (r.entries, r.signed_size, r.key),
        (5, 5, Some(node.public_key()))
    );

    // Another zone's trust refuses it, naming why.
    let other_key = other.public_key();
    let other_trust = |key: &PublicKey, _: Option<&[u8]>| -> Result<(), String> {
        if *key == other_key {
            Ok(())
        } else {
            Err("signed by another zone's node".into())
        }
    };
    match log.verify_trusted(&other_trust, &[], &mut |_, _| {}) {
        Err(StoreError::UntrustedKey { key, reason }) => {
            assert_eq!(key, node.public_key().to_string());
            assert_eq!(reason, "signed by another zone's node");
        }
        other => panic!("{other:?}"),
    }
}
