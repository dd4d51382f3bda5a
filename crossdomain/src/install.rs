//! What the receiver installs itself (feature `daemon`): `policy-update`, `trust-bundle` and
//! `crl` deliveries to the services bound to the receiver (`*-trust-store`) replace the zone's
//! copies in the data folder, and `receipt` deliveries (`receipt-store`) are kept.
//!
//! Each is checked before anything changes, and a refusal is final (the transfer is refused,
//! the installed copy stays):
//! - a policy update must pass `tianping policy check`, and may not unseal a zone the installed
//!   policy seals; it replaces `zones/<zone>/policy.tp` and is put in force for the receiver's
//!   own decisions at once;
//! - a trust bundle must parse, hold this zone's CA, and every CA in it must chain to the
//!   installed bundle's root, a new root only cross-signed by the old one
//!   ([`tianping_certs::TrustStore::from_update`]); it replaces `zones/<zone>/trust.pem`;
//! - a CRL must be one list signed by a zone's CA of the installed trust bundle, with its
//!   `nextUpdate` still ahead (the receiver's [`Clock`]); it replaces
//!   `zones/<zone>/crl/<of>.pem`, `of` being the manifest's first label when that is a zone
//!   name, else the sending zone.
//!
//! The checks are functions of their own, without I/O ([`check_policy_update`],
//! [`check_trust_update`], [`check_crl_update`] in `update.rs`), which the binary's
//! `policy-update`, `trust-bundle` and `crl` filters run too, so a transfer the receiver would
//! refuse to install is refused by the filters on both sides of the link first.
//!
//! A file is replaced atomically: written under a temporary name beside it, fsynced, renamed,
//! and the folder fsynced. The receiver puts an installed policy in force for its own decisions
//! at once. Writing the file is all it does to tell the zone's other components: none of them
//! watches these files yet (the TLS configurations can reload, `ReloadableServerConfig::reload`,
//! but nothing calls it on a change), so they take an update when they next start.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use tianping_certs::TrustStore;
use tianping_core::{Clock, DataDir, SystemClock, ZoneName};
use tianping_policies::SharedPolicy;

use crate::deliver::{Delivery, Failure, Install};
use crate::update::{check_crl_update, check_policy_update, check_trust_update};

/// Keeps receipts the receiver is delivered (see [`Installer::with_receipts`]).
pub trait Receipts: Send {
    /// Keeps the receipt `d` carries; a refusal is final.
    fn keep(&mut self, d: &Delivery<'_>) -> Result<(), Failure>;
}

/// The receiver's own installs into the zone's copies.
pub struct Installer {
    dir: DataDir,
    zone: ZoneName,
    policy: Arc<SharedPolicy>,
    receipts: Option<Box<dyn Receipts>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Installer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Installer({})", self.zone)
    }
}

impl Installer {
    /// Installs into `zone`'s copies under `dir`, putting policy updates in force in `policy`.
    pub fn new(dir: DataDir, zone: ZoneName, policy: Arc<SharedPolicy>) -> Self {
        Self {
            dir,
            zone,
            policy,
            receipts: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Judges CRLs' `nextUpdate` by `clock` (the system's clock unless told).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps `receipt` deliveries with `receipts`.
    pub fn with_receipts(mut self, receipts: Box<dyn Receipts>) -> Self {
        self.receipts = Some(receipts);
        self
    }

    /// Checks and installs a policy update.
    pub fn install_policy(&self, bytes: &[u8]) -> Result<(), Failure> {
        let path = self.dir.zone_policy(&self.zone);
        let new = check_policy_update(
            &self.zone,
            &self.policy.load(),
            &path.display().to_string(),
            bytes,
        )
        .map_err(|why| Failure::Refuse(format!("the policy update is refused: {why}")))?;
        replace(&path, bytes).map_err(|e| Failure::Retry(e.to_string()))?;
        self.policy.store(new);
        Ok(())
    }

    /// Checks and installs a trust bundle.
    pub fn install_trust(&self, bytes: &[u8]) -> Result<(), Failure> {
        let refuse = |why: String| Failure::Refuse(format!("the trust bundle is refused: {why}"));
        TrustStore::from_pem(bytes, &[]).map_err(|e| refuse(e.to_string()))?;
        let path = self.dir.zone_trust_bundle(&self.zone);
        let installed = fs::read(&path).map_err(|e| Failure::Retry(e.to_string()))?;
        check_trust_update(&self.zone, &installed, bytes).map_err(refuse)?;
        replace(&path, bytes).map_err(|e| Failure::Retry(e.to_string()))
    }

    /// Checks and installs a CRL of zone `of`.
    pub fn install_crl(&self, of: &ZoneName, bytes: &[u8]) -> Result<(), Failure> {
        let refuse = |why: String| Failure::Refuse(format!("the CRL is refused: {why}"));
        let trust_path = self.dir.zone_trust_bundle(&self.zone);
        let trust = fs::read(&trust_path).map_err(|e| Failure::Retry(e.to_string()))?;
        check_crl_update(&trust, bytes, self.clock.now()).map_err(refuse)?;
        let path = self.dir.zone_crl(&self.zone, of);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Failure::Retry(e.to_string()))?;
        }
        replace(&path, bytes).map_err(|e| Failure::Retry(e.to_string()))
    }
}

impl Install for Installer {
    fn install(&mut self, d: &Delivery<'_>) -> Result<(), Failure> {
        let m = &d.header.manifest;
        match m.kind.as_str() {
            "policy-update" => self.install_policy(d.payload),
            "trust-bundle" => self.install_trust(d.payload),
            "crl" => {
                let of = m
                    .labels
                    .first()
                    .and_then(|l| l.parse::<ZoneName>().ok())
                    .unwrap_or_else(|| m.source.clone());
                self.install_crl(&of, d.payload)
            }
            "receipt" => match self.receipts.as_mut() {
                Some(r) => r.keep(d),
                None => Err(Failure::Refuse(
                    "this receiver keeps no receipts".to_owned(),
                )),
            },
            k => Err(Failure::Refuse(format!(
                "the receiver installs no kind `{k}` (service `{}`)",
                d.queued.service
            ))),
        }
    }
}

/// Replaces `path` with `bytes` atomically.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a file with no folder"))?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("a folder, not a file"))?;
    let tmp = dir.join(format!(".{}.new", name.to_string_lossy()));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use tianping_policies::DEFAULT_POLICY;

    use super::*;

    fn installer() -> (tempfile::TempDir, Installer, Arc<SharedPolicy>, DataDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let zone: ZoneName = "private".parse().unwrap();
        fs::create_dir_all(dir.zone(&zone)).unwrap();
        fs::write(dir.zone_policy(&zone), DEFAULT_POLICY).unwrap();
        let policy = tianping_policies::check("policy.tp", DEFAULT_POLICY)
            .into_policy()
            .unwrap();
        let shared = Arc::new(SharedPolicy::new(policy));
        let i = Installer::new(dir.clone(), zone, Arc::clone(&shared));
        (tmp, i, shared, dir)
    }

    #[test]
    fn a_policy_update_that_checks_replaces_the_zones_copy_and_is_in_force() {
        let (_tmp, i, shared, dir) = installer();
        let zone: ZoneName = "private".parse().unwrap();
        let before = shared.load().hash();
        let new = format!("{DEFAULT_POLICY}\n# amended\n");
        i.install_policy(new.as_bytes()).unwrap();
        assert_eq!(fs::read_to_string(dir.zone_policy(&zone)).unwrap(), new);
        assert_ne!(shared.load().hash(), before);
        // no temporary file is left beside it
        let names: Vec<_> = fs::read_dir(dir.zone(&zone))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("policy.tp")]);
    }

    #[test]
    fn a_policy_that_does_not_check_or_unseals_a_zone_is_refused_and_nothing_changes() {
        let (_tmp, i, shared, dir) = installer();
        let zone: ZoneName = "private".parse().unwrap();
        let before = shared.load().hash();
        let broken = i.install_policy(b"zone private {\n  nonsense\n");
        assert!(
            matches!(&broken, Err(Failure::Refuse(r)) if r.contains("does not check")),
            "{broken:?}"
        );
        let unsealed = DEFAULT_POLICY.replacen("\n  sealed\n", "\n", 1);
        assert_ne!(unsealed, DEFAULT_POLICY);
        let got = i.install_policy(unsealed.as_bytes());
        assert!(
            matches!(&got, Err(Failure::Refuse(r)) if r.contains("unseals zone `classified`")),
            "{got:?}"
        );
        assert!(matches!(
            i.install_policy(&[0xff, 0xfe]),
            Err(Failure::Refuse(_))
        ));
        assert_eq!(
            fs::read_to_string(dir.zone_policy(&zone)).unwrap(),
            DEFAULT_POLICY
        );
        assert_eq!(shared.load().hash(), before);
    }

    #[test]
    fn a_trust_bundle_that_does_not_parse_is_refused() {
        let (_tmp, i, _, dir) = installer();
        let zone: ZoneName = "private".parse().unwrap();
        assert!(matches!(
            i.install_trust(b"not a bundle"),
            Err(Failure::Refuse(_))
        ));
        assert!(!dir.zone_trust_bundle(&zone).exists());
    }
}

#[cfg(test)]
mod backoff_tests {
    use crate::deliver::{RETRY_FIRST, RETRY_MAX, backoff};

    #[test]
    fn the_wait_doubles_from_the_first_up_to_the_longest() {
        assert_eq!(backoff(1), RETRY_FIRST);
        assert_eq!(backoff(2), RETRY_FIRST * 2);
        assert_eq!(backoff(3), RETRY_FIRST * 4);
        assert_eq!(backoff(100), RETRY_MAX);
        assert!((1..200).all(|n| backoff(n) <= backoff(n + 1)));
    }
}
