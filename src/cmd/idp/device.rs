//! `tianping idp device add|list|remove --zone Z`: court-issued devices registered to a user.
//! A device's `device` certificate (`tianping certs issue --kind device`) maps to it by the
//! certificate's SHA-256 fingerprint; a person signing in on it still gives their own factors.
//!
//! These commands open the IdP's store, so they run on a stopped IdP; on a running one they
//! say so and change nothing (its control socket does not take device changes yet). Each change
//! is in the IdP's audit log.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_certs::{CertKind, certs_from_pem, identity_of};
use tianping_core::{Clock as _, SystemClock, ZoneName};
use tianping_idp::{Device, Devices, Directory, User};

use super::Paths;
use super::control::Live;

/// `tianping idp device ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCmd {
    /// Register a device certificate to a user.
    Add(DeviceAdd),
    /// The registered devices.
    List(DeviceZone),
    /// Forget a device: its certificate signs no one in any more.
    Remove(DeviceRef),
}

impl DeviceCmd {
    pub(crate) fn zone(&self) -> &ZoneName {
        match self {
            Self::Add(a) => &a.zone,
            Self::List(a) => &a.zone,
            Self::Remove(a) => &a.zone,
        }
    }
}

/// `idp device add`.
#[derive(Debug, Args)]
pub(crate) struct DeviceAdd {
    /// The zone.
    #[arg(long)]
    zone: ZoneName,
    /// The device's id (3 to 64 of a-z, 0-9 and -).
    #[arg(long)]
    id: String,
    /// The user it is issued to, by subject id or sign-in name.
    #[arg(long)]
    user: String,
    /// The device's certificate (PEM; the leaf is the first certificate).
    #[arg(long)]
    cert: PathBuf,
    /// A description.
    #[arg(long, default_value = "")]
    name: String,
}

/// A zone.
#[derive(Debug, Args)]
pub(crate) struct DeviceZone {
    /// The zone.
    #[arg(long)]
    zone: ZoneName,
}

/// `idp device remove`.
#[derive(Debug, Args)]
pub(crate) struct DeviceRef {
    /// The zone.
    #[arg(long)]
    zone: ZoneName,
    /// The device's id.
    #[arg(long)]
    id: String,
}

fn find_user(store: &dyn tianping_idp::Store, user: &str) -> miette::Result<User> {
    let dir = Directory::new(store);
    let by_sub = match user.parse() {
        Ok(sub) => dir.user(&sub).into_diagnostic()?,
        Err(_) => None,
    };
    match by_sub {
        Some(u) => Ok(u),
        None => dir
            .user_by_login(&user.to_lowercase())
            .into_diagnostic()?
            .ok_or_else(|| miette!("there is no user `{user}`; nothing changed")),
    }
}

/// The fingerprint of a device certificate of `zone` in the PEM file `path`.
fn device_fingerprint(path: &std::path::Path, zone: &ZoneName) -> miette::Result<[u8; 32]> {
    let pem = std::fs::read(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", path.display()))?;
    let chain = certs_from_pem(&pem).map_err(|e| miette!("`{}`: {e}", path.display()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| miette!("`{}` holds no certificate", path.display()))?;
    let id = identity_of(leaf).map_err(|e| miette!("`{}`: {e}", path.display()))?;
    if id.kind != CertKind::Device {
        return Err(miette!(
            "`{}` is a {} certificate, not a device one; nothing changed",
            path.display(),
            id.kind
        ));
    }
    if &id.zone != zone {
        return Err(miette!(
            "`{}` is a device certificate of zone `{}`, not `{zone}`; nothing changed",
            path.display(),
            id.zone
        ));
    }
    Ok(id.fingerprint)
}

fn audit(p: &Paths, action: &str, object: &str, reason: String) -> miette::Result<()> {
    let log = tianping_audit::AuditLog::open(&p.audit)
        .into_diagnostic()
        .wrap_err_with(|| format!("opening the IdP's audit log `{}`", p.audit.display()))?;
    let mut e = tianping_audit::Event::new(SystemClock.now(), action);
    e.zone = p.zone.to_string();
    e.component = "idp".into();
    e.actor = std::env::var("USER").unwrap_or_default();
    e.object = object.to_owned();
    e.outcome = "ok".into();
    e.reason = reason;
    log.append(&e).into_diagnostic()?;
    Ok(())
}

pub(crate) fn run(p: &Paths, cmd: DeviceCmd) -> miette::Result<ExitCode> {
    if Live::find(&p.socket)?.is_some() {
        return Err(miette!(
            "zone `{}`'s IdP is running: stop it to change or list its devices (its control socket does not take them yet); nothing changed",
            p.zone
        ));
    }
    p.require_initialised()?;
    let store = p.open_store()?;
    let devices = Devices::new(&store);
    match cmd {
        DeviceCmd::Add(a) => {
            let fingerprint = device_fingerprint(&a.cert, &p.zone)?;
            let owner = find_user(&store, &a.user)?;
            let device = Device {
                id: a.id,
                owner: owner.sub.clone(),
                fingerprint,
                name: a.name,
                added: SystemClock.now(),
            };
            devices
                .add(device.clone())
                .map_err(|e| miette!("{e}; nothing changed"))?;
            audit(
                p,
                "idp.device.add",
                &device.id,
                format!(
                    "owner {} certificate {}",
                    owner.sub,
                    device.fingerprint_hex()
                ),
            )?;
            println!(
                "device `{}` registered to `{}` ({}), certificate {}",
                device.id,
                owner.sub,
                owner.login,
                device.fingerprint_hex()
            );
        }
        DeviceCmd::List(_) => {
            for d in devices.list().into_diagnostic()? {
                println!("{}  {}  {}  {}", d.id, d.owner, d.fingerprint_hex(), d.name);
            }
        }
        DeviceCmd::Remove(a) => {
            let d = devices
                .remove(&a.id)
                .map_err(|e| miette!("{e}; nothing changed"))?;
            audit(
                p,
                "idp.device.remove",
                &d.id,
                format!("owner {} certificate {}", d.owner, d.fingerprint_hex()),
            )?;
            println!("device `{}` removed", d.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
