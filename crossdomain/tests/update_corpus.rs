//! Replays the checked-in corpora of the update targets (`update_policy`, `update_trust_bundle`,
//! `update_crl`) on stable, and checks that each seed is still passed or refused as its name
//! says (`ok-*` passes), so the fuzzer starts from real inputs on both sides of each check.
//!
//! `CROSSDOMAIN_WRITE_UPDATE_SEEDS=1 cargo test -p tianping-crossdomain --test update_corpus`
//! makes a new root and `internet` CA, writes their bundle to `src/fuzz_update_trust.pem` and
//! the trust-bundle and CRL seeds made with their keys (the keys are then dropped); the bundle
//! is compiled into the targets, so run it again without the variable to check the new seeds.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use tianping_certs::{CaCert, KeyAlg, Revocation, RevokeReason};
use tianping_core::internal::{corpus, corpus_dir};
use tianping_crossdomain::internal::{
    UPDATE_MADE, fuzz_crl, fuzz_policy_update, fuzz_trust_bundle,
};
use tianping_policies::DEFAULT_POLICY;

fn seed(target: &str, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(corpus_dir(target)).unwrap();
    std::fs::write(corpus_dir(target).join(name), bytes).unwrap();
}

fn write_seeds() {
    let now = UPDATE_MADE;
    let root = CaCert::new_root("Court", KeyAlg::EcP256, now).unwrap();
    let internet = root
        .new_zone(&"internet".parse().unwrap(), "Court", KeyAlg::EcP256, now)
        .unwrap();
    let bundle = format!("{}{}", root.cert_pem(), internet.cert_pem());
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fuzz_update_trust.pem");
    std::fs::write(fixture, &bundle).unwrap();

    let t = "update_trust_bundle";
    seed(t, "ok-same.pem", bundle.as_bytes());
    seed(
        t,
        "ok-with-comments.pem",
        format!("# the zone's trust\n{bundle}\ntrailing words\n").as_bytes(),
    );
    let (new_root, cross) = root
        .new_root_cross_signed("Court", KeyAlg::EcP256, now)
        .unwrap();
    let new_internet = new_root
        .new_zone(&"internet".parse().unwrap(), "Court", KeyAlg::EcP256, now)
        .unwrap();
    seed(
        t,
        "ok-new-root-cross-signed.pem",
        format!(
            "{}{}{cross}{}",
            new_root.cert_pem(),
            new_internet.cert_pem(),
            root.cert_pem()
        )
        .as_bytes(),
    );
    seed(
        t,
        "new-root-alone.pem",
        format!("{}{}", new_root.cert_pem(), new_internet.cert_pem()).as_bytes(),
    );
    seed(
        t,
        "with-a-key.pem",
        format!("{bundle}{}", internet.key_pem().expose()).as_bytes(),
    );
    seed(t, "root-only.pem", root.cert_pem().as_bytes());
    seed(t, "not-pem.pem", b"\xff\xfe certificates");

    let c = "update_crl";
    let revoked = [Revocation {
        serial: "0badc0de".to_owned(),
        at: now.as_secs().try_into().unwrap(),
        reason: RevokeReason::KeyCompromise,
    }];
    let crl = internet.crl(&revoked, now, 30).unwrap();
    seed(c, "ok-one-revoked.pem", crl.as_bytes());
    seed(
        c,
        "ok-empty.pem",
        internet.crl(&[], now, 7).unwrap().as_bytes(),
    );
    seed(c, "two-lists.pem", format!("{crl}{crl}").as_bytes());
    seed(
        c,
        "by-another-zone.pem",
        new_internet.crl(&revoked, now, 30).unwrap().as_bytes(),
    );
    let mut cut = crl.into_bytes();
    cut.truncate(cut.len() / 2);
    seed(c, "cut.pem", &cut);
}

/// Rewrites the seeds once per run when `CROSSDOMAIN_WRITE_UPDATE_SEEDS` is set.
fn maybe_write_seeds() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("CROSSDOMAIN_WRITE_UPDATE_SEEDS").is_some() {
        ONCE.call_once(write_seeds);
    }
}

/// Every seed of `target` replayed through `f`: those named `ok-*` pass, the others are refused;
/// at least one of each.
fn replay(target: &str, f: fn(&[u8]) -> bool) {
    let (mut passed, mut refused) = (0, 0);
    for (path, data) in corpus(target).unwrap() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(f(&data), name.starts_with("ok-"), "{target}/{name}");
        if name.starts_with("ok-") {
            passed += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        passed > 0 && refused > 0,
        "{target}: {passed} passed, {refused} refused"
    );
}

#[test]
fn policy_update_corpus() {
    if std::env::var_os("CROSSDOMAIN_WRITE_UPDATE_SEEDS").is_some() {
        let t = "update_policy";
        seed(t, "ok-default.tp", DEFAULT_POLICY.as_bytes());
        seed(
            t,
            "ok-crlf.tp",
            DEFAULT_POLICY.replace('\n', "\r\n").as_bytes(),
        );
        seed(
            t,
            "unseals-classified.tp",
            DEFAULT_POLICY.replace("  sealed\n", "").as_bytes(),
        );
        seed(t, "not-utf8.tp", b"levels confidentiality \xff\n");
        seed(
            t,
            "does-not-check.tp",
            b"zone internet {\n  confidentiality nowhere\n}\n",
        );
    }
    replay("update_policy", fuzz_policy_update);
}

#[test]
fn trust_bundle_corpus() {
    maybe_write_seeds();
    replay("update_trust_bundle", fuzz_trust_bundle);
}

#[test]
fn crl_corpus() {
    maybe_write_seeds();
    replay("update_crl", fuzz_crl);
}
