//! `tianping init`: creates the data folder (DESIGN §9).
//!
//! Everything is made in a hidden sibling folder and renamed into place at the end, so a
//! failure leaves nothing half-made, and an existing folder is refused untouched.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_certs::{CertKind, LeafRequest, Pki, PkiInit, random_secret};
use tianping_core::{
    Component, DataDir, Existing, Fabric, FileMode, ServiceTarget, UnixTime, ZoneListeners,
    ZoneName, write_atomic, write_private_file,
};

/// Options of `tianping init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {}

/// What the default `fabric.toml` is made from: the default policy's services `(service, zone)`
/// and its sealed zones.
pub(crate) fn default_fabric_text() -> miette::Result<String> {
    let checked = tianping_policies::check("default.tp", tianping_policies::DEFAULT_POLICY);
    let policy = checked
        .policy()
        .ok_or_else(|| miette!("the built-in default policy does not pass its check"))?;
    let services: Vec<(String, ZoneName)> = policy
        .services()
        .map(|(name, zone)| (name.to_owned(), zone.clone()))
        .collect();
    let sealed: Vec<ZoneName> = policy
        .zones()
        .filter(|z| policy.is_sealed(z.as_str()))
        .cloned()
        .collect();
    Ok(Fabric::default_text(&services, &sealed))
}

/// The default policy, written to `DIR/policy.tp` and each zone's `zones/<zone>/policy.tp`.
pub(crate) fn default_policy_text() -> &'static str {
    tianping_policies::DEFAULT_POLICY
}

/// 32 random bytes sealing the gateway's session cookies, under `DataDir::keys`.
pub(crate) const COOKIE_KEY: &str = "cookie.key";

/// Makes the data folder unless it already holds a `fabric.toml`; returns whether it made it.
pub(crate) fn init_if_missing(data: &Path) -> miette::Result<bool> {
    if DataDir::new(data).fabric().is_file() {
        return Ok(false);
    }
    run(data, InitArgs {}).map(|_| true)
}

pub(crate) fn run(data: &Path, _args: InitArgs) -> miette::Result<ExitCode> {
    if data.exists() {
        return Err(miette!(
            "`{}` already exists; nothing was changed (remove it or pass another `--data`)",
            data.display()
        ));
    }
    let name = data
        .file_name()
        .ok_or_else(|| miette!("`{}` is not a folder name", data.display()))?;
    let parent = data
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".{}.init-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    let made = build(&tmp).and_then(|made| {
        fs::rename(&tmp, data)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot create `{}`", data.display()))?;
        Ok(made)
    });
    let made = match made {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    println!("created {}", data.display());
    for line in made {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn mkdir(path: &Path) -> miette::Result<()> {
    fs::create_dir_all(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create `{}`", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> miette::Result<()> {
    write_atomic(path, bytes, FileMode::Public, Existing::Refuse).into_diagnostic()
}

fn copy(from: &Path, to: &Path) -> miette::Result<()> {
    let bytes = fs::read(from)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", from.display()))?;
    write(to, &bytes)
}

fn private_dir(path: &Path) -> miette::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    mkdir(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot set the mode of `{}`", path.display()))
}

/// Writes the whole data folder into `root`; returns the short tree to print.
fn build(root: &Path) -> miette::Result<Vec<String>> {
    let now = UnixTime::from_system_time(SystemTime::now());
    let dd = DataDir::new(root);
    mkdir(root)?;
    let mut made = Vec::new();

    let fabric_text = default_fabric_text()?;
    let fabric = Fabric::parse(&fabric_text).map_err(miette::Report::new)?;
    write(&dd.fabric(), fabric_text.as_bytes())?;
    made.push("fabric.toml".to_owned());
    write(&dd.policy(), default_policy_text().as_bytes())?;
    made.push("policy.tp".to_owned());
    // the schemas of its `json(NAME)` kinds beside it, where `policy check` reads them
    mkdir(&dd.schemas())?;
    for (name, text) in tianping_policies::DEFAULT_SCHEMAS {
        write(&dd.schemas().join(format!("{name}.json")), text.as_bytes())?;
    }
    made.push("schemas/        the JSON Schemas of the policy's json(NAME) kinds".to_owned());

    let pki = Pki::init(&dd.pki(), &PkiInit::default(), now).into_diagnostic()?;
    made.push(
        "pki/            root-ca.{pem,key} trust.pem zones/<zone>/{ca.pem,ca.key,crl.pem}"
            .to_owned(),
    );

    mkdir(&root.join("zones"))?;
    for zl in fabric.zones() {
        installed_copies(&dd, &fabric, &zl.zone)?;
        made.extend(zone(&dd, &pki, &fabric, zl, now)?);
    }
    made.push(
        "zones/<zone>/   policy.tp trust.pem crl/<zone>.pem schemas/  (the zone's installed copies)"
            .to_owned(),
    );
    let (mut folders, mut components) = (0, 0);
    for binding in fabric.services().values() {
        match &binding.target {
            ServiceTarget::Folder(folder) => {
                mkdir(&root.join(folder))?;
                folders += 1;
            }
            ServiceTarget::Component(_) => components += 1,
            ServiceTarget::Url { .. } => {}
        }
    }
    made.push(format!(
        "zones/<zone>/delivery/<service>/  {folders} delivery folders; \
         {components} services bound to components"
    ));
    private_dir(&dd.run())?;
    made.push("run/            (mode 0700: control sockets, addresses, admin tokens)".to_owned());
    Ok(made)
}

/// A zone's own copies of what updates change, from the authority's: the policy, the trust
/// bundle, every zone's CRL (a zone verifies signers of other zones too) and the JSON schemas.
fn installed_copies(dd: &DataDir, fabric: &Fabric, z: &ZoneName) -> miette::Result<()> {
    mkdir(&dd.zone(z))?;
    copy(&dd.policy(), &dd.zone_policy(z))?;
    copy(&dd.trust_bundle(), &dd.zone_trust_bundle(z))?;
    mkdir(&dd.zone_crls(z))?;
    for of in fabric.zones() {
        copy(&dd.crl(&of.zone), &dd.zone_crl(z, &of.zone))?;
    }
    let schemas = dd.zone_schemas(z);
    mkdir(&schemas)?;
    if let Ok(entries) = fs::read_dir(dd.schemas()) {
        for e in entries {
            let path = e.into_diagnostic()?.path();
            if let Some(name) = path.file_name().filter(|_| path.is_file()) {
                copy(&path, &schemas.join(name))?;
            }
        }
    }
    Ok(())
}

fn host(component: Component, zl: &ZoneListeners, domain: &str) -> String {
    match component {
        Component::Gateway => zl.gateway_host.clone(),
        Component::Idp => zl.idp_host.clone(),
        other => format!("{other}.{}.{domain}", zl.zone),
    }
}

/// Issues a leaf of the zone for `name` (and the zone's addresses) into `(pem, key)`.
fn write_leaf(
    pki: &Pki,
    zl: &ZoneListeners,
    kind: CertKind,
    name: &str,
    now: UnixTime,
    (pem, key): (PathBuf, PathBuf),
) -> miette::Result<()> {
    let mut req = LeafRequest::new(kind, name);
    req.dns = vec![name.to_owned()];
    req.ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    if !req.ips.contains(&zl.address) {
        req.ips.push(zl.address);
    }
    let issued = pki.issue(&zl.zone, &req, now).into_diagnostic()?;
    write_private_file(&key, issued.key_pem.expose().as_bytes()).into_diagnostic()?;
    write(&pem, issued.chain_pem.as_bytes())
}

/// Every component's TLS certificate and signing identity of one zone, and the gateway's keys.
fn zone(
    dd: &DataDir,
    pki: &Pki,
    fabric: &Fabric,
    zl: &ZoneListeners,
    now: UnixTime,
) -> miette::Result<Vec<String>> {
    let z = &zl.zone;
    let mut made = Vec::new();
    for c in zl.components() {
        mkdir(&dd.component(z, c))?;
        let name = host(c, zl, &fabric.domain);
        write_leaf(pki, zl, CertKind::Server, &name, now, dd.tls(z, c))?;
        write_leaf(pki, zl, CertKind::Node, &name, now, dd.node(z, c))?;
        let mut files = vec!["tls.{pem,key}", "node.{pem,key}"];
        if c == Component::Gateway {
            let keys = dd.keys(z, c);
            private_dir(&keys)?;
            let cookie = random_secret(32).into_diagnostic()?;
            write_private_file(&keys.join(COOKIE_KEY), cookie.expose()).into_diagnostic()?;
            files.push("keys/cookie.key");
        }
        made.push(format!("zones/{z}/{c}/ {}", files.join(" ")));
    }
    Ok(made)
}
