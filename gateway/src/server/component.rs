//! Forwarding to a service bound to a component of the zone (`audit-store`,
//! `directory-authority`, `receipt-store`): HTTP/1.1 over that component's control socket
//! `run/<zone>-<component>.sock`, the request's path put under [`crate::COMPONENT_PREFIX`]`<service>`
//! so the component tells a gatewayed user request (carrying the user's `Tianping-Assertion`,
//! which it verifies and decides on by the roles in it) from its own admin API. The request
//! body is read whole first, up to [`MAX_COMPONENT_BODY`] (the components' user APIs take small
//! JSON bodies, never documents); the answer streams back.

use std::path::PathBuf;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use tianping_net::{Body, BoxError, ControlBody, ResponseBody};

use crate::COMPONENT_PREFIX;

/// The largest request body forwarded to a component (1 MiB).
pub(crate) const MAX_COMPONENT_BODY: u64 = 1 << 20;
/// The longest a component may take to answer.
const COMPONENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One service reached over a component's control socket.
#[derive(Debug)]
pub(crate) struct ComponentTarget {
    pub(crate) service: String,
    pub(crate) socket: PathBuf,
}

impl ComponentTarget {
    /// The path `path_and_query` is sent on.
    pub(crate) fn path_for(&self, path_and_query: &str) -> String {
        let rest = path_and_query.strip_prefix('/').unwrap_or(path_and_query);
        format!("{COMPONENT_PREFIX}{}/{rest}", self.service)
    }

    /// Sends `req` (its headers already what the component may see) and gives the answer, or
    /// the status and reason to answer with.
    pub(crate) async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<Response<ResponseBody>, (StatusCode, String)> {
        let (mut parts, mut body) = req.into_parts();
        body.set_limit(MAX_COMPONENT_BODY);
        let bytes = body.bytes().await.map_err(|e| {
            (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                e.to_string(),
            )
        })?;
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .to_owned();
        parts.uri = self.path_for(&pq).parse().map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                "the path cannot be forwarded".to_owned(),
            )
        })?;
        parts.version = http::Version::HTTP_11;
        parts.headers.remove(http::header::HOST);
        parts.headers.remove(http::header::CONTENT_LENGTH);
        for n in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
            "te",
            "trailer",
            "authorization",
        ] {
            parts.headers.remove(n);
        }
        let req = Request::from_parts(parts, ControlBody::bytes(bytes));
        let resp = tianping_net::control_send(&self.socket, req, COMPONENT_TIMEOUT)
            .await
            .map_err(|e| {
                (
                    StatusCode::BAD_GATEWAY,
                    format!("cannot reach the component's socket: {e}"),
                )
            })?;
        let (mut parts, body) = resp.into_parts();
        for n in [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "trailer",
            "set-cookie",
        ] {
            parts.headers.remove(n);
        }
        let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
        Ok(Response::from_parts(parts, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_goes_under_the_service_prefix() {
        let t = ComponentTarget {
            service: "audit-store".into(),
            socket: PathBuf::from("/nowhere"),
        };
        assert_eq!(
            t.path_for("/audit/x?y=1"),
            "/gateway/v1/audit-store/audit/x?y=1"
        );
        assert_eq!(t.path_for("/"), "/gateway/v1/audit-store/");
    }
}
