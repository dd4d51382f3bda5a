//! `/authorize`, `/login` and `/register`: the interactive sign-in over HTML forms, each event
//! in the audit log before the answer that carries its effect.

use http::{HeaderMap, HeaderValue, header};
use tianping_audit::Event;
use tianping_core::UnixTime;
use tianping_net::ResponseBody;

use super::Inner;
use crate::authorize::{
    AuthorizationRequest, AuthorizeError, ErrorRedirect, parse_authorization, success_location,
};
use crate::cert_signin::{CertFailure, CertRefusal, VerifiedCert};
use crate::client::Client;
use crate::directory::Directory;
use crate::error::IdpError;
use crate::form::Params;
use crate::grants::Grants;
use crate::pages::{self, FormPage};
use crate::session::{SESSION_COOKIE, Session, Sessions, session_cookie};
use crate::signin::{AuditNote, Flow, Notice, Outcome, Pending, Stage, key_of, session_suffices};
use crate::totp::qr_svg;

type Answer = http::Response<ResponseBody>;

/// The session id the request's cookie carries.
pub(super) fn session_id(headers: &HeaderMap) -> Option<String> {
    let prefix = format!("{SESSION_COOKIE}=");
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(prefix.as_str()).map(str::to_owned))
        .filter(|id| !id.is_empty())
}

/// The chain (DER, leaf first) the client presented on the request's connection, if any. The
/// listener asks for one (`ClientAuth::Request`) and accepts any: it is verified here.
pub(super) fn presented_chain(req: &http::Request<tianping_net::Body>) -> Option<Vec<Vec<u8>>> {
    let info = req.extensions().get::<tianping_net::ConnInfo>()?;
    let chain: Vec<Vec<u8>> = info
        .presented_chain
        .as_ref()?
        .iter()
        .map(|c| c.to_vec())
        .collect();
    (!chain.is_empty()).then_some(chain)
}

/// Whether the client presented a certificate on the request's connection (without copying
/// the chain, as [`presented_chain`] does).
pub(super) fn presents_certificate(req: &http::Request<tianping_net::Body>) -> bool {
    req.extensions()
        .get::<tianping_net::ConnInfo>()
        .and_then(|i| i.presented_chain.as_ref())
        .is_some_and(|c| !c.is_empty())
}

impl Inner {
    /// Verifies a presented chain against the zone's CA and CRL at `now`: the certificate or
    /// why it is refused, and whether a stale CRL was accepted by the setting.
    fn check_certificate(
        &self,
        chain: Option<&[Vec<u8>]>,
        now: UnixTime,
    ) -> (Result<VerifiedCert, CertRefusal>, bool) {
        let (Some(cs), Some(chain)) = (&self.cert, chain) else {
            return (Err(CertRefusal::NonePresented), false);
        };
        let (verified, relaxed) = match cs.verifier.verify(chain, now, false) {
            Err(CertFailure::StaleCrl) if cs.accept_stale_crl => {
                (cs.verifier.verify(chain, now, true), true)
            }
            other => (other, false),
        };
        let zone = self.sign_in.as_ref().map(|si| si.zone.as_str());
        let checked = match verified {
            // the verifier is the zone's; a certificate of another zone is refused whatever it says
            Ok(v) if zone.is_some_and(|z| z != v.zone.as_str()) => Err(CertRefusal::OtherZone),
            Ok(v) => Ok(v),
            Err(f) => Err(CertRefusal::from(&f)),
        };
        (checked, relaxed)
    }

    /// A client by id: the ones given at start, then the directory's.
    pub(super) fn find_client(&self, id: &str) -> Option<Client> {
        self.clients
            .get(id)
            .cloned()
            .or_else(|| self.parts.store.client(id).ok().flatten())
    }

    fn parse(&self, raw: &[u8]) -> Result<AuthorizationRequest, AuthorizeError> {
        parse_authorization(raw, self.parts.issuer.issuer(), &|id| self.find_client(id))
            .map(|(req, _)| req)
    }

    /// Appends audit events durably; the answer waits for them.
    async fn append_notes(
        &self,
        now: UnixTime,
        notes: Vec<AuditNote>,
        client_id: &str,
    ) -> Result<(), IdpError> {
        if notes.is_empty() {
            return Ok(());
        }
        let events: Vec<Event> = notes
            .into_iter()
            .map(|n| {
                let mut e = Event::new(now, n.action);
                e.zone.clone_from(&self.parts.zone);
                e.component = "idp".into();
                e.actor = n.actor;
                e.object = client_id.to_owned();
                e.outcome = n.outcome.into();
                e.reason = n.reason;
                e
            })
            .collect();
        // Awaited without a thread of its own, as the grants are: the log's committer wakes
        // this task once the events' group is durable.
        let audit_error = |e: tianping_audit::StoreError| IdpError::Store(format!("audit: {e}"));
        self.parts
            .audit
            .append_many_prompt(&events)
            .map_err(audit_error)?
            .durable()
            .await
            .map_err(audit_error)
    }

    /// Issues the code for a signed-in identity and redirects to the client with it.
    async fn code_redirect(
        &self,
        req: &AuthorizationRequest,
        identity: crate::tokens::Identity,
        session_id: &str,
        cookie: Option<&str>,
        now: UnixTime,
    ) -> Result<Answer, IdpError> {
        let p = &self.parts;
        let sub = identity.sub.to_string();
        let code = Grants::new(&*p.store, p.grants).issue_code_in_session(
            req,
            identity,
            Some(session_id),
            now,
            &*p.rng,
        )?;
        let note = AuditNote {
            action: "authorize.code",
            actor: sub,
            outcome: "ok",
            reason: String::new(),
        };
        self.append_notes(now, vec![note], &req.client_id).await?;
        let location = success_location(
            &req.redirect_uri,
            &code,
            req.state.as_deref(),
            p.issuer.issuer(),
        );
        Ok(pages::redirect(&location, cookie))
    }

    /// An authorization request (GET query or POST body): a code at once for a session that
    /// suffices, an error redirect for `prompt=none` otherwise, else the password page in a new
    /// pre-sign-in session.
    pub(super) async fn authorize_request(
        &self,
        raw: Vec<u8>,
        cookie: Option<String>,
        presented: bool,
        now: UnixTime,
    ) -> Answer {
        let req = match self.parse(&raw) {
            Ok(req) => req,
            Err(AuthorizeError::Page(e)) => return pages::error_page(&e),
            Err(AuthorizeError::Redirect(r)) => return pages::redirect(&r.location(), None),
        };
        let p = &self.parts;
        let back = |error| {
            let r = ErrorRedirect {
                redirect_uri: req.redirect_uri.clone(),
                error,
                state: req.state.clone(),
                iss: p.issuer.issuer().to_owned(),
            };
            pages::redirect(&r.location(), None)
        };
        // An `id_token_hint` is checked against the published keys and algorithms only; the
        // session must be the hinted subject's to be used.
        let hinted = match req.id_token_hint.as_deref() {
            Some(h) => match p.issuer.verify_id_token_hint(h, now) {
                Ok(hint) => Some(hint.sub),
                Err(e) => return back(e),
            },
            None => None,
        };
        let sessions = Sessions::new(&*p.store, p.sessions);
        let existing = cookie
            .as_deref()
            .and_then(|id| sessions.get(id, now).ok().map(|s| (id, s)));
        let mut verdict = Err(IdpError::LoginRequired);
        if let Some((
            session_id,
            Session {
                identity: Some(identity),
                ..
            },
        )) = &existing
        {
            let user = Directory::new(&*p.store).user(&identity.sub).ok().flatten();
            verdict = match &self.sign_in {
                _ if hinted.as_ref().is_some_and(|h| *h != identity.sub) => {
                    Err(IdpError::LoginRequired)
                }
                Some(si) => session_suffices(
                    identity,
                    user.as_ref(),
                    si,
                    req.max_age,
                    req.acr_values.iter().min().copied(),
                    now,
                ),
                None => Err(IdpError::LoginRequired),
            };
            if let (Ok(()), Some(user), false) = (&verdict, &user, req.prompt.login) {
                // The session suffices: the identity as signed in (on its device, if any), the
                // record as it is now.
                let mut fresh = user.identity(
                    identity.acr,
                    identity.amr.clone(),
                    identity.zone.clone(),
                    identity.auth_time,
                );
                fresh.device.clone_from(&identity.device);
                return match self.code_redirect(&req, fresh, session_id, None, now).await {
                    Ok(r) => r,
                    Err(e) => pages::error_page(&e),
                };
            }
        }
        if req.prompt.none {
            let e = match verdict {
                Err(e) => e,
                Ok(()) => IdpError::LoginRequired,
            };
            return back(e);
        }
        if let Some((id, _)) = &existing
            && p.store.remove_session(&key_of(id)).is_err()
        {
            return pages::error_page(&IdpError::Store("session".into()));
        }
        let started = sessions.start(now, &*p.rng).and_then(|(id, s)| {
            p.store
                .put_sign_in(key_of(&id), Pending::new(raw).encode()?)?;
            Ok((id, s))
        });
        match started {
            Ok((id, session)) => {
                let pending = Pending::new(Vec::new());
                let cookie = session_cookie(&id);
                self.stage_page(&req, &pending, &session, None, Some(&cookie), presented)
            }
            Err(e) => pages::error_page(&e),
        }
    }

    /// The page of the stage a sign-in is at.
    fn stage_page(
        &self,
        req: &AuthorizationRequest,
        pending: &Pending,
        session: &Session,
        notice: Option<&Notice>,
        cookie: Option<&str>,
        presented: bool,
    ) -> Answer {
        let csrf = session.csrf_token(pending.stage.form());
        let mut enrolment = None;
        if let (Stage::Enrol, Some(si), Some(sub)) = (pending.stage, &self.sign_in, &pending.sub) {
            let user = Directory::new(&*self.parts.store).user(sub).ok().flatten();
            if let Some((user, secret)) = user.and_then(|u| u.totp_pending.clone().map(|s| (u, s)))
            {
                let uri = si.totp.otpauth_uri(&secret, &si.totp_issuer, &user.login);
                match qr_svg(uri.expose()) {
                    Ok(svg) => enrolment = Some((svg, secret.to_base32())),
                    Err(e) => return pages::error_page(&e),
                }
            }
        }
        let mut page = pages::form_page(&FormPage {
            locale: req.ui_locale,
            stage: pending.stage,
            csrf: &csrf,
            notice,
            cookie,
            login_hint: req.login_hint.as_deref().unwrap_or_default(),
            register_link: self.sign_in.as_ref().is_some_and(|s| s.registration_open()),
            cert_button: presented && self.cert.is_some(),
            enrolment: enrolment
                .as_ref()
                .map(|(svg, secret)| (svg.as_str(), secret.expose().as_str())),
        });
        // the form's submission may end in the 303 to the client: its origin is a form-action
        if let Ok(v) = HeaderValue::from_str(&pages::csp_for_redirect(&req.redirect_uri)) {
            page.headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, v);
        }
        page
    }

    /// The live pre-sign-in session of a request, where its sign-in stands, and its request.
    fn resume(
        &self,
        cookie: Option<&str>,
        now: UnixTime,
    ) -> Result<(String, Session, Pending, AuthorizationRequest), IdpError> {
        let p = &self.parts;
        let id = cookie.ok_or(IdpError::SessionExpired)?;
        let session = match Sessions::new(&*p.store, p.sessions).get(id, now) {
            Ok(s) => s,
            Err(e) => {
                // the session ended: so does the sign-in it carried
                p.store.remove_sign_in(&key_of(id))?;
                return Err(e);
            }
        };
        let pending = p
            .store
            .sign_in_state(&key_of(id))?
            .ok_or(IdpError::SessionExpired)?;
        let pending = Pending::decode(&pending)?;
        let req = self
            .parse(&pending.request)
            .map_err(|e| e.error().clone())?;
        Ok((id.to_owned(), session, pending, req))
    }

    /// A posted sign-in form (`POST /login`).
    pub(super) async fn login(
        &self,
        cookie: Option<String>,
        body: &[u8],
        chain: Option<Vec<Vec<u8>>>,
        now: UnixTime,
    ) -> Answer {
        let Some(si) = &self.sign_in else {
            return pages::error_page(&IdpError::Internal("sign-in is not configured"));
        };
        let (id, session, mut pending, req) = match self.resume(cookie.as_deref(), now) {
            Ok(found) => found,
            Err(e) => return pages::error_page(&e),
        };
        let form = match Params::parse(body) {
            Ok(f) => f,
            Err(e) => return pages::error_page(&e),
        };
        let p = &self.parts;
        let csrf = form.get("csrf").ok().flatten();
        if let Err(e) = session.check_csrf(pending.stage.form(), csrf) {
            let note = AuditNote {
                action: "signin.failure",
                actor: pending
                    .sub
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                outcome: "denied",
                reason: "csrf".into(),
            };
            if let Err(a) = self.append_notes(now, vec![note], &req.client_id).await {
                return pages::error_page(&a);
            }
            return pages::error_page(&e);
        }
        let mut flow = Flow {
            store: &*p.store,
            parts: si,
            rng: &*p.rng,
            now,
            notes: Vec::new(),
            requested_acr: req.acr_values.iter().min().copied(),
        };
        let with_certificate = pending.stage == Stage::Password
            && form.get("method").ok().flatten() == Some("certificate");
        let outcome = if with_certificate {
            let (checked, relaxed) = self.check_certificate(chain.as_deref(), now);
            flow.certificate(&mut pending, chain.as_deref(), checked, relaxed)
        } else {
            flow.step(&mut pending, &form)
        };
        let notes = std::mem::take(&mut flow.notes);
        let counted = notes.iter().map(|n| (n.action, n.reason.as_str()));
        crate::metrics::report_sign_in(&*self.metrics, counted);
        if let Err(e) = self.append_notes(now, notes, &req.client_id).await {
            return pages::error_page(&e);
        }
        let key = key_of(&id);
        let answer = match outcome {
            Err(e) => Err(e),
            Ok(Outcome::Show(notice)) => pending.encode().and_then(|b| {
                p.store.put_sign_in(key, b)?;
                let presented = chain.is_some();
                Ok(self.stage_page(&req, &pending, &session, notice.as_ref(), None, presented))
            }),
            Ok(Outcome::Refuse(notice)) => p
                .store
                .remove_sign_in(&key)
                .map(|()| pages::refusal_page(req.ui_locale, &notice)),
            Ok(Outcome::Done(identity)) => {
                let rotated = p.store.remove_sign_in(&key).and_then(|()| {
                    Sessions::new(&*p.store, p.sessions).sign_in(
                        Some(&id),
                        identity.clone(),
                        now,
                        &*p.rng,
                    )
                });
                match rotated {
                    Ok((new_id, _)) => {
                        let cookie = session_cookie(&new_id);
                        self.code_redirect(&req, identity, &new_id, Some(&cookie), now)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        answer.unwrap_or_else(|e| pages::error_page(&e))
    }

    /// `GET /register`: the registration form in place of the password form (zone `internet`).
    pub(super) fn register(&self, cookie: Option<String>, now: UnixTime) -> Answer {
        if !self.sign_in.as_ref().is_some_and(|s| s.registration_open()) {
            return pages::error_page(&IdpError::Internal("registration is not open here"));
        }
        let (id, session, mut pending, req) = match self.resume(cookie.as_deref(), now) {
            Ok(found) => found,
            Err(e) => return pages::error_page(&e),
        };
        if pending.stage != Stage::Password {
            return self.stage_page(&req, &pending, &session, None, None, false);
        }
        pending.stage = Stage::Register;
        match pending
            .encode()
            .and_then(|b| self.parts.store.put_sign_in(key_of(&id), b))
        {
            Ok(()) => self.stage_page(&req, &pending, &session, None, None, false),
            Err(e) => pages::error_page(&e),
        }
    }
}
