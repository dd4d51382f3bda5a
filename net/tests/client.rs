//! The HTTPS client against a real `serve_tls` listener on port 0: an answer read, a client
//! certificate presented (and a server requiring one refused without it), a server of another
//! CA refused, a silent server timed out, a body over the cap refused, and an `http://` URL
//! refused before anything is sent.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use http::{Request, Response};
use tianping_certs::ClientAuth;
use tianping_net::{
    Body, ClientError, ClientLimits, HttpsClient, HttpsClientBuilder, ResponseBody, full, serve_tls,
};

fn client(pki: &Pki, addr: SocketAddr, limits: ClientLimits) -> HttpsClient {
    HttpsClientBuilder::new(pki.trust_pem.as_bytes())
        .resolve(HOST, addr)
        .limits(limits)
        .build()
        .unwrap()
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("https://{HOST}:{}{path}", addr.port())
}

#[tokio::test]
async fn answers_are_read_and_a_client_certificate_is_presented() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::Optional, options()).await;
    let addr = server.local_addr();
    let c = client(&pki, addr, ClientLimits::default());
    let r = c.get(&url(addr, "/a/../x?q=1")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_start(200), "proto=http1 path=/x identity=- body=0");
    let r = c
        .post(
            &url(addr, "/form"),
            "application/x-www-form-urlencoded",
            "a=1&b=2",
        )
        .await
        .unwrap();
    assert_eq!(
        r.body_start(200),
        "proto=http1 path=/form identity=- body=7"
    );

    let with_cert = HttpsClientBuilder::new(pki.trust_pem.as_bytes())
        .client_cert(pki.client_chain.as_bytes(), pki.client_key.as_bytes())
        .resolve(HOST, addr)
        .build()
        .unwrap();
    let r = with_cert.get(&url(addr, "/")).await.unwrap();
    assert_eq!(
        r.body_start(200),
        "proto=http1 path=/ identity=u-1001@bj.01 body=0"
    );
    server.shutdown().await;

    // a server that requires a client certificate: refused without one, served with one
    let (server, _) = start(&pki, ClientAuth::Required, options()).await;
    let addr = server.local_addr();
    let e = client(&pki, addr, ClientLimits::default())
        .get(&url(addr, "/"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Tls { .. } | ClientError::Http { .. }),
        "{e}"
    );
    let with_cert = HttpsClientBuilder::new(pki.trust_pem.as_bytes())
        .client_cert(pki.client_chain.as_bytes(), pki.client_key.as_bytes())
        .resolve(HOST, addr)
        .build()
        .unwrap();
    let r = with_cert.get(&url(addr, "/")).await.unwrap();
    assert_eq!(r.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_the_trust_roots_do_not_vouch_for_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    let c = client(&other, addr, ClientLimits::default());
    let e = c.get(&url(addr, "/")).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Tls { why, .. } if why.contains("invalid peer certificate")),
        "{e}"
    );
    // the right roots but a name the certificate does not carry
    let c = HttpsClientBuilder::new(pki.trust_pem.as_bytes())
        .resolve("other.tianping.localhost", addr)
        .build()
        .unwrap();
    let e = c
        .get(&format!(
            "https://other.tianping.localhost:{}/",
            addr.port()
        ))
        .await
        .unwrap_err();
    assert!(matches!(&e, ClientError::Tls { .. }), "{e}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_timed_out() {
    let pki = Pki::new();
    let asked = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&asked);
    let silent = move |_req: Request<Body>| {
        let seen = Arc::clone(&seen);
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Response<ResponseBody>>().await
        }
    };
    let server = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(pki.server_config(ClientAuth::None)),
        options(),
        silent,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let limits = ClientLimits {
        timeout: Duration::from_millis(300),
        ..ClientLimits::default()
    };
    let started = std::time::Instant::now();
    let e = client(&pki, addr, limits)
        .get(&url(addr, "/"))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the request reached the handler"
    );
    drop(server);
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    let pki = Pki::new();
    let big = |req: Request<Body>| async move {
        let n = if req.uri().path() == "/big" {
            64 * 1024
        } else {
            1024
        };
        Response::new(full(vec![b'x'; n]))
    };
    let server = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(pki.server_config(ClientAuth::None)),
        options(),
        big,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let limits = ClientLimits {
        max_response_body: 1024,
        ..ClientLimits::default()
    };
    let c = client(&pki, addr, limits);
    assert_eq!(c.get(&url(addr, "/small")).await.unwrap().body.len(), 1024);
    let e = c.get(&url(addr, "/big")).await.unwrap_err();
    assert!(
        matches!(e, ClientError::BodyTooLarge { limit: 1024, .. }),
        "{e}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn only_https_urls_are_fetched() {
    let pki = Pki::new();
    // a plain TCP listener that counts connections: none may arrive
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr().unwrap();
    let c = client(&pki, addr, ClientLimits::default());
    let e = c
        .get(&format!("http://{HOST}:{}/", addr.port()))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NotHttps(_)), "{e}");
    for bad in [
        format!("https://user:pw@{HOST}:{}/", addr.port()),
        "https:///x".to_owned(),
        "not a url".to_owned(),
    ] {
        let e = c.get(&bad).await.unwrap_err();
        assert!(matches!(e, ClientError::BadUrl { .. }), "{bad}: {e}");
    }
    let accepted = tokio::time::timeout(Duration::from_millis(50), plain.accept()).await;
    assert!(accepted.is_err(), "nothing connected");

    for bad in [
        HttpsClientBuilder::new(b"".as_slice()).build(),
        HttpsClientBuilder::new(pki.trust_pem.as_bytes())
            .client_cert(pki.client_chain.as_bytes(), b"no key".as_slice())
            .build(),
        HttpsClientBuilder::new(pki.trust_pem.as_bytes())
            .limits(ClientLimits {
                timeout: Duration::ZERO,
                ..ClientLimits::default()
            })
            .build(),
    ] {
        assert!(matches!(bad, Err(ClientError::Config(_))));
    }
}
