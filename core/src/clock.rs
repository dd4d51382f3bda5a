//! Time, always taken from a [`Clock`] the component is given.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time as milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(u64);

impl UnixTime {
    /// The time `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// The time `s` seconds after the epoch.
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// This time as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// A [`SystemTime`] as a `UnixTime` (times before the epoch become the epoch).
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        Self(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// This time moved forward by `d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    pub fn saturating_since(self, earlier: UnixTime) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Where a component reads the time. Tests give a [`ManualClock`] and move it by hand.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// How far this process's [`SystemClock`] runs ahead of the operating system's clock, in
/// milliseconds (behind when negative). Zero, except in a demonstration fabric whose supervisor
/// was asked to show another time of day (`tianping up --demo --clock-offset`).
static SYSTEM_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

impl SystemClock {
    /// Makes every [`SystemClock`] of this process run `ms` milliseconds ahead of the
    /// operating system's clock (behind when negative). Set once, at start, before any
    /// component reads the time; only the binary does so, for a demonstration folder.
    pub fn set_offset_ms(ms: i64) {
        SYSTEM_OFFSET_MS.store(ms, Ordering::SeqCst);
    }

    /// The offset [`set_offset_ms`](Self::set_offset_ms) set (zero unless one was).
    pub fn offset_ms() -> i64 {
        SYSTEM_OFFSET_MS.load(Ordering::Relaxed)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        let os = UnixTime::from_system_time(SystemTime::now()).as_millis();
        let offset = SYSTEM_OFFSET_MS.load(Ordering::Relaxed);
        UnixTime::from_millis(os.saturating_add_signed(offset))
    }
}

/// A clock that only moves when told; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: UnixTime) -> Self {
        Self(Arc::new(AtomicU64::new(start.as_millis())))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `t` (which may be earlier, to test clocks that step back).
    pub fn set(&self, t: UnixTime) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_millis(self.0.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> UnixTime {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(UnixTime::from_secs(1_700_000_000));
        let shared = c.clone();
        assert_eq!(c.now(), shared.now());
        c.advance(Duration::from_secs(30));
        assert_eq!(shared.now().as_secs(), 1_700_000_030);
        c.set(UnixTime::from_secs(5));
        assert_eq!(shared.now(), UnixTime::from_millis(5000));
        assert_eq!(
            UnixTime::from_secs(10).saturating_since(UnixTime::from_secs(4)),
            Duration::from_secs(6)
        );
        assert_eq!(
            UnixTime::from_secs(1).saturating_since(UnixTime::from_secs(4)),
            Duration::ZERO
        );
    }

    #[test]
    fn system_clock_round_trips() {
        let now = SystemClock.now();
        assert_eq!(UnixTime::from_system_time(now.to_system_time()), now);
    }
}
