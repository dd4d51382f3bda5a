//! People asserted by a zone's gateway, as the components behind it verify them: the one
//! verifier of `Tianping-Assertion` that every component socket the gateway forwards to (the
//! exchange sender, the receiver's receipts, the audit store, the IdP's directory) plugs in
//! behind its node callers.
//!
//! An assertion passes when it is a `user` token for the component's service (its audience),
//! signed by a node certificate of the zone under the zone's trust bundle (`x5c`), unexpired,
//! and signed by the zone's gateway itself: another node of the zone may sign tokens, but
//! only the gateway decides who a person is. A `Bearer` credential is not an assertion and is
//! refused here.

use tianping_certs::{CertKind, CourtIdentity, TokenClaims, TokenKind, TokenVerifier};
use tianping_core::{DataDir, Fabric, UnixTime, ZoneName};
use tianping_net::{CallerRefusal, CallerVerifier, Credential};

/// Verifies the `Tianping-Assertion`s of one zone's gateway for one service.
pub(crate) struct GatewayUsers {
    users: TokenVerifier,
    gateway: String,
}

impl std::fmt::Debug for GatewayUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayUsers")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl GatewayUsers {
    /// Assertions for `audience` (the service the gateway forwards to: `audit-store`,
    /// `receipt-store`, `exchange-sender`, `directory-authority`) from `zone`'s gateway,
    /// checked against the zone's trust bundle.
    pub(crate) fn new(
        dir: &DataDir,
        fabric: &Fabric,
        zone: &ZoneName,
        audience: &str,
    ) -> miette::Result<Self> {
        use miette::IntoDiagnostic as _;
        let gateway = fabric
            .zone(zone)
            .map(|z| z.gateway_host.clone())
            .ok_or_else(|| miette::miette!("`fabric.toml` has no zone `{zone}`"))?;
        let users = TokenVerifier::new(
            &crate::cmd::exchange::zone_trust(dir, zone)?,
            zone,
            audience,
            TokenKind::User,
        )
        .into_diagnostic()?;
        Ok(Self { users, gateway })
    }

    /// The name the zone's gateway signs as (its node certificate's).
    pub(crate) fn gateway(&self) -> &str {
        &self.gateway
    }
}

impl CallerVerifier for GatewayUsers {
    fn verify(
        &self,
        credential: &Credential,
        now: UnixTime,
    ) -> Result<CourtIdentity, CallerRefusal> {
        let Credential::Assertion(token) = credential else {
            return Err(CallerRefusal::Refused(
                "only a node token of the zone, or a person asserted by its gateway".into(),
            ));
        };
        let v = self
            .users
            .verify_at(token.expose().as_bytes(), now)
            .map_err(|e| CallerRefusal::Refused(e.to_string()))?;
        if v.signer.name != self.gateway {
            return Err(CallerRefusal::Refused(format!(
                "person assertions come from the zone's gateway, not from `{}`",
                v.signer.name
            )));
        }
        let TokenClaims::User(u) = v.claims else {
            return Err(CallerRefusal::Refused("not a user token".into()));
        };
        Ok(CourtIdentity {
            name: u.sub.to_string(),
            subject: Some(u.sub),
            court: u.court,
            roles: u.roles,
            zone: v.signer.zone,
            kind: CertKind::Client,
            fingerprint: v.signer.fingerprint,
            hardware: false,
        })
    }
}
