//! What the runner sets up and tears down: the data folder (made by the `tianping` binary), the
//! upstream, the zone's IdP, nginx, a gateway per measurement, the people's bearer tokens, and
//! the processes' CPU time.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use tianping_core::{
    Acr, Amr, Clearance, Clock as _, Component, DataDir, Fabric, Listener, Role, SystemClock,
    ZoneName, clear_published_addrs, published_addrs,
};
use tianping_idp::{Identity, KeyDir, OsRandom, TokenIssuer};

use crate::load::Target;
use crate::{Opts, Res};

/// The zone the bench runs.
pub const ZONE: &str = "private";
/// The path every request asks for: a case of court `bj.01`, on the policy's `case-read` route.
pub const PATH: &str = "/courts/bj.01/cases/2026-0001";
/// The `client_id` the people's tokens were issued to.
pub const TOKEN_CLIENT: &str = "case-app";
/// The audience of the IdP's access tokens (as `tianping gateway` checks it).
pub const TOKEN_AUDIENCE: &str = "tianping";

/// The `private` zone's policy copy: one route to the service the bench binds by URL.
pub const POLICY: &str = r#"
levels confidentiality public < internal
levels integrity untrusted < court
zone private {
  confidentiality internal
  integrity court
  acr any >= pwd
}
service case-management in private
route case-read in private {
  path /courts/{court}/cases/**
  methods GET
  to service case-management
  roles judge, clerk
}
"#;

/// The temporary folder, removed at the end.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed when dropped so nothing outlives the run.
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it (SIGTERM, or its standard input closed for the upstream) and waits, bounded.
    fn stop(mut self) -> Res<()> {
        if self.child.stdin.take().is_none() {
            self.term()?;
        }
        if self.ended_within(Duration::from_secs(30))? {
            return Ok(());
        }
        Err(format!("{} did not stop within 30 s", self.name).into())
    }

    /// Sends it SIGTERM.
    fn term(&self) -> Res<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        if !status.success() {
            return Err(format!("kill -TERM {} ({}) failed", self.pid(), self.name).into());
        }
        Ok(())
    }

    /// Whether it has ended within `limit`.
    fn ended_within(&mut self, limit: Duration) -> Res<bool> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    }
}

impl Drop for Proc {
    /// SIGTERM first, so that nginx's master stops its workers (a SIGKILLed master leaves them
    /// serving, orphaned, when a run stops on an error); SIGKILL if it has not ended within 5 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let ended = self.term().is_ok()
                && self
                    .ended_within(Duration::from_secs(5))
                    .unwrap_or_default();
            if !ended {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// User plus system CPU time of one process so far, in clock ticks (`/proc/PID/stat`); 0 once
/// it is gone.
pub fn cpu_ticks_of(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // the fields after the command name, which ends at the last `)`: utime is field 14
    let Some(rest) = stat
        .rfind(')')
        .and_then(|i| stat.get(i.saturating_add(2)..))
    else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11).saturating_add(field(12))
}

/// The children of `pid` (nginx's workers), from `/proc/*/stat`'s parent field.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat.get(i.saturating_add(2)..))
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Every listener of every zone on port 0 (as the project's command-line tests do).
fn ports_to_zero(fabric: &Path) -> Res<()> {
    let text = std::fs::read_to_string(fabric)?;
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        let zeroed = if t.starts_with("gateway = ") || t.starts_with("idp = ") {
            let (k, _) = t.split_once(" = ").ok_or("a listener line without ` = `")?;
            format!("{k} = 0")
        } else if t.starts_with("admin = {") {
            let mut s = String::new();
            let mut in_num = false;
            for c in t.chars() {
                if c.is_ascii_digit() {
                    if !in_num {
                        s.push('0');
                    }
                    in_num = true;
                } else {
                    in_num = false;
                    s.push(c);
                }
            }
            s
        } else if t.starts_with("address = \"127.0.0.1:") {
            "address = \"127.0.0.1:0\"".to_owned()
        } else {
            line.to_owned()
        };
        out.push_str(&zeroed);
        out.push('\n');
    }
    std::fs::write(fabric, out)?;
    Ok(())
}

/// Binds `case-management` to `url` (its certificate under the zone's trust bundle).
fn bind_service(fabric: &Path, url: &str) -> Res<()> {
    let text = std::fs::read_to_string(fabric)?;
    let head = "[services.case-management]\n";
    let start = text
        .find(head)
        .ok_or("fabric.toml has no [services.case-management]")?
        .saturating_add(head.len());
    let rest = text.get(start..).unwrap_or_default();
    let end = rest
        .find("\n\n")
        .map_or(text.len(), |i| start.saturating_add(i));
    let new = format!(
        "{}zone = \"{ZONE}\"\nurl = \"{url}\"\nca = \"zones/{ZONE}/trust.pem\"{}",
        text.get(..start).unwrap_or_default(),
        text.get(end..).unwrap_or_default()
    );
    std::fs::write(fabric, new)?;
    Ok(())
}

/// nginx's configuration: a TLS 1.3 reverse proxy (HTTP/1.1 and HTTP/2 to clients) in front of
/// the upstream over TLS 1.3 with a keep-alive pool, the upstream's certificate verified
/// against the zone's trust bundle as the gateway verifies it; no access log.
pub fn nginx_conf(
    work: &Path,
    workers: usize,
    port: u16,
    upstream: SocketAddr,
    cert: &Path,
    key: &Path,
    trust: &Path,
) -> String {
    let w = work.display();
    format!(
        r#"worker_processes {workers};
daemon off;
master_process on;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {w}/body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream service {{
        server {upstream};
        keepalive 1024;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {{
            proxy_pass https://service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host localhost;
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 3;
            proxy_ssl_trusted_certificate {trust};
            proxy_ssl_session_reuse on;
        }}
    }}
}}
"#,
        cert = cert.display(),
        key = key.display(),
        trust = trust.display(),
    )
}

/// Everything set up for the run.
pub struct Bench {
    work: WorkDir,
    data: PathBuf,
    zone: ZoneName,
    threads: usize,
    gateway_tickets: Option<String>,
    gw_host: String,
    tls: Arc<rustls::ClientConfig>,
    tokens: Arc<Vec<HeaderValue>>,
    upstream: Proc,
    upstream_addr: SocketAddr,
    upstream_h3: SocketAddr,
    idp: Proc,
    nginx: Proc,
    nginx_addr: SocketAddr,
    nginx_pids: Vec<u32>,
    nginx_http3: bool,
    /// The bare proxy (`serve-proxy`), when the upstream offers HTTP/2 (`--upstream any`).
    bare: Option<(Proc, SocketAddr)>,
    versions: String,
}

/// Runs `tianping --data DATA ARGS`, its output if it succeeded.
fn tianping(bin: &Path, data: &Path, args: &[&str]) -> Res<String> {
    let mut child = Command::new(bin)
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "tianping {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A free port on 127.0.0.1 (asked of the OS, then let go for nginx to bind).
fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits (bounded) until `what` gives an answer, the child still running.
/// A process of this binary (`serve-upstream`, `serve-proxy`), its standard input held open
/// (it stops when that closes).
fn this_binary(name: &str, command: &str, args: &[&std::ffi::OsStr]) -> Res<Proc> {
    Ok(Proc {
        name: name.into(),
        child: Command::new(std::env::current_exe()?)
            .arg(command)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    })
}

fn wait_for<T>(p: &mut Proc, mut what: impl FnMut() -> Option<T>) -> Res<T> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = p.child.try_wait()? {
            return Err(format!("{} exited early: {status}", p.name).into());
        }
        if let Some(v) = what() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("{} was not ready within 120 s", p.name).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Bench {
    /// Makes the data folder, starts the upstream, the IdP and nginx, and issues the tokens.
    pub fn prepare(o: &Opts) -> Res<Self> {
        if !o.tianping.exists() {
            return Err(format!(
                "no `{}`: run `cargo build --release --locked` in the project first, or give \
                 --tianping",
                o.tianping.display()
            )
            .into());
        }
        let root = std::env::temp_dir().join(format!("tianping-bench-gw.{}", std::process::id()));
        std::fs::create_dir_all(&root)?;
        let work = WorkDir(root.clone());
        let data = root.join("data");
        let zone: ZoneName = ZONE.parse()?;
        let bin = o.tianping.clone();
        tianping(&bin, &data, &["init"])?;
        let dir = DataDir::new(&data);
        ports_to_zero(&dir.fabric())?;
        std::fs::write(dir.zone_policy(&zone), POLICY)?;
        tianping(&bin, &data, &["idp", "init", "--zone", ZONE])?;
        let up_prefix = root.join("upstream");
        let up_prefix_s = up_prefix
            .to_str()
            .ok_or("a temporary path that is not UTF-8")?;
        tianping(
            &bin,
            &data,
            &[
                "certs",
                "issue",
                "--zone",
                ZONE,
                "--kind",
                "server",
                "--name",
                "upstream",
                "--dns",
                "localhost",
                "--ip",
                "127.0.0.1",
                "--out",
                up_prefix_s,
            ],
        )?;

        // the upstream, a process of this binary
        let addr_file = root.join("upstream.addr");
        let mut upstream = this_binary(
            "the upstream",
            "serve-upstream",
            &[
                up_prefix.with_extension("pem").as_os_str(),
                up_prefix.with_extension("key").as_os_str(),
                addr_file.as_os_str(),
                o.threads.to_string().as_ref(),
            ],
        )?;
        let (upstream_addr, upstream_h1, upstream_h3): (SocketAddr, SocketAddr, SocketAddr) =
            wait_for(&mut upstream, || {
                let text = std::fs::read_to_string(&addr_file).ok()?;
                let mut lines = text.lines();
                Some((
                    lines.next()?.parse().ok()?,
                    lines.next()?.parse().ok()?,
                    lines.next()?.parse().ok()?,
                ))
            })?;
        // the proxies' side of the upstream: both ALPN protocols, or HTTP/1.1 alone
        let behind = if o.upstream_h1 {
            upstream_h1
        } else {
            upstream_addr
        };
        bind_service(
            &dir.fabric(),
            &format!("https://localhost:{}/", behind.port()),
        )?;

        let fabric = Fabric::load(&dir.fabric())?;
        let zl = fabric
            .zone(&zone)
            .ok_or("no zone `private` in fabric.toml")?;
        let gw_host = zl.gateway_host.clone();
        let idp_host = zl.idp_host.clone();

        // the zone's IdP, whose JWKS the gateway verifies the tokens against
        let mut idp = daemon(
            &bin,
            &data,
            &["idp", "serve", "--zone", ZONE],
            o,
            &root,
            "idp",
        )?;
        let idp_addr = wait_for(&mut idp, || {
            published_addrs(&dir, &zone, Component::Idp)
                .ok()
                .and_then(|a| a.get(&Listener::Public).copied())
        })?;
        let issuer_url = if idp_addr.port() == 443 {
            format!("https://{idp_host}")
        } else {
            format!("https://{idp_host}:{}", idp_addr.port())
        };

        // the people's tokens: the IdP's own issuer and signing key
        let now = SystemClock.now();
        let keys = KeyDir::new(dir.keys(&zone, Component::Idp)).load(now)?;
        let mut issuer = TokenIssuer::new(issuer_url, keys);
        // long enough for the whole run (the IdP's default is 5 minutes); the gateway caches a
        // verified token until its expiry either way
        issuer.access_life = Duration::from_secs(6 * 3600);
        let rng = OsRandom::new();
        let mut tokens = Vec::with_capacity(o.subjects);
        for i in 0..o.subjects {
            let who = Identity {
                sub: format!("judge-{i:05}").parse()?,
                court: Some("bj.01".parse()?),
                roles: vec![Role::Judge],
                clearance: Clearance::None,
                acr: Acr::Pwd,
                amr: vec![Amr::Pwd],
                zone: zone.clone(),
                auth_time: now,
                device: None,
            };
            let t = issuer.access_token(
                Some(&who),
                TOKEN_CLIENT,
                TOKEN_AUDIENCE,
                "openid",
                now,
                &rng,
            )?;
            tokens.push(HeaderValue::from_str(&format!("Bearer {}", t.token))?);
        }

        // nginx with the gateway's own certificate
        let (cert, key) = dir.tls(&zone, Component::Gateway);
        let nginx_dir = root.join("nginx");
        std::fs::create_dir_all(&nginx_dir)?;
        let port = free_port()?;
        let conf = nginx_conf(
            &nginx_dir,
            o.threads,
            port,
            behind,
            &cert,
            &key,
            &dir.zone_trust_bundle(&zone),
        );
        std::fs::write(nginx_dir.join("nginx.conf"), &conf)?;
        let mut nginx = Proc {
            name: "nginx".into(),
            child: Command::new("nginx")
                .arg("-p")
                .arg(&nginx_dir)
                .arg("-c")
                .arg(nginx_dir.join("nginx.conf"))
                .arg("-e")
                .arg(nginx_dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("nginx: {e} (apt-get install -y nginx)"))?,
        };
        let nginx_addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(&mut nginx, || std::net::TcpStream::connect(nginx_addr).ok())?;
        let nginx_pid = nginx.pid();
        let nginx_pids = wait_for(&mut nginx, || {
            let w = children_of(nginx_pid);
            (w.len() >= o.threads).then_some(w)
        })?;
        let mut all = vec![nginx_pid];
        all.extend(nginx_pids);

        // the bare proxy, a process of this binary, with the gateway's certificate as well
        let bare = if o.upstream_h1 {
            None
        } else {
            let addr_file = root.join("bare.addr");
            let mut bare = this_binary(
                "the bare proxy",
                "serve-proxy",
                &[
                    cert.as_os_str(),
                    key.as_os_str(),
                    dir.zone_trust_bundle(&zone).as_os_str(),
                    behind.to_string().as_ref(),
                    gw_host.as_ref(),
                    addr_file.as_os_str(),
                    o.threads.to_string().as_ref(),
                ],
            )?;
            let addr: SocketAddr = wait_for(&mut bare, || {
                std::fs::read_to_string(&addr_file)
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })?;
            Some((bare, addr))
        };

        let trust = std::fs::read(dir.zone_trust_bundle(&zone))?;
        let tls = Arc::new(tianping_certs::client_config(&trust, None)?);
        let nginx_v = Command::new("nginx").arg("-v").output()?;
        let nginx_build = Command::new("nginx").arg("-V").output()?;
        let nginx_http3 = String::from_utf8_lossy(&nginx_build.stderr).contains("http_v3_module");
        let versions = format!(
            "{}; {}",
            tianping(&bin, &data, &["--version"])
                .unwrap_or_default()
                .trim(),
            String::from_utf8_lossy(&nginx_v.stderr).trim()
        );
        Ok(Self {
            work,
            data,
            zone,
            threads: o.threads,
            gateway_tickets: o.gateway_tickets.map(|n| n.to_string()),
            gw_host,
            tls,
            tokens: Arc::new(tokens),
            upstream,
            upstream_addr,
            upstream_h3,
            idp,
            nginx,
            nginx_addr,
            nginx_pids: all,
            nginx_http3,
            bare,
            versions,
        })
    }

    /// What runs, for the report.
    pub fn describe(&self) -> String {
        format!(
            "{}; {} people with a bearer token each (ES256 at+jwt of the zone's IdP key); the \
             route `case-read` to `case-management` bound to the upstream's URL; data folder {}",
            self.versions,
            self.tokens.len(),
            self.data.display()
        )
    }

    fn target(&self, addr: SocketAddr, host: &str) -> Target {
        Target {
            addr,
            host: host.to_owned(),
            path: PATH.into(),
            tls: Arc::clone(&self.tls),
            tokens: Arc::clone(&self.tokens),
        }
    }

    /// The upstream, asked directly (the same requests, tokens included, which it ignores).
    pub fn upstream_target(&self) -> Target {
        self.target(self.upstream_addr, "localhost")
    }

    /// The upstream's listener that serves HTTP/3 too, asked directly.
    pub fn upstream_h3_target(&self) -> Target {
        self.target(self.upstream_h3, "localhost")
    }

    /// Whether this nginx was built with `http_v3_module` (Debian's 1.22 was not); the bench
    /// gives it no HTTP/3 rows either way.
    pub fn nginx_has_http3(&self) -> bool {
        self.nginx_http3
    }

    /// nginx, with the gateway's certificate and host name.
    pub fn nginx_target(&self) -> Target {
        self.target(self.nginx_addr, &self.gw_host)
    }

    /// The bare proxy, if it runs.
    pub fn bare_target(&self) -> Res<Target> {
        let (_, addr) = self
            .bare
            .as_ref()
            .ok_or("no bare proxy runs (it needs `--upstream any`)")?;
        Ok(self.target(*addr, &self.gw_host))
    }

    /// Whether the bare proxy runs.
    pub fn has_bare(&self) -> bool {
        self.bare.is_some()
    }

    /// The bare proxy's process id, if it runs.
    pub fn bare_pids(&self) -> Vec<u32> {
        self.bare.iter().map(|(p, _)| p.pid()).collect()
    }

    /// The gateway that runs now, at the address it published.
    pub fn gateway_target(&self, gateway: Option<&Proc>) -> Res<Target> {
        if gateway.is_none() {
            return Err("no gateway runs".into());
        }
        let dir = DataDir::new(&self.data);
        let addr = published_addrs(&dir, &self.zone, Component::Gateway)?
            .get(&Listener::Public)
            .copied()
            .ok_or("the gateway published no address")?;
        Ok(self.target(addr, &self.gw_host))
    }

    /// The upstream's process id.
    pub fn upstream_pid(&self) -> u32 {
        self.upstream.pid()
    }

    /// nginx's master and workers.
    pub fn nginx_pids(&self) -> Vec<u32> {
        self.nginx_pids.clone()
    }

    /// The IdP's process id.
    pub fn idp_pid(&self) -> u32 {
        self.idp.pid()
    }

    /// Starts `tianping gateway --zone private` (with `--audit-sync` if `sync`, and
    /// `--tls13-tickets` as the run says) of the binary `bin` and waits until it published its
    /// addresses.
    pub fn start_gateway(&self, sync: bool, bin: &Path) -> Res<Proc> {
        let dir = DataDir::new(&self.data);
        clear_published_addrs(&dir, &self.zone, Component::Gateway)?;
        let mut args = vec!["gateway", "--zone", ZONE];
        if sync {
            args.push("--audit-sync");
        }
        if let Some(n) = &self.gateway_tickets {
            args.extend(["--tls13-tickets", n.as_str()]);
        }
        let mut p = daemon_with(
            bin,
            &self.data,
            &args,
            self.threads,
            &self.work.0,
            "gateway",
        )?;
        let zone = self.zone.clone();
        wait_for(&mut p, || {
            let a = published_addrs(&dir, &zone, Component::Gateway).ok()?;
            (a.contains_key(&Listener::Public) && a.contains_key(&Listener::Admin)).then_some(())
        })?;
        Ok(p)
    }

    /// Stops a gateway (SIGTERM: it finishes what is in flight and removes what it published).
    pub fn stop_gateway(&self, p: Proc) -> Res<()> {
        p.stop()
    }

    /// How many audit events the running gateway's log holds (its control socket's `/status`).
    pub async fn gateway_durable(&self) -> Res<u64> {
        let dir = DataDir::new(&self.data);
        let socket = dir.socket(&self.zone, Component::Gateway);
        let (code, body) = tianping_net::control_request(&socket, "GET", "/status", "").await?;
        if code != 200 {
            return Err(format!("gateway /status: {code}").into());
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        v.get("audit_durable")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| "no audit_durable in the gateway's /status".into())
    }

    /// Stops everything (dropping does too).
    pub fn stop(self) {
        let Self {
            upstream,
            idp,
            nginx,
            work,
            ..
        } = self;
        let _ = nginx.stop();
        let _ = idp.stop();
        let _ = upstream.stop();
        drop(work);
    }
}

/// `tianping ARGS` as a daemon with the servers' worker count, its standard error in
/// `WORK/NAME.log`.
fn daemon(bin: &Path, data: &Path, args: &[&str], o: &Opts, work: &Path, name: &str) -> Res<Proc> {
    daemon_with(bin, data, args, o.threads, work, name)
}

fn daemon_with(
    bin: &Path,
    data: &Path,
    args: &[&str],
    threads: usize,
    work: &Path,
    name: &str,
) -> Res<Proc> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join(format!("{name}.log")))?;
    let mut log2 = log.try_clone()?;
    writeln!(log2, "== tianping {args:?}")?;
    Ok(Proc {
        name: format!("tianping {}", args.join(" ")),
        child: Command::new(bin)
            .arg("--data")
            .arg(data)
            .args(args)
            // tokio's multi-threaded runtime takes its worker count from here
            .env("TOKIO_WORKER_THREADS", threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_proxies_over_tls_with_a_keepalive_pool_and_the_workers_asked() {
        let c = nginx_conf(
            Path::new("/w"),
            2,
            18443,
            SocketAddr::from(([127, 0, 0, 1], 9000)),
            Path::new("/c.pem"),
            Path::new("/c.key"),
            Path::new("/t.pem"),
        );
        assert!(c.starts_with("worker_processes 2;\n"));
        assert!(c.contains("server 127.0.0.1:9000;\n        keepalive 1024;"));
        assert!(c.contains("listen 127.0.0.1:18443 ssl http2;"));
        assert!(c.contains("proxy_pass https://service;"));
        assert!(c.contains("proxy_set_header Connection \"\";"));
        assert!(c.contains("proxy_ssl_verify on;"));
        assert!(c.contains("ssl_protocols TLSv1.3;"));
        assert!(c.contains("pid /w/nginx.pid;"));
    }

    #[test]
    fn a_process_stat_gives_its_cpu_time() {
        // this process has run for a moment; a process that is not there has none
        let me = std::process::id();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(cpu_ticks_of(me) > 0);
        assert_eq!(cpu_ticks_of(u32::MAX), 0);
    }
}
