//! Where a grant's time goes: the pieces of tianping's token endpoint measured alone, in this
//! process, the way the server calls them, each for a fixed window. Each figure is a ceiling the
//! piece puts on the grants per second (the others left out):
//!
//! - issuing an access token (`TokenIssuer::access_token`: claims, JSON, an ES256 signature) on
//!   one thread;
//! - the durable audit append of every grant (`AuditLog::append_prompt` and awaiting its
//!   `durable()`, as the server does, by as many concurrent tasks as the load has connections,
//!   on a runtime of the bench's workers);
//! - the refresh rotation in the sled store (`Grants::rotate_refresh_deferred`, which reads the
//!   family once and records the access token in the same compare-and-swap, then awaiting
//!   `Store::flushed`, shared by concurrent rotations, as the server calls them), by as many
//!   concurrent tasks, each over its own families.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tianping_audit::{AuditLog, Event};
use tianping_core::{
    Acr, Algorithm, Amr, Clearance, Clock as _, RingSigner, Role, SystemClock, UnixTime,
};
use tianping_idp::{
    GrantPolicy, Grants, Identity, KeySet, OsRandom, SledStore, Store as _, TokenIssuer,
};

use crate::{CLIENT_ID, Res, SCOPE};

/// The ceilings, per second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parts {
    /// Access tokens issued per second on one thread.
    pub issue_one_thread: f64,
    /// Durable audit appends per second.
    pub audit: f64,
    /// Refresh rotations (one store update, its flush shared) per second.
    pub refresh_store: f64,
}

fn per_sec(n: u64, secs: f64) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX)) / secs.max(1e-9)
}

fn identity(now: UnixTime) -> Res<Identity> {
    Ok(Identity {
        sub: "judge-0001".parse()?,
        court: Some("bj.01.03".parse()?),
        roles: vec![Role::Judge],
        clearance: Clearance::Secret,
        acr: Acr::Otp,
        amr: vec![Amr::Pwd, Amr::Otp],
        zone: "private".parse()?,
        auth_time: now,
        device: None,
    })
}

/// Measures the three pieces, each for `window`, with `tasks` concurrent tasks where the server
/// would have as many, on a runtime of `threads` workers; `dir` is an empty scratch folder.
pub fn measure(dir: &Path, window: Duration, tasks: usize, threads: usize) -> Res<Parts> {
    let rng = OsRandom::new();
    let signer = Arc::new(RingSigner::generate(Algorithm::Es256)?.0);
    let issuer = TokenIssuer::new(crate::serve::ISSUER, KeySet::new(signer));
    let now = SystemClock.now();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        issuer.access_token(None, CLIENT_ID, "tianping", SCOPE, now, &rng)?;
        n += 1;
    }
    let issue_one_thread = per_sec(n, start.elapsed().as_secs_f64());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    let audit = Arc::new(AuditLog::create(&dir.join("audit"), "idp.private")?);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + window;
    rt.block_on(async {
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (audit, done) = (Arc::clone(&audit), Arc::clone(&done));
            handles.push(tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < end {
                    let mut e = Event::new(SystemClock.now(), "token.client_credentials");
                    e.zone = "private".into();
                    e.component = "idp".into();
                    e.actor = CLIENT_ID.into();
                    e.object = format!("jti-{t}-{i}");
                    e.outcome = "ok".into();
                    i += 1;
                    let queued = audit.append_prompt(&e).map_err(|e| e.to_string())?;
                    queued.durable().await.map_err(|e| e.to_string())?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), String>(())
            }));
        }
        for h in handles {
            h.await??;
        }
        Res::Ok(())
    })?;
    let audit_rate = per_sec(done.load(Ordering::Relaxed), start.elapsed().as_secs_f64());

    let store = Arc::new(SledStore::open(&dir.join("store"))?);
    let policy = GrantPolicy::default();
    let per_task = 16usize;
    let mut chains: Vec<Vec<String>> = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let mut c = Vec::with_capacity(per_task);
        for _ in 0..per_task {
            let (token, _) = Grants::new(&*store, policy).start_family(
                CLIENT_ID,
                identity(now)?,
                vec![SCOPE.into()],
                now,
                &rng,
            )?;
            c.push(token);
        }
        chains.push(c);
    }
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + window;
    rt.block_on(async {
        let mut handles = Vec::new();
        for mut chain in chains {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            handles.push(tokio::spawn(async move {
                let rng = OsRandom::new();
                let signer = Arc::new(
                    RingSigner::generate(Algorithm::Es256)
                        .map_err(|e| e.to_string())?
                        .0,
                );
                let issuer = TokenIssuer::new(crate::serve::ISSUER, KeySet::new(signer));
                let mut k = 0usize;
                while Instant::now() < end {
                    let slot = k % chain.len().max(1);
                    k += 1;
                    let Some(token) = chain.get_mut(slot) else {
                        return Err("no chain".to_owned());
                    };
                    let grants = Grants::new(&*store, policy);
                    let now = SystemClock.now();
                    let mut issue = |family: &tianping_idp::RefreshFamily| {
                        issuer.access_token(
                            Some(&family.identity),
                            CLIENT_ID,
                            "tianping",
                            SCOPE,
                            now,
                            &rng,
                        )
                    };
                    let (_, next, _) = grants
                        .rotate_refresh_deferred(token, CLIENT_ID, now, &rng, &mut issue)
                        .map_err(|e| e.to_string())?;
                    store.flushed().await.map_err(|e| e.to_string())?;
                    *token = next;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }));
        }
        for h in handles {
            h.await??;
        }
        Res::Ok(())
    })?;
    let refresh_store = per_sec(done.load(Ordering::Relaxed), start.elapsed().as_secs_f64());
    Ok(Parts {
        issue_one_thread,
        audit: audit_rate,
        refresh_store,
    })
}
