//! `tianping idp` as a user runs it, on a data folder made by `tianping init`: `idp init` once per
//! zone, the directory on a stopped and on a running IdP, passwords never from a flag, the
//! separated administrator roles refused, and `idp serve` on port 0 answering discovery over
//! TLS, `/healthz` and `/metrics` on its admin listener, and keeping a rotated key in `/jwks`;
//! an account's sessions listed and ended (with their refresh tokens) on a running and on a
//! stopped IdP.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::panic, reason = "tests fail loudly")]

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tianping_core::{Component, DataDir, Fabric, Listener, ZoneName};

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

fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a refusal, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every listener of every zone and every link on port 0.
pub(crate) fn ports_to_zero(fabric: &Path) {
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

fn init_data(tmp: &Path) -> std::path::PathBuf {
    let data = tmp.join("data");
    ok(&run(&data, &["init"], ""));
    data
}

/// Kills the child when dropped, so a failing test leaves no daemon behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, zone: &str) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_tianping"))
            .arg("--data")
            .arg(data)
            .args(["idp", "serve", "--zone", zone])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// The IdP's public and admin addresses, once both are published (bounded wait).
fn wait_published(
    data: &Path,
    zone: &ZoneName,
    d: &mut Daemon,
) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let dir = DataDir::new(data);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = d.0.try_wait().unwrap() {
            panic!("idp serve exited early: {status}");
        }
        let a = tianping_core::published_addrs(&dir, zone, Component::Idp).unwrap_or_default();
        if let (Some(p), Some(m)) = (a.get(&Listener::Public), a.get(&Listener::Admin)) {
            return (*p, *m);
        }
        assert!(
            Instant::now() < deadline,
            "the IdP never published its addresses"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client of the zone's IdP at `addr`, trusting only the zone's bundle, not built yet, and the
/// IdP's base URL.
fn https_builder(
    data: &Path,
    zone: &ZoneName,
    addr: std::net::SocketAddr,
) -> (reqwest::ClientBuilder, String) {
    let dir = DataDir::new(data);
    let fabric = Fabric::load(&dir.fabric()).unwrap();
    let host = fabric.zone(zone).unwrap().idp_host.clone();
    let trust = std::fs::read(dir.zone_trust_bundle(zone)).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .resolve(&host, addr);
    for cert in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
        b = b.add_root_certificate(cert);
    }
    (b, format!("https://{host}:{}", addr.port()))
}

fn https(data: &Path, zone: &ZoneName, addr: std::net::SocketAddr) -> (reqwest::Client, String) {
    let (b, base) = https_builder(data, zone, addr);
    (b.build().unwrap(), base)
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn idp_init_makes_the_store_once_and_refuses_a_second_time_naming_the_zone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = init_data(tmp.path());
    let dir = DataDir::new(&data);
    let zone: ZoneName = "private".parse().unwrap();
    let base = dir.component(&zone, Component::Idp);
    // `tianping init` makes no store and no keys
    assert!(!base.join("store").exists());
    assert!(!dir.keys(&zone, Component::Idp).exists());
    // the commands that need the store say how to make it
    let err = refused(&run(
        &data,
        &["idp", "user", "list", "--zone", "private"],
        "",
    ));
    assert!(err.contains("tianping idp init --zone private"), "{err}");

    ok(&run(&data, &["idp", "init", "--zone", "private"], ""));
    assert!(base.join("store").is_dir());
    let keys = dir.keys(&zone, Component::Idp);
    assert!(keys.join("keys.json").is_file());
    let key_files: Vec<_> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    assert_eq!(key_files.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_files[0])
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let listed = ok(&run(
        &data,
        &["idp", "keys", "list", "--zone", "private"],
        "",
    ));
    assert!(
        listed.contains("ES256") && listed.contains("signing"),
        "{listed}"
    );

    let before = std::fs::read(keys.join("keys.json")).unwrap();
    let err = refused(&run(&data, &["idp", "init", "--zone", "private"], ""));
    assert!(
        err.contains("`private`") && err.contains("already initialised"),
        "{err}"
    );
    assert_eq!(std::fs::read(keys.join("keys.json")).unwrap(), before);
    // another zone is its own
    ok(&run(
        &data,
        &["idp", "init", "--zone", "internet", "--alg", "EdDSA"],
        "",
    ));
    let listed = ok(&run(
        &data,
        &["idp", "keys", "list", "--zone", "internet"],
        "",
    ));
    assert!(listed.contains("EdDSA"), "{listed}");
}

#[test]
fn the_directory_on_a_stopped_idp_adds_lists_shows_and_disables_users() {
    let tmp = tempfile::tempdir().unwrap();
    let data = init_data(tmp.path());
    ok(&run(
        &data,
        &["idp", "init", "--zone", "private", "--no-administrators"],
        "",
    ));
    let z = ["--zone", "private"];
    let idp = |args: &[&str], stdin: &str| {
        let mut all = vec!["idp"];
        all.extend_from_slice(args);
        all.extend_from_slice(&z);
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
    let courts = ok(&idp(&["court", "list"], ""));
    assert!(courts.contains("bj.01\t北京市第一中级人民法院"), "{courts}");
    // a court without its parent is refused
    let err = refused(&idp(&["court", "add", "sh.02", "--name", "上海"], ""));
    assert!(err.contains("parent"), "{err}");

    // a password on a flag is not a thing the command takes
    let err = refused(&idp(
        &[
            "user",
            "add",
            "--sub",
            "judge-0001",
            "--login",
            "wang",
            "--name",
            "王法官",
            "--password",
            STRONG,
        ],
        "",
    ));
    assert!(err.contains("--password"), "{err}");
    // the password from stdin
    let added = ok(&idp(
        &[
            "user",
            "add",
            "--sub",
            "judge-0001",
            "--login",
            "Wang.Fang",
            "--name",
            "王芳",
            "--court",
            "bj.01",
            "--role",
            "judge",
            "--clearance",
            "secret",
            "--password-stdin",
        ],
        &format!("{STRONG}\n"),
    ));
    assert!(
        added.contains("judge-0001\twang.fang\tenabled\tbj.01\tjudge"),
        "{added}"
    );
    // and from a file
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, format!("{STRONG}-b\n")).unwrap();
    ok(&idp(
        &[
            "user",
            "add",
            "--sub",
            "clerk-0002",
            "--login",
            "li.na",
            "--name",
            "李书记员",
            "--role",
            "clerk",
            "--password-file",
            pw.to_str().unwrap(),
            "--temporary",
        ],
        "",
    ));
    // a weak password is refused and nothing is added
    let err = refused(&idp(
        &[
            "user",
            "add",
            "--sub",
            "clerk-0003",
            "--login",
            "zhao",
            "--name",
            "赵",
            "--password-stdin",
        ],
        "short\n",
    ));
    assert!(!err.is_empty());
    // separation of the administrator roles
    let err = refused(&idp(
        &[
            "user",
            "add",
            "--sub",
            "admin-0001",
            "--login",
            "root",
            "--name",
            "管理员",
            "--role",
            "sysadmin",
            "--role",
            "auditor",
            "--no-password",
        ],
        "",
    ));
    assert!(err.contains("sysadmin") && err.contains("auditor"), "{err}");

    let list = ok(&idp(&["user", "list"], ""));
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        !list.contains("clerk-0003") && !list.contains("admin-0001"),
        "{list}"
    );
    let shown: Value = serde_json::from_str(&ok(&idp(&["user", "show", "li.na"], ""))).unwrap();
    assert_eq!(shown["sub"], "clerk-0002");
    assert_eq!(shown["password"], true);
    assert_eq!(
        shown["required_actions"],
        serde_json::json!(["change-password"])
    );
    // no hash or secret is ever shown
    assert!(shown.get("password_hash").is_none());

    ok(&idp(&["user", "disable", "judge-0001"], ""));
    let shown: Value =
        serde_json::from_str(&ok(&idp(&["user", "show", "judge-0001"], ""))).unwrap();
    assert_eq!(shown["status"], "disabled");
    ok(&idp(&["user", "enable", "wang.fang"], ""));
    ok(&idp(
        &["user", "require-action", "wang.fang", "enrol-totp"],
        "",
    ));
    let shown: Value =
        serde_json::from_str(&ok(&idp(&["user", "show", "judge-0001"], ""))).unwrap();
    assert_eq!(shown["status"], "enabled");
    assert_eq!(shown["required_actions"], serde_json::json!(["enrol-totp"]));
    let err = refused(&idp(&["user", "show", "nobody"], ""));
    assert!(err.contains("nobody"), "{err}");

    // a client's secret is printed once and never again
    let added = ok(&idp(
        &[
            "client",
            "add",
            "case-app",
            "--redirect-uri",
            "https://case.example/cb",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
        ],
        "",
    ));
    let secret = client_secret(&added);
    let secret = secret.as_str();
    assert_eq!(secret.len(), 64);
    let shown = ok(&idp(&["client", "show", "case-app"], ""));
    assert!(!shown.contains(secret) && shown.contains("https://case.example/cb"));
    assert!(ok(&idp(&["client", "list"], "")).contains("case-app\tclient_secret_basic"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_serve_on_port_0_answers_over_tls_and_keeps_a_rotated_key_published() {
    let tmp = tempfile::tempdir().unwrap();
    let data = init_data(tmp.path());
    let dir = DataDir::new(&data);
    ports_to_zero(&dir.fabric());
    ok(&run(&data, &["idp", "init", "--zone", "private"], ""));
    let zone: ZoneName = "private".parse().unwrap();
    let mut daemon = serve(&data, "private");
    let (public, admin) = wait_published(&data, &zone, &mut daemon);
    assert_ne!(public.port(), 0);
    // a second IdP of the same zone cannot take the store or the socket
    let second = run(&data, &["idp", "serve", "--zone", "private"], "");
    refused(&second);

    let (http, base) = https(&data, &zone, public);
    let d = get_json(&http, &format!("{base}/.well-known/openid-configuration")).await;
    assert_eq!(d["issuer"], base.as_str());
    assert_eq!(d["jwks_uri"], format!("{base}/jwks"));
    let before = kids(&get_json(&http, &format!("{base}/jwks")).await);
    assert_eq!(before.len(), 1);
    // a refused grant is counted by its error
    let refused_grant = http
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth("nobody", Some("wrong"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(refused_grant.status(), 401);

    let plain = reqwest::Client::new();
    let health = plain
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = plain
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tianping_idp_requests_total{endpoint=\"discovery\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tianping_idp_grant_failures_total{error=\"invalid_client\"} 1"),
        "{metrics}"
    );

    // the directory through the running IdP's control socket: a client registered now is
    // served at once
    let added = ok(&run(
        &data,
        &[
            "idp",
            "client",
            "add",
            "svc",
            "--zone",
            "private",
            "--grant",
            "client_credentials",
        ],
        "",
    ));
    let secret = client_secret(&added);
    let listed = ok(&run(
        &data,
        &["idp", "client", "list", "--zone", "private"],
        "",
    ));
    assert!(listed.contains("svc"), "{listed}");
    let granted = http
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth("svc", Some(&secret))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 200);

    // wrong passwords through the real sign-in form: failures and then a lockout, counted
    // from the audit log
    ok(&run(
        &data,
        &[
            "idp",
            "client",
            "add",
            "web",
            "--zone",
            "private",
            "--redirect-uri",
            "https://case.example/cb",
        ],
        "",
    ));
    ok(&run(
        &data,
        &[
            "idp",
            "user",
            "add",
            "--zone",
            "private",
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
    let authorize = format!(
        "{base}/authorize?response_type=code&client_id=web&scope=openid&state=s1\
         &redirect_uri=https%3A%2F%2Fcase.example%2Fcb&code_challenge_method=S256\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let page = http.get(authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let csrf = csrf_of(&html);
    for _ in 0..5 {
        let r = http
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &cookie)
            .body(format!(
                "csrf={csrf}&username=zhou&password=Wrong-Passw0rd-1"
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success() || r.status().is_redirection());
    }
    let want = [
        "tianping_idp_sign_in_failures_total{reason=\"password\"} 5",
        "tianping_idp_lockouts_total{reason=\"password\"} 1",
        "tianping_idp_grants_total{grant=\"client_credentials\"} 1",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = plain
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if want.iter().all(|w| m.contains(w)) {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // the live audit log is the running IdP's: read through its socket, which asks a credential
    let audit_dir = dir.audit_log(&zone, Component::Idp);
    let err = refused(&run(
        &data,
        &["audit", "verify", "--log", audit_dir.to_str().unwrap()],
        "",
    ));
    assert!(err.contains("a credential is needed"), "{err}");

    // rotation through the running IdP: the old key stays in the JWKS
    ok(&run(
        &data,
        &["idp", "keys", "rotate", "--zone", "private"],
        "",
    ));
    let after = kids(&get_json(&http, &format!("{base}/jwks")).await);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_ne!(after[0], before[0]);
    assert_eq!(after[1], before[0]);
    let listed = ok(&run(
        &data,
        &["idp", "keys", "list", "--zone", "private"],
        "",
    ));
    assert_eq!(listed.lines().count(), 2, "{listed}");

    // SIGTERM stops it cleanly: exit 0, addresses and socket gone
    let pid = daemon.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the IdP did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(!dir.addr_file(&zone, Component::Idp).exists());
    assert!(!dir.socket(&zone, Component::Idp).exists());

    // rotated again while stopped: every key whose tokens may live is still listed
    ok(&run(
        &data,
        &["idp", "keys", "rotate", "--zone", "private"],
        "",
    ));
    let listed = ok(&run(
        &data,
        &["idp", "keys", "list", "--zone", "private"],
        "",
    ));
    assert_eq!(listed.lines().count(), 3, "{listed}");
    // and the user added to the running IdP's store is there for the stopped commands
    let clients = ok(&run(
        &data,
        &["idp", "client", "show", "svc", "--zone", "private"],
        "",
    ));
    assert!(clients.contains("client_credentials"), "{clients}");
    // the client added to the running IdP is audited with its settings, never its secret
    let log = tianping_audit::AuditLog::open(&dir.audit_log(&zone, Component::Idp)).unwrap();
    let added: Vec<tianping_audit::Event> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "idp.client.add")
        .collect();
    assert!(
        added
            .iter()
            .any(|e| e.object == "svc" && e.reason.contains("client_credentials"))
    );
    for e in &added {
        assert!(
            !e.reason.contains(&secret),
            "a client secret in the audit log: {e:?}"
        );
        assert!(!e.reason.contains("\"secret\""), "{e:?}");
    }
}

/// The session cookie a response sets (`name=value`).
fn set_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|c| c.starts_with("__Host-tianping-session=") && !c.ends_with('='))
        .map(str::to_owned)
}

/// The CSRF token of a sign-in page.
fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

/// The code in the callback a sign-in redirects to.
fn code_of(r: &reqwest::Response) -> String {
    let location = r.headers()["location"].to_str().unwrap();
    location
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("code="))
        .unwrap()
        .to_owned()
}

/// The token response to `web` (authenticated with `secret`) redeeming `code` with the PKCE
/// verifier of every sign-in here.
async fn redeem(http: &reqwest::Client, base: &str, secret: &str, code: &str) -> Value {
    http.post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth("web", Some(secret))
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
        .unwrap()
}

/// Where a silent (`prompt=none`) authorization request of `web` with `cookie` is sent back to.
async fn silent_sign_in(http: &reqwest::Client, base: &str, cookie: &str) -> String {
    let silent = http
        .get(format!(
            "{base}/authorize?response_type=code&client_id=web&scope=openid&prompt=none\
             &redirect_uri=https%3A%2F%2Fcase.example%2Fcb&code_challenge_method=S256\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    silent.headers()["location"].to_str().unwrap().to_owned()
}

/// Signs `login` in to `client` through the real authorization request and password form;
/// returns the signed-in session's cookie and the code the callback got.
async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    client: &str,
    login: &str,
) -> (String, String) {
    let authorize = format!(
        "{base}/authorize?response_type=code&client_id={client}&scope=openid&state=s1\
         &redirect_uri=https%3A%2F%2Fcase.example%2Fcb&code_challenge_method=S256\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let page = http.get(authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = set_cookie(&page).unwrap();
    let html = page.text().await.unwrap();
    let csrf = csrf_of(&html);
    let r = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .body(format!("csrf={csrf}&username={login}&password={STRONG}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let signed_in = set_cookie(&r).unwrap();
    assert_ne!(signed_in, cookie, "the session id rotates at sign-in");
    let code = code_of(&r);
    (signed_in, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_sessions_lists_an_accounts_sessions_and_user_logout_ends_them_with_their_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let data = init_data(tmp.path());
    let dir = DataDir::new(&data);
    ports_to_zero(&dir.fabric());
    ok(&run(&data, &["idp", "init", "--zone", "private"], ""));
    let zone: ZoneName = "private".parse().unwrap();
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
            "web",
            "--redirect-uri",
            "https://case.example/cb",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
        ],
        "",
    ));
    let secret = client_secret(&added);
    for (sub, login) in [("judge-0009", "zhou"), ("judge-0010", "qian")] {
        ok(&idp(
            &[
                "user",
                "add",
                "--sub",
                sub,
                "--login",
                login,
                "--name",
                "周",
                "--password-stdin",
            ],
            &format!("{STRONG}\n"),
        ));
    }
    // a back-channel logout URI is https, checked before anything is kept
    let err = refused(&idp(
        &[
            "client",
            "add",
            "bad-rp",
            "--backchannel-logout-uri",
            "http://rp.example/bcl",
        ],
        "",
    ));
    assert!(err.contains("https"), "{err}");
    refused(&idp(&["client", "show", "bad-rp"], ""));
    ok(&idp(
        &[
            "client",
            "add",
            "rp",
            "--redirect-uri",
            "https://case.example/cb",
            "--backchannel-logout-uri",
            "https://rp.example/bcl",
            "--backchannel-logout-session-required",
        ],
        "",
    ));
    let shown = ok(&idp(&["client", "show", "rp"], ""));
    assert!(
        shown.contains("\"backchannel_logout_uri\": \"https://rp.example/bcl\"")
            && shown.contains("\"backchannel_logout_session_required\": true"),
        "{shown}"
    );
    let none = ok(&idp(&["user", "sessions", "zhou"], ""));
    assert_eq!(none, "", "no sessions yet");
    let err = refused(&idp(&["user", "logout", "nobody"], ""));
    assert!(err.contains("nobody"), "{err}");

    let mut daemon = serve(&data, "private");
    let (public, _) = wait_published(&data, &zone, &mut daemon);
    let (b, base) = https_builder(&data, &zone, public);
    let http = b
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // two sessions of zhou (each with a code redeemed: a refresh family), one of qian
    let mut zhou = Vec::new();
    for _ in 0..2 {
        let (cookie, code) = sign_in(&http, &base, "web", "zhou").await;
        let token = redeem(&http, &base, &secret, &code).await;
        let rt = token["refresh_token"].as_str().unwrap().to_owned();
        zhou.push((cookie, rt));
    }
    let (qian_cookie, _) = sign_in(&http, &base, "web", "qian").await;

    // listed through the running IdP's control socket: handles, never the cookie values
    let listed = ok(&idp(&["user", "sessions", "zhou"], ""));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    for (line, (cookie, _)) in lines.iter().zip(&zhou) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 5, "{line}");
        assert_eq!(fields[0].len(), 16, "{line}");
        assert!(
            fields[1].ends_with('Z') && fields[2].ends_with('Z'),
            "{line}"
        );
        assert_eq!(fields[3], "pwd", "{line}");
        assert_eq!(fields[4], "web", "{line}");
        let value = cookie.split_once('=').unwrap().1;
        assert!(!listed.contains(value), "a cookie value in the listing");
    }
    assert_eq!(
        ok(&idp(&["user", "sessions", "qian"], "")).lines().count(),
        1
    );

    let ended = ok(&idp(&["user", "logout", "zhou"], ""));
    assert!(ended.contains("2 sessions ended"), "{ended}");
    assert_eq!(
        ended
            .lines()
            .filter(|l| l.contains("1 refresh families revoked"))
            .count(),
        2,
        "{ended}"
    );
    assert_eq!(ok(&idp(&["user", "sessions", "zhou"], "")), "");
    // qian's session is untouched
    assert_eq!(
        ok(&idp(&["user", "sessions", "qian"], "")).lines().count(),
        1
    );
    for (cookie, rt) in &zhou {
        let r = http
            .post(format!("{base}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .basic_auth("web", Some(&secret))
            .body(format!("grant_type=refresh_token&refresh_token={rt}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], "invalid_grant");
        // the session is gone: a silent authorization asks for a sign-in
        let location = silent_sign_in(&http, &base, cookie).await;
        assert!(location.contains("error=login_required"), "{location}");
    }
    let location = silent_sign_in(&http, &base, &qian_cookie).await;
    assert!(location.contains("code="), "{location}");
    let pid = daemon.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the IdP did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }

    // on the stopped IdP: qian's session ended from the store, and every logout audited
    let ended = ok(&idp(&["user", "logout", "judge-0010"], ""));
    assert!(ended.contains("1 sessions ended"), "{ended}");
    assert_eq!(ok(&idp(&["user", "sessions", "qian"], "")), "");
    let log = tianping_audit::AuditLog::open(&dir.audit_log(&zone, Component::Idp)).unwrap();
    let events: Vec<tianping_audit::Event> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .collect();
    let count = |action: &str, object: &str| {
        events
            .iter()
            .filter(|e| e.action == action && e.object.starts_with(object))
            .count()
    };
    assert_eq!(count("idp.user.logout", "judge-0009"), 1);
    assert_eq!(count("idp.user.logout", "judge-0010"), 1);
    assert_eq!(count("session.logout", "session:"), 3);
    assert_eq!(count("token.revoke", "family:"), 2);
}

/// `idp serve` asks every client for a certificate and never requires one: a browser with none
/// is offered the password form only; a judge's hardware-token certificate from `tianping certs
/// issue --hardware` is offered certificate sign-in and signs in with it alone, `acr=cert` with
/// `amr` `hwk` and `pin` in the ID token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_serve_signs_a_hardware_certificate_in_and_offers_a_browser_without_one_the_password_form()
 {
    use base64::Engine as _;

    let tmp = tempfile::tempdir().unwrap();
    let data = init_data(tmp.path());
    let dir = DataDir::new(&data);
    ports_to_zero(&dir.fabric());
    ok(&run(&data, &["idp", "init", "--zone", "private"], ""));
    let zone: ZoneName = "private".parse().unwrap();
    let added = ok(&run(
        &data,
        &[
            "idp",
            "client",
            "add",
            "web",
            "--redirect-uri",
            "https://case.example/cb",
            "--grant",
            "authorization_code",
            "--zone",
            "private",
        ],
        "",
    ));
    let secret = client_secret(&added);
    ok(&run(
        &data,
        &[
            "idp",
            "user",
            "add",
            "--sub",
            "judge-0011",
            "--login",
            "wuzhen",
            "--name",
            "吴",
            "--password-stdin",
            "--zone",
            "private",
        ],
        &format!("{STRONG}\n"),
    ));
    let pki = data.join("pki");
    let out = tmp.path().join("wu");
    ok(&run(
        &data,
        &[
            "certs",
            "issue",
            "--dir",
            pki.to_str().unwrap(),
            "--zone",
            "private",
            "--kind",
            "client",
            "--name",
            "Judge Wu",
            "--subject-id",
            "judge-0011",
            "--court",
            "bj.01.03",
            "--role",
            "judge",
            "--hardware",
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    ));
    let mut identity = std::fs::read(out.with_extension("pem")).unwrap();
    identity.extend(std::fs::read(out.with_extension("key")).unwrap());

    let mut daemon = serve(&data, "private");
    let (public, _) = wait_published(&data, &zone, &mut daemon);
    let (b, base) = https_builder(&data, &zone, public);
    let plain = b
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (b, _) = https_builder(&data, &zone, public);
    let judge = b
        .redirect(reqwest::redirect::Policy::none())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap();
    let authorize = format!(
        "{base}/authorize?response_type=code&client_id=web&scope=openid&state=s1&nonce=n1\
         &redirect_uri=https%3A%2F%2Fcase.example%2Fcb&code_challenge_method=S256\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&ui_locales=en"
    );

    let page = plain.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"password\""), "{html}");
    assert!(!html.contains("Sign in with certificate"), "{html}");

    let page = judge.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = set_cookie(&page).unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in with certificate"), "{html}");
    let csrf = csrf_of(&html);
    let r = judge
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .body(format!("csrf={csrf}&method=certificate"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let code = code_of(&r);
    let token = redeem(&judge, &base, &secret, &code).await;
    let id_token = token["id_token"].as_str().unwrap();
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "judge-0011");
    assert_eq!(claims["acr"], "cert");
    assert_eq!(claims["amr"], serde_json::json!(["hwk", "pin"]));
}

/// The client secret `idp client add` printed once, on its `client secret` line.
fn client_secret(added: &str) -> String {
    added
        .lines()
        .find(|l| l.contains("client secret"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_owned()
}
