//! The interactive sign-in (the `server` feature), as a state machine over the store: password,
//! then TOTP (or its enrolment), then the required actions, then an [`Identity`] filled from the
//! user record. Each step takes a posted form and returns what to show next and the audit notes
//! the server appends, durably, before it answers.
//!
//! Where a sign-in stands is kept in the store under the SHA-256 of the pre-sign-in session id
//! (never in the page), with the authorization request it serves. Failures of either factor
//! count towards the lockout; an unknown account costs one password hash against the dummy, as a
//! known one does; a locked account is told only that it must wait.

use std::fmt;
use std::sync::Arc;

use tianping_core::{Acr, Amr, Role, SubjectId, UnixTime, WireReader, WireWriter, ZoneName};

use crate::IdpError;
use crate::cert_signin::{
    CertFactor, CertRefusal, Mapped, VerifiedCert, acr_of, leaf_actor, map_certificate,
};
use crate::directory::{Directory, RequiredAction, TotpCredential, User};
use crate::form::Params;
use crate::lockout::{Factor, LockoutPolicy};
use crate::password::Passwords;
use crate::random::{Random, bytes};
use crate::store::Store;
use crate::tokens::Identity;
use crate::totp::{TotpConfig, TotpSecret};

/// The least `acr` an account with these roles must reach (the zone policy's rule).
pub type LeastAcr = Arc<dyn Fn(&[Role]) -> Acr + Send + Sync>;

/// What the interactive sign-in needs.
#[derive(Clone)]
pub struct SignInParts {
    /// Hashes and checks passwords (the same hasher for the dummy).
    pub passwords: Arc<Passwords>,
    /// Failures before a lock, and the growing delay.
    pub lockout: LockoutPolicy,
    /// TOTP parameters.
    pub totp: TotpConfig,
    /// The least `acr` per role, from the zone's policy.
    pub least_acr: LeastAcr,
    /// The zone this provider serves (its name goes in every identity).
    pub zone: ZoneName,
    /// Whether the public may register (honoured in zone `internet` only).
    pub self_registration: bool,
    /// The issuer name authenticator apps show.
    pub totp_issuer: String,
}

impl fmt::Debug for SignInParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInParts")
            .field("zone", &self.zone)
            .field("lockout", &self.lockout)
            .finish_non_exhaustive()
    }
}

impl SignInParts {
    /// Whether the registration page is offered.
    pub fn registration_open(&self) -> bool {
        self.self_registration && self.zone.as_str() == "internet"
    }
}

/// The step a sign-in is at; each has its own form and CSRF token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Password,
    Totp,
    Enrol,
    ChangePassword,
    Register,
}

impl Stage {
    const ALL: [Stage; 5] = [
        Stage::Password,
        Stage::Totp,
        Stage::Enrol,
        Stage::ChangePassword,
        Stage::Register,
    ];

    /// The form name its CSRF token is bound to.
    pub(crate) fn form(self) -> &'static str {
        match self {
            Stage::Password => "login",
            Stage::Totp => "totp",
            Stage::Enrol => "enrol",
            Stage::ChangePassword => "change-password",
            Stage::Register => "register",
        }
    }
}

/// Where a sign-in stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The authorization request, as sent.
    pub request: Vec<u8>,
    pub stage: Stage,
    /// Who passed the password step (or presented a certificate).
    pub sub: Option<SubjectId>,
    pub amr: Vec<Amr>,
    /// The certificate the sign-in started with, if any.
    pub cert: CertFactor,
    /// The registered device the sign-in is made on (its certificate presented).
    pub device: Option<String>,
}

/// Version 2 adds the certificate factor, 3 the device (a version 1 state has neither).
const VERSION: u8 = 3;

impl Pending {
    pub(crate) fn new(request: Vec<u8>) -> Self {
        Self {
            request,
            stage: Stage::Password,
            sub: None,
            amr: Vec::new(),
            cert: CertFactor::None,
            device: None,
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, IdpError> {
        let mut w = WireWriter::new();
        w.u8(VERSION);
        w.bytes32(&self.request, "request")?;
        w.str16(self.stage.form())?;
        w.str16(self.sub.as_ref().map(SubjectId::as_str).unwrap_or_default())?;
        w.len16(self.amr.len(), "amr")?;
        for a in &self.amr {
            w.str16(a.as_str())?;
        }
        w.str16(self.cert.as_str())?;
        w.str16(self.device.as_deref().unwrap_or_default())?;
        Ok(w.into_bytes())
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, IdpError> {
        let bad = || IdpError::Store("a stored sign-in is not valid".into());
        let mut r = WireReader::new(b);
        let version = r.u8("version")?;
        if !(1..=VERSION).contains(&version) {
            return Err(bad());
        }
        let request = r.bytes32("request")?.to_vec();
        let stage_name = r.str16("stage")?;
        let stage = Stage::ALL
            .into_iter()
            .find(|s| s.form() == stage_name)
            .ok_or_else(bad)?;
        let sub = match r.str16("sub")? {
            "" => None,
            s => Some(s.parse().map_err(|_| bad())?),
        };
        let n = r.count16("amr", 2)?;
        let amr = (0..n)
            .map(|_| r.str16("amr")?.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let cert = match version {
            1 => CertFactor::None,
            _ => CertFactor::parse(r.str16("cert")?).ok_or_else(bad)?,
        };
        let device = match version {
            1 | 2 => None,
            _ => Some(r.str16("device")?.to_owned()).filter(|d| !d.is_empty()),
        };
        r.finish()?;
        Ok(Self {
            request,
            stage,
            sub,
            amr,
            cert,
            device,
        })
    }
}

/// A message shown above a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Unknown account, wrong password or disabled account: one message for all.
    SignInFailed,
    /// Locked for this many more seconds.
    Locked(u64),
    TotpWrong,
    TotpReplayed,
    PasswordRule(&'static str),
    PasswordReused,
    PasswordsDiffer,
    NameTaken,
    Invalid(String),
    /// The account's roles need a certificate sign-in, which this page cannot give.
    CertificateRequired,
    /// A certificate sign-in refused, and why.
    Certificate(CertRefusal),
    /// Signing in on this registered device (its name): the person's own factors follow.
    OnDevice(String),
}

/// An audit event the server appends before it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditNote {
    pub action: &'static str,
    pub actor: String,
    pub outcome: &'static str,
    pub reason: String,
}

/// What a step leads to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Show the form of `pending.stage` (with a notice).
    Show(Option<Notice>),
    /// Signed in: rotate the session and issue the code.
    Done(Identity),
    /// No code at all (the page says why); the sign-in is over.
    Refuse(Notice),
}

/// One step of a sign-in.
pub(crate) struct Flow<'a> {
    pub store: &'a dyn Store,
    pub parts: &'a SignInParts,
    pub rng: &'a dyn Random,
    pub now: UnixTime,
    pub notes: Vec<AuditNote>,
    /// The least `acr` the request's `acr_values` accept (`None`: the roles' least alone).
    pub requested_acr: Option<Acr>,
}

/// The `acr` a sign-in must reach: the roles' least, raised to the least one the request's
/// `acr_values` name (any of them is acceptable, so the least of them binds).
pub(crate) fn needed_acr(parts: &SignInParts, roles: &[Role], requested: Option<Acr>) -> Acr {
    let least = (parts.least_acr)(roles);
    requested.map_or(least, |r| least.max(r))
}

fn field<'p>(form: &'p Params, name: &str) -> &'p str {
    form.get(name).ok().flatten().unwrap_or_default()
}

impl Flow<'_> {
    fn note(&mut self, action: &'static str, actor: &str, outcome: &'static str, reason: &str) {
        self.notes.push(AuditNote {
            action,
            actor: actor.to_owned(),
            outcome,
            reason: reason.to_owned(),
        });
    }

    fn user(&self, pending: &Pending) -> Result<User, IdpError> {
        let sub = pending.sub.as_ref().ok_or(IdpError::SessionExpired)?;
        Directory::new(self.store)
            .user(sub)?
            .ok_or(IdpError::SessionExpired)
    }

    /// Counts a failure of `factor` for `account`; the notice to show.
    fn fail(
        &mut self,
        account: &str,
        factor: Factor,
        reason: &str,
        notice: Notice,
    ) -> Result<Notice, IdpError> {
        let mut state = self.store.lockout(account)?;
        let locked = self
            .parts
            .lockout
            .record_failure(&mut state, self.now, factor);
        self.store.put_lockout(account, &state)?;
        self.note("signin.failure", account, "denied", reason);
        Ok(match locked {
            Some(until) => {
                self.note("signin.lockout", account, "locked", reason);
                Notice::Locked(until.as_secs().saturating_sub(self.now.as_secs()))
            }
            None => notice,
        })
    }

    fn locked(&mut self, account: &str) -> Result<Option<Notice>, IdpError> {
        let state = self.store.lockout(account)?;
        match self.parts.lockout.check(&state, self.now) {
            Err(IdpError::AccountLocked { not_before }) => {
                self.note("signin.failure", account, "denied", "locked");
                Ok(Some(Notice::Locked(
                    not_before.saturating_sub(self.now.as_secs()),
                )))
            }
            Err(e) => Err(e),
            Ok(()) => Ok(None),
        }
    }

    /// Handles the form posted for `pending.stage`.
    pub(crate) fn step(
        &mut self,
        pending: &mut Pending,
        form: &Params,
    ) -> Result<Outcome, IdpError> {
        match pending.stage {
            Stage::Password => self.password(pending, form),
            Stage::Totp | Stage::Enrol => self.totp(pending, form),
            Stage::ChangePassword => self.change_password(pending, form),
            Stage::Register => self.register(pending, form),
        }
    }

    fn password(&mut self, pending: &mut Pending, form: &Params) -> Result<Outcome, IdpError> {
        let login = field(form, "username").trim().to_lowercase();
        let password = field(form, "password");
        let account = if login.is_empty() || login.len() > 64 {
            "-".to_owned()
        } else {
            login.clone()
        };
        if let Some(n) = self.locked(&account)? {
            return Ok(Outcome::Show(Some(n)));
        }
        let user = Directory::new(self.store).user_by_login(&account)?;
        let stored = user
            .as_ref()
            .and_then(|u| u.password.as_ref())
            .map(|p| p.hash.as_str());
        // One hash whether or not the account exists (the dummy stands in).
        let matched = self.parts.passwords.verify(stored, password);
        let user = match user {
            Some(u) if matched && u.is_enabled() => u,
            Some(u) if matched => {
                let reason = format!("disabled {}", u.sub);
                let n = self.fail(&account, Factor::Password, &reason, Notice::SignInFailed)?;
                return Ok(Outcome::Show(Some(n)));
            }
            _ => {
                let n = self.fail(&account, Factor::Password, "password", Notice::SignInFailed)?;
                return Ok(Outcome::Show(Some(n)));
            }
        };
        if let Some(id) = &pending.device {
            let owner = crate::device::Devices::new(self.store)
                .get(id)?
                .map(|d| d.owner);
            if owner.as_ref() != Some(&user.sub) {
                let r = CertRefusal::DeviceOfAnother;
                self.note("signin.failure", user.sub.as_str(), "denied", r.reason());
                return Ok(Outcome::Refuse(Notice::Certificate(r)));
            }
        }
        pending.sub = Some(user.sub.clone());
        pending.amr = vec![Amr::Pwd];
        self.next(pending, user)
    }

    /// "Sign in with certificate" on the password page: `checked` is the presented chain as the
    /// zone's CA and CRL judged it (`relaxed`: through a stale CRL the setting accepts).
    pub(crate) fn certificate(
        &mut self,
        pending: &mut Pending,
        chain: Option<&[Vec<u8>]>,
        checked: Result<VerifiedCert, CertRefusal>,
        relaxed: bool,
    ) -> Result<Outcome, IdpError> {
        let actor = chain.map_or_else(|| "-".to_owned(), leaf_actor);
        let cert = match checked {
            Ok(c) => c,
            Err(CertRefusal::NonePresented) => {
                // nothing was presented: the password form is still there
                let r = CertRefusal::NonePresented;
                self.note("signin.failure", &actor, "denied", r.reason());
                return Ok(Outcome::Show(Some(Notice::Certificate(r))));
            }
            Err(r) => {
                self.note("signin.failure", &actor, "denied", r.reason());
                return Ok(Outcome::Refuse(Notice::Certificate(r)));
            }
        };
        if relaxed {
            self.note(
                "signin.crl_relaxed",
                &actor,
                "ok",
                "crl past next-update accepted by setting",
            );
        }
        let (user, factor) = match map_certificate(&cert, self.store)? {
            Ok(Mapped::Person(user, factor)) => (*user, factor),
            Ok(Mapped::Device(device)) => {
                let reason = format!("device {} of {}", device.id, device.owner);
                self.note("signin.device", &actor, "ok", &reason);
                let name = if device.name.is_empty() {
                    device.id.clone()
                } else {
                    device.name.clone()
                };
                pending.device = Some(device.id);
                return Ok(Outcome::Show(Some(Notice::OnDevice(name))));
            }
            Err(r) => {
                self.note("signin.failure", &actor, "denied", r.reason());
                return Ok(Outcome::Refuse(Notice::Certificate(r)));
            }
        };
        if let Some(n) = self.locked(&user.login)? {
            return Ok(Outcome::Refuse(n));
        }
        pending.sub = Some(user.sub.clone());
        pending.cert = factor;
        pending.amr = factor.initial_amr();
        self.next(pending, user)
    }

    fn totp(&mut self, pending: &mut Pending, form: &Params) -> Result<Outcome, IdpError> {
        let user = self.user(pending)?;
        if let Some(n) = self.locked(&user.login)? {
            return Ok(Outcome::Show(Some(n)));
        }
        if !user.is_enabled() {
            return Ok(Outcome::Refuse(Notice::SignInFailed));
        }
        let code = field(form, "code");
        let enrolling = pending.stage == Stage::Enrol;
        let (secret, last) = match (&user.totp, &user.totp_pending, enrolling) {
            (_, Some(s), true) => (s.clone(), None),
            (Some(t), _, false) => (t.secret.clone(), t.last_step),
            _ => return Err(IdpError::SessionExpired),
        };
        let checked = self.parts.totp.verify(&secret, code, self.now, last);
        let step = match checked {
            Ok(step) => step,
            Err(e) => {
                let (reason, notice) = match e {
                    IdpError::TotpReplayed => ("totp replayed", Notice::TotpReplayed),
                    _ => ("totp", Notice::TotpWrong),
                };
                let n = self.fail(&user.login, Factor::Totp, reason, notice)?;
                return Ok(Outcome::Show(Some(n)));
            }
        };
        // Accept the step once: the update keeps it only if no later code came first.
        let mut accepted = false;
        let user = Directory::new(self.store).update_user(&user.sub, &mut |u| {
            accepted = false;
            if enrolling {
                if u.totp_pending.as_ref() == Some(&secret) {
                    u.totp = Some(TotpCredential {
                        secret: secret.clone(),
                        last_step: Some(step),
                    });
                    u.totp_pending = None;
                    u.required_actions
                        .retain(|a| *a != RequiredAction::EnrolTotp);
                    accepted = true;
                }
            } else if let Some(t) = &mut u.totp
                && t.secret == secret
                && t.last_step.is_none_or(|l| l < step)
            {
                t.last_step = Some(step);
                accepted = true;
            }
        })?;
        if !accepted {
            let n = self.fail(
                &user.login,
                Factor::Totp,
                "totp replayed",
                Notice::TotpReplayed,
            )?;
            return Ok(Outcome::Show(Some(n)));
        }
        if enrolling {
            self.note("signin.totp_enrolled", user.sub.as_str(), "ok", "");
        }
        if !pending.amr.contains(&Amr::Otp) {
            pending.amr.push(Amr::Otp);
        }
        self.next(pending, user)
    }

    fn change_password(
        &mut self,
        pending: &mut Pending,
        form: &Params,
    ) -> Result<Outcome, IdpError> {
        let user = self.user(pending)?;
        let new = field(form, "new_password");
        if new != field(form, "confirm") {
            return Ok(Outcome::Show(Some(Notice::PasswordsDiffer)));
        }
        let Some(record) = &user.password else {
            return Err(IdpError::SessionExpired);
        };
        let changed = self
            .parts
            .passwords
            .change(record, &user.sub, new, self.now, self.rng);
        let record = match changed {
            Ok(r) => r,
            Err(IdpError::PasswordTooWeak(why)) => {
                return Ok(Outcome::Show(Some(Notice::PasswordRule(why))));
            }
            Err(IdpError::PasswordReused) => {
                return Ok(Outcome::Show(Some(Notice::PasswordReused)));
            }
            Err(e) => return Err(e),
        };
        let user = Directory::new(self.store).update_user(&user.sub, &mut |u| {
            u.password = Some(record.clone());
            u.required_actions
                .retain(|a| *a != RequiredAction::ChangePassword);
        })?;
        self.note("signin.password_changed", user.sub.as_str(), "ok", "");
        self.next(pending, user)
    }

    fn register(&mut self, pending: &mut Pending, form: &Params) -> Result<Outcome, IdpError> {
        if !self.parts.registration_open() {
            return Ok(Outcome::Refuse(Notice::Invalid(
                "registration is not open here".into(),
            )));
        }
        let login = field(form, "username").trim().to_lowercase();
        let name = field(form, "display_name").trim().to_owned();
        let email = field(form, "email").trim().to_owned();
        let password = field(form, "password");
        if password != field(form, "confirm") {
            return Ok(Outcome::Show(Some(Notice::PasswordsDiffer)));
        }
        let sub: SubjectId = format!("p-{}", hex::encode(bytes::<8>(self.rng)?))
            .parse()
            .map_err(|_| IdpError::Internal("subject id"))?;
        let record = match self
            .parts
            .passwords
            .initial(&sub, password, self.now, self.rng)
        {
            Ok(r) => r,
            Err(IdpError::PasswordTooWeak(why)) => {
                return Ok(Outcome::Show(Some(Notice::PasswordRule(why))));
            }
            Err(e) => return Err(e),
        };
        let mut user = User::new(sub.clone(), &login, name, self.now);
        user.roles = vec![Role::Public];
        user.email = (!email.is_empty()).then_some(email);
        user.password = Some(record);
        let dir = Directory::new(self.store);
        if dir.user_by_login(&login)?.is_some() {
            return Ok(Outcome::Show(Some(Notice::NameTaken)));
        }
        match dir.add_user(user.clone()) {
            Ok(()) => {}
            Err(IdpError::Directory(why)) if why.contains("is taken") => {
                return Ok(Outcome::Show(Some(Notice::NameTaken)));
            }
            Err(IdpError::Directory(why)) => return Ok(Outcome::Show(Some(Notice::Invalid(why)))),
            Err(e) => return Err(e),
        }
        self.note("signin.register", sub.as_str(), "ok", "");
        pending.sub = Some(sub);
        pending.amr = vec![Amr::Pwd];
        self.next(pending, user)
    }

    /// After a factor or an action: the next thing the user must do, or done.
    fn next(&mut self, pending: &mut Pending, user: User) -> Result<Outcome, IdpError> {
        let need = needed_acr(self.parts, &user.roles, self.requested_acr);
        if need > Acr::Otp && pending.cert == CertFactor::None {
            let why = if (self.parts.least_acr)(&user.roles) < need {
                format!("acr_values {need} needs a certificate")
            } else {
                format!("acr {need} needs a certificate")
            };
            self.note("signin.failure", user.sub.as_str(), "denied", &why);
            return Ok(Outcome::Refuse(Notice::CertificateRequired));
        }
        // a hardware certificate is two factors already; a software one asks for TOTP
        if !pending.amr.contains(&Amr::Otp) && pending.cert != CertFactor::Hardware {
            if user.totp.is_some() {
                pending.stage = Stage::Totp;
                return Ok(Outcome::Show(None));
            }
            if need >= Acr::Otp
                || pending.cert == CertFactor::Software
                || user.required_actions.contains(&RequiredAction::EnrolTotp)
            {
                if user.totp_pending.is_none() {
                    let secret = TotpSecret::generate(self.rng)?;
                    Directory::new(self.store).update_user(&user.sub, &mut |u| {
                        u.totp_pending = Some(secret.clone());
                    })?;
                }
                pending.stage = Stage::Enrol;
                return Ok(Outcome::Show(None));
            }
        }
        let expired = user
            .password
            .as_ref()
            .is_some_and(|p| self.parts.passwords.is_expired(p, self.now));
        if expired
            || user
                .required_actions
                .contains(&RequiredAction::ChangePassword)
        {
            pending.stage = Stage::ChangePassword;
            return Ok(Outcome::Show(None));
        }
        let acr = acr_of(pending.cert, &pending.amr);
        if acr < need {
            return Ok(Outcome::Refuse(Notice::SignInFailed));
        }
        let mut state = self.store.lockout(&user.login)?;
        self.parts.lockout.record_success(&mut state);
        self.store.put_lockout(&user.login, &state)?;
        self.note("signin.ok", user.sub.as_str(), "ok", acr.as_str());
        if let Some(id) = &pending.device {
            self.note(
                "signin.on_device",
                user.sub.as_str(),
                "ok",
                &format!("device {id}"),
            );
        }
        // signed in on a registered device: the session, and every token from it, names it
        Ok(Outcome::Done(Identity {
            device: pending.device.clone(),
            ..user.identity(acr, pending.amr.clone(), self.parts.zone.clone(), self.now)
        }))
    }
}

/// Whether a signed-in identity may be given a code for this request without a new sign-in.
pub(crate) fn session_suffices(
    identity: &Identity,
    user: Option<&User>,
    parts: &SignInParts,
    max_age: Option<u64>,
    requested_acr: Option<Acr>,
    now: UnixTime,
) -> Result<(), IdpError> {
    let Some(user) = user.filter(|u| u.is_enabled()) else {
        return Err(IdpError::LoginRequired);
    };
    if let Some(age) = max_age
        && now.as_secs().saturating_sub(identity.auth_time.as_secs()) > age
    {
        return Err(IdpError::LoginRequired);
    }
    if identity.acr < needed_acr(parts, &user.roles, requested_acr)
        || !user.required_actions.is_empty()
    {
        return Err(IdpError::InteractionRequired);
    }
    Ok(())
}

/// The key a pre-sign-in session's state is kept under.
pub(crate) fn key_of(session_id: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(
        ring::digest::digest(&ring::digest::SHA256, session_id.as_bytes()).as_ref(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_round_trips() {
        let mut p = Pending::new(b"client_id=a&x=y".to_vec());
        assert_eq!(Pending::decode(&p.encode().unwrap()).unwrap(), p);
        p.stage = Stage::ChangePassword;
        p.sub = Some("judge-0001".parse().unwrap());
        p.amr = vec![Amr::Pwd, Amr::Otp];
        assert_eq!(Pending::decode(&p.encode().unwrap()).unwrap(), p);
        p.cert = CertFactor::Software;
        assert_eq!(Pending::decode(&p.encode().unwrap()).unwrap(), p);
        assert!(Pending::decode(&[9]).is_err());
        p.device = Some("tablet-07".into());
        assert_eq!(Pending::decode(&p.encode().unwrap()).unwrap(), p);
        // a version 1 state (no certificate factor, no device) still reads
        let mut v1 = p.encode().unwrap();
        v1[0] = 1;
        v1.truncate(v1.len() - 2 - "software".len() - 2 - "tablet-07".len());
        let back = Pending::decode(&v1).unwrap();
        assert_eq!(back.cert, CertFactor::None);
        assert_eq!(back.amr, p.amr);
    }
}
