//! One group commit for refresh grants: the rotations written to the store since the last group
//! and their `token.refresh` audit events are made durable together, by one thread, before any
//! of their answers is sent.
//!
//! A grant rotates its family in the store without a flush, then hands its audit event here
//! and awaits [`GrantCommits::commit`]. The committer thread takes every event handed over
//! since the group before it started and appends them to the audit log in one call, committed
//! there as one group (one sled batch, one flush); only then does it wake the grants of the
//! group. A group costs one thread wake-up and each grant one task wake-up. Under concurrent
//! grants a group waits up to [`LINGER`] after its first event for more (up to [`GATHER`]).
//!
//! How the rotations themselves become durable depends on the store:
//!
//! - A store that [journals rotations](Store::journals_rotations) (sled) is not flushed per
//!   group: each event carries what its rotation changed (the family, the SHA-256 of the token
//!   rotated out and of the new one, the access token's expiry; [`journal`]), so the audit
//!   log's flush makes the group's rotations durable too, one fsync stream instead of two. The
//!   store is flushed at checkpoints (about once a second under load, and when grants stop for a
//!   moment), each noting in the store the log's size before which every rotation is flushed
//!   there. On start ([`GrantCommits::new`]) the rotations of the events after that point are
//!   made again where the store lost them ([`replay`]): a family whose current token is the
//!   one an event rotated out is rotated exactly as the grant did; any other (already rotated,
//!   rotated further, revoked) is left alone, so replaying twice changes nothing.
//! - Any other store is flushed ([`Store::sync`]) before each group's append, so an audit
//!   event is never durable before its rotation.
//!
//! Crash safety: a grant is answered only after its group's flush(es), so an acknowledged
//! rotation (the old token rotated out, the family's new current token) and its audit event
//! survive a crash, through the replay for a journalling store. A rotation whose answer was
//! never sent may survive (written by sled's own background flush, or its event durable and
//! replayed): its old token is then rotated out (using one revokes the family, as any reuse
//! does) and no token of it was handed out. Revocations (a reuse, a logout, RFC 7009) do not go
//! through here: they are flushed before their answers, and a replay never undoes one. A
//! failure of a flush or of the replay fails the group and every later one (the store and the
//! log are then in doubt, as the log itself refuses appends after a failed commit).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tianping_audit::{AuditLog, Event};
use tianping_core::UnixTime;

use crate::error::IdpError;
use crate::grants::{FamilyId, Grants, JournalledRotation};
use crate::store::Store;

/// The attributes of a `token.refresh` event that record its rotation.
const FAMILY: &str = "refresh_family";
const FROM: &str = "refresh_from";
const TO: &str = "refresh_to";
const ACCESS_EXPIRES: &str = "access_expires";

/// Records in `event` (a `token.refresh` event whose actor is the client and whose object is
/// the access token's `jti`) what the rotation changed, as hex and milliseconds.
pub(super) fn journal(event: &mut Event, r: &JournalledRotation) {
    let a = &mut event.attributes;
    a.insert(FAMILY.into(), hex::encode(r.family));
    a.insert(FROM.into(), hex::encode(r.from));
    a.insert(TO.into(), hex::encode(r.to));
    a.insert(ACCESS_EXPIRES.into(), r.access.1.as_millis().to_string());
}

/// The rotation a `token.refresh` event of this provider records, if it records one.
pub(super) fn journalled(event: &Event) -> Option<JournalledRotation> {
    if event.action != "token.refresh" || event.component != "idp" || event.outcome != "ok" {
        return None;
    }
    let a = &event.attributes;
    let bytes = |k: &str| hex::decode(a.get(k)?).ok();
    Some(JournalledRotation {
        family: FamilyId::try_from(bytes(FAMILY)?).ok()?,
        from: <[u8; 32]>::try_from(bytes(FROM)?).ok()?,
        to: <[u8; 32]>::try_from(bytes(TO)?).ok()?,
        client_id: event.actor.clone(),
        time: event.time,
        access: (
            event.object.clone(),
            UnixTime::from_millis(a.get(ACCESS_EXPIRES)?.parse().ok()?),
        ),
    })
}

/// Makes again, in a journalling store, the rotations of the audit events from its last
/// checkpoint on that it lost, then checkpoints it at the log's end; the rotations made again.
pub(super) fn replay(store: &dyn Store, audit: &AuditLog) -> Result<usize, IdpError> {
    let end = audit.size();
    let Some(from) = store.rotations_replay_from()? else {
        // never checkpointed: every rotation before was flushed per group (or there is none)
        store.checkpoint_rotations(end)?;
        return Ok(0);
    };
    let grants = Grants::new(store, crate::grants::GrantPolicy::default());
    let mut made = 0;
    for record in audit.entries(from) {
        let record = record.map_err(|e| IdpError::Store(format!("audit: {e}")))?;
        if let Some(r) = journalled(&record.event)
            && grants.replay_rotation(&r)?
        {
            made += 1;
        }
    }
    store.checkpoint_rotations(end)?;
    Ok(made)
}

/// The refresh grants' group committer of one provider; the thread starts with the first grant
/// and ends a moment after the provider is dropped.
pub(super) struct GrantCommits {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    audit: Arc<AuditLog>,
    state: Mutex<State>,
    /// Wakes the committer when a group has something to commit.
    cv: Condvar,
}

#[derive(Default)]
struct State {
    /// The events handed over for the next group.
    pending: Vec<Event>,
    /// When the first of them was.
    first_at: Option<Instant>,
    /// How many events the last group took.
    last_group: usize,
    /// Groups started and finished so far.
    started: u64,
    finished: u64,
    /// Why a group failed (every later commit fails too).
    failed: Option<String>,
    /// Rotations appended to the log since the store's last checkpoint (journalling stores).
    unflushed: usize,
    /// Grants waiting, with the group that covers each.
    waiters: Vec<(u64, Waker)>,
    /// Whether the committer thread runs.
    running: bool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update under the lock leaves the state consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The longest the committer keeps the provider's parts alive while nothing is handed over.
const IDLE: Duration = Duration::from_millis(20);

/// A group this large starts at once.
const GATHER: usize = 16;

/// The longest a group waits for more grants after its first, when the group before it had
/// more than one: sharing a flush costs each grant less CPU (the flush's hand-offs between
/// threads cost more than its write), which, on cores that are busy, gives more grants per
/// second at lower latency than flushing at once (bench/idp/README.md). A lone grant (the
/// group before it had one) never waits.
const LINGER: Duration = Duration::from_micros(500);

/// How often, at most, a journalling store is checkpointed while grants go on.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

impl GrantCommits {
    /// The committer of a provider over `store` and `audit`. A journalling store first gets
    /// back the rotations it lost ([`replay`]); if that fails, every grant's commit fails.
    pub(super) fn new(store: Arc<dyn Store>, audit: Arc<AuditLog>) -> Self {
        let mut state = State::default();
        if store.journals_rotations()
            && let Err(e) = replay(&*store, &audit)
        {
            state.failed = Some(format!("replaying the refresh rotations: {e}"));
        }
        Self {
            shared: Arc::new(Shared {
                store,
                audit,
                state: Mutex::new(state),
                cv: Condvar::new(),
            }),
        }
    }

    /// Completes once every store update made before this call and `event` are durable.
    pub(super) fn commit(&self, event: Event) -> Commit {
        let s = &self.shared;
        let mut st = lock(&s.state);
        if let Some(e) = &st.failed {
            let e = IdpError::Store(format!("group commit: {e}"));
            return Commit(Waiting::Done(Some(Err(e))));
        }
        if !st.running {
            let weak = Arc::downgrade(s);
            let spawned = std::thread::Builder::new()
                .name("idp-grant-commit".into())
                .spawn(move || run(&weak));
            if let Err(e) = spawned {
                let e = IdpError::Store(format!("starting the grants' committer: {e}"));
                return Commit(Waiting::Done(Some(Err(e))));
            }
            st.running = true;
        }
        // The next group to start takes this event, and flushes the store after taking it.
        let target = st.started + 1;
        let first = st.pending.is_empty();
        if first {
            st.first_at = Some(Instant::now());
        }
        st.pending.push(event);
        let full = st.pending.len() == GATHER;
        drop(st);
        if first || full {
            s.cv.notify_one();
        }
        Commit(Waiting::For {
            shared: Arc::clone(s),
            target,
        })
    }
}

/// What [`GrantCommits::commit`] returns.
pub(super) struct Commit(Waiting);

enum Waiting {
    /// Refused at once (the thread could not start, or an earlier group failed).
    Done(Option<Result<(), IdpError>>),
    /// Waiting for the group numbered `target`.
    For { shared: Arc<Shared>, target: u64 },
}

impl Future for Commit {
    type Output = Result<(), IdpError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Waiting::Done(r) => Poll::Ready(
                r.take()
                    .unwrap_or(Err(IdpError::Internal("a group commit polled again"))),
            ),
            Waiting::For { shared, target } => {
                let mut st = lock(&shared.state);
                if st.finished >= *target {
                    return Poll::Ready(Ok(()));
                }
                if let Some(e) = &st.failed {
                    return Poll::Ready(Err(IdpError::Store(format!("group commit: {e}"))));
                }
                if !st
                    .waiters
                    .iter()
                    .any(|(t, w)| t == target && w.will_wake(cx.waker()))
                {
                    st.waiters.push((*target, cx.waker().clone()));
                }
                Poll::Pending
            }
        }
    }
}

/// The committer: one group at a time, each everything handed over while the one before ran.
fn run(shared: &Weak<Shared>) {
    let mut checkpointed = Instant::now();
    while let Some(s) = shared.upgrade() {
        let journals = s.store.journals_rotations();
        let mut st = lock(&s.state);
        if st.pending.is_empty() {
            let (mut st, waited) =
                s.cv.wait_timeout(st, IDLE)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Grants stopped for a moment: the store's rotations are flushed now rather than
            // replayed at the next start.
            if waited.timed_out() && st.pending.is_empty() && st.unflushed > 0 {
                st.unflushed = 0;
                drop(st);
                checkpoint(&s, &mut checkpointed);
            }
            continue;
        }
        // Under concurrent grants a small group waits a moment for more (see LINGER).
        if let Some(at) = st.first_at.filter(|_| st.last_group > 1) {
            let until = at + LINGER;
            loop {
                let now = Instant::now();
                if st.pending.len() >= GATHER || now >= until {
                    break;
                }
                st =
                    s.cv.wait_timeout(st, until - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
            }
        }
        st.first_at = None;
        let events = std::mem::take(&mut st.pending);
        st.last_group = events.len();
        st.started += 1;
        let n = st.started;
        st.unflushed += events.len();
        let due = journals && checkpointed.elapsed() >= CHECKPOINT_EVERY;
        if due {
            st.unflushed = 0;
        }
        drop(st);
        // Without a journal the store first: an audit event is never durable before its
        // rotation. With one the event's flush makes the rotation durable.
        let synced = if journals { Ok(()) } else { s.store.sync() };
        let result = synced.and_then(|()| {
            s.audit
                .append_many(&events)
                .map(drop)
                .map_err(|e| IdpError::Store(format!("audit: {e}")))
        });
        let mut st = lock(&s.state);
        if let Err(e) = result {
            st.failed = Some(e.to_string());
        }
        // Set after `failed`: a grant that sees its group finished sees its failure too.
        if st.failed.is_none() {
            st.finished = n;
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
        if due && !failed {
            checkpoint(&s, &mut checkpointed);
        }
    }
}

/// Flushes a journalling store and notes the log's size as its flushed point: every rotation
/// whose event is in the log was written to the store before.
fn checkpoint(s: &Shared, at: &mut Instant) {
    *at = Instant::now();
    if let Err(e) = s.store.checkpoint_rotations(s.audit.size()) {
        lock(&s.state).failed = Some(format!("checkpoint: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::{GrantPolicy, sha256};
    use crate::random::SeededRandom;
    use crate::store::MemoryStore;

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    fn rotation_of(family: FamilyId, from: [u8; 32], to: [u8; 32]) -> JournalledRotation {
        JournalledRotation {
            family,
            from,
            to,
            client_id: "case-app".into(),
            time: NOW,
            access: ("at-1".into(), NOW.saturating_add(Duration::from_secs(300))),
        }
    }

    #[test]
    fn a_refresh_event_carries_its_rotation_and_no_other_event_does() {
        let r = rotation_of([7; 16], [1; 32], [2; 32]);
        let mut e = Event::new(NOW, "token.refresh");
        e.component = "idp".into();
        e.actor = "case-app".into();
        e.object = "at-1".into();
        e.outcome = "ok".into();
        journal(&mut e, &r);
        assert_eq!(journalled(&e), Some(r));
        assert_eq!(e.attributes[FAMILY], "07".repeat(16));
        let mut other = e.clone();
        other.action = "token.client_credentials".into();
        assert_eq!(journalled(&other), None);
        let mut cut = e.clone();
        cut.attributes.insert(TO.into(), "02".repeat(31));
        assert_eq!(journalled(&cut), None);
    }

    #[test]
    fn a_replayed_rotation_is_made_once_and_never_over_a_later_change() {
        let store = MemoryStore::default();
        let g = Grants::new(&store, GrantPolicy::default());
        let rng = SeededRandom::new(5);
        let (first, id) = g
            .start_family(
                "case-app",
                crate::tokens::tests::judge(),
                vec!["cases.read".into()],
                NOW,
                &rng,
            )
            .unwrap();
        let from = sha256(first.as_bytes());
        let r = rotation_of(id, from, [9; 32]);
        assert!(g.replay_rotation(&r).unwrap());
        let f = store.family(&id).unwrap().unwrap();
        assert_eq!(f.current, [9; 32]);
        assert!(f.rotated.contains(&from));
        assert_eq!(f.access_tokens, vec![r.access.clone()]);
        // again: already made, nothing changes
        assert!(!g.replay_rotation(&r).unwrap());
        assert_eq!(store.family(&id).unwrap().unwrap(), f);
        // the first token is now rotated out: presenting it revokes the family
        let e = g.use_refresh(&first, "case-app", NOW, &rng).unwrap_err();
        assert_eq!(e, IdpError::RefreshReused);
        // a revoked family is never rotated by a replay, nor one of another client
        let revoked = store.family(&id).unwrap().unwrap();
        assert!(revoked.revoked);
        assert!(
            !g.replay_rotation(&rotation_of(id, [9; 32], [10; 32]))
                .unwrap()
        );
        assert_eq!(store.family(&id).unwrap().unwrap(), revoked);
        let (t2, id2) = g
            .start_family(
                "case-app",
                crate::tokens::tests::judge(),
                vec!["cases.read".into()],
                NOW,
                &rng,
            )
            .unwrap();
        let mut foreign = rotation_of(id2, sha256(t2.as_bytes()), [11; 32]);
        foreign.client_id = "other-app".into();
        assert!(!g.replay_rotation(&foreign).unwrap());
    }
}
