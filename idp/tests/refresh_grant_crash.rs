//! Refresh grants answered over real TLS survive SIGKILL once answered: a child process serves
//! the provider (sled store, audit log) on loopback port 0 and drives concurrent refresh grants
//! at it, one task per family, so that grants share group commits; it reports each answer it
//! received. Killed at seeded points, the reopened store holds every answered rotation (the
//! family's current token is the one last answered, or it rotated once more in a grant whose
//! answer never came, and then the answered token is among those rotated out), no family is
//! revoked, every answered access token's `token.refresh` event is in the reopened audit log,
//! and the log never holds more refresh events than the store holds rotations (a rotation is
//! durable no later than its event). The next child goes on from there.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod zone_tls;

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tianping_audit::AuditLog;
use tianping_core::{Acr, Algorithm, Amr, Clearance, ManualClock, RingSigner, Role, UnixTime};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    Client, ClientAuthMethod, FamilyId, GrantPolicy, GrantType, Grants, Identity, Idp, IdpParts,
    KeySet, SessionPolicy, SledStore, Store, TokenIssuer,
};
use tianping_net::{HostSet, ServerOptions, serve_tls};

const HOST: &str = "idp.private.tianping.localhost";
const ISS: &str = "https://idp.private.tianping.localhost";
const FAMILIES: usize = 8;
const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    d.as_ref().try_into().unwrap()
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

fn client() -> Client {
    Client {
        id: "case-app".into(),
        secret_sha256: Some(Client::hash_secret("s3cret")),
        auth_method: ClientAuthMethod::ClientSecretBasic,
        redirect_uris: vec!["https://case.example/cb".into()],
        post_logout_redirect_uris: vec![],
        grants: vec![GrantType::RefreshToken],
        native_loopback: false,
        extra_scopes: vec![],
    }
}

/// An access token's `jti`, read from its payload.
fn jti(access_token: &str) -> String {
    let payload = access_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

fn open_retrying<T>(open: impl Fn() -> Option<T>) -> T {
    // sled's lock can outlive the killed process for a moment: retry the open, bounded.
    (0..100)
        .find_map(|_| {
            open().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            })
        })
        .unwrap()
}

#[test]
#[expect(
    clippy::never_loop,
    reason = "the grants go on until the process is killed"
)]
#[ignore = "run by answered_refresh_grants_survive_sigkill in a child process"]
fn grant_child() {
    let (Ok(dir), Ok(tokens), Ok(seed)) = (
        std::env::var("TIANPING_GRANT_DIR"),
        std::env::var("TIANPING_GRANT_TOKENS"),
        std::env::var("TIANPING_GRANT_SEED"),
    ) else {
        return;
    };
    let dir = Path::new(&dir);
    let seed: u64 = seed.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tls_dir = dir.join(format!("tls-{seed}"));
        std::fs::create_dir_all(&tls_dir).unwrap();
        let (tls, root_pem) = zone_tls::zone_tls(&tls_dir, HOST);
        let store = Arc::new(SledStore::open(&dir.join("store")).unwrap());
        let audit = Arc::new(AuditLog::open_or_create(&dir.join("audit"), "idp.private").unwrap());
        let signer = Arc::new(RingSigner::generate(Algorithm::Es256).unwrap().0);
        let idp = Idp::new(IdpParts {
            issuer: TokenIssuer::new(ISS, KeySet::new(signer)),
            audience: "tianping".into(),
            store: store as Arc<dyn Store>,
            clients: vec![client()],
            audit,
            zone: "private".into(),
            clock: Arc::new(ManualClock::new(NOW)),
            rng: Arc::new(SeededRandom::new(seed)),
            grants: GrantPolicy::default(),
            sessions: SessionPolicy::default(),
        });
        let mut options = ServerOptions::new(HostSet::new([HOST]));
        options.http3 = false;
        let server = serve_tls("127.0.0.1:0".parse().unwrap(), Arc::new(tls), options, idp)
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
            .resolve(HOST, server.local_addr())
            .build()
            .unwrap();
        let url = format!("https://{HOST}:{}/token", server.local_addr().port());
        // The test harness's own `test grant_child ...` ends with no line break.
        println!();
        let mut tasks = Vec::new();
        for (k, token) in tokens.split(',').enumerate() {
            if token == "-" {
                continue;
            }
            let (http, url, mut token) = (http.clone(), url.clone(), token.to_owned());
            tasks.push(tokio::spawn(async move {
                loop {
                    // Each line is written whole (stdout is line-buffered).
                    println!("send {k}");
                    let resp = http
                        .post(&url)
                        .basic_auth("case-app", Some("s3cret"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(format!("grant_type=refresh_token&refresh_token={token}"))
                        .send()
                        .await
                        .unwrap();
                    assert!(resp.status().is_success(), "{}", resp.status());
                    let body: Value = resp.json().await.unwrap();
                    token = body["refresh_token"].as_str().unwrap().to_owned();
                    let jti = jti(body["access_token"].as_str().unwrap());
                    println!("ack {k} {token} {jti}");
                }
            }));
        }
        // The tasks grant until the parent kills this process.
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn answered_refresh_grants_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut tokens: Vec<Option<String>> = Vec::new();
    let mut ids: Vec<FamilyId> = Vec::new();
    {
        let store = SledStore::open(&dir.join("store")).unwrap();
        let grants = Grants::new(&store, GrantPolicy::default());
        let rng = SeededRandom::new(3);
        for _ in 0..FAMILIES {
            let (t, id) = grants
                .start_family("case-app", identity(), vec!["openid".into()], NOW, &rng)
                .unwrap();
            tokens.push(Some(t));
            ids.push(id);
        }
    }
    let first: Vec<String> = tokens.iter().flatten().cloned().collect();
    let mut seed = 0x0067_7261_6e74_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Rotations answered per family, over every round; access tokens answered.
    let mut answered = [0usize; FAMILIES];
    let mut jtis: Vec<String> = Vec::new();
    let mut in_doubt = 0;
    let mut replayed = 0;
    for round in 0..4u64 {
        if tokens.iter().all(Option::is_none) {
            break;
        }
        let list: Vec<&str> = tokens.iter().map(|t| t.as_deref().unwrap_or("-")).collect();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "grant_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TIANPING_GRANT_DIR", dir)
            .env("TIANPING_GRANT_TOKENS", list.join(","))
            .env("TIANPING_GRANT_SEED", (100 + round).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = 20 + next() % 300;
        let mut sent = [false; FAMILIES];
        let mut seen = 0;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // One line of the child's: a grant sent for family k, or answered with its new token
        // and its access token's `jti`.
        let mut take = |line: &str, seen: &mut u64| {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["send", k] => sent[k.parse::<usize>().unwrap()] = true,
                ["ack", k, token, jti] => {
                    let k: usize = k.parse().unwrap();
                    sent[k] = false;
                    tokens[k] = Some((*token).to_owned());
                    answered[k] += 1;
                    jtis.push((*jti).to_owned());
                    *seen += 1;
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
        // What the child wrote before the kill and after the lines read: answers it received,
        // whose rotations the reopened store must hold.
        for line in lines.map_while(Result::ok) {
            take(&line, &mut seen);
        }
        assert!(seen > 0, "the child answered nothing in round {round}");

        let store = open_retrying(|| SledStore::open(&dir.join("store")).ok());
        let audit = open_retrying(|| AuditLog::open(&dir.join("audit")).ok());
        // The rotations the store lost, made again from their audit events (as a provider
        // starting on it does); a second replay finds nothing more.
        replayed += Idp::recover_rotations(&store, &audit).unwrap();
        assert_eq!(Idp::recover_rotations(&store, &audit).unwrap(), 0);
        let mut rotations = 0;
        for (k, id) in ids.iter().enumerate() {
            let f = store.family(id).unwrap().unwrap();
            assert!(!f.revoked, "family {k} revoked in round {round}");
            rotations += f.rotated.len();
            let Some(token) = tokens[k].clone() else {
                continue;
            };
            let hash = sha256(token.as_bytes());
            if f.rotated.len() == answered[k] {
                assert_eq!(f.current, hash, "family {k}: not its last answered token");
                continue;
            }
            // A grant sent and not answered may have rotated the family durably: the answered
            // token is then rotated out, and the family's new token is known to nobody.
            assert!(
                sent[k] && f.rotated.len() == answered[k] + 1,
                "family {k} lost an answered rotation in round {round}: {} rotations, {} answered",
                f.rotated.len(),
                answered[k]
            );
            assert!(f.rotated.contains(&hash) && f.current != hash);
            tokens[k] = None;
            in_doubt += 1;
        }
        let refreshed: HashSet<String> = audit
            .entries(0)
            .map(Result::unwrap)
            .filter(|r| r.event.action == "token.refresh")
            .map(|r| r.event.object)
            .collect();
        for j in &jtis {
            assert!(
                refreshed.contains(j),
                "round {round}: answered access token {j} has no audit event"
            );
        }
        assert!(
            refreshed.len() <= rotations,
            "round {round}: {} refresh events for {rotations} rotations",
            refreshed.len()
        );
        drop((store, audit));
    }
    eprintln!("{replayed} rotations made again from the audit log over the rounds");
    // After the last kill: each family's last answered token rotates, and its first token,
    // rotated out before the kills, revokes the family.
    let store = open_retrying(|| SledStore::open(&dir.join("store")).ok());
    let grants = Grants::new(&store, GrantPolicy::default());
    let rng = SeededRandom::new(9);
    for (k, token) in tokens.iter().enumerate() {
        let Some(token) = token else { continue };
        let (_, next) = grants.use_refresh(token, "case-app", NOW, &rng).unwrap();
        assert_ne!(&next, token);
        let e = grants
            .use_refresh(&first[k], "case-app", NOW, &rng)
            .unwrap_err();
        assert_eq!(e, tianping_idp::IdpError::RefreshReused, "family {k}");
        assert!(store.family(&ids[k]).unwrap().unwrap().revoked);
    }
    assert!(jtis.len() > 20, "{} grants answered", jtis.len());
    assert!(in_doubt < FAMILIES * 4);
}
