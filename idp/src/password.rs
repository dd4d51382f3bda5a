//! Passwords: argon2id with stated parameters, the MLPS complexity rules, history and expiry,
//! and a dummy hash so that an unknown account costs exactly one hash, as a known one does.
//!
//! Parameters (the default, [`PasswordParams::default`]): argon2id v1.3, 19 MiB of memory, 2
//! passes, 1 lane, a 16-byte salt and a 32-byte output — the least that OWASP's password storage
//! guide recommends for argon2id. Stored as PHC strings, so a record keeps the parameters it was
//! made with and old hashes still verify after the parameters change.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Argon2, Params};
use serde::{Deserialize, Serialize};
use tianping_core::{SubjectId, UnixTime};

use crate::IdpError;
use crate::random::{Random, bytes};

/// The argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordParams {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The rules a new password must meet (MLPS level 3, GB/T 22239-2019 8.1.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPolicy {
    /// The fewest characters.
    pub min_chars: usize,
    /// The most characters (bounds the work one sign-in can cause).
    pub max_chars: usize,
    /// How many of the four classes (lower case, upper case, digits, others) must appear.
    pub min_classes: usize,
    /// How many recent passwords, the current one included, may not be chosen again.
    pub history: usize,
    /// How long a password lasts before it must be changed; `None` for ever.
    pub max_age: Option<Duration>,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: 8,
            max_chars: 128,
            min_classes: 3,
            history: 5,
            max_age: Some(Duration::from_secs(90 * 24 * 3600)),
        }
    }
}

/// An account's stored password: the current hash, the hashes before it, when it was set.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordRecord {
    /// The current PHC string.
    pub hash: String,
    /// Earlier PHC strings, the newest first.
    pub history: Vec<String>,
    /// When the current password was set.
    pub changed_at: UnixTime,
}

impl fmt::Debug for PasswordRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordRecord")
            .field("hash", &"[redacted]")
            .field("history", &self.history.len())
            .field("changed_at", &self.changed_at)
            .finish()
    }
}

/// Hashes and checks passwords; counts every hash it computes.
pub struct Passwords {
    argon: Argon2<'static>,
    policy: PasswordPolicy,
    dummy: String,
    calls: AtomicU64,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("params", self.argon.params())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

const INTERNAL: IdpError = IdpError::Internal("password hashing");

impl Passwords {
    /// A hasher with these parameters and rules; makes the dummy hash (not counted).
    pub fn new(
        params: PasswordParams,
        policy: PasswordPolicy,
        rng: &dyn Random,
    ) -> Result<Self, IdpError> {
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .map_err(|_| IdpError::Internal("argon2 parameters"))?;
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut this = Self {
            argon,
            policy,
            dummy: String::new(),
            calls: AtomicU64::new(0),
        };
        let filler = hex::encode(bytes::<16>(rng)?);
        this.dummy = this.hash(&filler, rng)?;
        this.calls.store(0, Ordering::SeqCst);
        Ok(this)
    }

    /// The rules new passwords are held to.
    pub fn policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    /// How many argon2 hashes this hasher has computed (hashing and verifying alike).
    pub fn hash_calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// A PHC string for `password` with a fresh salt.
    pub fn hash(&self, password: &str, rng: &dyn Random) -> Result<String, IdpError> {
        let salt = SaltString::encode_b64(&bytes::<16>(rng)?).map_err(|_| INTERNAL)?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let hash = self
            .argon
            .hash_password(password.as_bytes(), &salt)
            .map_err(|_| INTERNAL)?;
        Ok(hash.to_string())
    }

    /// Whether `password` matches `stored`. With no stored hash (an unknown account) or an
    /// unreadable one it checks against the dummy and answers `false`: every call costs one hash.
    pub fn verify(&self, stored: Option<&str>, password: &str) -> bool {
        let parsed = stored.and_then(|s| PasswordHash::new(s).ok());
        let (hash, real) = match parsed {
            Some(h) => (h, true),
            None => match PasswordHash::new(&self.dummy) {
                Ok(h) => (h, false),
                Err(_) => return false,
            },
        };
        self.calls.fetch_add(1, Ordering::SeqCst);
        let ok = self
            .argon
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        ok && real
    }

    /// Checks the complexity rules: length, classes, and not containing the account id.
    pub fn check_complexity(&self, password: &str, account: &SubjectId) -> Result<(), IdpError> {
        let chars = password.chars().count();
        if chars < self.policy.min_chars {
            return Err(IdpError::PasswordTooWeak("too short"));
        }
        if chars > self.policy.max_chars {
            return Err(IdpError::PasswordTooWeak("too long"));
        }
        let has = |f: fn(&char) -> bool| usize::from(password.chars().any(|c| f(&c)));
        let classes = has(char::is_ascii_lowercase)
            + has(char::is_ascii_uppercase)
            + has(char::is_ascii_digit)
            + has(|c| !c.is_ascii_alphanumeric());
        if classes < self.policy.min_classes {
            return Err(IdpError::PasswordTooWeak(
                "use three of: lower case, upper case, digits, other characters",
            ));
        }
        if password.to_lowercase().contains(account.as_str()) {
            return Err(IdpError::PasswordTooWeak("contains the account id"));
        }
        Ok(())
    }

    /// A first password for an account (set by an administrator or at registration).
    pub fn initial(
        &self,
        account: &SubjectId,
        password: &str,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<PasswordRecord, IdpError> {
        self.check_complexity(password, account)?;
        Ok(PasswordRecord {
            hash: self.hash(password, rng)?,
            history: Vec::new(),
            changed_at: now,
        })
    }

    /// The record after a change to `new`: complexity checked, and none of the last
    /// [`history`](PasswordPolicy::history) passwords (the current one included) reused.
    pub fn change(
        &self,
        record: &PasswordRecord,
        account: &SubjectId,
        new: &str,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<PasswordRecord, IdpError> {
        self.check_complexity(new, account)?;
        let keep = self.policy.history.max(1);
        let recent = std::iter::once(&record.hash).chain(record.history.iter().take(keep - 1));
        for old in recent {
            if self.verify(Some(old), new) {
                return Err(IdpError::PasswordReused);
            }
        }
        let mut history = Vec::with_capacity(keep);
        history.push(record.hash.clone());
        history.extend(record.history.iter().take(keep.saturating_sub(2)).cloned());
        Ok(PasswordRecord {
            hash: self.hash(new, rng)?,
            history,
            changed_at: now,
        })
    }

    /// Whether the password has outlived [`max_age`](PasswordPolicy::max_age) at `now`.
    pub fn is_expired(&self, record: &PasswordRecord, now: UnixTime) -> bool {
        self.policy
            .max_age
            .is_some_and(|age| now >= record.changed_at.saturating_add(age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    /// Cheap parameters so tests run fast; the logic is the same.
    fn passwords(policy: PasswordPolicy) -> Passwords {
        let params = PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        Passwords::new(params, policy, &SeededRandom::new(1)).unwrap()
    }

    fn judge() -> SubjectId {
        "judge-0001".parse().unwrap()
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let pw = passwords(PasswordPolicy::default());
        let rng = SeededRandom::new(2);
        let h = pw.hash("Court#2026", &rng).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        assert!(pw.verify(Some(&h), "Court#2026"));
        assert!(!pw.verify(Some(&h), "Court#2027"));
        assert!(!pw.verify(Some("not a hash"), "Court#2026"));
        let default =
            Passwords::new(PasswordParams::default(), PasswordPolicy::default(), &rng).unwrap();
        let h = default.hash("Court#2026", &rng).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    }

    #[test]
    fn an_unknown_account_costs_one_hash_as_a_known_one_does() {
        let pw = passwords(PasswordPolicy::default());
        let rng = SeededRandom::new(3);
        let h = pw.hash("Court#2026", &rng).unwrap();
        let before = pw.hash_calls();
        assert!(!pw.verify(Some(&h), "wrong#Pass1"));
        let known = pw.hash_calls() - before;
        assert!(!pw.verify(None, "wrong#Pass1"));
        let unknown = pw.hash_calls() - before - known;
        assert_eq!((known, unknown), (1, 1));
        // the dummy never matches, not even its own filler
        assert!(!pw.verify(None, ""));
    }

    #[test]
    fn complexity_rules() {
        let pw = passwords(PasswordPolicy::default());
        let id = judge();
        for ok in ["Court#2026", "abcDEF12", "法院Court1", "aa11!!bb"] {
            pw.check_complexity(ok, &id)
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("Ab1!", "too short"),
            ("abcdefgh1", "use three"),
            ("ABCDEFGH!", "use three"),
            ("XJudge-0001!", "contains the account id"),
        ] {
            let e = pw.check_complexity(bad, &id).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        assert!(pw.check_complexity(&"Aa1!".repeat(33), &id).is_err());
    }

    #[test]
    fn history_refuses_the_last_five() {
        let pw = passwords(PasswordPolicy::default());
        let rng = SeededRandom::new(4);
        let id = judge();
        let t0 = UnixTime::from_secs(1_800_000_000);
        let names: Vec<String> = (0..7).map(|i| format!("Court#{i}xyz")).collect();
        let mut rec = pw.initial(&id, &names[0], t0, &rng).unwrap();
        for n in &names[1..6] {
            rec = pw.change(&rec, &id, n, t0, &rng).unwrap();
        }
        assert_eq!(rec.history.len(), 4);
        // the current and the four before it are refused; the one before those is allowed again
        for n in &names[1..6] {
            assert_eq!(
                pw.change(&rec, &id, n, t0, &rng),
                Err(IdpError::PasswordReused),
                "{n}"
            );
        }
        assert!(pw.change(&rec, &id, &names[0], t0, &rng).is_ok());
        assert!(!format!("{rec:?}").contains("argon2"));
    }

    #[test]
    fn configurable_history() {
        let pw = passwords(PasswordPolicy {
            history: 1,
            ..PasswordPolicy::default()
        });
        let rng = SeededRandom::new(5);
        let id = judge();
        let t0 = UnixTime::from_secs(0);
        let a = pw.initial(&id, "Court#aaa1", t0, &rng).unwrap();
        let b = pw.change(&a, &id, "Court#bbb1", t0, &rng).unwrap();
        assert_eq!(
            pw.change(&b, &id, "Court#bbb1", t0, &rng),
            Err(IdpError::PasswordReused)
        );
        assert!(pw.change(&b, &id, "Court#aaa1", t0, &rng).is_ok());
    }

    #[test]
    fn expiry() {
        let pw = passwords(PasswordPolicy::default());
        let rng = SeededRandom::new(6);
        let t0 = UnixTime::from_secs(1_800_000_000);
        let rec = pw.initial(&judge(), "Court#2026", t0, &rng).unwrap();
        let day = Duration::from_secs(24 * 3600);
        assert!(!pw.is_expired(&rec, t0.saturating_add(day * 89)));
        assert!(pw.is_expired(&rec, t0.saturating_add(day * 90)));
        let forever = passwords(PasswordPolicy {
            max_age: None,
            ..PasswordPolicy::default()
        });
        assert!(!forever.is_expired(&rec, t0.saturating_add(day * 9000)));
    }
}
