//! The URI a handler sees: `https`, the checked host in lower case without its port, and the
//! normalized path with the query as sent, whether the pipeline shared the request's own bytes
//! (a host and path already in that form) or built new ones.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::*;
use tianping_certs::ClientAuth;
use tianping_net::{Body, ResponseBody, full};

async fn uri_handler(req: http::Request<Body>) -> http::Response<ResponseBody> {
    http::Response::new(full(req.uri().to_string()))
}

#[tokio::test]
async fn the_handler_sees_the_checked_host_and_the_normalized_path() {
    let pki = Pki::new();
    let (server, _) = start_with(&pki, ClientAuth::None, options(), uri_handler).await;
    let addr = server.local_addr();
    let port = addr.port();
    let upper = HOST.to_ascii_uppercase();
    // (Host or :authority, target, what the handler must see)
    let cases = [
        (
            HOST.to_string(),
            "/a/b?x=1&y",
            format!("https://{HOST}/a/b?x=1&y"),
        ),
        (
            format!("{HOST}:{port}"),
            "/a/b",
            format!("https://{HOST}/a/b"),
        ),
        (
            format!("{upper}:{port}"),
            "/a/b?Q",
            format!("https://{HOST}/a/b?Q"),
        ),
        (
            HOST.to_string(),
            "/a/./b/../c?q=%2F",
            format!("https://{HOST}/a/c?q=%2F"),
        ),
        (HOST.to_string(), "/a//b/", format!("https://{HOST}/a/b/")),
        (
            HOST.to_string(),
            "/%7Euser",
            format!("https://{HOST}/~user"),
        ),
        (HOST.to_string(), "/", format!("https://{HOST}/")),
    ];
    for (host, target, want) in &cases {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let out = raw(&pki, addr, req.as_bytes()).await;
        assert_eq!(statuses(&out), vec![200], "http1 {host} {target}: {out}");
        assert!(out.ends_with(want.as_str()), "http1 {host} {target}: {out}");
        let (status, body) = h2_request(&pki, addr, host, target, &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (200, want.as_str()),
            "http2 {host} {target}"
        );
    }
    server.shutdown().await;
}
