//! Directory replication between two zones' stores (the memory and the sled one alike), signed
//! with node keys from a real court PKI (a root, the `private` and `internet` zone CAs) and the
//! signer checked with `tianping_certs::verify_signer` against the trust bundle, as the binary
//! does: only what the flow lets go arrives; applying twice changes nothing; a gap, a replay, a
//! forged update and one signed by another node are refused, naming the check; a disabled
//! account's sessions and refresh families end where the update arrives and its clients'
//! back-channel logouts are queued; a public registration reaches `private`, a staff record
//! from `internet` does not.
#![cfg(feature = "store")]
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::indexing_slicing, reason = "tests fail loudly")]

use base64::Engine as _;
use tianping_certs::{CaCert, CertKind, KeyAlg, LeafRequest, TrustStore};
use tianping_core::{
    Acr, Amr, Clearance, PublicKey, RingSigner, Role, SubjectId, UnixTime, ZoneName,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    BackchannelRegistration, Court, Directory, Expect, FlowTerms, GrantPolicy, Grants, MemoryStore,
    PasswordRecord, SessionPolicy, Sessions, SignerCheck, Store, TotpCredential, TotpSecret,
    UpdateKind, User, UserStatus, apply_update, export_update,
};

const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

fn zone(z: &str) -> ZoneName {
    z.parse().unwrap()
}

/// A node's signing identity: its chain (DER) and its key.
struct Node {
    chain: Vec<Vec<u8>>,
    signer: RingSigner,
}

fn signer_of(key_pem: &str) -> RingSigner {
    let b64: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    RingSigner::from_pkcs8_any(&der).unwrap()
}

struct Pki {
    trust: TrustStore,
    private_idp: Node,
    private_exchange: Node,
    internet_idp: Node,
}

impl Pki {
    fn new() -> Self {
        let made = UnixTime::from_secs(NOW.as_secs() - 86_400);
        let root = CaCert::new_root("Court", KeyAlg::EcP256, made).unwrap();
        let private = root
            .new_zone(&zone("private"), "Court", KeyAlg::EcP256, made)
            .unwrap();
        let internet = root
            .new_zone(&zone("internet"), "Court", KeyAlg::EcP256, made)
            .unwrap();
        let node = |ca: &CaCert, name: &str| {
            let issued = ca
                .issue(&LeafRequest::new(CertKind::Node, name.to_owned()), made)
                .unwrap();
            let chain = tianping_certs::certs_from_pem(issued.chain_pem.as_bytes())
                .unwrap()
                .into_iter()
                .map(|c| c.to_vec())
                .collect();
            Node {
                chain,
                signer: signer_of(issued.key_pem.expose()),
            }
        };
        let trust_pem = format!(
            "{}{}{}",
            root.cert_pem(),
            private.cert_pem(),
            internet.cert_pem()
        );
        Self {
            trust: TrustStore::from_pem(trust_pem.as_bytes(), &[]).unwrap(),
            private_idp: node(&private, "idp.private.tianping.localhost"),
            private_exchange: node(&private, "exchange.private.tianping.localhost"),
            internet_idp: node(&internet, "idp.internet.tianping.localhost"),
        }
    }
}

/// The binary's check: a node certificate of the zone, the IdP's, whose key signed.
impl SignerCheck for Pki {
    fn check(
        &self,
        chain: &[Vec<u8>],
        key: &PublicKey,
        zone: &ZoneName,
        time: UnixTime,
    ) -> Result<(), String> {
        let chain: Vec<_> = chain
            .iter()
            .map(|c| tianping_certs::CertificateDer::from(c.as_slice()))
            .collect();
        let who = tianping_certs::verify_signer(&chain, &self.trust, zone, time)
            .map_err(|e| e.to_string())?;
        if &who.key != key {
            return Err("the key that signed is not the certificate's".into());
        }
        if !who.identity.name.starts_with("idp.") {
            return Err(format!("`{}` is not the zone's IdP", who.identity.name));
        }
        Ok(())
    }
}

fn roles(r: &[Role]) -> Vec<Role> {
    r.to_vec()
}

/// `directory-to-internet` of the default policy.
fn to_internet() -> FlowTerms {
    FlowTerms {
        accounts: Role::ALL.to_vec(),
        attributes: ["sub", "name", "court", "roles", "status"]
            .map(String::from)
            .to_vec(),
        credentials: vec![
            (
                "password-hash".into(),
                roles(&[Role::Public, Role::Lawyer, Role::Litigant]),
            ),
            ("cert".into(), Role::ALL.to_vec()),
            ("otp-seed".into(), Role::ALL.to_vec()),
        ],
    }
}

/// `public-registration` of the default policy.
fn registration() -> FlowTerms {
    let public = roles(&[Role::Public, Role::Lawyer, Role::Litigant]);
    FlowTerms {
        accounts: public.clone(),
        attributes: ["sub", "name", "phone", "email"].map(String::from).to_vec(),
        credentials: vec![
            ("password-hash".into(), public.clone()),
            ("otp-seed".into(), public),
        ],
    }
}

fn password(hash: &str) -> Option<PasswordRecord> {
    Some(PasswordRecord {
        hash: hash.into(),
        history: vec![],
        changed_at: NOW,
    })
}

fn private_directory(store: &dyn Store) {
    let dir = Directory::new(store);
    for (code, name) in [
        ("bj", "北京市高级人民法院"),
        ("bj.01", "北京市第一中级人民法院"),
    ] {
        dir.add_court(Court {
            code: code.parse().unwrap(),
            name: name.into(),
        })
        .unwrap();
    }
    let mut judge = User::new("u-judge-1".parse().unwrap(), "li.ming", "李明", NOW);
    judge.roles = vec![Role::Judge];
    judge.court = Some("bj.01".parse().unwrap());
    judge.clearance = Clearance::Secret;
    judge.email = Some("li.ming@court.example".into());
    judge.password = password("$argon2id$judge-hash");
    judge.totp = Some(TotpCredential {
        secret: TotpSecret::from_bytes(vec![5; 20]),
        last_step: Some(7),
    });
    dir.add_user(judge).unwrap();
    let mut lawyer = User::new("u-lawyer-1".parse().unwrap(), "wang.fang", "王芳", NOW);
    lawyer.roles = vec![Role::Lawyer];
    lawyer.password = password("$argon2id$lawyer-hash");
    dir.add_user(lawyer).unwrap();
}

fn expect<'a>(
    pki: &'a Pki,
    kind: UpdateKind,
    source: &'a ZoneName,
    to: &'a ZoneName,
    terms: &'a FlowTerms,
) -> Expect<'a> {
    Expect {
        kind,
        source,
        to,
        terms,
        signers: pki,
        last_applied: None,
    }
}

fn export(from: &dyn Store, since: u64, node: &Node) -> Vec<u8> {
    export_update(
        from,
        UpdateKind::Directory,
        &zone("private"),
        &zone("internet"),
        since,
        &to_internet(),
        NOW,
    )
    .unwrap()
    .sign(&node.chain, &node.signer)
    .unwrap()
}

fn sorted_users(store: &dyn Store) -> Vec<User> {
    Directory::new(store).users().unwrap()
}

fn replication(private: &dyn Store, internet: &dyn Store) {
    let pki = Pki::new();
    let rng = SeededRandom::new(7);
    let (p, i) = (zone("private"), zone("internet"));
    let terms = to_internet();
    let e = expect(&pki, UpdateKind::Directory, &p, &i, &terms);
    private_directory(private);

    let first = export(private, 0, &pki.private_idp);
    let applied = apply_update(internet, &first, &e, NOW, &rng).unwrap();
    assert_eq!((applied.since, applied.unchanged), (0, 0));
    assert_eq!(applied.changed.len(), 4, "{:?}", applied.changed);

    // only what the flow lets go arrived
    let judge = internet
        .user(&"u-judge-1".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(judge.login, "li.ming");
    assert_eq!(judge.display_name, "李明");
    assert_eq!(judge.roles, [Role::Judge]);
    assert_eq!(judge.court.as_ref().map(|c| c.as_str()), Some("bj.01"));
    assert!(
        judge.password.is_none(),
        "a judge's password hash stays in private"
    );
    assert_eq!(
        judge.clearance,
        Clearance::None,
        "clearance does not go to internet"
    );
    assert_eq!(judge.email, None, "email does not go to internet");
    assert_eq!(judge.totp.as_ref().unwrap().secret.expose(), [5; 20]);
    let lawyer = internet
        .user(&"u-lawyer-1".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(lawyer.password.unwrap().hash, "$argon2id$lawyer-hash");
    assert_eq!(Directory::new(internet).courts().unwrap().len(), 2);

    // applying twice changes nothing: a replay, refused by name
    let before = sorted_users(internet);
    let again = apply_update(internet, &first, &e, NOW, &rng).unwrap_err();
    assert!(again.to_string().starts_with("replay:"), "{again}");
    assert_eq!(sorted_users(internet), before);

    // a forged update: one byte of the judge's name changed after signing
    let dir = Directory::new(private);
    let sub: SubjectId = "u-judge-1".parse().unwrap();
    dir.update_user(&sub, &mut |u| u.display_name = "李明明".into())
        .unwrap();
    let last = applied.until;
    let mut forged = export(private, last, &pki.private_idp);
    let at = forged
        .windows("李明明".len())
        .position(|w| w == "李明明".as_bytes())
        .unwrap();
    // the first character's last byte: still UTF-8, another character
    forged[at + 2] ^= 0x01;
    let e1 = apply_update(internet, &forged, &e, NOW, &rng).unwrap_err();
    assert!(e1.to_string().starts_with("bad signature:"), "{e1}");

    // signed by another node of `private` (the exchange), or the internet IdP
    let other = export(private, last, &pki.private_exchange);
    let e2 = apply_update(internet, &other, &e, NOW, &rng).unwrap_err();
    assert!(e2.to_string().starts_with("wrong signer:"), "{e2}");
    assert!(e2.to_string().contains("is not the zone's IdP"), "{e2}");
    let other = export(private, last, &pki.internet_idp);
    let e3 = apply_update(internet, &other, &e, NOW, &rng).unwrap_err();
    assert!(e3.to_string().starts_with("wrong signer:"), "{e3}");
    assert_eq!(
        sorted_users(internet),
        before,
        "nothing refused changed anything"
    );

    // a gap: an update starting after a version the receiver has not applied
    dir.set_status(&"u-lawyer-1".parse().unwrap(), UserStatus::Enabled)
        .unwrap();
    let gap = export(private, last + 1, &pki.private_idp);
    let e4 = apply_update(internet, &gap, &e, NOW, &rng).unwrap_err();
    assert!(e4.to_string().starts_with("gap:"), "{e4}");

    // a disabled account: its sessions and refresh families end in the receiving zone
    let sessions = Sessions::new(internet, SessionPolicy::default());
    let identity = judge.identity(Acr::Otp, vec![Amr::Otp], i.clone(), NOW);
    let (sid, _) = sessions.sign_in(None, identity.clone(), NOW, &rng).unwrap();
    let key = tianping_idp::session_key(&sid);
    let grants = Grants::new(internet, GrantPolicy::default());
    let (refresh, family) = grants
        .start_family("portal", identity, vec!["openid".into()], NOW, &rng)
        .unwrap();
    grants.note_session_family(&key, &family).unwrap();
    tianping_idp::note_session_client(internet, &key, "portal").unwrap();
    tianping_idp::register_backchannel(
        internet,
        "portal",
        Some(&BackchannelRegistration {
            uri: "https://portal.internet.example/bcl".into(),
            session_required: true,
        }),
    )
    .unwrap();
    dir.set_status(&sub, UserStatus::Disabled).unwrap();
    let next = export(private, last, &pki.private_idp);
    let applied = apply_update(internet, &next, &e, NOW, &rng).unwrap();
    assert_eq!(applied.ended.len(), 1);
    let judge = internet.user(&sub).unwrap().unwrap();
    assert_eq!(judge.display_name, "李明明");
    assert!(!judge.is_enabled());
    assert!(internet.family(&family).unwrap().unwrap().revoked);
    assert!(grants.use_refresh(&refresh, "portal", NOW, &rng).is_err());
    let queued = tianping_idp::pending_logouts(internet).unwrap();
    assert_eq!(
        queued.len(),
        1,
        "the client's back-channel logout is queued"
    );

    // a public registration reaches `private`; a staff record from `internet` does not
    let reg_terms = registration();
    let r = expect(&pki, UpdateKind::Registration, &i, &p, &reg_terms);
    let mut public = User::new(
        "p-0123456789abcdef".parse().unwrap(),
        "zhang.san",
        "张三",
        NOW,
    );
    public.roles = vec![Role::Public];
    public.phone = Some("+86 10 1234 5678".into());
    public.password = password("$argon2id$public-hash");
    Directory::new(internet).add_user(public).unwrap();
    let reg = |since| {
        export_update(
            internet,
            UpdateKind::Registration,
            &i,
            &p,
            since,
            &reg_terms,
            NOW,
        )
        .unwrap()
    };
    let body = reg(0);
    assert_eq!(body.records.len(), 1, "only the `p-` account goes");
    let bytes = body
        .sign(&pki.internet_idp.chain, &pki.internet_idp.signer)
        .unwrap();
    apply_update(private, &bytes, &r, NOW, &rng).unwrap();
    let arrived = private
        .user(&"p-0123456789abcdef".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(arrived.roles, [Role::Public]);
    assert_eq!(arrived.phone.as_deref(), Some("+86 10 1234 5678"));
    assert_eq!(arrived.password.unwrap().hash, "$argon2id$public-hash");

    // forged staff: the internet IdP signs a record of a judge as a registration
    let mut staff = reg(0);
    let judge_record = tianping_idp::UserRecord::from_user(&judge, &[]);
    staff.records[0].change = tianping_idp::Change::User(judge_record);
    let bytes = staff
        .sign(&pki.internet_idp.chain, &pki.internet_idp.signer)
        .unwrap();
    let e5 = apply_update(private, &bytes, &r, NOW, &rng).unwrap_err();
    assert!(
        e5.to_string().starts_with("not allowed by the flow:"),
        "{e5}"
    );
    assert!(
        e5.to_string().contains("only `p-` subjects register"),
        "{e5}"
    );
    // and a `p-` record carrying roles, which the flow does not let go
    let mut escalated = reg(0);
    if let tianping_idp::Change::User(u) = &mut escalated.records[0].change {
        u.attributes.push(("roles".into(), "public".into()));
        u.attributes.sort();
    }
    let bytes = escalated
        .sign(&pki.internet_idp.chain, &pki.internet_idp.signer)
        .unwrap();
    let e6 = apply_update(private, &bytes, &r, NOW, &rng).unwrap_err();
    assert!(e6.to_string().contains("attribute `roles`"), "{e6}");
    let still = private
        .user(&"p-0123456789abcdef".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(still.roles, [Role::Public]);
}

#[test]
fn replication_between_memory_stores() {
    replication(&MemoryStore::new(), &MemoryStore::new());
}

#[test]
fn replication_between_sled_stores() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let private = tianping_idp::SledStore::open(a.path()).unwrap();
    let internet = tianping_idp::SledStore::open(b.path()).unwrap();
    replication(&private, &internet);
}

#[test]
fn both_stores_number_changes_alike() {
    let dir = tempfile::tempdir().unwrap();
    let sled = tianping_idp::SledStore::open(dir.path()).unwrap();
    let memory = MemoryStore::new();
    for store in [&sled as &dyn Store, &memory] {
        private_directory(store);
        let (changes, latest) = store.changes_since(0).unwrap();
        assert_eq!(latest, 4);
        assert_eq!(changes.len(), 4);
        Directory::new(store)
            .set_status(&"u-judge-1".parse().unwrap(), UserStatus::Disabled)
            .unwrap();
        let (changes, latest) = store.changes_since(2).unwrap();
        assert_eq!(latest, 5);
        let keys: Vec<_> = changes.iter().map(|(v, k)| (*v, k.as_str())).collect();
        assert_eq!(keys, [(4, "user:u-lawyer-1"), (5, "user:u-judge-1")]);
        assert_eq!(store.applied_version("directory:private").unwrap(), 0);
        store.set_applied_version("directory:private", 9).unwrap();
        assert_eq!(store.applied_version("directory:private").unwrap(), 9);
    }
}

/// A role taken away or a registered device (certificate) removed in `private` ends the
/// account's sessions where the update arrives; a change of name alone does not.
#[test]
fn a_role_taken_away_or_a_device_removed_ends_the_sessions() {
    let pki = Pki::new();
    let rng = SeededRandom::new(9);
    let (private, internet) = (MemoryStore::new(), MemoryStore::new());
    let (p, i) = (zone("private"), zone("internet"));
    let terms = to_internet();
    let e = expect(&pki, UpdateKind::Directory, &p, &i, &terms);
    private_directory(&private);
    let sub: SubjectId = "u-judge-1".parse().unwrap();
    tianping_idp::Devices::new(&private)
        .add(tianping_idp::Device {
            id: "tablet-07".into(),
            owner: sub.clone(),
            fingerprint: [7; 32],
            name: "执行终端 7".into(),
            added: NOW,
        })
        .unwrap();
    let mut last = 0;
    let mut step = |change: &mut dyn FnMut()| {
        change();
        let bytes = export(&private, last, &pki.private_idp);
        let judge = internet.user(&sub).unwrap();
        let sessions = Sessions::new(&internet, SessionPolicy::default());
        if let Some(j) = &judge {
            let identity = j.identity(Acr::Otp, vec![Amr::Otp], i.clone(), NOW);
            sessions.sign_in(None, identity, NOW, &rng).unwrap();
        }
        let applied = apply_update(&internet, &bytes, &e, NOW, &rng).unwrap();
        last = applied.until;
        applied.ended.len()
    };
    assert_eq!(step(&mut || {}), 0, "the first update: no account yet");
    assert_eq!(
        tianping_idp::Devices::new(&internet).list().unwrap().len(),
        1,
        "the device came with the `cert` credential"
    );
    let dir = Directory::new(&private);
    assert_eq!(
        step(&mut || {
            dir.update_user(&sub, &mut |u| u.display_name = "李明明".into())
                .unwrap();
        }),
        0,
        "a new name ends nothing"
    );
    assert_eq!(
        step(&mut || {
            dir.set_roles(&sub, vec![Role::Assistant]).unwrap();
        }),
        2,
        "a role taken away ends the sessions (the one a new name left too)"
    );
    assert_eq!(
        step(&mut || {
            private.remove_device(&[7; 32]).unwrap();
        }),
        1,
        "a certificate removed ends the session"
    );
    assert!(
        tianping_idp::Devices::new(&internet)
            .list()
            .unwrap()
            .is_empty()
    );
}

/// A record the receiver cannot apply (a court it has not got, a sign-in name another account
/// holds there) refuses the whole update before anything is written.
#[test]
fn an_update_that_cannot_be_applied_whole_changes_nothing() {
    let pki = Pki::new();
    let rng = SeededRandom::new(11);
    let (private, internet) = (MemoryStore::new(), MemoryStore::new());
    let (p, i) = (zone("private"), zone("internet"));
    let terms = to_internet();
    let e = expect(&pki, UpdateKind::Directory, &p, &i, &terms);
    private_directory(&private);
    // the lawyer's sign-in name is taken in internet by another account
    Directory::new(&internet)
        .add_user(User::new(
            "p-00000000000000aa".parse().unwrap(),
            "wang.fang",
            "王",
            NOW,
        ))
        .unwrap();
    let bytes = export(&private, 0, &pki.private_idp);
    let err = apply_update(&internet, &bytes, &e, NOW, &rng).unwrap_err();
    assert!(
        err.to_string()
            .contains("which `p-00000000000000aa` holds here"),
        "{err}"
    );
    assert!(Directory::new(&internet).courts().unwrap().is_empty());
    assert_eq!(sorted_users(&internet).len(), 1);
    assert_eq!(internet.applied_version("directory:private").unwrap(), 0);
    // a court that is neither there nor in the update: only the judge's later change goes
    let internet = MemoryStore::new();
    let (_, latest) = private.changes_since(0).unwrap();
    Directory::new(&private)
        .set_status(&"u-judge-1".parse().unwrap(), UserStatus::Disabled)
        .unwrap();
    let body = export_update(&private, UpdateKind::Directory, &p, &i, latest, &terms, NOW).unwrap();
    let mut from_zero = body.clone();
    from_zero.since = 0;
    let bytes = from_zero
        .sign(&pki.private_idp.chain, &pki.private_idp.signer)
        .unwrap();
    let err = apply_update(&internet, &bytes, &e, NOW, &rng).unwrap_err();
    assert!(
        err.to_string()
            .contains("court `bj.01`, which is neither here nor in the update"),
        "{err}"
    );
    assert!(sorted_users(&internet).is_empty());
}

/// How long 10 000 accounts take to export, sign, check and apply on sled stores (run with
/// `--ignored --nocapture`; it prints, asserts only that all arrive).
#[test]
#[ignore = "a measurement"]
fn ten_thousand_accounts_measured() {
    let pki = Pki::new();
    let rng = SeededRandom::new(3);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let private = tianping_idp::SledStore::open(a.path()).unwrap();
    let internet = tianping_idp::SledStore::open(b.path()).unwrap();
    let (p, i) = (zone("private"), zone("internet"));
    let terms = to_internet();
    let e = expect(&pki, UpdateKind::Directory, &p, &i, &terms);
    private_directory(&private);
    let dir = Directory::new(&private);
    let n = 10_000;
    for k in 0..n {
        let mut u = User::new(
            format!("u-clerk-{k:05}").parse().unwrap(),
            &format!("clerk.{k:05}"),
            "书记员",
            NOW,
        );
        u.roles = vec![Role::Clerk];
        u.court = Some("bj.01".parse().unwrap());
        u.totp = Some(TotpCredential {
            secret: TotpSecret::from_bytes(vec![1; 20]),
            last_step: None,
        });
        dir.add_user(u).unwrap();
    }
    let t = std::time::Instant::now();
    let bytes = export(&private, 0, &pki.private_idp);
    let exported = t.elapsed();
    let t = std::time::Instant::now();
    apply_update(&internet, &bytes, &e, NOW, &rng).unwrap();
    let applied = t.elapsed();
    assert_eq!(sorted_users(&internet).len(), n + 2);
    println!(
        "{} accounts: update {} bytes, export and sign {exported:?}, check and apply {applied:?}",
        n + 2,
        bytes.len()
    );
}
