//! A served gateway with real parts: its TLS listener, an HTTPS service behind it that records
//! what it receives, and an HTTPS stand-in for the zone's IdP (discovery and JWKS, its key
//! signing the access tokens the tests present). Clients are `reqwest` over HTTP/1.1 and
//! HTTP/2, and `curl` (installed by `.ci/run`) over both.
//!
//! Shown: the service sees the gateway's assertion (verifiable with the zone's trust bundle) and
//! request id, and none of the client's `X-Forwarded-User`, `Tianping-Assertion`,
//! `Authorization` or `Connection:`-named headers; a client certificate of the zone is an
//! identity; deny is 403 with the request id; a browser without a session is sent to the IdP
//! (code + PKCE S256 + state + nonce); every refused token is 401 with an `invalid_token`
//! challenge (alg none, HS256 keyed with the public key, expired, not yet valid, wrong audience,
//! wrong issuer, unknown kid, one bit flipped, certificate-bound without the certificate); a JWKS
//! that cannot be fetched fails closed; a sign-in too weak for a route is asked to step up (RFC
//! 9470 challenge); a subject over its rate gets 429; every decision is in the audit log with
//! the policy hash.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Request, Response};
use serde_json::{Value, json};
use tianping_audit::AuditLog;
use tianping_certs::{
    CaCert, CertKind, ClientAuth, KeyAlg, LeafRequest, ServerTlsBuilder, TokenClaims, TokenKind,
    TokenSigner, TokenVerifier, TrustStore, certs_from_pem,
};
use tianping_core::{
    Algorithm, RingSigner, Role, Secret, Signer, SystemClock, UnixTime, ZoneName,
    private_key_from_pem,
};
use tianping_gateway::{
    CookieKey, CookieSealer, Gateway, GatewayParts, Limits, ServiceBinding, Session,
};
use tianping_net::{
    Body, BoxFuture, Handler, HostSet, HttpsClientBuilder, Registry, ServerHandle, ServerOptions,
    full, serve_tls,
};

const POLICY: &str = r#"
levels confidentiality public < internal
levels integrity untrusted < court
zone private {
  confidentiality internal
  integrity court
  acr any >= pwd
}
service cases in private
route case-read in private {
  path /cases/**
  methods GET
  to service cases
  roles judge, clerk
}
route case-sign in private {
  path /cases/*/sign
  methods POST
  to service cases
  roles judge
  acr >= cert
}
"#;

const GW_HOST: &str = "gw.private.test";
const IDP_HOST: &str = "idp.private.test";
const KID: &str = "idp-key-1";

struct Pki {
    dir: PathBuf,
    trust_pem: String,
    zone: CaCert,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let now = UnixTime::from_system_time(std::time::SystemTime::now());
        let root = CaCert::new_root("Court", KeyAlg::EcP256, now).unwrap();
        let zone = root
            .new_zone(&"private".parse().unwrap(), "Court", KeyAlg::EcP256, now)
            .unwrap();
        let trust_pem = format!("{}{}", root.cert_pem(), zone.cert_pem());
        std::fs::write(dir.join("trust.pem"), &trust_pem).unwrap();
        Self {
            dir: dir.to_owned(),
            trust_pem,
            zone,
        }
    }

    fn trust_path(&self) -> PathBuf {
        self.dir.join("trust.pem")
    }

    /// A leaf written to `<name>.pem` / `<name>.key`; its chain and key PEM.
    fn leaf(&self, name: &str, req: &LeafRequest) -> (PathBuf, PathBuf, String, String) {
        let now = UnixTime::from_system_time(std::time::SystemTime::now());
        let leaf = self.zone.issue(req, now).unwrap();
        let (pem, key) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&pem, &leaf.chain_pem).unwrap();
        std::fs::write(&key, leaf.key_pem.expose()).unwrap();
        (
            pem,
            key,
            leaf.chain_pem.clone(),
            leaf.key_pem.expose().clone(),
        )
    }

    fn server(&self, name: &str, dns: &str) -> (PathBuf, PathBuf) {
        let mut req = LeafRequest::new(CertKind::Server, name);
        req.dns = vec![dns.into()];
        let (p, k, _, _) = self.leaf(name, &req);
        (p, k)
    }
}

// ------------------------------------------------------------------ the IdP's stand-in

struct FakeIdp {
    signer: RingSigner,
    issuer: Mutex<String>,
}

fn jwk(key: &tianping_core::PublicKey, kid: &str) -> Value {
    let b = key.as_bytes();
    json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(b.get(1..33).unwrap()),
        "y": URL_SAFE_NO_PAD.encode(b.get(33..65).unwrap()),
    })
}

#[derive(Clone)]
struct IdpHandler(Arc<FakeIdp>);

impl Handler for IdpHandler {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let idp = Arc::clone(&self.0);
        Box::pin(async move {
            let iss = idp.issuer.lock().unwrap().clone();
            let body = match req.uri().path() {
                "/.well-known/openid-configuration" => json!({
                    "issuer": iss,
                    "authorization_endpoint": format!("{iss}/authorize"),
                    "token_endpoint": format!("{iss}/token"),
                    "jwks_uri": format!("{iss}/jwks"),
                }),
                "/jwks" => json!({ "keys": [jwk(&idp.signer.public_key(), KID)] }),
                _ => json!({ "error": "not here" }),
            };
            Response::new(full(body.to_string()))
        })
    }
}

impl FakeIdp {
    fn token(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.signer.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_bytes()))
    }

    fn claims(&self) -> Value {
        let now = UnixTime::from_system_time(std::time::SystemTime::now()).as_secs();
        json!({
            "iss": self.issuer.lock().unwrap().clone(), "aud": "tianping", "client_id": "case-app",
            "exp": now + 300, "iat": now, "jti": format!("jti-{now}-{}", rand_u64()),
            "scope": "openid", "sub": "judge-0001", "roles": ["judge"], "court": "bj.01",
            "clearance": "none", "acr": "otp", "amr": ["pwd", "otp"], "zone": "private",
            "auth_time": now,
        })
    }

    fn header() -> Value {
        json!({ "alg": "ES256", "typ": "at+jwt", "kid": KID })
    }
}

fn rand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

// ------------------------------------------------------------------ the service behind

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(http::Version, HeaderMap, String)>>,
}

#[derive(Clone)]
struct Service(Arc<Seen>);

impl Handler for Service {
    fn call(&self, req: Request<Body>) -> BoxFuture {
        let seen = Arc::clone(&self.0);
        Box::pin(async move {
            seen.requests.lock().unwrap().push((
                req.version(),
                req.headers().clone(),
                req.uri().to_string(),
            ));
            let mut r = Response::new(full("case 1\n"));
            // a service may set its cookies, never the gateway's
            for c in ["__Host-tianping-session=forged; Path=/", "app=1; Path=/"] {
                r.headers_mut()
                    .append("set-cookie", http::HeaderValue::from_static(c));
            }
            r
        })
    }
}

async fn serve(
    addr: &str,
    host: &str,
    pem: PathBuf,
    key: PathBuf,
    handler: impl Handler,
) -> ServerHandle {
    let tls = ServerTlsBuilder::new(pem, key).build().unwrap();
    let mut options = ServerOptions::new(HostSet::new([host]));
    options.http3 = false;
    serve_tls(addr.parse().unwrap(), Arc::new(tls), options, handler)
        .await
        .unwrap()
}

// ------------------------------------------------------------------ the gateway

struct World {
    handle: Gateway,
    _tmp: tempfile::TempDir,
    pki: Pki,
    idp: Arc<FakeIdp>,
    seen: Arc<Seen>,
    gateway: ServerHandle,
    audit: Arc<AuditLog>,
    client_pem: String,
    _servers: Vec<ServerHandle>,
    policy_hash: String,
}

async fn world(idp_reachable: bool) -> World {
    world_with(idp_reachable, Limits::default(), false).await
}

async fn world_with(idp_reachable: bool, limits: Limits, audit_sync: bool) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    // the IdP's stand-in
    let (signer, _) = RingSigner::generate(Algorithm::Es256).unwrap();
    let idp = Arc::new(FakeIdp {
        signer,
        issuer: Mutex::new(String::new()),
    });
    let (ip, ik) = pki.server("idp", IDP_HOST);
    let idp_server = serve(
        "127.0.0.1:0",
        IDP_HOST,
        ip,
        ik,
        IdpHandler(Arc::clone(&idp)),
    )
    .await;
    let idp_addr: SocketAddr = idp_server.local_addr();
    let mut servers = vec![];
    if idp_reachable {
        servers.push(idp_server);
    } else {
        // nothing listens there any more
        idp_server.shutdown().await;
    }
    *idp.issuer.lock().unwrap() = format!("https://{IDP_HOST}:{}", idp_addr.port());
    // the service
    let seen = Arc::new(Seen::default());
    let (sp, sk) = pki.server("cases", "localhost");
    let service = serve(
        "127.0.0.1:0",
        "localhost",
        sp,
        sk,
        Service(Arc::clone(&seen)),
    )
    .await;
    let service_url = format!("https://localhost:{}/", service.local_addr().port());
    servers.push(service);
    // the gateway's own certificates
    let (gp, gk) = pki.server("gateway-tls", GW_HOST);
    let (_, _, node_pem, node_key) =
        pki.leaf("gateway-node", &LeafRequest::new(CertKind::Node, GW_HOST));
    let pkcs8 = private_key_from_pem(&node_key).unwrap();
    let node = RingSigner::from_pkcs8_any(pkcs8.expose()).unwrap();
    let public = node.public_key();
    let chain = certs_from_pem(node_pem.as_bytes()).unwrap();
    let chain_der = chain.iter().map(|c| c.as_ref().to_vec()).collect();
    // a person's client certificate
    let mut creq = LeafRequest::new(CertKind::Client, "Judge Wang");
    creq.subject = Some("judge-0002".parse().unwrap());
    creq.court = Some("bj.01".parse().unwrap());
    creq.roles = vec![Role::Judge];
    let (_, _, cchain, ckey) = pki.leaf("judge", &creq);

    let zone: ZoneName = "private".parse().unwrap();
    let policy = tianping_policies::check("t.tp", POLICY)
        .into_policy()
        .unwrap();
    let policy_hash = policy.hash().to_string();
    let audit = Arc::new(
        AuditLog::open_or_create(&tmp.path().join("audit"), "test/audit/private/gateway").unwrap(),
    );
    let idp_http = HttpsClientBuilder::new(pki.trust_pem.clone())
        .client_cert(node_pem.clone(), node_key.clone())
        .resolve(IDP_HOST, idp_addr)
        .build()
        .unwrap();
    let mut services = BTreeMap::new();
    services.insert(
        "cases".to_owned(),
        ServiceBinding::Url {
            url: service_url,
            ca_pem: pki.trust_pem.clone().into_bytes(),
        },
    );
    let slot: Arc<std::sync::OnceLock<Gateway>> = Arc::new(std::sync::OnceLock::new());
    let tls = ServerTlsBuilder::new(gp, gk)
        .client_auth(ClientAuth::Request, pki.trust_path(), vec![])
        .client_zone(zone.clone())
        .build()
        .unwrap();
    // the gateway answers over HTTP/3 too, on the same port (UDP)
    let options = ServerOptions::new(HostSet::new([GW_HOST]));
    let front = Arc::clone(&slot);
    let gateway = serve_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(tls),
        options,
        move |req: Request<Body>| {
            let g = front.get().cloned();
            async move { g.unwrap().call(req).await }
        },
    )
    .await
    .unwrap();
    let g = Gateway::new(GatewayParts {
        zone,
        policy,
        services,
        public_url: format!("https://{GW_HOST}:{}", gateway.local_addr().port()),
        issuer: idp.issuer.lock().unwrap().clone(),
        client_id: "gateway".into(),
        token_audience: "tianping".into(),
        idp_http,
        cookie_keys: vec![CookieKey::new(1, &Secret::new([7u8; 32])).unwrap()],
        assertion_signer: TokenSigner::new(Arc::new(node), &chain).unwrap(),
        assertion_key: (public, chain_der),
        node_identity: Some((node_pem.into_bytes(), node_key.into_bytes())),
        audit: Arc::clone(&audit),
        limits,
        clock: Arc::new(SystemClock),
        metrics: Registry::new(),
        exchange_sender: None,
        exchange_receiver: None,
        audit_sync,
    })
    .unwrap();
    let handle = g.clone();
    slot.set(g).unwrap();
    World {
        handle,
        _tmp: tmp,
        pki,
        idp,
        seen,
        gateway,
        audit,
        client_pem: format!("{cchain}{ckey}"),
        _servers: servers,
        policy_hash,
    }
}

impl World {
    fn client(&self, h2: bool, cert: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(GW_HOST, self.gateway.local_addr());
        b = if h2 {
            b.http2_prior_knowledge()
        } else {
            b.http1_only()
        };
        for c in reqwest::Certificate::from_pem_bundle(self.pki.trust_pem.as_bytes()).unwrap() {
            b = b.add_root_certificate(c);
        }
        if cert {
            b = b.identity(reqwest::Identity::from_pem(self.client_pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!(
            "https://{GW_HOST}:{}{path}",
            self.gateway.local_addr().port()
        )
    }

    fn verifier(&self) -> TokenVerifier {
        let trust = TrustStore::from_pem(self.pki.trust_pem.as_bytes(), &[]).unwrap();
        TokenVerifier::new(
            &trust,
            &"private".parse().unwrap(),
            "cases",
            TokenKind::User,
        )
        .unwrap()
    }

    fn last_seen(&self) -> (http::Version, HeaderMap, String) {
        self.seen.requests.lock().unwrap().last().cloned().unwrap()
    }

    fn events(&self) -> Vec<tianping_audit::Event> {
        self.audit.sync().unwrap();
        (0..self.audit.size())
            .map(|i| self.audit.get(i).unwrap().unwrap().event)
            .collect()
    }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_sees_the_assertion_and_none_of_the_clients_identity_headers() {
    let w = world(true).await;
    let verifier = w.verifier();
    for (h2, version) in [
        (false, http::Version::HTTP_11),
        (true, http::Version::HTTP_2),
    ] {
        let token = w.idp.token(&FakeIdp::header(), &w.idp.claims());
        let r = w
            .client(h2, false)
            .get(w.url("/cases/1?x=1"))
            .bearer_auth(&token)
            .header("x-forwarded-user", "admin")
            .header("tianping-assertion", "forged")
            .header("x-request-id", "client-chosen")
            .header("connection", "x-secret")
            .header("x-secret", "1")
            .header("x-forwarded-for", "6.6.6.6")
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), version);
        let status = r.status();
        let request_id = header(&r, "x-request-id").to_owned();
        assert_eq!(status, 200, "{}", r.text().await.unwrap());
        let cookies: Vec<_> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(cookies, ["app=1; Path=/"]);
        assert_eq!(r.text().await.unwrap(), "case 1\n");
        let (_, seen, uri) = w.last_seen();
        assert!(uri.ends_with("/cases/1?x=1"), "{uri}");
        assert!(!seen.contains_key("x-forwarded-user"), "{seen:?}");
        assert!(!seen.contains_key("authorization"), "{seen:?}");
        assert!(!seen.contains_key("x-secret"), "{seen:?}");
        assert_eq!(seen.get("x-forwarded-for").unwrap(), "127.0.0.1");
        assert_eq!(seen.get("x-forwarded-proto").unwrap(), "https");
        let assertion = seen.get("tianping-assertion").unwrap().to_str().unwrap();
        assert_ne!(assertion, "forged");
        let v = verifier
            .verify_at(
                assertion.as_bytes(),
                UnixTime::from_system_time(std::time::SystemTime::now()),
            )
            .unwrap();
        let TokenClaims::User(u) = v.claims else {
            panic!("not a user token")
        };
        assert_eq!(u.sub.as_str(), "judge-0001");
        assert_eq!(u.roles, vec![Role::Judge]);
        assert_eq!(
            seen.get("x-request-id").unwrap().to_str().unwrap(),
            request_id
        );
        assert_ne!(request_id, "client-chosen");
    }
    // both went over pooled connections to the service, by whatever protocol it chose
    assert_eq!(w.seen.requests.lock().unwrap().len(), 2);
    let events = w.events();
    let allowed: Vec<_> = events
        .iter()
        .filter(|e| e.action == "request" && e.outcome == "allow")
        .collect();
    assert_eq!(allowed.len(), 2, "{events:?}");
    for e in allowed {
        assert_eq!(
            e.policy_hash.map(|h| h.to_string()),
            Some(w.policy_hash.clone())
        );
        assert_eq!(e.actor, "judge-0001");
        assert_eq!(e.object, "case-read");
        assert_eq!(e.path, "/cases/1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_an_identity_deny_is_403_and_a_browser_signs_in() {
    let w = world(true).await;
    let r = w
        .client(false, true)
        .get(w.url("/cases/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, seen, _) = w.last_seen();
    let assertion = seen.get("tianping-assertion").unwrap().to_str().unwrap();
    let v = w
        .verifier()
        .verify_at(
            assertion.as_bytes(),
            UnixTime::from_system_time(std::time::SystemTime::now()),
        )
        .unwrap();
    let TokenClaims::User(u) = v.claims else {
        panic!("not a user token")
    };
    assert_eq!(u.sub.as_str(), "judge-0002");
    assert_eq!(
        u.acr,
        tianping_core::Acr::Pwd,
        "a software key is one factor"
    );

    // deny: 403 with the request id, nothing forwarded
    let before = w.seen.requests.lock().unwrap().len();
    let token = w.idp.token(&FakeIdp::header(), &w.idp.claims());
    for h2 in [false, true] {
        let r = w
            .client(h2, false)
            .delete(w.url("/cases/7"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let id = header(&r, "x-request-id").to_owned();
        assert_eq!(id.len(), 32, "{id}");
        let body = r.text().await.unwrap();
        assert!(body.contains(&id), "{body}");
    }
    assert_eq!(w.seen.requests.lock().unwrap().len(), before);

    // a browser without a session: to the IdP's authorization endpoint
    let r = w
        .client(false, false)
        .get(w.url("/cases/7"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = header(&r, "location").to_owned();
    let issuer = w.idp.issuer.lock().unwrap().clone();
    assert!(
        location.starts_with(&format!("{issuer}/authorize?")),
        "{location}"
    );
    for part in [
        "response_type=code",
        "client_id=gateway",
        "scope=openid",
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        &format!(
            "redirect_uri=https%3A%2F%2F{GW_HOST}%3A{}%2F.tianping%2Fcallback",
            w.gateway.local_addr().port()
        ),
    ] {
        assert!(location.contains(part), "{part} in {location}");
    }
    let cookie = header(&r, "set-cookie");
    assert!(cookie.starts_with("__Host-tianping-signin="), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // a program without credentials: 401 with a challenge
    let r = w
        .client(true, false)
        .get(w.url("/cases/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").starts_with("Bearer realm=\"tianping\""));
    // a callback naming another issuer is refused (RFC 9207)
    let r = w
        .client(false, false)
        .get(w.url("/.tianping/callback?code=c&state=s&iss=https%3A%2F%2Fevil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("issuer"));
    // the assertion key is published
    let jwks: Value = w
        .client(false, false)
        .get(w.url("/.tianping/jwks.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(
        jwks["keys"][0]["x5c"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_token_is_401_invalid_token() {
    let w = world(true).await;
    let now = UnixTime::from_system_time(std::time::SystemTime::now()).as_secs();
    let with = |k: &str, v: Value| {
        let mut c = w.idp.claims();
        c[k] = v;
        c
    };
    let h = FakeIdp::header();
    let good = w.idp.token(&h, &w.idp.claims());
    // HS256 keyed with the IdP's public key
    let hs = {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD
                .encode(json!({"alg": "HS256", "typ": "at+jwt", "kid": KID}).to_string()),
            URL_SAFE_NO_PAD.encode(w.idp.claims().to_string())
        );
        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            w.idp.signer.public_key().as_bytes(),
        );
        let tag = ring::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt"}).to_string()),
        URL_SAFE_NO_PAD.encode(w.idp.claims().to_string())
    );
    let flipped = {
        let mut b = good.clone().into_bytes();
        let i = b.len() - 5;
        let c = b.get_mut(i).unwrap();
        *c = if *c == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let cases = [
        ("alg none", none, "algorithm"),
        ("HS256 with the public key", hs, "algorithm"),
        (
            "expired",
            w.idp.token(&h, &with("exp", json!(now - 3600))),
            "expired",
        ),
        (
            "not yet valid",
            w.idp.token(&h, &with("nbf", json!(now + 3600))),
            "not valid before",
        ),
        (
            "wrong audience",
            w.idp.token(&h, &with("aud", json!("case-app"))),
            "not for this gateway",
        ),
        (
            "wrong issuer",
            w.idp
                .token(&h, &with("iss", json!("https://idp.evil.example"))),
            "issued by",
        ),
        (
            "unknown kid",
            w.idp.token(
                &json!({"alg": "ES256", "typ": "at+jwt", "kid": "nope"}),
                &w.idp.claims(),
            ),
            "no key",
        ),
        ("one bit changed", flipped, "signature"),
        (
            "bound to a certificate not presented",
            w.idp.token(
                &h,
                &with(
                    "cnf",
                    json!({"x5t#S256": URL_SAFE_NO_PAD.encode([9u8; 32])}),
                ),
            ),
            "bound to a client certificate",
        ),
    ];
    let client = w.client(true, false);
    for (what, token, why) in cases {
        let r = client
            .get(w.url("/cases/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let challenge = header(&r, "www-authenticate");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(challenge.contains(why), "{what}: {challenge}");
    }
    assert!(
        w.seen.requests.lock().unwrap().is_empty(),
        "nothing forwarded"
    );
    // the good one passes
    let r = client
        .get(w.url("/cases/1"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_that_cannot_be_fetched_fails_closed() {
    let w = world(false).await;
    let token = w.idp.token(&FakeIdp::header(), &w.idp.claims());
    let r = w
        .client(false, false)
        .get(w.url("/cases/1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = header(&r, "www-authenticate");
    assert!(challenge.contains("keys are not available"), "{challenge}");
    assert!(w.seen.requests.lock().unwrap().is_empty());
    let denied = w
        .events()
        .into_iter()
        .filter(|e| e.action == "request" && e.outcome == "deny")
        .count();
    assert_eq!(denied, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_http2_and_http1_is_served_with_the_assertion_alone() {
    let w = world(true).await;
    let port = w.gateway.local_addr().port();
    let trust = w.pki.trust_path();
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let token = w.idp.token(&FakeIdp::header(), &w.idp.claims());
        let out = tokio::process::Command::new("curl")
            .args(["-sS", flag, "--cacert"])
            .arg(&trust)
            .args([
                "--resolve",
                &format!("{GW_HOST}:{port}:127.0.0.1"),
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                "X-Forwarded-User: admin",
                "-H",
                "Tianping-Assertion: forged",
                "-w",
                "\n%{http_code} %{http_version}",
                &format!("https://{GW_HOST}:{port}/cases/3"),
            ])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout, format!("case 1\n\n200 {version}"));
        let (_, seen, _) = w.last_seen();
        assert!(!seen.contains_key("x-forwarded-user"), "{seen:?}");
        let assertion = seen.get("tianping-assertion").unwrap().to_str().unwrap();
        let now = UnixTime::from_system_time(std::time::SystemTime::now());
        let v = w.verifier().verify_at(assertion.as_bytes(), now).unwrap();
        let TokenClaims::User(u) = v.claims else {
            panic!("not a user token")
        };
        assert_eq!(u.sub.as_str(), "judge-0001");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weak_sign_in_is_asked_to_step_up_and_a_subject_over_its_rate_gets_429() {
    let w = world_with(
        true,
        Limits {
            subject_rate: 0,
            subject_burst: 3,
            ..Limits::default()
        },
        false,
    )
    .await;
    let token = w.idp.token(&FakeIdp::header(), &w.idp.claims());
    let client = w.client(true, false);
    // the token's acr is otp; signing needs cert: 401 with an RFC 9470 step-up challenge
    let r = client
        .post(w.url("/cases/1/sign"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = header(&r, "www-authenticate");
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(challenge.contains("acr_values=\"cert\""), "{challenge}");
    // two more within the burst (of 3, never refilled here), then 429
    for _ in 0..2 {
        let r = client
            .get(w.url("/cases/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = client
        .get(w.url("/cases/1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "1");
    // another person is not counted with them
    let mut other = w.idp.claims();
    other["sub"] = json!("judge-0003");
    let t = w.idp.token(&FakeIdp::header(), &other);
    let r = client
        .get(w.url("/cases/1"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_a_bounded_number_of_sign_ins_in_progress() {
    let w = world(true).await;
    let client = w.client(false, false);
    let mut started = Vec::new();
    for _ in 0..40 {
        let r = client
            .get(w.url("/cases/1"))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let location = header(&r, "location").to_owned();
        let state = location
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("state="))
            .unwrap()
            .to_owned();
        started.push(state);
    }
    let iss = w.idp.issuer.lock().unwrap().clone();
    let callback = |state: &str| {
        let url = w.url(&format!(
            "/.tianping/callback?code=c&state={state}&iss={}",
            iss.replace(':', "%3A").replace('/', "%2F")
        ));
        let cookie = format!("__Host-tianping-signin={state}");
        let client = client.clone();
        async move {
            let r = client
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
            r.text().await.unwrap()
        }
    };
    // the oldest gave way to the newest (32 per address)
    let first = callback(started.first().unwrap()).await;
    assert!(first.contains("unknown or expired"), "{first}");
    let last = callback(started.last().unwrap()).await;
    assert!(!last.contains("unknown or expired"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sync_mode_a_decision_is_durable_before_the_answer() {
    let w = world_with(true, Limits::default(), true).await;
    let token = w.idp.token(&FakeIdp::header(), &w.idp.claims());
    for n in 1..=3u64 {
        let r = w
            .client(true, false)
            .get(w.url("/cases/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // no sync asked for: durable already when answered
        assert!(w.audit.size() >= n, "{} durable after {n}", w.audit.size());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_an_identity_its_keys_rotate_and_a_backchannel_logout_ends_it() {
    let w = world(true).await;
    let zone: ZoneName = "private".parse().unwrap();
    let now = UnixTime::from_system_time(std::time::SystemTime::now()).as_secs();
    let session = Session {
        id: "0123456789abcdef0123456789abcdef".into(),
        sid: Some("idp-sid-1".into()),
        sub: "judge-0004".parse().unwrap(),
        roles: vec![Role::Judge],
        court: Some("bj.01".parse().unwrap()),
        clearance: tianping_core::Clearance::None,
        acr: tianping_core::Acr::Otp,
        amr: vec![],
        auth_time: now,
        last_used: now,
    };
    let key = |id: u32, b: u8| CookieKey::new(id, &Secret::new([b; 32])).unwrap();
    let cookie = |keys: Vec<CookieKey>| {
        let sealer = CookieSealer::new(&zone, keys, Limits::default()).unwrap();
        format!(
            "__Host-tianping-session={}; app=1",
            sealer.seal(&session).unwrap()
        )
    };
    let client = w.client(true, false);
    let get = |cookie: String| {
        let (client, url) = (client.clone(), w.url("/cases/1"));
        async move {
            client
                .get(url)
                .header("cookie", cookie)
                .header("accept", "text/html")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let old = cookie(vec![key(1, 7)]);
    assert_eq!(get(old.clone()).await, 200);
    let (_, seen, _) = w.last_seen();
    assert_eq!(
        seen.get("cookie").unwrap(),
        "app=1",
        "the session cookie stays at the gateway"
    );
    let assertion = seen.get("tianping-assertion").unwrap().to_str().unwrap();
    let v = w
        .verifier()
        .verify_at(assertion.as_bytes(), UnixTime::from_secs(now))
        .unwrap();
    let TokenClaims::User(u) = v.claims else {
        panic!("not a user token")
    };
    assert_eq!(u.sub.as_str(), "judge-0004");
    // a new key seals from now on; the old one still opens
    assert_eq!(
        w.handle
            .reload_cookie_keys(vec![key(1, 7), key(2, 8)])
            .unwrap(),
        Some(2)
    );
    assert_eq!(get(old.clone()).await, 200);
    // the old key dropped: its sessions are over, the new key's are not
    w.handle.reload_cookie_keys(vec![key(2, 8)]).unwrap();
    assert_eq!(get(old).await, 302);
    let new = cookie(vec![key(2, 8)]);
    assert_eq!(get(new.clone()).await, 200);
    // the IdP's back-channel logout of its session `idp-sid-1` ends it
    let iss = w.idp.issuer.lock().unwrap().clone();
    let logout = w.idp.token(
        &json!({ "alg": "ES256", "typ": "logout+jwt", "kid": KID }),
        &json!({
            "iss": iss, "aud": "gateway", "iat": now, "exp": now + 120, "jti": "bcl-9",
            "sid": "idp-sid-1",
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        }),
    );
    let r = client
        .post(w.url("/.tianping/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={logout}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(new).await, 302);
    // a logout token of another audience is refused
    let other = w.idp.token(
        &json!({ "alg": "ES256", "typ": "logout+jwt", "kid": KID }),
        &json!({
            "iss": w.idp.issuer.lock().unwrap().clone(), "aud": "case-app", "iat": now,
            "jti": "bcl-10", "sub": "judge-0004",
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        }),
    );
    let r = client
        .post(w.url("/.tianping/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// Requests per second and p99 through the gateway (bearer token, a policy decision, an audit
/// event and a forwarded request each), 64 concurrent over HTTP/2 from one client on the same
/// machine. Ignored by default: run with
/// `cargo test --release -p tianping-gateway --all-features --test serve -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn measure_requests_per_second() {
    for sync in [false, true] {
        measure(sync).await;
    }
}

async fn measure(sync: bool) {
    // one token stands for all the clients here: no per-subject limit in the way
    let w = world_with(
        true,
        Limits {
            subject_rate: 1_000_000,
            subject_burst: 1_000_000,
            ..Limits::default()
        },
        sync,
    )
    .await;
    let mode = if sync { "sync audit" } else { "queued audit" };
    let token = Arc::new(w.idp.token(&FakeIdp::header(), &w.idp.claims()));
    for (name, h2) in [("HTTP/2", true), ("HTTP/1.1", false)] {
        let client = w.client(h2, false);
        let url = Arc::new(w.url("/cases/1"));
        // warm: the JWKS, the token cache, the pools
        for _ in 0..64 {
            let r = client
                .get(url.as_str())
                .bearer_auth(token.as_str())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let per_task = 200;
        let start = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (client, url, token) = (client.clone(), Arc::clone(&url), Arc::clone(&token));
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let t = std::time::Instant::now();
                    let r = client
                        .get(url.as_str())
                        .bearer_auth(token.as_str())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    let _ = r.bytes().await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let took = start.elapsed();
        all.sort();
        let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or_default();
        println!(
            "{name}, {mode}: {} requests in {took:?}: {:.0} requests/s, p99 {p99:?}",
            all.len(),
            all.len() as f64 / took.as_secs_f64()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_over_quinn_is_served_with_the_assertion_alone() {
    use bytes::Buf as _;
    let w = world(true).await;
    let addr = w.gateway.local_addr();
    let mut roots = rustls::RootCertStore::empty();
    for c in tianping_certs::certs_from_pem(w.pki.trust_pem.as_bytes()).unwrap() {
        roots.add(c).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = ep.connect(addr, GW_HOST).unwrap().await.unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    let drive = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let token = w.idp.token(&FakeIdp::header(), &w.idp.claims());
    let req = http::Request::get(format!("https://{GW_HOST}:{}/cases/3", addr.port()))
        .header("authorization", format!("Bearer {token}"))
        .header("x-forwarded-user", "admin")
        .header("tianping-assertion", "forged")
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    stream.finish().await.unwrap();
    let resp = stream.recv_response().await.unwrap();
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    assert_eq!(resp.status(), 200);
    assert_eq!(String::from_utf8(body).unwrap(), "case 1\n");
    assert!(resp.headers().contains_key("x-request-id"));
    // the service saw the assertion of the token's person, and none of the client's identity
    let (_, seen, _) = w.last_seen();
    assert!(!seen.contains_key("x-forwarded-user"), "{seen:?}");
    assert!(!seen.contains_key("authorization"), "{seen:?}");
    let assertion = seen.get("tianping-assertion").unwrap().to_str().unwrap();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let v = w.verifier().verify_at(assertion.as_bytes(), now).unwrap();
    let TokenClaims::User(u) = v.claims else {
        panic!("not a user token")
    };
    assert_eq!(u.sub.as_str(), "judge-0001");
    // a forged token is refused over HTTP/3 as over TCP
    let req = http::Request::get(format!("https://{GW_HOST}:{}/cases/3", addr.port()))
        .header("authorization", "Bearer e30.e30.AAAA")
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    stream.finish().await.unwrap();
    assert_eq!(stream.recv_response().await.unwrap().status(), 401);
    drop(send);
    drive.abort();
    ep.close(0u32.into(), b"done");
}
