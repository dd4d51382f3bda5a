//! Per-request body limits on a TLS listener: a route raises the small default after routing
//! (up to the listener's ceiling); one byte over either is 413, on HTTP/1.1, HTTP/2 and HTTP/3.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Buf;
use common::*;
use tianping_certs::ClientAuth;
use tianping_net::{Body, ResponseBody, full, serve_tls};

const DEFAULT: u64 = 64 * 1024;
const ROUTE: u64 = 1024 * 1024;

/// `/upload` raises its limit to [`ROUTE`]; every other path keeps the default. Answers the
/// length read.
async fn routed(mut req: http::Request<Body>) -> http::Response<ResponseBody> {
    if req.uri().path() == "/upload" {
        assert_eq!(req.body_mut().set_limit(ROUTE), ROUTE);
    }
    // Above the ceiling is clamped to it.
    if req.uri().path() == "/greedy" {
        assert_eq!(req.body_mut().set_limit(u64::MAX), 2 * ROUTE);
    }
    match req.into_body().bytes().await {
        Ok(b) => http::Response::new(full(b.len().to_string())),
        Err(e) => {
            let mut r = http::Response::new(full(e.to_string()));
            *r.status_mut() = http::StatusCode::from_u16(e.status()).unwrap();
            r
        }
    }
}

async fn h3_post(pki: &Pki, addr: SocketAddr, path: &str, len: u64) -> u16 {
    let mut h3 = H3Client::connect(pki, addr).await;
    let req = http::Request::post(format!("https://{HOST}{path}"))
        .header(http::header::CONTENT_LENGTH, len)
        .body(())
        .unwrap();
    let mut stream = h3.send.send_request(req).await.unwrap();
    // The answer may come before the body is sent (a declared length over the limit).
    let data = bytes::Bytes::from(vec![1u8; usize::try_from(len).unwrap()]);
    let _ = stream.send_data(data).await;
    let _ = stream.finish().await;
    let resp = stream.recv_response().await.unwrap();
    while let Ok(Some(mut chunk)) = stream.recv_data().await {
        chunk.advance(chunk.remaining());
    }
    h3.close();
    resp.status().as_u16()
}

#[tokio::test]
async fn a_route_raises_its_limit_and_one_byte_over_is_413_on_every_protocol() {
    let pki = Pki::new();
    let mut options = options();
    options.limits.head.max_body = DEFAULT;
    options.limits.body_ceiling = 2 * ROUTE;
    let tls = pki.server_config(ClientAuth::None);
    let server = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(tls),
        options,
        routed,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let cases = [
        ("/upload", ROUTE, 200),
        ("/upload", ROUTE + 1, 413),
        ("/other", DEFAULT, 200),
        ("/other", DEFAULT + 1, 413),
        ("/greedy", 2 * ROUTE, 200),
        ("/greedy", 2 * ROUTE + 1, 413),
    ];
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(pki.client_config(false, &[alpn]))
            .resolve(HOST, addr)
            .build()
            .unwrap();
        for (path, len, want) in cases {
            let url = format!("https://{HOST}:{}{path}", addr.port());
            let body = vec![1u8; usize::try_from(len).unwrap()];
            let status = match client.post(&url).body(body).send().await {
                Ok(r) => r.status().as_u16(),
                // HTTP/1.1: the connection may close before the client has sent it all.
                Err(_) if want == 413 && alpn == b"http/1.1" => 413,
                Err(e) => panic!("{path} {len}: {e}"),
            };
            assert_eq!(status, want, "{alpn:?} {path} {len}");
        }
    }
    for (path, len, want) in cases {
        assert_eq!(
            h3_post(&pki, addr, path, len).await,
            want,
            "h3 {path} {len}"
        );
    }
    // Above the ceiling, HTTP/1.1 is refused by the framing check from the declared length.
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n",
        2 * ROUTE + 1
    );
    let out = raw(&pki, addr, head.as_bytes()).await;
    assert_eq!(statuses(&out), vec![413], "{out}");
    server.shutdown().await;
}

/// A `GET` the client ended with its headers reaches the handler with a body known to be
/// empty (`is_end_stream`, an exact size of 0) on every protocol, so a proxy forwards it
/// with end-of-stream; a `POST` with a body does not.
#[tokio::test]
async fn an_ended_get_has_a_body_known_to_be_empty_on_every_protocol() {
    use hyper::body::Body as _;
    async fn ends(req: http::Request<Body>) -> http::Response<ResponseBody> {
        let b = req.body();
        let known = b.is_end_stream() && b.size_hint().exact() == Some(0);
        http::Response::new(full(if known { "empty" } else { "open" }))
    }
    let pki = Pki::new();
    let server = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(pki.server_config(ClientAuth::None)),
        options(),
        ends,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(pki.client_config(false, &[alpn]))
            .resolve(HOST, addr)
            .build()
            .unwrap();
        let url = format!("https://{HOST}:{}/x", addr.port());
        let got = client.get(&url).send().await.unwrap().text().await.unwrap();
        assert_eq!(got, "empty", "{alpn:?}");
    }
    let authority = format!("{HOST}:{}", addr.port());
    assert_eq!(
        h3_request_once(&pki, addr, &authority, "/x", &[]).await,
        (200, "empty".to_owned())
    );
    // a body that is sent is left to stream
    let mut h3 = H3Client::connect(&pki, addr).await;
    let req = http::Request::post(format!("https://{authority}/x"))
        .body(())
        .unwrap();
    let mut stream = h3.send.send_request(req).await.unwrap();
    stream
        .send_data(bytes::Bytes::from_static(b"abc"))
        .await
        .unwrap();
    stream.finish().await.unwrap();
    let resp = stream.recv_response().await.unwrap();
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    h3.close();
    assert_eq!(
        (resp.status().as_u16(), body.as_slice()),
        (200, &b"open"[..])
    );
    server.shutdown().await;
}
