//! Deliveries over the network: an HTTPS POST to a service, a POST to a component's control
//! socket, each with the receiver's token, and the receiver's own installs.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use tianping_certs::{DELIVERY_TOKEN_HEADER, DeliveryClaims, TokenClaims, TokenSigner};
use tianping_core::Clock;

use super::{ATTEMPT_TIMEOUT, Deliver, Delivery, Failure, Target, manifest_headers};

/// What the receiver does with a delivery to itself (installs, receipts).
pub trait Install: Send {
    /// Takes `d`.
    fn install(&mut self, d: &Delivery<'_>) -> Result<(), Failure>;
}

/// Makes the signed delivery receipt of a delivery (`Receipt::sign(..).encode()` of the
/// receipt format, with the receiver's node key).
pub trait MakeReceipt: Send {
    /// The receipt's bytes for `d`, delivered at `at`.
    fn make(&self, d: &Delivery<'_>, at: tianping_core::UnixTime) -> Result<Vec<u8>, String>;
}

/// Delivers over HTTPS and control sockets with the receiver's node key, and to the receiver
/// itself through `install`.
pub struct NetDeliver {
    rt: tokio::runtime::Runtime,
    tokens: Arc<TokenSigner>,
    clock: Arc<dyn Clock>,
    install: Box<dyn Install>,
    receipts: Option<(Box<dyn MakeReceipt>, std::path::PathBuf)>,
}

impl std::fmt::Debug for NetDeliver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetDeliver")
    }
}

impl NetDeliver {
    /// Signs tokens with `tokens` (the receiver's node key).
    pub fn new(
        tokens: Arc<TokenSigner>,
        clock: Arc<dyn Clock>,
        install: Box<dyn Install>,
    ) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            rt,
            tokens,
            clock,
            install,
            receipts: None,
        })
    }

    /// Sends delivery receipts made by `make` through the zone's sender socket `sender`.
    pub fn with_receipts(mut self, make: Box<dyn MakeReceipt>, sender: std::path::PathBuf) -> Self {
        self.receipts = Some((make, sender));
        self
    }

    fn token(&self, claims: &TokenClaims, audience: &str) -> Result<String, String> {
        self.tokens
            .sign(
                claims,
                audience,
                self.clock.now(),
                std::time::Duration::from_secs(60),
            )
            .map_err(|e| format!("cannot make a token: {e}"))
    }
}

impl Deliver for NetDeliver {
    fn makes_receipts(&self) -> bool {
        self.receipts.is_some()
    }

    fn send_receipt(&mut self, d: &Delivery<'_>, reply: &str) -> Result<String, Failure> {
        let Some((make, socket)) = &self.receipts else {
            return Err(Failure::Refuse(
                "this receiver makes no receipts".to_owned(),
            ));
        };
        let bytes = make.make(d, self.clock.now()).map_err(Failure::Refuse)?;
        let token = self.token(&TokenClaims::Node, "exchange-sender")?;
        let target = format!(
            "/exchange/v1/submit?flow={}&kind=receipt&correlation={}",
            super::percent(reply),
            super::percent(&d.queued.transfer_id)
        );
        let req = Request::builder()
            .method("POST")
            .uri(target)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(tianping_net::ControlBody::bytes(Bytes::from(bytes)))
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let socket = socket.clone();
        self.rt.block_on(async move {
            let resp = tianping_net::control_send(&socket, req, ATTEMPT_TIMEOUT)
                .await
                .map_err(|e| Failure::Retry(format!("`{}`: {e}", socket.display())))?;
            let status = resp.status();
            let body = resp.into_body().bytes().await.unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let why = || {
                v.get("error")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            match status.as_u16() {
                200 => v
                    .get("transfer")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| Failure::Retry("the sender named no transfer".to_owned())),
                400 | 403 | 413 | 422 => Err(Failure::Refuse(format!(
                    "the sender refused the receipt ({status}): {}",
                    why()
                ))),
                _ => Err(Failure::Retry(format!(
                    "the sender answered {status}: {}",
                    why()
                ))),
            }
        })
    }

    fn deliver(&mut self, target: &Target, d: &Delivery<'_>) -> Result<(), Failure> {
        match target {
            Target::Url { url, ca } => {
                let claims = TokenClaims::Delivery(DeliveryClaims {
                    flow: d.queued.flow.clone(),
                    transfer: d.queued.transfer_id.clone(),
                    content_sha256: d.sha256,
                });
                let token = self.token(&claims, &d.queued.service)?;
                let body = Bytes::copy_from_slice(d.payload);
                let headers = manifest_headers(d);
                let ct = d.header.manifest.content_type.clone();
                self.rt
                    .block_on(async {
                        tokio::time::timeout(
                            ATTEMPT_TIMEOUT,
                            post_https(url, ca, &headers, &ct, &token, body),
                        )
                        .await
                        .map_err(|_| format!("`{url}` did not answer in time"))?
                    })
                    .map_err(Failure::Retry)
            }
            Target::Component { component, socket } => {
                let token = self.token(&TokenClaims::Node, component.as_str())?;
                let path = super::component_path(&d.queued.kind);
                let mut req = Request::builder()
                    .method("POST")
                    .uri(path)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"));
                for (k, v) in manifest_headers(d) {
                    req = req.header(k, v);
                }
                let req = req
                    .body(tianping_net::ControlBody::bytes(Bytes::copy_from_slice(
                        d.payload,
                    )))
                    .map_err(|e| e.to_string())?;
                let done: Result<(), String> = self.rt.block_on(async {
                    let resp = tianping_net::control_send(socket, req, ATTEMPT_TIMEOUT)
                        .await
                        .map_err(|e| format!("`{}`: {e}", socket.display()))?;
                    let status = resp.status();
                    if status.is_success() {
                        Ok(())
                    } else {
                        let body = resp.into_body().bytes().await.unwrap_or_default();
                        Err(format!(
                            "`{}` answered {status}: {}",
                            socket.display(),
                            String::from_utf8_lossy(
                                body.get(..body.len().min(200)).unwrap_or_default()
                            )
                        ))
                    }
                });
                done.map_err(Failure::Retry)
            }
            Target::Receiver => self.install.install(d),
            Target::Folder(_) => Err(Failure::Retry(
                "a folder is written by the deliverer".to_owned(),
            )),
        }
    }
}

async fn post_https(
    url: &str,
    ca: &Path,
    headers: &[(&'static str, String)],
    content_type: &str,
    token: &str,
    body: Bytes,
) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("`{url}` is not an https URL"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("`{url}` names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let pem = std::fs::read(ca).map_err(|e| format!("CA `{}`: {e}", ca.display()))?;
    let mut config = tianping_certs::client_config(&pem, None).map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| format!("`{host}`: {e}"))?;
    // a sample case service of the fabric is reached where it published its address (a URL of
    // port 0 means nothing else; DNS does not know the fabric's hosts)
    let tcp = match tianping_core::ServiceTarget::published_service_addr(&host) {
        Some(addr) => tokio::net::TcpStream::connect(addr).await,
        None => tokio::net::TcpStream::connect((host.as_str(), port)).await,
    }
    .map_err(|e| format!("`{url}`: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("`{url}`: TLS: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| format!("`{url}`: {e}"))?;
    let driver = tokio::spawn(conn);
    let target = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let authority = uri.authority().map_or(host.clone(), ToString::to_string);
    let mut req = Request::builder()
        .method("POST")
        .uri(target)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, content_type)
        .header(DELIVERY_TOKEN_HEADER, token);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("`{url}`: {e}"))?;
    let status = resp.status();
    let answer = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    driver.abort();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "`{url}` answered {status}: {}",
            String::from_utf8_lossy(answer.get(..answer.len().min(200)).unwrap_or_default())
        ))
    }
}
