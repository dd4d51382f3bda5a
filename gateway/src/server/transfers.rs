//! `GET /.tianping/transfers/{id}`: a transfer's state and, once the reply flow has brought it,
//! its receipt — to its submitter only.
//!
//! The state comes from the zone's exchange sender (`GET /exchange/v1/transfers/<id>`, the
//! person asserted by the gateway), which answers only the transfer's submitter and gives
//! anyone else the 404 an unknown id gets; the gateway passes that 404 on unchanged, so the page
//! never tells whether someone else's transfer exists. For the submitter, the receipts the
//! zone's exchange receiver keeps for the transfer are added (`GET
//! /gateway/v1/receipt-store/receipts/<id>` on its socket, the person asserted for
//! `receipt-store`): the receiver keeps a receipt only when its signer is a node of the zone
//! that delivered, under this zone's trust bundle, and it receipts a transfer of this zone, so a
//! receipt shown was verified on arrival; its signed bytes are in the JSON for a client that
//! checks again. JSON for a bearer client (or `Accept: application/json`), a small page
//! (zh-CN/en, no script) for a browser. No credential: a browser is sent to sign in and back,
//! anyone else gets 401.

use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tianping_net::{Body, CONTROL_TIMEOUT, ConnInfo, ControlBody, ResponseBody};

use super::exchange::{ask_sender, json_answer};
use super::{Inner, html_escape as esc, html_page, plain};
use crate::identity::Identity;

/// The audience of the receiver's person assertions (the `receipt-store` service).
const RECEIPTS_AUDIENCE: &str = "receipt-store";
/// Where the receiver serves a person's receipt reads.
const RECEIPTS_PATH: &str = "/gateway/v1/receipt-store/receipts/";

/// Whether `id` has the form of a transfer id (`<zone>:<sequence>`), which is all that is sent
/// on to the sender and receiver.
fn is_transfer_id(id: &str) -> bool {
    id.split_once(':').is_some_and(|(z, n)| {
        !z.is_empty()
            && z.len() <= 64
            && z.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.is_empty()
            && n.len() <= 20
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The one answer for a transfer the asker may not see, as the sender gives it.
fn unknown(request_id: &str) -> Response<ResponseBody> {
    json_answer(
        StatusCode::NOT_FOUND,
        &json!({ "error": "no such transfer of yours", "request_id": request_id }),
    )
}

/// `GET /.tianping/transfers/{id}`.
pub(crate) async fn transfer(
    g: &Inner,
    req: &Request<Body>,
    id: &str,
    request_id: &str,
) -> Response<ResponseBody> {
    let now = g.now();
    let asker = g.asker(req, now).await;
    let Some(who) = asker.who else {
        if asker.browser {
            let peer = req.extensions().get::<ConnInfo>().map(|c| c.peer.ip());
            let back = req
                .uri()
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str);
            return super::session::sign_in(g, peer, back, None, request_id, now).await;
        }
        let mut r = plain(
            StatusCode::UNAUTHORIZED,
            format!("not authenticated (request {request_id})"),
        );
        let challenge = asker
            .refused
            .as_ref()
            .map_or_else(|| "Bearer".to_owned(), crate::BearerError::www_authenticate);
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        return r;
    };
    if !is_transfer_id(id) {
        return unknown(request_id);
    }
    let target = format!("/exchange/v1/transfers/{id}");
    let (status, mut v) = match ask_sender(g, &who, "GET", &target, request_id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if status == StatusCode::NOT_FOUND {
        return unknown(request_id);
    }
    if !status.is_success() {
        return json_answer(status, &v);
    }
    let receipts = receipts(g, &who, id, request_id).await;
    if let Value::Object(m) = &mut v {
        m.insert("delivered".into(), (!receipts.is_empty()).into());
        m.insert("receipts".into(), Value::Array(receipts));
        m.insert("request_id".into(), request_id.into());
    }
    let html = asker.session.is_some()
        && !req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
    if html {
        return page(&v);
    }
    json_answer(StatusCode::OK, &v)
}

/// The receipts the zone's receiver keeps for `id` (none if it keeps none, runs no receiver,
/// or does not answer).
async fn receipts(g: &Inner, who: &Identity, id: &str, request_id: &str) -> Vec<Value> {
    let Some(socket) = g.exchange_receiver.clone() else {
        return Vec::new();
    };
    let Ok(token) = g.assertions.fresh(who, RECEIPTS_AUDIENCE, g.now()) else {
        return Vec::new();
    };
    let request = Request::builder()
        .method("GET")
        .uri(format!("{RECEIPTS_PATH}{id}"))
        .header(crate::assertion::REQUEST_ID_HEADER, request_id)
        .header(tianping_certs::USER_TOKEN_HEADER, token)
        .body(ControlBody::empty());
    let Ok(request) = request else {
        return Vec::new();
    };
    let Ok(resp) = tianping_net::control_send(&socket, request, CONTROL_TIMEOUT).await else {
        tracing::warn!("the exchange receiver does not answer for receipts of `{id}`");
        return Vec::new();
    };
    if !resp.status().is_success() {
        return Vec::new();
    }
    let body = resp.into_body().bytes().await.unwrap_or_default();
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("receipts").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .into_iter()
        // only receipts of this very transfer
        .filter(|r| r.get("transfer").and_then(Value::as_str) == Some(id))
        .collect()
}

/// The state's words, Chinese and English.
fn state_words(state: &str) -> &'static str {
    match state {
        "held" => "待审批 / held for approval",
        "spooled" => "待发送 / spooled, waiting to be sent",
        "sent" => "已发送 / sent",
        "retained" => "已发送（留存备重发）/ sent (kept for a resend)",
        _ => "未知 / unknown",
    }
}

/// The transfer as a page: its state, what it is, and its receipts.
fn page(v: &Value) -> Response<ResponseBody> {
    let s = |k: &str| {
        v.get(k)
            .map(|x| match x {
                Value::String(s) => s.clone(),
                Value::Null => "—".into(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "—".into())
    };
    let mut rows = String::new();
    let mut row = |label: &str, value: &str| {
        rows.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(label),
            esc(value)
        ));
    };
    row("状态 / State", state_words(&s("state")));
    row("流程 / Flow", &s("flow"));
    row("类型 / Kind", &s("kind"));
    row("大小 / Size", &format!("{} bytes", s("size")));
    row("提交人 / Submitter", &s("submitter"));
    row("目的区域 / To", &s("to"));
    row("时间 / Time (ms)", &s("time_ms"));
    if s("state") == "held" {
        row(
            "审批 / Approvals",
            &format!("{} / {}", s("approvals"), s("needs")),
        );
    }
    let list = v
        .get("receipts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut receipts = String::new();
    for r in &list {
        let t = |k: &str| r.get(k).map(|x| x.to_string().trim_matches('"').to_owned());
        receipts.push_str(&format!(
            "<li>{} — {} {} ({} {} ms)</li>",
            esc(&t("receipt").unwrap_or_default()),
            "已送达，回执已由本区域交换接收端验证 / delivered, the receipt verified by this zone's exchange receiver:",
            esc(&t("from").unwrap_or_default()),
            "time",
            esc(&t("time_ms").unwrap_or_default()),
        ));
    }
    if receipts.is_empty() {
        receipts.push_str("<li>尚无回执 / no receipt yet</li>");
    }
    let page = format!(
        "<!doctype html><html lang=\"zh-CN\"><meta charset=\"utf-8\">\
         <title>交换 {id} / Transfer {id}</title><h1>交换 / Transfer {id}</h1>\
         <table>{rows}</table><h2>回执 / Receipts</h2><ul>{receipts}</ul></html>\n",
        id = esc(&s("transfer")),
    );
    html_page(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[test]
    fn only_transfer_ids_go_on() {
        assert!(is_transfer_id("internet:7"));
        assert!(is_transfer_id("private-2:18446744073709551615"));
        for bad in [
            "internet",
            "internet:",
            ":7",
            "internet:7/x",
            "Internet:7",
            "a b:1",
            "x:1:2",
            "../x:1",
        ] {
            assert!(!is_transfer_id(bad), "`{bad}`");
        }
    }

    #[test]
    fn the_page_escapes_and_shows_the_receipt() {
        let v = json!({
            "transfer": "internet:7", "state": "sent", "flow": "<b>", "kind": "text",
            "size": 5, "submitter": "p-ma", "to": "private", "time_ms": 1,
            "receipts": [{ "receipt": "private:3", "transfer": "internet:7", "from": "private",
                           "time_ms": 2 }],
        });
        let r = page(&v);
        assert_eq!(r.status(), StatusCode::OK);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|_| unreachable!());
        let bytes = rt
            .block_on(r.into_body().collect())
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&bytes);
        assert!(body.contains("&lt;b&gt;"), "{body}");
        assert!(body.contains("private:3"), "{body}");
        assert!(body.contains("已发送 / sent"), "{body}");
        assert!(!body.contains("<script"), "{body}");
    }
}
