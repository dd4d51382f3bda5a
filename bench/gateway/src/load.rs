//! The load client: C keep-alive connections over TLS 1.3 (rustls with ring, the server
//! certificate verified against the zone's trust bundle by webpki), each driven by hyper's
//! client connection: over HTTP/1.1 one `GET` at a time per connection; over HTTP/2, S streams
//! per connection, each one `GET` at a time; over HTTP/3 (QUIC, `crate::quic`) S streams per
//! connection as over HTTP/2. A request counts when its answer is `200` with the
//! 100-byte body, and it both started and finished inside the measured window (after the
//! warm-up); any other answer is an error, counted and shown. Latency is from sending the
//! request to the whole body read.
//!
//! With bearer tokens, worker `w` of `W` (a connection over HTTP/1.1, a stream over HTTP/2) sends
//! its `k`-th request with token `(w + k·W) mod N`, so every subject is used as often as every
//! other and each stays far under the gateway's per-subject rate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Res;
use crate::upstream::{BODY, BODY_OPEN, SAW_ASSERTION, UPSTREAM_VERSION};

/// HTTP/1.1 or HTTP/2 (by ALPN), or HTTP/3 over QUIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1, one request at a time per connection.
    H1,
    /// HTTP/2, several streams per connection.
    H2,
    /// HTTP/3 over QUIC on the same port number over UDP, several streams per connection.
    H3,
}

impl Proto {
    /// As the table names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::H1 => "HTTP/1.1",
            Self::H2 => "HTTP/2",
            Self::H3 => "HTTP/3",
        }
    }
}

/// Where the load goes and what it sends.
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// SNI, and the `Host` / `:authority` host.
    pub host: String,
    /// The path asked for.
    pub path: String,
    /// The TLS client configuration (trust roots; ALPN is set per protocol here).
    pub tls: Arc<rustls::ClientConfig>,
    /// `Authorization` values, one per subject (none: no credential sent).
    pub tokens: Arc<Vec<HeaderValue>>,
}

/// What one measurement gave.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Requests answered inside the window.
    pub requests: u64,
    /// Requests answered in all (warm-up and tail included).
    pub total: u64,
    /// The window, in seconds.
    pub secs: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Failed requests (another status or body, or a broken connection).
    pub errors: u64,
    /// The first failure, to show.
    pub first_error: Option<String>,
    /// HTTP/3: workers (streams) stopped before the window's end because their connection
    /// was closed under them (their requests in flight unanswered), and the first such error.
    pub lost: u64,
    /// The first of those.
    pub first_lost: Option<String>,
    /// What the connections negotiated, and how many did (the handshake measurement's key
    /// exchange group, suite and handshake kind); empty for the request measurements.
    pub negotiated: Vec<(String, u64)>,
}

impl Outcome {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            as_f64(self.requests) / self.secs
        } else {
            0.0
        }
    }
}

/// `n` as a float (exact below 2^53, far above any count here).
pub fn as_f64(n: u64) -> f64 {
    f64::from(u32::try_from(n >> 32).unwrap_or(u32::MAX)) * 4_294_967_296.0
        + f64::from(u32::try_from(n & 0xffff_ffff).unwrap_or(u32::MAX))
}

/// The `permille`-th quantile (0..=1000) of sorted values, by nearest rank.
pub fn quantile(sorted: &[u32], permille: usize) -> u64 {
    let rank = sorted
        .len()
        .saturating_mul(permille.min(1000))
        .div_ceil(1000)
        .max(1);
    sorted
        .get(rank.saturating_sub(1))
        .copied()
        .map_or(0, u64::from)
}

/// One worker's results: a connection over HTTP/1.1, a stream over HTTP/2 and HTTP/3.
pub(crate) struct Worker {
    pub(crate) latencies: Vec<u32>,
    pub(crate) total: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// Workers stopped early because their HTTP/3 connection closed under them.
    pub(crate) lost: u64,
    pub(crate) first_lost: Option<String>,
}

impl Worker {
    pub(crate) fn new() -> Self {
        Self {
            latencies: Vec::with_capacity(1 << 16),
            total: 0,
            errors: 0,
            first_error: None,
            lost: 0,
            first_lost: None,
        }
    }

    pub(crate) fn fail(&mut self, e: String) {
        self.errors = self.errors.saturating_add(1);
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

/// The measured window: after the warm-up, before the end.
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

impl Window {
    /// The window that starts `warm` from now and lasts `secs`.
    pub(crate) fn after(warm: Duration, secs: Duration) -> Self {
        let start = Instant::now() + warm;
        Self {
            start,
            end: start + secs,
        }
    }
}

/// How an error that ended its whole connection begins (HTTP/3: the QUIC connection closed).
pub(crate) const CONNECTION_LOST: &str = "connection lost: ";

/// What every request checks in its answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Check {
    /// The answer must say that the upstream saw a `Tianping-Assertion`.
    pub assertion: bool,
}

async fn connect(t: &Target, proto: Proto) -> Res<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut config = (*t.tls).clone();
    config.alpn_protocols = vec![match proto {
        Proto::H1 => b"http/1.1".to_vec(),
        Proto::H2 => b"h2".to_vec(),
        Proto::H3 => return Err("HTTP/3 is not over TCP".into()),
    }];
    let tcp = TcpStream::connect(t.addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(t.host.clone())?;
    Ok(TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}

/// The negotiated TLS 1.3 suite and ALPN protocol of one connection, to print.
pub async fn probe(t: &Target, proto: Proto) -> Res<String> {
    if proto == Proto::H3 {
        return crate::quic::probe(t).await;
    }
    let tls = connect(t, proto).await?;
    let (_, c) = tls.get_ref();
    Ok(format!(
        "{:?} {:?} alpn {}",
        c.protocol_version()
            .ok_or("no protocol version negotiated")?,
        c.negotiated_cipher_suite()
            .map(|s| s.suite())
            .ok_or("no suite negotiated")?,
        c.alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_else(|| "none".into())
    ))
}

/// The request to send over `proto`, with `token` as its `Authorization` if there is one.
pub(crate) fn request<B>(
    t: &Target,
    proto: Proto,
    token: Option<&HeaderValue>,
    body: B,
) -> Res<Request<B>> {
    let uri: Uri = match proto {
        Proto::H1 => t.path.parse()?,
        Proto::H2 | Proto::H3 => {
            format!("https://{}:{}{}", t.host, t.addr.port(), t.path).parse()?
        }
    };
    let mut b = Request::get(uri);
    if proto == Proto::H1 {
        b = b.header(header::HOST, format!("{}:{}", t.host, t.addr.port()));
    }
    if let Some(v) = token {
        b = b.header(header::AUTHORIZATION, v.clone());
    }
    Ok(b.body(body)?)
}

/// One request on `sender`'s connection, its answer checked.
async fn one<S>(sender: &mut S, req: Request<Empty<Bytes>>, check: Check) -> Result<String, String>
where
    S: Send_,
{
    let resp = sender.send(req).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    verdict(status, &headers, &body, check)
}

/// Whether an answer is the one every request must get (200, the 100-byte body, and the
/// upstream's word that it saw an assertion if `check` asks): what the upstream was asked
/// over, or what is wrong.
pub(crate) fn verdict(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
    check: Check,
) -> Result<String, String> {
    let saw = headers.contains_key(SAW_ASSERTION);
    let version = headers
        .get(UPSTREAM_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?");
    if status != 200 || body != &BODY[..] {
        return Err(format!(
            "status {status}, {} bytes: {}",
            body.len(),
            String::from_utf8_lossy(body.get(..body.len().min(200)).unwrap_or_default())
        ));
    }
    if check.assertion && !saw {
        return Err("the upstream saw no Tianping-Assertion".into());
    }
    Ok(format!(
        "the upstream was asked over {version}{}{}",
        if saw {
            " with a Tianping-Assertion"
        } else {
            ""
        },
        if headers.contains_key(BODY_OPEN) {
            ", the request's body not known to be over (read to its end by the upstream)"
        } else {
            ""
        }
    ))
}

/// One request and its checked answer on a connection (hyper's HTTP/1.1 and HTTP/2 senders,
/// h3's), alike: what the driving loop needs.
pub(crate) trait Exchange {
    /// Sends the request with `token` and checks the answer.
    fn exchange(
        &mut self,
        t: &Target,
        token: Option<&HeaderValue>,
        check: Check,
    ) -> impl std::future::Future<Output = Result<String, String>> + Send;
}

impl Exchange for hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    async fn exchange(
        &mut self,
        t: &Target,
        token: Option<&HeaderValue>,
        check: Check,
    ) -> Result<String, String> {
        let req =
            request(t, Proto::H1, token, Empty::new()).map_err(|e| format!("request: {e}"))?;
        one(self, req, check).await
    }
}

impl Exchange for hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    async fn exchange(
        &mut self,
        t: &Target,
        token: Option<&HeaderValue>,
        check: Check,
    ) -> Result<String, String> {
        let req =
            request(t, Proto::H2, token, Empty::new()).map_err(|e| format!("request: {e}"))?;
        one(self, req, check).await
    }
}

/// hyper's HTTP/1.1 and HTTP/2 senders, alike.
pub trait Send_ {
    /// Sends one request.
    fn send(
        &mut self,
        req: Request<Empty<Bytes>>,
    ) -> impl std::future::Future<Output = Result<http::Response<hyper::body::Incoming>, String>> + Send;
}

impl Send_ for hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    async fn send(
        &mut self,
        req: Request<Empty<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        self.ready().await.map_err(|e| format!("ready: {e}"))?;
        self.send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))
    }
}

impl Send_ for hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    async fn send(
        &mut self,
        req: Request<Empty<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        self.ready().await.map_err(|e| format!("ready: {e}"))?;
        self.send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))
    }
}

/// Requests in a loop until the window ends: worker `w` of `workers`.
pub(crate) async fn drive<S: Exchange>(
    t: Arc<Target>,
    mut sender: S,
    w: usize,
    workers: usize,
    window: Arc<Window>,
    check: Check,
) -> Worker {
    let mut r = Worker::new();
    let mut k = 0usize;
    loop {
        let t0 = Instant::now();
        if t0 >= window.end {
            break;
        }
        let token = if t.tokens.is_empty() {
            None
        } else {
            t.tokens
                .get(w.wrapping_add(k.wrapping_mul(workers)) % t.tokens.len())
        };
        k = k.wrapping_add(1);
        match sender.exchange(&t, token, check).await {
            Ok(_) => {
                r.total = r.total.saturating_add(1);
                let t1 = Instant::now();
                if t0 >= window.start && t1 <= window.end {
                    let us = u32::try_from(t1.duration_since(t0).as_micros()).unwrap_or(u32::MAX);
                    r.latencies.push(us);
                }
            }
            Err(e) => {
                // a connection that is gone answers nothing more: one error per worker on it
                if e.starts_with(CONNECTION_LOST) {
                    r.lost = r.lost.saturating_add(1);
                    r.first_lost.get_or_insert(e);
                    break;
                }
                r.fail(e);
                // a refused request is answered at once: do not spin on a broken target
                if r.errors > 1000 {
                    break;
                }
            }
        }
    }
    r
}

/// One connection: its workers' results.
async fn connection(
    t: Arc<Target>,
    proto: Proto,
    c: usize,
    conns: usize,
    streams: usize,
    window: Arc<Window>,
    check: Check,
) -> Vec<Worker> {
    if proto == Proto::H3 {
        return crate::quic::connection(t, c, conns, streams, window, check).await;
    }
    let tls = match connect(&t, proto).await {
        Ok(s) => s,
        Err(e) => {
            let mut w = Worker::new();
            w.fail(format!("connect: {e}"));
            return vec![w];
        }
    };
    let io = TokioIo::new(tls);
    match proto {
        Proto::H1 => match hyper::client::conn::http1::handshake(io).await {
            Ok((sender, conn)) => {
                tokio::spawn(conn);
                vec![drive(t, sender, c, conns, window, check).await]
            }
            Err(e) => {
                let mut w = Worker::new();
                w.fail(format!("handshake: {e}"));
                vec![w]
            }
        },
        Proto::H2 => match hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await {
            Ok((sender, conn)) => {
                tokio::spawn(conn);
                streams_of(t, sender, c, conns, streams, window, check).await
            }
            Err(e) => {
                let mut w = Worker::new();
                w.fail(format!("handshake: {e}"));
                vec![w]
            }
        },
        Proto::H3 => Vec::new(),
    }
}

/// `streams` workers on the multiplexed connection `sender` of connection `c` of `conns`.
pub(crate) async fn streams_of<S: Exchange + Clone + Send + 'static>(
    t: Arc<Target>,
    sender: S,
    c: usize,
    conns: usize,
    streams: usize,
    window: Arc<Window>,
    check: Check,
) -> Vec<Worker> {
    let workers = conns.saturating_mul(streams);
    let mut tasks = Vec::new();
    for s in 0..streams {
        let w = c.saturating_mul(streams).saturating_add(s);
        tasks.push(tokio::spawn(drive(
            Arc::clone(&t),
            sender.clone(),
            w,
            workers,
            Arc::clone(&window),
            check,
        )));
    }
    let mut out = Vec::new();
    for task in tasks {
        match task.await {
            Ok(w) => out.push(w),
            Err(e) => {
                let mut w = Worker::new();
                w.fail(format!("stream task: {e}"));
                out.push(w);
            }
        }
    }
    out
}

/// `conns` connections (with `streams` streams each over HTTP/2) for `warm` and then `secs`;
/// call it on the load client's runtime.
pub async fn run(
    t: Arc<Target>,
    proto: Proto,
    conns: usize,
    streams: usize,
    warm: Duration,
    secs: Duration,
    check: Check,
) -> Outcome {
    let window = Arc::new(Window::after(warm, secs));
    let mut tasks = Vec::new();
    for c in 0..conns {
        tasks.push(tokio::spawn(connection(
            Arc::clone(&t),
            proto,
            c,
            conns,
            streams.max(1),
            Arc::clone(&window),
            check,
        )));
    }
    gather(tasks, secs).await
}

/// The outcome of the workers of `tasks` over a window of `secs`.
pub(crate) async fn gather(
    tasks: Vec<tokio::task::JoinHandle<Vec<Worker>>>,
    secs: Duration,
) -> Outcome {
    let mut all: Vec<u32> = Vec::new();
    let mut out = Outcome {
        secs: secs.as_secs_f64(),
        ..Outcome::default()
    };
    for task in tasks {
        let workers = match task.await {
            Ok(w) => w,
            Err(e) => {
                out.errors = out.errors.saturating_add(1);
                out.first_error.get_or_insert_with(|| format!("task: {e}"));
                continue;
            }
        };
        for w in workers {
            all.extend_from_slice(&w.latencies);
            out.total = out.total.saturating_add(w.total);
            out.errors = out.errors.saturating_add(w.errors);
            if out.first_error.is_none() {
                out.first_error = w.first_error;
            }
            out.lost = out.lost.saturating_add(w.lost);
            if out.first_lost.is_none() {
                out.first_lost = w.first_lost;
            }
        }
    }
    all.sort_unstable();
    out.requests = u64::try_from(all.len()).unwrap_or(u64::MAX);
    out.p50_us = quantile(&all, 500);
    out.p99_us = quantile(&all, 990);
    out
}

/// One request, checked, before measuring (the target answers as it should); what the
/// upstream said it was asked over.
pub async fn once(t: &Target, proto: Proto, check: Check) -> Res<String> {
    if proto == Proto::H3 {
        return crate::quic::once(t, check).await;
    }
    let io = TokioIo::new(connect(t, proto).await?);
    let token = t.tokens.first();
    let req = request(t, proto, token, Empty::new())?;
    match proto {
        Proto::H1 => {
            let (mut s, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Ok(one(&mut s, req, check).await?)
        }
        Proto::H2 => {
            let (mut s, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Ok(one(&mut s, req, check).await?)
        }
        Proto::H3 => Err("HTTP/3 is not over TCP".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 500), 50);
        assert_eq!(quantile(&v, 990), 99);
        assert_eq!(quantile(&v, 1000), 100);
        assert_eq!(quantile(&[7], 990), 7);
        assert_eq!(quantile(&[], 500), 0);
    }

    #[test]
    fn counts_become_floats_exactly() {
        assert!((as_f64(0) - 0.0).abs() < f64::EPSILON);
        assert!((as_f64(123_456_789) - 123_456_789.0).abs() < f64::EPSILON);
        assert!((as_f64(1 << 40) - 1_099_511_627_776.0).abs() < 1.0);
    }
}
