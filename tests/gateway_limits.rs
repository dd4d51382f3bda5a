//! The gateway's per-subject rate limit is the zone's in `fabric.toml`: with `subject-rate = 1`
//! and `subject-burst = 1` in `[zones.private]`, a signed-in judge's requests soon get 429 with
//! `Retry-After`, while another judge's next request is still decided and forwarded.

mod common;
#[path = "common/gateway.rs"]
#[expect(clippy::allow_attributes, reason = "dead_code is per test crate")]
#[allow(dead_code, reason = "this test uses some of the shared helpers")]
mod gw;

use serde_json::json;
use tianping_core::{Component, DataDir, UnixTime, ZoneName};

use gw::{bind_service, private_zone, start};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_subject_rate_in_fabric_toml_gives_429_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let data = private_zone(tmp.path(), POLICY);
    let dir = DataDir::new(&data);
    let zone: ZoneName = "private".parse().unwrap();
    // nothing listens there: an allowed request is answered 502 by the gateway itself
    bind_service(&dir.fabric(), "https://localhost:1/");
    let text = std::fs::read_to_string(dir.fabric()).unwrap();
    let text = text.replacen(
        "[zones.private]\n",
        "[zones.private]\nsubject-rate = 1\nsubject-burst = 1\n",
        1,
    );
    assert!(text.contains("subject-rate = 1"));
    std::fs::write(dir.fabric(), text).unwrap();
    let (idp, idp_addr, _) = start(
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
    let fabric = tianping_core::Fabric::load(&dir.fabric()).unwrap();
    let zl = fabric.zone(&zone).unwrap();
    assert_eq!((zl.subject_rate, zl.subject_burst), (Some(1), Some(1)));
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let keys = tianping_idp::KeyDir::new(dir.keys(&zone, Component::Idp))
        .load(now)
        .unwrap();
    let t = now.as_secs();
    let token = |sub: &str| {
        keys.sign(
            "at+jwt",
            &json!({
                "iss": format!("https://{}:{}", zl.idp_host, idp_addr.port()),
                "aud": "tianping", "client_id": "case-app", "exp": t + 300, "iat": t,
                "jti": format!("{sub}-limits"), "scope": "openid", "sub": sub,
                "roles": ["judge"], "court": "bj.01", "clearance": "none", "acr": "pwd",
                "amr": ["pwd"], "zone": "private", "auth_time": t,
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
    let url = format!(
        "https://{}:{}/courts/bj.01/cases/7",
        zl.gateway_host,
        gw_addr.port()
    );
    let judge = token("judge-0001");
    // a burst of one, one more a second: of a quick run of requests, most are refused
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..20 {
        let r = http.get(&url).bearer_auth(&judge).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            refused = Some(r);
            break;
        }
    }
    assert!(refused.is_some(), "never limited: {statuses:?}");
    let r = refused.unwrap();
    assert_eq!(
        statuses.first(),
        Some(&502),
        "the first is decided and forwarded"
    );
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // another subject has its own bucket
    let other = http
        .get(&url)
        .bearer_auth(token("judge-0002"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 502);
    drop(http);
    gateway.stop();
    idp.stop();
}
