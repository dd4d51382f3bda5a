//! `tianping init`: the data folder's layout, every certificate validating for its zone, keys
//! private, `fabric.toml` loadable, and a second run refused without a change.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use tianping_certs::{
    CertKind, CertUsage, ClientAuth, Pki, ServerTlsBuilder, certs_from_pem, summarize, verify_chain,
};
use tianping_core::{Component, DataDir, Fabric, UnixTime};

fn init(data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tianping"))
        .arg("--data")
        .arg(data)
        .arg("init")
        .env_remove("TIANPING_DATA")
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn init_makes_the_whole_layout() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let out = init(&data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("fabric.toml"), "{printed}");
    assert!(printed.contains("zones/private/gateway/"), "{printed}");

    let dd = DataDir::new(&data);
    let fabric = Fabric::load(&dd.fabric()).unwrap();
    assert_eq!(fabric.zones().count(), 5);
    assert_eq!(mode(&dd.run()), 0o700);

    // the policy in force is the default one, and each of its services is bound to a folder
    let source = std::fs::read_to_string(dd.policy()).unwrap();
    assert_eq!(source, tianping_policies::DEFAULT_POLICY);
    let checked = tianping_policies::check("policy.tp", &source);
    let policy = checked.policy().unwrap();
    let services: Vec<_> = policy.services().collect();
    assert!(services.len() > 10);
    for (name, zone) in services {
        let binding = &fabric.services()[name];
        assert_eq!(&binding.zone, zone, "{name}");
        match &binding.target {
            tianping_core::ServiceTarget::Folder(f) => assert!(data.join(f).is_dir(), "{name}"),
            other => panic!("{name} bound to {other:?}"),
        }
    }
    assert!(dd.root().join("zones").is_dir());

    let pki = Pki::open(&dd.pki()).unwrap();
    assert_eq!(pki.trust_pem_path(), dd.trust_bundle());
    let now = UnixTime::from_system_time(SystemTime::now());
    let trust = pki.trust_store().unwrap();
    let mut leaves = 0;
    for zl in fabric.zones() {
        let z = &zl.zone;
        assert!(dd.crl(z).is_file(), "crl of {z}");
        let zone_trust = trust.for_zone(z).unwrap();
        for c in Component::ALL {
            let (pem, key) = dd.tls(z, c);
            assert_eq!(mode(&key), 0o600, "{}", key.display());
            let chain = certs_from_pem(&std::fs::read(&pem).unwrap()).unwrap();
            let id = verify_chain(&chain, &zone_trust, now, CertUsage::Server).unwrap();
            assert_eq!(&id.zone, z);
            let s = summarize(&chain[0]).unwrap();
            assert!(s.ips.contains(&"127.0.0.1".parse().unwrap()), "{s:?}");
            match c {
                Component::Gateway => assert_eq!(s.dns, std::slice::from_ref(&zl.gateway_host)),
                Component::Idp => assert_eq!(s.dns, std::slice::from_ref(&zl.idp_host)),
                _ => {}
            }
            leaves += 1;
            if c.is_exchange_node() {
                let (pem, key) = dd.node(z, c);
                assert_eq!(mode(&key), 0o600);
                let chain = certs_from_pem(&std::fs::read(&pem).unwrap()).unwrap();
                for usage in [CertUsage::Client, CertUsage::Server] {
                    let id = verify_chain(&chain, &zone_trust, now, usage).unwrap();
                    assert_eq!(id.kind, CertKind::Node);
                }
                leaves += 1;
            } else {
                assert!(!dd.node(z, c).0.exists());
            }
            // No zone's certificate validates for another zone.
            let other = fabric.zones().find(|o| &o.zone != z).unwrap();
            assert!(
                verify_chain(
                    &chain,
                    &trust.for_zone(&other.zone).unwrap(),
                    now,
                    CertUsage::Server
                )
                .is_err()
            );
        }
        let keys = dd.keys(z, Component::Gateway);
        assert_eq!(mode(&keys.join("cookie.key")), 0o600);
        assert_eq!(std::fs::read(keys.join("cookie.key")).unwrap().len(), 32);
        assert_eq!(mode(&keys.join("assertion.key")), 0o600);
        let ossl = Command::new("openssl")
            .args(["pkey", "-noout", "-text", "-in"])
            .arg(keys.join("assertion.key"))
            .output()
            .unwrap();
        assert!(
            ossl.status.success(),
            "{}",
            String::from_utf8_lossy(&ossl.stderr)
        );
        assert!(String::from_utf8_lossy(&ossl.stdout).contains("P-256"));

        // The gateway's files build a listener with required client certificates.
        let (pem, key) = dd.tls(z, Component::Gateway);
        ServerTlsBuilder::new(pem, key)
            .client_auth(ClientAuth::Required, dd.trust_bundle(), vec![dd.crl(z)])
            .client_zone(z.clone())
            .build()
            .unwrap();
    }
    assert_eq!(leaves, 5 * 6);
    // Nothing is left beside the data folder.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn a_second_init_refuses_and_changes_nothing() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    assert!(init(&data).status.success());
    let before = snapshot(&data);
    let out = init(&data);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(snapshot(&data), before);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    // An existing empty folder is refused too.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(init(&empty).status.code(), Some(2));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn a_failure_leaves_nothing_behind() {
    let tmp = tempfile::TempDir::new().unwrap();
    // The parent is a file, so nothing can be made.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = init(&file.join("data"));
    assert_eq!(out.status.code(), Some(2));
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["file"]);
}
