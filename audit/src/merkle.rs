//! The RFC 9162 Merkle tree: hashing, roots, inclusion and consistency proofs and their
//! verification. Free of I/O; any party can verify with these functions and no key.

use ring::digest::{Context, SHA256};

/// A SHA-256 value: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// Why a proof or request for one was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The index is not below the tree size.
    #[error("index `{index}` is not in a tree of size `{size}`")]
    IndexOutOfRange {
        /// The requested index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The sizes of a consistency proof are out of order or beyond the tree.
    #[error(
        "no consistency proof from size `{first}` to size `{second}` in a tree of size `{size}`"
    )]
    BadSizes {
        /// The older size.
        first: u64,
        /// The newer size.
        second: u64,
        /// The tree size.
        size: u64,
    },
    /// The proof does not lead to the expected root.
    #[error("the proof does not verify")]
    Mismatch,
    /// The tree size asked for is larger than the log.
    #[error("a tree of size `{size}` is asked for, but the log holds `{leaves}` entries")]
    SizeBeyondLog {
        /// The requested tree size.
        size: u64,
        /// How many leaves there are.
        leaves: u64,
    },
}

/// `SHA-256(0x00 || data)`: the hash of one leaf (RFC 9162 §2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0]);
    ctx.update(data);
    finish(ctx)
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[1]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx)
}

/// The root of the perfect subtree over `leaves`, whose number must be a power of two (`None`
/// otherwise). Hashes in place: `leaves` is left holding intermediate nodes.
pub fn subtree_root(leaves: &mut [Hash]) -> Option<Hash> {
    let mut n = leaves.len();
    if !n.is_power_of_two() {
        return None;
    }
    while n > 1 {
        for i in 0..n / 2 {
            let (l, r) = (leaves.get(2 * i)?, leaves.get(2 * i + 1)?);
            let h = node_hash(l, r);
            *leaves.get_mut(i)? = h;
        }
        n /= 2;
    }
    leaves.first().copied()
}

/// The root of the empty tree: SHA-256 of no bytes.
pub fn empty_root() -> Hash {
    finish(Context::new(&SHA256))
}

fn finish(ctx: Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

fn to_usize(v: u64) -> Option<usize> {
    usize::try_from(v).ok()
}

/// MTH over leaf hashes (RFC 9162 §2.1.1).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let (l, r) = leaves.split_at(split(leaves.len()));
            node_hash(&root_of(l), &root_of(r))
        }
    }
}

/// The inclusion path of leaf `index` in the tree of the first `size` leaves (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    let tree = to_usize(size)
        .and_then(|s| leaves.get(..s))
        .ok_or(ProofError::SizeBeyondLog {
            size,
            leaves: leaves.len() as u64,
        })?;
    let m = to_usize(index)
        .filter(|m| *m < tree.len())
        .ok_or(ProofError::IndexOutOfRange { index, size })?;
    let mut out = Vec::new();
    path(m, tree, &mut out);
    Ok(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len());
    let (l, r) = d.split_at(k);
    if m < k {
        path(m, l, out);
        out.push(root_of(r));
    } else {
        path(m - k, r, out);
        out.push(root_of(l));
    }
}

/// The consistency proof from size `first` to size `second` (RFC 9162 §2.1.4.1). Empty when
/// `first` is 0 or equals `second`.
pub fn consistency_proof(
    leaves: &[Hash],
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofError> {
    let bad = ProofError::BadSizes {
        first,
        second,
        size: leaves.len() as u64,
    };
    if first > second {
        return Err(bad);
    }
    let tree = to_usize(second)
        .and_then(|s| leaves.get(..s))
        .ok_or(bad.clone())?;
    let m = to_usize(first).ok_or(bad)?;
    let mut out = Vec::new();
    if m > 0 {
        subproof(m, tree, true, &mut out);
    }
    Ok(out)
}

fn subproof(m: usize, d: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !whole {
            out.push(root_of(d));
        }
        return;
    }
    let k = split(n);
    let (l, r) = d.split_at(k);
    if m <= k {
        subproof(m, l, whole, out);
        out.push(root_of(r));
    } else {
        subproof(m - k, r, false, out);
        out.push(root_of(l));
    }
}

/// Checks that `leaf` (a leaf hash) is at `index` in the tree of `size` leaves with `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::Mismatch);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s == 0 && r == *root {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// Checks that the tree of `second` leaves with `second_root` extends the tree of `first`
/// leaves with `first_root` (RFC 9162 §2.1.4.2). Every tree extends the empty one.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::BadSizes {
            first,
            second,
            size: second,
        });
    }
    if first == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if first == second {
        return if proof.is_empty() && first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else {
        return Err(ProofError::Mismatch);
    };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s == 0 {
            return Err(ProofError::Mismatch);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if fr == *first_root && sr == *second_root && s == 0 {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// The right edge of a growing tree: the roots of its perfect subtrees, enough to give the root
/// after every append in O(log n) memory (used to verify a log in one pass).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (height, hash), heights strictly decreasing.
    stack: Vec<(u32, Hash)>,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.merge(0, leaf);
        self.size += 1;
    }

    /// Appends the root of a perfect subtree of `2^height` leaves (see [`subtree_root`]), as
    /// if its leaves were pushed one by one. Refused (`false`, nothing changed) unless the size
    /// is a multiple of `2^height`: only then is that subtree a node of the tree.
    pub fn push_subtree(&mut self, height: u32, root: Hash) -> bool {
        let Some(leaves) = 1u64.checked_shl(height) else {
            return false;
        };
        if height >= 63 || self.size % leaves != 0 {
            return false;
        }
        self.merge(height, root);
        self.size += leaves;
        true
    }

    fn merge(&mut self, height: u32, hash: Hash) {
        let mut cur = (height, hash);
        while let Some(&(h, ref left)) = self.stack.last() {
            if h != cur.0 {
                break;
            }
            cur = (h + 1, node_hash(left, &cur.1));
            self.stack.pop();
        }
        self.stack.push(cur);
    }

    /// The roots of the tree's perfect subtrees, largest (leftmost) first: what a verifier
    /// needs, with [`size`](Self::size), to go on from this tree without its leaves.
    pub fn subtrees(&self) -> Vec<Hash> {
        self.stack.iter().map(|(_, h)| *h).collect()
    }

    /// The tree of `size` leaves whose perfect subtrees have the roots `subtrees` (as given by
    /// [`subtrees`](Self::subtrees)); `None` when their number does not fit `size`.
    pub fn from_subtrees(size: u64, subtrees: &[Hash]) -> Option<Self> {
        if subtrees.len() != size.count_ones() as usize {
            return None;
        }
        let heights = (0..64u32).rev().filter(|b| size >> b & 1 == 1);
        Some(Self {
            size,
            stack: heights.zip(subtrees.iter().copied()).collect(),
        })
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut r)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            r = node_hash(left, &r);
        }
        r
    }
}

#[cfg(test)]
#[expect(clippy::cast_possible_truncation, reason = "small test values")]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn frontier_rebuilt_from_its_subtrees_goes_on_the_same() {
        let l = leaves(40);
        for n in 0..30usize {
            let mut f = Frontier::new();
            for h in &l[..n] {
                f.push(*h);
            }
            let mut g = Frontier::from_subtrees(n as u64, &f.subtrees()).unwrap();
            assert_eq!(g.root(), f.root());
            for h in &l[n..] {
                g.push(*h);
            }
            assert_eq!(g.root(), root_of(&l));
            assert!(Frontier::from_subtrees(n as u64 + 1, &f.subtrees()).is_none() || n % 2 == 1);
        }
    }

    #[test]
    fn subtrees_pushed_whole_give_the_roots_of_leaves_pushed_one_by_one() {
        let all = leaves(300);
        for start in [0usize, 1, 2, 3, 8, 12, 100] {
            let mut one = Frontier::new();
            let mut whole = Frontier::new();
            for h in &all[..start] {
                one.push(*h);
                whole.push(*h);
            }
            let mut at = start;
            while at < all.len() {
                // The largest aligned subtree that fits, as verification cuts them.
                let mut height = (at as u64).trailing_zeros().min(10);
                while at + (1 << height) > all.len() {
                    height -= 1;
                }
                let mut part = all[at..at + (1 << height)].to_vec();
                assert!(whole.push_subtree(height, subtree_root(&mut part).unwrap()));
                for h in &all[at..at + (1 << height)] {
                    one.push(*h);
                }
                at += 1 << height;
                assert_eq!((whole.size(), whole.root()), (one.size(), one.root()));
            }
        }
        // Out of place: refused, nothing changed.
        let mut f = Frontier::new();
        f.push(all[0]);
        let before = f.root();
        assert!(!f.push_subtree(1, all[1]));
        assert!(!f.push_subtree(64, all[1]));
        assert_eq!((f.size(), f.root()), (1, before));
        assert_eq!(subtree_root(&mut all[..3].to_vec()), None);
    }

    #[test]
    fn frontier_matches_recursive_root() {
        let l = leaves(70);
        let mut f = Frontier::new();
        assert_eq!(f.root(), root_of(&[]));
        for (i, h) in l.iter().enumerate() {
            f.push(*h);
            assert_eq!(f.root(), root_of(&l[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn every_proof_of_small_trees_verifies_and_tampering_fails() {
        let l = leaves(33);
        for n in 1..=33u64 {
            let root = root_of(&l[..n as usize]);
            for i in 0..n {
                let p = inclusion_proof(&l, i, n).unwrap();
                verify_inclusion(&l[i as usize], i, n, &p, &root).unwrap();
                assert!(verify_inclusion(&l[i as usize], i, n * 2, &p, &root).is_err());
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0] = leaf_hash(first);
                    assert!(verify_inclusion(&l[i as usize], i, n, &bad, &root).is_err());
                }
            }
            for m in 0..=n {
                let p = consistency_proof(&l, m, n).unwrap();
                let old = root_of(&l[..m as usize]);
                verify_consistency(m, n, &old, &root, &p).unwrap();
                if m > 0 && m < n {
                    assert!(verify_consistency(m, n, &root, &old, &p).is_err());
                    assert!(verify_consistency(m, n, &old, &root, &p[1..]).is_err());
                }
            }
        }
    }

    #[test]
    fn out_of_range_requests_are_refused() {
        let l = leaves(4);
        assert!(inclusion_proof(&l, 4, 4).is_err());
        assert!(inclusion_proof(&l, 0, 5).is_err());
        assert!(consistency_proof(&l, 3, 2).is_err());
        assert!(consistency_proof(&l, 1, 5).is_err());
        assert!(verify_inclusion(&l[0], 0, 0, &[], &l[0]).is_err());
    }
}
