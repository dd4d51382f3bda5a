//! The updates that reach every zone (`policy-update`, `crl`, `trust-bundle`) as content
//! filters. Each checks the payload against the zone's installed state in the data folder
//! (`zones/<zone>/policy.tp`, `zones/<zone>/trust.pem`), read on every run so that what the
//! receiver installed last is what the next update is judged by, with the very checks the
//! receiver's installer makes before it replaces a file (`tianping_crossdomain`'s
//! `rebuild_policy_update`, `rebuild_trust_bundle`, `rebuild_crl`, without I/O and fuzzed):
//! an update it would refuse to install is refused by the filters on both sides of the link
//! first, with the same reason.
//! On the sending side the zone is the sender's own (its installed copies are of the same
//! fabric); the receiving side checks again against its own.
//!
//! - `policy-update`: UTF-8; the text, with its line ends made LF, passes `tianping policy
//!   check` with no error, seals every zone the installed policy seals and has the zone; the
//!   rebuilt copy is that LF text.
//! - `crl`: one list, signed by a zone's CA of the installed trust bundle, its `nextUpdate`
//!   after the filter's clock; rebuilt as the list's PEM alone.
//! - `trust-bundle`: certificates only (any other PEM block, a private key above all, is
//!   refused); every CA chains to the installed root, a new root only when the bundle also
//!   holds it cross-signed by the installed one; it holds the zone's CA; rebuilt as the
//!   certificates' PEM in their order, the text around them dropped.
//!
//! None carries text for the marking check: a policy names the marking words themselves.

use std::sync::Arc;

use tianping_core::{Clock, DataDir, ZoneName};
use tianping_crossdomain::{
    Filter, FilterInput, Filtered, MemoryBound, Refusal, Step, StepState, rebuild_crl,
    rebuild_policy_update, rebuild_trust_bundle,
};

/// `validate` and `rebuild` done, `strip-metadata` not applicable (there is none to strip),
/// anything else (`transcode`, `flatten`) not these filters' to do.
fn steps(input: &FilterInput<'_>) -> Vec<Step> {
    input
        .steps
        .iter()
        .map(|s| {
            let state = match *s {
                "validate" | "rebuild" => StepState::Done,
                "strip-metadata" => StepState::NotApplicable,
                _ => StepState::Unsupported,
            };
            Step::new(*s, state)
        })
        .collect()
}

/// The zone's installed trust bundle, or a refusal that says it cannot be read.
fn installed_trust(dir: &DataDir, zone: &ZoneName, kind: &str) -> Result<Vec<u8>, Refusal> {
    let path = dir.zone_trust_bundle(zone);
    std::fs::read(&path).map_err(|e| {
        Refusal::new(
            kind,
            format!(
                "the zone's installed trust bundle `{}` cannot be read to check it against ({e})",
                path.display()
            ),
        )
    })
}

/// `policy-update`, checked against zone `zone`'s installed policy.
#[derive(Debug)]
pub(crate) struct PolicyUpdateFilter {
    dir: DataDir,
    zone: ZoneName,
}

impl PolicyUpdateFilter {
    pub(crate) fn new(dir: &DataDir, zone: &ZoneName) -> Self {
        Self {
            dir: dir.clone(),
            zone: zone.clone(),
        }
    }
}

impl Filter for PolicyUpdateFilter {
    fn kind(&self) -> &str {
        "policy-update"
    }

    fn memory(&self) -> MemoryBound {
        // the text, its LF copy, and the two policies compiled from them
        MemoryBound::Proportional(8)
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        let refuse = |why: String| Refusal::new("policy-update", why);
        let path = self.dir.zone_policy(&self.zone);
        let name = path.display().to_string();
        let installed = std::fs::read_to_string(&path).map_err(|e| {
            refuse(format!(
                "the zone's installed policy `{name}` cannot be read to check it against ({e})"
            ))
        })?;
        let bytes = rebuild_policy_update(&self.zone, &name, &installed, bytes).map_err(refuse)?;
        Ok(Filtered {
            bytes,
            steps: steps(input),
            text: Vec::new(),
        })
    }
}

/// `crl`, checked against zone `zone`'s installed trust bundle at `clock`'s time.
#[derive(Debug)]
pub(crate) struct CrlFilter {
    dir: DataDir,
    zone: ZoneName,
    clock: Arc<dyn Clock>,
}

impl CrlFilter {
    pub(crate) fn new(dir: &DataDir, zone: &ZoneName, clock: Arc<dyn Clock>) -> Self {
        Self {
            dir: dir.clone(),
            zone: zone.clone(),
            clock,
        }
    }
}

impl Filter for CrlFilter {
    fn kind(&self) -> &str {
        "crl"
    }

    fn memory(&self) -> MemoryBound {
        // the text, its DER, the parsed list and the trust bundle's
        MemoryBound::Proportional(4)
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        let trust = installed_trust(&self.dir, &self.zone, "crl")?;
        let bytes =
            rebuild_crl(&trust, bytes, self.clock.now()).map_err(|why| Refusal::new("crl", why))?;
        Ok(Filtered {
            bytes,
            steps: steps(input),
            text: Vec::new(),
        })
    }
}

/// `trust-bundle`, checked against zone `zone`'s installed trust bundle.
#[derive(Debug)]
pub(crate) struct TrustBundleFilter {
    dir: DataDir,
    zone: ZoneName,
}

impl TrustBundleFilter {
    pub(crate) fn new(dir: &DataDir, zone: &ZoneName) -> Self {
        Self {
            dir: dir.clone(),
            zone: zone.clone(),
        }
    }
}

impl Filter for TrustBundleFilter {
    fn kind(&self) -> &str {
        "trust-bundle"
    }

    fn memory(&self) -> MemoryBound {
        // the text, the DER of its certificates, their parsed forms and the rebuilt PEM
        MemoryBound::Proportional(4)
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        let installed = installed_trust(&self.dir, &self.zone, "trust-bundle")?;
        let bytes = rebuild_trust_bundle(&self.zone, &installed, bytes)
            .map_err(|why| Refusal::new("trust-bundle", why))?;
        Ok(Filtered {
            bytes,
            steps: steps(input),
            text: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use tianping_certs::{CaCert, KeyAlg, Pki};
    use tianping_core::{ManualClock, SystemClock, UnixTime, pem_blocks, pem_encode};
    use tianping_crossdomain::Filters;
    use tianping_policies::DEFAULT_POLICY;

    use super::*;

    /// A data folder made by `tianping init`, and its zone `internet`.
    struct Zone {
        _tmp: tempfile::TempDir,
        dir: DataDir,
        zone: ZoneName,
    }

    fn init() -> Zone {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        crate::cmd::init::run(&data, crate::cmd::init::InitArgs {}).unwrap();
        Zone {
            _tmp: tmp,
            dir: DataDir::new(data),
            zone: "internet".parse().unwrap(),
        }
    }

    impl Zone {
        fn pki(&self) -> Pki {
            Pki::open(&self.dir.pki()).unwrap()
        }

        fn root(&self) -> CaCert {
            let pki = self.pki();
            let cert = std::fs::read_to_string(pki.root_cert_path()).unwrap();
            let key = std::fs::read_to_string(pki.dir().join("root-ca.key")).unwrap();
            CaCert::from_pem(&cert, &key).unwrap()
        }

        fn installed_trust(&self) -> String {
            std::fs::read_to_string(self.dir.zone_trust_bundle(&self.zone)).unwrap()
        }

        /// The filters of `zone_filters` with the CRL filter on `clock`.
        fn filters(&self, clock: Arc<dyn Clock>) -> Filters {
            let mut f = crate::filters::zone_filters(&self.dir, &self.zone).unwrap();
            f.register(Arc::new(CrlFilter::new(&self.dir, &self.zone, clock)));
            f
        }
    }

    fn run(f: &Filters, kind: &str, bytes: &[u8]) -> Result<Filtered, Refusal> {
        f.run(
            &FilterInput {
                kind,
                schema: None,
                steps: &["validate", "rebuild", "strip-metadata"],
                max_size: 16 << 20,
                release: true,
            },
            bytes,
        )
    }

    /// Accepted, and the rebuilt copy passes again unchanged.
    fn accepted(f: &Filters, kind: &str, bytes: &[u8]) -> Vec<u8> {
        let out = run(f, kind, bytes).unwrap_or_else(|r| panic!("{kind}: {r}"));
        let again = run(f, kind, &out.bytes).unwrap();
        assert_eq!(again.bytes, out.bytes, "{kind}: not idempotent");
        assert!(out.text.is_empty());
        out.bytes
    }

    fn refused(f: &Filters, kind: &str, bytes: &[u8], why: &str) {
        match run(f, kind, bytes) {
            Err(r) => assert!(r.reason.contains(why), "{kind}: {r} (wanted {why:?})"),
            Ok(_) => panic!("{kind}: accepted, wanted a refusal with {why:?}"),
        }
    }

    fn now() -> UnixTime {
        SystemClock.now()
    }

    #[test]
    fn install_filters_a_policy_update_that_checks_is_rebuilt_with_lf_line_ends() {
        let z = init();
        let f = z.filters(Arc::new(SystemClock));
        let crlf = format!("{DEFAULT_POLICY}\n# amended\n").replace('\n', "\r\n");
        let out = accepted(&f, "policy-update", crlf.as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{DEFAULT_POLICY}\n# amended\n")
        );
        // what the receiver's installer takes, too
        assert_eq!(
            accepted(&f, "policy-update", DEFAULT_POLICY.as_bytes()),
            DEFAULT_POLICY.as_bytes()
        );
    }

    #[test]
    fn install_filters_a_policy_update_that_does_not_check_unseals_or_drops_the_zone_is_refused() {
        let z = init();
        let f = z.filters(Arc::new(SystemClock));
        refused(
            &f,
            "policy-update",
            b"zone private {\n  nonsense\n",
            "does not check",
        );
        refused(&f, "policy-update", b"levels \xff\n", "not UTF-8");
        let unsealed = DEFAULT_POLICY.replacen("\n  sealed\n", "\n", 1);
        assert_ne!(unsealed, DEFAULT_POLICY);
        refused(
            &f,
            "policy-update",
            unsealed.as_bytes(),
            "it unseals zone `classified`, which the installed policy seals",
        );
        let without_internet = "levels confidentiality public < secret\n\
             levels integrity untrusted < court\n\
             zone private {\n  confidentiality public\n  integrity court\n}\n\
             zone classified {\n  confidentiality secret\n  integrity court\n  sealed\n}\n";
        let checked = tianping_policies::check("p.tp", without_internet);
        assert_eq!(checked.errors().count(), 0, "the test's policy checks");
        refused(
            &f,
            "policy-update",
            without_internet.as_bytes(),
            "it has no zone `internet`",
        );
        // a zone whose installed policy is gone judges nothing
        std::fs::remove_file(z.dir.zone_policy(&z.zone)).unwrap();
        refused(
            &f,
            "policy-update",
            DEFAULT_POLICY.as_bytes(),
            "installed policy",
        );
    }

    #[test]
    fn install_filters_a_crl_of_a_zone_ca_is_accepted_until_its_next_update() {
        let z = init();
        let t0 = now();
        let clock = ManualClock::new(t0);
        let f = z.filters(Arc::new(clock.clone()));
        let private: ZoneName = "private".parse().unwrap();
        // the CRL `tianping init` made, and one freshly signed with a revocation
        let made = std::fs::read(z.dir.crl(&private)).unwrap();
        let out = accepted(&f, "crl", &made);
        assert_eq!(tianping_certs::certs_from_pem(&out).ok(), None);
        let ca = z.pki().zone_ca(&private).unwrap();
        let fresh = ca.crl(&[], t0, 7).unwrap();
        // text around the list is dropped by the rebuild
        let noisy = format!("a note before the list\n{fresh}");
        assert_eq!(accepted(&f, "crl", noisy.as_bytes()), fresh.as_bytes());
        // a DER list is taken too, and crosses as its PEM
        let der = pem_blocks(&fresh).unwrap().remove(0).der;
        assert_eq!(accepted(&f, "crl", &der), fresh.as_bytes());

        clock.advance(Duration::from_secs(8 * 24 * 3600));
        refused(&f, "crl", fresh.as_bytes(), "the crl expired at");
        accepted(&f, "crl", &made);
    }

    #[test]
    fn install_filters_a_crl_not_signed_by_a_zone_ca_of_the_installed_bundle_is_refused() {
        let z = init();
        let t0 = now();
        let f = z.filters(Arc::new(ManualClock::new(t0)));
        let private: ZoneName = "private".parse().unwrap();
        // another PKI's zone CA
        let other = CaCert::new_root("Elsewhere", KeyAlg::EcP256, t0).unwrap();
        let other_ca = other
            .new_zone(&private, "Elsewhere", KeyAlg::EcP256, t0)
            .unwrap();
        let foreign = other_ca.crl(&[], t0, 7).unwrap();
        refused(
            &f,
            "crl",
            foreign.as_bytes(),
            "not of a CA in the trust bundle",
        );
        // the court's root, not a zone's CA
        let by_root = z.root().crl(&[], t0, 7).unwrap();
        refused(&f, "crl", by_root.as_bytes(), "signed by the root");
        // two lists, no list, not a list
        let ca = z.pki().zone_ca(&private).unwrap();
        let one = ca.crl(&[], t0, 7).unwrap();
        refused(&f, "crl", format!("{one}{one}").as_bytes(), "2 crls");
        refused(&f, "crl", z.installed_trust().as_bytes(), "no crl");
        refused(&f, "crl", b"\x30\x03\x02\x01\x00", "bad crl");
        // with no installed trust bundle nothing is accepted
        std::fs::remove_file(z.dir.zone_trust_bundle(&z.zone)).unwrap();
        refused(&f, "crl", one.as_bytes(), "installed trust bundle");
    }

    #[test]
    fn install_filters_a_trust_bundle_rooted_in_the_installed_root_is_accepted() {
        let z = init();
        let f = z.filters(Arc::new(SystemClock));
        let installed = z.installed_trust();
        // the bundle as installed, with a comment that the rebuild drops
        let out = accepted(
            &f,
            "trust-bundle",
            format!("# the court\n{installed}").as_bytes(),
        );
        assert_eq!(
            tianping_certs::certs_from_pem(&out).unwrap(),
            tianping_certs::certs_from_pem(installed.as_bytes()).unwrap()
        );
        assert!(!String::from_utf8(out).unwrap().contains("# the court"));

        // a root rotation: the new root cross-signed by the old, the zones' CAs under the new
        let t0 = now();
        let (new_root, cross) = z
            .root()
            .new_root_cross_signed("Tianping Court", KeyAlg::EcP256, t0)
            .unwrap();
        let mut rotated = format!("{}{}", new_root.cert_pem(), cross);
        for zone in ["internet", "private"] {
            let zone: ZoneName = zone.parse().unwrap();
            let ca = new_root
                .new_zone(&zone, "Tianping Court", KeyAlg::EcP256, t0)
                .unwrap();
            rotated.push_str(ca.cert_pem());
        }
        accepted(&f, "trust-bundle", rotated.as_bytes());
        // the old root and its CAs beside the new ones, as during the change-over
        accepted(
            &f,
            "trust-bundle",
            format!("{installed}{rotated}").as_bytes(),
        );
    }

    #[test]
    fn install_filters_a_trust_bundle_that_brings_its_own_root_or_a_key_is_refused() {
        let z = init();
        let f = z.filters(Arc::new(SystemClock));
        let installed = z.installed_trust();
        let t0 = now();
        let internet: ZoneName = "internet".parse().unwrap();

        // a new root nobody vouched for (the same name, another key), with a zone CA under it
        let (new_root, _cross) = z
            .root()
            .new_root_cross_signed("Tianping Court", KeyAlg::EcP256, t0)
            .unwrap();
        let ca = new_root
            .new_zone(&internet, "Tianping Court", KeyAlg::EcP256, t0)
            .unwrap();
        refused(
            &f,
            "trust-bundle",
            format!("{}{}", new_root.cert_pem(), ca.cert_pem()).as_bytes(),
            "a new root that the installed root has not cross-signed",
        );
        // the same zone CA slipped in beside the installed bundle, without its root
        refused(
            &f,
            "trust-bundle",
            format!("{installed}{}", ca.cert_pem()).as_bytes(),
            "does not chain to the installed root",
        );
        // a cross-signature by another root does not count
        let stranger = CaCert::new_root("Elsewhere", KeyAlg::EcP256, t0).unwrap();
        let (_, cross_by_stranger) = stranger
            .new_root_cross_signed("Tianping Court", KeyAlg::EcP256, t0)
            .unwrap();
        refused(
            &f,
            "trust-bundle",
            format!("{installed}{cross_by_stranger}").as_bytes(),
            "does not chain to the installed root",
        );
        // only the root: no CA of the zone
        let root_only = z.root().cert_pem().to_owned();
        refused(
            &f,
            "trust-bundle",
            root_only.as_bytes(),
            "no CA of zone `internet`",
        );
        // a private key never crosses, not even beside good certificates
        let key = z.root().key_pem().expose().clone();
        refused(
            &f,
            "trust-bundle",
            format!("{installed}{key}").as_bytes(),
            "holds a `PRIVATE KEY` block",
        );
        refused(&f, "trust-bundle", b"not a bundle", "no certificate");
        refused(&f, "trust-bundle", b"\xff\xfe", "not PEM text");
    }

    // ---------------------------------------------------------------- the hostile corpus

    fn hostile() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crossdomain/tests/hostile")
    }

    /// This file's lines of the hostile corpus's manifest.
    const MINE: &[(&str, &str, &str, &str)] = &[
        (
            "crl-past-next-update.pem",
            "crl",
            "refuse",
            "the crl expired at",
        ),
        (
            "policy-update-crlf.tp",
            "policy-update",
            "accept",
            "CRLF made LF",
        ),
        (
            "policy-update-unseals.tp",
            "policy-update",
            "refuse",
            "it unseals zone `classified`",
        ),
    ];

    /// When the corpus's files were made: the CRL's `nextUpdate` is 7 days later.
    const MADE: u64 = 1_780_000_000;

    #[test]
    fn install_filters_hostile_updates() {
        if std::env::var_os("CROSSDOMAIN_WRITE_HOSTILE").is_some() {
            write(&hostile());
        }
        let z = init();
        // The CRL file carries the CA certificates it was signed under (the filter reads only
        // the list): they are this zone's installed trust bundle for the test.
        let crl = std::fs::read(hostile().join("crl-past-next-update.pem")).unwrap();
        let certs: String = pem_blocks(std::str::from_utf8(&crl).unwrap())
            .unwrap()
            .iter()
            .filter(|b| b.label == "CERTIFICATE")
            .map(|b| pem_encode("CERTIFICATE", &b.der))
            .collect();
        std::fs::write(z.dir.zone_trust_bundle(&z.zone), certs).unwrap();
        let clock = ManualClock::new(UnixTime::from_secs(MADE + 8 * 24 * 3600));
        let f = z.filters(Arc::new(clock.clone()));

        let manifest = std::fs::read_to_string(hostile().join("manifest.tsv")).unwrap();
        let mut seen = 0;
        for line in manifest.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            let [file, kind, outcome, reason] = cols[..] else {
                continue;
            };
            if !MINE.iter().any(|m| m.0 == file) {
                continue;
            }
            seen += 1;
            let bytes = std::fs::read(hostile().join(file)).unwrap();
            match outcome {
                "refuse" => refused(&f, kind, &bytes, reason),
                _ => {
                    let out = accepted(&f, kind, &bytes);
                    assert!(!out.contains(&b'\r'), "{file}");
                }
            }
        }
        assert_eq!(
            seen,
            MINE.len(),
            "every file of this test has its manifest line"
        );
        // and before its nextUpdate the same CRL is accepted
        clock.set(UnixTime::from_secs(MADE + 3600));
        accepted(&f, "crl", &crl);
    }

    /// Writes this test's corpus files and merges its lines into the manifest (others' lines
    /// kept, sorted by file name): `CROSSDOMAIN_WRITE_HOSTILE=1`.
    fn write(d: &Path) {
        let put = |name: &str, bytes: &[u8]| std::fs::write(d.join(name), bytes).unwrap();
        let unsealed = DEFAULT_POLICY.replacen("\n  sealed\n", "\n", 1);
        put("policy-update-unseals.tp", unsealed.as_bytes());
        put(
            "policy-update-crlf.tp",
            format!("{DEFAULT_POLICY}\n# amended\n")
                .replace('\n', "\r\n")
                .as_bytes(),
        );
        let made = UnixTime::from_secs(MADE);
        let root = CaCert::new_root("Tianping Court", KeyAlg::EcP256, made).unwrap();
        let internet: ZoneName = "internet".parse().unwrap();
        let ca = root
            .new_zone(&internet, "Tianping Court", KeyAlg::EcP256, made)
            .unwrap();
        let crl = ca.crl(&[], made, 7).unwrap();
        put(
            "crl-past-next-update.pem",
            format!("{}{}{crl}", root.cert_pem(), ca.cert_pem()).as_bytes(),
        );

        let path = d.join("manifest.tsv");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let mut header = String::new();
        let mut rows: BTreeMap<String, String> = BTreeMap::new();
        for line in old.lines() {
            if line.starts_with('#') {
                header.push_str(line);
                header.push('\n');
            } else if let Some((file, _)) = line.split_once('\t') {
                rows.insert(file.to_owned(), line.to_owned());
            }
        }
        for (file, kind, outcome, reason) in MINE {
            rows.insert(
                (*file).to_owned(),
                format!("{file}\t{kind}\t{outcome}\t{reason}"),
            );
        }
        let mut text = header;
        for line in rows.values() {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(path, text).unwrap();
    }
}
