//! One transfer by its id, to its submitter: `GET /exchange/v1/transfers/<zone>:<sequence>`;
//! and the held transfers in the sender's status.
//!
//! The caller is a person (a `user` token asserted by the zone's gateway, or another credential
//! the socket's verifier reads as a person). The answer is the transfer's state from the
//! spool — `held` (with the approvals so far and how many the flow needs), `spooled`, `sent`
//! or `retained` (sent, its bytes kept for a resend) — with its flow, kind, size, submitter,
//! receiving zone and time. Only the transfer's submitter is answered: anyone else, like an
//! id the sender does not know (or of another zone, or not an id at all), gets the same 404,
//! so the answer never tells whether someone else's transfer exists. A node of the zone is
//! no submitter of a person's transfer and is refused (403) whatever the id.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tianping_certs::CertKind;
use tianping_net::{Body, Caller, ResponseBody};

use super::{SenderInner, answer, error, failed, hex, percent_decode};
use crate::{ApprovalStatement, Held, TransferState};

/// The prefix of the by-id path; the transfer id follows.
pub(super) const TRANSFERS_PATH: &str = "/exchange/v1/transfers/";

/// How many approvals the flow of `h` needs, by the sender's policy (0 without one).
pub(super) fn needs(inner: &SenderInner, h: &Held) -> u32 {
    inner
        .outbound
        .as_ref()
        .and_then(|o| o.policy.flow(&h.outgoing.flow))
        .map_or(0, |f| f.approvers())
}

/// Who approved `h` so far (the statements that decode).
pub(super) fn approvers(h: &Held) -> Vec<String> {
    h.approvals
        .iter()
        .filter_map(|a| ApprovalStatement::decode(a).ok())
        .map(|a| a.subject.as_str().to_owned())
        .collect()
}

/// The held transfers for the status: `count`, `by_flow` (flow → count) and `transfers`
/// (each `transfer`, `flow`, `approvals` so far, `needs`); `null` if the spool cannot be read.
pub(super) fn held_status(inner: &SenderInner) -> Value {
    let Ok(list) = inner.spool.held() else {
        return Value::Null;
    };
    let mut by_flow = serde_json::Map::new();
    for h in &list {
        let n = by_flow
            .get(&h.outgoing.flow)
            .and_then(Value::as_u64)
            .unwrap_or(0);
        by_flow.insert(h.outgoing.flow.clone(), (n + 1).into());
    }
    let transfers: Vec<Value> = list
        .iter()
        .map(|h| {
            json!({
                "transfer": format!("{}:{}", inner.zone, h.sequence),
                "flow": h.outgoing.flow,
                "approvals": approvers(h).len(),
                "needs": needs(inner, h),
            })
        })
        .collect();
    json!({ "count": list.len(), "by_flow": by_flow, "transfers": transfers })
}

/// The one answer for a transfer the caller may not see, whether or not it exists.
fn unknown() -> Response<ResponseBody> {
    error(StatusCode::NOT_FOUND, "no such transfer of yours")
}

/// `GET /exchange/v1/transfers/<id>`.
pub(super) async fn transfer(
    inner: &Arc<SenderInner>,
    req: &Request<Body>,
) -> Response<ResponseBody> {
    let Some(id) = req
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.identity.clone())
    else {
        return error(StatusCode::UNAUTHORIZED, "a credential is required");
    };
    let Some(subject) = id.subject.clone().filter(|_| id.kind != CertKind::Node) else {
        return error(
            StatusCode::FORBIDDEN,
            "a transfer is shown to its submitter, a person",
        );
    };
    let raw = req
        .uri()
        .path()
        .strip_prefix(TRANSFERS_PATH)
        .unwrap_or_default();
    let Some(transfer_id) = percent_decode(raw) else {
        return unknown();
    };
    let sequence = transfer_id
        .rsplit_once(':')
        .filter(|(z, _)| *z == inner.zone)
        .and_then(|(_, n)| n.parse::<u64>().ok());
    let Some(sequence) = sequence else {
        return unknown();
    };
    let spool = Arc::clone(&inner.spool);
    let found = tokio::task::spawn_blocking(move || spool.transfer_state(sequence)).await;
    let state = match found {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return unknown(),
        _ => return failed(),
    };
    let mine = match &state {
        TransferState::Held(h) => {
            !h.outgoing.submitter.machine && h.outgoing.submitter.subject == subject
        }
        TransferState::Spooled(r) | TransferState::Sent(r) | TransferState::Retained(r) => {
            !r.machine && r.submitter == subject.as_str()
        }
    };
    if !mine {
        return unknown();
    }
    let mut v = json!({ "transfer": transfer_id, "state": state.name() });
    let fields = match &state {
        TransferState::Held(h) => {
            let approvers = approvers(h);
            json!({
                "flow": h.outgoing.flow,
                "kind": h.outgoing.kind,
                "size": h.outgoing.size,
                "submitter": h.outgoing.submitter.subject.as_str(),
                "to": h.destination.as_str(),
                "time_ms": h.time.as_millis(),
                "content_hash": hex(&h.chunks_hash),
                "approvals": approvers.len(),
                "approvers": approvers,
                "needs": needs(inner, h),
            })
        }
        TransferState::Spooled(r) | TransferState::Sent(r) | TransferState::Retained(r) => {
            json!({
                "flow": r.flow,
                "kind": r.kind,
                "size": r.size,
                "submitter": r.submitter,
                "to": r.destination.as_str(),
                "time_ms": r.time.as_millis(),
                "link": r.link,
                "link_transfer": r.link_transfer,
            })
        }
    };
    if let (Value::Object(m), Value::Object(f)) = (&mut v, fields) {
        m.extend(f);
    }
    answer(StatusCode::OK, &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Outgoing, SenderControl, Spool, Submitter, TransferRecord};
    use http_body_util::BodyExt as _;
    use tianping_certs::CourtIdentity;
    use tianping_core::{Role, UnixTime};
    use tianping_net::Handler as _;

    type R = Result<(), Box<dyn std::error::Error>>;

    fn person(sub: &str, kind: CertKind) -> Caller {
        Caller {
            uid: 0,
            pid: None,
            credential: Some(tianping_net::Credential::Assertion(Arc::new(
                tianping_core::Secret::new("t".to_owned()),
            ))),
            identity: Some(Arc::new(CourtIdentity {
                name: sub.into(),
                subject: sub.parse().ok(),
                court: None,
                roles: vec![Role::Litigant],
                zone: "internet".parse().unwrap_or_else(|_| unreachable!()),
                kind,
                fingerprint: [0; 32],
                hardware: false,
            })),
        }
    }

    /// The status and JSON body of `GET path` as `caller`.
    fn get(c: &SenderControl, path: &str, caller: Option<Caller>) -> (u16, Value) {
        let mut req = Request::builder()
            .uri(path)
            .body(Body::empty())
            .unwrap_or_else(|_| Request::new(Body::empty()));
        if let Some(caller) = caller {
            req.extensions_mut().insert(caller);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|_| unreachable!());
        rt.block_on(async {
            let r = c.call(req).await;
            let status = r.status().as_u16();
            let body = r.into_body().collect().await.map(|b| b.to_bytes());
            let v = body
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            (status, v)
        })
    }

    /// A sender of `internet` whose spool holds `internet:1` (spooled, by `p-ma`) and
    /// `internet:2` (held, by `p-ma`).
    fn sender(dir: &std::path::Path) -> Result<SenderControl, Box<dyn std::error::Error>> {
        let spool = Arc::new(Spool::open(dir)?);
        let staging = spool.staging()?;
        std::fs::write(&staging, b"bytes")?;
        let record = TransferRecord {
            sequence: 1,
            flow: "online-filing".into(),
            kind: "text".into(),
            size: 5,
            submitter: "p-ma".into(),
            machine: false,
            destination: "private".parse()?,
            time: UnixTime::from_millis(7000),
            link: 0,
            link_transfer: 0,
        };
        spool.commit_recorded(3, &staging, 5, Some(&record))?;
        let held = Held {
            sequence: 2,
            outgoing: Outgoing {
                flow: "service-of-documents".into(),
                kind: "pdf".into(),
                schema: None,
                size: 9,
                submitter: Submitter {
                    subject: "p-ma".parse()?,
                    roles: vec![Role::Litigant],
                    machine: false,
                },
                labels: vec![],
                redacted: false,
                correlation: None,
            },
            destination: "private".parse()?,
            content_type: "application/pdf".into(),
            chunks_hash: [1; 32],
            time: UnixTime::from_millis(8000),
            approvals: vec![],
        };
        spool.hold(&held, b"held bytes")?;
        Ok(SenderControl::new(
            &"internet".parse()?,
            spool,
            Vec::new(),
            None,
            None,
        ))
    }

    #[test]
    fn a_transfer_is_shown_to_its_submitter_only() -> R {
        let tmp = tempfile::tempdir()?;
        let c = sender(tmp.path())?;
        let path = format!("{TRANSFERS_PATH}internet:1");
        assert_eq!(get(&c, &path, None).0, 401);
        assert_eq!(
            get(&c, &path, Some(person("gw-internet", CertKind::Node))).0,
            403,
            "a node is no submitter"
        );
        let (status, v) = get(&c, &path, Some(person("p-ma", CertKind::Client)));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["state"], "spooled");
        assert_eq!(v["flow"], "online-filing");
        assert_eq!(v["submitter"], "p-ma");
        assert_eq!((v["link"].as_u64(), v["size"].as_u64()), (Some(3), Some(5)));
        // percent-encoded as a page writes it
        let (status, _) = get(
            &c,
            &format!("{TRANSFERS_PATH}internet%3A1"),
            Some(person("p-ma", CertKind::Client)),
        );
        assert_eq!(status, 200);
        // someone else gets exactly what an unknown id gets
        let theirs = get(&c, &path, Some(person("p-niu", CertKind::Client)));
        let unknown = get(
            &c,
            &format!("{TRANSFERS_PATH}internet:99"),
            Some(person("p-niu", CertKind::Client)),
        );
        assert_eq!(theirs.0, 404);
        assert_eq!(theirs, unknown);
        for bad in ["private:1", "internet:x", "internet", ""] {
            let got = get(
                &c,
                &format!("{TRANSFERS_PATH}{bad}"),
                Some(person("p-ma", CertKind::Client)),
            );
            assert_eq!(got, unknown, "`{bad}`");
        }
        Ok(())
    }

    #[test]
    fn a_held_transfer_shows_its_approvals_and_the_status_counts_it() -> R {
        let tmp = tempfile::tempdir()?;
        let c = sender(tmp.path())?;
        let path = format!("{TRANSFERS_PATH}internet:2");
        let (status, v) = get(&c, &path, Some(person("p-ma", CertKind::Client)));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["state"], "held");
        assert_eq!(v["approvals"], 0);
        assert_eq!(v["kind"], "pdf");
        assert_eq!(
            get(&c, &path, Some(person("p-niu", CertKind::Client))).0,
            404
        );
        let (status, s) = get(&c, crate::STATUS_PATH, None);
        assert_eq!(status, 200);
        assert_eq!(s["held"]["count"], 1, "{s}");
        assert_eq!(s["held"]["by_flow"]["service-of-documents"], 1, "{s}");
        assert_eq!(s["held"]["transfers"][0]["transfer"], "internet:2", "{s}");
        assert_eq!(s["held"]["transfers"][0]["approvals"], 0, "{s}");
        Ok(())
    }
}
