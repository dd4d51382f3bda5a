//! The handshake measurement: C workers, each in a loop until the window ends opening a new TCP
//! connection, doing a FULL TLS 1.3 handshake (one rustls client configuration with resumption
//! disabled, so no session id, ticket or PSK is ever offered, and ALPN `http/1.1`), sending one
//! request (the same `GET` with a bearer token as the request measurements, its answer checked
//! the same way), and closing (`close_notify`, then FIN). A connection counts when it started and
//! finished inside the window; its latency is from `connect` to the answer's last byte. Each
//! connection's handshake must have been a full one (rustls' `handshake_kind`), else it is an
//! error. The key exchange group, suite and handshake kind of every connection are counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls::{HandshakeKind, pki_types::ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Res;
use crate::load::{Check, Exchange as _, Outcome, Target, Window, Worker, gather};

/// The client configuration of the handshake measurement: `t`'s trust roots, ALPN
/// `http/1.1`, no resumption.
pub fn full_handshake_config(t: &Target) -> rustls::ClientConfig {
    let mut c = (*t.tls).clone();
    c.resumption = Resumption::disabled();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c.enable_early_data = false;
    c
}

/// What a connection negotiated: `X25519 TLS13_AES_128_GCM_SHA256 Full`.
fn negotiated(c: &rustls::ClientConnection) -> String {
    format!(
        "{} {} {}",
        c.negotiated_key_exchange_group()
            .map_or_else(|| "no-group".to_owned(), |g| format!("{:?}", g.name())),
        c.negotiated_cipher_suite()
            .map_or_else(|| "no-suite".to_owned(), |s| format!("{:?}", s.suite())),
        c.handshake_kind()
            .map_or_else(|| "unfinished".to_owned(), |k| format!("{k:?}"))
    )
}

/// One connection: handshake, one request, close. What it negotiated.
async fn one_connection(
    t: &Target,
    connector: &TlsConnector,
    name: &ServerName<'static>,
    token: Option<&http::HeaderValue>,
    check: Check,
) -> Result<String, String> {
    let tcp = TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let tls = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| format!("tls handshake: {e}"))?;
    let got = negotiated(tls.get_ref().1);
    if tls.get_ref().1.handshake_kind() != Some(HandshakeKind::Full) {
        return Err(format!("not a full handshake: {got}"));
    }
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .map_err(|e| format!("http/1.1 handshake: {e}"))?;
    // the connection task ends once the sender is dropped, shutting the TLS stream down
    let conn = tokio::spawn(conn);
    let answer = sender.exchange(t, token, check).await;
    drop(sender);
    let closed = conn.await;
    answer?;
    match closed {
        Ok(Ok(())) => Ok(got),
        Ok(Err(e)) => Err(format!("close: {e}")),
        Err(e) => Err(format!("connection task: {e}")),
    }
}

/// One worker's loop; it takes the `k`-th token from the shared counter.
async fn worker(
    t: Arc<Target>,
    connector: TlsConnector,
    next: Arc<AtomicUsize>,
    window: Arc<Window>,
    check: Check,
) -> (Worker, BTreeMap<String, u64>) {
    let mut r = Worker::new();
    let mut seen = BTreeMap::new();
    let name = match ServerName::try_from(t.host.clone()) {
        Ok(n) => n,
        Err(e) => {
            r.fail(format!("server name `{}`: {e}", t.host));
            return (r, seen);
        }
    };
    loop {
        let t0 = Instant::now();
        if t0 >= window.end {
            break;
        }
        let k = next.fetch_add(1, Ordering::Relaxed);
        let token = if t.tokens.is_empty() {
            None
        } else {
            t.tokens.get(k % t.tokens.len())
        };
        match one_connection(&t, &connector, &name, token, check).await {
            Ok(got) => {
                r.total = r.total.saturating_add(1);
                let t1 = Instant::now();
                if t0 >= window.start && t1 <= window.end {
                    let us = u32::try_from(t1.duration_since(t0).as_micros()).unwrap_or(u32::MAX);
                    r.latencies.push(us);
                    let n = seen.entry(got).or_insert(0u64);
                    *n = n.saturating_add(1);
                }
            }
            Err(e) => {
                r.fail(e);
                if r.errors > 1000 {
                    break;
                }
            }
        }
    }
    (r, seen)
}

/// `conns` workers doing full handshakes for `warm` and then `secs`; call it on the load
/// client's runtime. `Outcome::requests` counts the connections (one request each) of the
/// window.
pub async fn run(
    t: Arc<Target>,
    conns: usize,
    warm: Duration,
    secs: Duration,
    check: Check,
) -> Outcome {
    let connector = TlsConnector::from(Arc::new(full_handshake_config(&t)));
    let window = Arc::new(Window::after(warm, secs));
    let next = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (t, connector, next, window, seen) = (
            Arc::clone(&t),
            connector.clone(),
            Arc::clone(&next),
            Arc::clone(&window),
            Arc::clone(&seen),
        );
        tasks.push(tokio::spawn(async move {
            let (w, s) = worker(t, connector, next, window, check).await;
            if let Ok(mut all) = seen.lock() {
                for (k, n) in s {
                    let e = all.entry(k).or_insert(0);
                    *e = e.saturating_add(n);
                }
            }
            vec![w]
        }));
    }
    let mut out = gather(tasks, secs).await;
    if let Ok(all) = seen.lock() {
        out.negotiated = all.iter().map(|(k, n)| (k.clone(), *n)).collect();
    }
    out
}

/// One connection, checked, before measuring: what it negotiated.
pub async fn once(t: &Target, check: Check) -> Res<String> {
    let connector = TlsConnector::from(Arc::new(full_handshake_config(t)));
    let name = ServerName::try_from(t.host.clone())?;
    Ok(one_connection(t, &connector, &name, t.tokens.first(), check).await?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tianping_certs::{CaCert, CertKind, KeyAlg, LeafRequest, ServerTlsBuilder};
    use tianping_core::{Clock as _, SystemClock};
    use tianping_net::{HostSet, ServerHandle, ServerOptions, serve_tls};

    /// A zone CA, a server certificate for `localhost` in a temporary folder, and the upstream's
    /// handler served on 127.0.0.1 (HTTP/3 too if `http3`): the server and a target for it.
    pub(crate) async fn upstream(name: &str, http3: bool) -> (ServerHandle, Target, TempDir) {
        let now = SystemClock.now();
        let root = CaCert::new_root("Court", KeyAlg::EcP256, now).unwrap();
        let zone = root
            .new_zone(&"private".parse().unwrap(), "Court", KeyAlg::EcP256, now)
            .unwrap();
        let mut req = LeafRequest::new(CertKind::Server, "upstream");
        req.dns = vec!["localhost".into()];
        let leaf = zone.issue(&req, now).unwrap();
        let dir = TempDir(std::env::temp_dir().join(format!(
            "tianping-bench-gw-test.{}.{name}",
            std::process::id()
        )));
        std::fs::create_dir_all(&dir.0).unwrap();
        let (cert, key) = (dir.0.join("s.pem"), dir.0.join("s.key"));
        std::fs::write(&cert, &leaf.chain_pem).unwrap();
        std::fs::write(&key, leaf.key_pem.expose()).unwrap();
        let tls = ServerTlsBuilder::new(&cert, &key).build().unwrap();
        let mut o = ServerOptions::new(HostSet::new(["localhost"]));
        o.http3 = http3;
        let server = serve_tls(
            ([127, 0, 0, 1], 0).into(),
            Arc::new(tls),
            o,
            crate::upstream::answer,
        )
        .await
        .unwrap();
        let trust = format!("{}{}", root.cert_pem(), zone.cert_pem());
        let t = Target {
            addr: server.local_addr(),
            host: "localhost".into(),
            path: "/courts/bj.01/cases/1".into(),
            tls: Arc::new(tianping_certs::client_config(trust.as_bytes(), None).unwrap()),
            tokens: Arc::new(vec![http::HeaderValue::from_static("Bearer x")]),
        };
        (server, t, dir)
    }

    /// A temporary folder, removed when dropped.
    pub(crate) struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_connection_is_a_full_handshake_with_one_answered_request() {
        let (server, t, _dir) = upstream("full", false).await;
        // the server offers resumption (rustls' default session cache and tickets): a client
        // that keeps sessions resumes its second connection, so the check below can fail
        let mut keeping = (*t.tls).clone();
        keeping.alpn_protocols = vec![b"http/1.1".to_vec()];
        let keeping = TlsConnector::from(Arc::new(keeping));
        let name = ServerName::try_from("localhost").unwrap();
        let first = one_connection(&t, &keeping, &name, None, Check::default()).await;
        assert!(first.unwrap().ends_with(" Full"));
        let second = one_connection(&t, &keeping, &name, None, Check::default()).await;
        assert!(second.unwrap_err().contains("not a full handshake"));

        let t = Arc::new(t);
        let once = once(&t, Check::default()).await.unwrap();
        assert_eq!(once, "X25519 TLS13_AES_128_GCM_SHA256 Full");
        let out = run(
            Arc::clone(&t),
            4,
            Duration::from_millis(100),
            Duration::from_millis(500),
            Check::default(),
        )
        .await;
        assert_eq!(out.errors, 0, "{:?}", out.first_error);
        assert!(out.requests > 0);
        assert!(out.total >= out.requests);
        // every connection of the window was counted, and each was a full handshake
        let counted: u64 = out.negotiated.iter().map(|(_, n)| *n).sum();
        assert_eq!(counted, out.requests);
        assert!(out.negotiated.iter().all(|(k, _)| k.ends_with(" Full")));
        // each connection ended: none is left open at the server
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gateway_check_refuses_an_answer_without_the_assertion() {
        let (server, t, _dir) = upstream("assertion", false).await;
        let r = once(&t, Check { assertion: true }).await;
        assert!(r.unwrap_err().to_string().contains("no Tianping-Assertion"));
        server.shutdown().await;
    }
}
