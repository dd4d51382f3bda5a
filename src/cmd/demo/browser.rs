//! A plain HTML-form client, as a browser without JavaScript is: it keeps each host's cookies,
//! follows redirects, and fills the IdP's sign-in forms (password, then the one-time code).
//! What it reads of a page is only its forms' `action`s and `<input name value>`s, so it drives
//! the same pages a person does, with nothing the pages do not offer.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tianping_net::{ClientResponse, HttpsClient, HttpsClientBuilder};

/// The most redirects one navigation follows (the sign-in takes four).
const MAX_REDIRECTS: usize = 10;
/// The most forms one sign-in fills (password, code, and room for a notice page).
const MAX_FORMS: usize = 4;

/// One person's browser: an HTTPS client trusting the zone, and its cookie jar.
pub(crate) struct Browser {
    http: HttpsClient,
    /// Cookies by host, then name.
    jar: BTreeMap<String, BTreeMap<String, String>>,
}

/// What the sign-in forms are filled with.
pub(crate) struct Credentials<'a> {
    pub(crate) login: &'a str,
    pub(crate) password: &'a str,
    /// The current one-time code, asked for when the page asks.
    pub(crate) code: &'a dyn Fn() -> String,
}

/// A page the browser ended on.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) url: String,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Page {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or `Null`.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Browser {
    /// A browser trusting `trust_pem`, reaching each `(host, addr)` at `addr`, presenting the
    /// client certificate `cert` (chain and key PEM) when a server asks.
    pub(crate) fn new(
        trust_pem: &[u8],
        hosts: &[(String, SocketAddr)],
        cert: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Self, String> {
        let mut b = HttpsClientBuilder::new(trust_pem.to_vec());
        for (h, a) in hosts {
            b = b.resolve(h.clone(), *a);
        }
        if let Some((chain, key)) = cert {
            b = b.client_cert(chain, key);
        }
        let http = b.build().map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            jar: BTreeMap::new(),
        })
    }

    fn cookies_for(&self, host: &str) -> Option<HeaderValue> {
        let c = self.jar.get(host)?;
        let line = c
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        HeaderValue::from_str(&line).ok()
    }

    fn keep_cookies(&mut self, host: &str, r: &ClientResponse) {
        for v in r.headers.get_all(header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let first = v.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let expired = v
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            let jar = self.jar.entry(host.to_owned()).or_default();
            if expired || value.is_empty() {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    /// One request, cookies sent and kept, no redirect followed.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        url: &str,
        extra: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Page, String> {
        let host = host_of(url).ok_or_else(|| format!("`{url}` names no host"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/json"),
        );
        for (k, v) in extra {
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
            headers.insert(name, HeaderValue::from_str(v).map_err(|e| e.to_string())?);
        }
        if let Some(c) = self.cookies_for(&host) {
            headers.insert(header::COOKIE, c);
        }
        let r = self
            .http
            .request(method, url, &headers, body)
            .await
            .map_err(|e| e.to_string())?;
        self.keep_cookies(&host, &r);
        Ok(Page {
            url: url.to_owned(),
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }

    /// `GET url`, following redirects.
    pub(crate) async fn get(&mut self, url: &str, extra: &[(&str, &str)]) -> Result<Page, String> {
        let page = self.send(Method::GET, url, extra, Bytes::new()).await?;
        self.follow(page, extra).await
    }

    async fn follow(&mut self, mut page: Page, extra: &[(&str, &str)]) -> Result<Page, String> {
        for _ in 0..MAX_REDIRECTS {
            if !page.status.is_redirection() {
                return Ok(page);
            }
            let Some(to) = page
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Ok(page);
            };
            let next = join(&page.url, to);
            page = self.send(Method::GET, &next, extra, Bytes::new()).await?;
        }
        Err(format!(
            "more than {MAX_REDIRECTS} redirects from `{}`",
            page.url
        ))
    }

    /// Goes to `url` and signs in wherever the pages ask: each sign-in form is filled from
    /// `who` and posted, redirects followed, until a page that is not a sign-in form. The page
    /// reached (the one `url` names, once signed in).
    pub(crate) async fn sign_in(
        &mut self,
        url: &str,
        who: &Credentials<'_>,
    ) -> Result<Page, String> {
        let mut page = self.get(url, &[]).await?;
        let mut waited = false;
        for _ in 0..MAX_FORMS {
            let html = page.text();
            let Some(form) = forms(&html).into_iter().find(|f| {
                f.fields
                    .iter()
                    .any(|(n, _)| matches!(n.as_str(), "username" | "password" | "code"))
            }) else {
                return Ok(page);
            };
            let mut pairs = Vec::new();
            for (name, value) in &form.fields {
                let v = match name.as_str() {
                    "username" => who.login.to_owned(),
                    "password" => who.password.to_owned(),
                    "code" => (who.code)(),
                    _ => value.clone(),
                };
                pairs.push(format!("{}={}", encode(name), encode(&v)));
            }
            let action = join(&page.url, &form.action);
            let posted = self
                .send(
                    Method::POST,
                    &action,
                    &[("content-type", "application/x-www-form-urlencoded")],
                    Bytes::from(pairs.join("&")),
                )
                .await?;
            page = self.follow(posted, &[]).await?;
            if let Some(notice) = alert(&page.text()) {
                // a code is taken once: one this person used a moment ago (an earlier run of
                // the demo) is refused until the next 30 s step, which is waited for, once
                let replayed = notice.contains("已使用过") || notice.contains("already used");
                if replayed && !waited && forms(&page.text()).iter().any(|f| f.has("code")) {
                    waited = true;
                    tokio::time::sleep(until_next_code()).await;
                    continue;
                }
                return Err(format!("the sign-in page says: {notice}"));
            }
        }
        Err(format!("still asked to sign in after {MAX_FORMS} forms"))
    }
}

/// A form of a page: its action and its named inputs with their values.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Form {
    pub(crate) action: String,
    pub(crate) fields: Vec<(String, String)>,
}

impl Form {
    /// Whether it has an input named `name`.
    fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, _)| n == name)
    }
}

/// How long until the next TOTP step (30 s, RFC 6238) begins, by this process's clock, and a
/// second more.
fn until_next_code() -> std::time::Duration {
    use tianping_core::Clock as _;
    let ms = tianping_core::SystemClock.now().as_millis();
    std::time::Duration::from_millis(30_000 - ms % 30_000 + 1_000)
}

/// The `method="post"` forms of `html`.
pub(crate) fn forms(html: &str) -> Vec<Form> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("<form") {
        rest = rest.get(at..).unwrap_or_default();
        let end = rest.find("</form>").unwrap_or(rest.len());
        let block = rest.get(..end).unwrap_or_default();
        let tag_end = block.find('>').unwrap_or(block.len());
        let tag = block.get(..tag_end).unwrap_or_default();
        let post = attr(tag, "method").is_some_and(|m| m.eq_ignore_ascii_case("post"));
        let action = attr(tag, "action").unwrap_or_default();
        let mut fields = Vec::new();
        let mut inner = block.get(tag_end..).unwrap_or_default();
        while let Some(i) = inner.find("<input") {
            inner = inner.get(i..).unwrap_or_default();
            let e = inner.find('>').unwrap_or(inner.len());
            let input = inner.get(..e).unwrap_or_default();
            if let Some(name) = attr(input, "name") {
                fields.push((name, attr(input, "value").unwrap_or_default()));
            }
            inner = inner.get(e..).unwrap_or_default();
        }
        if post {
            out.push(Form { action, fields });
        }
        rest = rest.get(end..).unwrap_or_default();
        if rest.len() <= "</form>".len() {
            break;
        }
        rest = rest.get(1..).unwrap_or_default();
    }
    out
}

/// The value of `name="…"` in a tag, unescaped.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let rest = tag.get(at..)?;
    let end = rest.find('"')?;
    Some(unescape(rest.get(..end)?))
}

/// The page's `role="alert"` notice, if it has one (a refused password or code).
fn alert(html: &str) -> Option<String> {
    let at = html.find("role=\"alert\"")?;
    let rest = html.get(at..)?;
    let start = rest.find('>')? + 1;
    let end = rest.find('<')?;
    rest.get(start..end).map(unescape)
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `application/x-www-form-urlencoded` of one value.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The host of an absolute URL.
fn host_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(uri.host()?.to_ascii_lowercase())
}

/// `to` resolved against `base` (absolute, or a path on `base`'s origin).
fn join(base: &str, to: &str) -> String {
    if to.starts_with("https://") || to.starts_with("http://") {
        return to.to_owned();
    }
    let origin_end = base
        .find("://")
        .and_then(|s| base.get(s + 3..)?.find('/').map(|p| p + s + 3))
        .unwrap_or(base.len());
    let origin = base.get(..origin_end).unwrap_or(base);
    if to.starts_with('/') {
        format!("{origin}{to}")
    } else {
        format!("{origin}/{to}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_read_with_their_hidden_fields() {
        let html = "<p role=\"alert\">x</p><form method=\"post\" action=\"/login\">\
            <input type=\"hidden\" name=\"csrf\" value=\"a&amp;b\"><input name=\"username\" value=\"\">\
            </form><form method=\"get\" action=\"/x\"><input name=\"q\"></form>\
            <form method=\"post\" action=\"/login\"><input name=\"method\" value=\"certificate\"></form>";
        let f = forms(html);
        assert_eq!(
            f,
            vec![
                Form {
                    action: "/login".into(),
                    fields: vec![
                        ("csrf".into(), "a&b".into()),
                        ("username".into(), String::new())
                    ],
                },
                Form {
                    action: "/login".into(),
                    fields: vec![("method".into(), "certificate".into())],
                },
            ]
        );
        assert_eq!(alert(html).as_deref(), Some("x"));
    }

    #[test]
    fn urls_join_on_the_origin() {
        assert_eq!(
            join("https://idp.x:7431/authorize?a=b", "/login"),
            "https://idp.x:7431/login"
        );
        assert_eq!(join("https://a/b", "https://c/d"), "https://c/d");
        assert_eq!(join("https://a", "/b"), "https://a/b");
        assert_eq!(encode("a b&c=é"), "a+b%26c%3D%C3%A9");
    }
}
