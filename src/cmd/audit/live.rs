//! The live-log client: a running owner of a log, reached on its control socket, asked the
//! audit read API (`tianping_audit::handle_request`) while it holds the store.

use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, miette};
use tianping_audit::{ErrorBody, ServiceRequest as Request};

/// The running owner of a log, reached on its control socket.
pub(super) struct Owner {
    pub(super) socket: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Owner {
    /// The owner of `dir` if its folder records one and the socket answers the audit API;
    /// `None` with no record or a stale one (nothing listens there any more).
    pub(super) fn find(dir: &Path) -> miette::Result<Option<Self>> {
        let Some(socket) = tianping_audit::owner_socket(dir) else {
            return Ok(None);
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .into_diagnostic()?;
        let owner = Self { socket, rt };
        match owner.request(&Request::Status) {
            Ok((200, _)) => Ok(Some(owner)),
            Ok((status, _)) => Err(miette!(
                "`{}` (the owner recorded in `{}`) does not serve the audit log (status {status})",
                owner.socket.display(),
                dir.display()
            )),
            Err(tianping_net::NetError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(miette!(
                "the log's owner at `{}` does not answer: {e}",
                owner.socket.display()
            )),
        }
    }

    pub(super) fn request(&self, req: &Request) -> Result<(u16, Vec<u8>), tianping_net::NetError> {
        let (status, body) = self.rt.block_on(tianping_net::control_request(
            &self.socket,
            req.method(),
            &req.target(),
            "",
        ))?;
        Ok((status, body.to_vec()))
    }

    /// The body of a 200 answer; the owner's error otherwise.
    pub(super) fn get(&self, req: &Request) -> miette::Result<Vec<u8>> {
        match self.request(req) {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => Err(owner_error(status, &body)),
            Err(e) => Err(miette!(
                "asking the log's owner at `{}`: {e}",
                self.socket.display()
            )),
        }
    }
}

pub(super) fn owner_error(status: u16, body: &[u8]) -> miette::Report {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => miette!("{}", e.error),
        Err(_) => miette!("the log's owner answered status {status}"),
    }
}

/// Refuses a command that writes the log while its owner runs.
pub(super) fn refuse_if_live(dir: &Path, what: &str) -> miette::Result<()> {
    match Owner::find(dir)? {
        Some(owner) => Err(miette!(
            "`{}` is live: its owner serves it on `{}`; `{what}` needs the owner stopped (only the owner writes its log)",
            dir.display(),
            owner.socket.display()
        )),
        None => Ok(()),
    }
}
