//! `tianping idp directory export|apply`: one directory for every zone (DESIGN §5).
//!
//! `export --since V --to Z` writes the directory's changes after version `V` as an update for
//! zone `Z`, with only what the policy's directory flow to `Z` lets go (its `accounts`,
//! `attributes`, `credentials`), signed with the IdP's node key: from `private` (the directory
//! authority) to any zone, or public registrations from a zone to `private`. `apply FILE`
//! applies one in the zone it is for, in order and once, refusing a gap, a replay, a forgery,
//! another signer or what the flow does not allow, naming which. A stopped IdP's store is
//! opened; a running one is asked on its control socket, where the exchange's receiver
//! delivers updates too (`POST /directory/apply`, and `/idp/v1/directory-update` for the
//! `component = "idp"` binding).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use serde_json::{Value, json};
use tianping_core::{
    Clock as _, Component, DataDir, Fabric, PublicKey, Role, SystemClock, UnixTime, ZoneName,
};
use tianping_idp::{
    Applied, ApplyError, DirectoryUpdate, Expect, FlowTerms, OsRandom, SignerCheck, Store,
    UpdateKind, UpdateRefusal,
};

use super::Paths;

/// The zone whose IdP is the directory authority.
pub(crate) const AUTHORITY: &str = "private";

/// `idp directory ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DirectoryCmd {
    /// Write the directory's changes after a version as a signed update for a zone.
    Export(ExportArgs),
    /// Apply a signed directory update in the zone it is for.
    Apply(ApplyArgs),
}

/// `idp directory export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The zone whose directory is exported (`private`; a zone with a registration flow to
    /// `private` exports its public registrations).
    #[arg(long, default_value = AUTHORITY)]
    zone: ZoneName,
    /// The last version the destination has applied (0: everything).
    #[arg(long)]
    since: u64,
    /// The zone the update is for.
    #[arg(long)]
    to: ZoneName,
    /// Where to write it (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `idp directory apply`.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The update (as `export` wrote it).
    file: PathBuf,
    /// The zone to apply it in (default: the zone the update is for).
    #[arg(long)]
    zone: Option<ZoneName>,
}

impl DirectoryCmd {
    /// The zone whose IdP the command acts on, once known without reading a file.
    pub(crate) fn zone(&self) -> miette::Result<ZoneName> {
        match self {
            DirectoryCmd::Export(a) => Ok(a.zone.clone()),
            DirectoryCmd::Apply(a) => match &a.zone {
                Some(z) => Ok(z.clone()),
                None => {
                    let bytes = read_update(&a.file)?;
                    let u = DirectoryUpdate::decode(&bytes).map_err(|e| miette!("{e}"))?;
                    Ok(u.body.to)
                }
            },
        }
    }
}

fn read_update(path: &Path) -> miette::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", path.display()))?
        .len();
    if len > tianping_idp::MAX_UPDATE as u64 {
        return Err(miette!(
            "`{}` has {len} bytes, over the {} a directory update may have",
            path.display(),
            tianping_idp::MAX_UPDATE
        ));
    }
    std::fs::read(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", path.display()))
}

/// The signers a zone believes: a `node` certificate of the source zone under the zone's trust
/// bundle, the one `fabric.toml` names as that zone's IdP, whose key signed.
pub(crate) struct ZoneSigners {
    trust: tianping_certs::TrustStore,
    fabric: Fabric,
}

impl ZoneSigners {
    /// The signers zone `zone` believes, from its trust bundle.
    pub(crate) fn load(dir: &DataDir, fabric: &Fabric, zone: &ZoneName) -> miette::Result<Self> {
        let path = dir.zone_trust_bundle(zone);
        let pem = std::fs::read(&path)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading `{}`", path.display()))?;
        Ok(Self {
            trust: tianping_certs::TrustStore::from_pem(&pem, &[]).into_diagnostic()?,
            fabric: fabric.clone(),
        })
    }
}

impl SignerCheck for ZoneSigners {
    fn check(
        &self,
        chain: &[Vec<u8>],
        key: &PublicKey,
        zone: &ZoneName,
        time: UnixTime,
    ) -> Result<(), String> {
        let chain: Vec<_> = chain
            .iter()
            .map(|c| tianping_certs::CertificateDer::from(c.as_slice()))
            .collect();
        let who = tianping_certs::verify_signer(&chain, &self.trust, zone, time)
            .map_err(|e| e.to_string())?;
        if &who.key != key {
            return Err(format!(
                "signed by key `{key}`, not by the key of node `{}`",
                who.identity.name
            ));
        }
        let idp = self
            .fabric
            .zone(zone)
            .map(|z| z.idp_host.clone())
            .ok_or_else(|| format!("`fabric.toml` has no zone `{zone}`"))?;
        if who.identity.name != idp {
            return Err(format!(
                "node `{}` is not the zone's identity provider `{idp}`",
                who.identity.name
            ));
        }
        Ok(())
    }
}

/// What the policy's directory flow from `from` to `to` lets go, read from zone `copy`'s policy;
/// with the flow's name.
pub(crate) fn flow_terms(
    dir: &DataDir,
    copy: &ZoneName,
    from: &ZoneName,
    to: &ZoneName,
) -> Result<(String, FlowTerms), String> {
    let path = dir.zone_policy(copy);
    let source = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let checked = tianping_policies::check(&path.display().to_string(), &source);
    let policy = checked.policy().ok_or_else(|| {
        format!(
            "the zone's policy `{}` does not pass `tianping policy check`",
            path.display()
        )
    })?;
    let flow = policy
        .flows()
        .find(|f| {
            f.from() == from
                && f.to() == to
                && f.kinds()
                    .any(|(k, _)| k == tianping_policies::Kind::DirectoryUpdate)
        })
        .ok_or_else(|| {
            format!("the policy has no directory flow from `{from}` to `{to}`; nothing goes")
        })?;
    let credentials = tianping_idp::CREDENTIALS
        .iter()
        .map(|c| {
            let roles: Vec<Role> = Role::ALL
                .iter()
                .copied()
                .filter(|r| flow.credential_allowed(c, *r))
                .collect();
            ((*c).to_owned(), roles)
        })
        .filter(|(_, roles)| !roles.is_empty())
        .collect();
    let terms = FlowTerms {
        accounts: flow.accounts().collect(),
        attributes: flow.attributes().map(str::to_owned).collect(),
        credentials,
    };
    Ok((flow.name().to_owned(), terms))
}

/// Which way an update from `zone` to `to` goes.
fn kind_of(zone: &ZoneName, to: &ZoneName) -> Result<UpdateKind, String> {
    if zone.as_str() == AUTHORITY && to.as_str() != AUTHORITY {
        Ok(UpdateKind::Directory)
    } else if to.as_str() == AUTHORITY && zone.as_str() != AUTHORITY {
        Ok(UpdateKind::Registration)
    } else {
        Err(format!(
            "directory updates go from `{AUTHORITY}` to another zone, registrations from another zone to `{AUTHORITY}` (not `{zone}` to `{to}`)"
        ))
    }
}

/// The replication of one zone's IdP: what export and apply need besides the store.
pub(crate) struct Replicator {
    dir: DataDir,
    fabric: Fabric,
    zone: ZoneName,
}

impl Replicator {
    pub(crate) fn new(dir: &DataDir, fabric: &Fabric, zone: &ZoneName) -> Self {
        Self {
            dir: dir.clone(),
            fabric: fabric.clone(),
            zone: zone.clone(),
        }
    }

    /// The signed update of the changes after `since` for zone `to`.
    pub(crate) fn export(
        &self,
        store: &dyn Store,
        since: u64,
        to: &ZoneName,
    ) -> Result<Vec<u8>, String> {
        let kind = kind_of(&self.zone, to)?;
        if self.fabric.zone(to).is_none() {
            return Err(format!("`fabric.toml` has no zone `{to}`"));
        }
        let (_, terms) = flow_terms(&self.dir, &self.zone, &self.zone, to)?;
        let body = tianping_idp::export_update(
            store,
            kind,
            &self.zone,
            to,
            since,
            &terms,
            SystemClock.now(),
        )
        .map_err(|e| e.to_string())?;
        let (cert, key) = self.dir.node(&self.zone, Component::Idp);
        let key_pem = std::fs::read_to_string(&key)
            .map_err(|e| format!("reading the IdP's node key `{}`: {e}", key.display()))?;
        let signer = tianping_audit::signer_from_pem(&key_pem).map_err(|e| e.to_string())?;
        let chain_pem = std::fs::read(&cert).map_err(|e| {
            format!(
                "reading the IdP's node certificate `{}`: {e}",
                cert.display()
            )
        })?;
        let chain: Vec<Vec<u8>> = tianping_certs::certs_from_pem(&chain_pem)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|c| c.to_vec())
            .collect();
        body.sign(&chain, &signer).map_err(|e| e.to_string())
    }

    /// Applies an update in this zone (the flow's terms from this zone's policy copy, the
    /// signer checked against this zone's trust bundle).
    pub(crate) fn apply(&self, store: &dyn Store, bytes: &[u8]) -> Result<Applied, ApplyError> {
        let refused = |e: String| ApplyError::Refused(UpdateRefusal::WrongZone(e));
        let update = DirectoryUpdate::decode(bytes)?;
        let b = &update.body;
        if b.to != self.zone {
            return Err(refused(format!(
                "the update is for zone `{}`, this is `{}`",
                b.to, self.zone
            )));
        }
        let kind = kind_of(&b.source, &b.to).map_err(refused)?;
        if kind != b.kind {
            return Err(refused(format!(
                "a {} update from `{}` to `{}`",
                b.kind.as_str(),
                b.source,
                b.to
            )));
        }
        let (_, terms) = flow_terms(&self.dir, &self.zone, &b.source, &self.zone)
            .map_err(|e| ApplyError::Refused(UpdateRefusal::Disallowed(e)))?;
        let signers = ZoneSigners::load(&self.dir, &self.fabric, &self.zone)
            .map_err(|e| ApplyError::Store(tianping_idp::IdpError::Store(e.to_string())))?;
        let expect = Expect {
            kind,
            source: &b.source,
            to: &self.zone,
            terms: &terms,
            signers: &signers,
            last_applied: None,
        };
        tianping_idp::apply_update(store, bytes, &expect, SystemClock.now(), &OsRandom::new())
    }

    /// The audit events of an apply: the update applied or refused (naming the check), then
    /// each session it ended.
    /// The events of an apply by `actor` (the caller on the control socket; `None` for the
    /// command on a stopped IdP's store: the operator's login name).
    pub(crate) fn audit_events(
        &self,
        bytes: &[u8],
        result: &Result<Applied, ApplyError>,
        actor: Option<&str>,
    ) -> Vec<tianping_audit::Event> {
        let now = SystemClock.now();
        let source = DirectoryUpdate::decode(bytes)
            .map(|u| u.body.source.to_string())
            .unwrap_or_default();
        let mut e = tianping_audit::Event::new(now, "idp.directory.apply");
        e.zone = self.zone.to_string();
        e.component = "idp".into();
        e.actor = actor.map_or_else(|| std::env::var("USER").unwrap_or_default(), str::to_owned);
        e.object = format!("directory-update from {source}");
        let mut out = Vec::new();
        match result {
            Ok(a) => {
                e.outcome = "ok".into();
                e.reason = format!(
                    "versions {}..={}: {} changed, {} unchanged, {} sessions ended",
                    a.since.saturating_add(1),
                    a.until,
                    a.changed.len(),
                    a.unchanged,
                    a.ended.len()
                );
                for s in &a.ended {
                    let mut l = tianping_audit::Event::new(now, "session.logout");
                    l.zone = self.zone.to_string();
                    l.component = "idp".into();
                    l.object = format!("session:{}", s.handle);
                    l.reason = format!(
                        "directory update from {source} for {}",
                        s.sub.as_ref().map(ToString::to_string).unwrap_or_default()
                    );
                    l.outcome = "ok".into();
                    out.push(l);
                }
            }
            Err(err) => {
                e.outcome = "refused".into();
                e.reason = err.to_string();
            }
        }
        out.insert(0, e);
        out
    }
}

fn applied_json(a: &Applied) -> Value {
    json!({
        "since": a.since,
        "until": a.until,
        "changed": a.changed,
        "unchanged": a.unchanged,
        "sessions_ended": a.ended.len(),
    })
}

/// The control socket's directory replication routes: `POST /directory/apply` (and
/// `/idp/v1/directory-update`, where the exchange's receiver delivers) with the update as the
/// body, and `POST /directory/export` with `{"since": V, "to": "zone"}`, answered with the
/// update. Returns the status, content type and body.
pub(crate) fn handle(
    r: &Replicator,
    store: &dyn Store,
    audit: &tianping_audit::AuditLog,
    path: &str,
    body: &[u8],
    actor: Option<&str>,
) -> (u16, &'static str, Vec<u8>) {
    let error = |status: u16, e: String| {
        (
            status,
            "application/json",
            json!({ "error": e }).to_string().into_bytes(),
        )
    };
    if path == "/directory/export" {
        let ask: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return error(400, format!("not a JSON body: {e}")),
        };
        let since = ask.get("since").and_then(Value::as_u64);
        let to = ask
            .get("to")
            .and_then(Value::as_str)
            .and_then(|z| z.parse::<ZoneName>().ok());
        let (Some(since), Some(to)) = (since, to) else {
            return error(
                400,
                "the body must be {\"since\": VERSION, \"to\": \"zone\"}".into(),
            );
        };
        return match r.export(store, since, &to) {
            Ok(bytes) => (200, "application/octet-stream", bytes),
            Err(e) => error(422, e),
        };
    }
    let result = r.apply(store, body);
    for e in r.audit_events(body, &result, actor) {
        if let Err(err) = audit.append(&e) {
            return error(500, format!("audit: {err}"));
        }
    }
    match result {
        Ok(a) => (
            200,
            "application/json",
            applied_json(&a).to_string().into_bytes(),
        ),
        // A delivery by the zone's receiver that cannot be applied (a gap, a replay, a forgery) is
        // taken, audited above and answered as not applied: the same bytes delivered again
        // cannot apply, and a delivery never taken would hold up every one queued behind it.
        Err(ApplyError::Refused(e)) if path == "/idp/v1/directory-update" => (
            200,
            "application/json",
            json!({ "applied": false, "reason": e.to_string() })
                .to_string()
                .into_bytes(),
        ),
        Err(ApplyError::Refused(e)) => error(422, e.to_string()),
        Err(ApplyError::Store(e)) => error(500, e.to_string()),
    }
}

/// A request to the running IdP's control socket: `None` when it is not running.
fn live_request(
    socket: &Path,
    target: &str,
    content_type: &str,
    body: Vec<u8>,
) -> miette::Result<Option<(u16, Vec<u8>)>> {
    if super::control::Live::find(socket)?.is_none() {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let mut request = http::Request::builder()
        .method("POST")
        .uri(target)
        .header(http::header::CONTENT_TYPE, content_type);
    if let Some(token) = super::control::admin_token(socket) {
        request = request.header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.expose()),
        );
    }
    let request = request
        .body(tianping_net::ControlBody::bytes(body))
        .into_diagnostic()?;
    let answer: Result<(u16, Vec<u8>), String> = rt.block_on(async {
        let resp = tianping_net::control_send(socket, request, tianping_net::CONTROL_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp.into_body().bytes().await.map_err(|e| e.to_string())?;
        Ok((status, body.to_vec()))
    });
    answer
        .map(Some)
        .map_err(|e| miette!("asking the IdP at `{}`: {e}", socket.display()))
}

fn said(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

pub(crate) fn run(
    dir: &DataDir,
    fabric: &Fabric,
    p: &Paths,
    cmd: DirectoryCmd,
) -> miette::Result<ExitCode> {
    let r = Replicator::new(dir, fabric, &p.zone);
    match cmd {
        DirectoryCmd::Export(a) => {
            let ask = json!({ "since": a.since, "to": a.to.as_str() }).to_string();
            let bytes = match live_request(
                &p.socket,
                "/directory/export",
                "application/json",
                ask.into_bytes(),
            )? {
                Some((200, b)) => b,
                Some((status, b)) => {
                    return Err(miette!("the IdP answered {status}: {}", said(&b)));
                }
                None => {
                    p.require_initialised()?;
                    let store = p.open_store()?;
                    r.export(&store, a.since, &a.to)
                        .map_err(|e| miette!("{e}"))?
                }
            };
            let u = DirectoryUpdate::decode(&bytes).map_err(|e| miette!("{e}"))?;
            match &a.out {
                Some(path) => {
                    std::fs::write(path, &bytes)
                        .into_diagnostic()
                        .wrap_err_with(|| format!("writing `{}`", path.display()))?;
                    eprintln!(
                        "{} update for `{}`: versions {}..={}, {} records, written to `{}`",
                        u.body.kind.as_str(),
                        u.body.to,
                        u.body.since.saturating_add(1),
                        u.body.until,
                        u.body.records.len(),
                        path.display()
                    );
                }
                None => {
                    use std::io::Write as _;
                    std::io::stdout().write_all(&bytes).into_diagnostic()?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DirectoryCmd::Apply(a) => {
            let bytes = read_update(&a.file)?;
            let answer = match live_request(
                &p.socket,
                "/directory/apply",
                "application/octet-stream",
                bytes.clone(),
            )? {
                Some((200, b)) => serde_json::from_slice::<Value>(&b).into_diagnostic()?,
                Some((status, b)) => {
                    return Err(miette!(
                        "the update was refused ({status}): {}; nothing changed",
                        said(&b)
                    ));
                }
                None => {
                    p.require_initialised()?;
                    let store = p.open_store()?;
                    let result = r.apply(&store, &bytes);
                    let log = tianping_audit::AuditLog::open(&p.audit)
                        .into_diagnostic()
                        .wrap_err_with(|| {
                            format!("opening the IdP's audit log `{}`", p.audit.display())
                        })?;
                    for e in r.audit_events(&bytes, &result, None) {
                        log.append(&e).into_diagnostic()?;
                    }
                    match result {
                        Ok(a) => applied_json(&a),
                        Err(ApplyError::Refused(e)) => {
                            return Err(miette!("the update was refused: {e}; nothing changed"));
                        }
                        Err(ApplyError::Store(e)) => return Err(miette!("{e}")),
                    }
                }
            };
            let n = |k: &str| answer.get(k).and_then(Value::as_u64).unwrap_or(0);
            println!(
                "applied versions {}..={}: {} changed, {} unchanged, {} sessions ended",
                n("since").saturating_add(1),
                n("until"),
                answer
                    .get("changed")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len),
                n("unchanged"),
                n("sessions_ended"),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
