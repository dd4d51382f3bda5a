//! A headless Chromium driven over WebDriver, for browser tests of any of the project's HTTPS
//! services. `chromedriver` listens on a loopback port the OS chooses (`--port=0`, the port read
//! from its own first lines) and is spoken to over plain HTTP by `fantoccini` (no TLS stack). The
//! browser runs with a fresh profile and a temporary HOME whose NSS database trusts the one CA the
//! test names, so the service's certificate is verified for real: certificate errors are not
//! ignored. The names the test asks for resolve to 127.0.0.1 inside the browser only.
//! Screenshots go to `target/browser-screenshots/<test>/NN-step.png`. The driver, and the browser
//! it started, are killed when the [`Browser`] is dropped.
//!
//! Another crate's test reuses it with
//! `#[path = "../../idp/tests/browser/harness.rs"] mod harness;` (this crate's `tests/browser.rs`
//! includes it with `#[path = "browser/harness.rs"]`) and the dev-dependencies
//! `fantoccini` (no default features), `hyper-util` (its `client-legacy` and `http1`
//! features), `serde_json`, `tempfile` and `tokio`.
//! Chromium and chromedriver are looked for at `/usr/bin/chromium` and `/usr/bin/chromedriver`
//! (Debian's `chromium` and `chromium-driver`; `TIANPING_CHROMIUM` and `TIANPING_CHROMEDRIVER`
//! override); `certutil` comes from `libnss3-tools`. A missing one is an error, never a skip.

use std::error::Error;
use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

/// What the harness's operations fail with.
pub(crate) type HarnessResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The flags every browser is started with (the profile, resolver rules and window size come
/// on top).
pub(crate) const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// How a [`Browser`] is started.
#[derive(Debug, Clone)]
pub(crate) struct BrowserConfig<'a> {
    /// The test's name: its screenshots' folder under `target/browser-screenshots/`.
    pub(crate) test: &'a str,
    /// The PEM of the CA the browser trusts (and no other added one).
    pub(crate) ca_pem: &'a str,
    /// Host names that resolve to 127.0.0.1 in the browser; every other name fails to resolve.
    pub(crate) hosts: &'a [&'a str],
}

/// A headless Chromium under a chromedriver, both killed on drop.
pub(crate) struct Browser {
    client: Option<Client>,
    driver: Child,
    shots: PathBuf,
    step: u32,
    tmp: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver_pid", &self.driver.id())
            .field("shots", &self.shots)
            .finish_non_exhaustive()
    }
}

fn tool(var: &str, default: &str, package: &str) -> HarnessResult<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found (set {var} or install Debian's `{package}`, as .ci/run does)",
            path.display()
        )
        .into())
    }
}

fn run(cmd: &mut Command) -> HarnessResult<()> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into())
    }
}

/// `target/browser-screenshots`, found from the test binary's place in `target/<profile>/deps/`.
fn screenshots_root() -> HarnessResult<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or("the test binary is not under target/<profile>/deps")?;
    Ok(target.join("browser-screenshots"))
}

/// An NSS database under `home` trusting `ca_pem` as a CA for TLS servers.
fn trust_ca(home: &Path, ca_pem: &str) -> HarnessResult<()> {
    let certutil = tool("TIANPING_CERTUTIL", "/usr/bin/certutil", "libnss3-tools")?;
    let db = home.join(".pki").join("nssdb");
    std::fs::create_dir_all(&db)?;
    let ca = home.join("zone-ca.pem");
    std::fs::write(&ca, ca_pem)?;
    let db_arg = format!("sql:{}", db.display());
    run(Command::new(&certutil).args(["-N", "--empty-password", "-d", &db_arg]))?;
    run(Command::new(&certutil)
        .args(["-A", "-t", "C,,", "-n", "zone-ca", "-d", &db_arg, "-i"])
        .arg(&ca))?;
    Ok(())
}

/// Reads chromedriver's first lines up to "started successfully on port N."; the rest of its
/// output is drained by a thread so it never blocks on a full pipe.
fn driver_port(driver: &mut Child) -> HarnessResult<u16> {
    let stdout = driver.stdout.take().ok_or("chromedriver's stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut seen = String::new();
    for _ in 0..20 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(rest) = line.trim().strip_suffix('.')
            && let Some((_, port)) = rest.rsplit_once("started successfully on port ")
        {
            let port = port.parse()?;
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = reader.read_to_end(&mut sink);
            });
            return Ok(port);
        }
    }
    Err(format!("chromedriver did not say its port; it said:\n{seen}").into())
}

/// One `GET /status` answer's body, read by its `Content-Length` (chromedriver keeps the
/// connection open).
async fn status_body(port: u16) -> HarnessResult<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let ask = format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    s.write_all(ask.as_bytes()).await?;
    let mut got = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err("the status connection closed early".into());
        }
        got.extend_from_slice(chunk.get(..n).ok_or("read past the buffer")?);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .ok_or("a status answer without Content-Length")?;
            if body.len() >= len {
                return Ok(body.to_owned());
            }
        }
    }
}

/// Waits for the driver's `/status` to answer `ready`, over a bare HTTP/1.1 exchange on
/// loopback (bounded: 50 tries, each of at most 2 s, 100 ms apart).
async fn wait_ready(port: u16) -> HarnessResult<()> {
    let mut last = String::new();
    for _ in 0..50 {
        match tokio::time::timeout(Duration::from_secs(2), status_body(port)).await {
            Ok(Ok(body)) => match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(v) if v["value"]["ready"] == true => return Ok(()),
                _ => last = body,
            },
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer in 2 s".to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("chromedriver at port {port} never became ready: {last}").into())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium trusting `config.ca_pem`.
    pub(crate) async fn start(config: &BrowserConfig<'_>) -> HarnessResult<Self> {
        let chromium = tool("TIANPING_CHROMIUM", "/usr/bin/chromium", "chromium")?;
        let chromedriver = tool(
            "TIANPING_CHROMEDRIVER",
            "/usr/bin/chromedriver",
            "chromium-driver",
        )?;
        let tmp = tempfile::tempdir()?;
        let home = tmp.path().join("home");
        trust_ca(&home, config.ca_pem)?;
        let shots = screenshots_root()?.join(config.test);
        if shots.exists() {
            std::fs::remove_dir_all(&shots)?;
        }
        std::fs::create_dir_all(&shots)?;

        // Its own process group, so that drop kills the driver and the browser it started.
        let spawn = || {
            Command::new(&chromedriver)
                .args(["--port=0", "--log-level=WARNING"])
                .arg(format!(
                    "--log-path={}",
                    tmp.path().join("chromedriver.log").display()
                ))
                .env("HOME", &home)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|e| format!("{}: {e}", chromedriver.display()))
        };
        // On port 0 chromedriver takes a port for IPv6 loopback and then the same number on
        // IPv4, and exits ("IPv4 port not available") when another process holds that one
        // there, as the servers of tests running beside this one may: then it starts again
        // (bounded), on another port the OS chooses.
        let mut attempts = 0;
        let (driver, port) = loop {
            let mut driver = spawn()?;
            match driver_port(&mut driver) {
                Ok(port) => break (driver, port),
                Err(e) => {
                    let _ = driver.kill();
                    let _ = driver.wait();
                    if attempts == 4 || !e.to_string().contains("port not available") {
                        return Err(e);
                    }
                    attempts += 1;
                }
            }
        };
        let mut browser = Self {
            client: None,
            driver,
            shots,
            step: 0,
            tmp,
        };
        wait_ready(port).await?;

        let profile = browser.tmp.path().join("profile");
        let rules: Vec<String> = config
            .hosts
            .iter()
            .map(|h| format!("MAP {h} 127.0.0.1"))
            .chain(["MAP * ~NOTFOUND".to_owned()])
            .collect();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|&s| s.to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--host-resolver-rules={}", rules.join(", ")));
        args.push("--window-size=1000,800".to_owned());
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert("acceptInsecureCerts".into(), false.into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| {
                let log = std::fs::read_to_string(browser.tmp.path().join("chromedriver.log"))
                    .unwrap_or_default();
                format!("a chromium session: {e}\n{log}")
            })?;
        browser.client = Some(client);
        Ok(browser)
    }

    /// The WebDriver client, for anything the helpers below do not cover.
    pub(crate) fn client(&self) -> HarnessResult<&Client> {
        self.client
            .as_ref()
            .ok_or_else(|| "the browser is closed".into())
    }

    /// Navigates to `url` and waits for the page to load.
    pub(crate) async fn goto(&self, url: &str) -> HarnessResult<()> {
        Ok(self.client()?.goto(url).await?)
    }

    /// The URL the browser is on.
    pub(crate) async fn current_url(&self) -> HarnessResult<String> {
        Ok(self.client()?.current_url().await?.to_string())
    }

    /// The page's visible text.
    pub(crate) async fn text(&self) -> HarnessResult<String> {
        Ok(self
            .client()?
            .find(Locator::Css("body"))
            .await?
            .text()
            .await?)
    }

    /// The page's `<html lang>`.
    pub(crate) async fn lang(&self) -> HarnessResult<Option<String>> {
        let html = self.client()?.find(Locator::Css("html")).await?;
        Ok(html.attr("lang").await?)
    }

    /// Types `value` into the element `css` selects (cleared first).
    pub(crate) async fn fill(&self, css: &str, value: &str) -> HarnessResult<()> {
        let e = self.client()?.find(Locator::Css(css)).await?;
        e.clear().await?;
        e.send_keys(value).await?;
        Ok(())
    }

    /// Clicks the element `css` selects, and waits until the page it leads to has replaced the
    /// current one (bounded: 20 s).
    pub(crate) async fn click(&self, css: &str) -> HarnessResult<()> {
        let c = self.client()?;
        let old = c.find(Locator::Css("html")).await?;
        c.find(Locator::Css(css)).await?.click().await?;
        // The old document's root goes stale once the next page has replaced it.
        for _ in 0..400 {
            if old.attr("lang").await.is_err() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let at = c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        Err(format!("clicking {css} led to no new page (still at {at})").into())
    }

    /// Saves a screenshot as `NN-step.png` in the test's folder; returns its path.
    pub(crate) async fn screenshot(&mut self, step: &str) -> HarnessResult<PathBuf> {
        let png = self.client()?.screenshot().await?;
        self.step += 1;
        let path = self.shots.join(format!("{:02}-{step}.png", self.step));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the session (the driver closes the browser), then stops the driver.
    pub(crate) async fn close(mut self) -> HarnessResult<()> {
        if let Some(client) = self.client.take() {
            client.close().await?;
        }
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and every browser process it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
