//! A transfer through the gateway all the way to the receiving zone and back (real daemons of
//! two zones, real sockets and links): in `internet`, beside a real `idp serve`, a litigant's
//! online filing (`POST /filings`, the default policy's `online-filing` flow) is answered 202
//! with its transfer id; `GET /.tianping/transfers/{id}` shows its submitter the transfer as the
//! exchange sender keeps it, then (polled until it changes) delivered, with the delivery
//! receipt the private receiver signed and sent back on `filing-receipt`, kept by the internet
//! receiver and verified here against the private receiver's node key. Another signed-in
//! person gets the 404 an unknown id gets; no credential is 401 (a browser is sent to sign in).
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
#[path = "common/exchange.rs"]
mod exchange;
#[path = "common/gateway.rs"]
#[expect(clippy::allow_attributes, reason = "dead_code is per test crate")]
#[allow(dead_code, reason = "this test uses some of the shared helpers")]
mod gw;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tianping_core::{Component, UnixTime, ZoneName};

use exchange::{Daemon as ExDaemon, deadline, setup};
use gw::{ok, run, start};

/// An online filing of the `filing-form` schema.
const FILING: &str = r#"{
  "amount_claimed_fen": 10000000,
  "attachments": [],
  "case_type": "civil",
  "claims": "判令被告支付货款人民币十万元",
  "court": "bj.01.03",
  "defendants": [
    {
      "id_number": "91110000600037341L",
      "id_type": "unified-social-credit-code",
      "kind": "organisation",
      "name": "某某有限公司"
    }
  ],
  "filed_by": {
    "name": "张三",
    "role": "litigant"
  },
  "plaintiffs": [
    {
      "id_number": "110101199001011234",
      "id_type": "resident-id",
      "kind": "person",
      "name": "张三",
      "phone": "+86 138 0000 0000"
    }
  ],
  "submitted_at": "2026-12-02T09:30:00+08:00"
}
"#;

fn zone(z: &str) -> ZoneName {
    z.parse().unwrap()
}

/// `tianping exchange send|receive --zone Z` as a child, ready.
fn daemon(data: &std::path::Path, what: &str, z: &str, by: Instant) -> ExDaemon {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tianping"));
    c.arg("--data")
        .arg(data)
        .args(["exchange", what, "--zone", z]);
    let mut d = ExDaemon::spawn(&format!("{z} {what}"), c);
    d.ready(
        if what == "send" {
            "sending from"
        } else {
            "receiving into"
        },
        by,
    );
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::too_many_lines,
    reason = "one filing, there and back, step by step"
)]
async fn a_filing_s_page_shows_its_submitter_the_transfer_then_its_receipt() {
    let s = setup("127.0.0.1:0");
    let (data, dir) = (s.data.clone(), s.dir.clone());
    let internet = zone("internet");
    let by = deadline(240);
    ok(&run(&data, &["idp", "init", "--zone", "internet"], ""));
    let (idp, idp_addr, _) = start(
        &data,
        &["idp", "serve", "--zone", "internet"],
        &internet,
        Component::Idp,
    );
    let private_rx = daemon(&data, "receive", "private", by);
    let internet_rx = daemon(&data, "receive", "internet", by);
    let private_tx = daemon(&data, "send", "private", by);
    let internet_tx = daemon(&data, "send", "internet", by);
    let (gateway, gw_addr, _) = start(
        &data,
        &["gateway", "--zone", "internet"],
        &internet,
        Component::Gateway,
    );
    let fabric = tianping_core::Fabric::load(&dir.fabric()).unwrap();
    let zl = fabric.zone(&internet).unwrap();

    // bearer tokens signed with the IdP's key (the sign-in itself is shown elsewhere)
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let keys = tianping_idp::KeyDir::new(dir.keys(&internet, Component::Idp))
        .load(now)
        .unwrap();
    let t = now.as_secs();
    let token = |sub: &str| {
        keys.sign(
            "at+jwt",
            &json!({
                "iss": format!("https://{}:{}", zl.idp_host, idp_addr.port()),
                "aud": "tianping", "client_id": "filing-app", "exp": t + 600, "iat": t,
                "jti": format!("{sub}-1"), "scope": "openid", "sub": sub, "roles": ["litigant"],
                "clearance": "none", "acr": "pwd", "amr": ["pwd"],
                "zone": "internet", "auth_time": t,
            }),
        )
        .unwrap()
    };
    let trust = std::fs::read(dir.zone_trust_bundle(&internet)).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&zl.gateway_host, gw_addr);
    for cert in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
        b = b.add_root_certificate(cert);
    }
    let http = b.build().unwrap();
    let base = format!("https://{}:{}", zl.gateway_host, gw_addr.port());

    let litigant = token("p-litigant-0001");
    let r = http
        .post(format!("{base}/filings?kind=json&schema=filing-form"))
        .bearer_auth(&litigant)
        .header("content-type", "application/json")
        .body(FILING)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(status, 202, "{body}");
    let id = body["transfer"].as_str().unwrap().to_owned();
    assert!(id.starts_with("internet:"), "{body}");

    let page = |who: Option<String>, id: String, accept: &'static str| {
        let (http, url) = (http.clone(), format!("{base}/.tianping/transfers/{id}"));
        async move {
            let mut r = http.get(url).header("accept", accept);
            if let Some(w) = who {
                r = r.bearer_auth(w);
            }
            r.send().await.unwrap()
        }
    };
    let json_of = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(json!(text)),
        )
    };

    // its submitter sees it as the sender keeps it
    let (status, v) =
        json_of(page(Some(litigant.clone()), id.clone(), "application/json").await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["transfer"], id.as_str(), "{v}");
    assert_eq!(v["flow"], "online-filing", "{v}");
    assert_eq!(v["kind"], "json", "{v}");
    assert_eq!(v["submitter"], "p-litigant-0001", "{v}");
    assert_eq!(v["to"], "private", "{v}");
    assert!(
        ["spooled", "sent", "retained"].contains(&v["state"].as_str().unwrap()),
        "{v}"
    );

    // then, once the reply flow has brought it, delivered with the receipt
    let delivered = loop {
        let (status, v) =
            json_of(page(Some(litigant.clone()), id.clone(), "application/json").await).await;
        assert_eq!(status, 200, "{v}");
        if v["delivered"] == true {
            break v;
        }
        assert!(Instant::now() < by, "never delivered: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        ["sent", "retained"].contains(&delivered["state"].as_str().unwrap()),
        "{delivered}"
    );
    let receipts = delivered["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 1, "{delivered}");
    assert_eq!(receipts[0]["transfer"], id.as_str(), "{delivered}");
    assert_eq!(receipts[0]["from"], "private", "{delivered}");
    // the receipt's signed bytes verify, name the filing and come from the private receiver
    let bytes: Vec<u8> = {
        let h = receipts[0]["bytes"].as_str().unwrap();
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    };
    let receipt = tianping_crossdomain::Receipt::decode(&bytes).unwrap();
    assert_eq!(receipt.transfer_id, id);
    assert_eq!(receipt.kind, tianping_crossdomain::ReceiptKind::Delivery);
    assert_eq!(receipt.service, "filing-intake");
    let (cert, _) = dir.node(&zone("private"), Component::ExchangeReceiver);
    let leaf = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
    assert_eq!(
        receipt.signer,
        tianping_certs::public_key_of(&leaf[0]).unwrap()
    );

    // another signed-in person gets what an unknown id gets
    let other = token("p-litigant-0002");
    let (theirs, mut t_body) =
        json_of(page(Some(other.clone()), id.clone(), "application/json").await).await;
    let (unknown, mut u_body) = json_of(
        page(
            Some(other.clone()),
            "internet:999999".into(),
            "application/json",
        )
        .await,
    )
    .await;
    assert_eq!((theirs, unknown), (404, 404), "{t_body} {u_body}");
    t_body.as_object_mut().unwrap().remove("request_id");
    u_body.as_object_mut().unwrap().remove("request_id");
    assert_eq!(t_body, u_body);
    assert!(t_body.to_string().find("p-litigant-0001").is_none());

    // no credential: 401 with a challenge; a browser is sent to sign in, back to the page
    let r = page(None, id.clone(), "application/json").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    let r = page(None, id.clone(), "text/html").await;
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("https://{}:{}/", zl.idp_host, idp_addr.port())),
        "{location}"
    );

    drop(http);
    gateway.stop();
    drop((internet_tx, private_tx, internet_rx, private_rx));
    idp.stop();
}
