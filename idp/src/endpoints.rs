//! The token side of the provider over HTTP (the `server` feature): the `authorization_code`
//! grant, UserInfo, revocation (RFC 7009), introspection (RFC 7662) and RP-initiated logout
//! (`end_session_endpoint`), and what discovery says about them.
//!
//! # Choices, and why
//!
//! - **PKCE `S256` is required of every client**, confidential ones included. The OpenID
//!   Foundation's Basic OP plan treats PKCE as optional for a confidential client; this provider
//!   departs from it on purpose (OAuth 2.0 Security BCP §2.1.1): a code without a challenge is
//!   never issued, a `code_verifier` sent for a code issued without one is refused as a downgrade,
//!   and discovery says so (`code_challenge_methods_supported: ["S256"]` and the Tianping extension
//!   `tianping_pkce_required: true`).
//! - A code presented twice gets `invalid_grant`, and every token issued from it (access tokens
//!   and the refresh family) is revoked; each revocation is an audit event.
//! - A locked or disabled account gets no token by any grant, refresh included: every grant for a
//!   person goes through one check, [`account_may_get_tokens`].
//! - Revocation of a token issued to another client, or of an unknown token, answers `200` and
//!   changes nothing (RFC 7009 §2.2): the answer tells a client nothing about others' tokens.
//! - Introspection is for registered, authenticated clients; a refresh token is only introspected
//!   by the client it belongs to.
//! - Logout checks `id_token_hint` against the published keys and algorithms only (`none` and
//!   `HS256` keyed with a public key are refused), redirects only to a post-logout URI the client
//!   registered (exactly), echoes `state`, ends the session and hands out a new session id.
//! - Every token issued, refreshed or revoked, and every logout, is in the audit log, durably,
//!   before the response that carries its effect.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use tianping_audit::Event;
use tianping_core::{SubjectId, UnixTime};
use tianping_net::{Body, ConnInfo, ResponseBody, full};

use crate::authorize::RequestedClaim;
use crate::client::{Client, ClientCredentials, GrantType};
use crate::directory::Directory;
use crate::error::IdpError;
use crate::form::Params;
use crate::grants::{FamilyId, Grants, RefreshFamily, sha256};
use crate::jwt::JwtError;
use crate::lockout::LockoutPolicy;
use crate::pages;
use crate::server::IdpParts;
use crate::session::{SESSION_COOKIE, Sessions, session_cookie};
use crate::tokens::AccessClaims;

/// What the endpoints here read: the provider's parts and its clients by id.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) parts: &'a IdpParts,
    pub(crate) clients: &'a HashMap<String, Client>,
    /// The JWKS of clients registered by URI, when the provider fetches them.
    pub(crate) jwks: Option<&'a crate::client_auth::JwksCache>,
}

impl Ctx<'_> {
    /// A client by id: the ones given at start, then the directory's.
    pub(crate) fn client(&self, id: &str) -> Result<Option<Client>, IdpError> {
        match self.clients.get(id) {
            Some(c) => Ok(Some(c.clone())),
            None => self.parts.store.client(id),
        }
    }
}

/// The discovery entries of the endpoints here, merged into the provider's document.
pub(crate) fn discovery_entries(iss: &str) -> Map<String, Value> {
    let v = json!({
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "end_session_endpoint": format!("{iss}/logout"),
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth",
        ],
        "revocation_endpoint_auth_signing_alg_values_supported": crate::client_auth::ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth",
        ],
        "introspection_endpoint_auth_signing_alg_values_supported": crate::client_auth::ASSERTION_ALGS,
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp",
            "at_hash", "court", "roles", "clearance", "zone", "name", "given_name",
            "family_name", "preferred_username", "email", "phone_number",
        ],
        "claims_parameter_supported": true,
        "claim_types_supported": ["normal"],
        "acr_values_supported": ["pwd", "otp", "cert"],
        "display_values_supported": ["page"],
        "frontchannel_logout_supported": false,
        "tianping_pkce_required": true,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Whether a person may be issued tokens now: the directory's account enabled and not locked
/// out. Every grant for a person (a code redeemed, a refresh, UserInfo, introspection) asks here
/// and only here. A subject the directory does not hold (a grant from before the directory, a
/// test identity) is checked for a lockout under its subject id alone.
pub(crate) fn account_may_get_tokens(
    parts: &IdpParts,
    sub: &SubjectId,
    now: UnixTime,
) -> Result<(), IdpError> {
    let user = Directory::new(&*parts.store).user(sub)?;
    if user.as_ref().is_some_and(|u| !u.is_enabled()) {
        return Err(IdpError::AccountInactive);
    }
    let account = user.as_ref().map_or(sub.as_str(), |u| u.login.as_str());
    let state = parts.store.lockout(account)?;
    LockoutPolicy::default()
        .check(&state, now)
        .map_err(|_| IdpError::AccountInactive)
}

// ---------------------------------------------------------------- responses

fn json_response(status: StatusCode, value: &Value) -> Response<ResponseBody> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An OAuth error as JSON; a client authentication failure carries a `Basic` challenge.
fn oauth_error(e: &IdpError) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({ "error": e.code().as_str(), "error_description": e.to_string() });
    let mut r = json_response(status, &body);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tianping\""),
        );
    }
    r
}

/// A bearer-token error (RFC 6750 §3): 401 with a `Bearer` challenge naming the error, except
/// for a request without any token, which gets the bare challenge.
fn bearer_error(e: Option<&IdpError>) -> Response<ResponseBody> {
    let (status, challenge, body) = match e {
        None => (
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"tianping\"".to_owned(),
            json!({ "error": "invalid_token", "error_description": "no access token" }),
        ),
        Some(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let code = e.code().as_str();
            (
                status,
                format!("Bearer realm=\"tianping\", error=\"{code}\""),
                json!({ "error": code, "error_description": e.to_string() }),
            )
        }
    };
    let mut r = json_response(status, &body);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

// ---------------------------------------------------------------- audit

/// Records one event with outcome `ok` durably; the response waits for it.
async fn record(
    parts: &IdpParts,
    now: UnixTime,
    action: &str,
    actor: &str,
    object: &str,
    reason: &str,
) -> Result<(), IdpError> {
    record_outcome(parts, now, action, actor, object, "ok", reason).await
}

/// Records one event durably; the response waits for it.
pub(crate) async fn record_outcome(
    parts: &IdpParts,
    now: UnixTime,
    action: &str,
    actor: &str,
    object: &str,
    outcome: &str,
    reason: &str,
) -> Result<(), IdpError> {
    let mut e = Event::new(now, action);
    e.zone.clone_from(&parts.zone);
    e.component = "idp".into();
    e.actor = actor.to_owned();
    e.object = object.to_owned();
    e.outcome = outcome.to_owned();
    e.reason = reason.to_owned();
    // Awaited without a thread of its own: the log's committer wakes this task once the event's
    // group is durable (as the grants' records are).
    let audit_error = |e: tianping_audit::StoreError| IdpError::Store(format!("audit: {e}"));
    parts
        .audit
        .append_prompt(&e)
        .map_err(audit_error)?
        .durable()
        .await
        .map_err(audit_error)
}

/// How an audit record names a refresh-token family (never a token itself).
fn family_object(id: &FamilyId) -> String {
    format!("family:{}", hex::encode(id))
}

// ---------------------------------------------------------------- authorization_code

/// The `authorization_code` grant for an authenticated `client`: the code redeemed once (PKCE,
/// redirect URI and client checked by [`Grants`]), then an access token (with the members of
/// `bound`: the `cnf` of a client authenticated by certificate), an ID token and, when the client
/// has the `refresh_token` grant, a refresh token. A reused code revokes what it gave.
pub(crate) async fn authorization_code(
    ctx: Ctx<'_>,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    bound: Map<String, Value>,
    now: UnixTime,
) -> Result<Value, IdpError> {
    let p = ctx.parts;
    let grants = Grants::new(&*p.store, p.grants);
    let record_of_code = match grants.redeem_code(code, &client.id, redirect_uri, verifier, now) {
        Ok(r) => r,
        Err(IdpError::CodeReused) => {
            audit_code_reuse(p, code, &client.id, now).await?;
            return Err(IdpError::CodeReused);
        }
        Err(e) => return Err(e),
    };
    let identity = record_of_code.identity;
    account_may_get_tokens(p, &identity.sub, now)?;
    let scope = record_of_code.scope.join(" ");
    let mut at_extra = bound;
    if !record_of_code.claims.userinfo.is_empty() {
        let names = record_of_code.claims.userinfo.iter();
        let names: Vec<Value> = names.map(|c| c.name.clone().into()).collect();
        at_extra.insert(USERINFO_CLAIMS.into(), names.into());
    }
    let at = p.issuer.access_token_with(
        Some(&identity),
        &client.id,
        &p.audience,
        &scope,
        now,
        &*p.rng,
        at_extra,
    )?;
    let mut id_claims = requested_claims(p, &identity.sub, &record_of_code.claims.id_token)?;
    if let Some(session) = &record_of_code.session {
        // the session's `sid`, as its back-channel logout token names it
        id_claims.insert("sid".into(), crate::account::session_sid(session).into());
    }
    let id_token = p.issuer.id_token_with(
        &identity,
        &client.id,
        record_of_code.nonce.as_deref(),
        Some(&at.token),
        now,
        id_claims,
    )?;
    let refresh = if client.grants.contains(&GrantType::RefreshToken) {
        let (rt, family) = grants.start_family(
            &client.id,
            identity.clone(),
            record_of_code.scope.clone(),
            now,
            &*p.rng,
        )?;
        grants.record_family_token(&family, &at)?;
        if let Some(session) = &record_of_code.session {
            grants.note_session_family(session, &family)?;
        }
        Some((rt, family))
    } else {
        None
    };
    if let Some(session) = &record_of_code.session {
        crate::account::note_session_client(&*p.store, session, &client.id)?;
    }
    grants.record_code_tokens(code, &at, refresh.as_ref().map(|(_, f)| *f))?;
    record(
        p,
        now,
        "token.authorization_code",
        &client.id,
        &at.jti,
        identity.sub.as_str(),
    )
    .await?;
    if let Some((_, family)) = &refresh {
        record(
            p,
            now,
            "token.refresh_issued",
            &client.id,
            &family_object(family),
            identity.sub.as_str(),
        )
        .await?;
    }
    let mut v = json!({
        "access_token": at.token,
        "token_type": "Bearer",
        "expires_in": at.expires_at.saturating_since(now).as_secs(),
        "scope": scope,
        "id_token": id_token,
    });
    if let (Some((rt, _)), Some(obj)) = (refresh, v.as_object_mut()) {
        obj.insert("refresh_token".into(), rt.into());
    }
    Ok(v)
}

/// The audit records of a code's reuse: each access token and the family it had revoked.
async fn audit_code_reuse(
    p: &IdpParts,
    code: &str,
    client_id: &str,
    now: UnixTime,
) -> Result<(), IdpError> {
    let rec = p
        .store
        .update_code(&sha256(code.as_bytes()), &mut |r| r.clone())?;
    let Some(rec) = rec else { return Ok(()) };
    for (jti, _) in &rec.access_tokens {
        record(p, now, "token.revoke", client_id, jti, "code reused").await?;
    }
    if let Some(f) = &rec.family {
        record(
            p,
            now,
            "token.revoke",
            client_id,
            &family_object(f),
            "code reused",
        )
        .await?;
    }
    Ok(())
}

/// The audit records of a refresh token's reuse: the family and its access tokens revoked.
pub(crate) async fn audit_refresh_reuse(
    p: &IdpParts,
    refresh_token: &str,
    client_id: &str,
    now: UnixTime,
) -> Result<(), IdpError> {
    let Some(family) = read_family(p, refresh_token)? else {
        return Ok(());
    };
    record(
        p,
        now,
        "token.revoke",
        client_id,
        &family_object(&family.id),
        "refresh token reused",
    )
    .await?;
    for (jti, _) in &family.access_tokens {
        record(
            p,
            now,
            "token.revoke",
            client_id,
            jti,
            "refresh token reused",
        )
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- client authentication

/// The credentials of a request to `/revoke` or `/introspect`: as at the token endpoint, by one
/// method only and never disagreeing.
fn credentials(p: &Params, authorization: Option<&str>) -> Result<ClientCredentials, IdpError> {
    crate::token_request::client_credentials(p, authorization)
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Result<Option<&str>, ()> {
    h.get(name).map(|v| v.to_str().map_err(drop)).transpose()
}

/// The form body and the authenticated client of a `/revoke` or `/introspect` request, and the
/// connection it came on.
async fn client_request(
    ctx: Ctx<'_>,
    req: Request<Body>,
    now: UnixTime,
) -> Result<(Params, Client, Option<ConnInfo>), IdpError> {
    let authorization = header_str(req.headers(), header::AUTHORIZATION)
        .map_err(|()| IdpError::ClientAuthFailed)?
        .map(str::to_owned);
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let body = req
        .into_body()
        .bytes()
        .await
        .map_err(|_| IdpError::MissingParameter("token"))?;
    let params = Params::parse(&body)?;
    let creds = credentials(&params, authorization.as_deref())?;
    let authenticated = crate::client_auth::authenticate(ctx, &creds, conn.as_ref(), now).await?;
    Ok((params, authenticated.client, conn))
}

/// The family a refresh token names, as stored (read without changing it).
fn read_family(p: &IdpParts, token: &str) -> Result<Option<RefreshFamily>, IdpError> {
    let Some(raw) = URL_SAFE_NO_PAD.decode(token).ok().filter(|r| r.len() == 48) else {
        return Ok(None);
    };
    let Some(id) = raw.get(..16).and_then(|i| FamilyId::try_from(i).ok()) else {
        return Ok(None);
    };
    p.store.family(&id)
}

/// Whether `token` is the usable token of `family` now.
fn family_current(f: &RefreshFamily, token: &str, now: UnixTime) -> bool {
    !f.revoked && now < f.expires_at && f.current == sha256(token.as_bytes())
}

/// An access token's claims if it is this issuer's, unexpired and not revoked.
fn live_access_token(p: &IdpParts, token: &str, now: UnixTime) -> Result<AccessClaims, IdpError> {
    let claims = p.issuer.verify_access_token(token, now)?;
    if p.store.is_token_revoked(&claims.jti)? {
        return Err(IdpError::InvalidToken(JwtError::Malformed("revoked")));
    }
    Ok(claims)
}

// ---------------------------------------------------------------- revocation (RFC 7009)

/// `POST /revoke`.
pub(crate) async fn revoke(
    ctx: Ctx<'_>,
    req: Request<Body>,
    now: UnixTime,
) -> Response<ResponseBody> {
    match revoke_inner(ctx, req, now).await {
        Ok(()) => json_response(StatusCode::OK, &json!({})),
        Err(e) => oauth_error(&e),
    }
}

async fn revoke_inner(ctx: Ctx<'_>, req: Request<Body>, now: UnixTime) -> Result<(), IdpError> {
    let (params, client, _) = client_request(ctx, req, now).await?;
    let token = params.require("token")?;
    // `token_type_hint` is only a hint (RFC 7009 §2.1): a refresh token is never a JWT.
    params.get("token_type_hint")?;
    let p = ctx.parts;
    if let Some(f) = read_family(p, token)? {
        let presented = sha256(token.as_bytes());
        let own = f.current == presented || f.rotated.contains(&presented);
        if f.client_id == client.id && own && !f.revoked {
            Grants::new(&*p.store, p.grants).revoke_family(&f.id)?;
            let reason = "revoked by the client";
            record(
                p,
                now,
                "token.revoke",
                &client.id,
                &family_object(&f.id),
                reason,
            )
            .await?;
            for (jti, _) in &f.access_tokens {
                record(p, now, "token.revoke", &client.id, jti, reason).await?;
            }
        }
    } else if let Ok(claims) = p.issuer.verify_access_token(token, now) {
        if claims.client_id == client.id && !p.store.is_token_revoked(&claims.jti)? {
            p.store
                .revoke_token(&claims.jti, UnixTime::from_secs(claims.exp))?;
            let reason = "revoked by the client";
            record(p, now, "token.revoke", &client.id, &claims.jti, reason).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- introspection (RFC 7662)

/// `POST /introspect`.
pub(crate) async fn introspect(
    ctx: Ctx<'_>,
    req: Request<Body>,
    now: UnixTime,
) -> Response<ResponseBody> {
    match introspect_inner(ctx, req, now).await {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => oauth_error(&e),
    }
}

async fn introspect_inner(
    ctx: Ctx<'_>,
    req: Request<Body>,
    now: UnixTime,
) -> Result<Value, IdpError> {
    let (params, client, conn) = client_request(ctx, req, now).await?;
    let token = params.require("token")?;
    let p = ctx.parts;
    let inactive = json!({ "active": false });
    if let Ok(claims) = live_access_token(p, token, now) {
        // a token bound to a certificate (RFC 8705 §3) is active only over a connection that
        // presents that certificate
        let cnf = crate::client_auth::token_cnf(p, token, now);
        let cert = crate::client_auth::presented(conn.as_ref()).map(|c| c.der);
        if !crate::client_auth::binding_holds(cnf.as_ref(), cert) {
            return Ok(inactive);
        }
        if let Some(i) = &claims.identity {
            if account_may_get_tokens(p, &i.sub, now).is_err() {
                return Ok(inactive);
            }
        }
        let mut v = serde_json::to_value(&claims).map_err(|_| IdpError::Internal("claims"))?;
        if let Some(obj) = v.as_object_mut() {
            if let Some(s) = obj.remove("client_sub") {
                obj.insert("sub".into(), s);
            }
            obj.insert("active".into(), true.into());
            obj.insert("token_type".into(), "Bearer".into());
            if let Some(c) = cnf {
                obj.insert("cnf".into(), c);
            }
        }
        return Ok(v);
    }
    if let Some(f) = read_family(p, token)? {
        if f.client_id == client.id
            && family_current(&f, token, now)
            && account_may_get_tokens(p, &f.identity.sub, now).is_ok()
        {
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": f.client_id,
                "sub": f.identity.sub.as_str(),
                "scope": f.scope.join(" "),
                "exp": f.expires_at.as_secs(),
                "iss": p.issuer.issuer(),
            }));
        }
    }
    Ok(inactive)
}

// ---------------------------------------------------------------- UserInfo

/// `GET` or `POST /userinfo`: the bearer token from the `Authorization` header or (by `POST`)
/// the form body, never both (RFC 6750 §2).
pub(crate) async fn userinfo(
    ctx: Ctx<'_>,
    req: Request<Body>,
    now: UnixTime,
) -> Response<ResponseBody> {
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let header_token = match header_str(req.headers(), header::AUTHORIZATION) {
        Ok(Some(h)) => match h.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => Some(t.trim().to_owned()),
            _ => return bearer_error(Some(&IdpError::InvalidToken(JwtError::Malformed("scheme")))),
        },
        Ok(None) => None,
        Err(()) => {
            return bearer_error(Some(&IdpError::InvalidToken(JwtError::Malformed("header"))));
        }
    };
    let body_token = if req.method() == Method::POST {
        let form = header_str(req.headers(), header::CONTENT_TYPE)
            .ok()
            .flatten()
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        let body = match req.into_body().bytes().await {
            Ok(b) => b,
            Err(_) => return oauth_error(&IdpError::MalformedForm),
        };
        if form && !body.is_empty() {
            match Params::parse(&body)
                .and_then(|p| p.get("access_token").map(|t| t.map(str::to_owned)))
            {
                Ok(t) => t,
                Err(e) => return oauth_error(&e),
            }
        } else {
            None
        }
    } else {
        None
    };
    let token = match (header_token, body_token) {
        (Some(_), Some(_)) => {
            return oauth_error(&IdpError::BadParameter {
                name: "access_token",
                reason: "sent by more than one method",
            });
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return bearer_error(None),
    };
    let cert = crate::client_auth::presented(conn.as_ref()).map(|c| c.der);
    match userinfo_claims(ctx.parts, &token, cert, now) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => bearer_error(Some(&e)),
    }
}

fn userinfo_claims(
    p: &IdpParts,
    token: &str,
    cert: Option<&[u8]>,
    now: UnixTime,
) -> Result<Value, IdpError> {
    let claims = live_access_token(p, token, now)?;
    let cnf = crate::client_auth::token_cnf(p, token, now);
    if !crate::client_auth::binding_holds(cnf.as_ref(), cert) {
        return Err(IdpError::InvalidToken(JwtError::Malformed(
            "bound to a certificate this request did not present",
        )));
    }
    let identity = claims
        .identity
        .as_ref()
        .ok_or(IdpError::InvalidToken(JwtError::Malformed("no person")))?;
    if !claims.scope.split(' ').any(|s| s == "openid") {
        return Err(IdpError::InvalidToken(JwtError::Malformed(
            "no openid scope",
        )));
    }
    account_may_get_tokens(p, &identity.sub, now)
        .map_err(|_| IdpError::InvalidToken(JwtError::Malformed("account inactive")))?;
    let mut out = Map::new();
    out.insert("sub".into(), identity.sub.as_str().into());
    let ic = serde_json::to_value(identity).map_err(|_| IdpError::Internal("claims"))?;
    if let Value::Object(m) = ic {
        for (k, v) in m {
            if matches!(k.as_str(), "court" | "roles" | "clearance" | "zone") {
                out.insert(k, v);
            }
        }
    }
    for scope in claims.scope.split(' ') {
        out.extend(scope_claims(p, &identity.sub, scope)?);
    }
    // the claims the `claims` parameter asked for, named in the token when it was issued
    let verified = p
        .issuer
        .keys()
        .verify(token, now)
        .map_err(IdpError::InvalidToken)?;
    if let Some(Value::Array(names)) = verified.claims.get(USERINFO_CLAIMS) {
        let asked: Vec<RequestedClaim> = names
            .iter()
            .filter_map(Value::as_str)
            .map(|n| RequestedClaim {
                name: n.to_owned(),
                essential: true,
            })
            .collect();
        for (k, v) in requested_claims(p, &identity.sub, &asked)? {
            out.entry(k).or_insert(v);
        }
    }
    Ok(Value::Object(out))
}

/// The access-token member naming the claims UserInfo releases beyond the scopes' claims (the
/// `userinfo` part of the request's `claims` parameter).
const USERINFO_CLAIMS: &str = "tianping_userinfo_claims";

/// The directory's values of the claims `asked` for about `sub` (OIDC Core §5.5): profile, email
/// and phone claims whatever the scopes. A claim the directory has no value for is left out (an
/// essential claim too: §5.5.1 makes that no error); identity claims are in every token already.
fn requested_claims(
    p: &IdpParts,
    sub: &SubjectId,
    asked: &[RequestedClaim],
) -> Result<Map<String, Value>, IdpError> {
    let mut out = Map::new();
    if asked.is_empty() {
        return Ok(out);
    }
    let mut all = Map::new();
    for scope in ["profile", "email", "phone"] {
        all.extend(scope_claims(p, sub, scope)?);
    }
    for c in asked {
        if let Some(v) = all.get(&c.name) {
            out.insert(c.name.clone(), v.clone());
        }
    }
    Ok(out)
}

/// The claims a scope releases about `sub`, from the directory (OIDC Core §5.4).
fn scope_claims(
    p: &IdpParts,
    sub: &SubjectId,
    scope: &str,
) -> Result<Map<String, Value>, IdpError> {
    let mut m = Map::new();
    let user = Directory::new(&*p.store).user(sub)?;
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v.into());
        }
    };
    match (scope, &user) {
        ("profile", Some(u)) => {
            put("name", Some(&u.display_name));
            put("given_name", u.given_name.as_deref());
            put("family_name", u.family_name.as_deref());
            put("preferred_username", Some(&u.login));
        }
        ("profile", None) => put("preferred_username", Some(sub.as_str())),
        ("email", Some(u)) => put("email", u.email.as_deref()),
        ("phone", Some(u)) => put("phone_number", u.phone.as_deref()),
        _ => {}
    }
    Ok(m)
}

// ---------------------------------------------------------------- logout

/// The session id in the request's cookie, if any.
fn session_id(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// `GET` or `POST /logout` (OIDC RP-Initiated Logout 1.0).
pub(crate) async fn logout(
    ctx: Ctx<'_>,
    req: Request<Body>,
    now: UnixTime,
) -> Response<ResponseBody> {
    let cookie = session_id(req.headers());
    let is_post = req.method() == Method::POST;
    let raw = if is_post {
        match req.into_body().bytes().await {
            Ok(b) => b.to_vec(),
            Err(_) => return pages::error_page(&IdpError::MalformedForm),
        }
    } else {
        req.uri().query().unwrap_or_default().as_bytes().to_vec()
    };
    match logout_inner(ctx, &raw, cookie.as_deref(), is_post, now).await {
        Ok(r) => r,
        Err(e) => pages::error_page(&e),
    }
}

async fn logout_inner(
    ctx: Ctx<'_>,
    raw: &[u8],
    cookie: Option<&str>,
    is_post: bool,
    now: UnixTime,
) -> Result<Response<ResponseBody>, IdpError> {
    let p = ctx.parts;
    let params = Params::parse(raw)?;
    let hint = params
        .get("id_token_hint")?
        .map(|h| p.issuer.verify_id_token_hint(h, now))
        .transpose()?;
    let client_id = match (params.get("client_id")?, &hint) {
        (Some(c), Some(h)) if c != h.client_id => {
            return Err(IdpError::BadParameter {
                name: "client_id",
                reason: "not the client the ID token was issued to",
            });
        }
        (Some(c), _) => Some(c.to_owned()),
        (None, Some(h)) => Some(h.client_id.clone()),
        (None, None) => None,
    };
    let state = params.get("state")?;
    let target = match params.get("post_logout_redirect_uri")? {
        Some(uri) => {
            let client = match client_id.as_deref() {
                Some(c) => ctx.client(c)?,
                None => None,
            }
            .ok_or(IdpError::MissingParameter("client_id"))?;
            if !client.matches_post_logout(uri) {
                return Err(IdpError::RedirectUriNotRegistered(crate::error::quoted(
                    uri,
                )));
            }
            Some(uri.to_owned())
        }
        None => None,
    };
    let sessions = Sessions::new(&*p.store, p.sessions);
    // Without an ID token of the session's own, a logout is the user's only once they say so
    // (RP-Initiated Logout 1.0 §2): a link on any site would otherwise end a live session (the
    // cookie is `SameSite=Lax`, sent on a cross-site GET). They confirm with a form whose CSRF
    // token is the session's, posted back here.
    if hint.is_none() {
        if let Some(s) = cookie.and_then(|id| sessions.get(id, now).ok()) {
            if !is_post {
                let target = [
                    ("client_id", client_id.as_deref()),
                    ("post_logout_redirect_uri", target.as_deref()),
                    ("state", state),
                ];
                return Ok(confirm_logout_page(&s.csrf_token("logout"), &target));
            }
            s.check_csrf("logout", params.get("csrf")?)?;
        }
    }
    let mut who = hint.as_ref().map(|h| h.sub.as_str().to_owned());
    let new_cookie = match cookie {
        Some(id) => {
            if let Ok(s) = sessions.get(id, now) {
                if let Some(i) = s.identity {
                    who = Some(i.sub.as_str().to_owned());
                }
            }
            // the refresh families started in the session end with it (and their tokens)
            let ended =
                crate::account::end_session(&*p.store, p.grants, &crate::session::session_key(id))?;
            // the clients given tokens in it that registered a back-channel URI are told
            crate::backchannel::queue_logouts(&*p.store, &ended, now, &*p.rng)?;
            for f in &ended.families {
                let object = family_object(f);
                let actor = client_id.as_deref().unwrap_or("-");
                record(p, now, "token.revoke", actor, &object, "logout").await?;
            }
            let (fresh, _) = sessions.logout(id, now, &*p.rng)?;
            Some(session_cookie(&fresh))
        }
        None => None,
    };
    record(
        p,
        now,
        "session.logout",
        who.as_deref().unwrap_or("-"),
        client_id.as_deref().unwrap_or("-"),
        "rp-initiated logout",
    )
    .await?;
    let mut r = match target {
        Some(uri) => {
            let mut loc = uri;
            if let Some(s) = state {
                loc.push(if loc.contains('?') { '&' } else { '?' });
                loc.push_str(&crate::form::encode_pairs([("state", s)]));
            }
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::SEE_OTHER;
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        None => signed_out_page(),
    };
    if let Some(c) = new_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(r)
}

fn signed_out_page() -> Response<ResponseBody> {
    page_of_logout("<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>已退出 / Signed out</title></head><body><main><h1>已退出 / Signed out</h1><p>您已安全退出。/ You have signed out.</p></main></body></html>".to_owned())
}

/// The page asking a signed-in user to confirm a logout that came without an ID token hint:
/// one button posting the request's parameters back with the session's CSRF token.
fn confirm_logout_page(csrf: &str, params: &[(&str, Option<&str>)]) -> Response<ResponseBody> {
    let mut hidden = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        pages::escape(csrf)
    );
    for (name, value) in params {
        if let Some(v) = value {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                pages::escape(v)
            ));
        }
    }
    page_of_logout(format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>退出登录 / Sign out</title></head><body><main><h1>退出登录？/ Sign out?</h1><p>确认后，本浏览器的登录会话结束。/ Your session in this browser ends once you confirm.</p><form method=\"post\" action=\"/logout\">{hidden}<button type=\"submit\">退出 / Sign out</button></form></main></body></html>"
    ))
}

/// `html` as a logout page: never cached, no script, never framed.
fn page_of_logout(html: String) -> Response<ResponseBody> {
    let mut r = Response::new(full(html));
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, pages::CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}
