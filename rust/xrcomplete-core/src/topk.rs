//! Top-k by weight inside any id range, without scanning the range.
//!
//! The trie gives every prefix a contiguous id range; the k heaviest keys of that range are found
//! here with a range-argmax structure (a sparse table over blocks of [`BLOCK`] weights) and a small
//! heap of sub-ranges: O(k log k) argmax queries of O(BLOCK) each, whatever the size of the range.
//! A one-character prefix over a million keys costs the same as a ten-character one.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::error::Result;
use crate::persist::{format_err, Array, Reader, Writer};

/// Weights per block of the sparse table: the partial blocks at both ends of a query are scanned.
const BLOCK: usize = 32;

/// Weights indexed by id, with argmax and top-k over id ranges.
///
/// Order: higher weight first; equal weights in increasing id order (the trie's key order).
/// Weights must be finite (the trie checks this before building).
///
/// ```
/// use xrcomplete_core::RangeTopK;
/// let w = RangeTopK::new(vec![1.0, 5.0, 3.0, 5.0, 2.0]);
/// assert_eq!(w.top_k(0, 5, 3), vec![1, 3, 2]);
/// assert_eq!(w.top_k(2, 5, 10), vec![3, 2, 4]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RangeTopK {
    weights: Array<f64>,
    /// Level `j` of the sparse table, `table[starts[j]..starts[j + 1]]`: entry `b` is the best
    /// id among blocks `b .. b + 2^j`. The levels' sizes follow from the number of weights.
    table: Array<u32>,
    starts: Vec<usize>,
}

/// Where each level of the sparse table over `n` weights starts, and the table's size.
fn level_starts(n: usize) -> Vec<usize> {
    let n_blocks = n.div_ceil(BLOCK);
    let mut starts = vec![0, n_blocks];
    let mut span = 1;
    while 2 * span <= n_blocks {
        starts.push(starts[starts.len() - 1] + n_blocks + 1 - 2 * span);
        span *= 2;
    }
    starts
}

impl RangeTopK {
    /// Builds the structure over `weights` (id = position). Weights must be finite.
    pub fn new(mut weights: Vec<f64>) -> Self {
        debug_assert!(weights.iter().all(|w| w.is_finite()));
        // -0.0 becomes 0.0, so that `total_cmp` (the heap's order) agrees with `==` (the scans').
        weights.iter_mut().for_each(|w| *w += 0.0);
        debug_assert!(weights.len() <= u32::MAX as usize);
        let starts = level_starts(weights.len());
        let mut table: Vec<u32> = (0..weights.len().div_ceil(BLOCK))
            .map(|b| scan_best(&weights, b * BLOCK, ((b + 1) * BLOCK).min(weights.len())))
            .collect();
        table.reserve_exact(starts[starts.len() - 1] - table.len());
        for j in 1..starts.len() - 1 {
            let (prev, span) = (starts[j - 1], 1 << (j - 1));
            for b in 0..starts[j + 1] - starts[j] {
                let best = better_of(&weights, table[prev + b], table[prev + b + span]);
                table.push(best);
            }
        }
        RangeTopK {
            weights: weights.into(),
            table: table.into(),
            starts,
        }
    }

    /// Writes the weights and the table as sections `{name}.w` and `{name}.t`.
    pub(crate) fn write<'a>(&'a self, w: &mut Writer<'a>, name: &str) {
        w.array(&format!("{name}.w"), &self.weights)
            .array(&format!("{name}.t"), &self.table);
    }

    /// Reads what [`RangeTopK::write`] wrote, checking that the weights are finite (and hold no
    /// -0.0) and that the table has its size and only ids of weights.
    pub(crate) fn read(r: &Reader, name: &str) -> Result<Self> {
        let weights: Array<f64> = r.array(&format!("{name}.w"))?;
        let table: Array<u32> = r.array(&format!("{name}.t"))?;
        let n = weights.len();
        if n > u32::MAX as usize
            || weights
                .iter()
                .any(|w| !w.is_finite() || (*w == 0.0 && w.is_sign_negative()))
        {
            return Err(format_err("top-k: a weight is not finite"));
        }
        let starts = level_starts(n);
        if table.len() != starts[starts.len() - 1] || table.iter().any(|&id| id as usize >= n) {
            return Err(format_err("top-k: the table does not fit the weights"));
        }
        Ok(RangeTopK {
            weights,
            table,
            starts,
        })
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when there are no weights.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// All weights, by id.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The id of the best weight in `lo..hi`, or `None` for an empty (or out-of-bounds) range.
    pub fn argmax(&self, lo: usize, hi: usize) -> Option<u32> {
        let hi = hi.min(self.weights.len());
        if lo >= hi {
            return None;
        }
        let (first_block, last_block) = (lo / BLOCK, (hi - 1) / BLOCK);
        if first_block == last_block {
            return Some(scan_best(&self.weights, lo, hi));
        }
        let w = &self.weights;
        let mut best = scan_best(w, lo, (first_block + 1) * BLOCK);
        best = better_of(w, best, scan_best(w, last_block * BLOCK, hi));
        if first_block + 1 < last_block {
            let (a, b) = (first_block + 1, last_block - 1);
            let level = (usize::BITS - 1 - (b - a + 1).leading_zeros()) as usize;
            let row = &self.table[self.starts[level]..self.starts[level + 1]];
            best = better_of(w, best, row[a]);
            best = better_of(w, best, row[b + 1 - (1 << level)]);
        }
        Some(best)
    }

    /// The ids of the `k` best weights in `lo..hi`, best first (ties: smaller id first).
    pub fn top_k(&self, lo: usize, hi: usize, k: usize) -> Vec<u32> {
        let hi = hi.min(self.weights.len());
        let mut out = Vec::with_capacity(k.min(hi.saturating_sub(lo)));
        let mut heap = BinaryHeap::new();
        if let Some(id) = self.argmax(lo, hi) {
            heap.push(self.candidate(id, lo, hi));
        }
        while out.len() < k {
            let Some(Candidate { id, lo, hi, .. }) = heap.pop() else {
                break;
            };
            out.push(id);
            let id = id as usize;
            for (a, b) in [(lo, id), (id + 1, hi)] {
                if let Some(best) = self.argmax(a, b) {
                    heap.push(self.candidate(best, a, b));
                }
            }
        }
        out
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.weights.nbytes() + self.table.nbytes()
    }

    fn candidate(&self, id: u32, lo: usize, hi: usize) -> Candidate {
        Candidate {
            weight: self.weights[id as usize],
            id,
            lo,
            hi,
        }
    }
}

/// The better of two ids: higher weight, then smaller id.
#[inline]
fn better_of(weights: &[f64], a: u32, b: u32) -> u32 {
    let (wa, wb) = (weights[a as usize], weights[b as usize]);
    if wa > wb || (wa == wb && a < b) {
        a
    } else {
        b
    }
}

/// Best id in the non-empty range `lo..hi` by a linear scan (the first of equal weights).
#[inline]
fn scan_best(weights: &[f64], lo: usize, hi: usize) -> u32 {
    let mut best = lo;
    for (i, &w) in weights[lo + 1..hi].iter().enumerate() {
        if w > weights[best] {
            best = lo + 1 + i;
        }
    }
    best as u32
}

/// A sub-range waiting in the top-k heap, represented by its best id.
#[derive(Debug)]
struct Candidate {
    weight: f64,
    id: u32,
    lo: usize,
    hi: usize,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher weight first, then smaller id. The weights are finite and hold no
        // -0.0, so `total_cmp` is exactly their numeric order.
        self.weight
            .total_cmp(&other.weight)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_top_k(w: &[f64], lo: usize, hi: usize, k: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = (lo as u32..hi as u32).collect();
        ids.sort_by(|&a, &b| w[b as usize].total_cmp(&w[a as usize]).then(a.cmp(&b)));
        ids.truncate(k);
        ids
    }

    #[test]
    fn empty_ranges_give_nothing() {
        let w = RangeTopK::new(vec![]);
        assert_eq!(w.argmax(0, 0), None);
        assert!(w.top_k(0, 10, 5).is_empty());
        let w = RangeTopK::new(vec![1.0, 2.0]);
        assert_eq!(w.argmax(1, 1), None);
        assert_eq!(w.argmax(2, 1), None);
        assert_eq!(w.argmax(5, 9), None);
        assert!(w.top_k(0, 2, 0).is_empty());
    }

    #[test]
    fn ties_go_to_the_smaller_id_across_blocks() {
        let w = RangeTopK::new(vec![7.0; 1000]);
        assert_eq!(w.argmax(3, 1000), Some(3));
        assert_eq!(w.top_k(40, 900, 4), vec![40, 41, 42, 43]);
    }

    proptest! {
        #[test]
        fn top_k_and_argmax_equal_sorting(
            // Few distinct values, so that ties are common; lengths span several blocks.
            w in prop::collection::vec((0i32..6).prop_map(f64::from), 0..400),
            a in 0usize..420, b in 0usize..420, k in 0usize..50,
        ) {
            let (lo, hi) = (a.min(b), a.max(b));
            let t = RangeTopK::new(w.clone());
            let hi_c = hi.min(w.len());
            let (expected, best) = if lo < hi_c {
                (brute_top_k(&w, lo, hi_c, k), Some(brute_top_k(&w, lo, hi_c, 1)[0]))
            } else {
                (vec![], None)
            };
            prop_assert_eq!(t.top_k(lo, hi, k), expected);
            prop_assert_eq!(t.argmax(lo, hi), best);
        }
    }
}
