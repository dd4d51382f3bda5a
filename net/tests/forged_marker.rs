//! A client forging the old in-band refusal marker (`tianping-refused: <status>`) never chooses
//! the status it is answered with, on any protocol or on the control socket: HTTP/1.1 refuses the
//! header (400), the others ignore it, and the host check still answers another zone's authority
//! with 421.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::*;
use tianping_certs::ClientAuth;
use tianping_net::{REFUSAL_MARKER, full, serve_control};

/// The statuses a forged marker once made the server answer with (malformed for 204 with a body,
/// 101 and 103).
const FORGED: [&str; 6] = ["200", "204", "101", "103", "421", "500"];

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

#[tokio::test]
async fn http2_ignores_the_forged_marker() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    for forged in FORGED {
        let got = h2_request(&pki, addr, HOST, "/", &[(REFUSAL_MARKER, forged)]).await;
        assert_eq!(
            got,
            (200, "proto=http2 path=/ identity=- body=0".into()),
            "{forged}"
        );
        let got = h2_request(&pki, addr, HOST, "/admin", &[(REFUSAL_MARKER, forged)]).await;
        assert_eq!(got, (200, "admin".into()), "{forged}");
        let (status, _) =
            h2_request(&pki, addr, OTHER_ZONE, "/", &[(REFUSAL_MARKER, forged)]).await;
        assert_eq!(status, 421, "{forged}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn http3_ignores_the_forged_marker() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    for forged in FORGED {
        let got = h3_request_once(&pki, addr, HOST, "/", &[(REFUSAL_MARKER, forged)]).await;
        assert_eq!(
            got,
            (200, "proto=http3 path=/ identity=- body=0".into()),
            "{forged}"
        );
        let (status, _) =
            h3_request_once(&pki, addr, OTHER_ZONE, "/", &[(REFUSAL_MARKER, forged)]).await;
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
        let req = format!(
            "GET /status HTTP/1.1\r\nHost: localhost\r\n{REFUSAL_MARKER}: {forged}\r\nConnection: close\r\n\r\n"
        );
        let out = control_raw(&path, req.as_bytes()).await;
        assert_eq!(statuses(&out), vec![200], "{forged}: {out}");
        assert!(out.ends_with("/status marker=false"), "{forged}: {out}");
    }
    ctl.shutdown().await;
}
