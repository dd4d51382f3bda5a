//! Prompt appends awaited as futures: the queue's committer commits them without a window and
//! wakes the tasks awaiting them; each future completes only once its event is durable (the
//! reopened log holds it), with no async runtime.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use tianping_audit::{AuditLog, Event};
use tianping_core::UnixTime;

const ORIGIN: &str = "tianping.localhost/audit/prompt";

fn event(i: u64) -> Event {
    let mut e = Event::new(UnixTime::from_millis(1_000 + i), "token.client_credentials");
    e.actor = format!("app-{}", i % 5);
    e.object = format!("jti-{i}");
    e
}

/// Wakes a parked thread, counting the wake-ups.
struct Unpark {
    thread: Thread,
    wakes: AtomicUsize,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Polls `f` to completion on this thread, parking between polls; returns its output and how
/// many times it returned `Pending`.
fn block_on<F: Future>(f: F, waker: &Arc<Unpark>) -> (F::Output, usize) {
    let w = Waker::from(Arc::clone(waker));
    let mut cx = Context::from_waker(&w);
    let mut f = pin!(f);
    let mut pending = 0;
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return (v, pending),
            Poll::Pending => {
                pending += 1;
                std::thread::park();
            }
        }
    }
}

#[test]
fn awaited_prompt_appends_are_durable_and_woken_by_the_committer() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::create(tmp.path(), ORIGIN).unwrap());
    // A window far longer than the test: only the prompt path commits within it.
    log.set_queue_window(Duration::from_secs(3600));
    let handles: Vec<_> = (0..6u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let waker = Arc::new(Unpark {
                    thread: std::thread::current(),
                    wakes: AtomicUsize::new(0),
                });
                let mut got = Vec::new();
                let mut pendings = 0;
                for i in 0..50u64 {
                    let e = event(t * 100 + i);
                    let q = log.append_prompt(&e).unwrap();
                    let receipt = q.receipts()[0];
                    let (r, pending) = block_on(q.durable(), &waker);
                    r.unwrap();
                    // Done means durable: the log counts it among its durable entries.
                    assert!(q.is_durable());
                    assert!(log.size() > receipt.index);
                    pendings += pending;
                    got.push((receipt.index, e));
                }
                // Every Pending was followed by a wake-up (the thread parks until one).
                assert!(waker.wakes.load(Ordering::SeqCst) >= pendings);
                got
            })
        })
        .collect();
    let mut all: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_by_key(|(i, _)| *i);
    assert_eq!(
        all.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..300).collect::<Vec<_>>()
    );
    drop(log);
    let log = AuditLog::open(tmp.path()).unwrap();
    assert_eq!(log.size(), 300);
    let report = log.verify(None, &mut |_, _| {}).unwrap();
    assert_eq!(report.entries, 300);
    for (i, e) in &all {
        let stored = log.get(*i).unwrap().unwrap();
        assert_eq!(&stored.event, e);
    }
}

#[test]
fn a_future_awaited_after_the_commit_is_ready_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::create(tmp.path(), ORIGIN).unwrap());
    let q = log.append_prompt(&event(1)).unwrap();
    q.wait().unwrap();
    let waker = Arc::new(Unpark {
        thread: std::thread::current(),
        wakes: AtomicUsize::new(0),
    });
    let (r, pending) = block_on(q.durable(), &waker);
    r.unwrap();
    assert_eq!(pending, 0);
    // A mirror refuses appends before anything is queued.
    let mtmp = tempfile::tempdir().unwrap();
    let mirror = Arc::new(AuditLog::open_mirror(mtmp.path(), None).unwrap());
    assert!(mirror.append_prompt(&event(2)).is_err());
    assert_eq!(mirror.size(), 0);
}
