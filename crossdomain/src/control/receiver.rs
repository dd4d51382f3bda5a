//! The receiver's control socket: its status (open), and the receipts it keeps
//! (`GET /exchange/v1/receipts?transfer=ID|correlation=ID`, a node token of the zone).
//!
//! People read a receipt through the zone's gateway (route `read-receipts`, service
//! `receipt-store`): `GET /gateway/v1/receipt-store/receipts/<transfer-id>`, with the person's
//! `Tianping-Assertion` (verified by the socket's caller check), answers the signed receipts kept
//! for that transfer, 404 if none. The receiver does not know who submitted the transfer (a
//! receipt names the transfer, its service, zone and reader, never the submitter: the sender
//! kept that), so it answers any person the gateway asserts, the route's roles having been
//! checked by the gateway; the submitter-only view of a transfer is the gateway's
//! `/.tianping/transfers/<id>`, which asks the sender, who knows the submitter.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tianping_core::{Clock, SystemClock};
use tianping_net::{Body, BoxFuture, Handler, ResponseBody};

use super::{STATUS_PATH, answer, error, node_caller, query};
use crate::{Queue, ReceiptBook, ReceiveStatus};

/// The receipts path.
pub(crate) const RECEIPTS_PATH: &str = "/exchange/v1/receipts";
/// Where the zone's gateway forwards a person's receipt reads (`…/<transfer-id>`).
pub(crate) const GATEWAY_RECEIPTS_PATH: &str = "/gateway/v1/receipt-store/receipts/";

/// The receiver's control socket handler: its status.
#[derive(Debug, Clone)]
pub struct ReceiverControl {
    zone: String,
    links: Arc<Vec<Arc<ReceiveStatus>>>,
    receipts: Option<Arc<ReceiptBook>>,
    queues: Arc<Vec<(u32, Queue)>>,
}

impl ReceiverControl {
    /// The handler for the receiver of `zone` with its running links.
    pub fn new(zone: &str, links: Vec<Arc<ReceiveStatus>>) -> Self {
        Self {
            zone: zone.to_owned(),
            links: Arc::new(links),
            receipts: None,
            queues: Arc::new(Vec::new()),
        }
    }

    /// Shows each link's delivery queue in the status: transfers waiting for their service,
    /// and delivered ones waiting for their receipt to be taken.
    pub fn with_queues(mut self, queues: Vec<(u32, Queue)>) -> Self {
        self.queues = Arc::new(queues);
        self
    }

    /// Serves the receipts of `book` too.
    pub fn with_receipts(mut self, book: Arc<ReceiptBook>) -> Self {
        self.receipts = Some(book);
        self
    }

    fn receipts(&self, req: &Request<Body>) -> Response<ResponseBody> {
        if let Err(refused) = node_caller(req) {
            return refused;
        }
        let Some(book) = &self.receipts else {
            return error(StatusCode::NOT_FOUND, "this receiver keeps no receipts");
        };
        let found = match (query(req, "transfer"), query(req, "correlation")) {
            (Some(id), None) => book.by_transfer(id),
            (None, Some(id)) => book.by_correlation(id),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ask with `transfer=ID` or `correlation=ID`",
                );
            }
        };
        match found {
            Ok(list) => answer(StatusCode::OK, &json!({ "receipts": list })),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }

    /// A person's read of transfer `id`'s receipts, through the gateway.
    fn person_receipts(&self, req: &Request<Body>, id: &str) -> Response<ResponseBody> {
        let caller = req.extensions().get::<tianping_net::Caller>();
        let person = caller.is_some_and(|c| {
            c.identity.is_some()
                && matches!(c.credential, Some(tianping_net::Credential::Assertion(_)))
        });
        if !person {
            return error(
                StatusCode::UNAUTHORIZED,
                "receipts are read by people, asserted by the zone's gateway",
            );
        }
        let Some(book) = &self.receipts else {
            return error(StatusCode::NOT_FOUND, "this receiver keeps no receipts");
        };
        if id.is_empty() || id.contains('/') {
            return error(StatusCode::NOT_FOUND, "no such transfer");
        }
        match book.by_transfer(id) {
            Ok(list) if list.is_empty() => {
                error(StatusCode::NOT_FOUND, "no receipt kept for that transfer")
            }
            Ok(list) => answer(StatusCode::OK, &json!({ "transfer": id, "receipts": list })),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }

    /// The paths answered without a credential.
    pub fn open_paths() -> Vec<String> {
        vec![STATUS_PATH.to_owned()]
    }

    fn status(&self) -> Value {
        let now = SystemClock.now();
        let links: Vec<Value> = self
            .links
            .iter()
            .map(|s| {
                let d = s.detail();
                let beat = d.last_beat.map(|(at, b)| {
                    json!({
                        "at_ms": at.as_millis(),
                        "ago_ms": u64::try_from(now.saturating_since(at).as_millis()).unwrap_or(u64::MAX),
                        "transfers_started": b.transfers_started,
                        "transfers_finished": b.transfers_finished,
                        "last_transfer": b.last_transfer,
                        "done_below": b.done_below,
                        "datagrams_sent": b.datagrams_sent,
                    })
                });
                let pending = self
                    .queues
                    .iter()
                    .find(|(l, _)| *l == s.link)
                    .and_then(|(_, q)| q.pending().ok())
                    .unwrap_or_default();
                let receipts = pending.iter().filter(|q| q.delivered).count();
                json!({
                    "link": s.link,
                    "deliveries_pending": pending.len() - receipts,
                    "receipts_pending": receipts,
                    "from": s.from,
                    "received": s.received.get(),
                    "last_received": d.last_received,
                    "lost": s.lost.get(),
                    "lost_ids": d.lost_ids,
                    "refused": s.refused.get(),
                    "refused_ids": d.refused_ids,
                    "late": s.late.get(),
                    "repaired": s.repaired.get(),
                    "datagrams": s.datagrams.get(),
                    "malformed": s.malformed.get(),
                    "last_heartbeat": beat,
                    "silent": d.silent_since.is_some(),
                    "silent_since_ms": d.silent_since.map(|t| t.as_millis()),
                    "epochs": d.epochs,
                })
            })
            .collect();
        json!({ "zone": self.zone, "component": "exchange-receiver", "links": links })
    }
}

impl Handler for ReceiverControl {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let this = self.clone();
        Box::pin(async move {
            match (req.method(), req.uri().path()) {
                (&Method::GET, STATUS_PATH) => answer(StatusCode::OK, &this.status()),
                (&Method::GET, RECEIPTS_PATH) => this.receipts(&req),
                (&Method::GET, p) if p.starts_with(GATEWAY_RECEIPTS_PATH) => {
                    let id = p.strip_prefix(GATEWAY_RECEIPTS_PATH).unwrap_or_default();
                    this.person_receipts(&req, id)
                }
                (_, RECEIPTS_PATH) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                (_, STATUS_PATH) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                (_, path) => error(StatusCode::NOT_FOUND, format!("no endpoint `{path}`")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &ReceiverControl, path: &str, caller: Option<tianping_net::Caller>) -> u16 {
        let mut req = Request::builder()
            .method("GET")
            .uri(path)
            .body(Body::empty())
            .unwrap_or_else(|_| Request::new(Body::empty()));
        if let Some(caller) = caller {
            req.extensions_mut().insert(caller);
        }
        let rt = tokio::runtime::Builder::new_current_thread().build();
        rt.map_or(0, |rt| rt.block_on(c.call(req)).status().as_u16())
    }

    #[test]
    fn a_person_reads_receipts_only_when_asserted() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let book = Arc::new(ReceiptBook::open(tmp.path())?);
        let c = ReceiverControl::new("internet", Vec::new()).with_receipts(book);
        let path = format!("{GATEWAY_RECEIPTS_PATH}internet:7");
        assert_eq!(get(&c, &path, None), 401);
        let person = tianping_net::Caller {
            uid: 0,
            pid: None,
            credential: Some(tianping_net::Credential::Assertion(Arc::new(
                tianping_core::Secret::new("t".to_owned()),
            ))),
            identity: Some(Arc::new(tianping_certs::CourtIdentity {
                name: "u-1".into(),
                subject: Some("u-1".parse()?),
                court: None,
                roles: vec![],
                zone: "internet".parse()?,
                kind: tianping_certs::CertKind::Client,
                fingerprint: [0; 32],
                hardware: false,
            })),
        };
        let mut bearer = person.clone();
        bearer.credential = Some(tianping_net::Credential::Bearer(Arc::new(
            tianping_core::Secret::new("t".to_owned()),
        )));
        assert_eq!(get(&c, &path, Some(bearer)), 401, "not a gateway assertion");
        assert_eq!(get(&c, &path, Some(person)), 404, "no receipt kept");
        Ok(())
    }
}
