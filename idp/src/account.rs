//! An account's browser sessions as an administrator sees and ends them (`tianping idp user
//! sessions|logout`), and what each session started: the clients given tokens in it and its
//! refresh families.
//!
//! A session is shown by a handle, the first 16 hex digits of its store key (itself the SHA-256
//! of the session id): enough to tell sessions apart, never a working cookie. What a session
//! started is noted beside the sign-in states with atomic appends ([`Store::append_sign_in`]),
//! so two codes of one session redeemed at once are both noted, and taken in one step when the
//! session ends ([`Store::take_sign_in`]), so nothing noted meanwhile is dropped.

use tianping_core::{Acr, SubjectId, UnixTime};

use crate::IdpError;
use crate::grants::{FamilyId, GrantPolicy, Grants, sha256};
use crate::session::{Session, SessionPolicy, Sessions};
use crate::store::Store;

/// A signed-in session of an account, without its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSession {
    /// Its handle ([`session_handle`]).
    pub handle: String,
    /// When it began.
    pub created_at: UnixTime,
    /// When it was last used.
    pub last_seen: UnixTime,
    /// How strongly the account signed in.
    pub acr: Acr,
    /// The clients given tokens in it, in the order they first were.
    pub clients: Vec<String>,
}

/// What ending a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    /// Its handle ([`session_handle`]).
    pub handle: String,
    /// Its `sid` ([`session_sid`]), as its ID tokens and logout tokens name it.
    pub sid: String,
    /// Who was signed in, if anyone.
    pub sub: Option<SubjectId>,
    /// The clients given tokens in it.
    pub clients: Vec<String>,
    /// The refresh families started in it, now revoked with their access tokens.
    pub families: Vec<FamilyId>,
}

/// The `sid` of a session in the ID tokens issued in it and in its logout tokens: a labelled
/// hash of its store key (neither the id nor the handle).
pub fn session_sid(key: &[u8; 32]) -> String {
    use base64::Engine as _;
    let mut b = b"tianping-idp sid\0".to_vec();
    b.extend_from_slice(key);
    let h = sha256(&b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.get(..16).unwrap_or_default())
}

/// The handle a session is shown by: the first 16 hex digits of its store key.
pub fn session_handle(key: &[u8; 32]) -> String {
    hex::encode(key.get(..8).unwrap_or_default())
}

/// Where the clients given tokens in a session are noted (beside the sign-in states, under a
/// key no session id hashes to).
fn session_clients_key(session: &[u8; 32]) -> [u8; 32] {
    let mut b = b"tianping-idp session clients\0".to_vec();
    b.extend_from_slice(session);
    sha256(&b)
}

fn decode_clients(b: &[u8]) -> Result<Vec<String>, IdpError> {
    let bad = || IdpError::Store("a session's clients are not whole".into());
    let mut out: Vec<String> = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(2).ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes([
            *len.first().ok_or_else(bad)?,
            *len.get(1).ok_or_else(bad)?,
        ]));
        let (id, tail) = tail.split_at_checked(len).ok_or_else(bad)?;
        let id = std::str::from_utf8(id).map_err(|_| bad())?;
        if !out.iter().any(|c| c == id) {
            out.push(id.to_owned());
        }
        rest = tail;
    }
    Ok(out)
}

/// Notes that `client_id` was given tokens in the session whose store key is `session` (its
/// logout tells that client). Noting a client twice is harmless.
pub fn note_session_client(
    store: &dyn Store,
    session: &[u8; 32],
    client_id: &str,
) -> Result<(), IdpError> {
    let key = session_clients_key(session);
    if let Some(b) = store.sign_in_state(&key)? {
        if decode_clients(&b)?.iter().any(|c| c == client_id) {
            return Ok(());
        }
    }
    let len = u16::try_from(client_id.len())
        .map_err(|_| IdpError::Store("a client id longer than 65,535 bytes".into()))?;
    let mut entry = len.to_be_bytes().to_vec();
    entry.extend_from_slice(client_id.as_bytes());
    store.append_sign_in(key, &entry)
}

/// The clients given tokens in a session.
pub fn session_clients(store: &dyn Store, session: &[u8; 32]) -> Result<Vec<String>, IdpError> {
    match store.sign_in_state(&session_clients_key(session))? {
        Some(b) => decode_clients(&b),
        None => Ok(Vec::new()),
    }
}

/// The live signed-in sessions of `sub`, oldest first; sessions past their timeouts are
/// forgotten on the way (their refresh families live on until they expire or the account is
/// logged out).
pub fn account_sessions(
    store: &dyn Store,
    policy: SessionPolicy,
    sub: &SubjectId,
    now: UnixTime,
) -> Result<Vec<AccountSession>, IdpError> {
    let sessions = Sessions::new(store, policy);
    let mut out = Vec::new();
    for (key, s) in store.account_sessions(sub)? {
        if !sessions.live(&s, now) {
            store.remove_session(&key)?;
            continue;
        }
        let Session {
            identity: Some(identity),
            created_at,
            last_seen,
            ..
        } = s
        else {
            continue;
        };
        out.push(AccountSession {
            handle: session_handle(&key),
            created_at,
            last_seen,
            acr: identity.acr,
            clients: session_clients(store, &key)?,
        });
    }
    out.sort_by(|a, b| (a.created_at, &a.handle).cmp(&(b.created_at, &b.handle)));
    Ok(out)
}

/// Ends the session whose store key is `key`: forgets it, and revokes the refresh families
/// started in it (with their access tokens).
pub fn end_session(
    store: &dyn Store,
    grants: GrantPolicy,
    key: &[u8; 32],
) -> Result<EndedSession, IdpError> {
    let sub = store.session(key)?.and_then(|s| s.identity).map(|i| i.sub);
    store.remove_session(key)?;
    let families = Grants::new(store, grants).end_families_of_session(key)?;
    let clients = match store.take_sign_in(&session_clients_key(key))? {
        Some(b) => decode_clients(&b)?,
        None => Vec::new(),
    };
    Ok(EndedSession {
        handle: session_handle(key),
        sid: session_sid(key),
        sub,
        clients,
        families,
    })
}

/// Ends every session of `sub`, timed out ones included (their families are revoked too),
/// oldest first.
pub fn logout_account(
    store: &dyn Store,
    grants: GrantPolicy,
    sub: &SubjectId,
) -> Result<Vec<EndedSession>, IdpError> {
    let mut all = store.account_sessions(sub)?;
    all.sort_by_key(|(key, s)| (s.created_at, *key));
    let mut out = Vec::with_capacity(all.len());
    for (key, _) in all {
        let mut ended = end_session(store, grants, &key)?;
        ended.sub = Some(sub.clone());
        out.push(ended);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use crate::store::MemoryStore;
    use crate::tokens::tests::judge;

    #[test]
    fn clients_are_noted_once_and_taken_with_the_session() {
        let store = MemoryStore::new();
        let rng = SeededRandom::new(1);
        let now = UnixTime::from_secs(1_800_000_000);
        let sessions = Sessions::new(&store, SessionPolicy::default());
        let (id, _) = sessions.sign_in(None, judge(), now, &rng).unwrap();
        let key = crate::session::session_key(&id);
        for c in ["case-app", "docs", "case-app"] {
            note_session_client(&store, &key, c).unwrap();
        }
        assert_eq!(session_clients(&store, &key).unwrap(), ["case-app", "docs"]);
        let listed = account_sessions(&store, SessionPolicy::default(), &judge().sub, now).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].handle, session_handle(&key));
        assert!(!listed[0].handle.contains(&id));
        let ended = logout_account(&store, GrantPolicy::default(), &judge().sub).unwrap();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].clients, ["case-app", "docs"]);
        assert!(session_clients(&store, &key).unwrap().is_empty());
        assert!(store.account_sessions(&judge().sub).unwrap().is_empty());
    }

    #[test]
    fn torn_client_notes_are_refused() {
        assert!(decode_clients(&[0, 5, b'a']).is_err());
        assert!(decode_clients(&[0]).is_err());
        assert_eq!(decode_clients(&[0, 1, b'a', 0, 1, b'a']).unwrap(), ["a"]);
    }
}
