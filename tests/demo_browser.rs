//! The court scenario in a real browser (issue 19): `tianping up --demo` on port-0 addresses as
//! a child, then a headless Chromium (the IdP's WebDriver harness, `idp/tests/browser/harness.rs`)
//! trusting only the fabric's root CA, certificate errors not ignored. The judge `judge.li` opens
//! a case page of the sample case service `case-management` at the private gateway, is sent to
//! the private IdP's sign-in page, types the password from `demo-users.txt`, then the one-time
//! code computed from the TOTP secret listed there, comes back through the gateway's callback
//! and reads the case, with the gateway's `__Host-` session cookie set. Then the same judge opens
//! the audit records (route `audit-read`, auditors only) and gets the gateway's 403 with a
//! request id. Screenshots of each step under `target/browser-screenshots/<test>/`.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly, with what went wrong; the harness reads chromedriver's JSON by index"
)]

#[path = "common/exchange.rs"]
mod exchange;
#[path = "../idp/tests/browser/harness.rs"]
mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use exchange::Daemon;
use harness::{Browser, BrowserConfig};
use tianping_core::{
    Clock as _, Component, DataDir, Fabric, Listener, SystemClock, ZoneName, listener_addr,
};
use tianping_idp::{TotpConfig, TotpSecret};

/// The test's name: its screenshots' folder.
const TEST: &str = "a_judge_signs_in_at_the_private_gateway_and_reads_a_case";
/// The judge of the demo's people, of court `bj.01.03` (北京市朝阳区人民法院).
const JUDGE: &str = "judge.li";
const JUDGE_SUB: &str = "u-0101";
/// The case page: route `case-read` of the default policy (`court within`, `acr >= otp`).
const CASE: &str = "/courts/bj.01.03/cases/42";
/// The gateway's session cookie (`tianping_gateway::SESSION_COOKIE`).
const SESSION_COOKIE: &str = "__Host-tianping-session";

/// `up --demo`, stopped as Ctrl-C stops it (every child with it) when dropped, even when the
/// test fails: killing `up` alone would leave its children running.
struct Up(Option<Daemon>);

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(up) = self.0.take() {
            up.interrupt();
            up.wait_exit();
        }
    }
}

/// A person's password and TOTP secret, as `demo-users.txt` lists them.
fn person(data: &Path, login: &str) -> (String, String) {
    let text = std::fs::read_to_string(data.join("demo-users.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            match cols.as_slice() {
                [l, _role, _zone, password, totp, ..] if *l == login => {
                    Some(((*password).to_owned(), (*totp).to_owned()))
                }
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("`{login}` is not in demo-users.txt:\n{text}"))
}

/// The current one-time code of `secret`, by the clock the fabric runs on (no offset here).
fn code(secret: &str) -> String {
    let cfg = TotpConfig::default();
    let secret = TotpSecret::from_base32(secret).unwrap();
    cfg.code_at(&secret, cfg.step_at(SystemClock.now()))
}

/// The page's URL and visible text.
async fn at(b: &Browser) -> (String, String) {
    (b.current_url().await.unwrap(), b.text().await.unwrap())
}

#[test]
fn a_judge_signs_in_at_the_private_gateway_and_reads_a_case() {
    let s = exchange::setup("127.0.0.1:0");
    let dir = DataDir::new(&s.data);
    let by = Instant::now() + Duration::from_secs(300);
    let mut cmd = exchange::tianping(&s.data);
    cmd.args(["up", "--demo"]);
    let mut up = Up(Some(Daemon::spawn("up", cmd)));
    up.0.as_mut().unwrap().until("ready", by);

    let fabric = Fabric::load(&dir.fabric()).unwrap();
    let zone: ZoneName = "private".parse().unwrap();
    let z = fabric.zone(&zone).unwrap();
    let addr = |c| listener_addr(&dir, &fabric, &zone, c, &Listener::Public).unwrap();
    let gw = format!(
        "https://{}:{}",
        z.gateway_host,
        addr(Component::Gateway).port()
    );
    let idp = format!("https://{}:{}", z.idp_host, addr(Component::Idp).port());
    let root_ca = std::fs::read_to_string(dir.pki().join("root-ca.pem")).unwrap();
    let (password, totp) = person(&s.data, JUDGE);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let last = rt.block_on(async {
        let mut b = Browser::start(&BrowserConfig {
            test: TEST,
            ca_pem: &root_ca,
            hosts: &[z.gateway_host.as_str(), z.idp_host.as_str()],
        })
        .await
        .unwrap();
        let c = b.client().unwrap().clone();

        // the case page, not signed in: the gateway sends the browser to the IdP's sign-in page
        b.goto(&format!("{gw}{CASE}")).await.unwrap();
        let (url, text) = at(&b).await;
        assert!(url.starts_with(&format!("{idp}/")), "{url}\n{text}");
        assert!(
            c.find(fantoccini::Locator::Css("input[name=password]"))
                .await
                .is_ok(),
            "no password field at {url}:\n{text}"
        );
        // the IdP's page says its language (Chinese or English, as the browser asks)
        let lang = b.lang().await.unwrap();
        assert!(matches!(lang.as_deref(), Some("zh-CN" | "en")), "{lang:?}");
        b.screenshot("sign-in-page").await.unwrap();

        // the password: the one-time code page next
        b.fill("input[name=username]", JUDGE).await.unwrap();
        b.fill("input[name=password]", &password).await.unwrap();
        b.screenshot("password-typed").await.unwrap();
        b.click("form:has(input[name=password]) button[type=submit]")
            .await
            .unwrap();
        let (url, text) = at(&b).await;
        assert!(url.starts_with(&format!("{idp}/")), "{url}\n{text}");
        assert!(
            c.find(fantoccini::Locator::Css("input[name=code]"))
                .await
                .is_ok(),
            "no one-time code field at {url}:\n{text}"
        );
        assert!(
            c.find(fantoccini::Locator::Css("input[name=password]"))
                .await
                .is_err(),
            "the password asked again at {url}:\n{text}"
        );
        b.screenshot("one-time-code-page").await.unwrap();

        // the one-time code: back through the gateway's callback, at the case page
        b.fill("input[name=code]", &code(&totp)).await.unwrap();
        b.screenshot("one-time-code-typed").await.unwrap();
        b.click("form:has(input[name=code]) button[type=submit]")
            .await
            .unwrap();
        let (url, text) = at(&b).await;
        assert_eq!(url, format!("{gw}{CASE}"), "{text}");
        for want in [
            "case-management (private)",
            "case 42 of court bj.01.03",
            "(2026)京0105民初42号",
            "审理中",
        ] {
            assert!(
                text.contains(want),
                "{want:?} not on the case page:\n{text}"
            );
        }
        // the person as the gateway asserted them to the service
        assert!(
            text.contains(&format!("signed in: {JUDGE_SUB} (judge, court bj.01.03)")),
            "{text}"
        );
        let session = c.get_named_cookie(SESSION_COOKIE).await.unwrap();
        assert!(!session.value().is_empty());
        assert_eq!(session.secure(), Some(true), "{session:?}");
        assert_eq!(session.http_only(), Some(true), "{session:?}");
        assert_eq!(session.path(), Some("/"), "{session:?}");
        assert_eq!(
            format!("{:?}", session.same_site()),
            "Some(Lax)",
            "{session:?}"
        );
        // `__Host-`: set by the gateway's host alone, no `Domain` (WebDriver shows the host)
        assert_eq!(
            session.domain(),
            Some(z.gateway_host.as_str()),
            "{session:?}"
        );
        b.screenshot("case-page").await.unwrap();

        // the audit records are for auditors (route `audit-read`): the judge is refused, 403
        // with the gateway's request id, and stays signed in
        b.goto(&format!("{gw}/audit/")).await.unwrap();
        let (url, text) = at(&b).await;
        assert_eq!(url, format!("{gw}/audit/"), "{text}");
        let id = text
            .strip_prefix("forbidden: ")
            .and_then(|t| t.trim_end().strip_suffix(')'))
            .and_then(|t| t.rsplit_once("(request "))
            .map(|(_, id)| id.to_owned())
            .unwrap_or_else(|| panic!("not the gateway's 403: {text:?}"));
        assert!(
            id.len() >= 16 && id.bytes().all(|c| c.is_ascii_hexdigit()),
            "{id:?} in {text:?}"
        );
        assert!(c.get_named_cookie(SESSION_COOKIE).await.is_ok());
        let last = b.screenshot("audit-refused").await.unwrap();
        b.close().await.unwrap();
        last
    });

    // the last step's screenshot is kept, a PNG
    let png = std::fs::read(&last).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{}",
        last.display()
    );
    assert!(last.ends_with(format!("{TEST}/06-audit-refused.png")));
}
