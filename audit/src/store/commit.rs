//! Appends: events encoded on the callers' threads, committed in groups (one sled batch and one
//! `flush` per group).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use super::{
    AuditLog, RECORD_TARGET, SMALL_SPARE_CAPACITY, SMALL_SPARES, SPARE_BUFFERS, SPARE_CAPACITY,
    State, StoreError, key_of, lock,
};
use crate::event::{Event, EventError, MAX_EVENT_BYTES};
use crate::merkle::{self, Hash};
use crate::query::Receipt;
use crate::record;

/// One commit group: the calls committed by one sled batch and one `flush`.
#[derive(Default)]
pub(super) struct Group {
    /// The index of the group's first entry, or why the commit failed.
    done: OnceLock<Result<u64, String>>,
    /// For waiting on `done` without the log's lock (queued appends' tickets): the tasks
    /// awaiting [`Durable`], woken by `finish`.
    lock: Mutex<Vec<Waker>>,
    cv: Condvar,
}

impl Group {
    fn finish(&self, result: Result<u64, String>) {
        let _ = self.done.set(result);
        let wakers = std::mem::take(&mut *lock(&self.lock));
        self.cv.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    fn wait(&self) -> &Result<u64, String> {
        let mut guard = lock(&self.lock);
        loop {
            if let Some(r) = self.done.get() {
                return r;
            }
            guard = self
                .cv
                .wait(guard)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Queued events, each placed in the log's order with its index, on their way to being
/// durable (see [`AuditLog::append_queued`]).
#[must_use = "a queued event may not be durable yet: wait() says when it is"]
pub struct Queued {
    receipts: Receipts,
    group: Arc<Group>,
}

/// The receipts of one call: one held inline (a request's event), or a list.
enum Receipts {
    One(Receipt),
    Many(Vec<Receipt>),
}

impl Receipts {
    fn as_slice(&self) -> &[Receipt] {
        match self {
            Self::One(r) => std::slice::from_ref(r),
            Self::Many(v) => v,
        }
    }

    fn into_vec(self) -> Vec<Receipt> {
        match self {
            Self::One(r) => vec![r],
            Self::Many(v) => v,
        }
    }
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("receipts", &self.receipts.as_slice())
            .field("durable", &self.is_durable())
            .finish()
    }
}

impl Queued {
    /// The events' indices and leaf hashes, given when they were queued.
    pub fn receipts(&self) -> &[Receipt] {
        self.receipts.as_slice()
    }

    /// Whether the events are durable now (`false` also if their commit failed).
    pub fn is_durable(&self) -> bool {
        matches!(self.group.done.get(), Some(Ok(_)))
    }

    /// Blocks until the events are durable, or says why their commit failed (the log then
    /// refuses appends until reopened). From async code await [`durable`](Self::durable).
    pub fn wait(&self) -> Result<(), StoreError> {
        outcome(self.group.wait())
    }

    /// A future that completes once the events are durable (or with why their commit failed),
    /// woken by the thread that commits them: no thread waits for it. It needs no particular
    /// async runtime.
    pub fn durable(&self) -> Durable {
        Durable {
            group: Arc::clone(&self.group),
        }
    }
}

fn outcome(r: &Result<u64, String>) -> Result<(), StoreError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(StoreError::Poisoned(e.clone())),
    }
}

/// Completes once queued events are durable (see [`Queued::durable`]).
#[must_use = "a future does nothing unless awaited"]
pub struct Durable {
    group: Arc<Group>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("done", &self.group.done.get().is_some())
            .finish()
    }
}

impl Future for Durable {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.group.done.get() {
            return Poll::Ready(outcome(r));
        }
        let mut wakers = lock(&self.group.lock);
        // `finish` sets `done` before it takes the wakers under this lock: checked again here,
        // a result set meanwhile is seen, or this waker is among those it takes.
        if let Some(r) = self.group.done.get() {
            return Poll::Ready(outcome(r));
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The events of one `append_many` call, encoded back to back.
#[derive(Default)]
pub(super) struct Encoded {
    bytes: Vec<u8>,
    /// Where each event's bytes end in `bytes`.
    ends: Vec<usize>,
    leaves: Vec<Hash>,
    /// The call's own records (entry count, stored value), packed on the caller's thread when
    /// the call is large enough to fill records alone; empty for the committer to pack.
    packed: Vec<(u64, Vec<u8>)>,
}

/// The encodings of committed calls, kept for later calls to encode into (emptied, their
/// capacity kept). Without them a request's event costs its worker thread three allocations,
/// freed later by the committer's thread, and a large call's fresh buffer of a few hundred KiB
/// a page fault per 4 KiB.
#[derive(Default)]
pub(super) struct Spares {
    /// Calls of at most [`SMALL_CALL`] events, whole.
    small: Vec<Encoded>,
    /// The byte buffers of larger calls.
    large: Vec<Vec<u8>>,
}

/// The most events a call has to take a small spare (a request's one event, a sign-in's few).
const SMALL_CALL: usize = 4;

impl Spares {
    /// A spare for a call of `events` events, or a new one.
    fn take(spares: &Mutex<Self>, events: usize) -> Encoded {
        let mut s = lock(spares);
        let spare = if events <= SMALL_CALL {
            s.small.pop()
        } else {
            s.large.pop().map(|bytes| Encoded {
                bytes,
                ..Encoded::default()
            })
        };
        spare.unwrap_or_default()
    }

    /// Keeps what `batch`'s calls leave that the pools have room for; frees the rest.
    fn keep(spares: &Mutex<Self>, batch: Vec<Encoded>) {
        let mut s = lock(spares);
        for call in batch {
            let small =
                call.ends.capacity() <= SMALL_CALL && call.bytes.capacity() <= SMALL_SPARE_CAPACITY;
            if small && s.small.len() < SMALL_SPARES {
                s.small.push(call);
            } else if !small
                && s.large.len() < SPARE_BUFFERS
                && call.bytes.capacity() <= SPARE_CAPACITY
            {
                s.large.push(call.bytes);
            }
        }
    }
}

impl Encoded {
    /// Encodes `events` into a spare encoding (emptied here) or a new one.
    fn new(events: &[Event], spares: &Mutex<Spares>) -> Self {
        let mut e = Spares::take(spares, events.len());
        e.bytes.clear();
        e.ends.clear();
        e.leaves.clear();
        e.packed.clear();
        e.bytes.reserve(events.len() * 320);
        e.ends.reserve(events.len());
        e.leaves.reserve(events.len());
        for ev in events {
            let start = e.bytes.len();
            ev.encode_into(&mut e.bytes);
            e.leaves
                .push(merkle::leaf_hash(e.bytes.get(start..).unwrap_or_default()));
            e.ends.push(e.bytes.len());
        }
        e
    }

    /// Packs the call's own records when it holds at least half a record, so that packing
    /// runs on every caller's thread instead of only the committer's.
    fn pack(&mut self) {
        if self.bytes.len() < RECORD_TARGET / 2 {
            return;
        }
        let mut packer = record::Packer::default();
        let mut packed = Vec::new();
        let mut keep = |n: u64, value: &[u8]| packed.push((n, value.to_vec()));
        pack_entries(&mut packer, self.entries(), &mut keep);
        pack_rest(&mut packer, &mut keep);
        self.packed = packed;
    }

    /// Each event's bytes and leaf hash, in order.
    fn entries(&self) -> impl Iterator<Item = (&[u8], &Hash)> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| self.bytes.get(a..b).unwrap_or_default())
            .zip(&self.leaves)
    }
}

/// Adds entries to `packer`, handing each record that reaches [`RECORD_TARGET`] bytes to `emit`
/// (its entry count and stored value); the rest stays in the packer.
pub(super) fn pack_entries<'a>(
    packer: &mut record::Packer,
    entries: impl Iterator<Item = (&'a [u8], &'a Hash)>,
    emit: &mut impl FnMut(u64, &[u8]),
) {
    for (bytes, leaf) in entries {
        packer.push(bytes, leaf);
        if packer.body_len() >= RECORD_TARGET {
            pack_rest(packer, emit);
        }
    }
}

/// Hands what is in `packer` to `emit` as one record, if anything is.
pub(super) fn pack_rest(packer: &mut record::Packer, emit: &mut impl FnMut(u64, &[u8])) {
    if packer.len() > 0 {
        let n = packer.len() as u64;
        emit(n, packer.finish());
    }
}

impl AuditLog {
    /// Appends one event; returns once it is durable.
    pub fn append(&self, event: &Event) -> Result<Receipt, StoreError> {
        let mut r = self.append_many(std::slice::from_ref(event))?;
        r.pop()
            .ok_or_else(|| StoreError::Storage("no receipt for an appended event".into()))
    }

    /// Appends events in order, committed together with whatever other threads append at the
    /// same time; returns their receipts once all are durable.
    pub fn append_many(&self, events: &[Event]) -> Result<Vec<Receipt>, StoreError> {
        let (receipts, group) = self.enqueue(events, Mode::Wait)?;
        let mut st = lock(&self.state);
        loop {
            if let Some(result) = group.done.get() {
                result.clone().map_err(StoreError::Poisoned)?;
                return Ok(receipts.into_vec());
            }
            if st.committing {
                st = self
                    .cv
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            // Lead: commit everything pending (our own events are among them).
            st = self.commit_pending(st);
        }
    }

    /// Appends one event without waiting for it to be durable: it takes its index and its
    /// place in the log's order at once, and a commit that starts within the queue window
    /// (20 ms unless [`set_queue_window`](Self::set_queue_window) says otherwise) makes it
    /// durable together with everything queued or appended meanwhile. A crash loses at most
    /// the events not yet committed, never part of a record; [`Queued::wait`] blocks until the
    /// event is durable. Dropping the log commits what is still queued.
    ///
    /// For events whose effect may follow before they are durable (DESIGN §2 rule 6: the
    /// gateway's requests); sign-ins, tokens, transfers and administrative actions use
    /// [`append`](Self::append).
    pub fn append_queued(self: &Arc<Self>, event: &Event) -> Result<Queued, StoreError> {
        self.append_many_queued(std::slice::from_ref(event))
    }

    /// [`append_queued`](Self::append_queued) for several events in order.
    pub fn append_many_queued(self: &Arc<Self>, events: &[Event]) -> Result<Queued, StoreError> {
        self.queue(events, Mode::Window)
    }

    /// Appends one event for async code that must not answer before it is durable (sign-ins,
    /// tokens): like [`append`](Self::append), its commit starts as soon as no other commit
    /// runs (no queue window), grouped with whatever is appended meanwhile; unlike it, nothing
    /// blocks: await [`Queued::durable`] before acting on the event. The queue's committer
    /// thread makes the commits.
    pub fn append_prompt(self: &Arc<Self>, event: &Event) -> Result<Queued, StoreError> {
        self.append_many_prompt(std::slice::from_ref(event))
    }

    /// [`append_prompt`](Self::append_prompt) for several events in order.
    pub fn append_many_prompt(self: &Arc<Self>, events: &[Event]) -> Result<Queued, StoreError> {
        self.queue(events, Mode::Prompt)
    }

    fn queue(self: &Arc<Self>, events: &[Event], mode: Mode) -> Result<Queued, StoreError> {
        let (receipts, group) = self.enqueue(events, mode)?;
        if !self.flusher.swap(true, std::sync::atomic::Ordering::AcqRel) {
            let log = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("audit-queue".into())
                .spawn(move || flusher(&log))
                .map_err(|e| StoreError::Storage(format!("starting the queue's committer: {e}")))?;
        }
        Ok(Queued { receipts, group })
    }

    /// The longest a queued event waits before its commit starts (20 ms by default; at
    /// least 1 ms).
    pub fn set_queue_window(&self, window: std::time::Duration) {
        *lock(&self.queue_window) = window.max(std::time::Duration::from_millis(1));
    }

    /// Makes every event queued so far durable before returning.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let group = st.group.clone();
        while group.done.get().is_none() && (st.committing || !st.pending.is_empty()) {
            st = if st.committing {
                self.cv
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            } else {
                self.commit_pending(st)
            };
        }
        match &st.poisoned {
            Some(p) => Err(StoreError::Poisoned(p.clone())),
            None => Ok(()),
        }
    }

    /// Encodes `events` on the caller's thread and queues them for the next commit; their
    /// receipts (indices given now) and the group that will commit them.
    fn enqueue(&self, events: &[Event], mode: Mode) -> Result<(Receipts, Arc<Group>), StoreError> {
        if self.mirror {
            return Err(StoreError::IsMirror);
        }
        if events.is_empty() {
            return Ok((
                Receipts::Many(Vec::new()),
                Arc::new(Group::default()).finished(),
            ));
        }
        // Encoding and hashing happen here, on the caller's thread, outside the lock.
        let mut encoded = Encoded::new(events, &self.spare);
        // One event too large for `verify` to accept refuses the whole call, before any of
        // it is queued.
        let mut start = 0;
        for end in &encoded.ends {
            if end - start > MAX_EVENT_BYTES {
                return Err(EventError::TooLarge(end - start).into());
            }
            start = *end;
        }
        encoded.pack();
        let mut st = lock(&self.state);
        if let Some(p) = &st.poisoned {
            return Err(StoreError::Poisoned(p.clone()));
        }
        if let Some((index, reason)) = &st.damaged {
            return Err(StoreError::Damaged {
                index: *index,
                reason: reason.clone(),
            });
        }
        // Every earlier group is durable or being committed: this one starts after them.
        let first = st.leaves.len() as u64 + st.in_flight + st.pending_len;
        let receipts = match encoded.leaves.as_slice() {
            [leaf] => Receipts::One(Receipt {
                index: first,
                leaf: *leaf,
            }),
            leaves => Receipts::Many(
                leaves
                    .iter()
                    .zip(first..)
                    .map(|(leaf, index)| Receipt { index, leaf: *leaf })
                    .collect(),
            ),
        };
        st.pending_len += encoded.leaves.len() as u64;
        st.pending.push(encoded);
        let mut wake = false;
        if mode != Mode::Wait && st.queued_since.is_none() {
            st.queued_since = Some(std::time::Instant::now());
            wake = true;
        }
        if mode == Mode::Prompt && !st.prompt {
            st.prompt = true;
            wake = true;
        }
        if wake {
            self.cv.notify_all();
        }
        Ok((receipts, st.group.clone()))
    }

    /// Commits everything pending as one group, this thread leading; returns with the lock
    /// held again. Called only when no commit is running.
    fn commit_pending<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.committing = true;
        let batch = std::mem::take(&mut st.pending);
        st.in_flight = st.pending_len;
        st.pending_len = 0;
        st.queued_since = None;
        st.prompt = false;
        let this = std::mem::take(&mut st.group);
        let first = st.leaves.len() as u64;
        drop(st);
        let result = self.write_group(first, &batch);
        st = lock(&self.state);
        st.committing = false;
        st.in_flight = 0;
        match result {
            Ok(()) => {
                for h in batch.iter().flat_map(|e| &e.leaves) {
                    st.leaves.push(*h);
                    st.frontier.push(*h);
                }
                this.finish(Ok(first));
            }
            Err(e) => {
                let msg = e.to_string();
                st.poisoned = Some(msg.clone());
                this.finish(Err(msg.clone()));
                // Whatever queued meanwhile can no longer be given indices safely.
                st.pending.clear();
                st.pending_len = 0;
                st.queued_since = None;
                st.prompt = false;
                st.group.finish(Err(msg));
            }
        }
        self.cv.notify_all();
        drop(st);
        Spares::keep(&self.spare, batch);
        self.auto_checkpoint();
        lock(&self.state)
    }

    /// On drop: commits what is still queued (a crash instead loses it).
    pub(super) fn commit_queued_on_drop(&self) {
        let st = lock(&self.state);
        if !st.pending.is_empty() && !st.committing && st.poisoned.is_none() {
            drop(self.commit_pending(st));
        }
    }

    fn write_group(&self, first: u64, batch: &[Encoded]) -> Result<(), StoreError> {
        // A group becomes records of about `RECORD_TARGET` bytes before packing, written as
        // one atomic sled batch: sled rewrites a whole tree node per change, so huge values
        // cost quadratically.
        // Calls packed by their callers keep their records; the others are packed together.
        let mut sb = sled::Batch::default();
        let mut packer = record::Packer::default();
        let mut at = first;
        let mut put = |n: u64, value: &[u8]| {
            sb.insert(&key_of(at), value);
            at += n;
        };
        for call in batch {
            if call.packed.is_empty() {
                pack_entries(&mut packer, call.entries(), &mut put);
                continue;
            }
            pack_rest(&mut packer, &mut put);
            for (n, value) in &call.packed {
                put(*n, value);
            }
        }
        pack_rest(&mut packer, &mut put);
        self.batches.apply_batch(sb)?;
        self.db.flush()?;
        Ok(())
    }
}

impl Group {
    /// A group with nothing to commit, already done.
    fn finished(self: Arc<Self>) -> Arc<Self> {
        self.finish(Ok(0));
        self
    }
}

/// How an append waits for its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The caller commits or waits for the commit, blocking.
    Wait,
    /// The queue's committer commits it within the queue window.
    Window,
    /// The queue's committer commits it as soon as no other commit runs.
    Prompt,
}

/// The longest the queue's committer holds the log while it waits.
const HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// The queue's committer: starts a commit at the latest a window after the oldest queued
/// event, once no other commit runs. Holds the log only while it works or waits (at most
/// [`HOLD`]), and ends once the log is dropped.
fn flusher(log: &std::sync::Weak<AuditLog>) {
    while let Some(log) = log.upgrade() {
        let window = *lock(&log.queue_window);
        let st = lock(&log.state);
        if st.poisoned.is_some() {
            return;
        }
        let now = std::time::Instant::now();
        let due = if st.prompt {
            Some(now)
        } else {
            st.queued_since.map(|t| t + window)
        };
        match due {
            Some(due) if due <= now && !st.committing => drop(log.commit_pending(st)),
            _ => {
                // Never long: the log is held while waiting, and is dropped (its queue committed)
                // only once this lets go of it.
                let wait = due
                    .map_or(window, |d| d.saturating_duration_since(now).max(window / 8))
                    .min(HOLD);
                let _ = log
                    .cv
                    .wait_timeout(st, wait)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }
}
