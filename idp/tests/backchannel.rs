//! Back-channel logout (OpenID Back-Channel Logout 1.0) over real TLS on loopback port 0: a
//! test client registered for it receives, at RP-initiated logout, a logout token whose
//! signature the test checks against the provider's JWKS and each of whose claims it checks;
//! a client down for a while gets its token once when it is back, the delivery waiting in the
//! store across a restart of the provider, every attempt audited.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod logout_form;
mod zone_tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tianping_audit::AuditLog;
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, Clock as _, ManualClock, RingSigner, Role, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    BACKCHANNEL_LOGOUT_EVENT, BackchannelRegistration, Client, ClientAuthMethod, GrantPolicy,
    GrantType, Grants, Identity, Idp, IdpParts, KeySet, LogoutSender, SESSION_COOKIE,
    SessionPolicy, Sessions, SledStore, Store, TokenIssuer, keys_from_jwks, parse_authorization,
    pending_logouts, register_backchannel, verify_logout_token, verify_with,
};
use tianping_net::{
    Body, BoxFuture, Handler, HostSet, ServerHandle, ServerOptions, full, serve_tls,
};

const HOST: &str = "idp.private.tianping.localhost";
const ISS: &str = "https://idp.private.tianping.localhost";
const RP_HOST: &str = "rp.private.tianping.localhost";
const CB: &str = "https://case.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn client() -> Client {
    Client {
        id: "case-app".into(),
        secret_sha256: Some(Client::hash_secret("s3cret")),
        auth_method: ClientAuthMethod::ClientSecretBasic,
        redirect_uris: vec![CB.into()],
        post_logout_redirect_uris: vec![],
        grants: vec![GrantType::AuthorizationCode],
        native_loopback: false,
        extra_scopes: vec![],
    }
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

/// The relying party's back-channel endpoint: keeps each POST's body, answers 200.
#[derive(Clone, Default)]
struct Rp {
    received: Arc<Mutex<Vec<(String, String)>>>,
}

impl Handler for Rp {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let received = Arc::clone(&self.received);
        Box::pin(async move {
            let ct = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = req.into_body().bytes().await.unwrap();
            received
                .lock()
                .unwrap()
                .push((ct, String::from_utf8(body.to_vec()).unwrap()));
            Response::new(full(""))
        })
    }
}

/// The relying party's HTTPS server on `addr`, with the certificate made at its first start.
async fn serve_rp(dir: &Path, addr: SocketAddr, rp: Rp) -> ServerHandle {
    let tls = if dir.join("tls.pem").exists() {
        tianping_certs::ServerTlsBuilder::new(dir.join("tls.pem"), dir.join("tls.key"))
            .client_auth(
                tianping_certs::ClientAuth::None,
                dir.join("trust.pem"),
                vec![],
            )
            .build()
            .unwrap()
    } else {
        zone_tls::zone_tls(dir, RP_HOST).0
    };
    let mut options = ServerOptions::new(HostSet::new([RP_HOST]));
    options.http3 = false;
    serve_tls(addr, Arc::new(tls), options, rp).await.unwrap()
}

/// The provider's side of the POST: HTTPS trusting the relying party's CA only.
struct HttpsSender(reqwest::Client);

impl LogoutSender for HttpsSender {
    fn post<'a>(
        &'a self,
        uri: &'a str,
        form: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let resp = self
                .0
                .post(uri)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("answered {}", resp.status()))
            }
        })
    }
}

struct World {
    server: ServerHandle,
    idp: Idp,
    http: reqwest::Client,
    store: Arc<SledStore>,
    audit: Arc<AuditLog>,
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.server.local_addr().port())
    }

    /// A session signed in, a code issued in it redeemed (the client is noted on the session):
    /// the session id and the ID token.
    async fn session_with_tokens(&self, now: UnixTime, seed: u64) -> (String, String) {
        let rng = SeededRandom::new(seed);
        let (sid, _) = Sessions::new(&*self.store, SessionPolicy::default())
            .sign_in(None, judge(now), now, &rng)
            .unwrap();
        let q = format!(
            "response_type=code&client_id=case-app&redirect_uri={}&scope=openid&nonce=n-1&code_challenge={CHALLENGE}&code_challenge_method=S256",
            tianping_idp::form_encode(CB)
        );
        let request = parse_authorization(q.as_bytes(), ISS, &|_| Some(client()))
            .unwrap()
            .0;
        let code = Grants::new(&*self.store, GrantPolicy::default())
            .issue_code_in_session(&request, judge(now), Some(&sid), now, &rng)
            .unwrap();
        let resp = self
            .http
            .post(self.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .basic_auth("case-app", Some("s3cret"))
            .body(format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                tianping_idp::form_encode(CB)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        (sid, body["id_token"].as_str().unwrap().to_owned())
    }

    /// The user's logout: asked by `GET /logout`, confirmed by posting its form.
    async fn logout(&self, sid: &str) {
        let cookie = format!("{SESSION_COOKIE}={sid}");
        let resp = self
            .http
            .get(self.url("/logout"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let csrf = logout_form::csrf_of(&resp.text().await.unwrap());
        let resp = logout_form::post(
            &self.http,
            self.url("/logout"),
            &cookie,
            format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    fn events(&self, action: &str) -> Vec<tianping_audit::Event> {
        (0..self.audit.size())
            .map(|i| self.audit.get(i).unwrap().unwrap().event)
            .filter(|e| e.action == action)
            .collect()
    }
}

/// The provider on `dir` (its store, audit log and keys made on first use), telling the
/// relying party's CA-trusting sender to reach `rp` at `rp_addr`.
async fn world(dir: &Path, clock: Arc<ManualClock>, rp_root: &str, rp_addr: SocketAddr) -> World {
    let p = |n: &str| dir.join(n);
    std::fs::create_dir_all(p("idp")).unwrap();
    let (tls, root_pem) = zone_tls::zone_tls(&p("idp"), HOST);
    // opened again after a restart: the dropped store's flush thread can hold the lock a
    // moment, so the open is retried, bounded (as `client_auth.rs`'s `reopen`)
    let store = (0..100)
        .find_map(|_| {
            SledStore::open(&p("store")).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            })
        })
        .unwrap();
    let store = Arc::new(store);
    let audit = Arc::new(AuditLog::open_or_create(&p("audit"), "idp.private").unwrap());
    let key = p("key.pk8");
    if !key.exists() {
        let (_, der) = RingSigner::generate(Algorithm::Es256).unwrap();
        std::fs::write(&key, der.expose()).unwrap();
    }
    let der = std::fs::read(&key).unwrap();
    let signer = Arc::new(RingSigner::from_pkcs8(Algorithm::Es256, &der).unwrap());
    let sender = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(rp_root.as_bytes()).unwrap())
        .resolve(RP_HOST, rp_addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let idp = Idp::new(IdpParts {
        issuer: TokenIssuer::new(ISS, KeySet::new(signer)),
        audience: "tianping".into(),
        store: Arc::clone(&store) as Arc<dyn Store>,
        clients: vec![client()],
        audit: Arc::clone(&audit),
        zone: "private".into(),
        clock,
        rng: Arc::new(SeededRandom::new(2)),
        grants: GrantPolicy::default(),
        sessions: SessionPolicy::default(),
    })
    .with_backchannel(Arc::new(HttpsSender(sender)));
    let mut options = ServerOptions::new(HostSet::new([HOST]));
    options.http3 = false;
    let server = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(tls),
        options,
        idp.clone(),
    )
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
        server,
        idp,
        http,
        store,
        audit,
    }
}

/// The RP's CA (PEM) and a first server, so its address is known.
async fn first_rp(dir: &Path, rp: Rp) -> (String, ServerHandle) {
    std::fs::create_dir_all(dir).unwrap();
    let server = serve_rp(dir, "127.0.0.1:0".parse().unwrap(), rp).await;
    let root = std::fs::read_to_string(dir.join("trust.pem")).unwrap();
    (root, server)
}

fn register(store: &dyn Store, addr: SocketAddr) {
    let reg = BackchannelRegistration {
        uri: format!("https://{RP_HOST}:{}/backchannel", addr.port()),
        session_required: true,
    };
    register_backchannel(store, "case-app", Some(&reg)).unwrap();
}

fn claims_of(token: &str, part: usize) -> Value {
    let p = token.split('.').nth(part).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rp_initiated_logout_sends_a_signed_logout_token_with_every_claim() {
    let dir = tempfile::tempdir().unwrap();
    let rp = Rp::default();
    let (rp_root, rp_server) = first_rp(&dir.path().join("rp"), rp.clone()).await;
    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let w = world(dir.path(), clock.clone(), &rp_root, rp_server.local_addr()).await;
    register(&*w.store, rp_server.local_addr());

    let d: Value = w
        .http
        .get(w.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["backchannel_logout_session_supported"], true);

    let now = clock.now();
    let (sid, id_token) = w.session_with_tokens(now, 5).await;
    let session_sid = claims_of(&id_token, 1)["sid"].as_str().unwrap().to_owned();
    assert!(!session_sid.is_empty() && !sid.contains(&session_sid));
    w.logout(&sid).await;
    assert_eq!(pending_logouts(&*w.store).unwrap().len(), 1);
    assert_eq!(w.idp.deliver_logouts().await.unwrap(), 1);
    assert!(pending_logouts(&*w.store).unwrap().is_empty());

    let received = rp.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (ct, body) = &received[0];
    assert_eq!(ct, "application/x-www-form-urlencoded");
    let token = body.strip_prefix("logout_token=").unwrap();
    assert!(!token.contains('&'));

    // the signature against the published JWKS, as a relying party checks it
    let jwks: Value = w
        .http
        .get(w.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = keys_from_jwks(&jwks).unwrap();
    let verified = verify_with(token, &keys).unwrap();
    let header = claims_of(token, 0);
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
    let c = Value::Object(verified.claims.clone());
    assert_eq!(c["iss"], ISS);
    assert_eq!(c["aud"], "case-app");
    assert_eq!(c["iat"], now.as_secs());
    assert_eq!(c["exp"], now.as_secs() + 120);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert_eq!(c["events"], json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
    assert_eq!(c["sid"], session_sid.as_str());
    assert_eq!(c["sub"], "judge-0001");
    assert!(c.get("nonce").is_none(), "a logout token carries no nonce");
    // and the library's own check agrees
    let checked = verify_logout_token(token, &keys, ISS, "case-app", now).unwrap();
    assert_eq!(checked.sid.as_deref(), Some(session_sid.as_str()));

    let audited = w.events("logout.backchannel");
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].outcome, "ok");
    assert_eq!(audited[0].actor, "case-app");
    // nothing more is sent
    assert_eq!(w.idp.deliver_logouts().await.unwrap(), 0);
    assert_eq!(rp.received.lock().unwrap().len(), 1);
    w.server.shutdown().await;
    rp_server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_down_for_a_while_gets_its_logout_token_once_when_back_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rp = Rp::default();
    let rp_dir = dir.path().join("rp");
    let (rp_root, rp_server) = first_rp(&rp_dir, rp.clone()).await;
    let rp_addr = rp_server.local_addr();
    // the client goes down
    rp_server.shutdown().await;
    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let w = world(dir.path(), clock.clone(), &rp_root, rp_addr).await;
    register(&*w.store, rp_addr);
    let (sid, _) = w.session_with_tokens(clock.now(), 6).await;
    w.logout(&sid).await;

    // two attempts fail, each audited with its reason; none is made before its backoff
    assert_eq!(w.idp.deliver_logouts().await.unwrap(), 0);
    let p = pending_logouts(&*w.store).unwrap();
    assert_eq!((p.len(), p[0].failed), (1, 1));
    assert_eq!(
        p[0].due_ms,
        clock
            .now()
            .saturating_add(Duration::from_secs(2))
            .as_millis()
    );
    assert_eq!(w.idp.deliver_logouts().await.unwrap(), 0);
    assert_eq!(w.events("logout.backchannel").len(), 1, "not due yet");
    clock.advance(Duration::from_secs(2));
    assert_eq!(w.idp.deliver_logouts().await.unwrap(), 0);
    let failed = w.events("logout.backchannel");
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|e| e.outcome == "failed"));
    assert!(
        failed[0].reason.contains("attempt 1"),
        "{}",
        failed[0].reason
    );
    assert!(
        failed[1].reason.contains("attempt 2"),
        "{}",
        failed[1].reason
    );
    let jti = pending_logouts(&*w.store).unwrap()[0].jti.clone();

    // the provider restarts: the delivery waits in its store
    let World {
        server,
        idp,
        http,
        store,
        audit,
    } = w;
    server.shutdown().await;
    drop((idp, http, store, audit));
    let w = world(dir.path(), clock.clone(), &rp_root, rp_addr).await;
    let p = pending_logouts(&*w.store).unwrap();
    assert_eq!(
        (p.len(), p[0].failed, p[0].jti.as_str()),
        (1, 2, jti.as_str())
    );

    // the client is back on its address; at the next due time it gets the token, once
    let rp_server = serve_rp(&rp_dir, rp_addr, rp.clone()).await;
    clock.advance(Duration::from_secs(4));
    assert_eq!(w.idp.deliver_logouts().await.unwrap(), 1);
    clock.advance(Duration::from_secs(600));
    assert_eq!(w.idp.deliver_logouts().await.unwrap(), 0);
    let received = rp.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let token = received[0].1.strip_prefix("logout_token=").unwrap();
    let claims = claims_of(token, 1);
    assert_eq!(claims["jti"], jti.as_str(), "the same jti at every attempt");
    let all = w.events("logout.backchannel");
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].outcome, "ok");
    assert!(all[2].reason.contains("attempt 3"), "{}", all[2].reason);
    w.server.shutdown().await;
    rp_server.shutdown().await;
}
