//! People's `tianping login` tokens on the control sockets of the components that do not hold
//! the zone's IdP keys themselves (the exchange sender and receiver, the audit store): DESIGN §9
//! "Who is acting" — the CLI presents `run/admin-<zone>.token` on any component's socket, and the
//! component knows who is asking. (The IdP checks them against its own store, the gateway with
//! the JWKS it keeps for bearer tokens.)
//!
//! A token passes when it is an access token of the zone's IdP (its `issuer`, the discovery
//! document's `jwks_uri` keys), for the audience `tianping-control:<zone>` the IdP gives the
//! `tianping-cli` client, unexpired, at most 15 minutes long. The keys are fetched over HTTPS
//! (the zone's trust bundle) in the background: at start, again after a failure (backing off to
//! 30 s), every 5 minutes, and at once (at most every 10 s) when a token names a key not held.
//! Until the first fetch succeeds every person's token is refused, saying so (fail closed);
//! node tokens and the gateway's assertions do not depend on it.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tianping_certs::{CertKind, CourtIdentity};
use tianping_core::{Component, DataDir, Fabric, Listener, UnixTime, ZoneName};
use tianping_gateway::{BearerError, BearerVerifier, Jwks, Limits};
use tianping_net::{CallerRefusal, CallerVerifier, Credential, HttpsClientBuilder};

/// The longest a `tianping login` token lives (the IdP issues them for 15 minutes).
const LOGIN_TOKEN_LIFE: Duration = Duration::from_secs(15 * 60);
/// How often the keys are fetched again while all is well.
const REFRESH: Duration = Duration::from_secs(5 * 60);
/// The longest wait between failed fetches.
const MOST_BACKOFF: Duration = Duration::from_secs(30);
/// The least time between fetches asked by tokens naming an unknown key, so a stream of forged
/// `kid`s costs the IdP one request per interval.
const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(10);

/// Verifies the zone's `tianping login` tokens with the zone IdP's published keys.
pub(crate) struct LoginTokens {
    zone: ZoneName,
    verifier: Arc<RwLock<Option<Arc<BearerVerifier>>>>,
    wake: Arc<tokio::sync::Notify>,
    last_wake: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for LoginTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginTokens")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl LoginTokens {
    /// Starts fetching the keys of `zone`'s IdP on `rt` (where it publishes its public address,
    /// read again before each fetch: it may start after this component).
    pub(crate) fn spawn(
        dir: &DataDir,
        fabric: &Fabric,
        zone: &ZoneName,
        rt: &tokio::runtime::Handle,
    ) -> miette::Result<Self> {
        use miette::{IntoDiagnostic as _, WrapErr as _};
        let host = fabric
            .zone(zone)
            .map(|z| z.idp_host.clone())
            .ok_or_else(|| miette::miette!("`fabric.toml` has no zone `{zone}`"))?;
        let trust_path = dir.zone_trust_bundle(zone);
        let trust = std::fs::read(&trust_path)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading `{}`", trust_path.display()))?;
        let verifier = Arc::new(RwLock::new(None));
        let wake = Arc::new(tokio::sync::Notify::new());
        let fetcher = Fetcher {
            dir: dir.clone(),
            fabric: fabric.clone(),
            zone: zone.clone(),
            host,
            trust,
            verifier: Arc::clone(&verifier),
        };
        rt.spawn(fetcher.run(Arc::clone(&wake)));
        Ok(Self {
            zone: zone.clone(),
            verifier,
            wake,
            last_wake: Mutex::new(None),
        })
    }

    /// Asks the fetcher for the keys now, unless it was asked less than
    /// [`UNKNOWN_KID_INTERVAL`] ago.
    fn ask_for_keys(&self) {
        let mut last = self
            .last_wake
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= UNKNOWN_KID_INTERVAL) {
            *last = Some(Instant::now());
            self.wake.notify_one();
        }
    }
}

impl CallerVerifier for LoginTokens {
    fn verify(
        &self,
        credential: &Credential,
        now: UnixTime,
    ) -> Result<CourtIdentity, CallerRefusal> {
        let Credential::Bearer(token) = credential else {
            return Err(CallerRefusal::Refused(
                "a person's `tianping login` token is a bearer token".into(),
            ));
        };
        let verifier = self
            .verifier
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(verifier) = verifier else {
            self.ask_for_keys();
            return Err(CallerRefusal::Refused(format!(
                "the keys of `{}`'s IdP are not fetched yet: people's tokens cannot be checked",
                self.zone
            )));
        };
        let t = verifier
            .verify(token.expose().as_bytes(), None, now)
            .map_err(|e| {
                if matches!(e, BearerError::UnknownKid(_)) {
                    self.ask_for_keys();
                }
                CallerRefusal::Refused(e.to_string())
            })?;
        let longest = LOGIN_TOKEN_LIFE.saturating_add(Limits::default().clock_skew);
        if t.expires_at > now.saturating_add(longest) {
            return Err(CallerRefusal::Refused(
                "a control token lives at most 15 minutes".into(),
            ));
        }
        Ok(CourtIdentity {
            name: t.sub.to_string(),
            subject: Some(t.sub.clone()),
            court: t.court.clone(),
            roles: t.roles.clone(),
            zone: self.zone.clone(),
            kind: CertKind::Client,
            fingerprint: [0; 32],
            hardware: false,
        })
    }
}

/// The background task that keeps the keys.
struct Fetcher {
    dir: DataDir,
    fabric: Fabric,
    zone: ZoneName,
    host: String,
    trust: Vec<u8>,
    verifier: Arc<RwLock<Option<Arc<BearerVerifier>>>>,
}

impl Fetcher {
    async fn run(self, wake: Arc<tokio::sync::Notify>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let wait = match self.fetch().await {
                Ok(v) => {
                    *self
                        .verifier
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(v));
                    backoff = Duration::from_millis(250);
                    REFRESH
                }
                Err(e) => {
                    // the keys held stay: a fetch that fails says nothing against them
                    eprintln!("the keys of `{}`'s IdP: {e}", self.zone);
                    let w = backoff;
                    backoff = (backoff * 2).min(MOST_BACKOFF);
                    w
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => {}
            }
        }
    }

    /// The IdP's issuer and keys, as its discovery document names them.
    async fn fetch(&self) -> Result<BearerVerifier, String> {
        let addr = tianping_core::listener_addr(
            &self.dir,
            &self.fabric,
            &self.zone,
            Component::Idp,
            &Listener::Public,
        )
        .map_err(|e| e.to_string())?;
        let issuer = if addr.port() == 443 {
            format!("https://{}", self.host)
        } else {
            format!("https://{}:{}", self.host, addr.port())
        };
        let http = HttpsClientBuilder::new(self.trust.clone())
            .resolve(self.host.clone(), addr)
            .build()
            .map_err(|e| e.to_string())?;
        let get = |url: String| {
            let http = &http;
            async move {
                let r = http.get(&url).await.map_err(|e| format!("`{url}`: {e}"))?;
                if !r.status.is_success() {
                    return Err(format!("`{url}` answered {}", r.status));
                }
                Ok(r.body)
            }
        };
        let discovery = get(format!("{issuer}/.well-known/openid-configuration")).await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&discovery).map_err(|_| "discovery is not JSON".to_owned())?;
        if doc.get("issuer").and_then(serde_json::Value::as_str) != Some(issuer.as_str()) {
            return Err(format!(
                "the discovery document names another issuer than `{issuer}`"
            ));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| "the discovery document has no `jwks_uri`".to_owned())?;
        let body = get(jwks_uri.to_owned()).await?;
        let jwks = Jwks::parse(&body).map_err(|e| e.to_string())?;
        Ok(BearerVerifier::new(
            issuer,
            format!("tianping-control:{}", self.zone),
            self.zone.clone(),
            jwks,
            Limits::default(),
        ))
    }
}

/// People on a component's socket: a bearer token is a `tianping login` token, an assertion
/// the zone's gateway's ([`crate::assertion::GatewayUsers`]).
pub(crate) struct People {
    pub(crate) logins: LoginTokens,
    pub(crate) asserted: crate::assertion::GatewayUsers,
}

impl CallerVerifier for People {
    fn verify(
        &self,
        credential: &Credential,
        now: UnixTime,
    ) -> Result<CourtIdentity, CallerRefusal> {
        match credential {
            Credential::Bearer(_) => self.logins.verify(credential, now),
            Credential::Assertion(_) => self.asserted.verify(credential, now),
        }
    }
}
