//! `tianping idp device add|list|remove --zone Z`: court-issued devices registered to a user.
//! A device's `device` certificate (`tianping certs issue --kind device`) maps to it by the
//! certificate's SHA-256 fingerprint; a person signing in on it still gives their own factors.
//!
//! On a running IdP they go through its control socket (`POST /devices`), on a stopped one to
//! its store; the same [`execute`] carries them out either way. Each change is in the IdP's
//! audit log. A device certificate is registered only once it verifies against
//! the zone's CA and CRL ([`zone_cert_verifier`], the verifier certificate sign-in takes too).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tianping_audit::AuditLog;
use tianping_certs::{TrustStore, certs_from_pem};
use tianping_core::{Clock as _, DataDir, SystemClock, ZoneName};
use tianping_idp::{
    CertFailure, CertHolder, ClientCertVerifier, Device, Devices, Directory, Store,
    TrustStoreVerifier,
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

/// A device change or listing, as the CLI sends it to a running IdP's control socket
/// (`POST /devices`) or carries it out on a stopped one's store: the certificate already
/// verified and reduced to its fingerprint by the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum DeviceOp {
    /// Register a device.
    Add {
        /// Its id.
        id: String,
        /// Its user, by subject id or sign-in name.
        user: String,
        /// Its certificate's SHA-256, hex.
        fingerprint: String,
        /// A description.
        name: String,
        /// Who asks (the audit event's actor).
        actor: String,
    },
    /// The registered devices.
    List,
    /// Forget a device.
    Remove {
        /// Its id.
        id: String,
        /// Who asks.
        actor: String,
    },
}

/// 32 bytes from 64 hex digits.
fn from_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        *o = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn audit_event(
    audit: &AuditLog,
    zone: &str,
    actor: &str,
    action: &str,
    object: &str,
    reason: String,
) -> Result<(), String> {
    let mut e = tianping_audit::Event::new(SystemClock.now(), action);
    e.zone = zone.to_owned();
    e.component = "idp".into();
    e.actor = actor.to_owned();
    e.object = object.to_owned();
    e.outcome = "ok".into();
    e.reason = reason;
    audit.append(&e).map_err(|e| format!("audit: {e}"))?;
    Ok(())
}

/// Carries out `op` on `store`, each change in `audit`; the answer as JSON, or the refusal
/// (nothing changed). The one implementation for a stopped IdP and for a running one's
/// control socket.
pub(crate) fn execute(
    store: &dyn Store,
    audit: &AuditLog,
    zone: &str,
    op: &DeviceOp,
) -> Result<Value, String> {
    let devices = Devices::new(store);
    let refused = |e: &dyn std::fmt::Display| format!("{e}; nothing changed");
    match op {
        DeviceOp::Add {
            id,
            user,
            fingerprint,
            name,
            actor,
        } => {
            let fingerprint = from_hex32(fingerprint)
                .ok_or_else(|| refused(&"the certificate fingerprint is not 32 bytes of hex"))?;
            let owner = super::directory::find_user(&Directory::new(store), user)
                .map_err(|e| refused(&e))?;
            let device = Device {
                id: id.clone(),
                owner: owner.sub.clone(),
                fingerprint,
                name: name.clone(),
                added: SystemClock.now(),
            };
            devices.add(device.clone()).map_err(|e| refused(&e))?;
            audit_event(
                audit,
                zone,
                actor,
                "idp.device.add",
                &device.id,
                format!(
                    "owner {} certificate {}",
                    owner.sub,
                    device.fingerprint_hex()
                ),
            )?;
            Ok(json!({
                "id": device.id,
                "owner": owner.sub.as_str(),
                "login": owner.login,
                "fingerprint": device.fingerprint_hex(),
            }))
        }
        DeviceOp::List => {
            let list = devices.list().map_err(|e| e.to_string())?;
            let list: Vec<Value> = list
                .iter()
                .map(|d| {
                    json!({
                        "id": d.id,
                        "owner": d.owner.as_str(),
                        "fingerprint": d.fingerprint_hex(),
                        "name": d.name,
                    })
                })
                .collect();
            Ok(json!({ "devices": list }))
        }
        DeviceOp::Remove { id, actor } => {
            let d = devices.remove(id).map_err(|e| refused(&e))?;
            audit_event(
                audit,
                zone,
                actor,
                "idp.device.remove",
                &d.id,
                format!("owner {} certificate {}", d.owner, d.fingerprint_hex()),
            )?;
            Ok(json!({ "id": d.id }))
        }
    }
}

/// Prints the answer to `op` as the commands always have.
fn print(op: &DeviceOp, answer: &Value) {
    let s = |k: &str| {
        answer
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match op {
        DeviceOp::Add { .. } => println!(
            "device `{}` registered to `{}` ({}), certificate {}",
            s("id"),
            s("owner"),
            s("login"),
            s("fingerprint")
        ),
        DeviceOp::List => {
            let list = answer.get("devices").and_then(Value::as_array);
            for d in list.into_iter().flatten() {
                let f = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default();
                println!(
                    "{}  {}  {}  {}",
                    f("id"),
                    f("owner"),
                    f("fingerprint"),
                    f("name")
                );
            }
        }
        DeviceOp::Remove { .. } => println!("device `{}` removed", s("id")),
    }
}

pub(crate) fn run(dir: &DataDir, p: &Paths, cmd: DeviceCmd) -> miette::Result<ExitCode> {
    let actor = std::env::var("USER").unwrap_or_default();
    let op = match cmd {
        DeviceCmd::Add(a) => {
            let verifier = zone_cert_verifier(dir, &p.zone)?;
            let fingerprint = device_fingerprint(&a.cert, &verifier, &p.zone)?;
            DeviceOp::Add {
                id: a.id,
                user: a.user,
                fingerprint: fingerprint.iter().map(|b| format!("{b:02x}")).collect(),
                name: a.name,
                actor,
            }
        }
        DeviceCmd::List(_) => DeviceOp::List,
        DeviceCmd::Remove(a) => DeviceOp::Remove { id: a.id, actor },
    };
    let answer = if let Some(live) = Live::find(&p.socket)? {
        live.post("/devices", &serde_json::to_value(&op).into_diagnostic()?)?
    } else {
        p.require_initialised()?;
        let store = p.open_store()?;
        let audit = AuditLog::open(&p.audit)
            .into_diagnostic()
            .wrap_err_with(|| format!("opening the IdP's audit log `{}`", p.audit.display()))?;
        execute(&store, &audit, p.zone.as_str(), &op).map_err(|e| miette!("{e}"))?
    };
    print(&op, &answer);
    Ok(ExitCode::SUCCESS)
}
