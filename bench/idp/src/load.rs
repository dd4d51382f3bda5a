//! The load client: C keep-alive HTTP/1.1 connections over TLS 1.3 (rustls, ring, the server
//! certificate verified against the bench CA by webpki), each sending one `POST /token` at a
//! time and reading the whole answer before the next. A grant counts when its answer is
//! `200` with the token in it and the request both started and finished inside the measured
//! window (after the warm-up). Latency is the time from the first byte written to the last byte
//! read.
//!
//! Refresh grants: each connection owns a share of the families and uses them round-robin,
//! replacing each refresh token by the one the answer carries (both providers rotate on every
//! use), so a family's chain grows by one per use, as it does for a client that refreshes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::Res;

/// How a token answer with a JWT access token begins its field.
const JWT_FIELD: &[u8] = b"\"access_token\":\"ey";

/// Which grant the load asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=client_credentials&scope=…`
    ClientCredentials,
    /// `grant_type=refresh_token&refresh_token=…`
    Refresh,
}

/// Where the load goes.
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// SNI and `Host`.
    pub host: String,
    /// The `Authorization` header's value (client_secret_basic).
    pub basic: String,
}

impl Target {
    /// A target whose client authenticates with `client_secret_basic`.
    pub fn new(addr: SocketAddr, host: &str, client_id: &str, secret: &str) -> Self {
        Self {
            addr,
            host: host.to_owned(),
            basic: format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}"))),
        }
    }
}

/// What one measurement gave.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Grants answered inside the window.
    pub grants: u64,
    /// The window, in seconds.
    pub secs: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Failed requests (any answer but a 200 with a token, or a broken connection).
    pub errors: u64,
    /// The first failure, to show.
    pub first_error: Option<String>,
    /// The server's CPU time over the window, in cores (1.0 = one core busy all the time).
    pub server_cpu: f64,
    /// The load client's, likewise.
    pub client_cpu: f64,
}

/// User plus system CPU time of a process so far, in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: &str) -> Res<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which ends at the last `)`: utime is field 14.
    let rest = stat
        .rfind(')')
        .and_then(|i| stat.get(i.saturating_add(2)..))
        .ok_or("unreadable stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = f.get(12).ok_or("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

impl Outcome {
    /// Grants per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            f64::from(u32::try_from(self.grants).unwrap_or(u32::MAX)) / self.secs
        } else {
            0.0
        }
    }
}

struct Shared {
    target: Target,
    connector: TlsConnector,
    grant: Grant,
    scope: String,
    start: Instant,
    end: Instant,
}

/// A connection's result: the latencies of its counted grants, its families back, its errors.
struct ConnResult {
    latencies: Vec<u32>,
    families: Vec<String>,
    errors: u64,
    first_error: Option<String>,
}

/// Opens a TLS connection to the target.
pub async fn connect(target: &Target, connector: &TlsConnector) -> Res<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(target.host.clone())?;
    Ok(connector.connect(name, tcp).await?)
}

/// One request on an open connection; returns the status and body.
pub async fn exchange(
    tls: &mut TlsStream<TcpStream>,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    tls.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    tls.flush().await.map_err(|e| format!("flush: {e}"))?;
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((head_end, body_len)) = head(buf)? {
            let total = head_end.saturating_add(body_len);
            if buf.len() >= total {
                let status = status(buf)?;
                let body = buf.get(head_end..total).unwrap_or_default().to_vec();
                return Ok((status, body));
            }
        }
        let n = tls
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e} after {} bytes", buf.len()))?;
        if n == 0 {
            return Err(format!("closed after {} bytes", buf.len()));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Once the head is in: where the body starts and its `content-length`.
fn head(answer: &[u8]) -> Result<Option<(usize, usize)>, String> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(answer.get(..end).unwrap_or_default())
        .map_err(|_| "head not utf-8".to_owned())?;
    let length = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .ok_or_else(|| format!("no content-length in `{text}`"))?
        .1
        .trim()
        .parse::<usize>()
        .map_err(|e| format!("content-length: {e}"))?;
    Ok(Some((end.saturating_add(4), length)))
}

fn status(answer: &[u8]) -> Result<u16, String> {
    answer
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "no status line".to_owned())
}

/// A `POST /token` with a form body.
pub fn token_request(target: &Target, form: &str) -> Vec<u8> {
    format!(
        "POST /token HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{form}",
        target.host,
        target.basic,
        form.len()
    )
    .into_bytes()
}

/// A `GET` of `path`.
pub fn get_request(target: &Target, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
        target.host
    )
    .into_bytes()
}

/// The refresh token in a token answer.
pub fn refresh_token_of(body: &[u8]) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("answer not JSON: {e}"))?;
    v.get("refresh_token")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| "no refresh_token in the answer".to_owned())
}

async fn connection(s: Arc<Shared>, mut families: Vec<String>) -> ConnResult {
    let mut r = ConnResult {
        latencies: Vec::with_capacity(1 << 16),
        families: Vec::new(),
        errors: 0,
        first_error: None,
    };
    let mut tls = match connect(&s.target, &s.connector).await {
        Ok(t) => t,
        Err(e) => {
            r.errors = 1;
            r.first_error = Some(format!("connect: {e}"));
            r.families = families;
            return r;
        }
    };
    let mut buf = Vec::with_capacity(4096);
    let cc = token_request(
        &s.target,
        &format!("grant_type=client_credentials&scope={}", s.scope),
    );
    let mut next = 0usize;
    loop {
        let t0 = Instant::now();
        if t0 >= s.end {
            break;
        }
        let slot = next;
        let request = match s.grant {
            Grant::ClientCredentials => cc.clone(),
            Grant::Refresh => match families.get(slot) {
                Some(rt) => token_request(
                    &s.target,
                    &format!("grant_type=refresh_token&refresh_token={rt}"),
                ),
                None => {
                    r.errors += 1;
                    r.first_error = Some("no refresh families for this connection".into());
                    break;
                }
            },
        };
        let answer = exchange(&mut tls, &request, &mut buf).await;
        let t1 = Instant::now();
        let checked = answer.and_then(|(status, body)| {
            if status != 200 {
                return Err(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            match s.grant {
                Grant::ClientCredentials => {
                    if body.windows(JWT_FIELD.len()).any(|w| w == JWT_FIELD) {
                        Ok(())
                    } else {
                        Err(format!("no JWT in {}", String::from_utf8_lossy(&body)))
                    }
                }
                Grant::Refresh => {
                    let rt = refresh_token_of(&body)?;
                    if let Some(f) = families.get_mut(slot) {
                        *f = rt;
                    }
                    Ok(())
                }
            }
        });
        match checked {
            Ok(()) => {
                if t0 >= s.start && t1 <= s.end {
                    let us = t1.duration_since(t0).as_micros();
                    r.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
            }
            Err(e) => {
                r.errors += 1;
                r.first_error.get_or_insert(e);
                // A connection that failed once (a broken chain, a closed socket) stops.
                break;
            }
        }
        next = (next + 1) % families.len().max(1);
    }
    r.families = families;
    r
}

/// What to run.
pub struct Load {
    /// Concurrent connections.
    pub conns: usize,
    /// Warm-up before the window.
    pub warm_up: Duration,
    /// The measured window.
    pub window: Duration,
    /// The scope asked for with client_credentials.
    pub scope: String,
}

/// Runs `grant` against `target` (served by process `server_pid`, whose CPU time is read at the
/// window's ends, as is this process's); for refresh, `families` (split among the connections)
/// are used and given back with the chains' current tokens.
pub async fn run(
    load: &Load,
    target: Target,
    server_pid: u32,
    connector: TlsConnector,
    grant: Grant,
    families: Vec<String>,
) -> Res<(Outcome, Vec<String>)> {
    let start = Instant::now() + load.warm_up;
    let end = start + load.window;
    let server = server_pid.to_string();
    let monitor = tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let a = (cpu_ticks(&server), cpu_ticks("self"), Instant::now());
        tokio::time::sleep_until(end.into()).await;
        let b = (cpu_ticks(&server), cpu_ticks("self"), Instant::now());
        (a, b)
    });
    let s = Arc::new(Shared {
        target,
        connector,
        grant,
        scope: load.scope.clone(),
        start,
        end,
    });
    let conns = load.conns.max(1);
    let mut shares: Vec<Vec<String>> = (0..conns).map(|_| Vec::new()).collect();
    for (i, f) in families.into_iter().enumerate() {
        if let Some(share) = shares.get_mut(i % conns) {
            share.push(f);
        }
    }
    let mut tasks = Vec::with_capacity(conns);
    for share in shares {
        tasks.push(tokio::spawn(connection(Arc::clone(&s), share)));
    }
    let mut all = Vec::new();
    let mut out = Outcome {
        secs: load.window.as_secs_f64(),
        ..Outcome::default()
    };
    let mut back = Vec::new();
    for t in tasks {
        let r = t.await?;
        all.extend_from_slice(&r.latencies);
        out.errors += r.errors;
        if out.first_error.is_none() {
            out.first_error = r.first_error;
        }
        back.extend(r.families);
    }
    let ((s0, c0, t0), (s1, c1, t1)) = monitor.await?;
    let secs = t1.duration_since(t0).as_secs_f64().max(1e-3);
    let share = |a: u64, b: u64| {
        f64::from(u32::try_from(b.saturating_sub(a)).unwrap_or(0)) / USER_HZ / secs
    };
    out.server_cpu = share(s0?, s1?);
    out.client_cpu = share(c0?, c1?);
    all.sort_unstable();
    out.grants = u64::try_from(all.len())?;
    out.p50_us = percentile(&all, 50);
    out.p99_us = percentile(&all, 99);
    Ok((out, back))
}

/// The `p`th percentile of sorted values (nearest rank).
pub fn percentile(sorted: &[u32], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1) - 1;
    sorted.get(rank).map_or(0, |v| u64::from(*v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_complete_only_with_its_whole_body() {
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(head(answer), Ok(Some((answer.len() - 5, 5))));
        assert_eq!(status(answer), Ok(200));
        assert_eq!(head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"), Ok(None));
        assert!(head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert_eq!(status(b"HTTP/1.1 400 Bad Request\r\n"), Ok(400));
        assert!(status(b"HTTP/1.1").is_err());
    }

    #[test]
    fn the_refresh_token_is_taken_from_the_answer() {
        let body = br#"{"access_token":"eyJ.x.y","refresh_token":"abc","token_type":"Bearer"}"#;
        assert_eq!(refresh_token_of(body), Ok("abc".to_owned()));
        assert!(refresh_token_of(br#"{"access_token":"eyJ.x.y"}"#).is_err());
        assert!(refresh_token_of(b"not json").is_err());
        assert!(body.windows(JWT_FIELD.len()).any(|w| w == JWT_FIELD));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99), 990);
    }

    #[test]
    fn a_token_request_carries_basic_credentials_and_its_length() {
        let t = Target::new(
            SocketAddr::from(([127, 0, 0, 1], 1)),
            "idp.example",
            "app",
            "s3cret",
        );
        let r = String::from_utf8(token_request(&t, "grant_type=client_credentials"))
            .unwrap_or_default();
        assert!(
            r.starts_with("POST /token HTTP/1.1\r\nHost: idp.example\r\n"),
            "{r}"
        );
        assert!(
            r.contains("Authorization: Basic YXBwOnMzY3JldA==\r\n"),
            "{r}"
        );
        assert!(
            r.ends_with("Content-Length: 29\r\n\r\ngrant_type=client_credentials"),
            "{r}"
        );
    }
}
