//! Per-subject rate limits for signed-in people, beside `net`'s per-address ones: one account
//! (or one stolen credential) cannot take the gateway from everyone else, whatever addresses
//! it comes from.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tianping_core::{SubjectId, UnixTime};

use crate::config::Limits;

/// The most subjects tracked at once; when full, buckets refilled to their burst (idle
/// subjects) are dropped first, and a new subject that still finds no room is refused.
pub const MAX_SUBJECTS: usize = 100_000;

/// Token buckets per subject: [`Limits::subject_rate`] per second, up to
/// [`Limits::subject_burst`].
#[derive(Debug)]
pub struct SubjectRates {
    rate: u64,
    burst: u64,
    // subject -> (tokens, last refill in unix seconds)
    buckets: Mutex<HashMap<SubjectId, (u64, u64)>>,
}

impl SubjectRates {
    /// Buckets with the limits' rate and burst.
    pub fn new(limits: &Limits) -> Self {
        Self {
            rate: u64::from(limits.subject_rate),
            burst: u64::from(limits.subject_burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `sub` may make one more request at `now` (and counts it if so).
    pub fn allow(&self, sub: &SubjectId, now: UnixTime) -> bool {
        let now = now.as_secs();
        let mut b = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let known = b.contains_key(sub);
        if !known && b.len() >= MAX_SUBJECTS {
            let (rate, burst) = (self.rate, self.burst);
            b.retain(|_, (tokens, at)| {
                tokens.saturating_add(now.saturating_sub(*at).saturating_mul(rate)) < burst
            });
            if b.len() >= MAX_SUBJECTS {
                return false;
            }
        }
        // a known subject is found by reference: its id is copied once, not on every request
        if !known {
            b.insert(sub.clone(), (self.burst, now));
        }
        let Some((tokens, at)) = b.get_mut(sub) else {
            return false;
        };
        let refill = now.saturating_sub(*at).saturating_mul(self.rate);
        *tokens = tokens.saturating_add(refill).min(self.burst);
        *at = (*at).max(now);
        if *tokens == 0 {
            return false;
        }
        *tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn a_subject_gets_its_burst_then_its_rate_and_others_are_untouched() -> R {
        let limits = Limits {
            subject_rate: 2,
            subject_burst: 5,
            ..Limits::default()
        };
        let r = SubjectRates::new(&limits);
        let a: SubjectId = "u-1001".parse()?;
        let b: SubjectId = "u-1002".parse()?;
        let t = UnixTime::from_secs(100);
        let allowed = (0..10).filter(|_| r.allow(&a, t)).count();
        assert_eq!(allowed, 5);
        assert!(r.allow(&b, t), "another subject has its own bucket");
        let t1 = UnixTime::from_secs(101);
        let allowed = (0..10).filter(|_| r.allow(&a, t1)).count();
        assert_eq!(allowed, 2);
        Ok(())
    }
}
