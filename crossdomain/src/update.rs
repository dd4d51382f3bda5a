//! The updates that reach every zone (`policy-update`, `trust-bundle`, `crl`), checked and
//! rebuilt without I/O: the receiver's installer checks with [`check_policy_update`],
//! [`check_trust_update`] and [`check_crl_update`] before it replaces a file, and the binary's
//! filters of these kinds rebuild with [`rebuild_policy_update`], [`rebuild_trust_bundle`] and
//! [`rebuild_crl`], which make the same checks first: an update the receiver would refuse to
//! install is refused by the filters on both sides of the link, with the same reason. The
//! installed state they are judged by is given as bytes, read by the caller.

use tianping_certs::TrustStore;
use tianping_core::{UnixTime, ZoneName, pem_blocks, pem_encode};
use tianping_policies::Policy;

/// Checks a policy update for `zone`, whose policy in force is `installed` (`name` is where
/// the text will live, for its diagnostics): UTF-8, passes `tianping policy check` with no
/// error, seals every zone `installed` seals, and still has `zone`. Returns the policy it
/// makes, or why not, said for a person.
pub fn check_policy_update(
    zone: &ZoneName,
    installed: &Policy,
    name: &str,
    bytes: &[u8],
) -> Result<Policy, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_owned())?;
    let checked = tianping_policies::check(name, text);
    let errors = checked.errors().count();
    let new = checked
        .into_policy()
        .filter(|_| errors == 0)
        .ok_or_else(|| format!("it does not check ({errors} errors)"))?;
    if let Some(z) = installed
        .zones()
        .find(|z| installed.is_sealed(z.as_str()) && !new.is_sealed(z.as_str()))
    {
        return Err(format!(
            "it unseals zone `{z}`, which the installed policy seals"
        ));
    }
    if new.zones().all(|z| z != zone) {
        return Err(format!("it has no zone `{zone}`"));
    }
    Ok(new)
}

/// Checks a trust bundle (PEM) that would replace `zone`'s `installed` one: it parses, every
/// CA in it chains to the installed root (a new root only cross-signed by it), and it holds
/// `zone`'s CA. Returns the store it makes, or why not.
pub fn check_trust_update(
    zone: &ZoneName,
    installed: &[u8],
    bytes: &[u8],
) -> Result<TrustStore, String> {
    let store = TrustStore::from_update(bytes, installed).map_err(|e| e.to_string())?;
    store
        .for_zone(zone)
        .map_err(|e| format!("no CA of zone `{zone}`: {e}"))?;
    Ok(store)
}

/// Checks a CRL (PEM or DER) against the zone's installed trust bundle (PEM) at `now`: one
/// list, signed by a zone's CA of the bundle, `nextUpdate` after `now`. Returns the zone whose
/// CA signed it and the list's DER, or why not.
pub fn check_crl_update(
    installed_trust: &[u8],
    bytes: &[u8],
    now: UnixTime,
) -> Result<(ZoneName, Vec<u8>), String> {
    TrustStore::from_pem(installed_trust, &[])
        .map_err(|e| format!("the zone's installed trust bundle does not load: {e}"))?
        .check_crl(bytes, now)
        .map_err(|e| e.to_string())
}

/// A policy update for `zone` rebuilt: its text with line ends made LF, when that text passes
/// [`check_policy_update`] against the zone's installed policy, `installed` (read from
/// `name`, which must itself check with no error).
pub fn rebuild_policy_update(
    zone: &ZoneName,
    name: &str,
    installed: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("the policy update is not UTF-8 (byte {})", e.valid_up_to()))?;
    let lf = text.replace("\r\n", "\n").replace('\r', "\n");
    let checked = tianping_policies::check(name, installed);
    let errors = checked.errors().count();
    let installed = checked
        .into_policy()
        .filter(|_| errors == 0)
        .ok_or_else(|| {
            format!(
                "the zone's installed policy `{name}` does not check, so no update can be judged \
                 against it"
            )
        })?;
    check_policy_update(zone, &installed, name, lf.as_bytes())?;
    Ok(lf.into_bytes())
}

/// A trust bundle for `zone` rebuilt: certificates only (any other PEM block, a private key
/// above all, is refused), passing [`check_trust_update`] against the `installed` bundle;
/// the certificates' PEM in their order, the text around them dropped.
pub fn rebuild_trust_bundle(
    zone: &ZoneName,
    installed: &[u8],
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "the trust bundle is not PEM text".to_owned())?;
    let blocks = pem_blocks(text).map_err(|e| format!("bad PEM ({e})"))?;
    if let Some(b) = blocks.iter().find(|b| b.label != "CERTIFICATE") {
        return Err(format!(
            "the trust bundle holds a `{}` block; only certificates may cross",
            b.label
        ));
    }
    check_trust_update(zone, installed, bytes)?;
    Ok(blocks
        .iter()
        .map(|b| pem_encode("CERTIFICATE", &b.der))
        .collect::<String>()
        .into_bytes())
}

/// A CRL rebuilt: the list's PEM alone, when it passes [`check_crl_update`] against the
/// zone's installed trust bundle at `now`.
pub fn rebuild_crl(installed_trust: &[u8], bytes: &[u8], now: UnixTime) -> Result<Vec<u8>, String> {
    let (_, der) = check_crl_update(installed_trust, bytes, now)?;
    Ok(pem_encode("X509 CRL", &der).into_bytes())
}
