//! The sender's control socket: status, submissions checked against the zone's policy and
//! filters, transfers held for approval and their approvals, a streamed bundle, resend.
//!
//! - `POST /exchange/v1/submit?flow=F&kind=K[&schema=S][&label=L…][&correlation=C][&redacted=1]`
//!   (values percent-encoded): the submitter is the caller — a person (a `user` token asserted
//!   by the zone's gateway, or another credential the socket's verifier reads as a person), or
//!   a component of the zone with a node token (a machine). The payload is streamed to a
//!   staging file, bounded by the flow's `max-size` (over it, 413 before more is read); the
//!   outbound decision ([`Outbound`]) and the zone's filter run on it, and the filter's rebuilt
//!   bytes are bundled: a manifest with the zone's next sequence (its rate counted in the same
//!   step), the clock's time and the policy's hash, signed with the sender's node key, spooled
//!   durably, audited as `transfer` allow, and only then answered `{"transfer": "<zone>:<seq>",
//!   "link": L, "link_transfer": N}`. A refusal answers 403 (policy) / 413 (size) / 422 (filter)
//!   / 429 (rate) with the reason, audited as `transfer` deny; nothing is spooled. A release
//!   whose approvals are not met is held (202, `{"transfer": ID, "held": true, "need": N}`,
//!   audited `transfer` deny with `held=true` and `transfer.held`).
//! - `GET /exchange/v1/held`: the held transfers; `POST /exchange/v1/approve?transfer=ID`: the
//!   caller (a person) approves; the sender signs the statement with its node key
//!   (`transfer.approved`); a statement [`count_approvals`] refuses (the submitter, a second
//!   approval by the same person, a role the flow does not name) is answered 403, audited
//!   `transfer.approved` fail, and changes nothing. When the approvals are met the transfer is
//!   bundled with them and spooled (`transfer.released`, then `transfer` allow).
//! - `POST /exchange/v1/submit-bundle?to=ZONE` (a node of the zone; tests and the gibibyte
//!   test): a ready-made bundle streamed into the spool. Its manifest is checked against the
//!   outbound decision (flow, kind, size, submitter, labels, approvals counted from the bundle)
//!   before it is spooled, but **no filter runs** (the bytes are the caller's): its `transfer`
//!   event says `filters=skipped`. Answered `{"link": L, "transfer": N, "transfer_id": ID}`.
//! - `POST /exchange/v1/resend?to=ZONE&from=ID`: retained transfers spooled again.
//! - `GET /exchange/v1/transfers/<id>`: one transfer's state, to its submitter only (see the
//!   `transfers` module); every spooled transfer's record is kept for it
//!   ([`TransferRecord`](crate::TransferRecord)).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::mpsc::Sender as Outbox;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tianping_audit::{AuditLog, Event};
use tianping_certs::CertKind;
use tianping_core::{Clock, Signer, ZoneName};
use tianping_net::{Body, BoxFuture, Caller, Handler, ResponseBody};
use tianping_policies::{Approval, Policy};
use tokio::io::AsyncWriteExt as _;

use super::{STATUS_PATH, answer, error, node_caller, query};
use crate::{
    AdmitError, ApprovalStatement, Approving, BundleHeader, ChunkHasher, Filters, Held, MAX_HEADER,
    Manifest, Outbound, OutboundRefusal, Outgoing, SendStatus, SignerTrust, Spool, SpoolError,
    Submitter, TransferRecord, count_approvals, table_hash,
};

mod transfers;

const SUBMIT_PATH: &str = "/exchange/v1/submit";
const SUBMIT_BUNDLE_PATH: &str = "/exchange/v1/submit-bundle";
const HELD_PATH: &str = "/exchange/v1/held";
const APPROVE_PATH: &str = "/exchange/v1/approve";
const RESEND_PATH: &str = "/exchange/v1/resend";

/// The chunk size of the bundles the sender builds.
pub const BUNDLE_CHUNK: u32 = 256 * 1024;

/// One of the sender's links as its control socket sees it.
#[derive(Debug)]
pub struct SenderLink {
    /// The receiving zone.
    pub to: String,
    /// The link's id.
    pub id: u32,
    /// Tells the link's loop of a transfer spooled for it.
    pub inbox: Mutex<Outbox<u64>>,
    /// The link's state.
    pub status: Arc<SendStatus>,
    /// The largest body `submit-bundle` takes for the link.
    pub limit: u64,
}

/// Told of every resend: who asked, the receiving zone, the (retained, new) ids.
pub type ResendHook = Box<dyn Fn(&Caller, &str, &[(u64, u64)]) + Send + Sync>;

/// What the sender decides and signs with.
pub struct SenderOutbound {
    /// The zone's policy copy, checked.
    pub policy: Arc<Policy>,
    /// The zone's filters.
    pub filters: Arc<Filters>,
    /// The sender's node key (signs bundles and approval statements).
    pub signer: Arc<dyn Signer>,
    /// The sender's node certificate (DER).
    pub certificate: Vec<u8>,
    /// The zone's trust, which counts approvals (the nodes of this zone).
    pub trust: Arc<dyn SignerTrust>,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
    /// The sender's audit log, if it keeps one.
    pub audit: Option<Arc<AuditLog>>,
}

impl std::fmt::Debug for SenderOutbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderOutbound")
            .field("policy", &self.policy.hash())
            .field("filters", &self.filters.kinds().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

struct SenderInner {
    zone: String,
    zone_name: ZoneName,
    spool: Arc<Spool>,
    links: BTreeMap<String, SenderLink>,
    on_resend: Option<ResendHook>,
    outbound: Option<SenderOutbound>,
    /// One approval or release at a time.
    approving: tokio::sync::Mutex<()>,
}

/// The sender's control socket handler.
#[derive(Clone)]
pub struct SenderControl(Arc<SenderInner>);

impl std::fmt::Debug for SenderControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderControl")
            .field("zone", &self.0.zone)
            .field("links", &self.0.links.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SenderControl {
    /// The handler for the sender of `zone` over `spool`, with its running links; `on_resend`
    /// is told of every resend (who asked, the receiving zone, the ids). Without `outbound`
    /// only status, `submit-bundle` (unchecked) and resend are answered.
    pub fn new(
        zone: &ZoneName,
        spool: Arc<Spool>,
        links: impl IntoIterator<Item = SenderLink>,
        on_resend: Option<ResendHook>,
        outbound: Option<SenderOutbound>,
    ) -> Self {
        Self(Arc::new(SenderInner {
            zone: zone.to_string(),
            zone_name: zone.clone(),
            spool,
            links: links.into_iter().map(|l| (l.to.clone(), l)).collect(),
            on_resend,
            outbound,
            approving: tokio::sync::Mutex::new(()),
        }))
    }

    /// The paths answered without a credential.
    pub fn open_paths() -> Vec<String> {
        vec![STATUS_PATH.to_owned()]
    }
}

impl Handler for SenderControl {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let inner = Arc::clone(&self.0);
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            match (req.method().clone(), path.as_str()) {
                (Method::GET, STATUS_PATH) => answer(StatusCode::OK, &sender_status(&inner)),
                (Method::POST, SUBMIT_PATH) => submit(&inner, req).await,
                (Method::POST, SUBMIT_BUNDLE_PATH) => submit_bundle(&inner, req).await,
                (Method::GET, HELD_PATH) => held(&inner, &req).await,
                (Method::POST, APPROVE_PATH) => approve(&inner, &req).await,
                (Method::POST, RESEND_PATH) => resend(&inner, req).await,
                (Method::GET, p) if p.starts_with(transfers::TRANSFERS_PATH) => {
                    transfers::transfer(&inner, &req).await
                }
                (
                    _,
                    STATUS_PATH | SUBMIT_PATH | SUBMIT_BUNDLE_PATH | HELD_PATH | APPROVE_PATH
                    | RESEND_PATH,
                ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                _ => error(StatusCode::NOT_FOUND, format!("no endpoint `{path}`")),
            }
        })
    }
}

fn sender_status(inner: &SenderInner) -> Value {
    let links: Vec<Value> = inner
        .links
        .values()
        .map(|l| {
            let s = &l.status;
            json!({
                "link": l.id,
                "to": l.to,
                "rate_mbps": s.rate_mbps,
                "epoch": s.epoch,
                "spooled": s.spooled.get(),
                "sending": s.sending.get(),
                "sent": s.sent.get(),
                "retained": s.retained.get(),
                "last_transfer": s.last_transfer.get(),
                "datagrams": s.datagrams.get(),
                "send_errors": s.send_errors.get(),
                "peer": s.peer().map(|p| p.to_string()),
            })
        })
        .collect();
    json!({
        "zone": inner.zone,
        "component": "exchange-sender",
        "epoch": inner.spool.epoch(),
        "links": links,
        "held": transfers::held_status(inner),
    })
}

#[expect(clippy::result_large_err, reason = "the answer is sent at once")]
fn link_of<'a>(
    inner: &'a SenderInner,
    req: &Request<Body>,
) -> Result<&'a SenderLink, Response<ResponseBody>> {
    let to = query(req, "to").ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "`to` (the receiving zone) is missing",
        )
    })?;
    inner.links.get(to).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no running link from `{}` to `{to}`", inner.zone),
        )
    })
}

fn spool_answer(e: &SpoolError) -> Response<ResponseBody> {
    match e {
        SpoolError::Refused(why) => error(StatusCode::BAD_REQUEST, why),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the spool failed"),
    }
}

fn failed() -> Response<ResponseBody> {
    error(StatusCode::INTERNAL_SERVER_ERROR, "the sender failed")
}

/// Every value of `key` in the query, percent-decoded.
fn query_all(req: &Request<Body>, key: &str) -> Vec<String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .filter_map(|(_, v)| percent_decode(v))
        .collect()
}

fn query_one(req: &Request<Body>, key: &str) -> Option<String> {
    query_all(req, key)
        .into_iter()
        .next()
        .filter(|v| !v.is_empty())
}

/// `%XX` and `+` decoded; `None` when the result is not UTF-8 or an escape is broken.
pub fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Who submits: a person the socket's verifier read, or a node of this zone (a machine); the
/// key its rate is counted under.
#[expect(clippy::result_large_err, reason = "the answer is sent at once")]
fn submitter_of(
    inner: &SenderInner,
    req: &Request<Body>,
) -> Result<(Submitter, String, String), Response<ResponseBody>> {
    let Some(id) = req
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.identity.clone())
    else {
        return Err(error(StatusCode::UNAUTHORIZED, "a credential is required"));
    };
    if id.kind == CertKind::Node {
        if id.zone.as_str() != inner.zone {
            return Err(error(
                StatusCode::FORBIDDEN,
                "only a node of this zone submits as a machine",
            ));
        }
        // a node's name is a host name; as a subject id its dots become dashes
        let name: String = id
            .name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c == '.' { '-' } else { c })
            .take(64)
            .collect();
        let subject = name.parse().map_err(|_| {
            error(
                StatusCode::FORBIDDEN,
                format!("node `{}` has no usable name", id.name),
            )
        })?;
        let key = format!("machine:{}", id.name);
        return Ok((
            Submitter {
                subject,
                roles: Vec::new(),
                machine: true,
            },
            key,
            id.name.clone(),
        ));
    }
    match &id.subject {
        Some(s) => Ok((
            Submitter {
                subject: s.clone(),
                roles: id.roles.clone(),
                machine: false,
            },
            s.as_str().to_owned(),
            s.as_str().to_owned(),
        )),
        None => Err(error(
            StatusCode::FORBIDDEN,
            "the credential names no person and no node of this zone",
        )),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The media type a kind's payload is sent as.
pub fn content_type(kind: &str) -> &'static str {
    match kind {
        "pdf" => "application/pdf",
        "json" | "directory-update" => "application/json",
        "text" => "text/plain; charset=utf-8",
        "png" => "image/png",
        "jpeg" => "image/jpeg",
        "mp4" => "video/mp4",
        "ofd" => "application/ofd",
        "receipt" => "application/vnd.tianping.receipt",
        "audit-batch" => "application/vnd.tianping.audit-batch",
        _ => "application/octet-stream",
    }
}

/// A `transfer`-family audit event of this sender.
fn event(inner: &SenderInner, o: &SenderOutbound, action: &str, outcome: &str) -> Event {
    let mut e = Event::new(o.clock.now(), action);
    e.zone = inner.zone.clone();
    e.component = "exchange-sender".into();
    e.node = "exchange-sender".into();
    e.outcome = outcome.into();
    e
}

/// The decision fields `policy replay` reads, filled from a submission.
fn decision_fields(e: &mut Event, s: &Outgoing, approvals: &[Approval]) {
    e.flow = s.flow.clone();
    e.kind = s.kind.clone();
    if let Some(schema) = &s.schema {
        e.attributes.insert("schema".into(), schema.clone());
    }
    e.size = Some(s.size);
    e.submitter = if s.submitter.machine {
        "machine".into()
    } else {
        s.submitter.subject.as_str().to_owned()
    };
    e.roles = s
        .submitter
        .roles
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    e.labels = s.labels.clone();
    e.approvals = approvals
        .iter()
        .map(|a| format!("{}:{}", a.by, a.role.as_str()))
        .collect();
    e.attributes
        .insert("redacted".into(), s.redacted.to_string());
    if let Some(c) = &s.correlation {
        e.attributes.insert("correlation".into(), c.clone());
    }
}

fn record(o: &SenderOutbound, e: &Event) -> Result<(), ()> {
    match &o.audit {
        Some(log) => log.append(e).map(|_| ()).map_err(|_| ()),
        None => Ok(()),
    }
}

/// Audits a refusal (`transfer` deny) and answers it.
fn refuse(
    inner: &SenderInner,
    o: &SenderOutbound,
    s: &Outgoing,
    actor: &str,
    r: &OutboundRefusal,
) -> Response<ResponseBody> {
    let mut e = event(inner, o, "transfer", "deny");
    decision_fields(&mut e, s, &[]);
    e.actor = actor.to_owned();
    e.reason = r.to_string();
    e.policy_hash = Some(o.policy.hash());
    if let OutboundRefusal::Denied { rule, .. } = r {
        e.attributes.insert("rule".into(), rule.clone());
    }
    if let Ok(f) = (Outbound {
        zone: &zone_name(inner),
        policy: &o.policy,
        filters: &o.filters,
    })
    .flow(&s.flow)
    {
        e.attributes.insert("to".into(), f.to().to_string());
    }
    if record(o, &e).is_err() {
        return failed();
    }
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN);
    error(status, r)
}

fn zone_name(inner: &SenderInner) -> ZoneName {
    inner.zone_name.clone()
}

#[expect(clippy::too_many_lines, reason = "one submission, step by step")]
async fn submit(inner: &Arc<SenderInner>, req: Request<Body>) -> Response<ResponseBody> {
    let Some(o) = inner.outbound.as_ref() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this sender has no policy to decide with",
        );
    };
    let (submitter, rate_key, actor) = match submitter_of(inner, &req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (Some(flow), Some(kind)) = (query_one(&req, "flow"), query_one(&req, "kind")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "`flow` and `kind` are both required",
        );
    };
    let mut s = Outgoing {
        flow,
        kind,
        schema: query_one(&req, "schema"),
        size: 0,
        submitter,
        labels: query_all(&req, "label"),
        redacted: query_one(&req, "redacted").is_some_and(|v| v == "1" || v == "true"),
        correlation: query_one(&req, "correlation"),
    };
    let zone = zone_name(inner);
    let out = Outbound {
        zone: &zone,
        policy: &o.policy,
        filters: &o.filters,
    };
    let limit = match out.limit(&s.flow) {
        Ok(l) => l,
        Err(r) => return refuse(inner, o, &s, &actor, &r),
    };
    let mut body = req.into_body();
    body.set_limit(limit);
    let staging = match inner.spool.staging() {
        Ok(p) => p,
        Err(e) => return spool_answer(&e),
    };
    let written = stream_to(&staging, &mut body).await;
    let len = match written {
        Ok(len) => len,
        Err((status, r)) => {
            let _ = tokio::fs::remove_file(&staging).await;
            if status == 413 {
                s.size = limit.saturating_add(1);
                let refusal = OutboundRefusal::TooLarge {
                    flow: s.flow.clone(),
                    size: s.size,
                    max: limit,
                };
                return refuse(inner, o, &s, &actor, &refusal);
            }
            return r;
        }
    };
    s.size = len;
    let payload = tokio::fs::read(&staging).await;
    let _ = tokio::fs::remove_file(&staging).await;
    let Ok(payload) = payload else {
        return failed();
    };
    let decided = match out.decide(&s, &[]) {
        Ok(d) => d,
        Err(r) => return refuse(inner, o, &s, &actor, &r),
    };
    let filtered = {
        let (policy, filters, s2, zone2) = (
            Arc::clone(&o.policy),
            Arc::clone(&o.filters),
            s.clone(),
            zone.clone(),
        );
        let run = tokio::task::spawn_blocking(move || {
            Outbound {
                zone: &zone2,
                policy: &policy,
                filters: &filters,
            }
            .filter(&s2, &payload)
        })
        .await;
        match run {
            Ok(Ok(f)) => f,
            Ok(Err(r)) => return refuse(inner, o, &s, &actor, &r),
            Err(_) => return failed(),
        }
    };
    let payload = filtered.bytes;
    s.size = payload.len() as u64;
    let Some(link) = inner.links.get(decided.destination.as_str()) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no running link from `{}` to `{}`",
                inner.zone, decided.destination
            ),
        );
    };
    let now = o.clock.now();
    let admitted = {
        let (spool, flow, key, rate) = (
            Arc::clone(&inner.spool),
            s.flow.clone(),
            rate_key.clone(),
            decided.rate,
        );
        tokio::task::spawn_blocking(move || spool.admit(&flow, &key, rate, now)).await
    };
    let sequence = match admitted {
        Ok(Ok(n)) => n,
        Ok(Err(AdmitError::Rate(retry_secs))) => {
            let rate = decided.rate.unwrap_or(tianping_policies::Rate {
                count: 0,
                per_secs: 0,
            });
            let r = OutboundRefusal::Rate {
                flow: s.flow.clone(),
                count: rate.count,
                per_secs: rate.per_secs,
                retry_secs,
            };
            return refuse(inner, o, &s, &actor, &r);
        }
        Ok(Err(AdmitError::Spool(e))) => return spool_answer(&e),
        Err(_) => return failed(),
    };
    let transfer_id = format!("{}:{sequence}", inner.zone);
    let mut hasher = match ChunkHasher::new(BUNDLE_CHUNK) {
        Ok(h) => h,
        Err(_) => return failed(),
    };
    hasher.update(&payload);
    let (_, table) = hasher.finish();
    let chunks_hash = table_hash(&table);
    if decided.held {
        let held = Held {
            sequence,
            outgoing: s.clone(),
            destination: decided.destination.clone(),
            content_type: content_type(&s.kind).to_owned(),
            chunks_hash,
            time: now,
            approvals: Vec::new(),
        };
        let spool = Arc::clone(&inner.spool);
        let h2 = held.clone();
        let done = tokio::task::spawn_blocking(move || spool.hold(&h2, &payload)).await;
        if !matches!(done, Ok(Ok(()))) {
            return failed();
        }
        let mut e = event(inner, o, "transfer", "deny");
        decision_fields(&mut e, &s, &[]);
        e.actor = actor.clone();
        e.transfer_id = transfer_id.clone();
        e.content_hash = hex(&chunks_hash);
        e.policy_hash = Some(decided.policy_hash);
        e.reason = format!("held: {} more approvals needed", decided.need);
        e.attributes.insert("rule".into(), decided.rule.clone());
        e.attributes.insert("held".into(), "true".into());
        e.attributes
            .insert("to".into(), decided.destination.to_string());
        let mut h = event(inner, o, "transfer.held", "ok");
        h.actor = actor;
        h.flow = s.flow.clone();
        h.transfer_id = transfer_id.clone();
        h.content_hash = hex(&chunks_hash);
        h.attributes.insert("need".into(), decided.need.to_string());
        if record(o, &e).and_then(|()| record(o, &h)).is_err() {
            return failed();
        }
        return answer(
            StatusCode::ACCEPTED,
            &json!({ "transfer": transfer_id, "held": true, "need": decided.need }),
        );
    }
    let manifest = Manifest {
        flow: s.flow.clone(),
        source: zone.clone(),
        destination: decided.destination.clone(),
        kind: s.kind.clone(),
        content_type: content_type(&s.kind).to_owned(),
        schema: s.schema.clone(),
        size: s.size,
        chunk_size: BUNDLE_CHUNK,
        chunks_hash,
        submitter: s.submitter.clone(),
        labels: s.labels.clone(),
        redacted: s.redacted,
        correlation: s.correlation.clone(),
        time: now,
        sequence,
        policy_hash: decided.policy_hash,
    };
    spool_and_audit(
        inner,
        o,
        link,
        manifest,
        Vec::new(),
        &[],
        payload,
        &s,
        &actor,
        &decided.rule,
        None,
    )
    .await
}

/// Bundles, spools, tells the link, audits `transfer` allow and answers.
#[expect(clippy::too_many_arguments, reason = "the decision's parts")]
async fn spool_and_audit(
    inner: &Arc<SenderInner>,
    o: &SenderOutbound,
    link: &SenderLink,
    manifest: Manifest,
    statements: Vec<Vec<u8>>,
    approvals: &[Approval],
    payload: Vec<u8>,
    s: &Outgoing,
    actor: &str,
    rule: &str,
    before: Option<Event>,
) -> Response<ResponseBody> {
    let transfer_id = format!("{}:{}", manifest.source, manifest.sequence);
    let mut e = event(inner, o, "transfer", "allow");
    decision_fields(&mut e, s, approvals);
    e.actor = actor.to_owned();
    e.transfer_id = transfer_id.clone();
    e.content_hash = hex(&manifest.chunks_hash);
    e.policy_hash = Some(manifest.policy_hash);
    e.attributes.insert("rule".into(), rule.to_owned());
    e.attributes
        .insert("to".into(), manifest.destination.to_string());
    e.attributes.insert("link".into(), link.id.to_string());
    e.attributes
        .insert("epoch".into(), inner.spool.epoch().to_string());
    let released = before.is_some();
    // the decision (and the release before it) is recorded, naming the link's transfer id,
    // after the bundle is in the spool and before it waits to be sent: a sender that stops
    // between the two has recorded a transfer it never sent, never sent one it did not record
    let signed = {
        let spool = Arc::clone(&inner.spool);
        let o2 = SignWith {
            signer: Arc::clone(&o.signer),
            certificate: o.certificate.clone(),
        };
        let audit = o.audit.clone();
        let id = link.id;
        tokio::task::spawn_blocking(move || {
            let mut audited = |link_transfer: u64| {
                let Some(log) = &audit else { return Ok(()) };
                e.attributes
                    .insert("link_transfer".into(), link_transfer.to_string());
                for ev in before.iter().chain(std::iter::once(&e)) {
                    log.append(ev).map_err(|err| err.to_string())?;
                }
                Ok(())
            };
            o2.bundle(&spool, id, manifest, statements, &payload, &mut audited)
        })
        .await
    };
    let link_transfer = match signed {
        Ok(Ok(n)) => n,
        _ => return failed(),
    };
    if let Ok(inbox) = link.inbox.lock() {
        // a link whose loop ended takes the transfer from the spool at its next start
        let _ = inbox.send(link_transfer);
    }
    answer(
        StatusCode::OK,
        &json!({
            "transfer": transfer_id,
            "link": link.id,
            "link_transfer": link_transfer,
            "released": released,
        }),
    )
}

/// What a blocking task signs with.
struct SignWith {
    signer: Arc<dyn Signer>,
    certificate: Vec<u8>,
}

impl SignWith {
    fn bundle(
        &self,
        spool: &Spool,
        link: u32,
        manifest: Manifest,
        statements: Vec<Vec<u8>>,
        payload: &[u8],
        audit: &mut dyn FnMut(u64) -> Result<(), String>,
    ) -> Result<u64, String> {
        let record = record_of(&manifest);
        let mut hasher = ChunkHasher::new(BUNDLE_CHUNK).map_err(|e| e.to_string())?;
        hasher.update(payload);
        let (_, table) = hasher.finish();
        let header = BundleHeader::sign(
            manifest,
            statements,
            table,
            self.certificate.clone(),
            self.signer.as_ref(),
        )
        .map_err(|e| e.to_string())?;
        let head = header.encode().map_err(|e| e.to_string())?;
        let staging = spool.staging().map_err(|e| e.to_string())?;
        let written = (|| -> std::io::Result<u64> {
            let mut f = std::fs::File::create(&staging)?;
            f.write_all(&head)?;
            f.write_all(payload)?;
            f.flush()?;
            f.sync_all()?;
            Ok((head.len() + payload.len()) as u64)
        })();
        let len = match written {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&staging);
                return Err(e.to_string());
            }
        };
        spool
            .commit_audited(link, &staging, len, Some(&record), audit)
            .map_err(|e| e.to_string())
    }
}

/// What the spool remembers of a bundled transfer (its link's id is the spool's to set).
fn record_of(m: &Manifest) -> TransferRecord {
    TransferRecord {
        sequence: m.sequence,
        flow: m.flow.clone(),
        kind: m.kind.clone(),
        size: m.size,
        submitter: m.submitter.subject.as_str().to_owned(),
        machine: m.submitter.machine,
        destination: m.destination.clone(),
        time: m.time,
        link: 0,
        link_transfer: 0,
    }
}

/// Streams `body` into a new file at `path` and fsyncs it; its length, or the status and answer.
async fn stream_to(path: &Path, body: &mut Body) -> Result<u64, (u16, Response<ResponseBody>)> {
    let failed = |_| {
        (
            500,
            error(StatusCode::INTERNAL_SERVER_ERROR, "the spool failed"),
        )
    };
    let mut file = tokio::fs::File::create(path).await.map_err(failed)?;
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (e.status(), error(status, e))
        })?;
        if let Ok(data) = frame.into_data() {
            file.write_all(&data).await.map_err(failed)?;
            len += data.len() as u64;
        }
    }
    file.flush().await.map_err(failed)?;
    file.sync_all().await.map_err(failed)?;
    Ok(len)
}

/// The header of a staged bundle file.
fn read_header(path: &Path) -> Result<BundleHeader, String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    f.read_exact(&mut len)
        .map_err(|_| "not a bundle".to_owned())?;
    let len = usize::try_from(u32::from_be_bytes(len)).map_err(|e| e.to_string())?;
    if len > MAX_HEADER {
        return Err("the bundle's header is too long".into());
    }
    let mut head = vec![0u8; len];
    f.read_exact(&mut head)
        .map_err(|_| "the bundle's header is cut short".to_owned())?;
    BundleHeader::decode(&head).map_err(|e| e.to_string())
}

#[expect(clippy::too_many_lines, reason = "one submission, step by step")]
async fn submit_bundle(inner: &Arc<SenderInner>, req: Request<Body>) -> Response<ResponseBody> {
    let caller = match node_caller(&req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let actor = caller
        .identity
        .as_ref()
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let link = match link_of(inner, &req) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let (id, limit) = (link.id, link.limit);
    let mut body = req.into_body();
    body.set_limit(limit);
    let staging = match inner.spool.staging() {
        Ok(p) => p,
        Err(e) => return spool_answer(&e),
    };
    let len = match stream_to(&staging, &mut body).await {
        Ok(len) => len,
        Err((_, r)) => {
            let _ = tokio::fs::remove_file(&staging).await;
            return r;
        }
    };
    let mut transfer_id = String::new();
    let mut approvals_seen = Vec::new();
    let mut rule = String::new();
    let mut outgoing = None;
    let mut spooled_record = None;
    if let Some(o) = inner.outbound.as_ref() {
        let st = staging.clone();
        let header = match tokio::task::spawn_blocking(move || read_header(&st)).await {
            Ok(Ok(h)) => h,
            Ok(Err(why)) => {
                let _ = tokio::fs::remove_file(&staging).await;
                return error(StatusCode::BAD_REQUEST, why);
            }
            Err(_) => return failed(),
        };
        let m = &header.manifest;
        let s = Outgoing {
            flow: m.flow.clone(),
            kind: m.kind.clone(),
            schema: m.schema.clone(),
            size: m.size,
            submitter: m.submitter.clone(),
            labels: m.labels.clone(),
            redacted: m.redacted,
            correlation: m.correlation.clone(),
        };
        let zone = zone_name(inner);
        let out = Outbound {
            zone: &zone,
            policy: &o.policy,
            filters: &o.filters,
        };
        let checked = (|| -> Result<(Vec<Approval>, String), OutboundRefusal> {
            let flow = out.flow(&m.flow)?;
            if m.source != zone || m.destination.as_str() != link.to || flow.to() != &m.destination
            {
                return Err(OutboundRefusal::Denied {
                    rule: m.flow.clone(),
                    reason: format!(
                        "the bundle goes from `{}` to `{}`, the flow from `{}` to `{}` on the link to `{}`",
                        m.source,
                        m.destination,
                        flow.from(),
                        flow.to(),
                        link.to
                    ),
                });
            }
            let approvals = if flow.has_release() {
                count_approvals(&header.approvals, o.trust.as_ref(), m, &flow).map_err(|e| {
                    OutboundRefusal::Denied {
                        rule: m.flow.clone(),
                        reason: e.to_string(),
                    }
                })?
            } else {
                Vec::new()
            };
            let d = out.decide(&s, &approvals)?;
            if d.held {
                return Err(OutboundRefusal::Denied {
                    rule: d.rule,
                    reason: format!("the release needs {} more approvals", d.need),
                });
            }
            Ok((approvals, d.rule))
        })();
        match checked {
            Ok((a, r)) => {
                approvals_seen = a;
                rule = r;
            }
            Err(r) => {
                let _ = tokio::fs::remove_file(&staging).await;
                return refuse(inner, o, &s, &actor, &r);
            }
        }
        transfer_id = format!("{}:{}", m.source, m.sequence);
        spooled_record = Some(record_of(m));
        outgoing = Some((s, hex(&m.chunks_hash), m.policy_hash));
    }
    let spool = Arc::clone(&inner.spool);
    let staged = staging.clone();
    let committed = tokio::task::spawn_blocking(move || {
        spool.commit_recorded(id, &staged, len, spooled_record.as_ref())
    })
    .await;
    let transfer = match committed {
        Ok(Ok(transfer)) => transfer,
        Ok(Err(e)) => return spool_answer(&e),
        Err(_) => {
            let _ = tokio::fs::remove_file(&staging).await;
            return failed();
        }
    };
    if let Ok(inbox) = link.inbox.lock() {
        // a link whose loop ended takes the transfer from the spool at its next start
        let _ = inbox.send(transfer);
    }
    if let (Some(o), Some((s, hash, policy_hash))) = (inner.outbound.as_ref(), outgoing) {
        let mut e = event(inner, o, "transfer", "allow");
        decision_fields(&mut e, &s, &approvals_seen);
        e.actor = actor;
        e.transfer_id = transfer_id.clone();
        e.content_hash = hash;
        e.policy_hash = Some(policy_hash);
        e.attributes.insert("rule".into(), rule);
        e.attributes.insert("to".into(), link.to.clone());
        e.attributes.insert("link".into(), id.to_string());
        e.attributes
            .insert("epoch".into(), inner.spool.epoch().to_string());
        e.attributes
            .insert("link_transfer".into(), transfer.to_string());
        e.attributes.insert("filters".into(), "skipped".into());
        if record(o, &e).is_err() {
            return failed();
        }
    }
    answer(
        StatusCode::OK,
        &json!({ "link": id, "transfer": transfer, "transfer_id": transfer_id }),
    )
}

async fn held(inner: &Arc<SenderInner>, req: &Request<Body>) -> Response<ResponseBody> {
    if req
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.identity.as_ref())
        .is_none()
    {
        return error(StatusCode::UNAUTHORIZED, "a credential is required");
    }
    let spool = Arc::clone(&inner.spool);
    let Ok(Ok(list)) = tokio::task::spawn_blocking(move || spool.held()).await else {
        return failed();
    };
    let items: Vec<Value> = list
        .iter()
        .map(|h| {
            json!({
                "transfer": format!("{}:{}", inner.zone, h.sequence),
                "flow": h.outgoing.flow,
                "kind": h.outgoing.kind,
                "size": h.outgoing.size,
                "to": h.destination.as_str(),
                "submitter": h.outgoing.submitter.subject.as_str(),
                "content_hash": hex(&h.chunks_hash),
                "approvers": transfers::approvers(h),
                "needs": transfers::needs(inner, h),
            })
        })
        .collect();
    answer(StatusCode::OK, &json!({ "held": items }))
}

#[expect(clippy::too_many_lines, reason = "one approval, step by step")]
async fn approve(inner: &Arc<SenderInner>, req: &Request<Body>) -> Response<ResponseBody> {
    let Some(o) = inner.outbound.as_ref() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this sender has no policy to decide with",
        );
    };
    let Some(id) = req
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.identity.clone())
    else {
        return error(StatusCode::UNAUTHORIZED, "a credential is required");
    };
    let Some(subject) = id.subject.clone().filter(|_| id.kind != CertKind::Node) else {
        return error(StatusCode::FORBIDDEN, "only a person approves a release");
    };
    let Some(transfer_id) = query_one(req, "transfer") else {
        return error(
            StatusCode::BAD_REQUEST,
            "`transfer` (the transfer id) is missing",
        );
    };
    let sequence = transfer_id
        .rsplit_once(':')
        .filter(|(z, _)| *z == inner.zone)
        .and_then(|(_, n)| n.parse::<u64>().ok());
    let Some(sequence) = sequence else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "`{transfer_id}` is not a transfer id of zone `{}`",
                inner.zone
            ),
        );
    };
    // one approval at a time: two approvals racing must not release twice
    let _guard = inner.approving.lock().await;
    let held = match inner.spool.held_one(sequence) {
        Ok(Some(h)) => h,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no transfer `{transfer_id}` is held for approval"),
            );
        }
        Err(e) => return spool_answer(&e),
    };
    let zone = zone_name(inner);
    let out = Outbound {
        zone: &zone,
        policy: &o.policy,
        filters: &o.filters,
    };
    let Ok(flow) = out.flow(&held.outgoing.flow) else {
        return error(
            StatusCode::CONFLICT,
            format!("flow `{}` no longer leaves this zone", held.outgoing.flow),
        );
    };
    let now = o.clock.now();
    let statement = ApprovalStatement::sign(
        &Approving {
            transfer_id: &transfer_id,
            content_hash: held.chunks_hash,
            subject: &subject,
            roles: &id.roles,
            time: now,
        },
        o.certificate.clone(),
        o.signer.as_ref(),
    )
    .and_then(|s| {
        s.encode()
            .map_err(|e| crate::ApprovalError::Sign(e.to_string()))
    });
    let Ok(statement) = statement else {
        return failed();
    };
    let mut statements = held.approvals.clone();
    statements.push(statement);
    let manifest = Manifest {
        flow: held.outgoing.flow.clone(),
        source: zone.clone(),
        destination: held.destination.clone(),
        kind: held.outgoing.kind.clone(),
        content_type: held.content_type.clone(),
        schema: held.outgoing.schema.clone(),
        size: held.outgoing.size,
        chunk_size: BUNDLE_CHUNK,
        chunks_hash: held.chunks_hash,
        submitter: held.outgoing.submitter.clone(),
        labels: held.outgoing.labels.clone(),
        redacted: held.outgoing.redacted,
        correlation: held.outgoing.correlation.clone(),
        time: now,
        sequence,
        policy_hash: o.policy.hash(),
    };
    let mut a = event(inner, o, "transfer.approved", "ok");
    a.actor = subject.as_str().to_owned();
    a.roles = id.roles.iter().map(|r| r.as_str().to_owned()).collect();
    a.flow = held.outgoing.flow.clone();
    a.transfer_id = transfer_id.clone();
    a.content_hash = hex(&held.chunks_hash);
    a.attributes
        .insert("by_node".into(), "exchange-sender".into());
    let approvals = match count_approvals(&statements, o.trust.as_ref(), &manifest, &flow) {
        Ok(a) => a,
        Err(why) => {
            a.outcome = "fail".into();
            a.reason = why.to_string();
            if record(o, &a).is_err() {
                return failed();
            }
            return error(
                StatusCode::FORBIDDEN,
                format!("the approval is refused: {why}"),
            );
        }
    };
    let mut updated = held.clone();
    updated.approvals = statements.clone();
    if let Err(e) = inner.spool.update_held(&updated) {
        return spool_answer(&e);
    }
    if record(o, &a).is_err() {
        return failed();
    }
    let decided = match out.decide(&held.outgoing, &approvals) {
        Ok(d) => d,
        Err(r) => {
            return error(
                StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN),
                format!("approved, but the policy now refuses it: {r}"),
            );
        }
    };
    if decided.held {
        return answer(
            StatusCode::OK,
            &json!({ "transfer": transfer_id, "released": false, "need": decided.need }),
        );
    }
    let Some(link) = inner.links.get(held.destination.as_str()) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no running link to `{}`; approved, still held",
                held.destination
            ),
        );
    };
    let Ok(payload) = std::fs::read(inner.spool.held_payload(sequence)) else {
        return failed();
    };
    let mut manifest = manifest;
    manifest.policy_hash = decided.policy_hash;
    spool_and_audit_released(
        inner,
        o,
        link,
        manifest,
        statements,
        &approvals,
        payload,
        &held,
        &decided.rule,
    )
    .await
}

/// A held transfer whose approvals are met: bundled, spooled, unheld; `transfer.released`
/// then `transfer` allow.
#[expect(clippy::too_many_arguments, reason = "the decision's parts")]
async fn spool_and_audit_released(
    inner: &Arc<SenderInner>,
    o: &SenderOutbound,
    link: &SenderLink,
    manifest: Manifest,
    statements: Vec<Vec<u8>>,
    approvals: &[Approval],
    payload: Vec<u8>,
    held: &Held,
    rule: &str,
) -> Response<ResponseBody> {
    let transfer_id = format!("{}:{}", manifest.source, manifest.sequence);
    let mut r = event(inner, o, "transfer.released", "ok");
    r.flow = held.outgoing.flow.clone();
    r.transfer_id = transfer_id;
    r.content_hash = hex(&held.chunks_hash);
    r.approvals = approvals
        .iter()
        .map(|a| format!("{}:{}", a.by, a.role.as_str()))
        .collect();
    let actor = held.outgoing.submitter.subject.as_str().to_owned();
    let resp = spool_and_audit(
        inner,
        o,
        link,
        manifest,
        statements,
        approvals,
        payload,
        &held.outgoing,
        &actor,
        rule,
        Some(r),
    )
    .await;
    if resp.status() == StatusCode::OK {
        if let Err(e) = inner.spool.unhold(held.sequence) {
            return spool_answer(&e);
        }
    }
    resp
}
async fn resend(inner: &Arc<SenderInner>, req: Request<Body>) -> Response<ResponseBody> {
    let caller = match node_caller(&req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let link = match link_of(inner, &req) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(from) = query(&req, "from").and_then(|f| f.parse::<u64>().ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "`from` (the first transfer id to send again) is missing or not a number",
        );
    };
    let (spool, id) = (Arc::clone(&inner.spool), link.id);
    let done = tokio::task::spawn_blocking(move || spool.resend(id, from)).await;
    let pairs = match done {
        Ok(Ok(pairs)) => pairs,
        Ok(Err(e)) => return spool_answer(&e),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the spool failed"),
    };
    if let Ok(inbox) = link.inbox.lock() {
        for (_, new) in &pairs {
            let _ = inbox.send(*new);
        }
    }
    if let Some(hook) = &inner.on_resend {
        hook(&caller, &link.to, &pairs);
    }
    answer(StatusCode::OK, &json!({ "link": id, "resent": pairs }))
}
