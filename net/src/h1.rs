//! The HTTP/1.1 framing check in front of hyper: every request head on the connection (the first
//! and each keep-alive one) is read into a buffer within the limits and checked with
//! [`crate::parse_head`] before hyper sees a byte of it; bodies pass through counted
//! (`Content-Length`) or checked chunk by chunk ([`crate::ChunkedChecker`]).
//!
//! A refused head is replaced by a fixed internal request, so hyper answers it in order (after any
//! pipelined requests before it) and closes the connection; no byte of the refused request reaches
//! hyper. Which request that is, and its status, travel out of band in [`H1Refusals`] (by its
//! place in the connection's order), never in a header a client could forge. A malformed chunked
//! body, found mid-stream, fails the body read and the pipeline answers 400 and closes.
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::forward::forward_write;
use crate::head::{ChunkedChecker, Framing, HeadError, HeadLimits, HeadParser};
use crate::metrics::Metrics;
use crate::path::check_path;

/// What the framing check refused on one connection, for the request pipeline to answer.
#[derive(Debug, Default)]
pub(crate) struct H1Refusals {
    /// The refused head: the place (from 0, in the connection's order) of the internal request
    /// standing for it, and its status.
    head: Mutex<Option<(u64, u16)>>,
    /// A body found malformed mid-stream.
    body: Mutex<Option<HeadError>>,
    /// Requests hyper has handed to the pipeline so far.
    served: AtomicU64,
}

impl H1Refusals {
    /// Called once per request, in order: the refusal status if this request stands for a
    /// refused head.
    pub(crate) fn next_request(&self) -> Option<u16> {
        let n = self.served.fetch_add(1, Ordering::Relaxed);
        match self.head.lock().ok().and_then(|g| *g) {
            Some((at, status)) if at == n => Some(status),
            _ => None,
        }
    }

    /// The malformed-body refusal, once.
    pub(crate) fn take_body(&self) -> Option<HeadError> {
        self.body.lock().ok().and_then(|mut g| g.take())
    }
}

enum State {
    Head,
    Length(u64),
    Chunked(ChunkedChecker),
    /// The refusal request was handed over; nothing more is read.
    Refused,
    /// A body was malformed; errors from now on.
    Failed,
}

pub(crate) struct H1Guard<S> {
    inner: S,
    limits: HeadLimits,
    /// The check of the head being received, resumed as its bytes arrive.
    head: HeadParser,
    /// Bytes read from the client: `buf[pos..checked]` passed the check and await hyper,
    /// `buf[checked..]` are not checked yet.
    buf: Vec<u8>,
    pos: usize,
    checked: usize,
    /// The internal refusal request, handed to hyper after the checked bytes.
    refusal_req: Vec<u8>,
    refusal_pos: usize,
    /// Read buffer: only its spare capacity is used, through `ReadBuf::uninit`, so it is never
    /// zeroed (its length stays 0; only the bytes a read filled are looked at).
    scratch: Vec<u8>,
    state: State,
    eof: bool,
    /// Heads handed to hyper so far.
    heads: u64,
    refusal: Arc<H1Refusals>,
    metrics: Arc<Metrics>,
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

impl<S> H1Guard<S> {
    pub(crate) fn new(
        inner: S,
        limits: HeadLimits,
        refusal: Arc<H1Refusals>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner,
            head: HeadParser::new(limits.clone()),
            limits,
            buf: Vec::new(),
            pos: 0,
            checked: 0,
            refusal_req: Vec::new(),
            refusal_pos: 0,
            scratch: Vec::with_capacity(READ_CHUNK),
            state: State::Head,
            eof: false,
            heads: 0,
            refusal,
            metrics,
        }
    }

    fn refuse(&mut self, e: &HeadError) {
        self.refuse_with(e.reason(), e.status());
    }

    fn refuse_with(&mut self, reason: &'static str, status: u16) {
        self.metrics.refusal(reason);
        // Handed over after the checked bytes: requests before this one are answered first.
        self.refusal_req =
            b"GET / HTTP/1.1\r\nhost: refused.invalid\r\nconnection: close\r\n\r\n".to_vec();
        if let Ok(mut g) = self.refusal.head.lock() {
            *g = Some((self.heads, status));
        }
        self.buf.truncate(self.checked);
        self.state = State::Refused;
    }

    /// Checks the unchecked bytes, as far as they allow.
    fn process(&mut self) {
        while self.checked < self.buf.len() {
            let rest = self.buf.get(self.checked..).unwrap_or_default();
            match &mut self.state {
                State::Head => match self.head.feed(rest) {
                    Ok(None) => return,
                    Ok(Some((head, n))) => {
                        self.head = HeadParser::new(self.limits.clone());
                        if check_path(head.target).is_err() {
                            self.refuse_with("path", 400);
                            return;
                        }
                        self.checked += n;
                        self.heads += 1;
                        self.state = match head.framing {
                            Framing::None => State::Head,
                            Framing::Length(l) => State::Length(l),
                            Framing::Chunked => {
                                State::Chunked(ChunkedChecker::new(self.limits.max_body))
                            }
                        };
                    }
                    Err(e) => {
                        self.refuse(&e);
                        return;
                    }
                },
                State::Length(left) => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(rest.len());
                    self.checked += take;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(c) => match c.feed(rest) {
                    Ok(Some(n)) => {
                        self.checked += n;
                        self.state = State::Head;
                    }
                    Ok(None) => self.checked = self.buf.len(),
                    Err(e) => {
                        self.metrics.refusal(e.reason());
                        if let Ok(mut g) = self.refusal.body.lock() {
                            *g = Some(e);
                        }
                        self.buf.truncate(self.checked);
                        self.state = State::Failed;
                        return;
                    }
                },
                State::Refused | State::Failed => {
                    self.buf.truncate(self.checked);
                    return;
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for H1Guard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos < this.checked {
                let avail = this.buf.get(this.pos..this.checked).unwrap_or_default();
                let n = avail.len().min(out.remaining());
                out.put_slice(avail.get(..n).unwrap_or_default());
                this.pos += n;
                if this.pos == this.buf.len() {
                    this.buf.clear();
                    this.pos = 0;
                    this.checked = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match this.state {
                State::Refused => {
                    if this.refusal_pos < this.refusal_req.len() {
                        let avail = this.refusal_req.get(this.refusal_pos..).unwrap_or_default();
                        let n = avail.len().min(out.remaining());
                        out.put_slice(avail.get(..n).unwrap_or_default());
                        this.refusal_pos += n;
                        return Poll::Ready(Ok(()));
                    }
                    // Not EOF: hyper would drop the connection before answering the refusal;
                    // it closes the connection itself after the `connection: close` answer.
                    return Poll::Pending;
                }
                State::Failed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed chunked body",
                    )));
                }
                _ => {}
            }
            if this.checked < this.buf.len() {
                this.process();
                if this.pos < this.checked || matches!(this.state, State::Refused | State::Failed) {
                    continue;
                }
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Drop what hyper has taken, then read more after the unchecked bytes.
            if this.pos > 0 {
                this.buf.drain(..this.pos);
                this.checked -= this.pos;
                this.pos = 0;
            }
            let mut rb = ReadBuf::uninit(this.scratch.spare_capacity_mut());
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
            } else {
                this.buf.extend_from_slice(rb.filled());
            }
        }
    }
}

forward_write!(H1Guard);
