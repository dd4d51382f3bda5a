//! `tianping exchange`: the one-way link's daemons (`send`, `receive`) and, for tests,
//! `submit-raw`, which spools a file as a transfer without policy checks. The spool's state is
//! one `sled` database, which one process opens at a time: `submit-raw` works while the sender
//! is stopped (the sender sends what is spooled when it starts); submitting to a running sender
//! is its control socket's `submit`, still to come.
//!
//! Links come from `fabric.toml` (rate, repair, MTU); a link's id is its position there, the
//! same on both sides. No link starts out of a zone its policy copy seals, whatever
//! `fabric.toml` says. The sender's spool is `zones/<zone>/exchange-sender/spool/`, the
//! receiver's store `zones/<zone>/exchange-receiver/store/` with bundles delivered into
//! `zones/<zone>/exchange-receiver/delivered/` (a folder sink until delivery comes).

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, mpsc};

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_core::{Component, DataDir, Fabric, Link, Listener, SystemClock, ZoneName};
use tianping_crossdomain::{
    Ended, FolderSink, LinkConfig, ReceiverConfig, Spool, Store, Submission, ZoneTrust, bind_udp,
    receive_into, send_spooled,
};

/// `tianping exchange ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ExchangeCmd {
    /// Send every spooled transfer of the zone's links, and keep sending what is spooled.
    Send(ZoneArg),
    /// Receive the links into the zone, storing complete bundles.
    Receive(ZoneArg),
    /// Spool a file as a transfer to another zone, without policy checks (tests only).
    #[command(hide = true)]
    SubmitRaw(SubmitRaw),
}

/// A zone.
#[derive(Debug, Args)]
pub(crate) struct ZoneArg {
    /// The zone.
    #[arg(long)]
    zone: ZoneName,
}

/// `submit-raw`.
#[derive(Debug, Args)]
pub(crate) struct SubmitRaw {
    /// The sending zone.
    #[arg(long)]
    zone: ZoneName,
    /// The receiving zone.
    #[arg(long)]
    to: ZoneName,
    /// The bundle to send.
    #[arg(long)]
    file: std::path::PathBuf,
}

pub(crate) fn run(data: &Path, cmd: ExchangeCmd) -> miette::Result<ExitCode> {
    let dir = DataDir::new(data);
    let fabric = Fabric::load(&dir.fabric()).into_diagnostic()?;
    match cmd {
        ExchangeCmd::Send(z) => send(&dir, &fabric, &z.zone),
        ExchangeCmd::Receive(z) => receive(&dir, &fabric, &z.zone),
        ExchangeCmd::SubmitRaw(s) => {
            let (id, _) = link_between(&fabric, &s.zone, &s.to)?;
            let spool = open_spool(&dir, &s.zone)?;
            let mut file = std::fs::File::open(&s.file)
                .into_diagnostic()
                .wrap_err_with(|| format!("reading `{}`", s.file.display()))?;
            let transfer = spool.submit(id, &mut file).into_diagnostic()?;
            println!("{transfer}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn link_id(i: usize) -> miette::Result<u32> {
    u32::try_from(i).map_err(|_| miette!("too many links"))
}

fn link_between<'a>(
    fabric: &'a Fabric,
    from: &ZoneName,
    to: &ZoneName,
) -> miette::Result<(u32, &'a Link)> {
    for (i, l) in fabric.links().iter().enumerate() {
        if &l.from == from && &l.to == to {
            return Ok((link_id(i)?, l));
        }
    }
    Err(miette!("`fabric.toml` has no link from `{from}` to `{to}`"))
}

fn open_spool(dir: &DataDir, zone: &ZoneName) -> miette::Result<Spool> {
    Spool::open(&dir.component(zone, Component::ExchangeSender).join("spool")).into_diagnostic()
}

fn config(id: u32, link: &Link) -> LinkConfig {
    LinkConfig {
        link: id,
        mtu: link.mtu,
        repair_percent: u16::from(link.repair_percent),
        block_symbols: u16::try_from(link.block_symbols().min(8192)).unwrap_or(8192),
        ..LinkConfig::new(id)
    }
}

/// Whether the zone's policy copy seals it.
fn sealed(dir: &DataDir, zone: &ZoneName) -> miette::Result<bool> {
    let path = dir.zone_policy(zone);
    let source = std::fs::read_to_string(&path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", path.display()))?;
    let checked = tianping_policies::check(&path.display().to_string(), &source);
    let policy = checked.policy().ok_or_else(|| {
        miette!(
            "the zone's policy `{}` does not pass `tianping policy check`",
            path.display()
        )
    })?;
    Ok(policy.is_sealed(zone.as_str()))
}

fn send(dir: &DataDir, fabric: &Fabric, zone: &ZoneName) -> miette::Result<ExitCode> {
    if sealed(dir, zone)? {
        return Err(miette!(
            "zone `{zone}` is sealed: no link starts out of it, whatever `fabric.toml` says"
        ));
    }
    let spool = Arc::new(open_spool(dir, zone)?);
    let mut running = Vec::new();
    for (i, link) in fabric.links().iter().enumerate() {
        if &link.from != zone {
            continue;
        }
        let id = link_id(i)?;
        let peer = match peer_of(dir, link) {
            Ok(peer) => peer,
            Err(e) => {
                eprintln!("link `{}` → `{}` not started: {e}", link.from, link.to);
                continue;
            }
        };
        let socket = bind_udp(unspecified(peer), 0, 4 << 20).into_diagnostic()?;
        let (cfg, rate, spool) = (config(id, link), link.rate_mbps, Arc::clone(&spool));
        running.push(std::thread::spawn(move || -> miette::Result<()> {
            // the inbox stays open: the link keeps beating after the spool is sent
            let (_keep, inbox) = mpsc::channel::<Submission>();
            send_spooled(&spool, cfg, rate, socket, peer, &SystemClock, &inbox)
                .into_diagnostic()?;
            Ok(())
        }));
    }
    println!("sending from `{zone}` on {} links", running.len());
    for t in running {
        t.join().map_err(|_| miette!("a link's thread failed"))??;
    }
    Ok(ExitCode::SUCCESS)
}

fn unspecified(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(peer)
    } else {
        "[::]:0".parse().unwrap_or(peer)
    }
}

/// Where the link's receiver listens: `fabric.toml`'s address, or, on port 0, what the
/// receiver published.
fn peer_of(dir: &DataDir, link: &Link) -> miette::Result<SocketAddr> {
    if link.address.port() != 0 {
        return Ok(link.address);
    }
    let published = tianping_core::published_addrs(dir, &link.to, Component::ExchangeReceiver)
        .into_diagnostic()?;
    published
        .get(&Listener::Link {
            from: link.from.clone(),
        })
        .copied()
        .ok_or_else(|| {
            miette!(
                "the receiver of the link `{}` → `{}` has not published its address",
                link.from,
                link.to
            )
        })
}

fn receive(dir: &DataDir, fabric: &Fabric, zone: &ZoneName) -> miette::Result<ExitCode> {
    let trust_path = dir.zone_trust_bundle(zone);
    let trust_pem = std::fs::read(&trust_path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", trust_path.display()))?;
    let store = tianping_certs::TrustStore::from_pem(&trust_pem, &[]).into_diagnostic()?;
    let trust = Arc::new(ZoneTrust::new(store));
    let base = dir.component(zone, Component::ExchangeReceiver);
    let mut running = Vec::new();
    for (i, link) in fabric.links().iter().enumerate() {
        if &link.to != zone {
            continue;
        }
        let id = link_id(i)?;
        let socket = bind_udp(link.address, 64 << 20, 0).into_diagnostic()?;
        let bound = socket.local_addr().into_diagnostic()?;
        tianping_core::publish_addr(
            dir,
            zone,
            Component::ExchangeReceiver,
            &Listener::Link {
                from: link.from.clone(),
            },
            bound,
        )
        .into_diagnostic()?;
        let (trust, base) = (Arc::clone(&trust), base.clone());
        running.push(std::thread::spawn(move || -> miette::Result<()> {
            let mut sink = FolderSink::new(&base.join("delivered")).into_diagnostic()?;
            let mut store = Store::open(&base.join("store").join(id.to_string()), &mut sink)
                .into_diagnostic()?;
            receive_into(
                &mut store,
                ReceiverConfig::new(id),
                trust,
                socket,
                &SystemClock,
                &mut sink,
                |transfer, how| {
                    let how = match how {
                        Ended::Delivered => "delivered",
                        Ended::Lost => "lost",
                        Ended::Refused => "refused",
                    };
                    println!("link {id} transfer {transfer} {how}");
                    ControlFlow::Continue(())
                },
            )
            .into_diagnostic()
        }));
    }
    println!("receiving into `{zone}` on {} links", running.len());
    for t in running {
        t.join().map_err(|_| miette!("a link's thread failed"))??;
    }
    Ok(ExitCode::SUCCESS)
}
