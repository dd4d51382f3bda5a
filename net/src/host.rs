//! The host check: SNI, `Host` and `:authority` must name a host this listener serves.
//!
//! Threat model: a client that opens TLS for one name and then asks for another crosses from one
//! virtual host (or zone) into another with the first one's session, client certificate or cookies
//! (the "SNI/Host confusion" class). The listener serves a configured list of names; a request whose
//! authority is not on it, or differs from the SNI of its connection, is answered 421 Misdirected.
use std::borrow::Cow;

use thiserror::Error;

/// Why a request's authority was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum HostError {
    /// No `Host` / `:authority` (400).
    #[error("missing host")]
    Missing,
    /// A `Host` value that is not `name[:port]` (400).
    #[error("malformed host `{0}`")]
    Malformed(String),
    /// A host this listener does not serve (421).
    #[error("host `{0}` is not served here")]
    NotServed(String),
    /// The SNI of the connection names another host than the request (421).
    #[error("host `{host}` differs from the connection's server name `{sni}`")]
    SniMismatch {
        /// Name from SNI.
        sni: String,
        /// Name from the request.
        host: String,
    },
}

impl HostError {
    /// The one HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing | Self::Malformed(_) => 400,
            Self::NotServed(_) | Self::SniMismatch { .. } => 421,
        }
    }
}

/// The host names one listener serves (lower case, without port).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSet {
    names: Vec<String>,
}

impl HostSet {
    /// A set of served names; names are compared case-insensitively.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            names: names
                .into_iter()
                .map(|s| s.as_ref().to_ascii_lowercase())
                .collect(),
        }
    }

    /// `true` when `name` (without port) is served.
    pub fn serves(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Checks a request's authority against the set and the connection's SNI; returns the host
    /// name (lower case, no port) on success, borrowed from `authority` when it is lower case
    /// already (as clients send it).
    pub fn check<'a>(
        &self,
        sni: Option<&str>,
        authority: Option<&'a str>,
    ) -> Result<Cow<'a, str>, HostError> {
        let authority = authority.ok_or(HostError::Missing)?;
        let host = host_of(authority)?;
        if !self.serves(&host) {
            return Err(HostError::NotServed(host.into_owned()));
        }
        if let Some(sni) = sni {
            if !sni.eq_ignore_ascii_case(&host) {
                return Err(HostError::SniMismatch {
                    sni: sni.to_ascii_lowercase(),
                    host: host.into_owned(),
                });
            }
        }
        Ok(host)
    }
}

/// The host part of `name[:port]` or `[v6]:port`, lower-cased (borrowed from `authority` when
/// it is lower case already); refuses userinfo and odd bytes.
pub fn host_of(authority: &str) -> Result<Cow<'_, str>, HostError> {
    let bad = || HostError::Malformed(authority.to_string());
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        if !h
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(bad());
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        // `[`, the address and `]`.
        (authority.get(..h.len() + 2).ok_or_else(bad)?, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !name_ok {
        return Err(bad());
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_case_host_is_borrowed_and_any_other_lowered() {
        for (authority, host, borrowed) in [
            ("localhost", "localhost", true),
            (
                "gw.a.tianping.localhost:8443",
                "gw.a.tianping.localhost",
                true,
            ),
            (
                "GW.a.tianping.localhost:8443",
                "gw.a.tianping.localhost",
                false,
            ),
            ("[::1]:8443", "[::1]", true),
            ("[FE80::1]", "[fe80::1]", false),
            ("127.0.0.1:443", "127.0.0.1", true),
        ] {
            let got = host_of(authority).unwrap();
            assert_eq!(got, host, "{authority}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), borrowed, "{authority}");
        }
        for bad in [
            "[::1", "[::1]x", "[::1]:", "[g::1]", "a b", "host:", ":443", "u@h",
        ] {
            assert!(
                matches!(host_of(bad), Err(HostError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn checks() {
        let set = HostSet::new(["gw.a.tianping.localhost", "localhost"]);
        assert_eq!(
            set.check(
                Some("gw.a.tianping.localhost"),
                Some("GW.a.tianping.localhost:8443")
            )
            .unwrap(),
            "gw.a.tianping.localhost"
        );
        assert_eq!(set.check(None, Some("localhost")).unwrap(), "localhost");
        assert_eq!(
            set.check(Some("localhost"), Some("gw.a.tianping.localhost"))
                .unwrap_err()
                .status(),
            421
        );
        assert_eq!(
            set.check(None, Some("evil.example")).unwrap_err().status(),
            421
        );
        assert_eq!(set.check(None, None).unwrap_err().status(), 400);
        assert_eq!(
            set.check(None, Some("user@localhost"))
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            set.check(None, Some("localhost:x")).unwrap_err().status(),
            400
        );
    }
}
