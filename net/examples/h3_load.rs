//! A small HTTP/3 load client: C connections, M concurrent requests each, for D seconds.
//! Usage: `h3_load ADDR CA_PEM HOST CONNECTIONS STREAMS SECONDS`; prints requests/s and p99.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a benchmark tool fails loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let addr: std::net::SocketAddr = a[1].parse().unwrap();
    let ca = std::fs::read(&a[2]).unwrap();
    let host = a[3].clone();
    let (conns, streams, secs): (usize, usize, u64) = (
        a[4].parse().unwrap(),
        a[5].parse().unwrap(),
        a[6].parse().unwrap(),
    );
    let mut tls = tianping_certs::client_config(&ca, None).unwrap();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let conn = ep.connect(addr, &host).unwrap().await.unwrap();
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .unwrap();
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        for _ in 0..streams {
            let mut send = send.clone();
            let host = host.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let req = http::Request::get(format!("https://{host}/"))
                        .body(())
                        .unwrap();
                    let mut s = send.send_request(req).await.unwrap();
                    s.finish().await.unwrap();
                    let resp = s.recv_response().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    while let Some(mut c) = s.recv_data().await.unwrap() {
                        c.advance(c.remaining());
                    }
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
    }
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let took = start.elapsed().as_secs_f64().max(secs as f64);
    all.sort();
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or_default();
    println!(
        "requests={} rps={:.0} p99_ms={:.2}",
        all.len(),
        all.len() as f64 / took,
        p99.as_secs_f64() * 1000.0
    );
}
