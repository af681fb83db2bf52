//! Hierarchical balanced spherical k-means over label embeddings (PECOS's default indexer).
//!
//! Labels are split in two, recursively, by balanced spherical 2-means: each half is exactly half
//! (±1) of its parent, so all leaves sit at one depth `D = max(1, ceil(log2(L / max_leaf_size)))`.
//! The tree keeps every `log2(branching)`-th binary level counted up from the last, so a node has
//! up to `branching` children (the root possibly fewer), as PECOS's `nr_splits`. Embeddings are PIFA: the l2-normalised sum of
//! the feature rows of each label's positive instances ([`pifa`]).

use rayon::prelude::*;

use super::LabelTree;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use crate::sparse::{transpose, CsrMatrix, RowBuf, SparseRows};

/// Options of [`build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KMeansParams {
    /// Children per node: a power of two >= 2 (PECOS's `nr_splits`, default 16).
    pub branching: usize,
    /// Labels per leaf cluster at most, roughly (PECOS's `max_leaf_size`, default 100).
    pub max_leaf_size: usize,
    /// Iterations of each 2-means at most (default 20).
    pub max_iter: usize,
    /// Seed of the initial centroids.
    pub seed: u64,
}

impl Default for KMeansParams {
    fn default() -> Self {
        KMeansParams {
            branching: 16,
            max_leaf_size: 100,
            max_iter: 20,
            seed: 0,
        }
    }
}

/// PIFA label embeddings: row `j` is the l2-normalised sum of the rows of `x` whose row of `y`
/// holds label `j` (a label without positives gets an empty row). Parallel over labels.
pub fn pifa(x: &dyn SparseRows, y: &dyn SparseRows) -> Result<CsrMatrix> {
    if x.n_rows() != y.n_rows() {
        return Err(Error::InvalidInput(format!(
            "X has {} rows but Y has {}",
            x.n_rows(),
            y.n_rows()
        )));
    }
    let yt = transpose(y);
    let labels: Vec<usize> = (0..yt.n_rows()).collect();
    let rows: Vec<(Vec<u32>, Vec<f32>)> = labels
        .par_iter()
        .map_init(
            || (vec![0f64; x.n_cols()], Vec::<u32>::new(), RowBuf::default()),
            |(dense, touched, buf), &j| {
                for &i in yt.row(j).0 {
                    let (cols, vals) = x.row_in(i as usize, buf);
                    for (&c, &v) in cols.iter().zip(vals) {
                        if dense[c as usize] == 0.0 {
                            touched.push(c);
                        }
                        dense[c as usize] += v as f64;
                    }
                }
                touched.sort_unstable();
                let norm = touched
                    .iter()
                    .map(|&c| dense[c as usize].powi(2))
                    .sum::<f64>()
                    .sqrt();
                let mut cols = Vec::with_capacity(touched.len());
                let mut vals = Vec::with_capacity(touched.len());
                for &c in touched.iter() {
                    let v = dense[c as usize];
                    dense[c as usize] = 0.0;
                    if v != 0.0 && norm > 0.0 {
                        cols.push(c);
                        vals.push((v / norm) as f32);
                    }
                }
                touched.clear();
                (cols, vals)
            },
        )
        .collect();
    Ok(CsrMatrix::from_rows(x.n_cols(), rows))
}

/// Builds the tree over the labels whose embeddings are the rows of `embeddings`.
pub fn build(embeddings: &CsrMatrix, params: &KMeansParams) -> Result<LabelTree> {
    let n = embeddings.n_rows();
    if n > u32::MAX as usize / 2 {
        return Err(Error::TooLarge {
            what: "number of labels",
            got: n as u64,
            limit: u32::MAX as u64 / 2,
        });
    }
    let (child_ptr, perm) = cluster(embeddings, (0..n as u32).collect(), params)?;
    LabelTree::new(child_ptr, perm)
}

impl KMeansParams {
    pub(crate) fn check(&self) -> Result<()> {
        if self.branching < 2 || !self.branching.is_power_of_two() {
            return Err(Error::InvalidInput(format!(
                "branching must be a power of two >= 2, got {}",
                self.branching
            )));
        }
        if self.max_leaf_size < 1 {
            return Err(Error::InvalidInput("max_leaf_size must be >= 1".into()));
        }
        Ok(())
    }
}

/// Clusters the labels `labels` (rows of `embeddings`): the child pointers of each level below
/// their common parent, the labels level last, and the labels in leaf order.
pub(crate) fn cluster(
    embeddings: &CsrMatrix,
    labels: Vec<u32>,
    params: &KMeansParams,
) -> Result<(Vec<Vec<u32>>, Vec<u32>)> {
    params.check()?;
    let n = labels.len();
    if n == 0 {
        return Err(Error::InvalidInput(
            "a label tree needs at least one label".into(),
        ));
    }
    let depth = if n <= 1 {
        0
    } else {
        ((n as f64 / params.max_leaf_size as f64).log2().ceil() as usize).max(1)
    };
    let step = params.branching.trailing_zeros() as usize;
    let mut perm = labels;
    // bounds[t]: the segment boundaries (in `perm`) after t binary splits.
    let mut bounds: Vec<Vec<usize>> = vec![vec![0, n]];
    for t in 0..depth {
        let current = &bounds[t];
        let mut slices: Vec<(usize, &mut [u32])> = Vec::with_capacity(current.len() - 1);
        let mut rest: &mut [u32] = &mut perm;
        for (s, w) in current.windows(2).enumerate() {
            let (head, tail) = rest.split_at_mut(w[1] - w[0]);
            slices.push((s, head));
            rest = tail;
        }
        let mids: Vec<usize> = slices
            .into_par_iter()
            .map_init(Scratch::default, |scratch, (s, labels)| {
                let seed = params.seed ^ ((t as u64) << 40) ^ (s as u64);
                split_in_two(embeddings, labels, params.max_iter, seed, scratch)
            })
            .collect();
        let mut next = Vec::with_capacity(2 * current.len());
        for (w, mid) in current.windows(2).zip(mids) {
            next.push(w[0]);
            if mid > 0 && mid < w[1] - w[0] {
                next.push(w[0] + mid);
            }
        }
        next.push(n);
        bounds.push(next);
    }
    // Keep binary levels depth, depth - step, ... (counted from the bottom, as PECOS does): the
    // lower levels get the full branching, the top level what remains; then the labels.
    let kept: Vec<usize> = (1..=depth).filter(|t| (depth - t) % step == 0).collect();
    let mut child_ptr = Vec::with_capacity(kept.len() + 1);
    let mut parent_bounds: &[usize] = &bounds[0];
    for &t in &kept {
        child_ptr.push(nest(parent_bounds, &bounds[t]));
        parent_bounds = &bounds[t];
    }
    child_ptr.push(parent_bounds.iter().map(|&b| b as u32).collect());
    Ok((child_ptr, perm))
}

/// For segments `inner` nested in segments `outer` (both boundary lists of one range), the
/// index of the first inner segment of each outer segment, and the count at the end.
fn nest(outer: &[usize], inner: &[usize]) -> Vec<u32> {
    let mut ptr = Vec::with_capacity(outer.len());
    let mut j = 0;
    for &start in &outer[..outer.len() - 1] {
        while inner[j] < start {
            j += 1;
        }
        ptr.push(j as u32);
    }
    ptr.push((inner.len() - 1) as u32);
    ptr
}

/// Per-thread buffers of [`split_in_two`].
#[derive(Default)]
struct Scratch {
    /// Global feature -> local id (u32::MAX when absent).
    local: Vec<u32>,
    rows: Vec<(usize, usize)>,
    cols: Vec<u32>,
    vals: Vec<f32>,
    features: Vec<u32>,
}

/// Balanced spherical 2-means: reorders `labels` so that the first `mid` (= ceil(len / 2)) form
/// one cluster and the rest the other; returns `mid`.
fn split_in_two(
    z: &CsrMatrix,
    labels: &mut [u32],
    max_iter: usize,
    seed: u64,
    s: &mut Scratch,
) -> usize {
    let n = labels.len();
    if n <= 1 {
        return n;
    }
    let mid = n.div_ceil(2);
    // Rows of this segment over local feature ids 0..m.
    if s.local.len() < z.n_cols {
        s.local.resize(z.n_cols, u32::MAX);
    }
    s.rows.clear();
    s.cols.clear();
    s.vals.clear();
    s.features.clear();
    for &label in labels.iter() {
        let (cols, vals) = z.row(label as usize);
        let start = s.cols.len();
        for (&c, &v) in cols.iter().zip(vals) {
            let slot = &mut s.local[c as usize];
            if *slot == u32::MAX {
                *slot = s.features.len() as u32;
                s.features.push(c);
            }
            s.cols.push(*slot);
            s.vals.push(v);
        }
        s.rows.push((start, s.cols.len()));
    }
    let m = s.features.len();
    let dot = |row: usize, c: &[f64]| -> f64 {
        let (a, b) = s.rows[row];
        s.cols[a..b]
            .iter()
            .zip(&s.vals[a..b])
            .map(|(&f, &v)| c[f as usize] * v as f64)
            .sum()
    };
    // Initial centroids: a row chosen by the seed, and the row least similar to it (so that two
    // copies of one point never start both clusters).
    let mut rng = SplitMix64(seed);
    let first = (rng.next() % n as u64) as usize;
    let mut centroids = [vec![0f64; m], vec![0f64; m]];
    let (a, b) = s.rows[first];
    for (&f, &v) in s.cols[a..b].iter().zip(&s.vals[a..b]) {
        centroids[0][f as usize] = v as f64;
    }
    let second = (0..n)
        .filter(|&i| i != first)
        .min_by(|&i, &j| {
            dot(i, &centroids[0])
                .total_cmp(&dot(j, &centroids[0]))
                .then(i.cmp(&j))
        })
        .expect("n >= 2");
    let (a, b) = s.rows[second];
    for (&f, &v) in s.cols[a..b].iter().zip(&s.vals[a..b]) {
        centroids[1][f as usize] = v as f64;
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut assign = vec![u8::MAX; n];
    let mut margin = vec![0f64; n];
    for _ in 0..max_iter.max(1) {
        for (i, g) in margin.iter_mut().enumerate() {
            *g = dot(i, &centroids[0]) - dot(i, &centroids[1]);
        }
        // The `mid` rows leaning most to centroid 0 go to it: the best balanced assignment.
        order.sort_by(|&a, &b| margin[b].total_cmp(&margin[a]).then(a.cmp(&b)));
        let mut changed = false;
        for (rank, &i) in order.iter().enumerate() {
            let k = u8::from(rank >= mid);
            changed |= assign[i] != k;
            assign[i] = k;
        }
        if !changed {
            break;
        }
        for c in centroids.iter_mut() {
            c.fill(0.0);
        }
        for (i, &k) in assign.iter().enumerate() {
            let (a, b) = s.rows[i];
            for (&f, &v) in s.cols[a..b].iter().zip(&s.vals[a..b]) {
                centroids[k as usize][f as usize] += v as f64;
            }
        }
        for c in centroids.iter_mut() {
            let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                c.iter_mut().for_each(|v| *v /= norm);
            }
        }
    }
    for &f in &s.features {
        s.local[f as usize] = u32::MAX;
    }
    let original: Vec<u32> = labels.to_vec();
    let mut next = [0usize, mid];
    for (i, &k) in assign.iter().enumerate() {
        labels[next[k as usize]] = original[i];
        next[k as usize] += 1;
    }
    mid
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Labels in two obvious groups: features 0-1 vs features 2-3.
    fn two_groups(n: usize) -> CsrMatrix {
        CsrMatrix::from_rows(
            4,
            (0..n).map(|j| {
                if j % 2 == 0 {
                    (vec![0, 1], vec![0.8, 0.6])
                } else {
                    (vec![2, 3], vec![0.6, 0.8])
                }
            }),
        )
    }

    #[test]
    fn separable_groups_are_separated() {
        let params = KMeansParams {
            branching: 2,
            max_leaf_size: 4,
            ..KMeansParams::default()
        };
        let tree = build(&two_groups(8), &params).unwrap();
        assert_eq!(tree.n_nodes(0), 2);
        let top = tree.ancestors_at(0);
        for j in 0..8 {
            assert_eq!(top[j], top[j % 2], "label {j}");
        }
        assert_ne!(top[0], top[1]);
    }

    #[test]
    fn pifa_sums_and_normalises_positive_rows() {
        let x = CsrMatrix::from_rows(3, [(vec![0], vec![3.0]), (vec![1], vec![4.0])]);
        let y = CsrMatrix::from_rows(3, [(vec![0, 1], vec![1.0, 1.0]), (vec![0], vec![1.0])]);
        let z = pifa(&x, &y).unwrap();
        assert_eq!(z.row(0), (&[0u32, 1][..], &[0.6f32, 0.8][..]));
        assert_eq!(z.row(1), (&[0u32][..], &[1.0f32][..]));
        assert_eq!(z.row(2).0.len(), 0); // no positive instance
        assert!(pifa(&x, &CsrMatrix::new(3)).is_err());
    }

    #[test]
    fn bad_parameters_are_errors() {
        let z = two_groups(4);
        for (branching, leaf) in [(3, 2), (1, 2), (0, 2), (2, 0)] {
            let p = KMeansParams {
                branching,
                max_leaf_size: leaf,
                ..KMeansParams::default()
            };
            assert!(build(&z, &p).is_err());
        }
        assert!(build(&CsrMatrix::new(4), &KMeansParams::default()).is_err());
    }

    proptest! {
        #[test]
        fn trees_are_balanced_complete_and_deterministic(
            n in 1usize..300, leaf in 1usize..40, log_b in 1u32..5, seed in 0u64..4,
        ) {
            let z = CsrMatrix::from_rows(
                5,
                (0..n).map(|j| (vec![(j % 5) as u32], vec![1.0 + (j % 7) as f32])),
            );
            let params = KMeansParams { branching: 1 << log_b, max_leaf_size: leaf, max_iter: 5, seed };
            let tree = build(&z, &params).unwrap();
            prop_assert_eq!(tree.n_labels(), n);
            let mut labels = tree.leaf_labels().to_vec();
            labels.sort_unstable();
            prop_assert_eq!(labels, (0..n as u32).collect::<Vec<_>>());
            // Leaf clusters (the parents of the labels) have sizes that differ by at most one.
            let last = tree.depth() - 1;
            let sizes: Vec<usize> = (0..tree.n_nodes(last.saturating_sub(1)).max(1))
                .map(|p| if last == 0 { n } else { tree.children(last, p).len() })
                .collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{sizes:?}");
            prop_assert!(*hi <= leaf.max(2) || n <= 1, "{sizes:?} > {leaf}");
            // Cluster levels have at most `branching` children per node.
            for l in 0..last {
                let parents = if l == 0 { 1 } else { tree.n_nodes(l - 1) };
                for p in 0..parents {
                    let k = tree.children(l, p).len();
                    prop_assert!(k <= params.branching, "level {} node {} has {} children", l, p, k);
                }
            }
            prop_assert_eq!(build(&z, &params).unwrap(), tree);
        }
    }
}
