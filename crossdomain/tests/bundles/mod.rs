//! Payloads, a manifest and a signed bundle, shared by the crossdomain tests.
#![allow(dead_code, reason = "each test binary uses a part")]
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use tianping_core::{PolicyHash, Signer, UnixTime};
use tianping_crossdomain::{BundleHeader, ChunkHasher, Manifest, Submitter};

/// `n` bytes that differ from one position to the next (a hash of the position and `seed`).
pub(crate) fn bytes(n: u64, seed: u64) -> Vec<u8> {
    (0..n)
        .map(|i| u8::try_from((i ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56).unwrap())
        .collect()
}

/// A clerk's `evidence` manifest from `source` to `classified`, in chunks of `chunk_size`.
pub(crate) fn manifest(source: &str, chunk_size: u32) -> Manifest {
    Manifest {
        flow: "evidence".into(),
        source: source.parse().unwrap(),
        destination: "classified".parse().unwrap(),
        kind: "file".into(),
        content_type: "application/pdf".into(),
        schema: None,
        size: 0,
        chunk_size,
        chunks_hash: [0; 32],
        submitter: Submitter {
            subject: "clerk-0007".parse().unwrap(),
            roles: vec![],
            machine: false,
        },
        labels: vec![],
        redacted: false,
        correlation: None,
        time: UnixTime::from_secs(1_764_000_000),
        sequence: 1,
        policy_hash: PolicyHash::of(b"p"),
    }
}

/// `payload` as a bundle from `private` in chunks of `chunk_size`, signed by `signer`.
pub(crate) fn bundle(payload: &[u8], signer: &dyn Signer, chunk_size: u32) -> Vec<u8> {
    let mut h = ChunkHasher::new(chunk_size).unwrap();
    h.update(payload);
    let (size, table) = h.finish();
    let mut m = manifest("private", chunk_size);
    m.size = size;
    let header = BundleHeader::sign(m, vec![], table, b"der".to_vec(), signer).unwrap();
    let mut out = header.encode().unwrap();
    out.extend_from_slice(payload);
    out
}
