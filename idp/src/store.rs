//! What the provider keeps between requests, behind one trait: the sled backend (the `store`
//! feature, later) and a PostgreSQL-compatible one can implement it alike.
//!
//! Updates that decide a race (a code redeemed twice at once, a refresh token rotated twice at
//! once) go through `update_*`, which the backend runs atomically (sled's `fetch_and_update`, a
//! row lock in SQL). The function given may run more than once and must depend only on the record.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tianping_core::UnixTime;

use crate::IdpError;
use crate::grants::{CodeRecord, FamilyId, RefreshFamily};
use crate::lockout::LockoutState;
use crate::session::Session;

/// An atomic update: the new record from the old.
pub type Update<'a, T> = &'a mut dyn FnMut(&T) -> T;

/// The provider's storage.
pub trait Store: Send + Sync {
    /// Keeps a new authorization code under the SHA-256 of its value.
    fn put_code(&self, key: [u8; 32], record: CodeRecord) -> Result<(), IdpError>;
    /// Applies `f` to a code atomically; returns the record as it was before, if any.
    fn update_code(
        &self,
        key: &[u8; 32],
        f: Update<'_, CodeRecord>,
    ) -> Result<Option<CodeRecord>, IdpError>;

    /// Keeps a new refresh-token family.
    fn put_family(&self, family: RefreshFamily) -> Result<(), IdpError>;
    /// Applies `f` to a family atomically; returns the family as it was before, if any.
    fn update_family(
        &self,
        id: &FamilyId,
        f: Update<'_, RefreshFamily>,
    ) -> Result<Option<RefreshFamily>, IdpError>;

    /// Records an access token as revoked until it would have expired anyway.
    fn revoke_token(&self, jti: &str, until: UnixTime) -> Result<(), IdpError>;
    /// Whether an access token was revoked.
    fn is_token_revoked(&self, jti: &str) -> Result<bool, IdpError>;

    /// A session by the SHA-256 of its id.
    fn session(&self, key: &[u8; 32]) -> Result<Option<Session>, IdpError>;
    /// Keeps a session.
    fn put_session(&self, key: [u8; 32], session: Session) -> Result<(), IdpError>;
    /// Forgets a session.
    fn remove_session(&self, key: &[u8; 32]) -> Result<(), IdpError>;

    /// The lockout state of an account name (known or not).
    fn lockout(&self, account: &str) -> Result<LockoutState, IdpError>;
    /// Keeps the lockout state of an account name.
    fn put_lockout(&self, account: &str, state: &LockoutState) -> Result<(), IdpError>;
}

/// A [`Store`] in memory, for tests: nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    codes: Mutex<HashMap<[u8; 32], CodeRecord>>,
    families: Mutex<HashMap<FamilyId, RefreshFamily>>,
    revoked: Mutex<HashMap<String, UnixTime>>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    lockouts: Mutex<HashMap<String, Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, IdpError> {
    m.lock()
        .map_err(|_| IdpError::Store("a lock was poisoned".into()))
}

fn update<K: Eq + std::hash::Hash, T: Clone>(
    m: &Mutex<HashMap<K, T>>,
    key: &K,
    f: Update<'_, T>,
) -> Result<Option<T>, IdpError> {
    let mut map = lock(m)?;
    Ok(map.get_mut(key).map(|rec| {
        let before = rec.clone();
        *rec = f(&before);
        before
    }))
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many sessions are kept (for tests of rotation).
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).map(|s| s.len()).unwrap_or_default()
    }
}

impl Store for MemoryStore {
    fn put_code(&self, key: [u8; 32], record: CodeRecord) -> Result<(), IdpError> {
        lock(&self.codes)?.insert(key, record);
        Ok(())
    }

    fn update_code(
        &self,
        key: &[u8; 32],
        f: Update<'_, CodeRecord>,
    ) -> Result<Option<CodeRecord>, IdpError> {
        update(&self.codes, key, f)
    }

    fn put_family(&self, family: RefreshFamily) -> Result<(), IdpError> {
        lock(&self.families)?.insert(family.id, family);
        Ok(())
    }

    fn update_family(
        &self,
        id: &FamilyId,
        f: Update<'_, RefreshFamily>,
    ) -> Result<Option<RefreshFamily>, IdpError> {
        update(&self.families, id, f)
    }

    fn revoke_token(&self, jti: &str, until: UnixTime) -> Result<(), IdpError> {
        lock(&self.revoked)?.insert(jti.to_owned(), until);
        Ok(())
    }

    fn is_token_revoked(&self, jti: &str) -> Result<bool, IdpError> {
        Ok(lock(&self.revoked)?.contains_key(jti))
    }

    fn session(&self, key: &[u8; 32]) -> Result<Option<Session>, IdpError> {
        Ok(lock(&self.sessions)?.get(key).cloned())
    }

    fn put_session(&self, key: [u8; 32], session: Session) -> Result<(), IdpError> {
        lock(&self.sessions)?.insert(key, session);
        Ok(())
    }

    fn remove_session(&self, key: &[u8; 32]) -> Result<(), IdpError> {
        lock(&self.sessions)?.remove(key);
        Ok(())
    }

    fn lockout(&self, account: &str) -> Result<LockoutState, IdpError> {
        match lock(&self.lockouts)?.get(account) {
            Some(b) => LockoutState::decode(b).map_err(|e| IdpError::Store(e.to_string())),
            None => Ok(LockoutState::default()),
        }
    }

    fn put_lockout(&self, account: &str, state: &LockoutState) -> Result<(), IdpError> {
        lock(&self.lockouts)?.insert(account.to_owned(), state.encode());
        Ok(())
    }
}
