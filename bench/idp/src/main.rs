//! The IdP benchmark (issue 11): tianping's provider against node `oidc-provider` in one run, on
//! the same cores, with the same load client, both over TLS 1.3 with the same certificate (ECDSA
//! P-256), both issuing ES256 JWT access tokens (`typ: at+jwt`), both rotating refresh tokens on
//! every use; then password sign-ins through tianping's check against bare argon2id.
//!
//! ```sh
//! cd bench && cargo run --release -p tianping-bench-idp -- [--secs 10] [--warm 2] [--conns 32]
//!     [--rounds 3] [--families 4096] [--threads 2] [--pw-secs 20] [--pw-rounds 3] [--parts-secs 3]
//! ```
//!
//! Each server runs as a process of its own: tianping's is this binary (`serve-tianping`, a
//! multi-threaded runtime of `--threads` workers, the sled store and the durable audit log in a
//! temporary folder), oidc-provider is `node oidc-provider/server.mjs` (one process, as node
//! runs). Before measuring, one token of each is verified against that provider's JWKS by
//! tianping's own JWT verifier. Then, in each round, client_credentials and refresh grants for
//! `--secs` after `--warm` of warm-up, tianping then node back to back. See README.md.

mod load;
mod parts;
mod passwords;
mod serve;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tianping_certs::{CaCert, CertKind, KeyAlg, LeafRequest};
use tianping_core::UnixTime;
use tianping_idp::{keys_from_jwks, verify_with};
use tokio_rustls::TlsConnector;

use crate::load::{Grant, Load, Outcome, Target};

/// What any error here is.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The host name both servers answer for (SNI and `Host`).
pub const HOST: &str = "idp.private.tianping.localhost";
/// The bench client, registered in both providers with `client_secret_basic`.
pub const CLIENT_ID: &str = "bench-app";
/// Its secret.
pub const CLIENT_SECRET: &str = "bench-secret-0123456789";
/// The scope asked for with client_credentials (in oidc-provider, the resource server's).
pub const SCOPE: &str = "cases.read";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.split_first() {
        Some((cmd, rest)) if cmd == "serve-tianping" => serve::main(rest),
        _ => run(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idp-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Opts {
    secs: u64,
    warm: u64,
    conns: usize,
    rounds: usize,
    families: usize,
    threads: usize,
    pw_secs: u64,
    pw_rounds: usize,
    parts_secs: u64,
}

fn opts(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        secs: 10,
        warm: 2,
        conns: 32,
        rounds: 3,
        families: 4096,
        threads: 2,
        pw_secs: 20,
        pw_rounds: 3,
        parts_secs: 3,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secs" => o.secs = value.parse()?,
            "--warm" => o.warm = value.parse()?,
            "--conns" => o.conns = value.parse()?,
            "--rounds" => o.rounds = value.parse()?,
            "--families" => o.families = value.parse()?,
            "--threads" => o.threads = value.parse()?,
            "--pw-secs" => o.pw_secs = value.parse()?,
            "--pw-rounds" => o.pw_rounds = value.parse()?,
            "--parts-secs" => o.parts_secs = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if o.families < o.conns {
        return Err("--families must be at least --conns".into());
    }
    Ok(o)
}

/// The temporary folder, removed at the end.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process; its standard input is held open and closed to stop it.
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for `file` (written by the server once it listens), the server still running.
    fn wait_for(&mut self, file: &Path) -> Res<String> {
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if let Ok(s) = std::fs::read_to_string(file) {
                return Ok(s.trim().to_owned());
            }
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("{} exited with {status}:\n{log}", self.name).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("{} did not write {} in time", self.name, file.display()).into())
    }
}

fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Res<Server> {
    let err = std::fs::File::create(&log)?;
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(Server { name, child, log })
}

/// A root, a zone CA and the servers' leaf (for [`HOST`]), as the zone's TLS would be.
fn pki(dir: &Path) -> Res<()> {
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let root = CaCert::new_root("Court", KeyAlg::EcP256, now)?;
    let zone = root.new_zone(&"private".parse()?, "Court", KeyAlg::EcP256, now)?;
    let mut req = LeafRequest::new(CertKind::Server, "idp");
    req.dns = vec![HOST.into()];
    let leaf = zone.issue(&req, now)?;
    std::fs::write(dir.join("tls.pem"), &leaf.chain_pem)?;
    std::fs::write(dir.join("tls.key"), leaf.key_pem.expose())?;
    std::fs::write(dir.join("ca.pem"), root.cert_pem())?;
    Ok(())
}

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// `npm ci` when the pinned oidc-provider is not installed yet.
fn ensure_node_modules() -> Res<String> {
    let dir = node_dir();
    let pkg = dir.join("node_modules/oidc-provider/package.json");
    if !pkg.exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()?;
        if !status.success() {
            return Err(format!("npm ci in {} failed: {status}", dir.display()).into());
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(pkg)?)?;
    Ok(v.get("version")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_owned())
}

fn lines(path: &Path) -> Res<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// One client_credentials token of `target`, verified against its JWKS by tianping's verifier;
/// returns a description (claims, suite).
async fn check_target(target: &Target, connector: &TlsConnector) -> Res<String> {
    let mut tls = load::connect(target, connector).await?;
    let suite = format!(
        "{:?}",
        tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite())
    );
    let mut buf = Vec::new();
    let (status, jwks) =
        load::exchange(&mut tls, &load::get_request(target, "/jwks"), &mut buf).await?;
    if status != 200 {
        return Err(format!("GET /jwks: {status}").into());
    }
    let keys = keys_from_jwks(&serde_json::from_slice(&jwks)?)?;
    let form = format!("grant_type=client_credentials&scope={SCOPE}");
    let (status, body) =
        load::exchange(&mut tls, &load::token_request(target, &form), &mut buf).await?;
    if status != 200 {
        return Err(format!(
            "client_credentials: {status} {}",
            String::from_utf8_lossy(&body)
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let at = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .ok_or("no access_token")?;
    let jwt = verify_with(at, &keys).map_err(|e| format!("access token: {e}"))?;
    if jwt.typ() != Some("at+jwt") {
        return Err(format!("typ {:?}, not at+jwt", jwt.typ()).into());
    }
    let algs: Vec<String> = keys
        .iter()
        .map(|k| format!("{:?}", k.key.algorithm()))
        .collect();
    Ok(format!(
        "{} bytes, typ at+jwt, signed by {algs:?}, sub {:?}, aud {}, scope {:?}; TLS {suite}",
        at.len(),
        jwt.str_claim("sub").unwrap_or_default(),
        jwt.claims
            .get("aud")
            .map(ToString::to_string)
            .unwrap_or_default(),
        jwt.str_claim("scope").unwrap_or_default(),
    ))
}

/// One figure of a password round.
type RoundField = fn(&passwords::Round) -> f64;

/// The median of some values.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[derive(Default)]
struct Column {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    server_cpu: Vec<f64>,
    client_cpu: Vec<f64>,
    per_cpu: Vec<f64>,
}

impl Column {
    fn push(&mut self, o: &Outcome) {
        self.rate.push(o.rate());
        self.p50.push(to_f64(o.p50_us) / 1000.0);
        self.p99.push(to_f64(o.p99_us) / 1000.0);
        self.server_cpu.push(o.server_cpu);
        self.client_cpu.push(o.client_cpu);
        self.per_cpu.push(if o.server_cpu > 0.0 {
            o.rate() / o.server_cpu
        } else {
            0.0
        });
    }
}

fn to_f64(v: u64) -> f64 {
    f64::from(u32::try_from(v).unwrap_or(u32::MAX))
}

fn run(args: &[String]) -> Res<()> {
    let o = opts(args)?;
    let work =
        WorkDir(std::env::temp_dir().join(format!("tianping-bench-idp.{}", std::process::id())));
    std::fs::create_dir_all(&work.0)?;
    let dir = work.0.clone();
    pki(&dir)?;
    let version = ensure_node_modules()?;
    let node_version = Command::new("node").arg("--version").output()?;
    let node_version = String::from_utf8_lossy(&node_version.stdout)
        .trim()
        .to_owned();

    let mut tp_cmd = Command::new(std::env::current_exe()?);
    tp_cmd.args([
        "serve-tianping".to_owned(),
        dir.display().to_string(),
        o.families.to_string(),
        o.threads.to_string(),
    ]);
    let mut tp = spawn("tianping", tp_cmd, dir.join("tp.log"))?;
    let mut node_cmd = Command::new("node");
    node_cmd
        .arg(node_dir().join("server.mjs"))
        .arg(&dir)
        .arg(o.families.to_string());
    let mut node = spawn("oidc-provider", node_cmd, dir.join("node.log"))?;
    let tp_addr: SocketAddr = tp.wait_for(&dir.join("tp.addr"))?.parse()?;
    let node_addr: SocketAddr = node.wait_for(&dir.join("node.addr"))?.parse()?;
    let mut families = [
        lines(&dir.join("tp-refresh.txt"))?,
        lines(&dir.join("node-refresh.txt"))?,
    ];

    let mut tls = tianping_certs::client_config(&std::fs::read(dir.join("ca.pem"))?, None)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(tls));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.threads.max(1))
        .enable_all()
        .build()?;
    let target = |i: usize| {
        let addr = if i == 0 { tp_addr } else { node_addr };
        Target::new(addr, HOST, CLIENT_ID, CLIENT_SECRET)
    };
    let pids = [tp.pid(), node.pid()];
    let names = ["tianping", "oidc-provider"];
    let load = Load {
        conns: o.conns,
        warm_up: Duration::from_secs(o.warm),
        window: Duration::from_secs(o.secs),
        scope: SCOPE.into(),
    };
    let loadavg = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut report = String::new();
    writeln!(
        report,
        "== {} rounds; {} s per measurement after {} s warm-up; {} connections; {} refresh families each; {cores} cores; load average {} at the start",
        o.rounds,
        o.secs,
        o.warm,
        o.conns,
        o.families,
        loadavg()
    )?;
    writeln!(
        report,
        "== tianping: release build, one process, tokio multi-threaded runtime of {} workers, sled store and durable audit log; oidc-provider {version} on node {node_version}, one process",
        o.threads
    )?;
    for (i, name) in names.iter().enumerate() {
        let t = target(i);
        let what = rt.block_on(check_target(&t, &connector))?;
        writeln!(report, "== {name}: access token {what}")?;
    }
    eprint!("{report}");

    // [grant][who]
    let mut cols: [[Column; 2]; 2] = Default::default();
    let grants = [Grant::ClientCredentials, Grant::Refresh];
    let mut refreshed = [0u64; 2];
    for round in 1..=o.rounds {
        for (g, grant) in grants.iter().enumerate() {
            for who in 0..2 {
                let fam = std::mem::take(families.get_mut(who).ok_or("who")?);
                let (out, back) = rt.block_on(load::run(
                    &load,
                    target(who),
                    *pids.get(who).ok_or("pid")?,
                    connector.clone(),
                    *grant,
                    fam,
                ))?;
                if let Some(f) = families.get_mut(who) {
                    *f = back;
                }
                let name = names.get(who).copied().unwrap_or_default();
                eprintln!(
                    "round {round} {grant:?} {name}: {:.0}/s p50 {:.2} ms p99 {:.2} ms server cpu {:.2} client cpu {:.2} errors {}",
                    out.rate(),
                    to_f64(out.p50_us) / 1000.0,
                    to_f64(out.p99_us) / 1000.0,
                    out.server_cpu,
                    out.client_cpu,
                    out.errors
                );
                if let Some(e) = &out.first_error {
                    return Err(
                        format!("{name} {grant:?}: {} errors, the first: {e}", out.errors).into(),
                    );
                }
                if *grant == Grant::Refresh
                    && let Some(n) = refreshed.get_mut(who)
                {
                    *n += out.grants;
                }
                if let Some(c) = cols.get_mut(g).and_then(|c| c.get_mut(who)) {
                    c.push(&out);
                }
            }
        }
    }
    let load_after = loadavg();
    tp.stop();
    node.stop();

    let parts_dir = dir.join("parts");
    std::fs::create_dir_all(&parts_dir)?;
    let parts = parts::measure(
        &parts_dir,
        Duration::from_secs(o.parts_secs),
        o.conns,
        o.threads,
    )?;
    eprintln!("parts: {parts:?}");
    eprintln!(
        "== passwords: {} rounds of {} s, {} threads",
        o.pw_rounds, o.pw_secs, o.threads
    );
    let (pw, params) = passwords::bench(o.threads, Duration::from_secs(o.pw_secs), o.pw_rounds)?;
    for (i, r) in pw.iter().enumerate() {
        eprintln!(
            "password round {}: tianping {:.1}/s unknown account {:.1}/s bare verify_password {:.1}/s bare hash_password_into {:.1}/s",
            i + 1,
            r.tianping,
            r.unknown,
            r.bare_phc,
            r.bare_raw
        );
    }

    writeln!(
        report,
        "== load average at the end of the grants: {load_after}"
    )?;
    writeln!(
        report,
        "\n| measurement (median of {}) | tianping | oidc-provider | ratio |\n|---|---|---|---|",
        o.rounds
    )?;
    for (g, label) in ["client_credentials", "refresh_token"].iter().enumerate() {
        let [tc, nc] = cols.get(g).ok_or("cols")?;
        let m = |c: &Column, f: fn(&Column) -> &Vec<f64>| median(f(c).clone());
        let (tr, nr) = (m(tc, |c| &c.rate), m(nc, |c| &c.rate));
        writeln!(
            report,
            "| {label} grants/s | {tr:.0} | {nr:.0} | {:.2} |",
            tr / nr.max(1e-9)
        )?;
        writeln!(
            report,
            "| {label} p50 / p99 latency, ms | {:.2} / {:.2} | {:.2} / {:.2} | |",
            m(tc, |c| &c.p50),
            m(tc, |c| &c.p99),
            m(nc, |c| &c.p50),
            m(nc, |c| &c.p99)
        )?;
        writeln!(
            report,
            "| {label} CPU (cores): server / load client | {:.2} / {:.2} | {:.2} / {:.2} | |",
            m(tc, |c| &c.server_cpu),
            m(tc, |c| &c.client_cpu),
            m(nc, |c| &c.server_cpu),
            m(nc, |c| &c.client_cpu)
        )?;
        let (tp_cpu, np_cpu) = (m(tc, |c| &c.per_cpu), m(nc, |c| &c.per_cpu));
        writeln!(
            report,
            "| {label} grants per server CPU-second | {tp_cpu:.0} | {np_cpu:.0} | {:.2} |",
            tp_cpu / np_cpu.max(1e-9)
        )?;
    }
    let fam = to_f64(u64::try_from(o.families)?);
    writeln!(
        report,
        "| refresh chain length at the end (rotations per family, mean) | {:.0} | {:.0} | |",
        to_f64(*refreshed.first().ok_or("r")?) / fam,
        to_f64(*refreshed.get(1).ok_or("r")?) / fam
    )?;
    let cc = median(
        cols.first()
            .and_then(|c| c.first())
            .map(|c| c.rate.clone())
            .unwrap_or_default(),
    );
    let rf = median(
        cols.get(1)
            .and_then(|c| c.first())
            .map(|c| c.rate.clone())
            .unwrap_or_default(),
    );
    writeln!(
        report,
        "\n| tianping's pieces alone, in-process, {} s each ({} tasks, {} workers) | per second | tianping's grants/s above |\n|---|---|---|",
        o.parts_secs, o.conns, o.threads
    )?;
    writeln!(
        report,
        "| access tokens issued (claims, JSON, ES256), one thread | {:.0} | |",
        parts.issue_one_thread
    )?;
    writeln!(
        report,
        "| durable audit appends (append_prompt, its durable() awaited), as the token endpoint makes them | {:.0} | {cc:.0} (client_credentials) |",
        parts.audit
    )?;
    writeln!(
        report,
        "| refresh rotations in the sled store (rotate_refresh_deferred: one read, the access token in the same update; flushes shared), on the workers | {:.0} | {rf:.0} (refresh_token) |",
        parts.refresh_store
    )?;
    let med = |f: fn(&passwords::Round) -> f64| median(pw.iter().map(f).collect());
    // Time per check against the raw hash's, round by round (both met the same load in a round).
    let extra = |f: fn(&passwords::Round) -> f64| {
        median(
            pw.iter()
                .map(|r| (r.bare_raw / f(r).max(1e-9) - 1.0) * 100.0)
                .collect(),
        )
    };
    writeln!(
        report,
        "\n| password check, {} threads, `{params}` (median of {} rounds) | checks/s | time per check vs bare hash_password_into (median of the rounds' ratios) |\n|---|---|---|",
        o.threads, o.pw_rounds
    )?;
    let rows: [(&str, RoundField); 4] = [
        ("tianping `Passwords::verify`, known account", |r| {
            r.tianping
        }),
        (
            "tianping `Passwords::verify`, unknown account (dummy)",
            |r| r.unknown,
        ),
        ("bare argon2 `verify_password` (same PHC string)", |r| {
            r.bare_phc
        }),
        (
            "bare argon2 `hash_password_into` (same salt) + compare",
            |r| r.bare_raw,
        ),
    ];
    for (label, f) in rows {
        writeln!(report, "| {label} | {:.1} | {:+.1}% |", med(f), extra(f))?;
    }
    println!("{report}");
    Ok(())
}
