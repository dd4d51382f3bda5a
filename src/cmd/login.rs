//! `tianping login --zone Z` and `tianping logout --zone Z`: an administrator (any directory
//! user) signs in to the zone's IdP and keeps a short-lived token for the CLI in
//! `run/admin-<zone>.token` (mode 0600, at most 15 minutes, audience the zone's control
//! sockets), which the commands that call a control socket send when it exists.
//!
//! Both ways go through the device authorization grant (RFC 8628) as the client
//! `tianping-cli`:
//!
//! - with `--cert FILE --key FILE` (and `--totp CODE` where the certificate's key is in a file,
//!   so that the zone's policy gets `cert`), the CLI itself completes the verification page over
//!   mutual TLS: the IdP's own certificate sign-in (its CA and CRL, lockout, audit), then the
//!   approval; a first sign-in that must change a one-time password or enrol TOTP is done in a
//!   browser first;
//! - without, it prints the verification URI and the user code for a browser, and polls: each
//!   `authorization_pending` waits the interval, each `slow_down` adds 5 seconds to it,
//!   `expired_token` and `access_denied` end the login with their reason.
//!
//! The pending authorizations live in the running IdP's memory: if it restarts meanwhile, run
//! `tianping login` again. `logout` revokes the token at the IdP (`/revoke`; the sockets refuse
//! a revoked token at once) and deletes the file.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use http::StatusCode;
use miette::{IntoDiagnostic, WrapErr, miette};
use serde_json::Value;
use tianping_core::{Component, DataDir, Fabric, Listener, ZoneName};
use tianping_net::{ClientResponse, HttpsClient, HttpsClientBuilder};

/// The client `tianping login` is registered as on every zone's IdP.
const CLI_CLIENT: &str = "tianping-cli";
/// The session cookie of the IdP's sign-in pages.
const SESSION_COOKIE: &str = "__Host-tianping-session";
/// The longest a login waits for a person to decide (the IdP's authorizations last 10 minutes).
const MOST_POLLS: u32 = 200;

/// `tianping login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The zone whose IdP to sign in to.
    #[arg(long)]
    zone: ZoneName,
    /// A client certificate of the zone's CA (PEM): sign in with it over mutual TLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// The current TOTP code, for a certificate whose key is in a file.
    #[arg(long, requires = "cert")]
    totp: Option<String>,
}

/// `tianping logout`.
#[derive(Debug, Args)]
pub(crate) struct LogoutArgs {
    /// The zone to sign out of.
    #[arg(long)]
    zone: ZoneName,
}

/// The zone's IdP as the CLI reaches it.
struct Idp {
    issuer: String,
    http: HttpsClient,
    rt: tokio::runtime::Runtime,
}

impl Idp {
    fn connect(
        dir: &DataDir,
        zone: &ZoneName,
        cert: Option<(&Path, &Path)>,
    ) -> miette::Result<Self> {
        let fabric = Fabric::load(&dir.fabric()).into_diagnostic()?;
        let zl = fabric
            .zone(zone)
            .ok_or_else(|| miette!("`fabric.toml` has no zone `{zone}`"))?;
        let addr =
            tianping_core::listener_addr(dir, &fabric, zone, Component::Idp, &Listener::Public)
                .into_diagnostic()
                .wrap_err_with(|| {
                    format!("is zone `{zone}`'s IdP running (`tianping idp serve --zone {zone}`)?")
                })?;
        let read = |p: &Path| {
            std::fs::read(p)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read `{}`", p.display()))
        };
        let mut b = HttpsClientBuilder::new(read(&dir.zone_trust_bundle(zone))?)
            .resolve(zl.idp_host.clone(), addr);
        if let Some((c, k)) = cert {
            b = b.client_cert(read(c)?, read(k)?);
        }
        let http = b.build().into_diagnostic().wrap_err("the HTTPS client")?;
        let issuer = if addr.port() == 443 {
            format!("https://{}", zl.idp_host)
        } else {
            format!("https://{}:{}", zl.idp_host, addr.port())
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .into_diagnostic()?;
        Ok(Self { issuer, http, rt })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    fn get(&self, url: &str, cookie: Option<&str>) -> miette::Result<ClientResponse> {
        let mut headers = http::HeaderMap::new();
        if let Some(c) = cookie {
            let v =
                http::HeaderValue::from_str(&format!("{SESSION_COOKIE}={c}")).into_diagnostic()?;
            headers.insert(http::header::COOKIE, v);
        }
        self.rt
            .block_on(
                self.http
                    .request(http::Method::GET, url, &headers, String::new().into()),
            )
            .into_diagnostic()
            .wrap_err_with(|| format!("GET {url}"))
    }

    fn post_form(
        &self,
        url: &str,
        pairs: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> miette::Result<ClientResponse> {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        if let Some(c) = cookie {
            let v =
                http::HeaderValue::from_str(&format!("{SESSION_COOKIE}={c}")).into_diagnostic()?;
            headers.insert(http::header::COOKIE, v);
        }
        let body = tianping_idp::form_encode_pairs(pairs.iter().copied());
        self.rt
            .block_on(
                self.http
                    .request(http::Method::POST, url, &headers, body.into()),
            )
            .into_diagnostic()
            .wrap_err_with(|| format!("POST {url}"))
    }
}

/// The session cookie a response sets, if it sets one.
fn set_cookie(r: &ClientResponse) -> Option<String> {
    let prefix = format!("{SESSION_COOKIE}=");
    r.headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(prefix.as_str()))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .filter(|v| !v.is_empty())
}

fn location(r: &ClientResponse) -> miette::Result<String> {
    r.headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| miette!("the IdP answered {} without a Location", r.status))
}

fn text(r: &ClientResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The value of a page's hidden input `name`.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html.find(&marker)?;
    let rest = html.get(at + marker.len()..)?;
    rest.get(..rest.find('"')?).map(str::to_owned)
}

/// What a page says in its alert, or its status.
fn page_says(r: &ClientResponse) -> String {
    let html = text(r);
    let alert = html
        .find("role=\"alert\">")
        .and_then(|at| html.get(at + 13..))
        .and_then(|rest| rest.get(..rest.find('<')?));
    match alert {
        Some(a) => format!("{} ({})", a.trim(), r.status),
        None => match html.find("<code>") {
            Some(at) => {
                let rest = html.get(at..).unwrap_or_default();
                let end = rest.find("</p>").unwrap_or(rest.len());
                format!(
                    "{} ({})",
                    rest.get(..end)
                        .unwrap_or_default()
                        .replace("<code>", "")
                        .replace("</code>", ""),
                    r.status
                )
            }
            None => format!("status {}", r.status),
        },
    }
}

/// Completes the verification page of `user_code` over mutual TLS with the certificate the
/// client presents (and the TOTP code), approving the authorization.
fn approve_with_certificate(
    idp: &Idp,
    complete_uri: &str,
    user_code: &str,
    totp: Option<&str>,
) -> miette::Result<()> {
    // the page sends an anonymous caller through the sign-in
    let r = idp.get(complete_uri, None)?;
    if r.status != StatusCode::SEE_OTHER {
        return Err(miette!("the verification page answered {}", page_says(&r)));
    }
    let r = idp.get(&location(&r)?, None)?;
    let mut cookie = set_cookie(&r).ok_or_else(|| miette!("the sign-in gave no session"))?;
    let html = text(&r);
    if !html.contains("name=\"method\" value=\"certificate\"") {
        return Err(miette!(
            "the IdP did not take the certificate for a sign-in (is it a client certificate of this zone's CA?)"
        ));
    }
    let csrf = hidden(&html, "csrf").ok_or_else(|| miette!("the sign-in page has no form"))?;
    let mut r = idp.post_form(
        &idp.url("/login"),
        &[("csrf", &csrf), ("method", "certificate")],
        Some(&cookie),
    )?;
    if r.status == StatusCode::OK {
        let html = text(&r);
        if html.contains("name=\"new_password\"") || html.contains("<svg") {
            return Err(miette!(
                "this account's first sign-in must change its one-time password and enrol TOTP: do it once in a browser at {complete_uri}"
            ));
        }
        if !html.contains("name=\"code\"") {
            return Err(miette!(
                "the certificate sign-in was refused: {}",
                page_says(&r)
            ));
        }
        let code = totp.ok_or_else(|| {
            miette!(
                "the certificate's key is in a file: the zone asks a TOTP code too (`--totp CODE`)"
            )
        })?;
        let csrf = hidden(&html, "csrf").ok_or_else(|| miette!("the TOTP page has no form"))?;
        r = idp.post_form(
            &idp.url("/login"),
            &[("csrf", &csrf), ("code", code)],
            Some(&cookie),
        )?;
    }
    if r.status != StatusCode::SEE_OTHER {
        return Err(miette!("the sign-in was refused: {}", page_says(&r)));
    }
    cookie = set_cookie(&r).unwrap_or(cookie);
    let back = location(&r)?;
    if !back.starts_with(&idp.url("/device?")) {
        return Err(miette!(
            "the sign-in went to `{back}`, not the verification page"
        ));
    }
    let r = idp.get(&back, Some(&cookie))?;
    let html = text(&r);
    let csrf = match (r.status, hidden(&html, "csrf")) {
        (StatusCode::OK, Some(c)) => c,
        _ => return Err(miette!("the verification page answered {}", page_says(&r))),
    };
    let r = idp.post_form(
        &idp.url("/device"),
        &[
            ("csrf", &csrf),
            ("user_code", user_code),
            ("decision", "approve"),
        ],
        Some(&cookie),
    )?;
    if r.status == StatusCode::OK && text(&r).contains("Approved") {
        Ok(())
    } else {
        Err(miette!("the approval was refused: {}", page_says(&r)))
    }
}

/// Polls the token endpoint as RFC 8628 §3.5 says until the token, a denial or the end,
/// waiting the interval between polls with `sleep`.
fn poll(
    idp: &Idp,
    device_code: &str,
    mut interval: Duration,
    wait_first: bool,
    sleep: &mut dyn FnMut(Duration),
) -> miette::Result<Value> {
    let token = idp.url("/token");
    let mut told = false;
    let mut wait = wait_first;
    for _ in 0..MOST_POLLS {
        if wait {
            sleep(interval);
        }
        wait = true;
        let r = idp.post_form(
            &token,
            &[
                ("grant_type", tianping_idp::DEVICE_CODE_GRANT),
                ("device_code", device_code),
                ("client_id", CLI_CLIENT),
            ],
            None,
        )?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if r.status == StatusCode::OK {
            return Ok(v);
        }
        let error = v.get("error").and_then(Value::as_str).unwrap_or_default();
        let said = v
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match error {
            "authorization_pending" => {
                if !told {
                    println!("waiting for approval (authorization_pending)");
                    told = true;
                }
            }
            "slow_down" => {
                interval = interval.saturating_add(tianping_idp::SLOW_DOWN_STEP);
                println!("polling slower: every {} s (slow_down)", interval.as_secs());
            }
            "expired_token" => {
                return Err(miette!(
                    "the code expired before anyone approved it (expired_token): run `tianping login` again"
                ));
            }
            "access_denied" => {
                return Err(miette!("the sign-in was denied (access_denied)"));
            }
            "" => return Err(miette!("the IdP answered {}", r.status)),
            other => return Err(miette!("the IdP refused the login ({other}): {said}")),
        }
    }
    Err(miette!(
        "nobody decided in time: run `tianping login` again"
    ))
}

/// Writes `token` to `path`, mode 0600 from its creation, replacing what was there at once.
fn write_token(path: &Path, token: &str) -> miette::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).into_diagnostic()?;
    let tmp = dir.join(format!(".admin-{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create `{}`", tmp.display()))?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .into_diagnostic()?;
    std::fs::rename(&tmp, path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write `{}`", path.display()))
}

/// `tianping login`.
pub(crate) fn login(data: &Path, a: LoginArgs) -> miette::Result<ExitCode> {
    let dir = DataDir::new(data);
    let cert = a.cert.as_deref().zip(a.key.as_deref());
    let idp = Idp::connect(&dir, &a.zone, cert)?;
    let r = idp.post_form(
        &idp.url("/device_authorization"),
        &[("client_id", CLI_CLIENT), ("scope", "openid")],
        None,
    )?;
    let started: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    if r.status != StatusCode::OK {
        let said = started
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(miette!(
            "the IdP refused the device authorization ({}): {said}",
            r.status
        ));
    }
    let field = |k: &str| {
        started
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| miette!("the IdP's answer has no `{k}`"))
    };
    let (device_code, user_code) = (field("device_code")?, field("user_code")?);
    let (uri, complete) = (
        field("verification_uri")?,
        field("verification_uri_complete")?,
    );
    let interval = Duration::from_secs(
        started
            .get("interval")
            .and_then(Value::as_u64)
            .unwrap_or(5)
            .max(1),
    );
    let answer = if cert.is_some() {
        approve_with_certificate(&idp, &complete, &user_code, a.totp.as_deref())?;
        poll(&idp, &device_code, interval, false, &mut std::thread::sleep)?
    } else {
        println!("open {uri} and enter the code {user_code}");
        println!("or open {complete}");
        poll(&idp, &device_code, interval, true, &mut std::thread::sleep)?
    };
    let token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| miette!("the IdP's answer has no access token"))?;
    let life = answer
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let path = dir.admin_token(&a.zone);
    write_token(&path, token)?;
    let sub = tianping_idp::assertion_subject(token).unwrap_or_default();
    println!(
        "signed in to zone `{}` as `{sub}` for {} minutes; token in `{}`",
        a.zone,
        life / 60,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `tianping logout`.
pub(crate) fn logout(data: &Path, a: LogoutArgs) -> miette::Result<ExitCode> {
    let dir = DataDir::new(data);
    let path = dir.admin_token(&a.zone);
    let token = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("not signed in to zone `{}`", a.zone);
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read `{}`", path.display()));
        }
    };
    let revoked = Idp::connect(&dir, &a.zone, None).and_then(|idp| {
        let r = idp.post_form(
            &idp.url("/revoke"),
            &[("token", &token), ("client_id", CLI_CLIENT)],
            None,
        )?;
        if r.status == StatusCode::OK {
            Ok(())
        } else {
            Err(miette!("the IdP answered {}", r.status))
        }
    });
    std::fs::remove_file(&path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot delete `{}`", path.display()))?;
    match revoked {
        Ok(()) => {
            println!(
                "signed out of zone `{}`: the token is revoked and deleted",
                a.zone
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(miette!(
            "`{}` is deleted, but the token could not be revoked ({e}): it stays valid until it expires",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::{Request, Response};
    use tianping_certs::{CaCert, CertKind, ClientAuth, KeyAlg, LeafRequest, ServerTlsBuilder};
    use tianping_core::UnixTime;
    use tianping_net::{Body, HostSet, ResponseBody, ServerOptions, full, serve_tls};

    use super::*;

    const HOST: &str = "idp.private.court.example";

    /// A token endpoint over real TLS that answers `script` in turn (status, JSON), and the
    /// CLI's view of it.
    fn idp_answering(
        dir: &Path,
        script: Vec<(u16, &'static str)>,
    ) -> (Idp, tokio::runtime::Runtime, tianping_net::ServerHandle) {
        let now = UnixTime::from_system_time(std::time::SystemTime::now());
        let root = CaCert::new_root("Court", KeyAlg::EcP256, now).unwrap();
        let zone = root
            .new_zone(&"private".parse().unwrap(), "Court", KeyAlg::EcP256, now)
            .unwrap();
        let mut req = LeafRequest::new(CertKind::Server, "idp");
        req.dns = vec![HOST.to_owned()];
        let leaf = zone.issue(&req, now).unwrap();
        std::fs::write(dir.join("tls.pem"), &leaf.chain_pem).unwrap();
        std::fs::write(dir.join("tls.key"), leaf.key_pem.expose()).unwrap();
        std::fs::write(dir.join("trust.pem"), root.cert_pem()).unwrap();
        let tls = ServerTlsBuilder::new(dir.join("tls.pem"), dir.join("tls.key"))
            .client_auth(ClientAuth::None, dir.join("trust.pem"), vec![])
            .build()
            .unwrap();
        let script = Arc::new(Mutex::new(script.into_iter()));
        let handler = move |req: Request<Body>| {
            let next = script.lock().unwrap().next();
            async move {
                assert_eq!(req.uri().path(), "/token");
                let (status, body) = next.unwrap_or((500, "{}"));
                let mut r: Response<ResponseBody> = Response::new(full(body));
                *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                r
            }
        };
        let server_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut options = ServerOptions::new(HostSet::new([HOST]));
        options.http3 = false;
        let server = server_rt
            .block_on(serve_tls(
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                Arc::new(tls),
                options,
                handler,
            ))
            .unwrap();
        let http = HttpsClientBuilder::new(root.cert_pem().as_bytes().to_vec())
            .resolve(HOST, server.local_addr())
            .build()
            .unwrap();
        let idp = Idp {
            issuer: format!("https://{HOST}:{}", server.local_addr().port()),
            http,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        (idp, server_rt, server)
    }

    fn error(code: &'static str) -> (u16, &'static str) {
        let body: &'static str = match code {
            "authorization_pending" => r#"{"error":"authorization_pending"}"#,
            "slow_down" => r#"{"error":"slow_down"}"#,
            "expired_token" => r#"{"error":"expired_token"}"#,
            _ => r#"{"error":"access_denied"}"#,
        };
        (400, body)
    }

    #[test]
    fn the_cli_waits_while_pending_slows_down_when_told_and_stops_on_expiry_or_denial() {
        let tmp = tempfile::tempdir().unwrap();
        let (idp, _rt, _server) = idp_answering(
            tmp.path(),
            vec![
                error("authorization_pending"),
                error("slow_down"),
                error("authorization_pending"),
                error("slow_down"),
                (200, r#"{"access_token":"t","expires_in":900}"#),
            ],
        );
        let mut waits = Vec::new();
        let answer = poll(&idp, "dc", Duration::from_secs(5), true, &mut |d| {
            waits.push(d.as_secs());
        })
        .unwrap();
        assert_eq!(answer["access_token"], "t");
        // 5 s at first; each slow_down adds 5 s for every later poll (RFC 8628 §3.5)
        assert_eq!(waits, vec![5, 5, 10, 10, 15]);

        for (code, said) in [
            ("expired_token", "expired_token"),
            ("access_denied", "access_denied"),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let (idp, _rt, _server) = idp_answering(
                tmp.path(),
                vec![error("authorization_pending"), error(code)],
            );
            let mut polls = 0;
            let e = poll(&idp, "dc", Duration::from_secs(5), false, &mut |_| {
                polls += 1
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains(said), "{e}");
            assert_eq!(polls, 1, "one wait, between the two polls");
        }
    }
}
