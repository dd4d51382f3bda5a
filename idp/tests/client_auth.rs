//! Client authentication by key and by certificate against the real provider over real TLS
//! (a test PKI of the `private` zone, the listener asking for client certificates):
//!
//! - `private_key_jwt` with assertions made here with `ring` (ES256): accepted, and refused with
//!   `invalid_client` (each reason in the audit log) for a wrong audience, an expired, not yet
//!   valid or future-issued assertion, `iss` or `sub` not the client, a replayed `jti`, `alg`
//!   `none` and `HS256`, and a key the client did not register;
//! - a client registered by JWKS URI, its keys fetched over HTTPS from a second real server with
//!   the zone's trust, refetched on an unknown `kid` at most once per interval;
//! - `tls_client_auth` with zone node certificates made by `tianping-certs`: a token bound to
//!   the certificate (`cnf` `x5t#S256`), refused without it or with another one at
//!   introspection (`active: false`) and at UserInfo (401 `invalid_token`);
//! - discovery listing the methods.
#![cfg(feature = "server")]
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::indexing_slicing, reason = "tests index JSON")]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response};
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use tianping_audit::AuditLog;
use tianping_certs::{
    CaCert, CertKind, ClientAuth, IssuedCert, KeyAlg, LeafRequest, ReloadableServerConfig,
    ServerTlsBuilder,
};
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, Clock as _, ManualClock, RingSigner, Role, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    Client, ClientAuthMethod, ClientKeys, Directory, FetchFuture, GrantPolicy, GrantType, Grants,
    Identity, Idp, IdpParts, JwksFetch, KeySet, SessionPolicy, SledStore, Store, TokenIssuer,
    form_encode_pairs,
};
use tianping_net::{Body, HostSet, ServerHandle, ServerOptions, full, serve_tls};

const HOST: &str = "idp.private.tianping.localhost";
const ISS: &str = "https://idp.private.tianping.localhost";
const RP_HOST: &str = "rp.private.tianping.localhost";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const START: u64 = 1_800_000_000;

// ---------------------------------------------------------------- keys and assertions

struct Key {
    pair: EcdsaKeyPair,
    kid: String,
}

impl Key {
    fn new(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self {
            pair,
            kid: kid.into(),
        }
    }

    fn jwk(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&p[33..65]),
        })
    }

    fn sign_with(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(
            &json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

fn jwks(keys: &[&Key]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// The claims of a good assertion by `client` at `now`, `jti` unique per call site.
fn claims(client: &str, jti: &str, now: u64) -> Value {
    json!({
        "iss": client, "sub": client, "aud": format!("{ISS}/token"),
        "iat": now, "exp": now + 60, "jti": jti,
    })
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

// ---------------------------------------------------------------- the PKI

struct Pki {
    root_pem: String,
    zone_ca: CaCert,
}

fn leaf(pki: &Pki, kind: CertKind, name: &str, dns: &[&str]) -> IssuedCert {
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let mut req = LeafRequest::new(kind, name);
    req.dns = dns.iter().map(|d| (*d).to_owned()).collect();
    pki.zone_ca.issue(&req, now).unwrap()
}

fn pki() -> Pki {
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let root = CaCert::new_root("Court", KeyAlg::EcP256, now).unwrap();
    let zone_ca = root
        .new_zone(&"private".parse().unwrap(), "Court", KeyAlg::EcP256, now)
        .unwrap();
    Pki {
        root_pem: root.cert_pem().to_owned(),
        zone_ca,
    }
}

/// TLS for `host`, asking for (not requiring) a client certificate of the `private` zone.
fn server_tls(dir: &Path, pki: &Pki, host: &str) -> ReloadableServerConfig {
    let cert = leaf(pki, CertKind::Server, host, &[host]);
    let p = |n: &str| dir.join(format!("{host}.{n}"));
    std::fs::write(p("pem"), &cert.chain_pem).unwrap();
    std::fs::write(p("key"), cert.key_pem.expose()).unwrap();
    let trust = format!("{}{}", pki.root_pem, pki.zone_ca.cert_pem());
    std::fs::write(p("trust"), trust).unwrap();
    ServerTlsBuilder::new(p("pem"), p("key"))
        .client_auth(ClientAuth::Request, p("trust"), vec![])
        .client_zone("private".parse().unwrap())
        .build()
        .unwrap()
}

fn http_client(pki: &Pki, addr: SocketAddr, cert: Option<&IssuedCert>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.root_pem.as_bytes()).unwrap())
        .resolve(HOST, addr)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(c) = cert {
        let pem = format!("{}\n{}", c.chain_pem, c.key_pem.expose());
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

// ---------------------------------------------------------------- the relying party's JWKS

/// A client's JWKS served over HTTPS, counting the fetches.
struct JwksServer {
    doc: Mutex<Value>,
    fetches: AtomicUsize,
}

/// Fetches JWKS URIs over HTTPS trusting the zone's root only.
struct HttpsFetch(reqwest::Client);

impl JwksFetch for HttpsFetch {
    fn fetch<'a>(&'a self, uri: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            let r = self.0.get(uri).send().await.map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("status {}", r.status()));
            }
            r.bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string())
        })
    }
}

// ---------------------------------------------------------------- the world

struct World {
    _dir: tempfile::TempDir,
    server: ServerHandle,
    rp_server: ServerHandle,
    /// No client certificate, node `exchange-n1`'s, node `exchange-n2`'s, and a node certificate
    /// named `exchange-n1` by another PKI's zone CA.
    plain: reqwest::Client,
    n1: reqwest::Client,
    n2: reqwest::Client,
    foreign: reqwest::Client,
    n1_der: Vec<u8>,
    audit: Arc<AuditLog>,
    clock: Arc<ManualClock>,
    store: Arc<SledStore>,
    /// `rp-jwt`'s registered key.
    key: Key,
    /// `rp-uri`'s published JWKS.
    rp_jwks: Arc<JwksServer>,
    rp_key: Key,
    /// A refresh token of `node-app` for a person.
    refresh_token: String,
}

fn client(id: &str, method: ClientAuthMethod) -> Client {
    Client {
        id: id.into(),
        secret_sha256: None,
        auth_method: method,
        redirect_uris: vec!["https://case.example/cb".into()],
        post_logout_redirect_uris: vec![],
        grants: vec![GrantType::ClientCredentials, GrantType::RefreshToken],
        native_loopback: false,
        extra_scopes: vec!["cases.read".into()],
    }
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let p = |n: &str| dir.path().join(n);
    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(START)));
    let store = Arc::new(SledStore::open(&p("store")).unwrap());

    // the relying party's JWKS, on a server of its own
    let rp_key = Key::new("rp-1");
    let rp_jwks = Arc::new(JwksServer {
        doc: Mutex::new(jwks(&[&rp_key])),
        fetches: AtomicUsize::new(0),
    });
    let served = Arc::clone(&rp_jwks);
    let handler = move |_req: Request<Body>| {
        let served = Arc::clone(&served);
        async move {
            served.fetches.fetch_add(1, Ordering::SeqCst);
            let doc = served.doc.lock().unwrap().to_string();
            Response::new(full(doc))
        }
    };
    let mut options = ServerOptions::new(HostSet::new([RP_HOST]));
    options.http3 = false;
    let rp_server = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(server_tls(dir.path(), &pki, RP_HOST)),
        options,
        handler,
    )
    .await
    .unwrap();
    let fetch_client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.root_pem.as_bytes()).unwrap())
        .resolve(RP_HOST, rp_server.local_addr())
        .build()
        .unwrap();

    // the clients
    let key = Key::new("k-1");
    let dirc = Directory::new(&*store);
    dirc.add_client_with_keys(
        client("rp-jwt", ClientAuthMethod::PrivateKeyJwt),
        Some(ClientKeys::Jwks(jwks(&[&key]).to_string())),
    )
    .unwrap();
    let uri = format!("https://{RP_HOST}:{}/jwks", rp_server.local_addr().port());
    dirc.add_client_with_keys(
        client("rp-uri", ClientAuthMethod::PrivateKeyJwt),
        Some(ClientKeys::JwksUri(uri)),
    )
    .unwrap();
    dirc.add_client_with_keys(
        client("node-app", ClientAuthMethod::TlsClientAuth),
        Some(ClientKeys::TlsSubject("exchange-n1".into())),
    )
    .unwrap();
    // a key client registered without keys is refused
    assert!(
        dirc.add_client(client("no-keys", ClientAuthMethod::PrivateKeyJwt))
            .is_err()
    );

    let identity = Identity {
        sub: "judge-0001".parse().unwrap(),
        court: Some("bj.01.03".parse().unwrap()),
        roles: vec![Role::Judge],
        clearance: Clearance::Secret,
        acr: Acr::Otp,
        amr: vec![Amr::Pwd, Amr::Otp],
        zone: "private".parse().unwrap(),
        auth_time: clock.now(),
        device: None,
    };
    let (refresh_token, _) = Grants::new(&*store, GrantPolicy::default())
        .start_family(
            "node-app",
            identity,
            vec!["openid".into(), "profile".into()],
            clock.now(),
            &SeededRandom::new(1),
        )
        .unwrap();

    let audit = Arc::new(AuditLog::create(&p("audit"), "idp.private").unwrap());
    let signer = Arc::new(RingSigner::generate(Algorithm::Es256).unwrap().0);
    let idp = Idp::new(IdpParts {
        issuer: TokenIssuer::new(ISS, KeySet::new(signer)),
        audience: "tianping".into(),
        store: Arc::clone(&store) as Arc<dyn Store>,
        clients: vec![],
        audit: Arc::clone(&audit),
        zone: "private".into(),
        clock: clock.clone(),
        rng: Arc::new(SeededRandom::new(2)),
        grants: GrantPolicy::default(),
        sessions: SessionPolicy::default(),
    })
    .with_jwks_fetch(Arc::new(HttpsFetch(fetch_client)), Duration::from_secs(60));
    let mut options = ServerOptions::new(HostSet::new([HOST]));
    options.http3 = false;
    let server = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(server_tls(dir.path(), &pki, HOST)),
        options,
        idp,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let n1 = leaf(
        &pki,
        CertKind::Node,
        "exchange-n1",
        &["n1.private.tianping.localhost"],
    );
    let other_pki = self::pki();
    let n2 = leaf(
        &pki,
        CertKind::Node,
        "exchange-n2",
        &["n2.private.tianping.localhost"],
    );
    World {
        plain: http_client(&pki, addr, None),
        n1: http_client(&pki, addr, Some(&n1)),
        n2: http_client(&pki, addr, Some(&n2)),
        foreign: http_client(
            &pki,
            addr,
            Some(&leaf(&other_pki, CertKind::Node, "exchange-n1", &[])),
        ),
        n1_der: n1.leaf_der.clone(),
        _dir: dir,
        server,
        rp_server,
        audit,
        clock,
        store,
        key,
        rp_jwks,
        rp_key,
        refresh_token,
    }
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.server.local_addr().port())
    }

    fn now(&self) -> u64 {
        self.clock.now().as_secs()
    }

    async fn post(&self, http: &reqwest::Client, path: &str, form: &str) -> (StatusCode, Value) {
        let resp = http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap())
    }

    /// A `client_credentials` request authenticated by `assertion`.
    async fn by_assertion(&self, assertion: &str) -> (StatusCode, Value) {
        let form = form_encode_pairs([
            ("grant_type", "client_credentials"),
            ("scope", "cases.read"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ]);
        self.post(&self.plain, "/token", &form).await
    }

    /// The reason of the last audit event, which must be a refused client authentication.
    fn last_refusal(&self) -> String {
        let rec = self.audit.get(self.audit.size() - 1).unwrap().unwrap();
        assert_eq!(rec.event.action, "client.auth_refused");
        assert_eq!(rec.event.outcome, "denied");
        rec.event.reason
    }

    /// Asserts `invalid_client` with the audited `reason`.
    fn refused(&self, (status, body): (StatusCode, Value), reason: &str) {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "invalid_client", "{body}");
        assert_eq!(self.last_refusal(), reason);
    }

    async fn introspect(&self, http: &reqwest::Client, client_form: &str, token: &str) -> Value {
        let form = format!("{client_form}&{}", form_encode_pairs([("token", token)]));
        let (status, body) = self.post(http, "/introspect", &form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn userinfo(&self, http: &reqwest::Client, token: &str) -> (StatusCode, Option<String>) {
        let resp = http
            .get(self.url("/userinfo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (resp.status(), challenge)
    }

    async fn stop(self) {
        self.server.shutdown().await;
        self.rp_server.shutdown().await;
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn discovery_lists_the_methods_and_their_algorithms() {
    let w = world().await;
    let d: Value = w
        .plain
        .get(w.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let methods = json!([
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "tls_client_auth"
    ]);
    assert_eq!(d["token_endpoint_auth_methods_supported"], methods);
    assert_eq!(d["introspection_endpoint_auth_methods_supported"], methods);
    assert_eq!(d["revocation_endpoint_auth_methods_supported"], methods);
    assert_eq!(
        d["token_endpoint_auth_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
    assert_eq!(d["tls_client_certificate_bound_access_tokens"], true);
    w.stop().await;
}

#[tokio::test]
async fn private_key_jwt_is_accepted_once_and_each_bad_assertion_is_refused() {
    let w = world().await;
    let now = w.now();
    let good = w.key.sign(&claims("rp-jwt", "j-ok", now));
    let (status, body) = w.by_assertion(&good).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let at = body["access_token"].as_str().unwrap().to_owned();
    let a = w.audit.get(w.audit.size() - 1).unwrap().unwrap();
    assert_eq!(
        (a.event.action.as_str(), a.event.actor.as_str()),
        ("token.client_credentials", "rp-jwt")
    );
    // the issuer as audience, and a `client_id` agreeing with the assertion
    let form = form_encode_pairs([
        ("grant_type", "client_credentials"),
        ("client_id", "rp-jwt"),
        ("client_assertion_type", ASSERTION_TYPE),
        (
            "client_assertion",
            &w.key
                .sign(&with(claims("rp-jwt", "j-iss", now), "aud", json!(ISS))),
        ),
    ]);
    let (status, body) = w.post(&w.plain, "/token", &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // the same assertion again
    w.refused(
        w.by_assertion(&good).await,
        "the client assertion was already used",
    );
    let c = |jti: &str| claims("rp-jwt", jti, now);
    let cases: Vec<(String, &str)> = vec![
        (
            w.key
                .sign(&with(c("j1"), "aud", json!("https://elsewhere/token"))),
            "the client assertion is for another audience",
        ),
        (
            w.key
                .sign(&with(c("j2"), "aud", json!([format!("{ISS}/userinfo")]))),
            "the client assertion is for another audience",
        ),
        (
            w.key.sign(&with(c("j3"), "exp", json!(now - 1))),
            "the client assertion has expired",
        ),
        (
            w.key.sign(&with(c("j4"), "nbf", json!(now + 300))),
            "the client assertion is not valid yet",
        ),
        (
            w.key.sign(&with(c("j5"), "iat", json!(now + 300))),
            "the client assertion was issued in the future",
        ),
        (
            w.key.sign(&with(c("j6"), "exp", json!(now + 86_400))),
            "the client assertion lives longer than 600 seconds",
        ),
        (
            w.key.sign(&with(c("j7"), "iss", json!("rp-uri"))),
            "the client assertion's `iss` and `sub` must both be the client id",
        ),
        (
            // `sub` names the client, `iss` another
            w.key
                .sign(&with(claims("rp-uri", "j8", now), "sub", json!("rp-jwt"))),
            "the client assertion's `iss` and `sub` must both be the client id",
        ),
        (
            // a key the client did not register, under its registered `kid`
            Key::new("k-1").sign(&c("j9")),
            "the client assertion's signature: bad signature",
        ),
        (
            Key::new("k-2").sign(&c("j10")),
            "the client assertion's signature: no published key `k-2` for this algorithm",
        ),
    ];
    for (assertion, reason) in &cases {
        w.refused(w.by_assertion(assertion).await, reason);
    }
    // `alg: none` and HS256 keyed with the registered public key
    let body = URL_SAFE_NO_PAD.encode(c("j11").to_string());
    let none = format!(
        "{}.{body}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "k-1"}).to_string())
    );
    w.refused(
        w.by_assertion(&none).await,
        "the client assertion's signature: algorithm `none` is not accepted",
    );
    let input = format!(
        "{}.{body}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": "k-1"}).to_string())
    );
    let hkey = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, w.key.pair.public_key().as_ref());
    let mac = ring::hmac::sign(&hkey, input.as_bytes());
    let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    w.refused(
        w.by_assertion(&hs).await,
        "the client assertion's signature: algorithm `HS256` is not accepted",
    );
    // a secret is not how this client authenticates
    let form = "grant_type=client_credentials&client_id=rp-jwt&client_secret=guess";
    w.refused(
        w.post(&w.plain, "/token", form).await,
        "the client authenticates by `private_key_jwt`",
    );
    // the token from the good assertion still works where tokens are checked
    let form = form_encode_pairs([
        ("client_assertion_type", ASSERTION_TYPE),
        (
            "client_assertion",
            &w.key.sign(&claims("rp-jwt", "j-introspect", now)),
        ),
    ]);
    let v = w.introspect(&w.plain, &form, &at).await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["client_id"], "rp-jwt");
    assert!(v.get("cnf").is_none());

    // the replay record is durable: a replay is refused after the store is reopened elsewhere
    // too (the `jti` is in the store, not in memory)
    assert!(
        !w.store
            .note_assertion(
                "rp-jwt",
                "j-ok",
                UnixTime::from_secs(now + 60),
                w.clock.now()
            )
            .unwrap()
    );
    w.stop().await;
}

#[tokio::test]
async fn a_jwks_uri_is_fetched_over_https_and_refetched_for_a_new_kid_once_per_interval() {
    let w = world().await;
    let now = w.now();
    let (status, body) = w
        .by_assertion(&w.rp_key.sign(&claims("rp-uri", "u1", now)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = w
        .by_assertion(&w.rp_key.sign(&claims("rp-uri", "u2", now)))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.rp_jwks.fetches.load(Ordering::SeqCst), 1, "cached");

    // the client rotates in a new key: its first assertion makes the provider fetch again
    w.clock.advance(Duration::from_secs(61));
    let now = w.now();
    let new_key = Key::new("rp-2");
    *w.rp_jwks.doc.lock().unwrap() = jwks(&[&w.rp_key, &new_key]);
    let (status, body) = w
        .by_assertion(&new_key.sign(&claims("rp-uri", "u3", now)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.rp_jwks.fetches.load(Ordering::SeqCst), 2);

    // an unknown kid within the interval: refused without another fetch
    let stranger = Key::new("rp-3");
    w.refused(
        w.by_assertion(&stranger.sign(&claims("rp-uri", "u4", now)))
            .await,
        "the client assertion's signature: no published key `rp-3` for this algorithm",
    );
    w.refused(
        w.by_assertion(&stranger.sign(&claims("rp-uri", "u5", now)))
            .await,
        "the client assertion's signature: no published key `rp-3` for this algorithm",
    );
    assert_eq!(w.rp_jwks.fetches.load(Ordering::SeqCst), 2);
    // once the interval has passed it is fetched again (and still unknown)
    w.clock.advance(Duration::from_secs(61));
    let now = w.now();
    w.refused(
        w.by_assertion(&stranger.sign(&claims("rp-uri", "u6", now)))
            .await,
        "the client assertion's signature: no published key `rp-3` for this algorithm",
    );
    assert_eq!(w.rp_jwks.fetches.load(Ordering::SeqCst), 3);
    w.stop().await;
}

#[tokio::test]
async fn tls_client_auth_binds_tokens_to_the_node_certificate() {
    let w = world().await;
    let form = "grant_type=client_credentials&client_id=node-app&scope=cases.read";
    let (status, body) = w.post(&w.n1, "/token", form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at = body["access_token"].as_str().unwrap().to_owned();
    let payload = at.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let x5t = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &w.n1_der));
    assert_eq!(claims["cnf"], json!({ "x5t#S256": x5t }));

    // without a certificate, or with another node's, the client is not authenticated
    w.refused(
        w.post(&w.plain, "/token", form).await,
        "no client certificate was presented",
    );
    w.refused(
        w.post(&w.n2, "/token", form).await,
        "the client certificate is not the one registered for the client",
    );
    // the registered subject under another CA: the chain does not verify with the zone's trust
    w.refused(
        w.post(&w.foreign, "/token", form).await,
        "the client certificate did not verify",
    );
    // nor with a secret or an assertion instead
    w.refused(
        w.post(&w.n1, "/token", &format!("{form}&client_secret=s3cret"))
            .await,
        "the client authenticates by `tls_client_auth`",
    );

    // introspection: active (with `cnf`) only over a connection presenting the certificate
    let me = "client_id=node-app";
    let v = w.introspect(&w.n1, me, &at).await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["cnf"]["x5t#S256"], x5t);
    let other = form_encode_pairs([
        ("client_assertion_type", ASSERTION_TYPE),
        (
            "client_assertion",
            &w.key.sign(&json!({
                "iss": "rp-jwt", "sub": "rp-jwt", "aud": ISS,
                "exp": w.now() + 60, "jti": "i-1",
            })),
        ),
    ]);
    assert_eq!(
        w.introspect(&w.plain, &other, &at).await,
        json!({"active": false})
    );
    let other2 = form_encode_pairs([
        ("client_assertion_type", ASSERTION_TYPE),
        (
            "client_assertion",
            &w.key.sign(&json!({
                "iss": "rp-jwt", "sub": "rp-jwt", "aud": ISS,
                "exp": w.now() + 60, "jti": "i-2",
            })),
        ),
    ]);
    assert_eq!(
        w.introspect(&w.n2, &other2, &at).await,
        json!({"active": false})
    );

    // a person's token by refresh, bound too: UserInfo only with the certificate
    let form = format!(
        "grant_type=refresh_token&client_id=node-app&{}",
        form_encode_pairs([("refresh_token", w.refresh_token.as_str())])
    );
    let (status, body) = w.post(&w.n1, "/token", &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let person_at = body["access_token"].as_str().unwrap().to_owned();
    let (status, _) = w.userinfo(&w.n1, &person_at).await;
    assert_eq!(status, StatusCode::OK);
    for http in [&w.plain, &w.n2] {
        let (status, challenge) = w.userinfo(http, &person_at).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            challenge.unwrap().contains("error=\"invalid_token\""),
            "a bound token without its certificate"
        );
    }
    w.stop().await;
}

// ---------------------------------------------------------------- the fuzz corpus

const FUZZ_TARGET: &str = "idp_client_assertion";

/// The seeds of `idp_client_assertion`: good assertions by the fuzz keys (ES256 and EdDSA) and by
/// a registered JWKS, and each kind of refusal.
fn write_fuzz_seeds() {
    use tianping_idp::internal::{FUZZ_ISSUER, FUZZ_NOW, fuzz_issuers};
    let dir = tianping_core::internal::corpus_dir(FUZZ_TARGET);
    std::fs::create_dir_all(&dir).unwrap();
    let w = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    let now = FUZZ_NOW.as_secs();
    let c = |jti: &str| {
        json!({
            "iss": tianping_idp::FUZZ_CLIENT, "sub": tianping_idp::FUZZ_CLIENT,
            "aud": format!("{FUZZ_ISSUER}/token"), "iat": now, "exp": now + 60, "jti": jti,
        })
    };
    let (es256, eddsa) = (&fuzz_issuers()[0], &fuzz_issuers()[1]);
    let sign = |claims: &Value| es256.keys().sign("JWT", claims).unwrap();
    w("es256.jwt", sign(&c("s1")).as_bytes());
    w(
        "eddsa.jwt",
        eddsa.keys().sign("JWT", &c("s2")).unwrap().as_bytes(),
    );
    w(
        "issuer-aud.jwt",
        sign(&with(c("s3"), "aud", json!(FUZZ_ISSUER))).as_bytes(),
    );
    w(
        "wrong-aud.jwt",
        sign(&with(c("s4"), "aud", json!("https://x"))).as_bytes(),
    );
    w(
        "expired.jwt",
        sign(&with(c("s5"), "exp", json!(now))).as_bytes(),
    );
    w(
        "too-long.jwt",
        sign(&with(c("s6"), "exp", json!(now + 3600))).as_bytes(),
    );
    w(
        "future-iat.jwt",
        sign(&with(c("s7"), "iat", json!(now + 600))).as_bytes(),
    );
    w(
        "other-iss.jwt",
        sign(&with(c("s8"), "iss", json!("x"))).as_bytes(),
    );
    w(
        "no-jti.jwt",
        sign(&with(c("s9"), "jti", json!(null))).as_bytes(),
    );
    let body = URL_SAFE_NO_PAD.encode(c("s10").to_string());
    let h = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    w(
        "alg-none.jwt",
        format!("{}.{body}.", h(json!({"alg": "none"}))).as_bytes(),
    );
    w(
        "hs256.jwt",
        format!(
            "{}.{body}.AAAA",
            h(json!({"alg": "HS256", "kid": es256.keys().kid()}))
        )
        .as_bytes(),
    );
    // an assertion by a key of a registered JWKS, then one with a private part
    let k = Key::new("reg-1");
    let jwks_text = jwks(&[&k]).to_string();
    w(
        "registered-jwks.txt",
        format!("{}\n{jwks_text}", k.sign(&c("s11"))).as_bytes(),
    );
    let mut private = k.jwk();
    private["d"] = json!("AAAA");
    w(
        "private-jwks.txt",
        format!("{}\n{}", k.sign(&c("s12")), json!({ "keys": [private] })).as_bytes(),
    );
    w("garbage.txt", b"\xff\xfe.not.a.jwt\n{\"keys\":");
}

#[test]
fn the_fuzz_corpus_replays_and_its_good_seeds_verify() {
    if std::env::var_os("IDP_WRITE_SEEDS").is_some() {
        write_fuzz_seeds();
    }
    let files = tianping_core::internal::corpus(FUZZ_TARGET).unwrap();
    assert!(files.len() >= 10);
    for (_, data) in &files {
        tianping_idp::fuzz_client_assertion(data);
    }
    // and with seeded mutations: a byte flipped, cut short
    let mut state: u64 = 0x5eed;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        state >> 33
    };
    for (_, data) in &files {
        for _ in 0..64 {
            let mut m = data.clone();
            if m.is_empty() {
                break;
            }
            let at = usize::try_from(next()).unwrap() % m.len();
            m[at] ^= 1 << (next() % 8);
            tianping_idp::fuzz_client_assertion(&m);
            m.truncate(at);
            tianping_idp::fuzz_client_assertion(&m);
        }
    }
    // the good seeds verify, so the fuzzer starts from real assertions
    use tianping_idp::internal::{FUZZ_ISSUER, FUZZ_NOW, fuzz_issuers};
    let keys: Vec<_> = fuzz_issuers()
        .iter()
        .flat_map(|i| i.keys().published(FUZZ_NOW))
        .collect();
    let policy = tianping_idp::AssertionPolicy::for_issuer(FUZZ_ISSUER);
    let read = |n: &str| {
        std::fs::read_to_string(tianping_core::internal::corpus_dir(FUZZ_TARGET).join(n)).unwrap()
    };
    for good in ["es256.jwt", "eddsa.jwt", "issuer-aud.jwt"] {
        tianping_idp::verify_assertion(
            &read(good),
            tianping_idp::FUZZ_CLIENT,
            &keys,
            &policy,
            FUZZ_NOW,
        )
        .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    let reg = read("registered-jwks.txt");
    let (assertion, jwks_text) = reg.split_once('\n').unwrap();
    let registered = tianping_idp::parse_jwks(jwks_text.as_bytes()).unwrap();
    tianping_idp::verify_assertion(
        assertion,
        tianping_idp::FUZZ_CLIENT,
        &registered,
        &policy,
        FUZZ_NOW,
    )
    .unwrap();
    for bad in [
        "wrong-aud.jwt",
        "expired.jwt",
        "too-long.jwt",
        "alg-none.jwt",
        "hs256.jwt",
    ] {
        assert!(
            tianping_idp::verify_assertion(
                &read(bad),
                tianping_idp::FUZZ_CLIENT,
                &keys,
                &policy,
                FUZZ_NOW
            )
            .is_err(),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_assertion_sent_at_once_many_times_is_accepted_once() {
    let w = world().await;
    let assertion = w.key.sign(&claims("rp-jwt", "race", w.now()));
    let tries = (0..8).map(|_| w.by_assertion(&assertion));
    let answers = futures_join_all(tries).await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(
            (*status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client"))
        );
    }
    w.stop().await;
}

/// Awaits every future, concurrently, in order.
async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = fs.map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (slot, res) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *res = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().map(Option::unwrap));
    out
}

/// The sled store at `dir` opened again: its flush thread can hold the lock a moment after the
/// store is dropped, so the open is retried, bounded.
fn reopen(dir: &std::path::Path) -> SledStore {
    (0..100)
        .find_map(|_| {
            SledStore::open(dir).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            })
        })
        .unwrap()
}

#[test]
fn the_sled_store_remembers_a_jti_across_a_reopen_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let t = UnixTime::from_secs;
    {
        let store = SledStore::open(dir.path()).unwrap();
        assert!(
            store
                .note_assertion("rp", "j1", t(START + 60), t(START))
                .unwrap()
        );
        assert!(
            !store
                .note_assertion("rp", "j1", t(START + 60), t(START + 1))
                .unwrap()
        );
        // another client's `jti` is its own
        assert!(
            store
                .note_assertion("rp2", "j1", t(START + 60), t(START))
                .unwrap()
        );
    }
    let store = reopen(dir.path());
    assert!(
        !store
            .note_assertion("rp", "j1", t(START + 60), t(START + 2))
            .unwrap()
    );
    // once past its time it may be used again (an assertion that old is refused as expired)
    assert!(
        store
            .note_assertion("rp", "j1", t(START + 200), t(START + 60))
            .unwrap()
    );
    assert!(
        !store
            .note_assertion("rp", "j1", t(START + 200), t(START + 61))
            .unwrap()
    );
    let keys = ClientKeys::TlsSubject("exchange-n1".into());
    store.put_client_keys("node-app", &keys).unwrap();
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(store.client_keys("node-app").unwrap(), Some(keys));
    assert_eq!(store.client_keys("other").unwrap(), None);
}
