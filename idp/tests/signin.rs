//! The interactive sign-in over real TLS on loopback port 0, driven by a plain HTML-form client
//! (`reqwest`, a one-cookie jar, no script, redirects not followed) on a manual clock: password,
//! TOTP and its enrolment, required actions, lockout, CSRF, replayed codes, the dummy hash, the
//! least `acr` per role, `prompt=none`, `max_age`, both languages, registration in `internet`.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod zone_tls;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tianping_audit::AuditLog;
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, Clock as _, ManualClock, RingSigner, Role, SubjectId, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    Client, ClientAuthMethod, Court, Directory, GrantPolicy, GrantType, Grants, Idp, IdpParts,
    KeySet, LockoutPolicy, PasswordParams, PasswordPolicy, Passwords, RequiredAction,
    SessionPolicy, SignInParts, SledStore, Store, TokenIssuer, TotpConfig, TotpCredential,
    TotpSecret, User, UserStatus,
};
use tianping_net::{HostSet, ServerHandle, ServerOptions, serve_tls};

const HOST: &str = "idp.private.tianping.localhost";
const ISS: &str = "https://idp.private.tianping.localhost";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const PASSWORD: &str = "Court-2026a";
/// The judge's TOTP secret.
const JUDGE_TOTP: [u8; 20] = [5; 20];

struct World {
    _dir: tempfile::TempDir,
    server: ServerHandle,
    http: reqwest::Client,
    store: Arc<SledStore>,
    audit: Arc<AuditLog>,
    clock: Arc<ManualClock>,
    passwords: Arc<Passwords>,
    issuer: TokenIssuer,
    metrics: Arc<Tally>,
}

/// What the provider counted, in order.
#[derive(Default)]
struct Tally(std::sync::Mutex<Vec<String>>);

impl tianping_idp::IdpMetrics for Tally {
    fn grant(&self, kind: &str) {
        self.0.lock().unwrap().push(format!("grant {kind}"));
    }
    fn sign_in(&self, outcome: &str) {
        self.0.lock().unwrap().push(format!("sign_in {outcome}"));
    }
    fn failure(&self, reason: &str) {
        self.0.lock().unwrap().push(format!("failure {reason}"));
    }
    fn lockout(&self, reason: &str) {
        self.0.lock().unwrap().push(format!("lockout {reason}"));
    }
}

impl Tally {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// What a page or redirect answered.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    html: String,
    csp: Option<String>,
}

impl Answer {
    fn csrf(&self) -> String {
        let at = self.html.find("name=\"csrf\" value=\"").unwrap() + 19;
        let rest = &self.html[at..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// The `code` of a successful redirect, after checking `state` and `iss`.
    fn code(&self) -> String {
        assert!(self.location.is_some(), "{}", self.html);
        let loc = self.location.as_deref().unwrap();
        assert_eq!(self.status, StatusCode::SEE_OTHER);
        assert!(loc.starts_with("https://case.example/cb?code="), "{loc}");
        assert!(loc.contains("&state=s-1&"), "{loc}");
        assert!(loc.ends_with(&format!("iss={}", tianping_idp::form_encode(ISS))));
        let code = &loc["https://case.example/cb?code=".len()..];
        code[..code.find('&').unwrap()].to_owned()
    }

    fn shows(&self, text: &str) -> bool {
        self.location.is_none() && self.html.contains(text)
    }
}

/// A browser without script: one cookie, forms posted by hand.
struct Browser<'w> {
    w: &'w World,
    cookie: Option<String>,
    last: Option<Answer>,
}

impl Browser<'_> {
    async fn send(&mut self, req: reqwest::RequestBuilder) -> &Answer {
        let req = match &self.cookie {
            Some(c) => req.header("cookie", format!("__Host-tianping-session={c}")),
            None => req,
        };
        let resp = req.send().await.unwrap();
        if let Some(set) = resp.headers().get("set-cookie") {
            let set = set.to_str().unwrap();
            assert!(
                set.contains("Secure") && set.contains("HttpOnly") && set.contains("SameSite=Lax")
            );
            let value = set
                .strip_prefix("__Host-tianping-session=")
                .unwrap()
                .split(';')
                .next()
                .unwrap();
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        let csp = resp
            .headers()
            .get("content-security-policy")
            .map(|l| l.to_str().unwrap().to_owned());
        let html = resp.text().await.unwrap();
        self.last = Some(Answer {
            status,
            location,
            html,
            csp,
        });
        self.last.as_ref().unwrap()
    }

    async fn authorize(&mut self, extra: &[(&str, &str)]) -> &Answer {
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", "case-app"),
            ("redirect_uri", "https://case.example/cb"),
            ("scope", "openid profile"),
            ("state", "s-1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        pairs.extend_from_slice(extra);
        if !extra.iter().any(|(k, _)| *k == "ui_locales") {
            pairs.push(("ui_locales", "en"));
        }
        let q = tianping_idp::form_encode_pairs(pairs);
        let req = self.w.http.get(format!("{}?{q}", self.w.url("/authorize")));
        self.send(req).await
    }

    /// Posts the last page's form with its CSRF token and these fields.
    async fn submit(&mut self, fields: &[(&str, &str)]) -> &Answer {
        let csrf = self.last.as_ref().unwrap().csrf();
        let mut pairs = vec![("csrf", csrf.as_str())];
        pairs.extend_from_slice(fields);
        let body = tianping_idp::form_encode_pairs(pairs);
        self.post_login(body).await
    }

    async fn post_login(&mut self, body: String) -> &Answer {
        let req = self
            .w
            .http
            .post(self.w.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }

    async fn password(&mut self, login: &str, password: &str) -> &Answer {
        self.submit(&[("username", login), ("password", password)])
            .await
    }
}

fn sub(s: &str) -> SubjectId {
    s.parse().unwrap()
}

fn totp_now(w: &World, secret: &[u8]) -> String {
    let cfg = TotpConfig::default();
    let secret = TotpSecret::from_bytes(secret.to_vec());
    cfg.code_at(&secret, cfg.step_at(w.clock.now()))
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.server.local_addr().port())
    }

    fn browser(&self) -> Browser<'_> {
        Browser {
            w: self,
            cookie: None,
            last: None,
        }
    }

    fn dir(&self) -> Directory<'_> {
        Directory::new(&*self.store)
    }

    fn actions_since(&self, from: u64) -> Vec<String> {
        (from..self.audit.size())
            .map(|i| self.audit.get(i).unwrap().unwrap().event.action)
            .collect()
    }

    /// Adds a user with the test password in court `bj.01`.
    fn add_user(&self, id: &str, login: &str, roles: Vec<Role>) {
        let mut u = User::new(sub(id), login, format!("user {login}"), self.clock.now());
        u.court = Some("bj.01".parse().unwrap());
        u.roles = roles;
        u.clearance = Clearance::Secret;
        self.dir().add_user(u).unwrap();
        self.dir()
            .set_password(
                &sub(id),
                &self.passwords,
                PASSWORD,
                false,
                self.clock.now(),
                &SeededRandom::new(9),
            )
            .unwrap();
    }
}

/// Judges and assistants need `otp`, presidents a certificate, everyone else a password.
fn least_acr(roles: &[Role]) -> Acr {
    roles
        .iter()
        .map(|r| match r {
            Role::Judge | Role::Assistant => Acr::Otp,
            Role::President => Acr::Cert,
            _ => Acr::Pwd,
        })
        .max()
        .unwrap_or(Acr::Pwd)
}

async fn world(zone: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let (tls, root_pem) = zone_tls::zone_tls(dir.path(), HOST);
    let p = |n: &str| dir.path().join(n);

    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let store = Arc::new(SledStore::open(&p("store")).unwrap());
    let rng = SeededRandom::new(3);
    let params = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let passwords = Arc::new(Passwords::new(params, PasswordPolicy::default(), &rng).unwrap());
    let d = Directory::new(&*store);
    for code in ["bj", "bj.01"] {
        d.add_court(Court {
            code: code.parse().unwrap(),
            name: format!("court {code}"),
        })
        .unwrap();
    }
    d.add_client(Client {
        id: "case-app".into(),
        secret_sha256: Some(Client::hash_secret("s3cret")),
        auth_method: ClientAuthMethod::ClientSecretBasic,
        redirect_uris: vec!["https://case.example/cb".into()],
        post_logout_redirect_uris: vec![],
        grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        native_loopback: false,
        extra_scopes: vec![],
    })
    .unwrap();
    let audit = Arc::new(AuditLog::create(&p("audit"), "idp.private").unwrap());
    let signer = Arc::new(RingSigner::generate(Algorithm::Es256).unwrap().0);
    let issuer = TokenIssuer::new(ISS, KeySet::new(signer));
    let parts = IdpParts {
        issuer: issuer.clone(),
        audience: "tianping".into(),
        store: Arc::clone(&store) as Arc<dyn Store>,
        clients: vec![],
        audit: Arc::clone(&audit),
        zone: zone.into(),
        clock: clock.clone(),
        rng: Arc::new(SeededRandom::new(2)),
        grants: GrantPolicy::default(),
        sessions: SessionPolicy::default(),
    };
    let sign_in = SignInParts {
        passwords: Arc::clone(&passwords),
        lockout: LockoutPolicy::default(),
        totp: TotpConfig::default(),
        least_acr: Arc::new(least_acr),
        zone: zone.parse().unwrap(),
        self_registration: true,
        totp_issuer: "Tianping".into(),
    };
    let metrics = Arc::new(Tally::default());
    let idp = Idp::with_sign_in(parts, sign_in).with_metrics(metrics.clone());
    let mut options = ServerOptions::new(HostSet::new([HOST]));
    options.http3 = false;
    let server = serve_tls("127.0.0.1:0".parse().unwrap(), Arc::new(tls), options, idp)
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .resolve(HOST, server.local_addr())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let w = World {
        _dir: dir,
        server,
        http,
        store,
        audit,
        clock,
        passwords,
        issuer,
        metrics,
    };
    // The judge: password and an enrolled authenticator.
    w.add_user("judge-0001", "li.ming", vec![Role::Judge]);
    w.dir()
        .update_user(&sub("judge-0001"), &mut |u| {
            u.totp = Some(TotpCredential {
                secret: TotpSecret::from_bytes(JUDGE_TOTP.to_vec()),
                last_step: None,
            });
        })
        .unwrap();
    w
}

/// Signs the judge in with password and TOTP; returns the code.
async fn judge_signs_in(b: &mut Browser<'_>, extra: &[(&str, &str)]) -> String {
    b.authorize(extra).await;
    let a = b.password("li.ming", PASSWORD).await;
    assert!(a.shows("One-time code"), "{}", a.html);
    let code = totp_now(b.w, &JUDGE_TOTP);
    b.submit(&[("code", &code)]).await.code()
}

#[tokio::test]
async fn password_and_totp_through_the_forms_end_in_a_code_with_iss_and_the_identity() {
    let w = world("private").await;
    let mut b = w.browser();
    let a = b.authorize(&[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.html.contains("<script"));
    let first_cookie = b.cookie.clone().unwrap();
    let a = b.password("LI.MING", PASSWORD).await;
    assert!(a.shows("One-time code"), "{}", a.html);
    let before = w.audit.size();
    let code = totp_now(&w, &JUDGE_TOTP);
    let code = b.submit(&[("code", &code)]).await.code();
    // the session id rotated at sign-in
    assert_ne!(b.cookie.as_deref(), Some(first_cookie.as_str()));
    // the sign-in and the code are in the audit log before the answer
    assert_eq!(w.actions_since(before), vec!["signin.ok", "authorize.code"]);
    // the code carries the identity from the user record
    let rec = Grants::new(&*w.store, GrantPolicy::default())
        .redeem_code(
            &code,
            "case-app",
            Some("https://case.example/cb"),
            Some(VERIFIER),
            w.clock.now(),
        )
        .unwrap();
    let id = rec.identity;
    assert_eq!(id.sub.as_str(), "judge-0001");
    assert_eq!(id.court.unwrap().as_str(), "bj.01");
    assert_eq!(id.roles, vec![Role::Judge]);
    assert_eq!(id.clearance, Clearance::Secret);
    assert_eq!(id.acr, Acr::Otp);
    assert_eq!(id.amr, vec![Amr::Pwd, Amr::Otp]);
    assert_eq!(id.zone.as_str(), "private");
    assert_eq!(id.auth_time, w.clock.now());
    // the session now gives a code without a new sign-in
    assert!(!b.authorize(&[]).await.code().is_empty());
    w.server.shutdown().await;
}

#[tokio::test]
async fn first_sign_in_enrols_totp_from_an_inline_svg_qr_and_secret_text() {
    let w = world("private").await;
    w.add_user("judge-0002", "zhang.wei", vec![Role::Judge]);
    let mut b = w.browser();
    b.authorize(&[]).await;
    let a = b.password("zhang.wei", PASSWORD).await;
    assert!(a.shows("Set up one-time codes"), "{}", a.html);
    assert!(a.html.contains("<svg") && !a.html.contains("<img"));
    let at = a.html.find("<code id=\"totp-secret\">").unwrap() + 23;
    let secret_text = a.html[at..a.html[at..].find('<').unwrap() + at].to_owned();
    let secret = TotpSecret::from_base32(&secret_text).unwrap();
    let a = b.submit(&[("code", "000000")]).await;
    assert!(a.shows("The one-time code is wrong"), "{}", a.html);
    let code = totp_now(&w, secret.expose());
    b.submit(&[("code", &code)]).await.code();
    let u = w.dir().user(&sub("judge-0002")).unwrap().unwrap();
    assert_eq!(u.totp.unwrap().secret, secret);
    assert!(u.totp_pending.is_none());
    w.server.shutdown().await;
}

#[tokio::test]
async fn required_password_change_holds_to_mlps_rules_and_history() {
    let w = world("private").await;
    w.add_user("clerk-0001", "chen.jing", vec![Role::Clerk]);
    let s = sub("clerk-0001");
    w.dir()
        .require_action(&s, RequiredAction::ChangePassword)
        .unwrap();
    let mut b = w.browser();
    b.authorize(&[]).await;
    let a = b.password("chen.jing", PASSWORD).await;
    assert!(a.shows("Change your password"), "{}", a.html);
    let a = b
        .submit(&[("new_password", "short"), ("confirm", "short")])
        .await;
    assert!(a.shows("breaks a rule"), "{}", a.html);
    let a = b
        .submit(&[("new_password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert!(a.shows("used recently"), "{}", a.html);
    let a = b
        .submit(&[("new_password", "Court-2026b"), ("confirm", "Court-2026c")])
        .await;
    assert!(a.shows("differ"), "{}", a.html);
    b.submit(&[("new_password", "Court-2026b"), ("confirm", "Court-2026b")])
        .await
        .code();
    let u = w.dir().user(&s).unwrap().unwrap();
    assert!(u.required_actions.is_empty());
    let record = u.password.unwrap();
    assert!(w.passwords.verify(Some(&record.hash), "Court-2026b"));
    assert_eq!(record.history.len(), 1);
    w.server.shutdown().await;
}

#[tokio::test]
async fn five_failures_lock_the_account_and_a_locked_account_gets_no_code() {
    let w = world("private").await;
    let mut b = w.browser();
    b.authorize(&[]).await;
    let before = w.audit.size();
    for i in 1..=4 {
        let a = b.password("li.ming", "Wrong-pass1").await;
        assert!(a.shows("user name or password is wrong"), "{i}: {}", a.html);
    }
    let a = b.password("li.ming", "Wrong-pass1").await;
    assert!(a.shows("Too many failed attempts"), "{}", a.html);
    // how long, in words a person reads (it showed seconds since 1970)
    assert!(a.shows("try again in 15 minutes"), "{}", a.html);
    let actions = w.actions_since(before);
    assert_eq!(actions.iter().filter(|a| *a == "signin.failure").count(), 5);
    assert_eq!(actions.last().unwrap(), "signin.lockout");
    // the right password while locked: still no way on, and no hash spent
    let hashes = w.passwords.hash_calls();
    let a = b.password("li.ming", PASSWORD).await;
    assert!(a.shows("Too many failed attempts"), "{}", a.html);
    assert_eq!(w.passwords.hash_calls(), hashes);
    // a TOTP failure counts too: after the lock ends (and the idle session with it),
    // 4 wrong passwords and a wrong code lock again
    w.clock.advance(Duration::from_secs(16 * 60));
    b.authorize(&[]).await;
    for _ in 0..4 {
        b.password("li.ming", "Wrong-pass1").await;
    }
    let a = b.password("li.ming", PASSWORD).await;
    assert!(a.shows("One-time code"), "{}", a.html);
    let a = b.submit(&[("code", "000000")]).await;
    assert!(a.shows("Too many failed attempts"), "{}", a.html);
    // the second lock lasts twice as long: 16 minutes on it still holds
    w.clock.advance(Duration::from_secs(16 * 60));
    b.authorize(&[]).await;
    let a = b.password("li.ming", PASSWORD).await;
    assert!(a.shows("Too many failed attempts"), "{}", a.html);
    w.clock.advance(Duration::from_secs(15 * 60));
    judge_signs_in(&mut b, &[]).await;
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_disabled_account_gets_the_same_failure_and_no_code() {
    let w = world("private").await;
    w.dir()
        .set_status(&sub("judge-0001"), UserStatus::Disabled)
        .unwrap();
    let mut b = w.browser();
    b.authorize(&[]).await;
    let a = b.password("li.ming", PASSWORD).await;
    assert!(a.shows("user name or password is wrong"), "{}", a.html);
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused() {
    let w = world("private").await;
    let mut b = w.browser();
    b.authorize(&[]).await;
    let hashes = w.passwords.hash_calls();
    let body = tianping_idp::form_encode_pairs([("username", "li.ming"), ("password", PASSWORD)]);
    let a = b.post_login(body.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.location.is_none() && !a.html.contains("One-time code"));
    let forged = format!("csrf=forged&{body}");
    let a = b.post_login(forged).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(w.passwords.hash_calls(), hashes, "no password was checked");
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_totp_code_is_accepted_once() {
    let w = world("private").await;
    let mut first = w.browser();
    judge_signs_in(&mut first, &[]).await;
    let mut second = w.browser();
    second.authorize(&[]).await;
    second.password("li.ming", PASSWORD).await;
    let code = totp_now(&w, &JUDGE_TOTP);
    let a = second.submit(&[("code", &code)]).await;
    assert!(a.shows("already used"), "{}", a.html);
    w.clock.advance(Duration::from_secs(30));
    let code = totp_now(&w, &JUDGE_TOTP);
    second.submit(&[("code", &code)]).await.code();
    w.server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_account_costs_the_same_hash_calls_as_a_known_one() {
    let w = world("private").await;
    let mut b = w.browser();
    b.authorize(&[]).await;
    let h0 = w.passwords.hash_calls();
    let known = b.password("li.ming", "Wrong-pass1").await.html.clone();
    let h1 = w.passwords.hash_calls();
    let unknown = b
        .password("no.such.person", "Wrong-pass1")
        .await
        .html
        .clone();
    let h2 = w.passwords.hash_calls();
    assert_eq!(h1 - h0, 1);
    assert_eq!(h2 - h1, h1 - h0);
    // the same page, but for its CSRF token
    let strip = |s: &str| s.split("name=\"csrf\"").next().unwrap().to_owned();
    assert_eq!(strip(&known), strip(&unknown));
    // and an unknown account locks as a known one does, so the lock tells nothing either
    for _ in 0..3 {
        b.password("no.such.person", "Wrong-pass1").await;
    }
    let a = b.password("no.such.person", "Wrong-pass1").await;
    assert!(a.shows("Too many failed attempts"), "{}", a.html);
    w.server.shutdown().await;
}

#[tokio::test]
async fn an_account_below_its_roles_acr_gets_no_code() {
    let w = world("private").await;
    // a judge (otp) with no authenticator is sent to enrolment, not given a password-only code
    w.add_user("judge-0003", "sun.li", vec![Role::Judge]);
    let mut b = w.browser();
    b.authorize(&[]).await;
    let a = b.password("sun.li", PASSWORD).await;
    assert!(a.location.is_none());
    assert!(a.shows("Set up one-time codes"), "{}", a.html);
    // a president (cert) can reach no acr here that suffices: refused, no redirect
    w.add_user("pres-0001", "zhou.qiang", vec![Role::President]);
    let mut b = w.browser();
    b.authorize(&[]).await;
    let a = b.password("zhou.qiang", PASSWORD).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.location.is_none());
    assert!(a.html.contains("certificate"), "{}", a.html);
    w.server.shutdown().await;
}

#[tokio::test]
async fn acr_values_above_the_roles_least_ask_for_the_next_factor_or_refuse() {
    let w = world("private").await;
    // a clerk (pwd) without acr_values: a code after the password alone
    w.add_user("clerk-0003", "wu.fang", vec![Role::Clerk]);
    let mut b = w.browser();
    b.authorize(&[]).await;
    b.password("wu.fang", PASSWORD).await.code();
    // the session (pwd) does not suffice for otp: prompt=none is interaction_required
    let a = b
        .authorize(&[("acr_values", "otp"), ("prompt", "none")])
        .await;
    let loc = a.location.clone().unwrap();
    assert!(
        loc.starts_with("https://case.example/cb?error=interaction_required"),
        "{loc}"
    );
    // asked for otp (the least of the values named): sent to enrol an authenticator, no code
    let mut b = w.browser();
    b.authorize(&[("acr_values", "cert otp")]).await;
    let a = b.password("wu.fang", PASSWORD).await;
    assert!(a.location.is_none(), "{:?}", a.location);
    assert!(a.shows("Set up one-time codes"), "{}", a.html);
    // asked for cert only: cannot be met here, refused with no redirect and no code
    let mut b = w.browser();
    b.authorize(&[("acr_values", "cert")]).await;
    let before = w.audit.size();
    let a = b.password("wu.fang", PASSWORD).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.location.is_none());
    assert!(a.html.contains("certificate"), "{}", a.html);
    assert_eq!(w.actions_since(before), vec!["signin.failure"]);
    // asked for pwd, below the judge's otp: the roles' least still binds
    let mut b = w.browser();
    b.authorize(&[("acr_values", "pwd")]).await;
    let a = b.password("li.ming", PASSWORD).await;
    assert!(a.shows("One-time code"), "{}", a.html);
    w.server.shutdown().await;
}

#[tokio::test]
async fn sign_ins_failures_lockouts_and_grants_are_counted() {
    let w = world("private").await;
    let mut b = w.browser();
    b.authorize(&[]).await;
    b.password("li.ming", "Wrong-pass1").await;
    b.password("nobody", "Wrong-pass1").await;
    let a = b.password("li.ming", PASSWORD).await;
    assert!(a.shows("One-time code"), "{}", a.html);
    let code = totp_now(&w, &JUDGE_TOTP);
    let code = b.submit(&[("code", &code)]).await.code();
    let counted = w.metrics.take();
    assert_eq!(counted.len(), 5, "{counted:?}");
    assert_eq!(counted.first().unwrap(), "sign_in failure");
    assert!(
        counted.get(1).unwrap().starts_with("failure "),
        "{counted:?}"
    );
    assert_eq!(counted.last().unwrap(), "sign_in ok");
    // the code redeemed at the token endpoint: one authorization_code grant; a bad one: none
    let redeem = |code: String| {
        let body = tianping_idp::form_encode_pairs([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://case.example/cb"),
            ("code_verifier", VERIFIER),
        ]);
        w.http
            .post(w.url("/token"))
            .basic_auth("case-app", Some("s3cret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    assert_eq!(redeem(code.clone()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        redeem(code).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(w.metrics.take(), ["grant authorization_code"]);
    // five failures: the fifth locks, counted once by its reason
    let mut b = w.browser();
    b.authorize(&[]).await;
    for _ in 0..5 {
        b.password("li.ming", "Wrong-pass1").await;
    }
    let counted = w.metrics.take();
    let locks: Vec<_> = counted
        .iter()
        .filter(|c| c.starts_with("lockout "))
        .collect();
    assert_eq!(locks.len(), 1, "{counted:?}");
    let failures = counted.iter().filter(|c| c.starts_with("failure ")).count();
    assert_eq!(failures, 5, "{counted:?}");
    w.server.shutdown().await;
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required() {
    let w = world("private").await;
    let mut b = w.browser();
    let a = b.authorize(&[("prompt", "none")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let loc = a.location.clone().unwrap();
    assert!(
        loc.starts_with("https://case.example/cb?error=login_required"),
        "{loc}"
    );
    assert!(loc.contains("state=s-1"));
    assert!(loc.contains(&format!("iss={}", tianping_idp::form_encode(ISS))));
    // with a session it succeeds silently
    judge_signs_in(&mut b, &[]).await;
    b.authorize(&[("prompt", "none")]).await.code();
    w.server.shutdown().await;
}

#[tokio::test]
async fn max_age_1_forces_sign_in_again() {
    let w = world("private").await;
    let mut b = w.browser();
    judge_signs_in(&mut b, &[]).await;
    b.authorize(&[("max_age", "1")]).await.code();
    w.clock.advance(Duration::from_secs(2));
    let a = b.authorize(&[("max_age", "1"), ("prompt", "none")]).await;
    assert!(
        a.location
            .as_deref()
            .unwrap()
            .contains("error=login_required")
    );
    let a = b.authorize(&[("max_age", "1")]).await;
    assert!(a.shows("Sign in"), "{}", a.html);
    // max_age=10000 does not (a new sign-in, with the next TOTP code)
    w.clock.advance(Duration::from_secs(30));
    let mut b = w.browser();
    judge_signs_in(&mut b, &[]).await;
    w.clock.advance(Duration::from_secs(2));
    b.authorize(&[("max_age", "10000")]).await.code();
    // prompt=login does
    let a = b.authorize(&[("prompt", "login")]).await;
    assert!(a.shows("Sign in"), "{}", a.html);
    w.server.shutdown().await;
}

#[tokio::test]
async fn sign_in_pages_may_post_only_here_and_redirect_only_to_the_client() {
    let w = world("private").await;
    let mut b = w.browser();
    let want = "form-action 'self' https://case.example;";
    // each step's page of an authorization request: its forms and the client's origin
    let a = b.authorize(&[]).await;
    assert!(a.csp.as_deref().unwrap().contains(want), "{:?}", a.csp);
    let a = b.password("li.ming", PASSWORD).await;
    assert!(a.shows("One-time code"), "{}", a.html);
    assert!(a.csp.as_deref().unwrap().contains(want), "{:?}", a.csp);
    assert!(a.csp.as_deref().unwrap().contains("default-src 'none'"));
    // a page no redirect to a client follows: 'self' alone
    let resp = w.http.get(w.url("/logout")).send().await.unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'self';"), "{csp}");
    assert!(!csp.contains("case.example"), "{csp}");
    w.server.shutdown().await;
}

#[tokio::test]
async fn pages_come_in_chinese_and_english() {
    let w = world("private").await;
    let mut b = w.browser();
    let a = b.authorize(&[("ui_locales", "zh-CN")]).await;
    assert!(
        a.html.contains("lang=\"zh-CN\"") && a.html.contains("用户名"),
        "{}",
        a.html
    );
    let a = b.password("li.ming", "Wrong-pass1").await;
    assert!(a.shows("用户名或密码错误"), "{}", a.html);
    let a = b.password("li.ming", PASSWORD).await;
    assert!(a.shows("动态口令"), "{}", a.html);
    let mut b = w.browser();
    let a = b.authorize(&[("ui_locales", "en")]).await;
    assert!(a.html.contains("lang=\"en\"") && a.html.contains("User name"));
    assert!(
        !a.html.contains("/register"),
        "registration is for `internet` only"
    );
    w.server.shutdown().await;
}

#[tokio::test]
async fn the_public_registers_in_internet_with_the_same_password_rules() {
    let w = world("internet").await;
    let mut b = w.browser();
    let a = b.authorize(&[]).await;
    assert!(a.html.contains("href=\"/register\""), "{}", a.html);
    let req = w.http.get(w.url("/register"));
    let a = b.send(req).await;
    assert!(a.shows("Register"), "{}", a.html);
    let fields = |pw: &'static str| {
        [
            ("display_name", "Liu Yang"),
            ("username", "liu.yang"),
            ("email", "liu@example.com"),
            ("password", pw),
            ("confirm", pw),
        ]
    };
    let a = b.submit(&fields("weakpass")).await;
    assert!(a.shows("breaks a rule"), "{}", a.html);
    b.submit(&fields("Lawyer-2026x")).await.code();
    let u = w.dir().user_by_login("liu.yang").unwrap().unwrap();
    assert!(u.sub.is_public_registration(), "{}", u.sub);
    assert_eq!(u.roles, vec![Role::Public]);
    w.server.shutdown().await;
}

#[tokio::test]
async fn id_token_hint_is_checked_and_must_name_the_sessions_subject() {
    let w = world("private").await;
    let mut b = w.browser();
    judge_signs_in(&mut b, &[]).await;
    let hint_for = |id: &str| {
        let mut identity = w.dir().user(&sub("judge-0001")).unwrap().unwrap().identity(
            Acr::Otp,
            vec![Amr::Pwd, Amr::Otp],
            "private".parse().unwrap(),
            w.clock.now(),
        );
        identity.sub = sub(id);
        w.issuer
            .id_token(&identity, "case-app", None, None, w.clock.now())
            .unwrap()
    };
    // the session's own subject: a code without interaction
    let hint = hint_for("judge-0001");
    b.authorize(&[("prompt", "none"), ("id_token_hint", &hint)])
        .await
        .code();
    // another subject: no silent code
    let other = hint_for("judge-0009");
    let a = b
        .authorize(&[("prompt", "none"), ("id_token_hint", &other)])
        .await;
    assert!(
        a.location
            .as_deref()
            .unwrap()
            .contains("error=login_required")
    );
    // an unsigned hint: refused, back to the client with invalid_request
    let mut parts = hint.split('.');
    let (_, claims) = (parts.next(), parts.next().unwrap());
    let none = format!("eyJhbGciOiJub25lIn0.{claims}.");
    let a = b.authorize(&[("id_token_hint", &none)]).await;
    let loc = a.location.as_deref().unwrap();
    assert!(loc.contains("error=invalid_request"), "{loc}");
    w.server.shutdown().await;
}

#[tokio::test]
async fn an_expired_password_must_be_changed_before_a_code() {
    let w = world("private").await;
    w.add_user("clerk-0002", "zhao.min", vec![Role::Clerk]);
    let s = sub("clerk-0002");
    w.clock.advance(Duration::from_secs(91 * 24 * 3600));
    let mut b = w.browser();
    b.authorize(&[]).await;
    let a = b.password("zhao.min", PASSWORD).await;
    assert!(a.shows("Change your password"), "{}", a.html);
    b.submit(&[("new_password", "Court-2026d"), ("confirm", "Court-2026d")])
        .await
        .code();
    let record = w.dir().user(&s).unwrap().unwrap().password.unwrap();
    assert_eq!(record.changed_at, w.clock.now());
    w.server.shutdown().await;
}
