//! Token-bucket rate limits per key (address, identity), I/O-free: the caller passes the time.
//!
//! Why: one address or one credential must not be able to take the whole listener (credential
//! stuffing at the IdP, scraping through the gateway). Buckets refill continuously; a refused request
//! is answered 429 with `Retry-After` saying when one token will be back.
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tianping_core::UnixTime;

/// A rate: `per_second` tokens a second, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once after an idle period.
    pub burst: u32,
}

/// One token bucket; counts in thousandths of a token so refill is exact in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate: Rate,
    milli_tokens: u64,
    last: UnixTime,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn new(rate: Rate, now: UnixTime) -> Self {
        Self {
            rate,
            milli_tokens: u64::from(rate.burst) * 1000,
            last: now,
        }
    }

    fn refill(&mut self, now: UnixTime) {
        let ms = now.saturating_since(self.last).as_millis();
        let add = u64::try_from(ms)
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(self.rate.per_second));
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(add)
            .min(u64::from(self.rate.burst) * 1000);
        if now > self.last {
            self.last = now;
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: UnixTime) -> Result<(), Duration> {
        self.refill(now);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            return Ok(());
        }
        if self.rate.per_second == 0 {
            return Err(Duration::from_secs(3600));
        }
        let missing = 1000 - self.milli_tokens;
        Err(Duration::from_millis(
            missing.div_ceil(u64::from(self.rate.per_second)),
        ))
    }

    /// `true` when the bucket is full at `now` (an idle key that can be forgotten).
    pub fn is_full(&mut self, now: UnixTime) -> bool {
        self.refill(now);
        self.milli_tokens >= u64::from(self.rate.burst) * 1000
    }
}

/// Buckets per key, with a bound on how many keys are remembered.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter giving each key `rate`, remembering at most `max_keys` keys.
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `key` at `now`; `Err(retry_after)` when the key is over its rate.
    pub fn check(&mut self, key: &K, now: UnixTime) -> Result<(), Duration> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            // Forget idle keys first; if none is idle the table is full of active keys, and a new
            // key is refused rather than letting an attacker evict the buckets of active ones.
            self.buckets.retain(|_, b| !b.is_full(now));
            if self.buckets.len() >= self.max_keys {
                return Err(Duration::from_secs(1));
            }
        }
        let rate = self.rate;
        self.buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(rate, now))
            .try_take(now)
    }
}

/// `Retry-After` seconds for a wait (rounded up, at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis()
        .div_ceil(1000)
        .max(1)
        .try_into()
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_by_the_clock() {
        let t0 = UnixTime::from_secs(1000);
        let mut l = RateLimiter::new(
            Rate {
                per_second: 2,
                burst: 3,
            },
            10,
        );
        for _ in 0..3 {
            l.check(&"a", t0).unwrap();
        }
        let wait = l.check(&"a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        l.check(&"b", t0).unwrap();
        l.check(&"a", t0.saturating_add(Duration::from_millis(500)))
            .unwrap();
        assert!(
            l.check(&"a", t0.saturating_add(Duration::from_millis(600)))
                .is_err()
        );
    }

    #[test]
    fn key_table_is_bounded() {
        let t0 = UnixTime::from_secs(0);
        let mut l = RateLimiter::new(
            Rate {
                per_second: 1,
                burst: 1,
            },
            2,
        );
        l.check(&1, t0).unwrap();
        l.check(&2, t0).unwrap();
        assert!(l.check(&3, t0).is_err());
        // Once key 1 and 2 are idle again they are forgotten.
        l.check(&3, t0.saturating_add(Duration::from_secs(2)))
            .unwrap();
    }
}
