//! The directory on both stores: courts, users and clients written through [`Directory`], read
//! back after the sled store is closed and reopened, and refusals that leave nothing changed.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::indexing_slicing, reason = "tests fail loudly")]

use tianping_core::{Clearance, Role, SubjectId, UnixTime};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    Client, ClientAuthMethod, Court, Directory, GrantType, MemoryStore, PasswordParams,
    PasswordPolicy, Passwords, RequiredAction, SledStore, Store, TotpCredential, TotpSecret, User,
    UserStatus,
};

const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

fn passwords() -> Passwords {
    let params = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    Passwords::new(params, PasswordPolicy::default(), &SeededRandom::new(1)).unwrap()
}

fn sub(s: &str) -> SubjectId {
    s.parse().unwrap()
}

fn client() -> Client {
    Client {
        id: "case-app".into(),
        secret_sha256: Some(Client::hash_secret("s3cret")),
        auth_method: ClientAuthMethod::ClientSecretPost,
        redirect_uris: vec!["https://case.court.example/cb".into()],
        post_logout_redirect_uris: vec!["https://case.court.example/bye".into()],
        grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        native_loopback: true,
        extra_scopes: vec!["cases.read".into()],
    }
}

/// Writes courts, two users and a client; returns the judge as written.
fn write(store: &dyn Store) -> User {
    let d = Directory::new(store);
    for (code, name) in [
        ("bj", "北京市高级人民法院"),
        ("bj.01", "北京市第一中级人民法院"),
    ] {
        d.add_court(Court {
            code: code.parse().unwrap(),
            name: name.into(),
        })
        .unwrap();
    }
    let mut judge = User::new(sub("judge-0001"), "li.ming", "李明", NOW);
    judge.given_name = Some("明".into());
    judge.family_name = Some("李".into());
    judge.email = Some("li.ming@court.example".into());
    judge.phone = Some("+86 10 0000 0000".into());
    judge.court = Some("bj.01".parse().unwrap());
    judge.roles = vec![Role::Judge, Role::Committee];
    judge.clearance = Clearance::Confidential;
    d.add_user(judge).unwrap();
    d.add_user(User::new(sub("clerk-0002"), "wang.fang", "王芳", NOW))
        .unwrap();
    let rng = SeededRandom::new(4);
    d.set_password(
        &sub("judge-0001"),
        &passwords(),
        "Court-2026a",
        false,
        NOW,
        &rng,
    )
    .unwrap();
    d.set_password(
        &sub("judge-0001"),
        &passwords(),
        "Court-2026b",
        true,
        NOW,
        &rng,
    )
    .unwrap();
    d.update_user(&sub("judge-0001"), &mut |u| {
        u.totp = Some(TotpCredential {
            secret: TotpSecret::from_bytes(vec![7; 20]),
            last_step: Some(42),
        });
        u.totp_pending = Some(TotpSecret::from_bytes(vec![8; 20]));
    })
    .unwrap();
    d.require_action(&sub("judge-0001"), RequiredAction::EnrolTotp)
        .unwrap();
    d.set_status(&sub("clerk-0002"), UserStatus::Disabled)
        .unwrap();
    d.add_client(client()).unwrap();
    d.user(&sub("judge-0001")).unwrap().unwrap()
}

fn read(store: &dyn Store, judge: &User) {
    let d = Directory::new(store);
    let courts = d.courts().unwrap();
    assert_eq!(courts.len(), 2);
    assert_eq!(courts[1].name, "北京市第一中级人民法院");
    assert_eq!(d.user(&sub("judge-0001")).unwrap().as_ref(), Some(judge));
    assert_eq!(d.user_by_login("Li.Ming").unwrap().as_ref(), Some(judge));
    let users = d.users().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].status, UserStatus::Disabled);
    let record = judge.password.as_ref().unwrap();
    assert_eq!(record.history.len(), 1);
    assert!(passwords().verify(Some(&record.hash), "Court-2026b"));
    assert_eq!(
        judge.required_actions,
        vec![RequiredAction::ChangePassword, RequiredAction::EnrolTotp]
    );
    assert_eq!(d.client("case-app").unwrap(), Some(client()));
    assert_eq!(d.clients().unwrap().len(), 1);
}

#[test]
fn directory_round_trips_on_the_memory_store() {
    let store = MemoryStore::new();
    let judge = write(&store);
    read(&store, &judge);
}

#[test]
fn directory_survives_closing_and_reopening_the_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let judge = {
        let store = SledStore::open(dir.path()).unwrap();
        write(&store)
    };
    let store = SledStore::open(dir.path()).unwrap();
    read(&store, &judge);
}

#[test]
fn refused_changes_leave_the_sled_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let judge = write(&store);
    let d = Directory::new(&store);
    // a second user under a taken sign-in name or subject id
    assert!(
        d.add_user(User::new(sub("judge-0003"), "LI.MING", "x", NOW))
            .is_err()
    );
    assert!(
        d.add_user(User::new(sub("judge-0001"), "new.name", "x", NOW))
            .is_err()
    );
    assert!(d.user_by_login("new.name").unwrap().is_none());
    // two of the separated administrator roles
    let e = d
        .set_roles(&sub("judge-0001"), vec![Role::Secadmin, Role::Auditor])
        .unwrap_err();
    assert!(e.to_string().contains("separation"), "{e}");
    // the sign-in name cannot change by an update
    assert!(
        d.update_user(&sub("judge-0001"), &mut |u| u.login = "other".into())
            .is_err()
    );
    // a court whose parent is missing
    assert!(
        d.add_court(Court {
            code: "sh.02".parse().unwrap(),
            name: "x".into()
        })
        .is_err()
    );
    read(&store, &judge);
}
