//! The exchange daemons' control sockets (feature `daemon`): `run/<zone>-exchange-sender.sock`
//! and `run/<zone>-exchange-receiver.sock`, served with `tianping_net::serve_control_with`.
//!
//! The sender's ([`SenderControl`]):
//! - `GET /exchange/v1/status` (open: no credential): per link, what is spooled, being sent,
//!   sent since the start and retained, the last transfer id, the epoch, the rate and the peer;
//!   and the held transfers (`held`: `count`, `by_flow`, and each one's `transfer`, `flow`,
//!   `approvals` so far and `needs`);
//! - `GET /exchange/v1/transfers/<id>` (a person): the transfer's state (`held`, `spooled`,
//!   `sent`, `retained`), flow, kind, size, submitter and time, to its submitter only; anyone
//!   else gets the 404 an unknown id gets;
//! - `POST /exchange/v1/submit?flow=F&kind=K[&schema=S][&label=L…][&correlation=C][&redacted=1]`
//!   (a person asserted by the zone's gateway, or a node of the zone): the payload, decided on
//!   with the zone's policy and filters, bundled, signed and spooled; `GET /exchange/v1/held`
//!   and `POST /exchange/v1/approve?transfer=ID` for releases waiting for approvals; and
//!   `POST /exchange/v1/submit-bundle?to=ZONE` (a node token of the zone): a ready-made bundle,
//!   its manifest checked against the policy, no filter run (see the sender module's docs);
//!   each answered only once the transfer is durable in the spool;
//! - `POST /exchange/v1/resend?to=ZONE&from=ID` (a node token of the zone): every retained
//!   transfer of the link from `ID` on is spooled again under new ids (`{"resent": [[old,
//!   new], …]}`), and the daemon's `on_resend` hook records it (an audit event when the daemon
//!   has a log).
//!
//! The receiver's ([`ReceiverControl`]): `GET /exchange/v1/status` (open): per link, transfers
//! received, lost (the recent ids), refused, late symbols, repaired blocks, the sender's last
//! heartbeat and when it came, whether the link is silent, and the sender epochs seen.
//!
//! The peer's uid is checked by the socket before a byte is read; a credential is then checked
//! by the socket's verifier (node tokens of the zone), and the handler asks for a node identity.

mod receiver;
mod sender;

use http::{Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tianping_certs::CertKind;
use tianping_net::{Body, Caller, ResponseBody, full};

pub use receiver::ReceiverControl;
pub use sender::{
    BUNDLE_CHUNK, ResendHook, SenderControl, SenderLink, SenderOutbound, content_type,
    percent_decode,
};

/// The status path, open on both sockets.
pub const STATUS_PATH: &str = "/exchange/v1/status";

pub(crate) fn answer(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let mut r = Response::new(full(format!("{body}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<ResponseBody> {
    answer(status, &json!({ "error": message.to_string() }))
}

/// The value of `key` in the request's query.
pub(crate) fn query<'a>(req: &'a Request<Body>, key: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The caller's identity when it is a node of the zone (the socket's verifier admits only
/// node tokens of the zone); else the answer.
#[expect(clippy::result_large_err, reason = "the answer is sent at once")]
pub(crate) fn node_caller(req: &Request<Body>) -> Result<Caller, Response<ResponseBody>> {
    let caller = req.extensions().get::<Caller>().cloned();
    match caller {
        Some(c)
            if c.identity
                .as_ref()
                .is_some_and(|i| i.kind == CertKind::Node) =>
        {
            Ok(c)
        }
        Some(c) if c.identity.is_some() => Err(error(
            StatusCode::FORBIDDEN,
            "only a node of the zone may submit or resend",
        )),
        _ => Err(error(StatusCode::UNAUTHORIZED, "a node token is required")),
    }
}
