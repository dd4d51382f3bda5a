//! The benchmark server: the listener with default limits answering every request with the same
//! 100-byte body as the nginx baseline. Usage: `bench_server CERT KEY PORT [ADMIN_PORT]`.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a benchmark tool fails loudly"
)]

use std::sync::Arc;

use http::{Request, Response};
use tianping_certs::ServerTlsBuilder;
use tianping_net::{
    Body, ConnectionTable, HostSet, ResponseBody, ServerOptions, full, serve_admin, serve_tls,
};

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
    fn new(source: &tianping_certs::ReloadableServerConfig) -> Self {
        let mut c = (*source.current()).clone();
        c.send_tls13_tickets = 0;
        c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Self(Arc::new(c))
    }
}

async fn handler(_req: Request<Body>) -> Response<ResponseBody> {
    Response::new(full(&BODY[..]))
}

/// Serves on this thread's own runtime; `first` also serves HTTP/3 and the admin listener.
/// The runtimes of one `SO_REUSEPORT` port share one connection table, so the limits hold for
/// the port as they would with one runtime.
async fn serve(args: Vec<String>, first: bool, reuse_port: bool, table: Arc<ConnectionTable>) {
    let (cert, key, port) = (&args[1], &args[2], args[3].parse::<u16>().unwrap());
    let tls = ServerTlsBuilder::new(cert, key).build().unwrap();
    let mut options = ServerOptions::new(HostSet::new(["localhost", "127.0.0.1"]));
    // The load clients open 64 connections and many handshakes from one address.
    options.limits.max_connections_per_addr = 100_000;
    options.reuse_port = reuse_port;
    options.connections = Some(table);
    options.http3 = first;
    let server = serve_tls(
        ([127, 0, 0, 1], port).into(),
        Arc::new(NoTickets::new(&tls)),
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

/// `TP_THREADS=N` (default 1): N single-threaded runtimes on threads of their own, each with its
/// own `SO_REUSEPORT` listener, like nginx's worker processes (`TP_THREADS=1` is one thread,
/// comparable to `worker_processes 1`). `TP_RUNTIME=multi` runs one multi-threaded runtime
/// instead (tokio's default worker count; `TP_THREADS` is then ignored).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var("TP_RUNTIME").as_deref() == Ok("multi") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(serve(args, true, false, ConnectionTable::new()));
        return;
    }
    let threads: usize = std::env::var("TP_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1)
        .max(1);
    let table = ConnectionTable::new();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (args, table) = (args.clone(), table.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(serve(args, i == 0, threads > 1, table));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
