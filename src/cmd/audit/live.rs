//! The live-log client: a running owner of a log, reached on its control socket, asked the
//! audit read API (`tianping_audit::handle_request`) while it holds the store.

use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, miette};
use tianping_audit::{ErrorBody, ServiceRequest as Request};

/// The running owner of a log, reached on its control socket.
pub(super) struct Owner {
    pub(super) socket: PathBuf,
    /// The prefix of the log's API targets when its owner serves several logs (the audit
    /// store, its mirrors).
    prefix: Option<String>,
    /// The administrator's token of the log's zone (`run/admin-<zone>.token`), when there is
    /// one.
    token: Option<tianping_core::Secret<String>>,
    rt: tokio::runtime::Runtime,
}

impl Owner {
    /// The owner of `dir` if its folder records one and the socket answers the audit API;
    /// `None` with no record or a stale one (nothing listens there any more).
    pub(super) fn find(dir: &Path) -> miette::Result<Option<Self>> {
        let Some(record) = tianping_audit::owner_record(dir) else {
            return Ok(None);
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .into_diagnostic()?;
        let owner = Self {
            socket: record.socket,
            prefix: record.prefix,
            token: admin_token(dir),
            rt,
        };
        match owner.request(&Request::Status) {
            Ok((200, _)) => Ok(Some(owner)),
            // The owner serves the log, but not to this caller: say why, in its words.
            Ok((status @ (401 | 403), body)) => Err(owner_error(status, &body)),
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
        let err = |e: &dyn std::fmt::Display| tianping_net::NetError::Control(e.to_string());
        let mut builder = http::Request::builder().method(req.method()).uri(format!(
            "{}{}",
            self.prefix.as_deref().unwrap_or_default(),
            req.target()
        ));
        if let Some(token) = &self.token {
            builder = builder.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.expose()),
            );
        }
        let request = builder
            .body(tianping_net::ControlBody::empty())
            .map_err(|e| err(&e))?;
        self.rt.block_on(async {
            let resp =
                tianping_net::control_send(&self.socket, request, tianping_net::CONTROL_TIMEOUT)
                    .await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().bytes().await.map_err(|e| err(&e))?;
            Ok((status, body.to_vec()))
        })
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

/// The token `tianping login` keeps for the zone a log belongs to (`DATA/zones/<zone>/…`),
/// if the log sits in a data folder and the token file exists.
fn admin_token(dir: &Path) -> Option<tianping_core::Secret<String>> {
    let full = std::path::absolute(dir).ok()?;
    let parts: Vec<_> = full.components().collect();
    let at = parts.iter().rposition(|c| c.as_os_str() == "zones")?;
    let zone: tianping_core::ZoneName = parts.get(at + 1)?.as_os_str().to_str()?.parse().ok()?;
    let root: PathBuf = parts.get(..at)?.iter().collect();
    let file = tianping_core::DataDir::new(root).admin_token(&zone);
    let text = std::fs::read_to_string(file).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| tianping_core::Secret::new(token.to_owned()))
}

pub(super) fn owner_error(status: u16, body: &[u8]) -> miette::Report {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => miette!("{}", e.error),
        Err(_) => match std::str::from_utf8(body) {
            // A refusal from the socket itself (no credential, a refused one) is short text.
            Ok(text) if !text.is_empty() && text.len() <= 200 => {
                miette!("the log's owner answered status {status}: {}", text.trim())
            }
            _ => miette!("the log's owner answered status {status}"),
        },
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
