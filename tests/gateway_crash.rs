//! `tianping gateway` SIGKILLed under load: four clients keep sending over HTTP/2; after N
//! answers the control socket says how many audit events are durable, and the gateway is killed
//! while the clients go on. Its log then verifies, holds every event that was durable, and for
//! each client is a gap-free prefix of what it sent (requests are queued in the log in the
//! order they are decided, before they are answered, and committed in groups).

mod common;
#[path = "common/gateway.rs"]
mod gw;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tianping_core::{Component, DataDir, ZoneName};

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

const CLIENTS: u64 = 4;
const ANSWERS: u64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_under_load_leaves_a_verified_gap_free_prefix_with_every_durable_event() {
    let tmp = tempfile::tempdir().unwrap();
    let data = private_zone(tmp.path(), POLICY);
    let dir = DataDir::new(&data);
    let zone: ZoneName = "private".parse().unwrap();
    bind_service(&dir.fabric(), "https://localhost:1/");
    let (idp, _, _) = start(
        &data,
        &["idp", "serve", "--zone", "private"],
        &zone,
        Component::Idp,
    );
    let (mut gateway, gw_addr, _) = start(
        &data,
        &["gateway", "--zone", "private"],
        &zone,
        Component::Gateway,
    );
    let fabric = tianping_core::Fabric::load(&dir.fabric()).unwrap();
    let host = fabric.zone(&zone).unwrap().gateway_host.clone();
    let trust = std::fs::read(dir.zone_trust_bundle(&zone)).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .http2_prior_knowledge()
        .resolve(&host, gw_addr);
    for cert in reqwest::Certificate::from_pem_bundle(&trust).unwrap() {
        b = b.add_root_certificate(cert);
    }
    let http = b.build().unwrap();

    // each client asks for /courts/bj.01/cases/<client>-<n>, n = 0, 1, 2, ... (each a 401:
    // no credential; each decided and audited)
    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reached = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, answered, stop, reached) = (
            http.clone(),
            Arc::clone(&answered),
            Arc::clone(&stop),
            Arc::clone(&reached),
        );
        let base = format!("https://{host}:{}/courts/bj.01/cases", gw_addr.port());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                match http.get(format!("{base}/{c}-{n}")).send().await {
                    Ok(r) => assert_eq!(r.status(), 401),
                    Err(_) => break, // the gateway is gone
                }
                n += 1;
                if answered.fetch_add(1, Ordering::SeqCst) + 1 == ANSWERS {
                    reached.notify_one();
                }
            }
            n
        }));
    }
    tokio::time::timeout(std::time::Duration::from_secs(120), reached.notified())
        .await
        .unwrap();
    // the kill comes once at least half of those answers' events are durable (the clients go
    // on meanwhile): how far group commit lags behind the answers depends on the disk's fsync
    // time, so the test waits on the count the gateway reports, not on a number of answers
    let socket = dir.socket(&zone, Component::Gateway);
    let durable = loop {
        let (code, body) = tianping_net::control_request(&socket, "GET", "/status", "")
            .await
            .unwrap();
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let durable = status["audit_durable"].as_u64().unwrap();
        if durable >= ANSWERS / 2 {
            break durable;
        }
        assert!(
            !tasks.iter().all(tokio::task::JoinHandle::is_finished),
            "every client stopped with {durable} events durable"
        );
        // a poll interval, not a wait standing in for the condition
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    gateway.0.kill().unwrap();
    let _ = gateway.0.wait();
    stop.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await.unwrap());
    }
    idp.stop();

    let log_dir = dir.audit_log(&zone, Component::Gateway);
    ok(&run(
        &data,
        &["audit", "verify", "--log", log_dir.to_str().unwrap()],
        "",
    ));
    let log = tianping_audit::AuditLog::open(&log_dir).unwrap();
    assert!(
        log.size() >= durable,
        "{} entries, {durable} were durable",
        log.size()
    );
    let mut next = vec![0u64; usize::try_from(CLIENTS).unwrap()];
    let mut requests = 0u64;
    for i in 0..log.size() {
        let e = log.get(i).unwrap().unwrap().event;
        if e.action != "request" {
            continue;
        }
        requests += 1;
        assert_eq!(e.outcome, "deny");
        assert!(e.policy_hash.is_some());
        let (c, n) = e
            .path
            .rsplit('/')
            .next()
            .and_then(|s| s.split_once('-'))
            .map(|(c, n)| (c.parse::<usize>().unwrap(), n.parse::<u64>().unwrap()))
            .unwrap();
        let want = next.get_mut(c).unwrap();
        assert_eq!(n, *want, "client {c}: a gap or a reordering at entry {i}");
        *want += 1;
    }
    // nothing decided that was not sent: at most the one request in flight per client
    for (c, (logged, sent)) in next.iter().zip(&sent).enumerate() {
        assert!(
            *logged <= sent + 1,
            "client {c}: {logged} logged, {sent} answered"
        );
    }
    // at least ANSWERS / 2 events were durable, and a gateway logs only a handful at start: the
    // log is not close to empty
    assert!(
        requests >= ANSWERS / 4,
        "{requests} requests logged, {durable} events durable"
    );
    drop(gateway);
}
