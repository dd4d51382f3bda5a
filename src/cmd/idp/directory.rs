//! `tianping idp user|court|client ...`: the zone's directory. Each command is one [`Op`],
//! carried out by [`execute`] on the store: in this process when the IdP is stopped, in the
//! IdP's when it runs (the op sent as JSON to `POST /directory` on its control socket, mode
//! 0600). Passwords come from a prompt, standard input or a file, never a flag; a new client's
//! secret is printed once and kept only as its SHA-256.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tianping_core::{Clock as _, SystemClock};
use tianping_idp::{
    BackchannelRegistration, Client, ClientAuthMethod, Court, Directory, GrantPolicy, GrantType,
    OsRandom, PasswordParams, PasswordPolicy, Passwords, Random as _, RequiredAction,
    SessionPolicy, Store, User, UserStatus,
};

use super::Paths;
use super::control::Live;

/// `tianping idp user ...`
#[derive(Debug, Subcommand)]
pub(crate) enum UserCmd {
    /// Add an account; its password (if any) from a prompt, stdin or a file.
    Add(UserAdd),
    /// Every account.
    List(ZoneOnly),
    /// One account, by subject id or sign-in name.
    Show(UserRef),
    /// Disable an account: no sign-in, no token by any grant.
    Disable(UserRef),
    /// Enable an account again.
    Enable(UserRef),
    /// Set an account's password, from a prompt, stdin or a file.
    SetPassword(SetPassword),
    /// Forget an account's TOTP authenticator; it enrols again at next sign-in.
    ResetTotp(UserRef),
    /// Make an account change its password or enrol TOTP at next sign-in.
    RequireAction(RequireActionArgs),
    /// An account's live sessions: handle (never the cookie), created, last seen, acr, clients.
    Sessions(UserRef),
    /// End every session of an account and revoke the refresh tokens started in them.
    Logout(UserRef),
}

/// `tianping idp court ...`
#[derive(Debug, Subcommand)]
pub(crate) enum CourtCmd {
    /// Add a court (its parent must be in the directory).
    Add(CourtAdd),
    /// Every court.
    List(ZoneOnly),
}

/// `tianping idp client ...`
#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "command-line arguments, parsed once per process"
)]
pub(crate) enum ClientCmd {
    /// Register a client; its secret is printed once.
    Add(ClientAdd),
    /// Every client.
    List(ZoneOnly),
    /// One client.
    Show(ClientRef),
}

/// A zone.
#[derive(Debug, Args)]
pub(crate) struct ZoneOnly {
    /// The zone.
    #[arg(long)]
    pub(crate) zone: tianping_core::ZoneName,
}

/// An account.
#[derive(Debug, Args)]
pub(crate) struct UserRef {
    /// The zone.
    #[arg(long)]
    pub(crate) zone: tianping_core::ZoneName,
    /// Its subject id or sign-in name.
    user: String,
}

/// Where a password comes from (a prompt when neither is given and stdin is a terminal).
#[derive(Debug, Args)]
pub(crate) struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Read the password from the first line of this file.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

/// `user add`.
#[derive(Debug, Args)]
pub(crate) struct UserAdd {
    /// The zone.
    #[arg(long)]
    pub(crate) zone: tianping_core::ZoneName,
    /// The subject id (`judge-0001`, `p-…`).
    #[arg(long)]
    sub: String,
    /// The sign-in name.
    #[arg(long)]
    login: String,
    /// The name people read.
    #[arg(long)]
    name: String,
    /// The court (`bj.01.03`).
    #[arg(long)]
    court: Option<String>,
    /// A role (repeat for several).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// The clearance.
    #[arg(long)]
    clearance: Option<String>,
    /// E-mail address.
    #[arg(long)]
    email: Option<String>,
    /// Telephone number.
    #[arg(long)]
    phone: Option<String>,
    /// Give the account no password (it cannot sign in by one).
    #[arg(long, conflicts_with_all = ["password_stdin", "password_file"])]
    no_password: bool,
    /// The password is temporary: it must be changed at first sign-in.
    #[arg(long)]
    temporary: bool,
    #[command(flatten)]
    password: PasswordSource,
}

/// `user set-password`.
#[derive(Debug, Args)]
pub(crate) struct SetPassword {
    /// The zone.
    #[arg(long)]
    pub(crate) zone: tianping_core::ZoneName,
    /// Subject id or sign-in name.
    user: String,
    /// The password is temporary: it must be changed at next sign-in.
    #[arg(long)]
    temporary: bool,
    #[command(flatten)]
    password: PasswordSource,
}

/// `user require-action`.
#[derive(Debug, Args)]
pub(crate) struct RequireActionArgs {
    /// The zone.
    #[arg(long)]
    pub(crate) zone: tianping_core::ZoneName,
    /// Subject id or sign-in name.
    user: String,
    /// `change-password` or `enrol-totp`.
    action: String,
}

/// `court add`.
#[derive(Debug, Args)]
pub(crate) struct CourtAdd {
    /// The zone.
    #[arg(long)]
    pub(crate) zone: tianping_core::ZoneName,
    /// The court's code (`bj.01.03`).
    code: String,
    /// Its name.
    #[arg(long)]
    name: String,
}

/// `client add`.
#[derive(Debug, Args)]
pub(crate) struct ClientAdd {
    /// The zone.
    #[arg(long)]
    pub(crate) zone: tianping_core::ZoneName,
    /// The `client_id`.
    id: String,
    /// A redirect URI (repeat for several), matched exactly.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// A post-logout redirect URI (repeat for several).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// A grant (`authorization_code`, `refresh_token`, `client_credentials`); repeatable.
    #[arg(long = "grant", default_value = "authorization_code")]
    grants: Vec<String>,
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt` (with `--jwks` or
    /// `--jwks-uri`), `tls_client_auth` (with `--tls-subject`) or `none` (a public native client).
    #[arg(long, visible_alias = "auth", default_value = "client_secret_basic")]
    auth_method: String,
    /// A native client redirected to the loopback on any port (RFC 8252).
    #[arg(long)]
    native_loopback: bool,
    /// A scope beyond the standard ones it may ask for (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// For `private_key_jwt`: a file holding the client's JWKS (its public keys only).
    #[arg(long, conflicts_with_all = ["jwks_uri", "tls_subject"])]
    jwks: Option<PathBuf>,
    /// For `private_key_jwt`: the `https` URL the client publishes its JWKS at.
    #[arg(long, conflicts_with = "tls_subject")]
    jwks_uri: Option<String>,
    /// For `tls_client_auth`: the common name of the zone node certificate it presents.
    #[arg(long)]
    tls_subject: Option<String>,
    /// Where its back-channel logout tokens are POSTed (OpenID Back-Channel Logout 1.0; an
    /// `https` URL).
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// It needs the session's `sid` in its logout tokens.
    #[arg(long, requires = "backchannel_logout_uri")]
    backchannel_logout_session_required: bool,
}

/// A client.
#[derive(Debug, Args)]
pub(crate) struct ClientRef {
    /// The zone.
    #[arg(long)]
    pub(crate) zone: tianping_core::ZoneName,
    /// The `client_id`.
    id: String,
}

impl UserCmd {
    pub(crate) fn zone(&self) -> &tianping_core::ZoneName {
        match self {
            UserCmd::Add(a) => &a.zone,
            UserCmd::List(z) => &z.zone,
            UserCmd::Show(u)
            | UserCmd::Disable(u)
            | UserCmd::Enable(u)
            | UserCmd::ResetTotp(u)
            | UserCmd::Sessions(u)
            | UserCmd::Logout(u) => &u.zone,
            UserCmd::SetPassword(a) => &a.zone,
            UserCmd::RequireAction(a) => &a.zone,
        }
    }
}

impl CourtCmd {
    pub(crate) fn zone(&self) -> &tianping_core::ZoneName {
        match self {
            CourtCmd::Add(a) => &a.zone,
            CourtCmd::List(z) => &z.zone,
        }
    }
}

impl ClientCmd {
    pub(crate) fn zone(&self) -> &tianping_core::ZoneName {
        match self {
            ClientCmd::Add(a) => &a.zone,
            ClientCmd::List(z) => &z.zone,
            ClientCmd::Show(c) => &c.zone,
        }
    }
}

/// One directory operation, as the control socket carries it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub(crate) enum Op {
    UserAdd {
        sub: String,
        login: String,
        name: String,
        court: Option<String>,
        roles: Vec<String>,
        clearance: Option<String>,
        email: Option<String>,
        phone: Option<String>,
        password: Option<String>,
        temporary: bool,
    },
    UserList,
    UserShow {
        user: String,
    },
    UserStatus {
        user: String,
        enabled: bool,
    },
    SetPassword {
        user: String,
        password: String,
        temporary: bool,
    },
    ResetTotp {
        user: String,
    },
    RequireAction {
        user: String,
        action: String,
    },
    UserSessions {
        user: String,
    },
    UserLogout {
        user: String,
    },
    CourtAdd {
        code: String,
        name: String,
    },
    CourtList,
    ClientAdd {
        id: String,
        redirect_uris: Vec<String>,
        post_logout_redirect_uris: Vec<String>,
        grants: Vec<String>,
        auth_method: String,
        native_loopback: bool,
        scopes: Vec<String>,
        /// A JWKS document (`private_key_jwt`).
        #[serde(default)]
        jwks: Option<String>,
        /// A JWKS URI (`private_key_jwt`).
        #[serde(default)]
        jwks_uri: Option<String>,
        /// A node certificate's subject (`tls_client_auth`).
        #[serde(default)]
        tls_subject: Option<String>,
        #[serde(default)]
        backchannel_logout_uri: Option<String>,
        #[serde(default)]
        backchannel_logout_session_required: bool,
    },
    ClientList,
    ClientShow {
        id: String,
    },
}

impl Op {
    /// Whether the op only reads.
    pub(crate) fn reads(&self) -> bool {
        matches!(
            self,
            Op::UserList
                | Op::UserShow { .. }
                | Op::UserSessions { .. }
                | Op::CourtList
                | Op::ClientList
                | Op::ClientShow { .. }
        )
    }
}

fn read_password(src: &PasswordSource) -> miette::Result<String> {
    let line = if let Some(path) = &src.password_file {
        let text = std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading the password file `{}`", path.display()))?;
        text.lines().next().unwrap_or_default().to_owned()
    } else if !src.password_stdin && std::io::stdin().is_terminal() {
        prompt("password: ")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .into_diagnostic()?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if line.is_empty() {
        return Err(miette!("no password given (an empty line)"));
    }
    Ok(line)
}

/// Asks on the terminal with echo off (through `stty`), twice.
fn prompt(what: &str) -> miette::Result<String> {
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(
                std::fs::File::open("/dev/tty")
                    .ok()
                    .map_or_else(std::process::Stdio::inherit, Into::into),
            )
            .status()
    };
    let ask = |label: &str| -> miette::Result<String> {
        eprint!("{label}");
        let _ = std::io::stderr().flush();
        let _ = stty("-echo");
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        let _ = stty("echo");
        eprintln!();
        read.into_diagnostic()?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let first = ask(what)?;
    let again = ask("again: ")?;
    if first != again {
        return Err(miette!("the two passwords differ; nothing changed"));
    }
    Ok(first)
}

/// Refuses a new account outside `private`, where subject ids are assigned (DESIGN §8), but
/// for a public registration's `p-` id in `internet`: other zones' accounts arrive by
/// directory updates (`tianping idp directory apply`).
pub(crate) fn check_assigns(zone: &str, op: &Op) -> Result<(), String> {
    let Op::UserAdd { sub, .. } = op else {
        return Ok(());
    };
    if zone == super::replicate::AUTHORITY || (zone == "internet" && sub.starts_with("p-")) {
        return Ok(());
    }
    Err(format!(
        "subject ids are assigned by the directory authority in `{}`: add `{sub}` there and replicate it to `{zone}` (`tianping idp directory export --to {zone}`); only public registrations (`p-` ids) are made in `internet`",
        super::replicate::AUTHORITY
    ))
}

/// Runs a directory command: through the running IdP, else on the store.
pub(crate) fn run_op(p: &Paths, op: Op) -> miette::Result<Value> {
    check_assigns(p.zone.as_str(), &op).map_err(|e| miette!("{e}; nothing changed"))?;
    if let Some(live) = Live::find(&p.socket)? {
        return live.post("/directory", &serde_json::to_value(&op).into_diagnostic()?);
    }
    p.require_initialised()?;
    let store = p.open_store()?;
    let reads = op.reads();
    let answer = execute(&store, &op).map_err(|e| miette!("{e}"))?;
    if !reads {
        audit_local(p, &op, &answer)?;
    }
    Ok(answer)
}

/// The administrative action in the IdP's audit log, from a command on a stopped IdP.
fn audit_local(p: &Paths, op: &Op, answer: &Value) -> miette::Result<()> {
    let log = tianping_audit::AuditLog::open(&p.audit)
        .into_diagnostic()
        .wrap_err_with(|| format!("opening the IdP's audit log `{}`", p.audit.display()))?;
    for e in audit_events(p.zone.as_ref(), op, answer, SystemClock.now()) {
        log.append(&e).into_diagnostic()?;
    }
    Ok(())
}

/// `answer` as the audit log may record it: without the client secret that `client add`
/// shows its caller once (the store keeps only its hash; a log that every auditor reads and
/// nobody can edit must not hold a working credential).
pub(crate) fn audited(answer: &Value) -> Value {
    let mut v = answer.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("secret");
    }
    v
}

/// The audit event of a directory change (never a password or secret).
pub(crate) fn audit_event(
    zone: &str,
    op: &Op,
    now: tianping_core::UnixTime,
) -> tianping_audit::Event {
    let (action, object) = match op {
        Op::UserAdd { sub, .. } => ("idp.user.add", sub.clone()),
        Op::UserStatus { user, enabled } => (
            if *enabled {
                "idp.user.enable"
            } else {
                "idp.user.disable"
            },
            user.clone(),
        ),
        Op::SetPassword { user, .. } => ("idp.user.set-password", user.clone()),
        Op::ResetTotp { user } => ("idp.user.reset-totp", user.clone()),
        Op::RequireAction { user, .. } => ("idp.user.require-action", user.clone()),
        Op::UserLogout { user } => ("idp.user.logout", user.clone()),
        Op::CourtAdd { code, .. } => ("idp.court.add", code.clone()),
        Op::ClientAdd { id, .. } => ("idp.client.add", id.clone()),
        Op::UserList
        | Op::UserShow { .. }
        | Op::UserSessions { .. }
        | Op::CourtList
        | Op::ClientList
        | Op::ClientShow { .. } => ("idp.directory.read", String::new()),
    };
    let mut e = tianping_audit::Event::new(now, action);
    e.zone = zone.to_owned();
    e.component = "idp".into();
    e.actor = std::env::var("USER").unwrap_or_default();
    e.object = object;
    e.outcome = "ok".into();
    e
}

/// The audit events of a directory change: [`audit_event`], then what its answer says it
/// ended (an account's logout: each session, and each refresh family revoked).
pub(crate) fn audit_events(
    zone: &str,
    op: &Op,
    answer: &Value,
    now: tianping_core::UnixTime,
) -> Vec<tianping_audit::Event> {
    let mut main = audit_event(zone, op, now);
    let mut out = Vec::new();
    if let (Op::UserLogout { .. }, Some(sessions)) = (op, answer.as_array()) {
        let sub = sessions
            .first()
            .and_then(|s| s.get("sub"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !sub.is_empty() {
            main.object = sub.to_owned();
        }
        main.reason = format!("{} sessions ended", sessions.len());
        for s in sessions {
            let field = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
            let mut e = audit_event(zone, op, now);
            e.action = "session.logout".into();
            e.actor.clone_from(&main.actor);
            e.object = format!("session:{}", field("session"));
            e.reason = format!("account logout of {}", field("sub"));
            out.push(e);
            for f in s
                .get("families")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let mut e = audit_event(zone, op, now);
                e.action = "token.revoke".into();
                e.object = format!("family:{f}");
                e.reason = "account logout".into();
                out.push(e);
            }
        }
    }
    out.insert(0, main);
    out
}

pub(crate) fn passwords() -> Result<Passwords, String> {
    Passwords::new(
        PasswordParams::default(),
        PasswordPolicy::default(),
        &OsRandom::new(),
    )
    .map_err(|e| e.to_string())
}

/// A user by subject id, else by sign-in name.
pub(crate) fn find_user(dir: &Directory<'_>, user: &str) -> Result<User, String> {
    let by_sub = match user.parse() {
        Ok(sub) => dir.user(&sub).map_err(|e| e.to_string())?,
        Err(_) => None,
    };
    match by_sub {
        Some(u) => Ok(u),
        None => dir
            .user_by_login(user)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no account `{user}` in the directory")),
    }
}

fn user_json(u: &User) -> Value {
    json!({
        "sub": u.sub.to_string(),
        "login": u.login,
        "name": u.display_name,
        "court": u.court.as_ref().map(ToString::to_string),
        "roles": u.roles.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "clearance": u.clearance.to_string(),
        "status": u.status.as_str(),
        "email": u.email,
        "phone": u.phone,
        "password": u.password.is_some(),
        "totp": u.totp.is_some(),
        "required_actions": u.required_actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
    })
}

fn client_json(store: &dyn Store, c: &Client) -> Value {
    let bcl = tianping_idp::backchannel_registration(store, &c.id)
        .ok()
        .flatten();
    json!({
        "backchannel_logout_uri": bcl.as_ref().map(|b| b.uri.clone()),
        "backchannel_logout_session_required": bcl.is_some_and(|b| b.session_required),
        "id": c.id,
        "auth_method": c.auth_method.as_str(),
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "grants": c.grants.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "native_loopback": c.native_loopback,
        "scopes": c.extra_scopes,
    })
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("{what} `{s}`: {e}"))
}

/// Ends every session of `sub` (their refresh families revoked) and queues the back-channel
/// logout tokens of their clients.
fn logout(
    store: &dyn Store,
    sub: &tianping_core::SubjectId,
    now: tianping_core::UnixTime,
) -> Result<Vec<tianping_idp::EndedSession>, String> {
    let s = |e: tianping_idp::IdpError| e.to_string();
    let ended = tianping_idp::logout_account(store, GrantPolicy::default(), sub).map_err(s)?;
    for e in &ended {
        tianping_idp::queue_logouts(store, e, now, &OsRandom::new()).map_err(s)?;
    }
    Ok(ended)
}

/// Carries out `op` on `store`; the answer as JSON, or the refusal (nothing changed).
pub(crate) fn execute(store: &dyn Store, op: &Op) -> Result<Value, String> {
    let dir = Directory::new(store);
    let now = SystemClock.now();
    let s = |e: tianping_idp::IdpError| e.to_string();
    match op {
        Op::UserAdd {
            sub,
            login,
            name,
            court,
            roles,
            clearance,
            email,
            phone,
            password,
            temporary,
        } => {
            let mut user = User::new(parse("subject id", sub)?, login, name.clone(), now);
            user.court = court.as_deref().map(|c| parse("court", c)).transpose()?;
            user.roles = roles
                .iter()
                .map(|r| parse("role", r))
                .collect::<Result<_, _>>()?;
            if let Some(c) = clearance {
                user.clearance = parse("clearance", c)?;
            }
            user.email.clone_from(email);
            user.phone.clone_from(phone);
            if let Some(pw) = password {
                let hasher = passwords()?;
                user.password = Some(
                    hasher
                        .initial(&user.sub, pw, now, &OsRandom::new())
                        .map_err(s)?,
                );
                if *temporary {
                    user.required_actions.push(RequiredAction::ChangePassword);
                }
            }
            dir.add_user(user.clone()).map_err(s)?;
            Ok(user_json(&user))
        }
        Op::UserList => Ok(Value::Array(
            dir.users().map_err(s)?.iter().map(user_json).collect(),
        )),
        Op::UserShow { user } => Ok(user_json(&find_user(&dir, user)?)),
        Op::UserStatus { user, enabled } => {
            let u = find_user(&dir, user)?;
            let status = if *enabled {
                UserStatus::Enabled
            } else {
                UserStatus::Disabled
            };
            let after = dir.set_status(&u.sub, status).map_err(s)?;
            if !enabled {
                // a disabled account's sessions end, and their clients are told
                logout(store, &u.sub, now)?;
            }
            Ok(user_json(&after))
        }
        Op::SetPassword {
            user,
            password,
            temporary,
        } => {
            let u = find_user(&dir, user)?;
            let hasher = passwords()?;
            let after = dir
                .set_password(&u.sub, &hasher, password, *temporary, now, &OsRandom::new())
                .map_err(s)?;
            Ok(user_json(&after))
        }
        Op::ResetTotp { user } => {
            let u = find_user(&dir, user)?;
            Ok(user_json(&dir.reset_totp(&u.sub).map_err(s)?))
        }
        Op::RequireAction { user, action } => {
            let a = RequiredAction::parse(action).ok_or_else(|| {
                format!("`{action}` is not an action (`change-password`, `enrol-totp`)")
            })?;
            let u = find_user(&dir, user)?;
            Ok(user_json(&dir.require_action(&u.sub, a).map_err(s)?))
        }
        Op::UserSessions { user } => {
            let u = find_user(&dir, user)?;
            let all = tianping_idp::account_sessions(store, SessionPolicy::default(), &u.sub, now)
                .map_err(s)?;
            Ok(Value::Array(
                all.iter()
                    .map(|a| {
                        json!({
                            "sub": u.sub.to_string(),
                            "session": a.handle,
                            "created": a.created_at.as_secs(),
                            "last_seen": a.last_seen.as_secs(),
                            "acr": a.acr.to_string(),
                            "clients": a.clients,
                        })
                    })
                    .collect(),
            ))
        }
        Op::UserLogout { user } => {
            let u = find_user(&dir, user)?;
            let ended = logout(store, &u.sub, now)?;
            Ok(Value::Array(
                ended
                    .iter()
                    .map(|e| {
                        json!({
                            "sub": u.sub.to_string(),
                            "session": e.handle,
                            "clients": e.clients,
                            "families": e
                                .families
                                .iter()
                                .map(|f| f.iter().map(|b| format!("{b:02x}")).collect::<String>())
                                .collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            ))
        }
        Op::CourtAdd { code, name } => {
            let court = Court {
                code: parse("court", code)?,
                name: name.clone(),
            };
            dir.add_court(court).map_err(s)?;
            Ok(json!({ "code": code, "name": name }))
        }
        Op::CourtList => Ok(Value::Array(
            dir.courts()
                .map_err(s)?
                .iter()
                .map(|c| json!({ "code": c.code.to_string(), "name": c.name }))
                .collect(),
        )),
        Op::ClientAdd {
            id,
            redirect_uris,
            post_logout_redirect_uris,
            grants,
            auth_method,
            native_loopback,
            scopes,
            jwks,
            jwks_uri,
            tls_subject,
            backchannel_logout_uri,
            backchannel_logout_session_required,
        } => {
            let backchannel = backchannel_logout_uri
                .as_ref()
                .map(|uri| BackchannelRegistration {
                    uri: uri.clone(),
                    session_required: *backchannel_logout_session_required,
                });
            if let Some(b) = &backchannel {
                b.check().map_err(s)?;
            }
            let auth_method = ClientAuthMethod::parse(auth_method).ok_or_else(|| {
                format!(
                    "`{auth_method}` is not an authentication method (`client_secret_basic`, \
                     `client_secret_post`, `private_key_jwt`, `tls_client_auth`, `none`)"
                )
            })?;
            let keys = match (jwks, jwks_uri, tls_subject) {
                (Some(j), None, None) => Some(tianping_idp::ClientKeys::Jwks(j.clone())),
                (None, Some(u), None) => Some(tianping_idp::ClientKeys::JwksUri(u.clone())),
                (None, None, Some(t)) => Some(tianping_idp::ClientKeys::TlsSubject(t.clone())),
                (None, None, None) => None,
                _ => return Err("give one of `--jwks`, `--jwks-uri` and `--tls-subject`".into()),
            };
            let grants = grants
                .iter()
                .map(|g| GrantType::parse(g).ok_or_else(|| format!("`{g}` is not a grant")))
                .collect::<Result<Vec<_>, _>>()?;
            let secret = if !auth_method.uses_secret() {
                None
            } else {
                let mut bytes = [0u8; 32];
                OsRandom::new().fill(&mut bytes).map_err(s)?;
                Some(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
            };
            let client = Client {
                id: id.clone(),
                secret_sha256: secret.as_deref().map(Client::hash_secret),
                auth_method,
                redirect_uris: redirect_uris.clone(),
                post_logout_redirect_uris: post_logout_redirect_uris.clone(),
                grants,
                native_loopback: *native_loopback,
                extra_scopes: scopes.clone(),
            };
            dir.add_client_with_keys(client.clone(), keys).map_err(s)?;
            tianping_idp::register_backchannel(store, &client.id, backchannel.as_ref())
                .map_err(s)?;
            let mut v = client_json(store, &client);
            if let (Some(obj), Some(secret)) = (v.as_object_mut(), secret) {
                obj.insert("secret".into(), secret.into());
            }
            Ok(v)
        }
        Op::ClientList => Ok(Value::Array(
            dir.clients()
                .map_err(s)?
                .iter()
                .map(|c| client_json(store, c))
                .collect(),
        )),
        Op::ClientShow { id } => dir
            .client(id)
            .map_err(s)?
            .map(|c| client_json(store, &c))
            .ok_or_else(|| format!("no client `{id}` in the directory")),
    }
}

fn print_user(v: &Value) {
    let get = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let list = |k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        get("sub"),
        get("login"),
        get("status"),
        get("court"),
        list("roles"),
        get("name")
    );
}

pub(crate) fn user(p: &Paths, cmd: UserCmd) -> miette::Result<std::process::ExitCode> {
    let op = match cmd {
        UserCmd::Add(a) => {
            let password = if a.no_password {
                None
            } else {
                Some(read_password(&a.password)?)
            };
            Op::UserAdd {
                sub: a.sub,
                login: a.login,
                name: a.name,
                court: a.court,
                roles: a.roles,
                clearance: a.clearance,
                email: a.email,
                phone: a.phone,
                password,
                temporary: a.temporary,
            }
        }
        UserCmd::List(_) => Op::UserList,
        UserCmd::Show(u) => Op::UserShow { user: u.user },
        UserCmd::Disable(u) => Op::UserStatus {
            user: u.user,
            enabled: false,
        },
        UserCmd::Enable(u) => Op::UserStatus {
            user: u.user,
            enabled: true,
        },
        UserCmd::SetPassword(a) => Op::SetPassword {
            password: read_password(&a.password)?,
            user: a.user,
            temporary: a.temporary,
        },
        UserCmd::ResetTotp(u) => Op::ResetTotp { user: u.user },
        UserCmd::RequireAction(a) => Op::RequireAction {
            user: a.user,
            action: a.action,
        },
        UserCmd::Sessions(u) => return sessions(p, Op::UserSessions { user: u.user }),
        UserCmd::Logout(u) => return sessions(p, Op::UserLogout { user: u.user }),
    };
    let show = matches!(op, Op::UserShow { .. });
    let answer = run_op(p, op)?;
    match &answer {
        Value::Array(users) => users.iter().for_each(print_user),
        v if show => println!("{}", serde_json::to_string_pretty(v).into_diagnostic()?),
        v => print_user(v),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Seconds since the epoch as a UTC date and time (`2026-12-03T06:05:00Z`).
fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // civil from days (H. Hinnant), for days since 1970-01-01 (no dates before it here)
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `user sessions` (one line a session: handle, created, last seen, acr, clients) and `user
/// logout` (one line a session ended: handle, refresh families revoked, clients).
fn sessions(p: &Paths, op: Op) -> miette::Result<std::process::ExitCode> {
    let logout = matches!(op, Op::UserLogout { .. });
    let answer = run_op(p, op)?;
    let all = answer.as_array().cloned().unwrap_or_default();
    for s in &all {
        let get = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        let time = |k: &str| {
            s.get(k)
                .and_then(Value::as_u64)
                .map(utc)
                .unwrap_or_else(|| "-".into())
        };
        let list = |k: &str| {
            let v: Vec<&str> = s
                .get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if v.is_empty() {
                "-".into()
            } else {
                v.join(",")
            }
        };
        if logout {
            let families = s
                .get("families")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            println!(
                "ended\t{}\t{families} refresh families revoked\t{}",
                get("session"),
                list("clients")
            );
        } else {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                get("session"),
                time("created"),
                time("last_seen"),
                get("acr"),
                list("clients")
            );
        }
    }
    if logout {
        println!("{} sessions ended", all.len());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub(crate) fn court(p: &Paths, cmd: CourtCmd) -> miette::Result<std::process::ExitCode> {
    let op = match cmd {
        CourtCmd::Add(a) => Op::CourtAdd {
            code: a.code,
            name: a.name,
        },
        CourtCmd::List(_) => Op::CourtList,
    };
    let answer = run_op(p, op)?;
    let line = |c: &Value| {
        println!(
            "{}\t{}",
            c.get("code").and_then(Value::as_str).unwrap_or_default(),
            c.get("name").and_then(Value::as_str).unwrap_or_default()
        );
    };
    match &answer {
        Value::Array(all) => all.iter().for_each(line),
        c => line(c),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub(crate) fn client(p: &Paths, cmd: ClientCmd) -> miette::Result<std::process::ExitCode> {
    let op = match cmd {
        ClientCmd::Add(a) => Op::ClientAdd {
            id: a.id,
            redirect_uris: a.redirect_uris,
            post_logout_redirect_uris: a.post_logout_redirect_uris,
            grants: a.grants,
            auth_method: a.auth_method,
            native_loopback: a.native_loopback,
            scopes: a.scopes,
            jwks: match &a.jwks {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .into_diagnostic()
                        .wrap_err_with(|| format!("cannot read the JWKS `{}`", path.display()))?,
                ),
                None => None,
            },
            jwks_uri: a.jwks_uri,
            tls_subject: a.tls_subject,
            backchannel_logout_uri: a.backchannel_logout_uri,
            backchannel_logout_session_required: a.backchannel_logout_session_required,
        },
        ClientCmd::List(_) => Op::ClientList,
        ClientCmd::Show(c) => Op::ClientShow { id: c.id },
    };
    let answer = run_op(p, op)?;
    match &answer {
        Value::Array(all) => {
            for c in all {
                println!(
                    "{}\t{}",
                    c.get("id").and_then(Value::as_str).unwrap_or_default(),
                    c.get("auth_method")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                );
            }
        }
        c => {
            let mut shown = c.clone();
            let secret = shown
                .as_object_mut()
                .and_then(|o| o.remove("secret"))
                .and_then(|s| s.as_str().map(str::to_owned));
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).into_diagnostic()?
            );
            if let Some(secret) = secret {
                println!("client secret (shown once, kept only as its hash): {secret}");
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
