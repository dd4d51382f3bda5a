//! The PKI folder: files in and out of the pure [`crate::CaCert`] operations.
//!
//! ```text
//! DIR/root-ca.pem  root-ca.key (unless kept elsewhere)  trust.pem (root and every zone CA)
//! DIR/zones/<zone>/ca.pem  ca.key  crl.pem  revoked.txt (serial, unix seconds, reason)
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use tianping_core::{UnixTime, ZoneName};

use crate::CertError;
use crate::identity::{summarize, zone_of};
use crate::issue::{CaCert, IssuedCert, KeyAlg, LeafRequest, Revocation, RevokeReason};
use crate::pem::certs_from_pem;
use crate::verify::TrustStore;

/// How long the CRLs written by this module are valid, in days.
pub const DEFAULT_CRL_DAYS: u32 = 30;

/// Writes `bytes` to a new file at `path` with mode 0600, whole or not at all; refuses an
/// existing file.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    Ok(tianping_core::write_private_file(path, bytes)?)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    fs::write(path, bytes).map_err(|e| CertError::io("write", path, &e))
}

/// Replaces `path` with `bytes` in one rename: a reader sees the old file or the new one.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    Ok(tianping_core::write_atomic(
        path,
        bytes,
        tianping_core::FileMode::Public,
        tianping_core::Existing::Replace,
    )?)
}

fn read_text(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|e| CertError::io("read", path, &e))
}

/// A PKCS#8 key file, read through `tianping_core`'s key reader and held only in secrets.
fn read_key_pem(path: &Path) -> Result<tianping_core::Secret<String>, CertError> {
    let der = tianping_core::read_private_key(path).map_err(|e| match e {
        tianping_core::PemError::File(f) => CertError::from(f),
        other => CertError::malformed(format!("`{}`: {other}", path.display())),
    })?;
    Ok(tianping_core::Secret::new(tianping_core::pem_encode(
        tianping_core::PRIVATE_KEY_LABEL,
        der.expose(),
    )))
}

fn mkdir(path: &Path) -> Result<(), CertError> {
    fs::create_dir_all(path).map_err(|e| CertError::io("create", path, &e))
}

/// What `certs init` makes.
#[derive(Debug, Clone)]
pub struct PkiInit {
    /// The organization named in every CA.
    pub org: String,
    /// Where to write the root key instead of `DIR/root-ca.key` (to keep it offline).
    pub root_key: Option<PathBuf>,
    /// The zones that get a CA.
    pub zones: Vec<ZoneName>,
    /// The CAs' key algorithm.
    pub key: KeyAlg,
}

impl Default for PkiInit {
    fn default() -> Self {
        Self {
            org: "Tianping Court".to_owned(),
            root_key: None,
            zones: tianping_core::DEFAULT_ZONES
                .iter()
                .filter_map(|z| z.parse().ok())
                .collect(),
            key: KeyAlg::EcP256,
        }
    }
}

/// A PKI folder.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Creates the root CA, a CA and an empty CRL for each zone, and the trust bundle in `dir`,
    /// which must not exist. Built in a sibling folder and renamed into place, so a failure
    /// leaves nothing behind.
    pub fn init(dir: &Path, init: &PkiInit, now: UnixTime) -> Result<Self, CertError> {
        if dir.exists() {
            return Err(CertError::Invalid(format!(
                "`{}` already exists; nothing was changed",
                dir.display()
            )));
        }
        if init.zones.is_empty() {
            return Err(CertError::Invalid("no zones to make CAs for".to_owned()));
        }
        let name = dir.file_name().ok_or_else(|| {
            CertError::Invalid(format!("`{}` is not a folder name", dir.display()))
        })?;
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Some(key) = &init.root_key {
            if key.exists() {
                return Err(CertError::Invalid(format!(
                    "`{}` already exists; nothing was changed",
                    key.display()
                )));
            }
        }
        let tmp = parent.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        let result = Self::build(&tmp, init, now).and_then(|root_key| {
            if let Some(path) = &init.root_key {
                write_private(path, root_key.as_bytes())?;
            }
            fs::rename(&tmp, dir).map_err(|e| {
                if let Some(path) = &init.root_key {
                    let _ = fs::remove_file(path);
                }
                CertError::io("create", dir, &e)
            })
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes everything but an offline root key into `tmp`; returns the root key PEM.
    fn build(tmp: &Path, init: &PkiInit, now: UnixTime) -> Result<String, CertError> {
        mkdir(tmp)?;
        let pki = Pki {
            dir: tmp.to_path_buf(),
        };
        let root = CaCert::new_root(&init.org, init.key, now)?;
        write_public(&pki.root_cert_path(), root.cert_pem().as_bytes())?;
        if init.root_key.is_none() {
            write_private(&tmp.join("root-ca.key"), root.key_pem().expose().as_bytes())?;
        }
        let mut trust = root.cert_pem().to_owned();
        for zone in &init.zones {
            let ca = root.new_zone(zone, &init.org, init.key, now)?;
            mkdir(&pki.zone_dir(zone))?;
            write_public(&pki.zone_ca_path(zone), ca.cert_pem().as_bytes())?;
            write_private(&pki.zone_key_path(zone), ca.key_pem().expose().as_bytes())?;
            write_public(&pki.revoked_path(zone), b"")?;
            write_public(
                &pki.crl_path(zone),
                ca.crl(&[], now, DEFAULT_CRL_DAYS)?.as_bytes(),
            )?;
            trust.push_str(ca.cert_pem());
        }
        write_public(&pki.trust_pem_path(), trust.as_bytes())?;
        Ok(root.key_pem().expose().clone())
    }

    /// An existing PKI folder.
    pub fn open(dir: &Path) -> Result<Self, CertError> {
        let pki = Self {
            dir: dir.to_path_buf(),
        };
        if !pki.trust_pem_path().is_file() {
            return Err(CertError::Invalid(format!(
                "`{}` is not a pki folder (no trust.pem); make one with `tianping certs init`",
                dir.display()
            )));
        }
        Ok(pki)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `DIR/root-ca.pem`.
    pub fn root_cert_path(&self) -> PathBuf {
        self.dir.join("root-ca.pem")
    }
    /// `DIR/trust.pem`.
    pub fn trust_pem_path(&self) -> PathBuf {
        self.dir.join("trust.pem")
    }
    /// `DIR/zones/<zone>/`.
    pub fn zone_dir(&self, zone: &ZoneName) -> PathBuf {
        self.dir.join("zones").join(zone.as_str())
    }
    /// `DIR/zones/<zone>/ca.pem`.
    pub fn zone_ca_path(&self, zone: &ZoneName) -> PathBuf {
        self.zone_dir(zone).join("ca.pem")
    }
    /// `DIR/zones/<zone>/ca.key`.
    pub fn zone_key_path(&self, zone: &ZoneName) -> PathBuf {
        self.zone_dir(zone).join("ca.key")
    }
    /// `DIR/zones/<zone>/crl.pem`.
    pub fn crl_path(&self, zone: &ZoneName) -> PathBuf {
        self.zone_dir(zone).join("crl.pem")
    }
    /// `DIR/zones/<zone>/revoked.txt`.
    pub fn revoked_path(&self, zone: &ZoneName) -> PathBuf {
        self.zone_dir(zone).join("revoked.txt")
    }

    /// The zones that have a CA here.
    pub fn zones(&self) -> Vec<ZoneName> {
        let mut zones: Vec<ZoneName> = fs::read_dir(self.dir.join("zones"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .filter(|z| self.zone_ca_path(z).is_file())
            .collect();
        zones.sort();
        zones
    }

    /// Adds a CA for a new `zone`, signed by the root (whose key, PKCS#8 PEM, is only needed
    /// here), and appends it to the trust bundle. Refuses a zone that already has a CA.
    pub fn add_zone(
        &self,
        zone: &ZoneName,
        root_key_pem: &str,
        key: KeyAlg,
        now: UnixTime,
    ) -> Result<(), CertError> {
        let dir = self.zone_dir(zone);
        if dir.exists() {
            return Err(CertError::Invalid(format!(
                "zone `{zone}` already has a CA; nothing was changed"
            )));
        }
        let root_pem = read_text(&self.root_cert_path())?;
        let root = CaCert::from_pem(&root_pem, root_key_pem)?;
        let org = root_org(&root_pem).unwrap_or_else(|| PkiInit::default().org);
        let ca = root.new_zone(zone, &org, key, now)?;
        let tmp = self
            .dir
            .join("zones")
            .join(format!(".{zone}.tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let made = (|| {
            mkdir(&tmp)?;
            write_public(&tmp.join("ca.pem"), ca.cert_pem().as_bytes())?;
            write_private(&tmp.join("ca.key"), ca.key_pem().expose().as_bytes())?;
            write_public(&tmp.join("revoked.txt"), b"")?;
            write_public(
                &tmp.join("crl.pem"),
                ca.crl(&[], now, DEFAULT_CRL_DAYS)?.as_bytes(),
            )?;
            fs::rename(&tmp, &dir).map_err(|e| CertError::io("create", &dir, &e))
        })();
        if made.is_err() {
            let _ = fs::remove_dir_all(&tmp);
            return made;
        }
        let mut trust = read_text(&self.trust_pem_path())?;
        if !trust.ends_with('\n') {
            trust.push('\n');
        }
        trust.push_str(ca.cert_pem());
        replace(&self.trust_pem_path(), trust.as_bytes())
    }

    /// The CA of `zone`, with its key.
    pub fn zone_ca(&self, zone: &ZoneName) -> Result<CaCert, CertError> {
        let cert_path = self.zone_ca_path(zone);
        if !cert_path.is_file() {
            return Err(CertError::Invalid(format!(
                "there is no CA for zone `{zone}` in `{}`",
                self.dir.display()
            )));
        }
        CaCert::from_pem(
            &read_text(&cert_path)?,
            read_key_pem(&self.zone_key_path(zone))?.expose(),
        )
    }

    /// Issues a leaf from `zone`'s CA.
    pub fn issue(
        &self,
        zone: &ZoneName,
        req: &LeafRequest,
        now: UnixTime,
    ) -> Result<IssuedCert, CertError> {
        self.zone_ca(zone)?.issue(req, now)
    }

    /// The trust bundle and every zone's CRL.
    pub fn trust_store(&self) -> Result<TrustStore, CertError> {
        let trust = fs::read(self.trust_pem_path())
            .map_err(|e| CertError::io("read", &self.trust_pem_path(), &e))?;
        let mut crls = Vec::new();
        for z in self.zones() {
            let p = self.crl_path(&z);
            if p.is_file() {
                crls.push(fs::read(&p).map_err(|e| CertError::io("read", &p, &e))?);
            }
        }
        let refs: Vec<&[u8]> = crls.iter().map(Vec::as_slice).collect();
        TrustStore::from_pem(&trust, &refs)
    }

    /// The revocations recorded for `zone`.
    pub fn revocations(&self, zone: &ZoneName) -> Result<Vec<Revocation>, CertError> {
        let path = self.revoked_path(zone);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = read_text(&path)?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let bad =
                    || CertError::malformed(format!("line {} of `{}`", i + 1, path.display()));
                let mut parts = l.split_whitespace();
                let serial = parts.next().ok_or_else(bad)?;
                let at = parts.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
                let reason = parts
                    .next()
                    .unwrap_or("unspecified")
                    .parse()
                    .map_err(|_| bad())?;
                if hex::decode(serial).is_err() {
                    return Err(bad());
                }
                Ok(Revocation {
                    serial: serial.to_owned(),
                    at,
                    reason,
                })
            })
            .collect()
    }

    /// Records the revocation of the leaf in `cert_pem` (the first certificate) in its zone's
    /// folder and rewrites the zone's `crl.pem`. Returns the zone and the serial.
    pub fn revoke(
        &self,
        cert_pem: &[u8],
        reason: RevokeReason,
        now: UnixTime,
    ) -> Result<(ZoneName, String), CertError> {
        let certs = certs_from_pem(cert_pem)?;
        let leaf = certs
            .first()
            .ok_or_else(|| CertError::malformed("no certificate in the pem text"))?;
        let s = summarize(leaf)?;
        let zone = zone_of(&s)?.ok_or_else(|| {
            CertError::MissingIdentity("the certificate names no zone".to_owned())
        })?;
        let ca = self.zone_ca(&zone)?;
        let ca_der = certs_from_pem(ca.cert_pem().as_bytes())?;
        let ca_subject = ca_der
            .first()
            .and_then(|d| x509_parser::parse_x509_certificate(d).ok())
            .map(|(_, c)| c.subject().to_string());
        if ca_subject.as_deref() != Some(s.issuer_dn.as_str()) {
            return Err(CertError::UnknownIssuer(format!(
                ": it was not issued by the `{zone}` CA of this pki"
            )));
        }
        let mut list = self.revocations(&zone)?;
        if list.iter().any(|r| r.serial == s.serial) {
            return Err(CertError::Invalid(format!(
                "certificate `{}` is already revoked",
                s.serial
            )));
        }
        list.push(Revocation {
            serial: s.serial.clone(),
            at: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            reason,
        });
        let crl = ca.crl(&list, now, DEFAULT_CRL_DAYS)?;
        let text: String = list
            .iter()
            .map(|r| format!("{} {} {}\n", r.serial, r.at, r.reason))
            .collect();
        replace(&self.revoked_path(&zone), text.as_bytes())?;
        replace(&self.crl_path(&zone), crl.as_bytes())?;
        Ok((zone, s.serial))
    }

    /// A signed CRL of `zone`'s recorded revocations, valid for `days` days from `now`.
    pub fn crl(&self, zone: &ZoneName, now: UnixTime, days: u32) -> Result<String, CertError> {
        let ca = self.zone_ca(zone)?;
        ca.crl(&self.revocations(zone)?, now, days)
    }

    /// Whether `serial` (hex) is recorded as revoked in `zone`.
    pub fn is_revoked(&self, zone: &ZoneName, serial: &str) -> Result<bool, CertError> {
        Ok(self.revocations(zone)?.iter().any(|r| r.serial == serial))
    }

    /// Writes an issued certificate to `PREFIX.pem` (chain) and `PREFIX.key` (0600); refuses
    /// to overwrite either.
    pub fn write_issued(
        issued: &IssuedCert,
        prefix: &Path,
    ) -> Result<(PathBuf, PathBuf), CertError> {
        let pem = with_suffix(prefix, "pem");
        let key = with_suffix(prefix, "key");
        for p in [&pem, &key] {
            if p.exists() {
                return Err(CertError::Invalid(format!(
                    "`{}` already exists; nothing was changed",
                    p.display()
                )));
            }
        }
        write_private(&key, issued.key_pem.expose().as_bytes())?;
        if let Err(e) = write_public(&pem, issued.chain_pem.as_bytes()) {
            let _ = fs::remove_file(&key);
            return Err(e);
        }
        Ok((pem, key))
    }
}

/// The organization named in the root certificate.
fn root_org(root_pem: &str) -> Option<String> {
    let der = certs_from_pem(root_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.first()?).ok()?;
    let org = cert
        .subject()
        .iter_organization()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(org)
}

fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// `len` random bytes from the operating system (for cookie and similar symmetric keys).
pub fn random_secret(len: usize) -> Result<tianping_core::Secret<Vec<u8>>, CertError> {
    use ring::rand::SecureRandom as _;
    let mut b = vec![0u8; len];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| CertError::Generate("no randomness available".to_owned()))?;
    Ok(tianping_core::Secret::new(b))
}

impl TrustStore {
    /// A trust store from the trust bundle file and CRL files (PEM or DER).
    pub fn load(trust_pem_path: &Path, crl_paths: &[PathBuf]) -> Result<Self, CertError> {
        let trust =
            fs::read(trust_pem_path).map_err(|e| CertError::io("read", trust_pem_path, &e))?;
        let crls = crl_paths
            .iter()
            .map(|p| fs::read(p).map_err(|e| CertError::io("read", p, &e)))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&[u8]> = crls.iter().map(Vec::as_slice).collect();
        Self::from_pem(&trust, &refs)
    }
}
