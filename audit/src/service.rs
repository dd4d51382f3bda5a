//! The read API of a live audit log, which the log's owner serves on its control socket
//! (DESIGN §9), and the `owner.sock` record that tells commands where that socket is.
//!
//! A `sled` store opens in one process only, so while a component runs, its audit log is read
//! through the component. This module is free of I/O on the network side: [`handle`] takes a
//! method, a request target and a body and returns a [`ServiceResponse`]; the owner wires it
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
    allow(
        dead_code,
        unused_imports,
        reason = "without the store only requests are read"
    )
)]

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tianping_core::{PublicKey, UnixTime};

use crate::merkle::Hash;
use crate::query::{Query, Record};
#[cfg(feature = "store")]
use crate::store::{AuditLog, StoreError, VerifyReport};

/// The file in a log folder that names the owner's control socket.
pub const OWNER_FILE: &str = "owner.sock";
/// The matches one `search` answers when no `limit` is given.
pub const DEFAULT_SEARCH_LIMIT: u64 = 10_000;
/// The largest `limit` a `search` accepts.
pub const MAX_SEARCH_LIMIT: u64 = 100_000;

const PREFIX: &str = "/audit/v1/";
const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";
const TEXT: &str = "text/plain";
const OCTETS: &str = "application/octet-stream";

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

/// A request of the protocol (see the module docs), as a client builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `GET /audit/v1/status`.
    Status,
    /// `GET /audit/v1/verify`.
    Verify {
        /// The checkpoint key; default the key the log pinned.
        key: Option<PublicKey>,
    },
    /// `GET /audit/v1/search`.
    Search {
        /// The filters.
        query: Query,
        /// The first index scanned.
        from: u64,
        /// The most matches answered.
        limit: u64,
    },
    /// `GET /audit/v1/prove?index=N[&size=M]`.
    ProveInclusion {
        /// The entry.
        index: u64,
        /// The tree size; default the whole log.
        size: Option<u64>,
    },
    /// `GET /audit/v1/prove?from=M&to=N`.
    ProveConsistency {
        /// The older size.
        from: u64,
        /// The newer size.
        to: u64,
    },
    /// `GET /audit/v1/checkpoint`.
    Checkpoint,
    /// `GET /audit/v1/ship`.
    Ship {
        /// The first entry (the size the mirror has).
        since: u64,
    },
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

/// The answer to `GET /audit/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// The log's origin.
    pub origin: String,
    /// Durable entries.
    pub size: u64,
    /// The root over them.
    #[serde(with = "crate::hexhash")]
    pub root: Hash,
    /// Leading entries archived.
    pub archived: u64,
    /// The size of the latest signed checkpoint, if there is one.
    pub checkpoint_size: Option<u64>,
    /// Whether the log is a mirror.
    pub mirror: bool,
}

/// The answer to `GET /audit/v1/verify`: a [`VerifyReport`] (no archive files are given over
/// the socket, so `archived_checked` is 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyAnswer {
    /// Entries in the tree, archived ones included.
    pub entries: u64,
    /// Of those, entries archived.
    pub archived: u64,
    /// Of the archived entries, those recomputed from archive files.
    pub archived_checked: u64,
    /// The root over all of them.
    #[serde(with = "crate::hexhash")]
    pub root: Hash,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The size of the latest checkpoint.
    pub signed_size: u64,
    /// The key the checkpoints were checked with (`alg:base64url`).
    pub key: Option<String>,
}

#[cfg(feature = "store")]
impl From<&VerifyReport> for VerifyAnswer {
    fn from(r: &VerifyReport) -> Self {
        Self {
            entries: r.entries,
            archived: r.archived,
            archived_checked: r.archived_checked,
            root: r.root,
            checkpoints: r.checkpoints,
            signed_size: r.signed_size,
            key: r.key.as_ref().map(ToString::to_string),
        }
    }
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

#[cfg(feature = "store")]
impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let (status, index) = match &e {
            StoreError::Tampered { index, .. } | StoreError::Damaged { index, .. } => {
                (409, Some(*index))
            }
            StoreError::Archived { index, .. } => (409, Some(*index)),
            StoreError::KeyMismatch { .. } | StoreError::IsMirror | StoreError::NotMirror => {
                (409, None)
            }
            StoreError::NoKey | StoreError::Proof(_) => (400, None),
            StoreError::NoCheckpoint(_) => (404, None),
            _ => (500, None),
        };
        let mut f = Self::new(status, e.to_string());
        f.body.index = index;
        f
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

#[cfg(feature = "store")]
/// Answers one request on `log`; never panics, whatever the input.
pub fn handle(log: &AuditLog, method: &str, path_and_query: &str, body: &[u8]) -> ServiceResponse {
    let answered = Request::parse(method, path_and_query).and_then(|req| {
        if body.is_empty() {
            answer(log, &req)
        } else {
            Err(Failure::bad("a `GET` carries no body"))
        }
    });
    answered.unwrap_or_else(|f| f.response())
}

#[cfg(feature = "store")]
fn answer(log: &AuditLog, req: &Request) -> Result<ServiceResponse, Failure> {
    Ok(match req {
        Request::Status => json(
            200,
            &StatusAnswer {
                origin: log.origin(),
                size: log.size(),
                root: log.root(),
                archived: log.archived_size(),
                checkpoint_size: log.latest_checkpoint()?.map(|(size, _)| size),
                mirror: log.is_mirror(),
            },
        ),
        Request::Verify { key } => {
            let stored = log.size();
            match log.verify(key.as_ref(), &mut |_, _| {}) {
                Ok(r) => json(200, &VerifyAnswer::from(&r)),
                Err(e) => {
                    let mut f = Failure::from(e);
                    f.body.stored = Some(stored);
                    return Err(f);
                }
            }
        }
        Request::Search { query, from, limit } => {
            let mut body = Vec::new();
            let matches = log
                .entries(*from)
                .filter(|r| r.as_ref().map_or(true, |r| query.matches(&r.event)));
            for r in matches.take(usize::try_from(*limit).unwrap_or(usize::MAX)) {
                let r: Record = r?;
                serde_json::to_writer(&mut body, &r)
                    .map_err(|e| Failure::new(500, format!("encoding entry `{}`: {e}", r.index)))?;
                body.push(b'\n');
            }
            ServiceResponse {
                status: 200,
                content_type: NDJSON,
                body,
            }
        }
        Request::ProveInclusion { index, size } => {
            let p = log.prove_inclusion(*index, size.unwrap_or_else(|| log.size()))?;
            p.verify().map_err(|e| Failure::new(500, e.to_string()))?;
            json(200, &p)
        }
        Request::ProveConsistency { from, to } => {
            let p = log.prove_consistency(*from, *to)?;
            p.verify().map_err(|e| Failure::new(500, e.to_string()))?;
            json(200, &p)
        }
        Request::Checkpoint => match log.latest_checkpoint()? {
            Some((_, note)) => ServiceResponse {
                status: 200,
                content_type: TEXT,
                body: note.into_bytes(),
            },
            None => return Err(Failure::new(404, "the log has no checkpoint yet")),
        },
        Request::Ship { since } => ServiceResponse {
            status: 200,
            content_type: OCTETS,
            body: {
                let mut body = Vec::new();
                log.ship_to(*since, &mut body)?;
                body
            },
        },
    })
}

impl Request {
    /// The method to send (every route is `GET`).
    pub fn method(&self) -> &'static str {
        "GET"
    }

    /// The request target (`/audit/v1/...?...`), values percent-encoded; parameters at their
    /// defaults are left out.
    pub fn target(&self) -> String {
        let mut q = Params::default();
        let route = match self {
            Self::Status => "status",
            Self::Verify { key } => {
                q.opt("key", key.as_ref().map(ToString::to_string));
                "verify"
            }
            Self::Search { query, from, limit } => {
                q.opt("actor", query.actor.clone());
                q.opt("action", query.action.clone());
                q.opt("outcome", query.outcome.clone());
                q.opt("object", query.object.clone());
                q.opt("flow", query.flow.clone());
                q.opt("since", query.since.map(|t| t.as_millis().to_string()));
                q.opt("until", query.until.map(|t| t.as_millis().to_string()));
                q.opt("from", (*from != 0).then(|| from.to_string()));
                q.opt(
                    "limit",
                    (*limit != DEFAULT_SEARCH_LIMIT).then(|| limit.to_string()),
                );
                "search"
            }
            Self::ProveInclusion { index, size } => {
                q.opt("index", Some(index.to_string()));
                q.opt("size", size.map(|s| s.to_string()));
                "prove"
            }
            Self::ProveConsistency { from, to } => {
                q.opt("from", Some(from.to_string()));
                q.opt("to", Some(to.to_string()));
                "prove"
            }
            Self::Checkpoint => "checkpoint",
            Self::Ship { since } => {
                q.opt("since", (*since != 0).then(|| since.to_string()));
                "ship"
            }
        };
        format!("{PREFIX}{route}{}", q.0)
    }

    /// Reads a request from its method and target.
    pub(crate) fn parse(method: &str, path_and_query: &str) -> Result<Self, Failure> {
        let (path, raw_query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let route = path
            .strip_prefix(PREFIX)
            .filter(|r| ["status", "verify", "search", "prove", "checkpoint", "ship"].contains(r))
            .ok_or_else(|| Failure::new(404, format!("no such route `{path}`")))?;
        if method != "GET" {
            let why = if route == "checkpoint" {
                "checkpoints are read only here: the log's owner signs them on its own schedule"
            } else {
                "only `GET` is offered"
            };
            return Err(Failure::new(405, why));
        }
        let allowed: &[&str] = match route {
            "verify" => &["key"],
            "search" => &[
                "actor", "action", "outcome", "object", "flow", "since", "until", "from", "limit",
            ],
            "prove" => &["index", "size", "from", "to"],
            "ship" => &["since"],
            _ => &[],
        };
        let mut p = parse_query(raw_query, allowed)?;
        let req = match route {
            "status" => Self::Status,
            "verify" => Self::Verify {
                key: p
                    .take("key")
                    .map(|k| {
                        k.parse::<PublicKey>()
                            .map_err(|e| Failure::bad(format!("`key`: {e}")))
                    })
                    .transpose()?,
            },
            "search" => {
                let limit = p.number("limit")?.unwrap_or(DEFAULT_SEARCH_LIMIT);
                if limit == 0 || limit > MAX_SEARCH_LIMIT {
                    return Err(Failure::bad(format!(
                        "`limit` must be between 1 and {MAX_SEARCH_LIMIT}"
                    )));
                }
                Self::Search {
                    query: Query {
                        actor: p.take("actor"),
                        action: p.take("action"),
                        outcome: p.take("outcome"),
                        object: p.take("object"),
                        flow: p.take("flow"),
                        since: p.number("since")?.map(UnixTime::from_millis),
                        until: p.number("until")?.map(UnixTime::from_millis),
                    },
                    from: p.number("from")?.unwrap_or(0),
                    limit,
                }
            }
            "prove" => match (
                p.number("index")?,
                p.number("size")?,
                p.number("from")?,
                p.number("to")?,
            ) {
                (Some(index), size, None, None) => Self::ProveInclusion { index, size },
                (None, None, Some(from), Some(to)) => Self::ProveConsistency { from, to },
                _ => {
                    return Err(Failure::bad(
                        "give `index` (and optionally `size`), or `from` and `to`",
                    ));
                }
            },
            "checkpoint" => Self::Checkpoint,
            _ => Self::Ship {
                since: p.number("since")?.unwrap_or(0),
            },
        };
        Ok(req)
    }
}

/// A query string being built.
#[derive(Default)]
struct Params(String);

impl Params {
    fn opt(&mut self, name: &str, value: Option<String>) {
        if let Some(v) = value {
            self.0.push(if self.0.is_empty() { '?' } else { '&' });
            self.0.push_str(name);
            self.0.push('=');
            self.0.push_str(&percent_encode(&v));
        }
    }
}

/// The parameters of a query, decoded.
struct Parsed(Vec<(&'static str, String)>);

impl Parsed {
    fn take(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|(n, _)| *n == name)?;
        Some(self.0.swap_remove(at).1)
    }

    fn number(&mut self, name: &str) -> Result<Option<u64>, Failure> {
        self.take(name)
            .map(|v| {
                // `u64::from_str` takes a leading `+`; only plain digits are numbers here.
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Failure::bad(format!("`{name}` must be a decimal number")));
                }
                v.parse()
                    .map_err(|_| Failure::bad(format!("`{name}` is too large")))
            })
            .transpose()
    }
}

fn parse_query(query: Option<&str>, allowed: &[&'static str]) -> Result<Parsed, Failure> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(Parsed(out));
    };
    for pair in query.split('&') {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| Failure::bad("each parameter is `name=value`"))?;
        let name = allowed
            .iter()
            .find(|a| **a == name)
            .ok_or_else(|| Failure::bad(format!("unknown parameter `{}`", shorten(name))))?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(Failure::bad(format!("`{name}` is given twice")));
        }
        let value = percent_decode(value).map_err(|e| Failure::bad(format!("`{name}`: {e}")))?;
        out.push((name, value));
    }
    Ok(Parsed(out))
}

fn shorten(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Encodes every byte but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex_digit(b: Option<u8>) -> Option<u8> {
    char::from(b?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Strict percent-decoding (see the module docs).
fn percent_decode(s: &str) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = hex_digit(bytes.next()).ok_or("`%` must be followed by two hex digits")?;
                let lo = hex_digit(bytes.next()).ok_or("`%` must be followed by two hex digits")?;
                out.push(hi << 4 | lo);
            }
            b'+' => return Err("write `+` as `%2B` and a space as `%20`"),
            b if b.is_ascii_alphanumeric() || b"-._~:@/?!$'()*,;".contains(&b) => out.push(b),
            _ => return Err("a character must be percent-encoded"),
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded")
}

/// Records in `log_dir` that `socket` (an absolute path) serves the log: writes [`OWNER_FILE`]
/// through a temporary file and a rename, so readers see the old record or the new one.
pub fn record_owner(log_dir: &Path, socket: &Path) -> io::Result<()> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    let text = socket
        .to_str()
        .ok_or_else(|| invalid("the socket path must be UTF-8"))?;
    if !socket.is_absolute() || text.contains('\n') {
        return Err(invalid("the socket path must be absolute, on one line"));
    }
    let tmp = log_dir.join(format!("{OWNER_FILE}.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, log_dir.join(OWNER_FILE))) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(log_dir).and_then(|d| d.sync_all())
}

/// The socket recorded in `log_dir`, if any (the record may be stale: its owner may have
/// ended without clearing it).
pub fn owner_socket(log_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(log_dir.join(OWNER_FILE)).ok()?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let path = PathBuf::from(line);
    (!line.is_empty() && !line.contains('\n') && path.is_absolute()).then_some(path)
}

/// Removes the owner record of `log_dir` (nothing to do if there is none).
pub fn clear_owner(log_dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(log_dir.join(OWNER_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(all(test, feature = "store"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;
    use crate::{AuditBatch, Checkpoint, ConsistencyProof, Event, InclusionProof};
    use tianping_core::{Algorithm, RingSigner, Signer};

    const ORIGIN: &str = "tianping.localhost/audit/test";

    fn event(i: u64) -> Event {
        let mut e = Event::new(UnixTime::from_millis(1_000 + i), "transfer");
        e.actor = format!("u-{}", i % 3);
        e.object = format!("case {i}+x");
        e
    }

    /// A log of 10 entries with checkpoints at 5 and 10.
    fn log() -> (tempfile::TempDir, AuditLog, RingSigner) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::create(dir.path(), ORIGIN).unwrap();
        let (signer, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
        let events: Vec<Event> = (0..10).map(event).collect();
        log.append_many(&events[..5]).unwrap();
        log.checkpoint(&signer).unwrap();
        log.append_many(&events[5..]).unwrap();
        log.checkpoint(&signer).unwrap();
        (dir, log, signer)
    }

    fn get(log: &AuditLog, target: &str) -> ServiceResponse {
        handle(log, "GET", target, b"")
    }

    fn error(r: &ServiceResponse) -> ErrorBody {
        assert_eq!(r.content_type, JSON);
        serde_json::from_slice(&r.body).unwrap()
    }

    fn lines(r: &ServiceResponse) -> Vec<Record> {
        assert_eq!((r.status, r.content_type), (200, NDJSON), "{r:?}");
        r.body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn status() {
        let (_d, log, _) = log();
        let r = get(&log, "/audit/v1/status");
        assert_eq!((r.status, r.content_type), (200, JSON));
        let s: StatusAnswer = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            s,
            StatusAnswer {
                origin: ORIGIN.into(),
                size: 10,
                root: log.root(),
                archived: 0,
                checkpoint_size: Some(10),
                mirror: false,
            }
        );
        assert!(
            String::from_utf8(r.body)
                .unwrap()
                .contains(&hex::encode(log.root()))
        );
        assert_eq!(get(&log, "/audit/v1/status?x=1").status, 400);
    }

    #[test]
    fn verify_answers_the_report_or_the_tampered_index() {
        let (dir, log, signer) = log();
        let key = signer.public_key();
        for target in [
            "/audit/v1/verify".to_string(),
            Request::Verify {
                key: Some(key.clone()),
            }
            .target(),
        ] {
            let r = get(&log, &target);
            assert_eq!(r.status, 200, "{target}");
            let v: VerifyAnswer = serde_json::from_slice(&r.body).unwrap();
            let want = log.verify(Some(&key), &mut |_, _| {}).unwrap();
            assert_eq!(v, VerifyAnswer::from(&want));
            assert_eq!(v.key, Some(key.to_string()));
            assert_eq!((v.entries, v.checkpoints, v.signed_size), (10, 2, 10));
        }
        // Another key than the pinned one.
        let (other, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
        let r = get(
            &log,
            &Request::Verify {
                key: Some(other.public_key()),
            }
            .target(),
        );
        assert_eq!(r.status, 409);
        assert_eq!(error(&r).stored, Some(10));
        assert_eq!(get(&log, "/audit/v1/verify?key=nope").status, 400);
        // A checkpoint copy that differs from the stored one at size 5.
        let forged = Checkpoint {
            origin: ORIGIN.into(),
            size: 5,
            root: [7; 32],
        }
        .sign(&signer)
        .unwrap();
        std::fs::write(dir.path().join("checkpoint.note"), forged.note()).unwrap();
        let r = get(&log, "/audit/v1/verify");
        assert_eq!(r.status, 409);
        let e = error(&r);
        assert_eq!((e.index, e.stored), (Some(5), Some(10)));
        assert!(e.error.contains("differs"), "{}", e.error);
    }

    #[test]
    fn search_filters_pages_and_limits() {
        let (_d, log, _) = log();
        let all = lines(&get(&log, "/audit/v1/search"));
        let local: Vec<Record> = log.entries(0).map(Result::unwrap).collect();
        assert_eq!(all, local);
        // The same JSON lines the command prints.
        let mut want = Vec::new();
        for r in &local {
            serde_json::to_writer(&mut want, r).unwrap();
            want.push(b'\n');
        }
        assert_eq!(get(&log, "/audit/v1/search").body, want);

        let u1 = lines(&get(&log, "/audit/v1/search?actor=u-1"));
        assert_eq!(u1.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 4, 7]);
        let page = lines(&get(&log, "/audit/v1/search?actor=u-1&from=2&limit=1"));
        assert_eq!(page.iter().map(|r| r.index).collect::<Vec<_>>(), [4]);
        let timed = lines(&get(&log, "/audit/v1/search?since=1003&until=1005"));
        assert_eq!(timed.iter().map(|r| r.index).collect::<Vec<_>>(), [3, 4, 5]);
        // Values are percent-decoded: `case 4+x`.
        let q = Query {
            object: Some("case 4+x".into()),
            ..Query::default()
        };
        let target = Request::Search {
            query: q.clone(),
            from: 0,
            limit: DEFAULT_SEARCH_LIMIT,
        }
        .target();
        assert_eq!(target, "/audit/v1/search?object=case%204%2Bx");
        assert_eq!(lines(&get(&log, &target)).len(), 1);
        assert!(lines(&get(&log, "/audit/v1/search?actor=nobody")).is_empty());

        for bad in [
            "/audit/v1/search?object=case+4%2Bx",
            "/audit/v1/search?actor=%4",
            "/audit/v1/search?actor=%zz",
            "/audit/v1/search?actor=%ff",
            "/audit/v1/search?actor=a b",
            "/audit/v1/search?actor=a=b",
            "/audit/v1/search?actor",
            "/audit/v1/search?actor=a&actor=b",
            "/audit/v1/search?who=a",
            "/audit/v1/search?actor=a&&flow=b",
            "/audit/v1/search?limit=0",
            "/audit/v1/search?limit=100001",
            "/audit/v1/search?limit=+5",
            "/audit/v1/search?from=-1",
            "/audit/v1/search?since=1e3",
            "/audit/v1/search?from=99999999999999999999999",
        ] {
            let r = get(&log, bad);
            assert_eq!(r.status, 400, "{bad}");
            assert!(!error(&r).error.is_empty());
        }
        assert_eq!(lines(&get(&log, "/audit/v1/search?limit=100000")).len(), 10);
        assert_eq!(lines(&get(&log, "/audit/v1/search?from=10")).len(), 0);
    }

    #[test]
    fn prove_inclusion_and_consistency() {
        let (_d, log, _) = log();
        let r = get(&log, "/audit/v1/prove?index=3&size=5");
        assert_eq!(r.status, 200);
        let p: InclusionProof = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(p, log.prove_inclusion(3, 5).unwrap());
        assert!(p.checkpoint.is_some());
        p.verify().unwrap();
        let whole: InclusionProof =
            serde_json::from_slice(&get(&log, "/audit/v1/prove?index=9").body).unwrap();
        assert_eq!(whole.size, 10);
        let r = get(&log, "/audit/v1/prove?from=5&to=10");
        assert_eq!(r.status, 200);
        let c: ConsistencyProof = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(c, log.prove_consistency(5, 10).unwrap());
        assert_eq!(
            r.body,
            serde_json::to_vec(&log.prove_consistency(5, 10).unwrap()).unwrap()
        );

        for bad in [
            "/audit/v1/prove",
            "/audit/v1/prove?size=3",
            "/audit/v1/prove?from=3",
            "/audit/v1/prove?index=1&from=1&to=2",
            "/audit/v1/prove?index=10",
            "/audit/v1/prove?index=3&size=11",
            "/audit/v1/prove?from=6&to=5",
            "/audit/v1/prove?index=x",
        ] {
            assert_eq!(get(&log, bad).status, 400, "{bad}");
        }
    }

    #[test]
    fn checkpoint_is_read_only() {
        let (_d, log, _) = log();
        let r = get(&log, "/audit/v1/checkpoint");
        assert_eq!((r.status, r.content_type), (200, TEXT));
        let (size, note) = log.checkpoint_notes().unwrap().pop().unwrap();
        assert_eq!((size, r.body), (10, note.into_bytes()));
        let r = handle(&log, "POST", "/audit/v1/checkpoint", b"");
        assert_eq!(r.status, 405);
        assert!(error(&r).error.contains("own schedule"));
        assert_eq!(get(&log, "/audit/v1/checkpoint?x=").status, 400);

        let empty_dir = tempfile::tempdir().unwrap();
        let empty = AuditLog::create(empty_dir.path(), ORIGIN).unwrap();
        assert_eq!(get(&empty, "/audit/v1/checkpoint").status, 404);
        let s: StatusAnswer =
            serde_json::from_slice(&get(&empty, "/audit/v1/status").body).unwrap();
        assert_eq!((s.size, s.checkpoint_size), (0, None));
        assert_eq!(get(&empty, "/audit/v1/ship").status, 404);
    }

    #[test]
    fn ship_answers_the_batch() {
        let (_d, log, _) = log();
        let r = get(&log, "/audit/v1/ship?since=5");
        assert_eq!((r.status, r.content_type), (200, OCTETS));
        assert_eq!(r.body, log.ship(5).unwrap().encode().unwrap());
        let b = AuditBatch::decode(&r.body).unwrap();
        assert_eq!((b.old_size, b.entries.len()), (5, 5));
        assert_eq!(
            get(&log, "/audit/v1/ship").body,
            log.ship(0).unwrap().encode().unwrap()
        );
        assert_eq!(get(&log, "/audit/v1/ship?since=11").status, 404);
        assert_eq!(get(&log, "/audit/v1/ship?since=").status, 400);
    }

    #[test]
    fn routes_methods_and_bodies() {
        let (_d, log, _) = log();
        for bad in [
            "/",
            "/audit/v1",
            "/audit/v1/",
            "/audit/v1/status/",
            "/audit/v2/status",
            "/audit/v1/append",
        ] {
            assert_eq!(get(&log, bad).status, 404, "{bad}");
        }
        for m in ["POST", "PUT", "DELETE", "HEAD"] {
            assert_eq!(handle(&log, m, "/audit/v1/search", b"").status, 405);
        }
        assert_eq!(handle(&log, "GET", "/audit/v1/status", b"x").status, 400);
        // Long or odd names never panic, and are echoed shortened.
        let long = format!("/audit/v1/search?{}=1", "é".repeat(100));
        let e = error(&get(&log, &long));
        assert!(e.error.len() < 120, "{}", e.error);
    }

    #[test]
    fn targets_round_trip() {
        let (signer, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
        let requests = [
            Request::Status,
            Request::Verify { key: None },
            Request::Verify {
                key: Some(signer.public_key()),
            },
            Request::Search {
                query: Query {
                    actor: Some("a&b=c%d+e f/é".into()),
                    action: Some(String::new()),
                    outcome: Some("deny".into()),
                    object: Some("~x".into()),
                    flow: Some("filing".into()),
                    since: Some(UnixTime::from_millis(1)),
                    until: Some(UnixTime::from_millis(u64::MAX)),
                },
                from: 7,
                limit: 3,
            },
            Request::Search {
                query: Query::default(),
                from: 0,
                limit: DEFAULT_SEARCH_LIMIT,
            },
            Request::ProveInclusion {
                index: 3,
                size: None,
            },
            Request::ProveInclusion {
                index: 3,
                size: Some(9),
            },
            Request::ProveConsistency { from: 0, to: 9 },
            Request::Checkpoint,
            Request::Ship { since: 0 },
            Request::Ship { since: 12 },
        ];
        for r in requests {
            let parsed = Request::parse(r.method(), &r.target()).unwrap();
            assert_eq!(parsed, r, "{}", r.target());
        }
    }

    #[test]
    fn owner_record() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(owner_socket(dir.path()), None);
        clear_owner(dir.path()).unwrap();
        let sock = dir.path().join("run/a-gateway.sock");
        record_owner(dir.path(), &sock).unwrap();
        assert_eq!(owner_socket(dir.path()), Some(sock.clone()));
        let other = Path::new("/run/tianping/b.sock");
        record_owner(dir.path(), other).unwrap();
        assert_eq!(owner_socket(dir.path()).as_deref(), Some(other));
        assert!(record_owner(dir.path(), Path::new("relative.sock")).is_err());
        assert!(record_owner(dir.path(), Path::new("/a\nb")).is_err());
        // Only the record itself is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [OWNER_FILE]);
        for junk in ["", "\n", "relative\n", "/a\n/b\n"] {
            std::fs::write(dir.path().join(OWNER_FILE), junk).unwrap();
            assert_eq!(owner_socket(dir.path()), None, "{junk:?}");
        }
        clear_owner(dir.path()).unwrap();
        assert_eq!(owner_socket(dir.path()), None);
    }
}
