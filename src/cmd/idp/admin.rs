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
//! Through the zone's gateway (route `directory-admin`, service `directory-authority`), a person
//! the gateway asserts (`Tianping-Assertion`, verified as every component verifies the gateway's
//! assertions, then found enabled in the directory) is the caller of the requests under
//! [`GATEWAY_PREFIX`]: their paths map onto the same directory operations ([`gateway_op`]),
//! with the same roles ([`gatewayed`]), audited under the person with the gateway's name and
//! request id. The local operator is nobody there, and an assertion is taken nowhere else.
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
    /// An administrator the zone's gateway asserted (route `directory-admin`): the subject id
    /// and roles, the gateway that asserted them and its request id.
    Gatewayed {
        sub: String,
        roles: Vec<String>,
        gateway: String,
        request_id: String,
    },
}

impl Actor {
    /// The audit event's `actor`.
    pub(crate) fn name(&self) -> String {
        match self {
            Actor::Admin { sub, .. } | Actor::Gatewayed { sub, .. } => sub.clone(),
            Actor::Node(n) => format!("node:{n}"),
            Actor::LocalOperator(uid) => format!("local-operator:uid-{uid}"),
        }
    }

    /// The audit event's `roles`.
    pub(crate) fn roles(&self) -> Vec<String> {
        match self {
            Actor::Admin { roles, .. } | Actor::Gatewayed { roles, .. } => roles.clone(),
            _ => Vec::new(),
        }
    }

    /// What an audit event of this actor's action adds: the gateway that asserted the person
    /// (attribute `gateway`) and its request id.
    pub(crate) fn mark(&self, e: &mut tianping_audit::Event) {
        if let Actor::Gatewayed {
            gateway,
            request_id,
            ..
        } = self
        {
            e.attributes.insert("gateway".into(), gateway.clone());
            e.request_id.clone_from(request_id);
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

/// Where the zone's gateway forwards the policy's `directory-admin` route (service
/// `directory-authority`): `/gateway/v1/directory-authority/directory/...`.
pub(crate) const GATEWAY_PREFIX: &str = "/gateway/v1/directory-authority/";

/// The callers of the IdP's control socket who are people: the token `tianping login` keeps
/// (`Authorization: Bearer`, checked by the IdP's person-token verifier), or a person the zone's
/// gateway asserts (`Tianping-Assertion` for `directory-authority`, checked by the shared
/// verifier of gateway assertions), then found in the directory as it is now: an account that
/// is not there or is disabled is refused, and a role the directory no longer gives them is
/// gone (the gateway's certificate or session may be older than the change).
pub(crate) struct People {
    pub(crate) tokens: tianping_idp::PersonTokens,
    pub(crate) asserted: crate::assertion::GatewayUsers,
    pub(crate) store: std::sync::Arc<dyn Store>,
}

impl tianping_net::CallerVerifier for People {
    fn verify(
        &self,
        credential: &tianping_net::Credential,
        now: tianping_core::UnixTime,
    ) -> Result<CourtIdentity, tianping_net::CallerRefusal> {
        use tianping_net::{CallerRefusal, Credential};
        if matches!(credential, Credential::Bearer(_)) {
            return self.tokens.verify(credential, now);
        }
        let mut id = self.asserted.verify(credential, now)?;
        let sub = id
            .subject
            .clone()
            .ok_or_else(|| CallerRefusal::Refused("the assertion names no person".into()))?;
        let user = tianping_idp::Directory::new(&*self.store)
            .user(&sub)
            .map_err(|e| CallerRefusal::Refused(e.to_string()))?
            .ok_or_else(|| {
                CallerRefusal::Refused(format!(
                    "the asserted person `{sub}` is not in the directory"
                ))
            })?;
        if !user.is_enabled() {
            return Err(CallerRefusal::Refused(format!(
                "the asserted person `{sub}`'s account is disabled"
            )));
        }
        id.roles.retain(|r| user.roles.contains(r));
        Ok(id)
    }
}

/// A refusal or failure as the JSON answer the socket gives.
pub(crate) fn json_error(status: StatusCode, text: String) -> Response<ResponseBody> {
    refusal(status, text)
}

/// The directory operation a gatewayed request asks for: `method` on `rest`, the request's path
/// after [`GATEWAY_PREFIX`] (the path the person asked the gateway for, without its leading `/`),
/// and its body.
///
/// - `GET directory/users`, `GET directory/users/<user>`, `GET directory/users/<user>/sessions`;
/// - `POST directory/users/<user>/disable` (its sessions end), `…/enable`, `…/logout`,
///   `…/reset-totp`;
/// - `GET directory/courts`, `GET directory/clients`, `GET directory/clients/<id>`;
/// - `POST directory` with the operation as JSON, as `tianping idp …` sends it to the socket
///   (`{"op": "user-add", …}`), for everything else.
///
/// `<user>` is a subject id or a sign-in name. Anything else is the answer to give (404 for no
/// such endpoint, 400 for a body that is not an operation).
pub(crate) fn gateway_op(
    method: &str,
    rest: &str,
    body: &[u8],
) -> Result<Op, (StatusCode, String)> {
    let path = rest.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let user = |u: &str| u.to_owned();
    let op = match (method, segments.as_slice()) {
        ("POST", ["directory"]) => serde_json::from_slice::<Op>(body).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("not a directory operation: {e}"),
            )
        })?,
        ("GET", ["directory", "users"]) => Op::UserList,
        ("GET", ["directory", "users", u]) => Op::UserShow { user: user(u) },
        ("GET", ["directory", "users", u, "sessions"]) => Op::UserSessions { user: user(u) },
        ("POST", ["directory", "users", u, "disable"]) => Op::UserStatus {
            user: user(u),
            enabled: false,
        },
        ("POST", ["directory", "users", u, "enable"]) => Op::UserStatus {
            user: user(u),
            enabled: true,
        },
        ("POST", ["directory", "users", u, "logout"]) => Op::UserLogout { user: user(u) },
        ("POST", ["directory", "users", u, "reset-totp"]) => Op::ResetTotp { user: user(u) },
        ("GET", ["directory", "courts"]) => Op::CourtList,
        ("GET", ["directory", "clients"]) => Op::ClientList,
        ("GET", ["directory", "clients", id]) => Op::ClientShow {
            id: (*id).to_owned(),
        },
        _ => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no directory endpoint `{method} /{path}`"),
            ));
        }
    };
    if segments.iter().any(|s| s.is_empty()) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no directory endpoint `{method} /{path}`"),
        ));
    }
    Ok(op)
}

/// Lets a gatewayed request carry out `op` if the gateway asserted a person holding one of its
/// roles ([`op_roles`]: `sysadmin` for changes, as on the socket): 401 without an assertion
/// (a person's or a node's token is not one, and the local operator is nobody here), 403 naming
/// the role otherwise.
#[expect(
    clippy::result_large_err,
    reason = "the refusal is the response, returned straight from the handler"
)]
pub(crate) fn gatewayed(
    caller: Option<&Caller>,
    op: &Op,
    gateway: &str,
    request_id: &str,
) -> Result<Actor, Response<ResponseBody>> {
    let asserted = caller
        .filter(|c| matches!(c.credential, Some(tianping_net::Credential::Assertion(_))))
        .and_then(|c| c.identity.as_deref())
        .filter(|id| person(id));
    let Some(id) = asserted else {
        return Err(refusal(
            StatusCode::UNAUTHORIZED,
            "the directory is administered here by people the zone's gateway asserts".into(),
        ));
    };
    let roles = op_roles(op);
    if !roles.iter().any(|r| id.roles.contains(r)) {
        let needed = roles.first().copied().unwrap_or(Role::Sysadmin);
        return Err(refusal(
            StatusCode::FORBIDDEN,
            format!("role `{}` required", needed.as_str()),
        ));
    }
    Ok(Actor::Gatewayed {
        sub: id
            .subject
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        roles: id.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        gateway: gateway.to_owned(),
        request_id: request_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gatewayed_paths_map_onto_the_directory_operations() {
        let op = |m: &str, p: &str| gateway_op(m, p, b"").map(|o| serde_json::to_value(o).unwrap());
        assert_eq!(op("GET", "directory/users").unwrap()["op"], "user-list");
        assert_eq!(op("GET", "directory/users/").unwrap()["op"], "user-list");
        let show = op("GET", "directory/users/wang?x=1").unwrap();
        assert_eq!(
            (show["op"].as_str(), show["user"].as_str()),
            (Some("user-show"), Some("wang"))
        );
        let off = op("POST", "directory/users/judge-0001/disable").unwrap();
        assert_eq!(off["op"], "user-status");
        assert_eq!(off["enabled"], false);
        assert_eq!(
            op("POST", "directory/users/wang/enable").unwrap()["enabled"],
            true
        );
        assert_eq!(
            op("GET", "directory/users/wang/disable").unwrap_err().0,
            404
        );
        assert_eq!(op("DELETE", "directory/users/wang").unwrap_err().0, 404);
        assert_eq!(op("GET", "directory//wang").unwrap_err().0, 404);
        assert_eq!(op("GET", "elsewhere").unwrap_err().0, 404);
        let add = gateway_op(
            "POST",
            "directory",
            br#"{"op": "court-add", "code": "bj", "name": "x"}"#,
        )
        .unwrap();
        assert!(matches!(add, Op::CourtAdd { .. }));
        assert_eq!(gateway_op("POST", "directory", b"{").unwrap_err().0, 400);
    }

    #[test]
    fn a_gatewayed_change_needs_an_asserted_sysadmin() {
        let id = |roles: Vec<Role>| CourtIdentity {
            name: "x".into(),
            subject: Some("sysadmin-0009".parse().unwrap()),
            court: None,
            roles,
            zone: "private".parse().unwrap(),
            kind: CertKind::Client,
            fingerprint: [0; 32],
            hardware: false,
        };
        let caller = |roles: Vec<Role>, assertion: bool| {
            let token = std::sync::Arc::new(tianping_core::Secret::new("t".to_owned()));
            Caller {
                uid: 0,
                pid: None,
                credential: Some(if assertion {
                    tianping_net::Credential::Assertion(token)
                } else {
                    tianping_net::Credential::Bearer(token)
                }),
                identity: Some(std::sync::Arc::new(id(roles))),
            }
        };
        let off = Op::UserStatus {
            user: "wang".into(),
            enabled: false,
        };
        let a = gatewayed(Some(&caller(vec![Role::Sysadmin], true)), &off, "gw", "r1").unwrap();
        let mut e = tianping_audit::Event::new(tianping_core::UnixTime::from_millis(0), "x");
        a.mark(&mut e);
        assert_eq!(
            (a.name(), e.attributes["gateway"].as_str()),
            ("sysadmin-0009".into(), "gw")
        );
        assert_eq!(e.request_id, "r1");
        let status =
            |c: Option<&Caller>, op: &Op| gatewayed(c, op, "gw", "r").unwrap_err().status();
        assert_eq!(status(Some(&caller(vec![Role::Secadmin], true)), &off), 403);
        assert!(
            gatewayed(
                Some(&caller(vec![Role::Secadmin], true)),
                &Op::UserList,
                "gw",
                "r"
            )
            .is_ok()
        );
        assert_eq!(
            status(Some(&caller(vec![Role::Sysadmin], false)), &off),
            401
        );
        assert_eq!(status(None, &off), 401);
    }
}
