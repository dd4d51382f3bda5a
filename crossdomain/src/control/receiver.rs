//! The receiver's control socket: its status.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tianping_core::{Clock, SystemClock};
use tianping_net::{Body, BoxFuture, Handler};

use super::{STATUS_PATH, answer, error};
use crate::ReceiveStatus;

/// The receiver's control socket handler: its status.
#[derive(Debug, Clone)]
pub struct ReceiverControl {
    zone: String,
    links: Arc<Vec<Arc<ReceiveStatus>>>,
}

impl ReceiverControl {
    /// The handler for the receiver of `zone` with its running links.
    pub fn new(zone: &str, links: Vec<Arc<ReceiveStatus>>) -> Self {
        Self {
            zone: zone.to_owned(),
            links: Arc::new(links),
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
                json!({
                    "link": s.link,
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
                (_, STATUS_PATH) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                (_, path) => error(StatusCode::NOT_FOUND, format!("no endpoint `{path}`")),
            }
        })
    }
}
