//! Settings that weaken certificate checking. Each is off by default, named for what it gives
//! up, and opted into here alone, so a reader finds every weakening by looking for `danger`.
//! (The TLS ones — TLS 1.2, optional client certificates — are documented with
//! [`crate::ServerTlsBuilder`].) A store takes one with
//! [`crate::TrustStore::with_revocation_leniency`].

/// Where a [`crate::TrustStore`]'s revocation checking gives way. Both default to `false`: refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevocationLeniency {
    /// Accept a leaf whose issuing CA has no CRL in a store that holds CRLs. Gives up: a zone
    /// whose CRL was left out of the configuration has no revocation checked at all.
    pub allow_unknown_status: bool,
    /// Use a CRL past its `nextUpdate` as if it were current. Gives up: a revocation made after
    /// the stale list (whose fresh list is being withheld or was never installed) goes unseen.
    /// Keeps a zone's clients working while its CRL cannot be refreshed.
    pub accept_stale_crls: bool,
}
