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
use tianping_certs::{
    CertKind, LeafRequest, Pki, PkiInit, pem_encode, random_secret, write_private,
};
use tianping_core::{
    Algorithm, Component, DataDir, Fabric, RingSigner, UnixTime, ZoneListeners, ZoneName,
};

/// Options of `tianping init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {}

/// The services of the default policy, each bound in the default `fabric.toml`: `(service, zone)`.
pub(crate) fn default_services() -> miette::Result<Vec<(String, ZoneName)>> {
    let checked = tianping_policies::check("default.tp", tianping_policies::DEFAULT_POLICY);
    let policy = checked
        .policy()
        .ok_or_else(|| miette!("the built-in default policy does not pass its check"))?;
    Ok(policy
        .services()
        .map(|(name, zone)| (name.to_owned(), zone.clone()))
        .collect())
}

/// The default policy, written to `DIR/policy.tp`.
pub(crate) fn default_policy_text() -> &'static str {
    tianping_policies::DEFAULT_POLICY
}

/// The file names of the gateway's keys under `DataDir::keys`.
pub(crate) const ASSERTION_KEY: &str = "assertion.key";
/// 32 random bytes sealing the gateway's session cookies.
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
    fs::write(path, bytes)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write `{}`", path.display()))
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

    let fabric_text = Fabric::default_text(&default_services()?);
    let fabric = Fabric::parse(&fabric_text).into_diagnostic()?;
    write(&dd.fabric(), fabric_text.as_bytes())?;
    made.push("fabric.toml".to_owned());
    write(&dd.policy(), default_policy_text().as_bytes())?;
    made.push("policy.tp".to_owned());

    let pki = Pki::init(&dd.pki(), &PkiInit::default(), now).into_diagnostic()?;
    made.push(
        "pki/            root-ca.{pem,key} trust.pem zones/<zone>/{ca.pem,ca.key,crl.pem}"
            .to_owned(),
    );

    mkdir(&root.join("zones"))?;
    for zl in fabric.zones() {
        made.extend(zone(&dd, &pki, &fabric, zl, now)?);
    }
    let mut folders = 0;
    for binding in fabric.services().values() {
        if let tianping_core::ServiceTarget::Folder(folder) = &binding.target {
            fs::create_dir_all(root.join(folder))
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot create `{}`", folder.display()))?;
            folders += 1;
        }
    }
    made.push(format!(
        "zones/<zone>/delivery/<service>/  {folders} delivery folders"
    ));
    private_dir(&dd.run())?;
    made.push("run/            (mode 0700: control sockets, admin tokens)".to_owned());
    Ok(made)
}

fn host(component: Component, zl: &ZoneListeners, domain: &str) -> String {
    match component {
        Component::Gateway => zl.gateway_host.clone(),
        Component::Idp => zl.idp_host.clone(),
        other => format!("{other}.{}.{domain}", zl.zone),
    }
}

fn write_leaf(
    pki: &Pki,
    zone: &ZoneName,
    req: &LeafRequest,
    now: UnixTime,
    (pem, key): (PathBuf, PathBuf),
) -> miette::Result<()> {
    let issued = pki.issue(zone, req, now).into_diagnostic()?;
    write_private(&key, issued.key_pem.expose().as_bytes()).into_diagnostic()?;
    write(&pem, issued.chain_pem.as_bytes())
}

/// Every component's certificates of one zone, and the gateway's keys.
fn zone(
    dd: &DataDir,
    pki: &Pki,
    fabric: &Fabric,
    zl: &ZoneListeners,
    now: UnixTime,
) -> miette::Result<Vec<String>> {
    let z = &zl.zone;
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    if !ips.contains(&zl.address) {
        ips.push(zl.address);
    }
    let mut made = Vec::new();
    for c in Component::ALL {
        mkdir(&dd.component(z, c))?;
        let name = host(c, zl, &fabric.domain);
        let mut req = LeafRequest::new(CertKind::Server, &name);
        req.dns = vec![name.clone()];
        req.ips.clone_from(&ips);
        write_leaf(pki, z, &req, now, dd.tls(z, c))?;
        let mut files = vec!["tls.{pem,key}"];
        if c.is_exchange_node() {
            let mut node = LeafRequest::new(CertKind::Node, &name);
            node.dns = vec![name.clone()];
            node.ips.clone_from(&ips);
            write_leaf(pki, z, &node, now, dd.node(z, c))?;
            files.push("node.{pem,key}");
        }
        if c == Component::Gateway {
            let keys = dd.keys(z, c);
            private_dir(&keys)?;
            let (_, pkcs8) = RingSigner::generate(Algorithm::Es256).into_diagnostic()?;
            let pem = tianping_core::Secret::new(pem_encode("PRIVATE KEY", pkcs8.expose()));
            write_private(&keys.join(ASSERTION_KEY), pem.expose().as_bytes()).into_diagnostic()?;
            let cookie = random_secret(32).into_diagnostic()?;
            write_private(&keys.join(COOKIE_KEY), cookie.expose()).into_diagnostic()?;
            files.push("keys/{assertion.key,cookie.key}");
        }
        made.push(format!("zones/{z}/{c}/ {}", files.join(" ")));
    }
    Ok(made)
}
