//! One audit event, its canonical binary encoding (the leaf bytes) and its JSON form.
//!
//! Encoding, version 1: the byte `0x01`, the time as a big-endian `u64` of milliseconds, then
//! every field in declaration order: strings as a big-endian `u32` length and UTF-8 bytes;
//! lists as a `u32` count and their strings; `size` as `0x00` (absent) or `0x01` and a `u64`;
//! `attributes` as a `u32` count of key/value string pairs in strictly ascending key order.
//! Decoding refuses anything [`Event::encode`] would not write (trailing bytes, unsorted or
//! repeated keys, bad UTF-8), so a leaf has exactly one reading.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tianping_core::UnixTime;

/// The encoding version written by this build.
pub const EVENT_VERSION: u8 = 1;

/// The largest encoded event accepted (1 MiB).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Why bytes are not an encoded event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The version byte is not one this build reads.
    #[error("unknown event encoding version `{0}`")]
    Version(u8),
    /// The bytes end inside a field.
    #[error("event truncated in field `{0}`")]
    Truncated(&'static str),
    /// A string field is not UTF-8.
    #[error("field `{0}` is not UTF-8")]
    Utf8(&'static str),
    /// A field holds a value the encoder never writes.
    #[error("field `{0}` is not canonical")]
    NotCanonical(&'static str),
    /// Bytes follow the last field.
    #[error("{0} bytes after the event")]
    Trailing(usize),
    /// The event is larger than [`MAX_EVENT_BYTES`].
    #[error("event of {0} bytes is larger than the limit")]
    TooLarge(usize),
    /// The event is empty.
    #[error("empty event")]
    Empty,
}

mod unix_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use tianping_core::UnixTime;

    pub(super) fn serialize<S: Serializer>(t: &UnixTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.as_millis())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<UnixTime, D::Error> {
        u64::deserialize(d).map(UnixTime::from_millis)
    }
}

/// One audited decision or action (MLPS level 3 fields, and what replay and reconciliation need).
///
/// Empty strings and lists mean "not recorded"; JSON leaves them out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// When it happened (milliseconds since the epoch, UTC).
    #[serde(with = "unix_ms")]
    pub time: UnixTime,
    /// The node that recorded it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The zone of that node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    /// The component that recorded it (`idp`, `gateway`, `exchange-sender`...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub component: String,
    /// Who acted: a subject id, a certificate fingerprint, or an administrator.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    /// The source address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// What was done (`sign-in`, `token`, `request`, `transfer`, `policy-change`...).
    pub action: String,
    /// What it was done to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub object: String,
    /// The result (`allow`, `deny`, `success`, `failure`...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The request id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// The hash of the policy that decided.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_hash: String,
    /// The HTTP method.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// The normalized path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The actor's roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The actor's court code.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub court: String,
    /// The actor's clearance.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub clearance: String,
    /// The authentication strength.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub acr: String,
    /// The declared flow of a transfer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flow: String,
    /// The kind of content.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The size of the content in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The content's labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The approvals counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<String>,
    /// Who submitted a transfer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub submitter: String,
    /// The transfer id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transfer_id: String,
    /// The hash of the content.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_hash: String,
    /// Anything else, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// An event with a time and an action and nothing else recorded.
    pub fn new(time: UnixTime, action: impl Into<String>) -> Self {
        Self {
            time,
            node: String::new(),
            zone: String::new(),
            component: String::new(),
            actor: String::new(),
            source: String::new(),
            action: action.into(),
            object: String::new(),
            outcome: String::new(),
            reason: String::new(),
            request_id: String::new(),
            policy_hash: String::new(),
            method: String::new(),
            path: String::new(),
            roles: Vec::new(),
            court: String::new(),
            clearance: String::new(),
            acr: String::new(),
            flow: String::new(),
            kind: String::new(),
            size: None,
            labels: Vec::new(),
            approvals: Vec::new(),
            submitter: String::new(),
            transfer_id: String::new(),
            content_hash: String::new(),
            attributes: BTreeMap::new(),
        }
    }

    /// The canonical bytes: what the Merkle leaf commits to.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out` (as [`encode`](Self::encode) returns it).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(EVENT_VERSION);
        out.extend_from_slice(&self.time.as_millis().to_be_bytes());
        for s in [
            &self.node,
            &self.zone,
            &self.component,
            &self.actor,
            &self.source,
            &self.action,
            &self.object,
            &self.outcome,
            &self.reason,
            &self.request_id,
            &self.policy_hash,
            &self.method,
            &self.path,
        ] {
            put_str(out, s);
        }
        put_list(out, &self.roles);
        for s in [
            &self.court,
            &self.clearance,
            &self.acr,
            &self.flow,
            &self.kind,
        ] {
            put_str(out, s);
        }
        match self.size {
            None => out.push(0),
            Some(n) => {
                out.push(1);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        put_list(out, &self.labels);
        put_list(out, &self.approvals);
        for s in [&self.submitter, &self.transfer_id, &self.content_hash] {
            put_str(out, s);
        }
        put_len(out, self.attributes.len());
        for (k, v) in &self.attributes {
            put_str(out, k);
            put_str(out, v);
        }
    }

    /// The length of [`encode`](Self::encode)'s output.
    pub fn encoded_len(&self) -> usize {
        let strs = [
            &self.node,
            &self.zone,
            &self.component,
            &self.actor,
            &self.source,
            &self.action,
            &self.object,
            &self.outcome,
            &self.reason,
            &self.request_id,
            &self.policy_hash,
            &self.method,
            &self.path,
            &self.court,
            &self.clearance,
            &self.acr,
            &self.flow,
            &self.kind,
            &self.submitter,
            &self.transfer_id,
            &self.content_hash,
        ];
        let lists = [&self.roles, &self.labels, &self.approvals];
        1 + 8
            + strs.iter().map(|s| 4 + s.len()).sum::<usize>()
            + lists
                .iter()
                .map(|l| 4 + l.iter().map(|s| 4 + s.len()).sum::<usize>())
                .sum::<usize>()
            + if self.size.is_some() { 9 } else { 1 }
            + 4
            + self
                .attributes
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>()
    }

    /// Checks that `bytes` are a canonical event without building it (what `decode` accepts).
    pub fn validate(bytes: &[u8]) -> Result<(), EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge(bytes.len()));
        }
        let mut r = Reader { rest: bytes };
        let version = r.u8("version").map_err(|_| EventError::Empty)?;
        if version != EVENT_VERSION {
            return Err(EventError::Version(version));
        }
        r.u64("time")?;
        for f in [
            "node",
            "zone",
            "component",
            "actor",
            "source",
            "action",
            "object",
            "outcome",
            "reason",
            "request_id",
            "policy_hash",
            "method",
            "path",
        ] {
            r.utf8(f)?;
        }
        r.skip_list("roles")?;
        for f in ["court", "clearance", "acr", "flow", "kind"] {
            r.utf8(f)?;
        }
        match r.u8("size")? {
            0 => {}
            1 => {
                r.u64("size")?;
            }
            _ => return Err(EventError::NotCanonical("size")),
        }
        r.skip_list("labels")?;
        r.skip_list("approvals")?;
        for f in ["submitter", "transfer_id", "content_hash"] {
            r.utf8(f)?;
        }
        let n = r.count("attributes", 8)?;
        // Byte order of UTF-8 is the order of `String`s, so keys compare as bytes.
        let mut last: Option<&[u8]> = None;
        for _ in 0..n {
            let k = r.utf8("attributes")?;
            r.utf8("attributes")?;
            if last.is_some_and(|l| l >= k) {
                return Err(EventError::NotCanonical("attributes"));
            }
            last = Some(k);
        }
        if !r.rest.is_empty() {
            return Err(EventError::Trailing(r.rest.len()));
        }
        Ok(())
    }

    /// Reads canonical bytes; refuses anything [`encode`](Self::encode) would not write.
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge(bytes.len()));
        }
        let mut r = Reader { rest: bytes };
        let version = r.u8("version").map_err(|_| EventError::Empty)?;
        if version != EVENT_VERSION {
            return Err(EventError::Version(version));
        }
        let time = UnixTime::from_millis(r.u64("time")?);
        let mut e = Event::new(time, String::new());
        e.node = r.string("node")?;
        e.zone = r.string("zone")?;
        e.component = r.string("component")?;
        e.actor = r.string("actor")?;
        e.source = r.string("source")?;
        e.action = r.string("action")?;
        e.object = r.string("object")?;
        e.outcome = r.string("outcome")?;
        e.reason = r.string("reason")?;
        e.request_id = r.string("request_id")?;
        e.policy_hash = r.string("policy_hash")?;
        e.method = r.string("method")?;
        e.path = r.string("path")?;
        e.roles = r.list("roles")?;
        e.court = r.string("court")?;
        e.clearance = r.string("clearance")?;
        e.acr = r.string("acr")?;
        e.flow = r.string("flow")?;
        e.kind = r.string("kind")?;
        e.size = match r.u8("size")? {
            0 => None,
            1 => Some(r.u64("size")?),
            _ => return Err(EventError::NotCanonical("size")),
        };
        e.labels = r.list("labels")?;
        e.approvals = r.list("approvals")?;
        e.submitter = r.string("submitter")?;
        e.transfer_id = r.string("transfer_id")?;
        e.content_hash = r.string("content_hash")?;
        let n = r.count("attributes", 8)?;
        let mut last: Option<String> = None;
        for _ in 0..n {
            let k = r.string("attributes")?;
            let v = r.string("attributes")?;
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(EventError::NotCanonical("attributes"));
            }
            e.attributes.insert(k.clone(), v);
            last = Some(k);
        }
        if !r.rest.is_empty() {
            return Err(EventError::Trailing(r.rest.len()));
        }
        Ok(e)
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Events are bounded far below 4 GiB; saturating keeps `encode` total.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_list(out: &mut Vec<u8>, l: &[String]) {
    put_len(out, l.len());
    for s in l {
        put_str(out, s);
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EventError> {
        if self.rest.len() < n {
            return Err(EventError::Truncated(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, EventError> {
        let b = self.take(1, field)?;
        b.first().copied().ok_or(EventError::Truncated(field))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, EventError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes(
            b.try_into().map_err(|_| EventError::Truncated(field))?,
        ))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, EventError> {
        let b = self.take(8, field)?;
        Ok(u64::from_be_bytes(
            b.try_into().map_err(|_| EventError::Truncated(field))?,
        ))
    }

    /// A count whose items take at least `min_item` bytes each, checked against what is left.
    fn count(&mut self, field: &'static str, min_item: usize) -> Result<usize, EventError> {
        let n = self.u32(field)? as usize;
        if n.saturating_mul(min_item) > self.rest.len() {
            return Err(EventError::Truncated(field));
        }
        Ok(n)
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, EventError> {
        let n = self.u32(field)? as usize;
        let b = self.take(n, field)?;
        std::str::from_utf8(b).map_err(|_| EventError::Utf8(field))
    }

    fn string(&mut self, field: &'static str) -> Result<String, EventError> {
        self.str(field).map(str::to_owned)
    }

    /// A string field's bytes, checked to be UTF-8 (ASCII, the common case, checked fastest).
    fn utf8(&mut self, field: &'static str) -> Result<&'a [u8], EventError> {
        let n = self.u32(field)? as usize;
        let b = self.take(n, field)?;
        if b.is_ascii() || std::str::from_utf8(b).is_ok() {
            Ok(b)
        } else {
            Err(EventError::Utf8(field))
        }
    }

    fn skip_list(&mut self, field: &'static str) -> Result<(), EventError> {
        let n = self.count(field, 4)?;
        for _ in 0..n {
            self.utf8(field)?;
        }
        Ok(())
    }

    fn list(&mut self, field: &'static str) -> Result<Vec<String>, EventError> {
        let n = self.count(field, 4)?;
        (0..n).map(|_| self.string(field)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn full_event() -> Event {
        let mut e = Event::new(UnixTime::from_millis(1_764_000_000_123), "transfer");
        e.node = "n1".into();
        e.zone = "internet".into();
        e.component = "exchange-sender".into();
        e.actor = "p-alice".into();
        e.source = "192.0.2.7:5512".into();
        e.object = "filing/42".into();
        e.outcome = "allow".into();
        e.reason = "flow `filing` allows litigant".into();
        e.request_id = "req-1".into();
        e.policy_hash = "ab".repeat(32);
        e.method = "POST".into();
        e.path = "/filings".into();
        e.roles = vec!["litigant".into()];
        e.court = "bj.01".into();
        e.clearance = "none".into();
        e.acr = "otp".into();
        e.flow = "filing".into();
        e.kind = "pdf".into();
        e.size = Some(1234);
        e.labels = vec!["public".into(), "case".into()];
        e.approvals = vec![];
        e.submitter = "p-alice".into();
        e.transfer_id = "t-1".into();
        e.content_hash = "cd".repeat(32);
        e.attributes
            .insert("case".into(), "(2026)京01民初1号".into());
        e
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let e = full_event();
        let b = e.encode();
        assert_eq!(b.len(), e.encoded_len());
        assert_eq!(Event::decode(&b).unwrap(), e);
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(Event::decode(&longer), Err(EventError::Trailing(1)));
        for cut in 0..b.len() {
            assert!(Event::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut v2 = b.clone();
        v2[0] = 2;
        assert_eq!(Event::decode(&v2), Err(EventError::Version(2)));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        let min: Event = serde_json::from_str(r#"{"time":5,"action":"sign-in"}"#).unwrap();
        assert_eq!(min, Event::new(UnixTime::from_millis(5), "sign-in"));
        assert!(serde_json::from_str::<Event>(r#"{"time":5,"action":"x","bogus":1}"#).is_err());
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            any::<u64>(),
            ".{0,8}",
            ".{0,8}",
            proptest::collection::vec(".{0,4}", 0..3),
            proptest::option::of(any::<u64>()),
            proptest::collection::btree_map(".{0,4}", ".{0,4}", 0..3),
        )
            .prop_map(|(t, actor, action, roles, size, attributes)| {
                let mut e = Event::new(UnixTime::from_millis(t), action);
                e.actor = actor;
                e.roles = roles;
                e.size = size;
                e.attributes = attributes;
                e
            })
    }

    proptest! {
        #[test]
        fn decode_encode_is_identity(e in arb_event()) {
            let b = e.encode();
            prop_assert_eq!(Event::decode(&b).unwrap(), e.clone());
            prop_assert_eq!(Event::decode(&b).unwrap().encode(), b.clone());
            prop_assert_eq!(b.len(), e.encoded_len());
            prop_assert!(Event::validate(&b).is_ok());
        }
    }
}
