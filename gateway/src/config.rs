//! The gateway's limits, each with the reason for its default.

use std::time::Duration;

/// Limits of one zone gateway. Every default keeps one client (or one stolen credential) to a
/// small, bounded share of the gateway's memory and time, and keeps a credential's life short
/// enough that losing it is bounded too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The longest session cookie value accepted, in bytes (default 3,072). Browsers keep about
    /// 4 KiB per cookie, name and attributes included; a sealed session is a few hundred bytes,
    /// so anything larger is not ours and is refused before it is decoded.
    pub max_cookie_bytes: usize,
    /// The longest `Cookie` header read, in bytes (default 8 KiB): other applications on the
    /// same host name may set cookies too, but scanning more than this for ours is a waste.
    pub max_cookie_header_bytes: usize,
    /// A session not used for this long is over (default 30 min; MLPS level 3 asks for an idle
    /// timeout, and the IdP's own is the same). Each use moves it on; the cookie is resealed at
    /// most once per [`Limits::session_refresh`].
    pub session_idle: Duration,
    /// A session is over this long after its sign-in whatever its use (default 12 h, one
    /// working day): a stolen cookie cannot be kept alive by use.
    pub session_absolute: Duration,
    /// How often a used session's cookie is resealed with a new last-use time (default 60 s):
    /// resealing on every request would cost a `Set-Cookie` and an AEAD seal per response.
    pub session_refresh: Duration,
    /// How long a back-channel logout's revocation is kept (default: `session_absolute`, after
    /// which the session it ends has expired by itself anyway).
    pub revocation_keep: Duration,
    /// Most revoked sessions remembered (default 100,000): a flood of logouts cannot grow the
    /// list without bound; when full, the oldest entries that have outlived every session they
    /// could end go first, and a logout that finds no room is refused (the IdP retries it).
    pub max_revocations: usize,
    /// Least time between two JWKS fetches caused by an unknown `kid` (default 60 s): a stream
    /// of tokens with made-up `kid`s cannot turn the gateway into a load on its IdP.
    pub jwks_refresh_min: Duration,
    /// How long a fetched JWKS is used before it is fetched again (default 10 min): a key the
    /// IdP withdrew stops verifying within this time.
    pub jwks_max_age: Duration,
    /// How far the IdP's clock may be from ours (default 30 s), for `exp`, `nbf` and `iat` of
    /// access tokens: a browser-facing IdP and a gateway on different machines drift.
    pub clock_skew: Duration,
    /// The longest access token accepted, in bytes (default 8 KiB, RFC 9068 tokens are well under
    /// 2 KiB): refused before any base64 or JSON work.
    pub max_token_bytes: usize,
    /// Most verified access tokens cached until their expiry (default 10,000), so a signature
    /// check is done once per token, not once per request; when full, no new token is cached
    /// (each is still verified) rather than evicting hot ones.
    pub token_cache_entries: usize,
    /// Requests per second one signed-in subject may make (default 50, with a burst of
    /// [`Limits::subject_burst`]): one account, or one stolen credential, cannot take the
    /// gateway from everyone else, whatever addresses it comes from. `tianping gateway` takes
    /// it from the zone's `subject-rate` in `fabric.toml`, when set.
    pub subject_rate: u32,
    /// The burst allowed above [`Limits::subject_rate`] (default 200): a browser loading a page
    /// fetches dozens of assets at once. `tianping gateway` takes it from the zone's
    /// `subject-burst` in `fabric.toml`, when set.
    pub subject_burst: u32,
    /// How long a `Tianping-Assertion` for a service lives (default 60 s, the longest the
    /// token profile allows): short, so a leaked assertion is soon useless.
    pub assertion_lifetime: Duration,
    /// An assertion is reused for the same session and service until this much of its life is
    /// left (default 15 s): the service must still see it as valid, skew included.
    pub assertion_renew_before: Duration,
    /// Most cached assertions (default 10,000, one per session and service in use).
    pub assertion_cache_entries: usize,
    /// Most idle HTTP/1.1 connections kept open to one service (default 1,024): as many as the
    /// requests in flight to it, or every request over the pool's size opens (and closes) a new
    /// TLS connection. 640 HTTP/2 streams through a proxy need 640 HTTP/1.1 connections
    /// behind it; nginx's `keepalive 128` pool churned at that load where 1,024 did not.
    pub upstream_idle_connections: usize,
    /// The HTTP versions offered to services over TLS (ALPN; default [`UpstreamHttp::Any`]).
    pub upstream_http: UpstreamHttp,
}

/// Which HTTP versions the gateway offers a service it forwards to (TLS ALPN); the service
/// chooses among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamHttp {
    /// `h2` and `http/1.1`: the service chooses (one multiplexed HTTP/2 connection, or pooled
    /// HTTP/1.1 ones).
    #[default]
    Any,
    /// `http/1.1` alone: a pool of connections, one request at a time each, as nginx does.
    Http1,
    /// `h2` alone: one multiplexed connection (a service without HTTP/2 is not reached).
    Http2,
}

#[cfg(any(feature = "server", test))]
impl UpstreamHttp {
    /// The ALPN protocol names offered, in order.
    pub(crate) fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Self::Any => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Self::Http1 => vec![b"http/1.1".to_vec()],
            Self::Http2 => vec![b"h2".to_vec()],
        }
    }
}

impl std::str::FromStr for UpstreamHttp {
    type Err = String;

    /// `any`, `1.1` or `2`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(Self::Any),
            "1.1" | "http/1.1" => Ok(Self::Http1),
            "2" | "h2" => Ok(Self::Http2),
            other => Err(format!(
                "`{other}` is not an HTTP version to offer services: `any`, `1.1` or `2`"
            )),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let session_absolute = Duration::from_secs(12 * 3600);
        Self {
            max_cookie_bytes: 3072,
            max_cookie_header_bytes: 8 * 1024,
            session_idle: Duration::from_secs(30 * 60),
            session_absolute,
            session_refresh: Duration::from_secs(60),
            revocation_keep: session_absolute,
            max_revocations: 100_000,
            jwks_refresh_min: Duration::from_secs(60),
            jwks_max_age: Duration::from_secs(600),
            clock_skew: Duration::from_secs(30),
            max_token_bytes: 8 * 1024,
            token_cache_entries: 10_000,
            subject_rate: 50,
            subject_burst: 200,
            assertion_lifetime: Duration::from_secs(60),
            assertion_renew_before: Duration::from_secs(15),
            assertion_cache_entries: 10_000,
            upstream_idle_connections: 1024,
            upstream_http: UpstreamHttp::Any,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_http_setting_reads_its_three_words_and_refuses_others() {
        assert_eq!("any".parse(), Ok(UpstreamHttp::Any));
        assert_eq!("1.1".parse(), Ok(UpstreamHttp::Http1));
        assert_eq!("2".parse(), Ok(UpstreamHttp::Http2));
        assert!("3".parse::<UpstreamHttp>().is_err());
        assert_eq!(UpstreamHttp::Http1.alpn(), vec![b"http/1.1".to_vec()]);
        assert_eq!(UpstreamHttp::Any.alpn().len(), 2);
    }
}
