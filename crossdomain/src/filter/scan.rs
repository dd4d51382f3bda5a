//! The `scan` sanitize step: a payload's bytes sent to a virus scanner, failing closed.
//!
//! A [`Scanner`] answers clean, a finding (the signature's name) or an error; only clean lets
//! the step be done. [`Filters::run`](super::Filters::run) asks the node's scanner (set with
//! [`Filters::with_scanner`](super::Filters::with_scanner)) when the flow's `sanitize` names
//! `scan`, over the bytes that arrived and the rebuilt copy when it differs; a node with no
//! scanner refuses every transfer whose flow asks `scan`.
//!
//! [`Clamd`] (feature `daemon`) is a client of ClamAV's daemon (Debian's `clamav-daemon`) over
//! its local socket: `zINSTREAM`, the payload in chunks, and the daemon's one answer, where only
//! the exact `stream: OK` is clean. Everything else refuses — a finding, `INSTREAM size limit
//! exceeded` (a payload over the daemon's `StreamMaxLength`, which would otherwise be scanned
//! only in part), any other answer, no daemon at the socket, a timeout, an answer cut short.
//! The daemon's `StreamMaxLength` should be at least the largest `max-size` of the flows that
//! ask `scan`; telling the client that limit ([`Clamd::with_stream_max_length`]) refuses a
//! longer payload before any byte is sent. The signatures are the daemon's database, which the
//! zone's updates carry (no `freshclam` in a zone without the internet).

use std::fmt;

/// What a scanner said about a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found: the only answer that lets a payload cross.
    Clean,
    /// A signature matched; its name.
    Finding(String),
    /// The scan did not complete (no scanner, a timeout, a payload over its limit, an answer it
    /// could not read): refused, as a finding is.
    Error(String),
}

/// A virus scanner: bytes in, a [`Verdict`] out.
pub trait Scanner: Send + Sync + fmt::Debug {
    /// Scans `bytes` whole.
    fn scan(&self, bytes: &[u8]) -> Verdict;
}

/// The longest answer read from the daemon.
#[cfg(any(feature = "daemon", test))]
const MAX_ANSWER: usize = 4096;

/// The daemon's whole answer to `zINSTREAM` (up to its NUL, which is dropped) as a verdict.
#[cfg(any(feature = "daemon", test))]
fn verdict_of(answer: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(answer);
    if answer == b"stream: OK" {
        return Verdict::Clean;
    }
    match text
        .strip_prefix("stream: ")
        .and_then(|t| t.strip_suffix(" FOUND"))
    {
        Some(name) if !name.is_empty() && !name.contains('\n') => Verdict::Finding(name.to_owned()),
        _ => Verdict::Error(format!("clamd answered `{text}`")),
    }
}

#[cfg(feature = "daemon")]
pub use self::clamd::Clamd;

#[cfg(feature = "daemon")]
mod clamd {
    use std::io::{ErrorKind, Read, Write};
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::{MAX_ANSWER, Scanner, Verdict, verdict_of};

    /// The bytes of one `INSTREAM` chunk.
    const CHUNK: usize = 64 << 10;

    /// A client of ClamAV's daemon over its local socket (see the [module docs](super)).
    #[derive(Debug, Clone)]
    pub struct Clamd {
        socket: PathBuf,
        timeout: Duration,
        stream_max: Option<u64>,
    }

    impl Clamd {
        /// Debian's `clamav-daemon` socket (`LocalSocket` in `/etc/clamav/clamd.conf`).
        pub const DEFAULT_SOCKET: &'static str = "/run/clamav/clamd.ctl";

        /// How long one read or write on the socket may wait, unless told otherwise.
        pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

        /// A client of the daemon listening at `socket`.
        pub fn new(socket: impl Into<PathBuf>) -> Self {
            Self {
                socket: socket.into(),
                timeout: Self::DEFAULT_TIMEOUT,
                stream_max: None,
            }
        }

        /// Each read and write on the socket waits at most `timeout` (a scan of a large payload
        /// takes the daemon a while before it answers).
        pub fn with_timeout(mut self, timeout: Duration) -> Self {
            self.timeout = timeout;
            self
        }

        /// The daemon's `StreamMaxLength`: a longer payload is refused without being sent.
        pub fn with_stream_max_length(mut self, bytes: u64) -> Self {
            self.stream_max = Some(bytes);
            self
        }

        /// The socket it talks to.
        pub fn socket(&self) -> &Path {
            &self.socket
        }

        fn connect(&self) -> Result<UnixStream, String> {
            let s = UnixStream::connect(&self.socket)
                .map_err(|e| format!("no clamd answers at `{}` ({e})", self.socket.display()))?;
            let t = Some(self.timeout.max(Duration::from_millis(1)));
            s.set_read_timeout(t)
                .and_then(|()| s.set_write_timeout(t))
                .map_err(|e| format!("cannot set the socket's timeouts ({e})"))?;
            Ok(s)
        }

        /// `zPING`: whether the daemon is up and answers `PONG`.
        pub fn ping(&self) -> Result<(), String> {
            let mut s = self.connect()?;
            s.write_all(b"zPING\0")
                .map_err(|e| format!("cannot ask clamd ({e})"))?;
            let answer = read_answer(&mut s, self.timeout)?;
            if answer == b"PONG" {
                Ok(())
            } else {
                Err(format!(
                    "clamd answered `{}` to PING",
                    String::from_utf8_lossy(&answer)
                ))
            }
        }

        fn stream(&self, bytes: &[u8]) -> Verdict {
            let mut s = match self.connect() {
                Ok(s) => s,
                Err(e) => return Verdict::Error(e),
            };
            let sent = s.write_all(b"zINSTREAM\0").and_then(|()| {
                for chunk in bytes.chunks(CHUNK) {
                    let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
                    s.write_all(&len.to_be_bytes())?;
                    s.write_all(chunk)?;
                }
                s.write_all(&[0; 4])
            });
            // The daemon answers before the end when the stream is over its limit, then closes:
            // its answer says why, so it is read whether or not every byte went.
            match (sent, read_answer(&mut s, self.timeout)) {
                (Ok(()), Ok(answer)) => verdict_of(&answer),
                (Ok(()), Err(e)) => Verdict::Error(e),
                (Err(_), Ok(answer)) => match verdict_of(&answer) {
                    Verdict::Clean => Verdict::Error(
                        "clamd answered OK to a stream it was not sent whole".to_owned(),
                    ),
                    v => v,
                },
                (Err(e), Err(_)) => Verdict::Error(format!(
                    "the payload could not be sent whole to clamd ({e})"
                )),
            }
        }
    }

    /// Reads the daemon's answer up to the NUL that ends it (which is dropped), at most
    /// [`MAX_ANSWER`] bytes; anything short of a whole answer is why not.
    fn read_answer(s: &mut UnixStream, timeout: Duration) -> Result<Vec<u8>, String> {
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        while answer.len() < MAX_ANSWER {
            match s.read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("clamd did not answer within {timeout:?}"));
                }
                Err(e) => return Err(format!("reading clamd's answer failed ({e})")),
                Ok(0) if answer.is_empty() => {
                    return Err("clamd closed the connection without an answer".to_owned());
                }
                Ok(0) => {
                    return Err(format!(
                        "clamd's answer was cut short: `{}`",
                        String::from_utf8_lossy(&answer)
                    ));
                }
                Ok(n) => {
                    let got = buf.get(..n).unwrap_or_default();
                    if let Some(end) = got.iter().position(|b| *b == 0) {
                        answer.extend_from_slice(got.get(..end).unwrap_or_default());
                        return Ok(answer);
                    }
                    answer.extend_from_slice(got);
                }
            }
        }
        Err(format!("clamd's answer is longer than {MAX_ANSWER} bytes"))
    }

    impl Scanner for Clamd {
        fn scan(&self, bytes: &[u8]) -> Verdict {
            let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            if let Some(max) = self.stream_max.filter(|max| len > *max) {
                return Verdict::Error(format!(
                    "the payload is {len} bytes, over clamd's StreamMaxLength of {max}, so it \
                     cannot be scanned whole"
                ));
            }
            self.stream(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_ok_is_clean() {
        assert_eq!(verdict_of(b"stream: OK"), Verdict::Clean);
        assert_eq!(
            verdict_of(b"stream: Eicar-Signature FOUND"),
            Verdict::Finding("Eicar-Signature".into())
        );
        for answer in [
            &b"stream: OK "[..],
            b"stream:  OK",
            b"Stream: OK",
            b"stream: OKAY",
            b"INSTREAM size limit exceeded. ERROR",
            b"stream:  FOUND",
            b"stream: lstat() failed: No such file ERROR",
            b"UNKNOWN COMMAND",
            b"",
        ] {
            assert!(
                matches!(verdict_of(answer), Verdict::Error(_)),
                "{answer:?}"
            );
        }
        assert!(MAX_ANSWER > b"stream: OK".len());
    }
}
