//! `tianping up`: every zone on this machine, from the data folder (made on first run).

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_core::{Component, DataDir, Fabric, ServiceTarget};

/// Options of `tianping up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {}

pub(crate) fn run(data: &Path, _args: UpArgs) -> miette::Result<ExitCode> {
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
    println!(
        "nothing was started: each zone's IdP (`tianping idp serve`) and link daemons \
         (`tianping exchange send|receive`) run on their own for now; the gateway, the audit \
         store and `up` starting them all are still to come"
    );
    Ok(ExitCode::SUCCESS)
}
