//! An arena trie over label strings, with ranked completions.
//!
//! Keys get ids in lexicographic order (the depth-first order of the trie), so the keys that start
//! with a prefix form one contiguous id range: [`Trie::prefix_range`]. The model's candidates are
//! filtered to a prefix with one comparison each, and the heaviest keys of a range come from
//! [`RangeTopK`] without visiting the subtree.
//!
//! Layout: the keys, concatenated in id order, in one byte buffer; the weights by id; the nodes in
//! one `Vec` (children of a node stored contiguously, sorted by their first character). A node
//! exists where keys branch or end (unary chains are compressed, radix-trie style) and always at a
//! character boundary, so a node's string is its parent's extended by at least one whole
//! character. A node holds no bytes of its own: its edge label is read from the first key under it.

use rayon::prelude::*;

use crate::error::{excerpt, Error, Result};
use crate::persist::{format_err, Array, Kind, Persist, Reader, Writer};
use crate::strings::Strings;
use crate::topk::RangeTopK;

/// One trie node: the id range of the keys under it and where its children are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Node {
    /// Byte length of the node's string (the depth at which its edge ends).
    depth: u32,
    /// First character of the edge into this node (0 for the root).
    first_char: u32,
    /// Index of the first child in the arena.
    first_child: u32,
    /// Number of children (contiguous from `first_child`).
    n_children: u32,
    /// Ids of the keys under the node: `lo..hi`.
    lo: u32,
    hi: u32,
}

// SAFETY: six u32 fields, repr(C): no padding, every bit pattern valid. Loaded nodes are checked
// (`Trie::from_reader`) before use.
unsafe impl bytemuck::Zeroable for Node {}
unsafe impl bytemuck::Pod for Node {}

/// A set of weighted strings with prefix ranges and top-k completions.
///
/// Immutable once built, `Send + Sync`: one trie serves many threads without a lock.
///
/// ```
/// use xrcomplete_core::Trie;
/// let trie = Trie::new([("hotels", 3.0), ("hotwire", 2.0), ("house", 5.0), ("hotels", 1.0)])?;
/// assert_eq!(trie.len(), 3);
/// assert_eq!(trie.get("hotels"), Some(4.0)); // duplicate weights add up
/// assert_eq!(trie.completions("hot", 10), vec![("hotels", 4.0), ("hotwire", 2.0)]);
/// assert_eq!(trie.prefix_range("ho"), Some((0, 3)));
/// assert_eq!(trie.prefix_range("x"), None);
/// # Ok::<(), xrcomplete_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Trie {
    /// The keys, in id order.
    keys: Strings,
    weights: RangeTopK,
    nodes: Array<Node>,
}

impl Trie {
    /// Builds a trie from `(key, weight)` pairs. Weights of duplicate keys add up (in input
    /// order). Errors: an empty key, a weight (or sum) that is not finite, or more keys or bytes
    /// than 32-bit ids and offsets hold.
    pub fn new<I, K>(items: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, f64)>,
        K: AsRef<str> + Send,
    {
        let mut items: Vec<(K, f64)> = items.into_iter().collect();
        for (key, weight) in &items {
            check_item(key.as_ref(), *weight)?;
        }
        // Stable: duplicates stay in input order, so their sum is deterministic.
        items.par_sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));

        let mut keys: Vec<&str> = Vec::with_capacity(items.len());
        let mut weights: Vec<f64> = Vec::with_capacity(items.len());
        for (key, weight) in &items {
            let key = key.as_ref();
            match keys.last() {
                Some(&last) if last == key => {
                    let sum = weights.last_mut().expect("a weight per key");
                    *sum += *weight;
                    if !sum.is_finite() {
                        return Err(Error::NonFiniteWeight {
                            key: excerpt(key),
                            weight: *sum,
                        });
                    }
                }
                _ => {
                    keys.push(key);
                    weights.push(*weight);
                }
            }
        }
        Self::from_sorted_unique(&keys, weights)
    }

    /// Builds from keys that are sorted, distinct and non-empty, with finite weights.
    fn from_sorted_unique(keys: &[&str], weights: Vec<f64>) -> Result<Self> {
        // Ids are u32 and the node arena holds at most 2 nodes per key (+ the root).
        let max_keys = (u32::MAX / 2 - 1) as u64;
        if keys.len() as u64 > max_keys {
            return Err(Error::TooLarge {
                what: "number of keys",
                got: keys.len() as u64,
                limit: max_keys,
            });
        }
        let total: u64 = keys.iter().map(|k| k.len() as u64).sum();
        if total > u32::MAX as u64 {
            return Err(Error::TooLarge {
                what: "total bytes of the keys",
                got: total,
                limit: u32::MAX as u64,
            });
        }
        Ok(Trie {
            keys: Strings::new(keys)?,
            weights: RangeTopK::new(weights),
            nodes: build_nodes(keys).into(),
        })
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the trie holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of nodes, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The key with id `id`, or `None` past the end.
    pub fn key(&self, id: u32) -> Option<&str> {
        let id = id as usize;
        if id >= self.len() {
            return None;
        }
        Some(self.key_unchecked(id))
    }

    /// The weight of the key with id `id`, or `None` past the end.
    pub fn weight(&self, id: u32) -> Option<f64> {
        self.weights.weights().get(id as usize).copied()
    }

    /// The weights of all keys, by id.
    pub fn weights(&self) -> &[f64] {
        self.weights.weights()
    }

    /// The id of `key`, if present.
    pub fn id(&self, key: &str) -> Option<u32> {
        let (lo, _) = self.prefix_range(key)?;
        // The shortest key under a node comes first: `key` is present iff it is key `lo`.
        (self.key_unchecked(lo as usize) == key).then_some(lo)
    }

    /// The id of `key`, if present, for a key known to be in the id range `lo..hi` if it is
    /// present at all (that of a prefix of it): a binary search of the range, cheaper than
    /// [`Trie::id`]'s walk from the root where the range is narrow.
    pub fn id_within(&self, (lo, hi): (u32, u32), key: &str) -> Option<u32> {
        let (mut a, mut b) = (lo as usize, (hi as usize).min(self.len()));
        while a < b {
            let m = a + (b - a) / 2;
            match self.keys.get_bytes(m).cmp(key.as_bytes()) {
                std::cmp::Ordering::Less => a = m + 1,
                std::cmp::Ordering::Greater => b = m,
                std::cmp::Ordering::Equal => return Some(m as u32),
            }
        }
        None
    }

    /// The weight of `key`, if present.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.id(key).and_then(|id| self.weight(id))
    }

    /// True when `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.id(key).is_some()
    }

    /// The ids `start..end` of the keys that start with `prefix` (all keys for ""), or `None`
    /// when no key does.
    pub fn prefix_range(&self, prefix: &str) -> Option<(u32, u32)> {
        let p = prefix.as_bytes();
        let mut node = &self.nodes[0];
        // Down by the character at each node's depth only; the bytes in between are compared
        // once, at the end, with the first key under the node reached: the keys under a node
        // share their bytes up to its depth, and a key that starts with `prefix` has its
        // characters at every depth passed, so it is under that node if anywhere. (One read of
        // a key instead of one per node: the walk's cost was those reads.)
        while (node.depth as usize) < p.len() {
            // Not a character boundary of `prefix`: no key's bytes (whole characters) match.
            let c = prefix.get(node.depth as usize..)?.chars().next()? as u32;
            let children = self.children(node);
            node = &children[children.binary_search_by_key(&c, |n| n.first_char).ok()?];
        }
        if node.lo >= node.hi {
            return None;
        }
        let first = self.keys.get_bytes(node.lo as usize);
        (first.get(..p.len()) == Some(p)).then_some((node.lo, node.hi))
    }

    /// The ids of the `k` heaviest keys in the id range `lo..hi`, heaviest first, ties in key
    /// order. Ranges past the end are clipped.
    pub fn top_k_in_range(&self, lo: u32, hi: u32, k: usize) -> Vec<u32> {
        self.weights.top_k(lo as usize, hi as usize, k)
    }

    /// The weight of the heaviest key in the id range `lo..hi` (0 for an empty range).
    pub fn heaviest_in_range(&self, lo: u32, hi: u32) -> f64 {
        let top = self.top_k_in_range(lo, hi, 1);
        top.first().map_or(0.0, |&id| self.weights()[id as usize])
    }

    /// The `k` heaviest keys that start with `prefix`, with their weights, heaviest first; ties
    /// in key order. The cost depends on `k`, not on how many keys start with `prefix`.
    pub fn completions(&self, prefix: &str, k: usize) -> Vec<(&str, f64)> {
        let Some((lo, hi)) = self.prefix_range(prefix) else {
            return Vec::new();
        };
        self.top_k_in_range(lo, hi, k)
            .into_iter()
            .map(|id| (self.key_unchecked(id as usize), self.weights()[id as usize]))
            .collect()
    }

    /// All keys in id (lexicographic) order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|id| self.key_unchecked(id))
    }

    /// All `(key, weight)` pairs in id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, f64)> + '_ {
        self.keys().zip(self.weights().iter().copied())
    }

    /// The root node (node ids index the arena; see [`Trie::node_children`]).
    pub fn root(&self) -> usize {
        0
    }

    /// The children of node `node`, in key order (radix nodes: where keys branch or end).
    pub fn node_children(&self, node: usize) -> std::ops::Range<usize> {
        let n = &self.nodes[node];
        n.first_child as usize..(n.first_child + n.n_children) as usize
    }

    /// The ids `lo..hi` of the keys under node `node`.
    pub fn node_range(&self, node: usize) -> (u32, u32) {
        (self.nodes[node].lo, self.nodes[node].hi)
    }

    /// True when a key ends at node `node` (it is then the node's first key, id `lo`).
    pub fn node_is_key(&self, node: usize) -> bool {
        let n = &self.nodes[node];
        n.lo < n.hi && self.key_unchecked(n.lo as usize).len() == n.depth as usize
    }

    /// Heap memory held, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.keys.nbytes() + self.nodes.nbytes() + self.weights.memory_bytes()
    }

    /// The places of the trie whose string is within `max_edits` edits of `prefix`
    /// (Damerau-Levenshtein in its optimal-string-alignment form: substitutions, insertions,
    /// deletions, and transpositions of two adjacent characters), the first `exact_chars`
    /// characters unedited, and at most one edit in the first `one_edit_chars` characters of
    /// a place's string (every prefix of them that short is within one edit of a prefix of
    /// `prefix`). Each match is the key range under the place, the corrected prefix
    /// (`matched` bytes of the range's first key) and its edits. Along one path a place is
    /// reported only when it is closer than every place before it on that path (so ranges
    /// nest, closest innermost); `prefix` itself (0 edits) is not reported.
    ///
    /// A depth-first walk that leaves a branch as soon as no extension can come within the
    /// edits: its cost grows with the typed prefix and the branching near it, not with the
    /// number of keys. With an edit to spare, the walk goes through every place a few
    /// characters deep, where the trie is bushiest: `one_edit_chars` keeps the second edit out
    /// of there (over the AOL log's queries, a walk of two edits costs 2.5x less with 4).
    pub fn fuzzy_prefixes(
        &self,
        prefix: &str,
        max_edits: u32,
        exact_chars: usize,
        one_edit_chars: usize,
        out: &mut Vec<FuzzyMatch>,
    ) {
        out.clear();
        let p: Vec<char> = prefix.chars().collect();
        if max_edits == 0 || p.is_empty() || self.is_empty() {
            return;
        }
        let width = p.len() + 1;
        // rows[i]: edit distances of the path's first i characters to each prefix of `p`.
        let mut rows: Vec<u32> = (0..width as u32).collect();
        let mut path: Vec<char> = Vec::new();
        let mut walk = FuzzyWalk {
            p: &p,
            max_edits,
            exact_chars,
            one_edit_chars,
            width,
            out,
        };
        self.fuzzy_node(&self.nodes[0], &mut rows, &mut path, u32::MAX, &mut walk);
    }

    fn fuzzy_node(
        &self,
        node: &Node,
        rows: &mut Vec<u32>,
        path: &mut Vec<char>,
        best: u32,
        walk: &mut FuzzyWalk<'_>,
    ) {
        let children = self.children(node);
        // Where the path has spent its edits, only a character of the typed prefix can
        // follow: at a bushy node those children are looked up, the others never visited
        // (the same places are found, most of the walk's visits saved).
        let mut few = [0u32; LOOKUPS];
        let n = match children.len() > LOOKUPS {
            true => walk.unedited_next(rows, path.len(), &mut few),
            false => None,
        };
        match n {
            Some(n) => {
                for &c in &few[..n] {
                    if let Ok(i) = children.binary_search_by_key(&c, |n| n.first_char) {
                        self.fuzzy_child(node, &children[i], rows, path, best, walk);
                    }
                }
            }
            None => {
                for child in children {
                    self.fuzzy_child(node, child, rows, path, best, walk);
                }
            }
        }
    }

    fn fuzzy_child(
        &self,
        node: &Node,
        child: &Node,
        rows: &mut Vec<u32>,
        path: &mut Vec<char>,
        mut best: u32,
        walk: &mut FuzzyWalk<'_>,
    ) {
        let (rows_len, path_len) = (rows.len(), path.len());
        let mut offset = node.depth as usize;
        // The edge's first character is in the node: most children are left there, before
        // their key is read (a cache miss each).
        let first = char::from_u32(child.first_char).unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut alive = walk.visit(first, child, &mut offset, &mut best, rows, path);
        if alive {
            // Loaded nodes are checked to cut keys at character boundaries, not to agree with
            // their first character: a file that does not walks nowhere, never panics.
            let key = self.key_unchecked(child.lo as usize);
            let rest = key.get(offset..child.depth as usize);
            alive &= rest.is_some();
            for c in rest.unwrap_or_default().chars() {
                if !walk.visit(c, child, &mut offset, &mut best, rows, path) {
                    alive = false;
                    break;
                }
            }
        }
        if alive {
            self.fuzzy_node(child, rows, path, best, walk);
        }
        rows.truncate(rows_len);
        path.truncate(path_len);
    }

    fn children(&self, node: &Node) -> &[Node] {
        // Loaded arenas are checked only where a node has children; a childless node's
        // `first_child` may point anywhere, so this lookup must not panic.
        let start = node.first_child as usize;
        self.nodes
            .get(start..start + node.n_children as usize)
            .unwrap_or_default()
    }

    fn key_unchecked(&self, id: usize) -> &str {
        self.keys.get(id)
    }
}

/// The optimal-string-alignment distance of `a` and `b` (the edits of
/// [`Trie::fuzzy_prefixes`]), by the textbook table: for short strings.
pub(crate) fn osa(a: &[char], b: &[char]) -> u32 {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0u32; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i as u32;
    }
    for (j, v) in d[0].iter_mut().enumerate() {
        *v = j as u32;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = u32::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[n][m]
}

/// At most this many children of a node are looked up by character in a fuzzy walk (more
/// are all visited).
const LOOKUPS: usize = 8;

/// A place of the trie near a typed prefix ([`Trie::fuzzy_prefixes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuzzyMatch {
    /// The ids `lo..hi` of the keys that start with the corrected prefix.
    pub lo: u32,
    /// See `lo`.
    pub hi: u32,
    /// Bytes of the corrected prefix: the first `matched` bytes of key `lo`.
    pub matched: usize,
    /// Edits from the typed prefix to the corrected one (>= 1).
    pub edits: u32,
}

/// The state of one fuzzy walk.
struct FuzzyWalk<'a> {
    p: &'a [char],
    max_edits: u32,
    exact_chars: usize,
    one_edit_chars: usize,
    width: usize,
    out: &'a mut Vec<FuzzyMatch>,
}

impl FuzzyWalk<'_> {
    /// Extends the path by `c`, the character of `node`'s edge that ends at byte `offset`
    /// (moved past it), and reports `node` when the path is closer than `best` and within the
    /// edits it may hold ([`FuzzyWalk::budget`]; `best` then lowers). False when the walk
    /// leaves the branch: no extension can come within them, or the path is the typed prefix
    /// itself (what follows is exact, not fuzzy).
    fn visit(
        &mut self,
        c: char,
        node: &Node,
        offset: &mut usize,
        best: &mut u32,
        rows: &mut Vec<u32>,
        path: &mut Vec<char>,
    ) -> bool {
        *offset += c.len_utf8();
        let budget = self.budget(path.len());
        if !self.step(c, budget, rows, path) {
            return false;
        }
        let last = rows[rows.len() - 1];
        if last == 0 {
            return false;
        }
        if last <= budget && last < *best {
            *best = last;
            self.out.push(FuzzyMatch {
                lo: node.lo,
                hi: node.hi,
                matched: *offset,
                edits: last,
            });
        }
        true
    }

    /// When only some characters can extend a path of `i` characters (ending in row `rows`)
    /// within its edits (those of the typed prefix it must keep, or all its edits are spent),
    /// writes them to `out`, sorted and distinct, and returns how many; `None` when any might,
    /// or more than `out` holds.
    fn unedited_next(&self, rows: &[u32], i: usize, out: &mut [u32; LOOKUPS]) -> Option<usize> {
        let w = self.width;
        let mut n = 0;
        let mut add = |c: char| match n < LOOKUPS {
            true => {
                out[n] = c as u32;
                n += 1;
                true
            }
            false => false,
        };
        if i < self.exact_chars {
            add(*self.p.get(i)?);
        } else {
            let budget = self.budget(i);
            let row = &rows[rows.len() - w..];
            if row.iter().any(|&v| v < budget) {
                return None;
            }
            // An unedited step (the diagonal) from a cell within the edits. (The second
            // character of a transposition, `p[j - 2]` after `p[j - 1]`, is one: the cell
            // `j - 2` it steps from is within one edit of the one before the swap.)
            for j in 1..w {
                if row[j - 1] <= budget && !add(self.p[j - 1]) {
                    return None;
                }
            }
        }
        let found = &mut out[..n];
        found.sort_unstable();
        let mut kept = 0;
        for k in 0..found.len() {
            if k == 0 || found[k] != found[kept - 1] {
                found[kept] = found[k];
                kept += 1;
            }
        }
        Some(kept)
    }

    /// The edits a path may hold once its character `i` (from 0) is added.
    fn budget(&self, i: usize) -> u32 {
        match i < self.one_edit_chars {
            true => self.max_edits.min(1),
            false => self.max_edits,
        }
    }

    /// Extends the path by `c`: pushes the new row; false when no extension of the path can
    /// come within `budget` edits (or `c` edits a character that must stay exact).
    ///
    /// Distances are kept capped at `max_edits + 1` (all that is asked is whether one is within
    /// `max_edits`), so only the band of cells within `max_edits` of the diagonal is computed:
    /// the others are farther apart in length alone.
    fn step(&mut self, c: char, budget: u32, rows: &mut Vec<u32>, path: &mut Vec<char>) -> bool {
        let i = path.len(); // index of `c` in the path
        if i < self.exact_chars && self.p.get(i) != Some(&c) {
            return false;
        }
        let (w, k) = (self.width, self.max_edits as usize);
        let cap = self.max_edits + 1;
        let base = rows.len() - w;
        rows.push((i as u32 + 1).min(cap));
        rows.resize(base + 2 * w, cap);
        let mut min = rows[base + w];
        let (lo, hi) = ((i + 1).saturating_sub(k).max(1), (i + 1 + k).min(w - 1));
        for j in lo..=hi {
            let up = rows[base + j] + 1;
            let left = rows[base + w + j - 1] + 1;
            let diag = rows[base + j - 1] + u32::from(self.p[j - 1] != c);
            let mut v = up.min(left).min(diag);
            if i >= 1 && j >= 2 && self.p[j - 1] == path[i - 1] && self.p[j - 2] == c {
                v = v.min(rows[base - w + j - 2] + 1);
            }
            let v = v.min(cap);
            rows[base + w + j] = v;
            min = min.min(v);
        }
        path.push(c);
        min <= budget
    }
}

impl Persist for Trie {
    const KIND: Kind = Kind::Trie;

    /// The trie in the [`persist`](crate::persist) format: keys, weights, top-k table, nodes.
    fn writer(&self) -> Writer<'_> {
        let mut w = Writer::new(Kind::Trie);
        self.keys.write(&mut w, "keys");
        self.weights.write(&mut w, "top");
        w.array("nodes", &self.nodes);
        w
    }

    /// Reads a trie written by [`Trie::to_bytes`], its arrays used in place. Checks the keys
    /// (non-empty, sorted, distinct), the weights, and that the nodes form a tree whose walks
    /// stay in bounds and on character boundaries, so that no query can panic.
    fn from_reader(r: &Reader) -> Result<Self> {
        let keys = Strings::read(r, "keys", "trie keys")?;
        let weights = RangeTopK::read(r, "top")?;
        let nodes: Array<Node> = r.array("nodes")?;
        let bad = |what: &str| format_err(format!("trie: {what}"));
        if weights.len() != keys.len() {
            return Err(bad("as many weights as keys expected"));
        }
        if (0..keys.len()).any(|i| keys.get_bytes(i).is_empty()) {
            return Err(bad("empty key"));
        }
        if !keys.is_sorted_distinct() {
            return Err(bad("keys not sorted and distinct"));
        }
        check_nodes(&nodes, &keys).map_err(bad)?;
        Ok(Trie {
            keys,
            weights,
            nodes,
        })
    }
}

/// `str::is_char_boundary` on bytes known to be UTF-8 (no decoding).
fn is_char_boundary(bytes: &[u8], i: usize) -> bool {
    match bytes.get(i) {
        Some(&b) => (b as i8) >= -0x40, // not a continuation byte (0b10xx_xxxx)
        None => i == bytes.len(),
    }
}

/// Checks a loaded node arena: the root spans every key at depth 0; children lie in the arena
/// breadth first (each node's children follow the previous node's, so every node but the root
/// has one parent and the check is linear); a child is deeper than its parent, spans a
/// non-empty part of its parent's keys, and ends inside its first key on a character boundary.
fn check_nodes(nodes: &[Node], keys: &Strings) -> std::result::Result<(), &'static str> {
    let root = nodes.first().ok_or("no root node")?;
    if root.depth != 0 || root.lo != 0 || root.hi as usize != keys.len() {
        return Err("the root does not span the keys");
    }
    let mut next_child = 1u64;
    for node in nodes {
        if node.n_children == 0 {
            continue;
        }
        if u64::from(node.first_child) != next_child {
            return Err("children out of breadth-first order");
        }
        next_child += u64::from(node.n_children);
        let end = usize::try_from(next_child).unwrap_or(usize::MAX);
        let children = nodes
            .get(node.first_child as usize..end)
            .ok_or("child out of range")?;
        for child in children {
            let ok = child.depth > node.depth
                && node.lo <= child.lo
                && child.lo < child.hi
                && child.hi <= node.hi
                && (child.lo as usize) < keys.len()
                && is_char_boundary(keys.get_bytes(child.lo as usize), child.depth as usize);
            if !ok {
                return Err("a child out of its parent's bounds");
            }
        }
    }
    if next_child != nodes.len() as u64 {
        return Err("nodes that are nobody's child");
    }
    Ok(())
}

fn check_item(key: &str, weight: f64) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyString {
            what: "key",
            why: "a trie key must have at least one character",
        });
    }
    if !weight.is_finite() {
        return Err(Error::NonFiniteWeight {
            key: excerpt(key),
            weight,
        });
    }
    Ok(())
}

/// Builds the node arena over sorted distinct keys, breadth first so that the children of each
/// node are contiguous. No recursion: a chain of nested keys may be arbitrarily deep.
fn build_nodes(keys: &[&str]) -> Vec<Node> {
    let mut nodes = vec![Node {
        depth: 0,
        first_char: 0,
        first_child: 0,
        n_children: 0,
        lo: 0,
        hi: keys.len() as u32,
    }];
    let mut next = 0;
    while next < nodes.len() {
        let Node { depth, lo, hi, .. } = nodes[next];
        let (d, hi) = (depth as usize, hi as usize);
        let mut i = lo as usize;
        // A key that ends at this node sorts first among the keys under it.
        if i < hi && keys[i].len() == d {
            i += 1;
        }
        let first_child = nodes.len() as u32;
        while i < hi {
            let c = keys[i][d..].chars().next().expect("longer than the node");
            let c_bytes = &keys[i].as_bytes()[d..d + c.len_utf8()];
            // The keys continuing with `c` are contiguous (sorted, same first d bytes).
            let j =
                i + 1 + keys[i + 1..hi].partition_point(|k| k.as_bytes()[d..].starts_with(c_bytes));
            let depth = if j - i == 1 {
                keys[i].len()
            } else {
                // Common prefix of the first and last key = of the whole group, cut back to a
                // character boundary (the group shares `c`, so this stays past `d`).
                let (a, b) = (keys[i].as_bytes(), keys[j - 1].as_bytes());
                let mut l = d + a[d..]
                    .iter()
                    .zip(&b[d..])
                    .take_while(|(x, y)| x == y)
                    .count();
                while !keys[i].is_char_boundary(l) {
                    l -= 1;
                }
                l
            };
            nodes.push(Node {
                depth: depth as u32,
                first_char: c as u32,
                first_child: 0,
                n_children: 0,
                lo: i as u32,
                hi: j as u32,
            });
            i = j;
        }
        nodes[next].first_child = first_child;
        nodes[next].n_children = nodes.len() as u32 - first_child;
        next += 1;
    }
    // The arena grew by doubling; a serving trie keeps no spare capacity.
    nodes.shrink_to_fit();
    nodes
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// The reference: a sorted map with weights summed in input order.
    fn reference(items: &[(String, f64)]) -> BTreeMap<String, f64> {
        let mut map = BTreeMap::new();
        for (k, w) in items {
            *map.entry(k.clone()).or_insert(0.0) += *w;
        }
        map
    }

    fn brute_completions(
        map: &BTreeMap<String, f64>,
        prefix: &str,
        k: usize,
    ) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = map
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, w)| (key.clone(), *w))
            .collect();
        // Stable sort over key order: ties stay in key order.
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(k);
        v
    }

    /// Keys over a small alphabet with multi-byte characters, so that prefixes collide often
    /// and branch points fall between the bytes of one character.
    fn key_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!['a', 'b', 'é', 'è', '中', '😀', ' ']),
            1..7,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn items_strategy() -> impl Strategy<Value = Vec<(String, f64)>> {
        prop::collection::vec((key_strategy(), (0i32..5).prop_map(f64::from)), 0..60)
    }

    #[test]
    fn rejects_empty_keys_and_non_finite_weights() {
        assert!(matches!(
            Trie::new([("a", 1.0), ("", 1.0)]),
            Err(Error::EmptyString { .. })
        ));
        assert!(matches!(
            Trie::new([("a", f64::NAN)]),
            Err(Error::NonFiniteWeight { .. })
        ));
        assert!(matches!(
            Trie::new([("a", f64::INFINITY)]),
            Err(Error::NonFiniteWeight { .. })
        ));
        // Finite weights whose sum overflows.
        assert!(matches!(
            Trie::new([("a", f64::MAX), ("a", f64::MAX)]),
            Err(Error::NonFiniteWeight { .. })
        ));
    }

    #[test]
    fn empty_trie_answers_nothing() {
        let t = Trie::new(Vec::<(&str, f64)>::new()).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.prefix_range(""), None);
        assert!(t.completions("", 10).is_empty());
        assert_eq!(t.get("a"), None);
        assert_eq!(t.key(0), None);
    }

    #[test]
    fn branches_between_the_bytes_of_one_character_stay_on_boundaries() {
        // 'é' = C3 A9 and 'è' = C3 A8 share their first byte.
        let t = Trie::new([("xé", 1.0), ("xè", 2.0), ("x", 3.0)]).unwrap();
        assert_eq!(t.prefix_range("x"), Some((0, 3)));
        assert_eq!(t.prefix_range("xé"), t.id("xé").map(|i| (i, i + 1)));
        assert_eq!(t.completions("x", 2), vec![("x", 3.0), ("xè", 2.0)]);
        for n in t.nodes.iter() {
            let key = t.key(n.lo).unwrap_or("");
            assert!(key.is_char_boundary(n.depth as usize));
        }
    }

    #[test]
    fn a_deep_chain_of_nested_keys_builds_without_recursion() {
        let keys: Vec<String> = (1..=3000).map(|n| "a".repeat(n)).collect();
        let t = Trie::new(keys.iter().map(|k| (k.as_str(), 1.0))).unwrap();
        assert_eq!(t.len(), 3000);
        assert_eq!(t.prefix_range(&"a".repeat(2999)), Some((2998, 3000)));
        assert_eq!(
            t.completions(&"a".repeat(10), 1),
            vec![(keys[9].as_str(), 1.0)]
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_never_a_wrong_trie() {
        let t = Trie::new([("b", 2.0), ("a", 1.0)]).unwrap();
        let bytes = t.to_bytes();
        for len in 0..bytes.len() {
            assert!(Trie::from_bytes(&bytes[..len]).is_err());
        }
        // Files that pass the envelope checks but hold unsorted keys, or nodes that would walk
        // out of bounds.
        let file = |keys: &[&str], nodes: &[Node]| {
            let (strings, top) = (
                Strings::new(keys).unwrap(),
                RangeTopK::new(vec![1.0; keys.len()]),
            );
            let mut w = Writer::new(Kind::Trie);
            strings.write(&mut w, "keys");
            top.write(&mut w, "top");
            w.array("nodes", nodes);
            Trie::from_bytes(&w.finish())
        };
        assert_eq!(
            file(&["a", "b"], &t.nodes)
                .unwrap()
                .completions("", 5)
                .len(),
            2
        );
        assert!(matches!(
            file(&["b", "a"], &t.nodes),
            Err(Error::Format { .. })
        ));
        let mut nodes = t.nodes.to_vec();
        nodes[1].depth = 9; // past the end of its key
        assert!(file(&["a", "b"], &nodes).is_err());
        let mut nodes = t.nodes.to_vec();
        nodes[0].n_children = 3; // a child past the arena
        assert!(file(&["a", "b"], &nodes).is_err());
        let mut nodes = t.nodes.to_vec();
        nodes[2].first_child = 1; // a cycle back to a sibling
        nodes[2].n_children = 1;
        assert!(file(&["a", "b"], &nodes).is_err());
        let mut nodes = t.nodes.to_vec();
        nodes[1].hi = 3; // more keys than the trie has
        assert!(file(&["a", "b"], &nodes).is_err());
        let mut nodes = t.nodes.to_vec();
        nodes[1].first_child = 99; // a childless node pointing past the arena: still answers
        let loaded = file(&["a", "b"], &nodes).unwrap();
        assert_eq!(loaded.prefix_range("ab"), None);
        assert_eq!(loaded.completions("a", 5).len(), 1);
        let nodes = &t.nodes[..1];
        assert!(file(&["a", "b"], nodes).is_err()); // keys nobody reaches... the root only
    }

    #[test]
    fn fuzzy_prefixes_find_typos() {
        let t = Trie::new([("weather", 5.0), ("wells fargo", 3.0), ("walmart", 9.0)]).unwrap();
        let mut out = Vec::new();
        let found = |t: &Trie, p: &str, d: u32, out: &mut Vec<FuzzyMatch>| -> Vec<(String, u32)> {
            t.fuzzy_prefixes(p, d, 1, 0, out);
            out.iter()
                .map(|m| (t.key(m.lo).unwrap()[..m.matched].to_owned(), m.edits))
                .collect()
        };
        // A transposition, a substitution, a deletion, an insertion: one edit each.
        assert!(found(&t, "waether", 1, &mut out).contains(&("weather".into(), 1)));
        assert!(found(&t, "weathwr", 1, &mut out).contains(&("weather".into(), 1)));
        assert!(found(&t, "wether", 1, &mut out).contains(&("weather".into(), 1)));
        assert!(found(&t, "weaather", 1, &mut out).contains(&("weather".into(), 1)));
        // The first character stays; the exact prefix is not fuzzy; 0 edits finds nothing.
        assert!(found(&t, "qeather", 1, &mut out).is_empty());
        assert!(found(&t, "weat", 1, &mut out)
            .iter()
            .all(|(m, _)| m != "weat"));
        assert!(found(&t, "waether", 0, &mut out).is_empty());
        assert!(found(&t, "", 2, &mut out).is_empty());
        assert!(found(
            &Trie::new(Vec::<(&str, f64)>::new()).unwrap(),
            "ab",
            2,
            &mut out
        )
        .is_empty());
    }

    /// Checks [`Trie::fuzzy_prefixes`] against a brute force over the keys' prefixes.
    fn check_fuzzy(
        keys: &BTreeSet<String>,
        prefix: &str,
        max_edits: u32,
        exact_chars: usize,
        one_edit_chars: usize,
    ) -> std::result::Result<(), TestCaseError> {
        let t = Trie::new(keys.iter().map(|k| (k.as_str(), 1.0))).unwrap();
        let mut out = Vec::new();
        t.fuzzy_prefixes(prefix, max_edits, exact_chars, one_edit_chars, &mut out);
        let p: Vec<char> = prefix.chars().collect();
        // A corrected prefix may be reported: its first characters exact, and each of its
        // prefixes of up to `one_edit_chars` characters within one edit of one of `p`'s.
        let admissible = |q: &[char]| {
            q.iter().zip(&p).take(exact_chars).all(|(a, b)| a == b)
                && q.len() >= exact_chars.min(p.len())
                && (1..=q.len().min(one_edit_chars))
                    .all(|i| (0..=p.len()).any(|j| osa(&q[..i], &p[..j]) <= 1))
                && (q.len() > one_edit_chars || osa(q, &p) <= 1)
        };
        // Sound: the corrected prefix is that many edits away, and the range is its keys.
        for m in &out {
            let matched = &t.key(m.lo).unwrap()[..m.matched];
            let mc: Vec<char> = matched.chars().collect();
            prop_assert_eq!(osa(&mc, &p), m.edits);
            prop_assert!(m.edits >= 1 && m.edits <= max_edits);
            prop_assert!(admissible(&mc), "{}", matched);
            let (lo, hi) = t.prefix_range(matched).unwrap();
            prop_assert_eq!((lo, hi), (m.lo, m.hi));
        }
        // Complete: a key not starting with the prefix but with an admissible prefix within
        // the edits is in a reported range, at its best distance.
        for (id, key) in t.keys().enumerate() {
            if key.starts_with(prefix) {
                continue;
            }
            let kc: Vec<char> = key.chars().collect();
            let best = (1..=kc.len())
                .filter(|&l| admissible(&kc[..l]))
                .map(|l| osa(&kc[..l], &p))
                .min();
            let got = out
                .iter()
                .filter(|m| (m.lo..m.hi).contains(&(id as u32)))
                .map(|m| m.edits)
                .min();
            match best {
                Some(b) if b <= max_edits => prop_assert_eq!(got, Some(b), "{}", key),
                _ => prop_assert_eq!(got, None, "{}", key),
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn fuzzy_prefixes_are_sound_and_complete(
            keys in prop::collection::btree_set("[abcé]{1,8}", 1..12),
            prefix in "[abcé]{1,7}",
            max_edits in 1u32..4,
            exact_chars in 0usize..2,
            one_edit_chars in 0usize..5,
        ) {
            check_fuzzy(&keys, &prefix, max_edits, exact_chars, one_edit_chars)?;
        }

        /// Nodes of more children than are looked up by character: the lookups find the same.
        #[test]
        fn fuzzy_prefixes_are_sound_and_complete_where_the_trie_is_bushy(
            keys in prop::collection::btree_set("[a-m]{1,6}", 20..80),
            prefix in "[a-m]{1,6}",
            max_edits in 1u32..3,
            exact_chars in 0usize..2,
            one_edit_chars in 0usize..4,
        ) {
            check_fuzzy(&keys, &prefix, max_edits, exact_chars, one_edit_chars)?;
        }

        #[test]
        fn saved_bytes_load_to_an_equal_trie(items in items_strategy()) {
            let t = Trie::new(items.iter().map(|(k, w)| (k.as_str(), *w))).unwrap();
            prop_assert_eq!(Trie::from_bytes(&t.to_bytes()).unwrap(), t);
        }

        #[test]
        fn lookups_and_iteration_match_a_sorted_map(items in items_strategy(), probe in key_strategy()) {
            let t = Trie::new(items.iter().map(|(k, w)| (k.as_str(), *w))).unwrap();
            let map = reference(&items);
            prop_assert_eq!(t.len(), map.len());
            let got: Vec<(String, f64)> = t.iter().map(|(k, w)| (k.to_owned(), w)).collect();
            let want: Vec<(String, f64)> = map.iter().map(|(k, w)| (k.clone(), *w)).collect();
            prop_assert_eq!(got, want);
            for (id, (key, w)) in map.iter().enumerate() {
                prop_assert_eq!(t.get(key), Some(*w));
                prop_assert_eq!(t.id(key), Some(id as u32));
            }
            prop_assert_eq!(t.get(&probe), map.get(&probe).copied());
            // Within the range of any prefix of a key, the search of the range finds it; a
            // probe is found there exactly when it is a key.
            for key in map.keys().chain([&probe]) {
                for (cut, _) in key.char_indices().skip(1).chain([(key.len(), ' ')]) {
                    if let Some(range) = t.prefix_range(&key[..cut]) {
                        prop_assert_eq!(t.id_within(range, key), t.id(key), "{}", key);
                    }
                }
            }
        }

        #[test]
        fn prefix_ranges_hold_exactly_the_keys_with_the_prefix(items in items_strategy(), probe in key_strategy()) {
            let t = Trie::new(items.iter().map(|(k, w)| (k.as_str(), *w))).unwrap();
            let map = reference(&items);
            // Probe every prefix of every key, every prefix of the probe, and "".
            let mut prefixes: Vec<String> = vec![String::new()];
            for key in map.keys().chain(std::iter::once(&probe)) {
                prefixes.extend(key.char_indices().map(|(i, c)| key[..i + c.len_utf8()].to_owned()));
            }
            for p in &prefixes {
                let ids: Vec<u32> = map.keys().enumerate()
                    .filter(|(_, k)| k.starts_with(p.as_str())).map(|(i, _)| i as u32).collect();
                let want = ids.first().map(|&lo| (lo, ids[ids.len() - 1] + 1));
                prop_assert_eq!(t.prefix_range(p), want, "prefix {:?}", p);
            }
        }

        #[test]
        fn completions_equal_a_brute_force_sort(items in items_strategy(), probe in key_strategy(), k in 0usize..12) {
            let t = Trie::new(items.iter().map(|(k, w)| (k.as_str(), *w))).unwrap();
            let map = reference(&items);
            let mut prefixes: Vec<String> = vec![String::new()];
            for key in map.keys().chain(std::iter::once(&probe)) {
                prefixes.extend(key.char_indices().map(|(i, c)| key[..i + c.len_utf8()].to_owned()));
            }
            for p in &prefixes {
                let got: Vec<(String, f64)> = t.completions(p, k).into_iter().map(|(s, w)| (s.to_owned(), w)).collect();
                prop_assert_eq!(got, brute_completions(&map, p, k), "prefix {:?}", p);
            }
        }
    }
}
