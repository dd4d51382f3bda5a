//! `tianping policy publish FILE`: a `secadmin` of `private` (the directory authority's zone,
//! which holds the authority's copy of the policy) puts a policy in force in every zone.
//!
//! In order, each step only after the one before it held:
//! 1. the file must pass `tianping policy check` with no error (its diagnostics shown), and
//!    must not unseal a zone the installed policy seals, nor leave out `private`;
//! 2. the caller must hold `secadmin`: the token `tianping login --zone private` keeps
//!    (`run/admin-private.token`) is shown to the private IdP's control socket
//!    (`POST /actions/policy-publish`), which verifies it (signature, audience, expiry,
//!    revocation), checks the role, and audits `policy.publish` under the person's subject id
//!    with the hashes of the policy before and after, durably, before anything changes;
//! 3. the authority's copy (`DIR/policy.tp`) and `private`'s own (`zones/private/policy.tp`)
//!    are replaced, each atomically (a temporary file fsynced and renamed);
//! 4. the policy is submitted, as a `policy-update` transfer, on every flow of the policy out of
//!    `private` that carries that kind (the default policy's `updates-to-<zone>`, `classified`
//!    included); each zone's receiver installs it on delivery (checked again there) and puts
//!    it in force for its own decisions, its other components as they next load it.
//!
//! It prints the policy's hash, who published it, and each zone's transfer id; a zone that no
//! flow reaches is named. The transfers are audited by the private sender (submitter: the
//! private gateway, a machine, for the administrator the IdP's event names).

use std::path::Path;
use std::process::ExitCode;

use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_core::{Component, DataDir, ZoneName};

/// The zone whose administrators publish, and whose copy is the authority's.
const AUTHORITY: &str = "private";

/// Who the private IdP says the token's holder is.
struct Publisher {
    subject: String,
    roles: Vec<String>,
}

/// The holder of `run/admin-private.token`, as the running private IdP verifies it, allowed to
/// publish (`secadmin`) and the publication audited there under their subject id, with the
/// policy in force before and the one published.
fn authorise(
    dir: &DataDir,
    zone: &ZoneName,
    before: &str,
    after: &str,
) -> miette::Result<Publisher> {
    let socket = dir.socket(zone, Component::Idp);
    let path = dir.admin_token(zone);
    let token = std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            miette!(
                "no administrator token in `{}`: run `tianping login --zone {zone}` as a \
                 `secadmin` first; nothing was published",
                path.display()
            )
        })?;
    let rt = super::super::exchange::runtime()?;
    let req = http::Request::builder()
        .method("POST")
        .uri("/actions/policy-publish")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(tianping_net::ControlBody::bytes(
            serde_json::json!({ "before": before, "after": after }).to_string(),
        ))
        .into_diagnostic()?;
    let (status, body) = rt.block_on(async {
        let resp = tianping_net::control_send(&socket, req, tianping_net::CONTROL_TIMEOUT)
            .await
            .map_err(|e| {
                miette!(
                    "the IdP of `{zone}` does not answer at `{}`: {e}",
                    socket.display()
                )
            })?;
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        miette::Result::<_>::Ok((status, body))
    })?;
    if !status.is_success() {
        return Err(miette!(
            "the IdP of `{zone}` refused the publication ({status}): {}; nothing was published",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).into_diagnostic()?;
    let subject = v
        .get("subject")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let roles = v
        .get("roles")
        .and_then(serde_json::Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(serde_json::Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Publisher { subject, roles })
}

/// Replaces `path` with `bytes` whole or not at all, durably.
fn replace(path: &Path, bytes: &[u8]) -> miette::Result<()> {
    tianping_core::write_atomic(
        path,
        bytes,
        tianping_core::FileMode::Public,
        tianping_core::Existing::Replace,
    )
    .into_diagnostic()
}

pub(crate) fn publish(data: &Path, file: &Path) -> miette::Result<ExitCode> {
    let dir = DataDir::new(data);
    let authority: ZoneName = AUTHORITY.parse().into_diagnostic()?;
    let bytes = std::fs::read(file)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", file.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| miette!("`{}` is not UTF-8; nothing was published", file.display()))?;
    let checked = tianping_policies::check(&file.display().to_string(), text);
    if checked.errors().count() > 0 {
        eprint!("{}", checked.render());
        return Err(miette!(
            "`{}` does not pass `tianping policy check`; nothing was published",
            file.display()
        ));
    }
    let installed_path = dir.zone_policy(&authority);
    let installed_text = std::fs::read_to_string(&installed_path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", installed_path.display()))?;
    let installed =
        tianping_policies::check(&installed_path.display().to_string(), &installed_text)
            .into_policy()
            .ok_or_else(|| {
                miette!(
                    "the installed `{}` does not check",
                    installed_path.display()
                )
            })?;
    let policy = tianping_crossdomain::check_policy_update(
        &authority,
        &installed,
        &file.display().to_string(),
        &bytes,
    )
    .map_err(|e| {
        miette!(
            "`{}` cannot be published: {e}; nothing was published",
            file.display()
        )
    })?;

    let who = authorise(
        &dir,
        &authority,
        &installed.hash().to_string(),
        &policy.hash().to_string(),
    )?;
    if !who.roles.iter().any(|r| r == "secadmin") {
        return Err(miette!(
            "role `secadmin` required: `{}` holds {}; nothing was published",
            who.subject,
            if who.roles.is_empty() {
                "no role".to_owned()
            } else {
                who.roles.join(", ")
            }
        ));
    }

    replace(&dir.policy(), &bytes)?;
    replace(&installed_path, &bytes)?;
    println!(
        "policy {} published by `{}` (secadmin): in force in `{AUTHORITY}`",
        policy.hash(),
        who.subject
    );
    let mut reached = std::collections::BTreeSet::new();
    for flow in policy
        .flows()
        .filter(|f| f.from() == &authority && f.kinds().any(|(k, _)| k.as_str() == "policy-update"))
    {
        let to = flow.to().clone();
        let id = super::super::exchange::submit_as_machine(
            &dir,
            &authority,
            flow.name(),
            "policy-update",
            &[],
            file,
        )
        .wrap_err_with(|| {
            format!(
                "the policy is in force in `{AUTHORITY}`, but its transfer to `{to}` on `{}` failed",
                flow.name()
            )
        })?;
        println!("sent to `{to}` on `{}`: transfer {id}", flow.name());
        reached.insert(to);
    }
    for z in policy
        .zones()
        .filter(|z| *z != &authority && !reached.contains(*z))
    {
        println!("not sent to `{z}`: no flow out of `{AUTHORITY}` carries `policy-update` there");
    }
    Ok(ExitCode::SUCCESS)
}
