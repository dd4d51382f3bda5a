//! The send-stall timeout: a response the client does not take is not held forever.
//!
//! A client can stop taking a response and still look alive: on HTTP/2 by never opening its
//! flow-control window (SETTINGS_INITIAL_WINDOW_SIZE 0, no WINDOW_UPDATE) while answering PINGs,
//! on HTTP/3 by never reading the stream, on any TCP connection by not reading the socket. Each
//! would hold a request in progress, and so its connection and slot, for as long as it likes.
//! So a response that makes no progress for the body idle timeout is given up: the HTTP/2 or
//! HTTP/3 stream is reset, a TCP connection whose writes are blocked that long is closed.
//!
//! Progress is counted in pieces of at most [`PIECE`] bytes handed to the connection, so a
//! steady reader of a large body always makes progress well within the timeout; what is refused
//! is a reader slower than [`PIECE`] bytes per timeout.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

    /// Resolves once a piece has waited `within` without being taken.
    async fn stalled(&self, within: Duration) {
        loop {
            match self.waiting_since() {
                Some(t) if t + within <= Instant::now() => return,
                Some(t) => tokio::time::sleep_until(t + within).await,
                // Nothing waits: look again later (a piece handed meanwhile waits at most `within`).
                None => tokio::time::sleep(within).await,
            }
        }
    }
}

/// The executor of HTTP/2 stream tasks: each runs with its [`SendProgress`], and is dropped
/// (which resets the stream with RST_STREAM(CANCEL)) once its response stalls for `within`.
#[derive(Clone)]
pub(crate) struct SendStallExec {
    pub(crate) within: Duration,
    pub(crate) metrics: Arc<Metrics>,
}

impl<F> hyper::rt::Executor<F> for SendStallExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let progress = Arc::new(SendProgress::default());
        let (within, metrics) = (self.within, self.metrics.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = PROGRESS.scope(progress.clone(), fut) => {}
                () = progress.stalled(within) => metrics.refusal("send_stall"),
            }
        });
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
