//! `tianping audit` on a live log presents the administrator's token of the log's zone
//! (`run/admin-<zone>.token`): the owner turns it into the caller, serves an auditor, records
//! the read as `audit.read`, and refuses the commands without a token (401) or with a
//! non-auditor's (403 naming the role).
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
mod live_owner;
use common::tianping;

use std::path::Path;
use std::sync::Arc;

use tianping_audit::{Access, AuditLog, Query, Reader, handle_request};
use tianping_certs::{CaCert, CertKind, KeyAlg, LeafRequest, identity_of};
use tianping_core::{SystemClock, UnixTime};
use tianping_net::testing::StaticVerifier;
use tianping_net::{Caller, ControlOptions, serve_control_with};

fn person(zone: &CaCert, subject: &str, role: &str) -> tianping_certs::CourtIdentity {
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let mut req = LeafRequest::new(CertKind::Client, subject);
    req.subject = Some(subject.parse().unwrap());
    req.court = Some("bj.01".parse().unwrap());
    req.roles = vec![role.parse().unwrap()];
    identity_of(&zone.issue(&req, now).unwrap().leaf_der).unwrap()
}

/// Serves `log` as its owning component would: the caller mapped to the audit service's reader.
async fn serve(log: Arc<AuditLog>, socket: &Path, zone: &CaCert) -> tianping_net::ControlHandle {
    let verifier = StaticVerifier::new()
        .bearer("token-of-auditor", person(zone, "a-0001", "auditor"))
        .bearer("token-of-sysadmin", person(zone, "s-0001", "sysadmin"));
    let handler = move |req: http::Request<tianping_net::Body>| {
        let log = log.clone();
        async move {
            let reader = req.extensions().get::<Caller>().and_then(|c| {
                let id = c.identity.as_ref()?;
                let roles: Vec<&str> = id.roles.iter().map(|r| r.as_str()).collect();
                let subject = id
                    .subject
                    .as_ref()
                    .map_or(id.name.clone(), |s| s.to_string());
                Some(Reader::person(subject, &roles, id.zone.as_str()))
            });
            let method = req.method().as_str().to_owned();
            let target = req.uri().path_and_query().map(|p| p.as_str().to_owned());
            let target = target.unwrap_or_default();
            let r = tokio::task::spawn_blocking(move || {
                let access = Access {
                    zone: "private",
                    reader: reader.as_ref(),
                    clock: &SystemClock,
                    record_to: Some(&log),
                };
                handle_request(&log, &access, &method, &target, &[])
            })
            .await
            .unwrap();
            live_owner::audit_answer(r)
        }
    };
    // Every path needs a credential: the owner's status too.
    let options = ControlOptions::new(&[]).verified(Arc::new(verifier), Vec::<String>::new());
    serve_control_with(socket, options, handler).await.unwrap()
}

#[test]
fn the_cli_presents_the_zones_admin_token_to_a_live_log() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let root = CaCert::new_root("Court", KeyAlg::EcP256, now).unwrap();
    let zone = root
        .new_zone(&"private".parse().unwrap(), "Court", KeyAlg::EcP256, now)
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let dir = data.join("zones/private/audit-store/audit");
    let run_dir = data.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let event =
        "{\"time\":1700000000000,\"action\":\"sign-in\",\"actor\":\"u-1\",\"outcome\":\"allow\"}\n";
    let appended = tianping(&["audit", "append", "--log", dir.to_str().unwrap()], event);
    assert!(appended.status.success());

    let log = Arc::new(AuditLog::open(&dir).unwrap());
    let socket = run_dir.join("private-audit-store.sock");
    let ctl = rt.block_on(serve(log.clone(), &socket, &zone));
    tianping_audit::record_owner(&dir, &socket).unwrap();
    let search = || {
        let out = tianping(&["audit", "search", "--log", dir.to_str().unwrap()], "");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let token = run_dir.join("admin-private.token");

    // No token: the owner cannot tell who asks.
    let (code, err) = search();
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("status 401: no credential presented"), "{err}");
    // A system administrator is known, but is not served audit data.
    std::fs::write(&token, "token-of-sysadmin\n").unwrap();
    let (code, err) = search();
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("auditor"), "{err}");
    // The auditor is served, and the read is recorded under their id.
    std::fs::write(&token, "token-of-auditor\n").unwrap();
    let (code, err) = search();
    assert_eq!(code, Some(0), "{err}");
    let query = Query {
        action: Some("audit.read".into()),
        ..Query::default()
    };
    let reads: Vec<_> = log.search(&query).map(|r| r.unwrap().event).collect();
    assert!(
        reads
            .iter()
            .any(|e| e.actor == "a-0001" && e.outcome == "allow"),
        "{reads:?}"
    );
    assert!(
        reads
            .iter()
            .any(|e| e.actor == "s-0001" && e.outcome == "deny"),
        "the refused read is recorded too: {reads:?}"
    );
    rt.block_on(ctl.shutdown());
}
