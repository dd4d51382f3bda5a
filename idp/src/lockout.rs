//! Lockout: after 5 failures within 15 minutes an account is locked, for longer each time it is
//! locked again, until a sign-in succeeds. Password and TOTP failures count alike. The lock is a
//! "not before" time on the [`Clock`](tianping_core::Clock), kept in a [`LockoutState`] the store
//! persists; nothing waits.
//!
//! The glue keeps a state for every account name typed at the form, known or not, so that a
//! lock never tells whether an account exists.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tianping_core::{UnixTime, WireError, WireReader, WireWriter};

use crate::IdpError;

/// When accounts lock and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutPolicy {
    /// Failures that lock the account.
    pub max_failures: u32,
    /// The window the failures are counted over.
    pub window: Duration,
    /// How long the first lock lasts; each further lock before a success doubles it.
    pub lock_for: Duration,
    /// The longest lock.
    pub max_lock: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            lock_for: Duration::from_secs(15 * 60),
            max_lock: Duration::from_secs(24 * 3600),
        }
    }
}

/// Which factor failed (for metrics and audit; both count the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// The password.
    Password,
    /// The TOTP code.
    Totp,
}

/// One account's failures and lock, as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockoutState {
    /// Times of the failures inside the window, oldest first.
    pub failures: Vec<UnixTime>,
    /// Locks since the last success.
    pub locks: u32,
    /// No attempt is looked at before this time.
    pub not_before: Option<UnixTime>,
}

const VERSION: u8 = 1;

impl LockoutState {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = WireWriter::new();
        w.u8(VERSION);
        w.u32(self.locks);
        w.u64(self.not_before.map_or(0, UnixTime::as_millis));
        w.u16(u16::try_from(self.failures.len()).unwrap_or(u16::MAX));
        for t in self.failures.iter().take(usize::from(u16::MAX)) {
            w.u64(t.as_millis());
        }
        w.into_bytes()
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = WireReader::new(bytes);
        if r.u8("version")? != VERSION {
            return Err(WireError::TooLong {
                field: "version",
                len: 1,
                max: usize::from(VERSION),
            });
        }
        let locks = r.u32("locks")?;
        let nb = r.u64("not_before")?;
        let n = r.count16("failures", 8)?;
        let mut failures = Vec::with_capacity(n);
        for _ in 0..n {
            failures.push(UnixTime::from_millis(r.u64("failure")?));
        }
        r.finish()?;
        Ok(Self {
            failures,
            locks,
            not_before: (nb != 0).then(|| UnixTime::from_millis(nb)),
        })
    }
}

impl LockoutPolicy {
    /// Refuses an attempt while the account is locked.
    pub fn check(&self, state: &LockoutState, now: UnixTime) -> Result<(), IdpError> {
        match state.not_before {
            Some(t) if now < t => Err(IdpError::AccountLocked {
                not_before: t.as_secs() + u64::from(t.as_millis() % 1000 != 0),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failure of either factor; returns the end of the lock when this one locks.
    pub fn record_failure(
        &self,
        state: &mut LockoutState,
        now: UnixTime,
        _factor: Factor,
    ) -> Option<UnixTime> {
        state
            .failures
            .retain(|t| now.saturating_since(*t) < self.window && *t <= now);
        state.failures.push(now);
        if state.failures.len() < usize::try_from(self.max_failures.max(1)).unwrap_or(usize::MAX) {
            return None;
        }
        let factor = 1u32.checked_shl(state.locks.min(16)).unwrap_or(u32::MAX);
        let lock = self.lock_for.saturating_mul(factor).min(self.max_lock);
        let until = now.saturating_add(lock);
        state.failures.clear();
        state.locks = state.locks.saturating_add(1);
        state.not_before = Some(until);
        Some(until)
    }

    /// A sign-in succeeded: failures and locks are forgotten.
    pub fn record_success(&self, state: &mut LockoutState) {
        *state = LockoutState::default();
    }
}

#[cfg(test)]
mod tests {
    use tianping_core::{Clock as _, ManualClock};

    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn five_failures_in_fifteen_minutes_lock() {
        let p = LockoutPolicy::default();
        let clock = ManualClock::new(UnixTime::from_secs(1_800_000_000));
        let mut s = LockoutState::default();
        for i in 0..4 {
            let f = if i % 2 == 0 {
                Factor::Password
            } else {
                Factor::Totp
            };
            assert_eq!(p.record_failure(&mut s, clock.now(), f), None);
            p.check(&s, clock.now()).unwrap();
            clock.advance(MIN * 3);
        }
        let until = p.record_failure(&mut s, clock.now(), Factor::Totp).unwrap();
        assert_eq!(until, clock.now().saturating_add(MIN * 15));
        assert_eq!(
            p.check(&s, clock.now()),
            Err(IdpError::AccountLocked {
                not_before: until.as_secs()
            })
        );
        clock.advance(MIN * 15 - Duration::from_millis(1));
        assert!(p.check(&s, clock.now()).is_err());
        clock.advance(Duration::from_millis(1));
        p.check(&s, clock.now()).unwrap();
        // locked again: twice as long
        for _ in 0..4 {
            assert_eq!(
                p.record_failure(&mut s, clock.now(), Factor::Password),
                None
            );
        }
        let again = p
            .record_failure(&mut s, clock.now(), Factor::Password)
            .unwrap();
        assert_eq!(again, clock.now().saturating_add(MIN * 30));
        p.record_success(&mut s);
        assert_eq!(s, LockoutState::default());
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let p = LockoutPolicy::default();
        let clock = ManualClock::new(UnixTime::from_secs(1_800_000_000));
        let mut s = LockoutState::default();
        for _ in 0..20 {
            assert_eq!(
                p.record_failure(&mut s, clock.now(), Factor::Password),
                None
            );
            clock.advance(MIN * 4);
        }
        assert!(s.failures.len() <= 4);
    }

    #[test]
    fn configurable_and_capped() {
        let p = LockoutPolicy {
            max_failures: 2,
            window: MIN,
            lock_for: MIN,
            max_lock: MIN * 3,
        };
        let t = UnixTime::from_secs(100);
        let mut s = LockoutState::default();
        let mut last = None;
        for _ in 0..5 {
            p.record_failure(&mut s, t, Factor::Password);
            last = p.record_failure(&mut s, t, Factor::Password);
        }
        assert_eq!(last, Some(t.saturating_add(MIN * 3)));
        assert_eq!(s.locks, 5);
    }

    #[test]
    fn state_round_trips_and_refuses_garbage() {
        let s = LockoutState {
            failures: vec![UnixTime::from_millis(5), UnixTime::from_millis(9)],
            locks: 3,
            not_before: Some(UnixTime::from_millis(77)),
        };
        assert_eq!(LockoutState::decode(&s.encode()).unwrap(), s);
        let d = LockoutState::default();
        assert_eq!(LockoutState::decode(&d.encode()).unwrap(), d);
        let mut bytes = s.encode();
        bytes.pop();
        assert!(LockoutState::decode(&bytes).is_err());
        assert!(LockoutState::decode(&[2, 0, 0]).is_err());
        assert!(
            LockoutState::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]).is_err()
        );
    }
}
