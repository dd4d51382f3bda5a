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
use tianping_core::{PolicyHash, UnixTime, Verdict, WireError, WireReader, WireWriter};

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

impl From<WireError> for EventError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated(f) | WireError::TooLong { field: f, .. } => Self::Truncated(f),
            WireError::Utf8(f) => Self::Utf8(f),
            WireError::Trailing(n) => Self::Trailing(n),
        }
    }
}

/// Every field after the time, in encoding order, with its kind: the one list that
/// [`Event::encode_into`], [`Event::encoded_len`], [`Event::decode`] and [`Event::validate`]
/// are generated from (`$m!` is called with it).
macro_rules! event_fields {
    ($m:ident, $($args:tt)*) => {
        $m!($($args)*;
            node: text, zone: text, component: text, actor: text, source: text, action: text,
            object: text, outcome: text, reason: text, request_id: text, policy_hash: hash,
            method: text, path: text, roles: list, court: text, clearance: text, acr: text,
            flow: text, kind: text, size: size, labels: list, approvals: list, submitter: text,
            transfer_id: text, content_hash: text, attributes: map)
    };
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

mod unique_names {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{Error as _, MapAccess, Visitor};

    /// A map of strings whose every name is given once.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        struct Unique;
        impl<'de> Visitor<'de> for Unique {
            type Value = BTreeMap<String, String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of names to strings, each name once")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    if out.contains_key(&k) {
                        return Err(A::Error::custom(format_args!(
                            "attribute `{k}` is given twice"
                        )));
                    }
                    out.insert(k, v);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Unique)
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
    /// The hash of the policy that decided (encoded as its 64 hex digits, or empty for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<PolicyHash>,
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
    /// Anything else, by name (a name given twice in JSON is refused, not the last one kept).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_names::deserialize"
    )]
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
            policy_hash: None,
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
    ///
    /// A field of 4 GiB or more cannot be said by its length: its length is written as
    /// `u32::MAX`, so the bytes are no event `decode` accepts (and `append` refuses them, as
    /// every event over [`MAX_EVENT_BYTES`]).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        macro_rules! put {
            ($w:ident; $($name:ident: $kind:ident),*) => { $( put::$kind(&mut $w, &self.$name); )* };
        }
        let mut w = WireWriter::from_vec(std::mem::take(out));
        w.u8(EVENT_VERSION);
        w.u64(self.time.as_millis());
        event_fields!(put, w);
        *out = w.into_bytes();
    }

    /// The length of [`encode`](Self::encode)'s output.
    pub fn encoded_len(&self) -> usize {
        macro_rules! len {
            ($n:ident; $($name:ident: $kind:ident),*) => { $( $n += len::$kind(&self.$name); )* };
        }
        let mut n = 1 + 8;
        event_fields!(len, n);
        n
    }

    /// Checks that `bytes` are a canonical event without building it (what `decode` accepts).
    pub fn validate(bytes: &[u8]) -> Result<(), EventError> {
        macro_rules! check {
            ($r:ident; $($name:ident: $kind:ident),*) => { $( check::$kind(&mut $r, stringify!($name))?; )* };
        }
        let mut r = Self::start(bytes)?;
        r.u64("time")?;
        event_fields!(check, r);
        Ok(r.finish()?)
    }

    /// Reads canonical bytes; refuses anything [`encode`](Self::encode) would not write.
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        macro_rules! get {
            ($r:ident, $e:ident; $($name:ident: $kind:ident),*) => { $( $e.$name = get::$kind(&mut $r, stringify!($name))?; )* };
        }
        let mut r = Self::start(bytes)?;
        let mut e = Event::new(UnixTime::from_millis(r.u64("time")?), String::new());
        event_fields!(get, r, e);
        r.finish()?;
        Ok(e)
    }

    /// The reader after the version byte, which it checks (and the size limit).
    fn start(bytes: &[u8]) -> Result<WireReader<'_>, EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge(bytes.len()));
        }
        let mut r = WireReader::new(bytes);
        let version = r.u8("version").map_err(|_| EventError::Empty)?;
        if version != EVENT_VERSION {
            return Err(EventError::Version(version));
        }
        Ok(r)
    }

    /// The verdict of a decision event (`request` or `transfer`, whose `outcome` is `allow`
    /// or `deny`); `None` for other events and for an outcome that is no verdict.
    pub fn verdict(&self) -> Option<Verdict> {
        match self.action.as_str() {
            "request" | "transfer" => self.outcome.parse().ok(),
            _ => None,
        }
    }
}

/// Writing each kind of field.
mod put {
    use std::collections::BTreeMap;

    use tianping_core::{PolicyHash, WireWriter};

    fn len(w: &mut WireWriter, n: usize) {
        if w.len32(n, "field").is_err() {
            w.u32(u32::MAX);
        }
    }

    pub(super) fn text(w: &mut WireWriter, s: &str) {
        len(w, s.len());
        w.raw(s.as_bytes());
    }

    /// Its 64 hex digits (written on the stack: every request's event has one), or empty.
    pub(super) fn hash(w: &mut WireWriter, h: &Option<PolicyHash>) {
        let mut hex = [0u8; 64];
        match h {
            Some(h) if hex::encode_to_slice(h.as_bytes(), &mut hex).is_ok() => {
                len(w, hex.len());
                w.raw(&hex);
            }
            _ => text(w, ""),
        }
    }

    pub(super) fn list(w: &mut WireWriter, l: &[String]) {
        len(w, l.len());
        for s in l {
            text(w, s);
        }
    }

    pub(super) fn size(w: &mut WireWriter, n: &Option<u64>) {
        match n {
            None => w.u8(0),
            Some(n) => {
                w.u8(1);
                w.u64(*n);
            }
        }
    }

    pub(super) fn map(w: &mut WireWriter, m: &BTreeMap<String, String>) {
        len(w, m.len());
        for (k, v) in m {
            text(w, k);
            text(w, v);
        }
    }
}

/// The encoded length of each kind of field.
mod len {
    use std::collections::BTreeMap;

    use tianping_core::{PolicyHash, len32_size};

    pub(super) fn text(s: &str) -> usize {
        len32_size(s.len())
    }

    pub(super) fn hash(h: &Option<PolicyHash>) -> usize {
        len32_size(if h.is_some() { 64 } else { 0 })
    }

    pub(super) fn list(l: &[String]) -> usize {
        4 + l.iter().map(|s| text(s)).sum::<usize>()
    }

    pub(super) fn size(n: &Option<u64>) -> usize {
        if n.is_some() { 9 } else { 1 }
    }

    pub(super) fn map(m: &BTreeMap<String, String>) -> usize {
        4 + m.iter().map(|(k, v)| text(k) + text(v)).sum::<usize>()
    }
}

/// Checking each kind of field without building it.
mod check {
    use tianping_core::{PolicyHash, WireReader};

    use super::EventError;

    /// A string field's bytes, checked to be UTF-8 (ASCII, the common case, checked fastest).
    pub(super) fn text<'a>(
        r: &mut WireReader<'a>,
        f: &'static str,
    ) -> Result<&'a [u8], EventError> {
        let b = r.bytes32(f)?;
        if b.is_ascii() || std::str::from_utf8(b).is_ok() {
            Ok(b)
        } else {
            Err(EventError::Utf8(f))
        }
    }

    pub(super) fn hash(r: &mut WireReader<'_>, f: &'static str) -> Result<(), EventError> {
        let b = text(r, f)?;
        if !b.is_empty() {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<PolicyHash>().ok())
                .ok_or(EventError::NotCanonical(f))?;
        }
        Ok(())
    }

    pub(super) fn list(r: &mut WireReader<'_>, f: &'static str) -> Result<(), EventError> {
        for _ in 0..r.count32(f, 4)? {
            text(r, f)?;
        }
        Ok(())
    }

    pub(super) fn size(r: &mut WireReader<'_>, f: &'static str) -> Result<(), EventError> {
        match r.u8(f)? {
            0 => Ok(()),
            1 => Ok(r.u64(f).map(|_| ())?),
            _ => Err(EventError::NotCanonical(f)),
        }
    }

    /// Key/value pairs in strictly ascending key order (byte order of UTF-8 is the order of
    /// `String`s, so keys compare as bytes).
    pub(super) fn map(r: &mut WireReader<'_>, f: &'static str) -> Result<(), EventError> {
        let mut last: Option<&[u8]> = None;
        for _ in 0..r.count32(f, 8)? {
            let k = text(r, f)?;
            text(r, f)?;
            if last.is_some_and(|l| l >= k) {
                return Err(EventError::NotCanonical(f));
            }
            last = Some(k);
        }
        Ok(())
    }
}

/// Reading each kind of field.
mod get {
    use std::collections::BTreeMap;

    use tianping_core::{PolicyHash, WireReader};

    use super::EventError;

    pub(super) fn text(r: &mut WireReader<'_>, f: &'static str) -> Result<String, EventError> {
        Ok(r.str32(f)?.to_owned())
    }

    pub(super) fn hash(
        r: &mut WireReader<'_>,
        f: &'static str,
    ) -> Result<Option<PolicyHash>, EventError> {
        match r.str32(f)? {
            "" => Ok(None),
            s => s.parse().map(Some).map_err(|_| EventError::NotCanonical(f)),
        }
    }

    pub(super) fn list(r: &mut WireReader<'_>, f: &'static str) -> Result<Vec<String>, EventError> {
        let n = r.count32(f, 4)?;
        (0..n).map(|_| text(r, f)).collect()
    }

    pub(super) fn size(r: &mut WireReader<'_>, f: &'static str) -> Result<Option<u64>, EventError> {
        match r.u8(f)? {
            0 => Ok(None),
            1 => Ok(Some(r.u64(f)?)),
            _ => Err(EventError::NotCanonical(f)),
        }
    }

    pub(super) fn map(
        r: &mut WireReader<'_>,
        f: &'static str,
    ) -> Result<BTreeMap<String, String>, EventError> {
        let mut m = BTreeMap::new();
        let mut last: Option<String> = None;
        for _ in 0..r.count32(f, 8)? {
            let k = text(r, f)?;
            let v = text(r, f)?;
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(EventError::NotCanonical(f));
            }
            m.insert(k.clone(), v);
            last = Some(k);
        }
        Ok(m)
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
        e.policy_hash = Some("ab".repeat(32).parse().unwrap());
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
        // a name given twice is refused, as a field given twice is: no value is dropped
        let twice =
            r#"{"time":1,"action":"a","attributes":{"approver":"alice","approver":"mallory"}}"#;
        let err = serde_json::from_str::<Event>(twice).unwrap_err();
        assert!(
            err.to_string()
                .contains("attribute `approver` is given twice"),
            "{err}"
        );
        let once: Event =
            serde_json::from_str(r#"{"time":1,"action":"a","attributes":{"a":"1","b":"2"}}"#)
                .unwrap();
        assert_eq!(once.attributes.len(), 2);
    }

    #[test]
    fn the_policy_hash_is_typed_and_the_verdict_read_from_decisions() {
        let mut e = full_event();
        assert_eq!(e.verdict(), Some(Verdict::Allow), "a transfer decision");
        e.action = "request".into();
        e.outcome = "deny".into();
        assert_eq!(e.verdict(), Some(Verdict::Deny));
        e.outcome = "success".into();
        assert_eq!(e.verdict(), None);
        e.action = "sign-in".into();
        assert_eq!(e.verdict(), None);
        // Stored as 64 hex digits, as before; anything else there is refused.
        let b = e.encode();
        let hex = "ab".repeat(32);
        let at = b.windows(64).position(|w| w == hex.as_bytes()).unwrap();
        let mut bad = b.clone();
        bad[at] = b'A';
        assert_eq!(
            Event::decode(&bad),
            Err(EventError::NotCanonical("policy_hash"))
        );
        assert_eq!(
            Event::validate(&bad),
            Err(EventError::NotCanonical("policy_hash"))
        );
        e.policy_hash = None;
        assert_eq!(Event::decode(&e.encode()).unwrap().policy_hash, None);
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
