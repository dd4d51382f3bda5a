//! What a browser session started ends with it: two codes of one session redeemed at the same
//! instant over real TLS both note their refresh family on the session, and its logout revokes
//! both (once the user confirms it: a bare `GET /logout` only asks, and a post without the
//! session's CSRF token is refused); many notes made at once on the sled store are all kept
//! and all revoked.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod logout_form;
mod zone_tls;

use std::sync::{Arc, Barrier};

use reqwest::StatusCode;
use serde_json::Value;
use tianping_audit::AuditLog;
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, Clock as _, ManualClock, RingSigner, Role, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    AuthorizationRequest, Client, ClientAuthMethod, GrantPolicy, GrantType, Grants, Identity, Idp,
    IdpParts, KeySet, SESSION_COOKIE, SessionPolicy, Sessions, SledStore, Store, TokenIssuer,
    parse_authorization,
};
use tianping_net::{HostSet, ServerHandle, ServerOptions, serve_tls};

const HOST: &str = "idp.private.tianping.localhost";
const ISS: &str = "https://idp.private.tianping.localhost";
const CB: &str = "https://case.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn client(id: &str) -> Client {
    Client {
        id: id.into(),
        secret_sha256: Some(Client::hash_secret("s3cret")),
        auth_method: ClientAuthMethod::ClientSecretBasic,
        redirect_uris: vec![CB.into()],
        post_logout_redirect_uris: vec![],
        grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        native_loopback: false,
        extra_scopes: vec![],
    }
}

fn request() -> AuthorizationRequest {
    let q = format!(
        "response_type=code&client_id=case-app&redirect_uri={}&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256",
        tianping_idp::form_encode(CB)
    );
    parse_authorization(q.as_bytes(), ISS, &|id| Some(client(id)))
        .unwrap()
        .0
}

fn judge(now: UnixTime) -> Identity {
    Identity {
        sub: "judge-0001".parse().unwrap(),
        court: Some("bj.01.03".parse().unwrap()),
        roles: vec![Role::Judge],
        clearance: Clearance::Secret,
        acr: Acr::Otp,
        amr: vec![Amr::Pwd, Amr::Otp],
        zone: "private".parse().unwrap(),
        auth_time: now,
        device: None,
    }
}

struct World {
    _dir: tempfile::TempDir,
    server: ServerHandle,
    http: reqwest::Client,
    clock: Arc<ManualClock>,
    store: Arc<SledStore>,
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.server.local_addr().port())
    }

    async fn token(&self, form: String) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .basic_auth("case-app", Some("s3cret"))
            .body(form)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn redeem(&self, code: &str) -> (StatusCode, Value) {
        self.token(format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
            tianping_idp::form_encode(CB)
        ))
        .await
    }

    async fn refresh(&self, rt: &str) -> (StatusCode, Value) {
        self.token(format!("grant_type=refresh_token&refresh_token={rt}"))
            .await
    }
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (tls, root_pem) = zone_tls::zone_tls(dir.path(), HOST);
    let p = |n: &str| dir.path().join(n);
    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let store = Arc::new(SledStore::open(&p("store")).unwrap());
    let audit = Arc::new(AuditLog::create(&p("audit"), "idp.private").unwrap());
    let signer = Arc::new(RingSigner::generate(Algorithm::Es256).unwrap().0);
    let idp = Idp::new(IdpParts {
        issuer: TokenIssuer::new(ISS, KeySet::new(signer)),
        audience: "tianping".into(),
        store: Arc::clone(&store) as Arc<dyn Store>,
        clients: vec![client("case-app")],
        audit,
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
        clock,
        store,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_codes_of_a_session_redeemed_at_once_both_end_at_its_logout() {
    let w = world().await;
    let now = w.clock.now();
    let rng = SeededRandom::new(5);
    let sessions = Sessions::new(&*w.store, SessionPolicy::default());
    let grants = Grants::new(&*w.store, GrantPolicy::default());
    for round in 0..4 {
        let (sid, _) = sessions.sign_in(None, judge(now), now, &rng).unwrap();
        let issue = || {
            grants
                .issue_code_in_session(&request(), judge(now), Some(&sid), now, &rng)
                .unwrap()
        };
        let (a, b) = (issue(), issue());
        let ((sa, ja), (sb, jb)) = tokio::join!(w.redeem(&a), w.redeem(&b));
        assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK), "{ja} {jb}");
        let rts = [
            ja["refresh_token"].as_str().unwrap().to_owned(),
            jb["refresh_token"].as_str().unwrap().to_owned(),
        ];
        let cookie = format!("{SESSION_COOKIE}={sid}");
        // a bare GET (a link on any site) only asks: nothing ends
        let resp = w
            .http
            .get(w.url("/logout"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "round {round}");
        let page = resp.text().await.unwrap();
        assert!(page.contains("Sign out?"), "{page}");
        assert!(
            sessions.get(&sid, now).is_ok(),
            "round {round}: ended by a GET"
        );
        let csrf = logout_form::csrf_of(&page);
        // a post without the session's token (a forged form) is refused, and ends nothing
        for bad in ["", "csrf=forged"] {
            let resp = logout_form::post(&w.http, w.url("/logout"), &cookie, bad.into()).await;
            assert_ne!(resp.status(), StatusCode::OK, "round {round}: {bad}");
            assert!(sessions.get(&sid, now).is_ok(), "round {round}: {bad}");
        }
        let resp =
            logout_form::post(&w.http, w.url("/logout"), &cookie, format!("csrf={csrf}")).await;
        assert_eq!(resp.status(), StatusCode::OK, "round {round}");
        assert!(resp.text().await.unwrap().contains("Signed out"));
        for rt in &rts {
            let (status, body) = w.refresh(rt).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_grant")),
                "round {round}: a family of the session outlived its logout: {body}"
            );
        }
        // nothing is left noted for the session
        assert!(grants.end_session_families(&sid).unwrap().is_empty());
    }
    w.server.shutdown().await;
}

#[test]
fn notes_made_at_once_on_the_sled_store_are_all_kept_and_all_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let now = UnixTime::from_secs(1_800_000_000);
    let grants = Grants::new(&store, GrantPolicy::default());
    let session = [7u8; 32];
    let threads = 4;
    let per_thread = 25;
    let barrier = Barrier::new(threads);
    let families: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (grants, barrier) = (&grants, &barrier);
                s.spawn(move || {
                    let rng = SeededRandom::new(100 + u64::try_from(t).unwrap());
                    let mine: Vec<_> = (0..per_thread)
                        .map(|_| {
                            grants
                                .start_family("case-app", judge(now), vec![], now, &rng)
                                .unwrap()
                                .1
                        })
                        .collect();
                    barrier.wait();
                    for f in &mine {
                        grants.note_session_family(&session, f).unwrap();
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut ended = grants.end_families_of_session(&session).unwrap();
    ended.sort_unstable();
    let mut all = families.clone();
    all.sort_unstable();
    assert_eq!(ended, all, "every note made at once is kept");
    for f in &families {
        assert!(store.family(f).unwrap().unwrap().revoked);
    }
    assert!(grants.end_families_of_session(&session).unwrap().is_empty());
}
