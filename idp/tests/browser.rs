//! The provider in a real browser: headless Chromium (see `browser/harness.rs`) over real TLS to
//! the IdP's host name, the zone CA trusted through an NSS database, certificate errors not
//! ignored. A judge signs in at first with password, then the TOTP enrolment page (the secret
//! read from the page's text, codes computed with `TotpConfig` on the server's manual clock),
//! and is sent back to a real HTTPS relying party with `code`, `state` and `iss`; the code is
//! redeemed at `/token`. Then, with `prompt=login`, password and the one-time-code page again.
//! Once in Chinese, once in English. Screenshots under `target/browser-screenshots/<test>/`.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

#[path = "browser/harness.rs"]
mod harness;

use std::sync::{Arc, Mutex};

use harness::{Browser, BrowserConfig};
use http::{Request, Response};
use tianping_audit::AuditLog;
use tianping_certs::{CaCert, CertKind, ClientAuth, KeyAlg, LeafRequest, ServerTlsBuilder};
use tianping_core::{
    Acr, Algorithm, Clearance, Clock as _, ManualClock, RingSigner, Role, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    Client, ClientAuthMethod, CodeChallenge, Court, Directory, GrantPolicy, GrantType, Idp,
    IdpParts, KeySet, LockoutPolicy, PasswordParams, PasswordPolicy, Passwords, SessionPolicy,
    SignInParts, SledStore, Store, TokenIssuer, TotpConfig, TotpSecret, User,
};
use tianping_net::{Body, HostSet, ResponseBody, ServerHandle, ServerOptions, full, serve_tls};

const IDP_HOST: &str = "idp.private.tianping.localhost";
const ISS: &str = "https://idp.private.tianping.localhost";
/// The relying party the browser is sent back to: a real HTTPS server that records what arrives.
const APP_HOST: &str = "case.private.tianping.localhost";
/// A PKCE verifier (RFC 7636 appendix B).
const VERIFIER: &str = "dBjftJeZ4CVP-mJ0FuXOpmVFJqGJOzd6qvStTjwH7Sk";
const SUB: &str = "judge-0001";
const LOGIN: &str = "judge.li";
const PASSWORD: &str = "Court-2026a";

struct World {
    _dir: tempfile::TempDir,
    idp: ServerHandle,
    app: ServerHandle,
    /// The request targets (path and query) the relying party received.
    arrived: Arc<Mutex<Vec<String>>>,
    /// The root CA's PEM, the one CA the browser trusts.
    ca_pem: String,
    redirect_uri: String,
    clock: Arc<ManualClock>,
    /// Trusts the root CA, resolves the IdP's name to its listener.
    http: reqwest::Client,
}

impl World {
    fn idp_url(&self, path: &str) -> String {
        format!("https://{IDP_HOST}:{}{path}", self.idp.local_addr().port())
    }

    fn authorize_url(&self, locale: &str, prompt: Option<&str>) -> String {
        let challenge = CodeChallenge::of_verifier(VERIFIER).unwrap();
        let mut q = tianping_idp::form_encode_pairs([
            ("response_type", "code"),
            ("client_id", "case-app"),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("scope", "openid profile"),
            ("state", "st-<1>"),
            ("nonce", "n-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("ui_locales", locale),
        ]);
        if let Some(p) = prompt {
            q.push_str(&format!("&prompt={p}"));
        }
        format!("{}?{q}", self.idp_url("/authorize"))
    }

    async fn stop(self) {
        self.idp.shutdown().await;
        self.app.shutdown().await;
    }
}

/// The relying party: records the request targets under `/cb` (not the browser's favicon
/// fetches), answers a small page.
fn app_handler(
    arrived: Arc<Mutex<Vec<String>>>,
) -> impl Fn(Request<Body>) -> std::future::Ready<Response<ResponseBody>> + Send + Sync + 'static {
    move |req: Request<Body>| {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        if target.starts_with("/cb") {
            arrived.lock().unwrap().push(target);
        }
        let mut r = Response::new(full(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>case app</title></head><body><h1>case app: callback received</h1></body></html>",
        ));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        std::future::ready(r)
    }
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let real_now = UnixTime::from_system_time(std::time::SystemTime::now());
    let root = CaCert::new_root("Court", KeyAlg::EcP256, real_now).unwrap();
    let zone = root
        .new_zone(
            &"private".parse().unwrap(),
            "Court",
            KeyAlg::EcP256,
            real_now,
        )
        .unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("trust.pem"), root.cert_pem()).unwrap();
    let tls_for = |name: &str, host: &str| {
        let mut req = LeafRequest::new(CertKind::Server, name);
        req.dns = vec![host.into()];
        let leaf = zone.issue(&req, real_now).unwrap();
        std::fs::write(p(&format!("{name}.pem")), &leaf.chain_pem).unwrap();
        std::fs::write(p(&format!("{name}.key")), leaf.key_pem.expose()).unwrap();
        Arc::new(
            ServerTlsBuilder::new(p(&format!("{name}.pem")), p(&format!("{name}.key")))
                .client_auth(ClientAuth::None, p("trust.pem"), vec![])
                .build()
                .unwrap(),
        )
    };
    let options = |host: &str| {
        let mut o = ServerOptions::new(HostSet::new([host]));
        o.http3 = false;
        o
    };

    let arrived = Arc::new(Mutex::new(Vec::new()));
    let app = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        tls_for("case", APP_HOST),
        options(APP_HOST),
        app_handler(Arc::clone(&arrived)),
    )
    .await
    .unwrap();
    let redirect_uri = format!("https://{APP_HOST}:{}/cb", app.local_addr().port());

    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let store = Arc::new(SledStore::open(&p("store")).unwrap());
    // cheap argon2id parameters: the test is about the pages, not the hash's cost
    let params = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let passwords =
        Arc::new(Passwords::new(params, PasswordPolicy::default(), &SeededRandom::new(3)).unwrap());
    // a judge with a password and no authenticator yet: the first sign-in enrols one
    let directory = Directory::new(&*store);
    for (code, name) in [
        ("bj", "北京市高级人民法院"),
        ("bj.01", "北京市第一中级人民法院"),
        ("bj.01.03", "北京市海淀区人民法院"),
    ] {
        directory
            .add_court(Court {
                code: code.parse().unwrap(),
                name: name.into(),
            })
            .unwrap();
    }
    let mut user = User::new(SUB.parse().unwrap(), LOGIN, "李法官", clock.now());
    user.court = Some("bj.01.03".parse().unwrap());
    user.roles = vec![Role::Judge];
    user.clearance = Clearance::Secret;
    directory.add_user(user).unwrap();
    directory
        .set_password(
            &SUB.parse().unwrap(),
            &passwords,
            PASSWORD,
            false,
            clock.now(),
            &SeededRandom::new(5),
        )
        .unwrap();
    let sign_in = SignInParts {
        passwords,
        lockout: LockoutPolicy::default(),
        totp: TotpConfig::default(),
        least_acr: Arc::new(|roles: &[Role]| {
            if roles.contains(&Role::Judge) {
                Acr::Otp
            } else {
                Acr::Pwd
            }
        }),
        zone: "private".parse().unwrap(),
        self_registration: false,
        totp_issuer: "Tianping".into(),
    };
    let audit = Arc::new(AuditLog::create(&p("audit"), "idp.private").unwrap());
    let signer = Arc::new(RingSigner::generate(Algorithm::Es256).unwrap().0);
    let idp = Idp::with_sign_in(
        IdpParts {
            issuer: TokenIssuer::new(ISS, KeySet::new(signer)),
            audience: "tianping".into(),
            store: store as Arc<dyn Store>,
            clients: vec![Client {
                id: "case-app".into(),
                secret_sha256: Some(Client::hash_secret("s3cret")),
                auth_method: ClientAuthMethod::ClientSecretBasic,
                redirect_uris: vec![redirect_uri.clone()],
                post_logout_redirect_uris: vec![],
                grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                native_loopback: false,
                extra_scopes: vec![],
            }],
            audit,
            zone: "private".into(),
            clock: clock.clone(),
            rng: Arc::new(SeededRandom::new(2)),
            grants: GrantPolicy::default(),
            sessions: SessionPolicy::default(),
        },
        sign_in,
    );
    let idp = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        tls_for("idp", IDP_HOST),
        options(IDP_HOST),
        idp,
    )
    .await
    .unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.cert_pem().as_bytes()).unwrap())
        .resolve(IDP_HOST, idp.local_addr())
        .build()
        .unwrap();
    World {
        _dir: dir,
        idp,
        app,
        arrived,
        ca_pem: root.cert_pem().to_owned(),
        redirect_uri,
        clock,
        http,
    }
}

async fn browser(test: &str, w: &World) -> Browser {
    Browser::start(&BrowserConfig {
        test,
        ca_pem: &w.ca_pem,
        hosts: &[IDP_HOST, APP_HOST],
    })
    .await
    .unwrap()
}

/// What the pages say in one language.
struct Words {
    lang: &'static str,
    sign_in: &'static str,
    user: &'static str,
    password: &'static str,
    enrol: &'static str,
    scan: &'static str,
    wrong_code: &'static str,
    one_time_code: &'static str,
    continue_: &'static str,
}

const ZH: Words = Words {
    lang: "zh-CN",
    sign_in: "登录",
    user: "用户名",
    password: "密码",
    enrol: "绑定动态口令",
    scan: "用身份验证器应用扫描二维码",
    wrong_code: "动态口令错误。",
    one_time_code: "动态口令",
    continue_: "继续",
};
const EN: Words = Words {
    lang: "en",
    sign_in: "Sign in",
    user: "User name",
    password: "Password",
    enrol: "Set up one-time codes",
    scan: "Scan the QR code with an authenticator app",
    wrong_code: "The one-time code is wrong.",
    one_time_code: "One-time code",
    continue_: "Continue",
};

/// The page is in `words`' language with `title`, says each of `says`, and none of `other`'s
/// field labels.
async fn assert_page(b: &Browser, words: &Words, other: &Words, title: &str, says: &[&str]) {
    assert_eq!(b.lang().await.unwrap().as_deref(), Some(words.lang));
    assert_eq!(b.client().unwrap().title().await.unwrap(), title);
    let text = b.text().await.unwrap();
    for s in says.iter().chain([&title, &words.continue_]) {
        assert!(text.contains(s), "{s:?} not in {text:?}");
    }
    for s in [other.user, other.password, other.continue_] {
        assert!(!text.contains(s), "{s:?} in {text:?}");
    }
}

/// The browser is back at the client's redirect URI with a `code`, the `state` and `iss`, and
/// the relying party received exactly that request; returns the code.
async fn assert_back_at_client(b: &Browser, w: &World, arrivals: usize) -> String {
    let url = b.current_url().await.unwrap();
    let (base, query) = url.split_once('?').unwrap();
    assert_eq!(base, w.redirect_uri);
    let params = tianping_idp::Params::parse(query.as_bytes()).unwrap();
    let get = |k: &str| params.get(k).unwrap().unwrap().to_owned();
    assert_eq!(get("iss"), ISS);
    assert_eq!(get("state"), "st-<1>");
    let code = get("code");
    assert!(!code.is_empty());
    assert!(
        b.text()
            .await
            .unwrap()
            .contains("case app: callback received")
    );
    let arrived = w.arrived.lock().unwrap().clone();
    assert_eq!(arrived.len(), arrivals, "{arrived:?}");
    assert_eq!(
        arrived.last().map(String::as_str),
        Some(
            url.split_once(&format!(":{}", w.app.local_addr().port()))
                .unwrap()
                .1
        )
    );
    code
}

/// The code redeems at `/token` with the PKCE verifier: an ID token (with the nonce) and an
/// access token, both verified against the JWKS, for the judge at `acr` `otp`.
async fn redeem(w: &World, code: &str) {
    let form = tianping_idp::form_encode_pairs([
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", w.redirect_uri.as_str()),
        ("code_verifier", VERIFIER),
    ]);
    let resp = w
        .http
        .post(w.idp_url("/token"))
        .basic_auth("case-app", Some("s3cret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    let jwks: serde_json::Value = w
        .http
        .get(w.idp_url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = tianping_idp::keys_from_jwks(&jwks).unwrap();
    // both tokens signed by the published key, for the judge, after password and one-time code
    for token in [&v["id_token"], &v["access_token"]] {
        let t = tianping_idp::verify_with(token.as_str().unwrap(), &keys).unwrap();
        assert_eq!(t.str_claim("iss"), Some(ISS));
        assert_eq!(t.str_claim("sub"), Some(SUB));
        assert_eq!(t.str_claim("acr"), Some("otp"), "{:?}", t.claims);
        assert_eq!(t.claims["amr"], serde_json::json!(["pwd", "otp"]));
    }
    assert_eq!(
        tianping_idp::verify_with(v["id_token"].as_str().unwrap(), &keys)
            .unwrap()
            .str_claim("nonce"),
        Some("n-1")
    );
}

/// Sign-in in `words`' language: password, TOTP enrolment (a wrong code first, then the right
/// one), back at the client; then `prompt=login`: password and one-time code again.
async fn sign_in(test: &str, words: &Words, other: &Words) {
    let w = world().await;
    let mut b = browser(test, &w).await;
    let totp = TotpConfig::default();

    b.goto(&w.authorize_url(words.lang, None)).await.unwrap();
    assert_page(
        &b,
        words,
        other,
        words.sign_in,
        &[words.user, words.password],
    )
    .await;
    b.fill("input[name=username]", LOGIN).await.unwrap();
    b.fill("input[name=password]", PASSWORD).await.unwrap();
    b.screenshot("password").await.unwrap();
    b.click("button[type=submit]").await.unwrap();

    // first sign-in: the enrolment page, QR code as inline SVG, the secret as text
    assert_page(&b, words, other, words.enrol, &[words.scan]).await;
    let c = b.client().unwrap();
    assert!(c.find(fantoccini::Locator::Css("figure svg")).await.is_ok());
    let secret_text = c
        .find(fantoccini::Locator::Css("#totp-secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let secret = TotpSecret::from_base32(&secret_text).unwrap();
    let now_code = totp.code_at(&secret, totp.step_at(w.clock.now()));
    let wrong = if now_code == "000000" {
        "111111"
    } else {
        "000000"
    };
    b.fill("input[name=code]", wrong).await.unwrap();
    b.screenshot("enrol-wrong-code-typed").await.unwrap();
    b.click("button[type=submit]").await.unwrap();
    assert_page(&b, words, other, words.enrol, &[words.wrong_code]).await;
    b.fill("input[name=code]", &now_code).await.unwrap();
    b.screenshot("wrong-code-notice").await.unwrap();
    b.click("button[type=submit]").await.unwrap();
    let code = assert_back_at_client(&b, &w, 1).await;
    b.screenshot("back-at-client").await.unwrap();
    redeem(&w, &code).await;

    // signing in again (prompt=login): password, then the one-time code of the next step
    w.clock.advance(std::time::Duration::from_secs(30));
    b.goto(&w.authorize_url(words.lang, Some("login")))
        .await
        .unwrap();
    assert_page(
        &b,
        words,
        other,
        words.sign_in,
        &[words.user, words.password],
    )
    .await;
    b.fill("input[name=username]", LOGIN).await.unwrap();
    b.fill("input[name=password]", PASSWORD).await.unwrap();
    b.click("button[type=submit]").await.unwrap();
    assert_page(&b, words, other, words.one_time_code, &[]).await;
    assert!(!b.text().await.unwrap().contains(words.scan));
    let next = totp.code_at(&secret, totp.step_at(w.clock.now()));
    b.fill("input[name=code]", &next).await.unwrap();
    b.screenshot("one-time-code").await.unwrap();
    b.click("button[type=submit]").await.unwrap();
    let again = assert_back_at_client(&b, &w, 2).await;
    assert_ne!(again, code);
    redeem(&w, &again).await;

    b.close().await.unwrap();
    w.stop().await;
}

#[tokio::test]
async fn signs_in_with_password_and_totp_enrolment_in_chinese() {
    sign_in(
        "signs_in_with_password_and_totp_enrolment_in_chinese",
        &ZH,
        &EN,
    )
    .await;
}

#[tokio::test]
async fn signs_in_with_password_and_totp_enrolment_in_english() {
    sign_in(
        "signs_in_with_password_and_totp_enrolment_in_english",
        &EN,
        &ZH,
    )
    .await;
}

/// The harness does not ignore certificate errors: a server whose certificate comes from a CA
/// the browser was not told to trust is refused, and nothing reaches it.
#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let w = world().await;
    let stranger = CaCert::new_root(
        "Stranger",
        KeyAlg::EcP256,
        UnixTime::from_system_time(std::time::SystemTime::now()),
    )
    .unwrap();
    let mut b = Browser::start(&BrowserConfig {
        test: "an_untrusted_certificate_is_refused",
        ca_pem: stranger.cert_pem(),
        hosts: &[IDP_HOST, APP_HOST],
    })
    .await
    .unwrap();
    let went = b.goto(&w.authorize_url("en", None)).await;
    b.screenshot("refused").await.unwrap();
    let text = b.text().await.unwrap_or_default();
    assert!(
        went.is_err() || !text.contains("User name"),
        "the sign-in page was shown over an untrusted certificate: {text:?}"
    );
    assert!(text.contains("ERR_CERT_AUTHORITY_INVALID"), "{text:?}");
    assert!(w.arrived.lock().unwrap().is_empty());
    b.close().await.unwrap();
    w.stop().await;
}
