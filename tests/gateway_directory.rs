//! The policy's `directory-admin` route through the private zone's gateway reaches the IdP:
//! the gateway forwards `/directory/**` over the IdP's control socket under
//! `/gateway/v1/directory-authority/` with the person's `Tianping-Assertion`, which the IdP
//! verifies (the shared verifier of gateway assertions, the zone's trust bundle) and takes as the
//! caller, with the roles its admin API asks.
//!
//! Shown, with a real `idp serve` and `gateway`: a sysadmin with a `--hardware` client
//! certificate (acr cert) lists the users and disables one; that user's password sign-in is then
//! refused by the IdP; the disable is audited under the sysadmin with the gateway and its
//! request id; a sysadmin disabled in the directory is refused by the IdP (401) with a
//! certificate the gateway still takes; a secadmin, whom the route lets in, is refused the change by the IdP (403, role
//! `sysadmin`); a clerk is refused by the policy at the gateway (403); a sysadmin signed in with
//! a password only (acr pwd) is sent back to sign in with `acr_values=cert`; and straight to the
//! IdP's socket, no assertion or a forged one is 401, as is a gateway assertion on the CLI's
//! admin API.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
#[path = "common/gateway.rs"]
#[expect(dead_code, reason = "this test binds no URL service")]
mod gw;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tianping_audit::AuditLog;
use tianping_core::{Component, DataDir, Fabric, ZoneName};

use gw::{ok, private_zone, run, start};

const STRONG: &str = "Court-Passw0rd-2026";

const POLICY: &str = r#"
levels confidentiality public < internal
levels integrity untrusted < court
zone private {
  confidentiality internal
  integrity court
  acr any >= pwd
}
service directory-authority in private
route directory-admin in private {
  path /directory/**
  methods ANY
  to service directory-authority
  roles sysadmin, secadmin
  acr >= cert
}
"#;

/// A client certificate of the zone on a hardware token (acr cert) for `sub` with `role`; its
/// PEM certificate and key together, as `reqwest::Identity` reads them.
fn hardware_cert(data: &Path, sub: &str, role: &str) -> Vec<u8> {
    let out = data.parent().unwrap().join(sub);
    ok(&run(
        data,
        &[
            "certs",
            "issue",
            "--dir",
            data.join("pki").to_str().unwrap(),
            "--zone",
            "private",
            "--kind",
            "client",
            "--name",
            sub,
            "--subject-id",
            sub,
            "--court",
            "spc",
            "--role",
            role,
            "--hardware",
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    ));
    let mut identity = std::fs::read(out.with_extension("pem")).unwrap();
    identity.extend(std::fs::read(out.with_extension("key")).unwrap());
    identity
}

/// A client of both the gateway and the IdP (names resolved to their ports, the zone's trust
/// bundle, no redirects followed), presenting `identity` if given.
fn client(
    trust: &[u8],
    hosts: [(&str, SocketAddr); 2],
    identity: Option<&[u8]>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none());
    for (host, addr) in hosts {
        b = b.resolve(host, addr);
    }
    for cert in reqwest::Certificate::from_pem_bundle(trust).unwrap() {
        b = b.add_root_certificate(cert);
    }
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id).unwrap());
    }
    b.build().unwrap()
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

/// A browser sent from the gateway's `page` to the IdP signs in there with `login`'s password:
/// the IdP's answer to the password form, and the gateway's sign-in cookie.
async fn password_sign_in(
    http: &reqwest::Client,
    page: &str,
    idp_base: &str,
    login: &str,
) -> (reqwest::Response, String) {
    let r = http
        .get(page)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "a browser without a session signs in");
    let authorize = location(&r);
    let signin = cookie(&r, "__Host-tianping-signin").unwrap();
    let form = http.get(&authorize).send().await.unwrap();
    assert_eq!(form.status(), 200, "{authorize}");
    let idp_cookie = cookie(&form, "__Host-tianping-session").unwrap();
    let html = form.text().await.unwrap();
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
    (r, signin)
}

/// `method path` straight to the IdP's control socket, with `assertion` if given; the status.
async fn socket_call(socket: &Path, method: &str, path: &str, assertion: Option<&str>) -> u16 {
    let mut req = http::Request::builder().method(method).uri(path);
    if let Some(a) = assertion {
        req = req.header("tianping-assertion", a);
    }
    let req = req.body(tianping_net::ControlBody::empty()).unwrap();
    tianping_net::control_send(socket, req, Duration::from_secs(30))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sysadmin_administers_the_directory_through_the_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let data = private_zone(tmp.path(), POLICY);
    let dir = DataDir::new(&data);
    let zone: ZoneName = "private".parse().unwrap();
    let idp = |args: &[&str], stdin: &str| {
        let mut all = vec!["idp"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--zone", "private"]);
        ok(&run(&data, &all, stdin))
    };
    idp(&["court", "add", "bj", "--name", "北京市高级人民法院"], "");
    idp(
        &["court", "add", "bj.01", "--name", "北京市第一中级人民法院"],
        "",
    );
    let user = |sub: &str, login: &str, court: Option<&str>, role: &str| {
        let mut args = vec![
            "user",
            "add",
            "--sub",
            sub,
            "--login",
            login,
            "--name",
            login,
            "--role",
            role,
            "--password-stdin",
        ];
        if let Some(c) = court {
            args.extend_from_slice(&["--court", c]);
        }
        idp(&args, &format!("{STRONG}\n"));
    };
    user("judge-0001", "wang", Some("bj.01"), "judge");
    // a second system administrator, who signs in with a password only
    user("sysadmin-0002", "zhao", None, "sysadmin");
    // the first administrators `idp init` made, and a clerk, each with a hardware token
    let sysadmin = hardware_cert(&data, "sysadmin-0001", "sysadmin");
    let secadmin = hardware_cert(&data, "secadmin-0001", "secadmin");
    let clerk = hardware_cert(&data, "clerk-0001", "clerk");
    let zhao_cert = hardware_cert(&data, "sysadmin-0002", "sysadmin");

    let (idp_daemon, idp_addr, _) = start(
        &data,
        &["idp", "serve", "--zone", "private"],
        &zone,
        Component::Idp,
    );
    let (gateway, gw_addr, _) = start(
        &data,
        &["gateway", "--zone", "private"],
        &zone,
        Component::Gateway,
    );
    let fabric = Fabric::load(&dir.fabric()).unwrap();
    let zl = fabric.zone(&zone).unwrap();
    let trust = std::fs::read(dir.zone_trust_bundle(&zone)).unwrap();
    let hosts = [
        (zl.gateway_host.as_str(), gw_addr),
        (zl.idp_host.as_str(), idp_addr),
    ];
    let gw_base = format!("https://{}:{}", zl.gateway_host, gw_addr.port());
    let idp_base = format!("https://{}:{}", zl.idp_host, idp_addr.port());
    let as_sysadmin = client(&trust, hosts, Some(&sysadmin));
    let as_secadmin = client(&trust, hosts, Some(&secadmin));
    let as_clerk = client(&trust, hosts, Some(&clerk));
    let as_zhao = client(&trust, hosts, Some(&zhao_cert));
    let browser = client(&trust, hosts, None);
    let call = |http: &reqwest::Client, method: &str, path: &str| {
        let req = http
            .request(method.parse().unwrap(), format!("{gw_base}{path}"))
            .header("accept", "application/json");
        async move {
            let r = req.send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.text().await.unwrap())
        }
    };

    // before: the judge signs in with their password (the IdP sends the browser back)
    let page = format!("{gw_base}/directory/users");
    let (r, _) = password_sign_in(&browser, &page, &idp_base, "wang").await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(location(&r).starts_with(&format!("{gw_base}/.tianping/callback?")));

    // the sysadmin lists the users and looks at one
    let (code, body) = call(&as_sysadmin, "GET", "/directory/users").await;
    assert_eq!(code, 200, "{body}");
    let users: Value = serde_json::from_str(&body).unwrap();
    let subs: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["sub"].as_str())
        .collect();
    assert!(subs.contains(&"judge-0001"), "{users}");
    assert!(subs.contains(&"sysadmin-0001"), "{users}");
    let (code, body) = call(&as_sysadmin, "GET", "/directory/users/wang").await;
    assert_eq!(code, 200, "{body}");
    let wang: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(wang["sub"], "judge-0001", "{wang}");
    let (code, _) = call(&as_sysadmin, "GET", "/directory/users/nobody-0009").await;
    assert_eq!(code, 422, "an unknown account");
    let (code, _) = call(&as_sysadmin, "GET", "/directory/nothing-here").await;
    assert_eq!(code, 404);

    // the secadmin may read (the route and the IdP agree) but not disable: the IdP's own check
    let (code, body) = call(&as_secadmin, "GET", "/directory/users").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(&as_secadmin, "POST", "/directory/users/wang/disable").await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("role `sysadmin` required"), "{body}");

    // the clerk is refused by the policy, at the gateway
    let (code, body) = call(&as_clerk, "GET", "/directory/users").await;
    assert_eq!(code, 403, "{body}");

    // the sysadmin disables the judge
    let (code, body) = call(&as_sysadmin, "POST", "/directory/users/wang/disable").await;
    assert_eq!(code, 200, "{body}");
    let after: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(after["sub"], "judge-0001", "{after}");
    assert_eq!(after["status"], "disabled", "{after}");
    let (code, body) = call(&as_sysadmin, "GET", "/directory/users/judge-0001").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"status\":\"disabled\""), "{body}");

    // the judge's password sign-in is now refused by the IdP (the form again, no redirect)
    let (r, _) = password_sign_in(&browser, &page, &idp_base, "wang").await;
    assert!(!r.status().is_redirection(), "{}", r.status());

    // a sysadmin signed in with a password only is sent back to sign in with a certificate
    let (r, signin) = password_sign_in(&browser, &page, &idp_base, "zhao").await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let r = browser
        .get(location(&r))
        .header("cookie", &signin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = cookie(&r, "__Host-tianping-session").unwrap();
    let r = browser
        .get(&page)
        .header("cookie", &session)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "a step up, not the directory");
    let step_up = location(&r);
    assert!(
        step_up.starts_with(&format!("{idp_base}/authorize?")),
        "{step_up}"
    );
    assert!(step_up.contains("acr_values=cert"), "{step_up}");

    // the IdP takes the directory as it is now: a sysadmin disabled there is refused, however
    // good their certificate still is at the gateway
    let (code, body) = call(&as_zhao, "GET", "/directory/users").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(&as_sysadmin, "POST", "/directory/users/zhao/disable").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(&as_zhao, "GET", "/directory/users").await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("disabled"), "{body}");

    // straight to the IdP's socket: no assertion, a forged one, or a gateway assertion on the
    // CLI's admin API, each 401
    let socket = dir.socket(&zone, Component::Idp);
    let path = "/gateway/v1/directory-authority/directory/users";
    assert_eq!(socket_call(&socket, "GET", path, None).await, 401);
    assert_eq!(
        socket_call(&socket, "GET", path, Some("eyJhbGciOiJub25lIn0.e30.")).await,
        401
    );
    let forged = "eyJhbGciOiJFUzI1NiIsInR5cCI6InVzZXIifQ.eyJzdWIiOiJzeXNhZG1pbi0wMDAxIn0.AAAA";
    assert_eq!(socket_call(&socket, "GET", path, Some(forged)).await, 401);
    assert_eq!(
        socket_call(&socket, "POST", "/directory", Some(forged)).await,
        401
    );
    assert_eq!(socket_call(&socket, "GET", "/status", None).await, 200);

    drop((as_sysadmin, as_secadmin, as_clerk, as_zhao, browser));
    gateway.stop();
    idp_daemon.stop();
    // the disable is audited under the sysadmin, with the gateway that asserted them
    let log = AuditLog::open(&dir.audit_log(&zone, Component::Idp)).unwrap();
    let disables: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "idp.user.disable")
        .collect();
    assert_eq!(disables.len(), 2, "{disables:?}");
    let e = disables.first().unwrap();
    assert_eq!(e.actor, "sysadmin-0001");
    assert_eq!(e.object, "wang");
    assert_eq!(e.roles, ["sysadmin"]);
    assert_eq!(
        e.attributes.get("gateway").map(String::as_str),
        Some(zl.gateway_host.as_str())
    );
    assert!(!e.request_id.is_empty(), "{e:?}");
}
