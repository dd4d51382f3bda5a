//! `tianping up`: every zone on this machine, from the data folder (made on first run): each
//! zone's IdP, the audit store and the exchange daemons the policy's flows need, as supervised children
//! (`supervise.rs`), until `SIGINT` or `SIGTERM`.

mod demo;
mod supervise;

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_core::{Component, DataDir, Fabric, ServiceTarget};

/// Options of `tianping up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Check the data folder, print what would run, and start nothing.
    #[arg(long)]
    dry_run: bool,
    /// On the folder's first run, add sample courts and one person of every role (passwords
    /// and TOTP secrets printed and written to `DIR/demo-users.txt`, 0600).
    #[arg(long)]
    demo: bool,
}

/// The children that run the fabric: in each zone its IdP, the receiver when a flow of the
/// policy enters the zone, the sender when one leaves it (never out of a sealed zone, whose
/// policy has no flow out).
pub(crate) fn plan(fabric: &Fabric, policy: &tianping_policies::Policy) -> Vec<supervise::Spec> {
    let mut out = Vec::new();
    for z in fabric.zones() {
        let zone = &z.zone;
        let runs = |c: Component| z.components().any(|x| x == c);
        let spec = |component: Component, args: &[&str]| supervise::Spec {
            zone: zone.clone(),
            component,
            args: args
                .iter()
                .map(|a| (*a).to_owned())
                .chain(["--zone".to_owned(), zone.to_string()])
                .collect(),
        };
        if runs(Component::Idp) {
            out.push(spec(Component::Idp, &["idp", "serve"]));
        }
        if runs(Component::AuditStore) {
            out.push(spec(Component::AuditStore, &["audit", "store"]));
        }
        if runs(Component::ExchangeReceiver) && policy.flows().any(|f| f.to() == zone) {
            out.push(spec(Component::ExchangeReceiver, &["exchange", "receive"]));
        }
        if runs(Component::Gateway) {
            out.push(spec(Component::Gateway, &["gateway"]));
        }
        if runs(Component::ExchangeSender)
            && !policy.is_sealed(zone.as_str())
            && policy.flows().any(|f| f.from() == zone)
        {
            out.push(spec(Component::ExchangeSender, &["exchange", "send"]));
        }
    }
    out
}

/// `tianping idp init` for each zone whose IdP has none yet, as a child of its own (what it
/// prints is shown as it comes).
fn init_idps(dir: &DataDir, fabric: &Fabric) -> miette::Result<()> {
    let exe = std::env::current_exe().into_diagnostic()?;
    for z in fabric
        .zones()
        .filter(|z| z.components().any(|c| c == Component::Idp))
    {
        if super::idp::Paths::new(dir, &z.zone).initialised() {
            continue;
        }
        let status = std::process::Command::new(&exe)
            .arg("--data")
            .arg(dir.root())
            .args(["idp", "init", "--zone", z.zone.as_str()])
            .status()
            .into_diagnostic()?;
        if !status.success() {
            return Err(miette!(
                "`tianping idp init --zone {}` failed ({status}); nothing was started",
                z.zone
            ));
        }
    }
    Ok(())
}

pub(crate) fn run(data: &Path, args: UpArgs) -> miette::Result<ExitCode> {
    let made = super::init::init_if_missing(data)?;
    let dir = DataDir::new(data);
    // A refused `fabric.toml` is shown as a diagnostic pointing at the offending text.
    let fabric = Fabric::load(&dir.fabric()).map_err(miette::Report::new)?;
    let policy_path = dir.policy();
    let source = std::fs::read_to_string(&policy_path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", policy_path.display()))?;
    let checked = tianping_policies::check(&policy_path.display().to_string(), &source);
    if !checked.is_ok() {
        eprintln!("{}", checked.render());
        return Err(miette!(
            "the policy in force `{}` does not pass `tianping policy check`; nothing was started",
            policy_path.display()
        ));
    }

    println!(
        "{} data folder `{}`",
        if made { "made" } else { "using" },
        data.display()
    );
    println!("policy `{}` checked", policy_path.display());
    for z in fabric.zones() {
        let components: Vec<&str> = z.components().map(Component::as_str).collect();
        println!(
            "zone {:<11} gateway https://{}:{}  idp https://{}:{}  on {}  ({})",
            z.zone.as_str(),
            z.gateway_host,
            z.gateway_port,
            z.idp_host,
            z.idp_port,
            z.address,
            components.join(", ")
        );
    }
    let to_components = fabric
        .services()
        .values()
        .filter(|b| matches!(b.target, ServiceTarget::Component(_)))
        .count();
    println!(
        "{} one-way links, {} services bound ({to_components} to components)",
        fabric.links().len(),
        fabric.services().len()
    );
    let Some(policy) = checked.policy() else {
        return Err(miette!(
            "the policy in force did not compile; nothing was started"
        ));
    };
    let specs = plan(&fabric, policy);
    for s in &specs {
        println!(
            "runs {}/{}: tianping {}",
            s.zone,
            s.component.as_str(),
            s.args.join(" ")
        );
    }
    match crate::filters::scanning(policy) {
        Some((flows, Ok(()))) => println!(
            "flows that ask `scan` ({}): clamd answers at `{}`",
            flows.join(", "),
            tianping_crossdomain::Clamd::DEFAULT_SOCKET
        ),
        Some((flows, Err(e))) => println!(
            "flows that ask `scan` ({}) refuse every transfer until a ClamAV daemon answers at \
             `{}`: {e} (Debian: `apt install clamav-daemon`, then `freshclam`)",
            flows.join(", "),
            tianping_crossdomain::Clamd::DEFAULT_SOCKET
        ),
        None => {}
    }
    if args.dry_run {
        println!("nothing was started (--dry-run)");
        return Ok(ExitCode::SUCCESS);
    }
    init_idps(&dir, &fabric)?;
    if args.demo && !demo::seed(&dir)? {
        println!(
            "demo: the folder was seeded before; its people are in `{}`",
            dir.root().join("demo-users.txt").display()
        );
    }
    let origin = format!("{}/audit/supervisor", fabric.domain);
    supervise::run(&dir, &origin, specs)
}
