//! The Merkle tree of a realm's audit log (E1) and its proofs (E3), as
//! RFC 9162 §2.1 defines them: leaf hash `SHA-256(0x00 ‖ leaf)`, interior
//! hash `SHA-256(0x01 ‖ left ‖ right)`, inclusion proofs (§2.1.3) and
//! consistency proofs (§2.1.4).
//!
//! Storage (E3: O(log n) reads per proof, never re-hash the leaves): the
//! writer stores the hash of every *complete* subtree, addressed by
//! [`SubtreeId`] (level, index), as Go's `sumdb/tlog` and C2SP `tlog-tiles`
//! do. A complete subtree never changes once its last leaf exists, so the
//! rows are append-only. Appending a leaf adds one row per level it
//! completes (on average two). Any root, inclusion proof or consistency
//! proof of a tree of size ≤ the stored size is a handful of such subtrees
//! folded together.
//!
//! Reads are planned before they happen: [`ProofPlan`] names every id it
//! needs, the store fetches them in one query, and the plan assembles the
//! proof. That keeps this module free of I/O and lets an async store batch
//! its reads. The verification functions follow the RFC's own algorithms
//! (§2.1.3.2, §2.1.4.2), a second, independent formulation of the same
//! tree, so generation and verification check each other in the tests.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `SHA-256(0x00 ‖ leaf)`: the prefix keeps a leaf from posing as a node.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of a list of leaf hashes, straight from the RFC's recursive
/// definition of MTH. O(n): for small trees, tests and independent
/// recomputation (E7), never for serving proofs.
pub fn root_of(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes.len() {
        0 => EMPTY_ROOT,
        1 => leaf_hashes[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root_of(&leaf_hashes[..k]), &root_of(&leaf_hashes[k..]))
        }
    }
}

/// The largest power of two strictly below `n` (n ≥ 2): where the RFC
/// splits a tree of `n` leaves.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Why a tree operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MerkleError {
    /// A leaf index at or beyond the tree size.
    IndexBeyondSize { index: u64, size: u64 },
    /// A consistency proof from a larger tree to a smaller one.
    OldBeyondNew { old: u64, new: u64 },
    /// A consistency proof from the empty tree proves nothing (RFC 9162
    /// defines it for 0 < old only).
    OldSizeZero,
    /// The store answered with a different number of hashes than asked.
    WrongHashCount { expected: usize, got: usize },
    /// The store could not read (its own message).
    Storage(String),
}

impl std::fmt::Display for MerkleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MerkleError::IndexBeyondSize { index, size } => {
                write!(f, "leaf index {index} is not in a tree of size {size}")
            }
            MerkleError::OldBeyondNew { old, new } => {
                write!(f, "old size {old} is larger than new size {new}")
            }
            MerkleError::OldSizeZero => f.write_str("old size must be at least 1"),
            MerkleError::WrongHashCount { expected, got } => {
                write!(f, "expected {expected} stored hashes, got {got}")
            }
            MerkleError::Storage(message) => write!(f, "reading stored hashes: {message}"),
        }
    }
}

impl std::error::Error for MerkleError {}

/// A complete subtree: `2^level` leaves starting at leaf `index << level`.
/// Level 0 is a leaf; its hash is the leaf hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubtreeId {
    pub level: u8,
    pub index: u64,
}

impl SubtreeId {
    /// The first leaf it covers.
    pub fn first_leaf(self) -> u64 {
        self.index << self.level
    }

    /// One past the last leaf it covers.
    pub fn end_leaf(self) -> u64 {
        (self.index + 1) << self.level
    }

    /// One integer per id, for a single-column key: the level in the top
    /// 8 bits, the index below (2^56 leaves is beyond any realm).
    pub fn key(self) -> i64 {
        ((self.level as i64) << 56) | self.index as i64
    }

    pub fn from_key(key: i64) -> Self {
        Self {
            level: (key >> 56) as u8,
            index: (key as u64) & ((1 << 56) - 1),
        }
    }
}

/// The complete subtrees that make up leaves `lo..hi`, left to right, in
/// decreasing size. Callers pass ranges whose start is aligned to a
/// multiple of the range's enclosing power of two (every range the RFC's
/// recursion produces is), so folding these hashes from the right gives
/// the range's MTH.
fn decompose(lo: u64, hi: u64, out: &mut Vec<SubtreeId>) {
    let mut lo = lo;
    while lo < hi {
        let mut size = 1u64 << (63 - (hi - lo).leading_zeros());
        if lo != 0 {
            size = size.min(1 << lo.trailing_zeros());
        }
        let level = size.trailing_zeros() as u8;
        out.push(SubtreeId {
            level,
            index: lo >> level,
        });
        lo += size;
    }
}

fn decomposition_len(lo: u64, hi: u64) -> usize {
    let mut ids = Vec::new();
    decompose(lo, hi, &mut ids);
    ids.len()
}

/// Reads stored complete-subtree hashes, in the order asked.
pub trait HashReader {
    fn read_hashes(&self, ids: &[SubtreeId]) -> Result<Vec<Hash>, MerkleError>;
}

impl<F> HashReader for F
where
    F: Fn(&[SubtreeId]) -> Result<Vec<Hash>, MerkleError>,
{
    fn read_hashes(&self, ids: &[SubtreeId]) -> Result<Vec<Hash>, MerkleError> {
        self(ids)
    }
}

/// Which stored hashes a root or proof needs, and how to put them
/// together. Build it, read [`ProofPlan::needs`] in one query, then
/// [`ProofPlan::assemble`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    /// Leaf ranges whose MTH are the output hashes, in output order.
    ranges: Vec<(u64, u64)>,
    needs: Vec<SubtreeId>,
}

impl ProofPlan {
    fn from_ranges(ranges: Vec<(u64, u64)>) -> Self {
        let mut needs = Vec::new();
        for &(lo, hi) in &ranges {
            decompose(lo, hi, &mut needs);
        }
        Self { ranges, needs }
    }

    /// The root of the tree of `size` leaves (one output hash; none for
    /// the empty tree, whose root is [`EMPTY_ROOT`]).
    pub fn root(size: u64) -> Self {
        if size == 0 {
            return Self::from_ranges(Vec::new());
        }
        Self::from_ranges(vec![(0, size)])
    }

    /// RFC 9162 §2.1.3.1 PATH(index, D[0:size]), leaf end first.
    pub fn inclusion(index: u64, size: u64) -> Result<Self, MerkleError> {
        if index >= size {
            return Err(MerkleError::IndexBeyondSize { index, size });
        }
        let mut ranges = Vec::new();
        path(index, 0, size, &mut ranges);
        Ok(Self::from_ranges(ranges))
    }

    /// RFC 9162 §2.1.4.1 PROOF(old, D[0:new]); empty when old == new.
    pub fn consistency(old: u64, new: u64) -> Result<Self, MerkleError> {
        if old > new {
            return Err(MerkleError::OldBeyondNew { old, new });
        }
        if old == 0 {
            return Err(MerkleError::OldSizeZero);
        }
        let mut ranges = Vec::new();
        subproof(old, 0, new, true, &mut ranges);
        Ok(Self::from_ranges(ranges))
    }

    /// The stored hashes to read, in the order [`ProofPlan::assemble`]
    /// expects them. Their number is O(log size).
    pub fn needs(&self) -> &[SubtreeId] {
        &self.needs
    }

    /// The proof (or the root, for [`ProofPlan::root`]) from the hashes of
    /// [`ProofPlan::needs`], in that order.
    pub fn assemble(&self, hashes: &[Hash]) -> Result<Vec<Hash>, MerkleError> {
        if hashes.len() != self.needs.len() {
            return Err(MerkleError::WrongHashCount {
                expected: self.needs.len(),
                got: hashes.len(),
            });
        }
        let mut rest = hashes;
        let mut out = Vec::with_capacity(self.ranges.len());
        for &(lo, hi) in &self.ranges {
            let (mine, others) = rest.split_at(decomposition_len(lo, hi));
            rest = others;
            out.push(fold_right(mine));
        }
        Ok(out)
    }

    /// Reads through `reader` and assembles.
    pub fn run(&self, reader: &impl HashReader) -> Result<Vec<Hash>, MerkleError> {
        let hashes = if self.needs.is_empty() {
            Vec::new()
        } else {
            reader.read_hashes(&self.needs)?
        };
        self.assemble(&hashes)
    }
}

/// The MTH of a range from its complete subtrees, largest first.
fn fold_right(hashes: &[Hash]) -> Hash {
    let mut iter = hashes.iter().rev();
    let Some(last) = iter.next() else {
        return EMPTY_ROOT;
    };
    iter.fold(*last, |acc, left| node_hash(left, &acc))
}

/// PATH(m, D[lo:hi]) as leaf ranges.
fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    if hi - lo == 1 {
        return;
    }
    let k = split_point(hi - lo);
    if m < lo + k {
        path(m, lo, lo + k, out);
        out.push((lo + k, hi));
    } else {
        path(m, lo + k, hi, out);
        out.push((lo, lo + k));
    }
}

/// SUBPROOF(m, D[lo:hi], b) as leaf ranges; `m` counts from `lo`.
fn subproof(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push((lo, hi));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, lo, lo + k, whole, out);
        out.push((lo + k, hi));
    } else {
        subproof(m - k, lo + k, hi, false, out);
        out.push((lo, lo + k));
    }
}

/// The root of the first `size` leaves of a stored tree.
pub fn tree_root(size: u64, reader: &impl HashReader) -> Result<Hash, MerkleError> {
    let hashes = ProofPlan::root(size).run(reader)?;
    Ok(hashes.first().copied().unwrap_or(EMPTY_ROOT))
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    reader: &impl HashReader,
) -> Result<Vec<Hash>, MerkleError> {
    ProofPlan::inclusion(index, size)?.run(reader)
}

/// The consistency proof from the tree of `old` leaves to that of `new`.
pub fn consistency_proof(
    old: u64,
    new: u64,
    reader: &impl HashReader,
) -> Result<Vec<Hash>, MerkleError> {
    ProofPlan::consistency(old, new)?.run(reader)
}

/// The stored hashes an append to a tree of `size` leaves needs: the
/// complete subtrees of `0..size` (its right border, at most 64).
/// The root of a tree from its right border (see [`append`]).
pub fn root_of_border(border: &[Hash]) -> Hash {
    fold_right(border)
}

pub fn append_needs(size: u64) -> Vec<SubtreeId> {
    let mut ids = Vec::new();
    decompose(0, size, &mut ids);
    ids
}

/// What appending some leaves produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Every complete subtree the new leaves completed, leaves included:
    /// the rows to insert in the same transaction as the events (L1).
    pub stored: Vec<(SubtreeId, Hash)>,
    /// The tree size after the append.
    pub size: u64,
    /// The root after the append.
    pub root: Hash,
    /// The right border after the append (the hashes of
    /// [`append_needs`]`(size)`): what the next append starts from.
    pub border: Vec<Hash>,
}

/// Appends `leaf_hashes` to a tree of `size` leaves whose right border
/// (the hashes of [`append_needs`]`(size)`, in that order) is `border`.
/// Several leaves at once, so a batch of events costs one read.
pub fn append(size: u64, border: &[Hash], leaf_hashes: &[Hash]) -> Result<Appended, MerkleError> {
    let border_ids = append_needs(size);
    if border.len() != border_ids.len() {
        return Err(MerkleError::WrongHashCount {
            expected: border_ids.len(),
            got: border.len(),
        });
    }
    // The border as a stack of (level, hash), largest subtree at the
    // bottom: the compact form of the whole tree.
    let mut stack: Vec<(u8, Hash)> = border_ids
        .iter()
        .zip(border)
        .map(|(id, hash)| (id.level, *hash))
        .collect();
    let mut stored = Vec::with_capacity(leaf_hashes.len() * 2);
    for (offset, hash) in leaf_hashes.iter().enumerate() {
        let index = size + offset as u64;
        let mut level = 0u8;
        let mut hash = *hash;
        stored.push((SubtreeId { level, index }, hash));
        // Each pair of equal-sized neighbours merges into the subtree one
        // level up, which this leaf has just completed.
        while let Some(&(top_level, left)) = stack.last() {
            if top_level != level {
                break;
            }
            stack.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            stored.push((
                SubtreeId {
                    level,
                    index: index >> level,
                },
                hash,
            ));
        }
        stack.push((level, hash));
    }
    let border: Vec<Hash> = stack.iter().map(|(_, h)| *h).collect();
    Ok(Appended {
        stored,
        size: size + leaf_hashes.len() as u64,
        root: fold_right(&border),
        border,
    })
}

/// RFC 9162 §2.1.3.2: does `proof` show that `leaf_hash` is leaf `index`
/// of the tree of `size` leaves with root `root`?
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `old_size` leaves
/// with root `old_root` is a prefix of the tree of `new_size` leaves with
/// root `new_root`? Equal sizes need an empty proof and equal roots; an
/// old size of zero proves nothing and is refused.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if proof.is_empty() {
        return false;
    }
    // Step 2: when the old tree is a complete subtree, its root is the
    // first node of the path and the proof leaves it out.
    let path: Vec<Hash> = if old_size.is_power_of_two() {
        std::iter::once(*old_root)
            .chain(proof.iter().copied())
            .collect()
    } else {
        proof.to_vec()
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *old_root && sr == *new_root && sn == 0
}

/// A whole tree in memory: every complete-subtree hash in a map, exactly
/// the rows a store keeps. For tests, benchmarks and building bundles
/// from events already at hand.
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    size: u64,
    hashes: HashMap<SubtreeId, Hash>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; returns its index.
    pub fn push(&mut self, leaf_hash: Hash) -> u64 {
        self.extend(&[leaf_hash]);
        self.size - 1
    }

    /// Appends leaf hashes, as a writer would in one transaction.
    pub fn extend(&mut self, leaf_hashes: &[Hash]) {
        let border: Vec<Hash> = append_needs(self.size)
            .iter()
            .map(|id| self.hashes[id])
            .collect();
        // The border was read from this very map, so its length matches.
        let appended = append(self.size, &border, leaf_hashes)
            .expect("border read from the tree itself has the right length");
        self.hashes.extend(appended.stored);
        self.size = appended.size;
    }

    pub fn root(&self) -> Hash {
        // Every id of a tree of `self.size` is in the map.
        tree_root(self.size, self).expect("stored tree has every subtree")
    }

    /// Number of stored hashes (≈ 2 per leaf).
    pub fn stored_count(&self) -> usize {
        self.hashes.len()
    }
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, ids: &[SubtreeId]) -> Result<Vec<Hash>, MerkleError> {
        ids.iter()
            .map(|id| {
                self.hashes.get(id).copied().ok_or_else(|| {
                    MerkleError::Storage(format!(
                        "no hash stored for level {} index {}",
                        id.level, id.index
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;

    fn hex32(s: &str) -> Hash {
        hex::decode(s)
            .expect("test hex")
            .try_into()
            .expect("32 bytes")
    }

    /// The leaves of the reference tree of RFC 6962's reference tests, as
    /// transparency-dev/merkle `testonly/constants.go` lists them.
    fn reference_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex::decode(h).expect("test hex"))
        .collect()
    }

    /// Roots of sizes 0..=8 of that tree (`RootHashes()`).
    const REFERENCE_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn reference_tree() -> MemoryTree {
        let mut tree = MemoryTree::new();
        for leaf in reference_leaves() {
            tree.push(leaf_hash(&leaf));
        }
        tree
    }

    fn tree_of(n: u64) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for i in 0..n {
            tree.push(leaf_hash(format!("leaf {i}").as_bytes()));
        }
        tree
    }

    /// Counts what a proof reads, to hold E3's O(log n) promise.
    struct CountingReader<'a> {
        tree: &'a MemoryTree,
        calls: Cell<usize>,
        hashes: Cell<usize>,
    }

    impl HashReader for CountingReader<'_> {
        fn read_hashes(&self, ids: &[SubtreeId]) -> Result<Vec<Hash>, MerkleError> {
            self.calls.set(self.calls.get() + 1);
            self.hashes.set(self.hashes.get() + ids.len());
            self.tree.read_hashes(ids)
        }
    }

    #[test]
    fn e1_empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(root_of(&[]), EMPTY_ROOT);
        assert_eq!(tree_root(0, &MemoryTree::new()), Ok(EMPTY_ROOT));
    }

    #[test]
    fn e1_reference_roots_of_every_size() {
        let leaves: Vec<Hash> = reference_leaves().iter().map(|l| leaf_hash(l)).collect();
        let tree = reference_tree();
        for (size, expected) in REFERENCE_ROOTS.iter().enumerate() {
            let expected = hex32(expected);
            assert_eq!(root_of(&leaves[..size]), expected, "root_of size {size}");
            assert_eq!(
                tree_root(size as u64, &tree),
                Ok(expected),
                "stored size {size}"
            );
        }
    }

    #[test]
    fn e1_reference_complete_subtree_hashes() {
        // `NodeHashes()` of the reference: levels 0..=3 of the 8-leaf tree.
        let expected: [&[&str]; 4] = [
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
                "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
            ],
            &[
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            ],
            &[
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
            &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
        ];
        let tree = reference_tree();
        assert_eq!(tree.stored_count(), 15);
        for (level, hashes) in expected.iter().enumerate() {
            for (index, hash) in hashes.iter().enumerate() {
                let id = SubtreeId {
                    level: level as u8,
                    index: index as u64,
                };
                assert_eq!(tree.read_hashes(&[id]), Ok(vec![hex32(hash)]), "{id:?}");
            }
        }
    }

    #[test]
    fn e3_reference_inclusion_proof_of_leaf_0_in_8() {
        // transparency-dev/merkle testdata/inclusion/1/happy-path.json
        let proof = inclusion_proof(0, 8, &reference_tree()).unwrap();
        let expected: Vec<Hash> = [
            "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ=",
        ]
        .iter()
        .map(|b| STANDARD.decode(b).unwrap().try_into().unwrap())
        .collect();
        assert_eq!(proof, expected);
        // and testdata/consistency/1/happy-path.json: 1 → 8 is the same path.
        assert_eq!(
            consistency_proof(1, 8, &reference_tree()).unwrap(),
            expected
        );
    }

    /// The probes of transparency-dev/merkle `testdata/{inclusion,
    /// consistency}` (Apache-2.0), copied beside this file: each names
    /// sizes, hashes and a proof, and whether verification must fail.
    #[test]
    fn e3_transparency_dev_probes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/merkle");
        let mut seen = 0;
        for kind in ["inclusion", "consistency"] {
            for path in json_files(&dir.join(kind)) {
                let text = std::fs::read_to_string(&path).unwrap();
                let probe: serde_json::Value = serde_json::from_str(&text).unwrap();
                let want_err = probe["wantErr"].as_bool().unwrap();
                let verified = if kind == "inclusion" {
                    // Our leaf hash is typed: one of another length never
                    // reaches the verifier (transparency-dev rejects it).
                    let Some(leaf) = exact_hash(&probe["leafHash"]) else {
                        assert!(want_err, "{}", path.display());
                        seen += 1;
                        continue;
                    };
                    verify_inclusion(
                        &leaf,
                        probe["leafIdx"].as_u64().unwrap(),
                        probe["treeSize"].as_u64().unwrap(),
                        &probe_proof(&probe["proof"]),
                        &probe_hash(&probe["root"]),
                    )
                } else {
                    verify_consistency(
                        probe["size1"].as_u64().unwrap(),
                        probe["size2"].as_u64().unwrap(),
                        &probe_hash(&probe["root1"]),
                        &probe_hash(&probe["root2"]),
                        &probe_proof(&probe["proof"]),
                    )
                };
                assert_eq!(verified, !want_err, "{}", path.display());
                seen += 1;
            }
        }
        assert!(seen > 150, "only {seen} probes found");
    }

    fn json_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(json_files(&path));
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
        out
    }

    fn exact_hash(value: &serde_json::Value) -> Option<Hash> {
        STANDARD.decode(value.as_str()?).ok()?.try_into().ok()
    }

    /// Probes use "don't care" values that are not 32 bytes; map them to a
    /// hash no real node has, equal for equal inputs, as the probes expect.
    fn probe_hash(value: &serde_json::Value) -> Hash {
        let bytes = STANDARD.decode(value.as_str().unwrap_or("")).unwrap();
        bytes.clone().try_into().unwrap_or_else(|_| {
            let mut hasher = Sha256::new();
            hasher.update(b"probe placeholder");
            hasher.update(&bytes);
            hasher.finalize().into()
        })
    }

    fn probe_proof(value: &serde_json::Value) -> Vec<Hash> {
        value
            .as_array()
            .map(|a| a.iter().map(probe_hash).collect())
            .unwrap_or_default()
    }

    #[test]
    fn e3_inclusion_of_every_leaf_of_every_size_up_to_64() {
        let tree = tree_of(65);
        let leaves: Vec<Hash> = (0..65)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect();
        for size in 1..=64u64 {
            let root = tree_root(size, &tree).unwrap();
            let next_root = tree_root(size + 1, &tree).unwrap();
            assert_eq!(root, root_of(&leaves[..size as usize]));
            for index in 0..size {
                let leaf = &leaves[index as usize];
                let proof = inclusion_proof(index, size, &tree).unwrap();
                assert!(verify_inclusion(leaf, index, size, &proof, &root));
                // The same proof against the tree head of another size, or
                // for another index or leaf, fails. (Against the same root
                // with only the size changed it may pass: RFC 6962 paths
                // of leaf 0 in sizes 3 and 4 have the same shape; the
                // signed checkpoint is what binds a root to its size.)
                assert!(!verify_inclusion(leaf, index, size + 1, &proof, &next_root));
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(!verify_inclusion(leaf, other, size, &proof, &root));
                    assert!(!verify_inclusion(
                        &leaves[other as usize],
                        index,
                        size,
                        &proof,
                        &root
                    ));
                }
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i][0] ^= 1;
                    assert!(!verify_inclusion(leaf, index, size, &bad, &root));
                }
            }
        }
    }

    #[test]
    fn e3_consistency_between_every_pair_of_sizes_up_to_64() {
        let tree = tree_of(64);
        let roots: Vec<Hash> = (0..=64).map(|n| tree_root(n, &tree).unwrap()).collect();
        for new in 1..=64u64 {
            for old in 1..=new {
                let (r1, r2) = (&roots[old as usize], &roots[new as usize]);
                let proof = consistency_proof(old, new, &tree).unwrap();
                assert!(
                    verify_consistency(old, new, r1, r2, &proof),
                    "{old} → {new}"
                );
                // Wrong sizes fail (RFC: the proof is for these sizes only).
                if old > 1 {
                    assert!(!verify_consistency(
                        old - 1,
                        new,
                        &roots[old as usize - 1],
                        r2,
                        &proof
                    ));
                }
                if new < 64 {
                    assert!(!verify_consistency(
                        old,
                        new + 1,
                        r1,
                        &roots[new as usize + 1],
                        &proof
                    ));
                }
                // So does any altered hash, proof or root.
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i][31] ^= 0x80;
                    assert!(
                        !verify_consistency(old, new, r1, r2, &bad),
                        "{old} → {new} #{i}"
                    );
                }
                let mut bad_root = *r1;
                bad_root[0] ^= 1;
                assert!(!verify_consistency(old, new, &bad_root, r2, &proof));
                if old < new {
                    let mut bad_root = *r2;
                    bad_root[0] ^= 1;
                    assert!(!verify_consistency(old, new, r1, &bad_root, &proof));
                }
            }
        }
    }

    #[test]
    fn e3_bad_arguments_are_refused_with_their_reason() {
        let tree = tree_of(5);
        assert_eq!(
            inclusion_proof(5, 5, &tree),
            Err(MerkleError::IndexBeyondSize { index: 5, size: 5 })
        );
        assert_eq!(
            consistency_proof(4, 3, &tree),
            Err(MerkleError::OldBeyondNew { old: 4, new: 3 })
        );
        assert_eq!(
            consistency_proof(0, 3, &tree),
            Err(MerkleError::OldSizeZero)
        );
        assert_eq!(consistency_proof(5, 5, &tree), Ok(vec![]));
        assert!(matches!(
            inclusion_proof(0, 6, &tree),
            Err(MerkleError::Storage(_))
        ));
        let plan = ProofPlan::inclusion(1, 5).unwrap();
        assert_eq!(
            plan.assemble(&[]),
            Err(MerkleError::WrongHashCount {
                expected: plan.needs().len(),
                got: 0
            })
        );
    }

    /// A xorshift generator: deterministic pairs without a dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn e3_random_proofs_in_a_tree_of_100_000_leaves() {
        const N: u64 = 100_000;
        let mut tree = MemoryTree::new();
        // In batches, as group commit appends them.
        let leaves: Vec<Hash> = (0..N).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for chunk in leaves.chunks(37) {
            tree.extend(chunk);
        }
        assert_eq!(tree.size(), N);
        assert!(tree.stored_count() < 2 * N as usize);
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            let a = next(&mut state) % N + 1;
            let b = next(&mut state) % N + 1;
            let (old, new) = (a.min(b), a.max(b));
            let (r1, r2) = (
                tree_root(old, &tree).unwrap(),
                tree_root(new, &tree).unwrap(),
            );
            let proof = consistency_proof(old, new, &tree).unwrap();
            assert!(verify_consistency(old, new, &r1, &r2, &proof));
            if old < new {
                let r2_less = tree_root(new - 1, &tree).unwrap();
                assert!(!verify_consistency(old, new - 1, &r1, &r2_less, &proof));
            }
            let index = next(&mut state) % new;
            let proof = inclusion_proof(index, new, &tree).unwrap();
            assert!(verify_inclusion(
                &leaves[index as usize],
                index,
                new,
                &proof,
                &r2
            ));
            if new < N {
                let r3 = tree_root(new + 1, &tree).unwrap();
                assert!(!verify_inclusion(
                    &leaves[index as usize],
                    index,
                    new + 1,
                    &proof,
                    &r3
                ));
            }
        }
        assert_eq!(tree.root(), tree_root(N, &tree).unwrap());
    }

    #[test]
    fn e3_proofs_read_o_log_n_hashes_in_one_call() {
        let tree = tree_of(1000);
        let reader = CountingReader {
            tree: &tree,
            calls: Cell::new(0),
            hashes: Cell::new(0),
        };
        let log2 = 10; // ⌈log2 1000⌉
        for size in [1, 2, 3, 511, 512, 513, 999, 1000] {
            for index in [0, size / 3, size - 1] {
                reader.calls.set(0);
                reader.hashes.set(0);
                inclusion_proof(index, size, &reader).unwrap();
                assert!(reader.calls.get() <= 1);
                assert!(reader.hashes.get() <= 2 * log2, "{index}/{size}");
            }
            for old in [1, size / 2, size - 1].into_iter().filter(|&o| o >= 1) {
                reader.calls.set(0);
                reader.hashes.set(0);
                consistency_proof(old, size, &reader).unwrap();
                assert!(reader.calls.get() <= 1);
                assert!(reader.hashes.get() <= 2 * log2 + 1, "{old}→{size}");
            }
            reader.hashes.set(0);
            tree_root(size, &reader).unwrap();
            assert!(reader.hashes.get() <= log2);
        }
    }

    #[test]
    fn e3_append_stores_each_completed_subtree_once() {
        // Leaf 7 completes subtrees at levels 0..=3.
        let tree = tree_of(7);
        let border: Vec<Hash> = tree.read_hashes(&append_needs(7)).unwrap();
        let appended = append(7, &border, &[leaf_hash(b"leaf 7")]).unwrap();
        let ids: Vec<SubtreeId> = appended.stored.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            (0..=3)
                .map(|level| SubtreeId {
                    level,
                    index: 7 >> level
                })
                .collect::<Vec<_>>()
        );
        assert_eq!(appended.root, tree_of(8).root());
        assert_eq!(appended.size, 8);
        // A border of the wrong length is refused, not trusted.
        assert!(append(7, &border[1..], &[]).is_err());
        // One leaf at a time and one batch store the same rows.
        let mut one_by_one = MemoryTree::new();
        let mut batched = MemoryTree::new();
        let leaves: Vec<Hash> = (0..77u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        leaves.iter().for_each(|h| {
            one_by_one.push(*h);
        });
        batched.extend(&leaves[..30]);
        batched.extend(&leaves[30..]);
        assert_eq!(one_by_one.hashes, batched.hashes);
    }

    #[test]
    fn subtree_keys_round_trip() {
        for id in [
            SubtreeId { level: 0, index: 0 },
            SubtreeId {
                level: 3,
                index: 12345,
            },
            SubtreeId {
                level: 40,
                index: (1 << 56) - 1,
            },
        ] {
            assert_eq!(SubtreeId::from_key(id.key()), id);
        }
        let id = SubtreeId { level: 2, index: 3 };
        assert_eq!((id.first_leaf(), id.end_leaf()), (12, 16));
    }
}
