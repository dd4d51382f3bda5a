//! The listeners' error type.
use thiserror::Error;

/// Why a listener could not start.
#[derive(Debug, Error)]
pub enum NetError {
    /// Binding or reading a socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TLS configuration cannot serve QUIC (HTTP/3 needs TLS 1.3 and the `h3` protocol).
    #[error("tls configuration unusable for quic: {0}")]
    Quic(String),
    /// A request to the control socket failed.
    #[error("control request: {0}")]
    Control(String),
    /// The control socket did not answer in time (its owner is stuck).
    #[error("control socket `{}` did not answer within {after:?}", socket.display())]
    ControlTimeout {
        /// The socket's path.
        socket: std::path::PathBuf,
        /// How long the request waited.
        after: std::time::Duration,
    },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}
