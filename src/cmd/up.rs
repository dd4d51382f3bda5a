//! `tianping up`: every zone on this machine, from the data folder (made on first run): each
//! zone's IdP, the audit store and the exchange daemons the policy's flows need, as supervised children
//! (`supervise.rs`), until `SIGINT` or `SIGTERM`.

mod clamd;
mod demo;
mod netns;
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
    /// Run each zone in a network namespace of its own, each link a veth pair with the return
    /// path dropped (root; `ip` and `nft`). The folder's `fabric.toml` moves to the namespaces'
    /// addresses on the first such run.
    #[arg(long)]
    netns: bool,
    /// With `--demo` only: run every component's clock this many seconds ahead of the machine's,
    /// to show the policy's time windows at another hour; audited. At most 5 minutes behind:
    /// the folder's certificates are made on the machine's clock, and a clock further behind
    /// would find every one of them not yet valid (to show an earlier hour, go ahead to it on
    /// the next day).
    #[arg(
        long,
        requires = "demo",
        allow_hyphen_values = true,
        value_name = "SECONDS"
    )]
    clock_offset: Option<i64>,
    /// Seeds the demo's courts and people into a folder whose IdPs are initialised, and exits:
    /// `up --demo` runs it as a child of its own, so the seeding's password hashing (argon2id,
    /// 19 MiB a hash, which glibc's allocator then keeps on the heap) leaves no memory behind in
    /// the supervisor, which runs as long as the fabric.
    #[arg(long, hide = true)]
    seed_demo: bool,
}

/// Seeds the demo folder in a child process (`up --seed-demo`, its output this one's): false
/// when it was seeded before.
fn seed_demo(data: &Path, dir: &DataDir) -> miette::Result<bool> {
    if !demo::first_run(dir) {
        return Ok(false);
    }
    let exe = std::env::current_exe().into_diagnostic()?;
    let status = std::process::Command::new(exe)
        .arg("--data")
        .arg(data)
        .args(["up", "--seed-demo"])
        .stdin(std::process::Stdio::null())
        .status()
        .into_diagnostic()
        .wrap_err("starting the demo's seeding")?;
    if !status.success() {
        miette::bail!("seeding the demo's courts and people failed ({status})");
    }
    Ok(true)
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
            prefix: Vec::new(),
            env: Vec::new(),
            service: None,
            clamd: None,
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

/// One `tianping service` child for each of the demo's sample case services the fabric binds by
/// URL to a host of its own (`NAME.<zone>.<domain>`): on the URL's port, or any when it is 0.
fn service_specs(fabric: &Fabric) -> Vec<supervise::Spec> {
    let mut out = Vec::new();
    for (name, zone) in demo::SERVICES {
        let Some(binding) = fabric.services().get(name) else {
            continue;
        };
        let ServiceTarget::Url { url, .. } = &binding.target else {
            continue;
        };
        let Some(z) = fabric.zone(&binding.zone) else {
            continue;
        };
        let host = format!("{name}.{zone}.{}", fabric.domain);
        let Ok(uri) = url.parse::<http::Uri>() else {
            continue;
        };
        if uri.host() != Some(host.as_str()) {
            continue;
        }
        let port = uri.port_u16().unwrap_or(443);
        out.push(supervise::Spec {
            zone: binding.zone.clone(),
            // not looked at for a service
            component: Component::Gateway,
            args: vec![
                "service".to_owned(),
                name.to_owned(),
                "--zone".to_owned(),
                zone.to_owned(),
                "--listen".to_owned(),
                std::net::SocketAddr::new(z.address, port).to_string(),
            ],
            prefix: Vec::new(),
            env: Vec::new(),
            service: Some(name.to_owned()),
            clamd: None,
        });
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
    let dir = DataDir::new(data);
    if let Some(secs) = args.clock_offset
        && secs < -tianping_certs::BACKDATE_SECS
    {
        return Err(miette!(
            "`--clock-offset {secs}` puts every clock {} s behind the machine's, before the \
             certificates this folder holds were made (they are valid from {} s before they \
             were made); to show that hour, go ahead to it on the next day: \
             `--clock-offset {}`",
            -secs,
            tianping_certs::BACKDATE_SECS,
            secs.rem_euclid(86_400)
        ));
    }
    if args.seed_demo {
        demo::seed(&dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let made = super::init::init_if_missing(data)?;
    // A refused `fabric.toml` is shown as a diagnostic pointing at the offending text.
    let mut fabric = Fabric::load(&dir.fabric()).map_err(miette::Report::new)?;
    if args.netns && !args.dry_run {
        let moved = netns::rewrite_fabric(fabric.text(), &fabric);
        if moved != fabric.text() {
            tianping_core::write_atomic(
                &dir.fabric(),
                moved.as_bytes(),
                tianping_core::FileMode::Public,
                tianping_core::Existing::Replace,
            )
            .into_diagnostic()?;
            println!(
                "netns: `{}` moved to the namespaces' addresses",
                dir.fabric().display()
            );
            fabric = Fabric::load(&dir.fabric()).map_err(miette::Report::new)?;
        }
    }
    if args.demo && !args.dry_run && demo::first_run(&dir) {
        let bound = demo::bind_services(fabric.text(), &fabric);
        if bound != fabric.text() {
            tianping_core::write_atomic(
                &dir.fabric(),
                bound.as_bytes(),
                tianping_core::FileMode::Public,
                tianping_core::Existing::Replace,
            )
            .into_diagnostic()?;
            println!(
                "demo: the sample case services bound by URL in `{}`",
                dir.fabric().display()
            );
            fabric = Fabric::load(&dir.fabric()).map_err(miette::Report::new)?;
        }
    }
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
    let mut specs = plan(&fabric, policy);
    if args.demo {
        specs.extend(service_specs(&fabric));
    }
    for s in &mut specs {
        s.env.push((
            ServiceTarget::DATA_ENV.to_owned(),
            dir.root().display().to_string(),
        ));
    }
    for s in &specs {
        println!(
            "runs {}/{}: tianping {}",
            s.zone,
            s.component.as_str(),
            s.args.join(" ")
        );
    }
    match crate::filters::scanning_at(policy, &dir) {
        Some((flows, socket, Ok(()))) => println!(
            "flows that ask `scan` ({}): clamd answers at `{}`",
            flows.join(", "),
            socket.display()
        ),
        Some((flows, _, Err(_))) if clamd::binary().is_some() => println!(
            "flows that ask `scan` ({}): `up` starts clamd for them",
            flows.join(", ")
        ),
        Some((flows, socket, Err(e))) => println!(
            "flows that ask `scan` ({}) refuse every transfer until a ClamAV daemon answers at \
             `{}`: {e} (Debian: `apt install clamav-daemon`)",
            flows.join(", "),
            socket.display()
        ),
        None => {}
    }
    if args.dry_run {
        println!("nothing was started (--dry-run)");
        return Ok(ExitCode::SUCCESS);
    }
    init_idps(&dir, &fabric)?;
    if args.demo && !seed_demo(data, &dir)? {
        println!(
            "demo: the folder was seeded before; its people are in `{}`",
            dir.root().join("demo-users.txt").display()
        );
    }
    let mut notes = Vec::new();
    let offset_file = dir.run().join("clock-offset");
    match args.clock_offset {
        Some(secs) => {
            tianping_core::write_atomic(
                &offset_file,
                format!("{secs}\n").as_bytes(),
                tianping_core::FileMode::Public,
                tianping_core::Existing::Replace,
            )
            .into_diagnostic()?;
            for s in &mut specs {
                s.env
                    .push((super::demo::CLOCK_OFFSET_ENV.to_owned(), secs.to_string()));
            }
            println!("demo: every component's clock runs {secs} s off the machine's");
            notes.push(("demo.clock-offset", format!("{secs} s")));
        }
        None => {
            let _ = std::fs::remove_file(&offset_file);
        }
    }
    // the namespaces live as long as `up` runs
    let _namespaces = if args.netns {
        let ns = netns::setup(&fabric)?;
        for s in &mut specs {
            s.prefix = netns::exec_prefix(&s.zone);
        }
        println!(
            "netns: each zone in its own network namespace (`tp-<zone>`), each link a one-way veth pair"
        );
        notes.push((
            "up.netns",
            "each zone in its own network namespace".to_owned(),
        ));
        Some(ns)
    } else {
        None
    };
    // after the namespaces' prefixes: the daemon runs on the host, its socket a file
    if let Some(spec) = clamd_spec(&dir, policy)? {
        specs.push(spec);
    }
    let origin = format!("{}/audit/supervisor", fabric.domain);
    supervise::run(&dir, &origin, specs, &notes)
}

/// The ClamAV daemon of this folder, as a supervised child, when a flow asks `scan`, none
/// answers where the filters ask, and `clamd` is installed. It starts before every component
/// and is ready once it answers `PING` (a daemon with a full signature database takes a minute
/// or more to load it); one that dies is started again like any child.
fn clamd_spec(
    dir: &DataDir,
    policy: &tianping_policies::Policy,
) -> miette::Result<Option<supervise::Spec>> {
    let Some((flows, _, answer)) = crate::filters::scanning_at(policy, dir) else {
        return Ok(None);
    };
    if answer.is_ok() {
        return Ok(None);
    }
    let Some(plan) = clamd::prepare(dir).into_diagnostic()? else {
        println!(
            "flows that ask `scan` ({}) refuse every transfer: `clamd` is not installed \
             (Debian: `apt install clamav-daemon`)",
            flows.join(", ")
        );
        return Ok(None);
    };
    // named for the zone the scanned transfers go to (`classified` in the default policy)
    let zone = policy
        .flows()
        .find(|f| f.sanitize().any(|s| s == "scan"))
        .map(|f| f.to().clone())
        .ok_or_else(|| miette!("no flow asks `scan`"))?;
    let socket = crate::filters::fabric_clamd_socket(dir);
    println!(
        "runs {zone}/clamd: {} {} (flows {}, at `{}`{})",
        plan.program.display(),
        plan.args.join(" "),
        flows.join(", "),
        socket.display(),
        if plan.test_signatures_only {
            ", with the EICAR test signature only: no freshclam database on this machine"
        } else {
            ""
        }
    );
    Ok(Some(supervise::Spec {
        zone,
        // not looked at for `clamd`
        component: Component::ExchangeReceiver,
        args: Vec::new(),
        prefix: Vec::new(),
        env: Vec::new(),
        service: None,
        clamd: Some(supervise::Clamd {
            program: plan.program,
            args: plan.args,
            socket,
        }),
    }))
}
