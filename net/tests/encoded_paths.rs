//! Encoded `;`, `?`, `#` and invalid or overlong UTF-8 in a path are refused with 400 on every
//! protocol and on the control socket, as their raw forms are.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::*;
use tianping_certs::ClientAuth;
use tianping_net::{full, serve_control};

/// Each form, in a path the test handler would otherwise answer 200.
const REFUSED: [&str; 12] = [
    "/admin%3B",
    "/admin%3b",
    "/a%3Bb",
    "/admin%3F",
    "/admin%3fx",
    "/admin%23",
    "/admin%23x",
    "/%C0%AF",
    "/%c0%afadmin",
    "/a%E0%80%AF",
    "/a%ED%A0%80",
    "/a%C3",
];

#[tokio::test]
async fn encoded_delimiters_and_bad_utf8_are_refused_on_every_protocol() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    for path in REFUSED {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let out = raw(&pki, addr, req.as_bytes()).await;
        assert_eq!(statuses(&out), vec![400], "http1 {path}: {out}");
        assert_eq!(
            h2_request(&pki, addr, HOST, path, &[]).await.0,
            400,
            "http2 {path}"
        );
        assert_eq!(
            h3_request_once(&pki, addr, HOST, path, &[]).await.0,
            400,
            "http3 {path}"
        );
    }
    // Valid encoded UTF-8 still passes, kept encoded.
    let ok = "/%E6%B3%95";
    let want = format!("proto=http2 path={ok} identity=- body=0");
    assert_eq!(h2_request(&pki, addr, HOST, ok, &[]).await, (200, want));
    assert!(server.metrics().refusals("path") >= 2 * REFUSED.len() as u64);
    server.shutdown().await;
}

#[tokio::test]
async fn encoded_delimiters_and_bad_utf8_are_refused_on_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a-ctl.sock");
    let handler =
        |_req: http::Request<tianping_net::Body>| async { http::Response::new(full("ok")) };
    let ctl = serve_control(&path, &[], handler).await.unwrap();
    for target in REFUSED {
        let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let out = control_raw(&path, req.as_bytes()).await;
        assert_eq!(statuses(&out), vec![400], "{target}: {out}");
    }
    let out = control_raw(
        &path,
        b"GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    ctl.shutdown().await;
}
