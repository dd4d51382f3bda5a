//! `tianping exchange receive`: the receiving daemon, and `tianping exchange receipts`.
//!
//! Per link into the zone, a thread receives the link into its store
//! (`zones/<zone>/exchange-receiver/store/<link>/`), whose intake checks every complete bundle
//! again against the zone's policy copy, its filters and the approvals, and queues what it
//! accepts; a second thread delivers the queue to the services' bindings in `fabric.toml`,
//! retrying until each is taken. The daemon writes its audit log
//! (`zones/<zone>/exchange-receiver/audit/`, checkpoints signed with its node key):
//! `transfer.received`, `transfer.refused`, `transfer.delivered`, `transfer.lost`.
//!
//! Its standard output: the link's report lines (`link L transfer T delivered|lost|refused`,
//! `delivered` meaning handed on by the link to the intake), and what the intake and the
//! deliverer decide (`transfer ID refused: …`, `transfer ID delivered to S after N attempts`,
//! failed attempts, receipts sent).
//!
//! Receipts: when a delivered flow's reply flow carries `receipt`, the receiver signs a
//! delivery receipt ([`Receipt`]) with its node key and certificate chain and submits it on the
//! reply flow through the zone's sender socket (`run/<zone>-exchange-sender.sock`), correlated
//! with the delivered transfer's id (`receipt.sent`). A receipt delivered to the zone's
//! `receipt-store` is kept only when its signer is a node of the zone that sent it, under the
//! zone's trust bundle, and it receipts a transfer of this zone (`receipt.received`); any other
//! is refused for good (`transfer.refused`).
//!
//! A person reads the receipts of a transfer through the zone's gateway (route `read-receipts`,
//! service `receipt-store`): `GET /receipts/<transfer-id>` is forwarded to the control socket
//! with the person's `Tianping-Assertion` (a `user` token for `receipt-store` from the gateway's
//! node certificate, verified here). The receiver cannot tell who submitted the transfer, so any
//! person the gateway asserts (the route's roles) may read it; see `ReceiverControl`.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};

use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_audit::{AuditLog, Event};
use tianping_core::{Clock, Component, DataDir, Fabric, Listener, SystemClock, ZoneName};
use tianping_crossdomain::{
    BundleHeader, Counter, Deliverer, Delivery, Ended, Failure, Installer, Intake, LinkEnd,
    MakeReceipt, NetDeliver, Queue, Receipt, ReceiptBook, ReceiptKind, Receipting, Receipts,
    ReceiveStatus, ReceiverConfig, ReceiverControl, ReceiverEvent, Report, SignerTrust, Store,
    ZoneTrust, bind_udp, count_approvals, hex, recv_buffer, run_receiver_reporting, targets,
};

use super::{admin, node_callers, runtime, zone_trust};

/// How many audit events between checkpoints signed with the receiver's node key.
const CHECKPOINT_EVERY: u64 = 256;
/// Each link's receive socket buffer: 64 MiB holds about 45,000 full datagrams, some 0.5 s of a
/// 1 Gbit/s link, for the moments the receiver falls behind (lidi's figures in
/// `shared/reference/peers-measured.md`: losses begin when the buffer fills). Forced past
/// `net.core.rmem_max` as root; where the kernel gives less, the receiver says so at start.
const LINK_RECV_BUFFER: usize = 64 << 20;

/// The receiver's audit log, and its lines on standard output.
struct Audit {
    log: Arc<AuditLog>,
    zone: String,
    clock: Arc<dyn Clock>,
}

impl Audit {
    fn event(&self, action: &str) -> Event {
        let mut e = Event::new(self.clock.now(), action);
        e.zone = self.zone.clone();
        e.component = "exchange-receiver".to_owned();
        e.node = format!("exchange-receiver.{}", self.zone);
        e
    }

    fn append(&self, e: &Event) {
        if let Err(err) = self.log.append(e) {
            eprintln!("audit: {err}");
        }
    }
}

fn with_manifest(e: &mut Event, h: &BundleHeader) {
    let m = &h.manifest;
    e.transfer_id = tianping_crossdomain::transfer_id(h);
    e.flow = m.flow.clone();
    e.kind = m.kind.clone();
    e.size = Some(m.size);
    e.content_hash = hex(&m.chunks_hash);
    e.submitter = if m.submitter.machine {
        "machine".to_owned()
    } else {
        m.submitter.subject.to_string()
    };
    e.labels = m.labels.clone();
    e.policy_hash = Some(m.policy_hash);
    e.attributes.insert("from".into(), m.source.to_string());
    if let Some(c) = &m.correlation {
        e.attributes.insert("correlation".into(), c.clone());
    }
}

impl Report for Audit {
    fn report(&self, event: &ReceiverEvent<'_>) {
        match event {
            ReceiverEvent::Received {
                header,
                link,
                link_transfer,
            } => {
                let mut e = self.event("transfer.received");
                with_manifest(&mut e, header);
                e.outcome = "ok".into();
                e.attributes.insert("link".into(), link.to_string());
                e.attributes
                    .insert("link_transfer".into(), link_transfer.to_string());
                self.append(&e);
            }
            ReceiverEvent::Refused {
                header,
                link,
                link_transfer,
                reason,
            } => {
                let mut e = self.event("transfer.refused");
                with_manifest(&mut e, header);
                e.outcome = "fail".into();
                e.reason = reason.clone();
                e.attributes.insert("link".into(), link.to_string());
                e.attributes
                    .insert("link_transfer".into(), link_transfer.to_string());
                self.append(&e);
                println!(
                    "transfer {} refused: {reason}",
                    tianping_crossdomain::transfer_id(header)
                );
            }
            ReceiverEvent::Delivered { delivery, target } => {
                let mut e = self.event("transfer.delivered");
                e.transfer_id = delivery.transfer_id.clone();
                e.flow = delivery.flow.clone();
                e.kind = delivery.kind.clone();
                e.content_hash = delivery.content_hash.clone();
                e.outcome = "ok".into();
                e.attributes
                    .insert("service".into(), delivery.service.clone());
                e.attributes.insert("target".into(), (*target).to_owned());
                e.attributes
                    .insert("attempts".into(), delivery.attempts.to_string());
                e.attributes
                    .insert("link".into(), delivery.link.to_string());
                e.attributes
                    .insert("link_transfer".into(), delivery.link_transfer.to_string());
                self.append(&e);
                println!(
                    "transfer {} delivered to {} after {} attempts",
                    delivery.transfer_id, delivery.service, delivery.attempts
                );
            }
            ReceiverEvent::ReceiptSent {
                delivery,
                reply,
                receipt,
            } => {
                let mut e = self.event("receipt.sent");
                e.transfer_id = delivery.transfer_id.clone();
                e.flow = reply.clone();
                e.outcome = "ok".into();
                e.attributes.insert("receipt".into(), receipt.clone());
                e.attributes
                    .insert("correlation".into(), delivery.transfer_id.clone());
                self.append(&e);
                println!(
                    "transfer {} receipted by {receipt} on {reply}",
                    delivery.transfer_id
                );
            }
            ReceiverEvent::Failed { delivery, reason } => {
                println!(
                    "transfer {} to {}: attempt {} failed: {reason}",
                    delivery.transfer_id, delivery.service, delivery.attempts
                );
            }
        }
    }
}

/// How far a receipt's time may be past the time of the transfer that carries it (the clocks
/// of the node that signed it and of the zone's sender).
const RECEIPT_SKEW_MS: u64 = 5 * 60 * 1000;

/// Keeps the receipts delivered to the zone's `receipt-store`, audited as `receipt.received`,
/// once their signer checked against the zone's trust.
struct KeepReceipts {
    book: Arc<ReceiptBook>,
    audit: Arc<Audit>,
    trust: tianping_certs::TrustStore,
    zone: ZoneName,
}

impl KeepReceipts {
    /// The receipt `d` carries, checked: signed (under the key it carries) by a node of the
    /// zone that sent the receipt transfer, as this zone's trust says at the receipt's time; a
    /// receipt of a transfer of this zone, the one the receipt transfer's correlation names.
    fn check(&self, d: &Delivery<'_>) -> Result<Receipt, String> {
        let m = &d.header.manifest;
        let r = Receipt::decode(d.payload).map_err(|e| format!("not a signed receipt: {e}"))?;
        if r.zone != m.source {
            return Err(format!(
                "a receipt signed for zone `{}` came from zone `{}`",
                r.zone, m.source
            ));
        }
        let chain: Vec<tianping_certs::CertificateDer<'_>> = r
            .signer_chain()
            .iter()
            .map(|c| tianping_certs::CertificateDer::from(c.as_slice()))
            .collect();
        let who = tianping_certs::verify_signer(&chain, &self.trust, &r.zone, r.time)
            .map_err(|e| format!("the receipt's signer is not a node of `{}`: {e}", r.zone))?;
        if who.key != r.signer {
            return Err(format!(
                "the receipt was signed by key `{}`, not by the key of node `{}`",
                r.signer, who.identity.name
            ));
        }
        if m.correlation.as_deref() != Some(r.transfer_id.as_str()) {
            return Err(format!(
                "the receipt is for transfer `{}`, its transfer's correlation id is `{}`",
                r.transfer_id,
                m.correlation.as_deref().unwrap_or_default()
            ));
        }
        let ours = r
            .transfer_id
            .rsplit_once(':')
            .is_some_and(|(z, _)| z == self.zone.as_str());
        if !ours {
            return Err(format!(
                "the receipt is for transfer `{}`, not one this zone sent",
                r.transfer_id
            ));
        }
        if r.time.as_millis() > m.time.as_millis().saturating_add(RECEIPT_SKEW_MS) {
            return Err("the receipt is dated after the transfer that carries it".to_owned());
        }
        Ok(r)
    }
}

impl Receipts for KeepReceipts {
    fn keep(&mut self, d: &Delivery<'_>) -> Result<(), Failure> {
        let receipt = self
            .check(d)
            .map_err(|why| Failure::Refuse(format!("receipt refused: {why}")))?;
        let kept = self.book.keep(d)?;
        let mut e = self.audit.event("receipt.received");
        e.transfer_id = kept.correlation.clone();
        e.flow = d.queued.flow.clone();
        e.outcome = "ok".into();
        e.attributes.insert("receipt".into(), kept.receipt.clone());
        e.attributes.insert("correlation".into(), kept.correlation);
        e.attributes
            .insert("kind".into(), receipt.kind.as_str().to_owned());
        e.attributes.insert("service".into(), receipt.service);
        e.attributes.insert("from".into(), receipt.zone.to_string());
        e.content_hash = hex(&receipt.content_hash);
        self.audit.append(&e);
        Ok(())
    }
}

/// Makes the receiver's delivery receipts: signed with its node key, its certificate chain
/// in them.
struct SignReceipts {
    signer: Arc<tianping_core::RingSigner>,
    chain: Vec<Vec<u8>>,
    zone: ZoneName,
}

impl MakeReceipt for SignReceipts {
    fn make(&self, d: &Delivery<'_>, at: tianping_core::UnixTime) -> Result<Vec<u8>, String> {
        let what = Receipting {
            kind: ReceiptKind::Delivery,
            transfer_id: &d.queued.transfer_id,
            content_hash: d.header.manifest.chunks_hash,
            service: &d.queued.service,
            zone: &self.zone,
            reader: None,
            time: at,
        };
        Receipt::sign(&what, self.chain.clone(), &*self.signer)
            .and_then(|r| r.encode())
            .map_err(|e| format!("cannot make the receipt: {e}"))
    }
}

/// The receiver's node key and certificate chain (DER, leaf first).
fn node_signer(
    dir: &DataDir,
    zone: &ZoneName,
) -> miette::Result<(tianping_core::RingSigner, Vec<Vec<u8>>)> {
    let (cert, key) = dir.node(zone, Component::ExchangeReceiver);
    let key_pem = std::fs::read_to_string(&key)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", key.display()))?;
    let signer = tianping_audit::signer_from_pem(&key_pem)
        .map_err(|e| miette!("`{}`: {e}", key.display()))?;
    let chain_pem = std::fs::read(&cert)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", cert.display()))?;
    let chain = tianping_certs::certs_from_pem(&chain_pem)
        .into_diagnostic()?
        .iter()
        .map(|c| c.to_vec())
        .collect();
    Ok((signer, chain))
}

fn origin(fabric: &Fabric, zone: &ZoneName) -> String {
    format!("{}/audit/{zone}/exchange-receiver", fabric.domain)
}

fn token_signer(dir: &DataDir, zone: &ZoneName) -> miette::Result<tianping_certs::TokenSigner> {
    crate::ship::node_tokens(dir, zone, Component::ExchangeReceiver)
}

fn zone_policy(dir: &DataDir, zone: &ZoneName) -> miette::Result<tianping_policies::Policy> {
    let path = dir.zone_policy(zone);
    let source = std::fs::read_to_string(&path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", path.display()))?;
    let checked = tianping_policies::check(&path.display().to_string(), &source);
    if checked.errors().count() > 0 {
        return Err(miette!(
            "the zone's policy `{}` does not pass `tianping policy check`",
            path.display()
        ));
    }
    checked
        .into_policy()
        .ok_or_else(|| miette!("the zone's policy `{}` does not check", path.display()))
}

pub(super) fn receive(dir: &DataDir, fabric: &Fabric, zone: &ZoneName) -> miette::Result<ExitCode> {
    let zone_store = zone_trust(dir, zone)?;
    let trust: Arc<dyn SignerTrust> = Arc::new(ZoneTrust::new(zone_store.clone()));
    let base = dir.component(zone, Component::ExchangeReceiver);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let audit_dir = dir.audit_log(zone, Component::ExchangeReceiver);
    let log = Arc::new(
        AuditLog::open_or_create(&audit_dir, &origin(fabric, zone))
            .into_diagnostic()
            .wrap_err_with(|| format!("opening the audit log `{}`", audit_dir.display()))?,
    );
    // the node key signs the log's checkpoints and the delivery receipts
    let (signer, chain) = node_signer(dir, zone)?;
    let signer = Arc::new(signer);
    log.set_auto_checkpoint(Arc::clone(&signer) as _, CHECKPOINT_EVERY);
    // its own log's shipper: its signal handlers are in place before the receiver is ready
    if let Some(s) = crate::ship::Shipper::new(
        dir,
        zone,
        Component::ExchangeReceiver,
        Arc::clone(&log),
        Arc::clone(&signer) as _,
    )? {
        s.spawn()?;
    }
    let audit = Arc::new(Audit {
        log: Arc::clone(&log),
        zone: zone.to_string(),
        clock: Arc::clone(&clock),
    });
    let policy = Arc::new(tianping_policies::SharedPolicy::new(zone_policy(
        dir, zone,
    )?));
    let tokens = Arc::new(token_signer(dir, zone)?);
    let count: Counter = {
        let trust = Arc::clone(&trust);
        Arc::new(
            move |h: &BundleHeader, f: &tianping_policies::FlowInfo<'_>| {
                count_approvals(&h.approvals, &*trust, &h.manifest, f).map_err(|e| e.to_string())
            },
        )
    };
    let the_zone = tianping_crossdomain::Zone {
        zone: zone.clone(),
        policy: Arc::clone(&policy),
        filters: Arc::new(crate::filters::zone_filters(dir, zone)?),
        count,
        report: Arc::clone(&audit) as Arc<dyn Report>,
        clock: Arc::clone(&clock),
    };
    let services = targets(fabric, dir, zone);
    let book = Arc::new(ReceiptBook::open(&base.join("receipts")).into_diagnostic()?);
    let rt = runtime()?;
    let registry = tianping_net::Registry::new();
    let stop = Arc::new(AtomicBool::new(false));
    super::stop_on_signal(Arc::clone(&stop))?;
    let mut running = Vec::new();
    let mut statuses = Vec::new();
    let mut delivering = Vec::new();
    let mut queues = Vec::new();
    for link in fabric.links().iter().filter(|l| &l.to == zone) {
        let id = link.id;
        let from = Listener::Link {
            from: link.from.clone(),
        };
        // on port 0 the port it had before, which the link's running sender still sends to
        let again =
            tianping_core::rebind_addr(dir, zone, Component::ExchangeReceiver, &from, link.address);
        let socket = bind_udp(again, LINK_RECV_BUFFER, 0)
            .or_else(|_| bind_udp(link.address, LINK_RECV_BUFFER, 0))
            .into_diagnostic()?;
        let bound = socket.local_addr().into_diagnostic()?;
        // Linux reports twice what it set
        let got = recv_buffer(&socket).into_diagnostic()? / 2;
        if got < LINK_RECV_BUFFER {
            println!(
                "link {id} from `{}`: the kernel gave a {} KiB receive buffer, not the {} MiB \
                 asked (`net.core.rmem_max`, which only a process with CAP_NET_ADMIN may go \
                 past): a burst longer than that is lost and must be asked for again",
                link.from,
                got >> 10,
                LINK_RECV_BUFFER >> 20
            );
        }
        tianping_core::publish_addr(dir, zone, Component::ExchangeReceiver, &from, bound)
            .into_diagnostic()?;
        let status = Arc::new(
            ReceiveStatus::new(&registry, id, link.from.as_str(), link.to.as_str())
                .map_err(|e| miette!("{e}"))?,
        );
        statuses.push(Arc::clone(&status));
        let store =
            Store::open_deferred(&base.join("store").join(id.to_string())).into_diagnostic()?;
        let queue = Queue::open(&store).into_diagnostic()?;
        queues.push((id, queue.clone()));
        let mut intake = Intake::new(the_zone.clone(), queue.clone());
        let (wake, woken) = mpsc::channel();
        intake.wake(wake);
        store.hand_on_pending(&mut intake).into_diagnostic()?;
        let installer = Installer::new(dir.clone(), zone.clone(), Arc::clone(&policy))
            .with_receipts(Box::new(KeepReceipts {
                book: Arc::clone(&book),
                audit: Arc::clone(&audit),
                trust: zone_store.clone(),
                zone: zone.clone(),
            }));
        let net = NetDeliver::new(Arc::clone(&tokens), Arc::clone(&clock), Box::new(installer))
            .into_diagnostic()?
            .with_receipts(
                Box::new(SignReceipts {
                    signer: Arc::clone(&signer),
                    chain: chain.clone(),
                    zone: zone.clone(),
                }),
                dir.socket(zone, Component::ExchangeSender),
            );
        let mut deliverer =
            Deliverer::new(the_zone.clone(), queue, services.clone(), Box::new(net));
        let stop_d = Arc::clone(&stop);
        delivering.push(move || -> miette::Result<()> {
            deliverer.run(&woken, &stop_d).into_diagnostic()
        });
        let (trust, stop, audit) = (Arc::clone(&trust), Arc::clone(&stop), Arc::clone(&audit));
        running.push(std::thread::spawn(move || -> miette::Result<()> {
            let mut store = store;
            run_receiver_reporting(
                &mut store,
                ReceiverConfig::new(id),
                trust,
                &socket,
                &SystemClock,
                &mut intake,
                &status,
                &stop,
                |end: &LinkEnd| on_link_end(&audit, id, end),
            )
            .into_diagnostic()
        }));
    }
    let count = statuses.len();
    let handler = crate::audit_status::WithAuditStatus::new(
        ReceiverControl::new(zone.as_str(), statuses)
            .with_receipts(book)
            .with_queues(queues),
        tianping_crossdomain::STATUS_PATH,
        Some(Arc::clone(&log)),
    )
    .serving_reads(zone.as_str());
    let _serving = rt.block_on(async {
        // people reading receipts (route `read-receipts`), asserted by the zone's gateway
        let users = crate::assertion::GatewayUsers::new(dir, fabric, zone, "receipt-store")?;
        let people = crate::login_tokens::People {
            logins: crate::login_tokens::LoginTokens::spawn(
                dir,
                fabric,
                zone,
                &tokio::runtime::Handle::current(),
            )?,
            asserted: users,
        };
        let callers = node_callers(dir, zone, "exchange-receiver")?.or(Arc::new(people));
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
    // `tianping audit` reads the log through the socket while the receiver runs
    tianping_audit::record_owner(
        &audit_dir,
        &std::path::absolute(dir.socket(zone, Component::ExchangeReceiver)).into_diagnostic()?,
    )
    .into_diagnostic()?;
    println!("receiving into `{zone}` on {count} links");
    // the queues are delivered once the daemon said it is ready, so its first line is that
    for d in delivering {
        running.push(std::thread::spawn(d));
    }
    for t in running {
        t.join().map_err(|_| miette!("a link's thread failed"))??;
    }
    let _ = log.sync();
    tianping_audit::clear_owner(&audit_dir).into_diagnostic()?;
    println!("receiving into `{zone}` stopped");
    Ok(ExitCode::SUCCESS)
}

/// Audits a loss or a refusal by the link (a refusal by the zone is audited by the intake),
/// then prints how the transfer ended on the link.
fn on_link_end(audit: &Audit, link: u32, end: &LinkEnd) {
    let how = match end.how {
        Ended::Delivered => "delivered",
        Ended::Lost => "lost",
        Ended::Refused => "refused",
    };
    let action = match end.how {
        Ended::Delivered => {
            println!("link {link} transfer {} {how}", end.transfer);
            return;
        }
        Ended::Lost => "transfer.lost",
        Ended::Refused => "transfer.refused",
    };
    let mut e = audit.event(action);
    e.outcome = "fail".into();
    e.reason = end.reason.clone().unwrap_or_default();
    e.attributes.insert("link".into(), link.to_string());
    e.attributes
        .insert("link_transfer".into(), end.transfer.to_string());
    // a lost transfer's id stays empty (the conventions: its manifest is not relied on)
    if let (Ended::Refused, Some(id)) = (end.how, &end.transfer_id) {
        e.transfer_id = id.clone();
    }
    if let Some(epoch) = end.epoch {
        e.attributes.insert("epoch".into(), epoch.to_string());
    }
    audit.append(&e);
    // printed once audited: whoever waits for the line finds the event in the log
    println!("link {link} transfer {} {how}", end.transfer);
}

/// `receipts`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReceiptsArg {
    /// The zone that keeps the receipts.
    #[arg(long)]
    zone: ZoneName,
    /// The receipts of this transfer (`<zone>:<sequence>`): those receipting it, or the
    /// receipt transfer itself.
    #[arg(
        long,
        conflicts_with = "correlation",
        required_unless_present = "correlation"
    )]
    transfer: Option<String>,
    /// The receipts with this correlation id.
    #[arg(long)]
    correlation: Option<String>,
}

/// `tianping exchange receipts`: asks the running receiver's socket, prints one JSON receipt a
/// line, with what its signed receipt says under `signed` (kind, transfer, content hash,
/// service, zone, reader, time, signer).
pub(super) fn receipts(dir: &DataDir, r: &ReceiptsArg) -> miette::Result<ExitCode> {
    let (key, id) = match (&r.transfer, &r.correlation) {
        (Some(t), None) => ("transfer", t),
        (None, Some(c)) => ("correlation", c),
        _ => return Err(miette!("give `--transfer ID` or `--correlation ID`")),
    };
    let signer = token_signer(dir, &r.zone)?;
    let token = signer
        .sign(
            &tianping_certs::TokenClaims::Node,
            "exchange-receiver",
            SystemClock.now(),
            std::time::Duration::from_secs(30),
        )
        .into_diagnostic()?;
    if id.is_empty()
        || id
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b"&#%?+".contains(&b))
    {
        return Err(miette!("`{id}` is not a transfer or correlation id"));
    }
    let target = format!("/exchange/v1/receipts?{key}={id}");
    let socket = dir.socket(&r.zone, Component::ExchangeReceiver);
    let rt = runtime()?;
    let (status, body) = rt.block_on(async {
        let req = http::Request::builder()
            .method("GET")
            .uri(&target)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(tianping_net::ControlBody::empty())
            .into_diagnostic()?;
        let resp = tianping_net::control_send(&socket, req, tianping_net::CONTROL_TIMEOUT)
            .await
            .map_err(|e| {
                miette!(
                    "the exchange-receiver of `{}` is not running (`{}`: {e})",
                    r.zone,
                    socket.display()
                )
            })?;
        let status = resp.status().as_u16();
        let body = resp.into_body().bytes().await.map_err(|e| miette!("{e}"))?;
        miette::Result::<_>::Ok((status, body))
    })?;
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status != 200 {
        let why = value
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        return Err(miette!("the receiver refused ({status}): {why}"));
    }
    for receipt in value
        .get("receipts")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut receipt = receipt.clone();
        let signed = receipt
            .get("bytes")
            .and_then(serde_json::Value::as_str)
            .and_then(unhex)
            .and_then(|b| Receipt::decode(&b).ok());
        if let (Some(r), Some(map)) = (signed, receipt.as_object_mut()) {
            map.insert("signed".to_owned(), r.to_json());
        }
        println!("{receipt}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes from lowercase hex.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
