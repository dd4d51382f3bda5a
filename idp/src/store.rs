//! What the provider keeps between requests, behind one trait: the sled backend (the `store`
//! feature, later) and a PostgreSQL-compatible one can implement it alike.
//!
//! Updates that decide a race (a code redeemed twice at once, a refresh token rotated twice at
//! once) go through `update_*`, which the backend runs atomically (sled's `fetch_and_update`, a
//! row lock in SQL). The function given may run more than once and must depend only on the record.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tianping_core::{CourtCode, SubjectId, UnixTime};

use crate::IdpError;
use crate::client::Client;
use crate::client_auth::ClientKeys;
use crate::device::Device;
use crate::directory::{Court, User};
use crate::grants::{CodeRecord, FamilyId, RefreshFamily};
use crate::lockout::LockoutState;
use crate::session::Session;

/// What [`Store::flushed`] returns: completes once earlier updates are durable.
pub type Flushed = std::pin::Pin<Box<dyn Future<Output = Result<(), IdpError>> + Send>>;

/// An atomic update: the new record from the old.
pub type Update<'a, T> = &'a mut dyn FnMut(&T) -> T;

/// Records read by key prefix: each key with its value, in key order.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// An atomic update that may refuse: the new record from the old, or why not.
pub type TryUpdate<'a, T> = &'a mut dyn FnMut(&T) -> Result<T, IdpError>;

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
    /// [`update_family`](Self::update_family), durable only once a later
    /// [`flushed`](Self::flushed) completes (the default is durable at once). For async
    /// callers that answer only after awaiting it: concurrent updates share one flush.
    fn update_family_deferred(
        &self,
        id: &FamilyId,
        f: Update<'_, RefreshFamily>,
    ) -> Result<Option<RefreshFamily>, IdpError> {
        self.update_family(id, f)
    }
    /// [`update_family_deferred`](Self::update_family_deferred) whose `f` may refuse: its error
    /// is returned and nothing changes. The family is read (and decoded) once, again only when
    /// a concurrent writer came first. The default runs through `update_family_deferred`.
    fn try_update_family_deferred(
        &self,
        id: &FamilyId,
        f: TryUpdate<'_, RefreshFamily>,
    ) -> Result<Option<RefreshFamily>, IdpError> {
        let mut refused = None;
        let before = self.update_family_deferred(id, &mut |fam| match f(fam) {
            Ok(next) => next,
            Err(e) => {
                refused = Some(e);
                fam.clone()
            }
        })?;
        match refused {
            Some(e) => Err(e),
            None => Ok(before),
        }
    }
    /// Completes once every update made before the call is durable, without blocking a thread
    /// (the default: at once, every write being durable when it returns).
    fn flushed(&self) -> Flushed {
        Box::pin(std::future::ready(Ok(())))
    }
    /// Makes every update made before the call durable, blocking this thread until it is: for
    /// a thread of its own that commits deferred updates in groups (the default: nothing to do,
    /// every write being durable when it returns).
    fn sync(&self) -> Result<(), IdpError> {
        Ok(())
    }
    /// Whether refresh rotations written by
    /// [`try_update_family_deferred`](Self::try_update_family_deferred) are made durable by
    /// their audit events instead of a flush of this store per group: the provider then
    /// appends each rotation's event with what it changed, writes this store's flushed point
    /// in the audit log at [checkpoints](Self::checkpoint_rotations), and on start makes again
    /// the rotations of the events after it. The default: no, the provider flushes
    /// ([`sync`](Self::sync)) before it appends the events.
    fn journals_rotations(&self) -> bool {
        false
    }
    /// The index in the audit log from which the rotations of a
    /// [journalling](Self::journals_rotations) store must be made again: every rotation whose
    /// event comes before it is durable here. `None` before the first checkpoint.
    fn rotations_replay_from(&self) -> Result<Option<u64>, IdpError> {
        Ok(None)
    }
    /// Makes every update made before the call durable, then notes that every rotation whose
    /// audit event comes before `index` is (the point never moves back).
    fn checkpoint_rotations(&self, index: u64) -> Result<(), IdpError> {
        let _ = index;
        self.sync()
    }
    /// A family as stored now, read without writing (the default reads through
    /// [`update_family`](Self::update_family) with no change).
    fn family(&self, id: &FamilyId) -> Result<Option<RefreshFamily>, IdpError> {
        self.update_family(id, &mut |f| f.clone())
    }

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
    /// Applies `f` to a session atomically; returns the session as it was before, if any. A
    /// session removed meanwhile (its logout) stays removed.
    fn update_session(
        &self,
        key: &[u8; 32],
        f: Update<'_, Session>,
    ) -> Result<Option<Session>, IdpError>;
    /// The signed-in sessions of an account (live or timed out but not yet forgotten), with
    /// their store keys, in no particular order: the store keeps them indexed by subject id.
    fn account_sessions(&self, sub: &SubjectId) -> Result<Vec<([u8; 32], Session)>, IdpError>;

    /// The lockout state of an account name (known or not).
    fn lockout(&self, account: &str) -> Result<LockoutState, IdpError>;
    /// Keeps the lockout state of an account name.
    fn put_lockout(&self, account: &str, state: &LockoutState) -> Result<(), IdpError>;

    /// Keeps a court (replacing one of the same code).
    fn put_court(&self, court: &Court) -> Result<(), IdpError>;
    /// A court by code.
    fn court(&self, code: &CourtCode) -> Result<Option<Court>, IdpError>;
    /// Every court, in no particular order.
    fn courts(&self) -> Result<Vec<Court>, IdpError>;

    /// Keeps a new user under its subject id and sign-in name, atomically; refuses (changing
    /// nothing) when either is taken.
    fn insert_user(&self, user: &User) -> Result<(), IdpError>;
    /// Applies `f` to a user atomically; returns the user as it was before, if any. A result
    /// with another subject id or sign-in name is refused and nothing changes.
    fn update_user(&self, sub: &SubjectId, f: Update<'_, User>) -> Result<Option<User>, IdpError>;
    /// A user by subject id.
    fn user(&self, sub: &SubjectId) -> Result<Option<User>, IdpError>;
    /// A user by sign-in name (as stored: lower case).
    fn user_by_login(&self, login: &str) -> Result<Option<User>, IdpError>;
    /// Every user, in no particular order.
    fn users(&self) -> Result<Vec<User>, IdpError>;

    /// Keeps a device under its certificate's fingerprint (replacing one of the same).
    fn put_device(&self, device: &Device) -> Result<(), IdpError>;
    /// The device registered with a certificate of this fingerprint.
    fn device_by_fingerprint(&self, fingerprint: &[u8; 32]) -> Result<Option<Device>, IdpError>;
    /// A device by id.
    fn device(&self, id: &str) -> Result<Option<Device>, IdpError> {
        Ok(self.devices()?.into_iter().find(|d| d.id == id))
    }
    /// Every device, in no particular order.
    fn devices(&self) -> Result<Vec<Device>, IdpError>;
    /// Forgets the device of this certificate fingerprint.
    fn remove_device(&self, fingerprint: &[u8; 32]) -> Result<(), IdpError>;

    /// Keeps a registered client (replacing one of the same id).
    fn put_client(&self, client: &Client) -> Result<(), IdpError>;
    /// A client by id.
    fn client(&self, id: &str) -> Result<Option<Client>, IdpError>;
    /// Every client, in no particular order.
    fn clients(&self) -> Result<Vec<Client>, IdpError>;
    /// Keeps what a client authenticates with beyond a secret (its JWKS, JWKS URI or
    /// certificate subject), replacing what it had.
    fn put_client_keys(&self, client_id: &str, keys: &ClientKeys) -> Result<(), IdpError>;
    /// What a client authenticates with beyond a secret, if anything.
    fn client_keys(&self, client_id: &str) -> Result<Option<ClientKeys>, IdpError>;
    /// Remembers the `jti` of a client's assertion until `until`, atomically and durably:
    /// `false` (changing nothing) when it is remembered already, which is a replay. Entries whose
    /// `until` has passed at `now` may be forgotten.
    fn note_assertion(
        &self,
        client_id: &str,
        jti: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, IdpError>;

    /// Keeps where an unfinished sign-in stands, under the SHA-256 of its session id.
    fn put_sign_in(&self, key: [u8; 32], state: Vec<u8>) -> Result<(), IdpError>;
    /// Where an unfinished sign-in stands.
    fn sign_in_state(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IdpError>;
    /// Forgets an unfinished sign-in.
    fn remove_sign_in(&self, key: &[u8; 32]) -> Result<(), IdpError>;
    /// Appends `bytes` to the value kept under `key` beside the sign-in states (starting it when
    /// there is none), atomically: of appends made at once, none is lost (a merge in sled, a
    /// row lock in SQL). What a session started (its refresh families, its clients) is noted so.
    fn append_sign_in(&self, key: [u8; 32], bytes: &[u8]) -> Result<(), IdpError>;
    /// Forgets the value kept under `key` and returns it, atomically: an append landing after
    /// it starts a new value, for the next take.
    fn take_sign_in(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IdpError>;

    /// Keeps a back-channel logout record (a client's registration, a delivery waiting) under
    /// `key`, durably.
    fn put_backchannel(&self, key: &[u8], value: &[u8]) -> Result<(), IdpError>;
    /// A back-channel logout record.
    fn backchannel(&self, key: &[u8]) -> Result<Option<Vec<u8>>, IdpError>;
    /// Forgets a back-channel logout record, durably.
    fn remove_backchannel(&self, key: &[u8]) -> Result<(), IdpError>;
    /// The back-channel logout records whose keys start with `prefix`, in key order.
    fn backchannel_records(&self, prefix: &[u8]) -> Result<Records, IdpError>;

    /// Numbers a change of the directory (versions 1, 2, … in the order of the calls, never
    /// reused): `key` names what changed (`court:<code>`, `user:<sub>`). The stores call it
    /// themselves after every write of a court, a user or a device (a device's change is its
    /// owner's), so every path that changes the directory is numbered.
    fn note_change(&self, key: &str) -> Result<u64, IdpError>;
    /// The changes after version `since`, each key once with its latest version, by version,
    /// and the latest version of all.
    fn changes_since(&self, since: u64) -> Result<(Vec<(u64, String)>, u64), IdpError>;
    /// The last version applied from directory updates of `source` (0: none).
    fn applied_version(&self, source: &str) -> Result<u64, IdpError>;
    /// Keeps the last version applied from `source`, durably.
    fn set_applied_version(&self, source: &str, version: u64) -> Result<(), IdpError>;
}

/// The change key of a court.
pub(crate) fn court_change(code: &CourtCode) -> String {
    format!("court:{code}")
}

/// The change key of a user (and of their devices).
pub(crate) fn user_change(sub: &SubjectId) -> String {
    format!("user:{sub}")
}

/// The changes after `since` from a log of `(version, key)` in version order: each key once,
/// with its latest version, by version.
pub(crate) fn latest_changes(log: impl Iterator<Item = (u64, String)>) -> Vec<(u64, String)> {
    let mut latest: HashMap<String, u64> = HashMap::new();
    for (v, k) in log {
        latest.insert(k, v);
    }
    let mut out: Vec<(u64, String)> = latest.into_iter().map(|(k, v)| (v, k)).collect();
    out.sort();
    out
}

/// The refusal for an update that would change a user's keys.
pub(crate) fn keys_changed(before: &User, after: &User) -> Option<IdpError> {
    (before.sub != after.sub || before.login != after.login)
        .then(|| IdpError::Directory("a user's subject id and sign-in name cannot change".into()))
}

/// A [`Store`] in memory, for tests: nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    codes: Mutex<HashMap<[u8; 32], CodeRecord>>,
    families: Mutex<HashMap<FamilyId, RefreshFamily>>,
    revoked: Mutex<HashMap<String, UnixTime>>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    lockouts: Mutex<HashMap<String, Vec<u8>>>,
    courts: Mutex<HashMap<CourtCode, Court>>,
    /// Users by subject id, and subject ids by sign-in name, under one lock.
    users: Mutex<(HashMap<SubjectId, User>, HashMap<String, SubjectId>)>,
    clients: Mutex<HashMap<String, Client>>,
    devices: Mutex<HashMap<[u8; 32], Device>>,
    client_keys: Mutex<HashMap<String, ClientKeys>>,
    /// Assertion `jti`s by client id and `jti`, with when they may be forgotten.
    assertions: Mutex<HashMap<(String, String), UnixTime>>,
    sign_ins: Mutex<HashMap<[u8; 32], Vec<u8>>>,
    backchannel: Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
    /// The directory's change log: the latest version, and the key of each version.
    changes: Mutex<(u64, std::collections::BTreeMap<u64, String>)>,
    /// The last version applied from each source.
    applied: Mutex<HashMap<String, u64>>,
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
    fn put_device(&self, device: &Device) -> Result<(), IdpError> {
        lock(&self.devices)?.insert(device.fingerprint, device.clone());
        self.note_change(&user_change(&device.owner)).map(drop)
    }

    fn device_by_fingerprint(&self, fingerprint: &[u8; 32]) -> Result<Option<Device>, IdpError> {
        Ok(lock(&self.devices)?.get(fingerprint).cloned())
    }

    fn devices(&self) -> Result<Vec<Device>, IdpError> {
        Ok(lock(&self.devices)?.values().cloned().collect())
    }

    fn remove_device(&self, fingerprint: &[u8; 32]) -> Result<(), IdpError> {
        let gone = lock(&self.devices)?.remove(fingerprint);
        match gone {
            Some(d) => self.note_change(&user_change(&d.owner)).map(drop),
            None => Ok(()),
        }
    }

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

    fn family(&self, id: &FamilyId) -> Result<Option<RefreshFamily>, IdpError> {
        Ok(lock(&self.families)?.get(id).cloned())
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

    fn update_session(
        &self,
        key: &[u8; 32],
        f: Update<'_, Session>,
    ) -> Result<Option<Session>, IdpError> {
        update(&self.sessions, key, f)
    }

    fn account_sessions(&self, sub: &SubjectId) -> Result<Vec<([u8; 32], Session)>, IdpError> {
        Ok(lock(&self.sessions)?
            .iter()
            .filter(|(_, s)| s.identity.as_ref().is_some_and(|i| &i.sub == sub))
            .map(|(k, s)| (*k, s.clone()))
            .collect())
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

    fn put_court(&self, court: &Court) -> Result<(), IdpError> {
        lock(&self.courts)?.insert(court.code.clone(), court.clone());
        self.note_change(&court_change(&court.code)).map(drop)
    }

    fn court(&self, code: &CourtCode) -> Result<Option<Court>, IdpError> {
        Ok(lock(&self.courts)?.get(code).cloned())
    }

    fn courts(&self) -> Result<Vec<Court>, IdpError> {
        Ok(lock(&self.courts)?.values().cloned().collect())
    }

    fn insert_user(&self, user: &User) -> Result<(), IdpError> {
        let mut guard = lock(&self.users)?;
        let (by_sub, by_login) = &mut *guard;
        if by_sub.contains_key(&user.sub) {
            return Err(IdpError::Directory(format!(
                "user `{}` is already in the directory",
                user.sub
            )));
        }
        if by_login.contains_key(&user.login) {
            return Err(IdpError::Directory(format!(
                "sign-in name `{}` is taken",
                user.login
            )));
        }
        by_login.insert(user.login.clone(), user.sub.clone());
        by_sub.insert(user.sub.clone(), user.clone());
        drop(guard);
        self.note_change(&user_change(&user.sub)).map(drop)
    }

    fn update_user(&self, sub: &SubjectId, f: Update<'_, User>) -> Result<Option<User>, IdpError> {
        let mut guard = lock(&self.users)?;
        let Some(rec) = guard.0.get_mut(sub) else {
            return Ok(None);
        };
        let before = rec.clone();
        let after = f(&before);
        if let Some(e) = keys_changed(&before, &after) {
            return Err(e);
        }
        *rec = after;
        drop(guard);
        self.note_change(&user_change(sub))?;
        Ok(Some(before))
    }

    fn user(&self, sub: &SubjectId) -> Result<Option<User>, IdpError> {
        Ok(lock(&self.users)?.0.get(sub).cloned())
    }

    fn user_by_login(&self, login: &str) -> Result<Option<User>, IdpError> {
        let guard = lock(&self.users)?;
        Ok(guard.1.get(login).and_then(|sub| guard.0.get(sub)).cloned())
    }

    fn users(&self) -> Result<Vec<User>, IdpError> {
        Ok(lock(&self.users)?.0.values().cloned().collect())
    }

    fn put_client(&self, client: &Client) -> Result<(), IdpError> {
        lock(&self.clients)?.insert(client.id.clone(), client.clone());
        Ok(())
    }

    fn client(&self, id: &str) -> Result<Option<Client>, IdpError> {
        Ok(lock(&self.clients)?.get(id).cloned())
    }

    fn clients(&self) -> Result<Vec<Client>, IdpError> {
        Ok(lock(&self.clients)?.values().cloned().collect())
    }

    fn put_client_keys(&self, client_id: &str, keys: &ClientKeys) -> Result<(), IdpError> {
        lock(&self.client_keys)?.insert(client_id.to_owned(), keys.clone());
        Ok(())
    }

    fn client_keys(&self, client_id: &str) -> Result<Option<ClientKeys>, IdpError> {
        Ok(lock(&self.client_keys)?.get(client_id).cloned())
    }

    fn note_assertion(
        &self,
        client_id: &str,
        jti: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, IdpError> {
        let mut seen = lock(&self.assertions)?;
        seen.retain(|_, u| now < *u);
        let key = (client_id.to_owned(), jti.to_owned());
        if seen.contains_key(&key) {
            return Ok(false);
        }
        seen.insert(key, until);
        Ok(true)
    }

    fn put_sign_in(&self, key: [u8; 32], state: Vec<u8>) -> Result<(), IdpError> {
        lock(&self.sign_ins)?.insert(key, state);
        Ok(())
    }

    fn sign_in_state(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IdpError> {
        Ok(lock(&self.sign_ins)?.get(key).cloned())
    }

    fn remove_sign_in(&self, key: &[u8; 32]) -> Result<(), IdpError> {
        lock(&self.sign_ins)?.remove(key);
        Ok(())
    }

    fn append_sign_in(&self, key: [u8; 32], bytes: &[u8]) -> Result<(), IdpError> {
        lock(&self.sign_ins)?
            .entry(key)
            .or_default()
            .extend_from_slice(bytes);
        Ok(())
    }

    fn take_sign_in(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IdpError> {
        Ok(lock(&self.sign_ins)?.remove(key))
    }

    fn put_backchannel(&self, key: &[u8], value: &[u8]) -> Result<(), IdpError> {
        lock(&self.backchannel)?.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn backchannel(&self, key: &[u8]) -> Result<Option<Vec<u8>>, IdpError> {
        Ok(lock(&self.backchannel)?.get(key).cloned())
    }

    fn remove_backchannel(&self, key: &[u8]) -> Result<(), IdpError> {
        lock(&self.backchannel)?.remove(key);
        Ok(())
    }

    fn backchannel_records(&self, prefix: &[u8]) -> Result<Records, IdpError> {
        Ok(lock(&self.backchannel)?
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    fn note_change(&self, key: &str) -> Result<u64, IdpError> {
        let mut log = lock(&self.changes)?;
        log.0 += 1;
        let v = log.0;
        log.1.insert(v, key.to_owned());
        Ok(v)
    }

    fn changes_since(&self, since: u64) -> Result<(Vec<(u64, String)>, u64), IdpError> {
        let log = lock(&self.changes)?;
        let after = log
            .1
            .range(since.saturating_add(1)..)
            .map(|(v, k)| (*v, k.clone()));
        Ok((latest_changes(after), log.0))
    }

    fn applied_version(&self, source: &str) -> Result<u64, IdpError> {
        Ok(lock(&self.applied)?.get(source).copied().unwrap_or(0))
    }

    fn set_applied_version(&self, source: &str, version: u64) -> Result<(), IdpError> {
        lock(&self.applied)?.insert(source.to_owned(), version);
        Ok(())
    }
}
