//! The control socket's callers and bodies: credentials turned into identities by the owner's
//! verifier (401 without one, 403 naming a missing role, open paths without one), a peer of
//! another uid refused before anything is read, per-endpoint body limits (413 at once, one byte
//! over), and bodies streamed both ways.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use http_body_util::BodyExt;
use tianping_certs::{CertKind, CourtIdentity, LeafRequest, identity_of};
use tianping_core::{Role, UnixTime};
use tianping_net::testing::StaticVerifier;
use tianping_net::{
    Body, Caller, ControlBody, ControlOptions, control_request, control_send, full,
    serve_control_with,
};

fn identity(pki: &Pki, name: &str, roles: &[&str]) -> CourtIdentity {
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let mut req = LeafRequest::new(CertKind::Client, name);
    req.subject = Some("u-2001".parse().unwrap());
    req.court = Some("bj.01".parse().unwrap());
    req.roles = roles.iter().map(|r| r.parse().unwrap()).collect();
    identity_of(&pki.zone.issue(&req, now).unwrap().leaf_der).unwrap()
}

/// Answers `/status` to anyone, `/audit` to auditors, and names the caller elsewhere.
async fn handler(req: http::Request<Body>) -> http::Response<tianping_net::ResponseBody> {
    let caller = req.extensions().get::<Caller>().cloned().unwrap();
    let auditor: Role = "auditor".parse().unwrap();
    let leaked = req.headers().contains_key(http::header::AUTHORIZATION)
        || req.headers().contains_key(tianping_net::ASSERTION_HEADER);
    let name = caller.identity.as_ref().map_or("-", |i| i.name.as_str());
    match req.uri().path() {
        "/status" => http::Response::new(full(format!("up {name}"))),
        "/audit" => match caller.require(&auditor) {
            Ok(id) => http::Response::new(full(format!("audit for {}", id.name))),
            Err(refusal) => refusal,
        },
        _ => http::Response::new(full(format!(
            "{name} uid={} pid={} leaked={leaked}",
            caller.uid,
            caller.pid.unwrap_or(-1)
        ))),
    }
}

async fn send(socket: &std::path::Path, path: &str, header: Option<(&str, &str)>) -> (u16, String) {
    control_get(socket, path, header.as_slice()).await
}

#[tokio::test]
async fn credentials_become_identities_or_401_and_require_names_the_role() {
    let pki = Pki::new();
    let verifier = StaticVerifier::new()
        .bearer("judge-token", identity(&pki, "Auditor Wu", &["auditor"]))
        .assertion("gateway-said-clerk", identity(&pki, "Clerk Ma", &["clerk"]));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a-audit.sock");
    let options = ControlOptions::new(&[]).verified(Arc::new(verifier), ["/status"]);
    let ctl = serve_control_with(&socket, options, handler).await.unwrap();

    // Missing, bad, malformed: 401 before the handler runs.
    let (status, body) = send(&socket, "/who", None).await;
    assert_eq!((status, body.as_str()), (401, "no credential presented"));
    let bad = Some(("authorization", "Bearer forged"));
    let (status, body) = send(&socket, "/who", bad).await;
    assert_eq!(
        (status, body.as_str()),
        (401, "credential refused: unknown token")
    );
    let basic = Some(("authorization", "Basic anVkZ2U6eA=="));
    assert_eq!(send(&socket, "/who", basic).await.0, 401);
    let bad_assertion = Some(("tianping-assertion", "judge-token"));
    assert_eq!(send(&socket, "/who", bad_assertion).await.0, 401);

    // Valid: the identity, the peer's uid and pid, and no credential header left to log.
    let good = Some(("authorization", "Bearer judge-token"));
    let (status, body) = send(&socket, "/who", good).await;
    assert_eq!(status, 200);
    let uid = std::fs::metadata(dir.path()).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    assert_eq!(
        body,
        format!(
            "Auditor Wu uid={} pid={} leaked=false",
            uid.unwrap(),
            std::process::id()
        )
    );
    assert_eq!(
        send(&socket, "/audit", good).await,
        (200, "audit for Auditor Wu".into())
    );

    // Known but lacking the role: 403 naming it.
    let clerk = Some(("tianping-assertion", "gateway-said-clerk"));
    assert_eq!(
        send(&socket, "/audit", clerk).await,
        (403, "role `auditor` required".into())
    );
    // An open path needs none; a credential there is still read.
    assert_eq!(send(&socket, "/status", None).await, (200, "up -".into()));
    assert_eq!(
        send(&socket, "/status", good).await,
        (200, "up Auditor Wu".into())
    );
    // Open is by normalized path: a detour to a closed one is not open.
    assert_eq!(send(&socket, "/status/../who", None).await.0, 401);
    ctl.shutdown().await;
}

#[tokio::test]
async fn a_peer_of_another_uid_is_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a-ctl.sock");
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let handler = move |_req: http::Request<Body>| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { http::Response::new(full("no")) }
    };
    let options = ControlOptions::new(&[4_000_000_000]);
    let ctl = serve_control_with(&socket, options, handler).await.unwrap();
    let out = control_raw(
        &socket,
        b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(out, "", "closed without an answer");
    assert!(control_request(&socket, "GET", "/", "").await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(ctl.metrics().refusals("peer_uid"), 2);
    assert_eq!(ctl.metrics().requests(), 0);
    ctl.shutdown().await;
}

/// `/small` keeps the default limit; `/big/<n>` sets `n`; each answers the SHA-256 of the body.
async fn hashing(mut req: http::Request<Body>) -> http::Response<tianping_net::ResponseBody> {
    if let Some(n) = req.uri().path().strip_prefix("/big/") {
        let n: u64 = n.parse().unwrap();
        assert_eq!(req.body_mut().set_limit(n), n);
    }
    let mut body = req.into_body();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    ctx.update(d);
                    len += d.len();
                }
            }
            Err(e) => {
                let mut r = http::Response::new(full(e.to_string()));
                *r.status_mut() = http::StatusCode::from_u16(e.status()).unwrap();
                return r;
            }
        }
    }
    http::Response::new(full(format!("{len} {}", hex(ctx.finish().as_ref()))))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

async fn post(socket: &std::path::Path, path: &str, body: ControlBody) -> (u16, String) {
    let req = http::Request::post(path).body(body).unwrap();
    let resp = control_send(socket, req, tianping_net::CONTROL_TIMEOUT)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let close = resp
        .headers()
        .get("connection")
        .map(|v| v.as_bytes().to_vec());
    let body = resp.into_body().bytes().await.unwrap();
    if status == 413 {
        assert_eq!(
            close.as_deref(),
            Some(&b"close"[..]),
            "413 ends the connection"
        );
    }
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn endpoint_body_limits_refuse_one_byte_over_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a-ctl.sock");
    let ctl = serve_control_with(&socket, ControlOptions::new(&[]), hashing)
        .await
        .unwrap();
    let limit = 64 * 1024;
    let exact = vec![7u8; limit];
    let over = vec![7u8; limit + 1];
    let want = format!("{limit} {}", sha256_hex(&exact));
    assert_eq!(
        post(&socket, "/small", ControlBody::bytes(exact.clone())).await,
        (200, want)
    );
    assert_eq!(
        post(&socket, "/small", ControlBody::bytes(over.clone()))
            .await
            .0,
        413
    );
    // Without a declared length (chunked), refused as the byte over arrives.
    let reader = ControlBody::reader(std::io::Cursor::new(over.clone()), None);
    assert_eq!(post(&socket, "/small", reader).await.0, 413);
    // An endpoint with its own limit: exactly it passes, one byte over is refused.
    let n = 3 * 1024 * 1024 + 5;
    let data: Vec<u8> = (0..n + 1).map(|i| u8::try_from(i % 251).unwrap()).collect();
    let want = format!("{n} {}", sha256_hex(&data[..n]));
    let path = format!("/big/{n}");
    let body = ControlBody::reader(std::io::Cursor::new(data[..n].to_vec()), None);
    assert_eq!(post(&socket, &path, body).await, (200, want));
    let body = ControlBody::reader(std::io::Cursor::new(data.clone()), Some(n as u64 + 1));
    assert_eq!(post(&socket, &path, body).await.0, 413);
    ctl.shutdown().await;
}

#[tokio::test]
async fn bodies_stream_both_ways_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a-ctl.sock");
    // Echoes the request body back as it streams, the limit raised for it.
    let echo = |mut req: http::Request<Body>| async move {
        req.body_mut().set_limit(u64::MAX);
        let body = req
            .into_body()
            .map_err(|e| -> tianping_net::BoxError { Box::new(e) });
        http::Response::new(http_body_util::combinators::BoxBody::new(body))
    };
    let ctl = serve_control_with(&socket, ControlOptions::new(&[]), echo)
        .await
        .unwrap();
    let file = dir.path().join("payload");
    let data: Vec<u8> = (0..20_000_000u32)
        .map(|i| u8::try_from(i.wrapping_mul(2_654_435_761) >> 24).unwrap())
        .collect();
    std::fs::write(&file, &data).unwrap();
    let req = http::Request::post("/echo")
        .body(ControlBody::file(&file).await.unwrap())
        .unwrap();
    let resp = control_send(&socket, req, tianping_net::CONTROL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let (mut len, mut frames) = (0, 0);
    while let Some(f) = body.frame().await {
        let f = f.unwrap();
        let d = f.data_ref().unwrap();
        ctx.update(d);
        len += d.len();
        frames += 1;
    }
    assert_eq!(len, data.len());
    assert!(frames > 1, "streamed in pieces");
    assert_eq!(hex(ctx.finish().as_ref()), sha256_hex(&data));
    // The small client still works over the same socket.
    let (status, _) = control_request(&socket, "POST", "/echo", "abc")
        .await
        .unwrap();
    assert_eq!(status, 200);
    ctl.shutdown().await;
}
