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
//! user's or root's, checked at accept) is the **local operator**, and is let act only while no
//! administrator is in charge of the zone: until one of the three has an enabled account with
//! no required action left (the first administrators `idp init` makes must change their
//! one-time password and enrol TOTP first). From then on every action needs an administrator's
//! token, and a refused one names the role it needs (403).

use http::{Response, StatusCode};
use serde_json::json;
use tianping_certs::{CertKind, CourtIdentity};
use tianping_core::Role;
use tianping_idp::{Client, ClientAuthMethod, Directory, GrantType, Store};
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

/// Whether one of the three administrators is in charge of the zone: an enabled account with
/// one of the roles and no required action left.
pub(crate) fn administrator_in_charge(store: &dyn Store) -> Result<bool, String> {
    let users = Directory::new(store).users().map_err(|e| e.to_string())?;
    Ok(users.iter().any(|u| {
        u.is_enabled()
            && u.required_actions.is_empty()
            && u.roles.iter().any(|r| r.is_separated_admin())
    }))
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
    store: &dyn Store,
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
        None => match administrator_in_charge(store) {
            Ok(false) => Ok(Actor::LocalOperator(caller.uid)),
            Ok(true) => Err(refusal(
                StatusCode::UNAUTHORIZED,
                format!(
                    "role `{}` required: an administrator is in charge of this zone, so an administrator's token is needed (`tianping login --zone ZONE`)",
                    needed.as_str()
                ),
            )),
            Err(e) => Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, e)),
        },
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
    store: &dyn Store,
) -> Result<Actor, Response<ResponseBody>> {
    if let Some(id) = caller.and_then(|c| c.identity.as_deref())
        && id.kind == CertKind::Node
    {
        return Ok(Actor::Node(id.name.clone()));
    }
    authorise(caller, &[Role::Sysadmin], store)
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
