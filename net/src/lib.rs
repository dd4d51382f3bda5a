//! tianping-net: the hardened server every Tianping listener is built from.
//!
//! Each zone's gateway and IdP face people and programs Tianping does not control, so the
//! hardening lives here, once: TLS 1.3 over TCP (HTTP/1.1 and HTTP/2 by ALPN) and HTTP/3 over QUIC on
//! the same port number, strict request framing ([`parse_head`], checked before hyper sees a byte),
//! one path normalization ([`normalize_path`]), SNI/`Host` checks ([`HostSet`]), client-certificate
//! identities handed to the application, per-address and per-identity rate limits ([`RateLimiter`]),
//! limits and timeouts with strict defaults, the local control socket, and an admin listener with
//! `/healthz` and `/metrics`.
//!
//! The parts that read outside bytes — the head and chunk parser, the path normalizer, the host
//! check, the token bucket — are I/O-free and compile without the `server` feature (the fuzz build).
//!
//! ```
//! use tianping_net::{normalize_path, PathError};
//! assert_eq!(normalize_path("/a/../%61dmin?x=1").unwrap().path(), "/admin");
//! assert_eq!(normalize_path("/admin%2F"), Err(PathError::EncodedSlash));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "server")]
mod admin;
#[cfg(feature = "server")]
mod body;
#[cfg(feature = "server")]
mod config;
#[cfg(feature = "server")]
mod control;
#[cfg(feature = "server")]
mod h1;
mod head;
mod host;
#[cfg(feature = "server")]
mod metrics;
mod path;
#[cfg(feature = "server")]
mod quic;
mod rate;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod service;
#[cfg(feature = "server")]
mod tls;

#[doc(hidden)]
pub mod internal;

pub use head::{
    ChunkedChecker, Framing, HeadError, HeadLimits, REFUSAL_MARKER, RequestHead, parse_head,
};
pub use host::{HostError, HostSet, host_of};
pub use path::{NormalizedPath, PathError, normalize_path};
pub use rate::{Rate, RateLimiter, TokenBucket, retry_after_secs};

#[cfg(feature = "server")]
pub use admin::{AdminHandle, serve_admin};
#[cfg(feature = "server")]
pub use body::{Body, BodyError, BoxError, ResponseBody, empty, full};
#[cfg(feature = "server")]
pub use config::{Limits, ServerOptions};
#[cfg(feature = "server")]
pub use control::{ControlHandle, control_request, serve_control};
#[cfg(feature = "server")]
pub use metrics::Metrics;
#[cfg(feature = "server")]
pub use server::{NetError, ServerHandle, serve_tls};
#[cfg(feature = "server")]
pub use service::{BoxFuture, ConnInfo, Handler, Protocol};
#[cfg(feature = "server")]
pub use tls::{SwapTls, TlsSource};
