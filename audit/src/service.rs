//! The read API of a live audit log, which the log's owner serves on its control socket
//! (DESIGN §9), and the `owner.sock` record that tells commands where that socket is.
//!
//! A `sled` store opens in one process only, so while a component runs, its audit log is read
//! through the component. This module is free of I/O on the network side: [`handle_request`] takes
//! the caller, a method, a request target and a body and returns a [`ServiceResponse`]; the owner wires it
//! into its control socket (`tianping_net::serve_control`), calling it inside
//! `spawn_blocking` since `verify` and `search` read the whole store. [`Request::target`] builds
//! the targets a client sends.
//!
//! # Protocol (version 1)
//!
//! HTTP/1.1 over the owner's Unix control socket. Every route is `GET`; a `GET` carries no body.
//!
//! | target | answer |
//! |---|---|
//! | `/audit/v1/status` | JSON [`StatusAnswer`]: origin, size, root, archived entries, latest checkpoint size, mirror or not |
//! | `/audit/v1/verify[?key=K]` | JSON [`VerifyAnswer`]: the whole tree recomputed, every checkpoint checked with `K` (default the pinned key) |
//! | `/audit/v1/search?actor=&action=&outcome=&object=&flow=&since=&until=&from=&limit=` | JSON lines (`application/x-ndjson`) of [`Record`]s, as `tianping audit search` prints them |
//! | `/audit/v1/prove?index=N[&size=M]` | JSON [`crate::InclusionProof`] (size default: the whole log) |
//! | `/audit/v1/prove?from=M&to=N` | JSON [`crate::ConsistencyProof`] |
//! | `/audit/v1/checkpoint` | the latest signed checkpoint note (`text/plain`) |
//! | `/audit/v1/ship[?since=N]` | the `audit-batch` bytes (`application/octet-stream`), see [`crate::AuditBatch`] |
//!
//! `search` scans from entry `from` (default 0) and stops after `limit` matches (default
//! [`DEFAULT_SEARCH_LIMIT`], at most [`MAX_SEARCH_LIMIT`]); a client pages by asking again from
//! the last index plus one until a page holds fewer than `limit` records. `since` and `until`
//! are inclusive times in milliseconds since the epoch.
//!
//! Query values are percent-decoded strictly: `%` must be followed by two hex digits, the
//! decoded bytes must be UTF-8, a bare `+` is refused (write `%2B`, and a space as `%20`, so
//! `a+b` never means two things), as are raw bytes outside RFC 3986's query characters,
//! unknown or repeated parameters, and numbers that are not plain decimal digits.
//!
//! Errors are JSON [`ErrorBody`] (`{"error": "..."}`, with `index` when the error names an
//! entry, and `stored` on a failed `verify`): 400 for a bad request, 404 for an unknown path or
//! nothing to answer (no checkpoint yet), 405 for any method but `GET` (`POST
//! /audit/v1/checkpoint` is not offered: the owner signs on its own schedule), 409 when the
//! log does not verify or cannot answer in its state (tampered, damaged, archived entries, a
//! key other than the pinned one), 500 when the store fails.
//!
//! # Trust
//!
//! Proofs, checkpoints and batches carry their own evidence: a client checks them without
//! trusting the owner. A `verify` answer is the owner's word; to check a log without trusting
//! its owner, verify a mirror or a stopped copy. Only the peer's uid is checked by the socket;
//! audit data is meant for the `auditor` role (DESIGN §9), which the owner checks once
//! administrators present tokens.

#![cfg_attr(
    not(feature = "store"),
    expect(dead_code, reason = "without the store only requests are read")
)]

use serde::{Deserialize, Serialize};

#[cfg(feature = "store")]
mod answer;
#[cfg(feature = "store")]
mod owner;
mod request;

#[cfg(feature = "store")]
pub use answer::{Access, Reader, StatusAnswer, VerifyAnswer, handle};
#[cfg(feature = "store")]
pub use owner::{
    OWNER_FILE, OwnerRecord, clear_owner, owner_record, owner_socket, record_owner,
    record_owner_under,
};
pub use request::{DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT, Request};

const JSON: &str = "application/json";

/// An answer to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceResponse {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The entry the error names, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// On a failed `verify`: the entries stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<u64>,
}

/// A refused or failed request: its status and body.
#[derive(Debug)]
pub(crate) struct Failure {
    status: u16,
    body: ErrorBody,
}

impl Failure {
    fn new(status: u16, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                index: None,
                stored: None,
            },
        }
    }

    fn bad(error: impl Into<String>) -> Self {
        Self::new(400, error)
    }

    fn response(&self) -> ServiceResponse {
        json(self.status, &self.body)
    }
}

fn json<T: Serialize>(status: u16, value: &T) -> ServiceResponse {
    match serde_json::to_vec(value) {
        Ok(body) => ServiceResponse {
            status,
            content_type: JSON,
            body,
        },
        Err(_) => ServiceResponse {
            status: 500,
            content_type: JSON,
            body: br#"{"error":"the answer could not be encoded"}"#.to_vec(),
        },
    }
}
