//! The HTTP/1.1 framing check in front of hyper: every request head on the connection (the first
//! and each keep-alive one) is read into a buffer within the limits and checked with
//! [`crate::parse_head`] before hyper sees a byte of it; bodies pass through counted
//! (`Content-Length`) or checked chunk by chunk ([`crate::ChunkedChecker`]).
//!
//! A refused head is replaced by a fixed internal request carrying the refusal status in the
//! [`crate::REFUSAL_MARKER`] header, so hyper answers it in order (after any pipelined requests
//! before it) and closes the connection; no byte of the refused request reaches hyper. A malformed
//! chunked body, found mid-stream, fails the body read and the pipeline answers 400 and closes.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::head::{ChunkedChecker, Framing, HeadError, HeadLimits, REFUSAL_MARKER, parse_head};
use crate::metrics::Metrics;
use crate::path::normalize_path;
use crate::service::BodyRefusal;

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
    raw: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    state: State,
    eof: bool,
    refusal: Arc<BodyRefusal>,
    metrics: Arc<Metrics>,
}

impl<S> H1Guard<S> {
    pub(crate) fn new(
        inner: S,
        limits: HeadLimits,
        refusal: Arc<BodyRefusal>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner,
            limits,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            state: State::Head,
            eof: false,
            refusal,
            metrics,
        }
    }

    fn refuse(&mut self, e: &HeadError) {
        self.refuse_with(e.reason(), e.status());
    }

    fn refuse_with(&mut self, reason: &'static str, status: u16) {
        self.metrics.refusal(reason);
        // Appended: requests checked before this one in the same read are still answered first.
        let marker = format!(
            "GET / HTTP/1.1\r\nhost: refused.invalid\r\n{REFUSAL_MARKER}: {}\r\nconnection: close\r\n\r\n",
            status
        );
        self.out.extend_from_slice(marker.as_bytes());
        self.raw = Vec::new();
        self.state = State::Refused;
    }

    /// Moves checked bytes from `raw` to `out`, as far as the buffered bytes allow.
    fn process(&mut self) {
        while !self.raw.is_empty() {
            match &mut self.state {
                State::Head => match parse_head(&self.raw, &self.limits) {
                    Ok(None) => return,
                    Ok(Some((head, n))) => {
                        if normalize_path(&head.target).is_err() {
                            self.refuse_with("path", 400);
                            return;
                        }
                        self.out.extend(self.raw.drain(..n));
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
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(self.raw.len());
                    self.out.extend(self.raw.drain(..take));
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(c) => match c.feed(&self.raw) {
                    Ok(Some(n)) => {
                        self.out.extend(self.raw.drain(..n));
                        self.state = State::Head;
                    }
                    Ok(None) => self.out.append(&mut self.raw),
                    Err(e) => {
                        self.metrics.refusal(e.reason());
                        if let Ok(mut g) = self.refusal.0.lock() {
                            *g = Some(e);
                        }
                        self.raw = Vec::new();
                        self.state = State::Failed;
                        return;
                    }
                },
                State::Refused | State::Failed => {
                    self.raw.clear();
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
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.out.len() {
                let avail = this.out.get(this.out_pos..).unwrap_or_default();
                let n = avail.len().min(buf.remaining());
                buf.put_slice(avail.get(..n).unwrap_or_default());
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match this.state {
                // Not EOF: hyper would drop the connection before answering the refusal; it
                // closes the connection itself after the `connection: close` answer.
                State::Refused => return Poll::Pending,
                State::Failed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed chunked body",
                    )));
                }
                _ => {}
            }
            if !this.raw.is_empty() {
                this.process();
                if this.out_pos < this.out.len()
                    || matches!(this.state, State::Refused | State::Failed)
                {
                    continue;
                }
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
            } else {
                this.raw.extend_from_slice(rb.filled());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for H1Guard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
