//! The strict HTTP/1.1 request-head and chunked-body checker: I/O-free, fed bytes, returns decisions.
//!
//! Threat model: a request that two HTTP implementations frame differently is a smuggling vector
//! (the Envoy, Pingora and nginx advisories of the last years). hyper accepts some inputs that other
//! servers reject, so every HTTP/1.1 message is checked here before hyper sees its bytes, and anything
//! with more than one reading is refused with one status and the connection is closed:
//!
//! - both `Content-Length` and `Transfer-Encoding`, more than one `Content-Length` (even equal ones),
//!   a `Content-Length` that is not plain digits (`+3`, `3 ,3`, `0x3`);
//! - any `Transfer-Encoding` other than exactly one `chunked` (no `chunked, identity`, no `gzip, chunked`:
//!   a server behind us may decode differently), or one on an HTTP/1.0 request;
//! - whitespace before a header colon, obs-fold, bare CR or LF, control characters in a value;
//! - a chunk-size line that is empty, not hex, longer than 16 digits, or with whitespace;
//! - a request line over [`HeadLimits::max_request_line`] (414), too many or too large headers (431),
//!   a body over [`HeadLimits::max_body`] (413).
use std::ops::Range;

use thiserror::Error;

/// A header name reserved by the server (it once marked refused requests in band; refusals now
/// travel as a request extension). Refused from HTTP/1.1 clients, dropped unread on the others.
pub const REFUSAL_MARKER: &str = "tianping-refused";

/// Limits applied while reading a request head. Defaults are strict: browsers and API clients
/// stay far below them, and each doubles as a memory bound per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request line in bytes (414 above). Default 8 KiB, as nginx's `large_client_header_buffers`.
    pub max_request_line: usize,
    /// Most header fields (431 above). Default 100, as hyper's default.
    pub max_headers: usize,
    /// Largest whole head in bytes (431 above). Default 32 KiB.
    pub max_head_bytes: usize,
    /// Largest body in bytes (413 above). Default 8 MiB.
    pub max_body: u64,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_request_line: 8 * 1024,
            max_headers: 100,
            max_head_bytes: 32 * 1024,
            max_body: 8 * 1024 * 1024,
        }
    }
}

/// Why a request head or chunked body was refused; each maps to one HTTP status.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum HeadError {
    /// The request line is longer than the limit.
    #[error("request line longer than {0} bytes")]
    RequestLineTooLong(usize),
    /// Too many header fields.
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    /// The head is larger than the limit.
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The declared or received body is larger than the limit.
    #[error("body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// A line ends with a bare LF or holds a bare CR.
    #[error("bare CR or LF in the request")]
    BareCrLf,
    /// The request line is not `METHOD SP target SP HTTP/1.x`.
    #[error("malformed request line")]
    BadRequestLine,
    /// An HTTP version other than 1.0 or 1.1.
    #[error("unsupported HTTP version")]
    BadVersion,
    /// A header line folded onto the previous one (obs-fold).
    #[error("folded header line")]
    ObsFold,
    /// A header name that is empty, not a token, or followed by whitespace before the colon.
    #[error("malformed header name")]
    BadHeaderName,
    /// A header value with control characters.
    #[error("malformed value of header `{0}`")]
    BadHeaderValue(String),
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("both content-length and transfer-encoding")]
    LengthAndChunked,
    /// More than one `Content-Length` field.
    #[error("duplicate content-length")]
    DuplicateLength,
    /// A `Content-Length` that is not plain digits or does not fit.
    #[error("malformed content-length `{0}`")]
    BadLength(String),
    /// A transfer coding other than one final `chunked`.
    #[error("unsupported transfer-encoding `{0}`")]
    BadTransferEncoding(String),
    /// No `Host` or more than one on an HTTP/1.1 request.
    #[error("missing or duplicate host")]
    BadHost,
    /// The server's internal marker header sent by a client.
    #[error("reserved header")]
    ReservedHeader,
    /// A malformed chunk-size line or chunk framing.
    #[error("malformed chunked body")]
    BadChunk,
    /// A chunk size that does not fit in 64 bits.
    #[error("chunk size overflows")]
    ChunkSizeOverflow,
}

impl HeadError {
    /// The one HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::RequestLineTooLong(_) => 414,
            Self::TooManyHeaders(_) | Self::HeadTooLarge(_) => 431,
            Self::BodyTooLarge(_) => 413,
            _ => 400,
        }
    }

    /// A short stable name of the reason, for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::RequestLineTooLong(_) => "request_line_too_long",
            Self::TooManyHeaders(_) => "too_many_headers",
            Self::HeadTooLarge(_) => "head_too_large",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::BareCrLf => "bare_cr_lf",
            Self::BadRequestLine => "bad_request_line",
            Self::BadVersion => "bad_version",
            Self::ObsFold => "obs_fold",
            Self::BadHeaderName => "bad_header_name",
            Self::BadHeaderValue(_) => "bad_header_value",
            Self::LengthAndChunked => "length_and_chunked",
            Self::DuplicateLength => "duplicate_length",
            Self::BadLength(_) => "bad_length",
            Self::BadTransferEncoding(_) => "bad_transfer_encoding",
            Self::BadHost => "bad_host",
            Self::ReservedHeader => "reserved_header",
            Self::BadChunk => "bad_chunk",
            Self::ChunkSizeOverflow => "chunk_size_overflow",
        }
    }
}

/// How the body of a checked request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// A chunked body, to be checked with [`ChunkedChecker`].
    Chunked,
}

/// A request head that passed every check, its text borrowed from the bytes checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method token.
    pub method: &'a str,
    /// The request target as sent.
    pub target: &'a str,
    /// `true` for HTTP/1.1, `false` for HTTP/1.0.
    pub http11: bool,
    /// The `Host` value, if any.
    pub host: Option<&'a str>,
    /// How the body is framed.
    pub framing: Framing,
    /// Number of header fields.
    pub header_count: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks the start of `buf` as one HTTP/1.x request head.
///
/// Returns `Ok(None)` when more bytes are needed (and the limits are not yet exceeded),
/// `Ok(Some((head, n)))` when the first `n` bytes are a complete head that passed every check.
/// A reader that receives a head piece by piece uses a [`HeadParser`] instead, which does not
/// look at the same bytes twice.
pub fn parse_head<'a>(
    buf: &'a [u8],
    limits: &HeadLimits,
) -> Result<Option<(RequestHead<'a>, usize)>, HeadError> {
    HeadParser::new(limits.clone()).feed(buf)
}

/// The request-head check of [`parse_head`], resumable: fed the bytes of a head received so far
/// (the same buffer each time, grown at its end), it goes on where it stopped, so a head that
/// arrives a byte at a time costs time linear in its size, not quadratic. Its answers are those
/// [`parse_head`] gives for the same buffer.
#[derive(Clone, Debug)]
pub struct HeadParser {
    limits: HeadLimits,
    /// The request line once complete: where its method and target are, HTTP/1.1.
    line: Option<(Range<usize>, Range<usize>, bool)>,
    /// Start of the first line not yet complete.
    pos: usize,
    /// Where the search for that line's CRLF goes on.
    scan: usize,
    count: usize,
    /// Where the (last) `Host` value is.
    host: Option<Range<usize>>,
    hosts: usize,
    length: Option<u64>,
    lengths: usize,
    codings: Vec<String>,
    scanned: u64,
}

impl HeadParser {
    /// A parser for one request head.
    pub fn new(limits: HeadLimits) -> Self {
        Self {
            limits,
            line: None,
            pos: 0,
            scan: 0,
            count: 0,
            host: None,
            hosts: 0,
            length: None,
            lengths: 0,
            codings: Vec::new(),
            scanned: 0,
        }
    }

    /// The work done so far: bytes looked at, counting each time a byte is looked at again.
    pub fn bytes_scanned(&self) -> u64 {
        self.scanned
    }

    fn count(&mut self, bytes: usize) {
        self.scanned = self
            .scanned
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// The index of the CR of the first CRLF at or after `from`, refusing bare CR or LF on the
    /// way; when there is none yet, remembers where to go on (a final CR waits for its LF).
    fn find_crlf(&mut self, buf: &[u8], from: usize) -> Result<Option<usize>, HeadError> {
        // memchr's vectorised search: a bearer token or cookie makes header lines of a KiB or
        // more, scanned on every request
        let rest = buf.get(from..).unwrap_or_default();
        let (i, found) = match memchr::memchr2(b'\r', b'\n', rest) {
            None => (buf.len().max(from), Ok(None)),
            Some(k) => {
                let i = from + k;
                let found = match (buf.get(i), buf.get(i + 1)) {
                    (Some(b'\r'), Some(b'\n')) => Ok(Some(i)),
                    (Some(b'\r'), None) => Ok(None),
                    _ => Err(HeadError::BareCrLf),
                };
                (i, found)
            }
        };
        self.count(i.saturating_sub(from) + 1);
        if let Ok(None) = found {
            self.scan = i;
        }
        found
    }

    /// Checks `buf`, the bytes of the head received so far; see [`parse_head`] for the answers.
    /// After an answer other than `Ok(None)` the parser is spent: make a new one.
    pub fn feed<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(RequestHead<'a>, usize)>, HeadError> {
        let limits = self.limits.clone();
        if self.line.is_none() {
            // One or two empty lines before a request are tolerated (RFC 9112 §2.2).
            let mut start = 0;
            while start < 4 && buf.get(start..start + 2) == Some(b"\r\n") {
                start += 2;
            }
            let Some(line_end) = self.find_crlf(buf, self.scan.max(start))? else {
                let len = buf.len().saturating_sub(start);
                if len > limits.max_request_line {
                    return Err(HeadError::RequestLineTooLong(limits.max_request_line));
                }
                if buf.len() > limits.max_head_bytes {
                    return Err(HeadError::HeadTooLarge(limits.max_head_bytes));
                }
                return Ok(None);
            };
            if line_end - start > limits.max_request_line {
                return Err(HeadError::RequestLineTooLong(limits.max_request_line));
            }
            let line = buf.get(start..line_end).ok_or(HeadError::BadRequestLine)?;
            self.count(line.len());
            self.line = Some(parse_request_line(line, start)?);
            self.pos = line_end + 2;
            self.scan = self.pos;
        }
        loop {
            let Some(end) = self.find_crlf(buf, self.scan.max(self.pos))? else {
                if buf.len() > limits.max_head_bytes {
                    return Err(HeadError::HeadTooLarge(limits.max_head_bytes));
                }
                // Count the complete lines seen so far, so 2,000 small headers are refused early.
                if self.count > limits.max_headers {
                    return Err(HeadError::TooManyHeaders(limits.max_headers));
                }
                return Ok(None);
            };
            if end + 2 > limits.max_head_bytes {
                return Err(HeadError::HeadTooLarge(limits.max_head_bytes));
            }
            let pos = self.pos;
            self.pos = end + 2;
            self.scan = self.pos;
            if end == pos {
                return self.finish(buf).map(|head| Some((head, end + 2)));
            }
            self.count += 1;
            if self.count > limits.max_headers {
                return Err(HeadError::TooManyHeaders(limits.max_headers));
            }
            let field = buf.get(pos..end).ok_or(HeadError::BadHeaderName)?;
            self.count(field.len());
            self.field(field, pos)?;
        }
    }

    /// Checks one field, which starts at `at` in the head's bytes.
    fn field(&mut self, field: &[u8], at: usize) -> Result<(), HeadError> {
        let (name, value, value_at) = parse_field(field)?;
        if name.eq_ignore_ascii_case(REFUSAL_MARKER) {
            return Err(HeadError::ReservedHeader);
        }
        if name.eq_ignore_ascii_case("content-length") {
            self.lengths += 1;
            if self.lengths > 1 {
                return Err(HeadError::DuplicateLength);
            }
            let digits =
                value.len() <= 19 && !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            let n: u64 = if digits { value.parse().ok() } else { None }
                .ok_or_else(|| HeadError::BadLength(value.to_string()))?;
            self.length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for c in value.split(',') {
                self.codings
                    .push(c.trim_matches([' ', '\t']).to_ascii_lowercase());
            }
        } else if name.eq_ignore_ascii_case("host") {
            self.hosts += 1;
            self.host = Some(at + value_at..at + value_at + value.len());
        }
        Ok(())
    }

    /// The head in `buf`, once its last line is checked.
    fn finish<'a>(&mut self, buf: &'a [u8]) -> Result<RequestHead<'a>, HeadError> {
        let (method, target, http11) = self.line.take().ok_or(HeadError::BadRequestLine)?;
        // Checked as visible ASCII (the request line) or UTF-8 (a value) when they were read.
        let text = |at: Range<usize>, e: HeadError| {
            buf.get(at)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or(e)
        };
        let method = text(method, HeadError::BadRequestLine)?;
        let target = text(target, HeadError::BadRequestLine)?;
        let host = match self.host.take() {
            Some(at) => Some(text(at, HeadError::BadHost)?),
            None => None,
        };
        if self.hosts > 1 || (http11 && self.hosts == 0) {
            return Err(HeadError::BadHost);
        }
        let codings = std::mem::take(&mut self.codings);
        let framing = match (self.length, codings.is_empty()) {
            (Some(_), false) => return Err(HeadError::LengthAndChunked),
            (Some(n), true) => {
                if n > self.limits.max_body {
                    return Err(HeadError::BodyTooLarge(self.limits.max_body));
                }
                if n == 0 {
                    Framing::None
                } else {
                    Framing::Length(n)
                }
            }
            (None, false) => {
                if !http11
                    || codings.len() != 1
                    || codings.first().map(String::as_str) != Some("chunked")
                {
                    return Err(HeadError::BadTransferEncoding(codings.join(", ")));
                }
                Framing::Chunked
            }
            (None, true) => Framing::None,
        };
        Ok(RequestHead {
            method,
            target,
            http11,
            host,
            framing,
            header_count: self.count,
        })
    }
}

/// Checks a request line that starts at `at` in the head's bytes; where its method and target
/// are, and whether it is HTTP/1.1.
fn parse_request_line(
    line: &[u8],
    at: usize,
) -> Result<(Range<usize>, Range<usize>, bool), HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(m), Some(t), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::BadRequestLine);
    };
    if m.is_empty() || !m.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::BadRequestLine);
    }
    if t.is_empty() || !t.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(HeadError::BadRequestLine);
    }
    let http11 = match v {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return Err(HeadError::BadVersion),
    };
    let method = at..at + m.len();
    let target = method.end + 1..method.end + 1 + t.len();
    Ok((method, target, http11))
}

/// A field's name and value (without the spaces around it), and where the value starts in it.
fn parse_field(field: &[u8]) -> Result<(&str, &str, usize), HeadError> {
    if matches!(field.first(), Some(b' ' | b'\t')) {
        return Err(HeadError::ObsFold);
    }
    let colon = field
        .iter()
        .position(|&b| b == b':')
        .ok_or(HeadError::BadHeaderName)?;
    let (name, rest) = field.split_at(colon);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::BadHeaderName);
    }
    let name = std::str::from_utf8(name).map_err(|_| HeadError::BadHeaderName)?;
    let value = rest.get(1..).unwrap_or_default();
    // a fold without an early exit, which the compiler vectorises (values of a KiB and more)
    let bad = value.iter().fold(false, |bad, &b| {
        bad | ((b < 0x20 && b != b'\t') || b == 0x7f)
    });
    if bad {
        return Err(HeadError::BadHeaderValue(name.to_string()));
    }
    let value =
        std::str::from_utf8(value).map_err(|_| HeadError::BadHeaderValue(name.to_string()))?;
    let trimmed = value.trim_start_matches([' ', '\t']);
    let start = colon + 1 + (value.len() - trimmed.len());
    Ok((name, trimmed.trim_end_matches([' ', '\t']), start))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size { digits: u8, value: u64 },
    Ext { len: u16 },
    SizeLf { size: u64 },
    Data { left: u64 },
    DataCr,
    DataLf,
    TrailerStart,
    Trailer { len: u16 },
    TrailerLf { empty: bool },
    Done,
}

/// Checks a chunked body as it streams past, byte by byte, without buffering it.
#[derive(Clone, Debug)]
pub struct ChunkedChecker {
    state: ChunkState,
    total: u64,
    max_body: u64,
    trailer_lines: usize,
    pending: u64,
}

/// Longest chunk extension or trailer line accepted.
const MAX_EXT: u16 = 1024;

impl ChunkedChecker {
    /// A checker for one chunked body of at most `max_body` data bytes.
    pub fn new(max_body: u64) -> Self {
        Self {
            state: ChunkState::Size {
                digits: 0,
                value: 0,
            },
            total: 0,
            max_body,
            trailer_lines: 0,
            pending: 0,
        }
    }

    /// Feeds the next bytes of the body. Returns `Some(n)` when the body ends after the first `n`
    /// bytes of `data` (the rest belongs to the next request), `None` when it continues.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, HeadError> {
        let mut i = 0usize;
        while i < data.len() {
            let Some(&b) = data.get(i) else { break };
            if let ChunkState::Data { left } = self.state {
                let avail = data.len() - i;
                let take = usize::try_from(left).map_or(avail, |l| l.min(avail));
                i += take;
                let take = take as u64;
                self.state = if take == left {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data { left: left - take }
                };
                continue;
            }
            self.state = match self.state {
                ChunkState::Size { digits, value } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 16 {
                            return Err(HeadError::ChunkSizeOverflow);
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        let value = value
                            .checked_mul(16)
                            .and_then(|v| v.checked_add(d))
                            .ok_or(HeadError::ChunkSizeOverflow)?;
                        ChunkState::Size {
                            digits: digits + 1,
                            value,
                        }
                    }
                    b';' if digits > 0 => {
                        self.check_size(value)?;
                        self.pending = value;
                        ChunkState::Ext { len: 0 }
                    }
                    b'\r' if digits > 0 => {
                        self.check_size(value)?;
                        ChunkState::SizeLf { size: value }
                    }
                    _ => return Err(HeadError::BadChunk),
                },
                ChunkState::Ext { len } => match b {
                    b'\r' => ChunkState::SizeLf { size: self.pending },
                    b'\n' => return Err(HeadError::BadChunk),
                    0x21..=0x7e | b' ' | b'\t' if len < MAX_EXT => ChunkState::Ext { len: len + 1 },
                    _ => return Err(HeadError::BadChunk),
                },
                ChunkState::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(HeadError::BadChunk);
                    }
                    if size == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data { left: size }
                    }
                }
                ChunkState::Data { .. } => return Err(HeadError::BadChunk),
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err(HeadError::BadChunk);
                    }
                    ChunkState::DataLf
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(HeadError::BadChunk);
                    }
                    ChunkState::Size {
                        digits: 0,
                        value: 0,
                    }
                }
                ChunkState::TrailerStart => match b {
                    b'\r' => ChunkState::TrailerLf { empty: true },
                    b' ' | b'\t' | b'\n' | b':' => return Err(HeadError::BadChunk),
                    _ => ChunkState::Trailer { len: 1 },
                },
                ChunkState::Trailer { len } => match b {
                    b'\r' => ChunkState::TrailerLf { empty: false },
                    b'\n' | 0 => return Err(HeadError::BadChunk),
                    _ if len < MAX_EXT => ChunkState::Trailer { len: len + 1 },
                    _ => return Err(HeadError::BadChunk),
                },
                ChunkState::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(HeadError::BadChunk);
                    }
                    if empty {
                        self.state = ChunkState::Done;
                        return Ok(Some(i + 1));
                    }
                    self.trailer_lines += 1;
                    if self.trailer_lines > 32 {
                        return Err(HeadError::BadChunk);
                    }
                    ChunkState::TrailerStart
                }
                ChunkState::Done => return Ok(Some(i)),
            };
            i += 1;
        }
        Ok(if self.state == ChunkState::Done {
            Some(i.min(data.len()))
        } else {
            None
        })
    }

    fn check_size(&mut self, size: u64) -> Result<(), HeadError> {
        self.total = self
            .total
            .checked_add(size)
            .ok_or(HeadError::ChunkSizeOverflow)?;
        if self.total > self.max_body {
            return Err(HeadError::BodyTooLarge(self.max_body));
        }
        Ok(())
    }

    /// `true` once the last chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<(RequestHead<'_>, usize)>, HeadError> {
        parse_head(s.as_bytes(), &HeadLimits::default())
    }

    #[test]
    fn accepts_plain_requests() {
        let (h, n) = p("GET /a HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.method, h.target, h.framing, n),
            ("GET", "/a", Framing::None, 28)
        );
        let (h, _) = p("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(3));
        let (h, _) = p("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(p("GET / HTTP/1.1\r\nHost: x\r\n").unwrap(), None);
    }

    #[test]
    fn a_head_borrows_its_method_target_and_host_from_the_bytes_checked() {
        for pre in ["", "\r\n", "\r\n\r\n"] {
            let raw = format!(
                "{pre}PATCH /a/b?c=%2F HTTP/1.1\r\nX-A: 1\r\nHost: \t gw.a:8443 \t\r\n\
                 Accept: */*\r\nContent-Length: 2\r\n\r\nok"
            );
            let (whole, n) = parse_head(raw.as_bytes(), &HeadLimits::default())
                .unwrap()
                .unwrap();
            assert_eq!(
                (whole.method, whole.target, whole.host, whole.http11),
                ("PATCH", "/a/b?c=%2F", Some("gw.a:8443"), true)
            );
            assert_eq!(
                (whole.framing, whole.header_count, n),
                (Framing::Length(2), 4, raw.len() - 2)
            );
            // Fed a byte at a time, the same head from the same places.
            let mut parser = HeadParser::new(HeadLimits::default());
            let got = (1..=raw.len())
                .find_map(|k| parser.feed(&raw.as_bytes()[..k]).unwrap())
                .unwrap();
            assert_eq!(got, (whole, n));
        }
        let (h, _) = p("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.host, h.http11), (None, false));
        let (h, _) = p("GET / HTTP/1.1\r\nHost:\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.host, Some(""));
    }

    #[test]
    fn refuses_smuggling_shapes() {
        let cases = [
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::LengthAndChunked,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
                HeadError::BadLength("+3".into()),
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3 ,3\r\n\r\n",
                HeadError::BadLength("3 ,3".into()),
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                HeadError::DuplicateLength,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                HeadError::BadTransferEncoding("chunked, identity".into()),
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                HeadError::BadTransferEncoding("gzip".into()),
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\n",
                HeadError::BadHeaderName,
            ),
            (
                "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
                HeadError::ObsFold,
            ),
            ("GET / HTTP/1.1\nHost: x\r\n\r\n", HeadError::BareCrLf),
            (
                "GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n",
                HeadError::BareCrLf,
            ),
            (
                "GET / HTTP/1.1\r\nX: a\0b\r\nHost: x\r\n\r\n",
                HeadError::BadHeaderValue("X".into()),
            ),
            (
                "GET / HTTP/1.1\r\nHost: x\r\nX: a\tb\x7fc\r\n\r\n",
                HeadError::BadHeaderValue("X".into()),
            ),
            ("GET / HTTP/1.1\r\n\r\n", HeadError::BadHost),
            (
                "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
                HeadError::BadHost,
            ),
            ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", HeadError::BadVersion),
            (
                "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
                HeadError::BadRequestLine,
            ),
            (
                "GET / HTTP/1.1\r\nHost: x\r\nTianping-Refused: 1\r\n\r\n",
                HeadError::ReservedHeader,
            ),
        ];
        for (req, want) in cases {
            assert_eq!(p(req).unwrap_err(), want, "{req:?}");
        }
    }

    #[test]
    fn limits_map_to_statuses() {
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100_000));
        assert_eq!(p(&long).unwrap_err().status(), 414);
        assert_eq!(p(&long[..9000]).unwrap_err().status(), 414);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(200_000)
        );
        assert_eq!(p(&big).unwrap_err().status(), 431);
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "A: b\r\n".repeat(2000)
        );
        assert_eq!(p(&many).unwrap_err().status(), 431);
        let body = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n";
        assert_eq!(p(body).unwrap_err().status(), 413);
    }

    #[test]
    fn a_head_sent_a_byte_at_a_time_is_scanned_in_linear_time() {
        let mut head = String::from("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n");
        while head.len() < 29 * 1024 {
            head.push_str(&format!("X-Filler-{}: {}\r\n", head.len(), "v".repeat(300)));
        }
        head.push_str("\r\n");
        let bytes = head.as_bytes();
        let n = bytes.len();
        assert!(n > 29 * 1024 && n < 32 * 1024);
        let mut parser = HeadParser::new(HeadLimits::default());
        let mut answer = None;
        for k in 1..=n {
            match parser.feed(&bytes[..k]).unwrap() {
                None => assert!(k < n, "complete at {k} of {n}"),
                Some(got) => answer = Some(got),
            }
        }
        let (got, len) = answer.unwrap();
        assert_eq!(len, n);
        assert_eq!(Some((got, len)), p(&head).unwrap());
        // Each byte looked at about twice (the CRLF search, then the line's own check), never
        // once per byte that arrived after it: a quadratic scan would be about n * n / 2.
        let work = parser.bytes_scanned();
        eprintln!("a {n}-byte head fed a byte at a time: {work} bytes scanned");
        assert!(work <= 3 * n as u64, "{work} for {n} bytes");
        assert!(work >= n as u64, "{work} for {n} bytes");
    }

    #[test]
    fn a_parser_fed_in_pieces_answers_as_the_whole() {
        let cases = [
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        ];
        for case in cases {
            let b = case.as_bytes();
            let whole = p(case);
            let mut parser = HeadParser::new(HeadLimits::default());
            let mut last = Ok(None);
            for k in 1..=b.len() {
                last = parser.feed(&b[..k]);
                if !matches!(last, Ok(None)) {
                    break;
                }
            }
            assert_eq!(last, whole, "{case:?}");
        }
    }

    #[test]
    fn chunked_checker() {
        let mut c = ChunkedChecker::new(100);
        assert_eq!(c.feed(b"3\r\nabc\r\n0\r\n\r\nGET"), Ok(Some(13)));
        let mut c = ChunkedChecker::new(100);
        assert_eq!(c.feed(b"3;ext=1\r\nab"), Ok(None));
        assert_eq!(c.feed(b"c\r\n0\r\nT: v\r\n\r\n"), Ok(Some(14)));
        assert!(c.is_done());
        assert_eq!(
            ChunkedChecker::new(u64::MAX).feed(b"fffffffffffffffff\r\n"),
            Err(HeadError::ChunkSizeOverflow)
        );
        assert_eq!(
            ChunkedChecker::new(100).feed(b"ffff\r\n"),
            Err(HeadError::BodyTooLarge(100))
        );
        assert_eq!(
            ChunkedChecker::new(100).feed(b"3 \r\n"),
            Err(HeadError::BadChunk)
        );
        assert_eq!(
            ChunkedChecker::new(100).feed(b"\r\n"),
            Err(HeadError::BadChunk)
        );
        assert_eq!(
            ChunkedChecker::new(100).feed(b"3\nabc"),
            Err(HeadError::BadChunk)
        );
        assert_eq!(
            ChunkedChecker::new(100).feed(b"3\r\nabcX"),
            Err(HeadError::BadChunk)
        );
        assert_eq!(
            ChunkedChecker::new(100).feed(b"-3\r\n"),
            Err(HeadError::BadChunk)
        );
    }
}
