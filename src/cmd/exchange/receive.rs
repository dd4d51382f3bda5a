//! `tianping exchange receive`: the receiving daemon.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use miette::{IntoDiagnostic, miette};
use tianping_core::{Component, DataDir, Fabric, Listener, SystemClock, ZoneName};
use tianping_crossdomain::{
    Ended, FolderSink, ReceiveStatus, ReceiverConfig, ReceiverControl, Store, ZoneTrust, bind_udp,
    run_receiver,
};

use super::{admin, node_callers, runtime, zone_trust};

pub(super) fn receive(dir: &DataDir, fabric: &Fabric, zone: &ZoneName) -> miette::Result<ExitCode> {
    let trust = Arc::new(ZoneTrust::new(zone_trust(dir, zone)?));
    let base = dir.component(zone, Component::ExchangeReceiver);
    let rt = runtime()?;
    let registry = tianping_net::Registry::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Vec::new();
    let mut statuses = Vec::new();
    for link in fabric.links().iter().filter(|l| &l.to == zone) {
        let id = link.id;
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
        let status = Arc::new(
            ReceiveStatus::new(&registry, id, link.from.as_str(), link.to.as_str())
                .map_err(|e| miette!("{e}"))?,
        );
        statuses.push(Arc::clone(&status));
        let (trust, base, stop) = (Arc::clone(&trust), base.clone(), Arc::clone(&stop));
        running.push(std::thread::spawn(move || -> miette::Result<()> {
            let mut sink = FolderSink::new(&base.join("delivered")).into_diagnostic()?;
            let mut store = Store::open(&base.join("store").join(id.to_string()), &mut sink)
                .into_diagnostic()?;
            run_receiver(
                &mut store,
                ReceiverConfig::new(id),
                trust,
                &socket,
                &SystemClock,
                &mut sink,
                &status,
                &stop,
                |transfer, how| {
                    let how = match how {
                        Ended::Delivered => "delivered",
                        Ended::Lost => "lost",
                        Ended::Refused => "refused",
                    };
                    println!("link {id} transfer {transfer} {how}");
                },
            )
            .into_diagnostic()
        }));
    }
    let count = statuses.len();
    let handler = ReceiverControl::new(zone.as_str(), statuses);
    let _serving = rt.block_on(async {
        let callers = node_callers(dir, zone, "exchange-receiver")?;
        let options = tianping_net::ControlOptions::new(&[])
            .verified(Arc::new(callers), ReceiverControl::open_paths());
        let path = dir.socket(zone, Component::ExchangeReceiver);
        let ctl = tianping_net::serve_control_with(&path, options, handler)
            .await
            .into_diagnostic()?;
        let adm = admin(
            dir,
            fabric,
            zone,
            Component::ExchangeReceiver,
            vec![ctl.metrics()],
            Arc::clone(&registry),
        )
        .await?;
        miette::Result::<_>::Ok((ctl, adm))
    })?;
    println!("receiving into `{zone}` on {count} links");
    for t in running {
        t.join().map_err(|_| miette!("a link's thread failed"))??;
    }
    Ok(ExitCode::SUCCESS)
}
