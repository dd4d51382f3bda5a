//! RFC 6962 known answers (checked in as data), cross-checks against `ct-merkle` on seeded random
//! trees, and the property that appending never changes old proofs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
#![expect(clippy::cast_possible_truncation, reason = "small test values")]

use ct_merkle::CtMerkleTree;
use proptest::prelude::*;
use tianping_audit::{
    Hash, consistency_proof, inclusion_proof, leaf_hash, root_of, verify_consistency,
    verify_inclusion,
};

/// SHA-256 from `ring` behind the `digest` traits, so `ct-merkle` hashes like we do.
#[derive(Clone)]
struct RingSha256(ring::digest::Context);

impl Default for RingSha256 {
    fn default() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }
}
impl digest::HashMarker for RingSha256 {}
impl digest::OutputSizeUser for RingSha256 {
    type OutputSize = digest::consts::U32;
}
impl digest::Update for RingSha256 {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}
impl digest::FixedOutput for RingSha256 {
    fn finalize_into(self, out: &mut digest::Output<Self>) {
        out.copy_from_slice(self.0.finish().as_ref());
    }
}

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn hashes(v: &serde_json::Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| h(x.as_str().unwrap()))
        .collect()
}

fn vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc6962.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn rfc6962_reference_tree() {
    let v = vectors();
    let leaves: Vec<Hash> = v["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| leaf_hash(&hex::decode(x.as_str().unwrap()).unwrap()))
        .collect();
    let roots = hashes(&v["roots"]);
    assert_eq!(roots.len(), 9);
    for (n, want) in roots.iter().enumerate() {
        assert_eq!(&root_of(&leaves[..n]), want, "root of size {n}");
    }
    let mut checked = 0;
    for case in v["inclusion"].as_array().unwrap() {
        let index = case["index"].as_u64().unwrap();
        let size = case["size"].as_u64().unwrap();
        let want = hashes(&case["path"]);
        assert_eq!(inclusion_proof(&leaves, index, size).unwrap(), want);
        verify_inclusion(
            &leaves[index as usize],
            index,
            size,
            &want,
            &roots[size as usize],
        )
        .unwrap();
        // the wrong leaf, a wrong index, a wrong root all fail
        let other = leaf_hash(b"WrongLeaf");
        assert!(verify_inclusion(&other, index, size, &want, &roots[size as usize]).is_err());
        assert!(
            verify_inclusion(
                &leaves[index as usize],
                index ^ 1,
                size,
                &want,
                &roots[size as usize]
            )
            .is_err()
                || size == 1
        );
        assert!(verify_inclusion(&leaves[index as usize], index, size, &want, &roots[0]).is_err());
        checked += 1;
    }
    for case in v["consistency"].as_array().unwrap() {
        let first = case["first"].as_u64().unwrap();
        let second = case["second"].as_u64().unwrap();
        let want = hashes(&case["path"]);
        assert_eq!(consistency_proof(&leaves, first, second).unwrap(), want);
        let (r1, r2) = (&roots[first as usize], &roots[second as usize]);
        verify_consistency(first, second, r1, r2, &want).unwrap();
        if first != second {
            assert!(verify_consistency(first, second, r2, r1, &want).is_err());
            assert!(verify_consistency(first, second, r1, r2, &want[..want.len() - 1]).is_err());
            let mut bad = want.clone();
            bad[0][0] ^= 16;
            assert!(verify_consistency(first, second, r1, r2, &bad).is_err());
        }
        checked += 1;
    }
    assert_eq!(checked, 9);
}

/// A seeded xorshift, so the "random" trees are the same on every run.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

#[test]
fn roots_and_proofs_match_ct_merkle_on_seeded_random_trees() {
    let mut next = rng(0x7469_616e_7069_6e67);
    for _ in 0..12 {
        let n = (next() % 300 + 1) as usize;
        let data: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                let len = (next() % 40) as usize;
                (0..len).map(|_| next() as u8).collect()
            })
            .collect();
        let leaves: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let mut theirs = CtMerkleTree::<RingSha256, Vec<u8>>::new();
        for d in &data {
            theirs.push(d.clone());
        }
        let root = root_of(&leaves);
        assert_eq!(theirs.root().as_bytes().as_slice(), &root);
        for _ in 0..20 {
            let i = next() % n as u64;
            let ours = inclusion_proof(&leaves, i, n as u64).unwrap().concat();
            assert_eq!(
                theirs.prove_inclusion(i as usize).as_bytes(),
                ours.as_slice()
            );
            let m = next() % n as u64 + 1;
            let ours = consistency_proof(&leaves, m, n as u64).unwrap();
            assert_eq!(
                theirs.prove_consistency(m as usize).as_bytes(),
                ours.concat().as_slice(),
                "consistency {m} -> {n}"
            );
            verify_consistency(m, n as u64, &root_of(&leaves[..m as usize]), &root, &ours).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn appending_never_changes_old_proofs(
        n in 1usize..80,
        extra in 1usize..80,
        pick in any::<u64>(),
    ) {
        let all: Vec<Hash> = (0..n + extra).map(|i| leaf_hash(&(i as u64).to_be_bytes())).collect();
        let size = n as u64;
        let i = pick % size;
        let old_root = root_of(&all[..n]);
        let before = inclusion_proof(&all[..n], i, size).unwrap();
        // The log grows; a proof asked for the old size is the same, and still verifies.
        let after = inclusion_proof(&all, i, size).unwrap();
        prop_assert_eq!(&before, &after);
        prop_assert!(verify_inclusion(&all[i as usize], i, size, &after, &old_root).is_ok());
        let m = pick % size + 1;
        prop_assert_eq!(
            consistency_proof(&all[..n], m, size).unwrap(),
            consistency_proof(&all, m, size).unwrap()
        );
        // And the new tree provably extends the old one.
        let new_size = (n + extra) as u64;
        let p = consistency_proof(&all, size, new_size).unwrap();
        prop_assert!(verify_consistency(size, new_size, &old_root, &root_of(&all), &p).is_ok());
    }
}
