//! `tianping up --demo` runs the policy's sample case services: on a port-0 fabric each is bound
//! by URL in `fabric.toml` on the first run, runs as a supervised child and answers its health
//! check; `filing-intake` refuses a request without a token, takes a delivery of a node of its
//! zone (stored once, refused when the body is not the token's), and lists it to a person the
//! zone's gateway asserts, named on its page. The people who sign in with a certificate have one; an
//! enforcement inquiry delivered to `bank-gateway` is answered by the bank's partner through the
//! external gateway, and the answer reaches `enforcement-desk`.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

#[path = "common/exchange.rs"]
mod exchange;

use std::sync::Arc;
use std::time::{Duration, Instant};

use exchange::Daemon;
use tianping_certs::{DeliveryClaims, TokenClaims, TokenSigner, UserClaims};
use tianping_core::{Acr, Clearance, Clock as _, Component, DataDir, Role, SystemClock, ZoneName};

/// A token signer with the node key of `component` of `zone`.
fn signer(dir: &DataDir, zone: &ZoneName, component: Component) -> TokenSigner {
    let (cert, key) = dir.node(zone, component);
    let key_pem = std::fs::read_to_string(key).unwrap();
    let signer = tianping_audit::signer_from_pem(&key_pem).unwrap();
    let chain = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
    TokenSigner::new(Arc::new(signer), &chain).unwrap()
}

fn published(dir: &DataDir, zone: &str, name: &str, listener: &str) -> std::net::SocketAddr {
    let text =
        std::fs::read_to_string(dir.run().join(format!("{zone}-service-{name}.addr"))).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(listener)?.strip_prefix(' '))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn up_demo_runs_the_case_services_which_take_deliveries_and_show_them_to_asserted_people() {
    let s = exchange::setup("127.0.0.1:0");
    let dir = DataDir::new(&s.data);
    let by = Instant::now() + Duration::from_secs(240);
    let mut cmd = exchange::tianping(&s.data);
    cmd.args(["up", "--demo"])
        .env("TIANPING_AUDIT_SHIP_EVERY", "0");
    let mut up = Daemon::spawn("up", cmd);
    let seen = up.until("ready", by);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("demo: the sample case services bound by URL")),
        "{seen:#?}"
    );

    // the people who sign in with a certificate have one, listed with the people
    let people = std::fs::read_to_string(s.data.join("demo-users.txt")).unwrap();
    for (login, zone) in [
        ("officer.zhao", "private"),
        ("clerk.liu", "private"),
        ("assistant.zhang", "private"),
        ("bank.feng", "external"),
        ("auditor.lin", "private"),
        ("sysadmin.qian", "private"),
    ] {
        assert!(
            people.contains(&format!("# cert\t{login}\t{zone}\t")),
            "{people}"
        );
        let key = s.data.join("demo-certs").join(format!("{login}.key"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        let pem = std::fs::read_to_string(key.with_extension("pem")).unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE"));
    }

    // every service the fabric binds is a child of `up`, ready
    let fabric = tianping_core::Fabric::load(&dir.fabric()).unwrap();
    let text = std::fs::read_to_string(dir.fabric()).unwrap();
    assert!(
        text.contains("url = \"https://filing-intake.private.")
            && text.contains("url = \"https://bank-gateway.external."),
        "{text}"
    );
    let board: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.run().join("up.json")).unwrap()).unwrap();
    let services: Vec<&serde_json::Value> = board
        .iter()
        .filter(|r| r["component"] == "service")
        .collect();
    assert!(services.len() >= 5, "{board:#?}");
    assert!(services.iter().all(|r| r["ready"] == true), "{board:#?}");
    assert!(
        services.iter().any(|r| r["service"] == "filing-intake"),
        "{board:#?}"
    );

    let zone: ZoneName = "private".parse().unwrap();
    let host = format!("filing-intake.private.{}", fabric.domain);
    let addr = published(&dir, "private", "filing-intake", "https");
    let admin = published(&dir, "private", "filing-intake", "admin");
    let trust = std::fs::read(dir.zone_trust_bundle(&zone)).unwrap();
    let received = dir.zone(&zone).join("services/filing-intake/received");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .resolve(&host, addr);
        for cert in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
            b = b.add_root_certificate(cert);
        }
        let http = b.build().unwrap();
        let health = reqwest::get(format!("http://{admin}/healthz"))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let base = format!("https://{host}:{}", addr.port());

        // no token: 401 with the reason
        let r = http.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.text().await.unwrap().contains("Tianping-Assertion"));

        // a delivery of the zone's receiver, its body the token's
        let body = br#"{"form":"filing-form","court":"bj.01.03","plaintiff":"p-0202"}"#.to_vec();
        let deliver = |body: Vec<u8>, sha: [u8; 32], transfer: &str| {
            let token = signer(&dir, &zone, Component::ExchangeReceiver)
                .sign(
                    &TokenClaims::Delivery(DeliveryClaims {
                        flow: "online-filing".into(),
                        transfer: transfer.into(),
                        content_sha256: sha,
                    }),
                    "filing-intake",
                    SystemClock.now(),
                    Duration::from_secs(60),
                )
                .unwrap();
            http.post(format!("{base}/"))
                .header("tianping-delivery", token)
                .header("tianping-flow", "online-filing")
                .header("tianping-transfer", transfer)
                .header("tianping-kind", "filing-form")
                .header("tianping-submitter", "p-0202")
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let sha = tianping_crossdomain::sha256(&body);
        let r = deliver(body.clone(), sha, "test:7").await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        // another body under the same token's hash: refused, nothing stored
        let r = deliver(b"other".to_vec(), sha, "test:8").await.unwrap();
        assert_eq!(r.status(), 401);
        let stored: Vec<_> = std::fs::read_dir(&received)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(stored, vec!["test_3a7".to_owned()]);

        let assertion = |component: Component| {
            signer(&dir, &zone, component)
                .sign(
                    &TokenClaims::User(UserClaims {
                        sub: "u-0104".parse().unwrap(),
                        roles: vec![Role::Clerk],
                        court: Some("bj.01.03".parse().unwrap()),
                        acr: Acr::Otp,
                        clearance: Clearance::None,
                    }),
                    "filing-intake",
                    SystemClock.now(),
                    Duration::from_secs(60),
                )
                .unwrap()
        };
        // an assertion not from the gateway: refused
        let r = http
            .get(format!("{base}/"))
            .header("tianping-assertion", assertion(Component::ExchangeReceiver))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // the gateway's: the list, then the item and its payload
        let r = http
            .get(format!("{base}/"))
            .header("tianping-assertion", assertion(Component::Gateway))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let list: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(list["reader"], "u-0104");
        assert_eq!(list["received"][0]["transfer"], "test:7");
        assert_eq!(list["received"][0]["flow"], "online-filing");
        let page = http
            .get(format!("{base}/"))
            .header("tianping-assertion", assertion(Component::Gateway))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("u-0104") && page.contains("test:7"), "{page}");
        let payload = http
            .get(format!("{base}/test%3A7/payload"))
            .header("tianping-assertion", assertion(Component::Gateway))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(payload.as_ref(), body.as_slice());

        // an enforcement inquiry delivered to the bank: the bank answers through the external
        // gateway as its partner, and the answer reaches private's enforcement desk
        let external: ZoneName = "external".parse().unwrap();
        let bank_host = format!("bank-gateway.external.{}", fabric.domain);
        let bank = published(&dir, "external", "bank-gateway", "https");
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .resolve(&bank_host, bank);
        let trust = std::fs::read(dir.zone_trust_bundle(&external)).unwrap();
        for cert in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
            b = b.add_root_certificate(cert);
        }
        let to_bank = b.build().unwrap();
        let notice = r#"{"notice_no":"(2026)京0105执1234-1","bank":"示例银行"}"#
            .as_bytes()
            .to_vec();
        let token = signer(&dir, &external, Component::ExchangeReceiver)
            .sign(
                &TokenClaims::Delivery(DeliveryClaims {
                    flow: "enforcement-inquiry".into(),
                    transfer: "private:41".into(),
                    content_sha256: tianping_crossdomain::sha256(&notice),
                }),
                "bank-gateway",
                SystemClock.now(),
                Duration::from_secs(60),
            )
            .unwrap();
        let r = to_bank
            .post(format!("https://{bank_host}:{}/", bank.port()))
            .header("tianping-delivery", token)
            .header("tianping-flow", "enforcement-inquiry")
            .header("tianping-transfer", "private:41")
            .header("tianping-kind", "json")
            .body(notice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    });
    // a filing submitted on the internet side, by litigant.ma as the internet gateway asserts
    // them to its exchange sender: it crosses the link and arrives at filing-intake
    let internet: ZoneName = "internet".parse().unwrap();
    let filing = serde_json::json!({
        "court": "bj.01.03",
        "case_type": "civil",
        "plaintiffs": [{ "kind": "person", "name": "马先生" }],
        "defendants": [{ "kind": "organisation", "name": "北京示例贸易有限公司" }],
        "claims": "repayment of 120,000 yuan",
        "filed_by": { "role": "litigant", "name": "马先生" },
        "submitted_at": "2026-12-03T10:00:00+08:00"
    })
    .to_string();
    let assertion = signer(&dir, &internet, Component::Gateway)
        .sign(
            &TokenClaims::User(UserClaims {
                sub: "p-0202".parse().unwrap(),
                roles: vec![Role::Litigant],
                court: None,
                acr: Acr::Otp,
                clearance: Clearance::None,
            }),
            "exchange-sender",
            SystemClock.now(),
            Duration::from_secs(60),
        )
        .unwrap();
    let req = http::Request::builder()
        .method("POST")
        .uri("/exchange/v1/submit?flow=online-filing&kind=json&schema=filing-form")
        .header("tianping-assertion", assertion)
        .header("content-type", "application/json")
        .body(tianping_net::ControlBody::bytes(bytes::Bytes::from(filing)))
        .unwrap();
    let socket = dir.socket(&internet, Component::ExchangeSender);
    let (status, answer) = rt.block_on(async {
        let r = tianping_net::control_send(&socket, req, Duration::from_secs(30))
            .await
            .unwrap();
        let status = r.status();
        (status, r.into_body().bytes().await.unwrap())
    });
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let filed: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let filed = filed["transfer"].as_str().unwrap().to_owned();

    // the answer at the enforcement desk, in reply to the inquiry (looked for until `by`)
    let desk = dir
        .zone(&"private".parse().unwrap())
        .join("services/enforcement-desk/received");
    let manifest = loop {
        let found = std::fs::read_dir(&desk).ok().and_then(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .find_map(|e| std::fs::read(e.path().join("manifest.json")).ok())
        });
        if let Some(m) = found {
            break serde_json::from_slice::<serde_json::Value>(&m).unwrap();
        }
        assert!(
            Instant::now() < by,
            "no answer reached the enforcement desk"
        );
        // the interval between two looks at the folder, not a wait standing in for it
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(manifest["flow"], "enforcement-answer");
    assert_eq!(manifest["correlation"], "private:41");
    assert_eq!(manifest["submitter"], "u-0111");
    // the filing at filing-intake (looked for until `by`)
    let intake = received.clone();
    loop {
        let found = std::fs::read_dir(&intake)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                std::fs::read(e.path().join("manifest.json"))
                    .ok()
                    .and_then(|m| serde_json::from_slice::<serde_json::Value>(&m).ok())
                    .is_some_and(|m| m["transfer"] == filed.as_str() && m["submitter"] == "p-0202")
            });
        if found {
            break;
        }
        assert!(
            Instant::now() < by,
            "the filing {filed} did not reach filing-intake"
        );
        // the interval between two looks at the folder, not a wait standing in for it
        std::thread::sleep(Duration::from_millis(100));
    }
    // stopped as Ctrl-C does: `up` stops its children (a SIGKILL of `up` would leave them)
    up.interrupt();
    up.until("stopped", by);
    up.wait_exit();
}
