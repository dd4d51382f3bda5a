//! The device authorization grant (RFC 8628): the table as a state machine at a clock moved by
//! hand, and the provider over real TLS on loopback port 0 (a test PKI of zone `private`, a
//! sled store, an audit log): `/device_authorization` for the CLI client only, the token
//! endpoint answering `authorization_pending`, `slow_down` (the interval grown by 5 s),
//! `expired_token`, `access_denied` and, once, the token; the verification page sending an
//! anonymous browser through the sign-in and taking a signed-in person's decision (CSRF-checked,
//! audited); and the token checked by the control sockets' person-token verifier (audience,
//! expiry, revocation), alone and on a real control socket at the same clock: served, then
//! refused after `/revoke` (logout) and past its 15 minutes.
#![cfg(feature = "server")]
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

#[path = "zone_tls/mod.rs"]
mod zone_tls;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tianping_audit::AuditLog;
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, Clock as _, ManualClock, RingSigner, Role, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    Client, ClientAuthMethod, Court, DEVICE_CODE_GRANT, Decision, DeviceGrantParts, DeviceGrants,
    DevicePolicy, Directory, GrantPolicy, GrantType, Identity, Idp, IdpError, IdpParts, KeySet,
    LockoutPolicy, PasswordParams, PasswordPolicy, Passwords, PersonTokens, SESSION_COOKIE,
    SessionPolicy, Sessions, SignInParts, SledStore, Store, TokenIssuer, TotpConfig, User,
    control_audience, form_encode_pairs,
};
use tianping_net::{
    CallerVerifier as _, Credential, HostSet, ServerHandle, ServerOptions, serve_tls,
};

const CLI: &str = "tianping-cli";
const SUB: &str = "s-0001";

fn admin(auth_time: UnixTime) -> Identity {
    Identity {
        sub: SUB.parse().unwrap(),
        court: Some("bj".parse().unwrap()),
        roles: vec![Role::Sysadmin],
        clearance: Clearance::Secret,
        acr: Acr::Cert,
        amr: vec![Amr::Otp],
        zone: "private".parse().unwrap(),
        auth_time,
        device: None,
    }
}

// ------------------------------------------------------------------ the table alone

#[test]
fn the_table_answers_each_poll_as_rfc_8628_says() {
    let clock = ManualClock::new(UnixTime::from_secs(1_800_000_000));
    let rng = SeededRandom::new(1);
    let mut t = DeviceGrants::new(DevicePolicy::default());
    let a = t
        .start(CLI, vec!["openid".into()], clock.now(), &rng)
        .unwrap();
    assert_eq!((a.expires_in, a.interval), (600, 5));
    assert_eq!(a.user_code.len(), 9, "{}", a.user_code);
    assert_eq!(a.user_code.as_bytes()[4], b'-');

    // nobody decided yet
    assert_eq!(
        t.poll(&a.device_code, CLI, clock.now()),
        Err(IdpError::AuthorizationPending)
    );
    // again at once: too fast, and the interval grows by 5 s each time
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        t.poll(&a.device_code, CLI, clock.now()),
        Err(IdpError::SlowDown)
    );
    assert_eq!(t.interval(&a.device_code), Some(Duration::from_secs(10)));
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        t.poll(&a.device_code, CLI, clock.now()),
        Err(IdpError::SlowDown),
        "6 s is under the grown interval of 10 s"
    );
    assert_eq!(t.interval(&a.device_code), Some(Duration::from_secs(15)));
    clock.advance(Duration::from_secs(15));
    assert_eq!(
        t.poll(&a.device_code, CLI, clock.now()),
        Err(IdpError::AuthorizationPending)
    );
    // another client's poll with this code is refused, and a made-up code too
    clock.advance(Duration::from_secs(15));
    assert_eq!(
        t.poll(&a.device_code, "other", clock.now()),
        Err(IdpError::DeviceCodeInvalid)
    );
    assert_eq!(
        t.poll("made-up", CLI, clock.now()),
        Err(IdpError::DeviceCodeInvalid)
    );

    // the person types the code in lower case without its dash and approves
    let typed = a.user_code.replace('-', "").to_lowercase();
    let seen = t.lookup(&typed, clock.now()).unwrap();
    assert_eq!(
        (seen.client_id.as_str(), seen.user_code.as_str()),
        (CLI, a.user_code.as_str())
    );
    t.decide(
        &typed,
        Decision::Approve(Box::new(admin(clock.now()))),
        clock.now(),
    )
    .unwrap();
    // decided once: a second decision is refused
    assert_eq!(
        t.decide(&typed, Decision::Deny, clock.now()),
        Err(IdpError::UserCodeInvalid)
    );
    clock.advance(Duration::from_secs(15));
    let granted = t.poll(&a.device_code, CLI, clock.now()).unwrap();
    assert_eq!(granted.identity.sub.as_str(), SUB);
    assert_eq!(granted.scope, vec!["openid".to_owned()]);
    // the grant is given once
    clock.advance(Duration::from_secs(15));
    assert_eq!(
        t.poll(&a.device_code, CLI, clock.now()),
        Err(IdpError::DeviceCodeInvalid)
    );

    // denied: access_denied, once
    let d = t.start(CLI, vec![], clock.now(), &rng).unwrap();
    t.decide(&d.user_code, Decision::Deny, clock.now()).unwrap();
    assert_eq!(
        t.poll(&d.device_code, CLI, clock.now()),
        Err(IdpError::DeviceAccessDenied)
    );
    assert_eq!(
        t.poll(&d.device_code, CLI, clock.now()),
        Err(IdpError::DeviceCodeInvalid)
    );

    // expired: expired_token, and no approval any more
    let e = t.start(CLI, vec![], clock.now(), &rng).unwrap();
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        t.poll(&e.device_code, CLI, clock.now()),
        Err(IdpError::DeviceCodeExpired)
    );
    assert_eq!(
        t.decide(&e.user_code, Decision::Deny, clock.now()),
        Err(IdpError::UserCodeInvalid)
    );
    // a life later it is forgotten
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        t.poll(&e.device_code, CLI, clock.now()),
        Err(IdpError::DeviceCodeInvalid)
    );
    assert!(t.is_empty());
}

// ------------------------------------------------------------------ the provider over TLS

struct World {
    _dir: tempfile::TempDir,
    server: ServerHandle,
    http: reqwest::Client,
    audit: Arc<AuditLog>,
    clock: Arc<ManualClock>,
    store: Arc<SledStore>,
    iss: String,
    issuer: TokenIssuer,
}

fn cli_client(iss: &str) -> Client {
    Client {
        id: CLI.into(),
        secret_sha256: None,
        auth_method: ClientAuthMethod::None,
        redirect_uris: vec![format!("{iss}/device")],
        post_logout_redirect_uris: vec![],
        grants: vec![GrantType::AuthorizationCode],
        native_loopback: false,
        extra_scopes: vec![],
    }
}

fn other_client() -> Client {
    Client {
        id: "case-app".into(),
        secret_sha256: None,
        auth_method: ClientAuthMethod::None,
        redirect_uris: vec!["https://case.example/cb".into()],
        post_logout_redirect_uris: vec![],
        grants: vec![GrantType::AuthorizationCode],
        native_loopback: false,
        extra_scopes: vec![],
    }
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let host = "idp.private.court.example";
    let iss = format!("https://{host}");
    let (tls, root_pem) = zone_tls::zone_tls(dir.path(), host);
    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let store = Arc::new(SledStore::open(&dir.path().join("store")).unwrap());
    let audit = Arc::new(AuditLog::create(&dir.path().join("audit"), "idp.private").unwrap());
    let directory = Directory::new(&*store);
    directory
        .add_court(Court {
            code: "bj".parse().unwrap(),
            name: "北京市高级人民法院".into(),
        })
        .unwrap();
    let mut user = User::new(SUB.parse().unwrap(), "sys.admin", "系统管理员", clock.now());
    user.court = Some("bj".parse().unwrap());
    user.roles = vec![Role::Sysadmin];
    directory.add_user(user).unwrap();
    let params = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let passwords =
        Arc::new(Passwords::new(params, PasswordPolicy::default(), &SeededRandom::new(3)).unwrap());
    let sign_in = SignInParts {
        passwords,
        lockout: LockoutPolicy::default(),
        totp: TotpConfig::default(),
        // the administrator needs a one-time code at least, as a zone's policy would ask
        least_acr: Arc::new(|roles: &[Role]| {
            if roles.contains(&Role::Sysadmin) {
                Acr::Otp
            } else {
                Acr::Pwd
            }
        }),
        zone: "private".parse().unwrap(),
        self_registration: false,
        totp_issuer: "Tianping".into(),
    };
    let signer = Arc::new(RingSigner::generate(Algorithm::Es256).unwrap().0);
    let issuer = TokenIssuer::new(iss.clone(), KeySet::new(signer));
    let parts = IdpParts {
        issuer: issuer.clone(),
        audience: "tianping".into(),
        store: Arc::clone(&store) as Arc<dyn Store>,
        clients: vec![cli_client(&iss), other_client()],
        audit: Arc::clone(&audit),
        zone: "private".into(),
        clock: clock.clone(),
        rng: Arc::new(SeededRandom::new(7)),
        grants: GrantPolicy::default(),
        sessions: SessionPolicy::default(),
    };
    let idp = Idp::with_sign_in(parts, sign_in).with_device_grant(DeviceGrantParts {
        client_id: CLI.into(),
        audience: control_audience("private"),
        token_life: tianping_idp::PERSON_TOKEN_LIFE,
        policy: DevicePolicy::default(),
    });
    let mut options = ServerOptions::new(HostSet::new([host]));
    options.http3 = false;
    let bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = serve_tls(bind, Arc::new(tls), options, idp).await.unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .resolve(host, server.local_addr())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    World {
        _dir: dir,
        server,
        http,
        audit,
        clock,
        store,
        iss,
        issuer,
    }
}

impl World {
    async fn post(&self, path: &str, form: &str, cookie: Option<&str>) -> (StatusCode, String) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.iss))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        if let Some(c) = cookie {
            r = r.header("cookie", format!("{SESSION_COOKIE}={c}"));
        }
        let resp = r.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    async fn authorize(&self, client: &str) -> (StatusCode, Value) {
        let (s, b) = self
            .post(
                "/device_authorization",
                &form_encode_pairs([("client_id", client), ("scope", "openid")]),
                None,
            )
            .await;
        (s, serde_json::from_str(&b).unwrap())
    }

    async fn poll(&self, device_code: &str) -> (StatusCode, Value) {
        let form = form_encode_pairs([
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", device_code),
            ("client_id", CLI),
        ]);
        let (s, b) = self.post("/token", &form, None).await;
        (s, serde_json::from_str(&b).unwrap())
    }

    async fn get(&self, path_and_query: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path_and_query}", self.iss));
        if let Some(c) = cookie {
            r = r.header("cookie", format!("{SESSION_COOKIE}={c}"));
        }
        r.send().await.unwrap()
    }

    /// A session of the administrator, as the sign-in leaves one.
    fn signed_in(&self) -> String {
        self.signed_in_as(admin(self.clock.now()))
    }

    fn signed_in_as(&self, identity: Identity) -> String {
        let (id, _) = Sessions::new(&*self.store, SessionPolicy::default())
            .sign_in(None, identity, self.clock.now(), &SeededRandom::new(9))
            .unwrap();
        id
    }

    /// The administrator's decision on the page, as a browser sends it.
    async fn decide(&self, cookie: &str, user_code: &str, decision: &str) -> (StatusCode, String) {
        let page = self
            .get(
                &format!("/device?{}", form_encode_pairs([("user_code", user_code)])),
                Some(cookie),
            )
            .await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains(CLI), "the page names the client: {html}");
        let csrf = hidden(&html, "csrf");
        let form = form_encode_pairs([
            ("csrf", csrf.as_str()),
            ("user_code", user_code),
            ("decision", decision),
        ]);
        self.post("/device", &form, Some(cookie)).await
    }

    fn actions_since(&self, from: u64) -> Vec<(String, String, String)> {
        self.audit
            .entries(from)
            .map(|r| {
                let e = r.unwrap().event;
                (e.action, e.actor, e.outcome)
            })
            .collect()
    }
}

/// The value of the hidden input `name` of a page.
fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap();
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn assert_error(status: StatusCode, body: &Value, code: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], code, "{body}");
}

#[tokio::test]
async fn a_device_is_answered_as_rfc_8628_says_and_gets_a_control_token_once_approved() {
    let w = world().await;
    let discovery: Value = w
        .get("/.well-known/openid-configuration", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["device_authorization_endpoint"],
        format!("{}/device_authorization", w.iss)
    );
    assert!(
        discovery["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&DEVICE_CODE_GRANT.into())
    );

    // only the device client may start one
    let (status, body) = w.authorize("case-app").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "unauthorized_client");

    let before = w.audit.size();
    let (status, a) = w.authorize(CLI).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    let (device_code, user_code) = (
        a["device_code"].as_str().unwrap().to_owned(),
        a["user_code"].as_str().unwrap().to_owned(),
    );
    assert_eq!(a["verification_uri"], format!("{}/device", w.iss));
    assert_eq!(
        a["verification_uri_complete"],
        format!("{}/device?user_code={user_code}", w.iss)
    );
    assert_eq!(
        (a["expires_in"].as_u64(), a["interval"].as_u64()),
        (Some(600), Some(5))
    );

    let (status, body) = w.poll(&device_code).await;
    assert_error(status, &body, "authorization_pending");
    let (status, body) = w.poll(&device_code).await;
    assert_error(status, &body, "slow_down");
    w.clock.advance(Duration::from_secs(10));
    let (status, body) = w.poll(&device_code).await;
    assert_error(status, &body, "authorization_pending");

    // a browser without a session is sent through the sign-in as the device client, back here
    let anonymous = w.get(&format!("/device?user_code={user_code}"), None).await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    let to = anonymous.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.starts_with(&format!("{}/authorize?", w.iss)), "{to}");
    assert!(to.contains("client_id=tianping-cli"), "{to}");
    assert!(to.contains(&format!("state={user_code}")), "{to}");
    let login = w.get(to.strip_prefix(&w.iss).unwrap(), None).await;
    assert_eq!(
        login.status(),
        StatusCode::OK,
        "the provider's own sign-in page"
    );

    // a decision without the page's CSRF token is refused and changes nothing
    let cookie = w.signed_in();
    let forged = form_encode_pairs([("user_code", user_code.as_str()), ("decision", "approve")]);
    let (status, _) = w.post("/device", &forged, Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    w.clock.advance(Duration::from_secs(10));
    let (status, body) = w.poll(&device_code).await;
    assert_error(status, &body, "authorization_pending");

    let (status, page) = w.decide(&cookie, &user_code, "approve").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Approved"), "{page}");
    w.clock.advance(Duration::from_secs(10));
    let (status, t) = w.poll(&device_code).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    let token = t["access_token"].as_str().unwrap().to_owned();
    // given once
    w.clock.advance(Duration::from_secs(10));
    let (status, body) = w.poll(&device_code).await;
    assert_error(status, &body, "invalid_grant");

    let actions = w.actions_since(before);
    for (action, actor, outcome) in [
        ("device.authorization", CLI, "ok"),
        ("device.approve", SUB, "ok"),
        ("token.device_code", CLI, "ok"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, b, c)| a == action && b == actor && c == outcome),
            "{action} by {actor}: {actions:?}"
        );
    }

    // the control sockets' verifier takes it: the person and the directory's roles
    let keys = w.issuer.clone();
    let verifier = PersonTokens::new(
        Arc::new(move || Some(keys.clone())),
        "private",
        Arc::clone(&w.store) as Arc<dyn Store>,
    );
    let bearer = |t: &str| Credential::Bearer(Arc::new(tianping_core::Secret::new(t.to_owned())));
    let id = verifier.verify(&bearer(&token), w.clock.now()).unwrap();
    assert_eq!(id.subject.as_ref().unwrap().as_str(), SUB);
    assert_eq!(id.roles, vec![Role::Sysadmin]);
    // another zone's sockets refuse it
    let other = PersonTokens::new(
        {
            let keys = w.issuer.clone();
            Arc::new(move || Some(keys.clone()))
        },
        "internet",
        Arc::clone(&w.store) as Arc<dyn Store>,
    );
    let e = other.verify(&bearer(&token), w.clock.now()).unwrap_err();
    assert!(e.to_string().contains("tianping-control:internet"), "{e}");
    // an access token for the relying parties' audience is no control token
    let rp = w
        .issuer
        .access_token(
            Some(&admin(w.clock.now())),
            "case-app",
            "tianping",
            "openid",
            w.clock.now(),
            &SeededRandom::new(4),
        )
        .unwrap();
    assert!(verifier.verify(&bearer(&rp.token), w.clock.now()).is_err());
    // revoked (as `tianping logout` does through /revoke): refused
    let (status, _) = w
        .post(
            "/revoke",
            &form_encode_pairs([("token", token.as_str()), ("client_id", CLI)]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let e = verifier.verify(&bearer(&token), w.clock.now()).unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");

    // a second token, past its 15 minutes: refused
    let (_, a2) = w.authorize(CLI).await;
    let (dc2, uc2) = (
        a2["device_code"].as_str().unwrap().to_owned(),
        a2["user_code"].as_str().unwrap().to_owned(),
    );
    w.decide(&cookie, &uc2, "approve").await;
    let (status, t2) = w.poll(&dc2).await;
    assert_eq!(status, StatusCode::OK, "{t2}");
    let token2 = t2["access_token"].as_str().unwrap().to_owned();
    assert!(verifier.verify(&bearer(&token2), w.clock.now()).is_ok());
    w.clock.advance(Duration::from_secs(15 * 60 + 1));
    let e = verifier
        .verify(&bearer(&token2), w.clock.now())
        .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_session_too_weak_for_the_persons_roles_signs_in_again_before_deciding() {
    let w = world().await;
    let (_, a) = w.authorize(CLI).await;
    let (dc, uc) = (
        a["device_code"].as_str().unwrap().to_owned(),
        a["user_code"].as_str().unwrap().to_owned(),
    );
    // a password alone, where the administrator's role needs a one-time code
    let mut weak = admin(w.clock.now());
    weak.acr = Acr::Pwd;
    weak.amr = vec![Amr::Pwd];
    let cookie = w.signed_in_as(weak);
    let page = w
        .get(&format!("/device?user_code={uc}"), Some(&cookie))
        .await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    let to = page.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.starts_with(&format!("{}/authorize?", w.iss)), "{to}");
    // and its decision is not taken
    let form = form_encode_pairs([
        ("csrf", "whatever"),
        ("user_code", uc.as_str()),
        ("decision", "approve"),
    ]);
    let (status, _) = w.post("/device", &form, Some(&cookie)).await;
    assert_ne!(status, StatusCode::OK);
    let (status, body) = w.poll(&dc).await;
    assert_error(status, &body, "authorization_pending");
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_denied_or_expired_authorization_gives_no_token() {
    let w = world().await;
    let cookie = w.signed_in();

    let (_, a) = w.authorize(CLI).await;
    let (dc, uc) = (
        a["device_code"].as_str().unwrap().to_owned(),
        a["user_code"].as_str().unwrap().to_owned(),
    );
    let before = w.audit.size();
    let (status, page) = w.decide(&cookie, &uc, "deny").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Denied"), "{page}");
    let (status, body) = w.poll(&dc).await;
    assert_error(status, &body, "access_denied");
    assert!(
        w.actions_since(before)
            .iter()
            .any(|(a, b, c)| a == "device.deny" && b == SUB && c == "denied")
    );

    let (_, a) = w.authorize(CLI).await;
    let (dc, uc) = (
        a["device_code"].as_str().unwrap().to_owned(),
        a["user_code"].as_str().unwrap().to_owned(),
    );
    w.clock.advance(Duration::from_secs(600));
    let (status, body) = w.poll(&dc).await;
    assert_error(status, &body, "expired_token");
    // the page no longer takes its code
    let page = w
        .get(&format!("/device?user_code={uc}"), Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("invalid or expired"), "{page}");
    w.server.shutdown().await;
}

/// A control socket like the zone's (the person-token verifier, `/status` open, the clock moved
/// by hand) whose one endpoint asks `sysadmin`: the status of a request carrying `token`.
async fn socket_status(socket: &std::path::Path, token: Option<&str>, path: &str) -> u16 {
    let mut req = http::Request::builder().method("GET").uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(tianping_net::ControlBody::empty()).unwrap();
    tianping_net::control_send(socket, req, Duration::from_secs(10))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_control_socket_refuses_a_token_past_its_expiry_or_after_logout() {
    let w = world().await;
    let cookie = w.signed_in();
    let keys = w.issuer.clone();
    let verifier = PersonTokens::new(
        Arc::new(move || Some(keys.clone())),
        "private",
        Arc::clone(&w.store) as Arc<dyn Store>,
    );
    let mut options =
        tianping_net::ControlOptions::new(&[]).verified(Arc::new(verifier), ["/status"]);
    options.clock = w.clock.clone();
    let socket = w._dir.path().join("c.sock");
    let handler = |req: http::Request<tianping_net::Body>| async move {
        let caller = req
            .extensions()
            .get::<tianping_net::Caller>()
            .cloned()
            .unwrap();
        if req.uri().path() == "/status" {
            return http::Response::new(tianping_net::full("up"));
        }
        match caller.require(&Role::Sysadmin) {
            Ok(_) => http::Response::new(tianping_net::full("ok")),
            Err(refused) => refused,
        }
    };
    let ctl = tianping_net::serve_control_with(&socket, options, handler)
        .await
        .unwrap();

    let token = || async {
        let (_, a) = w.authorize(CLI).await;
        let uc = a["user_code"].as_str().unwrap().to_owned();
        w.decide(&cookie, &uc, "approve").await;
        let (status, t) = w.poll(a["device_code"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{t}");
        t["access_token"].as_str().unwrap().to_owned()
    };
    assert_eq!(socket_status(&socket, None, "/status").await, 200);
    assert_eq!(socket_status(&socket, None, "/users").await, 401);
    let t1 = token().await;
    assert_eq!(socket_status(&socket, Some(&t1), "/users").await, 200);
    assert_eq!(
        socket_status(&socket, Some("not-a-token"), "/users").await,
        401
    );
    // logout: revoked at the IdP, refused by the socket at once
    let (status, _) = w
        .post(
            "/revoke",
            &form_encode_pairs([("token", t1.as_str()), ("client_id", CLI)]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(socket_status(&socket, Some(&t1), "/users").await, 401);
    // expiry: good for 15 minutes, refused after
    let t2 = token().await;
    w.clock.advance(Duration::from_secs(14 * 60));
    assert_eq!(socket_status(&socket, Some(&t2), "/users").await, 200);
    w.clock.advance(Duration::from_secs(61));
    assert_eq!(socket_status(&socket, Some(&t2), "/users").await, 401);
    ctl.shutdown().await;
    w.server.shutdown().await;
}
