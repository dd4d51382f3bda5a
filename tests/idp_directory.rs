//! One directory for every zone, as an operator runs it on a data folder made by `tianping
//! init`: accounts are made in `private` (another zone's `idp user add` refuses, but for a
//! public registration's `p-` id in `internet`); `idp directory export --to internet` writes a
//! signed update with only what `directory-to-internet` lets go, and `idp directory apply`
//! applies it on a stopped and on a running internet IdP; applying twice changes nothing (a
//! replay), a gap, a forged update and updates signed by another node (the private gateway, the
//! internet IdP) are refused by name; a lawyer signed in on the internet IdP with the hash that
//! came loses their refresh token when `private` disables them; a public registration reaches
//! `private`, and a staff record the internet IdP signs as a registration is refused. Over the
//! exchange: an update sent from `private` on `directory-to-internet` passes the receiver's
//! `directory-update` filter and is delivered to the running internet IdP through its
//! `component = "idp"` binding; a forged one is refused by the filter and never delivered.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::panic, reason = "tests fail loudly")]
#![expect(clippy::indexing_slicing, reason = "tests fail loudly")]

mod common;
#[path = "common/delivery.rs"]
mod delivery;
#[path = "common/exchange.rs"]
mod exchange;

use std::path::{Path, PathBuf};
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

/// The IdP's public address, once it and the admin one are published (bounded wait).
fn wait_published(data: &Path, zone: &ZoneName, d: &mut Daemon) -> std::net::SocketAddr {
    let dir = DataDir::new(data);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = d.0.try_wait().unwrap() {
            panic!("idp serve exited early: {status}");
        }
        let a = tianping_core::published_addrs(&dir, zone, Component::Idp).unwrap_or_default();
        if let (Some(p), Some(_)) = (a.get(&Listener::Public), a.get(&Listener::Admin)) {
            return *p;
        }
        assert!(
            Instant::now() < deadline,
            "the IdP never published its addresses"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client of the zone's IdP at `addr` trusting only the zone's bundle, never following
/// redirects, and the IdP's base URL.
fn https(data: &Path, zone: &ZoneName, addr: std::net::SocketAddr) -> (reqwest::Client, String) {
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

fn set_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|c| c.starts_with("__Host-tianping-session=") && !c.ends_with('='))
        .map(str::to_owned)
}

/// Signs `login` in to `web` with the password form and redeems the code: the refresh token.
async fn refresh_token_of(http: &reqwest::Client, base: &str, secret: &str, login: &str) -> String {
    let page = http
        .get(format!(
            "{base}/authorize?response_type=code&client_id=web&scope=openid&state=s1\
             &redirect_uri=https%3A%2F%2Fcase.example%2Fcb&code_challenge_method=S256\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ))
        .send()
        .await
        .unwrap();
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
        .unwrap_or_else(|| panic!("no code in {location}"))
        .to_owned();
    let token: Value = http
        .post(format!("{base}/token"))
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
        .unwrap();
    token["refresh_token"].as_str().unwrap().to_owned()
}

/// The status and `error` of the refresh grant with `rt`.
async fn refresh(http: &reqwest::Client, base: &str, secret: &str, rt: &str) -> (u16, Value) {
    let r = http
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth("web", Some(secret))
        .body(format!("grant_type=refresh_token&refresh_token={rt}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

/// A component's node signer and certificate chain (DER), as `tianping init` made them.
fn node(
    dir: &DataDir,
    zone: &str,
    component: Component,
) -> (tianping_core::RingSigner, Vec<Vec<u8>>) {
    let (cert, key) = dir.node(&zone.parse().unwrap(), component);
    let signer = tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let chain = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap())
        .unwrap()
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    (signer, chain)
}

fn user_json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_directory_reaches_internet_and_public_registrations_reach_private() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&run(&data, &["init"], ""));
    let dir = DataDir::new(&data);
    ports_to_zero(&dir.fabric());
    ok(&run(
        &data,
        &["idp", "init", "--zone", "private", "--no-administrators"],
        "",
    ));
    ok(&run(&data, &["idp", "init", "--zone", "internet"], ""));
    let idp = |zone: &str, args: &[&str], stdin: &str| {
        let mut all = vec!["idp"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--zone", zone]);
        run(&data, &all, stdin)
    };
    let file = |name: &str| -> PathBuf { tmp.path().join(name) };

    // accounts are made in `private`
    let err = refused(&idp(
        "internet",
        &[
            "user",
            "add",
            "--sub",
            "u-judge-9",
            "--login",
            "zhao",
            "--name",
            "赵",
            "--no-password",
        ],
        "",
    ));
    assert!(
        err.contains("assigned by the directory authority in `private`"),
        "{err}"
    );
    assert!(err.contains("nothing changed"), "{err}");
    for (code, name) in [
        ("bj", "北京市高级人民法院"),
        ("bj.01", "北京市第一中级人民法院"),
    ] {
        ok(&idp("private", &["court", "add", code, "--name", name], ""));
    }
    ok(&idp(
        "private",
        &[
            "user",
            "add",
            "--sub",
            "u-judge-1",
            "--login",
            "li.ming",
            "--name",
            "李明",
            "--court",
            "bj.01",
            "--role",
            "judge",
            "--clearance",
            "secret",
            "--email",
            "li.ming@court.example",
            "--password-stdin",
        ],
        &format!("{STRONG}\n"),
    ));
    ok(&idp(
        "private",
        &[
            "user",
            "add",
            "--sub",
            "u-lawyer-1",
            "--login",
            "wang.fang",
            "--name",
            "王芳",
            "--role",
            "lawyer",
            "--password-stdin",
        ],
        &format!("{STRONG}\n"),
    ));

    // exported for internet: what directory-to-internet lets go, applied on a stopped IdP
    let first = file("first.tpdu");
    let said = run(
        &data,
        &[
            "idp",
            "directory",
            "export",
            "--since",
            "0",
            "--to",
            "internet",
            "--out",
            first.to_str().unwrap(),
        ],
        "",
    );
    ok(&said);
    let update = tianping_idp::DirectoryUpdate::decode(&std::fs::read(&first).unwrap()).unwrap();
    let until = update.body.until;
    assert_eq!(update.body.records.len(), 4, "two courts, two users");
    let applied = ok(&run(
        &data,
        &["idp", "directory", "apply", first.to_str().unwrap()],
        "",
    ));
    assert!(applied.contains("4 changed"), "{applied}");
    let judge = user_json(&ok(&idp("internet", &["user", "show", "u-judge-1"], "")));
    assert_eq!(judge["login"], "li.ming");
    assert_eq!(judge["court"], "bj.01");
    assert_eq!(judge["roles"], serde_json::json!(["judge"]));
    assert_eq!(judge["password"], false, "a judge's hash stays in private");
    assert_eq!(
        judge["clearance"], "none",
        "clearance does not go to internet"
    );
    assert_eq!(judge["email"], Value::Null, "email does not go to internet");
    let lawyer = user_json(&ok(&idp("internet", &["user", "show", "wang.fang"], "")));
    assert_eq!(lawyer["password"], true, "a lawyer's hash goes");

    // applying twice changes nothing: refused as a replay
    let before = ok(&idp("internet", &["user", "list"], ""));
    let err = refused(&run(
        &data,
        &["idp", "directory", "apply", first.to_str().unwrap()],
        "",
    ));
    assert!(err.contains("replay"), "{err}");
    assert_eq!(ok(&idp("internet", &["user", "list"], "")), before);

    // a forged update: one byte of the lawyer's name changed
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes
        .windows("王芳".len())
        .position(|w| w == "王芳".as_bytes())
        .unwrap();
    bytes[at + 2] ^= 1;
    std::fs::write(file("forged.tpdu"), &bytes).unwrap();
    let err = refused(&run(
        &data,
        &[
            "idp",
            "directory",
            "apply",
            file("forged.tpdu").to_str().unwrap(),
        ],
        "",
    ));
    assert!(err.contains("bad signature"), "{err}");

    // the next changes, signed by another node of `private` and by the internet IdP
    ok(&idp("private", &["user", "disable", "wang.fang"], ""));
    let next = file("next.tpdu");
    ok(&run(
        &data,
        &[
            "idp",
            "directory",
            "export",
            "--since",
            &until.to_string(),
            "--to",
            "internet",
            "--out",
            next.to_str().unwrap(),
        ],
        "",
    ));
    let body = tianping_idp::DirectoryUpdate::decode(&std::fs::read(&next).unwrap())
        .unwrap()
        .body;
    for (zone, component) in [
        ("private", Component::Gateway),
        ("internet", Component::Idp),
    ] {
        let (signer, chain) = node(&dir, zone, component);
        let other = body.sign(&chain, &signer).unwrap();
        std::fs::write(file("other.tpdu"), other).unwrap();
        let err = refused(&run(
            &data,
            &[
                "idp",
                "directory",
                "apply",
                file("other.tpdu").to_str().unwrap(),
            ],
            "",
        ));
        assert!(err.contains("wrong signer"), "{zone} {component:?}: {err}");
    }
    // a gap: an update after a version the internet IdP has not applied
    ok(&idp("private", &["user", "enable", "wang.fang"], ""));
    ok(&idp("private", &["user", "disable", "wang.fang"], ""));
    let gap = file("gap.tpdu");
    ok(&run(
        &data,
        &[
            "idp",
            "directory",
            "export",
            "--since",
            &(until + 1).to_string(),
            "--to",
            "internet",
            "--out",
            gap.to_str().unwrap(),
        ],
        "",
    ));
    let err = refused(&run(
        &data,
        &["idp", "directory", "apply", gap.to_str().unwrap()],
        "",
    ));
    assert!(err.contains("gap"), "{err}");
    assert_eq!(
        ok(&idp("internet", &["user", "list"], "")),
        before,
        "nothing refused changed anything"
    );

    // the lawyer signs in on the running internet IdP with the hash that came
    let added = ok(&idp(
        "internet",
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
    let secret = added
        .lines()
        .find(|l| l.contains("client secret"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_owned();
    let internet: ZoneName = "internet".parse().unwrap();
    let mut daemon = serve(&data, "internet");
    let public = wait_published(&data, &internet, &mut daemon);
    let (http, base) = https(&data, &internet, public);
    let rt = refresh_token_of(&http, &base, &secret, "wang.fang").await;
    let (status, token) = refresh(&http, &base, &secret, &rt).await;
    assert_eq!(status, 200, "{token}");
    let rt = token["refresh_token"].as_str().unwrap().to_owned();

    // `private` disabled them: applied through the running IdP, the refresh token stops working
    let disabled = file("disabled.tpdu");
    ok(&run(
        &data,
        &[
            "idp",
            "directory",
            "export",
            "--since",
            &until.to_string(),
            "--to",
            "internet",
            "--out",
            disabled.to_str().unwrap(),
        ],
        "",
    ));
    let applied = ok(&run(
        &data,
        &["idp", "directory", "apply", disabled.to_str().unwrap()],
        "",
    ));
    assert!(applied.contains("1 sessions ended"), "{applied}");
    let (status, body) = refresh(&http, &base, &secret, &rt).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let lawyer = user_json(&ok(&idp("internet", &["user", "show", "wang.fang"], "")));
    assert_eq!(lawyer["status"], "disabled");

    // a public registration in internet (on the running IdP) reaches `private`
    ok(&idp(
        "internet",
        &[
            "user",
            "add",
            "--sub",
            "p-0123456789abcdef",
            "--login",
            "zhang.san",
            "--name",
            "张三",
            "--role",
            "public",
            "--phone",
            "+86 10 1234 5678",
            "--password-stdin",
        ],
        &format!("{STRONG}\n"),
    ));
    let reg = file("registration.tpdu");
    ok(&run(
        &data,
        &[
            "idp",
            "directory",
            "export",
            "--zone",
            "internet",
            "--since",
            "0",
            "--to",
            "private",
            "--out",
            reg.to_str().unwrap(),
        ],
        "",
    ));
    drop(daemon);
    let applied = ok(&run(
        &data,
        &["idp", "directory", "apply", reg.to_str().unwrap()],
        "",
    ));
    assert!(applied.contains("1 changed"), "{applied}");
    let arrived = user_json(&ok(&idp(
        "private",
        &["user", "show", "p-0123456789abcdef"],
        "",
    )));
    assert_eq!(arrived["roles"], serde_json::json!(["public"]));
    assert_eq!(arrived["phone"], "+86 10 1234 5678");
    assert_eq!(arrived["password"], true);

    // a staff record the internet IdP signs as a registration is refused
    let mut forged = tianping_idp::DirectoryUpdate::decode(&std::fs::read(&reg).unwrap())
        .unwrap()
        .body;
    let mut judge = tianping_idp::User::new(
        "u-judge-2".parse().unwrap(),
        "qian",
        "钱",
        tianping_core::UnixTime::from_secs(1),
    );
    judge.roles = vec![tianping_core::Role::Judge];
    forged.records[0].change =
        tianping_idp::Change::User(tianping_idp::UserRecord::from_user(&judge, &[]));
    let (signer, chain) = node(&dir, "internet", Component::Idp);
    std::fs::write(file("staff.tpdu"), forged.sign(&chain, &signer).unwrap()).unwrap();
    let err = refused(&run(
        &data,
        &[
            "idp",
            "directory",
            "apply",
            file("staff.tpdu").to_str().unwrap(),
        ],
        "",
    ));
    assert!(err.contains("only `p-` subjects register"), "{err}");
    let err = refused(&idp("private", &["user", "show", "u-judge-2"], ""));
    assert!(err.contains("u-judge-2"), "{err}");

    // every apply is audited, the refusals naming their check
    let log =
        tianping_audit::AuditLog::open(&dir.audit_log(&"private".parse().unwrap(), Component::Idp))
            .unwrap();
    let events: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "idp.directory.apply")
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].outcome, "ok");
    assert_eq!(events[1].outcome, "refused");
}

/// The address of the link from `from` to `to` in `fabric.toml` set to `addr`.
fn set_link_address(fabric: &Path, from: &str, to: &str, addr: &str) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let mut out = String::new();
    let (mut f, mut t) = (String::new(), String::new());
    for line in text.lines() {
        let l = line.trim();
        if l == "[[links]]" {
            (f, t) = (String::new(), String::new());
        }
        if let Some(v) = l.strip_prefix("from = ") {
            f = v.trim_matches('"').to_owned();
        }
        if let Some(v) = l.strip_prefix("to = ") {
            t = v.trim_matches('"').to_owned();
        }
        if l.starts_with("address") && f == from && t == to {
            out.push_str(&format!("address = \"{addr}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(fabric, out).unwrap();
}

/// A manifest of a `directory-update` on `directory-to-internet` over `link`, submitted by the
/// machine.
fn update_manifest(link: &tianping_core::Link, sequence: u64) -> tianping_crossdomain::Manifest {
    let mut m = delivery::manifest(link, "directory-to-internet", sequence);
    m.kind = "directory-update".into();
    m.content_type = "application/octet-stream".into();
    m.labels = vec![];
    m.submitter = tianping_crossdomain::Submitter {
        subject: "idp".parse().unwrap(),
        roles: vec![],
        machine: true,
    };
    m
}

#[test]
fn a_directory_update_crosses_the_exchange_to_the_running_internet_idp() {
    let mut s = exchange::setup("127.0.0.1:0");
    let (private, internet): (ZoneName, ZoneName) =
        ("private".parse().unwrap(), "internet".parse().unwrap());
    s.link = Fabric::load(&s.dir.fabric())
        .unwrap()
        .links()
        .iter()
        .find(|l| l.from == private && l.to == internet)
        .unwrap()
        .clone();
    let data = s.data.clone();
    ok(&run(
        &data,
        &["idp", "init", "--zone", "private", "--no-administrators"],
        "",
    ));
    ok(&run(&data, &["idp", "init", "--zone", "internet"], ""));
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
    ok(&run(
        &data,
        &[
            "idp",
            "user",
            "add",
            "--sub",
            "u-clerk-1",
            "--login",
            "sun.li",
            "--name",
            "孙立",
            "--court",
            "bj",
            "--role",
            "clerk",
            "--no-password",
            "--zone",
            "private",
        ],
        "",
    ));
    let file = s.tmp.path().join("update.tpdu");
    ok(&run(
        &data,
        &[
            "idp",
            "directory",
            "export",
            "--since",
            "0",
            "--to",
            "internet",
            "--out",
            file.to_str().unwrap(),
        ],
        "",
    ));
    let payload = std::fs::read(&file).unwrap();
    let mut forged = payload.clone();
    let at = forged
        .windows("孙立".len())
        .position(|w| w == "孙立".as_bytes())
        .unwrap();
    forged[at + 2] ^= 1;

    let mut idp = serve(&data, "internet");
    wait_published(&data, &internet, &mut idp);
    let by = exchange::deadline(120);
    let mut r = delivery::Receiver::start(&s, by);
    let published =
        tianping_core::published_addrs(&s.dir, &internet, Component::ExchangeReceiver).unwrap();
    let addr = published[&Listener::Link {
        from: private.clone(),
    }];
    set_link_address(&s.dir.fabric(), "private", "internet", &addr.to_string());

    let bundle = delivery::signed(&s.dir, &private, update_manifest(&s.link, 1), &forged);
    exchange::spool_bytes(&s, "forged", &bundle);
    let bundle = delivery::signed(&s.dir, &private, update_manifest(&s.link, 2), &payload);
    exchange::spool_bytes(&s, "update", &bundle);
    // the spool is the stopped sender's: it starts once both are in
    let _snd = exchange::sender(&s, &[], by);
    let line = r.line_where(by, |l| l.contains(" refused: "));
    assert!(line.contains("bad signature"), "{line}");
    let line = r.line_where(by, |l| {
        l.contains(" delivered to ") || l.contains(" refused: ")
    });
    assert!(line.contains(" delivered to "), "{line}");
    let clerk = user_json(&ok(&run(
        &data,
        &["idp", "user", "show", "sun.li", "--zone", "internet"],
        "",
    )));
    assert_eq!(clerk["sub"], "u-clerk-1");
    assert_eq!(clerk["court"], "bj");
    // the IdP audited the delivered update
    drop(idp);
    let log = tianping_audit::AuditLog::open(&s.dir.audit_log(&internet, Component::Idp)).unwrap();
    let applied = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "idp.directory.apply" && e.outcome == "ok")
        .count();
    assert_eq!(applied, 1);
}
