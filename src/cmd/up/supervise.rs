//! `tianping up`'s children: every component a process of this same binary
//! (`tianping --data DIR idp serve --zone Z`, ...), its output forwarded line by line under its
//! name, restarted with backoff when it dies, stopped with `SIGTERM` when `up` is.
//!
//! A child is **ready** when its admin listener is published in `run/` and answers `/healthz`
//! with `200`; `up` prints one line `ready` once every child is, and keeps `run/up.json` (what
//! runs, its pid, since when, how often it was restarted) up to date for `tianping status` and
//! the tests. Every start, exit and restart is appended to the supervisor's audit log
//! (`DIR/supervisor/audit`).
//!
//! ClamAV's daemon, when `up` runs one (`clamd.rs`), is supervised the same way: started
//! before every component (the `scan` step of a starting component looks for its socket),
//! ready once it answers `PING` there, restarted with the same backoff when it dies, and
//! audited and listed in `run/up.json` as `<zone>/clamd`.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use miette::{IntoDiagnostic, miette};
use tianping_audit::{AuditLog, Event};
use tianping_core::{Component, DataDir, Listener, SystemClock, ZoneName};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

/// The first wait before a child that died is started again; doubled on each death in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait before a restart: a child that keeps dying is retried twice a minute, so a
/// cause that goes away (a port in use, a disk full) is recovered from without an operator.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a child must run for its next death to count as the first in a row again.
const HEALTHY_FOR: Duration = Duration::from_secs(60);
/// How long a stopping child has after `SIGTERM` before it is killed: every component flushes
/// its stores and audit log on `SIGTERM` within a second or two.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often a starting child's admin listener is looked for and asked `/healthz`.
const READY_POLL: Duration = Duration::from_millis(50);

/// One component to run.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// Its zone.
    pub(crate) zone: ZoneName,
    /// Which component.
    pub(crate) component: Component,
    /// Its arguments after `tianping --data DIR`.
    pub(crate) args: Vec<String>,
    /// A command it runs under, e.g. `ip netns exec tp-<zone>` (which execs: the pid stays the
    /// component's); empty for none.
    pub(crate) prefix: Vec<String>,
    /// Environment variables set for it (the demonstration's clock offset).
    pub(crate) env: Vec<(String, String)>,
    /// A sample case service (`tianping service NAME`) rather than a component: its addresses
    /// are in `run/<zone>-service-NAME.addr`, and `component` is not looked at.
    pub(crate) service: Option<String>,
    /// ClamAV's daemon rather than a process of this binary: `args`, `prefix` and `component`
    /// are not looked at.
    pub(crate) clamd: Option<Clamd>,
}

/// How `up` runs ClamAV's daemon (`clamd.rs` writes its configuration).
#[derive(Debug, Clone)]
pub(crate) struct Clamd {
    /// The `clamd` binary.
    pub(crate) program: PathBuf,
    /// Its arguments (`--config-file FILE`).
    pub(crate) args: Vec<String>,
    /// The local socket it answers on (`LocalSocket` of its configuration).
    pub(crate) socket: PathBuf,
}

/// util-linux's `setpriv`, which starts clamd with a parent-death signal.
const SETPRIV: &str = "/usr/bin/setpriv";
/// How long a `PING` to a starting `clamd` may take.
const CLAMD_PING: Duration = Duration::from_secs(2);

impl Spec {
    fn name(&self) -> String {
        match (&self.service, &self.clamd) {
            (_, Some(_)) => format!("{}/clamd", self.zone),
            (Some(s), None) => format!("{}/service-{s}", self.zone),
            (None, None) => format!("{}/{}", self.zone, self.component.as_str()),
        }
    }

    /// What `run/up.json` calls it.
    fn kind(&self) -> &'static str {
        if self.clamd.is_some() {
            "clamd"
        } else if self.service.is_some() {
            "service"
        } else {
            self.component.as_str()
        }
    }

    /// When it starts: `clamd` first (a component's `scan` step looks for its socket when
    /// the component starts); then the IdPs, receivers and the audit store; then the senders,
    /// gateways and case services, which look up where those listen (published on port 0)
    /// when they start.
    fn stage(&self) -> usize {
        if self.clamd.is_some() {
            0
        } else if self.service.is_some()
            || matches!(
                self.component,
                Component::ExchangeSender | Component::Gateway
            )
        {
            2
        } else {
            1
        }
    }

    /// Whether it answers: `clamd` a `PING` on its socket, anything else `/healthz` on the
    /// admin listener it published.
    async fn answers(&self, dir: &DataDir) -> bool {
        if let Some(c) = &self.clamd {
            let ping = tianping_crossdomain::Clamd::new(&c.socket).with_timeout(CLAMD_PING);
            return tokio::task::spawn_blocking(move || ping.ping().is_ok())
                .await
                .unwrap_or(false);
        }
        let Some(addr) = self.admin(dir) else {
            return false;
        };
        // a child in a namespace is asked there (its loopback is its own)
        let ns = self.prefix.last().cloned(); // `ip netns exec NS`
        crate::cmd::status::health_in(ns, addr).await == Some(200)
    }

    /// The admin listener the child published, if it has.
    fn admin(&self, dir: &DataDir) -> Option<std::net::SocketAddr> {
        match &self.service {
            Some(s) => crate::cmd::service::published(dir, &self.zone, s, "admin"),
            None => tianping_core::published_addrs(dir, &self.zone, self.component)
                .ok()
                .and_then(|a| a.get(&Listener::Admin).copied()),
        }
    }

    /// Removes the addresses a previous run of the child published. `clamd`'s socket stays:
    /// the daemon replaces a stale one itself (`FixStaleSocket`), and a component restarted
    /// meanwhile still finds the path its `scan` step asks.
    fn clear_addrs(&self, dir: &DataDir) {
        if self.clamd.is_some() {
            return;
        }
        match &self.service {
            Some(s) => {
                let _ = std::fs::remove_file(crate::cmd::service::addr_file(dir, &self.zone, s));
            }
            None => {
                let _ = tianping_core::clear_published_addrs(dir, &self.zone, self.component);
            }
        }
    }
}

/// What `run/up.json` says of one child.
#[derive(Debug, Clone, serde::Serialize)]
struct State {
    zone: String,
    component: &'static str,
    /// The sample case service, for a `service` child.
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    pid: Option<u32>,
    /// When the running process started, milliseconds since the epoch.
    since: u64,
    restarts: u32,
    ready: bool,
    /// `clamd` died before it ever answered: the children of later stages start without it
    /// (its `scan` flows refusing until it answers), as they do once it is ready.
    #[serde(skip)]
    gave_up: bool,
}

/// The children's states, written to `run/up.json` on every change.
struct Board {
    path: PathBuf,
    states: Mutex<Vec<State>>,
}

impl Board {
    fn update(&self, i: usize, f: impl FnOnce(&mut State)) {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = states.get_mut(i) {
            f(s);
        }
        let text = serde_json::to_string_pretty(&*states).unwrap_or_default();
        let written = tianping_core::write_atomic(
            &self.path,
            text.as_bytes(),
            tianping_core::FileMode::Public,
            tianping_core::Existing::Replace,
        );
        if written.is_err() {
            eprintln!("up: cannot write `{}`", self.path.display());
        }
    }

    /// Whether every child whose index `of` accepts is ready.
    fn ready_where(&self, of: impl Fn(usize) -> bool) -> bool {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .enumerate()
            .all(|(i, s)| s.ready || !of(i))
    }

    /// Whether every child whose index `of` accepts is ready, or is a `clamd` that was given
    /// up waiting for.
    fn settled_where(&self, of: impl Fn(usize) -> bool) -> bool {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .enumerate()
            .all(|(i, s)| s.ready || s.gave_up || !of(i))
    }
}

fn now_ms() -> u64 {
    use tianping_core::Clock as _;
    SystemClock.now().as_millis()
}

/// Appends a supervisor event (best effort: a full disk must not stop the supervision itself,
/// and is said on standard error).
fn audit(log: &AuditLog, action: &str, spec: &Spec, outcome: &str, detail: Option<String>) {
    let mut e = Event::new(tianping_core::UnixTime::from_millis(now_ms()), action);
    e.actor = "up".to_owned();
    e.object = spec.name();
    e.outcome = outcome.to_owned();
    if let Some(d) = detail {
        e.attributes.insert("detail".to_owned(), d);
    }
    if let Err(err) = log.append(&e) {
        eprintln!("up: audit: {err}");
    }
}

/// Forwards each line of `from` to standard output (or error) under `name`.
fn forward<R: tokio::io::AsyncRead + Unpin + Send + 'static>(name: String, from: R, err: bool) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if err {
                eprintln!("{name}: {line}");
            } else {
                println!("{name}: {line}");
            }
        }
    });
}

/// Asks `pid` to stop (`SIGTERM`).
fn terminate(pid: u32) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// What every child's supervising task shares.
struct Shared {
    exe: PathBuf,
    dir: DataDir,
    board: Board,
    log: AuditLog,
    /// Counts children that became ready (the main loop then looks whether all are).
    ready: watch::Sender<usize>,
}

/// Runs child `i` until `stop` turns true: started, watched until ready, restarted with
/// backoff whenever it dies.
async fn keep(i: usize, spec: Spec, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Shared {
        exe,
        dir,
        board,
        log,
        ready,
    } = &*shared;
    let name = spec.name();
    let mut backoff = FIRST_BACKOFF;
    let mut restarts = 0u32;
    loop {
        // A stale address from an earlier run must not pass for this one's.
        spec.clear_addrs(dir);
        let mut command = match (&spec.clamd, spec.prefix.split_first()) {
            (Some(c), _) => {
                // clamd is not ours to change: util-linux's `setpriv` (which execs it, so the
                // pid stays) asks the kernel for its SIGTERM when up goes, as every component
                // asks for itself; without `setpriv`, clamd runs on its own
                let mut command = if Path::new(SETPRIV).is_file() {
                    let mut command = tokio::process::Command::new(SETPRIV);
                    command.args(["--pdeathsig", "TERM", "--"]).arg(&c.program);
                    command
                } else {
                    tokio::process::Command::new(&c.program)
                };
                command.args(&c.args);
                command
            }
            (None, Some((program, rest))) => {
                let mut c = tokio::process::Command::new(program);
                c.args(rest).arg(exe);
                c.arg("--data").arg(dir.root()).args(&spec.args);
                c
            }
            (None, None) => {
                let mut c = tokio::process::Command::new(exe);
                c.arg("--data").arg(dir.root()).args(&spec.args);
                c
            }
        };
        if spec.clamd.is_none() {
            // the component ends with this process, however it ends (a SIGKILLed up included)
            command.env(crate::SUPERVISOR_ENV, std::process::id().to_string());
        }
        let child = command
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("up: cannot start {name}: {e}");
                audit(
                    log,
                    "component.start",
                    &spec,
                    "failure",
                    Some(e.to_string()),
                );
                if *stop.borrow() {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let pid = child.id();
        if let Some(out) = child.stdout.take() {
            forward(name.clone(), out, false);
        }
        if let Some(err) = child.stderr.take() {
            forward(name.clone(), err, true);
        }
        let started = Instant::now();
        board.update(i, |s| {
            s.pid = pid;
            s.since = now_ms();
            s.restarts = restarts;
            s.ready = false;
        });
        audit(
            log,
            if restarts == 0 {
                "component.start"
            } else {
                "component.restart"
            },
            &spec,
            "success",
            pid.map(|p| format!("pid {p}")),
        );
        let mut is_ready = false;
        let status = loop {
            tokio::select! {
                status = child.wait() => break Some(status),
                _ = stop.changed() => break None,
                () = tokio::time::sleep(READY_POLL), if !is_ready => {
                    if spec.answers(dir).await {
                        is_ready = true;
                        board.update(i, |s| s.ready = true);
                        ready.send_modify(|n| *n += 1);
                    }
                }
            }
        };
        let Some(status) = status else {
            // Stopping: SIGTERM, then the grace, then kill.
            if let Some(pid) = pid {
                terminate(pid);
            }
            let done = tokio::time::timeout(STOP_GRACE, child.wait()).await;
            let detail = match done {
                Ok(Ok(s)) => format!("stopped: {s}"),
                _ => {
                    let _ = child.kill().await;
                    format!("killed after {} s", STOP_GRACE.as_secs())
                }
            };
            audit(log, "component.stop", &spec, "success", Some(detail));
            board.update(i, |s| {
                s.pid = None;
                s.ready = false;
            });
            return;
        };
        let why = match status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= HEALTHY_FOR {
            backoff = FIRST_BACKOFF;
        }
        eprintln!(
            "up: {name} exited ({why}); starting it again in {:?}",
            backoff
        );
        audit(log, "component.exit", &spec, "failure", Some(why));
        let gave_up = spec.clamd.is_some() && !is_ready && restarts == 0;
        board.update(i, |s| {
            s.pid = None;
            s.ready = false;
            s.gave_up |= gave_up;
        });
        if gave_up {
            eprintln!(
                "up: {name} died before it answered: the components start without it, and the \
                 flows that ask `scan` refuse until it answers"
            );
            ready.send_modify(|n| *n += 1);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        restarts = restarts.saturating_add(1);
    }
}

/// Runs `specs` until `SIGINT` or `SIGTERM`; prints `ready` once every one is.
pub(crate) fn run(
    dir: &DataDir,
    origin: &str,
    specs: Vec<Spec>,
    notes: &[(&str, String)],
) -> miette::Result<ExitCode> {
    let exe = std::env::current_exe().into_diagnostic()?;
    let log_dir = dir.root().join("supervisor").join("audit");
    std::fs::create_dir_all(&log_dir).into_diagnostic()?;
    let log = AuditLog::open_or_create(&log_dir, origin).into_diagnostic()?;
    // `up` is no component and has no node key: its log is signed by a key of its own, made on
    // the first run beside the log (0600) and pinned by the log's first checkpoint
    let key_path = dir.root().join("supervisor").join("checkpoint.key");
    let signer = match std::fs::read_to_string(&key_path) {
        Ok(pem) => tianping_audit::signer_from_pem(&pem)
            .map_err(|e| miette!("`{}`: {e}", key_path.display()))?,
        Err(_) => {
            let (signer, pkcs8) =
                tianping_core::RingSigner::generate(tianping_core::Algorithm::Ed25519)
                    .into_diagnostic()?;
            tianping_core::write_private_file(
                &key_path,
                tianping_audit::pkcs8_to_pem(pkcs8.expose()).as_bytes(),
            )
            .into_diagnostic()?;
            signer
        }
    };
    let signer: Arc<dyn tianping_core::Signer> = Arc::new(signer);
    // every event is signed as it is appended: they are few, and each is a start or a death
    log.set_auto_checkpoint(Arc::clone(&signer), 1);
    // how this run was asked to differ from a plain one (`--netns`, `--clock-offset`), audited
    // before any child starts
    for (action, detail) in notes {
        let mut e = Event::new(tianping_core::UnixTime::from_millis(now_ms()), *action);
        e.actor = "up".to_owned();
        e.outcome = "ok".to_owned();
        e.attributes.insert("detail".to_owned(), detail.clone());
        log.append(&e).into_diagnostic()?;
    }
    log.sync().into_diagnostic()?;
    let board = Board {
        path: dir.root().join("run").join("up.json"),
        states: Mutex::new(
            specs
                .iter()
                .map(|s| State {
                    zone: s.zone.to_string(),
                    component: s.kind(),
                    service: s.service.clone(),
                    pid: None,
                    since: 0,
                    restarts: 0,
                    ready: false,
                    gave_up: false,
                })
                .collect(),
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .into_diagnostic()?;
    rt.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = watch::channel(0usize);
        let n = specs.len();
        let shared = Arc::new(Shared {
            exe,
            dir: dir.clone(),
            board,
            log,
            ready: ready_tx,
        });
        // Each stage starts once every child of the stages before it is settled (see
        // `Spec::stage`).
        let stage_of: Vec<usize> = specs.iter().map(Spec::stage).collect();
        let mut stages: Vec<Vec<(usize, Spec)>> = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let at = spec.stage();
            if stages.len() <= at {
                stages.resize_with(at + 1, Vec::new);
            }
            if let Some(stage) = stages.get_mut(at) {
                stage.push((i, spec));
            }
        }
        let mut stages = stages.into_iter().enumerate().peekable();
        let mut tasks = Vec::new();
        let mut start_settled = |tasks: &mut Vec<_>| {
            while let Some((at, _)) = stages.peek() {
                let at = *at;
                if !shared
                    .board
                    .settled_where(|i| stage_of.get(i).is_some_and(|s| *s < at))
                {
                    break;
                }
                let Some((_, batch)) = stages.next() else {
                    break;
                };
                for (i, spec) in batch {
                    tasks.push(tokio::spawn(keep(
                        i,
                        spec,
                        Arc::clone(&shared),
                        stop_rx.clone(),
                    )));
                }
            }
        };
        start_settled(&mut tasks);
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .into_diagnostic()?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .into_diagnostic()?;
        let mut said_ready = n == 0;
        if said_ready {
            println!("ready");
        }
        loop {
            tokio::select! {
                _ = int.recv() => break,
                _ = term.recv() => break,
                changed = ready_rx.changed(), if !said_ready => {
                    if changed.is_err() {
                        break;
                    }
                    start_settled(&mut tasks);
                    if shared.board.ready_where(|_| true) {
                        said_ready = true;
                        println!("ready");
                    }
                }
            }
        }
        println!("stopping");
        let _ = stop_tx.send(true);
        for t in tasks {
            t.await
                .map_err(|e| miette!("a supervising task failed: {e}"))?;
        }
        if let Err(e) = shared
            .log
            .sync()
            .and_then(|()| shared.log.checkpoint(&*signer).map(|_| ()))
        {
            eprintln!("up: the supervisor's log: {e}");
        }
        println!("stopped");
        miette::Result::<_>::Ok(ExitCode::SUCCESS)
    })
}
