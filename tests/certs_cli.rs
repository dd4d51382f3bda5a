//! `tianping certs` end to end, checked against the `openssl` binary: valid, expired, not yet
//! valid, revoked (with the CRL), other-zone and bad input. Time comes from `--at` and
//! `openssl verify -attime`, never from sleeping.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use tianping_certs::{Pki, certs_from_pem, verify_client};
use tianping_core::UnixTime;

const DAY: u64 = 86_400;

fn tianping(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tianping"))
        .args(args)
        .env_remove("TIANPING_DATA")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = tianping(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn now() -> u64 {
    UnixTime::from_system_time(SystemTime::now()).as_secs()
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    pki: PathBuf,
    made_at: u64,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::TempDir::new().unwrap();
        let root = tmp.path().to_path_buf();
        let pki = root.join("pki");
        let made_at = now();
        ok(&["certs", "init", "--dir", s(&pki), "--org", "Test Court"]);
        Self {
            _tmp: tmp,
            root,
            pki,
            made_at,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn person(&self, zone: &str, name: &str, days: &str) -> PathBuf {
        let out = self.path(name);
        ok(&[
            "certs",
            "issue",
            "--dir",
            s(&self.pki),
            "--zone",
            zone,
            "--kind",
            "client",
            "--name",
            "Judge Li",
            "--subject-id",
            "u-1001",
            "--court",
            "bj.01.03",
            "--role",
            "judge",
            "--role",
            "president",
            "--days",
            days,
            "--out",
            s(&out),
        ]);
        self.path(&format!("{name}.pem"))
    }

    /// `certs inspect --dir --zone --at`: whether it validates (exit 0) or not (exit 1).
    fn inspect(&self, cert: &Path, zone: &str, at: u64) -> (bool, String) {
        let out = tianping(&[
            "certs",
            "inspect",
            s(cert),
            "--dir",
            s(&self.pki),
            "--zone",
            zone,
            "--at",
            &at.to_string(),
        ]);
        let code = out.status.code().unwrap();
        assert!(
            code == 0 || code == 1,
            "exit {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (code == 0, String::from_utf8(out.stdout).unwrap())
    }

    /// `openssl verify` of the leaf against the root with `zone`'s CA and CRL.
    fn openssl(&self, cert: &Path, zone: &str, at: u64, purpose: &str) -> (bool, String) {
        let zdir = self.pki.join("zones").join(zone);
        let out = Command::new("openssl")
            .args([
                "verify",
                "-attime",
                &at.to_string(),
                "-purpose",
                purpose,
                "-CAfile",
            ])
            .arg(self.pki.join("root-ca.pem"))
            .arg("-untrusted")
            .arg(zdir.join("ca.pem"))
            .args(["-crl_check", "-CRLfile"])
            .arg(zdir.join("crl.pem"))
            .arg(cert)
            .output()
            .expect("the openssl binary");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The library's verdict for a client chain, narrowed to `zone`.
    fn library(&self, cert: &Path, zone: &str, at: u64) -> bool {
        let pki = Pki::open(&self.pki).unwrap();
        let trust = pki
            .trust_store()
            .unwrap()
            .for_zone(&zone.parse().unwrap())
            .unwrap();
        let chain = certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
        verify_client(&chain, &trust, UnixTime::from_secs(at)).is_ok()
    }

    /// All three must agree; returns the verdict and both outputs.
    fn agree(&self, cert: &Path, zone: &str, at: u64, purpose: &str) -> (bool, String, String) {
        let (ours, text) = self.inspect(cert, zone, at);
        let (theirs, ossl) = self.openssl(cert, zone, at, purpose);
        assert_eq!(ours, theirs, "inspect: {text}\nopenssl: {ossl}");
        if purpose == "sslclient" {
            assert_eq!(
                ours,
                self.library(cert, zone, at),
                "verify_client disagrees: {text}"
            );
        }
        (ours, text, ossl)
    }
}

/// The error output with miette's line wrapping and frame undone.
fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .replace(['│', '×'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn openssl_agrees_on_valid_expired_not_yet_valid_and_other_zone() {
    let t = Setup::new();
    let at = t.made_at + 3600;
    let judge = t.person("private", "judge", "1");

    let (valid, text, _) = t.agree(&judge, "private", at, "sslclient");
    assert!(valid, "{text}");
    assert!(text.contains("court:        bj.01.03"), "{text}");
    assert!(text.contains("roles:        judge, president"), "{text}");
    assert!(text.contains("ext. usage:   clientAuth"), "{text}");

    let (valid, text, ossl) = t.agree(&judge, "private", at + 2 * DAY, "sslclient");
    assert!(!valid);
    assert!(text.contains("expired"), "{text}");
    assert!(ossl.contains("expired"), "{ossl}");

    // Before the certificate (and the CRL) existed.
    let (valid, text, _) = t.agree(&judge, "private", t.made_at - DAY, "sslclient");
    assert!(!valid);
    assert!(text.contains("not valid before"), "{text}");

    // An internet-zone certificate is valid for its zone, not for the private zone.
    let other = t.person("internet", "other", "30");
    assert!(t.agree(&other, "internet", at, "sslclient").0);
    let (valid, text, ossl) = t.agree(&other, "private", at, "sslclient");
    assert!(!valid);
    assert!(
        text.contains("not issued by a trusted CA of zone `private`"),
        "{text}"
    );
    assert!(
        ossl.contains("unable to get local issuer certificate"),
        "{ossl}"
    );
}

#[test]
fn openssl_agrees_on_revocation_and_the_crl_command() {
    let t = Setup::new();
    let at = t.made_at + 3600;
    let judge = t.person("private", "judge", "30");
    let keep = t.person("private", "keep", "30");
    assert!(t.agree(&judge, "private", at, "sslclient").0);

    let out = ok(&[
        "certs",
        "revoke",
        "--dir",
        s(&t.pki),
        "--cert",
        s(&judge),
        "--reason",
        "key-compromise",
    ]);
    assert!(out.contains("revoked"), "{out}");
    let (valid, text, ossl) = t.agree(&judge, "private", at, "sslclient");
    assert!(!valid);
    assert!(text.contains("revoked"), "{text}");
    assert!(ossl.contains("certificate revoked"), "{ossl}");
    assert!(
        t.agree(&keep, "private", at, "sslclient").0,
        "others stay valid"
    );

    // `certs crl` writes a CRL that lists the revocation too, with its reason.
    let crl = t.pki.join("zones/private/crl.pem");
    let fresh = t.path("fresh-crl.pem");
    ok(&[
        "certs",
        "crl",
        "--dir",
        s(&t.pki),
        "--zone",
        "private",
        "--out",
        s(&fresh),
        "--days",
        "7",
    ]);
    let text = String::from_utf8(
        Command::new("openssl")
            .args(["crl", "-noout", "-text", "-in"])
            .arg(&fresh)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(text.contains("Next Update"), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    std::fs::copy(&fresh, &crl).unwrap();
    assert!(!t.agree(&judge, "private", at, "sslclient").0);

    // Revoking twice is refused.
    let out = tianping(&["certs", "revoke", "--dir", s(&t.pki), "--cert", s(&judge)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already revoked"));
}

#[test]
fn servers_nodes_and_ed25519_validate_for_their_purpose() {
    let t = Setup::new();
    let at = t.made_at + 3600;
    let gw = t.path("gw");
    ok(&[
        "certs",
        "issue",
        "--dir",
        s(&t.pki),
        "--zone",
        "private",
        "--kind",
        "server",
        "--name",
        "gateway",
        "--dns",
        "gw.private.tianping.localhost",
        "--ip",
        "127.0.0.1",
        "--out",
        s(&gw),
    ]);
    let gw = t.path("gw.pem");
    assert!(t.agree(&gw, "private", at, "sslserver").0);
    let (theirs, _) = t.openssl(&gw, "private", at, "sslclient");
    assert!(!theirs, "a server certificate is not a client certificate");

    let node = t.path("node");
    ok(&[
        "certs",
        "issue",
        "--dir",
        s(&t.pki),
        "--zone",
        "classified",
        "--kind",
        "node",
        "--name",
        "exchange-receiver",
        "--out",
        s(&node),
        "--key",
        "ed25519",
    ]);
    let node = t.path("node.pem");
    assert!(t.agree(&node, "classified", at, "sslclient").0);
    assert!(t.agree(&node, "classified", at, "sslserver").0);
    let text = ok(&["certs", "inspect", s(&node)]);
    assert!(text.contains("kind:         node"), "{text}");
    assert!(text.contains("key usage:    digitalSignature"), "{text}");
}

#[test]
fn layout_modes_and_offline_root_key() {
    let tmp = tempfile::TempDir::new().unwrap();
    let pki = tmp.path().join("pki");
    let offline = tmp.path().join("offline-root.key");
    let out = ok(&["certs", "init", "--dir", s(&pki), "--root-key", s(&offline)]);
    assert!(out.contains("keep it offline"), "{out}");
    assert!(!pki.join("root-ca.key").exists());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&offline), 0o600);
    let trust = std::fs::read(pki.join("trust.pem")).unwrap();
    assert_eq!(
        certs_from_pem(&trust).unwrap().len(),
        6,
        "root and five zone CAs"
    );
    for z in tianping_core::DEFAULT_ZONES {
        let zdir = pki.join("zones").join(z);
        assert!(zdir.join("ca.pem").is_file());
        assert!(zdir.join("crl.pem").is_file());
        assert_eq!(mode(&zdir.join("ca.key")), 0o600);
    }
    // A second init refuses and changes nothing.
    let before = std::fs::read(pki.join("trust.pem")).unwrap();
    let again = tianping(&["certs", "init", "--dir", s(&pki)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("already exists"));
    assert_eq!(std::fs::read(pki.join("trust.pem")).unwrap(), before);

    // A new zone needs the offline root key, and then issues like the others.
    let out = tianping(&["certs", "add-zone", "--dir", s(&pki), "--zone", "archive"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not here"), "{}", stderr(&out));
    ok(&[
        "certs",
        "add-zone",
        "--dir",
        s(&pki),
        "--zone",
        "archive",
        "--root-key",
        s(&offline),
    ]);
    let trust = std::fs::read(pki.join("trust.pem")).unwrap();
    assert_eq!(certs_from_pem(&trust).unwrap().len(), 7);
    let arch = tmp.path().join("arch");
    ok(&[
        "certs",
        "issue",
        "--dir",
        s(&pki),
        "--zone",
        "archive",
        "--kind",
        "device",
        "--name",
        "scanner",
        "--out",
        s(&arch),
    ]);
    let arch_pem = tmp.path().join("arch.pem");
    let inspected = tianping(&["certs", "inspect", s(&arch_pem), "--dir", s(&pki)]);
    assert_eq!(
        inspected.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&inspected.stdout)
    );
    let again = tianping(&[
        "certs",
        "add-zone",
        "--dir",
        s(&pki),
        "--zone",
        "archive",
        "--root-key",
        s(&offline),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("already has a CA"));
    assert_eq!(std::fs::read(pki.join("trust.pem")).unwrap(), trust);

    let leaf = tmp.path().join("dev");
    ok(&[
        "certs",
        "issue",
        "--dir",
        s(&pki),
        "--zone",
        "mobile",
        "--kind",
        "device",
        "--name",
        "tablet-7",
        "--out",
        s(&leaf),
    ]);
    assert_eq!(mode(&tmp.path().join("dev.key")), 0o600);
    let chain = certs_from_pem(&std::fs::read(tmp.path().join("dev.pem")).unwrap()).unwrap();
    assert_eq!(chain.len(), 2, "leaf then zone CA");
    // The same prefix is not overwritten.
    let again = tianping(&[
        "certs",
        "issue",
        "--dir",
        s(&pki),
        "--zone",
        "mobile",
        "--kind",
        "device",
        "--name",
        "tablet-7",
        "--out",
        s(&leaf),
    ]);
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let t = Setup::new();
    let garbage = t.path("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = tianping(&["certs", "inspect", s(&garbage), "--dir", s(&t.pki)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("malformed"));

    let judge = t.person("private", "judge", "30");
    let der = &certs_from_pem(&std::fs::read(&judge).unwrap()).unwrap()[0];
    let truncated = t.path("truncated.der");
    std::fs::write(&truncated, &der[..der.len() / 2]).unwrap();
    let out = tianping(&["certs", "inspect", s(&truncated)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a der certificate"));

    let out = tianping(&[
        "certs",
        "issue",
        "--dir",
        s(&t.pki),
        "--zone",
        "private",
        "--kind",
        "client",
        "--name",
        "x",
        "--subject-id",
        "u-1",
        "--court",
        "BJ..01",
        "--out",
        s(&t.path("x")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not a court code"));
    assert!(!t.path("x.pem").exists() && !t.path("x.key").exists());

    let mut args: Vec<String> = [
        "certs",
        "issue",
        "--dir",
        s(&t.pki),
        "--zone",
        "private",
        "--kind",
        "server",
        "--name",
        "big",
        "--out",
        s(&t.path("big")),
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    for i in 0..200 {
        args.push("--dns".into());
        args.push(format!("h{i}.example"));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tianping"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("more than the 64 allowed"));
    assert!(!t.path("big.key").exists());

    let out = tianping(&[
        "certs",
        "issue",
        "--dir",
        s(&t.pki),
        "--zone",
        "nowhere",
        "--kind",
        "device",
        "--name",
        "x",
        "--out",
        s(&t.path("y")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no CA for zone `nowhere`"));
    let out = tianping(&[
        "certs",
        "issue",
        "--dir",
        s(&t.root.join("none")),
        "--zone",
        "private",
        "--kind",
        "device",
        "--name",
        "x",
        "--out",
        "y",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a pki folder"));
}

#[test]
fn a_hardware_key_is_marked_and_shown() {
    let t = Setup::new();
    let out = t.path("clerk");
    let issue = |extra: &[&str]| {
        let mut args = vec![
            "certs",
            "issue",
            "--dir",
            s(&t.pki),
            "--zone",
            "private",
            "--kind",
            "client",
            "--name",
            "Clerk Wu",
            "--subject-id",
            "u-2002",
            "--court",
            "bj.01",
        ];
        args.extend_from_slice(extra);
        tianping(&args)
    };
    assert!(issue(&["--out", s(&out), "--hardware"]).status.success());
    let text = ok(&["certs", "inspect", s(&out.with_extension("pem"))]);
    assert!(
        text.contains("uri:          urn:tianping:key:hardware"),
        "{text}"
    );
    assert!(
        text.contains("key:          hardware token with a pin"),
        "{text}"
    );
    let pem = std::fs::read(out.with_extension("pem")).unwrap();
    let id = tianping_certs::identity_of(&certs_from_pem(&pem).unwrap()[0]).unwrap();
    assert!(id.hardware);

    let soft = t.person("private", "soft", "30");
    let text = ok(&["certs", "inspect", s(&soft)]);
    assert!(text.contains("key:          software"), "{text}");

    // Only client certificates carry the mark.
    let node = tianping(&[
        "certs",
        "issue",
        "--dir",
        s(&t.pki),
        "--zone",
        "private",
        "--kind",
        "node",
        "--name",
        "gw",
        "--out",
        s(&t.path("gw")),
        "--hardware",
    ]);
    assert_eq!(node.status.code(), Some(2), "{}", stderr(&node));
    assert!(stderr(&node).contains("--hardware"), "{}", stderr(&node));
}
