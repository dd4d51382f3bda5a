//! The [`Store`] on sled (the `store` feature): one database, a tree per record kind, records
//! on the core wire codec, races decided by compare-and-swap, every write flushed before it
//! returns.

use std::path::Path;

use tianping_core::UnixTime;

use crate::IdpError;
use crate::grants::{CodeRecord, FamilyId, RefreshFamily};
use crate::lockout::LockoutState;
use crate::records;
use crate::session::Session;
use crate::store::{Store, Update};

/// A [`Store`] in a sled database folder.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    codes: sled::Tree,
    families: sled::Tree,
    revoked: sled::Tree,
    sessions: sled::Tree,
    lockouts: sled::Tree,
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
            lockouts: tree("lockouts")?,
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
                Ok(()) => {
                    self.flush()?;
                    return Ok(Some(before));
                }
                Err(_) => continue,
            }
        }
    }
}

impl Store for SledStore {
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
        self.put(&self.sessions, &key, records::encode_session(&session)?)
    }

    fn remove_session(&self, key: &[u8; 32]) -> Result<(), IdpError> {
        self.sessions.remove(key).map_err(err)?;
        self.flush()
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
}
