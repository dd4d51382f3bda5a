//! Real clients against the listener: reqwest over HTTP/1.1 and HTTP/2, quinn + h3, curl and
//! openssl s_client; client-certificate identities, Alt-Svc, certificate reload with a live
//! connection, rate limits, the admin listener, the control socket, graceful shutdown, and the
//! server choosing the cipher suite.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use common::*;
use tianping_certs::ClientAuth;
use tianping_core::{ManualClock, UnixTime};
use tianping_net::{Rate, control_request, full, serve_admin, serve_control};
use tokio::io::AsyncWriteExt;

fn reqwest_client(pki: &Pki, addr: SocketAddr, cert: bool, alpn: &[&[u8]]) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(pki.client_config(cert, alpn))
        .resolve(HOST, addr)
        .build()
        .unwrap()
}

#[tokio::test]
async fn reqwest_http1_and_http2_with_identities_and_alt_svc() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::Optional, options()).await;
    let addr = server.local_addr();
    let url = format!("https://{HOST}:{}/a/./b?q=1", addr.port());

    let r = reqwest_client(&pki, addr, false, &[b"http/1.1"])
        .post(&url)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_11);
    assert_eq!(
        r.headers()["alt-svc"],
        format!("h3=\":{}\"; ma=86400", addr.port())
    );
    assert_eq!(
        r.text().await.unwrap(),
        "proto=http1 path=/a/b identity=- body=5"
    );

    let r = reqwest_client(&pki, addr, true, &[b"h2", b"http/1.1"])
        .post(&url)
        .body("hello!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert!(r.headers().contains_key("alt-svc"));
    assert_eq!(
        r.text().await.unwrap(),
        "proto=http2 path=/a/b identity=u-1001@bj.01 body=6"
    );

    // HTTP/2: a connection opened for one host (SNI) asking for another (:authority): 421.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(false, &[b"h2"])))
        .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (authority, want) in [(OTHER, 421), (HOST, 200), ("evil.example", 421)] {
        let req = http::Request::get(format!("https://{authority}/"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        assert_eq!(
            send.send_request(req).await.unwrap().status(),
            want,
            "{authority}"
        );
    }

    // A body over the limit is refused.
    server.shutdown().await;
    let mut opts = options();
    opts.limits.head.max_body = 10;
    let (server, _) = start(&pki, ClientAuth::Optional, opts).await;
    let url = format!("https://{HOST}:{}/", server.local_addr().port());
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let r = reqwest_client(&pki, server.local_addr(), false, &[alpn])
            .post(&url)
            .body("x".repeat(11))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{alpn:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn required_client_certificates() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::Required, options()).await;
    let addr = server.local_addr();
    let url = format!("https://{HOST}:{}/", addr.port());
    assert!(
        reqwest_client(&pki, addr, false, &[b"http/1.1"])
            .get(&url)
            .send()
            .await
            .is_err()
    );
    let r = reqwest_client(&pki, addr, true, &[b"http/1.1"])
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "proto=http1 path=/ identity=u-1001@bj.01 body=0"
    );
    server.shutdown().await;
}

async fn h3_get(pki: &Pki, addr: SocketAddr, path: &str, cert: bool) -> (u16, String) {
    let (status, body, _) = h3_get_leaf(pki, addr, path, cert).await;
    (status, body)
}

/// An HTTP/3 request; also returns the server's leaf certificate.
async fn h3_get_leaf(
    pki: &Pki,
    addr: SocketAddr,
    path: &str,
    cert: bool,
) -> (u16, String, Vec<u8>) {
    let mut tls = pki.client_config(cert, &[b"h3"]);
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = ep.connect(addr, HOST).unwrap().await.unwrap();
    let leaf = conn
        .peer_identity()
        .unwrap()
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .unwrap()[0]
        .to_vec();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    let drive = tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    let req = http::Request::get(format!("https://{HOST}{path}"))
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
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
    drop(send);
    drive.abort();
    ep.close(0u32.into(), b"done");
    (
        resp.status().as_u16(),
        String::from_utf8(body).unwrap(),
        leaf,
    )
}

#[tokio::test]
async fn http3_with_quinn_and_h3() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::Optional, options()).await;
    let addr = server.local_addr();
    let (status, body) = h3_get(&pki, addr, "/x//y/../z", true).await;
    assert_eq!(status, 200);
    assert_eq!(body, "proto=http3 path=/x/z identity=u-1001@bj.01 body=3");
    let (status, _) = h3_get(&pki, addr, "/admin%2F", false).await;
    assert_eq!(status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn reload_swaps_the_certificate_and_keeps_live_connections() {
    let pki = Pki::new();
    let (server, tls) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    // A live keep-alive connection on the first certificate.
    let mut live = raw_connect(&pki, addr, HOST).await;
    let first = live.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    live.write_all(format!("GET /one HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();

    let (_, _, quic_first) = h3_get_leaf(&pki, addr, "/", false).await;
    assert_eq!(quic_first, first);
    let second = pki.issue_server("server-2");
    assert_ne!(first, second);
    // Only the source is reloaded: TCP and QUIC both read it for their next connection.
    tls.reload().unwrap();

    let fresh = raw_connect(&pki, addr, HOST).await;
    assert_eq!(
        fresh.get_ref().1.peer_certificates().unwrap()[0].to_vec(),
        second
    );
    // HTTP/3 picks up the new certificate too.
    let (status, _, quic_second) = h3_get_leaf(&pki, addr, "/", false).await;
    assert_eq!(status, 200);
    assert_eq!(quic_second, second);

    live.write_all(
        format!("GET /two HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let out = read_to_close(&mut live).await;
    assert_eq!(statuses(&out), vec![200, 200], "{out}");
    assert!(out.contains("path=/two"));
    server.shutdown().await;
}

#[tokio::test]
async fn curl_and_openssl() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::Optional, options()).await;
    let port = server.local_addr().port();
    let ca = pki.path("trust.pem");
    std::fs::write(pki.path("client.pem"), &pki.client_chain).unwrap();
    std::fs::write(pki.path("client.key"), &pki.client_key).unwrap();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("{HOST}:{port}:127.0.0.1"))
        .arg("--cert")
        .arg(pki.path("client.pem"))
        .arg("--key")
        .arg(pki.path("client.key"))
        .args(["-w", " %{http_version}", "-d", "abcd"])
        .arg(format!("https://{HOST}:{port}/c/../curl"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "proto=http2 path=/curl identity=u-1001@bj.01 body=4 2"
    );

    // curl --path-as-is sends the dot segments raw; the server normalizes or refuses.
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http1.1",
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("{HOST}:{port}:127.0.0.1"))
        .arg(format!("https://{HOST}:{port}/../admin"))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");

    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-tls1_3", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", HOST, "-CAfile"])
        .arg(&ca)
        .args(["-verify_return_error", "-alpn", "http/1.1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            format!("GET /ossl HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    drop(stdin);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("HTTP/1.1 200"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("path=/ossl"));

    // TLS 1.2 is not offered by default.
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-tls1_2", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", HOST])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    server.shutdown().await;
}

/// `HEAD` over HTTP/2 once sent the handler's body as DATA frames: curl failed with "stream 1
/// was not closed cleanly: PROTOCOL_ERROR". Every protocol now answers the head alone, with the
/// length the content would have.
#[tokio::test]
async fn head_is_answered_without_content_over_http1_and_http2_and_says_hsts() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::Optional, options()).await;
    let port = server.local_addr().port();
    let ca = pki.path("trust.pem");
    let mut lengths = Vec::new();
    let mut hsts = Vec::new();
    for proto in ["--http1.1", "--http2"] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "-I", proto, "--cacert"])
            .arg(&ca)
            .arg("--resolve")
            .arg(format!("{HOST}:{port}:127.0.0.1"))
            .arg(format!("https://{HOST}:{port}/head"))
            .output()
            .await
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(
            out.status.success(),
            "{proto}: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            said.starts_with("http/1.1 200") || said.starts_with("http/2 200"),
            "{said}"
        );
        let length = said
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|v| v.trim().to_owned());
        lengths.push(length);
        if let Some(h) = said
            .lines()
            .find_map(|l| l.strip_prefix("strict-transport-security: "))
        {
            hsts.push(h.trim().to_owned());
        }
    }
    assert!(lengths[0].is_some(), "{lengths:?}");
    assert_eq!(hsts.len(), 2, "every answer over TLS says HSTS: {hsts:?}");
    assert!(hsts.iter().all(|h| h == "max-age=31536000"), "{hsts:?}");
    assert_eq!(
        lengths[0], lengths[1],
        "both say the length a GET's content has"
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let pki = Pki::new();
    let clock = ManualClock::new(UnixTime::from_secs(1_000));
    let mut opts = options();
    opts.rate_per_addr = Some(Rate {
        per_second: 1,
        burst: 2,
    });
    opts.clock = Arc::new(clock.clone());
    let (server, _) = start(&pki, ClientAuth::None, opts).await;
    let addr = server.local_addr();
    let c = reqwest_client(&pki, addr, false, &[b"h2"]);
    let url = format!("https://{HOST}:{}/", addr.port());
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    clock.advance(Duration::from_secs(1));
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(server.metrics().refusals("rate"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn admin_listener_serves_health_and_metrics() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    let c = reqwest_client(&pki, addr, false, &[b"http/1.1"]);
    c.get(format!("https://{HOST}:{}/", addr.port()))
        .send()
        .await
        .unwrap();
    c.get(format!("https://{HOST}:{}/%2561", addr.port()))
        .send()
        .await
        .unwrap();
    let registry = tianping_net::Registry::new();
    let admin = tianping_net::serve_admin_with(
        "127.0.0.1:0".parse().unwrap(),
        vec![server.metrics()],
        registry.clone(),
    )
    .await
    .unwrap();
    // A component registers its own after the listener started.
    registry
        .counter(
            "tianping_test_events_total",
            "Test events.",
            &[("kind", "x")],
        )
        .unwrap()
        .add(5);
    assert!(
        serve_admin("0.0.0.0:0".parse().unwrap(), vec![])
            .await
            .is_err()
    );
    let plain = reqwest::Client::new();
    let base = format!("http://{}", admin.local_addr());
    assert_eq!(
        plain
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok\n"
    );
    let m = plain
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("tianping_http_requests_total{protocol=\"http1\",status=\"200\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tianping_refusals_total{reason=\"path\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tianping_tls_handshakes_total{result=\"ok\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tianping_http_request_duration_seconds_count 2"),
        "{m}"
    );
    assert!(
        m.contains(
            "# TYPE tianping_test_events_total counter\ntianping_test_events_total{kind=\"x\"} 5\n"
        ),
        "{m}"
    );
    admin.shutdown().await;
    server.shutdown().await;
}

async fn graceful_shutdown(http3: bool) {
    let pki = Arc::new(Pki::new());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Arc::new(std::sync::Mutex::new(Some(started_tx)));
    let release = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let tls = pki.server_config(ClientAuth::None);
    let handler = move |_req: http::Request<tianping_net::Body>| {
        let (started, release) = (started.clone(), release.clone());
        async move {
            if let Some(tx) = started.lock().unwrap().take() {
                tx.send(()).unwrap();
            }
            if let Some(rx) = release.lock().await.take() {
                rx.await.unwrap();
            }
            http::Response::new(full("finished"))
        }
    };
    let server = tianping_net::serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(tls),
        options(),
        handler,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let req = if http3 {
        let pki = pki.clone();
        tokio::spawn(async move { h3_get(&pki, addr, "/", false).await.1 })
    } else {
        let c = reqwest_client(&pki, addr, false, &[b"http/1.1"]);
        let url = format!("https://{HOST}:{}/", addr.port());
        tokio::spawn(async move { c.get(url).send().await.unwrap().text().await.unwrap() })
    };
    started_rx.await.unwrap();
    let shutdown = tokio::spawn(server.shutdown());
    release_tx.send(()).unwrap();
    assert_eq!(req.await.unwrap(), "finished");
    shutdown.await.unwrap();
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    graceful_shutdown(false).await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_http3_requests() {
    graceful_shutdown(true).await;
}

#[tokio::test]
async fn control_socket_checks_mode_and_answers() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a-gateway.sock");
    let handler = |req: http::Request<tianping_net::Body>| async move {
        let info = req
            .extensions()
            .get::<tianping_net::ConnInfo>()
            .cloned()
            .unwrap();
        let path = req.uri().path().to_string();
        let body = req.into_body().bytes().await.unwrap();
        http::Response::new(full(format!(
            "{} {path} {} uid={}",
            info.protocol.as_str(),
            body.len(),
            info.peer_uid.is_some()
        )))
    };
    let ctl = serve_control(&path, &[], handler).await.unwrap();
    // A second server on a live socket is refused; the first keeps it.
    let second = serve_control(
        &path,
        &[],
        |_req: http::Request<tianping_net::Body>| async { http::Response::new(full("second")) },
    )
    .await;
    assert!(second.is_err());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (status, body) = control_request(&path, "POST", "/users/../users", "abc")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "control /users 3 uid=true");
    let (status, _) = control_request(&path, "GET", "/a%2Fb", "").await.unwrap();
    assert_eq!(status, 400);
    ctl.shutdown().await;
    assert!(!path.exists());

    // A socket allowing only another uid refuses this process.
    let ctl = serve_control(
        &path,
        &[4_000_000_000],
        |_req: http::Request<tianping_net::Body>| async { http::Response::new(full("no")) },
    )
    .await
    .unwrap();
    assert!(control_request(&path, "GET", "/", "").await.is_err());
    ctl.shutdown().await;
}

#[tokio::test]
async fn identity_rate_limit_and_connection_limit() {
    let pki = Pki::new();
    let clock = ManualClock::new(UnixTime::from_secs(1_000));
    let mut opts = options();
    opts.rate_per_identity = Some(Rate {
        per_second: 1,
        burst: 1,
    });
    opts.clock = Arc::new(clock.clone());
    let (server, _) = start(&pki, ClientAuth::Optional, opts).await;
    let addr = server.local_addr();
    let url = format!("https://{HOST}:{}/", addr.port());
    let judge = reqwest_client(&pki, addr, true, &[b"h2"]);
    assert_eq!(judge.get(&url).send().await.unwrap().status(), 200);
    let r = judge.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Without a certificate there is no identity to limit.
    let anon = reqwest_client(&pki, addr, false, &[b"h2"]);
    for _ in 0..3 {
        assert_eq!(anon.get(&url).send().await.unwrap().status(), 200);
    }
    server.shutdown().await;

    let mut opts = options();
    opts.limits.max_connections_per_addr = 1;
    let (server, _) = start(&pki, ClientAuth::None, opts).await;
    let addr = server.local_addr();
    let mut first = raw_connect(&pki, addr, HOST).await;
    let cfg = Arc::new(pki.client_config(false, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
    assert!(
        tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .is_err()
    );
    assert_eq!(server.metrics().refusals("connection_limit"), 1);
    first
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(statuses(&read_to_close(&mut first).await), vec![200]);
    server.shutdown().await;
}

#[tokio::test]
async fn idle_body_is_cut_off() {
    let pki = Pki::new();
    let mut opts = options();
    opts.limits.body_idle_timeout = Duration::from_millis(200);
    let (server, _) = start(&pki, ClientAuth::None, opts).await;
    let mut s = raw_connect(&pki, server.local_addr(), HOST).await;
    s.write_all(
        format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\nab").as_bytes(),
    )
    .await
    .unwrap();
    let out = read_to_close(&mut s).await;
    assert_eq!(statuses(&out), vec![408], "{out}");
    server.shutdown().await;
}

#[tokio::test]
async fn tls12_only_where_configured_and_only_aead() {
    let pki = Pki::new();
    let tls = tianping_certs::ServerTlsBuilder::new(pki.path("tls.pem"), pki.path("tls.key"))
        .tls12(true)
        .build()
        .unwrap();
    let server = tianping_net::serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(tls),
        options(),
        handler,
    )
    .await
    .unwrap();
    let port = server.local_addr().port();
    let s_client = |extra: &'static [&'static str]| {
        let mut c = tokio::process::Command::new("openssl");
        c.args(["s_client", "-quiet", "-tls1_2", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-servername", HOST])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    let mut child = s_client(&[]).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            format!("GET /t12 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    drop(stdin);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("path=/t12"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A CBC suite is never negotiated.
    let out = s_client(&["-cipher", "ECDHE-ECDSA-AES128-SHA256"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    server.shutdown().await;
}

#[tokio::test]
async fn crl_reload_refuses_a_revoked_client_and_keeps_live_connections() {
    let pki = Pki::new();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let crl = pki.path("crl.pem");
    std::fs::write(&crl, pki.zone.crl(&[], now, 7).unwrap()).unwrap();
    let tls = tianping_certs::ServerTlsBuilder::new(pki.path("tls.pem"), pki.path("tls.key"))
        .client_auth(
            ClientAuth::Optional,
            pki.path("trust.pem"),
            vec![crl.clone()],
        )
        .build()
        .unwrap();
    let server = tianping_net::serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(tls.clone()),
        options(),
        handler,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let url = format!("https://{HOST}:{}/", addr.port());
    let live = reqwest_client(&pki, addr, true, &[b"h2"]);
    assert!(
        live.get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("identity=u-1001@bj.01")
    );

    let revoked = tianping_certs::Revocation {
        serial: pki.client_serial.clone(),
        at: i64::try_from(now.as_secs()).unwrap(),
        reason: tianping_certs::RevokeReason::KeyCompromise,
    };
    std::fs::write(&crl, pki.zone.crl(&[revoked], now, 7).unwrap()).unwrap();
    tls.reload().unwrap();
    server.reload().unwrap();

    // A new connection with the revoked certificate is refused in the handshake.
    assert!(
        reqwest_client(&pki, addr, true, &[b"h2"])
            .get(&url)
            .send()
            .await
            .is_err()
    );
    // The live HTTP/2 connection, authenticated before the revocation, goes on.
    assert!(
        live.get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("identity=u-1001@bj.01")
    );
    // Clients without a certificate are still served.
    assert_eq!(
        reqwest_client(&pki, addr, false, &[b"h2"])
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown().await;
}

/// The server picks TLS_AES_128_GCM_SHA256 by its own order, even from a client that prefers
/// AES-256 (as OpenSSL's clients do), and still agrees to AES-256 with a client offering only that.
#[tokio::test]
async fn server_picks_the_suite_by_its_own_order() {
    use rustls::crypto::ring::cipher_suite as cs;
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    for (offer, want) in [
        (
            vec![
                cs::TLS13_AES_256_GCM_SHA384,
                cs::TLS13_CHACHA20_POLY1305_SHA256,
                cs::TLS13_AES_128_GCM_SHA256,
            ],
            cs::TLS13_AES_128_GCM_SHA256,
        ),
        (
            vec![cs::TLS13_AES_256_GCM_SHA384],
            cs::TLS13_AES_256_GCM_SHA384,
        ),
    ] {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = offer;
        let mut roots = rustls::RootCertStore::empty();
        for der in tianping_certs::certs_from_pem(pki.trust_pem.as_bytes()).unwrap() {
            roots.add(der).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
            .await
            .unwrap();
        let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(suite, want.suite());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn control_socket_path_only_ever_has_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let handler =
        |_req: http::Request<tianping_net::Body>| async { http::Response::new(full("ok")) };
    let entries = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    // A watcher looks at the path as often as it can while sockets come and go.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut modes = std::collections::BTreeSet::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok(m) = std::fs::symlink_metadata(&path) {
                    modes.insert(m.permissions().mode() & 0o777);
                }
            }
            modes
        })
    };
    for _ in 0..200 {
        let ctl = serve_control(&path, &[], handler).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(entries(dir.path()), vec!["c.sock".to_string()]);
        ctl.shutdown().await;
    }
    stop.store(true, Ordering::SeqCst);
    let modes = watcher.join().unwrap();
    assert!(
        modes.iter().all(|m| *m == 0o600),
        "modes seen: {:?}",
        modes.iter().map(|m| format!("{m:o}")).collect::<Vec<_>>()
    );

    // A stale socket (its process gone) is replaced, and the new one answers.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let ctl = serve_control(&path, &[], handler).await.unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(entries(dir.path()), vec!["c.sock".to_string()]);
    let (status, body) = control_request(&path, "GET", "/", "").await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    ctl.shutdown().await;
}

#[tokio::test]
async fn control_request_to_a_stuck_owner_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stuck.sock");
    // An owner that accepts and never answers.
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let owner = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let asked = tianping_net::control_request_within(
        &path,
        "GET",
        "/status",
        "",
        Duration::from_millis(200),
    );
    // A guard against a hung test, not a timing assertion.
    let err = tokio::time::timeout(Duration::from_secs(30), asked)
        .await
        .expect("control_request_within did not time out")
        .unwrap_err();
    assert!(
        matches!(&err, tianping_net::NetError::ControlTimeout { socket, .. } if *socket == path),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("`{}`", path.display())), "{msg}");
    assert!(msg.contains("did not answer"), "{msg}");
    owner.abort();
}

/// TLS handshakes that completed, of `n` tried one after another (each held open).
async fn hold_connections(pki: &Pki, addr: SocketAddr, n: usize) -> (usize, Vec<Tls>) {
    let cfg = Arc::new(pki.client_config(false, &[b"http/1.1"]));
    let mut held = Vec::new();
    for _ in 0..n {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
        if let Ok(s) = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(name, tcp)
            .await
        {
            held.push(s);
        }
    }
    (held.len(), held)
}

#[tokio::test]
async fn connection_limits_hold_across_listeners_sharing_a_table() {
    let pki = Pki::new();
    let tls = Arc::new(pki.server_config(ClientAuth::None));
    let shared_options = |table: &Arc<tianping_net::ConnectionTable>, reuse_port: bool| {
        let mut o = options();
        o.http3 = false;
        o.reuse_port = reuse_port;
        o.limits.max_connections_per_addr = 2;
        o.connections = Some(table.clone());
        o
    };
    // Two listeners of one table on two ports: two connections to the first fill the address's
    // share; the second listener refuses the third.
    let table = tianping_net::ConnectionTable::new();
    let a = tianping_net::serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        tls.clone(),
        shared_options(&table, false),
        handler,
    )
    .await
    .unwrap();
    let b = tianping_net::serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        tls.clone(),
        shared_options(&table, false),
        handler,
    )
    .await
    .unwrap();
    let (on_a, held_a) = hold_connections(&pki, a.local_addr(), 2).await;
    let (on_b, held_b) = hold_connections(&pki, b.local_addr(), 1).await;
    assert_eq!((on_a, on_b), (2, 0));
    assert_eq!(b.metrics().refusals("connection_limit"), 1);
    drop((held_a, held_b));
    a.shutdown().await;
    b.shutdown().await;

    // Two runtimes' listeners on one `SO_REUSEPORT` port, one table: two connections in all,
    // whichever listener the kernel hands each to.
    let table = tianping_net::ConnectionTable::new();
    let first = tianping_net::serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        tls.clone(),
        shared_options(&table, true),
        handler,
    )
    .await
    .unwrap();
    let addr = first.local_addr();
    let second = tianping_net::serve_tls(addr, tls, shared_options(&table, true), handler)
        .await
        .unwrap();
    let (opened, held) = hold_connections(&pki, addr, 6).await;
    assert_eq!(opened, 2);
    drop(held);
    first.shutdown().await;
    second.shutdown().await;
}
