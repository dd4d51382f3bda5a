//! Bundles and datagrams: canonical encodings, strict decoding, streaming checks, and a bundle
//! carried over a lossy link.
#![expect(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests fail loudly"
)]

mod common;

use std::sync::Arc;

use common::{Rng, Wire, outcome, run, start};
use proptest::prelude::*;
use tianping_core::{Algorithm, Clock as _, PolicyHash, RingSigner, Role, Signer, UnixTime};
use tianping_crossdomain::{
    Arrival, Assembler, BundleError, BundleHeader, BundleReader, ChunkHasher, Datagram,
    DatagramHeader, Heartbeat, LinkConfig, Manifest, PinnedKeys, Receiver, ReceiverConfig, Sender,
    Submitter, SymbolHeader, Verified,
};

fn manifest(size: u64, chunk_size: u32) -> Manifest {
    Manifest {
        flow: "filing".into(),
        source: "internet".parse().unwrap(),
        destination: "private".parse().unwrap(),
        kind: "filing".into(),
        content_type: "application/pdf".into(),
        schema: Some("court-filing-v2".into()),
        size,
        chunk_size,
        chunks_hash: [0; 32],
        submitter: Submitter {
            subject: "p-lawyer-0042".parse().unwrap(),
            roles: vec![Role::Lawyer],
            machine: false,
        },
        labels: vec!["(2026)京01民初1号".into(), "public".into()],
        redacted: true,
        correlation: None,
        time: UnixTime::from_millis(1_764_000_000_123),
        sequence: 17,
        policy_hash: PolicyHash::of(b"policy text"),
    }
}

fn bundle(payload: &[u8], chunk_size: u32, signer: &dyn Signer) -> (BundleHeader, Vec<u8>) {
    let mut hasher = ChunkHasher::new(chunk_size).unwrap();
    for piece in payload.chunks(1000) {
        hasher.update(piece);
    }
    let (size, table) = hasher.finish();
    assert_eq!(size, payload.len() as u64);
    let header = BundleHeader::sign(
        manifest(size, chunk_size),
        vec![b"approval by judge".to_vec()],
        table,
        b"certificate der".to_vec(),
        signer,
    )
    .unwrap();
    let mut bytes = header.encode().unwrap();
    bytes.extend_from_slice(payload);
    (header, bytes)
}

fn signer() -> RingSigner {
    RingSigner::generate(Algorithm::Ed25519).unwrap().0
}

/// Reads `bytes` in pieces of `piece` bytes; the chunks handed on, and the result.
fn read(
    bytes: &[u8],
    piece: usize,
    trust: PinnedKeys,
) -> (Vec<u8>, Result<BundleHeader, BundleError>) {
    let mut reader = BundleReader::new(Arc::new(trust), UnixTime::from_millis(0));
    let mut out = Vec::new();
    let mut headers = 0;
    for p in bytes.chunks(piece) {
        let pushed = reader.push(p, &mut |v| {
            match v {
                Verified::Header(_) => headers += 1,
                Verified::Chunk { bytes, .. } => out.extend_from_slice(bytes),
            }
            Ok(())
        });
        if let Err(e) = pushed {
            return (out, Err(e));
        }
    }
    assert!(headers <= 1);
    (out, reader.finish())
}

#[test]
fn a_bundle_streams_back_chunk_by_chunk_in_pieces_of_any_size() {
    let s = signer();
    let payload = Rng::new(1).bytes(100_000);
    let (header, bytes) = bundle(&payload, 4096, &s);
    assert_eq!(header.chunk_table.len(), 25);
    for piece in [1, 7, 4096, 5000, bytes.len()] {
        let (out, done) = read(&bytes, piece, PinnedKeys(vec![s.public_key()]));
        assert_eq!(done.unwrap(), header);
        assert!(out == payload, "pieces of {piece}");
    }
    // an empty payload is a header alone
    let (header, bytes) = bundle(&[], 4096, &s);
    let (out, done) = read(&bytes, 3, PinnedKeys(vec![s.public_key()]));
    assert!(out.is_empty());
    assert_eq!(done.unwrap(), header);
}

#[test]
fn a_changed_payload_byte_stops_the_bundle_at_its_chunk() {
    let s = signer();
    let payload = Rng::new(2).bytes(50_000);
    let (header, mut bytes) = bundle(&payload, 4096, &s);
    let header_len = bytes.len() - payload.len();
    bytes[header_len + 3 * 4096 + 10] ^= 1;
    let (out, done) = read(&bytes, 1000, PinnedKeys(vec![s.public_key()]));
    assert_eq!(done, Err(BundleError::ChunkHash(3)));
    assert!(
        out == payload[..3 * 4096],
        "only the chunks before it were handed on"
    );
    // a byte more, or a byte less, than the manifest says
    let (_, mut bytes) = bundle(&payload, 4096, &s);
    bytes.push(0);
    assert!(matches!(
        read(&bytes, 999, PinnedKeys(vec![s.public_key()])).1,
        Err(BundleError::Size { .. })
    ));
    bytes.truncate(bytes.len() - 2);
    assert_eq!(
        read(&bytes, 999, PinnedKeys(vec![s.public_key()])).1,
        Err(BundleError::Size {
            declared: header.manifest.size,
            found: header.manifest.size - 1
        })
    );
}

#[test]
fn every_changed_header_byte_is_refused() {
    let s = signer();
    let (_, bytes) = bundle(b"payload", 4, &s);
    let header_len = bytes.len() - 7;
    for i in 4..header_len {
        for bit in [0x01, 0x80] {
            let mut b = bytes[4..header_len].to_vec();
            b[i - 4] ^= bit;
            assert!(BundleHeader::decode(&b).is_err(), "byte {i} bit {bit:#x}");
        }
    }
    // one byte more or less
    let mut longer = bytes[4..header_len].to_vec();
    longer.push(0);
    assert!(BundleHeader::decode(&longer).is_err());
    assert!(BundleHeader::decode(&bytes[4..header_len - 1]).is_err());
}

#[test]
fn a_signer_not_trusted_is_refused_before_any_chunk() {
    let (s, other) = (signer(), signer());
    let (_, bytes) = bundle(b"payload bytes", 4, &s);
    let (out, done) = read(&bytes, 5, PinnedKeys(vec![other.public_key()]));
    assert!(out.is_empty());
    assert!(matches!(done, Err(BundleError::Untrusted(_))));
    // a header signed by one key but naming another does not verify
    let (mut h, _) = bundle(b"x", 4, &s);
    h.signer = other.public_key();
    let enc = h.encode().unwrap();
    assert!(matches!(
        BundleHeader::decode(&enc[4..]),
        Err(BundleError::Signature(_))
    ));
}

#[test]
fn manifests_refuse_what_the_encoder_would_not_write() {
    let m = manifest(10, 4);
    let enc = m.encode().unwrap();
    assert_eq!(Manifest::decode(&enc).unwrap(), m);
    let mut trailing = enc.clone();
    trailing.push(0);
    assert!(Manifest::decode(&trailing).is_err());
    let mut version = enc.clone();
    version[0] = 2;
    assert_eq!(
        Manifest::decode(&version),
        Err(BundleError::Version {
            what: "manifest",
            version: 2
        })
    );
    // the `redacted` flag sits right before the (empty) correlation id and the last 48 bytes
    let flag = enc.len() - 32 - 8 - 8 - 2 - 1;
    assert_eq!(enc[flag], 1);
    let mut two = enc.clone();
    two[flag] = 2;
    assert!(Manifest::decode(&two).is_err());
    // an empty schema is "none", so `Some("")` has no encoding
    let mut empty = m.clone();
    empty.schema = Some(String::new());
    assert!(empty.encode().is_err());
    let mut bad_zone = m;
    bad_zone.flow = String::new();
    assert!(bad_zone.encode().is_err());
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9./-]{1,40}"
}

prop_compose! {
    fn any_manifest()(
        flow in text(), kind in text(), content_type in text(),
        schema in proptest::option::of(text()), correlation in proptest::option::of(text()),
        size in 0u64..1_000_000_000, chunk_size in 1024u32..(16 << 20),
        roles in proptest::sample::subsequence(Role::ALL.to_vec(), 0..4),
        labels in proptest::collection::vec(".{1,20}", 0..5),
        machine: bool, redacted: bool, time: u64, sequence: u64, policy: [u8; 32], hash: [u8; 32],
    ) -> Manifest {
        Manifest {
            flow, kind, content_type, schema, correlation, size, chunk_size, chunks_hash: hash,
            submitter: Submitter { subject: "clerk-0001".parse().unwrap(), roles, machine },
            labels, redacted, time: UnixTime::from_millis(time), sequence,
            policy_hash: PolicyHash::from_bytes(policy),
            source: "private".parse().unwrap(), destination: "classified".parse().unwrap(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        rng_seed: proptest::test_runner::RngSeed::Fixed(14),
        ..ProptestConfig::default()
    })]

    #[test]
    fn manifests_and_headers_decode_to_what_was_encoded(m in any_manifest(), approvals in
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..4)) {
        let enc = m.encode().unwrap();
        prop_assert_eq!(Manifest::decode(&enc).unwrap(), m.clone());
        let table = vec![[7u8; 32]; m.chunk_count() as usize];
        let h = BundleHeader::sign(m, approvals, table, vec![1, 2, 3], &signer()).unwrap();
        let enc = h.encode().unwrap();
        prop_assert_eq!(BundleHeader::decode(&enc[4..]).unwrap(), h);
    }

    #[test]
    fn datagrams_decode_to_what_was_encoded(link: u32, epoch: u64, seq: u64, transfer: u64,
            length in 1u64..1 << 40, symbol_size in 1u16..8000, block_symbols in 1u16..8192,
            block_frac in 0.0f64..1.0, symbol in 0u32..1 << 24, beat: [u64; 5], fill: u8) {
        let header = DatagramHeader { link, epoch, seq };
        let symbol_size = symbol_size - symbol_size % 8 + 8;
        let mut s = SymbolHeader { transfer, length, block: 0, symbol, symbol_size, block_symbols };
        s.block = ((s.blocks() as f64 * block_frac) as u64).min(s.blocks() - 1).min(u32::MAX.into()) as u32;
        let data = vec![fill; usize::from(symbol_size)];
        let mut out = Vec::new();
        for d in [
            Datagram::Symbol { header, symbol: s, data: &data },
            Datagram::Heartbeat { header, beat: Heartbeat {
                transfers_started: beat[0], transfers_finished: beat[1], last_transfer: beat[2],
                done_below: beat[3], datagrams_sent: beat[4] } },
        ] {
            d.encode_into(&mut out).unwrap();
            prop_assert_eq!(Datagram::decode(&out).unwrap(), d);
            // any flipped bit is caught by the check (or the format)
            let bit = (seq as usize) % (out.len() * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Datagram::decode(&out).is_err());
        }
    }
}

#[test]
fn a_bundle_over_a_lossy_link_arrives_intact_and_verified() {
    let s = signer();
    let payload = Rng::new(5).bytes(3_000_000);
    let (header, bytes) = bundle(&payload, 64 * 1024, &s);
    let mut sender = Sender::new(
        LinkConfig {
            repair_percent: 30,
            ..LinkConfig::new(1)
        },
        1,
    )
    .unwrap();
    sender.submit(1, Box::new(bytes)).unwrap();
    let mut rx = Receiver::new(ReceiverConfig::new(1), Some(1));
    let wire = Wire {
        seed: 5,
        loss: 100,
        reorder: 16,
        duplicate: 10,
        flip: 10,
        ..Wire::default()
    };
    let events = run(&mut sender, &mut rx, wire, 100, &start());
    let o = outcome(&events);
    let (out, done) = read(&o.complete[&1], 65_536, PinnedKeys(vec![s.public_key()]));
    assert_eq!(done.unwrap(), header);
    assert!(out == payload);
}

#[test]
fn the_assembler_hands_on_checked_bundles_and_refuses_the_rest() {
    let (good, bad) = (signer(), signer());
    let mut rng = Rng::new(6);
    let payloads: Vec<Vec<u8>> = (0..3).map(|_| rng.bytes(300_000)).collect();
    let mut sender = Sender::new(LinkConfig::new(4), 1).unwrap();
    let mut headers = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        // transfer 2 is signed by a key the receiver does not trust
        let s: &dyn Signer = if i == 1 { &bad } else { &good };
        let (h, bytes) = bundle(p, 65_536, s);
        headers.push(h);
        sender.submit(i as u64 + 1, Box::new(bytes)).unwrap();
    }
    let mut asm = Assembler::new(
        Receiver::new(ReceiverConfig::new(4), Some(1)),
        Arc::new(PinnedKeys(vec![good.public_key()])),
    );
    let (mut out, mut arrivals) = (Vec::new(), Vec::new());
    let now = start().now();
    while let Some(sent) = sender.next_datagram(&mut out).unwrap() {
        // transfer 3 loses one datagram in four, more than its 5 % repair
        if sent.transfer == 3 && rng.chance(250) {
            continue;
        }
        asm.receive(&out, now, &mut arrivals);
    }
    for _ in 0..5000 {
        sender.heartbeat(&mut out).unwrap();
        asm.receive(&out, now, &mut arrivals);
    }
    let mut staged: Vec<u8> = Vec::new();
    let mut ends = Vec::new();
    for a in arrivals {
        match a {
            Arrival::Chunk {
                transfer, bytes, ..
            } => {
                assert_eq!(transfer, 1, "only the trusted transfer hands on chunks");
                staged.extend_from_slice(&bytes);
            }
            Arrival::Header { transfer, .. } => assert_eq!(transfer, 1),
            Arrival::Complete { transfer, header } => {
                assert_eq!(*header, headers[0]);
                ends.push((transfer, "complete"));
            }
            Arrival::Refused { transfer, error } => {
                assert!(matches!(error, BundleError::Untrusted(_)));
                ends.push((transfer, "refused"));
            }
            Arrival::Lost { transfer, .. } => ends.push((transfer, "lost")),
            other => panic!("unexpected {other:?}"),
        }
    }
    ends.sort_unstable();
    assert_eq!(ends, vec![(1, "complete"), (2, "refused"), (3, "lost")]);
    assert!(staged == payloads[0]);
    assert_eq!(asm.receiver().floor(), Some(4));
}
