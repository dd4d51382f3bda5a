//! Browser sessions: the id rotated at sign-in and at logout, an idle and an absolute timeout,
//! and CSRF tokens bound to the session and to the form.
//!
//! The id travels in a `__Host-` cookie (Secure, HttpOnly, SameSite=Lax, Path=/, no Domain);
//! the store keeps only its SHA-256, so a stolen store does not give working cookies.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use tianping_core::{Secret, UnixTime, ct_eq};

use crate::IdpError;
use crate::random::{Random, bytes};
use crate::store::Store;
use crate::tokens::Identity;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "__Host-tianping-session";

/// Session timeouts (MLPS: idle sessions end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after it began, used or not.
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(15 * 60),
            absolute: Duration::from_secs(8 * 3600),
        }
    }
}

/// What a session holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who signed in; `None` before sign-in (the session then only carries CSRF state).
    pub identity: Option<Identity>,
    /// When the session began (at sign-in for a signed-in one: the id is new then).
    pub created_at: UnixTime,
    /// When it was last used.
    pub last_seen: UnixTime,
    csrf_key: Secret<Vec<u8>>,
}

impl Session {
    /// A session read back from the store.
    #[cfg(feature = "store")]
    pub(crate) fn from_parts(
        identity: Option<Identity>,
        created_at: UnixTime,
        last_seen: UnixTime,
        csrf_key: Secret<Vec<u8>>,
    ) -> Self {
        Self {
            identity,
            created_at,
            last_seen,
            csrf_key,
        }
    }

    /// The key CSRF tokens are made with (for the store).
    #[cfg(feature = "store")]
    pub(crate) fn csrf_key(&self) -> &Secret<Vec<u8>> {
        &self.csrf_key
    }

    /// The CSRF token for the form named `form` in this session.
    pub fn csrf_token(&self, form: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.csrf_key.expose());
        URL_SAFE_NO_PAD.encode(hmac::sign(&key, form.as_bytes()).as_ref())
    }

    /// Checks a posted CSRF token for `form`, in constant time.
    pub fn check_csrf(&self, form: &str, token: Option<&str>) -> Result<(), IdpError> {
        match token {
            Some(t) if ct_eq(t.as_bytes(), self.csrf_token(form).as_bytes()) => Ok(()),
            _ => Err(IdpError::CsrfMismatch),
        }
    }
}

/// The store key of a session: the SHA-256 of its id (the id itself is never stored).
pub fn session_key(id: &str) -> [u8; 32] {
    key_of(id)
}

fn key_of(id: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()).as_ref());
    out
}

/// The `Set-Cookie` value that carries a session id.
pub fn session_cookie(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Lax")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// Sessions over a store.
#[derive(Clone, Copy)]
pub struct Sessions<'a> {
    store: &'a dyn Store,
    policy: SessionPolicy,
}

impl std::fmt::Debug for Sessions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<'a> Sessions<'a> {
    /// Sessions kept in `store`.
    pub fn new(store: &'a dyn Store, policy: SessionPolicy) -> Self {
        Self { store, policy }
    }

    fn create(
        &self,
        identity: Option<Identity>,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<(String, Session), IdpError> {
        let id = URL_SAFE_NO_PAD.encode(bytes::<32>(rng)?);
        let session = Session {
            identity,
            created_at: now,
            last_seen: now,
            csrf_key: Secret::new(bytes::<32>(rng)?.to_vec()),
        };
        self.store.put_session(key_of(&id), session.clone())?;
        Ok((id, session))
    }

    /// A new session before sign-in (it carries the sign-in form's CSRF token).
    pub fn start(&self, now: UnixTime, rng: &dyn Random) -> Result<(String, Session), IdpError> {
        self.create(None, now, rng)
    }

    /// The live session with this id, its idle clock restarted; an unknown or timed-out one is
    /// forgotten and refused.
    pub fn get(&self, id: &str, now: UnixTime) -> Result<Session, IdpError> {
        let key = key_of(id);
        let s = self.store.session(&key)?.ok_or(IdpError::SessionExpired)?;
        if !self.live(&s, now) {
            self.store.remove_session(&key)?;
            return Err(IdpError::SessionExpired);
        }
        // an update, not a put: a logout that removed the session meanwhile is not undone
        let mut touch = |s: &Session| {
            let mut n = s.clone();
            n.last_seen = n.last_seen.max(now);
            n
        };
        let before = self
            .store
            .update_session(&key, &mut touch)?
            .ok_or(IdpError::SessionExpired)?;
        Ok(touch(&before))
    }

    /// Whether a session is within its idle and absolute timeouts at `now`.
    pub fn live(&self, s: &Session, now: UnixTime) -> bool {
        now.saturating_since(s.last_seen) < self.policy.idle
            && now.saturating_since(s.created_at) < self.policy.absolute
    }

    /// Signs `identity` in: the old session (if any) ends and a new id is issued, so an id
    /// planted before sign-in is worth nothing after it.
    pub fn sign_in(
        &self,
        old_id: Option<&str>,
        identity: Identity,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<(String, Session), IdpError> {
        if let Some(old) = old_id {
            self.store.remove_session(&key_of(old))?;
        }
        self.create(Some(identity), now, rng)
    }

    /// Ends a session; returns a fresh anonymous one to carry on with.
    pub fn logout(
        &self,
        id: &str,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<(String, Session), IdpError> {
        self.store.remove_session(&key_of(id))?;
        self.start(now, rng)
    }
}

#[cfg(test)]
mod tests {
    use tianping_core::{Clock as _, ManualClock};

    use super::*;
    use crate::random::SeededRandom;
    use crate::store::MemoryStore;
    use crate::tokens::tests::judge;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn id_rotates_at_sign_in_and_logout() {
        let store = MemoryStore::new();
        let s = Sessions::new(&store, SessionPolicy::default());
        let rng = SeededRandom::new(1);
        let clock = ManualClock::new(UnixTime::from_secs(1_800_000_000));
        let (anon, a) = s.start(clock.now(), &rng).unwrap();
        assert_eq!(a.identity, None);
        let (signed, b) = s.sign_in(Some(&anon), judge(), clock.now(), &rng).unwrap();
        assert_ne!(anon, signed);
        assert_eq!(s.get(&anon, clock.now()), Err(IdpError::SessionExpired));
        assert_eq!(s.get(&signed, clock.now()).unwrap().identity, b.identity);
        let (after, c) = s.logout(&signed, clock.now(), &rng).unwrap();
        assert_ne!(after, signed);
        assert_eq!(c.identity, None);
        assert_eq!(s.get(&signed, clock.now()), Err(IdpError::SessionExpired));
        assert_eq!(store.session_count(), 1);
    }

    #[test]
    fn idle_and_absolute_timeouts() {
        let store = MemoryStore::new();
        let s = Sessions::new(&store, SessionPolicy::default());
        let rng = SeededRandom::new(2);
        let clock = ManualClock::new(UnixTime::from_secs(1_800_000_000));
        let (id, _) = s.sign_in(None, judge(), clock.now(), &rng).unwrap();
        // used every 14 minutes it lives until the absolute limit
        for _ in 0..34 {
            clock.advance(MIN * 14);
            s.get(&id, clock.now()).unwrap();
        }
        clock.advance(MIN * 4);
        assert_eq!(s.get(&id, clock.now()), Err(IdpError::SessionExpired));
        let (idle, _) = s.sign_in(None, judge(), clock.now(), &rng).unwrap();
        clock.advance(MIN * 15);
        assert_eq!(s.get(&idle, clock.now()), Err(IdpError::SessionExpired));
        let short = Sessions::new(
            &store,
            SessionPolicy {
                idle: MIN,
                absolute: MIN * 2,
            },
        );
        let (x, _) = short.start(clock.now(), &rng).unwrap();
        clock.advance(MIN - Duration::from_millis(1));
        short.get(&x, clock.now()).unwrap();
    }

    #[test]
    fn csrf_tokens_are_per_session_and_form() {
        let store = MemoryStore::new();
        let s = Sessions::new(&store, SessionPolicy::default());
        let rng = SeededRandom::new(3);
        let now = UnixTime::from_secs(1);
        let (_, a) = s.start(now, &rng).unwrap();
        let (_, b) = s.start(now, &rng).unwrap();
        let t = a.csrf_token("sign-in");
        a.check_csrf("sign-in", Some(&t)).unwrap();
        assert_eq!(a.check_csrf("sign-in", None), Err(IdpError::CsrfMismatch));
        assert_eq!(a.check_csrf("totp", Some(&t)), Err(IdpError::CsrfMismatch));
        assert_eq!(
            b.check_csrf("sign-in", Some(&t)),
            Err(IdpError::CsrfMismatch)
        );
        assert!(!format!("{a:?}").contains(&t));
    }

    #[test]
    fn cookies_are_host_prefixed() {
        let c = session_cookie("abc");
        assert!(c.starts_with("__Host-") && c.contains("Secure") && c.contains("HttpOnly"));
        assert!(c.contains("SameSite=Lax") && c.contains("Path=/") && !c.contains("Domain"));
        assert!(clear_session_cookie().ends_with("Max-Age=0"));
    }
}
