//! A trained XR-Linear model and its beam search.
//!
//! One sparse linear scorer per tree node. Beam search walks the levels: the children of the
//! nodes in the beam are scored, each score transformed ([`PostProcessor`]) and multiplied into
//! its parent's, and the best `beam_size` nodes go on; at the last level the best `topk` labels
//! are returned. The model is immutable: `&self` everywhere, scratch space per call or thread.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::index::LabelTree;
use crate::persist::{Kind, Persist, Reader, Writer};
use crate::sparse::CsrMatrix;

/// The weights of one level: column `c` (node `c`) holds the features
/// `rows[col_ptr[c]..col_ptr[c + 1]]` with `vals` at the same positions, plus `bias[c]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LevelWeights {
    pub(crate) col_ptr: Vec<usize>,
    pub(crate) rows: Vec<u32>,
    pub(crate) vals: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

impl LevelWeights {
    /// Stacks per-node weights (sorted features, values, bias weight), in node order.
    pub(crate) fn from_columns(columns: Vec<(Vec<u32>, Vec<f32>, f32)>) -> Self {
        let mut w = LevelWeights {
            col_ptr: Vec::with_capacity(columns.len() + 1),
            ..LevelWeights::default()
        };
        w.col_ptr.push(0);
        for (rows, vals, bias) in columns {
            w.rows.extend_from_slice(&rows);
            w.vals.extend_from_slice(&vals);
            w.col_ptr.push(w.rows.len());
            w.bias.push(bias);
        }
        w
    }

    /// Number of stored weights (biases excluded).
    pub fn nnz(&self) -> usize {
        self.rows.len()
    }
}

/// One level's weights grouped by parent, for scoring ("binary-search chunked", as PECOS's
/// predict-only model): for the children of each parent, the sorted features that any of them
/// weighs, and per feature its (child, weight) entries. Scoring the children of a parent walks
/// the input's features, not the children's weight vectors. A lookup is a bucket, then a short
/// scan; each feature sits beside the end of its entries and each child beside its weight, so
/// that a lookup costs about three cache misses on a model too large for the caches.
#[derive(Debug, Clone, PartialEq, Default)]
struct ChunkedLevel {
    /// Parent `p`'s features are `features[chunk_ptr[p]..chunk_ptr[p + 1]]`.
    chunk_ptr: Vec<usize>,
    /// (feature id, end of its entries counted from the chunk's first entry); its entries
    /// start where the previous feature's end (0 for the chunk's first feature).
    features: Vec<[u32; 2]>,
    /// Parent `p`'s entries start at `entries[entry_base[p]]`.
    entry_base: Vec<usize>,
    /// (child counted from the parent's first child, weight).
    entries: Vec<(u32, f32)>,
    /// Feature `f` of parent `p` lies at chunk offsets from
    /// `buckets[bucket_ptr[p] + (f >> bucket_shift[p])]` to the next bucket's start (about four
    /// features per bucket).
    bucket_ptr: Vec<usize>,
    bucket_shift: Vec<u8>,
    buckets: Vec<u32>,
}

/// One parent's chunk while building: (feature, entries end) pairs and (child, weight) entries.
type Chunk = (Vec<[u32; 2]>, Vec<(u32, f32)>);

impl ChunkedLevel {
    fn build(w: &LevelWeights, child_ptr: &[u32], n_features: usize) -> Self {
        let parents: Vec<usize> = (0..child_ptr.len() - 1).collect();
        let chunks: Vec<Chunk> = parents
            .par_iter()
            .map(|&p| {
                let (first, end) = (child_ptr[p] as usize, child_ptr[p + 1] as usize);
                let mut triples: Vec<(u32, u32, f32)> = Vec::new();
                for c in first..end {
                    for k in w.col_ptr[c]..w.col_ptr[c + 1] {
                        triples.push((w.rows[k], (c - first) as u32, w.vals[k]));
                    }
                }
                triples.sort_unstable_by_key(|t| (t.0, t.1));
                let mut features: Vec<[u32; 2]> = Vec::new();
                for (n, t) in triples.iter().enumerate() {
                    match features.last_mut() {
                        Some(last) if last[0] == t.0 => last[1] = n as u32 + 1,
                        _ => features.push([t.0, n as u32 + 1]),
                    }
                }
                (features, triples.into_iter().map(|t| (t.1, t.2)).collect())
            })
            .collect();
        let mut out = ChunkedLevel {
            chunk_ptr: vec![0],
            ..ChunkedLevel::default()
        };
        for (features, entries) in chunks {
            out.features.extend_from_slice(&features);
            out.chunk_ptr.push(out.features.len());
            out.entry_base.push(out.entries.len());
            out.entries.extend_from_slice(&entries);
        }
        out.build_buckets(n_features);
        out
    }

    fn build_buckets(&mut self, n_features: usize) {
        let bits = usize::BITS - n_features.saturating_sub(1).leading_zeros();
        self.bucket_ptr = vec![0];
        for p in 0..self.chunk_ptr.len() - 1 {
            let feats = &self.features[self.chunk_ptr[p]..self.chunk_ptr[p + 1]];
            let wanted = (feats.len() / 4).max(1).next_power_of_two();
            let shift = bits.saturating_sub(wanted.trailing_zeros());
            let n_buckets = (n_features.saturating_sub(1) >> shift) + 1;
            let mut at = 0usize;
            for bucket in 0..n_buckets {
                while at < feats.len() && ((feats[at][0] as usize) >> shift) < bucket {
                    at += 1;
                }
                self.buckets.push(at as u32);
            }
            self.buckets.push(feats.len() as u32);
            self.bucket_shift.push(shift as u8);
            self.bucket_ptr.push(self.buckets.len());
        }
    }

    /// Adds `w_c . x` to `out[c - first child]` for every child `c` of `parent`.
    #[inline]
    fn add_scores(&self, parent: usize, indices: &[u32], values: &[f32], out: &mut [f32]) {
        let a = self.chunk_ptr[parent];
        let entries = &self.entries[self.entry_base[parent]..];
        let buckets = &self.buckets[self.bucket_ptr[parent]..self.bucket_ptr[parent + 1]];
        let shift = self.bucket_shift[parent];
        for (&f, &v) in indices.iter().zip(values) {
            let bucket = (f >> shift) as usize;
            let (start, end) = (buckets[bucket] as usize, buckets[bucket + 1] as usize);
            // A bucket holds a few sorted features: a short scan finds `f` or passes it.
            for k in a + start..a + end {
                let [g, stop] = self.features[k];
                if g >= f {
                    if g == f {
                        let from = if k == a { 0 } else { self.features[k - 1][1] };
                        for &(child, w) in &entries[from as usize..stop as usize] {
                            out[child as usize] += v * w;
                        }
                    }
                    break;
                }
            }
        }
    }

    /// The weights back in columns (node order; features sorted in each), with `bias`: the
    /// inverse of [`ChunkedLevel::build`].
    fn columns(&self, child_ptr: &[u32], bias: &[f32]) -> LevelWeights {
        let mut triples: Vec<(u32, u32, f32)> = Vec::with_capacity(self.entries.len());
        for (p, &first) in child_ptr[..child_ptr.len() - 1].iter().enumerate() {
            let (a, b) = (self.chunk_ptr[p], self.chunk_ptr[p + 1]);
            let entries = &self.entries[self.entry_base[p]..];
            let mut from = 0usize;
            for &[feature, stop] in &self.features[a..b] {
                for &(child, w) in &entries[from..stop as usize] {
                    triples.push((first + child, feature, w));
                }
                from = stop as usize;
            }
        }
        triples.sort_unstable_by_key(|t| (t.0, t.1));
        let mut w = LevelWeights {
            col_ptr: Vec::with_capacity(bias.len() + 1),
            rows: triples.iter().map(|t| t.1).collect(),
            vals: triples.iter().map(|t| t.2).collect(),
            bias: bias.to_vec(),
        };
        w.col_ptr.push(0);
        let mut at = 0usize;
        for c in 0..bias.len() as u32 {
            while at < triples.len() && triples[at].0 == c {
                at += 1;
            }
            w.col_ptr.push(at);
        }
        w
    }

    fn memory_bytes(&self) -> usize {
        (self.chunk_ptr.capacity() + self.entry_base.capacity() + self.bucket_ptr.capacity())
            * size_of::<usize>()
            + self.features.capacity() * size_of::<[u32; 2]>()
            + self.entries.capacity() * size_of::<(u32, f32)>()
            + self.bucket_shift.capacity()
            + self.buckets.capacity() * size_of::<u32>()
    }
}

impl Persist for XrLinear {
    /// Sections: the tree (child pointers per level, leaf labels), then per level the weight
    /// columns (pointers, feature ids, values, biases).
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(Kind::XrLinear);
        let depth = self.tree.depth();
        w.u64s(
            "meta",
            [
                depth as u64,
                self.n_features as u64,
                u64::from(self.bias.to_bits()),
            ],
        );
        w.u32s("leaves", self.tree.leaf_labels());
        for (l, lw) in self.levels().iter().enumerate() {
            w.u32s(&format!("tree{l}"), self.tree.child_ptr(l))
                .u64s(&format!("ptr{l}"), lw.col_ptr.iter().map(|&p| p as u64))
                .u32s(&format!("rows{l}"), &lw.rows)
                .f32s(&format!("vals{l}"), &lw.vals)
                .f32s(&format!("bias{l}"), &lw.bias);
        }
        w.finish()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let r = Reader::new(bytes, Kind::XrLinear)?;
        let format = |e: Error| Error::Format {
            what: format!("XR-Linear model: {e}"),
        };
        let meta = r.u64s("meta")?;
        let &[depth, n_features, bias] = meta.as_slice() else {
            return Err(format(Error::InvalidInput("meta section".into())));
        };
        if depth == 0 || depth > 64 || n_features > u32::MAX as u64 || bias > u32::MAX as u64 {
            return Err(format(Error::InvalidInput(format!(
                "implausible depth {depth} or feature count {n_features}"
            ))));
        }
        let mut child_ptr = Vec::with_capacity(depth as usize);
        let mut levels = Vec::with_capacity(depth as usize);
        for l in 0..depth {
            child_ptr.push(r.u32s(&format!("tree{l}"))?);
            let col_ptr = r.u64s(&format!("ptr{l}"))?;
            let col_ptr = col_ptr
                .into_iter()
                .map(|p| {
                    usize::try_from(p).map_err(|_| format(Error::InvalidInput("pointer".into())))
                })
                .collect::<Result<Vec<usize>>>()?;
            levels.push(LevelWeights {
                col_ptr,
                rows: r.u32s(&format!("rows{l}"))?,
                vals: r.f32s(&format!("vals{l}"))?,
                bias: r.f32s(&format!("bias{l}"))?,
            });
        }
        let tree = LabelTree::new(child_ptr, r.u32s("leaves")?).map_err(format)?;
        XrLinear::new(
            tree,
            levels,
            n_features as usize,
            f32::from_bits(bias as u32),
        )
        .map_err(format)
    }
}

/// How a node's raw score `z` becomes a factor of its path's score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostProcessor {
    /// `exp(-max(0, 1 - z)^3)` (PECOS's default, "l3-hinge").
    L3Hinge,
    /// `1 / (1 + exp(-z))`.
    Sigmoid,
}

impl PostProcessor {
    #[inline]
    fn apply(self, z: f32) -> f32 {
        match self {
            PostProcessor::L3Hinge => (-(1.0 - z).max(0.0).powi(3)).exp(),
            PostProcessor::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        }
    }
}

/// Options of a prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictParams {
    /// Nodes kept per level.
    pub beam_size: usize,
    /// Labels returned.
    pub topk: usize,
    /// Score transform.
    pub post_processor: PostProcessor,
}

impl Default for PredictParams {
    fn default() -> Self {
        PredictParams {
            beam_size: 10,
            topk: 10,
            post_processor: PostProcessor::L3Hinge,
        }
    }
}

/// Reusable buffers of a prediction: one per thread.
#[derive(Debug, Default, Clone)]
pub struct PredictScratch {
    child_scores: Vec<f32>,
    beam: Vec<(u32, f32)>,
    candidates: Vec<(u32, f32)>,
}

/// A trained XR-Linear model: a label tree and one sparse linear scorer per node.
#[derive(Debug)]
pub struct XrLinear {
    pub(crate) tree: LabelTree,
    pub(crate) n_features: usize,
    pub(crate) bias: f32,
    /// Per level, the weights grouped by parent for scoring (the only copy: the columns are
    /// rebuilt from them when saving).
    scorers: Vec<ChunkedLevel>,
    /// Per level, the bias weight of each node.
    biases: Vec<Vec<f32>>,
    /// Per cluster level, the sorted label ids under each node (built on first use of a label
    /// range).
    subtree_labels: OnceLock<Vec<CsrMatrix>>,
}

impl PartialEq for XrLinear {
    fn eq(&self, other: &Self) -> bool {
        self.tree == other.tree
            && self.scorers == other.scorers
            && self.biases == other.biases
            && self.n_features == other.n_features
            && self.bias == other.bias
    }
}

impl XrLinear {
    /// Assembles a model, checking that the weights fit the tree and the feature count.
    pub fn new(
        tree: LabelTree,
        levels: Vec<LevelWeights>,
        n_features: usize,
        bias: f32,
    ) -> Result<Self> {
        let bad = |why: String| Err(Error::InvalidInput(format!("XR-Linear model: {why}")));
        if levels.len() != tree.depth() {
            return bad(format!(
                "{} weight levels for a tree of depth {}",
                levels.len(),
                tree.depth()
            ));
        }
        for (l, w) in levels.iter().enumerate() {
            let n = tree.n_nodes(l);
            if w.col_ptr.len() != n + 1 || w.bias.len() != n || w.col_ptr[0] != 0 {
                return bad(format!(
                    "level {l}: weights for {} nodes, the tree has {n}",
                    w.bias.len()
                ));
            }
            if w.col_ptr.windows(2).any(|p| p[0] > p[1])
                || w.col_ptr[n] != w.rows.len()
                || w.rows.len() != w.vals.len()
            {
                return bad(format!("level {l}: inconsistent column pointers"));
            }
            if w.rows.iter().any(|&f| f as usize >= n_features) {
                return bad(format!("level {l}: a feature id is out of range"));
            }
            if !w.vals.iter().chain(&w.bias).all(|v| v.is_finite()) {
                return bad(format!("level {l}: a weight is not finite"));
            }
        }
        if !bias.is_finite() {
            return bad("bias is not finite".into());
        }
        let scorers = levels
            .iter()
            .enumerate()
            .map(|(l, w)| ChunkedLevel::build(w, tree.child_ptr(l), n_features))
            .collect();
        let biases = levels.into_iter().map(|w| w.bias).collect();
        Ok(XrLinear {
            tree,
            n_features,
            bias,
            scorers,
            biases,
            subtree_labels: OnceLock::new(),
        })
    }

    /// The label tree.
    pub fn tree(&self) -> &LabelTree {
        &self.tree
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of labels.
    pub fn n_labels(&self) -> usize {
        self.tree.n_labels()
    }

    /// The weights of each level, as columns (rebuilt from the scoring layout: a copy).
    pub fn levels(&self) -> Vec<LevelWeights> {
        (0..self.tree.depth())
            .map(|l| self.scorers[l].columns(self.tree.child_ptr(l), &self.biases[l]))
            .collect()
    }

    /// Stored weights over all levels.
    pub fn nnz(&self) -> usize {
        self.scorers.iter().map(|s| s.entries.len()).sum()
    }

    /// Heap memory of the weights and the tree, in bytes (approximately, for the tree).
    pub fn memory_bytes(&self) -> usize {
        self.biases
            .iter()
            .map(|b| b.capacity() * size_of::<f32>())
            .sum::<usize>()
            + self
                .scorers
                .iter()
                .map(ChunkedLevel::memory_bytes)
                .sum::<usize>()
            + self.tree.n_labels() * 2 * size_of::<u32>()
            + (0..self.tree.depth())
                .map(|l| size_of_val(self.tree.child_ptr(l)))
                .sum::<usize>()
            + self.subtree_labels.get().map_or(0, |lists| {
                lists
                    .iter()
                    .map(|m| m.nnz() * 8 + m.indptr.len() * size_of::<usize>())
                    .sum()
            })
    }

    /// The best `topk` labels for one input row (sorted feature ids, values), best first, with
    /// their scores. With `allowed = Some((lo, hi))`, only labels with ids in `lo..hi` are
    /// returned, and the beam only enters nodes that hold one.
    pub fn predict_one(
        &self,
        indices: &[u32],
        values: &[f32],
        params: &PredictParams,
        allowed: Option<(u32, u32)>,
        scratch: &mut PredictScratch,
    ) -> Result<Vec<(u32, f32)>> {
        if indices.len() != values.len() {
            return Err(Error::InvalidInput(format!(
                "{} feature ids but {} values",
                indices.len(),
                values.len()
            )));
        }
        if let Some(&f) = indices.iter().find(|&&f| f as usize >= self.n_features) {
            return Err(Error::InvalidInput(format!(
                "feature id {f} is out of range for a model of {} features",
                self.n_features
            )));
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "feature value {v} is not finite"
            )));
        }
        Ok(self.beam_search(indices, values, params, allowed, scratch))
    }

    /// Predicts every row of `x` in parallel: an `n_rows x n_labels` matrix holding each row's
    /// best `topk` labels with their scores.
    pub fn predict(&self, x: &CsrMatrix, params: &PredictParams) -> Result<CsrMatrix> {
        if x.n_cols != self.n_features {
            return Err(Error::InvalidInput(format!(
                "X has {} columns, the model {} features",
                x.n_cols, self.n_features
            )));
        }
        let rows: Vec<usize> = (0..x.n_rows()).collect();
        let out: Vec<(Vec<u32>, Vec<f32>)> = rows
            .par_iter()
            .map_init(PredictScratch::default, |scratch, &r| {
                let (idx, val) = x.row(r);
                let mut found = self.beam_search(idx, val, params, None, scratch);
                found.sort_unstable_by_key(|&(label, _)| label);
                found.into_iter().unzip()
            })
            .collect();
        Ok(CsrMatrix::from_rows(self.n_labels(), out))
    }

    fn beam_search(
        &self,
        indices: &[u32],
        values: &[f32],
        params: &PredictParams,
        allowed: Option<(u32, u32)>,
        s: &mut PredictScratch,
    ) -> Vec<(u32, f32)> {
        if params.topk == 0 {
            return Vec::new();
        }
        let depth = self.tree.depth();
        s.beam.clear();
        s.beam.push((0, 1.0));
        for l in 0..depth {
            let last = l + 1 == depth;
            let (biases, scorer) = (&self.biases[l], &self.scorers[l]);
            s.candidates.clear();
            for &(parent, score) in &s.beam {
                let children = self.tree.children(l, parent as usize);
                s.child_scores.clear();
                s.child_scores
                    .extend(biases[children.clone()].iter().map(|b| b * self.bias));
                scorer.add_scores(parent as usize, indices, values, &mut s.child_scores);
                for (c, &z) in children.zip(&s.child_scores) {
                    if let Some((lo, hi)) = allowed {
                        if !self.holds_label_in(l, c, lo, hi) {
                            continue;
                        }
                    }
                    s.candidates
                        .push((c as u32, score * params.post_processor.apply(z)));
                }
            }
            let keep = if last {
                params.topk
            } else {
                params.beam_size.max(1)
            };
            let by_score = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
            if s.candidates.len() > keep {
                s.candidates.select_nth_unstable_by(keep - 1, by_score);
                s.candidates.truncate(keep);
            }
            s.candidates.sort_unstable_by(by_score);
            std::mem::swap(&mut s.beam, &mut s.candidates);
        }
        s.beam
            .iter()
            .map(|&(leaf, score)| (self.tree.label_of_leaf(leaf as usize), score))
            .collect()
    }

    /// Builds now what the first prediction with a label range would otherwise build (the labels
    /// under each node), so that no query pays for it. Idempotent.
    pub fn prepare_label_ranges(&self) {
        self.subtree_labels
            .get_or_init(|| self.build_subtree_labels());
    }

    /// Whether node `c` of level `l` has a label with id in `lo..hi` under it.
    fn holds_label_in(&self, l: usize, c: usize, lo: u32, hi: u32) -> bool {
        if l + 1 == self.tree.depth() {
            let label = self.tree.label_of_leaf(c);
            return lo <= label && label < hi;
        }
        let lists = self
            .subtree_labels
            .get_or_init(|| self.build_subtree_labels());
        let labels = lists[l].row(c).0;
        let at = labels.partition_point(|&x| x < lo);
        at < labels.len() && labels[at] < hi
    }

    fn build_subtree_labels(&self) -> Vec<CsrMatrix> {
        (0..self.tree.depth() - 1)
            .map(|l| {
                let ancestors = self.tree.ancestors_at(l);
                let mut per_node: Vec<Vec<u32>> = vec![Vec::new(); self.tree.n_nodes(l)];
                for (label, &node) in ancestors.iter().enumerate() {
                    per_node[node as usize].push(label as u32);
                }
                CsrMatrix::from_rows(
                    self.n_labels(),
                    per_node.into_iter().map(|labels| {
                        let ones = vec![1.0; labels.len()];
                        (labels, ones)
                    }),
                )
            })
            .collect()
    }
}
