//! The provider over real TLS on loopback port 0 (a test PKI), spoken to by `reqwest`:
//! discovery, the JWKS, client_credentials and refresh_token grants, the access token verified
//! against the fetched JWKS, every grant in the audit log, OAuth errors with their status, and
//! `/authorize` answering with the sign-in page or, for an untrusted redirect URI, an error page.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod zone_tls;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use tianping_audit::AuditLog;
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, Clock as _, ManualClock, RingSigner, Role, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    Client, ClientAuthMethod, GrantPolicy, GrantType, Grants, Identity, Idp, IdpParts, KeySet,
    SessionPolicy, SledStore, Store, TokenIssuer, keys_from_jwks, verify_with,
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
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.server.local_addr().port())
    }

    /// The JSON answer to a `GET` of `path`.
    async fn get_json(&self, path: &str) -> Value {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        resp.json().await.unwrap()
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
    let (refresh_token, _) = Grants::new(&*store, GrantPolicy::default())
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
        store: store as Arc<dyn Store>,
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
    }
}

#[tokio::test]
async fn discovery_and_jwks_describe_the_provider() {
    let w = world().await;
    let d: Value = w.get_json("/.well-known/openid-configuration").await;
    assert_eq!(d["issuer"], ISS);
    assert_eq!(d["token_endpoint"], format!("{ISS}/token"));
    assert_eq!(d["jwks_uri"], format!("{ISS}/jwks"));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["request_parameter_supported"], false);
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    let jwks: Value = w.get_json("/jwks").await;
    let keys = keys_from_jwks(&jwks).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].key.algorithm(), Algorithm::Es256);
    let missing = w.http.get(w.url("/nothing")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let wrong = w.http.get(w.url("/token")).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    w.server.shutdown().await;
}

#[tokio::test]
async fn client_credentials_token_verifies_against_the_jwks_and_is_audited() {
    let w = world().await;
    let before = w.audit.size();
    let form = "grant_type=client_credentials&scope=cases.read";
    let (status, body) = w.token(form, Some(("case-app", "s3cret"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "cases.read");
    assert!(body.get("refresh_token").is_none());
    let jwks: Value = w.get_json("/jwks").await;
    let at = body["access_token"].as_str().unwrap();
    let v = verify_with(at, &keys_from_jwks(&jwks).unwrap()).unwrap();
    assert_eq!(v.typ(), Some("at+jwt"));
    assert_eq!(v.str_claim("iss"), Some(ISS));
    assert_eq!(v.str_claim("sub"), Some("case-app"));
    assert_eq!(v.str_claim("client_id"), Some("case-app"));
    assert_eq!(
        v.claims["exp"].as_u64().unwrap() - w.clock.now().as_secs(),
        body["expires_in"].as_u64().unwrap()
    );
    // durable before the response: already in the log
    assert_eq!(w.audit.size(), before + 1);
    let rec = w.audit.get(before).unwrap().unwrap();
    assert_eq!(rec.event.action, "token.client_credentials");
    assert_eq!(rec.event.actor, "case-app");
    assert_eq!(Some(rec.event.object.as_str()), v.str_claim("jti"));
    // client_secret_post for a client registered so
    let form = "grant_type=client_credentials&client_id=post-app&client_secret=s3cret";
    let (status, body) = w.token(form, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.audit.size(), before + 2);
    w.server.shutdown().await;
}

#[tokio::test]
async fn refresh_token_rotates_and_reuse_is_refused() {
    let w = world().await;
    let form = format!("grant_type=refresh_token&refresh_token={}", w.refresh_token);
    let (status, body) = w.token(&form, Some(("case-app", "s3cret"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let next = body["refresh_token"].as_str().unwrap();
    assert_ne!(next, w.refresh_token);
    assert_eq!(body["scope"], "openid profile");
    let rec = w.audit.get(w.audit.size() - 1).unwrap().unwrap();
    assert_eq!(rec.event.action, "token.refresh");
    // the old token again: the family is revoked, the new one dies with it
    let (status, body) = w.token(&form, Some(("case-app", "s3cret"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let form = format!("grant_type=refresh_token&refresh_token={next}");
    let (_, body) = w.token(&form, Some(("case-app", "s3cret"))).await;
    assert_eq!(body["error"], "invalid_grant");
    w.server.shutdown().await;
}

#[tokio::test]
async fn errors_are_oauth_json_with_their_status() {
    let w = world().await;
    let before = w.audit.size();
    let cc = "grant_type=client_credentials";
    let cases = [
        (
            cc.to_owned(),
            Some(("case-app", "wrong")),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            cc.to_owned(),
            Some(("nobody", "s3cret")),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "grant_type=password&username=a&password=b".to_owned(),
            Some(("case-app", "s3cret")),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            format!("{cc}&client_secret=s3cret"),
            Some(("case-app", "s3cret")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            format!("{cc}&scope=admin.all"),
            Some(("case-app", "s3cret")),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            format!("{cc}&client_id=case-app&client_secret=s3cret"),
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ];
    for (form, basic, status, code) in cases {
        let (got, body) = w.token(&form, basic).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{form}"
        );
    }
    let resp = w
        .http
        .post(w.url("/token"))
        .basic_auth("case-app", Some("wrong"))
        .body(cc)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(w.audit.size(), before, "no grant, no event");
    w.server.shutdown().await;
}

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn authorize_query(redirect_uri: &str) -> String {
    tianping_idp::form_encode_pairs([
        ("response_type", "code"),
        ("client_id", "case-app"),
        ("redirect_uri", redirect_uri),
        ("scope", "openid"),
        ("state", "<s1>"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("ui_locales", "en"),
    ])
}

#[tokio::test]
async fn authorize_shows_the_sign_in_page_or_an_error_page() {
    let w = world().await;
    let good = authorize_query("https://case.example/cb");
    let get = w
        .http
        .get(format!("{}?{good}", w.url("/authorize")))
        .send()
        .await
        .unwrap();
    let post = w
        .http
        .post(w.url("/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    for resp in [get, post] {
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["cache-control"], "no-store");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        let cookie = h["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.starts_with("__Host-"), "{cookie}");
        assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"));
        let html = resp.text().await.unwrap();
        assert!(html.contains("<form method=\"post\""), "{html}");
        assert!(html.contains("name=\"csrf\""));
        assert!(html.contains("Sign in"));
        // the state stays on the server side, never echoed as markup
        assert!(!html.contains("<s1>"));
        assert!(!html.contains("<script"));
    }
    // an unregistered redirect URI: an error page, no redirect
    let bad = authorize_query("https://evil.example/cb");
    let resp = w
        .http
        .get(format!("{}?{bad}", w.url("/authorize")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
    let html = resp.text().await.unwrap();
    assert!(html.contains("invalid_request"), "{html}");
    assert!(!html.contains("<form"));
    // a registered redirect URI but `plain` PKCE: redirected there with the error and `iss`
    let plain = authorize_query("https://case.example/cb").replace("S256", "plain");
    let resp = w
        .http
        .get(format!("{}?{plain}", w.url("/authorize")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://case.example/cb?error=invalid_request"),
        "{location}"
    );
    assert!(location.contains(&format!("iss={}", tianping_idp::form_encode(ISS))));
    assert!(location.contains("state=%3Cs1%3E"), "{location}");
    w.server.shutdown().await;
}
