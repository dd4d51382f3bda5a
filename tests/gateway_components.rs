//! The gateway forwards a route bound to a component over that component's control socket: an
//! auditor reads the audit store's mirrors through the private zone's gateway (the store verifies
//! the gateway's `Tianping-Assertion` and decides by its roles again), a clerk is refused by the
//! policy (403), and a request straight to the store's socket with a forged or no assertion is
//! refused by the store (401).
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
#[path = "common/gateway.rs"]
#[expect(dead_code, reason = "this test binds no URL service")]
mod gw;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tianping_audit::{AuditBatch, AuditLog, Checkpoint, Event, leaf_hash, root_of};
use tianping_core::{Algorithm, Component, DataDir, RingSigner, UnixTime, ZoneName};

use gw::{Daemon, ok, private_zone, run, start};

const POLICY: &str = r#"
levels confidentiality public < internal
levels integrity untrusted < court
zone private {
  confidentiality internal
  integrity court
  acr any >= pwd
}
service audit-store in private
route audit-read in private {
  path /audit/**
  methods GET
  to service audit-store
  roles auditor
  acr >= cert
}
"#;

/// A mirror of `public`'s gateway log with three entries, as a delivered batch would make it.
fn seed_mirror(dir: &DataDir, zone: &ZoneName, domain: &str) {
    let at = dir
        .component(zone, Component::AuditStore)
        .join("mirrors")
        .join("public")
        .join("gateway");
    std::fs::create_dir_all(&at).unwrap();
    let s = RingSigner::generate(Algorithm::Ed25519).unwrap().0;
    let entries: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let mut e = Event::new(UnixTime::from_millis(1_000 + i), "request");
            e.object = format!("/cases/{i}");
            e.encode()
        })
        .collect();
    let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(e)).collect();
    let cp = Checkpoint {
        origin: format!("{domain}/audit/public/gateway"),
        size: 3,
        root: root_of(&leaves),
    }
    .sign(&s)
    .unwrap();
    let batch = AuditBatch {
        signer: tianping_core::Signer::public_key(&s),
        old_size: 0,
        proof: Vec::new(),
        note: cp.note().to_owned(),
        entries,
    };
    let mirror = AuditLog::open_mirror(&at, None).unwrap();
    mirror.apply_batch(&batch).unwrap();
}

fn socket_get(socket: &std::path::Path, path: &str, assertion: Option<&str>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut req = http::Request::builder().method("GET").uri(path);
    if let Some(a) = assertion {
        req = req.header("tianping-assertion", a);
    }
    let req = req.body(tianping_net::ControlBody::empty()).unwrap();
    rt.block_on(tianping_net::control_send(
        socket,
        req,
        Duration::from_secs(30),
    ))
    .unwrap()
    .status()
    .as_u16()
}

#[test]
fn an_auditor_reads_the_mirrors_through_the_gateway_and_a_clerk_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = private_zone(tmp.path(), POLICY);
    let dir = DataDir::new(&data);
    let zone: ZoneName = "private".parse().unwrap();
    let fabric = tianping_core::Fabric::load(&dir.fabric()).unwrap();
    seed_mirror(&dir, &zone, &fabric.domain);

    let store_socket = dir.socket(&zone, Component::AuditStore);
    let store = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tianping"))
            .arg("--data")
            .arg(&data)
            .args(["audit", "store", "--zone", "private"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let up = rt
            .block_on(tianping_net::control_request(
                &store_socket,
                "GET",
                "/status",
                "",
            ))
            .is_ok_and(|(code, _)| code == 200);
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "the audit store never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_idp, idp_addr, _) = start(
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

    // people's bearer tokens, signed with the IdP's key
    let zl = fabric.zone(&zone).unwrap();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let keys = tianping_idp::KeyDir::new(dir.keys(&zone, Component::Idp))
        .load(now)
        .unwrap();
    let t = now.as_secs();
    let token = |sub: &str, role: &str| {
        keys.sign(
            "at+jwt",
            &json!({
                "iss": format!("https://{}:{}", zl.idp_host, idp_addr.port()),
                "aud": "tianping", "client_id": "audit-app", "exp": t + 300, "iat": t,
                "jti": format!("components-{sub}"), "scope": "openid", "sub": sub,
                "roles": [role], "court": "bj.01", "clearance": "none", "acr": "cert",
                "amr": ["hwk"], "zone": "private", "auth_time": t,
            }),
        )
        .unwrap()
    };
    let trust = std::fs::read(dir.zone_trust_bundle(&zone)).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .resolve(&zl.gateway_host, gw_addr);
    for cert in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
        b = b.add_root_certificate(cert);
    }
    let http = b.build().unwrap();
    let base = format!("https://{}:{}", zl.gateway_host, gw_addr.port());
    let get = |path: &str, token: &str| {
        rt.block_on(async {
            let r = http
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            (code, r.text().await.unwrap())
        })
    };

    let auditor = token("auditor-0001", "auditor");
    let (code, body) = get("/audit", &auditor);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mirrors = v["mirrors"].as_array().unwrap();
    assert_eq!(mirrors.len(), 1, "{v}");
    let m = mirrors.first().unwrap();
    assert_eq!(m["zone"], "public");
    assert_eq!(m["component"], "gateway");
    assert_eq!(m["entries"], 3);
    assert_eq!(m["last_checkpoint"], 3);
    assert_eq!(m["verifies"], true, "{m}");

    let (code, body) = get("/audit/public/gateway", &auditor);
    assert_eq!(code, 200, "{body}");
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["entries"], 3, "{one}");
    let (code, _) = get("/audit/public/idp", &auditor);
    assert_eq!(code, 404, "no such mirror");

    let clerk = token("clerk-0001", "clerk");
    let (code, body) = get("/audit", &clerk);
    assert_eq!(code, 403, "the policy refuses a clerk: {body}");

    // straight to the store's socket: no assertion, or a forged one, is refused by the store
    let path = "/gateway/v1/audit-store/audit";
    assert_eq!(socket_get(&store_socket, path, None), 401);
    assert_eq!(
        socket_get(&store_socket, path, Some("eyJhbGciOiJub25lIn0.e30.")),
        401
    );
    // the admin API's open status stays open
    assert_eq!(socket_get(&store_socket, "/status", None), 200);

    drop(http);
    drop(rt);
    gateway.stop();
    // the store audited the auditor's reads under the auditor
    store.stop();
    let log = AuditLog::open(&dir.audit_log(&zone, Component::AuditStore)).unwrap();
    let reads: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "audit.mirror.read")
        .collect();
    assert_eq!(reads.len(), 3, "{reads:?}");
    assert!(reads.iter().all(|e| e.attributes["by"] == "auditor-0001"));
    drop(log);
    let _ = ok(&run(
        &data,
        &[
            "audit",
            "verify",
            "--log",
            dir.audit_log(&zone, Component::AuditStore)
                .to_str()
                .unwrap(),
        ],
        "",
    ));
}

fn gateway_status(socket: &std::path::Path) -> Value {
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

/// Polls the gateway's control socket (bounded) until `key` reaches `want`.
fn wait_for(socket: &std::path::Path, key: &str, want: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = gateway_status(socket);
        if s.get(key).and_then(Value::as_u64) == Some(want) {
            return s;
        }
        assert!(Instant::now() < deadline, "{key} never reached {want}: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The gateway reloads its zone's policy copy when the file changes, no signal sent: a policy
/// that checks is taken (the generation counts it), one that does not is refused and the old
/// one stays; both audited as `policy.reload`.
#[test]
fn a_changed_policy_file_is_reloaded_and_a_bad_one_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = private_zone(tmp.path(), POLICY);
    let dir = DataDir::new(&data);
    let zone: ZoneName = "private".parse().unwrap();
    let (_idp, _, _) = start(
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
    let hash = |text: &str| {
        tianping_policies::check("p.tp", text)
            .into_policy()
            .unwrap()
            .hash()
            .to_string()
    };
    assert_eq!(gateway_status(&socket)["reload_generation"], 0);

    let second = POLICY.replace("roles auditor\n", "roles auditor, secadmin\n");
    std::fs::write(dir.zone_policy(&zone), &second).unwrap();
    let s = wait_for(&socket, "reload_generation", 1);
    assert_eq!(s["policy"], hash(&second));

    std::fs::write(dir.zone_policy(&zone), "zone private {\n").unwrap();
    let s = wait_for(&socket, "reloads_refused", 1);
    assert_eq!(s["reload_generation"], 1);
    assert_eq!(s["policy"], hash(&second), "the old policy stays");
    gateway.stop();

    let log = AuditLog::open(&dir.audit_log(&zone, Component::Gateway)).unwrap();
    let reloads: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "policy.reload")
        .collect();
    assert_eq!(reloads.len(), 2, "{reloads:?}");
    assert_eq!(reloads.first().unwrap().outcome, "ok");
    assert_eq!(reloads.get(1).unwrap().outcome, "refused");
}
