//! Browser sessions: the sign-in a browser without a session is sent to (a new `state`, `nonce`
//! and PKCE verifier, remembered here and tied to the browser by [`SIGNIN_COOKIE`]), its
//! callback (RFC 9207 `iss`, the code redeemed, the ID token checked, the sign-in durable in the
//! audit log before the session cookie is set), `/.tianping/me`, sign-out, and the IdP's
//! back-channel logout (sessions ended by `sid` or subject).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::PoisonError;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use tianping_core::{Acr, UnixTime, ZoneName};
use tianping_net::{Body, ConnInfo, ResponseBody};

use super::idp::{decode_pairs, encode};
use super::request_event::fill_actor;
use super::{Inner, answer, html_escape, html_page, plain};
use crate::cookie::{CookieSealer, Session};
use crate::identity::Identity;

/// The cookie that ties a browser to the sign-in it started (its `state`).
pub const SIGNIN_COOKIE: &str = "__Host-tianping-signin";
/// How long a started sign-in may take to come back (10 min).
const SIGNIN_LIFE_SECS: u64 = 600;
/// Most sign-ins in progress at once; when full, the expired go first, then the oldest (so a
/// flood delays sign-ins, never stops them).
const MAX_PENDING: usize = 10_000;
/// Most sign-ins in progress from one address (a browser starts one per tab at most); the
/// oldest of that address gives way.
const MAX_PENDING_PER_ADDR: usize = 32;
/// The largest back-channel logout request read.
const MAX_LOGOUT_BODY: u64 = 16 * 1024;

/// Numbers sign-ins in the order they start.
static SIGNIN_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A sign-in started and not yet back: what its callback checks and where it returns to.
pub(super) struct Pending {
    nonce: String,
    verifier: String,
    return_to: String,
    created: u64,
    /// The address that started it: one address holds at most [`MAX_PENDING_PER_ADDR`].
    peer: Option<std::net::IpAddr>,
    /// The order sign-ins started in (the oldest gives way first).
    seq: u64,
}

/// The value of the cookie `name` in the request's `Cookie` headers (each at most `max` bytes).
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str, max: usize) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter(|v| v.len() <= max)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Sends a browser to the IdP: a new `state`, `nonce` and PKCE verifier, remembered here
/// and tied to the browser by [`SIGNIN_COOKIE`].
pub(super) async fn sign_in(
    g: &Inner,
    peer: Option<std::net::IpAddr>,
    return_to: &str,
    acr: Option<Acr>,
    request_id: &str,
    now: UnixTime,
) -> Response<ResponseBody> {
    let endpoints = match g.idp.endpoints().await {
        Ok(e) => e,
        Err(e) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("sign-in is not available: {e} (request {request_id})"),
            );
        }
    };
    let (challenge, verifier) = openidconnect::PkceCodeChallenge::new_random_sha256();
    let state = openidconnect::CsrfToken::new_random().secret().clone();
    let nonce = openidconnect::Nonce::new_random().secret().clone();
    {
        let mut pending = g.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = |pending: &HashMap<String, Pending>, of: Option<Option<std::net::IpAddr>>| {
            pending
                .iter()
                .filter(|(_, p)| of.is_none_or(|ip| p.peer == ip))
                .min_by_key(|(_, p)| p.seq)
                .map(|(k, _)| k.clone())
        };
        let from_peer = pending.values().filter(|p| p.peer == peer).count();
        if from_peer >= MAX_PENDING_PER_ADDR
            && let Some(k) = oldest(&pending, Some(peer))
        {
            pending.remove(&k);
        }
        if pending.len() >= MAX_PENDING {
            let t = now.as_secs();
            pending.retain(|_, p| p.created.saturating_add(SIGNIN_LIFE_SECS) > t);
        }
        if pending.len() >= MAX_PENDING
            && let Some(k) = oldest(&pending, None)
        {
            pending.remove(&k);
        }
        pending.insert(
            state.clone(),
            Pending {
                nonce: nonce.clone(),
                verifier: verifier.secret().clone(),
                return_to: return_to.to_owned(),
                created: now.as_secs(),
                peer,
                seq: SIGNIN_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            },
        );
    }
    let mut url = format!(
        "{}?response_type=code&client_id={}&redirect_uri={}&scope=openid&state={}\
         &nonce={}&code_challenge={}&code_challenge_method=S256",
        endpoints.authorization,
        encode(&g.idp.client_id),
        encode(&g.redirect_uri),
        encode(&state),
        encode(&nonce),
        encode(challenge.as_str()),
    );
    if let Some(acr) = acr {
        url.push_str("&acr_values=");
        url.push_str(&encode(acr.as_str()));
    }
    let mut r = plain(
        StatusCode::FOUND,
        "sign in at the zone's identity provider\n",
    );
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    let cookie = format!(
        "{SIGNIN_COOKIE}={state}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={SIGNIN_LIFE_SECS}"
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `GET /.tianping/callback`: the IdP's answer to a sign-in this browser started.
pub(super) async fn callback(
    g: &Inner,
    req: &Request<Body>,
    request_id: &str,
) -> Response<ResponseBody> {
    let now = g.now();
    let q = decode_pairs(req.uri().query().unwrap_or_default());
    let fail = |why: String| {
        let mut e = g.event(now, "signin", request_id);
        e.outcome = "failure".into();
        e.reason = why.chars().take(512).collect();
        if let Some(c) = req.extensions().get::<ConnInfo>() {
            e.source = c.peer.to_string();
        }
        let _ = g.audit.append_queued(&e);
        let mut r = plain(
            StatusCode::UNAUTHORIZED,
            format!("sign-in failed: {why} (request {request_id})"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{SIGNIN_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
        )) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    };
    // RFC 9207: the answer names its issuer, which must be ours (mix-up defence)
    if q.get("iss").map(String::as_str) != Some(g.idp.issuer.as_str()) {
        return fail("the answer does not name this zone's IdP as its issuer (`iss`)".into());
    }
    let Some(state) = q.get("state") else {
        return fail("no `state`".into());
    };
    let bound = cookie_value(
        req.headers(),
        SIGNIN_COOKIE,
        g.limits.max_cookie_header_bytes,
    );
    if bound != Some(state.as_str()) {
        return fail("the `state` is not the one this browser started".into());
    }
    let pending = g
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(state);
    let Some(p) = pending.filter(|p| p.created.saturating_add(SIGNIN_LIFE_SECS) > now.as_secs())
    else {
        return fail("the sign-in is unknown or expired".into());
    };
    if let Some(err) = q.get("error") {
        return fail(format!("the IdP answered `{err}`"));
    }
    let Some(code) = q.get("code") else {
        return fail("no `code`".into());
    };
    let claims = match g
        .idp
        .redeem(code, &g.redirect_uri, &p.verifier, &p.nonce, now)
        .await
    {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let session = match session_of(g, &claims, now) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut e = g.event(now, "signin", request_id);
    e.outcome = "ok".into();
    e.object = format!("session:{}", session.id);
    if let Some(c) = req.extensions().get::<ConnInfo>() {
        e.source = c.peer.to_string();
    }
    fill_actor(&mut e, &Identity::from_session(&session));
    // durable before its effect (the cookie)
    match g.audit.append_prompt(&e).map_err(|e| e.to_string()) {
        Ok(q) => {
            if let Err(err) = q.durable().await {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the audit log failed: {err} (request {request_id})"),
                );
            }
        }
        Err(err) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the audit log refuses appends: {err} (request {request_id})"),
            );
        }
    }
    let cookies = g.cookies.load_full();
    let sealed = match cookies.seal(&session) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let mut r = plain(StatusCode::SEE_OTHER, "signed in\n");
    let to = if p.return_to.starts_with('/') && !p.return_to.starts_with("//") {
        p.return_to
    } else {
        "/".to_owned()
    };
    if let Ok(v) = HeaderValue::from_str(&to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cookies.set_cookie(&sealed)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SIGNIN_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// The session of a checked ID token's claims (a person of this zone).
fn session_of(g: &Inner, c: &Map<String, Value>, now: UnixTime) -> Result<Session, String> {
    let get = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
    let de = |k: &str| -> Result<Value, String> {
        match get(k) {
            Value::Null => Err(format!("the ID token has no `{k}`")),
            v => Ok(v),
        }
    };
    let zone: ZoneName = serde_json::from_value(de("zone")?)
        .map_err(|_| "the ID token's `zone` is not a zone".to_owned())?;
    if zone != g.zone {
        return Err(format!(
            "the ID token vouches for a person of zone `{zone}`"
        ));
    }
    let parse = |k: &str| -> Result<Value, String> { Ok(get(k)) };
    let sub = serde_json::from_value(de("sub")?).map_err(|_| "bad `sub`".to_owned())?;
    let roles = match parse("roles")? {
        Value::Null => vec![],
        v => serde_json::from_value(v).map_err(|_| "bad `roles`".to_owned())?,
    };
    let court = match parse("court")? {
        Value::Null => None,
        v => Some(serde_json::from_value(v).map_err(|_| "bad `court`".to_owned())?),
    };
    let clearance = match parse("clearance")? {
        Value::Null => tianping_core::Clearance::None,
        v => serde_json::from_value(v).map_err(|_| "bad `clearance`".to_owned())?,
    };
    let acr = serde_json::from_value(de("acr")?).map_err(|_| "bad `acr`".to_owned())?;
    let amr = match parse("amr")? {
        Value::Null => vec![],
        v => serde_json::from_value(v).map_err(|_| "bad `amr`".to_owned())?,
    };
    let auth_time = get("auth_time").as_u64().unwrap_or(now.as_secs());
    let sid = get("sid").as_str().map(str::to_owned);
    let id = g
        .try_random_hex(16)
        .ok_or("no randomness for a session id")?;
    Ok(Session {
        id,
        sid,
        sub,
        roles,
        court,
        clearance,
        acr,
        amr,
        auth_time,
        last_used: now.as_secs(),
    })
}

/// `GET /.tianping/me`: who is signed in (JSON with `Accept: application/json`), with a
/// sign-out button.
pub(super) async fn me(g: &Inner, req: &Request<Body>) -> Response<ResponseBody> {
    let now = g.now();
    let asker = g.asker(req, now).await;
    let Some(who) = asker.who else {
        return plain(StatusCode::UNAUTHORIZED, "not signed in\n");
    };
    let (signed_in, expires, idle) = match &asker.session {
        Some(s) => (
            Some(s.auth_time),
            Some(
                s.auth_time
                    .saturating_add(g.limits.session_absolute.as_secs()),
            ),
            Some(s.last_used.saturating_add(g.limits.session_idle.as_secs())),
        ),
        None => (None, None, None),
    };
    let v = json!({
        "sub": who.sub.as_str(),
        "roles": who.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "court": who.court.as_ref().map(|c| c.as_str().to_owned()),
        "clearance": who.clearance.to_string(),
        "acr": who.acr.as_str(),
        "amr": who.amr.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "credential": who.credential.as_str(),
        "zone": g.zone.as_str(),
        "signed_in_at": signed_in,
        "expires_at": expires,
        "idle_expires_at": idle,
    });
    let json_wanted = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if json_wanted {
        return answer(StatusCode::OK, "application/json", v.to_string());
    }
    let mut rows = String::new();
    if let Value::Object(m) = &v {
        for (k, val) in m {
            let shown = match val {
                Value::String(s) => s.clone(),
                Value::Null => "—".into(),
                other => other.to_string(),
            };
            let _ = write!(
                rows,
                "<tr><th>{}</th><td>{}</td></tr>",
                html_escape(k),
                html_escape(&shown)
            );
        }
    }
    let page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Signed in</title>\
         <h1>Signed in to zone {}</h1><table>{rows}</table>\
         <form method=\"post\" action=\"/.tianping/logout\"><button>Sign out</button></form></html>\n",
        html_escape(g.zone.as_str())
    );
    let mut r = html_page(page);
    // the sign-out form's answer sends the browser on to the IdP: a browser holds a form's
    // redirects to `form-action` too
    let csp = format!(
        "default-src 'none'; form-action 'self' {}; frame-ancestors 'none'",
        g.idp.issuer
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// `POST /.tianping/logout`: the session revoked and its cookie removed.
pub(super) async fn logout(
    g: &Inner,
    req: &Request<Body>,
    request_id: &str,
) -> Response<ResponseBody> {
    let now = g.now();
    // a cross-site form cannot carry the (SameSite=Lax) cookie; an Origin that is not ours
    // is refused outright
    if let Some(origin) = req.headers().get(header::ORIGIN)
        && origin.as_bytes() != g.public_url.as_bytes()
    {
        return plain(StatusCode::FORBIDDEN, "a sign-out from another origin\n");
    }
    let asker = g.asker(req, now).await;
    if let Some(s) = &asker.session {
        let r = g
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .revoke_session(&s.id, now);
        let mut e = g.event(now, "signout", request_id);
        e.object = format!("session:{}", s.id);
        e.outcome = if r.is_ok() { "ok" } else { "failure" }.into();
        fill_actor(&mut e, &Identity::from_session(s));
        let _ = g.audit.append_queued(&e);
    }
    // the sign-in at the IdP ends too, or the next visit would be signed in again at once,
    // silently (single sign-on): the browser goes on to the IdP's end-session endpoint, which
    // asks the user to confirm (the gateway keeps no ID token to hint with)
    let end_session = match g.idp.endpoints().await {
        Ok(e) => e.end_session,
        Err(_) => None,
    };
    let mut r = match end_session.and_then(|url| {
        let sep = if url.contains('?') { '&' } else { '?' };
        let to = format!(
            "{url}{sep}client_id={}",
            crate::form::encode(&g.idp.client_id)
        );
        HeaderValue::from_str(&to).ok()
    }) {
        Some(to) => {
            let mut r = answer(
                StatusCode::SEE_OTHER,
                "text/plain; charset=utf-8",
                String::new(),
            );
            r.headers_mut().insert(header::LOCATION, to);
            r
        }
        None => answer(
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Signed out</title>\
             <h1>Signed out</h1><p>Signed out of this gateway. The identity provider could not \
             be reached: sign out there too on a shared computer.</p></html>\n"
                .into(),
        ),
    };
    if let Ok(v) = HeaderValue::from_str(&CookieSealer::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /.tianping/backchannel-logout`: the IdP's logout token ends sessions by `sid` or
/// subject.
pub(super) async fn backchannel_logout(
    g: &Inner,
    mut req: Request<Body>,
    request_id: &str,
) -> Response<ResponseBody> {
    let now = g.now();
    let refuse = |why: String| {
        let mut e = g.event(now, "logout.backchannel", request_id);
        e.outcome = "denied".into();
        e.reason = why.chars().take(512).collect();
        let _ = g.audit.append_queued(&e);
        answer(
            StatusCode::BAD_REQUEST,
            "application/json",
            json!({ "error": "invalid_request", "error_description": why }).to_string(),
        )
    };
    req.body_mut().set_limit(MAX_LOGOUT_BODY);
    let body = match req.into_body().bytes().await {
        Ok(b) => b,
        Err(e) => return refuse(e.to_string()),
    };
    let form = decode_pairs(&String::from_utf8_lossy(&body));
    let Some(token) = form.get("logout_token") else {
        return refuse("no `logout_token`".into());
    };
    let (sid, sub) = match g.idp.check_logout_token(token, now).await {
        Ok(x) => x,
        Err(e) => return refuse(e.to_string()),
    };
    let done = {
        let mut rev = g.revocations.lock().unwrap_or_else(PoisonError::into_inner);
        match (&sid, &sub) {
            (Some(sid), _) => rev.revoke_sid(sid, now),
            (None, Some(sub)) => match sub.parse() {
                Ok(sub) => rev.revoke_subject(&sub, now),
                Err(_) => return refuse("the logout token's `sub` is not a subject".into()),
            },
            (None, None) => return refuse("neither sid nor sub".into()),
        }
    };
    let mut e = g.event(now, "logout.backchannel", request_id);
    e.actor = sub.clone().unwrap_or_default();
    e.object = sid.map_or_else(|| "subject".to_owned(), |s| format!("sid:{s}"));
    if done.is_err() {
        e.outcome = "failed".into();
        e.reason = "the revocation list is full".into();
        let _ = g.audit.append_queued(&e);
        // the IdP retries
        return plain(StatusCode::SERVICE_UNAVAILABLE, "revocation list full\n");
    }
    e.outcome = "ok".into();
    if let Ok(q) = g.audit.append_prompt(&e) {
        let _ = q.durable().await;
    }
    answer(StatusCode::OK, "text/plain; charset=utf-8", String::new())
}
