//! The send-stall timeout: a response the client does not take is not held forever.
//!
//! A client can stop taking a response and still look alive: on HTTP/2 by never opening its
//! flow-control window (SETTINGS_INITIAL_WINDOW_SIZE 0, no WINDOW_UPDATE) while answering PINGs,
//! on HTTP/3 by never reading the stream, on any TCP connection by not reading the socket. Each
//! would hold a request in progress, and so its connection and slot, for as long as it likes.
//! So a response that makes no progress for the body idle timeout is given up: the HTTP/2 or
//! HTTP/3 stream is reset, a TCP connection whose writes are blocked that long is closed. (An
//! HTTP/2 connection sweeps its streams every half timeout, so a stalled stream there is reset
//! within one and a half.)
//!
//! Progress is counted in pieces of at most [`PIECE`] bytes handed to the connection, so a
//! steady reader of a large body always makes progress well within the timeout; what is refused
//! is a reader slower than [`PIECE`] bytes per timeout.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use slab::Slab;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// The most response bytes handed to the connection at once (one default HTTP/2 frame).
pub(crate) const PIECE: usize = 16 * 1024;

/// Whether a response piece is waiting to be taken by the connection, and since when.
#[derive(Debug, Default)]
pub(crate) struct SendProgress {
    waiting: Mutex<Option<Instant>>,
}

tokio::task_local! {
    /// The progress of the HTTP/2 stream whose task is running, for its response body to report.
    static PROGRESS: Arc<SendProgress>;
}

impl SendProgress {
    /// The progress of the current HTTP/2 stream task, if it runs under [`SendStallExec`].
    pub(crate) fn current() -> Option<Arc<Self>> {
        PROGRESS.try_with(Arc::clone).ok()
    }

    /// A piece was handed to the connection; it waits until the body is polled again.
    pub(crate) fn handed(&self) {
        if let Ok(mut g) = self.waiting.lock() {
            *g = Some(Instant::now());
        }
    }

    /// The connection asks for more: the last piece was taken.
    pub(crate) fn taken(&self) {
        if let Ok(mut g) = self.waiting.lock() {
            *g = None;
        }
    }

    fn waiting_since(&self) -> Option<Instant> {
        self.waiting.lock().ok().and_then(|g| *g)
    }
}

/// The HTTP/2 stream tasks of one connection and their progress. One sweep for the connection,
/// every half body idle timeout, gives up the streams whose response has stalled for the whole
/// timeout: one timer per connection, where a timer per stream was registered and cancelled
/// again for nearly every request.
///
/// A stalled stream is given up between one and one and a half timeouts after its last piece
/// was handed to the connection.
pub(crate) struct Streams {
    within: Duration,
    metrics: Arc<Metrics>,
    live: Mutex<Slab<Live>>,
}

/// A stream task in progress.
struct Live {
    progress: Arc<SendProgress>,
    /// Set once the task is spawned (just after it is listed).
    abort: Option<AbortHandle>,
    /// Given up by a sweep: counted once, however long the task takes to drop.
    given_up: bool,
}

impl Streams {
    pub(crate) fn new(within: Duration, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            within,
            metrics,
            live: Mutex::new(Slab::new()),
        })
    }

    /// The executor hyper runs this connection's stream tasks with.
    pub(crate) fn exec(self: &Arc<Self>) -> SendStallExec {
        SendStallExec(Arc::clone(self))
    }

    /// Sweeps the connection's streams until dropped: poll it beside the connection for as
    /// long as the connection runs (its stream tasks end with it).
    pub(crate) async fn sweep(&self) {
        let every = (self.within / 2).max(Duration::from_millis(1));
        loop {
            tokio::time::sleep(every).await;
            self.give_up_stalled(Instant::now());
        }
    }

    /// Ends every stream task whose piece has waited `within` by `now` (its future is dropped,
    /// which resets the stream with RST_STREAM(CANCEL)).
    fn give_up_stalled(&self, now: Instant) {
        let mut stalled = Vec::new();
        {
            let mut live = self.live();
            for (_, l) in live.iter_mut() {
                let late = l
                    .progress
                    .waiting_since()
                    .is_some_and(|t| t + self.within <= now);
                if late && !l.given_up {
                    if let Some(abort) = &l.abort {
                        l.given_up = true;
                        stalled.push(abort.clone());
                    }
                }
            }
        }
        // Outside the lock: an aborted task that drops at once takes it to leave the list.
        for abort in stalled {
            abort.abort();
            self.metrics.refusal("send_stall");
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Slab<Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes a stream task off its connection's list when it ends or is dropped.
struct Listed {
    streams: Arc<Streams>,
    key: usize,
    progress: Arc<SendProgress>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        let mut live = self.streams.live();
        if live
            .get(self.key)
            .is_some_and(|l| Arc::ptr_eq(&l.progress, &self.progress))
        {
            live.remove(self.key);
        }
    }
}

/// The executor of HTTP/2 stream tasks: each runs with its [`SendProgress`], listed in its
/// connection's [`Streams`], whose sweep ends it once its response stalls.
#[derive(Clone)]
pub(crate) struct SendStallExec(Arc<Streams>);

impl<F> hyper::rt::Executor<F> for SendStallExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let progress = Arc::new(SendProgress::default());
        let key = self.0.live().insert(Live {
            progress: Arc::clone(&progress),
            abort: None,
            given_up: false,
        });
        let listed = Listed {
            streams: Arc::clone(&self.0),
            key,
            progress: Arc::clone(&progress),
        };
        // Not under the lock: a runtime shutting down drops the task inside `spawn`.
        let task = tokio::spawn(PROGRESS.scope(Arc::clone(&progress), async move {
            let _listed = listed;
            fut.await;
        }));
        if let Some(l) = self.0.live().get_mut(key) {
            if Arc::ptr_eq(&l.progress, &progress) {
                l.abort = Some(task.abort_handle());
            }
        }
    }
}

/// A connection's stream whose writes fail with `TimedOut` once blocked for `within`: a client
/// that stops reading the socket gets its connection closed.
pub(crate) struct WriteStall<S> {
    inner: S,
    within: Duration,
    /// Armed while a write is blocked; kept between uses, so a busy connection allocates it once.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<S> WriteStall<S> {
    pub(crate) fn new(inner: S, within: Duration) -> Self {
        Self {
            inner,
            within,
            timer: None,
            armed: false,
        }
    }

    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        let deadline = Instant::now() + self.within;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing for the body idle timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
