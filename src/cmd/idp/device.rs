//! `tianping idp device add|list|remove --zone Z`: court-issued devices registered to a user.
//! A device's `device` certificate (`tianping certs issue --kind device`) maps to it by the
//! certificate's SHA-256 fingerprint; a person signing in on it still gives their own factors.
//!
//! These commands open the IdP's store, so they run on a stopped IdP; on a running one they
//! say so and change nothing (its control socket does not take device changes yet). Each change
//! is in the IdP's audit log. A device certificate is registered only once it verifies against
//! the zone's CA and CRL ([`zone_cert_verifier`], the verifier certificate sign-in takes too).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_certs::{TrustStore, certs_from_pem};
use tianping_core::{Clock as _, DataDir, SystemClock, ZoneName};
use tianping_idp::{
    CertFailure, CertHolder, ClientCertVerifier, Device, Devices, Directory, TrustStoreVerifier,
};

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

/// The zone's certificate verifier ([`TrustStoreVerifier`]) from its own installed trust bundle
/// and CRL (`zones/<zone>/trust.pem`, `zones/<zone>/crl/<zone>.pem`), narrowed to the zone's
/// CA: the verifier of certificate sign-in (`Idp::with_cert_sign_in`) and of a device
/// registered here.
pub(crate) fn zone_cert_verifier(
    dir: &DataDir,
    zone: &ZoneName,
) -> miette::Result<TrustStoreVerifier> {
    let read = |p: PathBuf| {
        std::fs::read(&p)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading `{}`", p.display()))
    };
    let trust_pem = read(dir.zone_trust_bundle(zone))?;
    let crl = read(dir.zone_crl(zone, zone))?;
    let trust = TrustStore::from_pem(&trust_pem, &[&crl])
        .and_then(|t| t.for_zone(zone))
        .map_err(|e| miette!("zone `{zone}`'s trust bundle and crl: {e}"))?;
    Ok(TrustStoreVerifier::new(trust))
}

fn failure_text(f: &CertFailure) -> String {
    match f {
        CertFailure::Revoked => "it has been revoked".into(),
        CertFailure::Expired => "it has expired".into(),
        CertFailure::NotYetValid => "it is not valid yet".into(),
        CertFailure::OtherZone => "it was not issued by the zone's CA".into(),
        CertFailure::StaleCrl => "the zone's crl is past its next update".into(),
        CertFailure::Invalid(why) => why.clone(),
    }
}

/// The fingerprint of the device certificate in the PEM file `path` (the leaf, then its zone
/// CA, as `certs issue` writes it), once it verifies against the zone's CA and CRL.
fn device_fingerprint(
    path: &std::path::Path,
    verifier: &TrustStoreVerifier,
    zone: &ZoneName,
) -> miette::Result<[u8; 32]> {
    let pem = std::fs::read(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", path.display()))?;
    let chain: Vec<Vec<u8>> = certs_from_pem(&pem)
        .map_err(|e| miette!("`{}`: {e}", path.display()))?
        .iter()
        .map(|c| c.to_vec())
        .collect();
    if chain.is_empty() {
        return Err(miette!("`{}` holds no certificate", path.display()));
    }
    let cert = verifier
        .verify(&chain, SystemClock.now(), false)
        .map_err(|f| {
            miette!(
                "`{}` does not verify against zone `{zone}`'s CA and crl: {}; nothing changed",
                path.display(),
                failure_text(&f)
            )
        })?;
    match cert.holder {
        CertHolder::Device => Ok(cert.fingerprint),
        CertHolder::Person { .. } => Err(miette!(
            "`{}` is a client certificate, not a device one; nothing changed",
            path.display()
        )),
        CertHolder::Other(kind) => Err(miette!(
            "`{}` is a {kind} certificate, not a device one; nothing changed",
            path.display()
        )),
    }
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

pub(crate) fn run(dir: &DataDir, p: &Paths, cmd: DeviceCmd) -> miette::Result<ExitCode> {
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
            let verifier = zone_cert_verifier(dir, &p.zone)?;
            let fingerprint = device_fingerprint(&a.cert, &verifier, &p.zone)?;
            let owner = super::directory::find_user(&Directory::new(&store), &a.user)
                .map_err(|e| miette!("{e}; nothing changed"))?;
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
