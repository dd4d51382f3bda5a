//! The server-rendered pages (the `server` feature): no external assets, no script, every
//! value HTML-escaped, the security headers on every page.

use http::{HeaderValue, Response, StatusCode, header};
use tianping_net::{ResponseBody, full};

use crate::authorize::UiLocale;
use crate::cert_signin::CertRefusal;
use crate::error::IdpError;
use crate::signin::{Notice, Stage};

/// The Content-Security-Policy of every page: nothing loaded, no script, no framing, forms
/// posted here only. Browsers apply `form-action` to the redirects that follow a form's
/// submission too, so a sign-in page, whose form may end in the 303 to the client's redirect
/// URI, carries [`csp_for_redirect`] instead (tests/browser.rs shows it in Chromium).
pub(crate) const CSP: &str =
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The CSP of a sign-in page whose form may redirect to `redirect_uri`: [`CSP`] with the URI's
/// origin also allowed as a `form-action` (any port of a loopback address, RFC 8252 §7.3; the
/// scheme alone for a private-use scheme). A URI whose origin cannot be written safely as a
/// source expression gets [`CSP`] unchanged.
pub(crate) fn csp_for_redirect(redirect_uri: &str) -> String {
    match redirect_source(redirect_uri) {
        Some(src) => format!(
            "default-src 'none'; form-action 'self' {src}; frame-ancestors 'none'; base-uri 'none'"
        ),
        None => CSP.to_owned(),
    }
}

/// The CSP source expression of a redirect URI's origin.
fn redirect_source(uri: &str) -> Option<String> {
    let safe = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | ':' | '[' | ']')
            })
    };
    let (scheme, rest) = uri.split_once(':')?;
    if !safe(scheme) || scheme.contains(':') {
        return None;
    }
    let Some(after) = rest.strip_prefix("//") else {
        return Some(format!("{}:", scheme.to_ascii_lowercase()));
    };
    let authority = after.split(['/', '?', '#']).next()?;
    if authority.contains('@') || !safe(authority) {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    if matches!(host, "127.0.0.1" | "[::1]") {
        Some(format!("{scheme}://{host}:*"))
    } else {
        Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
    }
}

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

/// One field of a form.
struct Input<'a> {
    name: &'a str,
    label: &'a str,
    kind: &'a str,
    value: &'a str,
    autocomplete: &'a str,
    required: bool,
}

fn input(i: &Input<'_>) -> String {
    let required = if i.required { " required" } else { "" };
    let extra = if i.name == "code" {
        " inputmode=\"numeric\" pattern=\"[0-9]*\""
    } else {
        ""
    };
    format!(
        "<p><label>{} <input type=\"{}\" name=\"{}\" value=\"{}\" autocomplete=\"{}\"{extra}{required}></label></p>",
        escape(i.label),
        i.kind,
        i.name,
        escape(i.value),
        i.autocomplete
    )
}

/// The text of a notice in the page's language.
fn notice_text(n: &Notice, zh: bool) -> String {
    match (n, zh) {
        (Notice::SignInFailed, true) => "用户名或密码错误。".into(),
        (Notice::SignInFailed, false) => "The user name or password is wrong.".into(),
        (Notice::Locked(wait), true) => {
            format!("尝试次数过多，请 {} 分钟后再试。", wait.div_ceil(60).max(1))
        }
        (Notice::Locked(wait), false) => {
            let minutes = wait.div_ceil(60).max(1);
            let unit = if minutes == 1 { "minute" } else { "minutes" };
            format!("Too many failed attempts; try again in {minutes} {unit}.")
        }
        (Notice::TotpWrong, true) => "动态口令错误。".into(),
        (Notice::TotpWrong, false) => "The one-time code is wrong.".into(),
        (Notice::TotpReplayed, true) => "该动态口令已使用过，请等待下一个。".into(),
        (Notice::TotpReplayed, false) => {
            "That one-time code was already used; wait for the next one.".into()
        }
        (Notice::PasswordRule(why), true) => format!("密码不符合要求：{why}。"),
        (Notice::PasswordRule(why), false) => format!("The password breaks a rule: {why}."),
        (Notice::PasswordReused, true) => "不能使用最近用过的密码。".into(),
        (Notice::PasswordReused, false) => "That password was used recently.".into(),
        (Notice::PasswordsDiffer, true) => "两次输入的密码不一致。".into(),
        (Notice::PasswordsDiffer, false) => "The two passwords differ.".into(),
        (Notice::NameTaken, true) => "该用户名已被使用。".into(),
        (Notice::NameTaken, false) => "That user name is taken.".into(),
        (Notice::Invalid(why), true) => format!("输入无效：{why}"),
        (Notice::Invalid(why), false) => format!("Not valid: {why}"),
        (Notice::CertificateRequired, true) => {
            "您的角色须以数字证书登录，本页面不能签发凭证。".into()
        }
        (Notice::CertificateRequired, false) => {
            "Your role must sign in with a certificate; this page cannot issue a token.".into()
        }
        (Notice::Certificate(r), zh) => certificate_text(r, zh).into(),
        (Notice::OnDevice(name), true) => {
            format!("您正在已登记的设备“{name}”上登录，请用您本人的账号和密码继续。")
        }
        (Notice::OnDevice(name), false) => format!(
            "You are signing in on the registered device “{name}”: continue with your own user name and password."
        ),
    }
}

/// Why a certificate sign-in was refused, in the page's language.
fn certificate_text(r: &CertRefusal, zh: bool) -> &'static str {
    match (r, zh) {
        (CertRefusal::NonePresented, true) => {
            "浏览器没有提供数字证书，请插入证书介质后重试，或用密码登录。"
        }
        (CertRefusal::NonePresented, false) => {
            "Your browser presented no certificate: insert your key and try again, or sign in with your password."
        }
        (CertRefusal::Revoked, true) => "您的数字证书已被吊销，不能用于登录。请联系证书管理员。",
        (CertRefusal::Revoked, false) => {
            "Your certificate has been revoked and cannot be used to sign in. Ask your certificate administrator."
        }
        (CertRefusal::Expired, true) => "您的数字证书已过期，请更换证书。",
        (CertRefusal::Expired, false) => "Your certificate has expired; it must be renewed.",
        (CertRefusal::NotYetValid, true) => "您的数字证书尚未生效。",
        (CertRefusal::NotYetValid, false) => "Your certificate is not valid yet.",
        (CertRefusal::OtherZone, true) => "该数字证书不是本网络的证书机构签发的，不能在此登录。",
        (CertRefusal::OtherZone, false) => {
            "This certificate was not issued by this network's certificate authority; it cannot sign in here."
        }
        (CertRefusal::StaleCrl, true) => {
            "证书吊销列表已过期，暂时无法核验证书，证书登录已停止。请用密码登录或联系管理员。"
        }
        (CertRefusal::StaleCrl, false) => {
            "The certificate revocation list is out of date, so certificates cannot be checked and certificate sign-in is stopped. Sign in with your password or tell an administrator."
        }
        (CertRefusal::Invalid, true) => "该数字证书无效。",
        (CertRefusal::Invalid, false) => "This certificate is not valid.",
        (CertRefusal::Unmapped, true) => "该数字证书不对应任何账号。",
        (CertRefusal::Unmapped, false) => "This certificate belongs to no account here.",
        (CertRefusal::Disabled, true) => "该数字证书对应的账号已停用。",
        (CertRefusal::Disabled, false) => "The account of this certificate is disabled.",
        (CertRefusal::NotAPerson, true) => "该证书不是个人证书，不能用于登录。",
        (CertRefusal::NotAPerson, false) => {
            "This is not a person's certificate; it cannot be used to sign in."
        }
        (CertRefusal::DeviceUnregistered, true) => {
            "该设备未登记，不能用于登录。请联系管理员登记设备。"
        }
        (CertRefusal::DeviceUnregistered, false) => {
            "This device is not registered and cannot be used to sign in. Ask an administrator to register it."
        }
        (CertRefusal::DeviceOfAnother, true) => "该设备登记在其他用户名下，您不能在此设备上登录。",
        (CertRefusal::DeviceOfAnother, false) => {
            "This device is registered to another user; you cannot sign in on it."
        }
    }
}

/// What a sign-in form page shows besides its fields.
pub(crate) struct FormPage<'a> {
    /// The request's language.
    pub locale: UiLocale,
    /// The step whose form is shown.
    pub stage: Stage,
    /// The CSRF token of the step's form.
    pub csrf: &'a str,
    /// A message above the form.
    pub notice: Option<&'a Notice>,
    /// A cookie to set with the page.
    pub cookie: Option<&'a str>,
    /// The sign-in name to fill in.
    pub login_hint: &'a str,
    /// Whether to link the registration page.
    pub register_link: bool,
    /// Whether to offer "sign in with certificate" (a certificate came with the request).
    pub cert_button: bool,
    /// On the enrolment page: the QR code (inline SVG) and the secret as text.
    pub enrolment: Option<(&'a str, &'a str)>,
}

/// A step of the sign-in as a form posted to `/login`.
pub(crate) fn form_page(f: &FormPage<'_>) -> Response<ResponseBody> {
    let zh = f.locale == UiLocale::ZhCn;
    let lang = f.locale.as_str();
    let t = |zh_text: &'static str, en_text: &'static str| if zh { zh_text } else { en_text };
    let (title, fields): (&str, Vec<Input<'_>>) = match f.stage {
        Stage::Password => (
            t("登录", "Sign in"),
            vec![
                Input {
                    name: "username",
                    label: t("用户名", "User name"),
                    kind: "text",
                    value: f.login_hint,
                    autocomplete: "username",
                    required: true,
                },
                Input {
                    name: "password",
                    label: t("密码", "Password"),
                    kind: "password",
                    value: "",
                    autocomplete: "current-password",
                    required: true,
                },
            ],
        ),
        Stage::Totp | Stage::Enrol => (
            if f.stage == Stage::Totp {
                t("动态口令", "One-time code")
            } else {
                t("绑定动态口令", "Set up one-time codes")
            },
            vec![Input {
                name: "code",
                label: t("六位动态口令", "Six-digit code"),
                kind: "text",
                value: "",
                autocomplete: "one-time-code",
                required: true,
            }],
        ),
        Stage::ChangePassword => (
            t("修改密码", "Change your password"),
            vec![
                Input {
                    name: "new_password",
                    label: t("新密码", "New password"),
                    kind: "password",
                    value: "",
                    autocomplete: "new-password",
                    required: true,
                },
                Input {
                    name: "confirm",
                    label: t("确认新密码", "New password again"),
                    kind: "password",
                    value: "",
                    autocomplete: "new-password",
                    required: true,
                },
            ],
        ),
        Stage::Register => (
            t("注册", "Register"),
            vec![
                Input {
                    name: "display_name",
                    label: t("姓名", "Full name"),
                    kind: "text",
                    value: "",
                    autocomplete: "name",
                    required: true,
                },
                Input {
                    name: "username",
                    label: t("用户名", "User name"),
                    kind: "text",
                    value: "",
                    autocomplete: "username",
                    required: true,
                },
                Input {
                    name: "email",
                    label: t("电子邮箱", "E-mail"),
                    kind: "email",
                    value: "",
                    autocomplete: "email",
                    required: false,
                },
                Input {
                    name: "password",
                    label: t("密码", "Password"),
                    kind: "password",
                    value: "",
                    autocomplete: "new-password",
                    required: true,
                },
                Input {
                    name: "confirm",
                    label: t("确认密码", "Password again"),
                    kind: "password",
                    value: "",
                    autocomplete: "new-password",
                    required: true,
                },
            ],
        ),
    };
    let mut body = String::new();
    if let Some(n) = f.notice {
        body.push_str(&format!(
            "<p role=\"alert\" class=\"notice\">{}</p>",
            escape(&notice_text(n, zh))
        ));
    }
    if let Some((svg, secret)) = f.enrolment {
        body.push_str(t(
            "<p>用身份验证器应用扫描二维码，或手动输入密钥，然后输入应用显示的口令。</p>",
            "<p>Scan the QR code with an authenticator app, or type the key in by hand, then enter the code the app shows.</p>",
        ));
        // The SVG is made here from the otpauth URI; it holds no script.
        body.push_str(&format!("<figure class=\"qr\">{svg}</figure>"));
        body.push_str(&format!(
            "<p>{} <code id=\"totp-secret\">{}</code></p>",
            t("密钥：", "Key:"),
            escape(secret)
        ));
    }
    if f.stage == Stage::ChangePassword {
        body.push_str(t(
            "<p>新密码至少 8 个字符，包含大写字母、小写字母、数字和其他字符中的三类，且不能与最近 5 次的密码相同。</p>",
            "<p>At least 8 characters, with three of: upper case, lower case, digits, other characters; none of your last 5 passwords.</p>",
        ));
    }
    body.push_str("<form method=\"post\" action=\"/login\">");
    body.push_str(&format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(f.csrf)
    ));
    for i in &fields {
        body.push_str(&input(i));
    }
    body.push_str(&format!(
        "<p><button type=\"submit\">{}</button></p></form>",
        t("继续", "Continue")
    ));
    if f.cert_button && f.stage == Stage::Password {
        body.push_str("<form method=\"post\" action=\"/login\">");
        body.push_str(&format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"method\" value=\"certificate\">",
            escape(f.csrf)
        ));
        body.push_str(&format!(
            "<p><button type=\"submit\">{}</button></p></form>",
            t("使用数字证书登录", "Sign in with certificate")
        ));
    }
    if f.register_link && f.stage == Stage::Password {
        body.push_str(&format!(
            "<p><a href=\"/register\">{}</a></p>",
            t("没有账号？注册", "No account? Register")
        ));
    }
    let mut r = page(StatusCode::OK, lang, title, &body);
    if let Some(c) = f.cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// The end of a sign-in that gives no code, with why.
pub(crate) fn refusal_page(locale: UiLocale, notice: &Notice) -> Response<ResponseBody> {
    let zh = locale == UiLocale::ZhCn;
    let title = if zh {
        "无法登录"
    } else {
        "Sign-in refused"
    };
    let body = format!("<p role=\"alert\">{}</p>", escape(&notice_text(notice, zh)));
    page(StatusCode::FORBIDDEN, locale.as_str(), title, &body)
}

/// What the device verification page (`/device`, RFC 8628 §3.3) shows a signed-in person.
pub(crate) struct DevicePage<'a> {
    /// Who is signed in (their subject id).
    pub(crate) who: &'a str,
    /// The user code, as typed or given in the link.
    pub(crate) user_code: &'a str,
    /// The client asking, once the code was found.
    pub(crate) client_id: Option<&'a str>,
    /// The CSRF token of the `device` form.
    pub(crate) csrf: &'a str,
    /// Why the code was not taken, if it was not.
    pub(crate) notice: Option<&'a str>,
}

/// The verification page: the user code to confirm, and the approve and deny buttons.
pub(crate) fn device_page(d: &DevicePage<'_>) -> Response<ResponseBody> {
    let mut body = format!(
        "<p>已登录 / Signed in as <code>{}</code></p>",
        escape(d.who)
    );
    if let Some(n) = d.notice {
        body.push_str(&format!("<p role=\"alert\">{}</p>", escape(n)));
    }
    if let Some(c) = d.client_id {
        body.push_str(&format!(
            "<p>应用 <code>{c}</code> 请求以您的身份登录。/ <code>{c}</code> asks to sign in as you. 请确认终端上显示的代码一致。/ Check that your terminal shows the same code.</p>",
            c = escape(c)
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/device\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{}<p><button type=\"submit\" name=\"decision\" value=\"approve\">批准 / Approve</button> <button type=\"submit\" name=\"decision\" value=\"deny\">拒绝 / Deny</button></p></form>",
        escape(d.csrf),
        input(&Input {
            name: "user_code",
            label: "代码 / Code",
            kind: "text",
            value: d.user_code,
            autocomplete: "off",
            required: true,
        })
    ));
    page(StatusCode::OK, "zh-CN", "设备登录 / Device sign-in", &body)
}

/// The answer to a decision on the verification page.
pub(crate) fn device_done_page(approved: bool) -> Response<ResponseBody> {
    let body = if approved {
        "<p>已批准，请回到终端。/ Approved: return to your terminal.</p>"
    } else {
        "<p>已拒绝。/ Denied: the terminal is refused.</p>"
    };
    page(StatusCode::OK, "zh-CN", "设备登录 / Device sign-in", body)
}

/// A redirect (`303 See Other`), with a cookie to set.
pub(crate) fn redirect(location: &str, cookie: Option<&str>) -> Response<ResponseBody> {
    let mut r = page(StatusCode::SEE_OTHER, "en", "Redirect", "");
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_action_allows_self_and_the_redirect_origin_only() {
        assert!(CSP.contains("form-action 'self';"));
        for (uri, src) in [
            (
                "https://Case.example:8443/cb?x=1",
                "https://case.example:8443",
            ),
            ("https://case.example/cb", "https://case.example"),
            ("http://127.0.0.1:5000/cb", "http://127.0.0.1:*"),
            ("http://[::1]/cb", "http://[::1]:*"),
            ("cn.court.app:/cb", "cn.court.app:"),
        ] {
            let csp = csp_for_redirect(uri);
            assert!(
                csp.contains(&format!("form-action 'self' {src};")),
                "{uri}: {csp}"
            );
            assert!(csp.starts_with("default-src 'none';"), "{csp}");
        }
        for bad in [
            "https://a.example;script-src *",
            "https://u@a.example/cb",
            "https://a example/cb",
            "no-scheme",
        ] {
            assert_eq!(csp_for_redirect(bad), CSP, "{bad}");
        }
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
