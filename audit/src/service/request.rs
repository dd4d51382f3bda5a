//! Requests of the protocol: parsed from a method and a target, and built into targets; pure
//! (no store), so the parser is fuzzed on its own (`fuzz/fuzz_targets/audit_service_request.rs`).

use tianping_core::{PublicKey, UnixTime};

use super::Failure;
use crate::query::Query;

/// The matches one `search` answers when no `limit` is given.
pub const DEFAULT_SEARCH_LIMIT: u64 = 10_000;
/// The largest `limit` a `search` accepts.
pub const MAX_SEARCH_LIMIT: u64 = 100_000;

const PREFIX: &str = "/audit/v1/";

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
                q.opt("transfer", query.transfer.clone());
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
                "actor", "action", "outcome", "object", "flow", "transfer", "since", "until",
                "from", "limit",
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
                        transfer: p.take("transfer"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tianping_core::{Algorithm, RingSigner, Signer};

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
                    transfer: Some("internet:42".into()),
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
}
