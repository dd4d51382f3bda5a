//! The token-signing keys of a zone's provider on disk (the `store` feature), in
//! `zones/<zone>/idp/keys/`:
//!
//! - `<kid>.key`: the signing key, PKCS#8 PEM, mode 0600, written once;
//! - `keys.json`: which key signs, and the keys rotated out of signing that stay published (their
//!   public keys only) until every token they signed has expired, each with its `until`.
//!
//! Rotation writes the new private key first, then replaces `keys.json` in one rename, then
//! removes the old private key: a crash at any step leaves a folder that loads, signing with the
//! old key or the new one. A [`KeySet`] read back publishes what the one that rotated published.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tianping_core::{
    Algorithm, Existing, FileMode, PublicKey, RingSigner, Signer, UnixTime, read_private_key,
    write_atomic, write_private_key,
};

use crate::jwt::{KeySet, PublishedKey, kid_of};

/// The manifest's file name.
pub const KEYS_FILE: &str = "keys.json";

/// Why the key folder could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The folder has no keys yet.
    #[error("`{0}` holds no token-signing keys (run `tianping idp init`)")]
    Missing(String),
    /// The folder already has keys.
    #[error("`{0}` already holds token-signing keys")]
    Exists(String),
    /// A file could not be read or written.
    #[error("{0}")]
    File(String),
    /// `keys.json` or a key file is not what it should be.
    #[error("`{path}`: {why}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// One key of the folder, as `tianping idp keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's id (`kid`).
    pub kid: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// `None` for the signing key; for a rotated-out key, when it stops being published.
    pub until: Option<UnixTime>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    signing: String,
    #[serde(default)]
    retired: Vec<Retired>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Retired {
    kid: String,
    /// `<alg>:<base64url>`, as [`PublicKey`] writes itself.
    public: String,
    /// Unix milliseconds.
    until: u64,
}

/// A provider's key folder.
#[derive(Debug, Clone)]
pub struct KeyDir {
    dir: PathBuf,
}

fn file_err(e: impl std::fmt::Display) -> KeyError {
    KeyError::File(e.to_string())
}

impl KeyDir {
    /// The folder `dir` (`zones/<zone>/idp/keys/`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join(KEYS_FILE)
    }

    fn key_path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.key"))
    }

    /// Whether the folder holds keys.
    pub fn exists(&self) -> bool {
        self.manifest_path().exists()
    }

    /// Makes the first signing key; refuses a folder that has keys.
    pub fn create(&self, algorithm: Algorithm, now: UnixTime) -> Result<KeySet, KeyError> {
        if self.exists() {
            return Err(KeyError::Exists(self.dir.display().to_string()));
        }
        make_private_dir(&self.dir)?;
        let (signer, kid) = self.new_key(algorithm)?;
        let manifest = Manifest {
            signing: kid,
            retired: Vec::new(),
        };
        self.write_manifest(&manifest, Existing::Refuse)?;
        Ok(KeySet::restore(signer, Vec::new(), now))
    }

    /// The keys as the folder keeps them, rotated-out keys expired at `now` left out.
    pub fn load(&self, now: UnixTime) -> Result<KeySet, KeyError> {
        let manifest = self.read_manifest()?;
        let signer = self.read_signer(&manifest.signing)?;
        let previous = self.retired(&manifest)?;
        Ok(KeySet::restore(signer, previous, now))
    }

    /// The keys, made on first use.
    pub fn load_or_create(&self, algorithm: Algorithm, now: UnixTime) -> Result<KeySet, KeyError> {
        if self.exists() {
            self.load(now)
        } else {
            self.create(algorithm, now)
        }
    }

    /// Signs with a new `algorithm` key from now on; the old one stays published for
    /// `longest_token_life` from `now`, and keys whose tokens have all expired are forgotten.
    pub fn rotate(
        &self,
        algorithm: Algorithm,
        now: UnixTime,
        longest_token_life: Duration,
    ) -> Result<KeySet, KeyError> {
        let manifest = self.read_manifest()?;
        let mut set = self.load(now)?;
        let old = manifest.signing.clone();
        let (signer, kid) = self.new_key(algorithm)?;
        set.rotate(signer, now, longest_token_life);
        let retired = set
            .published(now)
            .into_iter()
            .filter(|k| k.kid != kid)
            .filter_map(|k| {
                Some(Retired {
                    kid: k.kid,
                    public: k.key.to_string(),
                    until: k.until?.as_millis(),
                })
            })
            .collect();
        let manifest = Manifest {
            signing: kid,
            retired,
        };
        self.write_manifest(&manifest, Existing::Replace)?;
        // The old private key signs nothing any more: its public half is in the manifest.
        match std::fs::remove_file(self.key_path(&old)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_err(format!("removing the old key `{old}`: {e}"))),
        }
        Ok(set)
    }

    /// Every key the folder publishes at `now`, the signing key first.
    pub fn list(&self, now: UnixTime) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(self
            .load(now)?
            .published(now)
            .into_iter()
            .map(|k| KeyInfo {
                algorithm: k.key.algorithm(),
                kid: k.kid,
                until: k.until,
            })
            .collect())
    }

    fn new_key(&self, algorithm: Algorithm) -> Result<(Arc<dyn Signer>, String), KeyError> {
        let (signer, pkcs8) = RingSigner::generate(algorithm).map_err(file_err)?;
        let kid = kid_of(&signer.public_key());
        write_private_key(&self.key_path(&kid), pkcs8.expose()).map_err(file_err)?;
        Ok((Arc::new(signer), kid))
    }

    fn read_signer(&self, kid: &str) -> Result<Arc<dyn Signer>, KeyError> {
        let path = self.key_path(kid);
        let malformed = |why: String| KeyError::Malformed {
            path: path.display().to_string(),
            why,
        };
        if kid.is_empty()
            || !kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(malformed(format!("`{kid}` is not a key id")));
        }
        let der = read_private_key(&path).map_err(|e| malformed(e.to_string()))?;
        let signer =
            RingSigner::from_pkcs8_any(der.expose()).map_err(|e| malformed(e.to_string()))?;
        let signer: Arc<dyn Signer> = Arc::new(signer);
        if kid_of(&signer.public_key()) != kid {
            return Err(malformed("the key is not the one its name gives".into()));
        }
        Ok(signer)
    }

    fn retired(&self, manifest: &Manifest) -> Result<Vec<PublishedKey>, KeyError> {
        manifest
            .retired
            .iter()
            .map(|r| {
                let key: PublicKey = r.public.parse().map_err(|e| KeyError::Malformed {
                    path: self.manifest_path().display().to_string(),
                    why: format!("retired key `{}`: {e}", r.kid),
                })?;
                Ok(PublishedKey {
                    kid: kid_of(&key),
                    key,
                    until: Some(UnixTime::from_millis(r.until)),
                })
            })
            .collect()
    }

    fn read_manifest(&self) -> Result<Manifest, KeyError> {
        let path = self.manifest_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing(self.dir.display().to_string()));
            }
            Err(e) => return Err(file_err(format!("reading `{}`: {e}", path.display()))),
        };
        serde_json::from_str(&text).map_err(|e| KeyError::Malformed {
            path: path.display().to_string(),
            why: e.to_string(),
        })
    }

    fn write_manifest(&self, m: &Manifest, existing: Existing) -> Result<(), KeyError> {
        let mut text = serde_json::to_string_pretty(m).map_err(file_err)?;
        text.push('\n');
        write_atomic(
            &self.manifest_path(),
            text.as_bytes(),
            FileMode::Private,
            existing,
        )
        .map_err(file_err)
    }
}

fn make_private_dir(dir: &Path) -> Result<(), KeyError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| file_err(format!("creating `{}`: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| file_err(format!("mode of `{}`: {e}", dir.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_survives_a_reload_and_retires_the_old_private_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::new(tmp.path().join("keys"));
        let t0 = UnixTime::from_secs(1_800_000_000);
        let first = dir.create(Algorithm::Es256, t0).unwrap();
        assert!(matches!(
            dir.create(Algorithm::Es256, t0),
            Err(KeyError::Exists(_))
        ));
        let old = first.kid().to_owned();
        let rotated = dir
            .rotate(Algorithm::Ed25519, t0, Duration::from_secs(300))
            .unwrap();
        assert_ne!(rotated.kid(), old);
        assert!(!dir.key_path(&old).exists());
        let again = dir
            .load(t0.saturating_add(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(again.kid(), rotated.kid());
        let listed = dir.list(t0).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].kid, old);
        assert_eq!(
            listed[1].until,
            Some(t0.saturating_add(Duration::from_secs(300)))
        );
        // once its tokens have expired the old key is published no more
        let later = t0.saturating_add(Duration::from_secs(301));
        assert_eq!(dir.list(later).unwrap().len(), 1);
    }

    #[test]
    fn a_swapped_key_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::new(tmp.path().join("keys"));
        let t0 = UnixTime::from_secs(1_800_000_000);
        let set = dir.create(Algorithm::Es256, t0).unwrap();
        let other = KeyDir::new(tmp.path().join("other"));
        let o = other.create(Algorithm::Es256, t0).unwrap();
        std::fs::remove_file(dir.key_path(set.kid())).unwrap();
        std::fs::copy(other.key_path(o.kid()), dir.key_path(set.kid())).unwrap();
        assert!(matches!(dir.load(t0), Err(KeyError::Malformed { .. })));
    }
}
