//! The HTTP/2 and HTTP/3 idle timeout: a connection with no request in progress that has received
//! no frame (PINGs aside; on HTTP/3 no new request stream) for the timeout is ended with GOAWAY.
//! hyper's HTTP/2 server has no such timeout: its keep-alive PINGs only prove the peer alive, and
//! quinn's idle timeout restarts on any packet, PINGs included, so a client stack that answers or
//! sends them (every one does) could otherwise hold an idle connection, and its slot, forever.
//!
//! PINGs do not count as activity either way: the server's own keep-alive PINGs are answered by
//! every live client, and a client's PINGs alone are not use of the connection.
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stall::{PIECE, SendProgress};

/// When the connection was last used, and how many requests are in progress on it.
#[derive(Debug)]
pub(crate) struct Activity {
    last: Mutex<Instant>,
    in_flight: AtomicUsize,
    /// Woken when the last request in progress ends.
    drained: Notify,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            last: Mutex::new(Instant::now()),
            in_flight: AtomicUsize::new(0),
            drained: Notify::new(),
        })
    }

    fn touch(&self) {
        if let Ok(mut g) = self.last.lock() {
            *g = Instant::now();
        }
    }

    fn last(&self) -> Instant {
        self.last
            .lock()
            .map(|g| *g)
            .unwrap_or_else(|_| Instant::now())
    }

    /// Marks a request in progress until the returned guard drops (with the response body).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        InFlight(self.clone())
    }

    /// Resolves once no request has been in progress and no frame has arrived for `within`.
    pub(crate) async fn idle(&self, within: Duration) {
        loop {
            let due = self.last() + within;
            if due <= Instant::now() {
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                // Busy: look again later; the last request to end touches the clock.
                tokio::time::sleep(within).await;
            } else {
                tokio::time::sleep_until(due).await;
            }
        }
    }

    /// Resolves once no request is in progress.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A request in progress; dropped with its response body, once that is sent or abandoned.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted as in progress until it is dropped, and
/// hands its data to the connection in pieces of at most [`PIECE`] bytes, reporting each to the
/// stream's [`SendProgress`] (the send-stall timeout).
pub(crate) struct Tracked<B> {
    inner: B,
    /// The part of the inner body's last frame not handed on yet.
    rest: Bytes,
    progress: Option<Arc<SendProgress>>,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub(crate) fn new(inner: B, in_flight: InFlight, progress: Option<Arc<SendProgress>>) -> Self {
        Self {
            inner,
            rest: Bytes::new(),
            progress,
            _in_flight: in_flight,
        }
    }

    fn piece(&mut self) -> Bytes {
        if let Some(p) = &self.progress {
            p.handed();
        }
        if self.rest.len() > PIECE {
            self.rest.split_to(PIECE)
        } else {
            std::mem::take(&mut self.rest)
        }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(p) = &this.progress {
            p.taken();
        }
        if this.rest.is_empty() {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        Poll::Ready(Some(Ok(Frame::data(this.piece()))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

const PREFACE_LEN: usize = 24;
const FRAME_HEAD: usize = 9;
const PING: u8 = 6;

/// Follows HTTP/2 frame boundaries in the bytes the client sent (hyper checks the frames
/// themselves); says when a frame other than PING has arrived whole.
#[derive(Debug)]
struct FrameScan {
    preface_left: usize,
    head: [u8; FRAME_HEAD],
    head_len: usize,
    payload_left: usize,
    kind: u8,
}

impl FrameScan {
    fn new() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            head: [0; FRAME_HEAD],
            head_len: 0,
            payload_left: 0,
            kind: 0,
        }
    }

    /// Feeds received bytes; true if a frame other than PING was completed by them.
    fn feed(&mut self, mut data: &[u8]) -> bool {
        let mut used = false;
        while !data.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(data.len());
                self.preface_left -= n;
                data = data.get(n..).unwrap_or_default();
                continue;
            }
            if self.head_len < FRAME_HEAD {
                let n = (FRAME_HEAD - self.head_len).min(data.len());
                if let (Some(dst), Some(src)) = (
                    self.head.get_mut(self.head_len..self.head_len + n),
                    data.get(..n),
                ) {
                    dst.copy_from_slice(src);
                }
                self.head_len += n;
                data = data.get(n..).unwrap_or_default();
                if self.head_len < FRAME_HEAD {
                    break;
                }
                let [a, b, c, kind, ..] = self.head;
                self.payload_left = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                self.kind = kind;
            }
            let n = self.payload_left.min(data.len());
            self.payload_left -= n;
            data = data.get(n..).unwrap_or_default();
            if self.payload_left == 0 {
                used |= self.kind != PING;
                self.head_len = 0;
            }
        }
        used
    }
}

/// The connection's stream, noting each whole frame other than PING the client sends.
pub(crate) struct Watched<S> {
    inner: S,
    scan: FrameScan,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            scan: FrameScan::new(),
            activity,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if this
                .scan
                .feed(buf.filled().get(before..).unwrap_or_default())
            {
                this.activity.touch();
            }
        }
        polled
    }
}

crate::forward::forward_write!(Watched);

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, len: usize) -> Vec<u8> {
        let [_, a, b, c] = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        let mut f = vec![a, b, c, kind, 0, 0, 0, 0, 1];
        f.resize(FRAME_HEAD + len, 0);
        f
    }

    #[tokio::test]
    async fn responses_are_handed_on_in_pieces_with_their_size_kept() {
        use http_body_util::BodyExt;
        let full = http_body_util::Full::new(Bytes::from(vec![1u8; 2 * PIECE + 8]));
        let progress = Arc::new(SendProgress::default());
        let mut body = Tracked::new(full, Activity::new().begin(), Some(progress));
        assert_eq!(body.size_hint().exact(), Some(2 * PIECE as u64 + 8));
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
            assert_eq!(
                body.size_hint().lower(),
                (2 * PIECE + 8 - sizes.iter().sum::<usize>()) as u64
            );
        }
        assert_eq!(sizes, vec![PIECE, PIECE, 8]);
        assert!(body.is_end_stream());
    }

    #[test]
    fn frame_scan_counts_whole_frames_but_pings() {
        let mut s = FrameScan::new();
        assert!(
            !s.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            "the preface is no frame"
        );
        assert!(!s.feed(&frame(PING, 8)));
        let settings = frame(4, 6);
        assert!(!s.feed(&settings[..5]));
        assert!(!s.feed(&settings[5..11]));
        assert!(s.feed(&settings[11..]), "completed in pieces");
        assert!(s.feed(&frame(4, 0)), "an empty frame is whole at its head");
        let mut both = frame(PING, 8);
        both.extend(frame(8, 4));
        assert!(s.feed(&both));
        assert!(!s.feed(&frame(PING, 8)[..3]));
    }
}
