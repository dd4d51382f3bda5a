//! The `jti`s of tokens already accepted, kept until they expire so none is accepted twice.

use std::collections::{BTreeSet, HashSet};

/// Why a `jti` was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayRefusal {
    /// It was seen before and has not expired.
    Replayed,
    /// The cache holds `capacity` live entries; refusing is safer than forgetting one.
    Full,
}

/// A bounded set of `jti`s, each held until its token's expiry, pruned in expiry order.
///
/// Bounded: at most [`ReplayCache::capacity`] live entries; when that many are live a new token
/// is refused rather than an old `jti` forgotten (which would let it be replayed). With tokens
/// living at most 60 s, a capacity of `n` serves `n / 65` tokens a second.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    capacity: usize,
    seen: HashSet<String>,
    /// (unix seconds after which the entry may go, jti)
    by_expiry: BTreeSet<(u64, String)>,
}

impl ReplayCache {
    /// The capacity a [`crate::TokenVerifier`] starts with: 200,000 live tokens (about 3,000 a
    /// second at the longest lifetime; some 30 MB at most).
    pub const DEFAULT_CAPACITY: usize = 200_000;

    /// An empty cache holding at most `capacity` live entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: HashSet::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// The most live entries it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The entries held now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Drops the entries whose `forget_after` is before `now_secs`.
    pub fn prune(&mut self, now_secs: u64) {
        while let Some(first) = self.by_expiry.first() {
            if first.0 >= now_secs {
                break;
            }
            if let Some((_, jti)) = self.by_expiry.pop_first() {
                self.seen.remove(&jti);
            }
        }
    }

    /// Records `jti` until `forget_after` (unix seconds), refusing one already held.
    pub(crate) fn record(
        &mut self,
        jti: &str,
        forget_after: u64,
        now_secs: u64,
    ) -> Result<(), ReplayRefusal> {
        self.prune(now_secs);
        if self.seen.contains(jti) {
            return Err(ReplayRefusal::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(ReplayRefusal::Full);
        }
        self.seen.insert(jti.to_owned());
        self.by_expiry.insert((forget_after, jti.to_owned()));
        Ok(())
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_until_expiry_and_stays_bounded() {
        let mut c = ReplayCache::new(2);
        c.record("a", 100, 10).unwrap();
        assert_eq!(c.record("a", 100, 50), Err(ReplayRefusal::Replayed));
        c.record("b", 120, 50).unwrap();
        assert_eq!(c.record("c", 130, 60), Err(ReplayRefusal::Full));
        assert_eq!(c.len(), 2);
        // After `a` expires it is pruned, making room; `b` is still held.
        c.record("c", 130, 101).unwrap();
        assert_eq!(c.record("b", 120, 101), Err(ReplayRefusal::Replayed));
        c.prune(200);
        assert!(c.is_empty());
    }
}
