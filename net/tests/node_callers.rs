//! Node tokens on a control socket: a component of the zone is known by its node certificate, a
//! replayed, foreign-zone or other-audience token is refused, and a person's credential goes to
//! the owner's verifier of people.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject as _;
use tianping_certs::{
    CaCert, CertKind, KeyAlg, LeafRequest, TokenClaims, TokenKind, TokenSigner, TokenVerifier,
    TrustStore, certs_from_pem, identity_of,
};
use tianping_core::{Algorithm, RingSigner, UnixTime};
use tianping_net::testing::StaticVerifier;
use tianping_net::{Body, Caller, ControlOptions, NodeCallers, full, serve_control_with};

fn now() -> UnixTime {
    UnixTime::from_system_time(std::time::SystemTime::now())
}

fn node_signer(ca: &CaCert, name: &str) -> TokenSigner {
    let issued = ca
        .issue(&LeafRequest::new(CertKind::Node, name), now())
        .unwrap();
    let der = PrivatePkcs8KeyDer::from_pem_slice(issued.key_pem.expose().as_bytes()).unwrap();
    let key = RingSigner::from_pkcs8(Algorithm::Es256, der.secret_pkcs8_der()).unwrap();
    let chain = certs_from_pem(issued.chain_pem.as_bytes()).unwrap();
    TokenSigner::new(Arc::new(key), &chain).unwrap()
}

async fn who(req: http::Request<Body>) -> http::Response<tianping_net::ResponseBody> {
    let caller = req.extensions().get::<Caller>().cloned().unwrap();
    let id = caller.identity.unwrap();
    http::Response::new(full(format!("{} {:?}", id.name, id.kind)))
}

async fn send(socket: &std::path::Path, bearer: &str) -> (u16, String) {
    let bearer = format!("Bearer {bearer}");
    control_get(socket, "/who", &[("authorization", bearer.as_str())]).await
}

#[tokio::test]
async fn node_tokens_name_the_component_and_people_go_to_the_owners_verifier() {
    let pki = Pki::new();
    let internet = pki
        .root
        .new_zone(&"internet".parse().unwrap(), "Court", KeyAlg::EcP256, now())
        .unwrap();
    let bundle = format!("{}{}", pki.trust_pem, internet.cert_pem());
    let trust = TrustStore::from_pem(bundle.as_bytes(), &[]).unwrap();
    let zone = "private".parse().unwrap();
    let nodes = TokenVerifier::new(&trust, &zone, "audit-store", TokenKind::Node).unwrap();
    let mut person = LeafRequest::new(CertKind::Client, "Auditor Wu");
    person.subject = Some("u-3001".parse().unwrap());
    person.court = Some("bj.01".parse().unwrap());
    let person = identity_of(&pki.zone.issue(&person, now()).unwrap().leaf_der).unwrap();
    let people = StaticVerifier::new().bearer("person-token", person);
    let callers = NodeCallers::new(nodes).unwrap().or(Arc::new(people));

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("private-audit-store.sock");
    let options = ControlOptions::new(&[]).verified(Arc::new(callers), Vec::<String>::new());
    let ctl = serve_control_with(&socket, options, who).await.unwrap();

    let shipper = node_signer(&pki.zone, "private-gateway");
    let minute = Duration::from_secs(30);
    let token = shipper
        .sign(&TokenClaims::Node, "audit-store", now(), minute)
        .unwrap();
    assert_eq!(
        send(&socket, &token).await,
        (200, "private-gateway Node".into())
    );
    // The same token again is a replay.
    let (status, body) = send(&socket, &token).await;
    assert_eq!(status, 401);
    assert!(body.contains("replay"), "{body}");
    // Another zone's node, and a token for another audience, are refused.
    let foreign = node_signer(&internet, "internet-gateway")
        .sign(&TokenClaims::Node, "audit-store", now(), minute)
        .unwrap();
    assert_eq!(send(&socket, &foreign).await.0, 401);
    let elsewhere = shipper
        .sign(&TokenClaims::Node, "idp", now(), minute)
        .unwrap();
    assert_eq!(send(&socket, &elsewhere).await.0, 401);
    // A person's credential is the owner's verifier's to judge.
    assert_eq!(
        send(&socket, "person-token").await,
        (200, "Auditor Wu Client".into())
    );
    assert_eq!(send(&socket, "not-a-token").await.0, 401);
    ctl.shutdown().await;

    // A verifier of another kind cannot stand in for node tokens.
    let users = TokenVerifier::new(&trust, &zone, "audit-store", TokenKind::User).unwrap();
    assert!(NodeCallers::new(users).is_err());
}
