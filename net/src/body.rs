//! Request and response bodies: the request body is streamed to the application with the size
//! limit and the idle timeout enforced frame by frame; the server never buffers it whole.
//!
//! The size limit is the listener's small default ([`crate::HeadLimits::max_body`]) until the
//! application, having routed the request, sets the route's own with [`Body::set_limit`] (up to
//! [`crate::Limits::body_ceiling`]). A body over its limit fails with [`BodyError::TooLarge`] as
//! soon as that is known (at once for a declared `Content-Length`), never after reading it whole,
//! and the 413 that answers it ends an HTTP/1.1 connection rather than read the rest.
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Sleep;

use crate::config::Limits;

/// Why reading a request body failed.
#[derive(Debug, Error)]
pub enum BodyError {
    /// The body is larger than the listener's limit (413).
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// The client sent nothing for longer than the body idle timeout (408).
    #[error("request body idle for longer than {0:?}")]
    Idle(Duration),
    /// The connection or stream failed.
    #[error("request body: {0}")]
    Transport(String),
}

impl BodyError {
    /// The one HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge(_) => 413,
            Self::Idle(_) => 408,
            Self::Transport(_) => 400,
        }
    }
}

pub(crate) enum Source {
    Empty,
    Hyper(Incoming),
    /// HTTP/3: frames pumped from the stream, and the declared `Content-Length`, if any.
    Channel(mpsc::Receiver<Result<Bytes, String>>, Option<u64>),
}

/// A request body as the application sees it: a stream of [`Bytes`] frames.
pub struct Body {
    source: Source,
    seen: u64,
    limit: u64,
    ceiling: u64,
    /// The declared length was compared with the limit.
    hint_checked: bool,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("seen", &self.seen)
            .field("limit", &self.limit)
            .finish()
    }
}

impl Body {
    /// A body with the listener's default limit and ceiling.
    pub(crate) fn new(source: Source, limits: &Limits) -> Self {
        Self::with(
            source,
            limits.head.max_body,
            limits.body_ceiling,
            limits.body_idle_timeout,
        )
    }

    /// A body with no size limit (a control-socket client's answer), only the idle timeout.
    pub(crate) fn unlimited(source: Source, idle: Duration) -> Self {
        Self::with(source, u64::MAX, u64::MAX, idle)
    }

    fn with(source: Source, limit: u64, ceiling: u64, idle: Duration) -> Self {
        Self {
            source,
            seen: 0,
            limit: limit.min(ceiling),
            ceiling,
            hint_checked: false,
            idle,
            timer: None,
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::with(Source::Empty, 0, 0, Duration::from_secs(1))
    }

    /// Sets this request's body limit, after routing (a flow's `max-size`, an endpoint's own
    /// bound), up to the listener's [`crate::Limits::body_ceiling`]; returns the limit now in
    /// force (`limit`, or the ceiling when `limit` is above it). Bytes already read count.
    pub fn set_limit(&mut self, limit: u64) -> u64 {
        self.limit = limit.min(self.ceiling);
        self.hint_checked = false;
        self.limit
    }

    /// The limit in force: the listener's default until [`Body::set_limit`].
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Reads the whole body into memory, within the listener's size limit (the application's
    /// choice, for small bodies such as forms and JSON).
    pub async fn bytes(self) -> Result<Bytes, BodyError> {
        Ok(self.collect().await?.to_bytes())
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if !self.hint_checked {
            self.hint_checked = true;
            // A declared length over the limit is refused before a byte of it is read.
            if self.seen.saturating_add(self.size_hint().lower()) > self.limit {
                return Poll::Ready(Some(Err(BodyError::TooLarge(self.limit))));
            }
        }
        let this = &mut *self;
        let polled = match &mut this.source {
            Source::Empty => Poll::Ready(None),
            Source::Hyper(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| BodyError::Transport(e.to_string())),
            Source::Channel(rx, _) => rx
                .poll_recv(cx)
                .map(|o| o.map(|r| r.map(Frame::data).map_err(BodyError::Transport))),
        };
        match polled {
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyError::Idle(idle))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                if let Some(d) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(d.len() as u64);
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => {
                this.timer = None;
                other
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Empty => true,
            Source::Hyper(b) => b.is_end_stream(),
            Source::Channel(..) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Hyper(b) => b.size_hint(),
            Source::Empty => SizeHint::with_exact(0),
            // The declared length, as a lower bound only: the stream is not held to it here.
            Source::Channel(_, declared) => {
                let mut h = SizeHint::default();
                h.set_lower(declared.unwrap_or(0).saturating_sub(self.seen));
                h
            }
        }
    }
}

use std::future::Future as _;

/// The error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: anything that streams [`Bytes`].
pub type ResponseBody = BoxBody<Bytes, BoxError>;

/// A response body holding `data`.
pub fn full(data: impl Into<Bytes>) -> ResponseBody {
    http_body_util::Full::new(data.into())
        .map_err(|e| match e {})
        .boxed()
}

/// An empty response body.
pub fn empty() -> ResponseBody {
    http_body_util::Empty::new().map_err(|e| match e {}).boxed()
}
