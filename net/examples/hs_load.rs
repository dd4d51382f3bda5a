//! A light load client for full TLS 1.3 handshakes: C connections at a time, each one a new TCP
//! connection, a full handshake (no session cache, no tickets, no 0-RTT), one `GET /` over
//! HTTP/1.1 with `Connection: close`, the whole answer read and checked (status 200, a body of
//! BODY_LEN bytes), then closed (close_notify and FIN, as wrk does, without waiting for the
//! server's own close, which a server may hold back behind Nagle's algorithm); the next one
//! starts at once.
//!
//! The server's certificate is verified against CA_PEM for HOST (webpki, the same ring provider
//! and suite order as [`tianping_certs::client_config`]). After one second of warm-up, completed
//! exchanges are counted for SECONDS; the client's own CPU time over the same window is read from
//! `/proc/self/stat`, and the server's from `/proc/PID/stat` of each process listed in
//! `HS_WATCH=PID,PID,...` (the server and, for nginx, its workers), read at the same instants.
//!
//! Usage: `hs_load ADDR CA_PEM HOST CONNECTIONS SECONDS [THREADS [BODY_LEN]]` (THREADS single-threaded
//! runtimes, default 1; BODY_LEN default 100). Prints one line of `key=value` figures.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a benchmark tool fails loudly"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const WARM_UP: Duration = Duration::from_secs(1);
/// Clock ticks per second of `/proc/self/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

struct Shared {
    addr: SocketAddr,
    name: ServerName<'static>,
    connector: TlsConnector,
    request: Vec<u8>,
    body_len: usize,
    start: Instant,
    end: Instant,
    done: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    suite: std::sync::Mutex<Option<String>>,
}

/// One exchange: connect, handshake, request, the whole answer, close.
async fn exchange(s: &Shared, buf: &mut Vec<u8>) -> Result<(), String> {
    let tcp = TcpStream::connect(s.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let mut tls = s
        .connector
        .connect(s.name.clone(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    {
        let (_, c) = tls.get_ref();
        if c.is_handshaking() || c.handshake_kind() != Some(rustls::HandshakeKind::Full) {
            return Err(format!("not a full handshake: {:?}", c.handshake_kind()));
        }
        let mut suite = s.suite.lock().unwrap();
        if suite.is_none() {
            *suite = Some(format!(
                "{:?}/{:?}",
                c.negotiated_cipher_suite().map(|x| x.suite()),
                c.negotiated_key_exchange_group().map(|g| g.name())
            ));
        }
    }
    tls.write_all(&s.request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    tls.flush().await.map_err(|e| format!("flush: {e}"))?;
    buf.clear();
    // Until the answer is complete; the server's close_notify and FIN are not waited for.
    let mut chunk = [0u8; 4096];
    while buf.len() < answer_len(buf).unwrap_or(usize::MAX) {
        let n = tls
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e} after {} bytes", buf.len()))?;
        if n == 0 {
            return Err(format!("closed after {} bytes", buf.len()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    check(buf, s.body_len)?;
    // As wrk does: close_notify and FIN, then close.
    let _ = tls.shutdown().await;
    Ok(())
}

/// The length of the whole answer, once its head is in: the head plus its `content-length`.
fn answer_len(answer: &[u8]) -> Option<usize> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))?
        .1
        .trim()
        .parse::<usize>()
        .ok()?;
    Some(end + 4 + length)
}

/// The answer is `200`, says `content-length: BODY_LEN`, and carries that many bytes.
fn check(answer: &[u8], body_len: usize) -> Result<(), String> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete head in {} bytes", answer.len()))?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| "head not utf-8".to_owned())?;
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(format!(
            "status line `{}`",
            head.lines().next().unwrap_or("")
        ));
    }
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().to_owned());
    if length.as_deref() != Some(body_len.to_string().as_str()) {
        return Err(format!("content-length {length:?}, not {body_len}"));
    }
    let body = answer.len() - end - 4;
    if body != body_len {
        return Err(format!("body of {body} bytes, not {body_len}"));
    }
    Ok(())
}

async fn worker(s: Arc<Shared>) {
    let mut buf = Vec::with_capacity(1024);
    while Instant::now() < s.end {
        let r = exchange(&s, &mut buf).await;
        let now = Instant::now();
        if now < s.start || now > s.end {
            continue;
        }
        match r {
            Ok(()) => {
                s.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                s.errors.fetch_add(1, Ordering::Relaxed);
                s.first_error.lock().unwrap().get_or_insert(e);
            }
        }
    }
}

/// User plus system CPU time of a process (all its threads) so far, in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which ends at the last `)`: state is field 3, utime 14.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / USER_HZ
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!("usage: hs_load ADDR CA_PEM HOST CONNECTIONS SECONDS [THREADS [BODY_LEN]]");
        std::process::exit(2);
    }
    let addr: SocketAddr = a[1].parse().unwrap();
    let ca = std::fs::read(&a[2]).unwrap();
    let host = a[3].clone();
    let conns: usize = a[4].parse().unwrap();
    let secs: u64 = a[5].parse().unwrap();
    let threads: usize = a.get(6).map_or(1, |t| t.parse().unwrap()).max(1);
    let body_len: usize = a.get(7).map_or(100, |t| t.parse().unwrap());

    let mut tls = tianping_certs::client_config(&ca, None).unwrap();
    tls.resumption = Resumption::disabled();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let start = Instant::now() + WARM_UP;
    let shared = Arc::new(Shared {
        addr,
        name: ServerName::try_from(host.clone()).unwrap(),
        connector: TlsConnector::from(Arc::new(tls)),
        request: format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
        body_len,
        start,
        end: start + Duration::from_secs(secs),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
        suite: std::sync::Mutex::new(None),
    });
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = shared.clone();
            // Connections spread over the threads as evenly as they go.
            let n = conns / threads + usize::from(t < conns % threads);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(worker(s.clone()))).collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
            })
        })
        .collect();
    let watch: Vec<String> = std::env::var("HS_WATCH")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let watched = || watch.iter().map(|p| cpu_seconds(p)).sum::<f64>();
    std::thread::sleep(shared.start.saturating_duration_since(Instant::now()));
    let (cpu0, server0) = (cpu_seconds("self"), watched());
    std::thread::sleep(shared.end.saturating_duration_since(Instant::now()));
    let (cpu, server) = (cpu_seconds("self") - cpu0, watched() - server0);
    for h in handles {
        h.join().unwrap();
    }
    let done = shared.done.load(Ordering::Relaxed);
    let errors = shared.errors.load(Ordering::Relaxed);
    let rate = done as f64 / secs as f64;
    let per = |t: f64| if done > 0 { t * 1e6 / done as f64 } else { 0.0 };
    let mut line = format!(
        "handshakes={done} handshakes/s={rate:.0} errors={errors} client_cpu_share={:.2} client_us_per_handshake={:.0}",
        cpu / secs as f64,
        per(cpu),
    );
    if !watch.is_empty() {
        line += &format!(
            " server_cpu_share={:.2} server_us_per_handshake={:.0}",
            server / secs as f64,
            per(server)
        );
    }
    let suite = shared.suite.lock().unwrap().clone();
    println!("{line} suite={}", suite.as_deref().unwrap_or("-"));
    if let Some(e) = shared.first_error.lock().unwrap().as_ref() {
        eprintln!("first error: {e}");
    }
}
