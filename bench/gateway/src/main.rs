//! The gateway benchmark (issue 17): a real `tianping gateway --zone private` against nginx as a
//! plain TLS 1.3 reverse proxy in front of the same upstream, and the upstream alone, in one run,
//! on the same cores, with the same load client.
//!
//! ```sh
//! cd bench && cargo run --release -p tianping-bench-gateway -- [--secs 10] [--warm 2]
//!     [--rounds 3] [--conns 64] [--streams 10] [--threads 2] [--client-threads 2]
//!     [--subjects 4096] [--tianping ../target/release/tianping] [--upstream any|h1]
//!     [--only h1,h2,h3,handshakes] [--tianping-before OTHER_TIANPING]
//!     [--gateway-tickets 0|N|default]
//! ```
//!
//! The data folder is made by the `tianping` binary itself (`init`, the `private` zone's policy
//! copy, `idp init`), its IdP served by `tianping idp serve`; the upstream is this binary's
//! `serve-upstream` (a process of its own). Each round measures, per protocol, the upstream
//! alone, nginx, the bare proxy (`serve-proxy`: the gateway's listener and HTTP/2 client with
//! none of its work, see `bare.rs`; not with `--upstream h1`), the gateway with queued audit and
//! the gateway with `--audit-sync` (a gateway process started for each and stopped after it):
//! keep-alive HTTP/1.1 and HTTP/2; HTTP/3
//! (without nginx, unless it was built with `http_v3_module`: Debian's is not); then full TLS
//! handshakes, one request each, against the upstream alone, nginx and the gateway (queued
//! audit). `--only` picks some of `h1`, `h2`, `h3` and `handshakes` (default: all four, in that
//! order). `--tianping-before` adds, to the HTTP/1.1, HTTP/2 and handshake rows, a gateway
//! (queued audit) run from another `tianping` binary (the build before a change) in the same
//! rounds, before the new one in odd rounds and after it in even ones, with the ratio of the two
//! round by round. The gateways send no TLS session tickets (`--tls13-tickets 0`), as nginx here
//! sends none; `--gateway-tickets` sets another count, or `default` for the binary's own. See
//! bench/README.md.

mod bare;
mod handshake;
mod load;
mod quic;
mod setup;
mod upstream;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::load::{Check, Outcome, Proto, Target, as_f64};
use crate::setup::{Bench, Proc, cpu_ticks_of};

/// What any error here is.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.split_first() {
        Some((cmd, rest)) if cmd == "serve-upstream" => upstream::main(rest),
        Some((cmd, rest)) if cmd == "serve-proxy" => bare::main(rest),
        _ => run(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The flags.
#[derive(Debug, Clone)]
pub struct Opts {
    /// The measured window of each measurement, seconds.
    pub secs: u64,
    /// Warm-up before it, seconds.
    pub warm: u64,
    /// Rounds (medians are shown).
    pub rounds: usize,
    /// Keep-alive connections.
    pub conns: usize,
    /// Streams per connection over HTTP/2.
    pub streams: usize,
    /// The servers' CPUs: the gateway's and the upstream's tokio workers, nginx's
    /// `worker_processes`.
    pub threads: usize,
    /// The load client's tokio workers.
    pub client_threads: usize,
    /// People with a bearer token each.
    pub subjects: usize,
    /// The `tianping` binary.
    pub tianping: PathBuf,
    /// Another `tianping` binary (the build before a change) whose gateway (queued audit) is
    /// measured beside this one's in the HTTP/1.1, HTTP/2 and handshake rows.
    pub tianping_before: Option<PathBuf>,
    /// The proxies reach the upstream on its listener offering HTTP/1.1 alone (else the one
    /// offering `h2` too, which the gateway takes: one multiplexed connection).
    pub upstream_h1: bool,
    /// The gateways' `--tls13-tickets` (default 0, as nginx here runs with
    /// `ssl_session_tickets off`); `None` (`--gateway-tickets default`): the binary's default,
    /// for a binary older than the flag.
    pub gateway_tickets: Option<usize>,
    /// The measurements to make each round, in this order.
    pub only: Vec<Measure>,
}

/// One kind of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Requests over keep-alive connections of this protocol.
    Req(Proto),
    /// Full TLS handshakes, one HTTP/1.1 request each.
    Handshakes,
}

impl Measure {
    /// Every measurement, in the order of a round.
    pub const ALL: [Self; 4] = [
        Self::Req(Proto::H1),
        Self::Req(Proto::H2),
        Self::Req(Proto::H3),
        Self::Handshakes,
    ];

    /// As the tables name it.
    fn name(self) -> &'static str {
        match self {
            Self::Req(p) => p.name(),
            Self::Handshakes => "full TLS 1.3 handshakes",
        }
    }

    /// The measurements named in `--only`'s comma-separated list, in a round's order.
    fn parse_list(list: &str) -> Res<Vec<Self>> {
        let mut want = Vec::new();
        for w in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            want.push(match w {
                "h1" => Self::Req(Proto::H1),
                "h2" => Self::Req(Proto::H2),
                "h3" => Self::Req(Proto::H3),
                "handshakes" => Self::Handshakes,
                other => {
                    return Err(format!(
                        "--only takes h1, h2, h3 and handshakes, comma-separated, not `{other}`"
                    )
                    .into());
                }
            });
        }
        if want.is_empty() {
            return Err("--only needs at least one of h1, h2, h3, handshakes".into());
        }
        Ok(Self::ALL.into_iter().filter(|m| want.contains(m)).collect())
    }
}

fn opts(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        secs: 10,
        warm: 2,
        rounds: 3,
        conns: 64,
        streams: 10,
        threads: 2,
        client_threads: 2,
        subjects: 4096,
        tianping: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/release/tianping"
        )),
        tianping_before: None,
        upstream_h1: false,
        gateway_tickets: Some(0),
        only: Measure::ALL.to_vec(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secs" => o.secs = value.parse()?,
            "--warm" => o.warm = value.parse()?,
            "--rounds" => o.rounds = value.parse()?,
            "--conns" => o.conns = value.parse()?,
            "--streams" => o.streams = value.parse()?,
            "--threads" => o.threads = value.parse()?,
            "--client-threads" => o.client_threads = value.parse()?,
            "--subjects" => o.subjects = value.parse()?,
            "--tianping" => o.tianping = PathBuf::from(value),
            "--tianping-before" => o.tianping_before = Some(PathBuf::from(value)),
            "--only" => o.only = Measure::parse_list(value)?,
            "--gateway-tickets" => {
                o.gateway_tickets = match value.as_str() {
                    "default" => None,
                    n => Some(n.parse()?),
                }
            }
            "--upstream" => {
                o.upstream_h1 = match value.as_str() {
                    "h1" => true,
                    "any" => false,
                    v => return Err(format!("--upstream h1 or any, not {v}").into()),
                }
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if o.conns == 0 || o.rounds == 0 || o.secs == 0 || o.subjects == 0 {
        return Err("--conns, --rounds, --secs and --subjects must be at least 1".into());
    }
    Ok(o)
}

/// The four servers measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Upstream,
    Nginx,
    /// The gateway's parts without its work (`serve-proxy`; not with `--upstream h1`).
    Bare,
    Gateway,
    GatewaySync,
    /// The gateway of `--tianping-before`'s binary (queued audit; not over HTTP/3).
    GatewayBefore,
}

impl Who {
    /// Who is measured in `m`: no nginx over HTTP/3 (the configuration here has no `listen
    /// quic`, which Debian's nginx 1.22 lacks), the handshakes with the gateway's queued audit
    /// only.
    fn of(m: Measure) -> Vec<Self> {
        match m {
            Measure::Req(Proto::H3) => vec![Self::Upstream, Self::Gateway, Self::GatewaySync],
            Measure::Req(_) => vec![
                Self::Upstream,
                Self::Nginx,
                Self::Bare,
                Self::Gateway,
                Self::GatewayBefore,
                Self::GatewaySync,
            ],
            Measure::Handshakes => vec![
                Self::Upstream,
                Self::Nginx,
                Self::Gateway,
                Self::GatewayBefore,
            ],
        }
    }

    /// Who is measured in `m` in round `round` of this run: the gateway before a change only
    /// when its binary was given, before the new one in odd rounds and after it in even ones
    /// (so neither always runs on the cores the other just warmed); the bare proxy only when
    /// it runs.
    fn in_round(m: Measure, round: usize, before: bool, bare: bool) -> Vec<Self> {
        let mut v: Vec<Self> = Self::of(m)
            .into_iter()
            .filter(|w| before || *w != Self::GatewayBefore)
            .filter(|w| bare || *w != Self::Bare)
            .collect();
        if round % 2 == 1
            && let (Some(g), Some(b)) = (
                v.iter().position(|w| *w == Self::Gateway),
                v.iter().position(|w| *w == Self::GatewayBefore),
            )
        {
            v.swap(g, b);
        }
        v
    }

    fn name(self) -> &'static str {
        match self {
            Self::Upstream => "upstream alone",
            Self::Nginx => "nginx",
            Self::Bare => "bare proxy (the gateway's parts, none of its work)",
            Self::Gateway => "gateway (queued audit)",
            Self::GatewaySync => "gateway (--audit-sync)",
            Self::GatewayBefore => "gateway before (--tianping-before, queued audit)",
        }
    }
}

/// One measurement: the load's outcome and the CPU time of the processes serving it.
#[derive(Debug, Clone, Default)]
struct Row {
    out: Outcome,
    /// The proxy's CPU seconds over the whole measurement (warm-up included): the gateway, or
    /// nginx's master and workers; the upstream's for the upstream alone.
    proxy_cpu: f64,
    /// The upstream's CPU seconds (0 for the upstream alone: it is `proxy_cpu` there).
    upstream_cpu: f64,
    /// The IdP's CPU seconds (gateway rows).
    idp_cpu: f64,
    /// The load client's CPU seconds.
    client_cpu: f64,
    /// Requests of the whole measurement (warm-up included), for the per-CPU-second figures.
    all_requests: u64,
    /// How long the load ran (warm-up and window), which the CPU readings span, seconds.
    elapsed: f64,
    /// Audit events made durable by the gateway during the measurement (gateway rows).
    audit_durable: u64,
    /// HTTP/3 rows: datagrams dropped at the server's UDP socket (its receive buffer full)
    /// during the measurement.
    udp_server_drops: u64,
    /// HTTP/3 rows: datagrams dropped at any UDP socket of the machine (the load client's
    /// and others' too) during the measurement.
    udp_all_drops: u64,
}

impl Row {
    /// Requests per CPU-second of the proxy alone.
    fn per_proxy_cpu(&self) -> f64 {
        as_f64(self.all_requests) / self.proxy_cpu.max(1e-9)
    }

    /// Requests per CPU-second of every server process (proxy, upstream, IdP).
    fn per_server_cpu(&self) -> f64 {
        as_f64(self.all_requests) / (self.proxy_cpu + self.upstream_cpu + self.idp_cpu).max(1e-9)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn run(args: &[String]) -> Res<()> {
    let o = opts(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.client_threads.max(1))
        .enable_all()
        .build()?;
    let bench = Bench::prepare(&o)?;
    println!(
        "== {} rounds, {} s measured after {} s warm-up, {} connections ({} streams each over \
         HTTP/2), servers on {} CPUs (gateway and upstream: {} tokio workers; nginx: \
         worker_processes {}), load client {} workers, {} subjects, {} cores, load average {}",
        o.rounds,
        o.secs,
        o.warm,
        o.conns,
        o.streams,
        o.threads,
        o.threads,
        o.threads,
        o.client_threads,
        o.subjects,
        std::thread::available_parallelism().map_or(0, usize::from),
        loadavg()
    );
    println!("== {}", bench.describe());
    println!(
        "== the proxies reach the upstream on its listener offering {}",
        if o.upstream_h1 {
            "HTTP/1.1 alone"
        } else {
            "h2 and HTTP/1.1 by ALPN"
        }
    );
    println!(
        "== measured: {}; nginx built {} http_v3_module{}",
        o.only
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        if bench.nginx_has_http3() {
            "with"
        } else {
            "without"
        },
        if o.only.contains(&Measure::Req(Proto::H3)) {
            " (no nginx rows over HTTP/3)"
        } else {
            ""
        }
    );
    let mut rows: Vec<(Who, Measure, Row)> = Vec::new();
    for round in 1..=o.rounds {
        for &m in &o.only {
            for who in Who::in_round(m, round, o.tianping_before.is_some(), bench.has_bare()) {
                let row = rt.block_on(measure(&bench, &o, who, m, round == 1))?;
                eprintln!(
                    "round {round} {} {}: {:.0} {}/s, p50 {} µs, p99 {} µs, proxy {:.2} CPU-s, \
                     upstream {:.2}, idp {:.2}, client {:.2}, {} errors{}{}",
                    who.name(),
                    m.name(),
                    row.out.rate(),
                    if m == Measure::Handshakes {
                        "handshakes"
                    } else {
                        "req"
                    },
                    row.out.p50_us,
                    row.out.p99_us,
                    row.proxy_cpu,
                    row.upstream_cpu,
                    row.idp_cpu,
                    row.client_cpu,
                    row.out.errors,
                    row.out
                        .first_error
                        .as_ref()
                        .map(|e| format!(" (first: {e})"))
                        .unwrap_or_default(),
                    if m == Measure::Req(Proto::H3) {
                        format!(
                            ", UDP datagrams dropped: {} at the server's socket, {} in all; \
                             {} streams stopped by their connection's close{}",
                            row.udp_server_drops,
                            row.udp_all_drops,
                            row.out.lost,
                            row.out
                                .first_lost
                                .as_ref()
                                .map(|e| format!(" (first: {e})"))
                                .unwrap_or_default()
                        )
                    } else {
                        String::new()
                    }
                );
                if row.out.errors > 0 {
                    return Err(format!(
                        "{} over {}: {} errors, the first: {}",
                        who.name(),
                        m.name(),
                        row.out.errors,
                        row.out.first_error.unwrap_or_default()
                    )
                    .into());
                }
                rows.push((who, m, row));
            }
        }
    }
    println!("== load average after: {}", loadavg());
    print!("{}", table(&rows));
    print!("{}", h3_table(&rows));
    print!("{}", handshake_table(&rows));
    bench.stop();
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The CPU seconds of `pids` (and their children) between two readings.
struct Cpu(Vec<u32>);

impl Cpu {
    fn ticks(&self) -> u64 {
        self.0.iter().map(|p| cpu_ticks_of(*p)).sum()
    }
}

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

fn secs_of(ticks: u64) -> f64 {
    as_f64(ticks) / USER_HZ
}

async fn measure(bench: &Bench, o: &Opts, who: Who, m: Measure, verbose: bool) -> Res<Row> {
    // the gateway of each row is a process of its own, started for it
    let gateway: Option<Proc> = match who {
        Who::Gateway => Some(bench.start_gateway(false, &o.tianping)?),
        Who::GatewaySync => Some(bench.start_gateway(true, &o.tianping)?),
        Who::GatewayBefore => {
            Some(bench.start_gateway(false, o.tianping_before.as_ref().unwrap_or(&o.tianping))?)
        }
        _ => None,
    };
    let target: Arc<Target> = Arc::new(match who {
        Who::Upstream if m == Measure::Req(Proto::H3) => bench.upstream_h3_target(),
        Who::Upstream => bench.upstream_target(),
        Who::Nginx => bench.nginx_target(),
        Who::Bare => bench.bare_target()?,
        Who::Gateway | Who::GatewaySync | Who::GatewayBefore => {
            bench.gateway_target(gateway.as_ref())?
        }
    });
    let check = Check {
        assertion: matches!(who, Who::Gateway | Who::GatewaySync | Who::GatewayBefore),
    };
    let seen = match m {
        Measure::Req(proto) => load::once(&target, proto, check).await?,
        Measure::Handshakes => handshake::once(&target, check).await?,
    };
    if verbose {
        let probe = match m {
            Measure::Req(proto) => load::probe(&target, proto).await?,
            Measure::Handshakes => "a new TCP connection and TLS session each".into(),
        };
        println!("== {} over {}: {probe}; {seen}", who.name(), m.name());
    }
    let proxy = Cpu(match who {
        Who::Upstream => vec![bench.upstream_pid()],
        Who::Nginx => bench.nginx_pids(),
        Who::Bare => bench.bare_pids(),
        Who::Gateway | Who::GatewaySync | Who::GatewayBefore => {
            gateway.iter().map(Proc::pid).collect()
        }
    });
    let up = Cpu(if who == Who::Upstream {
        vec![]
    } else {
        vec![bench.upstream_pid()]
    });
    let idp = Cpu(if gateway.is_some() {
        vec![bench.idp_pid()]
    } else {
        vec![]
    });
    let me = Cpu(vec![std::process::id()]);
    let durable0 = match &gateway {
        Some(_) => bench.gateway_durable().await?,
        None => 0,
    };
    let udp = m == Measure::Req(Proto::H3);
    let port = target.addr.port();
    let (s0, a0) = if udp {
        (quic::udp_drops_at(port), quic::udp_rcvbuf_errors())
    } else {
        (0, 0)
    };
    let (p0, u0, i0, c0) = (proxy.ticks(), up.ticks(), idp.ticks(), me.ticks());
    let warm = Duration::from_secs(o.warm);
    let secs = Duration::from_secs(o.secs);
    let t0 = std::time::Instant::now();
    let out = match m {
        Measure::Req(proto) => {
            load::run(
                Arc::clone(&target),
                proto,
                o.conns,
                if proto == Proto::H1 { 1 } else { o.streams },
                warm,
                secs,
                check,
            )
            .await
        }
        Measure::Handshakes => {
            handshake::run(Arc::clone(&target), o.conns, warm, secs, check).await
        }
    };
    let elapsed = t0.elapsed();
    let (p1, u1, i1, c1) = (proxy.ticks(), up.ticks(), idp.ticks(), me.ticks());
    let (s1, a1) = if udp {
        (quic::udp_drops_at(port), quic::udp_rcvbuf_errors())
    } else {
        (0, 0)
    };
    let audit_durable = match &gateway {
        Some(_) => bench.gateway_durable().await?.saturating_sub(durable0),
        None => 0,
    };
    if let Some(g) = gateway {
        bench.stop_gateway(g)?;
    }
    Ok(Row {
        proxy_cpu: secs_of(p1.saturating_sub(p0)),
        upstream_cpu: secs_of(u1.saturating_sub(u0)),
        idp_cpu: secs_of(i1.saturating_sub(i0)),
        client_cpu: secs_of(c1.saturating_sub(c0)),
        all_requests: out.total,
        elapsed: elapsed.as_secs_f64(),
        audit_durable,
        udp_server_drops: s1.saturating_sub(s0),
        udp_all_drops: a1.saturating_sub(a0),
        out,
    })
}

/// The rows of `who` in `m`, in round order.
fn rows_of(rows: &[(Who, Measure, Row)], who: Who, m: Measure) -> Vec<&Row> {
    rows.iter()
        .filter(|(w, mm, _)| *w == who && *mm == m)
        .map(|(_, _, r)| r)
        .collect()
}

/// The median over rounds of `f` of `who`'s rows in `m`.
fn med(rows: &[(Who, Measure, Row)], who: Who, m: Measure, f: &dyn Fn(&Row) -> f64) -> f64 {
    median(rows_of(rows, who, m).into_iter().map(f).collect())
}

/// The per-round ratios of `f` of `who` to `f` of `base` in `m`, round by round.
fn ratios(
    rows: &[(Who, Measure, Row)],
    who: Who,
    base: Who,
    m: Measure,
    f: &dyn Fn(&Row) -> f64,
) -> Vec<f64> {
    rows_of(rows, who, m)
        .iter()
        .zip(rows_of(rows, base, m))
        .map(|(g, b)| f(g) / f(b).max(1e-9))
        .collect()
}

/// Ratios of each round, as a list (`1.05, 0.98, 1.12`).
fn rounds(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The request measurements present, in a round's order.
fn request_protos(rows: &[(Who, Measure, Row)]) -> Vec<Proto> {
    [Proto::H1, Proto::H2, Proto::H3]
        .into_iter()
        .filter(|p| rows.iter().any(|(_, m, _)| *m == Measure::Req(*p)))
        .collect()
}

fn table(rows: &[(Who, Measure, Row)]) -> String {
    let mut s = String::new();
    let protos = request_protos(rows);
    if protos.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\n| protocol | server | req/s | p50 ms | p99 ms | req per proxy CPU-s | req per server CPU-s (proxy + upstream + IdP) | proxy CPU share | upstream CPU share | client CPU share | audit events durable / requests |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for &proto in &protos {
        let m = Measure::Req(proto);
        for who in Who::of(m) {
            if rows_of(rows, who, m).is_empty() {
                continue;
            }
            let med = |f: &dyn Fn(&Row) -> f64| med(rows, who, m, f);
            let share = |cpu: &dyn Fn(&Row) -> f64| med(&|r: &Row| cpu(r) / r.elapsed.max(1e-9));
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                proto.name(),
                who.name(),
                med(&|r| r.out.rate()),
                med(&|r| as_f64(r.out.p50_us) / 1000.0),
                med(&|r| as_f64(r.out.p99_us) / 1000.0),
                med(&Row::per_proxy_cpu),
                med(&Row::per_server_cpu),
                share(&|r| r.proxy_cpu),
                share(&|r| r.upstream_cpu),
                share(&|r| r.client_cpu),
                if matches!(who, Who::Gateway | Who::GatewaySync | Who::GatewayBefore) {
                    format!(
                        "{:.3}",
                        med(&|r| as_f64(r.audit_durable) / as_f64(r.all_requests.max(1)))
                    )
                } else {
                    "-".into()
                }
            );
        }
    }
    let with_nginx: Vec<Proto> = protos
        .iter()
        .copied()
        .filter(|p| Who::of(Measure::Req(*p)).contains(&Who::Nginx))
        .collect();
    if with_nginx.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\nRatios in the same run (medians of the per-round ratios):\n"
    );
    let _ = writeln!(
        s,
        "| protocol | gateway mode | req/s gateway / nginx | per proxy CPU-s gateway / nginx | p99 gateway / nginx | req/s gateway / upstream alone |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for proto in with_nginx {
        let m = Measure::Req(proto);
        for who in [
            Who::Bare,
            Who::Gateway,
            Who::GatewayBefore,
            Who::GatewaySync,
        ] {
            if rows_of(rows, who, m).is_empty() {
                continue;
            }
            let ratio = |f: &dyn Fn(&Row) -> f64, base: Who| median(ratios(rows, who, base, m, f));
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                proto.name(),
                match who {
                    Who::Gateway => "queued",
                    Who::GatewayBefore => "queued, binary before the change",
                    Who::Bare => "none: the bare proxy",
                    _ => "sync",
                },
                ratio(&|r| r.out.rate(), Who::Nginx),
                ratio(&Row::per_proxy_cpu, Who::Nginx),
                ratio(&|r| as_f64(r.out.p99_us), Who::Nginx),
                ratio(&|r| r.out.rate(), Who::Upstream),
            );
        }
    }
    s.push_str(&ratio_pair_table(
        rows,
        &protos,
        Who::Bare,
        "gateway / bare proxy, per proxy CPU-s: median | round by round | bare proxy / nginx, per proxy CPU-s: median",
        [
            (Who::Gateway, Who::Bare, &Row::per_proxy_cpu),
            (Who::Bare, Who::Nginx, &Row::per_proxy_cpu),
        ],
    ));
    s.push_str(&ratio_pair_table(
        rows,
        &protos,
        Who::GatewayBefore,
        "gateway / gateway before, per proxy CPU-s: median | round by round | req/s: median",
        [
            (Who::Gateway, Who::GatewayBefore, &Row::per_proxy_cpu),
            (Who::Gateway, Who::GatewayBefore, &|r| r.out.rate()),
        ],
    ));
    s
}

/// One ratio of a table: `who`'s figure over `base`'s, per round.
type Ratio<'a> = (Who, Who, &'a dyn Fn(&Row) -> f64);

/// A figure over a base's, one `(who, base, figure)` pair per table, its median and its rounds,
/// for each request protocol in which `present` was measured: the gateway against the build
/// before it, the gateway against the bare proxy and the bare proxy against nginx.
fn ratio_pair_table(
    rows: &[(Who, Measure, Row)],
    protos: &[Proto],
    present: Who,
    header: &str,
    pair: [Ratio<'_>; 2],
) -> String {
    let mut s = String::new();
    let with: Vec<Proto> = protos
        .iter()
        .copied()
        .filter(|p| !rows_of(rows, present, Measure::Req(*p)).is_empty())
        .collect();
    if with.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\n| protocol | {header} | round by round |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for proto in with {
        let m = Measure::Req(proto);
        let _ = write!(s, "| {} |", proto.name());
        for (who, base, f) in pair {
            let r = ratios(rows, who, base, m, f);
            let _ = write!(s, " {:.2} | {} |", median(r.clone()), rounds(&r));
        }
        s.push('\n');
    }
    s
}

/// HTTP/3 beside HTTP/2 of the same server in the same rounds (nginx has no HTTP/3 rows).
fn h3_table(rows: &[(Who, Measure, Row)]) -> String {
    let mut s = String::new();
    let (h2, h3) = (Measure::Req(Proto::H2), Measure::Req(Proto::H3));
    if rows_of(rows, Who::Gateway, h3).is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\nHTTP/3 (medians; ratios are medians of the per-round ratios):\n"
    );
    let _ = writeln!(
        s,
        "| server | HTTP/3 req/s | HTTP/2 req/s | HTTP/3 / HTTP/2 req/s | HTTP/3 / HTTP/2 per proxy CPU-s | HTTP/3 req/s / upstream alone's HTTP/3 | UDP datagrams dropped at the server / in all (median) | streams stopped by a connection close (all rounds) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for who in Who::of(h3) {
        let g3 = rows_of(rows, who, h3);
        let g2 = rows_of(rows, who, h2);
        let pair = |f: &dyn Fn(&Row) -> f64| {
            if g2.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "{:.2}",
                    median(
                        g3.iter()
                            .zip(&g2)
                            .map(|(a, b)| f(a) / f(b).max(1e-9))
                            .collect()
                    )
                )
            }
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} | {} | {:.2} | {:.0} / {:.0} | {} |",
            who.name(),
            med(rows, who, h3, &|r| r.out.rate()),
            if g2.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.0}", med(rows, who, h2, &|r| r.out.rate()))
            },
            pair(&|r| r.out.rate()),
            pair(&Row::per_proxy_cpu),
            median(ratios(rows, who, Who::Upstream, h3, &|r| r.out.rate())),
            med(rows, who, h3, &|r| as_f64(r.udp_server_drops)),
            med(rows, who, h3, &|r| as_f64(r.udp_all_drops)),
            g3.iter().map(|r| r.out.lost).sum::<u64>(),
        );
    }
    s
}

/// Full handshakes: the rates, the CPU per handshake, what was negotiated, and the ratio to
/// nginx per proxy CPU-second round by round (issue 17's target: at least 2 in every run).
fn handshake_table(rows: &[(Who, Measure, Row)]) -> String {
    let mut s = String::new();
    let m = Measure::Handshakes;
    let whos: Vec<Who> = Who::of(m)
        .into_iter()
        .filter(|w| !rows_of(rows, *w, m).is_empty())
        .collect();
    if whos.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\nFull TLS 1.3 handshakes, a new connection with one HTTP/1.1 request each (medians):\n"
    );
    let _ = writeln!(
        s,
        "| server | handshakes/s | p50 ms | p99 ms | handshakes per proxy CPU-s | proxy CPU µs per handshake | handshakes per server CPU-s (proxy + upstream + IdP) | proxy CPU share | upstream CPU share | client CPU share | negotiated (connections of the window, all rounds) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for &who in &whos {
        let med = |f: &dyn Fn(&Row) -> f64| med(rows, who, m, f);
        let share = |cpu: &dyn Fn(&Row) -> f64| med(&|r: &Row| cpu(r) / r.elapsed.max(1e-9));
        let mut seen: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for r in rows_of(rows, who, m) {
            for (k, n) in &r.out.negotiated {
                let e = seen.entry(k.as_str()).or_insert(0);
                *e = e.saturating_add(*n);
            }
        }
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            who.name(),
            med(&|r| r.out.rate()),
            med(&|r| as_f64(r.out.p50_us) / 1000.0),
            med(&|r| as_f64(r.out.p99_us) / 1000.0),
            med(&Row::per_proxy_cpu),
            1e6 / med(&Row::per_proxy_cpu).max(1e-9),
            med(&Row::per_server_cpu),
            share(&|r| r.proxy_cpu),
            share(&|r| r.upstream_cpu),
            share(&|r| r.client_cpu),
            seen.iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let per_cpu = ratios(rows, Who::Gateway, Who::Nginx, m, &Row::per_proxy_cpu);
    if per_cpu.is_empty() {
        return s;
    }
    let rate = ratios(rows, Who::Gateway, Who::Nginx, m, &|r| r.out.rate());
    let server = ratios(rows, Who::Gateway, Who::Nginx, m, &Row::per_server_cpu);
    // one row of ratios: its label, the median, each round, and the last column if the table has one
    let row = |s: &mut String, label: &str, v: &[f64], last: Option<&str>| {
        let last = last.map(|l| format!(" {l} |")).unwrap_or_default();
        let _ = writeln!(
            s,
            "| {label} | {:.2} | {} |{last}",
            median(v.to_vec()),
            rounds(v)
        );
    };
    let _ = writeln!(
        s,
        "\n| gateway / nginx, full handshakes | median | round by round | at least 2 in every round |"
    );
    let _ = writeln!(s, "|---|---|---|---|");
    let met = if per_cpu.iter().all(|x| *x >= 2.0) {
        "yes"
    } else {
        "no"
    };
    row(&mut s, "per proxy CPU-s", &per_cpu, Some(met));
    row(
        &mut s,
        "per server CPU-s (proxy + upstream + IdP)",
        &server,
        Some("-"),
    );
    row(&mut s, "handshakes/s", &rate, Some("-"));
    let before = ratios(
        rows,
        Who::Gateway,
        Who::GatewayBefore,
        m,
        &Row::per_proxy_cpu,
    );
    if !before.is_empty() {
        let was = ratios(rows, Who::GatewayBefore, Who::Nginx, m, &Row::per_proxy_cpu);
        let rate = ratios(rows, Who::Gateway, Who::GatewayBefore, m, &|r| r.out.rate());
        let _ = writeln!(
            s,
            "\n| the gateway before the change, full handshakes | median | round by round |"
        );
        let _ = writeln!(s, "|---|---|---|");
        row(
            &mut s,
            "gateway before / nginx, per proxy CPU-s",
            &was,
            None,
        );
        row(
            &mut s,
            "gateway / gateway before, per proxy CPU-s",
            &before,
            None,
        );
        row(
            &mut s,
            "gateway / gateway before, handshakes/s",
            &rate,
            None,
        );
    }
    s
}
