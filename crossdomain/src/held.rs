//! Transfers held for approval (feature `daemon`): a release whose policy names approvers waits
//! here, admitted (its sequence and rate taken) and filtered, until the approvals are met.
//!
//! Each is a record in the spool's `held` tree (by sequence, JSON) and its rebuilt payload in
//! `held/<sequence>` beside the spool's payloads, written and fsynced before the record; both
//! survive a restart of the sender. Approvals are kept as the encoded statements the bundle
//! will carry.

use std::fs;
use std::io::Write as _;
use std::path::PathBuf;

use serde_json::{Value, json};
use tianping_core::{Role, UnixTime, ZoneName};

use crate::spool::{io_at, sync_dir};
use crate::{Outgoing, Spool, SpoolError, Submitter};

/// A transfer waiting for approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The transfer's sequence (its id is `<zone>:<sequence>`).
    pub sequence: u64,
    /// What was submitted (its `size` the rebuilt payload's).
    pub outgoing: Outgoing,
    /// The destination zone.
    pub destination: ZoneName,
    /// The payload's media type.
    pub content_type: String,
    /// The content hash approvers approve (the chunk table's hash).
    pub chunks_hash: [u8; 32],
    /// When it was submitted.
    pub time: UnixTime,
    /// The encoded approval statements so far.
    pub approvals: Vec<Vec<u8>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Held {
    fn to_json(&self) -> Value {
        let o = &self.outgoing;
        json!({
            "sequence": self.sequence,
            "flow": o.flow,
            "kind": o.kind,
            "schema": o.schema,
            "size": o.size,
            "subject": o.submitter.subject.as_str(),
            "roles": o.submitter.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "machine": o.submitter.machine,
            "labels": o.labels,
            "redacted": o.redacted,
            "correlation": o.correlation,
            "destination": self.destination.as_str(),
            "content_type": self.content_type,
            "chunks_hash": hex(&self.chunks_hash),
            "time_ms": self.time.as_millis(),
            "approvals": self.approvals.iter().map(|a| hex(a)).collect::<Vec<_>>(),
        })
    }

    fn from_json(v: &Value) -> Option<Self> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let texts = |k: &str| -> Option<Vec<String>> {
            v.get(k)?
                .as_array()?
                .iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect()
        };
        let roles = texts("roles")?
            .iter()
            .map(|r| r.parse::<Role>().ok())
            .collect::<Option<Vec<_>>>()?;
        let hash = unhex(&text("chunks_hash")?)?;
        Some(Self {
            sequence: v.get("sequence")?.as_u64()?,
            outgoing: Outgoing {
                flow: text("flow")?,
                kind: text("kind")?,
                schema: text("schema"),
                size: v.get("size")?.as_u64()?,
                submitter: Submitter {
                    subject: text("subject")?.parse().ok()?,
                    roles,
                    machine: v.get("machine")?.as_bool()?,
                },
                labels: texts("labels")?,
                redacted: v.get("redacted")?.as_bool()?,
                correlation: text("correlation"),
            },
            destination: text("destination")?.parse().ok()?,
            content_type: text("content_type")?,
            chunks_hash: hash.try_into().ok()?,
            time: UnixTime::from_millis(v.get("time_ms")?.as_u64()?),
            approvals: texts("approvals")?
                .iter()
                .map(|a| unhex(a))
                .collect::<Option<Vec<_>>>()?,
        })
    }
}

impl Spool {
    /// Where a held transfer's rebuilt payload is kept.
    pub fn held_payload(&self, sequence: u64) -> PathBuf {
        self.dir().join("held").join(sequence.to_string())
    }

    /// Holds a transfer: its payload written and fsynced, then its record, flushed.
    pub fn hold(&self, held: &Held, payload: &[u8]) -> Result<(), SpoolError> {
        let dir = self.dir().join("held");
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let path = self.held_payload(held.sequence);
        let mut f = fs::File::create(&path).map_err(io_at(&path))?;
        f.write_all(payload).map_err(io_at(&path))?;
        f.sync_all().map_err(io_at(&path))?;
        sync_dir(&dir)?;
        self.update_held(held)
    }

    /// Writes a held transfer's record again (its approvals grew).
    pub fn update_held(&self, held: &Held) -> Result<(), SpoolError> {
        self.tree("held")?.insert(
            held.sequence.to_be_bytes(),
            held.to_json().to_string().as_bytes(),
        )?;
        self.flush()
    }

    /// The held transfer `sequence`, if it is held.
    pub fn held_one(&self, sequence: u64) -> Result<Option<Held>, SpoolError> {
        let Some(v) = self.tree("held")?.get(sequence.to_be_bytes())? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<Value>(&v)
            .ok()
            .as_ref()
            .and_then(Held::from_json))
    }

    /// Every held transfer, by sequence.
    pub fn held(&self) -> Result<Vec<Held>, SpoolError> {
        let mut out = Vec::new();
        for item in self.tree("held")?.iter() {
            let (_, v) = item?;
            if let Some(h) = serde_json::from_slice::<Value>(&v)
                .ok()
                .as_ref()
                .and_then(Held::from_json)
            {
                out.push(h);
            }
        }
        Ok(out)
    }

    /// A held transfer was spooled: its record and payload go.
    pub fn unhold(&self, sequence: u64) -> Result<(), SpoolError> {
        self.tree("held")?.remove(sequence.to_be_bytes())?;
        self.flush()?;
        let path = self.held_payload(sequence);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_at(&path)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_transfers_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let held = Held {
            sequence: 7,
            outgoing: Outgoing {
                flow: "service-of-documents".into(),
                kind: "pdf".into(),
                schema: None,
                size: 3,
                submitter: Submitter {
                    subject: "p-clerk-1".parse().unwrap(),
                    roles: vec![Role::Clerk],
                    machine: false,
                },
                labels: vec!["(2026)京01民初1号".into()],
                redacted: false,
                correlation: Some("internet:3".into()),
            },
            destination: "internet".parse().unwrap(),
            content_type: "application/pdf".into(),
            chunks_hash: [3; 32],
            time: UnixTime::from_millis(5),
            approvals: vec![vec![1, 2, 255]],
        };
        {
            let spool = Spool::open(tmp.path()).unwrap();
            spool.hold(&held, b"abc").unwrap();
        }
        let spool = Spool::open(tmp.path()).unwrap();
        assert_eq!(spool.held().unwrap(), vec![held.clone()]);
        assert_eq!(spool.held_one(7).unwrap(), Some(held));
        assert_eq!(fs::read(spool.held_payload(7)).unwrap(), b"abc");
        spool.unhold(7).unwrap();
        assert!(spool.held().unwrap().is_empty());
        assert!(!spool.held_payload(7).exists());
    }
}
