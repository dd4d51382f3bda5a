//! Files written whole or not at all: a temporary file in the same folder, fsync, rename (or link,
//! when an existing file must not be replaced), fsync of the folder. Keys, tokens and every other
//! private file are written at mode 0600 from the first byte.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file that could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} `{path}`: {reason}")]
pub struct FileError {
    /// What was being done (`read`, `create`, `write`, `replace`).
    pub action: &'static str,
    /// The file.
    pub path: String,
    /// What the system said.
    pub reason: String,
}

impl FileError {
    pub(crate) fn new(action: &'static str, path: &Path, reason: impl ToString) -> Self {
        Self {
            action,
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Who may read a file written by [`write_atomic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// Mode 0600: keys, tokens, anything secret.
    Private,
    /// Mode 0644: certificates, addresses, policies.
    Public,
}

/// What [`write_atomic`] does when the file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it in one rename: a reader sees the old file or the new one, never a mix.
    Replace,
    /// Refuse, leaving it untouched (the check and the creation are one step, so two writers
    /// cannot both succeed).
    Refuse,
}

/// Writes `bytes` to `path` whole or not at all, and durably: through a temporary file in the same
/// folder, fsync, rename (or hard link for [`Existing::Refuse`]), fsync of the folder.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: FileMode,
    existing: Existing,
) -> Result<(), FileError> {
    let dir = folder_of(path);
    let tmp = temp_path(path, &dir);
    let result = write_temp(&tmp, bytes, mode).and_then(|()| match existing {
        Existing::Replace => fs::rename(&tmp, path).map_err(|e| FileError::new("replace", path, e)),
        Existing::Refuse => {
            let linked = fs::hard_link(&tmp, path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    FileError::new("create", path, "it already exists")
                } else {
                    FileError::new("create", path, e)
                }
            });
            let _ = fs::remove_file(&tmp);
            linked
        }
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FileError::new("sync the folder of", path, e))
}

/// Writes a new private file (mode 0600) whole or not at all; refuses an existing one.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic(path, bytes, FileMode::Private, Existing::Refuse)
}

fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.<name>.<pid>.<n>.tmp` beside the file: unique across processes and threads.
fn temp_path(path: &Path, dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

fn write_temp(tmp: &Path, bytes: &[u8], mode: FileMode) -> Result<(), FileError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(match mode {
            FileMode::Private => 0o600,
            FileMode::Public => 0o644,
        });
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(tmp)
        .map_err(|e| FileError::new("create", tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| FileError::new("write", tmp, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_0600_and_never_replaced() {
        let dir = tempfile::TempDir::new().unwrap();
        let key = dir.path().join("node.key");
        write_private_file(&key, b"one").unwrap();
        assert_eq!(mode(&key), 0o600);
        let err = write_private_file(&key, b"two").unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(fs::read(&key).unwrap(), b"one");
        // no temporary file is left behind, on success or refusal
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn replace_swaps_the_whole_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let p = dir.path().join("a.addr");
        write_atomic(&p, b"old", FileMode::Public, Existing::Replace).unwrap();
        write_atomic(&p, b"new", FileMode::Public, Existing::Replace).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(mode(&p), 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_names_the_file() {
        let err = write_private_file(Path::new("/nonexistent-tianping/k.key"), b"x").unwrap_err();
        assert_eq!(err.action, "create");
        assert!(err.path.contains("k.key"), "{err}");
    }
}
