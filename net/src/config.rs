//! Listener settings: limits and timeouts with strict defaults, and the reasons for them.
use std::sync::Arc;
use std::time::Duration;

use tianping_core::{Clock, SystemClock};

use crate::conns::ConnectionTable;
use crate::head::HeadLimits;
use crate::host::HostSet;
use crate::rate::Rate;

/// Limits and timeouts of one listener. Every default is chosen so that one client cannot hold
/// more than a small, bounded share of the process (memory, connections, streams, time).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Request-head limits for HTTP/1.1 (request line, header count and size, body size); the body
    /// limit (`head.max_body`, 8 MiB) is every request's default on every protocol, until the
    /// application sets the route's own with [`crate::Body::set_limit`].
    pub head: HeadLimits,
    /// The largest body limit a route may set with [`crate::Body::set_limit`] (default: the same
    /// as `head.max_body`, so nothing is larger unless the owner says so). The HTTP/1.1 framing
    /// check lets declared lengths and chunked bodies up to this through, for the route to
    /// decide; a gateway with 2 GiB uploads sets it to 2 GiB and keeps the small default.
    pub body_ceiling: u64,
    /// Time to finish the TLS handshake (default 10 s): a connection that does not is closed.
    pub handshake_timeout: Duration,
    /// Time to receive a whole request head, and the idle time after which a connection with no
    /// request in progress is closed: HTTP/1.1 between requests, HTTP/2 when no frame but PINGs
    /// arrived (so also the time to send the preface), HTTP/3 when no request stream was opened
    /// (QUIC PINGs and keep-alives do not count), counted from the handshake or the end of the
    /// last request (default 10 s; slowloris defence: a client trickling a head or holding an
    /// idle connection is closed). HTTP/2 and HTTP/3 end it with GOAWAY, then close it after one
    /// more timeout if the client has not gone away.
    pub header_read_timeout: Duration,
    /// Longest wait for the next bytes of a request body (default 30 s; slow-body defence), and
    /// for the client to take the next piece (16 KiB) of a response (slow-read defence): an HTTP/2
    /// stream whose window stays shut or an HTTP/3 stream the client does not read is reset, a
    /// TCP connection whose writes are blocked that long is closed (an HTTP/2 stream within one
    /// and a half timeouts: one sweep per connection). A response is thus refused
    /// to a reader slower than 16 KiB per timeout, PINGs answered or not.
    pub body_idle_timeout: Duration,
    /// Most open connections in total (default 10,000), TCP and QUIC together, counted per
    /// listener or per shared [`ServerOptions::connections`] table.
    pub max_connections: usize,
    /// Most open connections from one IP address (default 256; many NATed clerks share one),
    /// counted like `max_connections`.
    pub max_connections_per_addr: usize,
    /// HTTP/2 and HTTP/3: most concurrent streams per connection (default 100).
    pub max_concurrent_streams: u32,
    /// HTTP/2 rapid-reset defence (CVE-2023-44487): streams the client reset before the server
    /// accepted them; above this the connection ends with GOAWAY (default 20).
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 "made you reset" defence (CVE-2025-8671): streams the server had to reset because of
    /// client errors; above this GOAWAY (default 20).
    pub h2_max_local_error_reset_streams: usize,
    /// HTTP/2 and HTTP/3 header list size, which also bounds CONTINUATION floods (default 32 KiB).
    pub max_header_list_size: u32,
    /// QUIC idle timeout (default 30 s): a peer silent this long is gone. Any packet restarts it,
    /// so it does not end a connection kept alive by PINGs; `header_read_timeout` does.
    pub quic_idle_timeout: Duration,
    /// QUIC per-stream receive window in bytes (default 256 KiB).
    pub quic_stream_window: u32,
    /// QUIC per-connection receive window in bytes (default 1 MiB).
    pub quic_connection_window: u32,
    /// QUIC connection migration (default off: a zone's clients do not roam, and migration makes
    /// per-address limits moot).
    pub quic_migration: bool,
    /// QUIC address validation with a Retry before any state is kept (default on: stops spoofed
    /// source addresses from using the server as an amplifier or filling its tables).
    pub quic_retry: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            head: HeadLimits::default(),
            body_ceiling: HeadLimits::default().max_body,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_addr: 256,
            max_concurrent_streams: 100,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 20,
            max_header_list_size: 32 * 1024,
            quic_idle_timeout: Duration::from_secs(30),
            quic_stream_window: 256 * 1024,
            quic_connection_window: 1024 * 1024,
            quic_migration: false,
            quic_retry: true,
        }
    }
}

/// Everything a listener needs besides its TLS source and handler.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Host names this listener serves (SNI, `Host`, `:authority`); others get 421.
    pub hosts: HostSet,
    /// Limits and timeouts.
    pub limits: Limits,
    /// Requests per client address, if limited (429 above).
    pub rate_per_addr: Option<Rate>,
    /// Requests per client-certificate identity, if limited (429 above).
    pub rate_per_identity: Option<Rate>,
    /// Also serve HTTP/3 on the same port number over UDP and advertise it with `Alt-Svc`.
    pub http3: bool,
    /// Bind the TCP port with `SO_REUSEPORT`, so several runtimes (one per core, each with its
    /// own listener on the same port) share the connections; off by default. Give them one
    /// [`connections`](Self::connections) table too, so the connection limits hold for the port.
    pub reuse_port: bool,
    /// The table counting open connections against the limits, when shared with other listeners
    /// (the runtimes of a `reuse_port` port); `None` (the default): this listener's own.
    pub connections: Option<Arc<ConnectionTable>>,
    /// Where rate limits read the time.
    pub clock: Arc<dyn Clock>,
}

impl ServerOptions {
    /// Options serving `hosts` with the default limits, HTTP/3 on, no rate limits.
    pub fn new(hosts: HostSet) -> Self {
        Self {
            hosts,
            limits: Limits::default(),
            rate_per_addr: None,
            rate_per_identity: None,
            http3: true,
            reuse_port: false,
            connections: None,
            clock: Arc::new(SystemClock),
        }
    }
}
