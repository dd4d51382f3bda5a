//! Pacing: a token bucket on a [`Clock`] that says when the next datagram may go.
//!
//! A one-way sender can never learn that the receiver fell behind, so it must not send faster
//! than the receiver absorbs, even for a moment: lidi without a rate limit loses whole blocks on
//! a busy receiver (`shared/reference/peers-measured.md`). The bucket holds at most `burst` bytes,
//! so after a quiet spell the sender goes no faster than `burst` above its rate.

use std::time::Duration;

use tianping_core::{Clock, UnixTime};

/// A token bucket filled at a fixed rate, read on a [`Clock`].
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Bytes per second.
    rate: u64,
    /// The most bytes the bucket holds, times 1000 (tokens are kept in byte-milliseconds, so
    /// whole milliseconds of the clock add whole tokens).
    cap: u128,
    tokens: u128,
    last: UnixTime,
}

impl Pacer {
    /// A pacer of `rate` bytes per second holding at most `burst` bytes, full at `now`.
    pub fn new(rate: u64, burst: u64, now: UnixTime) -> Self {
        let cap = u128::from(burst.max(1)) * 1000;
        Self {
            rate: rate.max(1),
            cap,
            tokens: cap,
            last: now,
        }
    }

    /// A pacer for a link of `mbps` megabits per second, with a burst of 2 ms of its rate (and
    /// at least 64 KiB, the most a millisecond clock would otherwise hold back).
    pub fn for_link(mbps: u32, now: UnixTime) -> Self {
        let rate = u64::from(mbps) * 125_000;
        Self::new(rate, (rate / 500).max(64 * 1024), now)
    }

    /// The rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    fn refill(&mut self, now: UnixTime) {
        let ms = now.saturating_since(self.last).as_millis();
        if ms > 0 {
            self.tokens = self
                .tokens
                .saturating_add(ms.saturating_mul(u128::from(self.rate)))
                .min(self.cap);
            self.last = now;
        } else if now < self.last {
            // A clock that stepped back: start counting from the new time.
            self.last = now;
        }
    }

    /// Takes `bytes` if they may go now; otherwise how long to wait before asking again.
    pub fn try_send(&mut self, clock: &dyn Clock, bytes: usize) -> Result<(), Duration> {
        let now = clock.now();
        self.refill(now);
        let need = (bytes as u128).saturating_mul(1000).min(self.cap);
        if self.tokens >= need {
            self.tokens -= need;
            return Ok(());
        }
        let ms = (need - self.tokens).div_ceil(u128::from(self.rate));
        Err(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tianping_core::ManualClock;

    #[test]
    fn the_rate_holds_over_time_with_a_manual_clock() {
        let clock = ManualClock::new(UnixTime::from_secs(1_000));
        // 1 MB/s, 10 KB burst: 1,000 bytes a millisecond.
        let mut p = Pacer::new(1_000_000, 10_000, clock.now());
        let mut sent = 0u64;
        for _ in 0..10 {
            p.try_send(&clock, 1_000).unwrap();
            sent += 1_000;
        }
        // the burst is spent; the next datagram waits a millisecond
        assert_eq!(p.try_send(&clock, 1_000), Err(Duration::from_millis(1)));
        assert_eq!(p.try_send(&clock, 2_500), Err(Duration::from_millis(3)));
        // one simulated second sends the rate and no more (beyond the burst already spent)
        for _ in 0..1_000 {
            clock.advance(Duration::from_millis(1));
            while p.try_send(&clock, 500).is_ok() {
                sent += 500;
            }
        }
        assert_eq!(sent, 10_000 + 1_000_000);
        // a long quiet spell fills the bucket only to its burst
        clock.advance(Duration::from_secs(60));
        let mut burst = 0;
        while p.try_send(&clock, 1_000).is_ok() {
            burst += 1_000;
        }
        assert_eq!(burst, 10_000);
    }

    #[test]
    fn a_clock_stepping_back_does_not_mint_tokens() {
        let clock = ManualClock::new(UnixTime::from_secs(1_000));
        let mut p = Pacer::new(1_000, 1_000, clock.now());
        p.try_send(&clock, 1_000).unwrap();
        clock.set(UnixTime::from_secs(10));
        assert!(p.try_send(&clock, 1).is_err());
        clock.advance(Duration::from_millis(1));
        p.try_send(&clock, 1).unwrap();
        assert!(Pacer::for_link(1_000, clock.now()).rate() == 125_000_000);
    }
}
