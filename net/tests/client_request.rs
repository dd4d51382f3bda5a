//! `ClientAuth::Request`: the handshake accepts whatever chain is presented, the handler gets
//! the chain, and `ConnInfo::identity` is filled only for one that verified; a revoked, an
//! expired and another zone's chain arrive as "presented, not verified" with the precise reason.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use common::*;
use tianping_certs::{
    CertError, CertKind, ClientAuth, KeyAlg, LeafRequest, Revocation, RevokeReason,
    ServerTlsBuilder,
};
use tianping_core::UnixTime;
use tianping_net::{Body, ConnInfo, ResponseBody, full, serve_tls};

/// Names what the connection proved: the identity, or why the presented chain did not verify.
async fn page(req: http::Request<Body>) -> http::Response<ResponseBody> {
    let info = req.extensions().get::<ConnInfo>().cloned().unwrap();
    let presented = info.presented_chain.as_ref().map_or(0, |c| c.len());
    let outcome = match (&info.identity, info.unverified.as_deref()) {
        (Some(id), None) => format!("verified {}", id.name),
        (None, Some(CertError::Revoked)) => "not verified: revoked".into(),
        (None, Some(CertError::Expired { .. })) => "not verified: expired".into(),
        (None, Some(CertError::UnknownIssuer(why))) => format!("not verified: issuer{why}"),
        (None, Some(e)) => format!("not verified: {e}"),
        (None, None) => "anonymous".into(),
        (Some(_), Some(_)) => "both".into(),
    };
    http::Response::new(full(format!("{outcome}; presented {presented}")))
}

async fn get(pki: &Pki, addr: std::net::SocketAddr, cert: Option<(&str, &str)>) -> String {
    let cert = cert.map(|(c, k)| (c.as_bytes(), k.as_bytes()));
    let tls = tianping_certs::client_config(pki.trust_pem.as_bytes(), cert).unwrap();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .resolve(HOST, addr)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://{HOST}:{}/", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

#[tokio::test]
async fn presented_chains_reach_the_handler_verified_or_with_the_reason() {
    let pki = Pki::new();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let client = |name: &str, subject: &str, at: UnixTime, days: u32| {
        let mut req = LeafRequest::new(CertKind::Client, name);
        req.subject = Some(subject.parse().unwrap());
        req.court = Some("bj.01".parse().unwrap());
        req.days = days;
        (req, at)
    };
    let (req, at) = client("Clerk Revoked", "u-3001", now, 30);
    let revoked = pki.zone.issue(&req, at).unwrap();
    let past = UnixTime::from_secs(now.as_secs() - 30 * 86_400);
    let (req, at) = client("Clerk Expired", "u-3002", past, 1);
    let expired = pki.zone.issue(&req, at).unwrap();
    let other_zone = pki
        .root
        .new_zone(&"public".parse().unwrap(), "Court", KeyAlg::EcP256, now)
        .unwrap();
    let (req, at) = client("Clerk Public", "u-3003", now, 30);
    let foreign = other_zone.issue(&req, at).unwrap();

    let crl = pki.path("crl.pem");
    let entry = Revocation {
        serial: revoked.serial.clone(),
        at: i64::try_from(now.as_secs()).unwrap(),
        reason: RevokeReason::KeyCompromise,
    };
    std::fs::write(&crl, pki.zone.crl(&[entry], now, 7).unwrap()).unwrap();
    let tls = ServerTlsBuilder::new(pki.path("tls.pem"), pki.path("tls.key"))
        .client_auth(ClientAuth::Request, pki.path("trust.pem"), vec![crl])
        .client_zone("private".parse().unwrap())
        .build()
        .unwrap();
    let mut options = options();
    options.http3 = false;
    let server = serve_tls("127.0.0.1:0".parse().unwrap(), Arc::new(tls), options, page)
        .await
        .unwrap();
    let addr = server.local_addr();

    let valid = (pki.client_chain.as_str(), pki.client_key.as_str());
    assert_eq!(
        get(&pki, addr, Some(valid)).await,
        "verified Judge Li; presented 2"
    );
    assert_eq!(get(&pki, addr, None).await, "anonymous; presented 0");
    let key = |c: &tianping_certs::IssuedCert| c.key_pem.expose().clone();
    let (k1, k2, k3) = (key(&revoked), key(&expired), key(&foreign));
    assert_eq!(
        get(&pki, addr, Some((&revoked.chain_pem, &k1))).await,
        "not verified: revoked; presented 2"
    );
    assert_eq!(
        get(&pki, addr, Some((&expired.chain_pem, &k2))).await,
        "not verified: expired; presented 2"
    );
    let out = get(&pki, addr, Some((&foreign.chain_pem, &k3))).await;
    assert!(out.starts_with("not verified: issuer"), "{out}");
    assert!(out.ends_with("; presented 2"), "{out}");
    server.shutdown().await;
}
