//! The sender's admission counters (feature `daemon`), in the spool's `sled` database: the
//! zone's transfer sequence (ids `<zone>:<sequence>`, from 1) and, per flow and submitter, the
//! count in the current `rate N per WINDOW` window ([`rate_admit`]'s arithmetic).
//!
//! Both change in one `sled` transaction, flushed before the sequence is returned: a transfer
//! admitted is counted against its submitter's rate in the same step, so a crash can neither
//! admit a transfer without counting it nor count it twice. A crash after admission and before
//! the transfer is spooled leaves a gap in the sequence (and the count taken), never a second
//! transfer under one id.

use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tianping_core::UnixTime;
use tianping_policies::Rate;

use crate::spool::be_u64;
use crate::{RateWindow, Spool, SpoolError, rate_admit};

/// Why a transfer was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The submitter is over the flow's rate; the next may go in this many seconds.
    #[error("over the flow's rate; the next may go in {0} s")]
    Rate(u64),
    /// The spool's state failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// The key of a submitter's counter on a flow.
fn rate_key(flow: &str, submitter: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(flow.len() + submitter.len() + 1);
    k.extend_from_slice(flow.as_bytes());
    k.push(0);
    k.extend_from_slice(submitter.as_bytes());
    k
}

const NEXT: &[u8] = b"sequence";

impl Spool {
    /// Admits one transfer of `submitter` (a subject id, or `machine:<node>`) on `flow` at
    /// `now`: counts it against `rate` (when the flow has one) and takes the zone's next
    /// sequence, both in one durable step; the sequence.
    pub fn admit(
        &self,
        flow: &str,
        submitter: &str,
        rate: Option<Rate>,
        now: UnixTime,
    ) -> Result<u64, AdmitError> {
        let (rates, seq) = (self.tree("rates")?, self.tree("sequence")?);
        let key = rate_key(flow, submitter);
        let done = (&rates, &seq).transaction(|(r, s)| {
            if let Some(rate) = rate {
                let was = r
                    .get(&key)?
                    .map(|v| RateWindow::from_bytes(&v))
                    .unwrap_or_default();
                let now_window =
                    rate_admit(rate, was, now).map_err(ConflictableTransactionError::Abort)?;
                r.insert(key.as_slice(), &now_window.to_bytes())?;
            }
            let next = s.get(NEXT)?.map_or(0, |v| be_u64(&v)).saturating_add(1);
            s.insert(NEXT, &next.to_be_bytes())?;
            Ok(next)
        });
        let sequence = match done {
            Ok(n) => n,
            Err(TransactionError::Abort(retry)) => return Err(AdmitError::Rate(retry)),
            Err(TransactionError::Storage(e)) => return Err(SpoolError::State(e).into()),
        };
        self.flush()?;
        Ok(sequence)
    }

    /// A submitter's count on a flow in the window it was last admitted in.
    pub fn rate_window(&self, flow: &str, submitter: &str) -> Result<RateWindow, SpoolError> {
        Ok(self
            .tree("rates")?
            .get(rate_key(flow, submitter))?
            .map(|v| RateWindow::from_bytes(&v))
            .unwrap_or_default())
    }

    /// The last sequence the zone admitted (0 before the first).
    pub fn last_sequence(&self) -> Result<u64, SpoolError> {
        Ok(self.tree("sequence")?.get(NEXT)?.map_or(0, |v| be_u64(&v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_persist_and_refuse_over_the_rate() {
        let tmp = tempfile::tempdir().unwrap();
        let rate = Some(Rate {
            count: 2,
            per_secs: 3600,
        });
        let t = UnixTime::from_secs(7200);
        {
            let spool = Spool::open(tmp.path()).unwrap();
            assert_eq!(spool.admit("f", "p-a", rate, t).unwrap(), 1);
            assert_eq!(spool.admit("f", "p-a", rate, t).unwrap(), 2);
            assert!(matches!(
                spool.admit("f", "p-a", rate, t),
                Err(AdmitError::Rate(3600))
            ));
            // another submitter, and a flow without a rate
            assert_eq!(spool.admit("f", "p-b", rate, t).unwrap(), 3);
            assert_eq!(spool.admit("g", "p-a", None, t).unwrap(), 4);
        }
        let spool = Spool::open(tmp.path()).unwrap();
        assert!(matches!(
            spool.admit("f", "p-a", rate, t),
            Err(AdmitError::Rate(_))
        ));
        assert_eq!(spool.last_sequence().unwrap(), 4);
        assert_eq!(spool.rate_window("f", "p-a").unwrap().count, 2);
        let later = UnixTime::from_secs(10_800);
        assert_eq!(spool.admit("f", "p-a", rate, later).unwrap(), 5);
    }
}
