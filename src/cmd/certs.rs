//! `tianping certs`: the court PKI from the command line.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_certs::{
    CertError, CertKind, CertUsage, CertificateDer, KeyAlg, LeafRequest, Pki, PkiInit,
    RevokeReason, certs_from_pem, format_time, identity_of, summarize, verify_chain,
};
use tianping_core::{CourtCode, DataDir, Role, SubjectId, UnixTime, ZoneName};

/// `tianping certs` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CertsCmd {
    /// Create the root CA, a CA for each zone and the trust bundle in a new folder.
    Init(InitArgs),
    /// Add a CA for a new zone (needs the root key, which may be kept offline).
    AddZone(AddZoneArgs),
    /// Issue a server, client (person), device or node certificate from a zone's CA.
    Issue(IssueArgs),
    /// Record a certificate's revocation in its zone and refresh the zone's CRL.
    Revoke(RevokeArgs),
    /// Write a zone's signed CRL.
    Crl(CrlArgs),
    /// Show a certificate; with `--dir`, also whether it validates (exit 1 when it does not).
    Inspect(InspectArgs),
}

/// Where the PKI folder is.
#[derive(Debug, Args)]
pub(crate) struct DirArg {
    /// The PKI folder [default: DATA/pki].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl DirArg {
    fn path(&self, data: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| DataDir::new(data).pki())
    }
}

/// Options of `certs init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The organization named in every CA.
    #[arg(long, default_value = "Tianping Court", value_name = "NAME")]
    org: String,
    /// Write the root CA's key here instead of DIR/root-ca.key, to keep it offline.
    #[arg(long, value_name = "FILE")]
    root_key: Option<PathBuf>,
    /// The CAs' key algorithm.
    #[arg(long, default_value = "ec-p256", value_name = "ALG")]
    key: KeyAlg,
}

/// Options of `certs add-zone`.
#[derive(Debug, Args)]
pub(crate) struct AddZoneArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The new zone.
    #[arg(long)]
    zone: ZoneName,
    /// The root CA's key [default: DIR/root-ca.key].
    #[arg(long, value_name = "FILE")]
    root_key: Option<PathBuf>,
    /// The new CA's key algorithm.
    #[arg(long, default_value = "ec-p256", value_name = "ALG")]
    key: KeyAlg,
}

/// Options of `certs issue`.
#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The zone whose CA issues the certificate.
    #[arg(long)]
    zone: ZoneName,
    /// server, client, device or node.
    #[arg(long)]
    kind: CertKind,
    /// The certificate's common name.
    #[arg(long)]
    name: String,
    /// Writes PREFIX.pem (leaf, then the zone CA) and PREFIX.key (PKCS#8, mode 0600).
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
    /// The key algorithm: ec-p256 or ed25519.
    #[arg(long, default_value = "ec-p256", value_name = "ALG")]
    key: KeyAlg,
    /// A DNS name (server and node certificates; repeatable).
    #[arg(long)]
    dns: Vec<String>,
    /// An IP address (server and node certificates; repeatable).
    #[arg(long)]
    ip: Vec<IpAddr>,
    /// The person's subject id (client certificates).
    #[arg(long, value_name = "ID")]
    subject_id: Option<SubjectId>,
    /// The person's court code, e.g. bj.01.03 (client certificates).
    #[arg(long, value_name = "CODE")]
    court: Option<CourtCode>,
    /// A role of the person (client certificates; repeatable).
    #[arg(long = "role", value_name = "R")]
    roles: Vec<Role>,
    /// Days of validity.
    #[arg(long, default_value_t = 365, value_name = "N")]
    days: u32,
    /// Mark a client certificate whose key the issuer puts on a hardware token with a PIN
    /// (SAN `urn:tianping:key:hardware`); only such certificates count as `acr=cert` alone.
    #[arg(long)]
    hardware: bool,
}

/// Options of `certs revoke`.
#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The certificate to revoke (PEM; the first certificate is the one revoked).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation or
    /// privilege-withdrawn.
    #[arg(long, default_value = "unspecified", value_name = "R")]
    reason: RevokeReason,
}

/// Options of `certs crl`.
#[derive(Debug, Args)]
pub(crate) struct CrlArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The zone whose CA signs the CRL.
    #[arg(long)]
    zone: ZoneName,
    /// Where to write the PEM CRL.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Days until the CRL's next update.
    #[arg(long, default_value_t = tianping_certs::DEFAULT_CRL_DAYS, value_name = "N")]
    days: u32,
}

/// Options of `certs inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The certificate (PEM chain, leaf first, or DER).
    file: PathBuf,
    /// Also validate against this PKI folder: chain, time, usage, revocation.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Validate for this zone only (default: the zone the certificate names).
    #[arg(long, requires = "dir")]
    zone: Option<ZoneName>,
    /// The validation time in unix seconds (default: now).
    #[arg(long, hide = true, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
}

fn now() -> UnixTime {
    UnixTime::from_system_time(SystemTime::now())
}

pub(crate) fn run(data: &Path, cmd: CertsCmd) -> miette::Result<ExitCode> {
    match cmd {
        CertsCmd::Init(a) => init(data, a),
        CertsCmd::AddZone(a) => add_zone(data, a),
        CertsCmd::Issue(a) => issue(data, a),
        CertsCmd::Revoke(a) => revoke(data, a),
        CertsCmd::Crl(a) => crl(data, a),
        CertsCmd::Inspect(a) => inspect(a),
    }
}

fn init(data: &Path, a: InitArgs) -> miette::Result<ExitCode> {
    let dir = a.dir.path(data);
    let spec = PkiInit {
        org: a.org,
        root_key: a.root_key,
        key: a.key,
        ..PkiInit::default()
    };
    let pki = Pki::init(&dir, &spec, now()).into_diagnostic()?;
    println!("created {}", dir.display());
    println!("  root-ca.pem");
    match &spec.root_key {
        Some(k) => println!("  (root key written to {}; keep it offline)", k.display()),
        None => println!("  root-ca.key"),
    }
    println!("  trust.pem");
    for z in pki.zones() {
        println!("  zones/{z}/ ca.pem ca.key crl.pem revoked.txt");
    }
    Ok(ExitCode::SUCCESS)
}

fn add_zone(data: &Path, a: AddZoneArgs) -> miette::Result<ExitCode> {
    let pki = Pki::open(&a.dir.path(data)).into_diagnostic()?;
    let key_path = a.root_key.unwrap_or_else(|| pki.dir().join("root-ca.key"));
    if !key_path.is_file() {
        return Err(miette!(
            "the root key `{}` is not here; pass `--root-key FILE` where it is kept",
            key_path.display()
        ));
    }
    let root_key = std::fs::read_to_string(&key_path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", key_path.display()))?;
    pki.add_zone(&a.zone, &root_key, a.key, now())
        .into_diagnostic()?;
    println!(
        "added the {} zone CA: {}; {} updated",
        a.zone,
        pki.zone_ca_path(&a.zone).display(),
        pki.trust_pem_path().display()
    );
    Ok(ExitCode::SUCCESS)
}

fn issue(data: &Path, a: IssueArgs) -> miette::Result<ExitCode> {
    let pki = Pki::open(&a.dir.path(data)).into_diagnostic()?;
    let req = LeafRequest {
        kind: a.kind,
        name: a.name,
        dns: a.dns,
        ips: a.ip,
        subject: a.subject_id,
        court: a.court,
        roles: a.roles,
        days: a.days,
        key: a.key,
        hardware: a.hardware,
    };
    let issued = pki.issue(&a.zone, &req, now()).into_diagnostic()?;
    let (pem, key) = Pki::write_issued(&issued, &a.out).into_diagnostic()?;
    println!(
        "issued {} certificate `{}` in zone {} (serial {})",
        req.kind, req.name, a.zone, issued.serial
    );
    println!("  {}\n  {}", pem.display(), key.display());
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> miette::Result<Vec<u8>> {
    std::fs::read(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", path.display()))
}

fn revoke(data: &Path, a: RevokeArgs) -> miette::Result<ExitCode> {
    let pki = Pki::open(&a.dir.path(data)).into_diagnostic()?;
    let (zone, serial) = pki
        .revoke(&read(&a.cert)?, a.reason, now())
        .into_diagnostic()?;
    println!(
        "revoked {serial} in zone {zone} ({}); {} updated",
        a.reason,
        pki.crl_path(&zone).display()
    );
    send_crl(data, &zone, &pki.crl_path(&zone))?;
    Ok(ExitCode::SUCCESS)
}

/// Sends the CRL of `zone` (at `crl`) to every zone a flow out of `private` carries `crl` to,
/// when `private`'s exchange sender runs (its first label names the CA's zone, so the receiver
/// installs it as that zone's); says so when it does not.
fn send_crl(data: &Path, zone: &ZoneName, crl: &Path) -> miette::Result<()> {
    let dir = tianping_core::DataDir::new(data);
    let authority: ZoneName = "private".parse().into_diagnostic()?;
    let socket = dir.socket(&authority, tianping_core::Component::ExchangeSender);
    let path = dir.zone_policy(&authority);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let Some(policy) = tianping_policies::check(&path.display().to_string(), &text).into_policy()
    else {
        return Ok(());
    };
    let flows: Vec<_> = policy
        .flows()
        .filter(|f| f.from() == &authority && f.kinds().any(|(k, _)| k.as_str() == "crl"))
        .collect();
    if flows.is_empty() {
        return Ok(());
    }
    if !socket.exists() {
        println!(
            "not sent: `private`'s exchange sender does not run; the CRL reaches the other zones \
             when it is sent (`tianping exchange submit --zone private --flow FLOW --kind crl \
             --label {zone} --file {}`)",
            crl.display()
        );
        return Ok(());
    }
    for f in flows {
        let id = super::exchange::submit_as_machine(
            &dir,
            &authority,
            f.name(),
            "crl",
            &[zone.as_str()],
            crl,
        )?;
        println!("sent to `{}` on `{}`: transfer {id}", f.to(), f.name());
    }
    Ok(())
}

fn crl(data: &Path, a: CrlArgs) -> miette::Result<ExitCode> {
    let pki = Pki::open(&a.dir.path(data)).into_diagnostic()?;
    let pem = pki.crl(&a.zone, now(), a.days).into_diagnostic()?;
    let tmp = a.out.with_extension("crl-tmp");
    std::fs::write(&tmp, pem)
        .and_then(|()| std::fs::rename(&tmp, &a.out))
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write `{}`", a.out.display()))?;
    println!(
        "wrote the {} crl ({} revoked, next update in {} days) to {}",
        a.zone,
        pki.revocations(&a.zone).into_diagnostic()?.len(),
        a.days,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect(a: InspectArgs) -> miette::Result<ExitCode> {
    let bytes = read(&a.file)?;
    let chain = if bytes.windows(10).any(|w| w == b"-----BEGIN") {
        certs_from_pem(&bytes).into_diagnostic()?
    } else {
        vec![bytes.into()]
    };
    let leaf = chain
        .first()
        .ok_or_else(|| miette!("no certificate in `{}`", a.file.display()))?;
    let s = summarize(leaf).into_diagnostic()?;
    println!("subject:      {}", s.subject_dn);
    println!("issuer:       {}", s.issuer_dn);
    println!("serial:       {}", s.serial);
    println!("ca:           {}", if s.is_ca { "yes" } else { "no" });
    for d in &s.dns {
        println!("dns:          {d}");
    }
    for ip in &s.ips {
        println!("ip:           {ip}");
    }
    for u in &s.uris {
        println!("uri:          {u}");
    }
    match identity_of(leaf) {
        Ok(id) => {
            println!("kind:         {}", id.kind);
            println!("zone:         {}", id.zone);
            if let Some(sub) = &id.subject {
                println!("subject id:   {sub}");
            }
            if let Some(c) = &id.court {
                println!("court:        {c}");
            }
            if !id.roles.is_empty() {
                let roles: Vec<&str> = id.roles.iter().map(|r| r.as_str()).collect();
                println!("roles:        {}", roles.join(", "));
            }
            if id.kind == CertKind::Client {
                let how = if id.hardware {
                    "hardware token with a pin (counts as acr=cert alone)"
                } else {
                    "software (not acr=cert alone)"
                };
                println!("key:          {how}");
            }
        }
        Err(e) if !s.is_ca => println!("identity:     none ({e})"),
        Err(_) => {}
    }
    println!("not before:   {}", format_time(s.not_before));
    println!("not after:    {}", format_time(s.not_after));
    println!("key usage:    {}", s.key_usages.join(", "));
    println!("ext. usage:   {}", s.extended_key_usages.join(", "));
    println!("sha256:       {}", hex_upper(&s.fingerprint));
    let Some(dir) = a.dir else {
        return Ok(ExitCode::SUCCESS);
    };
    let pki = Pki::open(&dir).into_diagnostic()?;
    let at = a.at.map_or_else(now, UnixTime::from_secs);
    match validate(&pki, &chain, a.zone.as_ref(), at) {
        Ok(()) => {
            println!("valid:        yes (at {})", format_time(secs(at)));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("valid:        no: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

fn hex_upper(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Chain, time, usage and revocation (the zone's CRL and its recorded revocations).
fn validate(
    pki: &Pki,
    chain: &[CertificateDer<'static>],
    zone: Option<&ZoneName>,
    at: UnixTime,
) -> Result<(), CertError> {
    let leaf = chain
        .first()
        .ok_or_else(|| CertError::Malformed("no certificate".to_owned()))?;
    let id = identity_of(leaf)?;
    let zone = zone.unwrap_or(&id.zone);
    let trust = pki.trust_store()?.for_zone(zone)?;
    verify_chain(chain, &trust, at, CertUsage::OwnKind)?;
    if pki.is_revoked(zone, &summarize(leaf)?.serial)? {
        return Err(CertError::Revoked);
    }
    Ok(())
}
