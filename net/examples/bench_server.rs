//! The benchmark server: the listener with default limits answering every request with the same
//! 100-byte body as the nginx baseline. Usage: `bench_server CERT KEY PORT [ADMIN_PORT]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark tool fails loudly"
)]

use std::sync::Arc;

use http::{Request, Response};
use tianping_certs::ServerTlsBuilder;
use tianping_net::{Body, HostSet, ResponseBody, ServerOptions, full, serve_admin, serve_tls};

const BODY: &[u8; 100] = b"tianping-bench-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789ab\n";

/// The certificate source with session tickets off, as nginx is configured in the same run
/// (`ssl_session_cache off; ssl_session_tickets off;`): every handshake is a full one.
struct NoTickets(Arc<rustls::ServerConfig>);

impl tianping_net::TlsSource for NoTickets {
    fn current(&self) -> Arc<rustls::ServerConfig> {
        self.0.clone()
    }
}

impl NoTickets {
    fn new(source: &tianping_certs::ReloadableServerConfig, cert: &str, key: &str) -> Self {
        let mut c = if std::env::var("TP_SUITE").as_deref() == Ok("aes128") {
            aes128_first(cert, key)
        } else {
            (*source.current()).clone()
        };
        c.send_tls13_tickets = 0;
        c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Self(Arc::new(c))
    }
}

/// The same certificate with TLS_AES_128_GCM_SHA256 preferred (SHA-256 has CPU instructions
/// here, SHA-384 does not), for `TP_SUITE=aes128` runs against an nginx configured alike.
fn aes128_first(cert: &str, key: &str) -> rustls::ServerConfig {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    let chain = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
    let key = tianping_certs::key_from_pem(&std::fs::read(key).unwrap()).unwrap();
    let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    c.ignore_client_order = true;
    c
}

async fn handler(_req: Request<Body>) -> Response<ResponseBody> {
    Response::new(full(&BODY[..]))
}

/// Serves on this thread's own runtime; `first` also serves HTTP/3 and the admin listener.
async fn serve(args: Vec<String>, first: bool, reuse_port: bool) {
    let (cert, key, port) = (&args[1], &args[2], args[3].parse::<u16>().unwrap());
    let tls = ServerTlsBuilder::new(cert, key).build().unwrap();
    let mut options = ServerOptions::new(HostSet::new(["localhost", "127.0.0.1"]));
    // The load clients open 64 connections and many handshakes from one address.
    options.limits.max_connections_per_addr = 100_000;
    options.reuse_port = reuse_port;
    options.http3 = first;
    let server = serve_tls(
        ([127, 0, 0, 1], port).into(),
        Arc::new(NoTickets::new(&tls, cert, key)),
        options,
        handler,
    )
    .await
    .unwrap();
    if let (true, Some(p)) = (first, args.get(4)) {
        let admin = serve_admin(
            ([127, 0, 0, 1], p.parse().unwrap()).into(),
            vec![server.metrics()],
        )
        .await
        .unwrap();
        std::mem::forget(admin);
    }
    if first {
        println!("listening on {}", server.local_addr());
    }
    tokio::signal::ctrl_c().await.unwrap();
    server.shutdown().await;
}

/// `TP_THREADS=N` (default 1): N single-threaded runtimes, each with its own `SO_REUSEPORT`
/// listener, like nginx's worker processes; 1 means one multi-threaded runtime.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = std::env::var("TP_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    if threads <= 1 {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(serve(args, true, false));
        return;
    }
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let args = args.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(serve(args, i == 0, true));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
