//! Replays the checked-in fuzz corpora of this crate's targets on stable, and checks that the
//! valid seeds still decode (so the fuzzer starts from real inputs).
//!
//! `CROSSDOMAIN_WRITE_SEEDS=1 cargo test -p tianping-crossdomain --test fuzz_corpus` rewrites
//! the seeds.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::PathBuf;

use tianping_core::{Algorithm, PolicyHash, RingSigner, Role, UnixTime};
use tianping_crossdomain::{
    BundleHeader, ChunkHasher, Datagram, LinkConfig, Manifest, Sender, Submitter, internal,
};

fn corpus(target: &str) -> PathBuf {
    tianping_core::internal::corpus_dir(target)
}

fn replay(target: &str, f: fn(&[u8])) {
    for (_, data) in tianping_core::internal::corpus(target).unwrap() {
        f(&data);
    }
}

fn seed(target: &str, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(corpus(target)).unwrap();
    std::fs::write(corpus(target).join(name), bytes).unwrap();
}

/// A seeded xorshift generator: the same mutations on every run.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// `seed` with one to four mutations drawn from `next`: a cut (never to nothing), an inserted
/// byte or a flipped bit, and with `box_sizes` also a box size (the four bytes before a box
/// type) made larger or smaller.
fn mutate(seed: &[u8], next: &mut impl FnMut() -> u64, box_sizes: bool) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + next() % 4 {
        let len = d.len().max(1) as u64;
        let at = usize::try_from(next() % len).unwrap();
        match next() % if box_sizes { 5 } else { 4 } {
            0 => d.truncate(at.max(1)),
            1 => d.insert(at.min(d.len()), next().to_le_bytes()[0]),
            2 if box_sizes => {
                if let Some(b) = d.get_mut(at & !3) {
                    *b = b.wrapping_add(next().to_le_bytes()[0] % 3);
                }
            }
            _ => {
                if let Some(b) = d.get_mut(at) {
                    *b ^= 1 << (next() % 8);
                }
            }
        }
    }
    d
}

fn sample(size: u64, chunk_size: u32) -> Manifest {
    Manifest {
        flow: "audit-to-security".into(),
        source: "private".parse().unwrap(),
        destination: "classified".parse().unwrap(),
        kind: "audit-batch".into(),
        content_type: "application/vnd.tianping.audit-batch".into(),
        schema: None,
        size,
        chunk_size,
        chunks_hash: [0; 32],
        submitter: Submitter {
            subject: "node-audit-1".parse().unwrap(),
            roles: vec![Role::Auditor],
            machine: true,
        },
        labels: vec!["audit".into()],
        redacted: false,
        correlation: Some("c-2026-0001".into()),
        time: UnixTime::from_millis(1_764_000_000_000),
        sequence: 1,
        policy_hash: PolicyHash::of(b"policy"),
    }
}

fn bundle(alg: Algorithm, payload: &[u8]) -> Vec<u8> {
    let (signer, _) = RingSigner::generate(alg).unwrap();
    let mut h = ChunkHasher::new(16).unwrap();
    h.update(payload);
    let (size, table) = h.finish();
    let header = BundleHeader::sign(
        sample(size, 16),
        vec![b"approved".to_vec()],
        table,
        b"der".to_vec(),
        &signer,
    )
    .unwrap();
    let mut out = header.encode().unwrap();
    out.extend_from_slice(payload);
    out
}

/// Rewrites the seeds once per run when `CROSSDOMAIN_WRITE_SEEDS` is set.
fn maybe_write_seeds() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("CROSSDOMAIN_WRITE_SEEDS").is_some() {
        ONCE.call_once(write_seeds);
    }
}

fn write_seeds() {
    let m = sample(40, 16).encode().unwrap();
    seed("manifest", "full.bin", &m);
    seed("manifest", "truncated.bin", m.get(..30).unwrap());
    for alg in Algorithm::ALL {
        seed(
            "bundle",
            &format!("{alg}.bundle"),
            &bundle(*alg, b"forty bytes of an audit batch, in 3 chunks"),
        );
    }
    seed("bundle", "empty.bundle", &bundle(Algorithm::Ed25519, b""));
    let b = bundle(Algorithm::Ed25519, b"cut short");
    seed("bundle", "truncated.bundle", b.get(..b.len() - 3).unwrap());

    let mut sender = Sender::new(LinkConfig::new(2), 5).unwrap();
    sender.submit(1, Box::new(b"a transfer".to_vec())).unwrap();
    let mut out = Vec::new();
    sender.next_datagram(&mut out).unwrap();
    seed("datagram", "symbol.bin", &out);
    sender.heartbeat(&mut out).unwrap();
    seed("datagram", "heartbeat.bin", &out);
    *out.get_mut(30).unwrap() ^= 4;
    seed("datagram", "flipped.bin", &out);
}

#[test]
fn manifest_corpus() {
    maybe_write_seeds();
    replay("manifest", internal::fuzz_manifest);
    let full = std::fs::read(corpus("manifest").join("full.bin")).unwrap();
    assert!(
        Manifest::decode(&full).is_ok(),
        "the manifest seed is stale"
    );
}

#[test]
fn bundle_corpus() {
    maybe_write_seeds();
    replay("bundle", internal::fuzz_bundle);
    for alg in Algorithm::ALL {
        let b = std::fs::read(corpus("bundle").join(format!("{alg}.bundle"))).unwrap();
        let h = BundleHeader::decode(b.get(4..b.len() - 42).unwrap()).unwrap();
        assert_eq!(h.chunk_table.len(), 3, "the bundle seed is stale");
    }
}

#[test]
fn datagram_corpus() {
    maybe_write_seeds();
    replay("datagram", internal::fuzz_datagram);
    for name in ["symbol.bin", "heartbeat.bin"] {
        let d = std::fs::read(corpus("datagram").join(name)).unwrap();
        assert!(Datagram::decode(&d).is_ok(), "the seed {name} is stale");
    }
    let d = std::fs::read(corpus("datagram").join("flipped.bin")).unwrap();
    assert!(Datagram::decode(&d).is_err());
}

/// A short seeded mutation run over every seed on stable (the fuzzer proper needs nightly):
/// flipped bytes, cuts and splices never make a decoder panic.
#[test]
fn mutated_seeds_never_panic() {
    maybe_write_seeds();
    let mut next = xorshift(0x5eed_u64);
    type Hook = fn(&[u8]);
    let targets: [(&str, Hook); 3] = [
        ("manifest", internal::fuzz_manifest),
        ("bundle", internal::fuzz_bundle),
        ("datagram", internal::fuzz_datagram),
    ];
    for (target, f) in targets {
        for (_, seed) in tianping_core::internal::corpus(target).unwrap() {
            for _ in 0..500 {
                let mut d = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let len = d.len().max(1) as u64;
                    let at = usize::try_from(next() % len).unwrap();
                    match next() % 4 {
                        0 => d.truncate(at),
                        1 => d.insert(at.min(d.len()), next().to_le_bytes()[0]),
                        _ => {
                            if let Some(b) = d.get_mut(at) {
                                *b ^= 1 << (next() % 8);
                            }
                        }
                    }
                }
                f(&d);
            }
        }
    }
}

/// The content filters' corpora (`filter_text`, `filter_json`, `filter_image`, and
/// `filter_receipt`, whose seeds [`receipt_corpus`] writes): the hostile corpus's files of those
/// kinds, the JSON seeds prefixed with the byte that picks their schema
/// (0 `any`, 1 `assistance-notice`, 2 `case-file`, 3 `casework-form`, 4 `filing-form`,
/// 5 `inquiry-result`) and the image seeds with 0 (PNG) or 1 (JPEG). Replayed, and mutated
/// with a seeded generator: no filter panics, and what one accepts passes it again unchanged.
#[test]
fn filter_corpora() {
    type Hook = fn(&[u8]);
    let targets: [(&str, Hook, usize); 4] = [
        ("filter_text", internal::fuzz_filter_text, 300),
        ("filter_json", internal::fuzz_filter_json, 100),
        ("filter_image", internal::fuzz_filter_image, 40),
        ("filter_receipt", internal::fuzz_filter_receipt, 100),
    ];
    let mut next = xorshift(0xf11e_u64);
    for (target, f, rounds) in targets {
        let seeds = tianping_core::internal::corpus(target).unwrap();
        assert!(seeds.len() >= 5, "{target} has {} seeds", seeds.len());
        for (_, seed) in seeds {
            f(&seed);
            for _ in 0..rounds {
                f(&mutate(&seed, &mut next, false));
            }
        }
    }
}

/// The `filter_receipt` seeds: delivery receipts signed with each algorithm, a read receipt, one
/// cut short, one with a flipped bit, and JSON that is no receipt. Written with
/// `CROSSDOMAIN_WRITE_SEEDS=1`; the valid ones must still pass the filter.
#[test]
fn receipt_corpus() {
    use tianping_crossdomain::{Receipt, ReceiptKind, Receipting};
    let sign = |alg: Algorithm, kind: ReceiptKind, reader: Option<&str>| {
        let (signer, _) = RingSigner::generate(alg).unwrap();
        let zone = "private".parse().unwrap();
        let reader: Option<tianping_core::SubjectId> = reader.map(|r| r.parse().unwrap());
        Receipt::sign(
            &Receipting {
                kind,
                transfer_id: "internet:42",
                content_hash: [0x5a; 32],
                service: "filing-intake",
                zone: &zone,
                reader: reader.as_ref(),
                time: UnixTime::from_millis(1_764_000_000_000),
            },
            vec![b"node certificate".to_vec(), b"zone ca".to_vec()],
            &signer,
        )
        .unwrap()
        .encode()
        .unwrap()
    };
    if std::env::var_os("CROSSDOMAIN_WRITE_SEEDS").is_some() {
        let t = "filter_receipt";
        for alg in Algorithm::ALL {
            seed(
                t,
                &format!("delivery-{alg}.bin"),
                &sign(*alg, ReceiptKind::Delivery, None),
            );
        }
        let read = sign(Algorithm::Ed25519, ReceiptKind::Read, Some("i-lawyer-1"));
        seed(t, "read.bin", &read);
        seed(t, "truncated.bin", read.get(..read.len() - 5).unwrap());
        let mut flipped = read.clone();
        *flipped.get_mut(20).unwrap() ^= 2;
        seed(t, "flipped.bin", &flipped);
        seed(t, "not-a-receipt.json", b"{\"receipt\": \"internet:42\"}");
    }
    replay("filter_receipt", internal::fuzz_filter_receipt);
    for alg in Algorithm::ALL {
        let b =
            std::fs::read(corpus("filter_receipt").join(format!("delivery-{alg}.bin"))).unwrap();
        assert!(Receipt::decode(&b).is_ok(), "the receipt seed is stale");
    }
    let flipped = std::fs::read(corpus("filter_receipt").join("flipped.bin")).unwrap();
    assert!(Receipt::decode(&flipped).is_err());
}

/// The `filter_mp4` seeds (the hostile corpus's `mp4-*` files, written with it by
/// `CROSSDOMAIN_WRITE_HOSTILE=1 cargo test -p tianping-crossdomain --lib filter::mp4`),
/// replayed and mutated with a seeded generator (bytes flipped, cut, inserted and box sizes
/// changed); the clean seeds must still pass.
#[test]
fn filter_mp4_corpus() {
    let seeds = tianping_core::internal::corpus("filter_mp4").unwrap();
    assert!(seeds.len() >= 5, "filter_mp4 has {} seeds", seeds.len());
    let mut next = xorshift(0x3d4_u64);
    for (path, seed) in seeds {
        internal::fuzz_filter_mp4(&seed);
        for _ in 0..200 {
            internal::fuzz_filter_mp4(&mutate(&seed, &mut next, true));
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if ["mp4-clean.mp4", "mp4-udta-metadata.mp4"].contains(&name.as_str()) {
            use tianping_crossdomain::{Filter, FilterInput, Mp4Filter};
            let input = FilterInput {
                kind: "mp4",
                schema: None,
                steps: &["validate"],
                max_size: 1 << 20,
                release: false,
            };
            assert!(
                Mp4Filter::default().run(&input, &seed).is_ok(),
                "the seed {name} is stale"
            );
        }
    }
}

/// The `filter_pdf` and `filter_ofd` seeds (the hostile corpus's `pdf-*` and `ofd-*` files,
/// copied from `crossdomain/tests/hostile/`), replayed and mutated with a seeded generator
/// (bytes flipped, cut and inserted); the clean seeds must still pass.
#[test]
fn filter_pdf_and_ofd_corpora() {
    type Hook = fn(&[u8]);
    let targets: [(&str, Hook, &[&str]); 2] = [
        (
            "filter_pdf",
            internal::fuzz_filter_pdf,
            &[
                "pdf-clean.pdf",
                "pdf-cid-tounicode.pdf",
                "pdf-incremental-redaction.pdf",
            ],
        ),
        ("filter_ofd", internal::fuzz_filter_ofd, &["ofd-clean.ofd"]),
    ];
    let mut next = xorshift(0x0fd_u64);
    for (target, f, clean) in targets {
        let seeds = tianping_core::internal::corpus(target).unwrap();
        assert!(seeds.len() >= 5, "{target} has {} seeds", seeds.len());
        for (path, seed) in seeds {
            f(&seed);
            for _ in 0..150 {
                f(&mutate(&seed, &mut next, false));
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if clean.contains(&name.as_str()) {
                use tianping_crossdomain::{Filter, FilterInput, OfdFilter, PdfFilter};
                let kind = if target == "filter_pdf" { "pdf" } else { "ofd" };
                let input = FilterInput {
                    kind,
                    schema: None,
                    steps: &["validate"],
                    max_size: 1 << 20,
                    release: true,
                };
                let ok = if kind == "pdf" {
                    PdfFilter::default().run(&input, &seed).is_ok()
                } else {
                    OfdFilter::default().run(&input, &seed).is_ok()
                };
                assert!(ok, "the seed {name} is stale");
            }
        }
    }
}
