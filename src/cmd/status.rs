//! `tianping status`: what runs on this machine, from the components themselves.
//!
//! For each component `up` would run (the same plan), it prints whether it answers: its admin
//! listener's `/healthz`, with what `up` recorded in `run/up.json` (pid, since, restarts) when
//! `up` runs it; each zone's installed policy hash; each link's counters from both ends'
//! control sockets (sent and retained by the sender; received, repaired, lost, refused and
//! waiting for delivery at the receiver); the transfers each sender holds for approval, with
//! the approvals so far and how many their flow needs; and the audit store's mirrors with
//! their sizes. The
//! ClamAV daemon `up` runs is listed with the components (up when it answers `PING`). It
//! exits 0 when every component answers, 1 otherwise (2 on bad input, as every command).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use miette::IntoDiagnostic;
use serde_json::{Value, json};
use tianping_core::{Component, DataDir, Fabric, Listener, ZoneName};

/// Options of `tianping status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

/// `GET path` on a control socket: its JSON answer, or why there is none.
async fn control_json(socket: &Path, path: &str) -> Result<Value, String> {
    match tianping_net::control_request(socket, "GET", path, Vec::<u8>::new()).await {
        Ok((200, body)) => serde_json::from_slice(&body).map_err(|e| e.to_string()),
        Ok((status, _)) => Err(format!("status {status}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The network namespace zone `zone`'s components run in, when `up --netns` made one for it
/// (a zone on an address of its own whose namespace exists).
pub(crate) fn zone_netns(fabric: &tianping_core::Fabric, zone: &ZoneName) -> Option<String> {
    let z = fabric.zone(zone)?;
    let ns = format!("tp-{zone}");
    (!z.address.is_loopback() && Path::new("/run/netns").join(&ns).exists()).then_some(ns)
}

/// The status code `GET /healthz` gets on `addr` inside network namespace `ns` (its loopback
/// is not the host's), if anything answers; asked from a thread of its own that enters the
/// namespace.
pub(crate) async fn health_in(ns: Option<String>, addr: std::net::SocketAddr) -> Option<u16> {
    let Some(ns) = ns else {
        return health(addr).await;
    };
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Write as _};
        let file = std::fs::File::open(Path::new("/run/netns").join(&ns)).ok()?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .ok()?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
    })
    .await
    .ok()
    .flatten()
}

/// The status code `GET /healthz` gets on `addr`, if anything answers (`up` asks it too).
pub(crate) async fn health(addr: std::net::SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

/// The installed policy's hash in `zone`, or why there is none.
fn policy_hash(dir: &DataDir, zone: &ZoneName) -> String {
    let path = dir.zone_policy(zone);
    let Ok(source) = std::fs::read_to_string(&path) else {
        return format!("no `{}`", path.display());
    };
    let checked = tianping_policies::check(&path.display().to_string(), &source);
    checked
        .policy()
        .map_or_else(|| "does not check".to_owned(), |p| p.hash().to_string())
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or_default()
}

/// The path of a component's status on its control socket.
pub(crate) fn status_path(component: Component) -> &'static str {
    match component {
        Component::Idp | Component::Gateway | Component::AuditStore => "/status",
        Component::ExchangeSender | Component::ExchangeReceiver => {
            tianping_crossdomain::STATUS_PATH
        }
    }
}

pub(crate) fn run(data: &Path, args: StatusArgs) -> miette::Result<ExitCode> {
    let dir = DataDir::new(data);
    let fabric = Fabric::load(&dir.fabric()).into_diagnostic()?;
    let policy_path = dir.policy();
    let source = std::fs::read_to_string(&policy_path).into_diagnostic()?;
    let checked = tianping_policies::check(&policy_path.display().to_string(), &source);
    let Some(policy) = checked.policy() else {
        return Err(miette::miette!(
            "the policy in force `{}` does not check",
            policy_path.display()
        ));
    };
    let plan = super::up::plan(&fabric, policy);
    let board: Vec<Value> = std::fs::read_to_string(dir.run().join("up.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let rt = super::exchange::runtime()?;
    let mut components = Vec::new();
    let mut all_up = true;
    for spec in &plan {
        let admin = tianping_core::published_addrs(&dir, &spec.zone, spec.component)
            .ok()
            .and_then(|a| a.get(&Listener::Admin).copied())
            .or_else(|| {
                fabric
                    .configured_addr(&spec.zone, spec.component, &Listener::Admin)
                    .filter(|a| a.port() != 0)
            });
        let healthz = match admin {
            Some(a) => rt.block_on(health_in(zone_netns(&fabric, &spec.zone), a)),
            None => None,
        };
        all_up &= healthz == Some(200);
        let kept = board.iter().find(|b| {
            b.get("zone").and_then(Value::as_str) == Some(spec.zone.as_str())
                && b.get("component").and_then(Value::as_str) == Some(spec.component.as_str())
        });
        // its audit log (entries durable, latest checkpoint), from its control socket's status
        let socket = dir.socket(&spec.zone, spec.component);
        let audit = rt
            .block_on(control_json(&socket, status_path(spec.component)))
            .ok()
            .and_then(|v| v.get("audit").cloned())
            .unwrap_or(Value::Null);
        components.push(json!({
            "zone": spec.zone.as_str(),
            "component": spec.component.as_str(),
            "up": healthz == Some(200),
            "healthz": healthz,
            "admin": admin.map(|a| a.to_string()),
            "pid": kept.and_then(|k| k.get("pid")).cloned().unwrap_or(Value::Null),
            "since_ms": kept.and_then(|k| k.get("since")).cloned().unwrap_or(Value::Null),
            "restarts": kept.and_then(|k| k.get("restarts")).cloned().unwrap_or(Value::Null),
            "audit": audit,
        }));
    }
    // the sample case services `up --demo` runs, as `run/up.json` lists them
    for b in board
        .iter()
        .filter(|b| b.get("component").and_then(Value::as_str) == Some("service"))
    {
        let (Some(zone), Some(name)) = (
            b.get("zone")
                .and_then(Value::as_str)
                .and_then(|z| z.parse::<ZoneName>().ok()),
            b.get("service").and_then(Value::as_str),
        ) else {
            continue;
        };
        let admin = super::service::published(&dir, &zone, name, "admin");
        let healthz = match admin {
            Some(a) => rt.block_on(health_in(zone_netns(&fabric, &zone), a)),
            None => None,
        };
        all_up &= healthz == Some(200);
        components.push(json!({
            "zone": zone.as_str(),
            "component": format!("service {name}"),
            "up": healthz == Some(200),
            "healthz": healthz,
            "admin": admin.map(|a| a.to_string()),
            "pid": b.get("pid").cloned().unwrap_or(Value::Null),
            "since_ms": b.get("since").cloned().unwrap_or(Value::Null),
            "restarts": b.get("restarts").cloned().unwrap_or(Value::Null),
        }));
    }
    // the ClamAV daemon `up` runs for the flows that ask `scan`: up when it answers `PING`
    for b in board
        .iter()
        .filter(|b| b.get("component").and_then(Value::as_str) == Some("clamd"))
    {
        let socket = crate::filters::fabric_clamd_socket(&dir);
        let answers = tianping_crossdomain::Clamd::new(&socket)
            .with_timeout(Duration::from_secs(2))
            .ping()
            .is_ok();
        all_up &= answers;
        components.push(json!({
            "zone": b.get("zone").cloned().unwrap_or(Value::Null),
            "component": "clamd",
            "up": answers,
            "healthz": Value::Null,
            "admin": socket.display().to_string(),
            "pid": b.get("pid").cloned().unwrap_or(Value::Null),
            "since_ms": b.get("since").cloned().unwrap_or(Value::Null),
            "restarts": b.get("restarts").cloned().unwrap_or(Value::Null),
        }));
    }
    let mut zones = BTreeMap::new();
    for z in fabric.zones() {
        zones.insert(
            z.zone.to_string(),
            json!({"policy": policy_hash(&dir, &z.zone)}),
        );
    }
    // each link from both ends: the sender's counters by destination, the receiver's by source
    let mut senders = BTreeMap::new();
    let mut receivers = BTreeMap::new();
    for z in fabric.zones() {
        let path = tianping_crossdomain::STATUS_PATH;
        if let Ok(v) = rt.block_on(control_json(
            &dir.socket(&z.zone, Component::ExchangeSender),
            path,
        )) {
            senders.insert(z.zone.to_string(), v);
        }
        if let Ok(v) = rt.block_on(control_json(
            &dir.socket(&z.zone, Component::ExchangeReceiver),
            path,
        )) {
            receivers.insert(z.zone.to_string(), v);
        }
    }
    let links: Vec<Value> = fabric
        .links()
        .iter()
        .map(|l| {
            let of = |side: &BTreeMap<String, Value>, zone: &ZoneName| {
                side.get(zone.as_str())
                    .and_then(|v| v.get("links"))
                    .and_then(Value::as_array)
                    .and_then(|ls| ls.iter().find(|x| u(x, "link") == u64::from(l.id)))
                    .cloned()
            };
            let sent = of(&senders, &l.from);
            let got = of(&receivers, &l.to);
            json!({
                "link": l.id,
                "from": l.from.as_str(),
                "to": l.to.as_str(),
                "sender": sent.as_ref().map(|s| json!({
                    "spooled": u(s, "spooled"), "sent": u(s, "sent"),
                    "retained": u(s, "retained"), "send_errors": u(s, "send_errors"),
                })),
                "receiver": got.as_ref().map(|r| json!({
                    "received": u(r, "received"), "repaired": u(r, "repaired"),
                    "lost": u(r, "lost"), "refused": u(r, "refused"),
                    "deliveries_pending": u(r, "deliveries_pending"),
                })),
            })
        })
        .collect();
    // the transfers each zone's sender holds for approval, as its `/status` says (`count`,
    // `by_flow`, and each one's `transfer`, `flow`, `approvals` so far and `needs`)
    let held: BTreeMap<&str, &Value> = senders
        .iter()
        .filter_map(|(z, v)| Some((z.as_str(), v.get("held").filter(|h| !h.is_null())?)))
        .collect();
    let mut stores = Vec::new();
    for z in fabric
        .zones()
        .filter(|z| z.components().any(|c| c == Component::AuditStore))
    {
        let socket = dir.socket(&z.zone, Component::AuditStore);
        match rt.block_on(control_json(&socket, "/status")) {
            Ok(v) => stores.push(v),
            Err(e) => stores.push(json!({"zone": z.zone.as_str(), "error": e})),
        }
    }
    let scan = crate::filters::scanning_at(policy, &dir).map(|(flows, socket, answer)| {
        json!({
            "socket": socket.display().to_string(),
            "flows": flows,
            "answers": answer.is_ok(),
            "error": answer.err(),
        })
    });
    let doc = json!({
        "scan": scan,
        "components": components,
        "zones": zones,
        "links": links,
        "held": held,
        "audit_stores": stores,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc).into_diagnostic()?);
    } else {
        print_tables(&doc);
    }
    Ok(if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_tables(doc: &Value) {
    let arr = |k: &str| {
        doc.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let s = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(x) => x.to_string(),
    };
    println!(
        "{:<40} {:<5} {:>8} {:>9} {:<22} {:>9} {:>10}",
        "component", "state", "pid", "restarts", "admin", "audit log", "checkpoint"
    );
    for c in arr("components") {
        let up = c.get("up").and_then(Value::as_bool) == Some(true);
        let audit = c.get("audit").cloned().unwrap_or(Value::Null);
        println!(
            "{:<40} {:<5} {:>8} {:>9} {:<22} {:>9} {:>10}",
            format!("{}/{}", s(&c, "zone"), s(&c, "component")),
            if up { "up" } else { "down" },
            s(&c, "pid"),
            s(&c, "restarts"),
            s(&c, "admin"),
            s(&audit, "size"),
            s(&audit, "checkpoint"),
        );
    }
    println!();
    if let Some(zones) = doc.get("zones").and_then(Value::as_object) {
        for (z, v) in zones {
            println!("zone {z:<12} policy {}", s(v, "policy"));
        }
    }
    println!();
    println!(
        "{:<24} {:>8} {:>8} {:>9} | {:>8} {:>8} {:>6} {:>7} {:>9}",
        "link",
        "spooled",
        "sent",
        "retained",
        "received",
        "repaired",
        "lost",
        "refused",
        "to deliver"
    );
    for l in arr("links") {
        let name = format!("{} -> {}", s(&l, "from"), s(&l, "to"));
        let side = |k: &str, f: &str| {
            l.get(k)
                .and_then(|v| v.get(f))
                .map_or_else(|| "-".to_owned(), Value::to_string)
        };
        println!(
            "{:<24} {:>8} {:>8} {:>9} | {:>8} {:>8} {:>6} {:>7} {:>9}",
            name,
            side("sender", "spooled"),
            side("sender", "sent"),
            side("sender", "retained"),
            side("receiver", "received"),
            side("receiver", "repaired"),
            side("receiver", "lost"),
            side("receiver", "refused"),
            side("receiver", "deliveries_pending"),
        );
    }
    print_held(doc);
    if let Some(scan) = doc.get("scan").filter(|v| !v.is_null()) {
        println!();
        let flows = scan
            .get("flows")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        if scan.get("answers").and_then(Value::as_bool) == Some(true) {
            println!(
                "scan: clamd answers at `{}` (flows {flows})",
                s(scan, "socket")
            );
        } else {
            println!(
                "scan: no clamd at `{}`: flows {flows} refuse every transfer ({})",
                s(scan, "socket"),
                s(scan, "error")
            );
        }
    }
    for st in arr("audit_stores") {
        println!();
        if let Some(e) = st.get("error") {
            println!("audit store of `{}`: not answering ({e})", s(&st, "zone"));
            continue;
        }
        let mirrors = st
            .get("mirrors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        println!(
            "audit store of `{}`: {} mirrors",
            s(&st, "zone"),
            mirrors.len()
        );
        for m in mirrors {
            println!("  {:<50} {:>10} entries", s(&m, "origin"), s(&m, "size"));
        }
    }
}

/// The transfers held for approval, zone by zone (nothing when no sender says).
fn print_held(doc: &Value) {
    let Some(zones) = doc.get("held").and_then(Value::as_object) else {
        return;
    };
    if zones.is_empty() {
        return;
    }
    println!();
    for (zone, h) in zones {
        let list = h
            .get("transfers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let flows = h
            .get("by_flow")
            .and_then(Value::as_object)
            .map(|f| {
                f.iter()
                    .map(|(flow, n)| format!("{n} on {flow}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        if list.is_empty() {
            println!("held for approval in `{zone}`: none");
            continue;
        }
        println!("held for approval in `{zone}`: {} ({flows})", u(h, "count"));
        for t in list {
            println!(
                "  {:<24} {:<28} {} of {} approvals",
                t.get("transfer").and_then(Value::as_str).unwrap_or("?"),
                t.get("flow").and_then(Value::as_str).unwrap_or("?"),
                u(&t, "approvals"),
                u(&t, "needs"),
            );
        }
    }
}
