//! Who may do what on the IdP's control socket: the three separated administrators (三员分立,
//! GB/T 22239-2019 8.1.4) by the role each action needs, and the local operator before them.
//!
//! - `sysadmin`: user, court, device and client changes, directory export and apply (and reading
//!   the directory);
//! - `secadmin`: roles (a user added with one of the three administrator roles), key rotation
//!   (and reading the directory);
//! - `auditor`: reading and exporting audit data (`/audit/v1/…`, judged by the audit crate).
//!
//! A caller presents the token `tianping login` keeps (`Authorization: Bearer`), checked by the
//! IdP's person-token verifier, or a node token of the zone (the exchange delivering a directory
//! update through its `idp` binding). A caller without a token (the socket's peer uid is this
//! user's or root's, checked at accept) is the **local operator**, and is let act only until an
//! administrator is in charge of the zone: the first time one of the three presents their token
//! to this socket, the IdP records it (`zones/<zone>/idp/administrators-in-charge`, kept across
//! restarts), and from then on every action needs an administrator's token. A refused action
//! names the role it needs (403; 401 without a token once an administrator is in charge).
//!
//! (Counting the administrators the directory holds instead would hand the zone over before any
//! of them could sign in: the first ones `idp init` makes must change their one-time password
//! and enrol TOTP first, and accounts replicated into another zone arrive without credentials.)

use http::{Response, StatusCode};
use serde_json::json;
use tianping_certs::{CertKind, CourtIdentity};
use tianping_core::Role;
use tianping_idp::{Client, ClientAuthMethod, GrantType, Store};
use tianping_net::{Caller, ResponseBody, full};

use super::directory::Op;

/// The client `tianping login` signs in as: public, native, through the device grant.
pub(crate) const CLI_CLIENT: &str = "tianping-cli";

/// The CLI's client: public (no secret), codes only for the verification page's sign-in, whose
/// redirect URI is the page itself.
pub(crate) fn cli_client(issuer: &str) -> Client {
    Client {
        id: CLI_CLIENT.into(),
        secret_sha256: None,
        auth_method: ClientAuthMethod::None,
        redirect_uris: vec![format!("{issuer}/device")],
        post_logout_redirect_uris: vec![],
        grants: vec![GrantType::AuthorizationCode],
        native_loopback: false,
        extra_scopes: vec![],
    }
}

/// Who acts, as audit events name them.
#[derive(Debug, Clone)]
pub(crate) enum Actor {
    /// An administrator by their token: the subject id and roles.
    Admin { sub: String, roles: Vec<String> },
    /// A component of the zone by its node token.
    Node(String),
    /// The socket owner's uid without a token, before any administrator is in charge.
    LocalOperator(u32),
}

impl Actor {
    /// The audit event's `actor`.
    pub(crate) fn name(&self) -> String {
        match self {
            Actor::Admin { sub, .. } => sub.clone(),
            Actor::Node(n) => format!("node:{n}"),
            Actor::LocalOperator(uid) => format!("local-operator:uid-{uid}"),
        }
    }

    /// The audit event's `roles`.
    pub(crate) fn roles(&self) -> Vec<String> {
        match self {
            Actor::Admin { roles, .. } => roles.clone(),
            _ => Vec::new(),
        }
    }
}

/// Whether an administrator is in charge of the zone: a marker file, made the first time one
/// of the three presents their token to the socket.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    marker: std::path::PathBuf,
}

impl Gate {
    /// The gate of the IdP whose state is under `base` (`zones/<zone>/idp`).
    pub(crate) fn new(base: &std::path::Path) -> Self {
        Self {
            marker: base.join("administrators-in-charge"),
        }
    }

    /// Whether an administrator is in charge.
    pub(crate) fn in_charge(&self) -> bool {
        self.marker.exists()
    }

    /// Notes the caller: an administrator's token puts the administrators in charge, for good.
    pub(crate) fn note(&self, caller: Option<&Caller>) -> Result<(), String> {
        let admin = caller
            .and_then(|c| c.identity.as_deref())
            .is_some_and(|id| person(id) && id.roles.iter().any(|r| r.is_separated_admin()));
        if admin && !self.in_charge() {
            std::fs::write(&self.marker, b"an administrator presented a token here\n")
                .map_err(|e| format!("cannot write `{}`: {e}", self.marker.display()))?;
        }
        Ok(())
    }
}

fn refusal(status: StatusCode, text: String) -> Response<ResponseBody> {
    let mut r = Response::new(full(json!({ "error": text }).to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// The caller's identity if it is a person (not a node).
fn person(id: &CourtIdentity) -> bool {
    id.kind != CertKind::Node && id.subject.is_some()
}

/// Lets `caller` act if it holds one of `roles` (the first is the one a refusal names), or it
/// is the local operator while no administrator is in charge; the answer to send otherwise.
#[expect(
    clippy::result_large_err,
    reason = "the refusal is the response, returned straight from the handler"
)]
pub(crate) fn authorise(
    caller: Option<&Caller>,
    roles: &[Role],
    gate: &Gate,
) -> Result<Actor, Response<ResponseBody>> {
    let needed = roles.first().copied().unwrap_or(Role::Sysadmin);
    let Some(caller) = caller else {
        return Err(refusal(StatusCode::UNAUTHORIZED, "no caller".into()));
    };
    match caller.identity.as_deref() {
        Some(id) if person(id) => {
            if roles.iter().any(|r| id.roles.contains(r)) {
                Ok(Actor::Admin {
                    sub: id
                        .subject
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    roles: id.roles.iter().map(|r| r.as_str().to_owned()).collect(),
                })
            } else {
                Err(refusal(
                    StatusCode::FORBIDDEN,
                    format!("role `{}` required", needed.as_str()),
                ))
            }
        }
        Some(_) => Err(refusal(
            StatusCode::FORBIDDEN,
            format!(
                "role `{}` required: a node token acts for no person",
                needed.as_str()
            ),
        )),
        None if gate.in_charge() => Err(refusal(
            StatusCode::UNAUTHORIZED,
            format!(
                "role `{}` required: an administrator is in charge of this zone, so an administrator's token is needed (`tianping login --zone ZONE`)",
                needed.as_str()
            ),
        )),
        None => Ok(Actor::LocalOperator(caller.uid)),
    }
}

/// A node of the zone (the exchange delivering through its `idp` binding), or else as
/// [`authorise`] with `sysadmin`.
#[expect(
    clippy::result_large_err,
    reason = "the refusal is the response, returned straight from the handler"
)]
pub(crate) fn node_or_sysadmin(
    caller: Option<&Caller>,
    gate: &Gate,
) -> Result<Actor, Response<ResponseBody>> {
    if let Some(id) = caller.and_then(|c| c.identity.as_deref())
        && id.kind == CertKind::Node
    {
        return Ok(Actor::Node(id.name.clone()));
    }
    authorise(caller, &[Role::Sysadmin], gate)
}

/// The roles a directory operation needs (the first is the one a refusal names).
pub(crate) fn op_roles(op: &Op) -> &'static [Role] {
    match op {
        Op::UserList
        | Op::UserShow { .. }
        | Op::UserSessions { .. }
        | Op::CourtList
        | Op::ClientList
        | Op::ClientShow { .. } => &[Role::Sysadmin, Role::Secadmin],
        // giving one of the three administrator roles is the security administrator's
        Op::UserAdd { roles, .. }
            if roles
                .iter()
                .any(|r| r.parse::<Role>().is_ok_and(Role::is_separated_admin)) =>
        {
            &[Role::Secadmin]
        }
        Op::UserAdd { .. }
        | Op::UserStatus { .. }
        | Op::SetPassword { .. }
        | Op::ResetTotp { .. }
        | Op::RequireAction { .. }
        | Op::UserLogout { .. }
        | Op::CourtAdd { .. }
        | Op::ClientAdd { .. } => &[Role::Sysadmin],
    }
}

/// The user a directory operation changes, for its before and after.
pub(crate) fn op_user(op: &Op) -> Option<&str> {
    match op {
        Op::UserAdd { sub, .. } => Some(sub),
        Op::UserStatus { user, .. }
        | Op::SetPassword { user, .. }
        | Op::ResetTotp { user }
        | Op::RequireAction { user, .. }
        | Op::UserLogout { user } => Some(user),
        _ => None,
    }
}

/// The first administrators `idp init --zone private` makes: subject id, sign-in name, role.
pub(crate) const FIRST_ADMINISTRATORS: [(&str, &str, Role); 3] = [
    ("sysadmin-0001", "sysadmin", Role::Sysadmin),
    ("secadmin-0001", "secadmin", Role::Secadmin),
    ("auditor-0001", "auditor", Role::Auditor),
];

/// A one-time password: 24 random letters and digits in three groups, with a capital, a small
/// letter, a digit and a symbol whatever they are (about 139 bits).
fn one_time_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let rng = tianping_idp::OsRandom::new();
    let mut out = String::new();
    while out.len() < 24 {
        let mut buf = [0u8; 32];
        tianping_idp::Random::fill(&rng, &mut buf).map_err(|e| e.to_string())?;
        // 57 letters: bytes past the last whole multiple (228) are drawn again
        for b in buf {
            if b < 228 && out.len() < 24 {
                if let Some(c) = ALPHABET.get(usize::from(b % 57)) {
                    out.push(char::from(*c));
                }
            }
        }
    }
    let (a, rest) = out.split_at(8);
    let (b, c) = rest.split_at(8);
    Ok(format!("Tp-{a}-{b}-{c}-9"))
}

/// What `idp init` made for one administrator.
pub(crate) struct MadeAdministrator {
    pub(crate) sub: &'static str,
    pub(crate) role: Role,
    pub(crate) cert: std::path::PathBuf,
    pub(crate) key: std::path::PathBuf,
    pub(crate) password: std::path::PathBuf,
}

/// Creates the three first administrators of a fresh zone store: each an account with a
/// one-time password (to change) and TOTP to enrol at first sign-in, a client certificate of
/// the zone CA (marked hardware only if `hardware`: the operator put the key on a token) in
/// `out`, and the password in a file of mode 0600 there; each audited as `idp.user.add` by
/// `idp-init`.
pub(crate) fn create_first_administrators(
    dir: &tianping_core::DataDir,
    zone: &tianping_core::ZoneName,
    store: &dyn Store,
    audit: &tianping_audit::AuditLog,
    out: &std::path::Path,
    hardware: bool,
) -> Result<Vec<MadeAdministrator>, String> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let pki = tianping_certs::Pki::open(&dir.pki()).map_err(|e| e.to_string())?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .map_err(|e| format!("cannot create `{}`: {e}", out.display()))?;
    let now = tianping_core::UnixTime::from_system_time(std::time::SystemTime::now());
    let mut made = Vec::new();
    for (sub, login, role) in FIRST_ADMINISTRATORS {
        let password = one_time_password()?;
        let add = Op::UserAdd {
            sub: sub.into(),
            login: login.into(),
            name: format!("{} (first administrator)", role.as_str()),
            court: None,
            roles: vec![role.as_str().into()],
            clearance: None,
            email: None,
            phone: None,
            password: Some(password.clone()),
            temporary: true,
        };
        let answer = super::directory::execute(store, &add)?;
        let enrol = Op::RequireAction {
            user: sub.into(),
            action: tianping_idp::RequiredAction::EnrolTotp.as_str().into(),
        };
        super::directory::execute(store, &enrol)?;
        let mut req = tianping_certs::LeafRequest::new(CertKind::Client, login);
        req.subject = Some(
            sub.parse()
                .map_err(|e: tianping_core::IdError| e.to_string())?,
        );
        // the administrators serve the whole fabric: their certificates name the root court
        // (the directory's record names none, so no court need exist there)
        req.court = Some(
            "spc"
                .parse()
                .map_err(|e: tianping_core::IdError| e.to_string())?,
        );
        req.roles = vec![role];
        req.hardware = hardware;
        let issued = pki.issue(zone, &req, now).map_err(|e| e.to_string())?;
        let (cert, key) = tianping_certs::Pki::write_issued(&issued, &out.join(login))
            .map_err(|e| e.to_string())?;
        let password_file = out.join(format!("{login}.password"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&password_file)
            .map_err(|e| format!("cannot create `{}`: {e}", password_file.display()))?;
        f.write_all(format!("{password}\n").as_bytes())
            .map_err(|e| format!("cannot write `{}`: {e}", password_file.display()))?;
        for mut e in super::directory::audit_events(zone.as_str(), &add, &answer, now) {
            e.actor = "idp-init".into();
            e.reason = serde_json::json!({ "before": null, "after": answer }).to_string();
            audit.append(&e).map_err(|e| format!("audit: {e}"))?;
        }
        made.push(MadeAdministrator {
            sub,
            role,
            cert,
            key,
            password: password_file,
        });
    }
    Ok(made)
}
