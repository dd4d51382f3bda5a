//! Deferred refresh rotations in the sled store survive SIGKILL once acknowledged: a child
//! process rotates families and reports each rotation after awaiting the store's shared flush;
//! killed at seeded points, the reopened store has every acknowledged rotation (the family's
//! current token is the acknowledged one or the one the child was rotating to), never a
//! revoked family, and the chain goes on from there in the next child.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use tianping_core::{Acr, Amr, Clearance, Role, UnixTime};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{GrantPolicy, Grants, Identity, IssuedAccessToken, SledStore, Store};

const FAMILIES: usize = 6;
const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

fn identity() -> Identity {
    Identity {
        sub: "judge-0001".parse().unwrap(),
        court: Some("bj.01.03".parse().unwrap()),
        roles: vec![Role::Judge],
        clearance: Clearance::Secret,
        acr: Acr::Otp,
        amr: vec![Amr::Pwd, Amr::Otp],
        zone: "private".parse().unwrap(),
        auth_time: NOW,
        device: None,
    }
}

#[test]
#[ignore = "run by acknowledged_rotations_survive_sigkill in a child process"]
fn rotation_child() {
    let (Ok(dir), Ok(tokens), Ok(seed)) = (
        std::env::var("TIANPING_REFRESH_STORE"),
        std::env::var("TIANPING_REFRESH_TOKENS"),
        std::env::var("TIANPING_REFRESH_SEED"),
    ) else {
        return;
    };
    let store = SledStore::open(Path::new(&dir)).unwrap();
    let rng = SeededRandom::new(seed.parse().unwrap());
    let grants = Grants::new(&store, GrantPolicy::default());
    let mut tokens: Vec<String> = tokens.split(',').map(str::to_owned).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut out = std::io::stdout().lock();
    // The test harness's own `test rotation_child ...` ends with no line break.
    writeln!(out).unwrap();
    for i in 0u64.. {
        let k = usize::try_from(i).unwrap() % tokens.len();
        let mut issue = |_: &tianping_idp::RefreshFamily| {
            Ok(IssuedAccessToken {
                token: String::new(),
                jti: format!("jti-{seed}-{i}"),
                expires_at: NOW.saturating_add(std::time::Duration::from_secs(300)),
            })
        };
        let (_, next, _) = grants
            .rotate_refresh_deferred(&tokens[k], "case-app", NOW, &rng, &mut issue)
            .unwrap();
        writeln!(out, "try {k} {next}").unwrap();
        rt.block_on(store.flushed()).unwrap();
        writeln!(out, "ok {k}").unwrap();
        tokens[k] = next;
    }
}

#[test]
fn acknowledged_rotations_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    {
        let store = SledStore::open(&dir).unwrap();
        let grants = Grants::new(&store, GrantPolicy::default());
        let rng = SeededRandom::new(3);
        for _ in 0..FAMILIES {
            let (t, id) = grants
                .start_family("case-app", identity(), vec!["openid".into()], NOW, &rng)
                .unwrap();
            tokens.push(t);
            ids.push(id);
        }
    }
    let mut seed = 0x0072_6566_7265_7368_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut acked_total = 0;
    for round in 0..6u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "rotation_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TIANPING_REFRESH_STORE", &dir)
            .env("TIANPING_REFRESH_TOKENS", tokens.join(","))
            .env("TIANPING_REFRESH_SEED", (100 + round).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = 1 + next() % 400;
        let mut trying: Vec<Option<String>> = vec![None; FAMILIES];
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        // One line of the child's (each written whole, by one write): a rotation tried, with
        // its new token, or acknowledged.
        let mut take = |line: &str, seen: &mut u64| {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("try"), Some(k), Some(t)) => {
                    if let Ok(k) = k.parse::<usize>() {
                        trying[k] = Some(t.to_owned());
                    }
                }
                (Some("ok"), Some(k), None) => {
                    if let Some(t) = k
                        .parse::<usize>()
                        .ok()
                        .and_then(|k| trying[k].take().map(|t| (k, t)))
                    {
                        tokens[t.0] = t.1;
                        *seen += 1;
                    }
                }
                _ => {}
            }
        };
        while seen < kill_after {
            let Some(line) = lines.next() else { break };
            take(&line.unwrap(), &mut seen);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // what the child wrote after the lines read and before the kill: rotations it went on
        // with, whose state the reopened store holds
        for line in lines.map_while(Result::ok) {
            take(&line, &mut seen);
        }
        assert!(seen > 0, "the child acknowledged nothing");
        acked_total += seen;
        // sled's lock can outlive the killed process for a moment: retry the open, bounded.
        let store = (0..100)
            .find_map(|_| {
                SledStore::open(&dir).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                })
            })
            .unwrap();
        for (k, id) in ids.iter().enumerate() {
            let f = store.family(id).unwrap().unwrap();
            assert!(!f.revoked, "family {k} revoked");
            if f.current.as_slice() == sha256(tokens[k].as_bytes()) {
                continue;
            }
            // The rotation under way when killed may have become durable without its answer.
            let pending = trying[k].take().unwrap_or_default();
            assert_eq!(
                f.current.as_slice(),
                sha256(pending.as_bytes()),
                "family {k} lost an acknowledged rotation in round {round}"
            );
            tokens[k] = pending;
        }
    }
    assert!(acked_total > 6);
}
