//! The device authorization grant over HTTP (RFC 8628): `POST /device_authorization`, the
//! verification page `/device`, and the `device_code` grant at the token endpoint. The table of
//! pending authorizations is [`crate::device_grant::DeviceGrants`], in memory: a provider that
//! restarts forgets them, and the device (`tianping login`) starts again.
//!
//! The verification page needs a signed-in person: without a session it sends the browser
//! through `/authorize` as the device client, whose registered redirect URI is this page
//! (`{issuer}/device`), so the sign-in (password, TOTP, certificate, required actions, the
//! least `acr` of the person's roles) is the provider's one sign-in; the code that redirect
//! carries is never redeemed and dies in 60 seconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tianping_core::UnixTime;
use tianping_net::{Body, ResponseBody};

use super::{Inner, error_response, json_response, login};
use crate::client::Client;
use crate::device_grant::{DEVICE_CODE_GRANT, Decision, DeviceGrants, DevicePolicy};
use crate::directory::Directory;
use crate::error::IdpError;
use crate::form::Params;
use crate::pages::{self, DevicePage};
use crate::random::bytes;
use crate::session::Sessions;
use crate::tokens::Identity;

/// The form name of the verification page's CSRF token.
const DEVICE_FORM: &str = "device";

/// How a provider takes the device grant.
#[derive(Debug, Clone)]
pub struct DeviceGrantParts {
    /// The one client that may use it (the CLI: a public client registered for
    /// `authorization_code` with the redirect URI `{issuer}/device`).
    pub client_id: String,
    /// The `aud` of the tokens it gives (the zone's control sockets).
    pub audience: String,
    /// Their life (at most 15 minutes for an administrator's token).
    pub token_life: Duration,
    /// The authorizations' life, interval and bound.
    pub policy: DevicePolicy,
}

/// A table of pending device authorizations a provider rebuilt with new keys or clients keeps
/// (`Idp::with_device_table`).
pub type DeviceTable = Arc<Mutex<DeviceGrants>>;

/// The device grant's parts and its table.
pub(super) struct DeviceState {
    pub(super) parts: DeviceGrantParts,
    pub(super) table: DeviceTable,
}

impl DeviceState {
    pub(super) fn new(parts: DeviceGrantParts, table: Option<DeviceTable>) -> Self {
        let table = table.unwrap_or_else(|| Arc::new(Mutex::new(DeviceGrants::new(parts.policy))));
        Self { parts, table }
    }

    fn table(&self) -> Result<std::sync::MutexGuard<'_, DeviceGrants>, IdpError> {
        self.table
            .lock()
            .map_err(|_| IdpError::Internal("device table poisoned"))
    }
}

fn query_params(req: &Request<Body>) -> Result<Params, IdpError> {
    Params::parse(req.uri().query().unwrap_or_default().as_bytes())
}

impl Inner {
    fn device(&self) -> Result<&DeviceState, IdpError> {
        self.device
            .as_ref()
            .ok_or(IdpError::UnsupportedGrantType(DEVICE_CODE_GRANT.into()))
    }

    /// `POST /device_authorization` (RFC 8628 §3.1): the client authenticated as at the token
    /// endpoint; the device code, user code, verification URIs, life and interval.
    pub(super) async fn device_authorization(
        &self,
        req: Request<Body>,
        now: UnixTime,
    ) -> Response<ResponseBody> {
        match self.device_authorization_inner(req, now).await {
            Ok(v) => json_response(StatusCode::OK, &v, true),
            Err(e) => error_response(&e),
        }
    }

    async fn device_authorization_inner(
        &self,
        req: Request<Body>,
        now: UnixTime,
    ) -> Result<Value, IdpError> {
        let device = self.device()?;
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| IdpError::ClientAuthFailed)?;
        let conn = req.extensions().get::<tianping_net::ConnInfo>().cloned();
        let body = req
            .into_body()
            .bytes()
            .await
            .map_err(|_| IdpError::MalformedForm)?;
        let params = Params::parse(&body)?;
        let creds = crate::token_request::client_credentials(&params, authorization.as_deref())?;
        let authenticated =
            crate::client_auth::authenticate(self.ctx(), &creds, conn.as_ref(), now).await?;
        let client = &authenticated.client;
        if client.id != device.parts.client_id {
            return Err(IdpError::GrantNotAllowed(DEVICE_CODE_GRANT));
        }
        let scope: Vec<String> = params
            .get("scope")?
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(s) = scope.iter().find(|s| !client.may_ask(s)) {
            return Err(IdpError::ScopeNotAllowed(s.clone()));
        }
        let started = device
            .table()?
            .start(&client.id, scope, now, &*self.parts.rng)?;
        let iss = self.parts.issuer.issuer();
        let verification_uri = format!("{iss}/device");
        let complete = format!(
            "{verification_uri}?{}",
            crate::form::encode_pairs([("user_code", started.user_code.as_str())])
        );
        crate::endpoints::record_outcome(
            &self.parts,
            now,
            "device.authorization",
            &client.id,
            &started.user_code,
            "ok",
            "",
        )
        .await?;
        Ok(json!({
            "device_code": started.device_code,
            "user_code": started.user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": complete,
            "expires_in": started.expires_in,
            "interval": started.interval,
        }))
    }

    /// The signed-in person of the request's session, as the directory holds them now, if the
    /// session still suffices for them (enabled, no required action, the least `acr` their roles
    /// need now): otherwise they sign in again.
    fn signed_in(&self, req: &Request<Body>, now: UnixTime) -> Option<Identity> {
        let id = login::session_id(req.headers())?;
        let p = &self.parts;
        let session = Sessions::new(&*p.store, p.sessions).get(&id, now).ok()?;
        let identity = session.identity?;
        let user = Directory::new(&*p.store).user(&identity.sub).ok()??;
        if let Some(si) = &self.sign_in {
            crate::signin::session_suffices(&identity, Some(&user), si, None, None, now).ok()?;
        }
        user.is_enabled().then(|| {
            user.identity(
                identity.acr,
                identity.amr.clone(),
                identity.zone.clone(),
                identity.auth_time,
            )
        })
    }

    /// Sends the browser to sign in as the device client, back to this page with the code.
    fn sign_in_first(&self, user_code: &str) -> Response<ResponseBody> {
        let device = match self.device() {
            Ok(d) => d,
            Err(e) => return pages::error_page(&e),
        };
        let iss = self.parts.issuer.issuer();
        // a challenge nobody knows the verifier of: the code of this redirect is never redeemed
        let challenge = match bytes::<32>(&*self.parts.rng) {
            Ok(b) => URL_SAFE_NO_PAD.encode(crate::grants::sha256(&b)),
            Err(e) => return pages::error_page(&e),
        };
        let state = if user_code.is_empty() { "-" } else { user_code };
        let query = crate::form::encode_pairs([
            ("response_type", "code"),
            ("client_id", device.parts.client_id.as_str()),
            ("redirect_uri", &format!("{iss}/device")),
            ("scope", "openid"),
            ("state", state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        pages::redirect(&format!("{iss}/authorize?{query}"), None)
    }

    /// `GET /device` (RFC 8628 §3.3): the user code to confirm (from `user_code`, or from the
    /// `state` the sign-in came back with), for a signed-in person; the sign-in otherwise.
    pub(super) fn device_page(&self, req: &Request<Body>, now: UnixTime) -> Response<ResponseBody> {
        let params = match query_params(req) {
            Ok(p) => p,
            Err(e) => return pages::error_page(&e),
        };
        let typed = params
            .get("user_code")
            .ok()
            .flatten()
            .or_else(|| params.get("state").ok().flatten().filter(|s| *s != "-"))
            .unwrap_or_default()
            .to_owned();
        let Some(identity) = self.signed_in(req, now) else {
            return self.sign_in_first(&typed);
        };
        self.device_form(req, &identity, &typed, None, now)
    }

    fn device_form(
        &self,
        req: &Request<Body>,
        identity: &Identity,
        typed: &str,
        notice: Option<&str>,
        now: UnixTime,
    ) -> Response<ResponseBody> {
        let p = &self.parts;
        let Some(session) = login::session_id(req.headers())
            .and_then(|id| Sessions::new(&*p.store, p.sessions).get(&id, now).ok())
        else {
            return self.sign_in_first(typed);
        };
        let found = match (typed.is_empty(), self.device()) {
            (false, Ok(d)) => d.table().ok().and_then(|t| t.lookup(typed, now).ok()),
            _ => None,
        };
        let notice = notice.or_else(|| {
            (!typed.is_empty() && found.is_none())
                .then_some("代码无效或已过期 / The code is invalid or expired.")
        });
        let csrf = session.csrf_token(DEVICE_FORM);
        let shown = found
            .as_ref()
            .map_or_else(|| typed.to_owned(), |f| f.user_code.clone());
        pages::device_page(&DevicePage {
            who: identity.sub.as_str(),
            user_code: &shown,
            client_id: found.as_ref().map(|f| f.client_id.as_str()),
            csrf: &csrf,
            notice,
        })
    }

    /// `POST /device`: the signed-in person approves or denies the authorization of a user
    /// code (CSRF-checked), audited as `device.approve` or `device.deny`.
    pub(super) async fn device_decide(
        &self,
        req: Request<Body>,
        now: UnixTime,
    ) -> Response<ResponseBody> {
        let Some(identity) = self.signed_in(&req, now) else {
            return pages::error_page(&IdpError::LoginRequired);
        };
        let p = &self.parts;
        let session = login::session_id(req.headers())
            .and_then(|id| Sessions::new(&*p.store, p.sessions).get(&id, now).ok());
        let Some(session) = session else {
            return pages::error_page(&IdpError::SessionExpired);
        };
        let (head, body) = req.into_parts();
        let head_req = Request::from_parts(head, Body::empty());
        let form = match body.bytes().await.map_err(|_| IdpError::MalformedForm) {
            Ok(b) => Params::parse(&b),
            Err(e) => Err(e),
        };
        let form = match form {
            Ok(f) => f,
            Err(e) => return pages::error_page(&e),
        };
        if let Err(e) = session.check_csrf(DEVICE_FORM, form.get("csrf").ok().flatten()) {
            return pages::error_page(&e);
        }
        let typed = form
            .get("user_code")
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned();
        let approve = match form.get("decision").ok().flatten() {
            Some("approve") => true,
            Some("deny") => false,
            _ => {
                return pages::error_page(&IdpError::BadParameter {
                    name: "decision",
                    reason: "expected `approve` or `deny`",
                });
            }
        };
        let decided = match self.device() {
            Ok(d) => d.table().and_then(|mut t| {
                let decision = if approve {
                    Decision::Approve(Box::new(identity.clone()))
                } else {
                    Decision::Deny
                };
                t.decide(&typed, decision, now)
            }),
            Err(e) => Err(e),
        };
        let decided = match decided {
            Ok(d) => d,
            Err(IdpError::UserCodeInvalid) => {
                return self.device_form(&head_req, &identity, &typed, None, now);
            }
            Err(e) => return pages::error_page(&e),
        };
        let (action, outcome) = if approve {
            ("device.approve", "ok")
        } else {
            ("device.deny", "denied")
        };
        let reason = format!(
            "user code {} for client {}",
            decided.user_code, decided.client_id
        );
        let recorded = crate::endpoints::record_outcome(
            p,
            now,
            action,
            identity.sub.as_str(),
            &decided.client_id,
            outcome,
            &reason,
        )
        .await;
        match recorded {
            Ok(()) => pages::device_done_page(approve),
            Err(e) => pages::error_page(&e),
        }
    }

    /// The `device_code` grant for the authenticated `client` (RFC 8628 §3.4, §3.5): the
    /// table's answer, and once approved an access token for the device audience of the person
    /// who approved, audited as `token.device_code`.
    pub(super) async fn device_token(
        &self,
        client: &Client,
        device_code: &str,
        now: UnixTime,
    ) -> Result<Value, IdpError> {
        let device = self.device()?;
        if client.id != device.parts.client_id {
            return Err(IdpError::GrantNotAllowed(DEVICE_CODE_GRANT));
        }
        let granted = device.table()?.poll(device_code, &client.id, now)?;
        let p = &self.parts;
        crate::endpoints::account_may_get_tokens(p, &granted.identity.sub, now)?;
        let mut issuer = p.issuer.clone();
        issuer.access_life = device.parts.token_life;
        let scope = granted.scope.join(" ");
        let at = issuer.access_token(
            Some(&granted.identity),
            &client.id,
            &device.parts.audience,
            &scope,
            now,
            &*p.rng,
        )?;
        crate::endpoints::record_outcome(
            p,
            now,
            "token.device_code",
            &client.id,
            &at.jti,
            "ok",
            granted.identity.sub.as_str(),
        )
        .await?;
        Ok(super::token_json(&at, now, &scope, None))
    }
}
