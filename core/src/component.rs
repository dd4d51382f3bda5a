//! The component processes of a zone.

use std::fmt;
use std::str::FromStr;

/// A component process of a zone, each with its own folder, certificates, signing key and control
/// socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// The zone's front door.
    Gateway,
    /// The zone's OpenID Connect provider, which also serves the zone's directory.
    Idp,
    /// The sending end of the zone's outgoing links.
    ExchangeSender,
    /// The receiving end of the zone's incoming links.
    ExchangeReceiver,
    /// The security team's mirrors of every zone's logs (in `private`), fed by `audit-batch`
    /// transfers and read by `auditor`s.
    AuditStore,
}

impl Component {
    /// Every component, in start-up order: the ones services are bound to first (the audit store,
    /// the IdP), then the receiver that delivers to them, the sender, and the gateway, which
    /// needs all of them.
    pub const ALL: [Component; 5] = [
        Component::AuditStore,
        Component::Idp,
        Component::ExchangeReceiver,
        Component::ExchangeSender,
        Component::Gateway,
    ];

    /// The components a service may be bound to (`component = "…"` in `fabric.toml`): the ones
    /// that serve the policy's services on their control socket. The gateway and the sender are
    /// not: a route to them would lead back through the zone's own front door or out of it.
    pub const SERVING: [Component; 3] = [
        Component::AuditStore,
        Component::Idp,
        Component::ExchangeReceiver,
    ];

    /// The component's name in paths, sockets and `fabric.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Idp => "idp",
            Component::ExchangeSender => "exchange-sender",
            Component::ExchangeReceiver => "exchange-receiver",
            Component::AuditStore => "audit-store",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no component's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a component (gateway, idp, exchange-sender, exchange-receiver, audit-store)")]
pub struct UnknownComponent(pub String);

impl FromStr for Component {
    type Err = UnknownComponent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Component::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownComponent(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Component::ALL {
            assert_eq!(c.as_str().parse::<Component>().unwrap(), c);
        }
        assert!("Gateway".parse::<Component>().is_err());
        assert_eq!(Component::AuditStore.to_string(), "audit-store");
    }
}
