//! The directory of a zone's provider: courts (the dotted hierarchy), users and registered
//! clients, kept behind the [`Store`] trait and changed through [`Directory`], which checks every
//! rule before anything is written.
//!
//! Rules: a court's parent is in the directory (courts directly below `spc` excepted); a user's
//! court is in the directory; no account holds two of `sysadmin`, `secadmin`, `auditor`
//! ([`Role::check_separation`]); subject ids and sign-in names are unique; a sign-in name is
//! `[a-z0-9._@-]{3,64}`, looked up case-insensitively.

use std::fmt;

use tianping_core::{Acr, Amr, Clearance, CourtCode, Role, SubjectId, UnixTime, ZoneName};

use crate::IdpError;
use crate::account::EndedSession;
use crate::client::Client;
use crate::directory_update::{
    Change, Expect, FlowTerms, Record, UpdateBody, UpdateKind, UpdateRefusal, UserRecord,
    check_update,
};
use crate::password::{PasswordRecord, Passwords};
use crate::random::Random;
use crate::store::Store;
use crate::tokens::Identity;
use crate::totp::TotpSecret;

/// A court of the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Court {
    /// Its code (`bj.01.03`).
    pub code: CourtCode,
    /// Its name as people read it (`北京市第一中级人民法院`).
    pub name: String,
}

/// Whether an account may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// It may.
    Enabled,
    /// An administrator disabled it: no sign-in, no token by any grant.
    Disabled,
}

impl UserStatus {
    /// The name as commands and listings show it.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Enabled => "enabled",
            UserStatus::Disabled => "disabled",
        }
    }
}

/// What a user must do at the next sign-in before a code is issued (as Keycloak has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequiredAction {
    /// Choose a new password.
    ChangePassword,
    /// Enrol a TOTP authenticator.
    EnrolTotp,
}

impl RequiredAction {
    /// Every action, in order.
    pub const ALL: &'static [RequiredAction] =
        &[RequiredAction::ChangePassword, RequiredAction::EnrolTotp];

    /// The name as commands and records write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RequiredAction::ChangePassword => "change-password",
            RequiredAction::EnrolTotp => "enrol-totp",
        }
    }

    /// The action named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

/// A user's TOTP authenticator.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCredential {
    /// The shared secret.
    pub secret: TotpSecret,
    /// The step of the last code accepted: a code of that step or before is refused.
    pub last_step: Option<u64>,
}

impl fmt::Debug for TotpCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpCredential")
            .field("secret", &"[redacted]")
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// A user of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The subject id, the same in every zone.
    pub sub: SubjectId,
    /// The name typed at sign-in, lower case.
    pub login: String,
    /// The name shown (`name` claim).
    pub display_name: String,
    /// Given name (`given_name`).
    pub given_name: Option<String>,
    /// Family name (`family_name`).
    pub family_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Telephone number.
    pub phone: Option<String>,
    /// The court the user belongs to.
    pub court: Option<CourtCode>,
    /// Roles (at most one of the three separated administrator roles).
    pub roles: Vec<Role>,
    /// Clearance.
    pub clearance: Clearance,
    /// Enabled or disabled.
    pub status: UserStatus,
    /// The password, once one is set.
    pub password: Option<PasswordRecord>,
    /// The TOTP authenticator, once enrolled.
    pub totp: Option<TotpCredential>,
    /// A secret shown on the enrolment page and not yet confirmed by a code.
    pub totp_pending: Option<TotpSecret>,
    /// What the user must do at the next sign-in.
    pub required_actions: Vec<RequiredAction>,
    /// When the account was made.
    pub created_at: UnixTime,
}

impl User {
    /// A new enabled account with no roles, no clearance, no credentials.
    pub fn new(
        sub: SubjectId,
        login: &str,
        display_name: impl Into<String>,
        now: UnixTime,
    ) -> Self {
        Self {
            sub,
            login: login.to_lowercase(),
            display_name: display_name.into(),
            given_name: None,
            family_name: None,
            email: None,
            phone: None,
            court: None,
            roles: Vec::new(),
            clearance: Clearance::None,
            status: UserStatus::Enabled,
            password: None,
            totp: None,
            totp_pending: None,
            required_actions: Vec::new(),
            created_at: now,
        }
    }

    /// Checks what a record can check alone: the sign-in name and the separation of the
    /// administrator roles.
    pub fn check(&self) -> Result<(), IdpError> {
        check_login(&self.login)?;
        if self.display_name.trim().is_empty() || self.display_name.chars().count() > 128 {
            return Err(IdpError::Directory(
                "a display name must have 1 to 128 characters".into(),
            ));
        }
        Role::check_separation(&self.roles).map_err(|(a, b)| {
            IdpError::Directory(format!(
                "an account may not hold both `{a}` and `{b}` (separation of the administrator roles)"
            ))
        })
    }

    /// Whether the account may be signed in or given tokens.
    pub fn is_enabled(&self) -> bool {
        self.status == UserStatus::Enabled
    }

    /// The strongest `acr` this account can reach with its enrolled credentials.
    pub fn strongest_acr(&self) -> Acr {
        if self.totp.is_some() {
            Acr::Otp
        } else {
            Acr::Pwd
        }
    }

    /// The identity tokens carry for this user, signed in by `amr` at `auth_time` in `zone`.
    pub fn identity(
        &self,
        acr: Acr,
        amr: Vec<Amr>,
        zone: ZoneName,
        auth_time: UnixTime,
    ) -> Identity {
        Identity {
            sub: self.sub.clone(),
            court: self.court.clone(),
            roles: self.roles.clone(),
            clearance: self.clearance,
            acr,
            amr,
            zone,
            auth_time,
            device: None,
        }
    }
}

/// Checks a sign-in name: `[a-z0-9._@-]{3,64}` (upper case is folded before this check).
pub fn check_login(login: &str) -> Result<(), IdpError> {
    let ok = (3..=64).contains(&login.len())
        && login.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'@' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(IdpError::Directory(
            "a sign-in name must be 3 to 64 of `a-z`, `0-9`, `.`, `_`, `@` and `-`".into(),
        ))
    }
}

/// The directory's rules over a [`Store`].
pub struct Directory<'a> {
    store: &'a dyn Store,
}

impl fmt::Debug for Directory<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory").finish_non_exhaustive()
    }
}

fn missing_user(sub: &SubjectId) -> IdpError {
    IdpError::Directory(format!("there is no user `{sub}`"))
}

impl<'a> Directory<'a> {
    /// The directory kept in `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        Self { store }
    }

    // ---- courts

    /// Adds a court; its parent must be in the directory unless it is `spc` or directly below.
    pub fn add_court(&self, court: Court) -> Result<(), IdpError> {
        if court.name.trim().is_empty() || court.name.chars().count() > 128 {
            return Err(IdpError::Directory(
                "a court name must have 1 to 128 characters".into(),
            ));
        }
        if self.store.court(&court.code)?.is_some() {
            return Err(IdpError::Directory(format!(
                "court `{}` is already in the directory",
                court.code
            )));
        }
        if let Some(parent) = court.code.parent() {
            if parent.as_str() != CourtCode::SUPREME && self.store.court(&parent)?.is_none() {
                return Err(IdpError::Directory(format!(
                    "court `{}` needs its parent `{parent}` in the directory first",
                    court.code
                )));
            }
        }
        self.store.put_court(&court)
    }

    /// A court by code.
    pub fn court(&self, code: &CourtCode) -> Result<Option<Court>, IdpError> {
        self.store.court(code)
    }

    /// Every court, by code.
    pub fn courts(&self) -> Result<Vec<Court>, IdpError> {
        let mut all = self.store.courts()?;
        all.sort_by(|a, b| a.code.cmp(&b.code));
        Ok(all)
    }

    // ---- users

    fn check_court(&self, court: Option<&CourtCode>) -> Result<(), IdpError> {
        match court {
            Some(c) if self.store.court(c)?.is_none() => Err(IdpError::Directory(format!(
                "court `{c}` is not in the directory"
            ))),
            _ => Ok(()),
        }
    }

    /// Adds a user: rules checked, subject id and sign-in name not yet taken.
    pub fn add_user(&self, mut user: User) -> Result<(), IdpError> {
        user.login = user.login.to_lowercase();
        user.check()?;
        self.check_court(user.court.as_ref())?;
        self.store.insert_user(&user)
    }

    /// A user by subject id.
    pub fn user(&self, sub: &SubjectId) -> Result<Option<User>, IdpError> {
        self.store.user(sub)
    }

    /// A user by sign-in name (case-insensitive).
    pub fn user_by_login(&self, login: &str) -> Result<Option<User>, IdpError> {
        self.store.user_by_login(&login.to_lowercase())
    }

    /// Every user, by subject id.
    pub fn users(&self) -> Result<Vec<User>, IdpError> {
        let mut all = self.store.users()?;
        all.sort_by(|a, b| a.sub.cmp(&b.sub));
        Ok(all)
    }

    /// Changes a user by `f` atomically after checking the result; returns the user as it is now.
    /// The subject id and sign-in name cannot change this way. `f` runs more than once (a
    /// check first, then inside the store's atomic update) and must depend only on the record.
    pub fn update_user(
        &self,
        sub: &SubjectId,
        f: &mut dyn FnMut(&mut User),
    ) -> Result<User, IdpError> {
        let before = self.store.user(sub)?.ok_or_else(|| missing_user(sub))?;
        let mut probe = before.clone();
        f(&mut probe);
        probe.check()?;
        if probe.court != before.court {
            self.check_court(probe.court.as_ref())?;
        }
        let mut after = None;
        let mut refused = None;
        self.store
            .update_user(sub, &mut |u| {
                let mut next = u.clone();
                f(&mut next);
                if let Err(e) = next.check() {
                    refused = Some(e);
                    return u.clone();
                }
                refused = None;
                after = Some(next.clone());
                next
            })?
            .ok_or_else(|| missing_user(sub))?;
        if let Some(e) = refused {
            return Err(e);
        }
        let after = after.ok_or_else(|| missing_user(sub))?;
        Ok(after)
    }

    /// Enables or disables an account.
    pub fn set_status(&self, sub: &SubjectId, status: UserStatus) -> Result<User, IdpError> {
        self.update_user(sub, &mut |u| u.status = status)
    }

    /// Sets the roles (separation checked).
    pub fn set_roles(&self, sub: &SubjectId, roles: Vec<Role>) -> Result<User, IdpError> {
        Role::check_separation(&roles).map_err(|(a, b)| {
            IdpError::Directory(format!(
                "an account may not hold both `{a}` and `{b}` (separation of the administrator roles)"
            ))
        })?;
        self.update_user(sub, &mut |u| u.roles.clone_from(&roles))
    }

    /// Sets a password as an administrator does: complexity and history checked; with
    /// `temporary` the user must change it at the next sign-in.
    pub fn set_password(
        &self,
        sub: &SubjectId,
        passwords: &Passwords,
        password: &str,
        temporary: bool,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<User, IdpError> {
        let user = self.store.user(sub)?.ok_or_else(|| missing_user(sub))?;
        let record = match &user.password {
            Some(old) => passwords.change(old, sub, password, now, rng)?,
            None => passwords.initial(sub, password, now, rng)?,
        };
        self.update_user(sub, &mut |u| {
            u.password = Some(record.clone());
            u.required_actions
                .retain(|a| *a != RequiredAction::ChangePassword);
            if temporary {
                u.required_actions.push(RequiredAction::ChangePassword);
            }
        })
    }

    /// Forgets the TOTP authenticator; the user enrols a new one at the next sign-in.
    pub fn reset_totp(&self, sub: &SubjectId) -> Result<User, IdpError> {
        self.update_user(sub, &mut |u| {
            u.totp = None;
            u.totp_pending = None;
            if !u.required_actions.contains(&RequiredAction::EnrolTotp) {
                u.required_actions.push(RequiredAction::EnrolTotp);
            }
        })
    }

    /// Adds a required action (once).
    pub fn require_action(
        &self,
        sub: &SubjectId,
        action: RequiredAction,
    ) -> Result<User, IdpError> {
        self.update_user(sub, &mut |u| {
            if !u.required_actions.contains(&action) {
                u.required_actions.push(action);
            }
        })
    }

    // ---- clients

    /// Registers a client: its redirect URIs checked, its id not yet taken.
    pub fn add_client(&self, client: Client) -> Result<(), IdpError> {
        self.add_client_with_keys(client, None)
    }

    /// Registers a client with what it authenticates with beyond a secret: a JWKS or JWKS URI
    /// for `private_key_jwt`, its certificate's subject for `tls_client_auth`
    /// ([`ClientKeys::check_for`](crate::ClientKeys::check_for)); the keys are kept first, so a
    /// client is never registered without them.
    pub fn add_client_with_keys(
        &self,
        client: Client,
        keys: Option<crate::client_auth::ClientKeys>,
    ) -> Result<(), IdpError> {
        crate::client_auth::ClientKeys::check_for(keys.as_ref(), client.auth_method)?;
        let id_ok = (1..=128).contains(&client.id.len())
            && client
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(IdpError::Directory(
                "a client id must be 1 to 128 of `A-Z`, `a-z`, `0-9`, `.`, `_` and `-`".into(),
            ));
        }
        for uri in client
            .redirect_uris
            .iter()
            .chain(&client.post_logout_redirect_uris)
        {
            Client::check_registered_uri(uri)?;
        }
        let needs_secret = client.auth_method.uses_secret();
        if needs_secret != client.secret_sha256.is_some() {
            return Err(IdpError::Directory(
                "a client has a secret exactly when it authenticates by one".into(),
            ));
        }
        if self.store.client(&client.id)?.is_some() {
            return Err(IdpError::Directory(format!(
                "client `{}` is already registered",
                client.id
            )));
        }
        if let Some(k) = &keys {
            self.store.put_client_keys(&client.id, k)?;
        }
        self.store.put_client(&client)
    }

    /// A client by id.
    pub fn client(&self, id: &str) -> Result<Option<Client>, IdpError> {
        self.store.client(id)
    }

    /// Every client, by id.
    pub fn clients(&self) -> Result<Vec<Client>, IdpError> {
        let mut all = self.store.clients()?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }
}

// ---- replication (DESIGN §5: one directory for every zone)

/// Why an update was not applied: a refusal of the update (nothing changed), or the store's
/// error.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The update was refused: the check that failed.
    #[error(transparent)]
    Refused(#[from] UpdateRefusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] IdpError),
}

/// What applying an update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Versions applied: after `since`, up to `until`.
    pub since: u64,
    /// The last version applied now.
    pub until: u64,
    /// Courts and users written.
    pub changed: Vec<String>,
    /// Records that changed nothing (applied before, or equal).
    pub unchanged: usize,
    /// The sessions ended (disabled accounts, roles taken away, certificates revoked), their
    /// refresh families revoked and their clients' back-channel logouts queued.
    pub ended: Vec<EndedSession>,
}

/// The key under which the last version applied from a source is kept.
pub fn applied_key(kind: UpdateKind, source: &ZoneName) -> String {
    format!("{}:{source}", kind.as_str())
}

/// The update of the directory's changes after version `since`, for zone `to`, with only what
/// `terms` lets go (for registrations: only `p-` subjects, no courts); sign it with
/// [`UpdateBody::sign`].
pub fn export_update(
    store: &dyn Store,
    kind: UpdateKind,
    source: &ZoneName,
    to: &ZoneName,
    since: u64,
    terms: &FlowTerms,
    now: UnixTime,
) -> Result<UpdateBody, IdpError> {
    let (changes, latest) = store.changes_since(since)?;
    if since > latest {
        return Err(IdpError::Directory(format!(
            "version {since} is after the directory's latest, {latest}"
        )));
    }
    let devices = store.devices()?;
    let mut records = Vec::new();
    for (version, key) in changes {
        let change = if let Some(code) = key.strip_prefix("court:") {
            if kind == UpdateKind::Registration || !terms.allows_attribute("court") {
                continue;
            }
            let code: CourtCode = code
                .parse()
                .map_err(|_| IdpError::Store(format!("a change names court `{code}`")))?;
            match store.court(&code)? {
                Some(c) => Change::Court(c),
                None => continue,
            }
        } else if let Some(sub) = key.strip_prefix("user:") {
            if kind == UpdateKind::Registration && !sub.starts_with("p-") {
                continue;
            }
            let sub: SubjectId = sub
                .parse()
                .map_err(|_| IdpError::Store(format!("a change names user `{sub}`")))?;
            let Some(user) = store.user(&sub)? else {
                continue;
            };
            match terms.filter(&UserRecord::from_user(&user, &devices)) {
                Some(r) => Change::User(r),
                None => continue,
            }
        } else {
            continue;
        };
        records.push(Record { version, change });
    }
    Ok(UpdateBody {
        kind,
        source: source.clone(),
        to: to.clone(),
        since,
        until: latest,
        time: now,
        records,
    })
}

/// Applies a directory update in order, once: checked by [`check_update`] against the last
/// version applied from its source (a gap, a replay, a forgery, another signer or what the flow
/// does not allow refuse it whole, changing nothing), then each record after that version
/// written if it changes anything. An account disabled, a role taken away or a device
/// (certificate) removed ends the account's sessions here, revokes their refresh families and
/// queues back-channel logout to their clients.
pub fn apply_update(
    store: &dyn Store,
    bytes: &[u8],
    expect: &Expect<'_>,
    now: UnixTime,
    rng: &dyn Random,
) -> Result<Applied, ApplyError> {
    let key = applied_key(expect.kind, expect.source);
    let last = store.applied_version(&key)?;
    let update = check_update(
        bytes,
        &Expect {
            last_applied: Some(last),
            ..*expect
        },
    )?;
    let body = &update.body;
    let mut changed = Vec::new();
    let mut unchanged = 0;
    let mut revoke = Vec::new();
    // every record is made first, so one that cannot be applied refuses the update whole
    let mut users = Vec::new();
    for rec in body.records.iter().filter(|r| r.version > last) {
        if let Change::User(u) = &rec.change {
            let before = store.user(&u.sub)?;
            let (mut after, devices) = u.to_user(before.as_ref(), now)?;
            if before.is_none() && expect.kind == UpdateKind::Registration {
                after.roles = vec![Role::Public];
            }
            after
                .check()
                .map_err(|e| UpdateRefusal::Malformed(format!("user `{}`: {e}", after.sub)))?;
            if let Some(c) = &after.court {
                let comes = body
                    .records
                    .iter()
                    .any(|r| matches!(&r.change, Change::Court(k) if k.code == *c));
                if !comes && store.court(c)?.is_none() {
                    return Err(UpdateRefusal::Malformed(format!(
                        "user `{}` is of court `{c}`, which is neither here nor in the update",
                        after.sub
                    ))
                    .into());
                }
            }
            if before.is_none() {
                if let Some(other) = store.user_by_login(&after.login)? {
                    return Err(UpdateRefusal::Malformed(format!(
                        "user `{}` has sign-in name `{}`, which `{}` holds here",
                        after.sub, after.login, other.sub
                    ))
                    .into());
                }
            }
            users.push((before, after, devices));
        }
    }
    let mut users = users.into_iter();
    for rec in body.records.iter().filter(|r| r.version > last) {
        match &rec.change {
            Change::Court(c) => {
                if store.court(&c.code)?.as_ref() == Some(c) {
                    unchanged += 1;
                } else {
                    store.put_court(c)?;
                    changed.push(format!("court:{}", c.code));
                }
            }
            Change::User(_) => {
                let Some((before, after, devices)) = users.next() else {
                    continue;
                };
                let mut did = false;
                match &before {
                    None => {
                        store.insert_user(&after)?;
                        did = true;
                    }
                    Some(b) if *b != after => {
                        store.update_user(&after.sub, &mut |_| after.clone())?;
                        did = true;
                    }
                    Some(_) => {}
                }
                let mut devices_removed = false;
                if let Some(list) = devices {
                    let mine: Vec<_> = store
                        .devices()?
                        .into_iter()
                        .filter(|d| d.owner == after.sub)
                        .collect();
                    for d in &mine {
                        if !list.iter().any(|n| n.fingerprint == d.fingerprint) {
                            store.remove_device(&d.fingerprint)?;
                            devices_removed = true;
                            did = true;
                        }
                    }
                    for n in list {
                        if !mine.contains(&n) {
                            store.put_device(&n)?;
                            did = true;
                        }
                    }
                }
                let ends = before.as_ref().is_some_and(|b| {
                    (b.is_enabled() && !after.is_enabled())
                        || b.roles.iter().any(|r| !after.roles.contains(r))
                }) || devices_removed;
                if ends {
                    revoke.push(after.sub.clone());
                }
                if did {
                    changed.push(format!("user:{}", after.sub));
                } else {
                    unchanged += 1;
                }
            }
        }
    }
    let mut ended = Vec::new();
    for sub in revoke {
        for e in crate::account::logout_account(store, crate::GrantPolicy::default(), &sub)? {
            crate::backchannel::queue_logouts(store, &e, now, rng)?;
            ended.push(e);
        }
    }
    store.set_applied_version(&key, body.until)?;
    Ok(Applied {
        since: last,
        until: body.until,
        changed,
        unchanged,
        ended,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientAuthMethod, GrantType};
    use crate::password::{PasswordParams, PasswordPolicy};
    use crate::random::SeededRandom;
    use crate::store::MemoryStore;

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    fn court(code: &str) -> Court {
        Court {
            code: code.parse().unwrap(),
            name: format!("court {code}"),
        }
    }

    fn user(sub: &str, login: &str) -> User {
        let mut u = User::new(sub.parse().unwrap(), login, "李明", NOW);
        u.court = Some("bj.01".parse().unwrap());
        u.roles = vec![Role::Judge];
        u
    }

    fn dir_with_courts(store: &MemoryStore) -> Directory<'_> {
        let d = Directory::new(store);
        d.add_court(court("bj")).unwrap();
        d.add_court(court("bj.01")).unwrap();
        d
    }

    #[test]
    fn courts_need_their_parent() {
        let store = MemoryStore::new();
        let d = Directory::new(&store);
        let e = d.add_court(court("bj.01")).unwrap_err();
        assert!(e.to_string().contains("parent `bj`"), "{e}");
        d.add_court(court("bj")).unwrap();
        d.add_court(court("bj.01")).unwrap();
        d.add_court(court("bj.01.03")).unwrap();
        assert!(d.add_court(court("bj")).is_err());
        let codes: Vec<_> = d.courts().unwrap().into_iter().map(|c| c.code).collect();
        assert_eq!(codes.len(), 3);
        assert_eq!(codes.first().unwrap().as_str(), "bj");
    }

    #[test]
    fn users_found_by_id_and_by_sign_in_name() {
        let store = MemoryStore::new();
        let d = dir_with_courts(&store);
        d.add_user(user("judge-0001", "Li.Ming")).unwrap();
        let by_name = d.user_by_login("LI.MING").unwrap().unwrap();
        assert_eq!(by_name.sub.as_str(), "judge-0001");
        assert_eq!(by_name.login, "li.ming");
        let by_id = d.user(&"judge-0001".parse().unwrap()).unwrap().unwrap();
        assert_eq!(by_id, by_name);
        assert!(d.user_by_login("nobody").unwrap().is_none());
    }

    #[test]
    fn duplicate_ids_and_names_are_refused_and_nothing_changes() {
        let store = MemoryStore::new();
        let d = dir_with_courts(&store);
        d.add_user(user("judge-0001", "li.ming")).unwrap();
        assert!(d.add_user(user("judge-0001", "other")).is_err());
        assert!(d.add_user(user("judge-0002", "li.ming")).is_err());
        assert_eq!(d.users().unwrap().len(), 1);
        assert!(d.user_by_login("other").unwrap().is_none());
    }

    #[test]
    fn two_separated_admin_roles_are_refused() {
        let store = MemoryStore::new();
        let d = dir_with_courts(&store);
        let mut u = user("admin-0001", "admin");
        u.roles = vec![Role::Sysadmin, Role::Auditor];
        let e = d.add_user(u).unwrap_err();
        assert!(e.to_string().contains("separation"), "{e}");
        let mut u = user("admin-0001", "admin");
        u.roles = vec![Role::Sysadmin];
        d.add_user(u).unwrap();
        let sub = "admin-0001".parse().unwrap();
        assert!(
            d.set_roles(&sub, vec![Role::Sysadmin, Role::Secadmin])
                .is_err()
        );
        assert!(
            d.update_user(&sub, &mut |u| u.roles.push(Role::Secadmin))
                .is_err()
        );
        assert_eq!(d.user(&sub).unwrap().unwrap().roles, vec![Role::Sysadmin]);
    }

    #[test]
    fn unknown_court_and_bad_sign_in_name_are_refused() {
        let store = MemoryStore::new();
        let d = dir_with_courts(&store);
        let mut u = user("judge-0001", "li.ming");
        u.court = Some("sh.02".parse().unwrap());
        assert!(d.add_user(u).is_err());
        assert!(d.add_user(user("judge-0001", "li ming")).is_err());
        assert!(d.users().unwrap().is_empty());
    }

    #[test]
    fn password_set_with_history_and_required_change() {
        let store = MemoryStore::new();
        let d = dir_with_courts(&store);
        d.add_user(user("judge-0001", "li.ming")).unwrap();
        let rng = SeededRandom::new(3);
        let params = PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let pw = Passwords::new(params, PasswordPolicy::default(), &rng).unwrap();
        let sub: SubjectId = "judge-0001".parse().unwrap();
        let u = d
            .set_password(&sub, &pw, "Court-2026a", true, NOW, &rng)
            .unwrap();
        assert_eq!(u.required_actions, vec![RequiredAction::ChangePassword]);
        assert!(pw.verify(u.password.as_ref().map(|p| p.hash.as_str()), "Court-2026a"));
        assert_eq!(
            d.set_password(&sub, &pw, "Court-2026a", false, NOW, &rng),
            Err(IdpError::PasswordReused)
        );
        assert!(matches!(
            d.set_password(&sub, &pw, "short", false, NOW, &rng),
            Err(IdpError::PasswordTooWeak(_))
        ));
        let u = d
            .set_password(&sub, &pw, "Court-2026b", false, NOW, &rng)
            .unwrap();
        assert!(u.required_actions.is_empty());
        assert_eq!(u.password.unwrap().history.len(), 1);
    }

    #[test]
    fn status_totp_reset_and_actions() {
        let store = MemoryStore::new();
        let d = dir_with_courts(&store);
        d.add_user(user("judge-0001", "li.ming")).unwrap();
        let sub: SubjectId = "judge-0001".parse().unwrap();
        let u = d.set_status(&sub, UserStatus::Disabled).unwrap();
        assert!(!u.is_enabled());
        d.update_user(&sub, &mut |u| {
            u.totp = Some(TotpCredential {
                secret: TotpSecret::from_bytes(vec![1; 20]),
                last_step: Some(9),
            });
        })
        .unwrap();
        assert_eq!(d.user(&sub).unwrap().unwrap().strongest_acr(), Acr::Otp);
        let u = d.reset_totp(&sub).unwrap();
        assert!(u.totp.is_none());
        assert_eq!(u.required_actions, vec![RequiredAction::EnrolTotp]);
        let u = d.require_action(&sub, RequiredAction::EnrolTotp).unwrap();
        assert_eq!(u.required_actions.len(), 1);
        assert!(
            d.set_status(&"nobody-1".parse().unwrap(), UserStatus::Enabled)
                .is_err()
        );
    }

    #[test]
    fn clients_registered_once_with_checked_uris() {
        let store = MemoryStore::new();
        let d = Directory::new(&store);
        let c = Client {
            id: "case-app".into(),
            secret_sha256: Some(Client::hash_secret("s3cret")),
            auth_method: ClientAuthMethod::ClientSecretBasic,
            redirect_uris: vec!["https://case.court.example/cb".into()],
            post_logout_redirect_uris: vec!["https://case.court.example/bye".into()],
            grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            native_loopback: false,
            extra_scopes: vec![],
        };
        d.add_client(c.clone()).unwrap();
        assert!(d.add_client(c.clone()).is_err());
        assert_eq!(d.client("case-app").unwrap(), Some(c.clone()));
        let mut bad = c.clone();
        bad.id = "other".into();
        bad.redirect_uris = vec!["http://evil.example/cb".into()];
        assert!(d.add_client(bad).is_err());
        let mut no_secret = c;
        no_secret.id = "other".into();
        no_secret.secret_sha256 = None;
        assert!(d.add_client(no_secret).is_err());
        assert_eq!(d.clients().unwrap().len(), 1);
    }
}
