//! The running IdP, reached on its control socket by the commands that act on its state.

use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, miette};
use serde_json::Value;
use tianping_net::{CONTROL_TIMEOUT, ControlBody, NetError, control_send};

/// A running IdP's control socket.
pub(crate) struct Live {
    socket: PathBuf,
    /// The administrator's token `tianping login` keeps for the zone, sent when it exists.
    token: Option<tianping_core::Secret<String>>,
    rt: tokio::runtime::Runtime,
}

/// The token `tianping login` keeps beside the zone's IdP socket (`run/<zone>-idp.sock` →
/// `run/admin-<zone>.token`), if there is one.
pub(crate) fn admin_token(socket: &Path) -> Option<tianping_core::Secret<String>> {
    let name = socket.file_name()?.to_str()?;
    let zone = name.strip_suffix("-idp.sock")?;
    let file = socket.parent()?.join(format!("admin-{zone}.token"));
    let text = std::fs::read_to_string(file).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| tianping_core::Secret::new(token.to_owned()))
}

impl Live {
    /// The IdP serving `socket`, if one answers there; `None` when nothing listens (stopped).
    pub(crate) fn find(socket: &Path) -> miette::Result<Option<Self>> {
        if !socket.exists() {
            return Ok(None);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .into_diagnostic()?;
        let live = Self {
            socket: socket.to_path_buf(),
            token: admin_token(socket),
            rt,
        };
        match live.request("GET", "/status", None) {
            Ok((200, _)) => Ok(Some(live)),
            Ok((status, body)) => Err(answer_error(&live.socket, status, &body)),
            Err(NetError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(miette!(
                "the IdP at `{}` does not answer: {e}",
                socket.display()
            )),
        }
    }

    fn request(
        &self,
        method: &str,
        target: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), NetError> {
        let err = |e: &dyn std::fmt::Display| NetError::Control(e.to_string());
        let mut builder = http::Request::builder().method(method).uri(target);
        if let Some(token) = &self.token {
            builder = builder.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.expose()),
            );
        }
        let body = match body {
            Some(v) => {
                builder = builder.header(http::header::CONTENT_TYPE, "application/json");
                ControlBody::bytes(v.to_string())
            }
            None => ControlBody::empty(),
        };
        let request = builder.body(body).map_err(|e| err(&e))?;
        self.rt.block_on(async {
            let resp = control_send(&self.socket, request, CONTROL_TIMEOUT).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().bytes().await.map_err(|e| err(&e))?;
            Ok((status, body.to_vec()))
        })
    }

    fn json(&self, method: &str, target: &str, body: Option<&Value>) -> miette::Result<Value> {
        match self.request(method, target, body) {
            Ok((200, b)) => serde_json::from_slice(&b).into_diagnostic(),
            Ok((status, b)) => Err(answer_error(&self.socket, status, &b)),
            Err(e) => Err(miette!(
                "asking the IdP at `{}`: {e}",
                self.socket.display()
            )),
        }
    }

    /// The JSON answer to a `POST` of `body`.
    pub(crate) fn post(&self, target: &str, body: &Value) -> miette::Result<Value> {
        self.json("POST", target, Some(body))
    }
}

/// The IdP's refusal, in its words.
fn answer_error(socket: &Path, status: u16, body: &[u8]) -> miette::Report {
    let said = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .or_else(|| {
            std::str::from_utf8(body)
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.len() <= 200)
                .map(str::to_owned)
        });
    match said {
        Some(s) => miette!("the IdP at `{}` answered {status}: {s}", socket.display()),
        None => miette!("the IdP at `{}` answered {status}", socket.display()),
    }
}
