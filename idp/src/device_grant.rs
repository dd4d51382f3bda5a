//! The device authorization grant (RFC 8628) as a state machine over a bounded table, free of
//! I/O: every operation is a function of the table and the time it is given (the provider reads
//! it from its [`Clock`](tianping_core::Clock)).
//!
//! A device (here `tianping login`) asks for an authorization and gets a `device_code` it keeps
//! secret and a short `user_code` a person types on the verification page; the person, signed
//! in, approves or denies; the device polls the token endpoint with the `device_code` and is
//! answered, as RFC 8628 §3.5 says:
//!
//! - `authorization_pending` while nobody decided;
//! - `slow_down` when it polls sooner than the interval allows, the interval then growing by
//!   5 seconds for every later poll;
//! - `expired_token` once the authorization's life is over (and until it is purged);
//! - `access_denied` once the person denied it (once: the authorization ends);
//! - the identity the person approved as, once: the authorization ends with the grant.
//!
//! User codes are eight letters from an alphabet without vowels or look-alikes (RFC 8628 §6.1),
//! shown as `BCDF-GHJK` and read back whatever the case, dashes and spaces. The table is in
//! memory and bounded ([`DevicePolicy::capacity`]): the authorizations last minutes, and a
//! provider that restarts forgets them (the device starts again).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tianping_core::UnixTime;

use crate::error::IdpError;
use crate::grants::sha256;
use crate::random::{Random, bytes};
use crate::tokens::Identity;

/// The grant type a device polls the token endpoint with.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The letters of user codes: consonants only, none easily mistaken for another (RFC 8628 §6.1).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// The letters in a user code (20⁸ ≈ 2³⁴·⁶ codes, against a handful of live ones).
pub const USER_CODE_LEN: usize = 8;

/// How much `slow_down` adds to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// The lives and bounds of device authorizations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePolicy {
    /// How long an authorization may be approved and polled (`expires_in`).
    pub life: Duration,
    /// The least time between two polls at first (`interval`).
    pub interval: Duration,
    /// The most authorizations held at once; a request beyond is refused.
    pub capacity: usize,
}

impl Default for DevicePolicy {
    /// Ten minutes, five seconds, 1024.
    fn default() -> Self {
        Self {
            life: Duration::from_secs(600),
            interval: Duration::from_secs(5),
            capacity: 1024,
        }
    }
}

/// What the device is answered at `/device_authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    /// The secret the device polls with.
    pub device_code: String,
    /// The code the person types, as shown (`BCDF-GHJK`).
    pub user_code: String,
    /// Seconds until the authorization expires.
    pub expires_in: u64,
    /// Seconds the device waits between polls.
    pub interval: u64,
}

/// What a person is asked to approve: the client and scope of a pending authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDevice {
    /// The user code, as shown.
    pub user_code: String,
    /// The client that asked.
    pub client_id: String,
    /// The scopes it asked for.
    pub scope: Vec<String>,
    /// When it expires.
    pub expires_at: UnixTime,
}

/// What a poll that succeeds gets: who approved, and the scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGranted {
    /// The person as they approved.
    pub identity: Identity,
    /// The scopes asked for.
    pub scope: Vec<String>,
}

/// A person's decision on the verification page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approved, as this person.
    Approve(Box<Identity>),
    /// Denied (by whoever was signed in).
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Pending,
    Approved(Box<Identity>),
    Denied,
}

#[derive(Debug, Clone)]
struct Entry {
    user_code: String,
    client_id: String,
    scope: Vec<String>,
    expires_at: UnixTime,
    interval: Duration,
    last_poll: Option<UnixTime>,
    state: State,
}

/// The pending device authorizations, by the hash of their device code (the code itself is
/// never kept) and by user code.
#[derive(Debug, Default)]
pub struct DeviceGrants {
    policy: DevicePolicy,
    entries: HashMap<[u8; 32], Entry>,
    by_user: HashMap<String, [u8; 32]>,
}

/// A user code as typed, made canonical: upper case, dashes and spaces dropped; `None` when it
/// cannot be one (wrong length, a letter outside the alphabet).
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok = code.len() == USER_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii() && USER_CODE_ALPHABET.contains(&b));
    ok.then_some(code)
}

/// A canonical user code as shown: two groups of four.
fn shown(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_owned(),
    }
}

impl DeviceGrants {
    /// An empty table under `policy`.
    pub fn new(policy: DevicePolicy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
            by_user: HashMap::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> DevicePolicy {
        self.policy
    }

    /// How many authorizations the table holds (expired ones until purged).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops the authorizations that expired more than one life ago (until then a poll is
    /// answered `expired_token`, after it `invalid_grant`).
    fn purge(&mut self, now: UnixTime) {
        let life = self.policy.life;
        let by_user = &mut self.by_user;
        self.entries.retain(|_, e| {
            let keep = e.expires_at.saturating_add(life) > now;
            if !keep {
                by_user.remove(&e.user_code);
            }
            keep
        });
    }

    /// A new authorization for `client_id` and `scope`: its device code, user code, life and
    /// interval. Refused when the table is full of live ones.
    pub fn start(
        &mut self,
        client_id: &str,
        scope: Vec<String>,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<DeviceAuthorization, IdpError> {
        self.purge(now);
        if self.entries.len() >= self.policy.capacity {
            // expired ones go first
            self.entries.retain(|_, e| e.expires_at > now);
            let live: std::collections::HashSet<&String> =
                self.entries.values().map(|e| &e.user_code).collect();
            self.by_user.retain(|code, _| live.contains(code));
            if self.entries.len() >= self.policy.capacity {
                return Err(IdpError::DeviceTableFull);
            }
        }
        let device_code = URL_SAFE_NO_PAD.encode(bytes::<32>(rng)?);
        let user_code = self.fresh_user_code(rng)?;
        let hash = sha256(device_code.as_bytes());
        self.entries.insert(
            hash,
            Entry {
                user_code: user_code.clone(),
                client_id: client_id.to_owned(),
                scope,
                expires_at: now.saturating_add(self.policy.life),
                interval: self.policy.interval,
                last_poll: None,
                state: State::Pending,
            },
        );
        self.by_user.insert(user_code.clone(), hash);
        Ok(DeviceAuthorization {
            device_code,
            user_code: shown(&user_code),
            expires_in: self.policy.life.as_secs(),
            interval: self.policy.interval.as_secs(),
        })
    }

    /// A user code no live authorization has: letters drawn without bias (bytes past the last
    /// whole multiple of the alphabet are drawn again).
    fn fresh_user_code(&self, rng: &dyn Random) -> Result<String, IdpError> {
        const WHOLE: u8 = 240; // 12 × 20
        for _ in 0..16 {
            let mut code = String::with_capacity(USER_CODE_LEN);
            while code.len() < USER_CODE_LEN {
                for b in bytes::<16>(rng)? {
                    if b < WHOLE && code.len() < USER_CODE_LEN {
                        let letter = USER_CODE_ALPHABET
                            .get(usize::from(b % 20))
                            .copied()
                            .unwrap_or(b'B');
                        code.push(char::from(letter));
                    }
                }
            }
            if !self.by_user.contains_key(&code) {
                return Ok(code);
            }
        }
        Err(IdpError::Internal("no fresh user code"))
    }

    fn by_user_code(&self, typed: &str, now: UnixTime) -> Result<[u8; 32], IdpError> {
        let code = normalize_user_code(typed).ok_or(IdpError::UserCodeInvalid)?;
        let hash = *self.by_user.get(&code).ok_or(IdpError::UserCodeInvalid)?;
        match self.entries.get(&hash) {
            Some(e) if e.expires_at > now && e.state == State::Pending => Ok(hash),
            _ => Err(IdpError::UserCodeInvalid),
        }
    }

    /// The live, undecided authorization a person typed the user code of.
    pub fn lookup(&self, typed: &str, now: UnixTime) -> Result<PendingDevice, IdpError> {
        let hash = self.by_user_code(typed, now)?;
        let e = self.entries.get(&hash).ok_or(IdpError::UserCodeInvalid)?;
        Ok(PendingDevice {
            user_code: shown(&e.user_code),
            client_id: e.client_id.clone(),
            scope: e.scope.clone(),
            expires_at: e.expires_at,
        })
    }

    /// A person's decision on the authorization of `typed`; only a live, undecided one can be
    /// decided, once. The authorization decided, for the audit record.
    pub fn decide(
        &mut self,
        typed: &str,
        decision: Decision,
        now: UnixTime,
    ) -> Result<PendingDevice, IdpError> {
        let pending = self.lookup(typed, now)?;
        let hash = self.by_user_code(typed, now)?;
        let e = self
            .entries
            .get_mut(&hash)
            .ok_or(IdpError::UserCodeInvalid)?;
        e.state = match decision {
            Decision::Approve(identity) => State::Approved(identity),
            Decision::Deny => State::Denied,
        };
        Ok(pending)
    }

    /// A poll by `client_id` with `device_code` at `now`, answered as RFC 8628 §3.5 says.
    pub fn poll(
        &mut self,
        device_code: &str,
        client_id: &str,
        now: UnixTime,
    ) -> Result<DeviceGranted, IdpError> {
        self.purge(now);
        let hash = sha256(device_code.as_bytes());
        let e = self
            .entries
            .get_mut(&hash)
            .ok_or(IdpError::DeviceCodeInvalid)?;
        if e.client_id != client_id {
            return Err(IdpError::DeviceCodeInvalid);
        }
        if e.expires_at <= now {
            return Err(IdpError::DeviceCodeExpired);
        }
        let early = e
            .last_poll
            .is_some_and(|last| now.saturating_since(last) < e.interval);
        e.last_poll = Some(now);
        if early {
            e.interval = e.interval.saturating_add(SLOW_DOWN_STEP);
            return Err(IdpError::SlowDown);
        }
        match &e.state {
            State::Pending => Err(IdpError::AuthorizationPending),
            State::Denied => {
                self.remove(&hash);
                Err(IdpError::DeviceAccessDenied)
            }
            State::Approved(identity) => {
                let granted = DeviceGranted {
                    identity: (**identity).clone(),
                    scope: e.scope.clone(),
                };
                self.remove(&hash);
                Ok(granted)
            }
        }
    }

    /// The interval a device polling with `device_code` must keep now (grown by each
    /// `slow_down`); `None` for an unknown code.
    pub fn interval(&self, device_code: &str) -> Option<Duration> {
        self.entries
            .get(&sha256(device_code.as_bytes()))
            .map(|e| e.interval)
    }

    fn remove(&mut self, hash: &[u8; 32]) {
        if let Some(e) = self.entries.remove(hash) {
            self.by_user.remove(&e.user_code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_read_back_whatever_the_case_and_dashes() {
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code(" BCDF GHJK ").as_deref(),
            Some("BCDFGHJK")
        );
        // a vowel, a digit, the wrong length
        assert_eq!(normalize_user_code("BCDF-GHJA"), None);
        assert_eq!(normalize_user_code("BCDF-GHJ1"), None);
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(shown("BCDFGHJK"), "BCDF-GHJK");
    }

    proptest::proptest! {
        /// Whatever is typed: no panic, and what is taken is eight letters of the alphabet that
        /// read back to themselves, shown or not.
        #[test]
        fn any_typed_code_is_taken_only_as_eight_letters_of_the_alphabet(typed in ".{0,40}") {
            if let Some(code) = normalize_user_code(&typed) {
                proptest::prop_assert_eq!(code.len(), USER_CODE_LEN);
                proptest::prop_assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
                proptest::prop_assert_eq!(normalize_user_code(&shown(&code)), Some(code.clone()));
            }
        }
    }

    #[test]
    fn issued_user_codes_are_shown_in_two_groups_and_read_back() {
        let rng = crate::random::SeededRandom::new(3);
        let mut t = DeviceGrants::new(DevicePolicy::default());
        let now = UnixTime::from_secs(1_000);
        for _ in 0..50 {
            let a = t.start("cli", vec![], now, &rng).unwrap();
            let code = normalize_user_code(&a.user_code).unwrap();
            assert_eq!(shown(&code), a.user_code);
            assert_eq!(
                t.lookup(&code.to_lowercase(), now).unwrap().user_code,
                a.user_code
            );
        }
        assert_eq!(t.len(), 50);
    }

    #[test]
    fn a_full_table_refuses_until_one_expires() {
        let rng = crate::random::SeededRandom::new(7);
        let mut t = DeviceGrants::new(DevicePolicy {
            capacity: 2,
            ..DevicePolicy::default()
        });
        let now = UnixTime::from_secs(1_000);
        t.start("cli", vec![], now, &rng).unwrap();
        t.start("cli", vec![], now, &rng).unwrap();
        assert_eq!(
            t.start("cli", vec![], now, &rng),
            Err(IdpError::DeviceTableFull)
        );
        let later = now.saturating_add(Duration::from_secs(601));
        t.start("cli", vec![], later, &rng).unwrap();
        assert_eq!(t.len(), 1);
    }
}
