//! `tianping exchange send`: the sending daemon.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};

use miette::{IntoDiagnostic, miette};
use tianping_core::{Component, DataDir, Fabric, Link, Listener, SystemClock, ZoneName};
use tianping_crossdomain::{
    SendOptions, SendStatus, SenderControl, SenderLink, bind_udp, run_sender,
};

use super::{admin, config, node_callers, open_spool, runtime, zone_policy};

pub(super) fn send(dir: &DataDir, fabric: &Fabric, zone: &ZoneName) -> miette::Result<ExitCode> {
    let (is_sealed, limits) = zone_policy(dir, zone)?;
    if is_sealed {
        return Err(miette!(
            "zone `{zone}` is sealed: no link starts out of it, whatever `fabric.toml` says"
        ));
    }
    let rt = runtime()?;
    let spool = Arc::new(open_spool(dir, zone)?);
    let registry = tianping_net::Registry::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Vec::new();
    let mut links = Vec::new();
    for link in fabric.links_from(zone) {
        let status = Arc::new(
            SendStatus::new(
                &registry,
                link.id,
                link.from.as_str(),
                link.to.as_str(),
                link.rate_mbps,
                spool.epoch(),
            )
            .map_err(|e| miette!("{e}"))?,
        );
        let (tx, inbox) = mpsc::channel::<u64>();
        links.push(SenderLink {
            to: link.to.to_string(),
            id: link.id,
            inbox: std::sync::Mutex::new(tx),
            status: Arc::clone(&status),
            limit: limits
                .get(link.to.as_str())
                .copied()
                .unwrap_or(tianping_crossdomain::MAX_TRANSFER),
        });
        let family = if link.address.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let local: SocketAddr = family.parse().into_diagnostic()?;
        let socket = bind_udp(local, 0, 4 << 20).into_diagnostic()?;
        let options = SendOptions {
            config: config(link.id, link),
            mbps: link.rate_mbps,
            retain: link.retain,
            beat_every: std::time::Duration::from_millis(200),
        };
        let (spool, stop, dir, link) = (
            Arc::clone(&spool),
            Arc::clone(&stop),
            dir.clone(),
            link.clone(),
        );
        running.push(std::thread::spawn(move || -> miette::Result<()> {
            let mut peer = || peer_of(&dir, &link).ok();
            run_sender(
                &spool,
                options,
                &socket,
                &mut peer,
                &SystemClock,
                &inbox,
                &status,
                &stop,
            )
            .into_diagnostic()
        }));
    }
    let count = links.len();
    let hook: tianping_crossdomain::ResendHook = Box::new(|caller, to, pairs| {
        let who = caller.identity.as_ref().map_or("?", |i| i.name.as_str());
        println!("resend to `{to}` asked by `{who}`: {pairs:?}");
    });
    let handler = SenderControl::new(zone.as_str(), Arc::clone(&spool), links, Some(hook));
    let _serving = rt.block_on(async {
        let callers = node_callers(dir, zone, "exchange-sender")?;
        let options = tianping_net::ControlOptions::new(&[])
            .verified(Arc::new(callers), SenderControl::open_paths());
        let path = dir.socket(zone, Component::ExchangeSender);
        let ctl = tianping_net::serve_control_with(&path, options, handler)
            .await
            .into_diagnostic()?;
        let adm = admin(
            dir,
            fabric,
            zone,
            Component::ExchangeSender,
            vec![ctl.metrics()],
            Arc::clone(&registry),
        )
        .await?;
        miette::Result::<_>::Ok((ctl, adm))
    })?;
    println!("sending from `{zone}` on {count} links");
    for t in running {
        t.join().map_err(|_| miette!("a link's thread failed"))??;
    }
    Ok(ExitCode::SUCCESS)
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
