//! Certificate sign-in over real TLS on loopback port 0: the listener asks for client
//! certificates (`ClientAuth::Request`), the client presents ones made by the project's `certs`
//! (a root, the `private` and `external` zone CAs, a CRL of `private`), the chain is verified
//! with the IdP's `TrustStoreVerifier` (`tianping_certs::verify_client`, as `tianping idp serve`
//! plugs it in) at the provider's manual clock. Valid hardware and
//! software certificates, revoked, expired, other-zone and unmapped ones, and a stale CRL (failing
//! closed, and passing when the setting relaxes it), each with its page and audit reason; a
//! registered device, on which its user still signs in with their own factors, someone else's
//! use of it, and an unregistered device.
#![cfg(feature = "server")]
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::indexing_slicing, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tianping_audit::AuditLog;
use tianping_certs::{
    CaCert, CertKind, ClientAuth, IssuedCert, KeyAlg, LeafRequest, Revocation, RevokeReason,
    ServerTlsBuilder, TrustStore,
};
use tianping_core::{
    Acr, Algorithm, Clearance, Clock as _, ManualClock, RingSigner, Role, SubjectId, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    CertSignIn, Client, ClientAuthMethod, Court, Device, Devices, Directory, GrantPolicy,
    GrantType, Idp, IdpParts, KeySet, LockoutPolicy, PasswordParams, PasswordPolicy, Passwords,
    SessionPolicy, SignInParts, SledStore, Store, TokenIssuer, TotpConfig, TotpCredential,
    TotpSecret, TrustStoreVerifier, User,
};
use tianping_net::{HostSet, ServerHandle, ServerOptions, serve_tls};

const HOST: &str = "idp.private.tianping.localhost";
const ISS: &str = "https://idp.private.tianping.localhost";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const PASSWORD: &str = "Court-2026a";
const JUDGE_TOTP: [u8; 20] = [5; 20];
const DAY: u64 = 86_400;

/// The court PKI of the test: made `10` days before the provider's clock starts.
struct Pki {
    private: CaCert,
    external: CaCert,
    trust_pem: String,
    root_pem: String,
}

fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap()
}

impl Pki {
    fn new(now: UnixTime) -> Self {
        let made = UnixTime::from_secs(now.as_secs() - 10 * DAY);
        let root = CaCert::new_root("Court", KeyAlg::EcP256, made).unwrap();
        let zone = |z: &str| {
            root.new_zone(&z.parse().unwrap(), "Court", KeyAlg::EcP256, made)
                .unwrap()
        };
        let (private, external) = (zone("private"), zone("external"));
        let trust_pem = format!(
            "{}{}{}",
            root.cert_pem(),
            private.cert_pem(),
            external.cert_pem()
        );
        Self {
            root_pem: root.cert_pem().to_owned(),
            private,
            external,
            trust_pem,
        }
    }

    /// A person's certificate for `subject` issued by `ca` at `at`, valid `days`.
    fn person(ca: &CaCert, subject: &str, hardware: bool, at: UnixTime, days: u32) -> IssuedCert {
        let mut req = LeafRequest::new(CertKind::Client, format!("person {subject}"));
        req.subject = Some(subject.parse().unwrap());
        req.court = Some("bj.01".parse().unwrap());
        req.roles = vec![Role::Judge];
        req.hardware = hardware;
        req.days = days;
        ca.issue(&req, at).unwrap()
    }
}

/// The certificates the tests present, all issued by the PKI of one world.
struct Certs {
    hardware: IssuedCert,
    software: IssuedCert,
    revoked: IssuedCert,
    expired: IssuedCert,
    other_zone: IssuedCert,
    unmapped: IssuedCert,
    /// Registered as `tablet-07`, to `enf-0001`.
    device: IssuedCert,
    unregistered_device: IssuedCert,
}

struct World {
    _dir: tempfile::TempDir,
    server: ServerHandle,
    store: Arc<SledStore>,
    audit: Arc<AuditLog>,
    clock: Arc<ManualClock>,
    issuer: TokenIssuer,
    root_pem: String,
    certs: Certs,
}

/// What a page or redirect answered.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    html: String,
}

impl Answer {
    fn csrf(&self) -> String {
        let at = self.html.find("name=\"csrf\" value=\"").unwrap() + 19;
        let rest = &self.html[at..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    fn shows(&self, text: &str) -> bool {
        self.location.is_none() && self.html.contains(text)
    }

    /// The `code` of the redirect to the client.
    fn code(&self) -> String {
        assert!(self.location.is_some(), "{}", self.html);
        let loc = self.location.as_deref().unwrap();
        assert_eq!(self.status, StatusCode::SEE_OTHER);
        let code = loc.strip_prefix("https://case.example/cb?code=").unwrap();
        code[..code.find('&').unwrap()].to_owned()
    }
}

/// A browser without script that presents `cert` (if any) on every connection.
struct Browser<'w> {
    w: &'w World,
    http: reqwest::Client,
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
            let value = set
                .to_str()
                .unwrap()
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
        let html = resp.text().await.unwrap();
        self.last = Some(Answer {
            status,
            location,
            html,
        });
        self.last.as_ref().unwrap()
    }

    async fn authorize(&mut self, locale: &str) -> &Answer {
        let q = tianping_idp::form_encode_pairs([
            ("response_type", "code"),
            ("client_id", "case-app"),
            ("redirect_uri", "https://case.example/cb"),
            ("scope", "openid profile"),
            ("state", "s-1"),
            ("nonce", "n-1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("ui_locales", locale),
        ]);
        let req = self.http.get(format!("{}?{q}", self.w.url("/authorize")));
        self.send(req).await
    }

    /// Posts the last page's form (its first CSRF token) with these fields.
    async fn submit(&mut self, fields: &[(&str, &str)]) -> &Answer {
        let csrf = self.last.as_ref().unwrap().csrf();
        let mut pairs = vec![("csrf", csrf.as_str())];
        pairs.extend_from_slice(fields);
        let req = self
            .http
            .post(self.w.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(tianping_idp::form_encode_pairs(pairs));
        self.send(req).await
    }

    async fn with_certificate(&mut self) -> &Answer {
        self.submit(&[("method", "certificate")]).await
    }

    /// Redeems a code at the token endpoint; the ID token's claims.
    async fn id_token_claims(&self, code: &str) -> serde_json::Map<String, serde_json::Value> {
        self.token_claims(code).await.0
    }

    /// Redeems a code at the token endpoint; the ID token's claims and the access token's.
    async fn token_claims(
        &self,
        code: &str,
    ) -> (
        serde_json::Map<String, serde_json::Value>,
        tianping_idp::AccessClaims,
    ) {
        let resp = self
            .http
            .post(self.w.url("/token"))
            .basic_auth("case-app", Some("s3cret"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", "https://case.example/cb"),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: serde_json::Value = resp.json().await.unwrap();
        let id_token = body["id_token"].as_str().unwrap();
        let v = self
            .w
            .issuer
            .keys()
            .verify(id_token, self.w.clock.now())
            .unwrap();
        let access = self
            .w
            .issuer
            .verify_access_token(body["access_token"].as_str().unwrap(), self.w.clock.now())
            .unwrap();
        (v.claims, access)
    }

    /// The identity the browser's session keeps.
    fn session_identity(&self) -> tianping_idp::Identity {
        let key = tianping_idp::session_key(self.cookie.as_deref().unwrap());
        self.w
            .store
            .session(&key)
            .unwrap()
            .unwrap()
            .identity
            .unwrap()
    }
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.server.local_addr().port())
    }

    /// A browser presenting `cert`, or none.
    fn browser(&self, cert: Option<&IssuedCert>) -> Browser<'_> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.root_pem.as_bytes()).unwrap())
            .resolve(HOST, self.server.local_addr())
            .redirect(reqwest::redirect::Policy::none());
        if let Some(c) = cert {
            let pem = format!("{}{}", c.chain_pem, c.key_pem.expose());
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        Browser {
            w: self,
            http: b.build().unwrap(),
            cookie: None,
            last: None,
        }
    }

    /// Every audit event since `from`, as `action outcome actor reason`.
    fn events_since(&self, from: u64) -> Vec<(String, String, String, String)> {
        (from..self.audit.size())
            .map(|i| {
                let e = self.audit.get(i).unwrap().unwrap().event;
                (e.action, e.outcome, e.actor, e.reason)
            })
            .collect()
    }

    /// The reasons of the `action` events since `from`.
    fn reasons(&self, from: u64, action: &str) -> Vec<String> {
        self.events_since(from)
            .into_iter()
            .filter(|e| e.0 == action)
            .map(|e| e.3)
            .collect()
    }

    fn totp_now(&self) -> String {
        let cfg = TotpConfig::default();
        let secret = TotpSecret::from_bytes(JUDGE_TOTP.to_vec());
        cfg.code_at(&secret, cfg.step_at(self.clock.now()))
    }
}

fn sub(s: &str) -> SubjectId {
    s.parse().unwrap()
}

fn fingerprint_actor(c: &IssuedCert) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, &c.leaf_der);
    format!("cert:{}", hex::encode(d.as_ref()))
}

/// A provider of zone `private` serving certificate sign-in; its CRL (revoking `certs.revoked`)
/// valid for `crl_days` from the clock's start; `accept_stale_crl` as the setting.
async fn world(crl_days: u32, accept_stale_crl: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let real_now = UnixTime::from_system_time(std::time::SystemTime::now());
    let clock = Arc::new(ManualClock::new(real_now));
    let pki = Pki::new(real_now);

    let mut server_req = LeafRequest::new(CertKind::Server, "idp");
    server_req.dns = vec![HOST.to_owned()];
    let server_cert = pki.private.issue(&server_req, real_now).unwrap();
    let earlier = UnixTime::from_secs(real_now.as_secs() - 5 * DAY);
    let certs = Certs {
        hardware: Pki::person(&pki.private, "judge-0001", true, real_now, 365),
        software: Pki::person(&pki.private, "judge-0001", false, real_now, 365),
        revoked: Pki::person(&pki.private, "judge-0001", true, real_now, 365),
        expired: Pki::person(&pki.private, "judge-0001", true, earlier, 1),
        other_zone: Pki::person(&pki.external, "judge-0001", true, real_now, 365),
        unmapped: Pki::person(&pki.private, "judge-0404", true, real_now, 365),
        device: pki
            .private
            .issue(&LeafRequest::new(CertKind::Device, "tablet-07"), real_now)
            .unwrap(),
        unregistered_device: pki
            .private
            .issue(&LeafRequest::new(CertKind::Device, "tablet-99"), real_now)
            .unwrap(),
    };
    let crl = pki
        .private
        .crl(
            &[Revocation {
                serial: certs.revoked.serial.clone(),
                at: secs(real_now),
                reason: RevokeReason::KeyCompromise,
            }],
            real_now,
            crl_days,
        )
        .unwrap();
    std::fs::write(p("tls.pem"), &server_cert.chain_pem).unwrap();
    std::fs::write(p("tls.key"), server_cert.key_pem.expose()).unwrap();
    std::fs::write(p("trust.pem"), &pki.trust_pem).unwrap();
    std::fs::write(p("crl.pem"), &crl).unwrap();
    let tls = ServerTlsBuilder::new(p("tls.pem"), p("tls.key"))
        .client_auth(ClientAuth::Request, p("trust.pem"), vec![p("crl.pem")])
        .client_zone("private".parse().unwrap())
        .build()
        .unwrap();
    let trust = TrustStore::from_pem(pki.trust_pem.as_bytes(), &[crl.as_bytes()])
        .unwrap()
        .for_zone(&"private".parse().unwrap())
        .unwrap();

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
    let mut u = User::new(sub("judge-0001"), "li.ming", "Li Ming", real_now);
    u.court = Some("bj.01".parse().unwrap());
    u.roles = vec![Role::Judge];
    u.clearance = Clearance::Secret;
    d.add_user(u).unwrap();
    // an enforcement officer, password and TOTP, with a registered tablet
    let mut u = User::new(sub("enf-0001"), "wang.qiang", "Wang Qiang", real_now);
    u.court = Some("bj.01".parse().unwrap());
    u.roles = vec![Role::Enforcement];
    d.add_user(u).unwrap();
    for who in ["judge-0001", "enf-0001"] {
        d.set_password(
            &sub(who),
            &passwords,
            PASSWORD,
            false,
            real_now,
            &SeededRandom::new(9),
        )
        .unwrap();
        d.update_user(&sub(who), &mut |u| {
            u.totp = Some(TotpCredential {
                secret: TotpSecret::from_bytes(JUDGE_TOTP.to_vec()),
                last_step: None,
            });
        })
        .unwrap();
    }
    Devices::new(&*store)
        .add(Device {
            id: "tablet-07".into(),
            owner: sub("enf-0001"),
            fingerprint: ring::digest::digest(&ring::digest::SHA256, &certs.device.leaf_der)
                .as_ref()
                .try_into()
                .unwrap(),
            name: "Enforcement tablet 7".into(),
            added: real_now,
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
        zone: "private".into(),
        clock: clock.clone(),
        rng: Arc::new(SeededRandom::new(2)),
        grants: GrantPolicy::default(),
        sessions: SessionPolicy::default(),
    };
    let sign_in = SignInParts {
        passwords,
        lockout: LockoutPolicy::default(),
        totp: TotpConfig::default(),
        // judges need a certificate here
        least_acr: Arc::new(|roles: &[Role]| {
            if roles.contains(&Role::Judge) {
                Acr::Cert
            } else {
                Acr::Pwd
            }
        }),
        zone: "private".parse().unwrap(),
        self_registration: false,
        totp_issuer: "Tianping".into(),
    };
    let mut cert = CertSignIn::new(Arc::new(TrustStoreVerifier::new(trust)));
    cert.accept_stale_crl = accept_stale_crl;
    let idp = Idp::with_sign_in(parts, sign_in).with_cert_sign_in(cert);
    let mut options = ServerOptions::new(HostSet::new([HOST]));
    options.http3 = false;
    let server = serve_tls("127.0.0.1:0".parse().unwrap(), Arc::new(tls), options, idp)
        .await
        .unwrap();
    World {
        _dir: dir,
        server,
        store,
        audit,
        clock,
        issuer,
        root_pem: pki.root_pem,
        certs,
    }
}

#[tokio::test]
async fn the_password_page_offers_a_certificate_only_when_one_was_presented() {
    let w = world(7, false).await;
    let mut none = w.browser(None);
    let a = none.authorize("en").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.shows("name=\"password\""));
    assert!(!a.html.contains("Sign in with certificate"), "{}", a.html);
    // asked for it anyway: the password form again, saying no certificate came
    let before = w.audit.size();
    let a = none.with_certificate().await;
    assert!(
        a.shows("Your browser presented no certificate"),
        "{}",
        a.html
    );
    assert!(a.shows("name=\"password\""));
    assert_eq!(
        w.reasons(before, "signin.failure"),
        vec!["certificate none presented"]
    );

    let mut with = w.browser(Some(&w.certs.hardware));
    let a = with.authorize("en").await;
    assert!(a.shows("Sign in with certificate"), "{}", a.html);
    assert!(a.shows("name=\"password\""));
    let a = with.authorize("zh-CN").await;
    assert!(a.shows("使用数字证书登录"), "{}", a.html);
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_hardware_certificate_alone_gives_acr_cert_with_amr_hwk_pin() {
    let w = world(7, false).await;
    let mut b = w.browser(Some(&w.certs.hardware));
    b.authorize("en").await;
    let before = w.audit.size();
    let code = b.with_certificate().await.code();
    let events = w.events_since(before);
    assert_eq!(
        events
            .iter()
            .map(|e| (e.0.as_str(), e.2.as_str(), e.3.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("signin.ok", "judge-0001", "cert"),
            ("authorize.code", "judge-0001", "")
        ]
    );
    let claims = b.id_token_claims(&code).await;
    assert_eq!(claims["sub"], "judge-0001");
    assert_eq!(claims["acr"], "cert");
    assert_eq!(claims["amr"], serde_json::json!(["hwk", "pin"]));
    assert_eq!(claims["nonce"], "n-1");
    // the session suffices for the judge's `cert` from now on
    b.authorize("en").await.code();
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_software_certificate_asks_for_totp_then_gives_acr_cert() {
    let w = world(7, false).await;
    let mut b = w.browser(Some(&w.certs.software));
    b.authorize("en").await;
    let a = b.with_certificate().await;
    assert!(a.shows("One-time code"), "{}", a.html);
    let before = w.audit.size();
    let a = b.submit(&[("code", "000000")]).await;
    assert!(a.shows("The one-time code is wrong"), "{}", a.html);
    assert_eq!(w.reasons(before, "signin.failure"), vec!["totp"]);
    let totp = w.totp_now();
    let code = b.submit(&[("code", &totp)]).await.code();
    let claims = b.id_token_claims(&code).await;
    assert_eq!(claims["acr"], "cert");
    let amr = claims["amr"].as_array().unwrap();
    assert!(amr.contains(&"otp".into()), "{amr:?}");
    assert!(amr.contains(&"swk".into()), "{amr:?}");
    assert!(!amr.contains(&"hwk".into()) && !amr.contains(&"pwd".into()));
    w.server.shutdown().await;
}

/// Presents `cert`, asks to sign in with it, and returns the page and the failure reasons.
async fn refused(w: &World, cert: &IssuedCert, locale: &str) -> (Answer, Vec<String>) {
    let mut b = w.browser(Some(cert));
    b.authorize(locale).await;
    let before = w.audit.size();
    b.with_certificate().await;
    let a = b.last.take().unwrap();
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.html);
    assert!(a.location.is_none());
    // no code, and the sign-in is over: the form is gone
    assert!(!a.html.contains("<form"), "{}", a.html);
    let actions: Vec<String> = w.events_since(before).into_iter().map(|e| e.0).collect();
    assert!(
        !actions
            .iter()
            .any(|a| a == "signin.ok" || a == "authorize.code")
    );
    (a, w.reasons(before, "signin.failure"))
}

#[tokio::test]
async fn revoked_expired_other_zone_and_unmapped_certificates_get_their_page_and_reason() {
    let w = world(7, false).await;
    let (a, reasons) = refused(&w, &w.certs.revoked, "en").await;
    assert!(a.shows("Your certificate has been revoked"), "{}", a.html);
    assert_eq!(reasons, vec!["certificate revoked"]);
    // the refusal names the certificate it was about
    let last = w.events_since(w.audit.size() - 1).pop().unwrap();
    assert_eq!(last.2, fingerprint_actor(&w.certs.revoked));

    let (a, reasons) = refused(&w, &w.certs.revoked, "zh-CN").await;
    assert!(a.shows("您的数字证书已被吊销"), "{}", a.html);
    assert!(a.html.contains("lang=\"zh-CN\""));
    assert_eq!(reasons, vec!["certificate revoked"]);

    let (a, reasons) = refused(&w, &w.certs.expired, "en").await;
    assert!(a.shows("Your certificate has expired"), "{}", a.html);
    assert_eq!(reasons, vec!["certificate expired"]);
    let (a, _) = refused(&w, &w.certs.expired, "zh-CN").await;
    assert!(a.shows("您的数字证书已过期"), "{}", a.html);

    let (a, reasons) = refused(&w, &w.certs.other_zone, "en").await;
    assert!(
        a.shows("not issued by this network&#39;s certificate authority"),
        "{}",
        a.html
    );
    assert_eq!(reasons, vec!["certificate other zone"]);
    let (a, _) = refused(&w, &w.certs.other_zone, "zh-CN").await;
    assert!(a.shows("不是本网络的证书机构签发的"), "{}", a.html);

    let (a, reasons) = refused(&w, &w.certs.unmapped, "en").await;
    assert!(
        a.shows("This certificate belongs to no account here"),
        "{}",
        a.html
    );
    assert_eq!(reasons, vec!["certificate unmapped"]);
    let (a, _) = refused(&w, &w.certs.unmapped, "zh-CN").await;
    assert!(a.shows("该数字证书不对应任何账号"), "{}", a.html);

    // the valid one still signs in
    let mut b = w.browser(Some(&w.certs.hardware));
    b.authorize("en").await;
    b.with_certificate().await.code();
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_disabled_account_signs_in_with_no_certificate() {
    let w = world(7, false).await;
    Directory::new(&*w.store)
        .update_user(&sub("judge-0001"), &mut |u| {
            u.status = tianping_idp::UserStatus::Disabled;
        })
        .unwrap();
    let (a, reasons) = refused(&w, &w.certs.hardware, "en").await;
    assert!(a.shows("disabled"), "{}", a.html);
    assert_eq!(reasons, vec!["certificate account disabled"]);
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_stale_crl_fails_certificate_sign_in_closed() {
    let w = world(1, false).await;
    // two days on, the one-day CRL is past its next-update
    w.clock.advance(Duration::from_secs(2 * DAY));
    let (a, reasons) = refused(&w, &w.certs.hardware, "en").await;
    assert!(
        a.shows("certificate revocation list is out of date"),
        "{}",
        a.html
    );
    assert_eq!(reasons, vec!["crl stale"]);
    let (a, _) = refused(&w, &w.certs.hardware, "zh-CN").await;
    assert!(a.shows("证书吊销列表已过期"), "{}", a.html);
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_stale_crl_accepted_by_the_setting_signs_in_and_is_audited_as_relaxed() {
    let w = world(1, true).await;
    w.clock.advance(Duration::from_secs(2 * DAY));
    let mut b = w.browser(Some(&w.certs.hardware));
    b.authorize("en").await;
    let before = w.audit.size();
    let code = b.with_certificate().await.code();
    let events = w.events_since(before);
    let relaxed: Vec<_> = events
        .iter()
        .filter(|e| e.0 == "signin.crl_relaxed")
        .collect();
    assert_eq!(relaxed.len(), 1, "{events:?}");
    assert_eq!(relaxed[0].1, "ok");
    assert_eq!(relaxed[0].2, fingerprint_actor(&w.certs.hardware));
    assert_eq!(relaxed[0].3, "crl past next-update accepted by setting");
    assert_eq!(b.id_token_claims(&code).await["acr"], "cert");
    // relaxed is not lenient on revocations the stale list holds
    let (a, reasons) = refused(&w, &w.certs.revoked, "en").await;
    assert!(a.shows("revoked"), "{}", a.html);
    assert_eq!(reasons, vec!["certificate revoked"]);
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_judge_with_a_password_alone_is_told_a_certificate_is_needed() {
    let w = world(7, false).await;
    let mut b = w.browser(None);
    b.authorize("en").await;
    let a = b
        .submit(&[("username", "li.ming"), ("password", PASSWORD)])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.shows("must sign in with a certificate"), "{}", a.html);
    w.server.shutdown().await;
}

#[tokio::test]
async fn on_a_registered_device_its_user_still_signs_in_with_their_own_factors() {
    let w = world(7, false).await;
    let mut b = w.browser(Some(&w.certs.device));
    let a = b.authorize("en").await;
    assert!(a.shows("Sign in with certificate"), "{}", a.html);
    let before = w.audit.size();
    let a = b.with_certificate().await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.shows("signing in on the registered device “Enforcement tablet 7”"),
        "{}",
        a.html
    );
    assert!(a.shows("name=\"password\""));
    assert_eq!(
        w.reasons(before, "signin.device"),
        vec!["device tablet-07 of enf-0001"]
    );
    // the device is not a factor of the person: password, then TOTP
    let a = b
        .submit(&[("username", "wang.qiang"), ("password", PASSWORD)])
        .await;
    assert!(a.shows("One-time code"), "{}", a.html);
    let totp = w.totp_now();
    let code = b.submit(&[("code", &totp)]).await.code();
    assert_eq!(
        w.reasons(before, "signin.on_device"),
        vec!["device tablet-07"]
    );
    // the session keeps the device, and both tokens name it
    assert_eq!(b.session_identity().device.as_deref(), Some("tablet-07"));
    let (claims, access) = b.token_claims(&code).await;
    assert_eq!(claims["sub"], "enf-0001");
    assert_eq!(claims["acr"], "otp");
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]));
    assert_eq!(claims["device"], "tablet-07");
    let person = access.identity.unwrap();
    assert_eq!(person.sub.as_str(), "enf-0001");
    assert_eq!(person.device.as_deref(), Some("tablet-07"));
    // a second code from the same session names it too
    let code = b.authorize("en").await.code();
    assert_eq!(b.id_token_claims(&code).await["device"], "tablet-07");
    w.server.shutdown().await;
}

#[tokio::test]
async fn signed_in_without_a_device_certificate_no_token_names_a_device() {
    let w = world(7, false).await;
    // the device's user with a password and TOTP, no certificate presented
    let mut b = w.browser(None);
    b.authorize("en").await;
    let a = b
        .submit(&[("username", "wang.qiang"), ("password", PASSWORD)])
        .await;
    assert!(a.shows("One-time code"), "{}", a.html);
    let totp = w.totp_now();
    let code = b.submit(&[("code", &totp)]).await.code();
    assert_eq!(b.session_identity().device, None);
    let (claims, access) = b.token_claims(&code).await;
    assert_eq!(claims["sub"], "enf-0001");
    assert!(!claims.contains_key("device"), "{claims:?}");
    assert_eq!(access.identity.unwrap().device, None);
    // a person's own certificate is no device either
    let mut b = w.browser(Some(&w.certs.hardware));
    b.authorize("en").await;
    let code = b.with_certificate().await.code();
    let (claims, access) = b.token_claims(&code).await;
    assert_eq!(claims["sub"], "judge-0001");
    assert!(!claims.contains_key("device"), "{claims:?}");
    assert_eq!(access.identity.unwrap().device, None);
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_device_is_refused_to_anyone_but_its_user_and_when_unregistered() {
    let w = world(7, false).await;
    let mut b = w.browser(Some(&w.certs.device));
    b.authorize("en").await;
    b.with_certificate().await;
    let before = w.audit.size();
    let a = b
        .submit(&[("username", "li.ming"), ("password", PASSWORD)])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.shows("This device is registered to another user"),
        "{}",
        a.html
    );
    assert_eq!(
        w.reasons(before, "signin.failure"),
        vec!["device of another user"]
    );

    let (a, reasons) = refused(&w, &w.certs.unregistered_device, "en").await;
    assert!(a.shows("This device is not registered"), "{}", a.html);
    assert_eq!(reasons, vec!["device unregistered"]);
    let (a, _) = refused(&w, &w.certs.unregistered_device, "zh-CN").await;
    assert!(a.shows("该设备未登记"), "{}", a.html);

    // removed, the registered one is refused the same way
    Devices::new(&*w.store).remove("tablet-07").unwrap();
    let (_, reasons) = refused(&w, &w.certs.device, "en").await;
    assert_eq!(reasons, vec!["device unregistered"]);
    w.server.shutdown().await;
}
