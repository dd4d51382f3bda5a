//! Retention: the retention period and the `audit-archive` file that whole archived segments
//! of a log go to. Free of I/O.
//!
//! Binary layout of an archive, version 1 (big-endian integers):
//!
//! ```text
//! "TPAUDITA" 0x01
//! u64 cutoff (ms since the epoch: every archived entry is older)
//! u16 count, count × 32-byte roots of the perfect subtrees of the entries before the first
//!     archived one (largest first; none when the archive starts at entry 0)
//! u32 len, an `audit-batch` (see [`AuditBatch`]) of the archived entries, whose checkpoint
//!     covers exactly them and whose proof is the consistency proof from the first archived
//!     index to the checkpoint's size
//! ```
//!
//! The subtree roots let the archive verify on its own: they and the entries hash to the
//! signed checkpoint's root, so the file proves which entries, at which indices, were archived.

use std::time::Duration;

use tianping_core::{PublicKey, UnixTime, WireReader, WireWriter};

use crate::batch::{AuditBatch, BatchError};
use crate::checkpoint::SignedCheckpoint;
use crate::merkle::{Frontier, Hash};

const MAGIC: &[u8; 8] = b"TPAUDITA";
const VERSION: u8 = 1;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The shortest retention allowed without [`danger::short_retention`]: six months
/// (Cybersecurity Law art. 21).
pub const MIN_RETENTION_DAYS: u64 = 180;

/// How long entries stay in the live log before whole segments of them may be archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    days: u64,
}

/// Why a retention setting or an archive was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// Shorter than the legal minimum.
    #[error("a retention of `{0}` days is shorter than the minimum of {MIN_RETENTION_DAYS} days")]
    TooShort(u64),
    /// The cutoff would archive entries still inside the retention period.
    #[error("cutoff `{cutoff}` is newer than now minus the retention (`{limit}`)")]
    CutoffTooNew {
        /// The cutoff asked for (ms since the epoch).
        cutoff: u64,
        /// The newest cutoff allowed (ms since the epoch).
        limit: u64,
    },
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            days: MIN_RETENTION_DAYS,
        }
    }
}

impl Retention {
    /// A retention of `days` days; refuses fewer than [`MIN_RETENTION_DAYS`].
    pub fn days(days: u64) -> Result<Self, RetentionError> {
        if days < MIN_RETENTION_DAYS {
            return Err(RetentionError::TooShort(days));
        }
        Ok(Self { days })
    }

    /// The retention in days.
    pub fn in_days(&self) -> u64 {
        self.days
    }

    /// The newest cutoff allowed at `now`: `now` minus the retention.
    pub fn cutoff(&self, now: UnixTime) -> UnixTime {
        UnixTime::from_millis(
            now.as_millis()
                .saturating_sub(self.days.saturating_mul(DAY_MS)),
        )
    }

    /// Checks that `cutoff` is not newer than [`cutoff`](Self::cutoff) at `now`.
    pub fn check(&self, cutoff: UnixTime, now: UnixTime) -> Result<(), RetentionError> {
        let limit = self.cutoff(now);
        if cutoff > limit {
            return Err(RetentionError::CutoffTooNew {
                cutoff: cutoff.as_millis(),
                limit: limit.as_millis(),
            });
        }
        Ok(())
    }

    /// The retention as a duration.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.days.saturating_mul(DAY_MS))
    }
}

/// Settings that weaken the log's legal guarantees. Only for tests and for deployments whose
/// law allows it; every use should be justified where it is made.
pub mod danger {
    use super::Retention;

    /// A retention of `days` days with no minimum (0 archives everything older than now).
    pub fn short_retention(days: u64) -> Retention {
        Retention { days }
    }
}

/// A decoded `audit-archive` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// Every archived entry is older than this.
    pub cutoff: UnixTime,
    /// The roots of the perfect subtrees of the entries before `batch.old_size`.
    pub prefix: Vec<Hash>,
    /// The archived entries with the checkpoint that covers exactly them.
    pub batch: AuditBatch,
}

/// What [`Archive::check`] proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedArchive {
    /// The index of the first archived entry.
    pub from: u64,
    /// The index after the last archived entry (the checkpoint's size).
    pub to: u64,
    /// The signed checkpoint of size `to`.
    pub checkpoint: SignedCheckpoint,
    /// The leaf hashes of the archived entries, recomputed from their bytes.
    pub leaves: Vec<Hash>,
}

impl Archive {
    /// The file's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, BatchError> {
        let batch = self.batch.encode()?;
        let mut w = WireWriter::with_capacity(batch.len() + 64 + 32 * self.prefix.len());
        w.raw(MAGIC);
        w.u8(VERSION);
        w.u64(self.cutoff.as_millis());
        w.len16(self.prefix.len(), "prefix subtrees")?;
        for h in &self.prefix {
            w.raw(h);
        }
        w.bytes32(&batch, "batch")?;
        Ok(w.into_bytes())
    }

    /// Reads an archive's structure (and its batch's, see [`AuditBatch::decode`]); signatures
    /// and hashes are checked by [`check`](Self::check).
    pub fn decode(bytes: &[u8]) -> Result<Self, BatchError> {
        use BatchError::Malformed;
        let mut r = WireReader::new(bytes);
        if r.take(8, "magic")? != MAGIC {
            return Err(Malformed("not an audit archive"));
        }
        if r.u8("version")? != VERSION {
            return Err(Malformed("unknown archive version"));
        }
        let cutoff = UnixTime::from_millis(r.u64("cutoff")?);
        let n = r.count16("prefix subtrees", 32)?;
        if n > 64 {
            return Err(Malformed("too many prefix subtrees"));
        }
        let prefix = (0..n)
            .map(|_| r.array::<32>("prefix subtree"))
            .collect::<Result<Vec<Hash>, _>>()?;
        let len = r.len32("batch", usize::MAX)?;
        if len != r.remaining() {
            return Err(Malformed("archive length does not match its batch"));
        }
        let batch = AuditBatch::decode(r.rest())?;
        Ok(Self {
            cutoff,
            prefix,
            batch,
        })
    }

    /// Checks the archive on its own: its checkpoint is signed by `key` (for `origin` when
    /// given), the prefix subtrees and the entries hash to the checkpoint's root, the
    /// consistency proof holds, there is at least one entry and every entry is older than
    /// the cutoff.
    pub fn check(
        &self,
        origin: Option<&str>,
        key: &PublicKey,
    ) -> Result<CheckedArchive, BatchError> {
        let from = self.batch.old_size;
        let prefix = Frontier::from_subtrees(from, &self.prefix).ok_or(BatchError::Malformed(
            "prefix subtrees do not fit the first archived index",
        ))?;
        if self.batch.entries.is_empty() {
            return Err(BatchError::Malformed("an archive holds at least one entry"));
        }
        let (checkpoint, leaves) = self.batch.check(&prefix, origin, key)?;
        for (i, e) in self.batch.entries.iter().enumerate() {
            let event = crate::event::Event::decode(e).map_err(|source| BatchError::Entry {
                index: from + i as u64,
                source,
            })?;
            if event.time >= self.cutoff {
                return Err(BatchError::Malformed(
                    "an entry is not older than the cutoff",
                ));
            }
        }
        Ok(CheckedArchive {
            from,
            to: checkpoint.checkpoint().size,
            checkpoint,
            leaves,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_below_the_minimum_is_refused_unless_dangerous() {
        assert_eq!(Retention::days(179), Err(RetentionError::TooShort(179)));
        assert_eq!(Retention::default().in_days(), 180);
        let r = Retention::days(200).unwrap();
        let now = UnixTime::from_millis(300 * DAY_MS);
        assert_eq!(r.cutoff(now), UnixTime::from_millis(100 * DAY_MS));
        assert!(r.check(UnixTime::from_millis(100 * DAY_MS), now).is_ok());
        assert!(
            r.check(UnixTime::from_millis(100 * DAY_MS + 1), now)
                .is_err()
        );
        assert_eq!(danger::short_retention(1).in_days(), 1);
    }
}
