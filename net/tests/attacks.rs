//! Raw-socket attacks over real TLS: request smuggling shapes, path confusion, oversize heads,
//! SNI/Host mismatch, slow-header clients, idle connections, clients that take no response and an
//! HTTP/2 rapid-reset flood.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tianping_certs::ClientAuth;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn smuggling_shapes_are_refused_with_400_and_close() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    let h = format!("Host: {HOST}\r\n");
    let cases = [
        (
            "cl_te",
            format!(
                "POST / HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "plus",
            format!("POST / HTTP/1.1\r\n{h}Content-Length: +3\r\n\r\nabc"),
            400,
        ),
        (
            "list",
            format!("POST / HTTP/1.1\r\n{h}Content-Length: 3 ,3\r\n\r\nabc"),
            400,
        ),
        (
            "dup",
            format!("POST / HTTP/1.1\r\n{h}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
            400,
        ),
        (
            "te_identity",
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "te_unknown",
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: xchunked\r\n\r\n"),
            400,
        ),
        (
            "space_colon",
            format!("POST / HTTP/1.1\r\n{h}Content-Length : 3\r\n\r\nabc"),
            400,
        ),
        (
            "obs_fold",
            format!("GET / HTTP/1.1\r\n{h}X-A: a\r\n b\r\n\r\n"),
            400,
        ),
        ("bare_lf", format!("GET / HTTP/1.1\n{h}\r\n"), 400),
        (
            "marker",
            format!("GET / HTTP/1.1\r\n{h}tianping-refused: 200\r\n\r\n"),
            400,
        ),
        (
            "long_line",
            format!("GET /{} HTTP/1.1\r\n{h}\r\n", "a".repeat(100_000)),
            414,
        ),
        (
            "big_header",
            format!(
                "GET / HTTP/1.1\r\n{h}X-Big: {}\r\n\r\n",
                "a".repeat(200_000)
            ),
            431,
        ),
        (
            "many_headers",
            format!("GET / HTTP/1.1\r\n{h}{}\r\n", "X-A: b\r\n".repeat(2000)),
            431,
        ),
    ];
    for (name, req, want) in cases {
        let out = raw(&pki, addr, req.as_bytes()).await;
        assert_eq!(statuses(&out), vec![want], "{name}: {out}");
        assert!(
            out.to_ascii_lowercase().contains("connection: close"),
            "{name}: {out}"
        );
    }
    // The same shape as the second request on a kept-alive connection is refused too, after the
    // first is answered.
    let two = format!(
        "GET / HTTP/1.1\r\n{h}\r\nPOST / HTTP/1.1\r\n{h}Content-Length: 1\r\nContent-Length: 1\r\n\r\na"
    );
    let out = raw(&pki, addr, two.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200, 400], "{out}");
    // A smuggled request hidden after a chunked body never reaches the handler as a request.
    assert!(server.metrics().refusals("duplicate_length") >= 2);
    server.shutdown().await;
}

#[tokio::test]
async fn overflowing_chunk_size_is_refused() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\naaaa\r\n0\r\n\r\n"
    );
    let out = raw(&pki, server.local_addr(), req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![400], "{out}");
    assert!(
        !out.contains("proto="),
        "the handler must not answer: {out}"
    );
    assert_eq!(server.metrics().refusals("chunk_size_overflow"), 1);
    // A well-formed chunked body with a pipelined request after it is served, both requests.
    let ok = format!(
        "POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    );
    let out = raw(&pki, server.local_addr(), ok.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200, 200], "{out}");
    assert!(out.contains("body=3") && out.contains("path=/x"), "{out}");
    server.shutdown().await;

    // A chunked body over the size limit is refused while streaming.
    let mut opts = options();
    opts.limits.head.max_body = 10;
    let (server, _) = start(&pki, ClientAuth::None, opts).await;
    let big = format!(
        "POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n8\r\naaaaaaaa\r\n8\r\naaaaaaaa\r\n0\r\n\r\n"
    );
    let out = raw(&pki, server.local_addr(), big.as_bytes()).await;
    assert_eq!(statuses(&out), vec![413], "{out}");
    server.shutdown().await;
}

#[tokio::test]
async fn admin_path_variants_are_refused_or_normalized() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let cases = [
        ("/admin#x", 400),
        ("/a/../admin", 200),
        ("/%2e%2e/admin", 400),
        ("/a/%2e%2e/admin", 200),
        ("/admin%2F", 400),
        ("//admin", 200),
        ("/admin;x=1", 400),
        ("\\admin", 400),
        ("/\\admin", 400),
        ("/%2561dmin", 400),
        ("/%61dmin", 200),
        ("/adm%00in", 400),
    ];
    for (target, want) in cases {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let out = raw(&pki, server.local_addr(), req.as_bytes()).await;
        assert_eq!(statuses(&out), vec![want], "{target}: {out}");
        if want == 200 {
            // Normalized before the handler saw it: the handler answers `admin` only for `/admin`.
            assert!(out.ends_with("admin"), "{target}: {out}");
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn sni_of_one_host_with_host_of_another_is_421() {
    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    let mut s = raw_connect(&pki, addr, HOST).await;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {OTHER}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(statuses(&read_to_close(&mut s).await), vec![421]);
    let mut s = raw_connect(&pki, addr, OTHER).await;
    s.write_all(
        format!("GET / HTTP/1.1\r\nHost: {OTHER}:443\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(statuses(&read_to_close(&mut s).await), vec![200]);
    let mut s = raw_connect(&pki, addr, "localhost").await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        statuses(&read_to_close(&mut s).await),
        vec![421],
        "a name the certificate has but the listener does not serve"
    );
    assert!(server.metrics().refusals("host") >= 2);
    server.shutdown().await;
}

#[tokio::test]
async fn slow_header_clients_do_not_starve_a_normal_client() {
    let pki = Pki::new();
    let mut opts = options();
    opts.limits.header_read_timeout = Duration::from_millis(300);
    opts.limits.max_connections_per_addr = 1000;
    let (server, _) = start(&pki, ClientAuth::None, opts).await;
    let addr = server.local_addr();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = raw_connect(&pki, addr, HOST).await;
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ").as_bytes())
            .await
            .unwrap();
        s.flush().await.unwrap();
        slow.push(s);
    }
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(pki.client_config(false, &[b"http/1.1"]))
        .resolve(HOST, addr)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://{HOST}:{}/ok", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("path=/ok"));
    // Every slow client is cut off by the header timeout without an answer to its request.
    for mut s in slow {
        let out = read_to_close(&mut s).await;
        assert!(!out.contains("200 OK"), "{out}");
    }
    server.shutdown().await;
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let [_, a, b, c] = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![a, b, c, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[tokio::test]
async fn http2_rapid_reset_flood_ends_in_goaway_while_others_are_served() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncReadExt;

    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    let cfg = Arc::new(pki.client_config(false, &[b"h2"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut rd, mut wr) = tokio::io::split(tls);
    let seen_goaway = Arc::new(AtomicBool::new(false));
    // Hand-written frames: HEADERS (GET /, END_STREAM) then RST_STREAM(CANCEL), as fast as the
    // socket takes them, until the server answers GOAWAY.
    let writer = {
        let seen = seen_goaway.clone();
        tokio::spawn(async move {
            let mut block = vec![0x82, 0x87, 0x84, 0x01, u8::try_from(HOST.len()).unwrap()];
            block.extend_from_slice(HOST.as_bytes());
            let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            out.extend(frame(4, 0, 0, &[]));
            let mut sent = 0u32;
            for batch in 0..200u32 {
                for i in 0..50u32 {
                    let id = 2 * (batch * 50 + i) + 1;
                    out.extend(frame(1, 0x5, id, &block));
                    out.extend(frame(3, 0, id, &8u32.to_be_bytes()));
                    sent += 1;
                }
                if seen.load(Ordering::SeqCst) || wr.write_all(&out).await.is_err() {
                    break;
                }
                out.clear();
                tokio::task::yield_now().await;
            }
            sent
        })
    };
    // Read frames until GOAWAY or the end of the connection.
    let mut buf = Vec::new();
    let mut goaway_code = None;
    let mut chunk = [0u8; 16384];
    'read: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == 7 {
                goaway_code = Some(u32::from_be_bytes(buf[13..17].try_into().unwrap()));
                seen_goaway.store(true, Ordering::SeqCst);
                break 'read;
            }
            buf.drain(..9 + len);
        }
    }
    let sent = writer.await.unwrap();
    assert_eq!(
        goaway_code,
        Some(11),
        "ENHANCE_YOUR_CALM expected after {sent} resets"
    );
    assert!(sent < 10_000, "the flood was never stopped");
    // Another client is still served.
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(pki.client_config(false, &[b"h2"]))
        .resolve(HOST, addr)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://{HOST}:{}/after", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert!(resp.text().await.unwrap().contains("path=/after"));
    server.shutdown().await;
}

#[tokio::test]
async fn http2_continuation_flood_is_cut_off() {
    use tokio::io::AsyncReadExt;

    let pki = Pki::new();
    let (server, _) = start(&pki, ClientAuth::None, options()).await;
    let addr = server.local_addr();
    let cfg = Arc::new(pki.client_config(false, &[b"h2"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    // HEADERS without END_HEADERS, then CONTINUATION frames of 16 KiB literal headers, endlessly.
    let writer = tokio::spawn(async move {
        let mut block = vec![0x82, 0x87, 0x84, 0x01, u8::try_from(HOST.len()).unwrap()];
        block.extend_from_slice(HOST.as_bytes());
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(4, 0, 0, &[]));
        out.extend(frame(1, 0x1, 1, &block));
        // Literal header without indexing, new name `x` (1 byte), value of 16,000 bytes.
        let mut lit = vec![0x00, 0x01, b'x', 0x7f];
        let mut n = 16_000u32 - 127;
        while n >= 128 {
            lit.push(u8::try_from(n % 128).unwrap() | 0x80);
            n /= 128;
        }
        lit.push(u8::try_from(n).unwrap());
        lit.extend(std::iter::repeat_n(b'a', 16_000));
        let mut frames = 0u32;
        for _ in 0..2_000 {
            out.extend(frame(9, 0, 1, &lit));
            frames += 1;
            if wr.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        frames
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let mut answer = None;
    'read: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            match buf[3] {
                1 => panic!("the server answered a flooded header block"),
                3 | 7 => {
                    answer = Some(buf[3]);
                    break 'read;
                }
                _ => {}
            }
            buf.drain(..9 + len);
        }
    }
    let frames = writer.await.unwrap();
    // The server resets the stream or the connection long before 32 MB of headers.
    assert!(
        answer.is_some() || frames < 2_000,
        "no answer after {frames} frames"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn silent_clients_are_closed_before_and_after_the_handshake() {
    use tokio::io::AsyncReadExt;

    let pki = Pki::new();
    let mut opts = options();
    opts.limits.handshake_timeout = Duration::from_millis(200);
    opts.limits.header_read_timeout = Duration::from_millis(200);
    let (server, _) = start(&pki, ClientAuth::None, opts).await;
    let addr = server.local_addr();
    // TCP only, no ClientHello: closed by the handshake timeout.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    // HTTP/2 negotiated, then no preface: closed by the header timeout.
    let cfg = Arc::new(pki.client_config(false, &[b"h2"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let out = read_to_close(&mut tls).await;
    assert!(!out.contains("HTTP/"), "{out}");
    // HTTP/1.1 keep-alive connection left idle after a request: closed by the header timeout.
    let mut s = raw_connect(&pki, addr, HOST).await;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let out = read_to_close(&mut s).await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    assert_eq!(server.metrics().handshakes(), 2);
    server.shutdown().await;
}

/// A TLS connection negotiating HTTP/2.
async fn h2_connect(pki: &Pki, addr: std::net::SocketAddr) -> Tls {
    let cfg = Arc::new(pki.client_config(false, &[b"h2"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

/// Reads frames (kind, flags, stream) until `done` holds for those read so far or the server
/// closes the connection (then `true` beside them), acknowledging PINGs and SETTINGS as a live
/// client stack does.
async fn read_frames(
    tls: &mut Tls,
    done: impl Fn(&[(u8, u8, u32)]) -> bool,
) -> (Vec<(u8, u8, u32)>, bool) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    while !done(&seen) {
        let n = match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return (seen, true),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            seen.push((kind, flags, stream));
            let reply = match (kind, flags & 1) {
                (6, 0) => Some(frame(6, 1, 0, &buf[9..9 + len])),
                (4, 0) => Some(frame(4, 1, 0, &[])),
                _ => None,
            };
            if let Some(r) = reply {
                if tls.write_all(&r).await.is_err() {
                    return (seen, true);
                }
            }
            buf.drain(..9 + len);
        }
    }
    (seen, false)
}

/// Reads frames until the server closes the connection, acknowledging its PINGs as a live client
/// stack does; panics if the connection is still open after a generous deadline.
async fn ack_pings_until_closed(tls: &mut Tls) -> Vec<u8> {
    // A guard against a connection held forever, not a timing assertion.
    let (seen, _) = tokio::time::timeout(Duration::from_secs(30), read_frames(tls, |_| false))
        .await
        .expect("the server held an idle connection open");
    seen.into_iter().map(|(kind, ..)| kind).collect()
}

#[tokio::test]
async fn idle_http2_and_http1_connections_are_closed() {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let pki = Pki::new();
    let mut opts = options();
    opts.limits.header_read_timeout = Duration::from_millis(200);
    let (server, _) = start(&pki, ClientAuth::None, opts).await;
    let addr = server.local_addr();
    // HTTP/2 preface and SETTINGS, then silence, answering the server's PINGs: closed.
    let mut tls = h2_connect(&pki, addr).await;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(4, 0, 0, &[]));
    tls.write_all(&hello).await.unwrap();
    let kinds = ack_pings_until_closed(&mut tls).await;
    assert!(!kinds.contains(&1), "no HEADERS were asked for: {kinds:?}");
    // A real HTTP/2 client idle after its request is answered: closed, with GOAWAY.
    let tls = h2_connect(&pki, addr).await;
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(TokioIo::new(tls))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("https://{HOST}/first"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("path=/first"));
    tokio::time::timeout(Duration::from_secs(30), conn)
        .await
        .expect("the server held an idle HTTP/2 connection open")
        .unwrap()
        .unwrap();
    // HTTP/1.1 negotiated, then nothing at all: closed by the header timeout.
    let mut s = raw_connect(&pki, addr, HOST).await;
    let out = read_to_close(&mut s).await;
    assert!(out.is_empty(), "{out}");
    server.shutdown().await;
}

#[tokio::test]
async fn slow_live_http2_requests_are_not_cut_by_the_idle_timeout() {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    const SIZE: usize = 320 * 1024;
    let pki = Pki::new();
    let mut opts = options();
    opts.limits.header_read_timeout = Duration::from_millis(200);
    // Shorter than the whole download, far longer than one frame's wait: a steady reader is kept.
    opts.limits.body_idle_timeout = Duration::from_secs(1);
    opts.http3 = false;
    // `/big` is a large download; `/slow` answers after three idle timeouts of thinking.
    let handler = |req: http::Request<tianping_net::Body>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(600)).await;
            return http::Response::new(tianping_net::full("slow"));
        }
        http::Response::new(tianping_net::full(vec![7u8; SIZE]))
    };
    let server = tianping_net::serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(pki.server_config(ClientAuth::None)),
        opts,
        handler,
    )
    .await
    .unwrap();
    let tls = h2_connect(&pki, server.local_addr()).await;
    // A small window: the server can send 16 KiB, then waits for the client's WINDOW_UPDATE.
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(16 * 1024)
        .adaptive_window(false)
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(TokioIo::new(tls))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(format!("https://{HOST}{path}"))
            .body(http_body_util::Empty::new())
            .unwrap()
    };
    let resp = send.send_request(get("/slow")).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "slow");
    // A reader taking 50 ms per frame: the whole download lasts several idle timeouts.
    let resp = send.send_request(get("/big")).await.unwrap();
    let mut body = resp.into_body();
    let mut got = 0;
    while let Some(frame) = body.frame().await {
        got += frame.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, SIZE);
    drop(send);
    let _ = conn.await;
    server.shutdown().await;
}

/// An HTTP/3 client connection sending QUIC PINGs every 50 ms, with its h3 driver running; the
/// driver's task ends when the connection is closed.
async fn h3_keep_alive_client(
    pki: &Pki,
    addr: std::net::SocketAddr,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    tokio::task::JoinHandle<h3::error::ConnectionError>,
    h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>,
) {
    let mut tls = pki.client_config(false, &[b"h3"]);
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_millis(50)));
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport));
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(cfg);
    let conn = ep.connect(addr, HOST).unwrap().await.unwrap();
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .unwrap();
    let drive = tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    (ep, conn, drive, send)
}

async fn h3_request(
    send: &mut h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>,
    path: &str,
) -> String {
    use bytes::Buf;
    let req = http::Request::get(format!("https://{HOST}{path}"))
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    stream.finish().await.unwrap();
    let resp = stream.recv_response().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    String::from_utf8(body).unwrap()
}

/// Waits for the server to close an HTTP/3 connection and checks it did so gracefully.
async fn closed_by_server(
    conn: &quinn::Connection,
    drive: tokio::task::JoinHandle<h3::error::ConnectionError>,
) {
    // A guard against a connection held forever, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(30), drive)
        .await
        .expect("the server held an idle HTTP/3 connection open")
        .unwrap();
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(0x100), "H3_NO_ERROR");
        }
        other => panic!("not closed by the server with H3_NO_ERROR: {other:?}"),
    }
}

#[tokio::test]
async fn idle_http3_connections_are_closed_despite_quic_pings() {
    let pki = Pki::new();
    let mut opts = options();
    opts.limits.header_read_timeout = Duration::from_millis(300);
    // `/slow` answers after three idle timeouts of thinking.
    let handler = |req: http::Request<tianping_net::Body>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(900)).await;
            return http::Response::new(tianping_net::full("slow"));
        }
        http::Response::new(tianping_net::full("ok"))
    };
    let server = tianping_net::serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(pki.server_config(ClientAuth::None)),
        opts,
        handler,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    // Keep-alive PINGs and no request stream at all: closed.
    let (ep, conn, drive, send) = h3_keep_alive_client(&pki, addr).await;
    closed_by_server(&conn, drive).await;
    drop(send);
    ep.wait_idle().await;
    // One request, then keep-alive PINGs only: closed.
    let (ep, conn, drive, mut send) = h3_keep_alive_client(&pki, addr).await;
    assert_eq!(h3_request(&mut send, "/first").await, "ok");
    closed_by_server(&conn, drive).await;
    drop(send);
    ep.wait_idle().await;
    // A slow but live request is answered, not cut.
    let (ep, conn, drive, mut send) = h3_keep_alive_client(&pki, addr).await;
    assert_eq!(h3_request(&mut send, "/slow").await, "slow");
    closed_by_server(&conn, drive).await;
    drop(send);
    ep.wait_idle().await;
    server.shutdown().await;
}

#[tokio::test]
async fn http2_client_never_opening_its_window_has_the_stream_reset() {
    let pki = Pki::new();
    let mut opts = options();
    opts.limits.header_read_timeout = Duration::from_millis(300);
    opts.limits.body_idle_timeout = Duration::from_millis(300);
    opts.http3 = false;
    let (server, _) = start(&pki, ClientAuth::None, opts).await;
    let mut tls = h2_connect(&pki, server.local_addr()).await;
    // SETTINGS_INITIAL_WINDOW_SIZE = 0, then GET / on stream 1; no WINDOW_UPDATE ever, but every
    // PING answered.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(4, 0, 0, &[0, 4, 0, 0, 0, 0]));
    let mut block = vec![0x82, 0x87, 0x84, 0x01, u8::try_from(HOST.len()).unwrap()];
    block.extend_from_slice(HOST.as_bytes());
    hello.extend(frame(1, 0x5, 1, &block));
    tls.write_all(&hello).await.unwrap();
    let kinds = ack_pings_until_closed(&mut tls).await;
    assert!(kinds.contains(&1), "the response head was sent: {kinds:?}");
    assert!(!kinds.contains(&0), "no DATA fits a zero window: {kinds:?}");
    assert!(
        kinds.contains(&3),
        "the stalled stream was reset: {kinds:?}"
    );
    assert_eq!(server.metrics().refusals("send_stall"), 1);
    server.shutdown().await;
}

/// A response body of `chunks` chunks of 64 KiB that reports being dropped.
/// Reads frames until `done` holds for those read so far; panics if the server closes the
/// connection first or neither happens within a generous deadline.
async fn frames_until(
    tls: &mut Tls,
    done: impl Fn(&[(u8, u8, u32)]) -> bool,
) -> Vec<(u8, u8, u32)> {
    // A guard against a stream held forever, not a timing assertion.
    let (seen, closed) = tokio::time::timeout(Duration::from_secs(30), read_frames(tls, done))
        .await
        .expect("the server neither reset nor answered the streams");
    assert!(!closed, "the server closed the connection: {seen:?}");
    seen
}

#[tokio::test]
async fn http2_stall_sweep_resets_only_the_stalled_stream_and_the_connection_goes_on() {
    let pki = Pki::new();
    let mut opts = options();
    opts.limits.body_idle_timeout = Duration::from_millis(300);
    opts.http3 = false;
    let (server, _) = start(&pki, ClientAuth::None, opts).await;
    let mut tls = h2_connect(&pki, server.local_addr()).await;
    let mut block = vec![0x82, 0x87, 0x84, 0x01, u8::try_from(HOST.len()).unwrap()];
    block.extend_from_slice(HOST.as_bytes());
    // Every stream's window starts at 0. GET / on streams 1 and 3; only stream 3's window is
    // ever opened.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(4, 0, 0, &[0, 4, 0, 0, 0, 0]));
    hello.extend(frame(1, 0x5, 1, &block));
    hello.extend(frame(1, 0x5, 3, &block));
    hello.extend(frame(8, 0, 3, &65_535u32.to_be_bytes()));
    tls.write_all(&hello).await.unwrap();
    let answered =
        |f: &[(u8, u8, u32)], id| f.iter().any(|&(k, fl, s)| s == id && k == 0 && fl & 1 == 1);
    let reset = |f: &[(u8, u8, u32)], id| f.iter().any(|&(k, _, s)| s == id && k == 3);
    let seen = frames_until(&mut tls, |f| reset(f, 1)).await;
    assert!(
        answered(&seen, 3),
        "stream 3 was answered before stream 1 was given up: {seen:?}"
    );
    assert!(!reset(&seen, 3), "{seen:?}");
    assert!(
        !seen.iter().any(|&(k, _, s)| s == 1 && k == 0),
        "no DATA fits stream 1's window"
    );
    assert!(!seen.iter().any(|&(k, ..)| k == 7), "no GOAWAY: {seen:?}");
    // The connection goes on: a new stream with an open window is answered.
    let mut more = frame(1, 0x5, 5, &block);
    more.extend(frame(8, 0, 5, &65_535u32.to_be_bytes()));
    tls.write_all(&more).await.unwrap();
    let seen = frames_until(&mut tls, |f| answered(f, 5)).await;
    assert!(!reset(&seen, 5), "{seen:?}");
    assert_eq!(server.metrics().refusals("send_stall"), 1);
    drop(tls);
    server.shutdown().await;
}

struct Endless {
    chunks: usize,
    _dropped: tokio::sync::oneshot::Sender<()>,
}

impl hyper::body::Body for Endless {
    type Data = bytes::Bytes;
    type Error = tianping_net::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.chunks == 0 {
            return std::task::Poll::Ready(None);
        }
        self.chunks -= 1;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes::Bytes::from(
            vec![b'a'; 64 * 1024],
        )))))
    }
}

/// A server answering its first request with `chunks` × 64 KiB of [`Endless`]; the receiver
/// hears when that body is dropped (given up or done).
async fn serve_endless(
    pki: &Pki,
    opts: tianping_net::ServerOptions,
    chunks: usize,
) -> (
    tianping_net::ServerHandle,
    tokio::sync::oneshot::Receiver<()>,
) {
    use http_body_util::BodyExt;

    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
    let dropped_tx = Arc::new(std::sync::Mutex::new(Some(dropped_tx)));
    let handler = move |_req: http::Request<tianping_net::Body>| {
        let tx = dropped_tx.lock().unwrap().take().unwrap();
        async move {
            let body = Endless {
                chunks,
                _dropped: tx,
            };
            http::Response::new(body.boxed())
        }
    };
    let server = tianping_net::serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(pki.server_config(ClientAuth::None)),
        opts,
        handler,
    )
    .await
    .unwrap();
    (server, dropped_rx)
}

#[tokio::test]
async fn http1_client_that_stops_reading_is_closed() {
    let pki = Pki::new();
    let mut opts = options();
    opts.limits.body_idle_timeout = Duration::from_millis(300);
    opts.http3 = false;
    // 64 MiB: far more than the socket buffers on both sides hold.
    let (server, dropped_rx) = serve_endless(&pki, opts, 1024).await;
    let mut s = raw_connect(&pki, server.local_addr(), HOST).await;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The client never reads: the server's writes block, and the response is given up.
    // A guard against a connection held forever, not a timing assertion.
    let _ = tokio::time::timeout(Duration::from_secs(30), dropped_rx)
        .await
        .expect("the server kept writing to a client that reads nothing");
    let out = read_to_close(&mut s).await;
    assert!(out.len() < 64 * 1024 * 1024, "the whole body was sent");
    server.shutdown().await;
}

#[tokio::test]
async fn http3_client_that_stops_reading_has_the_stream_reset() {
    use bytes::Buf;

    let pki = Pki::new();
    let mut opts = options();
    opts.limits.body_idle_timeout = Duration::from_millis(300);
    let (server, dropped_rx) = serve_endless(&pki, opts, 64).await;
    let (ep, _conn, _drive, mut send) = h3_keep_alive_client(&pki, server.local_addr()).await;
    let req = http::Request::get(format!("https://{HOST}/"))
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    stream.finish().await.unwrap();
    assert_eq!(stream.recv_response().await.unwrap().status(), 200);
    // The client reads no body: once its stream window (quinn's default, 1.25 MB) is full the
    // server's writes wait, and the response is given up.
    // A guard against a stream held forever, not a timing assertion.
    let _ = tokio::time::timeout(Duration::from_secs(30), dropped_rx)
        .await
        .expect("the server kept a response the client reads nothing of");
    let mut got = 0;
    let ended = loop {
        match stream.recv_data().await {
            Ok(Some(mut chunk)) => got += chunk.copy_to_bytes(chunk.remaining()).len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(ended.is_err(), "the stream was reset, after {got} bytes");
    assert!(got < 64 * 64 * 1024);
    assert_eq!(server.metrics().refusals("send_stall"), 1);
    drop(send);
    ep.close(0u32.into(), b"done");
    server.shutdown().await;
}
