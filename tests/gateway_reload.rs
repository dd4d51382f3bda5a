//! `tianping gateway` reloads on SIGHUP: a policy that passes the check decides the next
//! requests (the reload generation on the control socket and `/metrics` says when), one that
//! does not is refused and the old one stays; both audited as `policy.reload`. The control
//! socket's `POST /reload` does the same for a system administrator's token (audited as
//! `admin.reload`); no credential, a token not for the control sockets or living too long is
//! 401, a person without `sysadmin` 403, and `GET /status` stays open. The live log's audit
//! API there is an auditor's (`tianping audit verify` of the running gateway's log).
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
#[path = "common/gateway.rs"]
mod gw;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tianping_core::{Component, DataDir, UnixTime, ZoneName};

use gw::{bind_service, ok, private_zone, run, start};

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

fn status(socket: &std::path::Path) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (code, body) = rt
        .block_on(tianping_net::control_request(socket, "GET", "/status", ""))
        .unwrap();
    assert_eq!(code, 200);
    serde_json::from_slice(&body).unwrap()
}

/// Polls the control socket (bounded) until `key` reaches `want`.
fn wait_for(socket: &std::path::Path, key: &str, want: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(socket);
        if s.get(key).and_then(Value::as_u64) == Some(want) {
            return s;
        }
        assert!(Instant::now() < deadline, "{key} never reached {want}: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hup(pid: u32) {
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn a_sighup_reloads_a_good_policy_and_refuses_a_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = private_zone(tmp.path(), POLICY);
    let dir = DataDir::new(&data);
    let zone: ZoneName = "private".parse().unwrap();
    // nothing listens there: an allowed request is answered 502 by the gateway itself
    bind_service(&dir.fabric(), "https://localhost:1/");
    let (idp, idp_addr, _) = start(
        &data,
        &["idp", "serve", "--zone", "private"],
        &zone,
        Component::Idp,
    );
    let (gateway, gw_addr, gw_admin) = start(
        &data,
        &["gateway", "--zone", "private"],
        &zone,
        Component::Gateway,
    );
    let socket = dir.socket(&zone, Component::Gateway);
    let hash = |text: &str| {
        tianping_policies::check("p.tp", text)
            .into_policy()
            .unwrap()
            .hash()
            .to_string()
    };
    let s = status(&socket);
    assert_eq!(s["policy"], hash(POLICY));
    assert_eq!(s["reload_generation"], 0);

    // a judge's bearer token, signed with the IdP's key
    let fabric = tianping_core::Fabric::load(&dir.fabric()).unwrap();
    let zl = fabric.zone(&zone).unwrap();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let keys = tianping_idp::KeyDir::new(dir.keys(&zone, Component::Idp))
        .load(now)
        .unwrap();
    let t = now.as_secs();
    let token = keys
        .sign(
            "at+jwt",
            &json!({
                "iss": format!("https://{}:{}", zl.idp_host, idp_addr.port()),
                "aud": "tianping", "client_id": "case-app", "exp": t + 300, "iat": t,
                "jti": "reload-1", "scope": "openid", "sub": "judge-0001", "roles": ["judge"],
                "court": "bj.01", "clearance": "none", "acr": "pwd", "amr": ["pwd"],
                "zone": "private", "auth_time": t,
            }),
        )
        .unwrap();
    let trust = std::fs::read(dir.zone_trust_bundle(&zone)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .resolve(&zl.gateway_host, gw_addr);
    for cert in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
        b = b.add_root_certificate(cert);
    }
    let http = b.build().unwrap();
    let url = format!(
        "https://{}:{}/courts/bj.01/cases/7",
        zl.gateway_host,
        gw_addr.port()
    );
    let delete = || {
        rt.block_on(async { http.delete(&url).bearer_auth(&token).send().await.unwrap() })
            .status()
            .as_u16()
    };
    assert_eq!(delete(), 403, "the first policy allows GET only");

    // a policy that also allows DELETE, taken on SIGHUP
    let second = POLICY.replace("methods GET\n", "methods GET, DELETE\n");
    std::fs::write(dir.zone_policy(&zone), &second).unwrap();
    hup(gateway.0.id());
    let s = wait_for(&socket, "reload_generation", 1);
    assert_eq!(s["policy"], hash(&second));
    assert_eq!(
        delete(),
        502,
        "allowed now, and forwarded to where nothing listens"
    );
    let metrics = rt
        .block_on(async {
            reqwest::get(format!("http://{gw_admin}/metrics"))
                .await
                .unwrap()
                .text()
                .await
        })
        .unwrap();
    assert!(
        metrics.contains("tianping_gateway_reload_generation 1"),
        "{metrics}"
    );

    // a policy that does not pass the check is refused; the second stays
    std::fs::write(dir.zone_policy(&zone), "zone private {\n").unwrap();
    hup(gateway.0.id());
    let s = wait_for(&socket, "reloads_refused", 1);
    assert_eq!(s["reload_generation"], 1);
    assert_eq!(s["policy"], hash(&second));
    assert_eq!(delete(), 502);
    // the client's connections go with its runtime, so the gateway has none to wait for
    drop(http);
    drop(rt);
    gateway.stop();
    idp.stop();

    let log = tianping_audit::AuditLog::open(&dir.audit_log(&zone, Component::Gateway)).unwrap();
    let reloads: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "policy.reload")
        .collect();
    assert_eq!(reloads.len(), 2, "{reloads:?}");
    assert_eq!(reloads[0].outcome, "ok");
    assert_eq!(
        reloads[0].policy_hash.map(|h| h.to_string()),
        Some(hash(&second))
    );
    assert_eq!(reloads[0].attributes["previous"], hash(POLICY));
    assert_eq!(reloads[1].outcome, "refused");
    assert!(!reloads[1].reason.is_empty());
    // the decisions were made by the policy in force at the time
    let decided: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "request")
        .map(|e| (e.outcome, e.policy_hash.map(|h| h.to_string()).unwrap()))
        .collect();
    assert_eq!(
        decided,
        vec![
            ("deny".to_owned(), hash(POLICY)),
            ("allow".to_owned(), hash(&second)),
            ("allow".to_owned(), hash(&second)),
        ]
    );
    // and the log verifies
    drop(log);
    let log_dir = dir.audit_log(&zone, Component::Gateway);
    ok(&run(
        &data,
        &["audit", "verify", "--log", log_dir.to_str().unwrap()],
        "",
    ));
}

/// `method path` on the control socket, with `token` as `Authorization: Bearer`; the status
/// and the body.
fn ask(socket: &std::path::Path, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = b.body(tianping_net::ControlBody::empty()).unwrap();
    rt.block_on(async {
        let r = tianping_net::control_send(socket, req, tianping_net::CONTROL_TIMEOUT)
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.into_body().bytes().await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

#[test]
fn the_control_socket_reloads_for_a_sysadmin_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = private_zone(tmp.path(), POLICY);
    let dir = DataDir::new(&data);
    let zone: ZoneName = "private".parse().unwrap();
    bind_service(&dir.fabric(), "https://localhost:1/");
    let (idp, idp_addr, _) = start(
        &data,
        &["idp", "serve", "--zone", "private"],
        &zone,
        Component::Idp,
    );
    let (gateway, _, _) = start(
        &data,
        &["gateway", "--zone", "private"],
        &zone,
        Component::Gateway,
    );
    let socket = dir.socket(&zone, Component::Gateway);
    let fabric = tianping_core::Fabric::load(&dir.fabric()).unwrap();
    let zl = fabric.zone(&zone).unwrap();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let keys = tianping_idp::KeyDir::new(dir.keys(&zone, Component::Idp))
        .load(now)
        .unwrap();
    let t = now.as_secs();
    // a token as `tianping login` keeps it: for the zone's control sockets, 15 minutes at most
    let token = |sub: &str, role: &str, aud: &str, life: u64| {
        keys.sign(
            "at+jwt",
            &json!({
                "iss": format!("https://{}:{}", zl.idp_host, idp_addr.port()),
                "aud": aud, "client_id": "tianping-cli", "exp": t + life, "iat": t,
                "jti": format!("{sub}-{aud}-{life}"), "scope": "openid", "sub": sub,
                "roles": [role], "acr": "otp", "amr": ["pwd", "otp"], "zone": "private",
                "auth_time": t,
            }),
        )
        .unwrap()
    };
    let control = "tianping-control:private";

    // status stays open, for `tianping status` and whoever `up` runs as
    assert_eq!(ask(&socket, "GET", "/status", None).0, 200);
    // refused callers: none, a made-up token, a token for the gateway's listener, one that
    // lives too long, and a person without the role
    assert_eq!(ask(&socket, "POST", "/reload", None).0, 401);
    assert_eq!(ask(&socket, "POST", "/reload", Some("not-a-token")).0, 401);
    let listener = token("admin-0001", "sysadmin", "tianping", 300);
    assert_eq!(ask(&socket, "POST", "/reload", Some(&listener)).0, 401);
    let long = token("admin-0001", "sysadmin", control, 3600);
    assert_eq!(ask(&socket, "POST", "/reload", Some(&long)).0, 401);
    let judge = token("judge-0001", "judge", control, 300);
    let (code, body) = ask(&socket, "POST", "/reload", Some(&judge));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("sysadmin"), "{body}");
    assert_eq!(status(&socket)["reload_generation"], 0, "nothing reloaded");

    // the system administrator's reload is taken as a SIGHUP's
    let second = POLICY.replace("methods GET\n", "methods GET, DELETE\n");
    std::fs::write(dir.zone_policy(&zone), &second).unwrap();
    let admin = token("admin-0001", "sysadmin", control, 300);
    let (code, body) = ask(&socket, "POST", "/reload", Some(&admin));
    assert_eq!(code, 202, "{body}");
    let s = wait_for(&socket, "reload_generation", 1);
    let want = tianping_policies::check("p.tp", &second)
        .into_policy()
        .unwrap()
        .hash()
        .to_string();
    assert_eq!(s["policy"], want);
    assert_eq!(ask(&socket, "GET", "/reload", Some(&admin)).0, 405);

    // the live log's audit API is an auditor's: `tianping audit verify` asks the gateway
    let (code, body) = ask(&socket, "GET", "/audit/v1/status", Some(&admin));
    assert_eq!(code, 403, "{body}");
    let auditor = token("auditor-0001", "auditor", control, 300);
    let (code, body) = ask(&socket, "GET", "/audit/v1/status", Some(&auditor));
    assert_eq!(code, 200, "{body}");
    std::fs::write(dir.admin_token(&zone), format!("{auditor}\n")).unwrap();
    let log_dir = dir.audit_log(&zone, Component::Gateway);
    let verified = ok(&run(
        &data,
        &["audit", "verify", "--log", log_dir.to_str().unwrap()],
        "",
    ));
    assert!(!verified.is_empty());
    std::fs::remove_file(dir.admin_token(&zone)).unwrap();
    gateway.stop();
    idp.stop();

    let log = tianping_audit::AuditLog::open(&dir.audit_log(&zone, Component::Gateway)).unwrap();
    let asked: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "admin.reload")
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].actor, "admin-0001");
    assert_eq!(asked[0].roles, ["sysadmin"]);
    let reads: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "audit.read")
        .map(|e| (e.actor, e.outcome))
        .collect();
    assert!(
        reads.contains(&("auditor-0001".to_owned(), "allow".to_owned())),
        "{reads:?}"
    );
    assert!(
        reads.contains(&("admin-0001".to_owned(), "deny".to_owned())),
        "{reads:?}"
    );
}
