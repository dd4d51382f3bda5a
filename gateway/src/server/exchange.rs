//! Exchange routes: a route bound to a flow turns the request into a transfer through the
//! zone's exchange sender (its control socket, `POST /exchange/v1/submit`). The body streams
//! through, up to the flow's `max-size` for the kind (set on the listener for this request);
//! the person goes as a fresh `Tianping-Assertion` for audience `exchange-sender` (the sender
//! takes each token once). The sender decides again with its own policy copy and filters and
//! answers once the transfer is durable in its spool; the gateway answers 202 with the
//! transfer id.
//!
//! The kind is the query's `kind` (with `schema`), or read from the `Content-Type`; `label`
//! (repeated) and `correlation` go on as given.

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tianping_core::UnixTime;
use tianping_net::{Body, CONTROL_TIMEOUT, ControlBody, ResponseBody};
use tianping_policies::Policy;

use super::idp::{decode_list, encode};
use super::{Inner, answer, html_page, plain};
use crate::identity::Identity;

/// The audience of the assertions the exchange sender takes.
pub(crate) const SENDER_AUDIENCE: &str = "exchange-sender";
const SUBMIT: &str = "/exchange/v1/submit";

/// The kind of a media type, as the exchange names its kinds.
fn kind_of(content_type: &str) -> Option<&'static str> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Some(match media.as_str() {
        "text/plain" => "text",
        "application/json" => "json",
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpeg",
        "video/mp4" => "mp4",
        "application/ofd" => "ofd",
        _ => return None,
    })
}

pub(super) fn json_answer(status: StatusCode, v: &Value) -> Response<ResponseBody> {
    answer(status, "application/json", format!("{v}\n"))
}

/// Submits the request to `flow` as `who`.
pub(crate) async fn submit(
    g: &Inner,
    req: Request<Body>,
    who: &Identity,
    flow: &str,
    policy: &Policy,
    request_id: &str,
    now: UnixTime,
) -> Response<ResponseBody> {
    let Some(socket) = g.exchange_sender.clone() else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the route goes to flow `{flow}`, and this zone runs no exchange sender \
                 (request {request_id})"
            ),
        );
    };
    let query = decode_list(req.uri().query().unwrap_or_default());
    let one = |k: &str| {
        query
            .iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let from_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(kind_of);
    let Some(kind) = one("kind").or_else(|| from_type.map(str::to_owned)) else {
        return json_answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &json!({
                "error": "the kind of the payload: give `?kind=` or a Content-Type of one",
                "request_id": request_id,
            }),
        );
    };
    let schema = one("schema");
    let Some(f) = policy.flow(flow) else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("flow `{flow}` is not in the policy (request {request_id})"),
        );
    };
    let limit = f
        .max_size_for(&kind, schema.as_deref())
        .unwrap_or_else(|| f.max_size());
    let token = match g.assertions.fresh(who, SENDER_AUDIENCE, now) {
        Ok(t) => t,
        Err(e) => {
            return plain(
                StatusCode::FORBIDDEN,
                format!("no assertion can be made: {e} (request {request_id})"),
            );
        }
    };
    let mut target = format!("{SUBMIT}?flow={}&kind={}", encode(flow), encode(&kind));
    if let Some(s) = &schema {
        target.push_str(&format!("&schema={}", encode(s)));
    }
    for (n, v) in &query {
        if n == "label" || n == "correlation" || (n == "redacted" && v == "1") {
            target.push_str(&format!("&{n}={}", encode(v)));
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return json_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({
                "error": format!("flow `{flow}` takes {kind} up to {limit} bytes"),
                "request_id": request_id,
            }),
        );
    }
    let mut body = req.into_body();
    body.set_limit(limit);
    // the body streams to the sender as it arrives; a body that fails (over the limit, idle,
    // cut) fails the submission rather than end it early
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, String>>(4);
    let pump = tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data()
                        && tx.send(Ok(data)).await.is_err()
                    {
                        // the sender answered before reading it all: its answer stands
                        return Ok(());
                    }
                }
                Err(e) => {
                    let (status, e) = (e.status(), e.to_string());
                    let _ = tx.send(Err(e.clone())).await;
                    return Err((status, e));
                }
            }
        }
        Ok(())
    });
    let reader = ChannelReader {
        rx,
        buf: bytes::Bytes::new(),
    };
    let Ok(assertion) = HeaderValue::from_str(&token) else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "assertion\n");
    };
    let request = Request::builder()
        .method("POST")
        .uri(target)
        .header(crate::assertion::REQUEST_ID_HEADER, request_id)
        .header(tianping_certs::USER_TOKEN_HEADER, assertion)
        .body(ControlBody::reader(reader, declared));
    let request = match request {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    let sent = tianping_net::control_send(&socket, request, CONTROL_TIMEOUT).await;
    // the request's own body failing (too large, idle, cut) is the answer, whatever the
    // sender made of the failed submission
    if let Ok(Err((status, e))) = pump.await {
        return json_answer(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &json!({ "error": e, "request_id": request_id }),
        );
    }
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the exchange sender does not answer: {e} (request {request_id})"),
            );
        }
    };
    let status = resp.status();
    let answer_body = resp.into_body().bytes().await.unwrap_or_default();
    let mut v: Value = serde_json::from_slice(&answer_body).unwrap_or_else(
        |_| json!({ "error": String::from_utf8_lossy(&answer_body).trim().to_owned() }),
    );
    if let Value::Object(m) = &mut v {
        m.insert("request_id".into(), request_id.into());
    }
    if !status.is_success() {
        return json_answer(status, &v);
    }
    json_answer(StatusCode::ACCEPTED, &v)
}

/// The request body's frames as an `AsyncRead` for the control socket's client: an error of
/// the body is an error of the read (so the submission fails), not its end.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    buf: bytes::Bytes,
}

impl tokio::io::AsyncRead for ChannelReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        loop {
            if !self.buf.is_empty() {
                let n = self.buf.len().min(out.remaining());
                let chunk = self.buf.split_to(n);
                out.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => self.buf = b,
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(std::io::Error::other(e)));
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The CSRF token of a browser session: SHA-256 of a label and the session id, which only the
/// sealed cookie carries (so a page of another site cannot know it).
pub(crate) fn csrf_token(session_id: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("tianping-csrf/1\0{session_id}").as_bytes(),
    );
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Asks the sender `method target` as `who`; its status and JSON answer.
pub(super) async fn ask_sender(
    g: &Inner,
    who: &Identity,
    method: &str,
    target: &str,
    request_id: &str,
) -> Result<(StatusCode, Value), Response<ResponseBody>> {
    let Some(socket) = g.exchange_sender.clone() else {
        return Err(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this zone runs no exchange sender (request {request_id})"),
        ));
    };
    let token = g
        .assertions
        .fresh(who, SENDER_AUDIENCE, g.now())
        .map_err(|e| {
            plain(
                StatusCode::FORBIDDEN,
                format!("no assertion can be made: {e} (request {request_id})"),
            )
        })?;
    let request = Request::builder()
        .method(method)
        .uri(target)
        .header(crate::assertion::REQUEST_ID_HEADER, request_id)
        .header(tianping_certs::USER_TOKEN_HEADER, token)
        .body(ControlBody::empty())
        .map_err(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?;
    let resp = tianping_net::control_send(&socket, request, CONTROL_TIMEOUT)
        .await
        .map_err(|e| {
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the exchange sender does not answer: {e} (request {request_id})"),
            )
        })?;
    let status = resp.status();
    let body = resp.into_body().bytes().await.unwrap_or_default();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({ "error": String::from_utf8_lossy(&body).trim().to_owned() }));
    Ok((status, v))
}

/// `GET /.tianping/approvals`: the held releases the signed-in person may approve (a role the
/// flow's release names, not their own submission, not approved by them yet).
pub(crate) async fn approvals(
    g: &Inner,
    req: &Request<Body>,
    request_id: &str,
) -> Response<ResponseBody> {
    let now = g.now();
    let asker = g.asker(req, now).await;
    let Some(who) = asker.who else {
        return plain(StatusCode::UNAUTHORIZED, "not signed in\n");
    };
    let (status, v) = match ask_sender(g, &who, "GET", "/exchange/v1/held", request_id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !status.is_success() {
        return json_answer(status, &v);
    }
    let policy = g.policy.load_full();
    let mine: Vec<Value> = v
        .get("held")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter(|h| {
                    let s = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or_default();
                    let approved = h
                        .get("approvers")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(who.sub.as_str())));
                    let may = policy
                        .flow(s("flow"))
                        .is_some_and(|f| f.approver_roles().any(|r| who.roles.contains(&r)));
                    may && !approved && s("submitter") != who.sub.as_str()
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let csrf = asker.session.as_ref().map(|s| csrf_token(&s.id));
    let html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if html {
        return approvals_page(&mine, csrf.as_deref().unwrap_or_default());
    }
    json_answer(
        StatusCode::OK,
        &json!({ "held": mine, "csrf": csrf, "request_id": request_id }),
    )
}

/// The approvals as a page: one form per release, each carrying the session's CSRF token.
fn approvals_page(held: &[Value], csrf: &str) -> Response<ResponseBody> {
    use super::html_escape as esc;
    let mut rows = String::new();
    for h in held {
        let s = |k: &str| {
            h.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let n = |k: &str| h.get(k).and_then(Value::as_u64).unwrap_or_default();
        let id = s("transfer");
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} bytes</td><td>{}</td><td>{} of {}</td>\
             <td><form method=\"post\" action=\"/.tianping/transfers/{}/approve\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Approve</button></form></td></tr>",
            esc(&id),
            esc(&s("flow")),
            esc(&s("kind")),
            n("size"),
            esc(&s("submitter")),
            h.get("approvers").and_then(Value::as_array).map_or(0, Vec::len),
            n("needs"),
            esc(&encode(&id)),
            esc(csrf),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"7\">Nothing waits for your approval.</td></tr>");
    }
    let page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Approvals</title>\
         <h1>Releases waiting for approval</h1><table><tr><th>Transfer</th><th>Flow</th>\
         <th>Kind</th><th>Size</th><th>Submitter</th><th>Approved</th><th></th></tr>{rows}\
         </table></html>\n"
    );
    html_page(page)
}

/// `POST /.tianping/transfers/{id}/approve`: the person's approval of a held release, which the
/// sender signs and counts; audited (durable) before it is handed over.
pub(crate) async fn approve(
    g: &Inner,
    req: Request<Body>,
    transfer: &str,
    request_id: &str,
) -> Response<ResponseBody> {
    let now = g.now();
    if let Some(origin) = req.headers().get(header::ORIGIN)
        && origin.as_bytes() != g.public_url.as_bytes()
    {
        return plain(StatusCode::FORBIDDEN, "an approval from another origin\n");
    }
    let asker = g.asker(&req, now).await;
    let Some(who) = asker.who.clone() else {
        return plain(StatusCode::UNAUTHORIZED, "not signed in\n");
    };
    // a browser's approval carries its session's CSRF token (header or form field)
    if let Some(s) = &asker.session {
        let want = csrf_token(&s.id);
        let header_token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let token = match header_token {
            Some(t) => Some(t),
            None => {
                let mut body = req.into_body();
                body.set_limit(4096);
                let form = body.bytes().await.unwrap_or_default();
                super::idp::decode_pairs(&String::from_utf8_lossy(&form))
                    .get("csrf")
                    .cloned()
            }
        };
        if !token.is_some_and(|t| tianping_core::ct_eq(t.as_bytes(), want.as_bytes())) {
            return plain(
                StatusCode::FORBIDDEN,
                format!("the approval lacks this session's CSRF token (request {request_id})"),
            );
        }
    }
    let mut e = g.event(now, "approval", request_id);
    e.transfer_id = transfer.chars().take(128).collect();
    e.policy_hash = Some(g.policy.load().hash());
    super::fill_actor(&mut e, &who);
    e.outcome = "submitted".into();
    match g.audit.append_prompt(&e) {
        Ok(q) => {
            if q.durable().await.is_err() {
                return plain(StatusCode::SERVICE_UNAVAILABLE, "the audit log failed\n");
            }
        }
        Err(_) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit log refuses appends\n",
            );
        }
    }
    let target = format!("/exchange/v1/approve?transfer={}", encode(transfer));
    match ask_sender(g, &who, "POST", &target, request_id).await {
        Ok((status, mut v)) => {
            if let Value::Object(m) = &mut v {
                m.insert("request_id".into(), request_id.into());
            }
            json_answer(status, &v)
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_media_types() {
        assert_eq!(kind_of("text/plain; charset=utf-8"), Some("text"));
        assert_eq!(kind_of("Application/PDF"), Some("pdf"));
        assert_eq!(kind_of("image/jpeg"), Some("jpeg"));
        assert_eq!(kind_of("application/octet-stream"), None);
        assert_eq!(kind_of(""), None);
    }

    #[test]
    fn the_approvals_page_escapes_what_it_shows() {
        let held = vec![json!({
            "transfer": "internet:7", "flow": "<script>", "kind": "text", "size": 3,
            "submitter": "a\"b", "approvers": ["x"], "needs": 2,
        })];
        let r = approvals_page(&held, "tok");
        assert_eq!(r.status(), StatusCode::OK);
        let body = futures_body(r);
        assert!(body.contains("&lt;script&gt;"), "{body}");
        assert!(body.contains("a&quot;b"), "{body}");
        assert!(
            body.contains("/.tianping/transfers/internet%3A7/approve"),
            "{body}"
        );
        assert!(body.contains("value=\"tok\""), "{body}");
        assert!(body.contains("1 of 2"), "{body}");
    }

    fn futures_body(r: Response<ResponseBody>) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|_| unreachable!());
        let bytes = rt
            .block_on(r.into_body().collect())
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn a_csrf_token_is_per_session() {
        let a = csrf_token("session-a");
        assert_eq!(a.len(), 64);
        assert_eq!(a, csrf_token("session-a"));
        assert_ne!(a, csrf_token("session-b"));
    }
}
