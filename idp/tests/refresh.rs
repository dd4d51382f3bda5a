//! The refresh grant over real TLS on loopback port 0: the account is checked before the token
//! rotates (a locked account keeps its refresh token for when it is unlocked), a scope refused
//! leaves the token usable, the access token is recorded with the rotation in one update and
//! expired ones are dropped from the family, reuse still revokes the family and its tokens, and
//! concurrent rotations sharing flushes each end where their answers say.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod zone_tls;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;
use tianping_audit::AuditLog;
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, Clock as _, ManualClock, RingSigner, Role, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    Client, ClientAuthMethod, FamilyId, GrantPolicy, GrantType, Grants, Identity, Idp, IdpError,
    IdpParts, KeySet, LockoutState, SessionPolicy, SledStore, Store, TokenIssuer,
};
use tianping_net::{HostSet, ServerHandle, ServerOptions, serve_tls};

const HOST: &str = "idp.private.tianping.localhost";
const ISS: &str = "https://idp.private.tianping.localhost";

fn client(id: &str, method: ClientAuthMethod) -> Client {
    Client {
        id: id.into(),
        secret_sha256: Some(Client::hash_secret("s3cret")),
        auth_method: method,
        redirect_uris: vec!["https://case.example/cb".into()],
        post_logout_redirect_uris: vec![],
        grants: vec![
            GrantType::AuthorizationCode,
            GrantType::ClientCredentials,
            GrantType::RefreshToken,
        ],
        native_loopback: false,
        extra_scopes: vec!["cases.read".into()],
    }
}

struct World {
    _dir: tempfile::TempDir,
    server: ServerHandle,
    http: reqwest::Client,
    audit: Arc<AuditLog>,
    clock: Arc<ManualClock>,
    refresh_token: String,
    store: Arc<SledStore>,
    family: FamilyId,
}

impl World {
    /// The refresh grant of `case-app` for `token`.
    async fn refresh(&self, token: &str, scope: Option<&str>) -> (StatusCode, Value) {
        let mut form = format!("grant_type=refresh_token&refresh_token={token}");
        if let Some(s) = scope {
            form.push_str(&format!("&scope={s}"));
        }
        self.token(&form, Some(("case-app", "s3cret"))).await
    }

    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.server.local_addr().port())
    }

    async fn token(&self, form: &str, basic: Option<(&str, &str)>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(self.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        if status.is_success() {
            assert_eq!(resp.headers()["cache-control"], "no-store");
        }
        (status, resp.json().await.unwrap())
    }
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (tls, root_pem) = zone_tls::zone_tls(dir.path(), HOST);
    let p = |n: &str| dir.path().join(n);

    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let store = Arc::new(SledStore::open(&p("store")).unwrap());
    let identity = Identity {
        sub: "judge-0001".parse().unwrap(),
        court: Some("bj.01.03".parse().unwrap()),
        roles: vec![Role::Judge],
        clearance: Clearance::Secret,
        acr: Acr::Otp,
        amr: vec![Amr::Pwd, Amr::Otp],
        zone: "private".parse().unwrap(),
        auth_time: clock.now(),
        device: None,
    };
    let (refresh_token, family) = Grants::new(&*store, GrantPolicy::default())
        .start_family(
            "case-app",
            identity,
            vec!["openid".into(), "profile".into()],
            clock.now(),
            &SeededRandom::new(1),
        )
        .unwrap();
    let audit = Arc::new(AuditLog::create(&p("audit"), "idp.private").unwrap());
    let signer = Arc::new(RingSigner::generate(Algorithm::Es256).unwrap().0);
    let idp = Idp::new(IdpParts {
        issuer: TokenIssuer::new(ISS, KeySet::new(signer)),
        audience: "tianping".into(),
        store: Arc::clone(&store) as Arc<dyn Store>,
        clients: vec![
            client("case-app", ClientAuthMethod::ClientSecretBasic),
            client("post-app", ClientAuthMethod::ClientSecretPost),
        ],
        audit: Arc::clone(&audit),
        zone: "private".into(),
        clock: clock.clone(),
        rng: Arc::new(SeededRandom::new(2)),
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
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    World {
        _dir: dir,
        server,
        http,
        audit,
        clock,
        refresh_token,
        store,
        family,
    }
}

/// An access token's `jti`, read from its payload.
fn jti(access_token: &str) -> String {
    let payload = access_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_locked_account_is_refused_before_its_refresh_token_rotates() {
    let w = world().await;
    let now = w.clock.now();
    let locked = LockoutState {
        failures: vec![now; 5],
        locks: 1,
        not_before: Some(now.saturating_add(Duration::from_secs(600))),
    };
    w.store.put_lockout("judge-0001", &locked).unwrap();
    let before = w.store.family(&w.family).unwrap().unwrap();
    let size = w.audit.size();
    let (status, body) = w.refresh(&w.refresh_token, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // Nothing changed: the family, its current token, the audit log.
    assert_eq!(w.store.family(&w.family).unwrap().unwrap(), before);
    assert_eq!(w.audit.size(), size);
    // A scope the family was not granted is refused the same way, changing nothing.
    w.store
        .put_lockout("judge-0001", &LockoutState::default())
        .unwrap();
    let (status, body) = w.refresh(&w.refresh_token, Some("cases.write")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(w.store.family(&w.family).unwrap().unwrap(), before);
    // Unlocked, the same token works: it was not rotated away while the account was locked.
    let (status, body) = w.refresh(&w.refresh_token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = w.store.family(&w.family).unwrap().unwrap();
    assert_ne!(after.current, before.current);
    assert_eq!(after.rotated.len(), 1);
    assert!(after.rotated.contains(&before.current));
    assert!(!after.rotated.contains(&after.current));
    w.server.shutdown().await;
}

#[tokio::test]
async fn the_rotation_records_its_access_token_drops_expired_ones_and_reuse_revokes() {
    let w = world().await;
    let (status, body) = w.refresh(&w.refresh_token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first_rt = w.refresh_token.clone();
    let mut rt = body["refresh_token"].as_str().unwrap().to_owned();
    let first_jti = jti(body["access_token"].as_str().unwrap());
    let f = w.store.family(&w.family).unwrap().unwrap();
    assert_eq!(
        f.access_tokens
            .iter()
            .map(|(j, _)| j.clone())
            .collect::<Vec<_>>(),
        vec![first_jti.clone()]
    );
    // Two more within the access token's life: all three are kept, in order.
    let mut jtis = vec![first_jti];
    for _ in 0..2 {
        w.clock.advance(Duration::from_secs(60));
        let (status, body) = w.refresh(&rt, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        rt = body["refresh_token"].as_str().unwrap().to_owned();
        jtis.push(jti(body["access_token"].as_str().unwrap()));
    }
    let f = w.store.family(&w.family).unwrap().unwrap();
    assert_eq!(
        f.access_tokens
            .iter()
            .map(|(j, _)| j.clone())
            .collect::<Vec<_>>(),
        jtis
    );
    // At 370 s the first two (expiring at 300 and 360 s) have expired: only live access tokens
    // stay in the family.
    w.clock.advance(Duration::from_secs(250));
    let (status, body) = w.refresh(&rt, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let live = jti(body["access_token"].as_str().unwrap());
    let now = w.clock.now();
    let f = w.store.family(&w.family).unwrap().unwrap();
    assert!(f.access_tokens.iter().all(|(_, until)| *until > now));
    let kept: Vec<String> = f.access_tokens.iter().map(|(j, _)| j.clone()).collect();
    assert_eq!(kept, vec![jtis[2].clone(), live.clone()]);
    assert_eq!(f.rotated.len(), 4);
    // The first token again: the family is revoked with its live access tokens.
    let (status, body) = w.refresh(&first_rt, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert!(w.store.family(&w.family).unwrap().unwrap().revoked);
    for j in &kept {
        assert!(w.store.is_token_revoked(j).unwrap(), "{j}");
    }
    assert!(body.get("refresh_token").is_none());
    w.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_share_flushes_and_each_chain_ends_at_its_last_token() {
    let w = Arc::new(world().await);
    let first = w.store.family(&w.family).unwrap().unwrap();
    let grants = Grants::new(&*w.store, GrantPolicy::default());
    let rng = SeededRandom::new(7);
    let mut chains = Vec::new();
    for _ in 0..12 {
        let (rt, id) = grants
            .start_family(
                "case-app",
                first.identity.clone(),
                first.scope.clone(),
                w.clock.now(),
                &rng,
            )
            .unwrap();
        chains.push((rt, id));
    }
    let tasks: Vec<_> = chains
        .into_iter()
        .map(|(mut rt, id)| {
            let w = Arc::clone(&w);
            tokio::spawn(async move {
                let mut jtis = Vec::new();
                for _ in 0..8 {
                    let (status, body) = w.refresh(&rt, None).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    rt = body["refresh_token"].as_str().unwrap().to_owned();
                    jtis.push(jti(body["access_token"].as_str().unwrap()));
                }
                (id, rt, jtis)
            })
        })
        .collect();
    for t in tasks {
        let (id, rt, jtis) = t.await.unwrap();
        let f = w.store.family(&id).unwrap().unwrap();
        let current = ring::digest::digest(&ring::digest::SHA256, rt.as_bytes());
        assert_eq!(f.current.as_slice(), current.as_ref());
        assert_eq!(f.rotated.len(), 8);
        assert_eq!(
            f.access_tokens
                .iter()
                .map(|(j, _)| j.clone())
                .collect::<Vec<_>>(),
            jtis
        );
    }
    let refreshes = (0..w.audit.size())
        .filter(|i| w.audit.get(*i).unwrap().unwrap().event.action == "token.refresh")
        .count();
    assert_eq!(refreshes, 12 * 8);
    let w = Arc::into_inner(w).unwrap();
    w.server.shutdown().await;
}

#[test]
fn rotate_refresh_on_the_memory_store_changes_nothing_when_issuing_fails_and_reuse_revokes() {
    let store = tianping_idp::MemoryStore::new();
    let grants = Grants::new(&store, GrantPolicy::default());
    let rng = SeededRandom::new(5);
    let now = UnixTime::from_secs(1_800_000_000);
    let identity = Identity {
        sub: "clerk-0002".parse().unwrap(),
        court: Some("bj.01.03".parse().unwrap()),
        roles: vec![Role::Judge],
        clearance: Clearance::Secret,
        acr: Acr::Otp,
        amr: vec![Amr::Pwd, Amr::Otp],
        zone: "private".parse().unwrap(),
        auth_time: now,
        device: None,
    };
    let (rt, id) = grants
        .start_family("case-app", identity, vec!["openid".into()], now, &rng)
        .unwrap();
    let before = store.family(&id).unwrap().unwrap();
    let mut refuse = |_: &tianping_idp::RefreshFamily| Err(IdpError::AccountInactive);
    assert_eq!(
        grants
            .rotate_refresh(&rt, "case-app", now, &rng, &mut refuse)
            .unwrap_err(),
        IdpError::AccountInactive
    );
    assert_eq!(store.family(&id).unwrap().unwrap(), before);
    let calls = std::cell::Cell::new(0);
    let mut issue = |f: &tianping_idp::RefreshFamily| {
        calls.set(calls.get() + 1);
        Ok(tianping_idp::IssuedAccessToken {
            token: String::new(),
            jti: format!("jti-{}", f.rotated.len()),
            expires_at: now.saturating_add(Duration::from_secs(300)),
        })
    };
    let (after, next, at) = grants
        .rotate_refresh(&rt, "case-app", now, &rng, &mut issue)
        .unwrap();
    assert_eq!(after, store.family(&id).unwrap().unwrap());
    assert_eq!(after.access_tokens, vec![(at.jti.clone(), at.expires_at)]);
    // Another client's token, a reused one: `issue` is not called for either.
    assert_eq!(
        grants
            .rotate_refresh(&next, "post-app", now, &rng, &mut issue)
            .unwrap_err(),
        IdpError::RefreshWrongClient
    );
    assert_eq!(
        grants
            .rotate_refresh(&rt, "case-app", now, &rng, &mut issue)
            .unwrap_err(),
        IdpError::RefreshReused
    );
    assert_eq!(calls.get(), 1);
    assert!(store.family(&id).unwrap().unwrap().revoked);
    assert!(store.is_token_revoked(&at.jti).unwrap());
    assert_eq!(
        grants
            .rotate_refresh(&next, "case-app", now, &rng, &mut issue)
            .unwrap_err(),
        IdpError::RefreshInvalid
    );
}
