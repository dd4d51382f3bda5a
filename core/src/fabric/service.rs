//! Bindings of the policy's service names to where each is reached in its zone.

use std::path::PathBuf;

use miette::SourceSpan;

use crate::{Component, ZoneName};

/// Where a service of the policy is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceTarget {
    /// An HTTPS URL, with the CA file (relative to the data folder) that serves it.
    Url {
        /// `https://…`.
        url: String,
        /// The CA bundle that verifies the service's certificate.
        ca: PathBuf,
    },
    /// A delivery folder (relative to the data folder) where files are written atomically.
    Folder(PathBuf),
    /// The control socket of one of the zone's own components (one of
    /// [`Component::SERVING`]), which serves the service itself: the IdP the directories, the
    /// audit store the logs' mirrors, the receiver the trust stores (it installs updates) and
    /// the receipts.
    Component(Component),
}

impl ServiceTarget {
    /// The environment variable naming the data folder (`tianping --data`'s), which `tianping
    /// up` sets for each of its children.
    pub const DATA_ENV: &str = "TIANPING_DATA";

    /// Where a running sample case service of the fabric (`tianping service NAME --zone Z`)
    /// listens, as it published it in `DATA/run/<zone>-service-<name>.addr` (a line
    /// `https ADDR`), for a URL whose host is `<name>.<zone>.<domain>`: a URL of port 0 means
    /// "where the running service bound", and DNS does not know the fabric's hosts. `DATA` is
    /// the folder [`Self::DATA_ENV`] names; none when it is not set, the host is not of that form or
    /// the service has published nothing.
    pub fn published_service_addr(host: &str) -> Option<std::net::SocketAddr> {
        let data = std::env::var_os(Self::DATA_ENV)?;
        let mut labels = host.split('.');
        let name = labels.next().filter(|n| is_service_name(n))?;
        let zone: ZoneName = labels.next()?.parse().ok()?;
        labels.next()?;
        let file = std::path::Path::new(&data)
            .join("run")
            .join(format!("{zone}-service-{name}.addr"));
        let text = std::fs::read_to_string(file).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("https "))
            .and_then(|a| a.trim().parse().ok())
    }
}

/// The binding of a service name to its zone and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceBinding {
    /// The zone the service lives in.
    pub zone: ZoneName,
    /// Where it is reached.
    pub target: ServiceTarget,
    pub(crate) span: SourceSpan,
}

impl ServiceBinding {
    /// The service's name in its `[services.<name>]` header, for diagnostics about the binding
    /// (see [`crate::Fabric::problem_at`]).
    pub fn span(&self) -> SourceSpan {
        self.span
    }
}

/// The component a service of this name is bound to by default, if any (`init` binds the rest
/// to delivery folders): `directory-authority` and the `*-directory` services to the IdP,
/// `audit-store` to the audit store, the `*-trust-store` services and `receipt-store` to the
/// exchange receiver.
pub fn default_binding(service: &str) -> Option<Component> {
    match service {
        "directory-authority" => Some(Component::Idp),
        "audit-store" => Some(Component::AuditStore),
        "receipt-store" => Some(Component::ExchangeReceiver),
        s if s.ends_with("-directory") => Some(Component::Idp),
        s if s.ends_with("-trust-store") => Some(Component::ExchangeReceiver),
        _ => None,
    }
}

/// Whether a service name has the grammar of the policy's names.
pub(crate) fn is_service_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bindings() {
        let cases = [
            ("directory-authority", Some(Component::Idp)),
            ("mobile-directory", Some(Component::Idp)),
            ("audit-store", Some(Component::AuditStore)),
            ("internet-trust-store", Some(Component::ExchangeReceiver)),
            ("receipt-store", Some(Component::ExchangeReceiver)),
            ("filing-intake", None),
        ];
        for (name, want) in cases {
            assert_eq!(default_binding(name), want, "{name}");
        }
    }
}
