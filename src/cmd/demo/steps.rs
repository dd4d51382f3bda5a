//! The scenario's steps, in order. Each one acts as a person of the demo (through a gateway,
//! signed in at the IdP's pages or by certificate) or as an operator (a `tianping` command),
//! and says what happened; a step the policy must refuse succeeds when it is refused, with the
//! refusal shown. A step that needs an earlier one's result is not run when that one failed
//! (it counts as failed).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::browser::{Browser, Credentials, forms};
use super::{Running, sample};

/// How often a waiting step looks again.
const POLL: Duration = Duration::from_millis(400);

/// The printed steps and how many failed.
struct Report {
    json: bool,
    n: usize,
    failed: usize,
}

impl Report {
    fn step(&mut self, what: &str, outcome: &Result<String, String>) {
        self.n += 1;
        let (ok, detail) = match outcome {
            Ok(d) => (true, d.as_str()),
            Err(e) => (false, e.as_str()),
        };
        if !ok {
            self.failed += 1;
        }
        if self.json {
            println!(
                "{}",
                json!({ "step": self.n, "what": what, "ok": ok, "detail": detail })
            );
        } else {
            println!(
                "{:>2}. {} {what}\n      {detail}",
                self.n,
                if ok { "ok    " } else { "FAILED" }
            );
        }
    }
}

/// Looks with `probe` until it finds something or `f.wait` has passed.
async fn wait_for<T, Fut>(
    f: &Running,
    what: &str,
    mut probe: impl FnMut() -> Fut,
) -> Result<T, String>
where
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let by = Instant::now() + f.wait;
    let mut last = String::new();
    loop {
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() >= by {
            let also = if last.is_empty() {
                String::new()
            } else {
                format!(" (last: {last})")
            };
            return Err(format!(
                "{what}: not seen within {} s{also}",
                f.wait.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `login` signs in to `zone`'s gateway at its IdP's pages (password, then the one-time code),
/// starting at `landing`; the browser and what the gateway says of the session.
async fn sign_in(
    f: &Running,
    zone: &str,
    login: &str,
    landing: &str,
) -> Result<(Browser, String), String> {
    let p = f.person(login)?;
    let mut b = f.browser(zone, None)?;
    let gw = f.gateway(zone)?;
    let code = || f.code(p);
    b.sign_in(
        &format!("{gw}{landing}"),
        &Credentials {
            login,
            password: &p.password,
            code: &code,
        },
    )
    .await?;
    let me = whoami(&mut b, &gw).await?;
    Ok((b, me))
}

/// What the gateway says of the browser's session (`/.tianping/me`).
async fn whoami(b: &mut Browser, gw: &str) -> Result<String, String> {
    let me = b
        .get(
            &format!("{gw}/.tianping/me"),
            &[("accept", "application/json")],
        )
        .await?;
    if me.status != StatusCode::OK {
        return Err(format!(
            "not signed in: /.tianping/me answers {}",
            me.status
        ));
    }
    let v = me.json();
    Ok(format!(
        "signed in as {} ({}), acr {}",
        at(&v, "sub").as_str().unwrap_or("?"),
        roles(&v),
        at(&v, "acr").as_str().unwrap_or("?")
    ))
}

fn roles(v: &Value) -> String {
    at(v, "roles")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `POST gw path` with `body` of `content_type`; the status and JSON answer.
async fn post(
    b: &mut Browser,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Value), String> {
    let p = b
        .send(
            Method::POST,
            url,
            &[
                ("content-type", content_type),
                ("accept", "application/json"),
            ],
            Bytes::from(body),
        )
        .await?;
    let v = p.json();
    let v = if v.is_null() {
        json!({ "text": p.text().trim() })
    } else {
        v
    };
    Ok((p.status, v))
}

/// The member `k` of `v` (`Null` if none).
fn at<'a>(v: &'a Value, k: &str) -> &'a Value {
    v.get(k).unwrap_or(&Value::Null)
}

/// The transfer id of a sender's answer.
fn transfer_of(v: &Value) -> Result<String, String> {
    at(v, "transfer")
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no transfer id in {v}"))
}

/// Approves the held `transfer` from the approvals page of `b`'s gateway, as a browser does
/// (the page's form, with its CSRF token).
async fn approve(b: &mut Browser, gw: &str, transfer: &str) -> Result<String, String> {
    let page = b
        .get(
            &format!("{gw}/.tianping/approvals"),
            &[("accept", "text/html")],
        )
        .await?;
    if page.status != StatusCode::OK {
        return Err(format!("the approvals page answers {}", page.status));
    }
    let want = format!(
        "/.tianping/transfers/{}/approve",
        super::browser::encode(transfer)
    );
    let form = forms(&page.text())
        .into_iter()
        .find(|fm| fm.action == want || fm.action.replace("%3A", ":").ends_with(&want))
        .ok_or_else(|| format!("`{transfer}` is not on the approvals page"))?;
    let body: Vec<String> = form
        .fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                super::browser::encode(k),
                super::browser::encode(v)
            )
        })
        .collect();
    let (status, v) = post(
        b,
        &format!("{gw}{}", form.action),
        "application/x-www-form-urlencoded",
        body.join("&").into_bytes(),
    )
    .await?;
    if !status.is_success() {
        return Err(format!("the approval answers {status}: {v}"));
    }
    Ok(v.to_string())
}

/// Whether `b`'s `GET url` page mentions `needle` (what a person sees on it).
async fn shows(b: &mut Browser, url: &str, needle: &str) -> Result<Option<String>, String> {
    let p = b.get(url, &[("accept", "text/html")]).await?;
    if p.status == StatusCode::OK && p.text().contains(needle) {
        return Ok(Some(format!("`{url}` lists {needle}")));
    }
    if p.status.is_client_error() && p.status != StatusCode::NOT_FOUND {
        return Err(format!("`{url}` answers {}: {}", p.status, p.text().trim()));
    }
    Ok(None)
}

/// Looks at `b`'s `GET url` until it mentions `needle`, or `f.wait` has passed.
async fn wait_shows(
    f: &Running,
    b: &mut Browser,
    url: &str,
    needle: &str,
    what: &str,
) -> Result<String, String> {
    let by = Instant::now() + f.wait;
    loop {
        let last = match shows(b, url, needle).await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => String::new(),
            Err(e) => format!(" (last: {e})"),
        };
        if Instant::now() >= by {
            return Err(format!(
                "{what}: not seen within {} s{last}",
                f.wait.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the time `now` is inside the enforcement route's window, 08:00–20:00 at +08:00.
fn in_enforcement_hours(now_ms: u64) -> bool {
    let local = (now_ms / 1000 + 8 * 3600) % 86_400;
    (8 * 3600..20 * 3600).contains(&local)
}

/// The scenario; the number of steps that failed.
pub(crate) async fn scenario(f: &Running, json: bool) -> usize {
    let mut r = Report {
        json,
        n: 0,
        failed: 0,
    };
    let skipped = |n: &str| Err::<String, String>(format!("not run: it needs {n}"));

    // ------------------------------------------------------------------ 网上立案, online filing
    let replicated = wait_for(f, "litigant.ma in the internet IdP's directory", || async {
        let (ok, out, _) =
            f.tianping(&["idp", "user", "show", "--zone", "internet", "litigant.ma"])?;
        Ok(ok.then(|| out.lines().next().unwrap_or_default().to_owned()))
    })
    .await;
    let litigant = match replicated {
        Ok(_) => sign_in(f, "internet", "litigant.ma", "/receipts/").await,
        Err(e) => Err(e),
    };
    r.step(
        "litigant.ma signs in on internet (password, then one-time code)",
        &litigant
            .as_ref()
            .map(|(_, me)| me.clone())
            .map_err(Clone::clone),
    );
    let mut litigant = litigant.ok().map(|(b, _)| b);

    let filing = match litigant.as_mut() {
        Some(b) => {
            let pdf = sample::pdf(&[
                "Civil complaint",
                "Plaintiff: Ma (litigant.ma)",
                "Defendant: Beijing Example Trading Co.",
                "Claim: repayment of 120,000 yuan",
            ]);
            let url = format!(
                "{}/filings?kind=pdf",
                f.gateway("internet").unwrap_or_default()
            );
            match post(b, &url, "application/pdf", pdf).await {
                Ok((StatusCode::ACCEPTED, v)) => transfer_of(&v),
                Ok((s, v)) => Err(format!("the filing answers {s}: {v}")),
                Err(e) => Err(e),
            }
        }
        None => skipped("step 1"),
    };
    r.step(
        "litigant.ma files a complaint with a PDF through the internet gateway",
        &filing
            .as_ref()
            .map(|t| format!("202: transfer {t} of flow online-filing"))
            .map_err(Clone::clone),
    );

    let judge = sign_in(f, "private", "judge.li", "/filings/").await;
    r.step(
        "judge.li signs in on private (password, then one-time code)",
        &judge
            .as_ref()
            .map(|(_, me)| me.clone())
            .map_err(Clone::clone),
    );
    let mut judge = judge.ok().map(|(b, _)| b);

    let gw_private = f.gateway("private").unwrap_or_default();
    let arrived = match (&filing, judge.as_mut()) {
        (Ok(t), Some(b)) => {
            let url = format!("{gw_private}/filings/");
            wait_shows(f, b, &url, t, "the filing at filing-intake").await
        }
        _ => skipped("steps 2 and 3"),
    };
    r.step(
        "the filing crosses to private; judge.li sees it at filing intake",
        &arrived,
    );

    let receipt = match (&filing, litigant.as_mut(), &arrived) {
        (Ok(t), Some(b), Ok(_)) => {
            let url = format!("{}/receipts/{t}", f.gateway("internet").unwrap_or_default());
            wait_shows(f, b, &url, t, "the filing's receipt in internet").await
        }
        _ => skipped("step 4"),
    };
    r.step(
        "the filing's receipt comes back to internet; litigant.ma reads it",
        &receipt,
    );

    // ------------------------------------------------------------------ separation of duties
    let clerk = sign_in(f, "private", "clerk.liu", "/filings/").await;
    let (mut clerk_b, refused_audit) = match clerk {
        Ok((mut b, me)) => {
            let p = b
                .get(
                    &format!("{gw_private}/audit/"),
                    &[("accept", "application/json")],
                )
                .await;
            let outcome = match p {
                Ok(p) if p.status == StatusCode::FORBIDDEN => Ok(format!(
                    "{me}; GET /audit/ refused 403 by route audit-read (auditor, acr cert): {}",
                    p.text().trim()
                )),
                Ok(p) => Err(format!("GET /audit/ answers {} to a clerk", p.status)),
                Err(e) => Err(e),
            };
            (Some(b), outcome)
        }
        Err(e) => (None, Err(e)),
    };
    r.step(
        "clerk.liu signs in on private and is refused the audit records",
        &refused_audit,
    );

    // ------------------------------------------------------------------ 裁判文书公开, judgments
    let judgment = match clerk_b.as_mut() {
        Some(b) => {
            let text = "(2026) Jing 0105 Min Chu 1234: judgment, redacted for publication.\n\
                        The defendant shall repay the plaintiff 120,000 yuan.\n";
            let url = format!("{gw_private}/judgments?kind=text&redacted=1");
            match post(
                b,
                &url,
                "text/plain; charset=utf-8",
                text.as_bytes().to_vec(),
            )
            .await
            {
                Ok((StatusCode::ACCEPTED, v)) if at(&v, "held") == &Value::Bool(true) => {
                    transfer_of(&v)
                }
                Ok((s, v)) => Err(format!("the judgment answers {s} (want 202, held): {v}")),
                Err(e) => Err(e),
            }
        }
        None => skipped("clerk.liu's sign-in"),
    };
    r.step(
        "clerk.liu submits a redacted judgment for publication; it is held for two judges",
        &judgment
            .as_ref()
            .map(|t| format!("202: transfer {t} held for approval"))
            .map_err(Clone::clone),
    );
    let approved = match (&judgment, judge.as_mut()) {
        (Ok(t), Some(b)) => match approve(b, &gw_private, t).await {
            Ok(a1) => match sign_in(f, "private", "judge.wang", "/filings/").await {
                Ok((mut b2, _)) => approve(&mut b2, &gw_private, t)
                    .await
                    .map(|a2| format!("judge.li: {a1}; judge.wang: {a2}")),
                Err(e) => Err(format!("judge.wang: {e}")),
            },
            Err(e) => Err(e),
        },
        _ => skipped("the held judgment and judge.li"),
    };
    r.step("judge.li and judge.wang approve the release", &approved);
    let published = match (&judgment, &approved) {
        (Ok(t), Ok(_)) => match sign_in(f, "internet", "public.lin", "/judgments/").await {
            Ok((mut b, _)) => {
                let url = format!("{}/judgments/", f.gateway("internet").unwrap_or_default());
                wait_shows(f, &mut b, &url, t, "the judgment at the judgment portal").await
            }
            Err(e) => Err(format!("public.lin: {e}")),
        },
        _ => skipped("the approvals"),
    };
    r.step(
        "the judgment reaches internet; public.lin reads it at the judgment portal",
        &published,
    );
    let marked = match clerk_b.as_mut() {
        Some(b) => {
            let text = "(2026) Jing 0105 Min Chu 1235: 秘密 annex of the judgment.\n";
            let url = format!("{gw_private}/judgments?kind=text&redacted=1");
            match post(
                b,
                &url,
                "text/plain; charset=utf-8",
                text.as_bytes().to_vec(),
            )
            .await
            {
                Ok((s, v))
                    if s.is_client_error()
                        && at(&v, "error")
                            .as_str()
                            .is_some_and(|e| e.contains("秘密") || e.contains("secret")) =>
                {
                    Ok(format!(
                        "refused {s}: {}",
                        at(&v, "error").as_str().unwrap_or(&v.to_string())
                    ))
                }
                Ok((s, v)) => Err(format!("a marked document answers {s}: {v}")),
                Err(e) => Err(e),
            }
        }
        None => skipped("clerk.liu's sign-in"),
    };
    r.step(
        "a document marked 秘密 is refused on the same flow",
        &marked,
    );

    // ------------------------------------------------------------------ 网络查控, enforcement
    let inside = in_enforcement_hours(f.now().as_millis());
    let mut officer = f.browser("private", Some(&f.cert_of("officer.zhao"))).ok();
    let inquiry = match officer.as_mut() {
        Some(b) => {
            let notice = json!({
                "notice_no": "(2026)京0105执1234-1",
                "court": "bj.01.03",
                "case_number": "(2026)京0105执1234号",
                "officer": { "name": "赵强", "badge": "110105-0042" },
                "subject": {
                    "kind": "organisation",
                    "name": "北京示例贸易有限公司",
                    "id_type": "unified-social-credit-code",
                    "id_number": "91110105MA01ABCD2X"
                },
                "bank": "示例银行",
                "actions": ["inquire"],
                "issued_at": "2026-12-03T10:00:00+08:00"
            });
            let url =
                format!("{gw_private}/enforcement/inquiries?kind=json&schema=assistance-notice");
            match post(b, &url, "application/json", notice.to_string().into_bytes()).await {
                Ok((StatusCode::ACCEPTED, v)) if inside => transfer_of(&v),
                Ok((StatusCode::FORBIDDEN, v)) if !inside => Err(format!(
                    "outside 08:00–20:00 +08:00: refused 403, as the route's time window says ({})",
                    at(&v, "text").as_str().unwrap_or(&v.to_string())
                )),
                Ok((s, v)) => Err(format!(
                    "the inquiry answers {s} {} the window: {v}",
                    if inside { "inside" } else { "outside" }
                )),
                Err(e) => Err(e),
            }
        }
        None => Err("officer.zhao's certificate is not in `demo-certs/`".to_owned()),
    };
    let (inquiry, outside_note) = match inquiry {
        Err(e) if !inside && e.starts_with("outside") => (Err(e.clone()), Some(e)),
        other => (other, None),
    };
    r.step(
        "officer.zhao (certificate) sends an enforcement inquiry to the bank in external",
        &match (&inquiry, &outside_note) {
            (_, Some(note)) => Ok(note.clone()),
            (Ok(t), None) => Ok(format!("202: transfer {t} held for a division chief")),
            (Err(e), None) => Err(e.clone()),
        },
    );
    if inside {
        let released = match &inquiry {
            Ok(t) => match sign_in(f, "private", "chief.zheng", "/enforcement/").await {
                Ok((mut b, _)) => approve(&mut b, &gw_private, t).await,
                Err(e) => Err(format!("chief.zheng: {e}")),
            },
            Err(_) => skipped("the inquiry"),
        };
        r.step(
            "chief.zheng (division chief) approves the inquiry",
            &released,
        );
        let answered = match (&inquiry, &released, officer.as_mut()) {
            (Ok(t), Ok(_), Some(b)) => {
                let url = format!("{gw_private}/enforcement/");
                wait_shows(f, b, &url, t, "the bank's answer at the enforcement desk").await
            }
            _ => skipped("the approval"),
        };
        r.step(
            "the bank answers; the answer comes back to private's enforcement desk",
            &answered,
        );
    }

    // ------------------------------------------------------------------ 涉密内网, classified
    let mut importer = f.browser("private", Some(&f.cert_of("clerk.liu"))).ok();
    let import = match importer.as_mut() {
        Some(b) => {
            let pdf = sample::pdf(&["Case file extract for the classified network", "bj.01.03"]);
            let url = format!("{gw_private}/classified/imports?kind=pdf");
            match post(b, &url, "application/pdf", pdf).await {
                Ok((StatusCode::ACCEPTED, v)) => transfer_of(&v),
                Ok((s, v)) => Err(format!("the import answers {s}: {v}")),
                Err(e) => Err(e),
            }
        }
        None => Err("clerk.liu's certificate is not in `demo-certs/`".to_owned()),
    };
    r.step(
        "clerk.liu (certificate) submits a file for import into classified",
        &import
            .as_ref()
            .map(|t| format!("202: transfer {t} held for a security administrator"))
            .map_err(Clone::clone),
    );
    let imported = match &import {
        Ok(t) => {
            let secadmin = f
                .dir
                .root()
                .join("zones/private/idp/administrators/secadmin");
            match f.browser("private", Some(&secadmin)) {
                Ok(mut b) => match approve(&mut b, &gw_private, t).await {
                    Ok(a) => {
                        wait_for(f, "the import at classified-import-desk", || async {
                            Ok(received(f, "classified", "classified-import-desk", t)
                                .map(|p| format!("approved ({a}); delivered: {}", p.display())))
                        })
                        .await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(format!("secadmin-0001: {e}")),
            }
        }
        Err(_) => skipped("the import"),
    };
    r.step(
        "secadmin-0001 approves; the file is scanned, rebuilt and delivered in classified",
        &imported,
    );
    r.step(
        "nothing can be sent out of classified",
        &nothing_leaves_classified(f),
    );

    // ------------------------------------------------------------------ the directory
    r.step(
        "an administrator (sysadmin.qian, `tianping login --cert`) disables lawyer.he in private; every zone the update reaches refuses them",
        &disabled_everywhere(f).await,
    );

    // ------------------------------------------------------------------ the audit logs
    r.step(
        "every zone's logs are shipped to the security team's audit store in private",
        &audit_holds(f).await,
    );
    let signed_in = auditor_login(f);
    let ok = signed_in.is_ok();
    r.step(
        "auditor.lin (security team) signs in with `tianping login --cert` on private",
        &signed_in,
    );
    if ok {
        r.step(
            "the security team's logs verify, read live: private's components' and every mirror",
            &logs_verify(f),
        );
        r.step(
            "every sender's log reconciles with its receivers' logs: nothing missing, nothing unexpected",
            &links_reconcile(f),
        );
        cli_logout(f);
    }

    if !json {
        println!(
            "\n{} steps, {} as the policy says{}",
            r.n,
            if r.failed == 0 { "all" } else { "not all" },
            if r.failed == 0 {
                String::new()
            } else {
                format!(": {} differ", r.failed)
            }
        );
    }
    r.failed
}

/// The file a service of `zone` holds for `transfer`, if it has one (its received folder).
fn received(f: &Running, zone: &str, service: &str, transfer: &str) -> Option<PathBuf> {
    let z = f.zone(zone).ok()?;
    let dirs = [
        f.dir
            .zone(&z)
            .join("services")
            .join(service)
            .join("received"),
        f.dir.delivery(&z, service),
    ];
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            // each delivery's folder holds its manifest, which names the transfer
            let manifest: Value = std::fs::read(e.path().join("manifest.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            if at(&manifest, "transfer").as_str() == Some(transfer) {
                return Some(e.path());
            }
        }
    }
    None
}

/// The policy in force has no flow out of the sealed zone, its `expect`s hold, and no exchange
/// sender runs there.
fn nothing_leaves_classified(f: &Running) -> Result<String, String> {
    let path = f.dir.policy();
    let source = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let checked = tianping_policies::check(&path.display().to_string(), &source);
    let policy = checked
        .policy()
        .filter(|_| checked.is_ok())
        .ok_or_else(|| "the policy in force does not check".to_owned())?;
    if !policy.is_sealed("classified") {
        return Err("the policy does not seal classified".into());
    }
    let out: Vec<&str> = policy
        .flows()
        .filter(|fl| fl.from().as_str() == "classified")
        .map(|fl| fl.name())
        .collect();
    if !out.is_empty() {
        return Err(format!("flows out of classified: {}", out.join(", ")));
    }
    let board = std::fs::read_to_string(f.dir.run().join("up.json")).unwrap_or_default();
    let v: Value = serde_json::from_str(&board).unwrap_or(Value::Null);
    let sender = v
        .as_array()
        .or_else(|| at(&v, "children").as_array())
        .is_some_and(|a| {
            a.iter()
                .any(|c| at(c, "zone") == "classified" && at(c, "component") == "exchange-sender")
        });
    if sender {
        return Err("an exchange sender runs in classified".into());
    }
    let flows_in = policy
        .flows()
        .filter(|fl| fl.to().as_str() == "classified")
        .count();
    Ok(format!(
        "classified is sealed: {flows_in} flows in, none out, no exchange sender runs there, and \
         the policy's `expect no path from classified to …` hold"
    ))
}

/// Disables `lawyer.he` in the directory authority, waits until the update reached each zone
/// whose directory flow carries lawyers, and signs in there as them: refused everywhere.
async fn disabled_everywhere(f: &Running) -> Result<String, String> {
    // the administrator acts under their own identity (`tianping login`), audited as them
    // (and reads the directory of private, where administrators are then in charge)
    let who = cli_login(f, "sysadmin.qian")?;
    let done = disable_lawyer(f).await;
    cli_logout(f);
    done.map(|d| format!("{who}; {d}"))
}

async fn disable_lawyer(f: &Running) -> Result<String, String> {
    let (ok, _, err) = f.tianping(&["idp", "user", "disable", "--zone", "private", "lawyer.he"])?;
    if !ok {
        return Err(format!("`idp user disable`: {}", err.trim()));
    }
    let mut seen = Vec::new();
    for zone in ["private", "internet"] {
        wait_for(f, &format!("lawyer.he disabled in {zone}"), || async {
            let (ok, out, _) = f.tianping(&["idp", "user", "show", "--zone", zone, "lawyer.he"])?;
            Ok((ok && out.contains("disabled")).then_some(()))
        })
        .await?;
        match sign_in(f, zone, "lawyer.he", "/").await {
            Ok((_, me)) => return Err(format!("{zone}: a disabled account signed in: {me}")),
            Err(e) => seen.push(format!("{zone}: {e}")),
        }
    }
    Ok(format!("refused — {}", seen.join("; ")))
}

/// Asks every shipping component for a batch now (`SIGUSR1`) and waits until the audit store
/// mirrors every one of them up to the entries it had made durable when asked (the store takes
/// a batch only when it extends the mirror and its checkpoint's signature holds).
async fn audit_holds(f: &Running) -> Result<String, String> {
    let board = std::fs::read_to_string(f.dir.run().join("up.json")).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&board).map_err(|e| e.to_string())?;
    let children = v
        .as_array()
        .or_else(|| at(&v, "children").as_array())
        .cloned()
        .unwrap_or_default();
    let status_of = |socket: PathBuf, path: &'static str| async move {
        match tianping_net::control_request(&socket, "GET", path, Vec::<u8>::new()).await {
            Ok((200, body)) => serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string()),
            Ok((status, _)) => Err(format!("`{}` answered {status}", socket.display())),
            Err(e) => Err(e.to_string()),
        }
    };
    // (zone, component, entries durable when asked, pid)
    let mut asked: Vec<(String, String, u64, rustix::process::Pid)> = Vec::new();
    for c in &children {
        let zone = at(c, "zone").as_str().unwrap_or_default();
        // the components that ship their own log (a sample service has none, and dies of it)
        let Some(component) = at(c, "component")
            .as_str()
            .and_then(|c| c.parse::<tianping_core::Component>().ok())
            .filter(|c| c.as_str() != "audit-store")
        else {
            continue;
        };
        if matches!(zone, "private" | "classified") {
            continue;
        }
        let z = f.zone(zone)?;
        let socket = f.dir.socket(&z, component);
        let size = status_of(socket, crate::cmd::status::status_path(component))
            .await
            .map(|s| at(at(&s, "audit"), "size").as_u64().unwrap_or_default())?;
        if let Some(pid) = at(c, "pid")
            .as_u64()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
            && rustix::process::kill_process(pid, rustix::process::Signal::USR1).is_ok()
        {
            asked.push((zone.to_owned(), component.as_str().to_owned(), size, pid));
        }
    }
    if asked.is_empty() {
        return Err("no shipping component was found running".into());
    }
    let private = f.zone("private")?;
    let store = f.dir.socket(&private, tianping_core::Component::AuditStore);
    // A batch can be lost on the link (the receiver reports it lost): the shipper's next batch
    // overlaps it, so a log still behind after a while is asked again, from its first entry
    // (`SIGUSR2`), which the store then applies in full.
    let asked_again = std::cell::RefCell::new(Instant::now());
    let again = std::cell::Cell::new(0u32);
    let mirrored = wait_for(f, "every asked log mirrored in the audit store", || async {
        let s = status_of(store.clone(), "/status").await?;
        let mirrors = at(&s, "mirrors").as_array().cloned().unwrap_or_default();
        let size_of = |z: &str, c: &str| {
            mirrors
                .iter()
                .find(|m| at(m, "zone") == z && at(m, "component") == c)
                .and_then(|m| at(m, "size").as_u64())
        };
        let mut entries = 0;
        let ask_again = asked_again.borrow().elapsed() >= Duration::from_secs(5);
        for (z, c, want, pid) in &asked {
            match size_of(z, c) {
                Some(n) if n >= *want => entries += n,
                // an empty log has nothing to ship
                None if *want == 0 => {}
                n => {
                    if ask_again {
                        *asked_again.borrow_mut() = Instant::now();
                        again.set(again.get() + 1);
                        let _ = rustix::process::kill_process(*pid, rustix::process::Signal::USR2);
                    }
                    return Err(format!(
                        "the mirror of {z}/{c} holds {} of the {want} entries asked",
                        n.unwrap_or_default()
                    ));
                }
            }
        }
        Ok(Some(entries))
    })
    .await?;
    let again = if again.get() == 0 {
        String::new()
    } else {
        format!(
            "; a log behind was asked again from its start {} times (a batch lost on the link)",
            again.get()
        )
    };
    Ok(format!(
        "{} components of internet, external and mobile shipped on request; the audit store \
         checked each batch against its signed checkpoint and mirrors each log up to what it had \
         made durable when asked ({mirrored} entries){again}",
        asked.len()
    ))
}

/// The security team's auditor signs in to private's IdP with their certificate and one-time
/// code (`tianping login --cert --key --totp`): the token `run/admin-private.token` that
/// `tianping audit` presents on private's control sockets, which serve audit data to auditors
/// only.
fn auditor_login(f: &Running) -> Result<String, String> {
    cli_login(f, "auditor.lin")
}

/// `login` signs in to private's IdP with the CLI, their certificate and one-time code
/// (`tianping login --zone private --cert --key --totp`); the token is kept in
/// `run/admin-private.token` for the commands that follow.
fn cli_login(f: &Running, login: &str) -> Result<String, String> {
    let p = f.person(login)?;
    let cert = f.cert_of(login);
    let with = |ext: &str| {
        let mut p = cert.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    let (pem, key) = (with(".pem"), with(".key"));
    if !pem.is_file() {
        return Err(format!("{login}'s certificate is not in `demo-certs/`"));
    }
    let code = f.code(p);
    let (pem, key) = (pem.display().to_string(), key.display().to_string());
    let (ok, out, err) = f.tianping(&[
        "login", "--zone", "private", "--cert", &pem, "--key", &key, "--totp", &code,
    ])?;
    if !ok {
        return Err(format!("`tianping login`: {}{}", out.trim(), err.trim()));
    }
    Ok(out.lines().last().unwrap_or("signed in").trim().to_owned())
}

/// `tianping logout --zone private`: the token is revoked at the IdP and its file deleted.
fn cli_logout(f: &Running) {
    if let Err(e) = f
        .tianping(&["logout", "--zone", "private"])
        .and_then(|(ok, _, err)| ok.then_some(()).ok_or(err))
    {
        eprintln!("`tianping logout --zone private`: {}", e.trim());
    }
}

/// The logs the security team in private reads: its zone's components' own logs
/// (`zones/private/<component>/audit`) and the audit store's mirror of every shipping zone's
/// (`zones/private/audit-store/mirrors/<zone>/<component>`). The other zones' own logs are
/// read by those zones' auditors; `classified`'s never leave it.
fn team_logs(f: &Running) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    let private = f.zone("private")?;
    let has_db = |p: &std::path::Path| p.join("db").is_file();
    let own: Vec<PathBuf> = f
        .fabric
        .zone(&private)
        .into_iter()
        .flat_map(|z| z.components())
        .map(|c| f.dir.audit_log(&private, c))
        .filter(|p| has_db(p))
        .collect();
    let root = f
        .dir
        .component(&private, tianping_core::Component::AuditStore)
        .join("mirrors");
    let mut mirrors: Vec<PathBuf> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|zone| std::fs::read_dir(zone.path()).into_iter().flatten())
        .flatten()
        .map(|e| e.path())
        .filter(|p| has_db(p))
        .collect();
    mirrors.sort();
    Ok((own, mirrors))
}

/// The path of a log below the data folder, as the step's detail names it.
fn short(f: &Running, p: &std::path::Path) -> String {
    p.strip_prefix(f.dir.root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// `tianping audit verify --log L` on every log the security team holds, while the fabric
/// runs: each is read through its owner's control socket (the component, or the audit store
/// for its mirrors) as the signed-in auditor, and its whole tree is recomputed and every
/// checkpoint checked with the key it pinned.
fn logs_verify(f: &Running) -> Result<String, String> {
    let (own, mirrors) = team_logs(f)?;
    if own.is_empty() || mirrors.is_empty() {
        return Err(format!(
            "{} logs of private and {} mirrors found: nothing to verify",
            own.len(),
            mirrors.len()
        ));
    }
    let mut entries = 0u64;
    for log in own.iter().chain(&mirrors) {
        let path = log.display().to_string();
        let (ok, out, err) = f.tianping(&["audit", "verify", "--log", &path])?;
        if !ok {
            return Err(format!(
                "`tianping audit verify --log {}`: {}{}",
                short(f, log),
                out.trim(),
                err.trim()
            ));
        }
        // "verified N entries, …"
        entries += out
            .split_whitespace()
            .find_map(|w| w.parse::<u64>().ok())
            .unwrap_or_default();
    }
    Ok(format!(
        "`tianping audit verify --log …` passed on private's {} component logs and {} mirrors \
         ({entries} entries), each read through its running owner",
        own.len(),
        mirrors.len()
    ))
}

/// The time of the last entry of the log at `dir` (read through its owner): every transfer the
/// log's sender decided up to then is in it (a decision is durable before its transfer is sent,
/// so a receiver's record of one decided later is later still).
fn covered_until(f: &Running, dir: &std::path::Path) -> Result<u64, String> {
    let (ok, out, err) = f.tianping(&["audit", "search", "--log", &dir.display().to_string()])?;
    if !ok {
        return Err(format!("`tianping audit search`: {}", err.trim()));
    }
    let last = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| at(&r, "event").get("time").and_then(Value::as_u64))
        .max()
        .ok_or_else(|| format!("`{}` holds no entry", short(f, dir)))?;
    Ok(last)
}

/// `tianping audit reconcile` for each zone's exchange sender with the receivers of its links,
/// as the security team in private holds them: private's own logs live, the other zones' as
/// the audit store mirrors them. Every transfer a sender spooled was received, refused,
/// reported lost or is still in flight, and no receiver holds one the sender never spooled.
/// A sender read from its mirror is judged up to its mirror's last entry (`--until`): a
/// receiver's records after that may be of transfers shipped in the sender's next batch. The
/// receivers are read before the sender (the command's order), and a receiver's mirror is older
/// than the sender's live log, never newer.
fn links_reconcile(f: &Running) -> Result<String, String> {
    let private = f.zone("private")?;
    let mirror = |zone: &tianping_core::ZoneName, c: tianping_core::Component| {
        f.dir
            .component(&private, tianping_core::Component::AuditStore)
            .join("mirrors")
            .join(zone.as_str())
            .join(c.as_str())
    };
    let log_of = |zone: &tianping_core::ZoneName, c| {
        if *zone == private {
            f.dir.audit_log(zone, c)
        } else {
            mirror(zone, c)
        }
    };
    let mut said = Vec::new();
    for z in f.fabric.zones() {
        let sender = log_of(&z.zone, tianping_core::Component::ExchangeSender);
        if !sender.join("db").is_file() {
            continue;
        }
        let mut args = vec![
            "audit".to_owned(),
            "reconcile".into(),
            "--zone".into(),
            z.zone.to_string(),
            "--sender".into(),
            sender.display().to_string(),
        ];
        if z.zone != private {
            args.push("--until".into());
            args.push(covered_until(f, &sender)?.to_string());
        }
        let mut unread = Vec::new();
        for l in f.fabric.links_from(&z.zone) {
            let r = log_of(&l.to, tianping_core::Component::ExchangeReceiver);
            if r.join("db").is_file() {
                args.push("--receiver".into());
                args.push(r.display().to_string());
            } else {
                unread.push(l.to.to_string());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = f.tianping(&args)?;
        let summary = out
            .lines()
            .rev()
            .find(|l| l.contains(" transfers: "))
            .unwrap_or_default()
            .to_owned();
        if !ok {
            let bad: Vec<&str> = out
                .lines()
                .filter(|l| l.contains("missing") || l.contains("unexpected"))
                .take(5)
                .collect();
            return Err(format!(
                "{}: `tianping audit reconcile` does not reconcile: {summary} {} {}",
                z.zone,
                bad.join("; "),
                err.trim()
            ));
        }
        let beyond = if unread.is_empty() {
            String::new()
        } else {
            format!(
                " (the receivers of {} keep their logs in their zone)",
                unread.join(", ")
            )
        };
        let read = if z.zone == private {
            "its log"
        } else {
            "its mirror, to its last entry"
        };
        said.push(format!("{} ({read}): {summary}{beyond}", z.zone));
    }
    if said.is_empty() {
        return Err("no exchange sender's log found".into());
    }
    Ok(said.join("; "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_enforcement_window_is_read_at_plus_eight() {
        // 2026-12-03 01:59:59 UTC = 09:59:59 +08:00: inside
        assert!(super::in_enforcement_hours(1_796_263_199_000));
        // 12:00 UTC = 20:00 +08:00: outside (the window ends before 20:00)
        assert!(!super::in_enforcement_hours(1_796_299_200_000));
        // 23:59 UTC = 07:59 +08:00: outside
        assert!(!super::in_enforcement_hours(1_796_342_340_000));
        // 00:00 UTC = 08:00 +08:00: inside
        assert!(super::in_enforcement_hours(1_796_256_000_000));
    }
}
