//! Real TLS handshakes over loopback between a rustls client and a server built by
//! `ServerTlsBuilder`: valid, revoked, expired, other-zone and missing client certificates,
//! the identity the server reads from its peer, protocol versions, and reloading.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::ServerName;
use tempfile::TempDir;
use tianping_certs::{
    CertError, CertKind, ClientAuth, CourtIdentity, KeyAlg, LeafRequest, Pki, PkiInit,
    ReloadableServerConfig, RevokeReason, ServerTlsBuilder, client_config, identity_of,
};
use tianping_core::{UnixTime, ZoneName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const HOST: &str = "gw.private.tianping.localhost";

fn now() -> UnixTime {
    UnixTime::from_system_time(SystemTime::now())
}

fn zone(z: &str) -> ZoneName {
    z.parse().unwrap()
}

struct Env {
    _tmp: TempDir,
    dir: PathBuf,
    pki: Pki,
}

fn env() -> Env {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().to_path_buf();
    let pki = Pki::init(&dir.join("pki"), &PkiInit::default(), now()).unwrap();
    Env {
        _tmp: tmp,
        dir,
        pki,
    }
}

impl Env {
    fn issue(&self, z: &str, req: &LeafRequest, at: UnixTime, name: &str) -> (PathBuf, PathBuf) {
        let issued = self.pki.issue(&zone(z), req, at).unwrap();
        Pki::write_issued(&issued, &self.dir.join(name)).unwrap()
    }

    fn server_cert(&self, name: &str) -> (PathBuf, PathBuf) {
        self.server_cert_with(name, KeyAlg::EcP256)
    }

    fn server_cert_with(&self, name: &str, key: KeyAlg) -> (PathBuf, PathBuf) {
        let mut req = LeafRequest::new(CertKind::Server, name);
        req.key = key;
        req.dns = vec![HOST.into()];
        req.ips = vec!["127.0.0.1".parse().unwrap()];
        self.issue("private", &req, now(), name)
    }

    fn person(&self, z: &str, at: UnixTime, days: u32, name: &str) -> (PathBuf, PathBuf) {
        let mut req = LeafRequest::new(CertKind::Client, "Clerk Wang");
        req.subject = Some("u-2002".parse().unwrap());
        req.court = Some("sh.02".parse().unwrap());
        req.roles = vec!["clerk".parse().unwrap()];
        req.days = days;
        self.issue(z, &req, at, name)
    }

    fn server(&self, mode: ClientAuth, cert: &(PathBuf, PathBuf)) -> ReloadableServerConfig {
        ServerTlsBuilder::new(&cert.0, &cert.1)
            .client_auth(
                mode,
                self.pki.trust_pem_path(),
                vec![
                    self.pki.crl_path(&zone("private")),
                    self.pki.crl_path(&zone("internet")),
                ],
            )
            .client_zone(zone("private"))
            .alpn(vec![b"h2".to_vec()])
            .build()
            .unwrap()
    }

    fn client(&self, cert: Option<&(PathBuf, PathBuf)>) -> rustls::ClientConfig {
        let trust = std::fs::read(self.pki.trust_pem_path()).unwrap();
        let files = cert.map(|(c, k)| (std::fs::read(c).unwrap(), std::fs::read(k).unwrap()));
        client_config(
            &trust,
            files.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        )
        .unwrap()
    }
}

/// What each side saw of one connection.
struct Outcome {
    server: Result<Option<CourtIdentity>, String>,
    client_saw: Option<[u8; 32]>,
    /// The client's handshake: full or resumed.
    kind: Option<rustls::HandshakeKind>,
}

async fn connect(server: &ReloadableServerConfig, client: rustls::ClientConfig) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server.current());
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match acceptor.accept(tcp).await {
            Ok(mut tls) => {
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| identity_of(c).unwrap());
                tls.write_all(b"ok").await.unwrap();
                tls.shutdown().await.unwrap();
                Ok(peer)
            }
            Err(e) => Err(e.to_string()),
        }
    });
    let connector = TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut kind = None;
    let client_saw = match connector
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
    {
        Ok(mut tls) => {
            kind = tls.get_ref().1.handshake_kind();
            let fp = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| tianping_certs::fingerprint(c));
            let mut buf = Vec::new();
            // The server may refuse after the client's last flight; then the read fails.
            let _ = tls.read_to_end(&mut buf).await;
            fp
        }
        Err(_) => None,
    };
    Outcome {
        server: tokio::time::timeout(Duration::from_secs(20), server_task)
            .await
            .unwrap()
            .unwrap(),
        client_saw,
        kind,
    }
}

#[tokio::test]
async fn valid_client_certificate_is_accepted_and_identified() {
    let e = env();
    let srv = e.server(ClientAuth::Required, &e.server_cert("gw"));
    let cert = e.person("private", now(), 30, "clerk");
    let out = connect(&srv, e.client(Some(&cert))).await;
    let id = out
        .server
        .unwrap()
        .expect("the client presented a certificate");
    assert_eq!(id.subject.unwrap().as_str(), "u-2002");
    assert_eq!(id.court.unwrap().as_str(), "sh.02");
    assert_eq!(id.roles[0].as_str(), "clerk");
    assert_eq!(id.zone.as_str(), "private");
    let pem = std::fs::read(&cert.0).unwrap();
    let leaf = tianping_certs::certs_from_pem(&pem).unwrap();
    assert_eq!(id.fingerprint, tianping_certs::fingerprint(&leaf[0]));
    assert!(out.client_saw.is_some());
    let cfg = srv.current();
    assert_eq!(cfg.max_early_data_size, 0);
    assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec()]);
}

#[tokio::test]
async fn revoked_expired_other_zone_and_missing_are_refused() {
    let e = env();
    let server_cert = e.server_cert("gw");
    let revoked = e.person("private", now(), 30, "revoked");
    e.pki
        .revoke(
            &std::fs::read(&revoked.0).unwrap(),
            RevokeReason::KeyCompromise,
            now(),
        )
        .unwrap();
    // Built after the revocation, so it reads the new CRL.
    let srv = e.server(ClientAuth::Required, &server_cert);
    let ten_days_ago = UnixTime::from_secs(now().as_secs() - 10 * 86_400);
    let expired = e.person("private", ten_days_ago, 1, "expired");
    let other = e.person("internet", now(), 30, "other");
    for (what, cert) in [
        ("revoked", &revoked),
        ("expired", &expired),
        ("other zone", &other),
    ] {
        let out = connect(&srv, e.client(Some(cert))).await;
        let err = out.server.expect_err(what);
        let expect = match what {
            "revoked" => "revoked",
            "expired" => "expired",
            _ => "unknownissuer",
        };
        assert!(err.to_lowercase().contains(expect), "{what}: {err}");
    }
    let out = connect(&srv, e.client(None)).await;
    assert!(out.server.is_err(), "no certificate must be refused");

    // Optional: no certificate passes, a bad one still fails.
    let opt = e.server(ClientAuth::Optional, &server_cert);
    assert_eq!(connect(&opt, e.client(None)).await.server.unwrap(), None);
    assert!(
        connect(&opt, e.client(Some(&revoked)))
            .await
            .server
            .is_err()
    );
}

#[tokio::test]
async fn tls12_only_when_asked() {
    let e = env();
    let cert = e.server_cert("gw");
    let srv = ServerTlsBuilder::new(&cert.0, &cert.1).build().unwrap();
    let trust = std::fs::read(e.pki.trust_pem_path()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in tianping_certs::certs_from_pem(&trust).unwrap() {
        roots.add(c).unwrap();
    }
    let tls12_client = || {
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth()
    };
    assert!(connect(&srv, tls12_client()).await.server.is_err());
    let srv12 = ServerTlsBuilder::new(&cert.0, &cert.1)
        .tls12(true)
        .build()
        .unwrap();
    assert_eq!(connect(&srv12, tls12_client()).await.server.unwrap(), None);
}

#[test]
fn client_auth_without_trust_bundle_cannot_be_built() {
    let e = env();
    let cert = e.server_cert("gw");
    let err = ServerTlsBuilder::new(&cert.0, &cert.1)
        .client_auth(ClientAuth::Required, "", vec![])
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no trust bundle"), "{err}");
    let err = ServerTlsBuilder::new(&cert.0, &cert.1)
        .client_auth(ClientAuth::Optional, e.dir.join("missing.pem"), vec![])
        .build()
        .unwrap_err();
    assert!(matches!(err, CertError::Io { .. }), "{err}");
    let err = ServerTlsBuilder::new(e.dir.join("nope.pem"), &cert.1)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

fn replace_files(from: &(PathBuf, PathBuf), to: &(PathBuf, PathBuf)) {
    std::fs::copy(&from.0, &to.0).unwrap();
    std::fs::copy(&from.1, &to.1).unwrap();
}

fn leaf_fp(path: &Path) -> [u8; 32] {
    let pem = std::fs::read(path).unwrap();
    tianping_certs::fingerprint(&tianping_certs::certs_from_pem(&pem).unwrap()[0])
}

#[tokio::test]
async fn reload_swaps_the_certificate_and_keeps_the_old_on_error() {
    let e = env();
    let live = e.server_cert("live");
    // The next certificate has an Ed25519 key: rustls serves it as well.
    let next = e.server_cert_with("next", KeyAlg::Ed25519);
    let srv = ServerTlsBuilder::new(&live.0, &live.1).build().unwrap();
    let first = connect(&srv, e.client(None)).await.client_saw.unwrap();
    assert_eq!(first, leaf_fp(&live.0));

    replace_files(&next, &live);
    srv.reload().unwrap();
    let second = connect(&srv, e.client(None)).await.client_saw.unwrap();
    assert_eq!(second, leaf_fp(&next.0));
    assert_ne!(first, second);

    std::fs::write(&live.0, b"garbage").unwrap();
    assert!(srv.reload().is_err());
    let third = connect(&srv, e.client(None)).await.client_saw.unwrap();
    assert_eq!(third, second, "a failed reload keeps the old configuration");
}

/// A client's session store that counts the TLS 1.3 tickets it was given.
#[derive(Debug)]
struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group);
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value);
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name);
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.insert_tls13_ticket(name, value);
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// One TLS 1.3 session ticket after each handshake by default, with which the client resumes
/// its next connection; none when asked (every connection a full handshake), or more.
#[tokio::test]
async fn one_session_ticket_by_default_none_or_more_when_asked() {
    use rustls::HandshakeKind::{Full, Resumed};
    let e = env();
    let cert = e.server_cert("gw");
    for (tickets, given, second) in [
        (None, 1, Resumed),
        (Some(0), 0, Full),
        (Some(2), 2, Resumed),
    ] {
        let mut builder = ServerTlsBuilder::new(&cert.0, &cert.1);
        if let Some(n) = tickets {
            builder = builder.session_tickets(n);
        }
        let srv = builder.build().unwrap();
        let store = Arc::new(CountingStore {
            inner: rustls::client::ClientSessionMemoryCache::new(16),
            tickets: std::sync::atomic::AtomicUsize::new(0),
        });
        let mut client = e.client(None);
        client.resumption = rustls::client::Resumption::store(store.clone());
        let first = connect(&srv, client.clone()).await;
        assert_eq!(first.kind, Some(Full));
        assert_eq!(
            store.tickets.load(std::sync::atomic::Ordering::Relaxed),
            given,
            "tickets after one full handshake with {tickets:?}"
        );
        let next = connect(&srv, client).await;
        assert_eq!(next.kind, Some(second), "with {tickets:?}");
    }
}
