//! One group commit for refresh grants: the rotations written to the store since the last group
//! and their `token.refresh` audit events are made durable together, by one thread, before any
//! of their answers is sent.
//!
//! A grant rotates its family in the store without a flush, then hands its audit event here
//! and awaits [`GrantCommits::commit`]. The committer thread takes every event handed over
//! since the group before it started, flushes the store (which covers every rotation written
//! before those events were handed over) and then appends the events to the audit log in one
//! call, committed there as one group (one sled batch, one flush); only then does it wake the
//! grants of the group. Compared with the store's shared flush and the log's own committer
//! awaited side by side, a group costs one thread wake-up instead of two and each grant one
//! task wake-up instead of two, and as the group takes both flushes, more grants gather in it.
//!
//! Crash safety is that of the two flushes: a grant is answered only after both have finished
//! for its group, so an acknowledged rotation (the old token rotated out, the family's new
//! current token) and its audit event survive a crash. A crash between the two leaves rotations
//! whose answers were never sent: their old tokens are rotated out (using one revokes the family,
//! as any reuse does), their audit events are missing, and no token of theirs was handed out.
//! A failure of either flush fails the group and every later one (the store and the log are
//! then in doubt, as the log itself refuses appends after a failed commit).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tianping_audit::{AuditLog, Event};

use crate::error::IdpError;
use crate::store::Store;

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
    /// Groups started and finished so far.
    started: u64,
    finished: u64,
    /// Why a group failed (every later commit fails too).
    failed: Option<String>,
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

impl GrantCommits {
    pub(super) fn new(store: Arc<dyn Store>, audit: Arc<AuditLog>) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                audit,
                state: Mutex::new(State::default()),
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
        st.pending.push(event);
        drop(st);
        if first {
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
    while let Some(s) = shared.upgrade() {
        let mut st = lock(&s.state);
        if st.pending.is_empty() {
            drop(s.cv.wait_timeout(st, IDLE));
            continue;
        }
        let events = std::mem::take(&mut st.pending);
        st.started += 1;
        let n = st.started;
        drop(st);
        // The store first: an audit event is never durable before its rotation.
        let result = s.store.sync().and_then(|()| {
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
    }
}
