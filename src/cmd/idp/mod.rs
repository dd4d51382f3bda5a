//! `tianping idp`: the zone's identity provider. `init` creates its store, keys and audit log
//! under `zones/<zone>/idp/` (`tianping init` creates none); `serve` runs it (TLS listener,
//! admin listener, control socket); `keys` rotates and lists its token-signing keys.
//!
//! The store is one sled database, which one process opens at a time: commands on a stopped IdP
//! open it themselves, commands on a running one go through its control socket
//! (`run/<zone>-idp.sock`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_core::{Algorithm, Clock as _, Component, DataDir, Fabric, SystemClock, ZoneName};
use tianping_idp::{KeyDir, SledStore, TokenIssuer};

mod admin;
mod control;
mod device;
pub(crate) mod directory;
mod push;
mod replicate;
mod serve;

pub(crate) use replicate::{ZoneSigners, flow_terms};

/// `tianping idp ...`
#[derive(Debug, Subcommand)]
pub(crate) enum IdpCmd {
    /// Create the zone's IdP store, token-signing keys and audit log (refuses a zone done before).
    Init(InitArgs),
    /// Run the zone's IdP: its TLS listener, admin listener and control socket.
    Serve(ZoneArg),
    /// The token-signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// The directory's accounts.
    #[command(subcommand)]
    User(directory::UserCmd),
    /// The directory's courts.
    #[command(subcommand)]
    Court(directory::CourtCmd),
    /// The directory's registered clients.
    #[command(subcommand)]
    Client(directory::ClientCmd),
    /// Court-issued devices registered to a user (their device certificates).
    #[command(subcommand)]
    Device(device::DeviceCmd),
    /// Directory replication: signed updates exported for a zone, and applied.
    #[command(subcommand)]
    Directory(replicate::DirectoryCmd),
}

/// A zone.
#[derive(Debug, Args)]
pub(crate) struct ZoneArg {
    /// The zone.
    #[arg(long)]
    pub(crate) zone: ZoneName,
}

/// `idp init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The zone.
    #[arg(long)]
    zone: ZoneName,
    /// The token-signing algorithm.
    #[arg(long, value_enum, default_value_t = Alg::Es256)]
    alg: Alg,
    /// Mark the first administrators' client certificates as keys on a hardware token with a
    /// PIN (say so only if their keys are moved onto tokens; zone `private`).
    #[arg(long)]
    hardware: bool,
    /// Make no first administrators (zone `private` makes the three by default).
    #[arg(long, conflicts_with = "hardware")]
    no_administrators: bool,
}

/// `idp keys ...`
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCmd {
    /// Sign with a new key from now on; the old one stays published until its tokens expire.
    Rotate(RotateArgs),
    /// The keys the IdP publishes, the signing key first.
    List(ZoneArg),
}

/// `idp keys rotate`.
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// The zone.
    #[arg(long)]
    zone: ZoneName,
    /// The new key's algorithm.
    #[arg(long, value_enum, default_value_t = Alg::Es256)]
    alg: Alg,
}

/// A token-signing algorithm, as JWS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Alg {
    /// ECDSA P-256 (the default).
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

impl Alg {
    pub(crate) fn algorithm(self) -> Algorithm {
        match self {
            Alg::Es256 => Algorithm::Es256,
            Alg::EdDsa => Algorithm::Ed25519,
        }
    }

    /// The JWS name (`ES256`, `EdDSA`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        <Self as ValueEnum>::from_str(s, true).ok()
    }
}

/// Where a zone's IdP keeps its state.
pub(crate) struct Paths {
    pub(crate) zone: ZoneName,
    pub(crate) base: PathBuf,
    pub(crate) store: PathBuf,
    pub(crate) keys: KeyDir,
    pub(crate) audit: PathBuf,
    pub(crate) socket: PathBuf,
}

impl Paths {
    pub(crate) fn new(dir: &DataDir, zone: &ZoneName) -> Self {
        let base = dir.component(zone, Component::Idp);
        Self {
            zone: zone.clone(),
            store: base.join("store"),
            keys: KeyDir::new(dir.keys(zone, Component::Idp)),
            audit: dir.audit_log(zone, Component::Idp),
            socket: dir.socket(zone, Component::Idp),
            base,
        }
    }

    /// Whether `idp init` ran for the zone.
    pub(crate) fn initialised(&self) -> bool {
        self.store.exists() || self.keys.exists()
    }

    pub(crate) fn require_initialised(&self) -> miette::Result<()> {
        if self.store.exists() {
            Ok(())
        } else {
            Err(miette!(
                "zone `{}` has no identity provider store at `{}`: run `tianping idp init --zone {}`",
                self.zone,
                self.store.display(),
                self.zone
            ))
        }
    }

    pub(crate) fn open_store(&self) -> miette::Result<SledStore> {
        SledStore::open(&self.store)
            .into_diagnostic()
            .wrap_err_with(|| format!("opening the IdP store `{}`", self.store.display()))
    }
}

/// The audit log's origin for a zone's IdP.
pub(crate) fn origin(fabric: &Fabric, zone: &ZoneName) -> String {
    format!("{}/audit/{zone}/idp", fabric.domain)
}

/// The longest life of a token `keys` sign (access and ID tokens, as the issuer `serve` makes
/// sets them): how long a rotated-out key stays published.
pub(crate) fn longest_token_life(keys: tianping_idp::KeySet) -> Duration {
    let issuer = TokenIssuer::new("", keys);
    issuer.access_life.max(issuer.id_life)
}

pub(crate) fn run(data: &Path, cmd: IdpCmd) -> miette::Result<ExitCode> {
    let dir = DataDir::new(data);
    let fabric = Fabric::load(&dir.fabric()).into_diagnostic()?;
    let zone_of = |z: &ZoneName| -> miette::Result<Paths> {
        let listeners = fabric
            .zone(z)
            .ok_or_else(|| miette!("`fabric.toml` has no zone `{z}`"))?;
        if !listeners.runs(Component::Idp) {
            return Err(miette!(
                "zone `{z}` runs no identity provider in `fabric.toml`"
            ));
        }
        Ok(Paths::new(&dir, z))
    };
    match cmd {
        IdpCmd::Init(a) => init(&dir, &fabric, &zone_of(&a.zone)?, &a),
        IdpCmd::Serve(z) => serve::run(&dir, &fabric, &zone_of(&z.zone)?),
        IdpCmd::Keys(KeysCmd::Rotate(a)) => rotate(&zone_of(&a.zone)?, a.alg),
        IdpCmd::Keys(KeysCmd::List(z)) => list_keys(&zone_of(&z.zone)?),
        IdpCmd::User(c) => {
            let zone = c.zone().clone();
            directory::user(&zone_of(&zone)?, c)
        }
        IdpCmd::Court(c) => {
            let zone = c.zone().clone();
            directory::court(&zone_of(&zone)?, c)
        }
        IdpCmd::Client(c) => {
            let zone = c.zone().clone();
            directory::client(&zone_of(&zone)?, c)
        }
        IdpCmd::Device(c) => {
            let zone = c.zone().clone();
            device::run(&dir, &zone_of(&zone)?, c)
        }
        IdpCmd::Directory(c) => {
            let zone = c.zone()?;
            replicate::run(&dir, &fabric, &zone_of(&zone)?, c)
        }
    }
}

fn init(dir: &DataDir, fabric: &Fabric, p: &Paths, a: &InitArgs) -> miette::Result<ExitCode> {
    let alg = a.alg;
    if p.initialised() {
        return Err(miette!(
            "zone `{}`'s identity provider is already initialised (`{}`); nothing changed",
            p.zone,
            p.base.display()
        ));
    }
    if !p.base.is_dir() {
        return Err(miette!(
            "`{}` does not exist: make the data folder with `tianping init` first",
            p.base.display()
        ));
    }
    let now = SystemClock.now();
    let keys = p.keys.create(alg.algorithm(), now).into_diagnostic()?;
    let store = p.open_store()?;
    let log = tianping_audit::AuditLog::open_or_create(&p.audit, &origin(fabric, &p.zone))
        .into_diagnostic()?;
    let mut e = tianping_audit::Event::new(now, "idp.init");
    e.zone = p.zone.to_string();
    e.component = "idp".into();
    e.object = keys.kid().to_owned();
    e.outcome = "ok".into();
    log.append(&e).into_diagnostic()?;
    println!(
        "zone `{}`: identity provider store `{}`, signing key `{}` ({}), audit log `{}`",
        p.zone,
        p.store.display(),
        keys.kid(),
        tianping_idp::jws_alg(keys.signing_algorithm()),
        p.audit.display()
    );
    // the separated administrators of the zone where subject ids are assigned (DESIGN §8)
    if p.zone.as_str() == "private" && !a.no_administrators {
        let out = p.base.join("administrators");
        let made = admin::create_first_administrators(dir, &p.zone, &store, &log, &out, a.hardware)
            .map_err(|e| miette!("creating the first administrators: {e}"))?;
        for m in &made {
            println!(
                "administrator `{}` ({}): certificate `{}`, key `{}`, one-time password `{}`",
                m.sub,
                m.role.as_str(),
                m.cert.display(),
                m.key.display(),
                m.password.display()
            );
        }
        println!(
            "each must change the one-time password and enrol TOTP at first sign-in; until one has, the control socket's owner acts without a token"
        );
    }
    drop(store);
    Ok(ExitCode::SUCCESS)
}

fn rotate(p: &Paths, alg: Alg) -> miette::Result<ExitCode> {
    if let Some(live) = control::Live::find(&p.socket)? {
        let body = serde_json::json!({ "alg": alg.name() });
        let answer = live.post("/keys/rotate", &body)?;
        println!(
            "signing with `{}`; the previous key stays published until its tokens expire",
            answer
                .get("kid")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    p.require_initialised()?;
    let now = SystemClock.now();
    let life = longest_token_life(p.keys.load(now).into_diagnostic()?);
    let set = p
        .keys
        .rotate(alg.algorithm(), now, life)
        .into_diagnostic()?;
    println!(
        "signing with `{}`; the previous key stays published until its tokens expire",
        set.kid()
    );
    Ok(ExitCode::SUCCESS)
}

fn list_keys(p: &Paths) -> miette::Result<ExitCode> {
    let now = SystemClock.now();
    let keys = p.keys.list(now).into_diagnostic()?;
    for k in keys {
        let state = match k.until {
            None => "signing".to_owned(),
            Some(u) => format!(
                "published until {} ({} s from now)",
                u.as_secs(),
                u.saturating_since(now).as_secs()
            ),
        };
        println!("{}  {}  {state}", k.kid, tianping_idp::jws_alg(k.algorithm));
    }
    Ok(ExitCode::SUCCESS)
}
