//! `tianping idp serve` makes its own HTTPS requests with the zone's trust: a person's logout
//! (`idp user logout` on the running IdP) reaches the client's back-channel URI as a signed
//! logout token, retried after the receiver refused it, each attempt audited; and a
//! `private_key_jwt` client registered with `--jwks-uri` has its keys fetched from a server of
//! the zone, and is refused (`invalid_client`) once that server is gone and a new key is used.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::panic, reason = "tests fail loudly")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tianping_core::{Component, DataDir, Fabric, Listener, UnixTime, ZoneName};
use tianping_net::{Body, BoxFuture, Handler, HostSet, ServerOptions, full};

const STRONG: &str = "Court-Passw0rd-2026";

fn run(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["--data", data.to_str().unwrap()];
    all.extend_from_slice(args);
    common::tianping(&all, stdin)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every listener of every zone on port 0.
fn ports_to_zero(fabric: &Path) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        let zeroed = if t.starts_with("gateway = ") || t.starts_with("idp = ") {
            let (k, _) = t.split_once(" = ").unwrap();
            format!("{k} = 0")
        } else if t.starts_with("admin = {") {
            let mut s = String::new();
            let mut in_num = false;
            for c in t.chars() {
                if c.is_ascii_digit() {
                    if !in_num {
                        s.push('0');
                    }
                    in_num = true;
                } else {
                    in_num = false;
                    s.push(c);
                }
            }
            s
        } else if t.starts_with("address = \"127.0.0.1:") {
            "address = \"127.0.0.1:0\"".to_owned()
        } else {
            line.to_owned()
        };
        out.push_str(&zeroed);
        out.push('\n');
    }
    std::fs::write(fabric, out).unwrap();
}

/// Kills the child when dropped, so a failing test leaves no daemon behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// SIGTERM, then waits (bounded) for the IdP to finish what it was doing and exit.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the IdP did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A data folder with the `private` zone's IdP initialised, every port 0.
fn world(tmp: &Path) -> (PathBuf, ZoneName) {
    let data = tmp.join("data");
    ok(&run(&data, &["init"], ""));
    ports_to_zero(&DataDir::new(&data).fabric());
    ok(&run(&data, &["idp", "init", "--zone", "private"], ""));
    (data, "private".parse().unwrap())
}

/// `idp serve`, and its public address once published (bounded wait).
fn serve(data: &Path, zone: &ZoneName) -> (Daemon, SocketAddr) {
    let mut d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tianping"))
            .arg("--data")
            .arg(data)
            .args(["idp", "serve", "--zone", zone.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let dir = DataDir::new(data);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = d.0.try_wait().unwrap() {
            panic!("idp serve exited early: {status}");
        }
        let a = tianping_core::published_addrs(&dir, zone, Component::Idp).unwrap_or_default();
        if let (Some(p), Some(_)) = (a.get(&Listener::Public), a.get(&Listener::Admin)) {
            return (d, *p);
        }
        assert!(
            Instant::now() < deadline,
            "the IdP never published its addresses"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client of the IdP at `addr` trusting the zone's bundle, and the IdP's base URL.
fn idp_http(data: &Path, zone: &ZoneName, addr: SocketAddr) -> (reqwest::Client, String) {
    let dir = DataDir::new(data);
    let fabric = Fabric::load(&dir.fabric()).unwrap();
    let host = fabric.zone(zone).unwrap().idp_host.clone();
    let trust = std::fs::read(dir.zone_trust_bundle(zone)).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, addr);
    for cert in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
        b = b.add_root_certificate(cert);
    }
    (
        b.build().unwrap(),
        format!("https://{host}:{}", addr.port()),
    )
}

// ---------------------------------------------------------------- the client's HTTPS server

/// What the client's server saw: each request's path, content type and body.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, String, String)>>,
    /// Back-channel POSTs answered 503 before the first that is taken.
    refuse_first: AtomicUsize,
    /// The JWKS served at `/jwks`.
    jwks: Mutex<Value>,
    arrived: tokio::sync::Notify,
}

#[derive(Clone)]
struct Rp(Arc<Seen>);

impl Handler for Rp {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let seen = Arc::clone(&self.0);
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let ct = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8(body.to_vec()).unwrap();
            seen.requests.lock().unwrap().push((path.clone(), ct, body));
            seen.arrived.notify_one();
            let mut resp = if path == "/jwks" {
                Response::new(full(seen.jwks.lock().unwrap().to_string()))
            } else {
                Response::new(full(""))
            };
            let refuse = path == "/bcl"
                && seen
                    .refuse_first
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if refuse {
                *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            resp
        })
    }
}

/// The client's HTTPS server on loopback, its certificate issued by the zone's CA with
/// `tianping certs issue` (name `localhost`).
async fn start_rp(data: &Path, seen: Arc<Seen>) -> tianping_net::ServerHandle {
    let out = data.parent().unwrap().join("rp");
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
            "rp",
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
        Rp(seen),
    )
    .await
    .unwrap()
}

/// Waits (bounded, a guard against a hung test) until the client's server has seen `n`
/// requests; what it saw.
async fn seen_requests(seen: &Seen, n: usize) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = seen.requests.lock().unwrap().clone();
        if now.len() >= n {
            return now;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {n} requests arrived: {now:?}",
            now.len()
        );
        let _ = tokio::time::timeout(left, seen.arrived.notified()).await;
    }
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn client_secret(added: &str) -> String {
    added
        .lines()
        .find(|l| l.contains("client secret"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_owned()
}

fn set_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|c| c.starts_with("__Host-tianping-session=") && !c.ends_with('='))
        .map(str::to_owned)
}

/// Signs `login` in to `client` with the password form and redeems the code; the token answer.
async fn sign_in_and_redeem(
    http: &reqwest::Client,
    base: &str,
    client: &str,
    secret: &str,
    login: &str,
) -> Value {
    let authorize = format!(
        "{base}/authorize?response_type=code&client_id={client}&scope=openid&state=s1\
         &redirect_uri=https%3A%2F%2Fcase.example%2Fcb&code_challenge_method=S256\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let page = http.get(authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = set_cookie(&page).unwrap();
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .body(format!("csrf={csrf}&username={login}&password={STRONG}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let code = location
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("code="))
        .unwrap();
    let token = http
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth(client, Some(secret))
        .body(format!(
            "grant_type=authorization_code&code={code}\
             &redirect_uri=https%3A%2F%2Fcase.example%2Fcb\
             &code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    serde_json::from_str(&token.text().await.unwrap()).unwrap()
}

fn audit_events(data: &Path, zone: &ZoneName) -> Vec<tianping_audit::Event> {
    let dir = DataDir::new(data);
    let log = tianping_audit::AuditLog::open(&dir.audit_log(zone, Component::Idp)).unwrap();
    (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_reaches_the_clients_back_channel_signed_retried_and_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, zone) = world(tmp.path());
    let seen = Arc::new(Seen::default());
    seen.refuse_first.store(1, Ordering::SeqCst);
    let rp = start_rp(&data, Arc::clone(&seen)).await;
    let bcl = format!("https://localhost:{}/bcl", rp.local_addr().port());
    let z = ["--zone", "private"];
    let idp = |args: &[&str], stdin: &str| {
        let mut all = vec!["idp"];
        all.extend_from_slice(args);
        all.extend_from_slice(&z);
        run(&data, &all, stdin)
    };
    let added = ok(&idp(
        &[
            "client",
            "add",
            "rp",
            "--redirect-uri",
            "https://case.example/cb",
            "--backchannel-logout-uri",
            &bcl,
            "--backchannel-logout-session-required",
        ],
        "",
    ));
    let secret = client_secret(&added);
    ok(&idp(
        &[
            "user",
            "add",
            "--sub",
            "judge-0009",
            "--login",
            "zhou",
            "--name",
            "周",
            "--password-stdin",
        ],
        &format!("{STRONG}\n"),
    ));

    let (daemon, public) = serve(&data, &zone);
    let (http, base) = idp_http(&data, &zone, public);
    let discovery: Value = http
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(discovery["backchannel_logout_supported"], true);
    let token = sign_in_and_redeem(&http, &base, "rp", &secret, "zhou").await;
    let sid = payload(token["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwks: Value = http
        .get(format!("{base}/jwks"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert!(
        seen.requests.lock().unwrap().is_empty(),
        "nothing sent before the logout"
    );

    let ended = ok(&idp(&["user", "logout", "zhou"], ""));
    assert!(ended.contains("1 sessions ended"), "{ended}");
    // the first POST is refused (503), the second, after the backoff, taken
    let got = seen_requests(&seen, 2).await;
    let keys = tianping_idp::keys_from_jwks(&jwks).unwrap();
    let mut jtis = Vec::new();
    for (path, ct, body) in &got {
        assert_eq!(path, "/bcl");
        assert_eq!(ct, "application/x-www-form-urlencoded");
        let token = body.strip_prefix("logout_token=").unwrap();
        assert!(!token.contains('&'), "{body}");
        let now = UnixTime::from_system_time(std::time::SystemTime::now());
        let checked = tianping_idp::verify_logout_token(token, &keys, &base, "rp", now).unwrap();
        assert_eq!(checked.sid.as_deref(), Some(sid.as_str()));
        let claims = payload(token);
        assert_eq!(claims["iss"], base.as_str());
        assert_eq!(claims["aud"], "rp");
        assert_eq!(claims["sub"], "judge-0009");
        assert_eq!(claims["sid"], sid.as_str());
        assert_eq!(
            claims["events"],
            json!({ "http://schemas.openid.net/event/backchannel-logout": {} })
        );
        assert!(claims.get("nonce").is_none(), "{claims}");
        jtis.push(claims["jti"].as_str().unwrap().to_owned());
    }
    assert_eq!(jtis[0], jtis[1], "a retry is the same logout");
    daemon.stop();

    let events = audit_events(&data, &zone);
    let bcl_events: Vec<_> = events
        .iter()
        .filter(|e| e.action == "logout.backchannel")
        .collect();
    assert_eq!(bcl_events.len(), 2, "{bcl_events:?}");
    assert_eq!(bcl_events[0].outcome, "failed");
    assert!(
        bcl_events[0].reason.contains("tried again later") && bcl_events[0].reason.contains("503"),
        "{}",
        bcl_events[0].reason
    );
    assert_eq!(bcl_events[1].outcome, "ok");
    assert_eq!(bcl_events[1].reason, "delivered at attempt 2");
    assert_eq!(bcl_events[1].object, format!("logout:{}", jtis[0]));
    rp.shutdown().await;
}

/// A client's key pair, the way the client signs its assertions.
fn client_key() -> tianping_idp::KeySet {
    let (signer, _) = tianping_core::RingSigner::generate(tianping_core::Algorithm::Es256).unwrap();
    tianping_idp::KeySet::new(Arc::new(signer))
}

async fn client_credentials(
    http: &reqwest::Client,
    base: &str,
    key: &tianping_idp::KeySet,
    jti: &str,
) -> (StatusCode, Value) {
    let now = UnixTime::from_system_time(std::time::SystemTime::now()).as_secs();
    let assertion = key
        .sign(
            "JWT",
            &json!({
                "iss": "svc", "sub": "svc", "aud": format!("{base}/token"),
                "iat": now, "exp": now + 60, "jti": jti,
            }),
        )
        .unwrap();
    let r = http
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(tianping_idp::form_encode_pairs([
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ]))
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_uri_is_fetched_with_the_zones_trust_and_fails_closed_when_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, zone) = world(tmp.path());
    let seen = Arc::new(Seen::default());
    let key = client_key();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    *seen.jwks.lock().unwrap() = key.jwks(now);
    let rp = start_rp(&data, Arc::clone(&seen)).await;
    let uri = format!("https://localhost:{}/jwks", rp.local_addr().port());
    ok(&run(
        &data,
        &[
            "idp",
            "client",
            "add",
            "svc",
            "--grant",
            "client_credentials",
            "--auth-method",
            "private_key_jwt",
            "--jwks-uri",
            &uri,
            "--zone",
            "private",
        ],
        "",
    ));
    let (daemon, public) = serve(&data, &zone);
    let (http, base) = idp_http(&data, &zone, public);

    let (status, body) = client_credentials(&http, &base, &key, "a-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].is_string(), "{body}");
    // cached: a second assertion with the same key asks the client's server nothing more
    let (status, _) = client_credentials(&http, &base, &key, "a-2").await;
    assert_eq!(status, StatusCode::OK);
    let fetches = |seen: &Seen| {
        seen.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == "/jwks")
            .count()
    };
    assert_eq!(fetches(&seen), 1);

    // restarted (its cache empty) while the client's server is gone: refused, closed
    daemon.stop();
    rp.shutdown().await;
    let (daemon, public) = serve(&data, &zone);
    let (http, base) = idp_http(&data, &zone, public);
    let (status, body) = client_credentials(&http, &base, &key, "a-3").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    daemon.stop();
    let refused: Vec<_> = audit_events(&data, &zone)
        .into_iter()
        .filter(|e| e.action == "client.auth_refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].outcome, "denied");
    assert_eq!(refused[0].object, "private_key_jwt");
    assert!(refused[0].reason.contains("/jwks"), "{}", refused[0].reason);
}
