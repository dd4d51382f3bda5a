//! Components' own metrics: counters, gauges and histograms with labels, registered on a
//! [`Registry`] that the admin listener renders in the Prometheus text format beside the
//! listeners' counters ([`crate::serve_admin_with`]).
//!
//! Registering is cheap to repeat: the same name and labels give back the same metric, so a
//! component can register where it counts. A name used for another kind, or with another help
//! text, is refused; names and label names are checked against the Prometheus grammar and label
//! values escaped, so no caller can break the exposition.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;

/// Why a metric could not be registered.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MetricsError {
    /// A metric or label name outside the Prometheus grammar.
    #[error("invalid metric or label name `{0}`")]
    BadName(String),
    /// The name is registered as another kind, with another help text or other buckets.
    #[error("metric `{0}` is already registered differently")]
    Conflict(String),
    /// Histogram bucket bounds that are empty, not finite or not increasing.
    #[error("histogram `{0}` needs increasing finite bucket bounds")]
    BadBuckets(String),
}

/// A counter: only goes up.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge: a value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds `n` (negative to take away).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct HistogramCells {
    bounds: Vec<f64>,
    /// One per bound, then `+Inf`; not cumulative.
    buckets: Vec<AtomicU64>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

/// A histogram of observations into fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCells>);

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Self(Arc::new(HistogramCells {
            bounds: bounds.to_vec(),
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let c = &self.0;
        let i = c
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(c.bounds.len());
        if let Some(b) = c.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let _ = c
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((f64::from_bits(s) + v).to_bits())
            });
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

#[derive(Clone, Debug)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Metric {
    fn kind(&self) -> &'static str {
        match self {
            Self::Counter(_) => "counter",
            Self::Gauge(_) => "gauge",
            Self::Histogram(_) => "histogram",
        }
    }
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: &'static str,
    buckets: Vec<f64>,
    /// By the rendered label set (`{a="1",b="2"}`, or empty).
    series: BTreeMap<String, Metric>,
}

/// The metrics components register for the admin listener.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

fn valid_name(name: &str, colons: bool) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn label_set(labels: &[(&str, &str)]) -> Result<String, MetricsError> {
    if labels.is_empty() {
        return Ok(String::new());
    }
    let mut sorted: Vec<_> = labels.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from("{");
    for (i, (k, v)) in sorted.iter().enumerate() {
        if !valid_name(k, false) || k.starts_with("__") || *k == "le" {
            return Err(MetricsError::BadName((*k).to_string()));
        }
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out.push('}');
    Ok(out)
}

impl Registry {
    /// An empty registry, to share between the components and the admin listener.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn register(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
        make: impl FnOnce() -> Metric,
    ) -> Result<Metric, MetricsError> {
        if !valid_name(name, true) {
            return Err(MetricsError::BadName(name.to_string()));
        }
        let set = label_set(labels)?;
        let metric = make();
        let mut g = self
            .families
            .lock()
            .map_err(|_| MetricsError::Conflict(name.to_string()))?;
        let family = g.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            kind: metric.kind(),
            buckets: buckets.to_vec(),
            series: BTreeMap::new(),
        });
        if family.kind != metric.kind() || family.help != help || family.buckets != buckets {
            return Err(MetricsError::Conflict(name.to_string()));
        }
        Ok(family.series.entry(set).or_insert(metric).clone())
    }

    /// The counter `name` with `labels`, registered on first use.
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, MetricsError> {
        match self.register(name, help, labels, &[], || {
            Metric::Counter(Counter::default())
        })? {
            Metric::Counter(c) => Ok(c),
            _ => Err(MetricsError::Conflict(name.to_string())),
        }
    }

    /// The gauge `name` with `labels`, registered on first use.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, MetricsError> {
        match self.register(name, help, labels, &[], || Metric::Gauge(Gauge::default()))? {
            Metric::Gauge(c) => Ok(c),
            _ => Err(MetricsError::Conflict(name.to_string())),
        }
    }

    /// The histogram `name` with `labels` and the upper bounds `buckets` (increasing, finite;
    /// `+Inf` is added), registered on first use.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        let increasing = buckets.windows(2).all(|w| matches!(w, [a, b] if a < b));
        if buckets.is_empty() || !increasing || !buckets.iter().all(|b| b.is_finite()) {
            return Err(MetricsError::BadBuckets(name.to_string()));
        }
        let make = || Metric::Histogram(Histogram::new(buckets));
        match self.register(name, help, labels, buckets, make)? {
            Metric::Histogram(h) => Ok(h),
            _ => Err(MetricsError::Conflict(name.to_string())),
        }
    }

    /// Every registered metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let Ok(g) = self.families.lock() else {
            return o;
        };
        for (name, f) in g.iter() {
            let help = f.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {}", f.kind);
            for (set, m) in &f.series {
                match m {
                    Metric::Counter(c) => {
                        let _ = writeln!(o, "{name}{set} {}", c.get());
                    }
                    Metric::Gauge(c) => {
                        let _ = writeln!(o, "{name}{set} {}", c.get());
                    }
                    Metric::Histogram(h) => render_histogram(&mut o, name, set, h),
                }
            }
        }
        o
    }
}

fn render_histogram(o: &mut String, name: &str, set: &str, h: &Histogram) {
    // `le` joins the series' own labels.
    let with_le = |le: &str| match set.strip_suffix('}') {
        Some(open) => format!("{open},le=\"{le}\"}}"),
        None => format!("{{le=\"{le}\"}}"),
    };
    let mut cum = 0u64;
    for (i, b) in h.0.buckets.iter().enumerate() {
        cum += b.load(Ordering::Relaxed);
        let le = h.0.bounds.get(i).map_or("+Inf".to_string(), f64::to_string);
        let _ = writeln!(o, "{name}_bucket{} {cum}", with_le(&le));
    }
    let sum = f64::from_bits(h.0.sum.load(Ordering::Relaxed));
    let _ = writeln!(o, "{name}_sum{set} {sum}");
    let _ = writeln!(o, "{name}_count{set} {cum}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms_with_labels() {
        let r = Registry::new();
        let shipped = r
            .counter(
                "tianping_audit_shipped_total",
                "Entries shipped.",
                &[("zone", "a")],
            )
            .unwrap();
        shipped.add(3);
        // Registering again gives the same counter.
        r.counter(
            "tianping_audit_shipped_total",
            "Entries shipped.",
            &[("zone", "a")],
        )
        .unwrap()
        .inc();
        r.counter(
            "tianping_audit_shipped_total",
            "Entries shipped.",
            &[("zone", "b\"\n")],
        )
        .unwrap()
        .inc();
        let queue = r
            .gauge("tianping_queue_depth", "Queued events.", &[])
            .unwrap();
        queue.set(7);
        queue.add(-2);
        let h = r
            .histogram(
                "tianping_commit_seconds",
                "Group commit time.",
                &[("log", "x")],
                &[0.01, 0.1],
            )
            .unwrap();
        for v in [0.005, 0.05, 0.5] {
            h.observe(v);
        }
        assert_eq!(shipped.get(), 4);
        assert_eq!(h.count(), 3);
        let text = r.render();
        let want = "\
# HELP tianping_audit_shipped_total Entries shipped.
# TYPE tianping_audit_shipped_total counter
tianping_audit_shipped_total{zone=\"a\"} 4
tianping_audit_shipped_total{zone=\"b\\\"\\n\"} 1
# HELP tianping_commit_seconds Group commit time.
# TYPE tianping_commit_seconds histogram
tianping_commit_seconds_bucket{log=\"x\",le=\"0.01\"} 1
tianping_commit_seconds_bucket{log=\"x\",le=\"0.1\"} 2
tianping_commit_seconds_bucket{log=\"x\",le=\"+Inf\"} 3
tianping_commit_seconds_sum{log=\"x\"} 0.555
tianping_commit_seconds_count{log=\"x\"} 3
# HELP tianping_queue_depth Queued events.
# TYPE tianping_queue_depth gauge
tianping_queue_depth 5
";
        assert_eq!(text, want);
    }

    #[test]
    fn refuses_bad_names_conflicts_and_buckets() {
        let r = Registry::new();
        assert_eq!(
            r.counter("2bad", "x", &[]).unwrap_err(),
            MetricsError::BadName("2bad".into())
        );
        assert_eq!(
            r.counter("ok", "x", &[("bad-label", "v")]).unwrap_err(),
            MetricsError::BadName("bad-label".into())
        );
        assert!(r.counter("ok", "x", &[("le", "1")]).is_err());
        r.counter("ok", "x", &[]).unwrap();
        assert_eq!(
            r.gauge("ok", "x", &[]).unwrap_err(),
            MetricsError::Conflict("ok".into())
        );
        assert_eq!(
            r.counter("ok", "other help", &[]).unwrap_err(),
            MetricsError::Conflict("ok".into())
        );
        for bad in [&[][..], &[1.0, 0.5][..], &[f64::NAN][..]] {
            assert_eq!(
                r.histogram("h", "x", &[], bad).unwrap_err(),
                MetricsError::BadBuckets("h".into())
            );
        }
    }
}
