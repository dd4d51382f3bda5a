//! Replays the `idp_directory_update` fuzz target's checked-in corpus on stable, with seeded
//! mutations of each seed, and checks that the good seeds still pass the validation and each bad
//! one is refused by its check (so the fuzzer starts from real records).
//!
//! `IDP_WRITE_SEEDS=1 cargo test -p tianping-idp --test fuzz_directory_update` rewrites the
//! seeds.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use tianping_core::{Algorithm, Clearance, RingSigner, Role, UnixTime, ZoneName};
use tianping_idp::internal::{self, FUZZ_NOW};
use tianping_idp::{
    Change, Court, Device, Expect, PasswordRecord, Record, TotpCredential, TotpSecret, UpdateBody,
    UpdateKind, User, UserRecord, check_update,
};

const TARGET: &str = "idp_directory_update";
const CHAIN: &[u8] = b"a certificate the fuzz authority does not need";

fn zone(z: &str) -> ZoneName {
    z.parse().unwrap()
}

fn judge() -> User {
    let mut u = User::new("u-judge-1".parse().unwrap(), "li.ming", "李明", FUZZ_NOW);
    u.roles = vec![Role::Judge];
    u.court = Some("bj.01".parse().unwrap());
    u.clearance = Clearance::Secret;
    u.totp = Some(TotpCredential {
        secret: TotpSecret::from_bytes(vec![5; 20]),
        last_step: None,
    });
    u
}

fn public() -> User {
    let mut u = User::new(
        "p-0123456789abcdef".parse().unwrap(),
        "zhang.san",
        "张三",
        FUZZ_NOW,
    );
    u.roles = vec![Role::Public];
    u.phone = Some("+86 10 1234 5678".into());
    u.password = Some(PasswordRecord {
        hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        history: vec![],
        changed_at: FUZZ_NOW,
    });
    u
}

fn body(kind: UpdateKind, records: Vec<Change>) -> UpdateBody {
    let (source, to) = match kind {
        UpdateKind::Directory => ("private", "internet"),
        UpdateKind::Registration => ("internet", "private"),
    };
    let until = u64::try_from(records.len()).unwrap() + 3;
    UpdateBody {
        kind,
        source: zone(source),
        to: zone(to),
        since: 3,
        until,
        time: FUZZ_NOW,
        records: records
            .into_iter()
            .zip(4..)
            .map(|(change, version)| Record { version, change })
            .collect(),
    }
}

/// Every seed: its name, its bytes, and the kind it passes as (`None`: refused).
fn seeds() -> Vec<(&'static str, Vec<u8>, Option<UpdateKind>)> {
    let authority = internal::fuzz_directory_signer().unwrap();
    let (other, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
    let terms = internal::fuzz_directory_terms();
    let court = |code: &str, name: &str| {
        Change::Court(Court {
            code: code.parse().unwrap(),
            name: name.into(),
        })
    };
    let device = Device {
        id: "tablet-07".into(),
        owner: judge().sub,
        fingerprint: [7; 32],
        name: "执行终端 7".into(),
        added: FUZZ_NOW,
    };
    let judge_rec = terms
        .filter(&UserRecord::from_user(&judge(), &[device]))
        .unwrap();
    let public_rec = terms
        .filter(&UserRecord::from_user(&public(), &[]))
        .unwrap();
    let directory = body(
        UpdateKind::Directory,
        vec![
            court("bj", "北京市高级人民法院"),
            court("bj.01", "北京市第一中级人民法院"),
            Change::User(judge_rec.clone()),
            Change::User(public_rec.clone()),
        ],
    );
    let sign = |b: &UpdateBody| b.sign(&[CHAIN.to_vec()], &*authority).unwrap();
    let good = sign(&directory);
    let mut forged = good.clone();
    let at = forged.len() / 3;
    forged[at] ^= 0x40;
    let mut with_clearance = judge_rec.clone();
    with_clearance
        .attributes
        .push(("clearance".into(), "secret".into()));
    with_clearance.attributes.sort();
    let mut judge_hash = judge_rec;
    judge_hash.credentials.push(("password-hash".into(), {
        let mut v = FUZZ_NOW.as_millis().to_be_bytes().to_vec();
        v.extend_from_slice(b"$argon2id$judge");
        v
    }));
    judge_hash.credentials.sort();
    vec![
        ("directory.tpdu", good, Some(UpdateKind::Directory)),
        (
            "registration.tpdu",
            sign(&body(
                UpdateKind::Registration,
                vec![Change::User(public_rec)],
            )),
            Some(UpdateKind::Registration),
        ),
        (
            "empty.tpdu",
            sign(&body(UpdateKind::Directory, vec![])),
            Some(UpdateKind::Directory),
        ),
        ("forged.tpdu", forged, None),
        (
            "other-signer.tpdu",
            directory.sign(&[CHAIN.to_vec()], &other).unwrap(),
            None,
        ),
        (
            "clearance.tpdu",
            sign(&body(
                UpdateKind::Directory,
                vec![Change::User(with_clearance)],
            )),
            None,
        ),
        (
            "judge-hash.tpdu",
            sign(&body(UpdateKind::Directory, vec![Change::User(judge_hash)])),
            None,
        ),
        (
            "staff-registration.tpdu",
            sign(&body(
                UpdateKind::Registration,
                vec![Change::User(UserRecord::from_user(&judge(), &[]))],
            )),
            None,
        ),
        ("garbage.tpdu", b"\x01\x01not an update".to_vec(), None),
    ]
}

fn passes(data: &[u8]) -> Option<UpdateKind> {
    let authority = internal::fuzz_directory_signer().unwrap();
    let key = tianping_core::Signer::public_key(&*authority);
    struct Key(tianping_core::PublicKey);
    impl tianping_idp::SignerCheck for Key {
        fn check(
            &self,
            _: &[Vec<u8>],
            key: &tianping_core::PublicKey,
            _: &ZoneName,
            _: UnixTime,
        ) -> Result<(), String> {
            (*key == self.0)
                .then_some(())
                .ok_or_else(|| "other key".into())
        }
    }
    let terms = internal::fuzz_directory_terms();
    let signers = Key(key);
    [UpdateKind::Directory, UpdateKind::Registration]
        .into_iter()
        .find(|kind| {
            let (s, t) = match kind {
                UpdateKind::Directory => (zone("private"), zone("internet")),
                UpdateKind::Registration => (zone("internet"), zone("private")),
            };
            let e = Expect {
                kind: *kind,
                source: &s,
                to: &t,
                terms: &terms,
                signers: &signers,
                last_applied: None,
            };
            check_update(data, &e).is_ok()
        })
}

#[test]
fn idp_directory_update_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(TARGET);
    if std::env::var_os("IDP_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes, _) in seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let names: Vec<&str> = seeds().iter().map(|(n, _, _)| *n).collect();
    let mut seen = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in `{}`", dir.display());
    let expected = seeds();
    for path in files {
        let data = std::fs::read(&path).unwrap();
        internal::fuzz_directory_update(&data);
        // seeded mutations: a byte replaced, a prefix, the seed doubled
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut m = data.clone();
            if let Some(b) = usize::try_from(state % 1_000_003)
                .ok()
                .and_then(|i| m.get_mut(i % data.len().max(1)))
            {
                *b = state.to_le_bytes()[1];
            }
            internal::fuzz_directory_update(&m);
            assert!(
                m == data || passes(&m).is_none(),
                "a changed byte still passes"
            );
        }
        internal::fuzz_directory_update(&data[..data.len() / 2]);
        internal::fuzz_directory_update(&[data.clone(), data.clone()].concat());
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if let Some((_, _, kind)) = expected.iter().find(|(n, _, _)| *n == name) {
            seen += 1;
            assert_eq!(passes(&data), *kind, "{name}");
        }
    }
    assert_eq!(seen, names.len(), "every seed is in the corpus");
}
