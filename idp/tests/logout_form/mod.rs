//! The IdP's logout confirmation as a browser answers it: `GET /logout` shows a signed-in
//! session without an ID token hint a form carrying the session's CSRF token, posted back.

/// The CSRF token of the confirmation form on `page`.
pub(crate) fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned()
}

/// Posts `body` (a form) to `url`, the IdP's `/logout`, with the session's `cookie`.
pub(crate) async fn post(
    http: &reqwest::Client,
    url: String,
    cookie: &str,
    body: String,
) -> reqwest::Response {
    http.post(url)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}
