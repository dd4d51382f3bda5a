//! The server-rendered pages (the `server` feature): no external assets, no script, every
//! value HTML-escaped, the security headers on every page.

use http::{HeaderValue, Response, StatusCode, header};
use tianping_net::{ResponseBody, full};

use crate::authorize::{AuthorizationRequest, UiLocale};
use crate::error::IdpError;

/// The Content-Security-Policy of every page: nothing loaded, no script, no framing.
pub(crate) const CSP: &str =
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, lang: &str, title: &str, body: &str) -> Response<ResponseBody> {
    let html = format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body><main><h1>{title}</h1>{body}</main></body></html>"
    );
    let mut r = Response::new(full(html));
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

/// The error page shown instead of a redirect (the client or redirect URI is not trusted).
pub(crate) fn error_page(e: &IdpError) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = format!(
        "<p>登录请求无效 / The sign-in request is not valid.</p><p><code>{}</code>: {}</p>",
        e.code().as_str(),
        escape(&e.to_string())
    );
    page(status, "zh-CN", "错误 / Error", &body)
}

/// The sign-in page for a checked authorization request; `csrf` goes in the form.
pub(crate) fn sign_in_page(
    req: &AuthorizationRequest,
    csrf: &str,
    session_cookie: &str,
) -> Response<ResponseBody> {
    let (lang, title, user, pass, submit) = match req.ui_locale {
        UiLocale::ZhCn => ("zh-CN", "登录", "用户名", "密码", "登录"),
        UiLocale::En => ("en", "Sign in", "User name", "Password", "Sign in"),
    };
    let scope = req.scope.join(" ");
    let mut hidden = vec![
        ("csrf", csrf),
        ("client_id", req.client_id.as_str()),
        ("redirect_uri", req.redirect_uri.as_str()),
        ("scope", scope.as_str()),
        ("code_challenge", req.code_challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for (name, v) in [("state", &req.state), ("nonce", &req.nonce)] {
        if let Some(v) = v {
            hidden.push((name, v.as_str()));
        }
    }
    let mut form = String::from("<form method=\"post\" action=\"/login\">");
    for (name, v) in hidden {
        form.push_str(&format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(v)
        ));
    }
    let login_hint = escape(req.login_hint.as_deref().unwrap_or_default());
    form.push_str(&format!(
        "<p><label>{user} <input name=\"username\" value=\"{login_hint}\" autocomplete=\"username\" required></label></p>\
         <p><label>{pass} <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label></p>\
         <p><button type=\"submit\">{submit}</button></p></form>"
    ));
    let mut r = page(StatusCode::OK, lang, title, &form);
    if let Ok(v) = HeaderValue::from_str(session_cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
