//! Counters for `/metrics` in the Prometheus text format.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

const PROTOCOLS: [&str; 5] = ["http1", "http2", "http3", "control", "admin"];

/// The counters of one listener (shared by its TCP, QUIC and control sides).
#[derive(Debug)]
pub struct Metrics {
    /// Per protocol and status 100..=599, lock-free: this is on every request's path.
    requests: Box<[AtomicU64]>,
    latency: [AtomicU64; 11],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    connections: AtomicU64,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    if let Ok(mut g) = m.lock() {
        *g.entry(k).or_insert(0) += 1;
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: (0..PROTOCOLS.len() * 500)
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: Default::default(),
            latency_sum_us: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
            refusals: Mutex::new(BTreeMap::new()),
            connections: AtomicU64::new(0),
        }
    }
}

fn slot(protocol: &str, status: u16) -> Option<usize> {
    let p = PROTOCOLS.iter().position(|x| *x == protocol)?;
    let s = usize::from(status.checked_sub(100)?);
    (s < 500).then_some(p * 500 + s)
}

impl Metrics {
    pub(crate) fn request(&self, protocol: &'static str, status: u16, took: Duration) {
        if let Some(c) = slot(protocol, status).and_then(|i| self.requests.get(i)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let s = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        if let Some(c) = self.latency.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake(&self, ok: bool) {
        let c = if ok {
            &self.handshakes
        } else {
            &self.handshake_failures
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refusal(&self, reason: &'static str) {
        bump(&self.refusals, reason);
    }

    pub(crate) fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times requests were refused for `reason` (a [`crate::HeadError::reason`] or
    /// one of `host`, `path`, `rate`, `connection_limit`, `body`).
    pub fn refusals(&self, reason: &str) -> u64 {
        self.refusals
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|(k, _)| **k == reason)
                    .map(|(_, v)| *v)
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Completed TLS handshakes (TCP and QUIC).
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Requests answered, all protocols and statuses.
    pub fn requests(&self) -> u64 {
        self.requests
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The counters in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# TYPE tianping_http_requests_total counter");
        for (i, c) in self.requests.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v > 0 {
                let p = PROTOCOLS.get(i / 500).unwrap_or(&"other");
                let s = 100 + i % 500;
                let _ = writeln!(
                    o,
                    "tianping_http_requests_total{{protocol=\"{p}\",status=\"{s}\"}} {v}"
                );
            }
        }
        let _ = writeln!(o, "# TYPE tianping_http_request_duration_seconds histogram");
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.latency.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(
                o,
                "tianping_http_request_duration_seconds_bucket{{le=\"{b}\"}} {cum}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "tianping_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(o, "tianping_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(o, "tianping_http_request_duration_seconds_count {count}");
        let _ = writeln!(o, "# TYPE tianping_tls_handshakes_total counter");
        let _ = writeln!(
            o,
            "tianping_tls_handshakes_total{{result=\"ok\"}} {}",
            self.handshakes()
        );
        let _ = writeln!(
            o,
            "tianping_tls_handshakes_total{{result=\"failed\"}} {}",
            self.handshake_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(o, "# TYPE tianping_connections_total counter");
        let _ = writeln!(
            o,
            "tianping_connections_total {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(o, "# TYPE tianping_refusals_total counter");
        if let Ok(g) = self.refusals.lock() {
            for (r, v) in g.iter() {
                let _ = writeln!(o, "tianping_refusals_total{{reason=\"{r}\"}} {v}");
            }
        }
        o
    }
}
