//! The learned ranking stage: one score per candidate from its feature vector, learned from
//! lists of candidates where the right answers are known.
//!
//! [`AdditiveRanker`] scores a candidate with the weights of its segment (e.g. the prefix-length
//! bucket of a completion case and whether the candidate is a seen query, so that popularity
//! can matter more for short prefixes than for long ones). Candidates of one list may sit in
//! different segments. It is trained listwise (ListNet top-one, Cao et al. 2007): per
//! list, the softmax of the scores should match the relevance (`2^rel - 1`, normalised), by
//! full-batch Adam on the mean cross-entropy plus an L2 penalty. The loss is convex; training
//! is deterministic (fixed order of every sum) whatever the number of threads.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::persist::{format_err, Array, Kind, Persist, Reader, Writer};

pub mod features;
mod trees;

pub use trees::{BoostedTrees, TreeTrainParams};

/// Something a ranker scores: a candidate.
pub trait Scored {
    /// Its segment and features.
    fn input(&self) -> (usize, &[f32]);
    /// Keeps its score.
    fn set_score(&mut self, score: f32);
}

/// A learned ranking stage: additive, or boosted trees.
#[derive(Debug, Clone, PartialEq)]
pub enum Ranker {
    /// Per segment, a weight and bin offsets per feature.
    Additive(AdditiveRanker),
    /// Trees over the features and the segment.
    Trees(BoostedTrees),
}

impl Ranker {
    /// The score of a candidate with features `x` in `segment`.
    #[inline]
    pub fn score(&self, segment: usize, x: &[f32]) -> f32 {
        match self {
            Ranker::Additive(r) => r.score(segment, x),
            Ranker::Trees(r) => r.score(segment, x),
        }
    }

    /// Scores every row, as [`Ranker::score`] does.
    pub fn score_all<T: Scored>(&self, rows: &mut [T]) {
        match self {
            Ranker::Additive(r) => {
                for row in rows {
                    let (segment, x) = row.input();
                    let s = r.score(segment, x);
                    row.set_score(s);
                }
            }
            Ranker::Trees(r) => r.score_all(rows),
        }
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        match self {
            Ranker::Additive(r) => r.n_features(),
            Ranker::Trees(r) => r.n_features(),
        }
    }

    /// Number of segments.
    pub fn n_segments(&self) -> usize {
        match self {
            Ranker::Additive(r) => r.n_segments(),
            Ranker::Trees(r) => r.n_segments(),
        }
    }

    /// Heap memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        match self {
            Ranker::Additive(r) => r.memory_bytes(),
            Ranker::Trees(r) => r.memory_bytes(),
        }
    }

    /// The ranker as a nested file (its kind says which) in section `additive` or `trees` of
    /// `w`.
    pub fn write<'a>(&'a self, w: &mut Writer<'a>, additive: &str, trees: &str) {
        match self {
            Ranker::Additive(r) => w.file(additive, r.writer()),
            Ranker::Trees(r) => w.file(trees, r.writer()),
        };
    }

    /// The ranker [`Ranker::write`] wrote: the trees when that section is there.
    pub fn read(r: &Reader, additive: &str, trees: &str) -> Result<Self> {
        match r.has(trees) {
            true => Ok(Ranker::Trees(r.nested(trees)?)),
            false => Ok(Ranker::Additive(r.nested(additive)?)),
        }
    }
}

/// Lists of candidates with their features and relevance: the training data of a ranker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankLists {
    n_features: usize,
    /// Row-major features, `n_features` per candidate.
    x: Vec<f32>,
    relevance: Vec<f32>,
    /// Candidate offsets of the lists.
    ptr: Vec<usize>,
    /// Per candidate.
    segment: Vec<u32>,
}

impl RankLists {
    /// No lists yet, of candidates with `n_features` features.
    pub fn new(n_features: usize) -> Self {
        RankLists {
            n_features,
            ptr: vec![0],
            ..Default::default()
        }
    }

    /// Number of lists.
    pub fn len(&self) -> usize {
        self.ptr.len() - 1
    }

    /// True without lists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of candidates in all lists.
    pub fn n_candidates(&self) -> usize {
        self.relevance.len()
    }

    /// Appends one candidate, scored in `segment`, to the list being built.
    pub fn push(&mut self, features: &[f32], relevance: f32, segment: u32) -> Result<()> {
        if features.len() != self.n_features {
            return Err(Error::InvalidInput(format!(
                "{} features for a ranker of {}",
                features.len(),
                self.n_features
            )));
        }
        if !(relevance.is_finite() && relevance >= 0.0) || features.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(
                "features and relevance must be finite (relevance >= 0)".into(),
            ));
        }
        self.x.extend_from_slice(features);
        self.relevance.push(relevance);
        self.segment.push(segment);
        Ok(())
    }

    /// Closes the list being built; a list without a relevant candidate teaches nothing and is
    /// dropped. Returns whether it was kept.
    pub fn finish(&mut self) -> bool {
        let start = *self.ptr.last().expect("ptr starts with 0");
        if self.relevance[start..].iter().all(|&r| r <= 0.0) {
            self.x.truncate(start * self.n_features);
            self.relevance.truncate(start);
            self.segment.truncate(start);
            return false;
        }
        self.ptr.push(self.relevance.len());
        true
    }
}

/// Options of [`AdditiveRanker::train`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankerTrainParams {
    /// Full-batch Adam steps.
    pub iterations: usize,
    /// Adam step size.
    pub learning_rate: f32,
    /// L2 penalty on the weights (of standardised features) and the bin offsets.
    pub l2: f32,
    /// Bins per feature of the piecewise-constant shapes (1: linear only).
    pub bins: usize,
}

impl Default for RankerTrainParams {
    fn default() -> Self {
        RankerTrainParams {
            iterations: 300,
            learning_rate: 0.05,
            l2: 1e-4,
            bins: 8,
        }
    }
}

/// Values sampled per feature to place the bin edges.
const EDGE_SAMPLE: usize = 100_000;

/// A generalised additive scorer per segment: for each feature, a weight on its standardised
/// value plus an offset for the bin (between quantile edges) its value falls in. The bins let
/// a feature count most in the middle of its range (two words copied from the previous query
/// can be worse than one); segments let features count differently for, e.g., short and long
/// prefixes.
#[derive(Debug, Clone, PartialEq)]
pub struct AdditiveRanker {
    n_features: usize,
    n_segments: usize,
    /// Bins per feature (the same for all).
    n_bins: usize,
    mean: Array<f32>,
    /// 1 / standard deviation (1 for a constant feature).
    inv_std: Array<f32>,
    /// `n_bins - 1` increasing edges per feature (unused ones at +inf).
    edges: Array<f32>,
    /// `n_segments` rows of `n_features` weights.
    weights: Array<f32>,
    /// `n_segments` rows of `n_features * n_bins` offsets.
    offsets: Array<f32>,
}

impl AdditiveRanker {
    /// A ranker with given weights on raw features (no standardisation, no bins), the same in
    /// every segment.
    pub fn fixed(weights: &[f32], n_segments: usize) -> Result<Self> {
        let d = weights.len();
        Self::from_parts(
            [d, n_segments, 1],
            vec![0.0; d].into(),
            vec![1.0; d].into(),
            Vec::new().into(),
            weights.repeat(n_segments).into(),
            vec![0.0; d * n_segments].into(),
        )
    }

    fn from_parts(
        [n_features, n_segments, n_bins]: [usize; 3],
        mean: Array<f32>,
        inv_std: Array<f32>,
        edges: Array<f32>,
        weights: Array<f32>,
        offsets: Array<f32>,
    ) -> Result<Self> {
        let bad = |why: &str| Err(Error::InvalidInput(format!("ranker: {why}")));
        if n_segments == 0 || n_bins == 0 || n_bins > 256 {
            return bad("no segment, or bins not in 1..=256");
        }
        let per_segment = n_features.checked_mul(n_segments);
        if mean.len() != n_features
            || inv_std.len() != n_features
            || Some(edges.len()) != n_features.checked_mul(n_bins - 1)
            || Some(weights.len()) != per_segment
            || Some(offsets.len()) != per_segment.and_then(|n| n.checked_mul(n_bins))
        {
            return bad("sizes of the parameters do not match");
        }
        if [&mean, &inv_std, &weights, &offsets]
            .iter()
            .any(|a| a.iter().any(|v| !v.is_finite()))
            || edges.iter().any(|v| v.is_nan())
        {
            return bad("a parameter is not finite");
        }
        if n_bins > 1
            && edges
                .chunks_exact(n_bins - 1)
                .any(|e| e.windows(2).any(|w| w[0] > w[1]))
        {
            return bad("bin edges are not increasing");
        }
        Ok(AdditiveRanker {
            n_features,
            n_segments,
            n_bins,
            mean,
            inv_std,
            edges,
            weights,
            offsets,
        })
    }

    /// The same ranker with more features after its own, each with a fixed weight on its raw
    /// value (no bins) in every segment.
    pub fn with_fixed(&self, weights: &[f32]) -> Result<Self> {
        let (d, nb, e) = (self.n_features, self.n_bins, self.n_bins - 1);
        let add = weights.len();
        let mut edges = self.edges.to_vec();
        edges.extend(std::iter::repeat_n(f32::INFINITY, add * e));
        let (mut w, mut offsets) = (Vec::new(), Vec::new());
        for seg in 0..self.n_segments {
            w.extend_from_slice(self.weights(seg));
            w.extend_from_slice(weights);
            offsets.extend_from_slice(&self.offsets[seg * d * nb..(seg + 1) * d * nb]);
            offsets.extend(std::iter::repeat_n(0.0, add * nb));
        }
        let (mut mean, mut inv_std) = (self.mean.to_vec(), self.inv_std.to_vec());
        mean.extend(std::iter::repeat_n(0.0, add));
        inv_std.extend(std::iter::repeat_n(1.0, add));
        Self::from_parts(
            [d + add, self.n_segments, nb],
            mean.into(),
            inv_std.into(),
            edges.into(),
            w.into(),
            offsets.into(),
        )
    }

    /// The same ranker with its segments repeated `times` times (segment `s + i * n` scores
    /// as segment `s` did).
    pub fn with_segments_repeated(&self, times: usize) -> Result<Self> {
        Self::from_parts(
            [self.n_features, self.n_segments * times, self.n_bins],
            self.mean.clone(),
            self.inv_std.clone(),
            self.edges.clone(),
            self.weights.repeat(times).into(),
            self.offsets.repeat(times).into(),
        )
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of segments.
    pub fn n_segments(&self) -> usize {
        self.n_segments
    }

    /// The weights of `segment` on standardised features.
    pub fn weights(&self, segment: usize) -> &[f32] {
        &self.weights[segment * self.n_features..(segment + 1) * self.n_features]
    }

    /// Heap memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.mean.nbytes()
            + self.inv_std.nbytes()
            + self.edges.nbytes()
            + self.weights.nbytes()
            + self.offsets.nbytes()
    }

    #[inline]
    fn bin(&self, j: usize, v: f32) -> usize {
        let e = self.n_bins - 1;
        self.edges[j * e..(j + 1) * e].partition_point(|&edge| edge <= v)
    }

    /// The score of a candidate with features `x` in `segment` (clamped to the last).
    #[inline]
    pub fn score(&self, segment: usize, x: &[f32]) -> f32 {
        let seg = segment.min(self.n_segments - 1);
        let d = self.n_features;
        let w = &self.weights[seg * d..(seg + 1) * d];
        let offsets = &self.offsets[seg * d * self.n_bins..(seg + 1) * d * self.n_bins];
        let mut total = 0.0;
        for (j, &v) in x.iter().enumerate().take(d) {
            total += w[j] * (v - self.mean[j]) * self.inv_std[j];
            if self.n_bins > 1 {
                total += offsets[j * self.n_bins + self.bin(j, v)];
            }
        }
        total
    }

    /// Learns a ranker from `lists` with `n_segments` segments (candidate segments beyond are
    /// clamped to the last). `mask[j] == false` leaves feature `j` out.
    pub fn train(
        lists: &RankLists,
        n_segments: usize,
        mask: Option<&[bool]>,
        params: &RankerTrainParams,
    ) -> Result<Self> {
        Self::train_scaled(lists, n_segments, mask, params, n_segments)
    }

    /// [`AdditiveRanker::train`], the standardisation and the bins of the features placed by
    /// the candidates of the segments below `scaled_by` only (all, when none is there): lists
    /// of further segments then change nothing the others are scored with but their weights.
    pub fn train_scaled(
        lists: &RankLists,
        n_segments: usize,
        mask: Option<&[bool]>,
        params: &RankerTrainParams,
        scaled_by: usize,
    ) -> Result<Self> {
        if lists.is_empty() {
            return Err(Error::InvalidInput("no list to learn a ranker from".into()));
        }
        if n_segments == 0 || params.iterations == 0 || !(1..=256).contains(&params.bins) {
            return Err(Error::InvalidInput(
                "n_segments and iterations must be >= 1, bins in 1..=256".into(),
            ));
        }
        let rates_ok = params.learning_rate > 0.0
            && params.learning_rate.is_finite()
            && params.l2 >= 0.0
            && params.l2.is_finite();
        if !rates_ok {
            return Err(Error::InvalidInput(
                "learning_rate must be > 0 and l2 >= 0".into(),
            ));
        }
        let d = lists.n_features;
        if mask.is_some_and(|m| m.len() != d) {
            return Err(Error::InvalidInput("one mask entry per feature".into()));
        }
        // The rows that place the scales: those of the segments below `scaled_by`, or all
        // when none is there.
        let limit = match lists.segment.iter().any(|&g| (g as usize) < scaled_by) {
            true => scaled_by,
            false => usize::MAX,
        };
        let scaling = || (0..lists.n_candidates()).filter(|&r| (lists.segment[r] as usize) < limit);
        let rows = scaling().count();
        let (mut mean, mut inv_std) = (vec![0f64; d], vec![0f64; d]);
        for r in scaling() {
            for (j, &v) in lists.x[r * d..(r + 1) * d].iter().enumerate() {
                mean[j] += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows as f64);
        for r in scaling() {
            for (j, &v) in lists.x[r * d..(r + 1) * d].iter().enumerate() {
                inv_std[j] += (f64::from(v) - mean[j]).powi(2);
            }
        }
        for s in inv_std.iter_mut() {
            let std = (*s / rows as f64).sqrt();
            *s = if std > 1e-9 { 1.0 / std } else { 1.0 };
        }
        let nb = params.bins;
        let edges = quantile_edges(lists, scaling, rows, nb);
        let active: Vec<bool> = (0..d).map(|j| mask.is_none_or(|m| m[j])).collect();
        let mut model = Self::from_parts(
            [d, n_segments, nb],
            mean.iter().map(|&m| m as f32).collect::<Vec<_>>().into(),
            inv_std.iter().map(|&s| s as f32).collect::<Vec<_>>().into(),
            edges.into(),
            vec![0.0; d * n_segments].into(),
            vec![0.0; d * n_segments * nb].into(),
        )?;
        // Standardised values and bins of every candidate, computed once.
        let mut z: Vec<f32> = Vec::with_capacity(lists.x.len());
        let mut bins: Vec<u8> = Vec::with_capacity(lists.x.len());
        for row in lists.x.chunks_exact(d) {
            for (j, &v) in row.iter().enumerate() {
                z.push((v - model.mean[j]) * model.inv_std[j]);
                bins.push(model.bin(j, v) as u8);
            }
        }

        // Parameters: per segment, d weights then d * nb offsets.
        let per_seg = d + d * nb;
        let n = n_segments * per_seg;
        let mut w = vec![0f32; n];
        let (mut m1, mut m2) = (vec![0f32; n], vec![0f32; n]);
        let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let lists_n = lists.len() as f32;
        let data = Design {
            lists,
            z: &z,
            bins: &bins,
            d,
            nb,
            n_segments,
        };
        // Fixed chunks of lists, summed in order: the same result on any number of threads.
        const CHUNK: usize = 512;
        let ids: Vec<usize> = (0..lists.len()).collect();
        for t in 1..=params.iterations {
            let grads: Vec<Vec<f32>> = ids
                .par_chunks(CHUNK)
                .map(|ids| {
                    let mut g = vec![0f32; n];
                    let mut scores = Vec::new();
                    for &i in ids {
                        data.list_gradient(i, &w, &mut g, &mut scores);
                    }
                    g
                })
                .collect();
            let mut g = vec![0f32; n];
            for part in &grads {
                for (a, b) in g.iter_mut().zip(part) {
                    *a += b;
                }
            }
            let (c1, c2) = (1.0 - beta1.powi(t as i32), 1.0 - beta2.powi(t as i32));
            for k in 0..n {
                let r = k % per_seg;
                let j = if r < d { r } else { (r - d) / nb };
                if !active[j] {
                    continue;
                }
                let gk = g[k] / lists_n + params.l2 * w[k];
                m1[k] = beta1 * m1[k] + (1.0 - beta1) * gk;
                m2[k] = beta2 * m2[k] + (1.0 - beta2) * gk * gk;
                w[k] -= params.learning_rate * (m1[k] / c1) / ((m2[k] / c2).sqrt() + eps);
            }
        }
        let (mut weights, mut offsets) = (Vec::new(), Vec::new());
        for seg in w.chunks_exact(per_seg) {
            weights.extend_from_slice(&seg[..d]);
            offsets.extend_from_slice(&seg[d..]);
        }
        model.weights = weights.into();
        model.offsets = offsets.into();
        Ok(model)
    }
}

/// `nb - 1` edges per feature at its quantiles (over a regular sample of the candidates),
/// duplicates pushed to +inf so that equal values share a bin.
fn quantile_edges<I: Iterator<Item = usize>>(
    lists: &RankLists,
    rows: impl Fn() -> I,
    n_rows: usize,
    nb: usize,
) -> Vec<f32> {
    let d = lists.n_features;
    let step = n_rows.div_ceil(EDGE_SAMPLE).max(1);
    let mut edges = Vec::with_capacity(d * (nb - 1));
    let mut values = Vec::new();
    for j in 0..d {
        values.clear();
        values.extend(rows().step_by(step).map(|r| lists.x[r * d + j]));
        values.sort_unstable_by(f32::total_cmp);
        let mut mine: Vec<f32> = (1..nb)
            .map(|q| values[(q * values.len() / nb).min(values.len() - 1)])
            .collect();
        // An edge at the smallest value would leave its bin empty.
        for e in mine.iter_mut() {
            if *e <= values[0] {
                *e = f32::INFINITY;
            }
        }
        mine.sort_unstable_by(f32::total_cmp);
        for i in 1..mine.len() {
            if mine[i] == mine[i - 1] {
                mine[i - 1] = f32::INFINITY;
            }
        }
        mine.sort_unstable_by(f32::total_cmp);
        edges.extend(mine);
    }
    edges
}

/// The training rows of [`AdditiveRanker::train`], prepared.
struct Design<'a> {
    lists: &'a RankLists,
    z: &'a [f32],
    bins: &'a [u8],
    d: usize,
    nb: usize,
    n_segments: usize,
}

impl Design<'_> {
    /// Adds the gradient of list `i`'s cross-entropy to `g`.
    fn list_gradient(&self, i: usize, w: &[f32], g: &mut [f32], scores: &mut Vec<f32>) {
        let (d, nb) = (self.d, self.nb);
        let per_seg = d + d * nb;
        let (a, b) = (self.lists.ptr[i], self.lists.ptr[i + 1]);
        let seg_of = |r: usize| (self.lists.segment[r] as usize).min(self.n_segments - 1);
        scores.clear();
        for r in a..b {
            let w = &w[seg_of(r) * per_seg..(seg_of(r) + 1) * per_seg];
            let (z, bins) = (&self.z[r * d..(r + 1) * d], &self.bins[r * d..(r + 1) * d]);
            let mut s = 0.0;
            for j in 0..d {
                s += w[j] * z[j] + w[d + j * nb + bins[j] as usize];
            }
            scores.push(s);
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let relevance = &self.lists.relevance[a..b];
        let gains: f32 = relevance.iter().map(|&r| r.exp2() - 1.0).sum();
        for (k, r) in (a..b).enumerate() {
            let target = (relevance[k].exp2() - 1.0) / gains;
            let coef = scores[k] / sum - target;
            if coef == 0.0 {
                continue;
            }
            let g = &mut g[seg_of(r) * per_seg..(seg_of(r) + 1) * per_seg];
            let (z, bins) = (&self.z[r * d..(r + 1) * d], &self.bins[r * d..(r + 1) * d]);
            for j in 0..d {
                g[j] += coef * z[j];
                g[d + j * nb + bins[j] as usize] += coef;
            }
        }
    }
}

impl Persist for AdditiveRanker {
    const KIND: Kind = Kind::AdditiveRanker;

    /// Sections: the sizes, then the mean, scale, bin edges, weights and offsets.
    fn writer(&self) -> Writer<'_> {
        let mut w = Writer::new(Kind::AdditiveRanker);
        w.u64s(
            "sizes",
            [
                self.n_features as u64,
                self.n_segments as u64,
                self.n_bins as u64,
            ],
        )
        .array("mean", &self.mean)
        .array("invstd", &self.inv_std)
        .array("edges", &self.edges)
        .array("weights", &self.weights)
        .array("offsets", &self.offsets);
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let sizes = r.u64s("sizes")?;
        let [d, s, b] = sizes[..] else {
            return Err(format_err(format!(
                "ranker sizes: {} values, expected 3",
                sizes.len()
            )));
        };
        let count = |v: u64| usize::try_from(v).map_err(|_| format_err("ranker sizes"));
        Self::from_parts(
            [count(d)?, count(s)?, count(b)?],
            r.array("mean")?,
            r.array("invstd")?,
            r.array("edges")?,
            r.array("weights")?,
            r.array("offsets")?,
        )
        .map_err(|e| format_err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists where the relevant candidate has the largest first feature in segment 0 and the
    /// smallest in segment 1; the second feature is noise.
    fn lists() -> RankLists {
        let mut lists = RankLists::new(2);
        let mut state = 7u64;
        let mut noise = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        for i in 0..200 {
            let seg = i % 2;
            for c in 0..5 {
                let relevant = c == 2;
                let v = if relevant == (seg == 0) { 3.0 } else { 1.0 } + noise() * 0.5;
                lists
                    .push(&[v, noise()], f32::from(u8::from(relevant)), seg as u32)
                    .unwrap();
            }
            assert!(lists.finish());
        }
        lists
    }

    #[test]
    fn learns_per_segment_and_is_deterministic() {
        let data = lists();
        let r = AdditiveRanker::train(&data, 2, None, &RankerTrainParams::default()).unwrap();
        assert!(r.weights(0)[0] > 1.0 && r.weights(1)[0] < -1.0, "{r:?}");
        assert!(r.weights(0)[1].abs() < r.weights(0)[0].abs() / 4.0);
        let again = AdditiveRanker::train(&data, 2, None, &RankerTrainParams::default()).unwrap();
        assert_eq!(again, r);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let one = pool
            .install(|| AdditiveRanker::train(&data, 2, None, &RankerTrainParams::default()))
            .unwrap();
        assert_eq!(one, r);
        // A masked feature keeps weight 0.
        let masked = AdditiveRanker::train(
            &data,
            2,
            Some(&[true, false]),
            &RankerTrainParams::default(),
        )
        .unwrap();
        assert_eq!(masked.weights(0)[1], 0.0);
        assert_eq!(AdditiveRanker::from_bytes(&r.to_bytes()).unwrap(), r);
    }

    #[test]
    fn bins_learn_a_feature_that_is_best_in_the_middle() {
        // The relevant candidate has feature 1, the others 0 or 2: no weight on the value
        // alone ranks it first, its bin's offset does.
        let mut lists = RankLists::new(1);
        for i in 0..300 {
            for (c, v) in [0.0, 1.0, 2.0, 0.0].into_iter().enumerate() {
                lists
                    .push(&[v], f32::from(u8::from(c == 1)), i % 2)
                    .unwrap();
            }
            lists.finish();
        }
        let r = AdditiveRanker::train(&lists, 1, None, &RankerTrainParams::default()).unwrap();
        assert!(r.score(0, &[1.0]) > r.score(0, &[0.0]) + 1.0);
        assert!(r.score(0, &[1.0]) > r.score(0, &[2.0]) + 1.0);
        let linear = RankerTrainParams {
            bins: 1,
            ..RankerTrainParams::default()
        };
        let r = AdditiveRanker::train(&lists, 1, None, &linear).unwrap();
        assert!(r.score(0, &[1.0]) < r.score(0, &[0.0]).max(r.score(0, &[2.0])));
    }

    #[test]
    fn lists_without_a_relevant_candidate_are_dropped_and_bad_input_refused() {
        let mut l = RankLists::new(1);
        l.push(&[1.0], 0.0, 0).unwrap();
        assert!(!l.finish());
        assert!(l.is_empty() && l.n_candidates() == 0);
        assert!(l.push(&[1.0, 2.0], 1.0, 0).is_err());
        assert!(l.push(&[f32::NAN], 1.0, 0).is_err());
        assert!(AdditiveRanker::train(&l, 1, None, &RankerTrainParams::default()).is_err());
        let fixed = AdditiveRanker::fixed(&[2.0, -1.0], 3).unwrap();
        assert_eq!(fixed.score(5, &[1.0, 1.0]), 1.0);
    }
}
