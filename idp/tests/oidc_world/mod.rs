//! The provider of the token-side tests: real TLS on loopback port 0 (a test PKI) at the zone's
//! `idp` host name read from a `fabric.toml`, a sled store, an audit log, a clock moved by hand,
//! seeded randomness, and a few registered clients.
#![allow(dead_code, unreachable_pub, reason = "each test binary uses a part")]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

#[path = "../zone_tls/mod.rs"]
mod zone_tls;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use tianping_audit::AuditLog;
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, Clock as _, Fabric, ManualClock, RingSigner, Role, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    AuthorizationRequest, Client, ClientAuthMethod, CodeChallenge, Court, Directory, GrantPolicy,
    GrantType, Grants, Identity, Idp, IdpParts, KeySet, LockoutState, SessionPolicy, SledStore,
    Store, TokenIssuer, User, UserStatus, parse_authorization,
};
use tianping_idp::{
    LockoutPolicy, PasswordParams, PasswordPolicy, Passwords, SESSION_COOKIE, SignInParts,
    TotpConfig, TotpCredential, TotpSecret,
};
use tianping_net::{HostSet, ServerHandle, ServerOptions, serve_tls};

/// The secret every test client has.
pub const SECRET: &str = "s3cret";
/// The registered redirect URI.
pub const REDIRECT: &str = "https://case.example/cb";
/// The registered post-logout redirect URI.
pub const BYE: &str = "https://case.example/bye";
/// A PKCE verifier (RFC 7636 appendix B).
pub const VERIFIER: &str = "dBjftJeZ4CVP-mJ0FuXOpmVFJqGJOzd6qvStTjwH7Sk";
/// Another well-formed verifier.
pub const OTHER_VERIFIER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// The judge's password.
pub const PASSWORD: &str = "Court-2026a";
/// The judge's TOTP secret.
pub const TOTP: [u8; 20] = [7; 20];
/// The subject the tests sign in.
pub const SUB: &str = "judge-0001";
/// Its sign-in name.
pub const LOGIN: &str = "judge.li";
/// Its e-mail address.
pub const EMAIL: &str = "li@bj0103.court.example";
/// Its telephone number.
pub const PHONE: &str = "+86 10 5555 0103";

/// The challenge of [`VERIFIER`].
pub fn challenge() -> String {
    CodeChallenge::of_verifier(VERIFIER)
        .unwrap()
        .as_str()
        .to_owned()
}

fn client(id: &str, method: ClientAuthMethod, grants: &[GrantType]) -> Client {
    Client {
        id: id.into(),
        secret_sha256: Some(Client::hash_secret(SECRET)),
        auth_method: method,
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec![BYE.into()],
        grants: grants.to_vec(),
        native_loopback: false,
        extra_scopes: vec!["cases.read".into()],
    }
}

/// The registered clients: `case-app` (basic, every grant), `post-app` (post, every grant),
/// `other-app` (basic, every grant), `no-refresh` (basic, codes only).
pub fn clients() -> Vec<Client> {
    use ClientAuthMethod::{ClientSecretBasic, ClientSecretPost};
    use GrantType::{AuthorizationCode, ClientCredentials, RefreshToken};
    let all = [AuthorizationCode, RefreshToken, ClientCredentials];
    vec![
        client("case-app", ClientSecretBasic, &all),
        client("post-app", ClientSecretPost, &all),
        client("other-app", ClientSecretBasic, &all),
        client("no-refresh", ClientSecretBasic, &[AuthorizationCode]),
    ]
}

/// A running provider and a client that trusts its zone CA.
pub struct World {
    _dir: tempfile::TempDir,
    /// The listener.
    pub server: ServerHandle,
    /// An HTTP client trusting the test root, resolving the host name to the listener,
    /// following no redirects.
    pub http: reqwest::Client,
    /// The provider's audit log.
    pub audit: Arc<AuditLog>,
    /// The provider's clock.
    pub clock: Arc<ManualClock>,
    /// The provider's store.
    pub store: Arc<SledStore>,
    /// The root CA, PEM.
    pub root_pem: String,
    /// The `idp` host name of zone `private`, from the fabric.
    pub host: String,
    /// The issuer, `https://<host>`.
    pub iss: String,
    rng: SeededRandom,
}

/// The signed-in judge.
pub fn judge(auth_time: UnixTime) -> Identity {
    Identity {
        sub: SUB.parse().unwrap(),
        court: Some("bj.01.03".parse().unwrap()),
        roles: vec![Role::Judge],
        clearance: Clearance::Secret,
        acr: Acr::Otp,
        amr: vec![Amr::Pwd, Amr::Otp],
        zone: "private".parse().unwrap(),
        auth_time,
        device: None,
    }
}

/// The fabric of the tests: the default one with every listener on port 0.
fn fabric() -> Fabric {
    let text = Fabric::default_text(&[], &[]);
    let zero: String = text
        .lines()
        .map(|l| {
            let l = match l.split_once(" = ") {
                Some((k, v)) if ["gateway", "idp"].contains(&k) && v.parse::<u16>().is_ok() => {
                    format!("{k} = 0")
                }
                _ => l.to_owned(),
            };
            l + "\n"
        })
        .collect();
    Fabric::parse(&zero).unwrap()
}

/// The directory: the judge's court and its parents, and the judge with a password and an
/// enrolled authenticator.
fn directory(store: &dyn Store, passwords: &Passwords, now: UnixTime) {
    let dir = Directory::new(store);
    for (code, name) in [
        ("bj", "北京市高级人民法院"),
        ("bj.01", "北京市第一中级人民法院"),
        ("bj.01.03", "北京市海淀区人民法院"),
    ] {
        dir.add_court(Court {
            code: code.parse().unwrap(),
            name: name.into(),
        })
        .unwrap();
    }
    let mut user = User::new(SUB.parse().unwrap(), LOGIN, "李法官", now);
    user.given_name = Some("法官".into());
    user.family_name = Some("李".into());
    user.email = Some(EMAIL.into());
    user.phone = Some(PHONE.into());
    user.court = Some("bj.01.03".parse().unwrap());
    user.roles = vec![Role::Judge];
    user.clearance = Clearance::Secret;
    dir.add_user(user).unwrap();
    let sub = SUB.parse().unwrap();
    dir.set_password(&sub, passwords, PASSWORD, false, now, &SeededRandom::new(5))
        .unwrap();
    dir.update_user(&sub, &mut |u| {
        u.totp = Some(TotpCredential {
            secret: TotpSecret::from_bytes(TOTP.to_vec()),
            last_step: None,
        });
    })
    .unwrap();
}

/// Judges need `otp`, everyone else a password.
fn least_acr(roles: &[Role]) -> Acr {
    if roles.contains(&Role::Judge) {
        Acr::Otp
    } else {
        Acr::Pwd
    }
}

/// Starts a provider.
pub async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let fabric = fabric();
    let zone = fabric.zone(&"private".parse().unwrap()).unwrap();
    let host = zone.idp_host.clone();
    let bind = fabric.resolve(&host).unwrap();
    assert_eq!(bind.port(), 0, "the test fabric leaves the port to the OS");
    let iss = format!("https://{host}");

    let (tls, root_pem) = zone_tls::zone_tls(dir.path(), &host);
    let p = |n: &str| dir.path().join(n);

    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let store = Arc::new(SledStore::open(&p("store")).unwrap());
    let audit = Arc::new(AuditLog::create(&p("audit"), "idp.private").unwrap());
    // cheap argon2id parameters: the tests are about the protocol, not the hash's cost
    let params = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let passwords =
        Arc::new(Passwords::new(params, PasswordPolicy::default(), &SeededRandom::new(3)).unwrap());
    directory(&*store, &passwords, clock.now());
    let signer = Arc::new(RingSigner::generate(Algorithm::Es256).unwrap().0);
    let sign_in = SignInParts {
        passwords,
        lockout: LockoutPolicy::default(),
        totp: TotpConfig::default(),
        least_acr: Arc::new(least_acr),
        zone: "private".parse().unwrap(),
        self_registration: false,
        totp_issuer: "Tianping".into(),
    };
    let parts = IdpParts {
        issuer: TokenIssuer::new(iss.clone(), KeySet::new(signer)),
        audience: "tianping".into(),
        store: Arc::clone(&store) as Arc<dyn Store>,
        clients: clients(),
        audit: Arc::clone(&audit),
        zone: "private".into(),
        clock: clock.clone(),
        rng: Arc::new(SeededRandom::new(7)),
        grants: GrantPolicy::default(),
        sessions: SessionPolicy::default(),
    };
    let idp = Idp::with_sign_in(parts, sign_in);
    let mut options = ServerOptions::new(HostSet::new([host.as_str()]));
    options.http3 = false;
    let server = serve_tls(bind, Arc::new(tls), options, idp).await.unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .resolve(&host, server.local_addr())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    World {
        _dir: dir,
        server,
        http,
        audit,
        clock,
        store,
        root_pem,
        host,
        iss,
        rng: SeededRandom::new(11),
    }
}

impl World {
    /// The URL of `path` (the listener's port comes from the resolver override).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.iss)
    }

    /// A checked authorization request from its query.
    pub fn request(&self, query: &str) -> AuthorizationRequest {
        let clients = clients();
        let find = |id: &str| clients.iter().find(|c| c.id == id).cloned();
        match parse_authorization(query.as_bytes(), &self.iss, &find) {
            Ok((r, _)) => r,
            Err(e) => panic!("authorization request refused: {:?}", e.error()),
        }
    }

    /// A code for `query` issued to the judge signed in at `auth_time`.
    pub fn code_at(&self, query: &str, auth_time: UnixTime) -> String {
        Grants::new(&*self.store, GrantPolicy::default())
            .issue_code(
                &self.request(query),
                judge(auth_time),
                self.clock.now(),
                &self.rng,
            )
            .unwrap()
    }

    /// A code for `case-app` with the [`VERIFIER`]'s challenge and `scope`.
    pub fn code(&self, client_id: &str, scope: &str) -> String {
        let q = tianping_idp::form_encode_pairs([
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("code_challenge", challenge().as_str()),
            ("code_challenge_method", "S256"),
            ("nonce", "n-0S6_WzA2Mj"),
            ("state", "af0ifjsldkj"),
        ]);
        self.code_at(&q, self.clock.now())
    }

    /// `POST` of a form to `path`, with HTTP Basic credentials when given.
    pub async fn post(
        &self,
        path: &str,
        form: &str,
        basic: Option<(&str, &str)>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A token request by `client_id` (Basic, the shared secret).
    pub async fn token(&self, client_id: &str, form: &str) -> (StatusCode, Value) {
        self.post("/token", form, Some((client_id, SECRET))).await
    }

    /// Redeems `code` as `client_id` with the [`VERIFIER`].
    pub async fn redeem(&self, client_id: &str, code: &str) -> (StatusCode, Value) {
        let form = tianping_idp::form_encode_pairs([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ]);
        self.token(client_id, &form).await
    }

    /// Refreshes as `client_id`.
    pub async fn refresh(&self, client_id: &str, rt: &str) -> (StatusCode, Value) {
        let form = tianping_idp::form_encode_pairs([
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
        ]);
        self.token(client_id, &form).await
    }

    /// UserInfo by `GET` with the bearer header: the status, the challenge and the body.
    pub async fn userinfo(&self, at: &str) -> (StatusCode, Option<String>, Value) {
        let resp = self
            .http
            .get(self.url("/userinfo"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, challenge, resp.json().await.unwrap_or(Value::Null))
    }

    /// Introspects `token` as `case-app`: its `active`.
    pub async fn active(&self, token: &str) -> bool {
        let form = tianping_idp::form_encode_pairs([("token", token)]);
        let (status, v) = self
            .post("/introspect", &form, Some(("case-app", SECRET)))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["active"].as_bool().unwrap()
    }

    /// The audit events from `from` on: `(action, object)`.
    pub fn events_since(&self, from: u64) -> Vec<(String, String)> {
        (from..self.audit.size())
            .map(|i| {
                let e = self.audit.get(i).unwrap().unwrap().event;
                (e.action, e.object)
            })
            .collect()
    }

    /// The judge signs in through the HTML forms, password then TOTP, for the authorization
    /// request `query`, in a browser holding `cookie` (updated): the `Location` it ends at.
    pub async fn sign_in_through_forms(&self, query: &str, cookie: &mut Option<String>) -> String {
        let page = self
            .browse(
                self.http.get(self.url(&format!("/authorize?{query}"))),
                cookie,
            )
            .await;
        assert_eq!(page.0, StatusCode::OK, "the sign-in page: {}", page.2);
        let form = [("username", LOGIN), ("password", PASSWORD)];
        let page = self.post_form_page(&page.2, &form, cookie).await;
        assert_eq!(page.0, StatusCode::OK, "the one-time code page: {}", page.2);
        let cfg = TotpConfig::default();
        let code = cfg.code_at(
            &TotpSecret::from_bytes(TOTP.to_vec()),
            cfg.step_at(self.clock.now()),
        );
        let done = self
            .post_form_page(&page.2, &[("code", &code)], cookie)
            .await;
        assert_eq!(done.0, StatusCode::SEE_OTHER, "{}", done.2);
        done.1.unwrap()
    }

    /// Posts the form of `html` (its action and CSRF token) with `fields`.
    pub(crate) async fn post_form_page(
        &self,
        html: &str,
        fields: &[(&str, &str)],
        cookie: &mut Option<String>,
    ) -> (StatusCode, Option<String>, String) {
        let attr = |name: &str| {
            let at = html.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            html[at..at + html[at..].find('"').unwrap()].to_owned()
        };
        let action = attr("action");
        let csrf = {
            let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
            html[at..at + html[at..].find('"').unwrap()].to_owned()
        };
        let mut pairs = vec![("csrf", csrf.as_str())];
        pairs.extend_from_slice(fields);
        let req = self
            .http
            .post(self.url(&action))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(tianping_idp::form_encode_pairs(pairs));
        self.browse(req, cookie).await
    }

    /// Sends `req` with the browser's session cookie and keeps the one it is given.
    pub async fn browse(
        &self,
        req: reqwest::RequestBuilder,
        cookie: &mut Option<String>,
    ) -> (StatusCode, Option<String>, String) {
        let req = match cookie.as_deref() {
            Some(c) => req.header("cookie", format!("{SESSION_COOKIE}={c}")),
            None => req,
        };
        let resp = req.send().await.unwrap();
        if let Some(set) = resp.headers().get("set-cookie") {
            let value = set
                .to_str()
                .unwrap()
                .strip_prefix(&format!("{SESSION_COOKIE}="))
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            *cookie = (!value.is_empty()).then_some(value);
        }
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (status, location, resp.text().await.unwrap())
    }

    /// Disables the judge's account.
    pub fn disable_judge(&self) {
        Directory::new(&*self.store)
            .set_status(&SUB.parse().unwrap(), UserStatus::Disabled)
            .unwrap();
    }

    /// Locks the judge's account out until an hour from now.
    pub fn lock_judge(&self) {
        let state = LockoutState {
            failures: vec![],
            locks: 1,
            not_before: Some(
                self.clock
                    .now()
                    .saturating_add(std::time::Duration::from_secs(3600)),
            ),
        };
        self.store.put_lockout(LOGIN, &state).unwrap();
    }
}

/// The value of `name` in the query of a `Location`.
pub fn query_param(location: &str, name: &str) -> Option<String> {
    let (_, q) = location.split_once('?')?;
    tianping_idp::Params::parse(q.as_bytes())
        .ok()?
        .get(name)
        .ok()?
        .map(str::to_owned)
}
