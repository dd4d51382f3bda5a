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
        "an administrator disables lawyer.he in private; every zone the update reaches refuses them",
        &disabled_everywhere(f).await,
    );

    // ------------------------------------------------------------------ the audit logs
    r.step(
        "every zone's logs are shipped to the security team's audit store in private",
        &audit_holds(f).await,
    );

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
/// mirrors every shipping zone's logs (the store takes a batch only when it extends the mirror
/// and its checkpoint's signature holds).
async fn audit_holds(f: &Running) -> Result<String, String> {
    let board = std::fs::read_to_string(f.dir.run().join("up.json")).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&board).map_err(|e| e.to_string())?;
    let children = v
        .as_array()
        .or_else(|| at(&v, "children").as_array())
        .cloned()
        .unwrap_or_default();
    let mut asked = Vec::new();
    for c in &children {
        let zone = at(c, "zone").as_str().unwrap_or_default();
        // the components that ship their own log (a sample service has none, and dies of it)
        let ships = matches!(
            at(c, "component").as_str(),
            Some("idp" | "gateway" | "exchange-sender" | "exchange-receiver")
        );
        if matches!(zone, "private" | "classified") || !ships {
            continue;
        }
        if let Some(pid) = at(c, "pid")
            .as_u64()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
            && rustix::process::kill_process(pid, rustix::process::Signal::USR1).is_ok()
        {
            asked.push((
                zone.to_owned(),
                at(c, "component").as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    let mirrors = f.dir.root().join("zones/private/audit-store/mirrors");
    // a component ships up to its log's latest checkpoint, so one whose log has none yet (a
    // gateway nobody asked, an IdP with few events) has nothing to ship: each shipping zone's
    // logs are waited for, not each component's
    let listed = wait_for(
        f,
        "every shipping zone's logs in the audit store",
        || async {
            let mut all = Vec::new();
            for zone in ["internet", "external", "mobile"] {
                let n = std::fs::read_dir(mirrors.join(zone)).map_or(0, |rd| {
                    rd.flatten()
                        .filter(|e| e.path().join("db").is_file())
                        .count()
                });
                if n == 0 {
                    return Err(format!("nothing of {zone} mirrored yet"));
                }
                all.push(format!("{zone}: {n}"));
            }
            Ok(Some(all))
        },
    )
    .await?;
    let asked = asked.len();
    Ok(format!(
        "{asked} components shipped on request; the audit store checked each batch against its \
         signed checkpoint and mirrors them ({}); verify and reconcile them on the folder once \
         `up` stops (`tianping audit verify`, `tianping audit reconcile`)",
        listed.join(", ")
    ))
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
