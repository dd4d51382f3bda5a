//! The owner file: `owner.sock` in a log folder names the control socket of the process that
//! has the log open, so commands read a live log through its owner.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// The file in a log folder that names the owner's control socket.
pub const OWNER_FILE: &str = "owner.sock";

/// Records in `log_dir` that `socket` (an absolute path) serves the log: writes [`OWNER_FILE`]
/// through a temporary file and a rename, so readers see the old record or the new one.
pub fn record_owner(log_dir: &Path, socket: &Path) -> io::Result<()> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    let text = socket
        .to_str()
        .ok_or_else(|| invalid("the socket path must be UTF-8"))?;
    if !socket.is_absolute() || text.contains('\n') {
        return Err(invalid("the socket path must be absolute, on one line"));
    }
    let tmp = log_dir.join(format!("{OWNER_FILE}.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, log_dir.join(OWNER_FILE))) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(log_dir).and_then(|d| d.sync_all())
}

/// The socket recorded in `log_dir`, if any (the record may be stale: its owner may have
/// ended without clearing it).
pub fn owner_socket(log_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(log_dir.join(OWNER_FILE)).ok()?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let path = PathBuf::from(line);
    (!line.is_empty() && !line.contains('\n') && path.is_absolute()).then_some(path)
}

/// Removes the owner record of `log_dir` (nothing to do if there is none).
pub fn clear_owner(log_dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(log_dir.join(OWNER_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_record() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(owner_socket(dir.path()), None);
        clear_owner(dir.path()).unwrap();
        let sock = dir.path().join("run/a-gateway.sock");
        record_owner(dir.path(), &sock).unwrap();
        assert_eq!(owner_socket(dir.path()), Some(sock.clone()));
        let other = Path::new("/run/tianping/b.sock");
        record_owner(dir.path(), other).unwrap();
        assert_eq!(owner_socket(dir.path()).as_deref(), Some(other));
        assert!(record_owner(dir.path(), Path::new("relative.sock")).is_err());
        assert!(record_owner(dir.path(), Path::new("/a\nb")).is_err());
        // Only the record itself is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [OWNER_FILE]);
        for junk in ["", "\n", "relative\n", "/a\n/b\n"] {
            std::fs::write(dir.path().join(OWNER_FILE), junk).unwrap();
            assert_eq!(owner_socket(dir.path()), None, "{junk:?}");
        }
        clear_owner(dir.path()).unwrap();
        assert_eq!(owner_socket(dir.path()), None);
    }
}
