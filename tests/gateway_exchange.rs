//! An exchange route through `tianping gateway`: in zone `internet`, beside a real `idp serve`
//! and `exchange send`, a lawyer's POST to a route bound to a flow streams into a transfer
//! through the sender's control socket and is answered 202 with its transfer id, the sender
//! having decided on it with the lawyer asserted by the gateway; over the flow's max-size is
//! 413 before anything is sent, and a chunked body over it fails the submission (413, nothing
//! spooled); a person the route does not take is 403 at the gateway. A release is held until
//! two lawyers approve it through `/.tianping/transfers/{id}/approve` (listed for them on
//! `/.tianping/approvals`; its submitter cannot approve their own, nor anyone twice), then
//! released.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::expect_used, reason = "tests fail loudly")]

mod common;
#[path = "common/gateway.rs"]
#[expect(clippy::allow_attributes, reason = "dead_code is per test crate")]
#[allow(dead_code, reason = "this test uses some of the shared helpers")]
mod gw;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tianping_core::{Component, DataDir, UnixTime, ZoneName};

use gw::{Daemon, ok, ports_to_zero, run, start};

/// The test's flow and route, added to the authority's policy and every zone's copy.
const FLOW: &str = "
flow gateway-test internet -> private {
  kinds text
  max-size 4KiB
  submitters lawyer
  deliver filing-intake
  sanitize validate, rebuild
}

route gateway-filing in internet {
  path /test-filings
  methods POST
  to flow gateway-test
  roles lawyer
}

flow gateway-release internet -> private {
  kinds text
  max-size 4KiB
  submitters lawyer
  deliver filing-intake
  sanitize validate, rebuild
  release {
    refuse secret
    approvers 2 of lawyer
  }
}

route gateway-releases in internet {
  path /test-releases
  methods POST
  to flow gateway-release
  roles lawyer
}
";

/// Each link's UDP address on a port the OS gave (nothing need listen there: the sender only
/// spools and sends); each socket is held until every port is drawn, so no two links get the
/// same one.
fn links_on_free_ports(fabric: &std::path::Path) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let mut out = String::new();
    let mut held = Vec::new();
    for line in text.lines() {
        if line.trim_start() == "address = \"127.0.0.1:0\"" {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = socket.local_addr().unwrap().port();
            held.push(socket);
            out.push_str(&format!("address = \"127.0.0.1:{port}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(fabric, out).unwrap();
}

/// `tianping exchange send --zone internet`, ready once it says it is sending.
fn sender(data: &std::path::Path) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tianping"))
        .arg("--data")
        .arg(data)
        .args(["exchange", "send", "--zone", "internet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let d = Daemon(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("the sender exited before it was ready")
            .unwrap();
        if line.starts_with("sending from") {
            break;
        }
    }
    // the rest of its output is not read: keep the pipe drained
    std::thread::spawn(move || for _ in lines {});
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_route_answers_202_with_the_transfer_the_sender_spooled() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&run(&data, &["init"], ""));
    let dir = DataDir::new(&data);
    ports_to_zero(&dir.fabric());
    links_on_free_ports(&dir.fabric());
    let mut files = vec![dir.policy()];
    for z in std::fs::read_dir(data.join("zones")).unwrap() {
        files.push(z.unwrap().path().join("policy.tp"));
    }
    for f in files.into_iter().filter(|f| f.exists()) {
        let mut text = std::fs::read_to_string(&f).unwrap();
        text.push_str(FLOW);
        std::fs::write(&f, text).unwrap();
    }
    let zone: ZoneName = "internet".parse().unwrap();
    ok(&run(&data, &["idp", "init", "--zone", "internet"], ""));
    let (idp, idp_addr, _) = start(
        &data,
        &["idp", "serve", "--zone", "internet"],
        &zone,
        Component::Idp,
    );
    let sender = sender(&data);
    let (gateway, gw_addr, _) = start(
        &data,
        &["gateway", "--zone", "internet"],
        &zone,
        Component::Gateway,
    );
    let fabric = tianping_core::Fabric::load(&dir.fabric()).unwrap();
    let zl = fabric.zone(&zone).unwrap();

    // bearer tokens signed with the IdP's key (the sign-in itself is shown elsewhere)
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
                "aud": "tianping", "client_id": "filing-app", "exp": t + 300, "iat": t,
                "jti": format!("{sub}-1"), "scope": "openid", "sub": sub, "roles": [role],
                "court": "bj.01", "clearance": "none", "acr": "pwd", "amr": ["pwd"],
                "zone": "internet", "auth_time": t,
            }),
        )
        .unwrap()
    };
    let trust = std::fs::read(dir.zone_trust_bundle(&zone)).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(60))
        .resolve(&zl.gateway_host, gw_addr);
    for cert in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
        b = b.add_root_certificate(cert);
    }
    let http = b.build().unwrap();
    let url = format!(
        "https://{}:{}/test-filings",
        zl.gateway_host,
        gw_addr.port()
    );

    let lawyer = token("lawyer-0001", "lawyer");
    let r = http
        .post(&url)
        .bearer_auth(&lawyer)
        .header("content-type", "text/plain; charset=utf-8")
        .body("a filing\n")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(status, 202, "{body}");
    let transfer = body["transfer"].as_str().unwrap().to_owned();
    assert!(!transfer.is_empty(), "{body}");
    assert_eq!(
        body["request_id"].as_str().map(str::len),
        Some(32),
        "{body}"
    );

    // over the flow's max-size: refused at the gateway, nothing sent
    let r = http
        .post(format!("{url}?kind=text"))
        .bearer_auth(&lawyer)
        .body(vec![b'a'; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // the same without a declared length (chunked): cut off at the limit, the submission
    // failed rather than ended early
    let big = tmp.path().join("big.txt");
    std::fs::write(&big, vec![b'a'; 5000]).unwrap();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert"])
        .arg(dir.zone_trust_bundle(&zone))
        .args([
            "--resolve",
            &format!("{}:{}:127.0.0.1", zl.gateway_host, gw_addr.port()),
            "-H",
            &format!("Authorization: Bearer {lawyer}"),
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
        ])
        .arg(format!("@{}", big.display()))
        .args(["-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "413");
    // a kind the flow does not carry: the sender's refusal is the answer
    let r = http
        .post(format!("{url}?kind=pdf"))
        .bearer_auth(&lawyer)
        .body("%PDF-1.7\n")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let refused: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(status.is_client_error(), "{status} {refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not carry this kind")),
        "{refused}"
    );
    // a litigant is not among the route's roles
    let r = http
        .post(&url)
        .bearer_auth(token("litigant-0001", "litigant"))
        .header("content-type", "text/plain")
        .body("x\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // a release waits for two approvers; its submitter is not one of them
    let r = http
        .post(format!(
            "https://{}:{}/test-releases?kind=text",
            zl.gateway_host,
            gw_addr.port()
        ))
        .bearer_auth(&lawyer)
        .body("a release\n")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let held: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(status, 202, "{held}");
    assert_eq!(held["held"], true, "{held}");
    let release = held["transfer"].as_str().unwrap().to_owned();
    let gw_base = format!("https://{}:{}", zl.gateway_host, gw_addr.port());
    let list = |who: String| {
        let (http, url) = (http.clone(), format!("{gw_base}/.tianping/approvals"));
        async move {
            let r = http.get(url).bearer_auth(who).send().await.unwrap();
            assert_eq!(r.status(), 200);
            serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()
        }
    };
    let approve = |who: String| {
        let (http, url) = (
            http.clone(),
            format!("{gw_base}/.tianping/transfers/{release}/approve"),
        );
        async move {
            let r = http.post(url).bearer_auth(who).send().await.unwrap();
            let status = r.status().as_u16();
            (
                status,
                serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap(),
            )
        }
    };
    // the submitter sees nothing to approve, and cannot approve their own
    assert_eq!(list(lawyer.clone()).await["held"], json!([]));
    let (status, body) = approve(lawyer.clone()).await;
    assert_eq!(status, 403, "{body}");
    let second = token("lawyer-0002", "lawyer");
    let listed = list(second.clone()).await;
    assert_eq!(listed["held"][0]["transfer"], release.as_str(), "{listed}");
    let (status, body) = approve(second.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"], false, "{body}");
    // approved once by them: no longer on their list, and a second time counts for nothing
    assert_eq!(list(second.clone()).await["held"], json!([]));
    let (status, body) = approve(second).await;
    assert_ne!(status, 200, "{body}");
    let (status, body) = approve(token("lawyer-0003", "lawyer")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"], true, "{body}");

    drop(http);
    gateway.stop();
    sender.stop();
    idp.stop();
    // the sender decided on it as the lawyer the gateway asserted, and spooled it
    let log =
        tianping_audit::AuditLog::open(&dir.audit_log(&zone, Component::ExchangeSender)).unwrap();
    let events: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .collect();
    let decided: Vec<_> = events
        .iter()
        .filter(|e| e.action == "transfer" && e.transfer_id == transfer)
        .collect();
    assert_eq!(decided.len(), 1, "{events:?}");
    assert_eq!(decided[0].outcome, "allow");
    assert_eq!(decided[0].actor, "lawyer-0001");
    assert_eq!(decided[0].flow, "gateway-test");
    let spooled = events
        .iter()
        .filter(|e| e.action == "transfer" && e.outcome == "allow" && e.flow == "gateway-test")
        .count();
    assert_eq!(
        spooled, 1,
        "the chunked one over the limit did not go: {events:?}"
    );
    // the release: held, approved by the two others, released with their approvals
    let sent = events
        .iter()
        .find(|e| e.action == "transfer" && e.outcome == "allow" && e.transfer_id == release)
        .unwrap();
    assert_eq!(sent.approvals, ["lawyer-0002:lawyer", "lawyer-0003:lawyer"]);
    assert!(
        events
            .iter()
            .any(|e| e.action == "transfer.released" && e.transfer_id == release)
    );
    let approved: Vec<_> = events
        .iter()
        .filter(|e| {
            e.action == "transfer.approved" && e.transfer_id == release && e.outcome == "ok"
        })
        .map(|e| e.actor.as_str())
        .collect();
    assert_eq!(approved, ["lawyer-0002", "lawyer-0003"], "{events:?}");
    // and the gateway's log holds the three decisions
    let log = tianping_audit::AuditLog::open(&dir.audit_log(&zone, Component::Gateway)).unwrap();
    let outcomes: Vec<_> = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "request")
        .map(|e| e.outcome)
        .collect();
    assert_eq!(
        outcomes,
        ["allow", "allow", "allow", "allow", "deny", "allow"]
    );
    let approvals = (0..log.size())
        .map(|i| log.get(i).unwrap().unwrap().event)
        .filter(|e| e.action == "approval")
        .count();
    assert_eq!(approvals, 4, "every approval asked for is audited");
}
