//! A log's checkpoint key tied to a `node` certificate: `audit append --cert` records the
//! certificate beside the key that signs, and `audit verify --trust` accepts the log only when
//! that certificate chains, through the trust bundle, to the CA of the log's zone.

use std::path::Path;

use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_audit::{AuditLog, KeyTrust};
use tianping_certs::{TrustStore, certs_from_pem, public_key_of, verify_signer};
use tianping_core::{PublicKey, Signer, UnixTime, ZoneName};

/// Records the leaf of the PEM chain at `cert` as the certificate of `signer`'s key, after
/// checking that the certificate is for that key.
pub(super) fn record_signer_certificate(
    log: &AuditLog,
    signer: &dyn Signer,
    cert: &Path,
) -> miette::Result<()> {
    let pem = std::fs::read(cert)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", cert.display()))?;
    let chain = certs_from_pem(&pem).map_err(|e| miette!("`{}`: {e}", cert.display()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| miette!("`{}` holds no certificate", cert.display()))?;
    let key = public_key_of(leaf).map_err(|e| miette!("`{}`: {e}", cert.display()))?;
    if key != signer.public_key() {
        return Err(miette!(
            "`{}` is not the certificate of the signing key (it certifies `{key}`)",
            cert.display()
        ));
    }
    log.set_signer_certificate(leaf)
        .into_diagnostic()
        .wrap_err("recording the signer's certificate")
}

/// The zone a log belongs to: `--zone`, else the folder after `zones/` in its path
/// (`DATA/zones/<zone>/<component>/audit`).
pub(super) fn zone_of(dir: &Path, zone: Option<&str>) -> miette::Result<ZoneName> {
    let named = match zone {
        Some(z) => z.to_owned(),
        None => {
            let full = std::path::absolute(dir).into_diagnostic()?;
            let parts: Vec<_> = full.components().map(|c| c.as_os_str()).collect();
            parts
                .windows(2)
                .rev()
                .find(|w| w.first().is_some_and(|p| *p == "zones"))
                .and_then(|w| w.get(1))
                .map(|z| z.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    miette!(
                        "`{}` is not under a zone's folder: say whose it is with `--zone`",
                        dir.display()
                    )
                })?
        }
    };
    named.parse().map_err(|e| miette!("{e}"))
}

/// The check `AuditLog::verify_trusted` asks: the log's key must be the key of a `node`
/// certificate of `zone` that verifies under the bundle at `trust` now.
pub(super) fn key_trust(trust: &Path, zone: ZoneName) -> miette::Result<Box<KeyTrust<'static>>> {
    let pem = std::fs::read(trust)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", trust.display()))?;
    let store =
        TrustStore::from_pem(&pem, &[]).map_err(|e| miette!("`{}`: {e}", trust.display()))?;
    Ok(Box::new(move |key: &PublicKey, cert: Option<&[u8]>| {
        let der = cert.ok_or_else(|| {
            "the log records no certificate for its key (append with `--cert`)".to_owned()
        })?;
        let chain = [tianping_certs::CertificateDer::from(der.to_vec())];
        let now = UnixTime::from_system_time(std::time::SystemTime::now());
        let signer = verify_signer(&chain, &store, &zone, now)
            .map_err(|e| format!("its certificate is not a signer of zone `{zone}`: {e}"))?;
        if &signer.key != key {
            return Err("its certificate is for another key".to_owned());
        }
        Ok(())
    }))
}
