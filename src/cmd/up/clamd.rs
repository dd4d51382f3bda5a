//! The ClamAV daemon `up` runs for the flows whose sanitize steps ask `scan`
//! (`classified-import` in the default policy), so those flows work on one machine without an
//! operator setting up `clamd` first.
//!
//! It is Debian's `clamd` (package `clamav-daemon`), run in the foreground with a
//! configuration written under `DIR/run/clamd/`, listening on `DIR/run/clamd.sock`, which the
//! exchange daemons' `scan` step asks before Debian's own socket
//! ([`crate::filters::clamd_socket`]). Its signatures are the machine's (`/var/lib/clamav`, kept
//! by `freshclam`) when there are any; otherwise (a machine without network, such as CI) a
//! database of the EICAR test file only, written to `DIR/run/clamd/db/`, and `up` says so: the
//! step then proves the daemon is asked and answers, not that real malware is caught.
//!
//! `up` supervises it as it does every component (`supervise.rs`): it starts first, is ready
//! once it answers `PING`, and one that dies is started again with backoff, audited, and shown
//! by `tianping status`. Its socket is left in place across a restart (`FixStaleSocket`: the
//! new daemon replaces it), so a component started meanwhile still asks it there.

use std::path::{Path, PathBuf};

use tianping_core::DataDir;

/// The EICAR anti-virus test file's MD5 and size, as an `.hdb` line names them.
const EICAR_HDB: &str = "44d88612fea8a8f36de82e1278abb02f:68:Tianping.Demo.EICAR\n";
/// Where `freshclam` keeps the machine's signatures.
const SYSTEM_DB: &str = "/var/lib/clamav";
/// The largest stream `clamd` scans: the largest payload of a scanning flow of the default
/// policy (`classified-import`, 100 MiB); a longer stream is refused by the daemon, and the
/// step with it.
const STREAM_MAX: &str = "100M";

/// `clamd` on `PATH` or where Debian puts it.
pub(crate) fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("clamd"))
        .find(|p| p.is_file())
}

/// Whether `dir` holds a signature database `clamd` loads.
fn has_signatures(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            [".cvd", ".cld", ".hdb", ".ndb", ".hsb", ".ldb"]
                .iter()
                .any(|ext| n.ends_with(ext))
        })
    })
}

/// What `up` runs: the program, its arguments, and which signatures it loads.
pub(crate) struct Plan {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    /// `true` when only the EICAR test signature is loaded (no `freshclam` database here).
    pub(crate) test_signatures_only: bool,
}

/// Writes the daemon's configuration (and, without a machine database, the test database)
/// under `DIR/run/clamd/`; `None` when `clamd` is not installed.
pub(crate) fn prepare(dir: &DataDir) -> std::io::Result<Option<Plan>> {
    let Some(program) = binary() else {
        return Ok(None);
    };
    let base = dir.run().join("clamd");
    std::fs::create_dir_all(&base)?;
    let system = Path::new(SYSTEM_DB);
    let (db, test_only) = if has_signatures(system) {
        (system.to_path_buf(), false)
    } else {
        let db = base.join("db");
        std::fs::create_dir_all(&db)?;
        tianping_core::write_atomic(
            &db.join("tianping-demo.hdb"),
            EICAR_HDB.as_bytes(),
            tianping_core::FileMode::Public,
            tianping_core::Existing::Replace,
        )
        .map_err(std::io::Error::other)?;
        (db, true)
    };
    let socket = crate::filters::fabric_clamd_socket(dir);
    let _ = std::fs::remove_file(&socket);
    let conf = base.join("clamd.conf");
    let text = format!(
        "LocalSocket {}\nLocalSocketMode 600\nDatabaseDirectory {}\nTemporaryDirectory {}\n\
         PidFile {}\nLogFile {}\nForeground yes\nStreamMaxLength {STREAM_MAX}\nBytecode no\n\
         SelfCheck 0\nFixStaleSocket yes\n",
        socket.display(),
        db.display(),
        base.display(),
        base.join("clamd.pid").display(),
        base.join("clamd.log").display(),
    );
    tianping_core::write_atomic(
        &conf,
        text.as_bytes(),
        tianping_core::FileMode::Public,
        tianping_core::Existing::Replace,
    )
    .map_err(std::io::Error::other)?;
    Ok(Some(Plan {
        program,
        args: vec!["--config-file".into(), conf.display().to_string()],
        test_signatures_only: test_only,
    }))
}
