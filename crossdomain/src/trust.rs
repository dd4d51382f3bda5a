//! [`SignerTrust`] against a zone's trust bundle (feature `daemon`): the signer of a bundle must
//! hold a `node` certificate of the manifest's source zone that chains to that zone's CA, is
//! valid and unrevoked at the time of the check, and certifies the key that signed.

use tianping_certs::{CertificateDer, TrustStore, verify_signer};
use tianping_core::{PublicKey, UnixTime};

use crate::{Manifest, SignerTrust};

/// Trusts the node certificates of each zone's CA in a trust bundle (`tianping-certs`).
#[derive(Debug, Clone)]
pub struct ZoneTrust {
    store: TrustStore,
}

impl ZoneTrust {
    /// Trusts the zones of `store` (the receiving zone's copy of the court's bundle).
    pub fn new(store: TrustStore) -> Self {
        Self { store }
    }
}

impl SignerTrust for ZoneTrust {
    fn check(
        &self,
        certificate: &[u8],
        key: &PublicKey,
        manifest: &Manifest,
        at: UnixTime,
    ) -> Result<(), String> {
        let chain = [CertificateDer::from(certificate)];
        let who =
            verify_signer(&chain, &self.store, &manifest.source, at).map_err(|e| e.to_string())?;
        if who.key == *key {
            Ok(())
        } else {
            Err(format!(
                "the bundle was signed by key `{key}`, not by the key of node `{}`",
                who.identity.name
            ))
        }
    }
}
