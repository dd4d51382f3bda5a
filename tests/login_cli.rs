//! `tianping login` and `tianping logout` against a real `tianping idp serve` of zone `private`
//! (real TLS, real sled store, the default policy: the three administrators need `cert`, a
//! clerk `otp`), and the three roles on the IdP's control socket and its audit log:
//!
//! - each administrator signs in with a client certificate of the zone CA (its key in a file)
//!   plus TOTP over mutual TLS; the token lands in `run/admin-private.token`, mode 0600, 15
//!   minutes;
//! - the socket's owner acts without a token until an administrator has used one there, and is
//!   refused from then on (401, naming the role); a `sysadmin` adds a user (audited under its subject id with the before and after)
//!   but cannot rotate keys nor give an administrator role (`secadmin`) nor read the audit log
//!   (`auditor`); an `auditor` reads it but cannot add a user (`sysadmin`); a `secadmin` rotates
//!   the keys and gives a role, never two of the three;
//! - `logout` revokes the token: put back, it is refused by the socket;
//! - a clerk signs in through the device grant in a "browser" (password and TOTP on the IdP's
//!   pages): the CLI says `authorization_pending` while nobody decided, gets its token once the
//!   clerk approves, and ends with `access_denied` when the clerk denies.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::panic, reason = "tests fail loudly")]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tianping_core::{Component, DataDir, Fabric, Listener, UnixTime, ZoneName};
use tianping_idp::{Directory, SledStore, TotpConfig, TotpCredential, TotpSecret};

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
    // miette wraps its report: read it as one line
    String::from_utf8_lossy(&out.stderr)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
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

/// Kills the child when dropped, so a failing test leaves no process behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// SIGTERM, then waits (bounded) for the process to finish what it was doing and exit.
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
            if dir.socket(zone, Component::Idp).exists() {
                return (d, *p);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the IdP never published its addresses"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A person of the test: subject id, sign-in name, role, TOTP secret.
struct Person {
    sub: &'static str,
    login: &'static str,
    role: &'static str,
    secret: [u8; 20],
}

const SYS: Person = Person {
    sub: "s-0001",
    login: "sys.admin",
    role: "sysadmin",
    secret: [1; 20],
};
const SEC: Person = Person {
    sub: "c-0001",
    login: "sec.admin",
    role: "secadmin",
    secret: [2; 20],
};
const AUD: Person = Person {
    sub: "a-0001",
    login: "audit.admin",
    role: "auditor",
    secret: [3; 20],
};
const CLERK: Person = Person {
    sub: "k-0001",
    login: "clerk.wang",
    role: "clerk",
    secret: [4; 20],
};

/// The current TOTP code of `p`.
fn totp(p: &Person) -> String {
    let cfg = TotpConfig::default();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    cfg.code_at(&TotpSecret::from_bytes(p.secret.to_vec()), cfg.step_at(now))
}

/// A data folder with zone `private`'s IdP initialised, every port 0, the four people in its
/// directory (passwords set, TOTP enrolled), and a client certificate of the zone CA for each
/// administrator (software key).
fn world(tmp: &Path) -> (PathBuf, ZoneName) {
    let data = tmp.join("data");
    ok(&run(&data, &["init"], ""));
    ports_to_zero(&DataDir::new(&data).fabric());
    // the first three administrators: each with a certificate, a key and a one-time password
    let init = ok(&run(&data, &["idp", "init", "--zone", "private"], ""));
    for (sub, role) in [
        ("sysadmin-0001", "sysadmin"),
        ("secadmin-0001", "secadmin"),
        ("auditor-0001", "auditor"),
    ] {
        let line = init
            .lines()
            .find(|l| l.starts_with(&format!("administrator `{sub}` ({role}): certificate `")))
            .unwrap_or_else(|| panic!("{init}"));
        assert!(
            line.contains(".key`") && line.contains(".password`"),
            "{line}"
        );
    }
    let admins = DataDir::new(&data)
        .component(&"private".parse().unwrap(), Component::Idp)
        .join("administrators");
    let mode = std::fs::metadata(admins.join("sysadmin.password"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    ok(&run(
        &data,
        &[
            "idp",
            "court",
            "add",
            "bj",
            "--name",
            "北京市高级人民法院",
            "--zone",
            "private",
        ],
        "",
    ));
    for p in [&SYS, &SEC, &AUD, &CLERK] {
        ok(&run(
            &data,
            &[
                "idp",
                "user",
                "add",
                "--zone",
                "private",
                "--sub",
                p.sub,
                "--login",
                p.login,
                "--name",
                p.login,
                "--court",
                "bj",
                "--role",
                p.role,
                "--password-stdin",
            ],
            &format!("{STRONG}\n"),
        ));
    }
    // the authenticators, enrolled as a first sign-in would (the IdP is stopped: its store)
    {
        let store = SledStore::open(
            &DataDir::new(&data)
                .component(&"private".parse().unwrap(), Component::Idp)
                .join("store"),
        )
        .unwrap();
        let dir = Directory::new(&store);
        for p in [&SYS, &SEC, &AUD, &CLERK] {
            dir.update_user(&p.sub.parse().unwrap(), &mut |u| {
                u.totp = Some(TotpCredential {
                    secret: TotpSecret::from_bytes(p.secret.to_vec()),
                    last_step: None,
                });
            })
            .unwrap();
        }
        // sled writes what it holds when its last handle goes
        drop(store);
    }
    for p in [&SYS, &SEC, &AUD] {
        let out = tmp.join(p.login);
        ok(&run(
            &data,
            &[
                "certs",
                "issue",
                "--zone",
                "private",
                "--kind",
                "client",
                "--name",
                p.login,
                "--subject-id",
                p.sub,
                "--court",
                "bj",
                "--role",
                p.role,
                "--out",
                out.to_str().unwrap(),
            ],
            "",
        ));
    }
    (data, "private".parse().unwrap())
}

fn cert_login(data: &Path, tmp: &Path, p: &Person) -> Output {
    let pem = tmp.join(format!("{}.pem", p.login));
    let key = tmp.join(format!("{}.key", p.login));
    run(
        data,
        &[
            "login",
            "--zone",
            "private",
            "--cert",
            pem.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--totp",
            &totp(p),
        ],
        "",
    )
}

/// The lines a child prints, as they come.
fn lines_of(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line containing `want`; every line read so far.
fn wait_for(rx: &mpsc::Receiver<String>, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let found = line.contains(want);
            seen.push(line);
            if found {
                return;
            }
        }
    }
    panic!("no line with `{want}`: {seen:?}");
}

/// A browser of the test: the zone's root trusted, the IdP's host resolved, no redirects.
struct Browser {
    http: reqwest::Client,
    cookie: Option<String>,
}

const COOKIE: &str = "__Host-tianping-session";

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name}: {html}"));
    let rest = html.get(at + marker.len()..).unwrap();
    rest.get(..rest.find('"').unwrap()).unwrap().to_owned()
}

impl Browser {
    fn new(data: &Path, host: &str, addr: SocketAddr) -> Self {
        let dir = DataDir::new(data);
        let trust = std::fs::read(dir.zone_trust_bundle(&"private".parse().unwrap())).unwrap();
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .resolve(host, addr)
            .redirect(reqwest::redirect::Policy::none());
        for c in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
            b = b.add_root_certificate(c);
        }
        Self {
            http: b.build().unwrap(),
            cookie: None,
        }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        let prefix = format!("{COOKIE}=");
        if let Some(c) = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(prefix.as_str()))
        {
            self.cookie = Some(c.split(';').next().unwrap().to_owned());
        }
    }

    async fn get(&mut self, url: &str) -> (reqwest::StatusCode, String, Option<String>) {
        let mut r = self.http.get(url);
        if let Some(c) = &self.cookie {
            r = r.header("cookie", format!("{COOKIE}={c}"));
        }
        let resp = r.send().await.unwrap();
        self.keep(&resp);
        let loc = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (resp.status(), resp.text().await.unwrap(), loc)
    }

    async fn post(
        &mut self,
        url: &str,
        pairs: &[(&str, &str)],
    ) -> (reqwest::StatusCode, String, Option<String>) {
        let mut r = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(tianping_idp::form_encode_pairs(pairs.iter().copied()));
        if let Some(c) = &self.cookie {
            r = r.header("cookie", format!("{COOKIE}={c}"));
        }
        let resp = r.send().await.unwrap();
        self.keep(&resp);
        let loc = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (resp.status(), resp.text().await.unwrap(), loc)
    }

    /// Opens the verification link, signing in with password and TOTP if there is no session,
    /// and decides.
    async fn decide(&mut self, iss: &str, complete: &str, p: &Person, decision: &str) {
        let (mut status, mut html, mut loc) = self.get(complete).await;
        if status == reqwest::StatusCode::SEE_OTHER {
            let (s, page, _) = self.get(&loc.unwrap()).await;
            assert_eq!(s, reqwest::StatusCode::OK, "{page}");
            let csrf = hidden(&page, "csrf");
            let (s, page, _) = self
                .post(
                    &format!("{iss}/login"),
                    &[("csrf", &csrf), ("username", p.login), ("password", STRONG)],
                )
                .await;
            assert_eq!(s, reqwest::StatusCode::OK, "{page}");
            let csrf = hidden(&page, "csrf");
            let (s, page, back) = self
                .post(
                    &format!("{iss}/login"),
                    &[("csrf", &csrf), ("code", &totp(p))],
                )
                .await;
            assert_eq!(s, reqwest::StatusCode::SEE_OTHER, "{page}");
            (status, html, loc) = self.get(&back.unwrap()).await;
        }
        assert_eq!(status, reqwest::StatusCode::OK, "{html} {loc:?}");
        let csrf = hidden(&html, "csrf");
        let code = hidden(&html, "user_code");
        let (s, page, _) = self
            .post(
                &format!("{iss}/device"),
                &[
                    ("csrf", &csrf),
                    ("user_code", &code),
                    ("decision", decision),
                ],
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::OK, "{page}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn administrators_sign_in_and_each_role_does_only_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, zone) = world(tmp.path());
    let (idp, addr) = serve(&data, &zone);
    let dir = DataDir::new(&data);
    let token_file = dir.admin_token(&zone);
    let audit_dir = dir.audit_log(&zone, Component::Idp);
    let audit = audit_dir.to_str().unwrap();
    let user_add = |sub: &str, login: &str| {
        run(
            &data,
            &[
                "idp",
                "user",
                "add",
                "--zone",
                "private",
                "--sub",
                sub,
                "--login",
                login,
                "--name",
                login,
                "--role",
                "judge",
                "--no-password",
            ],
            "",
        )
    };

    let admin_add = |sub: &str, login: &str, roles: &[&str]| {
        let mut args = vec![
            "idp",
            "user",
            "add",
            "--zone",
            "private",
            "--sub",
            sub,
            "--login",
            login,
            "--name",
            login,
            "--no-password",
        ];
        for r in roles {
            args.extend_from_slice(&["--role", r]);
        }
        run(&data, &args, "")
    };

    // before any administrator used a token here, the socket's owner acts without one
    let listed = ok(&run(
        &data,
        &["idp", "user", "list", "--zone", "private"],
        "",
    ));
    assert!(listed.contains("sys.admin"), "{listed}");

    // a first administrator must change the one-time password and enrol TOTP first, in a browser
    let admins = dir.component(&zone, Component::Idp).join("administrators");
    let err = refused(&run(
        &data,
        &[
            "login",
            "--zone",
            "private",
            "--cert",
            admins.join("sysadmin.pem").to_str().unwrap(),
            "--key",
            admins.join("sysadmin.key").to_str().unwrap(),
            "--totp",
            "123456",
        ],
        "",
    ));
    assert!(err.contains("first sign-in"), "{err}");

    // a certificate whose key is in a file needs TOTP too
    let pem = tmp.path().join("sys.admin.pem");
    let key = tmp.path().join("sys.admin.key");
    let err = refused(&run(
        &data,
        &[
            "login",
            "--zone",
            "private",
            "--cert",
            pem.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        "",
    ));
    assert!(err.contains("--totp"), "{err}");
    assert!(!token_file.exists());

    // sysadmin: certificate + TOTP
    let out = ok(&cert_login(&data, tmp.path(), &SYS));
    assert!(
        out.contains("signed in to zone `private` as `s-0001` for 15 minutes"),
        "{out}"
    );
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    ok(&user_add("judge-0001", "judge.one"));
    // from now on an administrator is in charge: without a token the local operator is refused
    let aside = tmp.path().join("token-aside");
    std::fs::rename(&token_file, &aside).unwrap();
    let err = refused(&user_add("judge-0009", "judge.nine"));
    assert!(err.contains("role `sysadmin` required"), "{err}");
    assert!(err.contains("tianping login"), "{err}");
    std::fs::rename(&aside, &token_file).unwrap();
    let err = refused(&run(
        &data,
        &["idp", "keys", "rotate", "--zone", "private"],
        "",
    ));
    assert!(err.contains("role `secadmin` required"), "{err}");
    // giving one of the three roles is the security administrator's
    let err = refused(&admin_add("a-0002", "audit.two", &["auditor"]));
    assert!(err.contains("role `secadmin` required"), "{err}");
    let err = refused(&run(&data, &["audit", "search", "--log", audit], ""));
    assert!(err.contains("auditor"), "{err}");

    // auditor: reads the log (the sysadmin's change under its subject id, before and after),
    // cannot add a user
    ok(&cert_login(&data, tmp.path(), &AUD));
    let found = ok(&run(
        &data,
        &[
            "audit",
            "search",
            "--log",
            audit,
            "--action",
            "idp.user.add",
        ],
        "",
    ));
    let added = found
        .lines()
        .find(|l| l.contains("judge-0001"))
        .unwrap_or_else(|| panic!("{found}"));
    assert!(added.contains("\"actor\":\"s-0001\""), "{added}");
    assert!(
        added.contains("before") && added.contains("after"),
        "{added}"
    );
    let err = refused(&user_add("judge-0002", "judge.two"));
    assert!(err.contains("role `sysadmin` required"), "{err}");
    let err = refused(&run(
        &data,
        &["idp", "keys", "rotate", "--zone", "private"],
        "",
    ));
    assert!(err.contains("role `secadmin` required"), "{err}");

    // secadmin: rotates the keys, gives an administrator role, never two of the three
    ok(&cert_login(&data, tmp.path(), &SEC));
    ok(&run(
        &data,
        &["idp", "keys", "rotate", "--zone", "private"],
        "",
    ));
    ok(&admin_add("a-0002", "audit.two", &["auditor"]));
    let err = refused(&admin_add("x-0001", "both.roles", &["sysadmin", "auditor"]));
    assert!(err.contains("sysadmin") && err.contains("auditor"), "{err}");
    let listed = ok(&run(
        &data,
        &["idp", "user", "list", "--zone", "private"],
        "",
    ));
    assert!(!listed.contains("both.roles"), "{listed}");

    // logout revokes: the same token put back is refused by the socket
    let token = std::fs::read_to_string(&token_file).unwrap();
    let out = ok(&run(&data, &["logout", "--zone", "private"], ""));
    assert!(out.contains("revoked"), "{out}");
    assert!(!token_file.exists());
    std::fs::write(&token_file, &token).unwrap();
    let err = refused(&run(
        &data,
        &["idp", "keys", "rotate", "--zone", "private"],
        "",
    ));
    assert!(err.contains("revoked"), "{err}");
    std::fs::remove_file(&token_file).unwrap();

    // a clerk through the device grant, in a browser
    let fabric = Fabric::load(&dir.fabric()).unwrap();
    let host = fabric.zone(&zone).unwrap().idp_host.clone();
    let iss = format!("https://{host}:{}", addr.port());
    let mut browser = Browser::new(&data, &host, addr);
    let device_login = || {
        let mut child = Daemon(
            Command::new(env!("CARGO_BIN_EXE_tianping"))
                .arg("--data")
                .arg(&data)
                .args(["login", "--zone", "private"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let rx = lines_of(child.0.stdout.take().unwrap());
        (child, rx)
    };
    let (mut child, rx) = device_login();
    let mut seen = Vec::new();
    wait_for(&rx, "or open ", &mut seen);
    let complete = seen
        .last()
        .unwrap()
        .strip_prefix("or open ")
        .unwrap()
        .to_owned();
    assert!(
        seen.iter().any(|l| l.contains("enter the code")),
        "{seen:?}"
    );
    wait_for(&rx, "(authorization_pending)", &mut seen);
    browser.decide(&iss, &complete, &CLERK, "approve").await;
    wait_for(&rx, "signed in to zone `private` as `k-0001`", &mut seen);
    assert!(child.0.wait().unwrap().success());
    // a clerk holds none of the three roles
    let err = refused(&user_add("judge-0003", "judge.three"));
    assert!(err.contains("role `sysadmin` required"), "{err}");

    // denied in the browser (the clerk's session is still there): the CLI says so
    let (mut child, rx) = device_login();
    let mut seen = Vec::new();
    wait_for(&rx, "or open ", &mut seen);
    let complete = seen
        .last()
        .unwrap()
        .strip_prefix("or open ")
        .unwrap()
        .to_owned();
    wait_for(&rx, "(authorization_pending)", &mut seen);
    browser.decide(&iss, &complete, &CLERK, "deny").await;
    let status = child.0.wait().unwrap();
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("access_denied"), "{err}");
    idp.stop();

    // the IdP stopped, its log is read where it lies: each action under its actor's subject id
    let search = |action: &str| {
        ok(&run(
            &data,
            &["audit", "search", "--log", audit, "--action", action],
            "",
        ))
    };
    let rotated = search("idp.keys.rotate");
    assert!(rotated.contains("\"actor\":\"c-0001\""), "{rotated}");
    assert!(rotated.contains("signing_kid"), "{rotated}");
    let approved = search("device.approve");
    assert_eq!(
        approved.matches("\"actor\":\"k-0001\"").count(),
        1,
        "{approved}"
    );
    let denied = search("device.deny");
    assert!(denied.contains("\"actor\":\"k-0001\""), "{denied}");
    let tokens = search("token.device_code");
    assert_eq!(
        tokens.lines().count(),
        4,
        "three administrators and the clerk: {tokens}"
    );
}
