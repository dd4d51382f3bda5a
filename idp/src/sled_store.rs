//! The [`Store`] on sled (the `store` feature): one database, a tree per record kind, records
//! on the core wire codec, races decided by compare-and-swap, every write flushed before it
//! returns, but for refresh rotations: those are made durable by their audit events and
//! flushed here at checkpoints (see [`Store::journals_rotations`]), or share a group flush (see
//! [`Store::update_family_deferred`]).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tianping_core::{CourtCode, SubjectId, UnixTime};

use crate::IdpError;
use crate::client::Client;
use crate::client_auth::ClientKeys;
use crate::device::Device;
use crate::directory::{Court, User};
use crate::grants::{CodeRecord, FamilyId, RefreshFamily};
use crate::lockout::LockoutState;
use crate::records;
use crate::session::Session;
use crate::store::{
    Flushed, Records, Store, TryUpdate, Update, court_change, keys_changed, latest_changes,
    user_change,
};

/// A [`Store`] in a sled database folder.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    codes: sled::Tree,
    families: sled::Tree,
    revoked: sled::Tree,
    sessions: sled::Tree,
    /// Signed-in sessions by account: subject id, a zero byte, the session's key.
    account_sessions: sled::Tree,
    lockouts: sled::Tree,
    courts: sled::Tree,
    users: sled::Tree,
    logins: sled::Tree,
    clients: sled::Tree,
    /// Devices by their certificate's fingerprint.
    devices: sled::Tree,
    client_keys: sled::Tree,
    /// Client assertions' `jti`s: client id, a zero byte, the `jti`; the value is when the
    /// entry may be forgotten (milliseconds, big-endian).
    assertions: sled::Tree,
    sign_ins: sled::Tree,
    /// Back-channel logout: clients' registrations and deliveries waiting.
    backchannel: sled::Tree,
    /// The directory's change log: each version (big-endian) with the key of what changed;
    /// `meta` keeps the latest version.
    changes: sled::Tree,
    /// The latest change version (`version`), and the last version applied from each source
    /// (`applied:<source>`), each big-endian.
    meta: sled::Tree,
    group: Arc<GroupFlush>,
}

/// Flushes shared by deferred updates: one thread runs sled's flush while anyone waits for
/// one, and wakes every waiter whose writes came before that flush started.
#[derive(Debug)]
struct GroupFlush {
    db: sled::Db,
    state: Mutex<FlushState>,
    cv: Condvar,
    running: AtomicBool,
}

#[derive(Debug, Default)]
struct FlushState {
    /// Flushes started and finished so far.
    started: u64,
    finished: u64,
    /// The highest flush number a waiter needs.
    wanted: u64,
    /// Why a flush failed (every later wait fails too).
    failed: Option<String>,
    waiters: Vec<(u64, Waker)>,
}

fn lock_state(m: &Mutex<FlushState>) -> MutexGuard<'_, FlushState> {
    // Every update under the lock leaves the state consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `meta` key of the audit log's index before which every refresh rotation's event is
/// durable in this store (big-endian), see [`Store::checkpoint_rotations`].
const ROTATIONS_FLUSHED: &[u8] = b"rotations_flushed";

/// The longest the flush thread keeps the store open while nobody waits.
const IDLE: Duration = Duration::from_millis(20);

fn run_flushes(group: &Weak<GroupFlush>) {
    while let Some(g) = group.upgrade() {
        let mut st = lock_state(&g.state);
        if st.wanted <= st.started {
            drop(g.cv.wait_timeout(st, IDLE));
            continue;
        }
        st.started += 1;
        let n = st.started;
        drop(st);
        let result = g.db.flush();
        let mut st = lock_state(&g.state);
        st.finished = n;
        if let Err(e) = result {
            st.failed = Some(e.to_string());
        }
        let failed = st.failed.is_some();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut st.waiters)
            .into_iter()
            .partition(|(target, _)| failed || *target <= n);
        st.waiters = waiting;
        drop(st);
        for (_, w) in ready {
            w.wake();
        }
    }
}

/// Completes once the flush numbered `target` has finished.
struct FlushWait {
    group: Arc<GroupFlush>,
    target: u64,
}

impl Future for FlushWait {
    type Output = Result<(), IdpError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = lock_state(&self.group.state);
        if let Some(e) = &st.failed {
            return Poll::Ready(Err(IdpError::Store(format!("flush: {e}"))));
        }
        if st.finished >= self.target {
            return Poll::Ready(Ok(()));
        }
        // Only a waiter that raises what is wanted wakes the flush thread: one that wants no
        // more than an earlier waiter is covered by that one's wake-up (the thread checks what
        // is wanted again after every flush), so a group of waiters costs one wake-up.
        let raised = self.target > st.wanted;
        st.wanted = st.wanted.max(self.target);
        if !st
            .waiters
            .iter()
            .any(|(t, w)| *t == self.target && w.will_wake(cx.waker()))
        {
            st.waiters.push((self.target, cx.waker().clone()));
        }
        drop(st);
        if raised {
            self.group.cv.notify_one();
        }
        Poll::Pending
    }
}

/// The index entry of a signed-in session under its account.
fn account_session_key(sub: &SubjectId, key: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(sub.as_str().len() + 33);
    k.extend_from_slice(sub.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

fn err(e: sled::Error) -> IdpError {
    IdpError::Store(e.to_string())
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, IdpError> {
        let db = sled::Config::new().path(dir).open().map_err(err)?;
        let tree = |name: &str| db.open_tree(name).map_err(err);
        Ok(Self {
            codes: tree("codes")?,
            families: tree("families")?,
            revoked: tree("revoked")?,
            sessions: tree("sessions")?,
            account_sessions: tree("account_sessions")?,
            lockouts: tree("lockouts")?,
            courts: tree("courts")?,
            users: tree("users")?,
            logins: tree("logins")?,
            clients: tree("clients")?,
            devices: tree("devices")?,
            client_keys: tree("client_keys")?,
            assertions: tree("assertions")?,
            sign_ins: tree("sign_ins")?,
            backchannel: tree("backchannel")?,
            changes: tree("changes")?,
            meta: tree("meta")?,
            group: Arc::new(GroupFlush {
                db: db.clone(),
                state: Mutex::new(FlushState::default()),
                cv: Condvar::new(),
                running: AtomicBool::new(false),
            }),
            db,
        })
    }

    fn put(&self, tree: &sled::Tree, key: &[u8], value: Vec<u8>) -> Result<(), IdpError> {
        tree.insert(key, value).map_err(err)?;
        self.flush()
    }

    fn flush(&self) -> Result<(), IdpError> {
        self.db.flush().map(drop).map_err(err)
    }

    fn get<T>(
        tree: &sled::Tree,
        key: &[u8],
        decode: fn(&[u8]) -> Result<T, IdpError>,
    ) -> Result<Option<T>, IdpError> {
        tree.get(key).map_err(err)?.map(|b| decode(&b)).transpose()
    }

    fn all<T>(
        tree: &sled::Tree,
        decode: fn(&[u8]) -> Result<T, IdpError>,
    ) -> Result<Vec<T>, IdpError> {
        tree.iter()
            .values()
            .map(|v| decode(&v.map_err(err)?))
            .collect()
    }

    /// Applies `f` to the record under `key` by compare-and-swap, retrying when another writer
    /// came first; returns the record as it was before.
    fn update<T>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        f: Update<'_, T>,
        decode: fn(&[u8]) -> Result<T, IdpError>,
        encode: fn(&T) -> Result<Vec<u8>, IdpError>,
    ) -> Result<Option<T>, IdpError> {
        let before = self.update_unflushed(tree, key, f, decode, encode)?;
        if before.is_some() {
            self.flush()?;
        }
        Ok(before)
    }

    /// [`update`](Self::update) without the flush.
    fn update_unflushed<T>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        f: Update<'_, T>,
        decode: fn(&[u8]) -> Result<T, IdpError>,
        encode: fn(&T) -> Result<Vec<u8>, IdpError>,
    ) -> Result<Option<T>, IdpError> {
        loop {
            let Some(old) = tree.get(key).map_err(err)? else {
                return Ok(None);
            };
            let before = decode(&old)?;
            let new = encode(&f(&before))?;
            match tree
                .compare_and_swap(key, Some(&old), Some(new))
                .map_err(err)?
            {
                Ok(()) => return Ok(Some(before)),
                Err(_) => continue,
            }
        }
    }
}

impl Store for SledStore {
    fn put_device(&self, device: &Device) -> Result<(), IdpError> {
        self.put(&self.devices, &device.fingerprint, device.encode()?)?;
        self.note_change(&user_change(&device.owner)).map(drop)
    }

    fn device_by_fingerprint(&self, fingerprint: &[u8; 32]) -> Result<Option<Device>, IdpError> {
        Self::get(&self.devices, fingerprint, Device::decode)
    }

    fn devices(&self) -> Result<Vec<Device>, IdpError> {
        Self::all(&self.devices, Device::decode)
    }

    fn remove_device(&self, fingerprint: &[u8; 32]) -> Result<(), IdpError> {
        let gone = self.devices.remove(fingerprint).map_err(err)?;
        self.flush()?;
        match gone {
            Some(b) => self
                .note_change(&user_change(&Device::decode(&b)?.owner))
                .map(drop),
            None => Ok(()),
        }
    }

    fn put_code(&self, key: [u8; 32], record: CodeRecord) -> Result<(), IdpError> {
        self.put(&self.codes, &key, records::encode_code(&record)?)
    }

    fn update_code(
        &self,
        key: &[u8; 32],
        f: Update<'_, CodeRecord>,
    ) -> Result<Option<CodeRecord>, IdpError> {
        self.update(
            &self.codes,
            key,
            f,
            records::decode_code,
            records::encode_code,
        )
    }

    fn put_family(&self, family: RefreshFamily) -> Result<(), IdpError> {
        self.put(&self.families, &family.id, records::encode_family(&family)?)
    }

    fn update_family(
        &self,
        id: &FamilyId,
        f: Update<'_, RefreshFamily>,
    ) -> Result<Option<RefreshFamily>, IdpError> {
        self.update(
            &self.families,
            id,
            f,
            records::decode_family,
            records::encode_family,
        )
    }

    fn update_family_deferred(
        &self,
        id: &FamilyId,
        f: Update<'_, RefreshFamily>,
    ) -> Result<Option<RefreshFamily>, IdpError> {
        self.update_unflushed(
            &self.families,
            id,
            f,
            records::decode_family,
            records::encode_family,
        )
    }

    fn try_update_family_deferred(
        &self,
        id: &FamilyId,
        f: TryUpdate<'_, RefreshFamily>,
    ) -> Result<Option<RefreshFamily>, IdpError> {
        loop {
            let Some(old) = self.families.get(id).map_err(err)? else {
                return Ok(None);
            };
            let before = records::decode_family(&old)?;
            let new = records::encode_family(&f(&before)?)?;
            if self
                .families
                .compare_and_swap(id, Some(&old), Some(new))
                .map_err(err)?
                .is_ok()
            {
                return Ok(Some(before));
            }
        }
    }

    fn flushed(&self) -> Flushed {
        let g = &self.group;
        if !g.running.swap(true, Ordering::AcqRel) {
            let weak = Arc::downgrade(g);
            let spawned = std::thread::Builder::new()
                .name("idp-store-flush".into())
                .spawn(move || run_flushes(&weak));
            if let Err(e) = spawned {
                g.running.store(false, Ordering::Release);
                let e = IdpError::Store(format!("starting the store's flush thread: {e}"));
                return Box::pin(std::future::ready(Err(e)));
            }
        }
        // A flush that starts after this call covers every write made before it.
        let target = lock_state(&g.state).started + 1;
        Box::pin(FlushWait {
            group: Arc::clone(g),
            target,
        })
    }

    fn sync(&self) -> Result<(), IdpError> {
        self.flush()
    }

    fn journals_rotations(&self) -> bool {
        true
    }

    fn rotations_replay_from(&self) -> Result<Option<u64>, IdpError> {
        Ok(self
            .meta
            .get(ROTATIONS_FLUSHED)
            .map_err(err)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    fn checkpoint_rotations(&self, index: u64) -> Result<(), IdpError> {
        // Every rotation of an event before `index` was written before this flush began.
        self.flush()?;
        self.meta
            .fetch_and_update(ROTATIONS_FLUSHED, |old| {
                let old = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes);
                Some(old.max(index).to_be_bytes().to_vec())
            })
            .map_err(err)?;
        self.flush()
    }

    fn family(&self, id: &FamilyId) -> Result<Option<RefreshFamily>, IdpError> {
        Self::get(&self.families, id, records::decode_family)
    }

    fn revoke_token(&self, jti: &str, until: UnixTime) -> Result<(), IdpError> {
        let until = until.as_millis().to_be_bytes().to_vec();
        self.put(&self.revoked, jti.as_bytes(), until)
    }

    fn is_token_revoked(&self, jti: &str) -> Result<bool, IdpError> {
        self.revoked.contains_key(jti.as_bytes()).map_err(err)
    }

    fn session(&self, key: &[u8; 32]) -> Result<Option<Session>, IdpError> {
        match self.sessions.get(key).map_err(err)? {
            Some(b) => records::decode_session(&b).map(Some),
            None => Ok(None),
        }
    }

    fn put_session(&self, key: [u8; 32], session: Session) -> Result<(), IdpError> {
        // indexed first: a crash between the two leaves an index entry without its session
        // (skipped and dropped when read), never a session its account cannot find
        if let Some(i) = &session.identity {
            self.account_sessions
                .insert(account_session_key(&i.sub, &key), &[])
                .map_err(err)?;
        }
        self.put(&self.sessions, &key, records::encode_session(&session)?)
    }

    fn remove_session(&self, key: &[u8; 32]) -> Result<(), IdpError> {
        if let Some(old) = self.sessions.remove(key).map_err(err)? {
            // a record that no longer decodes leaves its index entry to be dropped when read
            if let Ok(Session {
                identity: Some(i), ..
            }) = records::decode_session(&old)
            {
                self.account_sessions
                    .remove(account_session_key(&i.sub, key))
                    .map_err(err)?;
            }
        }
        self.flush()
    }

    fn update_session(
        &self,
        key: &[u8; 32],
        f: Update<'_, Session>,
    ) -> Result<Option<Session>, IdpError> {
        let mut moved = None;
        let before = self.update(
            &self.sessions,
            key,
            &mut |s: &Session| {
                let next = f(s);
                let sub = |s: &Session| s.identity.as_ref().map(|i| i.sub.clone());
                moved = (sub(s) != sub(&next)).then(|| next.clone());
                next
            },
            records::decode_session,
            records::encode_session,
        )?;
        // a session signed in (or out) by an update is indexed anew
        if let (Some(old), Some(new)) = (&before, moved) {
            if let Some(i) = &old.identity {
                self.account_sessions
                    .remove(account_session_key(&i.sub, key))
                    .map_err(err)?;
            }
            if let Some(i) = &new.identity {
                self.account_sessions
                    .insert(account_session_key(&i.sub, key), &[])
                    .map_err(err)?;
            }
            self.flush()?;
        }
        Ok(before)
    }

    fn account_sessions(&self, sub: &SubjectId) -> Result<Vec<([u8; 32], Session)>, IdpError> {
        let mut prefix = sub.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for entry in self.account_sessions.scan_prefix(&prefix).keys() {
            let entry = entry.map_err(err)?;
            let Some(key) = entry
                .get(prefix.len()..)
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
            else {
                continue;
            };
            match self.session(&key)? {
                Some(s) if s.identity.as_ref().is_some_and(|i| &i.sub == sub) => {
                    out.push((key, s));
                }
                // forgotten (or now another account's): the entry is stale
                _ => {
                    self.account_sessions.remove(&entry).map_err(err)?;
                }
            }
        }
        Ok(out)
    }

    fn lockout(&self, account: &str) -> Result<LockoutState, IdpError> {
        match self.lockouts.get(account.as_bytes()).map_err(err)? {
            Some(b) => Ok(LockoutState::decode(&b)?),
            None => Ok(LockoutState::default()),
        }
    }

    fn put_lockout(&self, account: &str, state: &LockoutState) -> Result<(), IdpError> {
        self.put(&self.lockouts, account.as_bytes(), state.encode())
    }

    fn put_court(&self, court: &Court) -> Result<(), IdpError> {
        self.put(
            &self.courts,
            court.code.as_str().as_bytes(),
            records::encode_court(court)?,
        )?;
        self.note_change(&court_change(&court.code)).map(drop)
    }

    fn court(&self, code: &CourtCode) -> Result<Option<Court>, IdpError> {
        Self::get(
            &self.courts,
            code.as_str().as_bytes(),
            records::decode_court,
        )
    }

    fn courts(&self) -> Result<Vec<Court>, IdpError> {
        Self::all(&self.courts, records::decode_court)
    }

    fn insert_user(&self, user: &User) -> Result<(), IdpError> {
        let value = records::encode_user(user)?;
        let sub = user.sub.as_str().as_bytes();
        let login = user.login.as_bytes();
        let done = (&self.users, &self.logins).transaction(|(users, logins)| {
            let taken =
                |what: String| ConflictableTransactionError::Abort(IdpError::Directory(what));
            if users.get(sub)?.is_some() {
                return Err(taken(format!(
                    "user `{}` is already in the directory",
                    user.sub
                )));
            }
            if logins.get(login)?.is_some() {
                return Err(taken(format!("sign-in name `{}` is taken", user.login)));
            }
            users.insert(sub, value.as_slice())?;
            logins.insert(login, sub)?;
            Ok(())
        });
        match done {
            Ok(()) => {
                self.flush()?;
                self.note_change(&user_change(&user.sub)).map(drop)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(err(e)),
        }
    }

    fn update_user(&self, sub: &SubjectId, f: Update<'_, User>) -> Result<Option<User>, IdpError> {
        let mut refused = None;
        let before = self.update(
            &self.users,
            sub.as_str().as_bytes(),
            &mut |u: &User| {
                let next = f(u);
                refused = keys_changed(u, &next);
                if refused.is_some() { u.clone() } else { next }
            },
            records::decode_user,
            records::encode_user,
        )?;
        match refused {
            Some(e) => Err(e),
            None => {
                if before.is_some() {
                    self.note_change(&user_change(sub))?;
                }
                Ok(before)
            }
        }
    }

    fn user(&self, sub: &SubjectId) -> Result<Option<User>, IdpError> {
        Self::get(&self.users, sub.as_str().as_bytes(), records::decode_user)
    }

    fn user_by_login(&self, login: &str) -> Result<Option<User>, IdpError> {
        match self.logins.get(login.as_bytes()).map_err(err)? {
            Some(sub) => Self::get(&self.users, &sub, records::decode_user),
            None => Ok(None),
        }
    }

    fn users(&self) -> Result<Vec<User>, IdpError> {
        Self::all(&self.users, records::decode_user)
    }

    fn put_client(&self, client: &Client) -> Result<(), IdpError> {
        self.put(
            &self.clients,
            client.id.as_bytes(),
            records::encode_client(client)?,
        )
    }

    fn client(&self, id: &str) -> Result<Option<Client>, IdpError> {
        Self::get(&self.clients, id.as_bytes(), records::decode_client)
    }

    fn clients(&self) -> Result<Vec<Client>, IdpError> {
        Self::all(&self.clients, records::decode_client)
    }

    fn put_client_keys(&self, client_id: &str, keys: &ClientKeys) -> Result<(), IdpError> {
        self.put(
            &self.client_keys,
            client_id.as_bytes(),
            records::encode_client_keys(keys)?,
        )
    }

    fn client_keys(&self, client_id: &str) -> Result<Option<ClientKeys>, IdpError> {
        Self::get(
            &self.client_keys,
            client_id.as_bytes(),
            records::decode_client_keys,
        )
    }

    fn note_assertion(
        &self,
        client_id: &str,
        jti: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, IdpError> {
        let mut prefix = client_id.as_bytes().to_vec();
        prefix.push(0);
        let mut key = prefix.clone();
        key.extend_from_slice(jti.as_bytes());
        let value = until.as_millis().to_be_bytes();
        let passed = |v: &[u8]| {
            <[u8; 8]>::try_from(v).map_or(true, |b| u64::from_be_bytes(b) <= now.as_millis())
        };
        // the client's entries past their time go (there are as many as it made in an
        // assertion's life)
        for entry in self.assertions.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(err)?;
            if passed(&v) && *k != *key {
                self.assertions.remove(k).map_err(err)?;
            }
        }
        let mut current: Option<sled::IVec> = None;
        loop {
            match self
                .assertions
                .compare_and_swap(&key, current.as_ref(), Some(&value[..]))
                .map_err(err)?
            {
                Ok(()) => break,
                Err(e) => match e.current {
                    Some(v) if !passed(&v) => return Ok(false),
                    other => current = other,
                },
            }
        }
        self.flush()?;
        Ok(true)
    }

    fn put_sign_in(&self, key: [u8; 32], state: Vec<u8>) -> Result<(), IdpError> {
        self.put(&self.sign_ins, &key, state)
    }

    fn sign_in_state(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IdpError> {
        Ok(self.sign_ins.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn remove_sign_in(&self, key: &[u8; 32]) -> Result<(), IdpError> {
        self.sign_ins.remove(key).map_err(err)?;
        self.flush()
    }

    fn append_sign_in(&self, key: [u8; 32], bytes: &[u8]) -> Result<(), IdpError> {
        // a compare-and-swap loop in sled: a concurrent append makes this one start again
        self.sign_ins
            .fetch_and_update(key, |old| {
                let mut v = old.map(<[u8]>::to_vec).unwrap_or_default();
                v.extend_from_slice(bytes);
                Some(v)
            })
            .map_err(err)?;
        self.flush()
    }

    fn take_sign_in(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IdpError> {
        let old = self.sign_ins.remove(key).map_err(err)?;
        self.flush()?;
        Ok(old.map(|v| v.to_vec()))
    }

    fn put_backchannel(&self, key: &[u8], value: &[u8]) -> Result<(), IdpError> {
        self.put(&self.backchannel, key, value.to_vec())
    }

    fn backchannel(&self, key: &[u8]) -> Result<Option<Vec<u8>>, IdpError> {
        Ok(self.backchannel.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn remove_backchannel(&self, key: &[u8]) -> Result<(), IdpError> {
        self.backchannel.remove(key).map_err(err)?;
        self.flush()
    }

    fn backchannel_records(&self, prefix: &[u8]) -> Result<Records, IdpError> {
        self.backchannel
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(err)?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn note_change(&self, key: &str) -> Result<u64, IdpError> {
        let next = self
            .meta
            .update_and_fetch(b"version", |old| {
                let n = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes);
                Some(n.saturating_add(1).to_be_bytes().to_vec())
            })
            .map_err(err)?;
        let v = next
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        self.put(&self.changes, &v.to_be_bytes(), key.as_bytes().to_vec())?;
        Ok(v)
    }

    fn changes_since(&self, since: u64) -> Result<(Vec<(u64, String)>, u64), IdpError> {
        let latest = self
            .meta
            .get(b"version")
            .map_err(err)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let mut log = Vec::new();
        for item in self.changes.range(since.saturating_add(1).to_be_bytes()..) {
            let (k, v) = item.map_err(err)?;
            let version = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| IdpError::Store("a change version is not 8 bytes".into()))?;
            let key = String::from_utf8(v.to_vec())
                .map_err(|_| IdpError::Store("a change key is not UTF-8".into()))?;
            log.push((version, key));
        }
        Ok((latest_changes(log.into_iter()), latest))
    }

    fn applied_version(&self, source: &str) -> Result<u64, IdpError> {
        Ok(self
            .meta
            .get(format!("applied:{source}").as_bytes())
            .map_err(err)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    fn set_applied_version(&self, source: &str, version: u64) -> Result<(), IdpError> {
        self.put(
            &self.meta,
            format!("applied:{source}").as_bytes(),
            version.to_be_bytes().to_vec(),
        )
    }
}
