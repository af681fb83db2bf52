//! [`BoostedTrees`]: a ranker of gradient-boosted regression trees trained with the
//! LambdaRank gradients of NDCG (LambdaMART; Burges 2010), the learning-to-rank method of
//! LightGBM's `lambdarank` objective, which this follows: histograms of binned features,
//! leaf-wise growth to a number of leaves, the gradients of the pairs that involve the top of
//! each list, normalised per list.
//!
//! Trees express what an additive ranker cannot: interactions between features (popularity
//! matters unless the language model already finds the query likely; two copied words are
//! good after a long previous query, not after a short one). A candidate's segment is one more
//! input (after its features), so the trees can split on it too.
//!
//! Training is deterministic: no sampling, every sum in a fixed order whatever the number of
//! threads, ties between splits broken by feature then bin.

use rayon::prelude::*;

use super::{RankLists, Scored};
use crate::error::{Error, Result};
use crate::persist::{format_err, Array, Kind, Persist, Reader, Writer};

/// Options of [`BoostedTrees::train`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TreeTrainParams {
    /// Boosting rounds: one tree each.
    pub trees: usize,
    /// Leaves per tree at most (>= 2).
    pub leaves: usize,
    /// Splits from the root to a leaf at most (>= 1). Trees of depth up to
    /// [`DENSE_DEPTH`] are scored without branches.
    pub max_depth: usize,
    /// Shrinkage of each tree's values.
    pub learning_rate: f32,
    /// Candidates in a leaf at least.
    pub min_leaf: usize,
    /// L2 penalty on the leaf values.
    pub l2: f32,
    /// Pairs are formed with the candidates ranked this high (by the current scores) only.
    pub truncation: usize,
}

impl Default for TreeTrainParams {
    fn default() -> Self {
        TreeTrainParams {
            trees: 100,
            leaves: 31,
            max_depth: 5,
            learning_rate: 0.1,
            min_leaf: 100,
            l2: 0.0,
            truncation: 10,
        }
    }
}

impl TreeTrainParams {
    /// Checks every option.
    pub fn check(&self) -> Result<()> {
        let ok = self.trees >= 1
            && self.leaves >= 2
            && self.max_depth >= 1
            && self.min_leaf >= 1
            && self.truncation >= 1
            && self.learning_rate > 0.0
            && self.learning_rate.is_finite()
            && self.l2 >= 0.0
            && self.l2.is_finite();
        match ok {
            true => Ok(()),
            false => Err(Error::InvalidInput(format!(
                "ranker trees: trees, max_depth, min_leaf and truncation must be >= 1, leaves >= 2, \
                 learning_rate > 0 and l2 >= 0 (got {self:?})"
            ))),
        }
    }
}

/// Bins per input at most (bin ids are bytes).
const MAX_BINS: usize = 256;

/// Values sampled per input to place the bin edges.
const EDGE_SAMPLE: usize = 200_000;

/// Rows per piece of a histogram summed in parallel: fixed, so sums do not depend on threads.
const HIST_CHUNK: usize = 16_384;

/// A link to a node (>= 0) or to a leaf (`!leaf`, < 0).
type Link = i32;

/// Boosted regression trees over a candidate's features and its segment.
#[derive(Debug, Clone, PartialEq)]
pub struct BoostedTrees {
    n_features: usize,
    n_segments: usize,
    /// Per tree, its root.
    roots: Array<Link>,
    /// Per node: the input it splits on (`n_features`: the segment).
    split_on: Array<u32>,
    /// Per node: values up to this go left.
    threshold: Array<f32>,
    left: Array<Link>,
    right: Array<Link>,
    /// Leaf values, shrinkage applied.
    leaf: Array<f32>,
    /// The trees laid out for scoring without branches, when none is deeper than
    /// [`DENSE_DEPTH`].
    dense: Option<Dense>,
}

/// Trees this deep at most are scored as perfect binary trees.
pub const DENSE_DEPTH: usize = 8;

/// Leaves of the perfect trees of all trees at most (a forest past it is walked by links).
const DENSE_LEAVES: usize = 1 << 22;

/// Every tree as a perfect binary tree of one depth, in breadth-first order: node `i`'s
/// children are `2i + 1` (values up to the threshold) and `2i + 2`. A leaf above the last
/// level becomes pass-through nodes with its value under both sides.
#[derive(Debug, Clone, PartialEq)]
struct Dense {
    depth: usize,
    /// Per tree, `2^depth - 1` nodes.
    input: Vec<u32>,
    threshold: Vec<f32>,
    /// Per tree, `2^depth` leaves.
    leaf: Vec<f32>,
}

impl Dense {
    /// The layout of trees no deeper than [`DENSE_DEPTH`]; `None` for deeper ones.
    fn new(t: &BoostedTrees) -> Option<Dense> {
        let depth_of = |root: Link| {
            let (mut deepest, mut stack) = (0, vec![(root, 0usize)]);
            while let Some((at, d)) = stack.pop() {
                deepest = deepest.max(d);
                if at >= 0 && d < DENSE_DEPTH {
                    let i = at as usize;
                    stack.extend([(t.left[i], d + 1), (t.right[i], d + 1)]);
                } else if at >= 0 {
                    deepest = DENSE_DEPTH + 1;
                }
            }
            deepest
        };
        let depth = t.roots.iter().map(|&r| depth_of(r)).max().unwrap_or(0);
        if depth > DENSE_DEPTH || t.roots.len().saturating_mul(1 << depth) > DENSE_LEAVES {
            return None;
        }
        let (inner, leaves) = ((1usize << depth) - 1, 1usize << depth);
        let mut dense = Dense {
            depth,
            input: Vec::with_capacity(t.roots.len() * inner),
            threshold: Vec::with_capacity(t.roots.len() * inner),
            leaf: Vec::with_capacity(t.roots.len() * leaves),
        };
        for &root in t.roots.iter() {
            let (node_base, leaf_base) = (dense.input.len(), dense.leaf.len());
            dense.input.resize(node_base + inner, 0);
            dense.threshold.resize(node_base + inner, f32::INFINITY);
            dense.leaf.resize(leaf_base + leaves, 0.0);
            let mut stack = vec![(root, 0usize, 0usize)];
            while let Some((at, pos, level)) = stack.pop() {
                if level == depth {
                    dense.leaf[leaf_base + pos - inner] = t.leaf[(!at) as usize];
                    continue;
                }
                let (left, right) = match at >= 0 {
                    true => {
                        let i = at as usize;
                        dense.input[node_base + pos] = t.split_on[i];
                        dense.threshold[node_base + pos] = t.threshold[i];
                        (t.left[i], t.right[i])
                    }
                    // A leaf before the last level: the same leaf on both sides.
                    false => (at, at),
                };
                stack.extend([
                    (left, 2 * pos + 1, level + 1),
                    (right, 2 * pos + 2, level + 1),
                ]);
            }
        }
        Some(dense)
    }

    /// The sum over the trees of the leaves that `input` (features, then the segment)
    /// reaches.
    #[inline]
    fn score(&self, input: &[f32]) -> f32 {
        let (inner, leaves) = ((1usize << self.depth) - 1, 1usize << self.depth);
        let trees = self.leaf.len() / leaves;
        let mut total = 0.0;
        for t in 0..trees {
            let (inputs, thresholds) = (
                &self.input[t * inner..(t + 1) * inner],
                &self.threshold[t * inner..(t + 1) * inner],
            );
            let mut i = 0;
            for _ in 0..self.depth {
                // Right unless up to the threshold (NaN goes right, as in the walk by links).
                let v = input[inputs[i] as usize];
                let goes_right = v > thresholds[i] || v.is_nan();
                i = 2 * i + 1 + usize::from(goes_right);
            }
            total += self.leaf[t * leaves + i - inner];
        }
        total
    }

    /// [`Dense::score`] of each row of `inputs` (`stride` floats each), into `out`: tree by
    /// tree over lanes of [`LANES`] rows, whose walks down a tree are independent (the
    /// processor overlaps them instead of waiting on each comparison in turn). The same sums,
    /// in the same order.
    fn score_many(&self, inputs: &[f32], stride: usize, out: &mut [f32]) {
        let (inner, leaves) = ((1usize << self.depth) - 1, 1usize << self.depth);
        let trees = self.leaf.len() / leaves;
        for (rows, scores) in inputs.chunks(stride * LANES).zip(out.chunks_mut(LANES)) {
            let n = scores.len();
            let mut total = [0.0f32; LANES];
            for t in 0..trees {
                let (inputs, thresholds) = (
                    &self.input[t * inner..(t + 1) * inner],
                    &self.threshold[t * inner..(t + 1) * inner],
                );
                let mut at = [0usize; LANES];
                for _ in 0..self.depth {
                    for (j, i) in at.iter_mut().enumerate().take(n) {
                        let v = rows[j * stride + inputs[*i] as usize];
                        let goes_right = v > thresholds[*i] || v.is_nan();
                        *i = 2 * *i + 1 + usize::from(goes_right);
                    }
                }
                let leaf = &self.leaf[t * leaves..(t + 1) * leaves];
                for (sum, i) in total.iter_mut().zip(at).take(n) {
                    *sum += leaf[i - inner];
                }
            }
            scores.copy_from_slice(&total[..n]);
        }
    }
}

/// Rows scored together by [`Dense::score_many`].
const LANES: usize = 8;

impl BoostedTrees {
    fn from_parts(
        [n_features, n_segments]: [usize; 2],
        roots: Array<Link>,
        (split_on, threshold): (Array<u32>, Array<f32>),
        [left, right]: [Array<Link>; 2],
        leaf: Array<f32>,
    ) -> Result<Self> {
        let bad = |why: &str| Err(Error::InvalidInput(format!("ranker trees: {why}")));
        let nodes = split_on.len();
        if n_segments == 0
            || threshold.len() != nodes
            || left.len() != nodes
            || right.len() != nodes
        {
            return bad("no segment, or sizes of the parameters that do not match");
        }
        if nodes > i32::MAX as usize || leaf.len() > i32::MAX as usize {
            return bad("too many nodes");
        }
        // A link goes to a later node (so every walk ends) or to a leaf that exists.
        let link_ok = |from: Option<usize>, to: Link| match to {
            t if t >= 0 => (t as usize) < nodes && from.is_none_or(|f| (t as usize) > f),
            t => ((!t) as usize) < leaf.len(),
        };
        if !roots.iter().all(|&r| link_ok(None, r))
            || !(0..nodes).all(|i| link_ok(Some(i), left[i]) && link_ok(Some(i), right[i]))
        {
            return bad("a link out of range or backwards");
        }
        if split_on.iter().any(|&j| j as usize > n_features)
            || threshold.iter().any(|t| t.is_nan())
            || leaf.iter().any(|v| !v.is_finite())
        {
            return bad("a split on no input, or a value that is not finite");
        }
        let mut trees = BoostedTrees {
            dense: None,
            n_features,
            n_segments,
            roots,
            split_on,
            threshold,
            left,
            right,
            leaf,
        };
        trees.dense = Dense::new(&trees);
        Ok(trees)
    }

    /// Number of features (the segment comes after them).
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of segments it was trained with.
    pub fn n_segments(&self) -> usize {
        self.n_segments
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Heap memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.roots.nbytes()
            + self.split_on.nbytes()
            + self.threshold.nbytes()
            + self.left.nbytes()
            + self.right.nbytes()
            + self.leaf.nbytes()
            + self.dense.as_ref().map_or(0, |d| {
                (d.input.capacity() + d.threshold.capacity() + d.leaf.capacity()) * 4
            })
    }

    /// The score of a candidate with features `x` in `segment`.
    pub fn score(&self, segment: usize, x: &[f32]) -> f32 {
        let mut input = Vec::with_capacity(self.n_features + 1);
        self.input(segment, x, &mut input);
        self.score_input(&input)
    }

    /// The scores of many candidates: the same as [`BoostedTrees::score`] of each, with one
    /// buffer of inputs for all.
    pub fn score_all<T: Scored>(&self, rows: &mut [T]) {
        let stride = self.n_features + 1;
        let mut input = Vec::with_capacity(stride * rows.len());
        if let Some(dense) = &self.dense {
            for row in rows.iter() {
                let (segment, x) = row.input();
                self.input(segment, x, &mut input);
            }
            let mut scores = vec![0.0; rows.len()];
            dense.score_many(&input, stride, &mut scores);
            for (row, s) in rows.iter_mut().zip(scores) {
                row.set_score(s);
            }
            return;
        }
        for row in rows {
            input.clear();
            let (segment, x) = row.input();
            self.input(segment, x, &mut input);
            let s = self.score_input(&input);
            row.set_score(s);
        }
    }

    /// Appends a candidate's inputs: its features (a short `x` padded with zeros), then its
    /// segment.
    fn input(&self, segment: usize, x: &[f32], to: &mut Vec<f32>) {
        let d = self.n_features;
        to.extend_from_slice(&x[..x.len().min(d)]);
        to.resize(to.len() + d - x.len().min(d), 0.0);
        to.push(segment as f32);
    }

    /// The score of [`BoostedTrees::input`]'s inputs: by the perfect trees where there are
    /// some, else by the links of the nodes.
    fn score_input(&self, input: &[f32]) -> f32 {
        match &self.dense {
            Some(dense) => dense.score(input),
            None => self.walk(input),
        }
    }

    /// [`BoostedTrees::score_input`] by the links of the nodes.
    fn walk(&self, input: &[f32]) -> f32 {
        self.roots
            .iter()
            .map(|&root| {
                let mut at = root;
                while at >= 0 {
                    let i = at as usize;
                    at = match input[self.split_on[i] as usize] <= self.threshold[i] {
                        true => self.left[i],
                        false => self.right[i],
                    };
                }
                self.leaf[(!at) as usize]
            })
            .sum()
    }

    /// Learns trees from `lists`, whose candidates' segments are below `n_segments`.
    /// `mask[j] == false` leaves feature `j` out. `monotone[j]` 1 (-1) makes every score
    /// rise (fall) with feature `j`, all else equal (LightGBM's basic monotone constraints:
    /// each split on it keeps the left side's values on one side of the right side's, the
    /// subtrees bounded by their midpoint); 0 leaves it free.
    pub fn train(
        lists: &RankLists,
        n_segments: usize,
        mask: Option<&[bool]>,
        monotone: Option<&[i8]>,
        params: &TreeTrainParams,
    ) -> Result<Self> {
        Self::boost(None, lists, n_segments, mask, monotone, params)
    }

    /// Its trees then `params.trees` more, learnt from `lists` starting from its scores (as
    /// [`BoostedTrees::train`] learns from zero): a ranker for lists that it ranks well
    /// enough to start from, and that the new trees rank better.
    pub fn train_more(
        &self,
        lists: &RankLists,
        mask: Option<&[bool]>,
        monotone: Option<&[i8]>,
        params: &TreeTrainParams,
    ) -> Result<Self> {
        if lists.n_features != self.n_features {
            return Err(Error::InvalidInput(format!(
                "lists of {} features for trees of {}",
                lists.n_features, self.n_features
            )));
        }
        Self::boost(Some(self), lists, self.n_segments, mask, monotone, params)
    }

    fn boost(
        start: Option<&BoostedTrees>,
        lists: &RankLists,
        n_segments: usize,
        mask: Option<&[bool]>,
        monotone: Option<&[i8]>,
        params: &TreeTrainParams,
    ) -> Result<Self> {
        params.check()?;
        if lists.is_empty() {
            return Err(Error::InvalidInput("no list to learn a ranker from".into()));
        }
        let d = lists.n_features;
        if mask.is_some_and(|m| m.len() != d) {
            return Err(Error::InvalidInput("one mask entry per feature".into()));
        }
        if monotone.is_some_and(|m| m.len() != d || m.iter().any(|c| c.abs() > 1)) {
            return Err(Error::InvalidInput(
                "one monotone constraint (-1, 0 or 1) per feature".into(),
            ));
        }
        if n_segments == 0 || lists.segment.iter().any(|&s| s as usize >= n_segments) {
            return Err(Error::InvalidInput(format!(
                "candidate segments must be below n_segments ({n_segments})"
            )));
        }
        let data = Binned::new(lists, mask, monotone);
        let n = lists.n_candidates();
        let (mut scores, mut forest) = match start {
            None => (vec![0f64; n], Forest::default()),
            Some(t) => {
                let scores = (0..n)
                    .map(|r| {
                        let x = &lists.x[r * d..(r + 1) * d];
                        f64::from(t.score(lists.segment[r] as usize, x))
                    })
                    .collect();
                let forest = Forest {
                    roots: t.roots.to_vec(),
                    split_on: t.split_on.to_vec(),
                    threshold: t.threshold.to_vec(),
                    left: t.left.to_vec(),
                    right: t.right.to_vec(),
                    leaf: t.leaf.to_vec(),
                };
                (scores, forest)
            }
        };
        let (mut grad, mut hess) = (vec![0f64; n], vec![0f64; n]);
        let mut order: Vec<u32> = Vec::with_capacity(n);
        for _ in 0..params.trees {
            // Rows in their own order at every root: histograms sum in the same order, and
            // read the rows' bins in turn.
            order.clear();
            order.extend(0..n as u32);
            lambdas(lists, &scores, params.truncation, &mut grad, &mut hess);
            let grown = grow(&data, &grad, &hess, params, &mut order);
            forest.add(&grown, &data, params.learning_rate, &order, &mut scores);
        }
        Self::from_parts(
            [d, n_segments],
            forest.roots.into(),
            (forest.split_on.into(), forest.threshold.into()),
            [forest.left.into(), forest.right.into()],
            forest.leaf.into(),
        )
    }
}

/// The candidates' inputs (features, then the segment) as bin ids.
struct Binned {
    /// Inputs per candidate.
    width: usize,
    /// Row-major bin ids.
    bins: Vec<u8>,
    /// Per input, its bins' upper edges (a value goes to the first bin whose edge is at least
    /// it); empty for an input left out or constant.
    edges: Vec<Vec<f32>>,
    /// Per input, where its bins start in a histogram.
    offset: Vec<usize>,
    /// Bins of all inputs.
    total: usize,
    /// Per input, 1 (-1): scores rise (fall) with it; 0: free.
    monotone: Vec<i8>,
}

impl Binned {
    fn new(lists: &RankLists, mask: Option<&[bool]>, monotone: Option<&[i8]>) -> Self {
        let d = lists.n_features;
        let n = lists.n_candidates();
        let width = d + 1;
        let value = |r: usize, j: usize| match j < d {
            true => lists.x[r * d + j],
            false => lists.segment[r] as f32,
        };
        let step = n.div_ceil(EDGE_SAMPLE).max(1);
        let edges: Vec<Vec<f32>> = (0..width)
            .into_par_iter()
            .map(|j| {
                if j < d && mask.is_some_and(|m| !m[j]) {
                    return Vec::new();
                }
                let mut v: Vec<f32> = (0..n).step_by(step).map(|r| value(r, j)).collect();
                v.sort_unstable_by(f32::total_cmp);
                v.dedup();
                let mut edges: Vec<f32> = match v.len() <= MAX_BINS {
                    true => v,
                    false => (1..=MAX_BINS)
                        .map(|q| v[(q * v.len() / MAX_BINS).min(v.len()) - 1])
                        .collect(),
                };
                edges.dedup();
                // The last bin takes every larger value (those the sample missed).
                if let Some(last) = edges.last_mut() {
                    *last = f32::INFINITY;
                }
                if edges.len() < 2 {
                    edges.clear();
                }
                edges
            })
            .collect();
        let mut offset = Vec::with_capacity(width);
        let mut total = 0;
        for e in &edges {
            offset.push(total);
            total += e.len();
        }
        let mut bins = vec![0u8; n * width];
        bins.par_chunks_mut(width).enumerate().for_each(|(r, row)| {
            for (j, b) in row.iter_mut().enumerate() {
                let e = &edges[j];
                if !e.is_empty() {
                    let v = value(r, j);
                    *b = e.partition_point(|&edge| edge < v).min(e.len() - 1) as u8;
                }
            }
        });
        Binned {
            width,
            bins,
            edges,
            offset,
            total,
            // The segment is free.
            monotone: (0..width)
                .map(|j| monotone.and_then(|m| m.get(j)).copied().unwrap_or(0))
                .collect(),
        }
    }
}

/// Sum of gradients, hessians and candidates.
#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    g: f64,
    h: f64,
    n: f64,
}

impl Stat {
    fn add(&mut self, o: &Stat) {
        self.g += o.g;
        self.h += o.h;
        self.n += o.n;
    }

    fn minus(&self, o: &Stat) -> Stat {
        Stat {
            g: self.g - o.g,
            h: self.h - o.h,
            n: self.n - o.n,
        }
    }

    /// The leaf value that minimises the second-order loss, within `bounds`.
    fn value(&self, l2: f64, bounds: (f64, f64)) -> f64 {
        (-self.g / (self.h + l2).max(1e-12)).clamp(bounds.0, bounds.1)
    }

    /// How much a leaf of value `w` lowers the loss (twice): `g^2 / (h + l2)` at the best
    /// value.
    fn gain_at(&self, l2: f64, w: f64) -> f64 {
        -(2.0 * self.g * w + (self.h + l2) * w * w)
    }
}

/// One list's gradients and hessians, and its candidates' range.
type ListOut<'a> = (&'a mut [f64], &'a mut [f64], (usize, usize));

/// LambdaRank gradients and hessians of every candidate at `scores` (LightGBM's form:
/// sigmoid 1, pairs with one of the top `truncation`, the NDCG change divided by the score
/// gap plus 0.01, each list's lambdas scaled by log2(1 + sum) / sum).
fn lambdas(
    lists: &RankLists,
    scores: &[f64],
    truncation: usize,
    grad: &mut [f64],
    hess: &mut [f64],
) {
    let bounds: Vec<(usize, usize)> = lists.ptr.windows(2).map(|w| (w[0], w[1])).collect();
    // Each list writes its own rows: split the outputs along the lists.
    let mut parts: Vec<ListOut> = Vec::with_capacity(bounds.len());
    let (mut g_rest, mut h_rest) = (grad, hess);
    for &(a, b) in &bounds {
        let (g, gr) = g_rest.split_at_mut(b - a);
        let (h, hr) = h_rest.split_at_mut(b - a);
        parts.push((g, h, (a, b)));
        (g_rest, h_rest) = (gr, hr);
    }
    parts
        .par_iter_mut()
        .for_each_init(Vec::new, |order, (g, h, (a, b))| {
            let (a, b) = (*a, *b);
            let s = &scores[a..b];
            let rel = &lists.relevance[a..b];
            g.fill(0.0);
            h.fill(0.0);
            order.clear();
            order.extend(0..b - a);
            order.sort_by(|&i, &j| s[j].total_cmp(&s[i]).then(i.cmp(&j)));
            let gain = |r: f32| f64::from(r).exp2() - 1.0;
            let discount = |pos: usize| 1.0 / ((pos + 2) as f64).log2();
            let mut ideal: Vec<f64> = rel.iter().map(|&r| gain(r)).collect();
            ideal.sort_by(|x, y| y.total_cmp(x));
            let max_dcg: f64 = ideal
                .iter()
                .take(truncation)
                .enumerate()
                .map(|(p, &gn)| gn * discount(p))
                .sum();
            if max_dcg <= 0.0 {
                return;
            }
            let (best, worst) = (s[order[0]], s[order[order.len() - 1]]);
            let mut sum_lambdas = 0.0;
            for i in 0..order.len().min(truncation) {
                for j in i + 1..order.len() {
                    let (oi, oj) = (order[i], order[j]);
                    if rel[oi] == rel[oj] {
                        continue;
                    }
                    let (high, low) = if rel[oi] > rel[oj] {
                        (oi, oj)
                    } else {
                        (oj, oi)
                    };
                    let delta_score = s[high] - s[low];
                    let mut delta_ndcg = (gain(rel[high]) - gain(rel[low]))
                        * (discount(i) - discount(j)).abs()
                        / max_dcg;
                    if best != worst {
                        delta_ndcg /= 0.01 + delta_score.abs();
                    }
                    let p = 1.0 / (1.0 + delta_score.exp());
                    let lambda = p * delta_ndcg;
                    let hessian = p * (1.0 - p) * delta_ndcg;
                    g[high] -= lambda;
                    g[low] += lambda;
                    h[high] += hessian;
                    h[low] += hessian;
                    sum_lambdas += 2.0 * lambda;
                }
            }
            if sum_lambdas > 0.0 {
                let norm = (1.0 + sum_lambdas).log2() / sum_lambdas;
                g.iter_mut().for_each(|v| *v *= norm);
                h.iter_mut().for_each(|v| *v *= norm);
            }
        });
}

/// A split of a leaf: the input, the last bin going left, the gain, the left side's sums and
/// both sides' value bounds.
#[derive(Debug, Clone, Copy)]
struct Split {
    input: usize,
    bin: usize,
    gain: f64,
    left: Stat,
    bounds: [(f64, f64); 2],
}

/// A leaf being grown: its rows (a range of the order), sums, histogram, best split and the
/// link its parent holds to it.
struct Open {
    rows: (usize, usize),
    stat: Stat,
    hist: Vec<Stat>,
    best: Option<Split>,
    /// (node, is left) of its parent; `None` for the root.
    parent: Option<(usize, bool)>,
    depth: usize,
    /// The range its value must stay in (monotone constraints above it).
    bounds: (f64, f64),
}

/// One tree as grown: internal nodes, then the leaves with their rows.
#[derive(Default)]
struct Grown {
    nodes: Vec<(usize, usize, Link, Link)>,
    /// Per leaf: its rows in the order, and its value before shrinkage.
    leaves: Vec<((usize, usize), f64)>,
}

fn histogram(data: &Binned, grad: &[f64], hess: &[f64], rows: &[u32]) -> Vec<Stat> {
    let fill = |rows: &[u32]| {
        let mut hist = vec![Stat::default(); data.total];
        for &r in rows {
            let r = r as usize;
            let (g, h) = (grad[r], hess[r]);
            let bins = &data.bins[r * data.width..(r + 1) * data.width];
            for (j, &b) in bins.iter().enumerate() {
                if data.edges[j].is_empty() {
                    continue;
                }
                let s = &mut hist[data.offset[j] + b as usize];
                s.g += g;
                s.h += h;
                s.n += 1.0;
            }
        }
        hist
    };
    if rows.len() <= HIST_CHUNK {
        return fill(rows);
    }
    let parts: Vec<Vec<Stat>> = rows.par_chunks(HIST_CHUNK).map(fill).collect();
    let mut hist = vec![Stat::default(); data.total];
    for part in &parts {
        for (a, b) in hist.iter_mut().zip(part) {
            a.add(b);
        }
    }
    hist
}

fn best_split(
    data: &Binned,
    hist: &[Stat],
    stat: &Stat,
    bounds: (f64, f64),
    params: &TreeTrainParams,
) -> Option<Split> {
    let l2 = f64::from(params.l2);
    let min_leaf = params.min_leaf as f64;
    let min_hess = 1e-3;
    let parent = stat.gain_at(l2, stat.value(l2, bounds));
    let mut best: Option<Split> = None;
    for (j, edges) in data.edges.iter().enumerate() {
        let h = &hist[data.offset[j]..data.offset[j] + edges.len()];
        let mut left = Stat::default();
        for (b, s) in h.iter().enumerate().take(edges.len().saturating_sub(1)) {
            left.add(s);
            let right = stat.minus(&left);
            if left.n < min_leaf || right.n < min_leaf {
                continue;
            }
            if left.h < min_hess || right.h < min_hess {
                continue;
            }
            let (wl, wr) = (left.value(l2, bounds), right.value(l2, bounds));
            let monotone = f64::from(data.monotone[j]);
            if monotone * (wr - wl) < 0.0 {
                continue;
            }
            let gain = left.gain_at(l2, wl) + right.gain_at(l2, wr) - parent;
            if gain > 1e-12 && best.is_none_or(|x| gain > x.gain) {
                // Below a constrained split, each side stays on its side of the midpoint.
                let mid = (wl + wr) / 2.0;
                let sides = match data.monotone[j] {
                    1 => [(bounds.0, mid.min(bounds.1)), (mid.max(bounds.0), bounds.1)],
                    -1 => [(mid.max(bounds.0), bounds.1), (bounds.0, mid.min(bounds.1))],
                    _ => [bounds, bounds],
                };
                best = Some(Split {
                    input: j,
                    bin: b,
                    gain,
                    left,
                    bounds: sides,
                });
            }
        }
    }
    best
}

/// Grows one tree leaf-wise on the gradients; `order` holds every row, and is left grouped
/// by leaf (the leaves' ranges).
fn grow(
    data: &Binned,
    grad: &[f64],
    hess: &[f64],
    params: &TreeTrainParams,
    order: &mut [u32],
) -> Grown {
    let l2 = f64::from(params.l2);
    let n = order.len();
    let mut stat = Stat::default();
    for r in 0..n {
        stat.add(&Stat {
            g: grad[r],
            h: hess[r],
            n: 1.0,
        });
    }
    let hist = histogram(data, grad, hess, order);
    let free = (f64::NEG_INFINITY, f64::INFINITY);
    let mut open = vec![Open {
        rows: (0, n),
        stat,
        best: best_split(data, &hist, &stat, free, params),
        hist,
        parent: None,
        depth: 0,
        bounds: free,
    }];
    let mut grown = Grown::default();
    let mut scratch: Vec<u32> = Vec::new();
    while open.len() < params.leaves {
        // The open leaf of the largest gain (the first of equal ones).
        let Some((k, split)) = open
            .iter()
            .enumerate()
            .filter_map(|(k, o)| o.best.map(|s| (k, s)))
            .fold(None, |acc: Option<(usize, Split)>, (k, s)| match acc {
                Some((_, b)) if b.gain >= s.gain => acc,
                _ => Some((k, s)),
            })
        else {
            break;
        };
        let leaf = open.swap_remove(k);
        let node = grown.nodes.len();
        if let Some((p, is_left)) = leaf.parent {
            let links = &mut grown.nodes[p];
            match is_left {
                true => links.2 = node as Link,
                false => links.3 = node as Link,
            }
        }
        grown.nodes.push((split.input, split.bin, -1, -1));
        // Stable partition of the leaf's rows: left ones first.
        let (a, b) = leaf.rows;
        let (j, w) = (split.input, data.width);
        scratch.clear();
        let mut at = a;
        for i in a..b {
            let r = order[i];
            if (data.bins[r as usize * w + j] as usize) <= split.bin {
                order[at] = r;
                at += 1;
            } else {
                scratch.push(r);
            }
        }
        order[at..b].copy_from_slice(&scratch);
        let right_stat = leaf.stat.minus(&split.left);
        // The smaller side's histogram is built, the other's is the difference.
        let left_small = at - a <= b - at;
        let small_rows = if left_small {
            &order[a..at]
        } else {
            &order[at..b]
        };
        let small = histogram(data, grad, hess, small_rows);
        let large: Vec<Stat> = leaf
            .hist
            .iter()
            .zip(&small)
            .map(|(p, s)| p.minus(s))
            .collect();
        let (left_hist, right_hist) = if left_small {
            (small, large)
        } else {
            (large, small)
        };
        for (rows, st, hist, is_left, bounds) in [
            ((a, at), split.left, left_hist, true, split.bounds[0]),
            ((at, b), right_stat, right_hist, false, split.bounds[1]),
        ] {
            let depth = leaf.depth + 1;
            let best = match depth < params.max_depth {
                true => best_split(data, &hist, &st, bounds, params),
                false => None,
            };
            open.push(Open {
                rows,
                stat: st,
                hist,
                best,
                parent: Some((node, is_left)),
                depth,
                bounds,
            });
        }
    }
    // Leaves in order of their rows, so the tree's layout does not depend on the growing order.
    open.sort_by_key(|o| o.rows.0);
    for (i, o) in open.iter().enumerate() {
        let value = o.stat.value(l2, o.bounds);
        grown.leaves.push((o.rows, value));
        if let Some((p, is_left)) = o.parent {
            let links = &mut grown.nodes[p];
            match is_left {
                true => links.2 = !(i as Link),
                false => links.3 = !(i as Link),
            }
        }
    }
    grown
}

/// The trees as they are learned, in the layout of [`BoostedTrees`].
#[derive(Default)]
struct Forest {
    roots: Vec<Link>,
    split_on: Vec<u32>,
    threshold: Vec<f32>,
    left: Vec<Link>,
    right: Vec<Link>,
    leaf: Vec<f32>,
}

impl Forest {
    /// Appends a grown tree, and adds its values to the scores of its rows.
    fn add(&mut self, t: &Grown, data: &Binned, shrink: f32, order: &[u32], scores: &mut [f64]) {
        let (node_base, leaf_base) = (self.split_on.len() as Link, self.leaf.len() as Link);
        let relink = |l: Link| match l >= 0 {
            true => l + node_base,
            false => !((!l) + leaf_base),
        };
        // The first node split is the root; a tree of no split is one leaf.
        self.roots.push(match t.nodes.is_empty() {
            true => !leaf_base,
            false => node_base,
        });
        for &(input, bin, left, right) in &t.nodes {
            self.split_on.push(input as u32);
            self.threshold.push(data.edges[input][bin]);
            self.left.push(relink(left));
            self.right.push(relink(right));
        }
        for &((a, b), value) in &t.leaves {
            let v = (value * f64::from(shrink)) as f32;
            self.leaf.push(v);
            for &r in &order[a..b] {
                scores[r as usize] += f64::from(v);
            }
        }
    }
}

impl Persist for BoostedTrees {
    const KIND: Kind = Kind::BoostedTrees;

    /// Sections: the sizes, then the roots, and per node its input, threshold and links, then
    /// the leaf values.
    fn writer(&self) -> Writer<'_> {
        let mut w = Writer::new(Kind::BoostedTrees);
        w.u64s("sizes", [self.n_features as u64, self.n_segments as u64])
            .array("roots", &self.roots)
            .array("input", &self.split_on)
            .array("thresh", &self.threshold)
            .array("left", &self.left)
            .array("right", &self.right)
            .array("leaf", &self.leaf);
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let sizes = r.u64s("sizes")?;
        let [d, s] = sizes[..] else {
            return Err(format_err(format!(
                "ranker tree sizes: {} values, expected 2",
                sizes.len()
            )));
        };
        let count = |v: u64| usize::try_from(v).map_err(|_| format_err("ranker tree sizes"));
        Self::from_parts(
            [count(d)?, count(s)?],
            r.array("roots")?,
            (r.array("input")?, r.array("thresh")?),
            [r.array("left")?, r.array("right")?],
            r.array("leaf")?,
        )
        .map_err(|e| format_err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A generator of values in [0, 1).
    fn noise(state: &mut u64) -> f32 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        (*state >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Lists of 6 candidates whose relevant one has both features high, or (in segment 1)
    /// both low: no weighted sum of the features ranks it first in both segments. The third
    /// feature is noise.
    fn interaction_lists(n: usize, seed: u64) -> RankLists {
        let mut lists = RankLists::new(3);
        let mut state = seed;
        for i in 0..n {
            let seg = (i % 2) as u32;
            let relevant = i % 6;
            for c in 0..6 {
                let (a, b) = match (c == relevant, c % 2 == 0) {
                    (true, _) => (1.0, 1.0),
                    (false, true) => (1.0, 0.0),
                    (false, false) => (0.0, 1.0),
                };
                let (a, b) = match seg {
                    0 => (a, b),
                    _ => (1.0 - a, 1.0 - b),
                };
                let x = [
                    a + 0.1 * noise(&mut state),
                    b + 0.1 * noise(&mut state),
                    noise(&mut state),
                ];
                lists
                    .push(&x, f32::from(u8::from(c == relevant)), seg)
                    .unwrap();
            }
            assert!(lists.finish());
        }
        lists
    }

    /// Share of the lists whose relevant candidate scores highest.
    fn top1(lists: &RankLists, score: impl Fn(usize, &[f32]) -> f32) -> f64 {
        let d = lists.n_features;
        let mut hits = 0;
        for w in lists.ptr.windows(2) {
            let scores: Vec<f32> = (w[0]..w[1])
                .map(|r| score(lists.segment[r] as usize, &lists.x[r * d..(r + 1) * d]))
                .collect();
            let best = (0..scores.len())
                .max_by(|&i, &j| scores[i].total_cmp(&scores[j]).then(j.cmp(&i)))
                .unwrap();
            hits += usize::from(lists.relevance[w[0] + best] > 0.0);
        }
        hits as f64 / lists.len() as f64
    }

    fn small() -> TreeTrainParams {
        TreeTrainParams {
            trees: 30,
            leaves: 8,
            min_leaf: 20,
            ..TreeTrainParams::default()
        }
    }

    #[test]
    fn trees_learn_an_interaction_an_additive_ranker_cannot() {
        let train = interaction_lists(600, 1);
        let test = interaction_lists(300, 99);
        let trees = BoostedTrees::train(&train, 2, None, None, &small()).unwrap();
        let t = top1(&test, |s, x| trees.score(s, x));
        assert!(t > 0.95, "trees rank first {t}");
        // The additive ranker, with one segment (as the trees have), cannot.
        let flat = {
            let mut l = train.clone();
            l.segment.iter_mut().for_each(|s| *s = 0);
            l
        };
        let params = crate::rank::RankerTrainParams::default();
        let additive = crate::rank::AdditiveRanker::train(&flat, 1, None, &params).unwrap();
        let a = top1(&test, |_, x| additive.score(0, x));
        assert!(a < 0.6, "additive ranks first {a}");
    }

    #[test]
    fn more_trees_keep_the_first_and_learn_what_they_missed() {
        // Trained on segment 0's lists alone, the trees do not know segment 1's reversed rule.
        let train = interaction_lists(600, 1);
        let test = interaction_lists(300, 99);
        let mut base_lists = RankLists::new(3);
        for (i, w) in train.ptr.windows(2).enumerate() {
            if i % 2 == 0 {
                for r in w[0]..w[1] {
                    let x = &train.x[r * 3..(r + 1) * 3];
                    base_lists.push(x, train.relevance[r], 0).unwrap();
                }
                assert!(base_lists.finish());
            }
        }
        let base = BoostedTrees::train(&base_lists, 2, None, None, &small()).unwrap();
        let before = top1(&test, |s, x| base.score(s, x));
        let more = base.train_more(&train, None, None, &small()).unwrap();
        let after = top1(&test, |s, x| more.score(s, x));
        assert!(
            before < 0.6 && after > 0.95,
            "top one {before} then {after}"
        );
        // Its first trees are the base's, the same nodes and leaves.
        let n = base.roots.len();
        assert_eq!(more.roots.len(), n + small().trees);
        assert_eq!(&more.roots[..n], &base.roots[..]);
        assert_eq!(&more.leaf[..base.leaf.len()], &base.leaf[..]);
        assert_eq!(&more.split_on[..base.split_on.len()], &base.split_on[..]);
        // Lists of other features are refused.
        let mut other = RankLists::new(2);
        other.push(&[1.0, 0.0], 1.0, 0).unwrap();
        other.push(&[0.0, 1.0], 0.0, 0).unwrap();
        assert!(other.finish());
        assert!(base.train_more(&other, None, None, &small()).is_err());
    }

    #[test]
    fn training_is_deterministic_on_any_number_of_threads() {
        // More rows than a histogram piece, so the parallel sums are exercised.
        let lists = interaction_lists(6_000, 5);
        let params = TreeTrainParams {
            trees: 5,
            ..small()
        };
        let trees = BoostedTrees::train(&lists, 2, None, None, &params).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let one = pool
            .install(|| BoostedTrees::train(&lists, 2, None, None, &params))
            .unwrap();
        assert_eq!(one, trees);
        assert_eq!(BoostedTrees::from_bytes(&trees.to_bytes()).unwrap(), trees);
    }

    #[test]
    fn monotone_constraints_keep_the_order_the_data_would_break() {
        // The relevant candidate has feature 0 near 1 of [0, 2]: unconstrained trees score
        // the middle highest; constrained to rise (fall), scores never fall (rise) with it.
        let mut lists = RankLists::new(2);
        let mut state = 11u64;
        for _ in 0..800 {
            for c in 0..5 {
                let v = if c == 0 { 1.0 } else { 2.0 * noise(&mut state) };
                let x = [v + 0.05 * noise(&mut state), noise(&mut state)];
                lists.push(&x, f32::from(u8::from(c == 0)), 0).unwrap();
            }
            lists.finish();
        }
        let grid: Vec<f32> = (0..=40).map(|i| i as f32 * 0.05).collect();
        let scores = |t: &BoostedTrees, other: f32| -> Vec<f32> {
            grid.iter().map(|&v| t.score(0, &[v, other])).collect()
        };
        let free = BoostedTrees::train(&lists, 1, None, None, &small()).unwrap();
        let s = scores(&free, 0.5);
        assert!(s[20] > s[0] && s[20] > s[40], "{s:?}");
        for direction in [1i8, -1] {
            let t = BoostedTrees::train(&lists, 1, None, Some(&[direction, 0]), &small()).unwrap();
            for other in [0.1, 0.5, 0.9] {
                let s = scores(&t, other);
                assert!(
                    s.windows(2)
                        .all(|w| f32::from(direction) * (w[1] - w[0]) >= 0.0),
                    "{direction}: {s:?}"
                );
            }
        }
        assert!(BoostedTrees::train(&lists, 1, None, Some(&[2, 0]), &small()).is_err());
    }

    #[test]
    fn a_masked_feature_is_never_split_on() {
        let lists = interaction_lists(600, 3);
        let trees =
            BoostedTrees::train(&lists, 2, Some(&[true, false, true]), None, &small()).unwrap();
        assert!(trees.split_on.iter().all(|&j| j != 1));
        assert!(trees.split_on.contains(&0));
    }

    #[test]
    fn bad_options_and_segments_are_refused() {
        let lists = interaction_lists(10, 3);
        for params in [
            TreeTrainParams {
                trees: 0,
                ..small()
            },
            TreeTrainParams {
                leaves: 1,
                ..small()
            },
            TreeTrainParams {
                max_depth: 0,
                ..small()
            },
            TreeTrainParams {
                learning_rate: f32::NAN,
                ..small()
            },
            TreeTrainParams {
                l2: -1.0,
                ..small()
            },
        ] {
            assert!(matches!(
                BoostedTrees::train(&lists, 2, None, None, &params),
                Err(Error::InvalidInput(_))
            ));
        }
        // Segment 1 is not below 1.
        assert!(BoostedTrees::train(&lists, 1, None, None, &small()).is_err());
        assert!(BoostedTrees::train(&RankLists::new(3), 2, None, None, &small()).is_err());
    }

    #[test]
    fn links_that_go_backwards_or_nowhere_are_refused() {
        let lists = interaction_lists(600, 3);
        let trees = BoostedTrees::train(&lists, 2, None, None, &small()).unwrap();
        let parts = |t: &BoostedTrees| {
            (
                t.roots.to_vec(),
                t.split_on.to_vec(),
                t.left.to_vec(),
                t.right.to_vec(),
            )
        };
        let rebuild = |roots: Vec<Link>, split_on: Vec<u32>, left: Vec<Link>, right: Vec<Link>| {
            BoostedTrees::from_parts(
                [trees.n_features, trees.n_segments],
                roots.into(),
                (split_on.into(), trees.threshold.clone()),
                [left.into(), right.into()],
                trees.leaf.clone(),
            )
        };
        let (roots, split_on, left, right) = parts(&trees);
        assert!(rebuild(roots.clone(), split_on.clone(), left.clone(), right.clone()).is_ok());
        // A node whose child is itself: a walk that never ends.
        let mut cyclic = left.clone();
        cyclic[0] = 0;
        assert!(rebuild(roots.clone(), split_on.clone(), cyclic, right.clone()).is_err());
        let mut nowhere = right.clone();
        nowhere[0] = !(trees.leaf.len() as Link);
        assert!(rebuild(roots.clone(), split_on.clone(), left.clone(), nowhere).is_err());
        let mut bad_input = split_on.clone();
        bad_input[0] = 4;
        assert!(rebuild(roots, bad_input, left, right).is_err());
    }

    /// A candidate of the tests: segment, features, score.
    struct Row(usize, Vec<f32>, f32);

    impl Scored for Row {
        fn input(&self) -> (usize, &[f32]) {
            (self.0, &self.1)
        }

        fn set_score(&mut self, score: f32) {
            self.2 = score;
        }
    }

    #[test]
    fn trees_deeper_than_the_dense_layout_are_walked_by_their_links() {
        // One tree: node i sends x[0] <= i to leaf i, the rest to node i + 1; 12 nodes deep.
        let depth = DENSE_DEPTH + 4;
        let left: Vec<Link> = (0..depth as Link).map(|i| !i).collect();
        let right: Vec<Link> = (1..=depth as Link)
            .map(|i| if i < depth as Link { i } else { !i })
            .collect();
        let trees = BoostedTrees::from_parts(
            [1, 1],
            vec![0].into(),
            (
                vec![0; depth].into(),
                (0..depth).map(|i| i as f32).collect::<Vec<_>>().into(),
            ),
            [left.into(), right.into()],
            (0..=depth)
                .map(|i| 10.0 * i as f32)
                .collect::<Vec<_>>()
                .into(),
        )
        .unwrap();
        assert!(trees.dense.is_none());
        assert_eq!(trees.score(0, &[3.0]), 30.0);
        assert_eq!(trees.score(0, &[2.5]), 30.0);
        assert_eq!(trees.score(0, &[100.0]), 10.0 * depth as f32);
        let mut rows = vec![Row(0, vec![5.0], 0.0), Row(0, vec![-1.0], 0.0)];
        trees.score_all(&mut rows);
        assert_eq!((rows[0].2, rows[1].2), (50.0, 0.0));
        // Grown to a depth limit, trees never pass it.
        let lists = interaction_lists(600, 3);
        let params = TreeTrainParams {
            max_depth: 2,
            ..small()
        };
        let shallow = BoostedTrees::train(&lists, 2, None, None, &params).unwrap();
        assert_eq!(shallow.dense.as_ref().map(|d| d.depth), Some(2));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Any lists: training succeeds, scores are finite, every walk ends at a leaf, and the
        /// trees read back score the same.
        #[test]
        fn trained_trees_score_and_read_back(
            lists in proptest::collection::vec(
                proptest::collection::vec(
                    (proptest::collection::vec(-5.0f32..5.0, 2), 0u32..3, 0u32..3),
                    1..8,
                ),
                1..40,
            ),
            leaves in 2usize..10,
            max_depth in 1usize..10,
            min_leaf in 1usize..20,
        ) {
            let mut data = RankLists::new(2);
            for list in &lists {
                for (x, rel, seg) in list {
                    data.push(x, *rel as f32, *seg).unwrap();
                }
                data.finish();
            }
            prop_assume!(!data.is_empty());
            let params = TreeTrainParams {
                trees: 5,
                leaves,
                max_depth,
                min_leaf,
                ..TreeTrainParams::default()
            };
            let trees = BoostedTrees::train(&data, 3, None, None, &params).unwrap();
            let back = BoostedTrees::from_bytes(&trees.to_bytes()).unwrap();
            for r in 0..data.n_candidates() {
                let (x, seg) = (&data.x[r * 2..r * 2 + 2], data.segment[r] as usize);
                let s = trees.score(seg, x);
                prop_assert!(s.is_finite());
                prop_assert_eq!(s, back.score(seg, x));
                // The branch-free layout and the walk by links agree.
                prop_assert!(trees.dense.is_some());
                let mut input = Vec::new();
                trees.input(seg, x, &mut input);
                prop_assert_eq!(s, trees.walk(&input));
            }
            prop_assert!(trees.score(7, &[f32::NAN, f32::INFINITY]).is_finite());
            // Scored all at once (tree by tree, in lanes of LANES), the same scores.
            let mut rows: Vec<Row> = (0..data.n_candidates())
                .cycle()
                .take(150)
                .map(|r| Row(data.segment[r] as usize, data.x[r * 2..r * 2 + 2].to_vec(), f32::NAN))
                .collect();
            trees.score_all(&mut rows);
            for Row(seg, x, s) in &rows {
                prop_assert_eq!(*s, trees.score(*seg, x));
            }
        }
    }
}
