//! `idp-bench serve-tianping DIR FAMILIES THREADS`: tianping's provider as a process of its own,
//! as the zone would run it: `tianping_idp::Idp` over `tianping_net::serve_tls`, the sled store
//! and the durable audit log under DIR, the system clock and the OS's randomness, one
//! multi-threaded tokio runtime of THREADS workers.
//!
//! Before listening it starts FAMILIES refresh-token families for the bench client (as sign-ins
//! would leave them) and writes their tokens, one a line, to `DIR/tp-refresh.txt`; then it
//! listens on 127.0.0.1 port 0 and writes the address to `DIR/tp.addr`. It stops when its
//! standard input closes (the runner holds it open).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tianping_audit::AuditLog;
use tianping_certs::{ClientAuth, ServerTlsBuilder};
use tianping_core::{Acr, Algorithm, Amr, Clearance, Clock as _, RingSigner, Role, SystemClock};
use tianping_idp::{
    Client, ClientAuthMethod, GrantPolicy, GrantType, Grants, Identity, Idp, IdpParts, KeySet,
    OsRandom, SessionPolicy, SledStore, Store, TokenIssuer,
};
use tianping_net::{HostSet, ServerOptions, serve_tls};
use tokio::io::AsyncReadExt as _;

use crate::{CLIENT_ID, CLIENT_SECRET, HOST, Res, SCOPE};

/// The issuer of tianping's tokens in the benchmark.
pub const ISSUER: &str = "https://idp.private.tianping.localhost";

fn bench_client() -> Client {
    Client {
        id: CLIENT_ID.into(),
        secret_sha256: Some(Client::hash_secret(CLIENT_SECRET)),
        auth_method: ClientAuthMethod::ClientSecretBasic,
        redirect_uris: vec!["https://case.example/cb".into()],
        post_logout_redirect_uris: vec![],
        grants: vec![
            GrantType::AuthorizationCode,
            GrantType::ClientCredentials,
            GrantType::RefreshToken,
        ],
        native_loopback: false,
        extra_scopes: vec![SCOPE.into()],
    }
}

/// Runs the server; returns when standard input closes.
pub fn main(args: &[String]) -> Res<()> {
    let [dir, families, threads] = args else {
        return Err("usage: idp-bench serve-tianping DIR FAMILIES THREADS".into());
    };
    let dir = PathBuf::from(dir);
    let families: usize = families.parse()?;
    let threads: usize = threads.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(serve(&dir, families))
}

async fn serve(dir: &Path, families: usize) -> Res<()> {
    let tls = ServerTlsBuilder::new(dir.join("tls.pem"), dir.join("tls.key"))
        .client_auth(ClientAuth::None, dir.join("ca.pem"), vec![])
        .build()?;
    let clock = Arc::new(SystemClock);
    let store = Arc::new(SledStore::open(&dir.join("tp-store"))?);
    let rng = Arc::new(OsRandom::new());
    let grants = GrantPolicy::default();
    let mut tokens = String::new();
    for _ in 0..families {
        let identity = Identity {
            sub: "judge-0001".parse()?,
            court: Some("bj.01.03".parse()?),
            roles: vec![Role::Judge],
            clearance: Clearance::Secret,
            acr: Acr::Otp,
            amr: vec![Amr::Pwd, Amr::Otp],
            zone: "private".parse()?,
            auth_time: clock.now(),
            device: None,
        };
        let (token, _) = Grants::new(&*store, grants).start_family(
            CLIENT_ID,
            identity,
            vec![SCOPE.into()],
            clock.now(),
            &*rng,
        )?;
        tokens.push_str(&token);
        tokens.push('\n');
    }
    std::fs::write(dir.join("tp-refresh.txt"), tokens)?;
    let audit = Arc::new(AuditLog::create(&dir.join("tp-audit"), "idp.private")?);
    let signer = Arc::new(RingSigner::generate(Algorithm::Es256)?.0);
    let idp = Idp::new(IdpParts {
        issuer: TokenIssuer::new(ISSUER, KeySet::new(signer)),
        audience: "tianping".into(),
        store: store as Arc<dyn Store>,
        clients: vec![bench_client()],
        audit,
        zone: "private".into(),
        clock,
        rng,
        grants,
        sessions: SessionPolicy::default(),
    });
    let mut options = ServerOptions::new(HostSet::new([HOST]));
    options.http3 = false;
    let server = serve_tls("127.0.0.1:0".parse()?, Arc::new(tls), options, idp).await?;
    let tmp = dir.join("tp.addr.tmp");
    std::fs::write(&tmp, format!("{}\n", server.local_addr()))?;
    std::fs::rename(&tmp, dir.join("tp.addr"))?;
    // Until the runner closes our standard input.
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.unwrap_or(0) > 0 {}
    server.shutdown().await;
    Ok(())
}
