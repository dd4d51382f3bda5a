//! `tianping init`: the data folder's layout, every certificate validating for its zone, every
//! component's signing identity, each zone's installed copies, service bindings, keys private,
//! `fabric.toml` loadable, and a second run refused without a change.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use tianping_certs::{
    CertKind, CertUsage, ClientAuth, Pki, ServerTlsBuilder, certs_from_pem, summarize, verify_chain,
};
use tianping_core::{
    Component, DataDir, Fabric, Listener, ServiceTarget, UnixTime, default_binding, listener_addr,
    publish_addr,
};

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

    // the policy in force is the default one, and each of its services is bound in its zone: to
    // the component that serves it, or else to a delivery folder
    let source = std::fs::read_to_string(dd.policy()).unwrap();
    assert_eq!(source, tianping_policies::DEFAULT_POLICY);
    let checked = tianping_policies::check("policy.tp", &source);
    let policy = checked.policy().unwrap();
    let services: Vec<_> = policy.services().collect();
    assert!(services.len() > 10);
    let mut to_components = 0;
    for (name, zone) in services {
        let binding = &fabric.services()[name];
        assert_eq!(&binding.zone, zone, "{name}");
        match (&binding.target, default_binding(name)) {
            (ServiceTarget::Folder(f), None) => assert!(data.join(f).is_dir(), "{name}"),
            (ServiceTarget::Component(c), Some(want)) => {
                assert_eq!(*c, want, "{name}");
                assert!(fabric.zone(zone).unwrap().runs(*c), "{name}");
                to_components += 1;
            }
            other => panic!("{name} bound to {other:?}"),
        }
    }
    // directory-authority, audit-store, receipt-store, four directories and four trust stores
    assert_eq!(to_components, 11);
    assert_eq!(
        fabric.services()["audit-store"].target,
        ServiceTarget::Component(Component::AuditStore)
    );
    // no link leaves the sealed zone
    let classified = "classified".parse().unwrap();
    assert!(policy.is_sealed("classified"));
    assert_eq!(fabric.links_from(&classified).count(), 0);
    assert_eq!(fabric.links().len(), 16);
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
        let components: Vec<Component> = zl.components().collect();
        // the audit store runs in private only
        let want = if z.as_str() == "private" { 5 } else { 4 };
        assert_eq!(components.len(), want, "{z}");
        for c in components {
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
            // every component's one signing identity: a `node` certificate of its own zone
            let (node_pem, node_key) = dd.node(z, c);
            assert_eq!(mode(&node_key), 0o600, "{}", node_key.display());
            let node_chain = certs_from_pem(&std::fs::read(&node_pem).unwrap()).unwrap();
            for usage in [CertUsage::Client, CertUsage::Server] {
                let id = verify_chain(&node_chain, &zone_trust, now, usage).unwrap();
                assert_eq!(id.kind, CertKind::Node, "{z} {c}");
                assert_eq!(&id.zone, z, "{z} {c}");
            }
            let der = tianping_core::read_private_key(&node_key).unwrap();
            assert!(tianping_core::RingSigner::from_pkcs8_any(der.expose()).is_ok());
            leaves += 1;
            // No zone's certificate validates for another zone.
            let other = fabric.zones().find(|o| &o.zone != z).unwrap();
            let other_trust = trust.for_zone(&other.zone).unwrap();
            for chain in [&chain, &node_chain] {
                assert!(verify_chain(chain, &other_trust, now, CertUsage::Server).is_err());
            }
        }
        let keys = dd.keys(z, Component::Gateway);
        assert_eq!(mode(&keys.join("cookie.key")), 0o600);
        assert_eq!(std::fs::read(keys.join("cookie.key")).unwrap().len(), 32);
        // the gateway signs with its node key: no separate assertion key
        assert!(!keys.join("assertion.key").exists());
        let ossl = Command::new("openssl")
            .args(["pkey", "-noout", "-text", "-in"])
            .arg(dd.node(z, Component::Gateway).1)
            .output()
            .unwrap();
        assert!(
            ossl.status.success(),
            "{}",
            String::from_utf8_lossy(&ossl.stderr)
        );
        assert!(String::from_utf8_lossy(&ossl.stdout).contains("P-256"));

        // The gateway's files build a listener with required client certificates, from the
        // zone's own installed trust bundle and CRLs.
        let (pem, key) = dd.tls(z, Component::Gateway);
        let crls = fabric.zones().map(|o| dd.zone_crl(z, &o.zone)).collect();
        ServerTlsBuilder::new(pem, key)
            .client_auth(ClientAuth::Required, dd.zone_trust_bundle(z), crls)
            .client_zone(z.clone())
            .build()
            .unwrap();
    }
    assert_eq!(leaves, (4 * 5 + 1) * 2);
    // Nothing is left beside the data folder.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn each_zone_holds_its_own_installed_copies() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    assert!(init(&data).status.success());
    let dd = DataDir::new(&data);
    let fabric = Fabric::load(&dd.fabric()).unwrap();
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    for zl in fabric.zones() {
        let z = &zl.zone;
        assert_eq!(read(dd.zone_policy(z)), read(dd.policy()), "{z}");
        assert_eq!(
            read(dd.zone_trust_bundle(z)),
            read(dd.trust_bundle()),
            "{z}"
        );
        for of in fabric.zones() {
            assert_eq!(
                read(dd.zone_crl(z, &of.zone)),
                read(dd.crl(&of.zone)),
                "{z}"
            );
        }
        for (name, text) in tianping_policies::DEFAULT_SCHEMAS {
            let file = format!("{name}.json");
            assert_eq!(read(dd.zone_schemas(z).join(&file)), text.as_bytes(), "{z}");
        }
    }
    // the policy as installed checks, its json kinds' schemas beside it (`policy check` read
    // `schemas/` and found none: five schema problems, straight after init)
    for (name, _) in tianping_policies::DEFAULT_SCHEMAS {
        assert!(
            dd.schemas().join(format!("{name}.json")).is_file(),
            "{name}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tianping"))
        .arg("--data")
        .arg(&data)
        .args(["policy", "check"])
        .arg(dd.policy())
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("schema problem"), "{said}");
    // they are copies: replacing one zone's policy changes that zone alone
    let (internet, mobile) = ("internet".parse().unwrap(), "mobile".parse().unwrap());
    std::fs::write(dd.zone_policy(&internet), "zone internet {}\n").unwrap();
    assert_eq!(read(dd.zone_policy(&mobile)), read(dd.policy()));
    assert_eq!(
        std::fs::read_to_string(dd.policy()).unwrap(),
        tianping_policies::DEFAULT_POLICY
    );
}

#[test]
fn bound_addresses_round_trip_through_the_run_folder() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    assert!(init(&data).status.success());
    let dd = DataDir::new(&data);
    let fabric = Fabric::load(&dd.fabric()).unwrap();
    let private = "private".parse().unwrap();
    let store = Component::AuditStore;
    // nothing published: the fabric's port
    let configured = listener_addr(&dd, &fabric, &private, store, &Listener::Admin).unwrap();
    assert_eq!(configured.port(), 7436);
    // a real listener on port 0 publishes what it bound, and readers find it
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bound = socket.local_addr().unwrap();
    publish_addr(&dd, &private, store, &Listener::Admin, bound).unwrap();
    assert_eq!(mode(&dd.addr_file(&private, store)), 0o644);
    let found = listener_addr(&dd, &fabric, &private, store, &Listener::Admin).unwrap();
    assert_eq!(found, bound);
    std::net::TcpStream::connect(found).unwrap();
    // and with port 0 in fabric.toml, an unpublished listener is reported, not guessed
    let text = std::fs::read_to_string(dd.fabric())
        .unwrap()
        .replace("audit-store = 7436", "audit-store = 0");
    let zeroed = Fabric::parse(&text).unwrap();
    std::fs::remove_file(dd.addr_file(&private, store)).unwrap();
    let err = listener_addr(&dd, &zeroed, &private, store, &Listener::Admin).unwrap_err();
    assert!(
        err.to_string().contains("private-audit-store.addr"),
        "{err}"
    );
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
