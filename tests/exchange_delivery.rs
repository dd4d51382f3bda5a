//! The receiving side as processes: bundles injected with `submit-raw`, sent by `tianping
//! exchange send`, checked again by `tianping exchange receive` against its zone's own policy
//! copy, and delivered to the flow's service binding: a folder (no partial file ever visible),
//! an HTTPS service that checks the `delivery` token and the `Tianping-*` headers, down for a
//! while and then back (delivered once). Each refusal is audited by the receiver and nothing
//! of it is delivered.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

#[path = "common/delivery.rs"]
mod delivery;
#[path = "common/exchange.rs"]
mod exchange;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use delivery::{
    FLOW, Receiver, SERVICE, add_flow, audit_events, bind, manifest, of_action, signed,
};
use exchange::{Daemon, Setup, deadline, parse_report, sender, setup, spool_bytes};
use tianping_core::{Component, Listener, Role, ZoneName};

/// Starts the receiver, points the link at the port it bound, starts the sender.
fn start(s: &Setup, by: Instant) -> (Receiver, Daemon) {
    let r = Receiver::start(s, by);
    let published =
        tianping_core::published_addrs(&s.dir, &s.link.to, Component::ExchangeReceiver).unwrap();
    let addr: SocketAddr = published[&Listener::Link {
        from: s.link.from.clone(),
    }];
    exchange::set_link_addresses(&s.dir.fabric(), &addr.to_string());
    let snd = sender(s, &[], by);
    (r, snd)
}

#[test]
fn a_folder_gets_whole_files_only_and_every_refusal_is_audited_with_nothing_delivered() {
    let s = setup("127.0.0.1:0");
    add_flow(&s);
    let (dir, link) = (&s.dir, &s.link);
    let from = link.from.clone();
    let text = b"Notice of hearing\nThe court sits on 3 March.\n".repeat(40);
    let good = signed(dir, &from, manifest(link, FLOW, 1), &text);

    let mut unknown = manifest(link, "evidence", 2);
    unknown.flow = "evidence".into();
    let unknown = signed(dir, &from, unknown, b"a flow no policy has\n");
    let mut truncated = signed(dir, &from, manifest(link, FLOW, 4), &text);
    truncated.truncate(truncated.len() - 5);
    let mut bad_signature = signed(dir, &from, manifest(link, FLOW, 5), b"forged\n");
    let header_len = u32::from_be_bytes(bad_signature[..4].try_into().unwrap()) as usize;
    bad_signature[4 + header_len - 1] ^= 0x01;
    let mobile: ZoneName = "mobile".parse().unwrap();
    let other_zone = signed(dir, &mobile, manifest(link, FLOW, 6), b"from elsewhere\n");
    let mut litigant = manifest(link, FLOW, 7);
    litigant.submitter.subject = "p-litigant-0001".parse().unwrap();
    litigant.submitter.roles = vec![Role::Litigant];
    let litigant = signed(dir, &from, litigant, b"by a litigant\n");

    let bundles = [
        ("good", &good),
        ("unknown", &unknown),
        ("replayed", &good),
        ("truncated", &truncated),
        ("bad-signature", &bad_signature),
        ("other-zone", &other_zone),
        ("litigant", &litigant),
    ];
    let ids: Vec<u64> = bundles
        .iter()
        .map(|(name, b)| spool_bytes(&s, name, b))
        .collect();
    assert_eq!(ids, (1..=7).collect::<Vec<u64>>());

    // watch the delivery folder the whole time: a file is only ever seen whole
    let folder = s.dir.delivery(&link.to, SERVICE);
    std::fs::create_dir_all(&folder).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let watcher = {
        let (folder, stop, seen, want) = (
            folder.clone(),
            Arc::clone(&stop),
            Arc::clone(&seen),
            text.len(),
        );
        std::thread::spawn(move || {
            let mut polls = 0u64;
            while !stop.load(Ordering::Relaxed) {
                polls += 1;
                for entry in std::fs::read_dir(&folder).unwrap() {
                    let entry = entry.unwrap();
                    if !entry.file_type().unwrap().is_file() {
                        continue;
                    }
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let bytes = std::fs::read(entry.path()).unwrap();
                    if name == "internet-1.text" {
                        assert_eq!(bytes.len(), want, "a partial file was visible");
                    } else if name == "internet-1.text.manifest.json" {
                        serde_json::from_slice::<serde_json::Value>(&bytes)
                            .expect("a partial manifest was visible");
                    } else {
                        panic!("`{name}` appeared in the delivery folder");
                    }
                    seen.lock().unwrap().insert(name, bytes.len());
                }
            }
            polls
        })
    };

    let by = deadline(120);
    let (mut r, snd) = start(&s, by);
    let mut link_ended = BTreeSet::new();
    let (mut delivered, mut refused) = (Vec::new(), Vec::new());
    while link_ended.len() < 7 || delivered.len() + refused.len() < 4 {
        let line = r.expect_line(by);
        if let Some(rep) = parse_report(&line) {
            link_ended.insert(rep.transfer);
        } else if line.contains(" delivered to ") {
            delivered.push(line);
        } else if line.contains(" refused: ") {
            refused.push(line);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let polls = watcher.join().unwrap();
    drop(snd);
    r.kill();

    assert!(polls > 0);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(delivered[0].starts_with("transfer internet:1 delivered to bank-gateway"));
    assert_eq!(refused.len(), 3, "{refused:?}");
    let names: BTreeSet<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "internet-1.text".to_owned(),
            "internet-1.text.manifest.json".to_owned()
        ])
    );
    assert_eq!(std::fs::read(folder.join("internet-1.text")).unwrap(), text);
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(folder.join("internet-1.text.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["transfer"], "internet:1");
    assert_eq!(m["flow"], FLOW);
    assert_eq!(m["submitter"], "p-lawyer-0042");

    // the receiver's log: four bundles arrived whole, one delivered, six refused with reasons
    let events = audit_events(&s);
    let received = of_action(&events, "transfer.received");
    // the sender lets transfers take turns, so they complete in any order
    let mut got: Vec<&str> = received
        .iter()
        .map(|e| e["transfer_id"].as_str().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        ["internet:1", "internet:1", "internet:2", "internet:7"]
    );
    let done = of_action(&events, "transfer.delivered");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["transfer_id"], "internet:1");
    assert_eq!(done[0]["attributes"]["target"], "folder");
    assert_eq!(done[0]["attributes"]["service"], SERVICE);
    assert_eq!(done[0]["outcome"], "ok");
    let refusals = of_action(&events, "transfer.refused");
    let reasons: Vec<String> = refusals
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(refusals.len(), 6, "{reasons:?}");
    for want in [
        "no flow `evidence`",
        "replayed",
        "signature",
        "untrusted",
        "submitter",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "no refusal for `{want}`: {reasons:?}"
        );
    }
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("payload") || r.contains("bytes")),
        "no refusal of the truncated bundle: {reasons:?}"
    );
    assert!(refusals.iter().all(|e| e["outcome"] == "fail"));
    // refused on the link after its header checked: still named by its transfer id
    assert!(
        refusals
            .iter()
            .any(|e| e["transfer_id"] == "internet:4" && e["attributes"]["link_transfer"] == "4"),
        "{refusals:?}"
    );
}

/// What the test service saw: each request's headers and body.
type Seen = Arc<Mutex<Vec<(BTreeMap<String, String>, Vec<u8>)>>>;

async fn serve_intake(s: &Setup, addr: SocketAddr, seen: Seen) -> tianping_net::ServerHandle {
    let zone = s.link.to.clone();
    let (pem, key) = s.dir.tls(&zone, Component::Gateway);
    let tls = tianping_certs::ServerTlsBuilder::new(pem, key)
        .build()
        .unwrap();
    let trust = tianping_certs::TrustStore::from_pem(
        &std::fs::read(s.dir.zone_trust_bundle(&zone)).unwrap(),
        &[],
    )
    .unwrap();
    let verifier = Arc::new(
        tianping_certs::TokenVerifier::new(
            &trust,
            &zone,
            SERVICE,
            tianping_certs::TokenKind::Delivery,
        )
        .unwrap(),
    );
    let handler = move |req: http::Request<tianping_net::Body>| {
        let (verifier, seen) = (Arc::clone(&verifier), Arc::clone(&seen));
        async move {
            let headers: BTreeMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = req.into_body().bytes().await.unwrap().to_vec();
            let answer = |code: u16| {
                let mut r = http::Response::new(tianping_net::full(""));
                *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
                r
            };
            let Some(token) = headers.get(tianping_certs::DELIVERY_TOKEN_HEADER) else {
                return answer(401);
            };
            let Ok(v) = verifier.verify(token.as_bytes(), &tianping_core::SystemClock) else {
                return answer(401);
            };
            let tianping_certs::TokenClaims::Delivery(d) = v.claims else {
                return answer(401);
            };
            let sha = tianping_crossdomain::sha256(&body);
            if d.content_sha256 != sha
                || Some(&d.transfer) != headers.get("tianping-transfer")
                || d.flow != FLOW
            {
                return answer(403);
            }
            seen.lock().unwrap().push((headers, body));
            answer(200)
        }
    };
    let options = tianping_net::ServerOptions::new(tianping_net::HostSet::new(["127.0.0.1"]));
    tianping_net::serve_tls(addr, Arc::new(tls), options, handler)
        .await
        .unwrap()
}

#[test]
fn an_https_service_down_for_a_while_across_a_receiver_restart_gets_the_transfer_once_with_its_token_and_headers()
 {
    let s = setup("127.0.0.1:0");
    add_flow(&s);
    // a port no one listens on yet
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    bind(
        &s.dir.fabric(),
        SERVICE,
        &format!(
            "url = \"https://127.0.0.1:{port}/intake\"\nca = \"zones/{}/trust.pem\"",
            s.link.to
        ),
    );
    let text = b"Notice of hearing\n".to_vec();
    let bundle = signed(&s.dir, &s.link.from, manifest(&s.link, FLOW, 1), &text);
    spool_bytes(&s, "good", &bundle);

    let by = deadline(120);
    let (mut r, snd) = start(&s, by);
    // the service is down: attempts fail and are retried
    r.line_where(by, |l| l.contains("attempt 2 failed"));
    // and the receiver restarts meanwhile: the queue is on disk
    r.kill();
    let mut r = Receiver::start(&s, by);
    r.line_where(by, |l| l.contains("attempt 3 failed"));
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(serve_intake(
        &s,
        SocketAddr::from(([127, 0, 0, 1], port)),
        Arc::clone(&seen),
    ));
    let line = r.line_where(by, |l| l.contains(" delivered to "));
    drop(snd);
    r.kill();
    rt.block_on(server.shutdown());

    let attempts: u32 = line.rsplit(' ').nth(1).unwrap().parse().unwrap();
    assert!(attempts >= 4, "{line}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "delivered more than once");
    let (headers, body) = &seen[0];
    assert_eq!(body, &text);
    assert_eq!(headers["tianping-transfer"], "internet:1");
    assert_eq!(headers["tianping-flow"], FLOW);
    assert_eq!(headers["tianping-kind"], "text");
    assert_eq!(headers["tianping-source"], "internet");
    assert_eq!(headers["tianping-submitter"], "p-lawyer-0042");
    assert_eq!(
        headers["tianping-content-sha256"],
        tianping_crossdomain::hex(&tianping_crossdomain::sha256(&text))
    );
    assert!(
        headers["tianping-labels"].contains("%E4%BA%AC"),
        "labels percent-encoded"
    );

    let events = audit_events(&s);
    let done = of_action(&events, "transfer.delivered");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["attributes"]["target"], "url");
    assert_eq!(done[0]["attributes"]["attempts"], attempts.to_string());
}

#[test]
fn a_component_socket_gets_the_transfer_with_the_receivers_node_token() {
    let s = setup("127.0.0.1:0");
    add_flow(&s);
    let zone = s.link.to.clone();
    bind(&s.dir.fabric(), SERVICE, "component = \"idp\"");
    let text = b"a directory notice\n".to_vec();
    let bundle = signed(&s.dir, &s.link.from, manifest(&s.link, FLOW, 1), &text);
    spool_bytes(&s, "good", &bundle);

    // the zone's IdP socket, served by the test: node tokens of the zone for `idp` only
    let trust = tianping_certs::TrustStore::from_pem(
        &std::fs::read(s.dir.zone_trust_bundle(&zone)).unwrap(),
        &[],
    )
    .unwrap();
    let nodes =
        tianping_certs::TokenVerifier::new(&trust, &zone, "idp", tianping_certs::TokenKind::Node)
            .unwrap();
    let callers = tianping_net::NodeCallers::new(nodes).unwrap();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = Arc::clone(&seen);
        move |req: http::Request<tianping_net::Body>| {
            let seen = Arc::clone(&seen);
            async move {
                let caller = req.extensions().get::<tianping_net::Caller>().cloned();
                let who = caller
                    .and_then(|c| c.identity)
                    .map(|i| i.name.clone())
                    .unwrap_or_default();
                let mut headers: BTreeMap<String, String> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                headers.insert(":path".into(), req.uri().path().to_owned());
                headers.insert(":caller".into(), who);
                let body = req.into_body().bytes().await.unwrap().to_vec();
                seen.lock().unwrap().push((headers, body));
                http::Response::new(tianping_net::full("{}"))
            }
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let socket = s.dir.socket(&zone, Component::Idp);
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let ctl = rt.block_on(async {
        let options = tianping_net::ControlOptions::new(&[])
            .verified(Arc::new(callers), Vec::<String>::new());
        tianping_net::serve_control_with(&socket, options, handler)
            .await
            .unwrap()
    });

    let by = deadline(120);
    let (mut r, snd) = start(&s, by);
    let line = r.line_where(by, |l| l.contains(" delivered to "));
    drop(snd);
    r.kill();
    drop(ctl);
    assert!(line.ends_with("after 1 attempts"), "{line}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(body, &text);
    assert_eq!(headers[":path"], "/exchange/v1/deliver");
    assert!(
        headers[":caller"].contains("exchange-receiver"),
        "{:?}",
        headers[":caller"]
    );
    assert_eq!(headers["tianping-transfer"], "internet:1");
    let events = audit_events(&s);
    let done = of_action(&events, "transfer.delivered");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["attributes"]["target"], "component");

    // the receipts command asks a running receiver: none kept here, and a bad id is refused
    let r = Receiver::start(&s, by);
    let out = exchange::tianping(&s.data)
        .args([
            "exchange",
            "receipts",
            "--zone",
            zone.as_str(),
            "--transfer",
            "internet:1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let bad = exchange::tianping(&s.data)
        .args([
            "exchange",
            "receipts",
            "--zone",
            zone.as_str(),
            "--correlation",
            "a&b",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    r.kill();
}
