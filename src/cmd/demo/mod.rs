//! `tianping demo`: the court scenario, driven against a running `tianping up --demo` the way
//! its people would: through each zone's gateway and its IdP's sign-in pages (a plain
//! HTML-form client, `browser.rs`), with certificates where the policy asks for one, and the
//! operators' own commands where an operator acts. Each step is printed with its outcome, the
//! refusals the policy must make included; the exit code is 1 if any step differs from what the
//! policy says should happen, at the moment it runs (the enforcement inquiry's time window).
//!
//! The steps are in `steps.rs`; what they need of the running fabric (addresses, the demo's
//! people, a browser for a person in a zone) is here.

mod browser;
mod sample;
mod steps;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_core::{
    Clock as _, Component, DataDir, Fabric, Listener, SystemClock, UnixTime, ZoneName,
};
use tianping_idp::{TotpConfig, TotpSecret};

pub(crate) use browser::Browser;

/// The file where `up --demo` lists its people (and that marks a demonstration folder).
const PEOPLE_FILE: &str = "demo-users.txt";

/// The environment variable through which `up --demo --clock-offset` gives its children the
/// offset of the demonstration's clock, in seconds (other commands on the folder read it from
/// `run/clock-offset`).
pub(crate) const CLOCK_OFFSET_ENV: &str = "TIANPING_CLOCK_OFFSET";

/// Options of `tianping demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The longest wait for one step's transfer to cross, or a directory update to arrive, in
    /// seconds.
    #[arg(long, default_value_t = 120)]
    wait: u64,
    /// Print each step as one JSON object per line (for scripts and the tests) instead of text.
    #[arg(long)]
    json: bool,
}

/// Applies the demonstration's clock offset to this process's clock, in a folder seeded by `up
/// --demo` only (a real installation's clock is the machine's): [`CLOCK_OFFSET_ENV`] where it is
/// set (refused anywhere but in a demonstration folder), else the `run/clock-offset` that the
/// running `up --demo --clock-offset` wrote, so that every command an operator runs on the folder
/// (`exchange resend`, `audit`, `login`) signs and checks on the components' clock. `up` itself
/// reads no file: it writes or removes it for its own run.
pub(crate) fn apply_clock_offset(data: &Path, is_up: bool) -> miette::Result<()> {
    let demo_folder = data.join(PEOPLE_FILE).exists();
    let secs: i64 = match std::env::var_os(CLOCK_OFFSET_ENV) {
        Some(v) => {
            let secs = v
                .to_str()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| miette!("`{CLOCK_OFFSET_ENV}` is not a whole number of seconds"))?;
            if !demo_folder {
                return Err(miette!(
                    "`{CLOCK_OFFSET_ENV}` is set, but `{}` is not a demonstration folder (seeded \
                     by `tianping up --demo`); a real installation keeps the machine's clock",
                    data.display()
                ));
            }
            secs
        }
        None if demo_folder && !is_up => {
            std::fs::read_to_string(data.join("run").join("clock-offset"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        }
        None => 0,
    };
    if secs != 0 {
        SystemClock::set_offset_ms(secs.saturating_mul(1000));
    }
    Ok(())
}

/// A person of the demo, as `demo-users.txt` lists them.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) password: String,
    pub(crate) totp: String,
}

/// The running fabric, as the scenario reaches it.
pub(crate) struct Running {
    pub(crate) dir: DataDir,
    pub(crate) fabric: Fabric,
    pub(crate) people: BTreeMap<String, Person>,
    pub(crate) wait: Duration,
}

impl Running {
    fn open(data: &Path, wait: Duration) -> miette::Result<Self> {
        let dir = DataDir::new(data);
        let fabric = Fabric::load(&dir.fabric()).map_err(miette::Report::new)?;
        let file = data.join(PEOPLE_FILE);
        let text = std::fs::read_to_string(&file)
            .into_diagnostic()
            .wrap_err_with(|| {
                format!(
                    "`{}` is missing: run `tianping up --demo` on this folder first",
                    file.display()
                )
            })?;
        let mut people = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let cols: Vec<&str> = line.split('\t').collect();
            if let [login, _role, _zone, password, totp, ..] = cols.as_slice() {
                people.insert(
                    (*login).to_owned(),
                    Person {
                        password: (*password).to_owned(),
                        totp: (*totp).to_owned(),
                    },
                );
            }
        }
        Ok(Self {
            dir,
            fabric,
            people,
            wait,
        })
    }

    pub(crate) fn zone(&self, name: &str) -> Result<ZoneName, String> {
        name.parse().map_err(|e| format!("{name}: {e}"))
    }

    /// Where a component's public listener answers.
    fn public_addr(&self, zone: &ZoneName, c: Component) -> Result<SocketAddr, String> {
        tianping_core::listener_addr(&self.dir, &self.fabric, zone, c, &Listener::Public)
            .map_err(|e| e.to_string())
    }

    /// The gateway's origin in `zone`, `https://gw.<zone>.<domain>:<port>`.
    pub(crate) fn gateway(&self, zone: &str) -> Result<String, String> {
        let z = self.zone(zone)?;
        let zl = self
            .fabric
            .zone(&z)
            .ok_or_else(|| format!("no zone `{zone}`"))?;
        let a = self.public_addr(&z, Component::Gateway)?;
        Ok(format!("https://{}:{}", zl.gateway_host, a.port()))
    }

    /// A fresh browser in `zone` (trusting the zone, reaching its gateway and IdP), presenting
    /// `cert` (a `demo-certs/` or administrator's certificate prefix) if given.
    pub(crate) fn browser(&self, zone: &str, cert: Option<&Path>) -> Result<Browser, String> {
        let z = self.zone(zone)?;
        let zl = self
            .fabric
            .zone(&z)
            .ok_or_else(|| format!("no zone `{zone}`"))?;
        let hosts = vec![
            (
                zl.gateway_host.clone(),
                self.public_addr(&z, Component::Gateway)?,
            ),
            (zl.idp_host.clone(), self.public_addr(&z, Component::Idp)?),
        ];
        let trust_path = self.dir.zone_trust_bundle(&z);
        let trust =
            std::fs::read(&trust_path).map_err(|e| format!("{}: {e}", trust_path.display()))?;
        let cert = match cert {
            None => None,
            Some(prefix) => {
                // `officer.zhao` + `.pem`: the login's own dot is no extension
                let with = |ext: &str| {
                    let mut p = prefix.as_os_str().to_owned();
                    p.push(ext);
                    PathBuf::from(p)
                };
                let (pem, key) = (with(".pem"), with(".key"));
                Some((
                    std::fs::read(&pem).map_err(|e| format!("{}: {e}", pem.display()))?,
                    std::fs::read(&key).map_err(|e| format!("{}: {e}", key.display()))?,
                ))
            }
        };
        Browser::new(&trust, &hosts, cert)
    }

    pub(crate) fn person(&self, login: &str) -> Result<&Person, String> {
        self.people
            .get(login)
            .ok_or_else(|| format!("`{login}` is not in `{}`", PEOPLE_FILE))
    }

    /// The person's current one-time code, by this process's clock (which the offset moves as
    /// it moves the fabric's).
    pub(crate) fn code(&self, p: &Person) -> String {
        let cfg = TotpConfig::default();
        match TotpSecret::from_base32(&p.totp) {
            Ok(s) => cfg.code_at(&s, cfg.step_at(SystemClock.now())),
            Err(_) => String::new(),
        }
    }

    /// The certificate prefix the demo issued a person (`DIR/demo-certs/<login>`).
    pub(crate) fn cert_of(&self, login: &str) -> PathBuf {
        self.dir.root().join("demo-certs").join(login)
    }

    /// Runs `tianping ARGS` on this folder (an operator's command); its status and output.
    pub(crate) fn tianping(&self, args: &[&str]) -> Result<(bool, String, String), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = std::process::Command::new(exe);
        // the command runs on the demonstration's clock, as the fabric does
        let offset_ms = SystemClock::offset_ms();
        if offset_ms != 0 {
            cmd.env(CLOCK_OFFSET_ENV, (offset_ms / 1000).to_string());
        }
        let out = cmd
            .arg("--data")
            .arg(self.dir.root())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    pub(crate) fn now(&self) -> UnixTime {
        SystemClock.now()
    }
}

pub(crate) fn run(data: &Path, args: DemoArgs) -> miette::Result<ExitCode> {
    // the clock runs at the fabric's offset (`apply_clock_offset`)
    let f = Running::open(data, Duration::from_secs(args.wait))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let failed = rt.block_on(steps::scenario(&f, args.json));
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
