//! `tianping gateway --zone private` in front of a real `tianping idp serve`, both children of
//! the test, and an HTTPS service of the zone that records what it receives.
//!
//! Shown: the gateway starts as `idp serve` does (addresses published, `/healthz` 200 on its
//! admin listener); a browser with nothing but its own cookies is sent to the IdP, signs in on
//! the IdP's password page, comes back through `/.tianping/callback` (state, PKCE, nonce, RFC
//! 9207 `iss`; the gateway registered itself at the IdP through its control socket, and
//! authenticated at the token endpoint by its node certificate) and is
//! served, the service seeing the person in a `Tianping-Assertion`; `/.tianping/me` shows the
//! session, and signing out ends it; an access token the IdP issued to another client is accepted as a bearer token, and
//! tokens made wrong each get 401 (alg none, HS256 keyed with public material, expired, not yet
//! valid, wrong audience, wrong issuer, unknown kid, one bit changed, certificate-bound without
//! the certificate); a logout token signed by the IdP's key ends the session; and with the IdP
//! gone, a restarted gateway refuses every token (its JWKS cannot be fetched: fail closed).
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
#[path = "common/gateway.rs"]
mod gw;

use gw::{bind_service, ok, private_zone, run, start};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Request, Response};
use serde_json::{Value, json};
use tianping_core::{Algorithm, Component, DataDir, Fabric, UnixTime, ZoneName};
use tianping_net::{Body, BoxFuture, Handler, HostSet, ServerOptions, full};

const STRONG: &str = "Court-Passw0rd-2026";

/// The zone's policy copy for this test: a judge signs in with a password.
const POLICY: &str = r#"
levels confidentiality public < internal
levels integrity untrusted < court
zone private {
  confidentiality internal
  integrity court
  acr any >= pwd
}
service case-management in private
route case-read in private {
  path /courts/{court}/cases/**
  methods GET
  to service case-management
  roles judge, clerk
}
"#;

// ---------------------------------------------------------------- the service

#[derive(Default)]
struct Seen(Mutex<Vec<HeaderMap>>);

#[derive(Clone)]
struct Cases(Arc<Seen>);

impl Handler for Cases {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let seen = Arc::clone(&self.0);
        Box::pin(async move {
            seen.0.lock().unwrap().push(req.headers().clone());
            Response::new(full("the case file\n"))
        })
    }
}

async fn start_service(data: &Path, seen: Arc<Seen>) -> tianping_net::ServerHandle {
    let out = data.parent().unwrap().join("cases");
    ok(&run(
        data,
        &[
            "certs",
            "issue",
            "--zone",
            "private",
            "--kind",
            "server",
            "--name",
            "cases",
            "--dns",
            "localhost",
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    ));
    let tls =
        tianping_certs::ServerTlsBuilder::new(out.with_extension("pem"), out.with_extension("key"))
            .build()
            .unwrap();
    let mut options = ServerOptions::new(HostSet::new(["localhost"]));
    options.http3 = false;
    tianping_net::serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(tls),
        options,
        Cases(seen),
    )
    .await
    .unwrap()
}

// ---------------------------------------------------------------- a browser

struct World {
    data: PathBuf,
    zone: ZoneName,
    gw_host: String,
    idp_host: String,
    trust: Vec<u8>,
}

impl World {
    fn http(&self, gw: SocketAddr, idp: SocketAddr) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&self.gw_host, gw)
            .resolve(&self.idp_host, idp);
        for cert in reqwest::Certificate::from_pem_bundle(&self.trust).unwrap() {
            b = b.add_root_certificate(cert);
        }
        b.build().unwrap()
    }

    fn idp_keys(&self) -> tianping_idp::KeySet {
        let dir = DataDir::new(&self.data);
        tianping_idp::KeyDir::new(dir.keys(&self.zone, Component::Idp))
            .load(now())
            .unwrap()
    }
}

/// SHA-256 (through the IdP's certificate thumbprint, which is base64url of it).
fn sha256(data: &[u8]) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(tianping_idp::x5t_s256(data))
        .unwrap()
}

/// HMAC-SHA256 (RFC 2104), as an attacker keying HS256 with public material computes it.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 {
        sha256(key)
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(message);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

fn now() -> UnixTime {
    UnixTime::from_system_time(std::time::SystemTime::now())
}

/// The `name=value` of the `Set-Cookie` named `name` (not a removal).
fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|c| c.starts_with(&format!("{name}=")) && !c.ends_with('='))
        .map(str::to_owned)
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The IdP's login page for `authorize`, then its password form; the redirect it answers.
async fn idp_password(
    http: &reqwest::Client,
    authorize: &str,
    idp_base: &str,
    login: &str,
) -> reqwest::Response {
    let page = http.get(authorize).send().await.unwrap();
    assert_eq!(page.status(), 200, "{authorize}");
    let idp_cookie = cookie(&page, "__Host-tianping-session").unwrap();
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{idp_base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &idp_cookie)
        .body(format!("csrf={csrf}&username={login}&password={STRONG}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    r
}

/// A browser's whole sign-in from `page`: sent to the IdP, its password form, back through the
/// gateway's callback; the gateway's session cookie.
async fn browser_sign_in(http: &reqwest::Client, page: &str, idp_base: &str) -> String {
    let r = http
        .get(page)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let authorize = location(&r);
    let signin = cookie(&r, "__Host-tianping-signin").unwrap();
    let r = idp_password(http, &authorize, idp_base, "wang").await;
    let callback = location(&r);
    let r = http
        .get(&callback)
        .header("cookie", &signin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    cookie(&r, "__Host-tianping-session").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_through_the_idp_and_tokens_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = private_zone(tmp.path(), POLICY);
    let dir = DataDir::new(&data);
    let zone: ZoneName = "private".parse().unwrap();
    let seen = Arc::new(Seen::default());
    let service = start_service(&data, Arc::clone(&seen)).await;
    bind_service(
        &dir.fabric(),
        &format!("https://localhost:{}/", service.local_addr().port()),
    );
    let fabric = Fabric::load(&dir.fabric()).unwrap();
    let zl = fabric.zone(&zone).unwrap();
    let w = World {
        data: data.clone(),
        zone: zone.clone(),
        gw_host: zl.gateway_host.clone(),
        idp_host: zl.idp_host.clone(),
        trust: std::fs::read(dir.zone_trust_bundle(&zone)).unwrap(),
    };
    let idp = |args: &[&str], stdin: &str| {
        let mut all = vec!["idp"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--zone", "private"]);
        run(&data, &all, stdin)
    };
    ok(&idp(
        &["court", "add", "bj", "--name", "北京市高级人民法院"],
        "",
    ));
    ok(&idp(
        &["court", "add", "bj.01", "--name", "北京市第一中级人民法院"],
        "",
    ));
    ok(&idp(
        &[
            "user",
            "add",
            "--sub",
            "judge-0001",
            "--login",
            "wang",
            "--name",
            "王芳",
            "--court",
            "bj.01",
            "--role",
            "judge",
            "--password-stdin",
        ],
        &format!("{STRONG}\n"),
    ));
    let added = ok(&idp(
        &[
            "client",
            "add",
            "case-app",
            "--redirect-uri",
            "https://case.example/cb",
        ],
        "",
    ));
    let app_secret = added
        .lines()
        .find(|l| l.contains("client secret"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_owned();

    let (idp_daemon, idp_addr, _) = start(
        &data,
        &["idp", "serve", "--zone", "private"],
        &zone,
        Component::Idp,
    );
    let (gw, gw_addr, gw_admin) = start(
        &data,
        &["gateway", "--zone", "private"],
        &zone,
        Component::Gateway,
    );
    let health = reqwest::get(format!("http://{gw_admin}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let gw_base = format!("https://{}:{}", w.gw_host, gw_addr.port());
    let idp_base = format!("https://{}:{}", w.idp_host, idp_addr.port());
    // the gateway registered itself at the running IdP (tls_client_auth, its redirect URI)
    let shown = ok(&idp(&["client", "show", "gateway"], ""));
    assert!(
        shown.contains(&format!("{gw_base}/.tianping/callback")),
        "{shown}"
    );
    assert!(shown.contains("tls_client_auth"), "{shown}");
    let http = w.http(gw_addr, idp_addr);

    // a browser without a session is sent to the IdP
    let page = format!("{gw_base}/courts/bj.01/cases/7");
    let r = http
        .get(&page)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let authorize = location(&r);
    assert!(
        authorize.starts_with(&format!("{idp_base}/authorize?")),
        "{authorize}"
    );
    let signin = cookie(&r, "__Host-tianping-signin").unwrap();
    // signs in there, and is sent back to the gateway's callback with code, state and iss
    let r = idp_password(&http, &authorize, &idp_base, "wang").await;
    let callback = location(&r);
    assert!(
        callback.starts_with(&format!("{gw_base}/.tianping/callback?")),
        "{callback}"
    );
    assert!(callback.contains("&iss="), "{callback}");
    // the callback without the browser's sign-in cookie is refused (login CSRF)
    let stolen = http.get(&callback).send().await.unwrap();
    assert_eq!(stolen.status(), 401);
    let r = http
        .get(&callback)
        .header("cookie", &signin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(location(&r), "/courts/bj.01/cases/7");
    let session = cookie(&r, "__Host-tianping-session").unwrap();
    // a state is used once
    let again = http
        .get(&callback)
        .header("cookie", &signin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    let r = http
        .get(&page)
        .header("cookie", &session)
        .header("x-forwarded-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "the case file\n");
    let headers = seen.0.lock().unwrap().last().cloned().unwrap();
    assert!(!headers.contains_key("x-forwarded-user"));
    let assertion = headers.get("tianping-assertion").unwrap().to_str().unwrap();
    // the node certificate alone in `x5c`, verified with the zone's trust bundle as a service
    // verifies it
    let head: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(assertion.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(head["x5c"].as_array().map(Vec::len), Some(1), "{head}");
    let trust = tianping_certs::TrustStore::from_pem(&w.trust, &[]).unwrap();
    let verifier = tianping_certs::TokenVerifier::new(
        &trust,
        &zone,
        "case-management",
        tianping_certs::TokenKind::User,
    )
    .unwrap();
    let verified = verifier.verify_at(assertion.as_bytes(), now()).unwrap();
    assert_eq!(verified.signer.zone, zone);
    let a = payload(assertion);
    assert_eq!(a["sub"], "judge-0001");
    assert_eq!(a["court"], "bj.01");
    assert_eq!(a["aud"], "case-management");
    let cookie_header = headers
        .get("cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        !cookie_header.contains("tianping-session"),
        "{cookie_header}"
    );
    let me: Value = http
        .get(format!("{gw_base}/.tianping/me"))
        .header("cookie", &session)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(me["sub"], "judge-0001");
    assert_eq!(me["credential"], "session");
    assert_eq!(me["acr"], "pwd");
    // its page's sign-out form may go on to the IdP, and the page is never framed
    let r = http
        .get(format!("{gw_base}/.tianping/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains(&format!("form-action 'self' {idp_base};")),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    // signing out ends the session at the gateway, and sends the browser on to end its sign-in
    // at the IdP (which asks to confirm): else the next visit would be signed in again at once;
    // a new sign-in makes a new one
    let r = http
        .post(format!("{gw_base}/.tianping/logout"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert!(
        to.starts_with(&format!("{idp_base}/logout?client_id=")),
        "{to} (the IdP at {idp_base})"
    );
    let cleared = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("__Host-tianping-session=;"));
    assert!(cleared, "the cookie is removed");
    let r = http
        .get(&page)
        .header("cookie", &session)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "a signed-out session is not taken again");
    let session = browser_sign_in(&http, &page, &idp_base).await;
    let r = http
        .get(&page)
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // a browser's approval without its session's CSRF token is refused before anything else
    let r = http
        .post(format!("{gw_base}/.tianping/transfers/private:1/approve"))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CSRF"));

    // a bearer token the IdP issued to another client
    let app = w.http(gw_addr, idp_addr);
    let r = idp_password(
        &app,
        &format!(
            "{idp_base}/authorize?response_type=code&client_id=case-app&scope=openid&state=s1\
             &redirect_uri=https%3A%2F%2Fcase.example%2Fcb&code_challenge_method=S256\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ),
        &idp_base,
        "wang",
    )
    .await;
    let code = location(&r)
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("code=").map(str::to_owned))
        .unwrap();
    let token: Value = app
        .post(format!("{idp_base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth("case-app", Some(&app_secret))
        .body(format!(
            "grant_type=authorization_code&code={code}\
             &redirect_uri=https%3A%2F%2Fcase.example%2Fcb\
             &code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let access = token["access_token"].as_str().unwrap().to_owned();
    let r = http.get(&page).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // tokens made wrong: each 401 invalid_token
    let keys = w.idp_keys();
    let claims = payload(&access);
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        keys.sign("at+jwt", &c).unwrap()
    };
    let t = now().as_secs();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt"})),
        b64(&claims)
    );
    let hs256 = {
        let input = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "typ": "at+jwt", "kid": keys.kid()})),
            b64(&claims)
        );
        // keyed with what the IdP publishes: its JWKS
        let jwks = keys.jwks(now()).to_string();
        let tag = hmac_sha256(jwks.as_bytes(), input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
    };
    let other = {
        let (signer, _) = tianping_core::RingSigner::generate(Algorithm::Es256).unwrap();
        tianping_idp::KeySet::new(Arc::new(signer))
            .sign("at+jwt", &claims)
            .unwrap()
    };
    let flipped = {
        let sig_at = access.rfind('.').unwrap() + 3;
        let mut b = access.clone().into_bytes();
        let c = b.get_mut(sig_at).unwrap();
        *c = if *c == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let cases = [
        ("alg none", none, "algorithm"),
        ("HS256 keyed with public material", hs256, "algorithm"),
        ("expired", with("exp", json!(t - 3600)), "expired"),
        (
            "not yet valid",
            with("nbf", json!(t + 3600)),
            "not valid before",
        ),
        (
            "wrong audience",
            with("aud", json!("case-app")),
            "not for this gateway",
        ),
        (
            "wrong issuer",
            with("iss", json!("https://idp.evil.example")),
            "issued by",
        ),
        ("unknown kid", other, "no key"),
        ("one bit changed", flipped, "signature"),
        (
            "bound to a certificate not presented",
            with(
                "cnf",
                json!({"x5t#S256": URL_SAFE_NO_PAD.encode([3u8; 32])}),
            ),
            "bound to a client certificate",
        ),
    ];
    for (what, token, why) in cases {
        let r = http.get(&page).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(challenge.contains(why), "{what}: {challenge}");
    }

    // a back-channel logout token signed by the IdP's key ends the person's sessions
    let logout = keys
        .sign(
            "logout+jwt",
            &json!({
                "iss": idp_base, "aud": "gateway", "iat": t, "exp": t + 120, "jti": "bcl-1",
                "sub": "judge-0001",
                "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
            }),
        )
        .unwrap();
    let r = http
        .post(format!("{gw_base}/.tianping/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={logout}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{gw_base}/.tianping/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={logout}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a replayed logout token");
    let r = http
        .get(&page)
        .header("cookie", &session)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "the session is over: sign in again");

    // the IdP's own back-channel logout: a new session, then the person's sessions ended at the
    // IdP (`idp user logout`), which posts a logout token to the gateway's back-channel URI it
    // registered (the fabric's `gw.` host reached at the zone's address); the session ends.
    // The logout above ended every session of the person authenticated in its second or
    // before: the new one is authenticated in a later second.
    let ended = now().as_secs();
    while now().as_secs() <= ended {
        tokio::task::yield_now().await;
    }
    let session = browser_sign_in(&http, &page, &idp_base).await;
    let r = http
        .get(&page)
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    ok(&idp(&["user", "logout", "wang"], ""));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = http
            .get(&page)
            .header("cookie", &session)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        if r.status() == 302 {
            break;
        }
        // still signed in (or asking too fast for the per-subject limit): ask again, paced
        assert!(r.status() == 200 || r.status() == 429, "{}", r.status());
        assert!(
            std::time::Instant::now() < deadline,
            "no back-channel logout reached the gateway"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // the IdP gone (killed: its address stays published, nobody answers there): a restarted
    // gateway cannot fetch the JWKS, so no token verifies
    gw.stop();
    drop(idp_daemon);
    let (gw, gw_addr, _) = start(
        &data,
        &["gateway", "--zone", "private"],
        &zone,
        Component::Gateway,
    );
    let http = w.http(gw_addr, idp_addr);
    let page = format!(
        "https://{}:{}/courts/bj.01/cases/7",
        w.gw_host,
        gw_addr.port()
    );
    let r = http.get(&page).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("keys are not available"), "{challenge}");
    gw.stop();

    // every decision is in the gateway's audit log, with the policy's hash
    let log = tianping_audit::AuditLog::open(&dir.audit_log(&zone, Component::Gateway)).unwrap();
    let events: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .collect();
    let requests: Vec<_> = events.iter().filter(|e| e.action == "request").collect();
    assert!(requests.len() >= 14, "{}", requests.len());
    assert!(requests.iter().all(|e| e.policy_hash.is_some()));
    assert!(
        events
            .iter()
            .any(|e| e.action == "signin" && e.outcome == "ok" && e.actor == "judge-0001")
    );
    assert!(
        events
            .iter()
            .any(|e| e.action == "logout.backchannel" && e.outcome == "ok")
    );
    service.shutdown().await;
}
