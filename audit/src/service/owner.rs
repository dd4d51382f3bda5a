//! The owner file: `owner.sock` in a log folder names the control socket of the process that
//! has the log open, so commands read a live log through its owner.
//!
//! Its first line is the socket's absolute path. An owner that serves several logs on one socket
//! (the audit store, its mirrors) adds a second line: the prefix it serves this log's API under
//! (`/mirrors/internet/gateway` for `/mirrors/internet/gateway/audit/v1/...`).

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// The file in a log folder that names the owner's control socket.
pub const OWNER_FILE: &str = "owner.sock";

/// Records in `log_dir` that `socket` (an absolute path) serves the log: writes [`OWNER_FILE`]
/// through a temporary file and a rename, so readers see the old record or the new one.
pub fn record_owner(log_dir: &Path, socket: &Path) -> io::Result<()> {
    write_record(log_dir, socket, None)
}

/// Records in `log_dir` that `socket` serves the log's API under `prefix` (a path starting with
/// `/`, without a trailing `/`, query or whitespace), for an owner of several logs.
pub fn record_owner_under(log_dir: &Path, socket: &Path, prefix: &str) -> io::Result<()> {
    if !valid_prefix(prefix) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the prefix must be a path such as `/mirrors/internet/gateway`",
        ));
    }
    write_record(log_dir, socket, Some(prefix))
}

fn valid_prefix(p: &str) -> bool {
    p.len() > 1
        && p.starts_with('/')
        && !p.ends_with('/')
        && !p.contains("//")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
}

fn write_record(log_dir: &Path, socket: &Path, prefix: Option<&str>) -> io::Result<()> {
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
        if let Some(p) = prefix {
            f.write_all(p.as_bytes())?;
            f.write_all(b"\n")?;
        }
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
    owner_record(log_dir)
        .filter(|r| r.prefix.is_none())
        .map(|r| r.socket)
}

/// A log's owner as its folder records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRecord {
    /// The owner's control socket.
    pub socket: PathBuf,
    /// The prefix of the log's API targets on that socket (`None`: `/audit/v1/...` itself).
    pub prefix: Option<String>,
}

/// The owner recorded in `log_dir`, with its prefix if it serves several logs (the record may
/// be stale: its owner may have ended without clearing it).
pub fn owner_record(log_dir: &Path) -> Option<OwnerRecord> {
    let text = std::fs::read_to_string(log_dir.join(OWNER_FILE)).ok()?;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let (line, prefix) = match body.split_once('\n') {
        Some((s, p)) => (s, Some(p)),
        None => (body, None),
    };
    let path = PathBuf::from(line);
    let prefix_ok = prefix.is_none_or(valid_prefix);
    (!line.is_empty() && path.is_absolute() && prefix_ok).then(|| OwnerRecord {
        socket: path,
        prefix: prefix.map(str::to_owned),
    })
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
    fn owner_file() {
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

    #[test]
    fn owner_record_with_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let sock = Path::new("/run/tianping/private-audit-store.sock");
        record_owner_under(dir.path(), sock, "/mirrors/internet/gateway").unwrap();
        assert_eq!(
            owner_record(dir.path()),
            Some(OwnerRecord {
                socket: sock.to_owned(),
                prefix: Some("/mirrors/internet/gateway".into()),
            })
        );
        // a reader of plain records does not take it for the log's own socket
        assert_eq!(owner_socket(dir.path()), None);
        for bad in [
            "",
            "/",
            "mirrors/x",
            "/m/",
            "/m//x",
            "/m x",
            "/m?x",
            "/m\n/x",
        ] {
            assert!(
                record_owner_under(dir.path(), sock, bad).is_err(),
                "{bad:?}"
            );
        }
        for junk in ["/a\n/b\n/c\n", "/a\nb\n", "/a\n/b/\n", "relative\n/b\n"] {
            std::fs::write(dir.path().join(OWNER_FILE), junk).unwrap();
            assert_eq!(owner_record(dir.path()), None, "{junk:?}");
        }
        record_owner(dir.path(), sock).unwrap();
        assert_eq!(owner_record(dir.path()).unwrap().prefix, None);
    }
}
