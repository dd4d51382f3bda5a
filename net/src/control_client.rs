//! The control socket's client: [`control_request`] for small exchanges, [`control_send`] to
//! stream a request body from a file or reader and the answer back out, any size.
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadBuf};

use crate::body::{Body, Source};
use crate::error::{NetError, io_err};

/// How long [`control_request`] waits for a control socket: connecting, sending, and the whole
/// answer (a stuck owner must not hang the CLI).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes read from a body's reader at a time.
const PIECE: usize = 64 * 1024;

/// A request body for [`control_send`]: empty, bytes, or streamed from a reader or file (also a
/// `hyper` body, for other clients).
pub struct ControlBody(UnsyncBoxBody<Bytes, std::io::Error>);

impl std::fmt::Debug for ControlBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlBody")
            .field("size", &self.0.size_hint().exact())
            .finish()
    }
}

impl ControlBody {
    /// No body.
    pub fn empty() -> Self {
        Self::bytes(Bytes::new())
    }

    /// A body held in memory.
    pub fn bytes(data: impl Into<Bytes>) -> Self {
        Self(
            http_body_util::Full::new(data.into())
                .map_err(|e| match e {})
                .boxed_unsync(),
        )
    }

    /// A body read from `reader` as it is sent, in 64 KiB pieces; `len`, when known, is sent as
    /// `Content-Length` (so the server can refuse an over-limit body before reading it).
    pub fn reader(reader: impl AsyncRead + Send + 'static, len: Option<u64>) -> Self {
        Self(
            ReaderBody {
                reader: Box::pin(reader),
                len,
                done: false,
            }
            .boxed_unsync(),
        )
    }

    /// A body streamed from the file at `path`, its length sent as `Content-Length`.
    pub async fn file(path: &Path) -> Result<Self, NetError> {
        let what = || format!("open `{}`", path.display());
        let f = tokio::fs::File::open(path).await.map_err(io_err(what()))?;
        let len = f.metadata().await.map_err(io_err(what()))?.len();
        Ok(Self::reader(f, Some(len)))
    }
}

impl HttpBody for ControlBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

struct ReaderBody {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    len: Option<u64>,
    done: bool,
}

impl HttpBody for ReaderBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut buf = BytesMut::zeroed(PIECE);
        let mut rb = ReadBuf::new(&mut buf);
        ready!(self.reader.as_mut().poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 {
            self.done = true;
            return Poll::Ready(None);
        }
        buf.truncate(n);
        Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.len
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// Sends one request to a control socket and returns the status and body, within
/// [`CONTROL_TIMEOUT`].
pub async fn control_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: impl Into<Bytes>,
) -> Result<(u16, Bytes), NetError> {
    control_request_within(socket, method, path, body, CONTROL_TIMEOUT).await
}

/// Sends one request to a control socket and returns the status and body; an exchange not done
/// within `timeout` (connect included) fails with [`NetError::ControlTimeout`].
pub async fn control_request_within(
    socket: &Path,
    method: &str,
    path: &str,
    body: impl Into<Bytes>,
    timeout: Duration,
) -> Result<(u16, Bytes), NetError> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(ControlBody::bytes(body))
        .map_err(|e| NetError::Control(e.to_string()))?;
    let exchange = async {
        let resp = control_send(socket, req, timeout).await?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .bytes()
            .await
            .map_err(|e| NetError::Control(e.to_string()))?;
        Ok((status, body))
    };
    within(socket, timeout, exchange).await
}

async fn within<T>(
    socket: &Path,
    timeout: Duration,
    f: impl Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    tokio::time::timeout(timeout, f).await.unwrap_or_else(|_| {
        Err(NetError::ControlTimeout {
            socket: socket.to_path_buf(),
            after: timeout,
        })
    })
}

/// Sends `req` to the control socket at `socket` (its headers as given, `Host` added; its body
/// streamed) and returns the answer once its head has come, the body streaming: read it with
/// [`Body::bytes`] or frame by frame. Connecting and the answer's head must come within
/// `timeout`, and then each piece of the body within `timeout` of the last. The connection is
/// driven by a task of its own until the exchange ends or the answer is dropped.
pub async fn control_send(
    socket: &Path,
    mut req: http::Request<ControlBody>,
    timeout: Duration,
) -> Result<http::Response<Body>, NetError> {
    let err = |e: &dyn std::fmt::Display| NetError::Control(e.to_string());
    req.headers_mut()
        .entry(http::header::HOST)
        .or_insert(http::HeaderValue::from_static("localhost"));
    let head = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(io_err(format!("connect `{}`", socket.display())))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| err(&e))?;
        let driver = tokio::spawn(conn);
        let sent = sender.send_request(req).await;
        match sent {
            Ok(resp) => Ok(resp),
            Err(e) => {
                driver.abort();
                Err(err(&e))
            }
        }
    };
    let resp = within(socket, timeout, head).await?;
    Ok(resp.map(|b| Body::unlimited(Source::Hyper(b), timeout)))
}
