//! `tianping exchange send`: the sending daemon.
//!
//! It decides on every submission with the zone's policy copy and filters (see
//! `tianping_crossdomain`'s `SenderControl`), signs bundles and approvals with its node key
//! (`zones/<zone>/exchange-sender/node.{pem,key}`), and writes its decisions and the held /
//! approved / released / resent events to its audit log (`zones/<zone>/exchange-sender/audit`,
//! checkpoints signed with its node key). Callers: node tokens of the zone, and users asserted
//! by the zone's gateway (`Tianping-Assertion: <user token>` for audience `exchange-sender`,
//! signed by the gateway's node key).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};

use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_audit::AuditLog;
use tianping_core::{Clock, Component, DataDir, Fabric, Link, Listener, SystemClock, ZoneName};
use tianping_crossdomain::{
    SendOptions, SendStatus, SenderControl, SenderLink, SenderOutbound, ZoneTrust, bind_udp,
    run_sender,
};

use super::{admin, config, node_callers, open_spool, runtime, zone_policy, zone_trust};

/// How many audit events between checkpoints signed with the sender's node key.
const CHECKPOINT_EVERY: u64 = 64;

/// The sender's node key, certificate, audit log and decision inputs.
fn outbound(dir: &DataDir, fabric: &Fabric, zone: &ZoneName) -> miette::Result<SenderOutbound> {
    let path = dir.zone_policy(zone);
    let source = std::fs::read_to_string(&path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", path.display()))?;
    let policy = tianping_policies::check(&path.display().to_string(), &source)
        .into_policy()
        .ok_or_else(|| {
            miette!(
                "the zone's policy `{}` does not pass `tianping policy check`",
                path.display()
            )
        })?;
    let (cert, key) = dir.node(zone, Component::ExchangeSender);
    let key_pem = std::fs::read_to_string(&key)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", key.display()))?;
    let signer = Arc::new(tianping_audit::signer_from_pem(&key_pem).into_diagnostic()?);
    let chain = tianping_certs::certs_from_pem(
        &std::fs::read(&cert)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading `{}`", cert.display()))?,
    )
    .into_diagnostic()?;
    let certificate = chain
        .first()
        .map(|c| c.to_vec())
        .ok_or_else(|| miette!("`{}` holds no certificate", cert.display()))?;
    let audit = Arc::new(
        AuditLog::open_or_create(
            &dir.audit_log(zone, Component::ExchangeSender),
            &format!("{}/audit/{zone}/exchange-sender", fabric.domain),
        )
        .into_diagnostic()?,
    );
    audit.set_auto_checkpoint(signer.clone(), CHECKPOINT_EVERY);
    Ok(SenderOutbound {
        policy: Arc::new(policy),
        filters: Arc::new(crate::filters::zone_filters(dir, zone)?),
        signer,
        certificate,
        trust: Arc::new(ZoneTrust::new(zone_trust(dir, zone)?)),
        clock: Arc::new(SystemClock),
        audit: Some(audit),
    })
}

pub(super) fn send(dir: &DataDir, fabric: &Fabric, zone: &ZoneName) -> miette::Result<ExitCode> {
    let (is_sealed, limits) = zone_policy(dir, zone)?;
    if is_sealed {
        return Err(miette!(
            "zone `{zone}` is sealed: no link starts out of it, whatever `fabric.toml` says"
        ));
    }
    let rt = runtime()?;
    let spool = Arc::new(open_spool(dir, zone)?);
    let outbound = outbound(dir, fabric, zone)?;
    let audit = outbound.audit.clone();
    // its own log's shipper: its signal handlers are in place before the sender says it is ready
    if let Some(log) = &audit {
        let shipper = crate::ship::Shipper::new(
            dir,
            zone,
            Component::ExchangeSender,
            Arc::clone(log),
            Arc::clone(&outbound.signer),
        )?;
        if let Some(s) = shipper {
            s.spawn()?;
        }
    }
    let registry = tianping_net::Registry::new();
    let stop = Arc::new(AtomicBool::new(false));
    super::stop_on_signal(Arc::clone(&stop))?;
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
    let link_ids: std::collections::BTreeMap<String, u32> =
        links.iter().map(|l| (l.to.clone(), l.id)).collect();
    let status_log = audit.clone();
    let (hook_zone, epoch) = (zone.to_string(), spool.epoch());
    let hook: tianping_crossdomain::ResendHook = Box::new(move |caller, to, pairs| {
        let who = caller.identity.as_ref().map_or("?", |i| i.name.as_str());
        println!("resend to `{to}` asked by `{who}`: {pairs:?}");
        let Some(log) = &audit else { return };
        for (from, new) in pairs {
            let mut e = tianping_audit::Event::new(SystemClock.now(), "transfer.resent");
            e.zone = hook_zone.clone();
            e.component = "exchange-sender".into();
            e.node = "exchange-sender".into();
            e.actor = who.to_owned();
            e.outcome = "ok".into();
            let link = link_ids.get(to).copied().unwrap_or_default();
            e.attributes.insert("link".into(), link.to_string());
            e.attributes.insert("epoch".into(), epoch.to_string());
            e.attributes.insert("to".into(), to.to_owned());
            e.attributes.insert("from".into(), from.to_string());
            e.attributes
                .insert("to_link_transfer".into(), new.to_string());
            if let Err(err) = log.append(&e) {
                eprintln!("audit: {err}");
            }
        }
    });
    let handler = crate::audit_status::WithAuditStatus::new(
        SenderControl::new(zone, Arc::clone(&spool), links, Some(hook), Some(outbound)),
        tianping_crossdomain::STATUS_PATH,
        status_log.clone(),
    )
    .serving_reads(zone.as_str());
    let users = crate::assertion::GatewayUsers::new(dir, fabric, zone, "exchange-sender")?;
    let _serving = rt.block_on(async {
        let people = crate::login_tokens::People {
            logins: crate::login_tokens::LoginTokens::spawn(
                dir,
                fabric,
                zone,
                &tokio::runtime::Handle::current(),
            )?,
            asserted: users,
        };
        let callers = node_callers(dir, zone, "exchange-sender")?.or(Arc::new(people));
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
    // `tianping audit` reads the log through the socket while the sender runs
    let audit_dir = dir.audit_log(zone, Component::ExchangeSender);
    if status_log.is_some() {
        tianping_audit::record_owner(
            &audit_dir,
            &std::path::absolute(dir.socket(zone, Component::ExchangeSender)).into_diagnostic()?,
        )
        .into_diagnostic()?;
    }
    println!("sending from `{zone}` on {count} links");
    for t in running {
        t.join().map_err(|_| miette!("a link's thread failed"))??;
    }
    if let Some(log) = &status_log {
        let _ = log.sync();
    }
    tianping_audit::clear_owner(&audit_dir).into_diagnostic()?;
    println!("sending from `{zone}` stopped");
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
