//! What the sender remembers of each transfer it spooled (feature `daemon`), so a transfer can
//! be looked up by its id (`<zone>:<sequence>`) after its bytes have gone: the flow, kind,
//! size, submitter, destination, time and where on its link it went.
//!
//! Each is a record in the spool's `transfers` tree (by sequence, JSON), written in the same
//! flush as the transfer's entry in the spool ([`Spool::commit_recorded`]), and an index
//! `by_link` (link ++ link id → sequence) that a resend moves to the new link id. Records are
//! kept [`KEEP_RECORDS`] after their transfer's time, then pruned with the retained files, once
//! the transfer is neither spooled nor retained.

use std::time::Duration;

use serde_json::{Value, json};
use tianping_core::{UnixTime, ZoneName};

use crate::spool::{be_u64, link_key};
use crate::{Held, Spool, SpoolError};

/// How long a transfer's record is kept after its time (30 days): long enough for a submitter
/// to look a transfer and its receipt up, bounded so the spool's state does not grow for ever.
pub const KEEP_RECORDS: Duration = Duration::from_secs(30 * 86_400);

/// A transfer the sender spooled, as it remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    /// The zone's sequence (its id is `<zone>:<sequence>`).
    pub sequence: u64,
    /// The flow.
    pub flow: String,
    /// The kind.
    pub kind: String,
    /// The payload's size in bytes.
    pub size: u64,
    /// The submitter's subject id.
    pub submitter: String,
    /// Whether the submitter is a machine.
    pub machine: bool,
    /// The receiving zone.
    pub destination: ZoneName,
    /// When it was bundled.
    pub time: UnixTime,
    /// The link it goes on.
    pub link: u32,
    /// Its id on the link (set by the spool when it is committed).
    pub link_transfer: u64,
}

impl TransferRecord {
    fn to_json(&self) -> Value {
        json!({
            "sequence": self.sequence,
            "flow": self.flow,
            "kind": self.kind,
            "size": self.size,
            "submitter": self.submitter,
            "machine": self.machine,
            "destination": self.destination.as_str(),
            "time_ms": self.time.as_millis(),
            "link": self.link,
            "link_transfer": self.link_transfer,
        })
    }

    fn from_json(v: &Value) -> Option<Self> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let num = |k: &str| v.get(k).and_then(Value::as_u64);
        Some(Self {
            sequence: num("sequence")?,
            flow: text("flow")?,
            kind: text("kind")?,
            size: num("size")?,
            submitter: text("submitter")?,
            machine: v.get("machine")?.as_bool()?,
            destination: text("destination")?.parse().ok()?,
            time: UnixTime::from_millis(num("time_ms")?),
            link: u32::try_from(num("link")?).ok()?,
            link_transfer: num("link_transfer")?,
        })
    }
}

/// Where a transfer is, as the sender knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    /// Waiting for approvals.
    Held(Held),
    /// Spooled, not yet sent in full.
    Spooled(TransferRecord),
    /// Sent in full, its bytes gone.
    Sent(TransferRecord),
    /// Sent in full, its bytes kept for a resend.
    Retained(TransferRecord),
}

impl TransferState {
    /// The state's name: `held`, `spooled`, `sent` or `retained`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Held(_) => "held",
            Self::Spooled(_) => "spooled",
            Self::Sent(_) => "sent",
            Self::Retained(_) => "retained",
        }
    }
}

fn seq_key(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

impl Spool {
    /// Enters `record` (its `link_transfer` set to `id`) in the same batch as a commit.
    pub(crate) fn enter_record(
        &self,
        record: &TransferRecord,
        link: u32,
        id: u64,
    ) -> Result<(), SpoolError> {
        let mut r = record.clone();
        r.link = link;
        r.link_transfer = id;
        self.tree("transfers")?
            .insert(seq_key(r.sequence), r.to_json().to_string().as_bytes())?;
        self.tree("by_link")?
            .insert(link_key(link, id), &seq_key(r.sequence))?;
        Ok(())
    }

    /// A resend spooled transfer `old` of `link` again as `new`: its record follows it.
    pub(crate) fn move_record(&self, link: u32, old: u64, new: u64) -> Result<(), SpoolError> {
        let by_link = self.tree("by_link")?;
        let Some(seq) = by_link.remove(link_key(link, old))? else {
            return Ok(());
        };
        let sequence = be_u64(&seq);
        if let Some(mut r) = self.record(sequence)? {
            r.link_transfer = new;
            self.enter_record(&r, link, new)?;
        }
        Ok(())
    }

    /// The record of transfer `sequence`, if the sender spooled it and still keeps it.
    pub fn record(&self, sequence: u64) -> Result<Option<TransferRecord>, SpoolError> {
        let Some(v) = self.tree("transfers")?.get(seq_key(sequence))? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<Value>(&v)
            .ok()
            .as_ref()
            .and_then(TransferRecord::from_json))
    }

    /// Where transfer `sequence` is: held, spooled, sent or retained; `None` if the sender
    /// knows no such transfer (never made, refused, or its record pruned).
    pub fn transfer_state(&self, sequence: u64) -> Result<Option<TransferState>, SpoolError> {
        if let Some(h) = self.held_one(sequence)? {
            return Ok(Some(TransferState::Held(h)));
        }
        let Some(r) = self.record(sequence)? else {
            return Ok(None);
        };
        let (link, id) = (r.link, r.link_transfer);
        Ok(Some(if self.is_pending(link, id)? {
            TransferState::Spooled(r)
        } else if self.is_retained(link, id)? {
            TransferState::Retained(r)
        } else {
            TransferState::Sent(r)
        }))
    }

    /// Prunes the records older than [`KEEP_RECORDS`] at `now` whose transfer is neither
    /// spooled nor retained; returns how many. Records are in sequence order, which is time
    /// order, so the scan stops at the first one still kept for its age.
    pub(crate) fn prune_records(&self, now: UnixTime) -> Result<usize, SpoolError> {
        let (transfers, by_link) = (self.tree("transfers")?, self.tree("by_link")?);
        let cutoff = now
            .as_millis()
            .saturating_sub(u64::try_from(KEEP_RECORDS.as_millis()).unwrap_or(u64::MAX));
        let mut pruned = 0;
        for item in transfers.iter() {
            let (key, v) = item?;
            let Some(r) = serde_json::from_slice::<Value>(&v)
                .ok()
                .as_ref()
                .and_then(TransferRecord::from_json)
            else {
                transfers.remove(&key)?;
                continue;
            };
            if r.time.as_millis() > cutoff {
                break;
            }
            if self.is_pending(r.link, r.link_transfer)?
                || self.is_retained(r.link, r.link_transfer)?
            {
                continue;
            }
            transfers.remove(&key)?;
            by_link.remove(link_key(r.link, r.link_transfer))?;
            pruned += 1;
        }
        if pruned > 0 {
            self.flush()?;
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: u64, time_ms: u64) -> TransferRecord {
        TransferRecord {
            sequence,
            flow: "online-filing".into(),
            kind: "text".into(),
            size: 5,
            submitter: "p-litigant-1".into(),
            machine: false,
            destination: "private".parse().unwrap(),
            time: UnixTime::from_millis(time_ms),
            link: 0,
            link_transfer: 0,
        }
    }

    fn commit(spool: &Spool, link: u32, r: &TransferRecord) -> u64 {
        let staging = spool.staging().unwrap();
        std::fs::write(&staging, b"bytes").unwrap();
        spool.commit_recorded(link, &staging, 5, Some(r)).unwrap()
    }

    #[test]
    fn a_transfer_is_found_by_its_sequence_through_spooled_retained_and_sent() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap();
        assert_eq!(spool.transfer_state(4).unwrap(), None);
        let id = commit(&spool, 2, &record(4, 1000));
        let state = spool.transfer_state(4).unwrap().unwrap();
        assert_eq!(state.name(), "spooled");
        let TransferState::Spooled(r) = state else {
            unreachable!()
        };
        assert_eq!(
            (r.link, r.link_transfer, r.flow.as_str()),
            (2, id, "online-filing")
        );
        let now = UnixTime::from_millis(2000);
        spool
            .sent_retained(2, id, now, now.saturating_add(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(spool.transfer_state(4).unwrap().unwrap().name(), "retained");
        // a resend moves it to its new link id, spooled again
        let pairs = spool.resend(2, id).unwrap();
        let new = pairs.first().map(|p| p.1).unwrap();
        let TransferState::Spooled(r) = spool.transfer_state(4).unwrap().unwrap() else {
            unreachable!("spooled again")
        };
        assert_eq!(r.link_transfer, new);
        spool.sent(2, new).unwrap();
        assert_eq!(spool.transfer_state(4).unwrap().unwrap().name(), "sent");
        drop(spool);
        let spool = Spool::open(tmp.path()).unwrap();
        assert_eq!(spool.transfer_state(4).unwrap().unwrap().name(), "sent");
    }

    #[test]
    fn old_records_of_transfers_gone_are_pruned_and_others_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap();
        let old = commit(&spool, 1, &record(1, 1000));
        spool.sent(1, old).unwrap();
        // old, but still spooled: kept
        commit(&spool, 1, &record(2, 2000));
        let keep = u64::try_from(KEEP_RECORDS.as_millis()).unwrap();
        let young = commit(&spool, 1, &record(3, 5000 + keep));
        spool.sent(1, young).unwrap();
        let now = UnixTime::from_millis(3000 + keep);
        assert_eq!(spool.prune(now).unwrap(), 0, "no retained file expired");
        assert_eq!(spool.transfer_state(1).unwrap(), None);
        assert_eq!(spool.transfer_state(2).unwrap().unwrap().name(), "spooled");
        assert_eq!(spool.transfer_state(3).unwrap().unwrap().name(), "sent");
    }
}
