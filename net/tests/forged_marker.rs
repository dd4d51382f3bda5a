//! A client forging the old in-band refusal marker (`tianping-refused: <status>`) never chooses
//! the status it is answered with, on any protocol or on the control socket: HTTP/1.1 refuses the
//! header (400), the others ignore it, and the host check still answers another zone's authority
//! with 421.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Buf;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tianping_certs::ClientAuth;
use tianping_net::{REFUSAL_MARKER, full, serve_control};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The statuses a forged marker once made the server answer with (malformed for 204 with a body,
/// 101 and 103).
const FORGED: [&str; 6] = ["200", "204", "101", "103", "421", "500"];

/// A host of another zone: not served by the listener, so 421 whatever the client claims.
const OTHER_ZONE: &str = "gw.b.tianping.localhost";

#[tokio::test]
async fn http1_refuses_the_forged_marker() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    for status in FORGED {
        for path in ["/", "/admin"] {
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{REFUSAL_MARKER}: {status}\r\nConnection: close\r\n\r\n"
            );
            let out = raw(&pki, server.local_addr(), req.as_bytes()).await;
            assert_eq!(statuses(&out), vec![400], "{status} {path}: {out}");
        }
    }
    // Pipelined behind a good request: the good one is answered, then the forged one refused.
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET / HTTP/1.1\r\nHost: {HOST}\r\n{REFUSAL_MARKER}: 200\r\n\r\n"
    );
    let out = raw(&pki, server.local_addr(), req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200, 400], "{out}");
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {OTHER_ZONE}\r\n{REFUSAL_MARKER}: 200\r\nConnection: close\r\n\r\n"
    );
    let out = raw(&pki, server.local_addr(), req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![400], "{out}");
    let req = format!("GET / HTTP/1.1\r\nHost: {OTHER_ZONE}\r\nConnection: close\r\n\r\n");
    let out = raw(&pki, server.local_addr(), req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![421], "{out}");
    server.shutdown().await;
}

/// One HTTP/2 request over a TLS connection with SNI [`HOST`], to `authority`.
async fn h2_get(
    pki: &Pki,
    addr: SocketAddr,
    authority: &str,
    path: &str,
    forged: &str,
) -> (u16, String) {
    let cfg = Arc::new(pki.client_config(false, &[b"h2"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let drive = tokio::spawn(conn);
    let req = http::Request::get(format!("https://{authority}{path}"))
        .header(REFUSAL_MARKER, forged)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    drop(send);
    let _ = drive.await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn http2_ignores_the_forged_marker() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    for forged in FORGED {
        let got = h2_get(&pki, addr, HOST, "/", forged).await;
        assert_eq!(
            got,
            (200, "proto=http2 path=/ identity=- body=0".into()),
            "{forged}"
        );
        let got = h2_get(&pki, addr, HOST, "/admin", forged).await;
        assert_eq!(got, (200, "admin".into()), "{forged}");
        let (status, _) = h2_get(&pki, addr, OTHER_ZONE, "/", forged).await;
        assert_eq!(status, 421, "{forged}");
    }
    server.shutdown().await;
}

async fn h3_get(pki: &Pki, addr: SocketAddr, authority: &str, forged: &str) -> (u16, String) {
    let mut tls = pki.client_config(false, &[b"h3"]);
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = ep.connect(addr, HOST).unwrap().await.unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    let drive = tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    let req = http::Request::get(format!("https://{authority}/"))
        .header(REFUSAL_MARKER, forged)
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    stream.finish().await.unwrap();
    let resp = stream.recv_response().await.unwrap();
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    drop(send);
    drive.abort();
    ep.close(0u32.into(), b"done");
    (resp.status().as_u16(), String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn http3_ignores_the_forged_marker() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    for forged in FORGED {
        let got = h3_get(&pki, addr, HOST, forged).await;
        assert_eq!(
            got,
            (200, "proto=http3 path=/ identity=- body=0".into()),
            "{forged}"
        );
        let (status, _) = h3_get(&pki, addr, OTHER_ZONE, forged).await;
        assert_eq!(status, 421, "{forged}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn control_socket_ignores_the_forged_marker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a-ctl.sock");
    let handler = |req: http::Request<tianping_net::Body>| async move {
        let seen = req.headers().contains_key(REFUSAL_MARKER);
        http::Response::new(full(format!("{} marker={seen}", req.uri().path())))
    };
    let ctl = serve_control(&path, &[], handler).await.unwrap();
    for forged in FORGED {
        let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
        let req = format!(
            "GET /status HTTP/1.1\r\nHost: localhost\r\n{REFUSAL_MARKER}: {forged}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert_eq!(statuses(&out), vec![200], "{forged}: {out}");
        assert!(out.ends_with("/status marker=false"), "{forged}: {out}");
    }
    ctl.shutdown().await;
}
