//! Rough throughput of the hot paths, printed, never asserted on time. Run with
//! `cargo test -p tianping-certs --release --test throughput -- --ignored --nocapture`.

use std::time::Instant;

use tianping_certs::{
    CaCert, CertKind, KeyAlg, LeafRequest, Revocation, RevokeReason, TrustStore, certs_from_pem,
    identity_of, verify_client,
};
use tianping_core::UnixTime;

fn per_op(label: &str, n: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let each = start.elapsed() / n;
    println!(
        "{label:<40} {n:>6} runs  {:>10.1} µs/op",
        each.as_secs_f64() * 1e6
    );
}

#[test]
#[ignore = "prints timings; run on demand"]
fn hot_paths() {
    let now = UnixTime::from_secs(1_800_000_000);
    let root = CaCert::new_root("Court", KeyAlg::EcP256, now).unwrap();
    let zone = root
        .new_zone(&"private".parse().unwrap(), "Court", KeyAlg::EcP256, now)
        .unwrap();
    let mut req = LeafRequest::new(CertKind::Client, "Judge Li");
    req.subject = Some("u-1001".parse().unwrap());
    req.court = Some("bj.01.03".parse().unwrap());
    req.roles = vec!["judge".parse().unwrap()];
    let leaf = zone.issue(&req, now).unwrap();
    let chain = certs_from_pem(leaf.chain_pem.as_bytes()).unwrap();
    // A CRL with 1,000 other revoked serials.
    let revoked: Vec<Revocation> = (0..1000u32)
        .map(|i| Revocation {
            serial: format!("41{i:030x}"),
            at: 1_800_000_000,
            reason: RevokeReason::Superseded,
        })
        .collect();
    let crl = zone.crl(&revoked, now, 7).unwrap();
    let trust_pem = format!("{}{}", root.cert_pem(), zone.cert_pem());
    let trust = TrustStore::from_pem(trust_pem.as_bytes(), &[crl.as_bytes()]).unwrap();

    per_op("identity_of", 20_000, || {
        identity_of(&leaf.leaf_der).unwrap();
    });
    per_op("verify_client (crl of 1000 entries)", 5_000, || {
        verify_client(&chain, &trust, now).unwrap();
    });
    per_op("issue client certificate (p-256)", 500, || {
        zone.issue(&req, now).unwrap();
    });
    let mut ed = req.clone();
    ed.key = KeyAlg::Ed25519;
    per_op("issue client certificate (ed25519 key)", 500, || {
        zone.issue(&ed, now).unwrap();
    });
    per_op("TrustStore::from_pem (crl of 1000)", 200, || {
        TrustStore::from_pem(trust_pem.as_bytes(), &[crl.as_bytes()]).unwrap();
    });
}
