//! tianping-net: the hardened server every Tianping listener is built from.
//!
//! Each zone's gateway and IdP face people and programs Tianping does not control, so the
//! hardening lives here, once, and is tested once:
//!
//! - [`serve_tls`]: TLS 1.3 over TCP (HTTP/1.1 and HTTP/2 chosen by ALPN; TLS 1.2 with ECDHE+AEAD
//!   only where the [`TlsSource`] offers it) and HTTP/3 over QUIC on the same port number, advertised
//!   with `Alt-Svc`. The TLS configuration is read from a [`TlsSource`] per accepted connection
//!   (`tianping_certs::ReloadableServerConfig` is one), so a reload never drops live connections;
//!   [`ServerHandle::reload`] applies it to QUIC.
//! - The application is a [`Handler`]: `Fn(Request<Body>) -> impl Future<Output =
//!   Response<ResponseBody>>`. Each request carries a [`ConnInfo`] (peer address, protocol, SNI,
//!   the client's presented chain and the court identity it proved — only for a chain that
//!   verified; under `tianping_certs::ClientAuth::Request` any chain is accepted at the
//!   handshake and [`ConnInfo::unverified`] says why one did not verify) and the
//!   [`NormalizedPath`] as extensions; its URI path is already normalized. The [`Body`] streams with the size limit and
//!   idle timeout enforced; the server never buffers it whole.
//! - [`serve_control`] / [`control_request`]: the local control socket (HTTP/1.1 over a Unix socket,
//!   mode 0600, peer uid checked before anything is read) with the same handler interface; each
//!   request carries a [`Caller`] whose credential (`Authorization: Bearer`, `Tianping-Assertion`)
//!   the owner's [`CallerVerifier`] turned into a court identity (401 otherwise, but on the paths
//!   the owner marked open), and [`Caller::require`] answers 403 naming a missing role. Bodies
//!   stream both ways ([`control_send`], [`ControlBody`]); requests time out (30 s).
//!   [`testing::StaticVerifier`] is a fixed token table for other crates' tests.
//! - Body limits: a small default per listener; the application raises it per request after
//!   routing with [`Body::set_limit`], up to [`Limits::body_ceiling`]; over it, 413 and the
//!   connection is not read further.
//! - [`serve_admin`]: `/healthz` and Prometheus `/metrics` on loopback; components register their
//!   own counters, gauges and histograms with labels on a [`Registry`] ([`serve_admin_with`]).
//!
//! # Threat model and defaults
//!
//! - **Request smuggling** (two readers framing one byte stream differently): every HTTP/1.1 head on
//!   a connection, the first and each keep-alive one, is checked by [`parse_head`] before hyper sees
//!   it, and chunked bodies by [`ChunkedChecker`] as they stream. Refused with 400 and the connection
//!   closed: `Content-Length` with `Transfer-Encoding`, a malformed (`+3`, `3 ,3`) or repeated
//!   `Content-Length`, any coding but exactly one `chunked`, whitespace before a colon, obs-fold, bare
//!   CR or LF, control bytes, bad or overflowing chunk sizes. 414 for a request line over 8 KiB, 431
//!   for more than 100 headers or a head over 32 KiB, 413 for a body over 8 MiB ([`HeadLimits`]).
//! - **Path confusion** (the proxy checks `/public/..%2Fadmin`, the backend serves `/admin`):
//!   [`normalize_path`] is the only reading of a path; it decodes unreserved bytes once, resolves dot
//!   segments, collapses slashes, and refuses encoded slashes, `%25`, backslashes, `;` parameters,
//!   `;`, `?` and `#` percent-encoded, encoded bytes that are not strict UTF-8 (overlong `%C0%AF`),
//!   fragments, control bytes and paths above the root, on every protocol. The handler and
//!   anything forwarded see only its output. (A `#fragment` in an HTTP/2 or HTTP/3 `:path` is cut
//!   off by the `http` crate's parser before the server sees the request: it is served as the
//!   path without it, never decoded into it.)
//! - **Virtual-host confusion**: SNI, `Host` and `:authority` must name a host of the listener's
//!   [`HostSet`] and agree with each other; otherwise 421.
//! - **Resource exhaustion**: handshake timeout 10 s, header read / keep-alive timeout 10 s
//!   (slowloris; also ends an HTTP/2 or HTTP/3 connection with no request in progress that long,
//!   with GOAWAY, whatever PINGs or QUIC keep-alives it carries), body idle timeout 30 s both ways
//!   (slow body; slow read: a response of which the client takes nothing that long, by a shut
//!   HTTP/2 window, an unread HTTP/3 stream or an unread socket, has its stream reset or its TCP
//!   connection closed), 256 connections per address and 10,000 in all (per listener, TCP and
//!   QUIC together, or per [`ConnectionTable`] shared by listeners), HTTP/2 and HTTP/3 at 100
//!   concurrent streams, a 32 KiB header list (bounds CONTINUATION floods), HTTP/2 rapid reset
//!   (CVE-2023-44487) and "made you reset" (CVE-2025-8671) ended by GOAWAY after 20 streams, QUIC
//!   with Retry address validation, no 0-RTT (replayable), 30 s idle timeout, bounded windows and
//!   no migration. Per-address and per-identity token buckets ([`RateLimiter`]) answer 429 with
//!   `Retry-After`. Every limit is a field of [`Limits`] with its reason.
//! - **Secrets in logs**: the access log (`tracing` target `tianping_net::access`) records method,
//!   path, status, protocol, peer, identity name and duration; never headers, cookies or tokens.
//!
//! The parts that read outside bytes — the head and chunk parser, the path normalizer, the host
//! check, the token bucket — are I/O-free and compile without the `server` feature (the fuzz build).
//!
//! ```
//! use tianping_net::{HeadError, HeadLimits, PathError, normalize_path, parse_head};
//! assert_eq!(normalize_path("/a/../%61dmin?x=1").unwrap().path(), "/admin");
//! assert_eq!(normalize_path("/admin%2F"), Err(PathError::EncodedSlash));
//! let smuggle = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
//! assert_eq!(parse_head(smuggle, &HeadLimits::default()), Err(HeadError::DuplicateLength));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "server")]
mod admin;
#[cfg(feature = "server")]
mod body;
#[cfg(feature = "server")]
mod caller;
#[cfg(feature = "server")]
mod client;
#[cfg(feature = "server")]
mod config;
#[cfg(feature = "server")]
mod conns;
#[cfg(feature = "server")]
mod control;
#[cfg(feature = "server")]
mod control_client;
#[cfg(feature = "server")]
mod error;
#[cfg(feature = "server")]
mod forward;
#[cfg(feature = "server")]
mod h1;
#[cfg(feature = "server")]
mod handler;
mod head;
mod host;
#[cfg(feature = "server")]
mod idle;
#[cfg(feature = "server")]
mod metrics;
#[cfg(feature = "server")]
mod node_callers;
mod path;
#[cfg(feature = "server")]
mod quic;
mod rate;
#[cfg(feature = "server")]
mod registry;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod service;
#[cfg(feature = "server")]
mod stall;
#[cfg(feature = "server")]
mod tls;

#[doc(hidden)]
pub mod internal;

pub use head::{
    ChunkedChecker, Framing, HeadError, HeadLimits, HeadParser, REFUSAL_MARKER, RequestHead,
    parse_head,
};
pub use host::{HostError, HostSet, host_of};
pub use path::{NormalizedPath, PathError, normalize_path};
pub use rate::{Rate, RateLimiter, TokenBucket, retry_after_secs};

#[cfg(feature = "server")]
pub use admin::{AdminHandle, serve_admin, serve_admin_with};
#[cfg(feature = "server")]
pub use body::{Body, BodyError, BoxError, ResponseBody, empty, full};
#[cfg(feature = "server")]
pub use caller::{ASSERTION_HEADER, Caller, CallerRefusal, CallerVerifier, Credential, testing};
#[cfg(feature = "server")]
pub use client::{ClientError, ClientLimits, ClientResponse, HttpsClient, HttpsClientBuilder};
#[cfg(feature = "server")]
pub use config::{Limits, ServerOptions};
#[cfg(feature = "server")]
pub use conns::ConnectionTable;
#[cfg(feature = "server")]
pub use control::{ControlHandle, ControlOptions, serve_control, serve_control_with};
#[cfg(feature = "server")]
pub use control_client::{
    CONTROL_TIMEOUT, ControlBody, control_request, control_request_within, control_send,
};
#[cfg(feature = "server")]
pub use error::NetError;
#[cfg(feature = "server")]
pub use handler::{BoxFuture, ConnInfo, Handler, Protocol};
#[cfg(feature = "server")]
pub use metrics::Metrics;
#[cfg(feature = "server")]
pub use node_callers::NodeCallers;
#[cfg(feature = "server")]
pub use registry::{Counter, Gauge, Histogram, MetricsError, Registry};
#[cfg(feature = "server")]
pub use server::{ServerHandle, serve_tls};
#[cfg(feature = "server")]
pub use tls::{SwapTls, TlsSource};
