//! The records besides codes and families (sessions, revoked tokens, lockouts) on each store,
//! and the sled store keeping all of them across closing and reopening.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use tianping_core::{Acr, Amr, Clearance, Role, UnixTime};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    Factor, GrantPolicy, Grants, Identity, IdpError, LockoutPolicy, MemoryStore, SessionPolicy,
    Sessions, Store,
};

const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

fn judge() -> Identity {
    Identity {
        sub: "judge-0001".parse().unwrap(),
        court: Some("bj.01.03".parse().unwrap()),
        roles: vec![Role::Judge, Role::Clerk],
        clearance: Clearance::Secret,
        acr: Acr::Otp,
        amr: vec![Amr::Pwd, Amr::Otp],
        zone: "private".parse().unwrap(),
        auth_time: NOW,
        device: None,
    }
}

/// Writes one of each record and returns what a reader needs to find them again.
fn write_all(store: &dyn Store) -> (String, String, String) {
    let rng = SeededRandom::new(7);
    let sessions = Sessions::new(store, SessionPolicy::default());
    let (anon, _) = sessions.start(NOW, &rng).unwrap();
    let (signed, s) = sessions.sign_in(None, judge(), NOW, &rng).unwrap();
    assert!(s.check_csrf("login", Some(&s.csrf_token("login"))).is_ok());
    store.revoke_token("jti-1", NOW).unwrap();
    let policy = LockoutPolicy::default();
    let mut state = store.lockout("li.ming").unwrap();
    policy.record_failure(&mut state, NOW, Factor::Password);
    policy.record_failure(&mut state, NOW, Factor::Totp);
    store.put_lockout("li.ming", &state).unwrap();
    let (rt, _) = Grants::new(store, GrantPolicy::default())
        .start_family("case-app", judge(), vec!["openid".into()], NOW, &rng)
        .unwrap();
    (anon, signed, rt)
}

/// Checks what [`write_all`] wrote, through the public behaviour.
fn read_all(store: &dyn Store, anon: &str, signed: &str, rt: &str) {
    let sessions = Sessions::new(store, SessionPolicy::default());
    assert_eq!(sessions.get(anon, NOW).unwrap().identity, None);
    let s = sessions.get(signed, NOW).unwrap();
    assert_eq!(s.identity, Some(judge()));
    assert!(s.check_csrf("login", Some(&s.csrf_token("login"))).is_ok());
    assert_eq!(
        s.check_csrf("login", Some("forged")),
        Err(IdpError::CsrfMismatch)
    );
    assert!(store.is_token_revoked("jti-1").unwrap());
    assert!(!store.is_token_revoked("jti-2").unwrap());
    assert_eq!(store.lockout("li.ming").unwrap().failures, vec![NOW, NOW]);
    assert_eq!(store.lockout("nobody").unwrap().failures, vec![]);
    let rng = SeededRandom::new(8);
    let (family, _) = Grants::new(store, GrantPolicy::default())
        .use_refresh(rt, "case-app", NOW, &rng)
        .unwrap();
    assert_eq!(family.identity, judge());
    assert_eq!(family.scope, vec!["openid".to_owned()]);
}

fn behaves(store: &dyn Store) {
    let (anon, signed, rt) = write_all(store);
    read_all(store, &anon, &signed, &rt);
    let sessions = Sessions::new(store, SessionPolicy::default());
    sessions
        .logout(&signed, NOW, &SeededRandom::new(9))
        .unwrap();
    assert!(sessions.get(&signed, NOW).is_err());
}

#[test]
fn memory_store_keeps_every_record() {
    behaves(&MemoryStore::new());
}

#[test]
fn sled_store_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    behaves(&tianping_idp::SledStore::open(dir.path()).unwrap());
}

#[test]
fn sled_store_keeps_records_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (anon, signed, rt) = {
        let store = tianping_idp::SledStore::open(dir.path()).unwrap();
        write_all(&store)
    };
    let store = tianping_idp::SledStore::open(dir.path()).unwrap();
    read_all(&store, &anon, &signed, &rt);
}

#[test]
fn a_damaged_record_is_a_store_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("lockouts")
            .unwrap()
            .insert("x", &[9u8][..])
            .unwrap();
        db.flush().unwrap();
    }
    let store = tianping_idp::SledStore::open(dir.path()).unwrap();
    assert!(matches!(store.lockout("x"), Err(IdpError::Store(_))));
}
