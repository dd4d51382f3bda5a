//! Back-channel logout (OpenID Back-Channel Logout 1.0) over a [`Store`]: clients' registered
//! `backchannel_logout_uri`s, and the durable queue of logout tokens to deliver, each retried
//! with bounded backoff ([`retry_delay`]) and surviving a restart. The tokens themselves are
//! made in [`crate::logout_token`]; the sending is the caller's ([`LogoutSender`], with the
//! `server` feature).
//!
//! A session's end queues one delivery for each client given tokens in it that registered a
//! back-channel URI: RP-initiated logout, `tianping idp user logout`, an account disabled.

use serde::{Deserialize, Serialize};
use tianping_core::UnixTime;

use crate::IdpError;
use crate::account::EndedSession;
use crate::logout_token::retry_delay;
use crate::random::{Random, bytes};
use crate::store::Store;

/// What a client registered for back-channel logout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackchannelRegistration {
    /// `backchannel_logout_uri`: an `https` URL without a fragment.
    pub uri: String,
    /// `backchannel_logout_session_required`: the client needs `sid` in the token (it is
    /// always sent for a session's end).
    pub session_required: bool,
}

impl BackchannelRegistration {
    /// Checks the URI: `https`, a host, no fragment, no spaces, at most 2,048 bytes.
    pub fn check(&self) -> Result<(), IdpError> {
        let bad = |why: &str| {
            IdpError::Directory(format!(
                "backchannel_logout_uri {}: {why}",
                crate::error::quoted(&self.uri)
            ))
        };
        let rest = self
            .uri
            .strip_prefix("https://")
            .ok_or_else(|| bad("not an https URL"))?;
        if self.uri.len() > 2048 {
            return Err(bad("longer than 2,048 bytes"));
        }
        if self.uri.contains('#') {
            return Err(bad("a fragment is not allowed"));
        }
        if self
            .uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("spaces are not allowed"));
        }
        if rest.split(['/', '?']).next().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        Ok(())
    }
}

const CLIENT_PREFIX: &[u8] = b"client\0";
const QUEUE_PREFIX: &[u8] = b"queue\0";

fn client_key(client_id: &str) -> Vec<u8> {
    [CLIENT_PREFIX, client_id.as_bytes()].concat()
}

/// Keeps (or with `None` forgets) a client's back-channel registration, checked first.
pub fn register_backchannel(
    store: &dyn Store,
    client_id: &str,
    registration: Option<&BackchannelRegistration>,
) -> Result<(), IdpError> {
    match registration {
        Some(r) => {
            r.check()?;
            let v = serde_json::to_vec(r).map_err(|_| IdpError::Internal("registration"))?;
            store.put_backchannel(&client_key(client_id), &v)
        }
        None => store.remove_backchannel(&client_key(client_id)),
    }
}

/// A client's back-channel registration, if it made one.
pub fn backchannel_registration(
    store: &dyn Store,
    client_id: &str,
) -> Result<Option<BackchannelRegistration>, IdpError> {
    store
        .backchannel(&client_key(client_id))?
        .map(|b| {
            serde_json::from_slice(&b)
                .map_err(|_| IdpError::Store("a back-channel registration does not read".into()))
        })
        .transpose()
}

/// A logout token waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogout {
    /// The client told (the token's `aud`).
    pub client_id: String,
    /// Where it is POSTed.
    pub uri: String,
    /// The token's `sub`.
    pub sub: Option<String>,
    /// The token's `sid`.
    pub sid: Option<String>,
    /// The token's `jti`, the same at every attempt.
    pub jti: String,
    /// Attempts that failed so far.
    pub failed: u32,
    /// When the next attempt is due, milliseconds since the epoch.
    pub due_ms: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

fn queue_key(jti: &str) -> Vec<u8> {
    [QUEUE_PREFIX, jti.as_bytes()].concat()
}

fn keep(store: &dyn Store, p: &PendingLogout) -> Result<(), IdpError> {
    let v = serde_json::to_vec(p).map_err(|_| IdpError::Internal("pending logout"))?;
    store.put_backchannel(&queue_key(&p.jti), &v)
}

/// Queues, durably, a logout token for each client of an ended session that registered a
/// back-channel URI; the deliveries queued.
pub fn queue_logouts(
    store: &dyn Store,
    ended: &EndedSession,
    now: UnixTime,
    rng: &dyn Random,
) -> Result<Vec<PendingLogout>, IdpError> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for client in &ended.clients {
        let Some(reg) = backchannel_registration(store, client)? else {
            continue;
        };
        let jti = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes::<16>(rng)?);
        let p = PendingLogout {
            client_id: client.clone(),
            uri: reg.uri,
            sub: ended.sub.as_ref().map(ToString::to_string),
            sid: Some(ended.sid.clone()),
            jti,
            failed: 0,
            due_ms: now.as_millis(),
            last_error: None,
        };
        keep(store, &p)?;
        out.push(p);
    }
    Ok(out)
}

/// Every delivery waiting, due or not, oldest `jti` key first.
pub fn pending_logouts(store: &dyn Store) -> Result<Vec<PendingLogout>, IdpError> {
    store
        .backchannel_records(QUEUE_PREFIX)?
        .into_iter()
        .map(|(_, v)| {
            serde_json::from_slice(&v)
                .map_err(|_| IdpError::Store("a queued logout token does not read".into()))
        })
        .collect()
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The client took the token; the delivery is done.
    Delivered,
    /// It failed and is tried again at the time given (milliseconds since the epoch).
    Retry(u64),
    /// It failed for the last time and is given up.
    GaveUp,
}

/// Records the outcome of an attempt at `p` made at `now`: done and forgotten, due again after
/// its backoff, or given up after the last attempt (forgotten).
pub fn record_attempt(
    store: &dyn Store,
    p: &PendingLogout,
    result: Result<(), String>,
    now: UnixTime,
) -> Result<Attempt, IdpError> {
    match result {
        Ok(()) => {
            store.remove_backchannel(&queue_key(&p.jti))?;
            Ok(Attempt::Delivered)
        }
        Err(e) => {
            let failed = p.failed.saturating_add(1);
            match retry_delay(failed) {
                Some(d) => {
                    let due = now.saturating_add(d).as_millis();
                    let next = PendingLogout {
                        failed,
                        due_ms: due,
                        last_error: Some(e),
                        ..p.clone()
                    };
                    keep(store, &next)?;
                    Ok(Attempt::Retry(due))
                }
                None => {
                    store.remove_backchannel(&queue_key(&p.jti))?;
                    Ok(Attempt::GaveUp)
                }
            }
        }
    }
}

#[cfg(feature = "server")]
pub use delivery::LogoutSender;

#[cfg(feature = "server")]
mod delivery {
    use std::future::Future;
    use std::pin::Pin;

    /// Sends a logout token: POSTs `form` (`application/x-www-form-urlencoded`) to `uri` over
    /// HTTPS with the zone's trust; `Ok` on a 2xx answer, else why not.
    pub trait LogoutSender: Send + Sync {
        /// The POST.
        fn post<'a>(
            &'a self,
            uri: &'a str,
            form: String,
        ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use crate::store::MemoryStore;

    fn ended(clients: &[&str]) -> EndedSession {
        EndedSession {
            handle: "h".into(),
            sid: "sid-1".into(),
            sub: Some("judge-0001".parse().unwrap()),
            clients: clients.iter().map(|c| (*c).to_owned()).collect(),
            families: vec![],
        }
    }

    #[test]
    fn only_registered_clients_are_queued_and_retries_end() {
        let store = MemoryStore::new();
        let rng = SeededRandom::new(1);
        let now = UnixTime::from_secs(1_800_000_000);
        let reg = BackchannelRegistration {
            uri: "https://case.example/bcl".into(),
            session_required: true,
        };
        register_backchannel(&store, "case-app", Some(&reg)).unwrap();
        for bad in [
            "http://case.example/x",
            "https://case.example/x#f",
            "https:///x",
        ] {
            let r = BackchannelRegistration {
                uri: bad.into(),
                session_required: false,
            };
            assert!(
                register_backchannel(&store, "other", Some(&r)).is_err(),
                "{bad}"
            );
        }
        assert_eq!(backchannel_registration(&store, "other").unwrap(), None);
        let q = queue_logouts(&store, &ended(&["case-app", "docs"]), now, &rng).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].sid.as_deref(), Some("sid-1"));
        assert_eq!(pending_logouts(&store).unwrap(), q);
        let mut p = q[0].clone();
        let mut at = now;
        for n in 1..crate::logout_token::MAX_ATTEMPTS {
            match record_attempt(&store, &p, Err("down".into()), at).unwrap() {
                Attempt::Retry(due) => {
                    assert!(due > at.as_millis());
                    at = UnixTime::from_millis(due);
                }
                other => panic!("attempt {n}: {other:?}"),
            }
            p = pending_logouts(&store).unwrap()[0].clone();
            assert_eq!(p.failed, n);
        }
        assert_eq!(
            record_attempt(&store, &p, Err("down".into()), at).unwrap(),
            Attempt::GaveUp
        );
        assert!(pending_logouts(&store).unwrap().is_empty());
        let q = queue_logouts(&store, &ended(&["case-app"]), now, &rng).unwrap();
        assert_eq!(
            record_attempt(&store, &q[0], Ok(()), now).unwrap(),
            Attempt::Delivered
        );
        assert!(pending_logouts(&store).unwrap().is_empty());
    }
}
