//! The hostile corpus (`crossdomain/tests/hostile/manifest.tsv`) through `tianping exchange
//! submit` against a running sender and receiver of a data folder from `tianping init`, on a
//! test flow that allows every kind the manifest declares (`internet` to `external`, delivered
//! into `bank-gateway`'s folder):
//! - each file the manifest refuses is refused by the submit with the manifest's reason, the
//!   refusal is in the sender's audit log (`transfer` deny, with that reason), and nothing of it
//!   is spooled or delivered;
//! - each file it accepts is accepted, received and delivered rebuilt: the delivered bytes are
//!   the filter's rebuild (which passes the filter again unchanged), read again by a reader
//!   other than the filter where this crate has one (serde_json for JSON; the chunk, marker or
//!   box structure for PNG, JPEG and MP4).
//!
//! A kind the manifest declares that the binary has no filter for (yet) must be refused with
//! "no filter can rebuild kind" for every row of it, whatever the manifest expects; the test
//! says so on its output and holds the kind's rows to that. Kinds the binary must filter are
//! [`FILTERED`]: theirs are held to the manifest. The rows of a CRL or a trust bundle
//! ([`PKI_BOUND`]) are made for another PKI than the fresh data folder's and must be refused
//! by their filter.

#[path = "common/exchange.rs"]
mod exchange;

#[expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests fail loudly"
)]
mod hostile {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use tianping_certs::{TokenClaims, TokenSigner, UserClaims};
    use tianping_core::{Acr, Clearance, Component, Role};
    use tianping_crossdomain::{
        FilterInput, Filters, JpegFilter, JsonFilter, Mp4Filter, OfdFilter, PdfFilter, PngFilter,
        TextFilter,
    };

    use super::exchange::{Setup, deadline, receiver, sender, setup, tianping};

    /// The kinds the binary registers a filter for: their rows must go as the manifest says.
    const FILTERED: [&str; 5] = ["text", "json", "png", "jpeg", "mp4"];

    /// The kinds checked against the zone's own PKI (a CRL signed by its CA, a trust bundle
    /// chaining to its root): a fresh `tianping init` has a PKI of its own, so the corpus's
    /// files of these kinds, made for another, must each be refused by their filter here,
    /// whatever the manifest expects of them on the PKI they were made for.
    const PKI_BOUND: [&str; 2] = ["crl", "trust-bundle"];

    const FLOW: &str = "hostile-corpus";
    const SERVICE: &str = "bank-gateway";
    const STEPS: [&str; 3] = ["validate", "rebuild", "strip-metadata"];

    fn corpus() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crossdomain/tests/hostile")
    }

    /// One line of the manifest.
    #[derive(Debug, Clone)]
    struct Row {
        file: String,
        declared: String,
        accept: bool,
        reason: String,
    }

    impl Row {
        /// (kind, schema) of the declared kind: `json(NAME)` is kind `json`, schema NAME.
        fn kind(&self) -> (&str, Option<&str>) {
            match self
                .declared
                .strip_prefix("json(")
                .and_then(|s| s.strip_suffix(')'))
            {
                Some(schema) => ("json", Some(schema)),
                None => (&self.declared, None),
            }
        }
    }

    fn manifest() -> Vec<Row> {
        let text = std::fs::read_to_string(corpus().join("manifest.tsv")).unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                let [file, declared, outcome, reason] = cols[..] else {
                    panic!("bad manifest line {line:?}");
                };
                assert!(
                    ["accept", "refuse"].contains(&outcome),
                    "bad outcome in {line:?}"
                );
                Row {
                    file: file.to_owned(),
                    declared: declared.to_owned(),
                    accept: outcome == "accept",
                    reason: reason.to_owned(),
                }
            })
            .collect()
    }

    /// The test flow, allowing every kind in `kinds`, in the policy and every zone's copy: a
    /// release that refuses no label and needs one other lawyer's approval, so the filters run
    /// as for a release (text they cannot decode for the marking check is refused), as the
    /// corpus expects. A
    /// `json(NAME)` whose schema is not beside the policy gets a permissive one there, so the
    /// policy checks (the binary's JSON filter knows only its own schemas, and refuses it).
    fn add_flow(s: &Setup, kinds: &BTreeSet<String>) {
        let flow = format!(
            "\n# the hostile corpus test's flow\nflow {FLOW} internet -> external {{\n  kinds {}\n  \
             max-size 64MiB\n  submitters lawyer\n  deliver {SERVICE}\n  sanitize {}\n  \
             release {{\n    approvers 1 of lawyer\n  }}\n}}\n",
            kinds.iter().cloned().collect::<Vec<_>>().join(", "),
            STEPS.join(", ")
        );
        let mut places = vec![(s.dir.policy(), s.dir.schemas())];
        for zone in std::fs::read_dir(s.data.join("zones")).unwrap() {
            let z = zone.unwrap().path();
            places.push((z.join("policy.tp"), z.join("schemas")));
        }
        for (policy, schemas) in places.into_iter().filter(|(p, _)| p.exists()) {
            let mut text = std::fs::read_to_string(&policy).unwrap();
            text.push_str(&flow);
            std::fs::write(&policy, text).unwrap();
            for k in kinds {
                if let Some(name) = k.strip_prefix("json(").and_then(|k| k.strip_suffix(')')) {
                    let file = schemas.join(format!("{name}.json"));
                    if !file.exists() {
                        std::fs::create_dir_all(&schemas).unwrap();
                        std::fs::write(file, "{}").unwrap();
                    }
                }
            }
        }
        let check = tianping(&s.data)
            .args(["policy", "check"])
            .arg(s.dir.policy())
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "the test policy with every kind of the manifest ({kinds:?}) does not check: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }

    static TOKENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// A fresh user token of lawyer `sub`, signed by the sending zone's gateway, in a file.
    fn lawyer(s: &Setup, sub: &str) -> PathBuf {
        let (cert, key) = s.dir.node(&s.link.from, Component::Gateway);
        let signer =
            tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
        let chain = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap();
        let token = TokenSigner::new(Arc::new(signer), &chain)
            .unwrap()
            .sign(
                &TokenClaims::User(UserClaims {
                    sub: sub.parse().unwrap(),
                    roles: vec![Role::Lawyer],
                    court: Some("bj.01".parse().unwrap()),
                    acr: Acr::Otp,
                    clearance: Clearance::None,
                }),
                "exchange-sender",
                tianping_core::Clock::now(&tianping_core::SystemClock),
                Duration::from_secs(60),
            )
            .unwrap();
        let n = TOKENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = s.tmp.path().join(format!("{sub}-{n}.token"));
        std::fs::write(&path, token).unwrap();
        path
    }

    /// `tianping exchange submit` of the row's file: (success, stdout, stderr in one line).
    fn submit(s: &Setup, row: &Row) -> (bool, String, String) {
        let (kind, schema) = row.kind();
        let mut cmd = tianping(&s.data);
        cmd.args(["exchange", "submit", "--zone", s.link.from.as_str()])
            .args(["--flow", FLOW, "--kind", kind, "--file"])
            .arg(corpus().join(&row.file))
            .arg("--as-user")
            .arg(lawyer(s, "p-lawyer-1"));
        if let Some(schema) = schema {
            cmd.args(["--schema", schema]);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr)
                .replace(['│', '×'], " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// Without any whitespace, so a reason wrapped over lines (and cut at a hyphen) still
    /// matches.
    fn squash(s: &str) -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && !['│', '×'].contains(c))
            .collect()
    }

    /// The filters this crate has, run as the flow asks: the delivered bytes must be their
    /// rebuild.
    fn local_filters() -> Filters {
        let mut f = Filters::new();
        f.register(Arc::new(TextFilter::new()));
        f.register(Arc::new(JsonFilter::with_default_schemas().unwrap()));
        f.register(Arc::new(PngFilter::default()));
        f.register(Arc::new(JpegFilter::default()));
        f.register(Arc::new(Mp4Filter::default()));
        f.register(Arc::new(PdfFilter::default()));
        f.register(Arc::new(OfdFilter::default()));
        f
    }

    fn be32(b: &[u8], at: usize) -> usize {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize
    }

    /// `tool args... FILE` run over `bytes` (written to a file of their own), which must
    /// succeed; its standard output. The readers are Debian packages `.ci/run` installs.
    fn reader(tool: &str, args: &[&str], name: &str, bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new(tool)
            .args(args)
            .arg(&path)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `{tool}` ({e}): `.ci/run` installs the independent readers")
            });
        assert!(
            out.status.success(),
            "{name}: `{tool}` refuses the delivered copy: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A PDF's page count as `pdfinfo` (poppler) reads it.
    fn pages(name: &str, pdf: &[u8]) -> String {
        let info = reader("pdfinfo", &[], name, pdf);
        info.lines()
            .find_map(|l| l.strip_prefix("Pages:"))
            .map(|n| n.trim().to_owned())
            .unwrap_or_else(|| panic!("{name}: pdfinfo gives no page count: {info}"))
    }

    /// The words of a text, for comparing what two readers extract.
    fn words(text: &str) -> Vec<&str> {
        text.split_whitespace().collect()
    }

    /// The delivered file read again by readers other than the filter: Debian's own tools
    /// (`jq`, `qpdf` and poppler's `pdfinfo`/`pdftotext`, `pngcheck`, libjpeg-turbo's `djpeg`,
    /// `unzip` and libxml2's `xmllint`), and this test's own walk of PNG chunks, JPEG markers
    /// and MP4 boxes.
    fn read_again(row: &Row, original: &[u8], got: &[u8]) {
        let file = &row.file;
        match row.kind().0 {
            "json" => {
                let a: serde_json::Value = serde_json::from_slice(original).unwrap();
                let b: serde_json::Value = serde_json::from_slice(got).unwrap();
                assert_eq!(a, b, "{file}: the delivered JSON means something else");
                let jq = reader("jq", &["-c", "."], file, got);
                let c: serde_json::Value = serde_json::from_str(&jq).unwrap();
                assert_eq!(a, c, "{file}: jq reads the delivered JSON otherwise");
            }
            "pdf" => {
                reader("qpdf", &["--check"], file, got);
                assert_eq!(pages(file, got), pages(file, original), "{file}: pages");
                // What a reader shows of the latest revision is what crossed, word for word.
                let text = |pdf: &[u8]| {
                    let dir = tempfile::tempdir().unwrap();
                    let out = dir.path().join("text.txt");
                    let path = dir.path().join("in.pdf");
                    std::fs::write(&path, pdf).unwrap();
                    let ok = std::process::Command::new("pdftotext")
                        .args(["-q", "-enc", "UTF-8"])
                        .arg(&path)
                        .arg(&out)
                        .status()
                        .unwrap()
                        .success();
                    assert!(ok, "{file}: pdftotext refuses it");
                    std::fs::read_to_string(out).unwrap()
                };
                assert_eq!(
                    words(&text(got)),
                    words(&text(original)),
                    "{file}: the delivered copy shows other text"
                );
            }
            "ofd" => {
                reader("unzip", &["-tq"], file, got);
                let list = reader("unzip", &["-Z1"], file, got);
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join(file);
                std::fs::write(&path, got).unwrap();
                for entry in list.lines().filter(|e| e.ends_with(".xml")) {
                    let xml = std::process::Command::new("unzip")
                        .arg("-p")
                        .arg(&path)
                        .arg(entry)
                        .output()
                        .unwrap()
                        .stdout;
                    reader(
                        "xmllint",
                        &["--noout", "--nonet"],
                        entry.replace('/', "_").as_str(),
                        &xml,
                    );
                }
                assert!(
                    list.lines().any(|e| e.ends_with("OFD.xml")),
                    "{file}: {list}"
                );
            }
            "text" => assert!(std::str::from_utf8(got).is_ok(), "{file}"),
            "png" => {
                reader("pngcheck", &["-q"], file, got);
                let mut at = 8;
                let mut chunks = Vec::new();
                while at + 8 <= got.len() {
                    chunks.push(String::from_utf8_lossy(&got[at + 4..at + 8]).into_owned());
                    at += 12 + be32(got, at);
                }
                assert_eq!(at, got.len(), "{file}: chunks do not fill the file");
                assert_eq!(chunks.first().map(String::as_str), Some("IHDR"), "{file}");
                assert_eq!(chunks.last().map(String::as_str), Some("IEND"), "{file}");
                assert!(
                    chunks
                        .iter()
                        .all(|c| ["IHDR", "IDAT", "IEND"].contains(&c.as_str())),
                    "{file}: {chunks:?}"
                );
            }
            "jpeg" => {
                reader("djpeg", &["-outfile", "/dev/null"], file, got);
                assert!(
                    got.starts_with(b"\xff\xd8") && got.ends_with(b"\xff\xd9"),
                    "{file}"
                );
                for needle in [&b"Exif"[..], b"http://ns.adobe.com/xap", b"PK\x03\x04"] {
                    assert!(!got.windows(needle.len()).any(|w| w == needle), "{file}");
                }
            }
            "mp4" => {
                let mut at = 0;
                let mut boxes = Vec::new();
                while at + 8 <= got.len() {
                    boxes.push(String::from_utf8_lossy(&got[at + 4..at + 8]).into_owned());
                    at += be32(got, at);
                }
                assert_eq!(at, got.len(), "{file}: boxes do not fill the file");
                assert_eq!(boxes, ["ftyp", "moov", "mdat"], "{file}");
                for needle in [&b"udta"[..], b"meta", b"Judge Wang"] {
                    assert!(!got.windows(needle.len()).any(|w| w == needle), "{file}");
                }
            }
            _ => assert!(!got.is_empty(), "{file}"),
        }
    }

    /// The sending zone's `transfer` decisions, from its audit log once the sender stopped.
    fn decisions(s: &Setup) -> Vec<tianping_audit::Event> {
        let log = tianping_audit::AuditLog::open(
            &s.dir.audit_log(&s.link.from, Component::ExchangeSender),
        )
        .unwrap();
        log.entries(0)
            .map(|r| r.unwrap().event)
            .filter(|e| e.action == "transfer")
            .collect()
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "the corpus, file by file")]
    fn every_hostile_file_is_refused_and_every_clean_one_delivered_rebuilt() {
        let rows = manifest();
        assert!(rows.len() >= 25, "the corpus has {} files", rows.len());
        let kinds: BTreeSet<String> = rows.iter().map(|r| r.declared.clone()).collect();
        let s = setup("127.0.0.1:0");
        add_flow(&s, &kinds);
        let by = deadline(300);
        let mut rx = receiver(&s, &[], by);
        let tx = sender(&s, &[], by);

        // Each row through the sender, in the manifest's order.
        let mut unfiltered: BTreeMap<String, usize> = BTreeMap::new();
        // Each refused row with what its refusal (and its audit record) must say.
        let mut refused: Vec<(&Row, String)> = Vec::new();
        let mut accepted: Vec<(&Row, String)> = Vec::new();
        for row in &rows {
            let (kind, _) = row.kind();
            let (good, out, err) = submit(&s, row);
            if !FILTERED.contains(&kind) && !good && err.contains("no filter can rebuild kind") {
                *unfiltered.entry(kind.to_owned()).or_default() += 1;
                refused.push((row, "no filter can rebuild kind".to_owned()));
                continue;
            }
            if PKI_BOUND.contains(&kind) {
                assert!(!good, "{}: accepted as {out}", row.file);
                let why = format!("{kind} filter refused it");
                assert!(err.contains(&why), "{}: {err}", row.file);
                println!("{}: refused by this data folder's PKI: {err}", row.file);
                refused.push((row, why));
                continue;
            }
            if row.accept {
                assert!(good, "{}: refused: {err}", row.file);
                assert!(out.starts_with("internet:"), "{}: {out}", row.file);
                assert!(err.contains("held for approval"), "{}: {err}", row.file);
                let approve = tianping(&s.data)
                    .args(["exchange", "approve", "--zone", s.link.from.as_str()])
                    .args(["--transfer", &out, "--as-user"])
                    .arg(lawyer(&s, "p-lawyer-2"))
                    .output()
                    .unwrap();
                let said = String::from_utf8_lossy(&approve.stdout);
                assert!(
                    approve.status.success() && said.contains("released"),
                    "{}: approve: {said}{}",
                    row.file,
                    String::from_utf8_lossy(&approve.stderr)
                );
                accepted.push((row, out));
            } else {
                assert!(!good, "{}: accepted as {out}", row.file);
                assert!(
                    squash(&err).contains(&squash(&row.reason)),
                    "{}: refused, but not for `{}`: {err}",
                    row.file,
                    row.reason
                );
                refused.push((row, row.reason.clone()));
            }
        }
        for (kind, n) in &unfiltered {
            let all = rows.iter().filter(|r| r.kind().0 == kind).count();
            assert_eq!(
                *n, all,
                "kind `{kind}`: some rows were filtered, {n} of {all} refused for want of a filter"
            );
            println!("kind `{kind}` has no filter in the binary yet: its {n} files were refused");
        }

        // Every accepted one is received and delivered.
        let mut waiting: BTreeSet<String> = accepted.iter().map(|(_, id)| id.clone()).collect();
        let mut seen = Vec::new();
        while !waiting.is_empty() {
            let line = rx.expect_line(by);
            assert!(!line.contains("refused"), "{line}");
            if let Some(id) = line
                .strip_prefix("transfer ")
                .and_then(|l| l.split_once(" delivered to "))
            {
                waiting.remove(id.0);
            }
            seen.push(line);
            assert!(seen.len() < 10_000, "{waiting:?} never delivered");
        }
        drop(tx);
        drop(rx);

        // The delivered files: the filter's rebuild, read again, and nothing else.
        let folder = s.dir.delivery(&s.link.to, SERVICE);
        let local = local_filters();
        let mut want_files = BTreeSet::new();
        for (row, id) in &accepted {
            let (kind, schema) = row.kind();
            let name = tianping_crossdomain::folder_name(id, kind);
            let got = std::fs::read(folder.join(&name))
                .unwrap_or_else(|e| panic!("{}: {name} not delivered: {e}", row.file));
            let original = std::fs::read(corpus().join(&row.file)).unwrap();
            let input = FilterInput {
                kind,
                schema,
                steps: &STEPS,
                max_size: 64 << 20,
                release: true,
            };
            if local.get(kind).is_some() {
                let rebuilt = local.run(&input, &original).unwrap();
                assert_eq!(
                    got, rebuilt.bytes,
                    "{}: delivered is not the rebuild",
                    row.file
                );
                let again = local.run(&input, &got).unwrap();
                assert_eq!(
                    again.bytes, got,
                    "{}: the rebuild is not idempotent",
                    row.file
                );
            }
            read_again(row, &original, &got);
            want_files.insert(name.clone());
            want_files.insert(format!("{name}.manifest.json"));
        }
        let files: BTreeSet<String> = std::fs::read_dir(&folder)
            .map(|d| {
                d.map(Result::unwrap)
                    .filter(|e| e.file_type().unwrap().is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            files, want_files,
            "the delivery folder holds exactly the accepted files"
        );

        // The sender's audit log: each refusal with its reason, in order; only the accepted
        // were spooled, as the link's transfers 1 to n.
        let events = decisions(&s);
        let denied: Vec<_> = events
            .iter()
            .filter(|e| e.outcome == "deny" && !e.attributes.contains_key("held"))
            .collect();
        let allowed: Vec<_> = events.iter().filter(|e| e.outcome == "allow").collect();
        assert_eq!(denied.len(), refused.len(), "{denied:#?}");
        for (e, (row, why)) in denied.iter().zip(&refused) {
            assert!(
                squash(&e.reason).contains(&squash(why)),
                "{}: audited as {:?}",
                row.file,
                e.reason
            );
            assert_eq!(e.flow, FLOW);
        }
        let mut link_ids: Vec<u64> = allowed
            .iter()
            .map(|e| e.attributes["link_transfer"].parse().unwrap())
            .collect();
        link_ids.sort_unstable();
        assert_eq!(link_ids, (1..=accepted.len() as u64).collect::<Vec<_>>());
        let kinds_done: BTreeSet<&str> = accepted.iter().map(|(r, _)| r.kind().0).collect();
        for k in FILTERED {
            assert!(
                kinds_done.contains(k),
                "no clean `{k}` file in the corpus was delivered"
            );
        }
    }
}
