//! Training XR-Linear: one L2-loss linear SVM per tree node, level by level.
//!
//! The classifier of node `c` (child of `p`) is trained on the instances that are positive for
//! `p`: positive if one of their labels is under `c`, negative otherwise ("teacher-forced"
//! negatives, from the siblings). Each problem is solved by dual coordinate descent
//! (LIBLINEAR's `L2R_L2LOSS_SVC_DUAL`, PECOS's default), siblings in blocks that share each pass
//! over their rows ([`super::block`]), and weights with `|w| < threshold` are dropped. Blocks
//! are trained in parallel; [`Progress`] counts the nodes done.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use super::block::{BlockSolver, Column, LANES};
use super::model::{LevelWeights, XrLinear};
use super::params::TrainParams;
use crate::error::{Error, Result};
use crate::index::LabelTree;
use crate::progress::{Progress, Stage};
use crate::sparse::{CsrMatrix, Pattern, RowBuf, SparseRows};

/// Trains a model on rows `x` (instances x features) with labels `y` (instances x labels; a
/// stored value > 0 is a positive) over `tree`.
pub fn train(
    x: &CsrMatrix,
    y: &CsrMatrix,
    tree: LabelTree,
    params: &TrainParams,
    progress: &Progress,
) -> Result<XrLinear> {
    train_with(x, y, tree, params, progress, None)
}

/// [`train`], with `ranges`: per row, the range of label ids its answers will be restricted to
/// when serving (a completer's prefix range). A row then trains the children of a node only where its
///   range meets two of them or more: where the range leaves one child, the model never has to
///   choose, and the siblings it would be a negative for are never its competitors. Children
///   that no row's range leaves open score 1 (neutral), so paths through them do not lose to
///   paths whose choices were learned.
pub fn train_with(
    x: &CsrMatrix,
    y: &CsrMatrix,
    tree: LabelTree,
    params: &TrainParams,
    progress: &Progress,
    ranges: Option<&[(u32, u32)]>,
) -> Result<XrLinear> {
    let n_features = x.n_cols;
    train_levels_with(x, y, tree, params, progress, ranges)?.model(n_features, params)
}

/// The weights [`train_with`] trains, before they are assembled into a model: the caller may
/// free the rows first.
pub(crate) struct Trained {
    tree: LabelTree,
    levels: Vec<LevelWeights>,
}

impl Trained {
    /// The model of these weights, over `n_features` features.
    pub(crate) fn model(self, n_features: usize, params: &TrainParams) -> Result<XrLinear> {
        XrLinear::new(self.tree, self.levels, n_features, params.bias as f32)
    }
}

/// [`train_with`] up to the weights.
pub(crate) fn train_levels_with(
    x: &dyn SparseRows,
    y: &dyn SparseRows,
    tree: LabelTree,
    params: &TrainParams,
    progress: &Progress,
    ranges: Option<&[(u32, u32)]>,
) -> Result<Trained> {
    params.check()?;
    if let Some(ranges) = ranges {
        if ranges.len() != x.n_rows() {
            return Err(Error::InvalidInput(format!(
                "{} label ranges for {} rows",
                ranges.len(),
                x.n_rows()
            )));
        }
    }
    if x.n_rows() != y.n_rows() {
        return Err(Error::InvalidInput(format!(
            "X has {} rows but Y has {}",
            x.n_rows(),
            y.n_rows()
        )));
    }
    if y.n_cols() != tree.n_labels() {
        return Err(Error::InvalidInput(format!(
            "Y has {} columns but the tree has {} labels",
            y.n_cols(),
            tree.n_labels()
        )));
    }
    if x.n_rows() == 0 {
        return Err(Error::InvalidInput(
            "training needs at least one row".into(),
        ));
    }
    if x.n_rows() > u32::MAX as usize {
        return Err(Error::TooLarge {
            what: "number of training rows",
            got: x.n_rows() as u64,
            limit: u32::MAX as u64,
        });
    }
    let total: usize = (0..tree.depth()).map(|l| tree.n_nodes(l)).sum();
    progress.total.store(total as u64, Ordering::Relaxed);
    progress.done.store(0, Ordering::Relaxed);
    progress.set_stage(Stage::Training);
    let top = tree.depth();
    let seed = params.seed;
    let scope = ranges.map(|ranges| Scope {
        ranges,
        label_bounds: None,
    });
    let (levels, _) = train_levels(
        x,
        y,
        &tree,
        top,
        &|l, p| node_seed(seed, l, p),
        params,
        progress,
        scope,
    );
    Ok(Trained { tree, levels })
}

/// The seed of the problems of the children of node `p` of level `l - 1` (every block of a
/// parent visits rows in one order, so each node's solution does not depend on how siblings
/// were blocked, on the thread count, or on the machine that trained it).
pub(crate) fn node_seed(seed: u64, l: usize, p: usize) -> u64 {
    seed ^ ((l as u64) << 48) ^ p as u64
}

/// The label ranges rows are served in ([`train_with`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// Per row, the range of label ids its answers are restricted to.
    pub ranges: &'a [(u32, u32)],
    /// The smallest and the largest label id each label of the tree stands for (None: the
    /// label itself): a subtree's labels are the whole tree's labels under it, the top levels'
    /// are the nodes of their last level.
    pub label_bounds: Option<&'a [(u32, u32)]>,
}

/// For each node of level `l`, the smallest and the largest label id under it.
pub(crate) fn id_bounds(
    tree: &LabelTree,
    l: usize,
    label_bounds: Option<&[(u32, u32)]>,
) -> Vec<(u32, u32)> {
    let mut bounds = vec![(u32::MAX, 0u32); tree.n_nodes(l)];
    for (label, &node) in tree.ancestors_at(l).iter().enumerate() {
        let (lo, hi) = label_bounds.map_or((label as u32, label as u32), |b| b[label]);
        let b = &mut bounds[node as usize];
        *b = (b.0.min(lo), b.1.max(hi));
    }
    bounds
}

/// The rows of `rows` whose range meets at least two of `children` (by their id bounds): the
/// rows for which the choice among the children is still open when serving.
pub(crate) fn open_rows(
    rows: &[u32],
    ranges: &[(u32, u32)],
    bounds: &[(u32, u32)],
    children: Range<usize>,
) -> Vec<u32> {
    rows.iter()
        .copied()
        .filter(|&r| {
            let (lo, hi) = ranges[r as usize];
            bounds[children.clone()]
                .iter()
                .filter(|&&(min, max)| min < hi && max >= lo)
                .take(2)
                .count()
                == 2
        })
        .collect()
}

/// Trains the first `n_levels` levels of `tree`, the children of node `p` of level `l - 1` with
/// the seed `seed_of(l, p)` (on the rows whose range leaves the choice open, within `scope`);
/// returns the columns of each level, and the positive rows of each node of the last level
/// trained (the rows of the level below).
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_levels(
    x: &dyn SparseRows,
    y: &dyn SparseRows,
    tree: &LabelTree,
    n_levels: usize,
    seed_of: &(dyn Fn(usize, usize) -> u64 + Sync),
    params: &TrainParams,
    progress: &Progress,
    scope: Option<Scope<'_>>,
) -> (Vec<LevelWeights>, Option<Pattern>) {
    let mut buf = RowBuf::default();
    let sq_norms: Vec<f32> = (0..x.n_rows())
        .map(|r| x.row_in(r, &mut buf).1.iter().map(|&v| v * v).sum())
        .collect();
    let all_rows: Vec<u32> = (0..x.n_rows() as u32).collect();
    // The bias weight that makes a node's raw score 1 whatever the input (none without a bias).
    let neutral_bias = if params.bias > 0.0 {
        (1.0 / params.bias) as f32
    } else {
        0.0
    };
    let solvers = Solvers::new(x.n_cols());
    let mut parent_positives: Option<Pattern> = None;
    let mut levels = Vec::with_capacity(n_levels);
    for l in 0..n_levels {
        let positives = positives_at(tree, y, l);
        // One job per parent and block of up to LANES of its children: siblings share rows.
        // Narrower blocks where a level would otherwise leave threads idle (a top level of
        // four nodes is one block of four, and one core, at full width).
        let ptr = tree.child_ptr(l);
        let n_jobs = |width: usize| -> usize {
            ptr.windows(2)
                .map(|w| ((w[1] - w[0]) as usize).div_ceil(width))
                .sum()
        };
        let mut width = LANES;
        while width > 1 && n_jobs(width) < rayon::current_num_threads() {
            width /= 2;
        }
        let mut jobs: Vec<(usize, usize, usize)> = Vec::new();
        for p in 0..ptr.len() - 1 {
            let (mut first, end) = (ptr[p] as usize, ptr[p + 1] as usize);
            while first < end {
                let w = width.min(end - first);
                jobs.push((p, first, w));
                first += w;
            }
        }
        let rows_of = |p: usize| -> &[u32] {
            match &parent_positives {
                None => &all_rows,
                Some(pp) => pp.row(p),
            }
        };
        let open: Option<Vec<Vec<u32>>> = scope.map(|s| {
            let bounds = id_bounds(tree, l, s.label_bounds);
            (0..ptr.len() - 1)
                .into_par_iter()
                .map(|p| open_rows(rows_of(p), s.ranges, &bounds, children(ptr, p)))
                .collect()
        });
        // The jobs in chunks, each chunk's columns packed into the level before the next is
        // trained: a node's column as vectors of its own costs its headers, the allocator's
        // and the doubling's slack (more than the weights, for the small nodes of the lower
        // levels), and the lowest level of a large log has millions of nodes.
        let mut level = LevelWeights::empty();
        for chunk in jobs.chunks(job_chunk()) {
            let blocks: Vec<Vec<Column>> = chunk
                .par_iter()
                .map(|&(p, first, width)| {
                    let rows: &[u32] = open.as_ref().map_or_else(|| rows_of(p), |o| &o[p]);
                    if open.is_some() && rows.is_empty() {
                        // No prefix leaves this choice open: the children are never compared
                        // with each other, and a path through one of them must not lose to a
                        // path whose choices were learned. Neutral: z = 1 scores 1.
                        progress.done.fetch_add(width as u64, Ordering::Relaxed);
                        return vec![(Vec::new(), Vec::new(), neutral_bias); width];
                    }
                    let pos: Vec<&[u32]> =
                        (first..first + width).map(|c| positives.row(c)).collect();
                    let columns = solvers.with(|solver| {
                        solver.solve(x, &sq_norms, rows, &pos, params, seed_of(l, p))
                    });
                    progress.done.fetch_add(width as u64, Ordering::Relaxed);
                    columns
                })
                .collect();
            level.push_columns(blocks.into_iter().flatten());
        }
        level.shrink_to_fit();
        levels.push(level);
        parent_positives = Some(positives);
    }
    (levels, parent_positives)
}

/// Jobs (blocks of sibling nodes) trained before their columns are packed into their level.
const JOB_CHUNK: usize = 4096;

#[cfg(test)]
thread_local! {
    /// [`JOB_CHUNK`] for the fits this thread runs: a test sets it (the chunks are cut on the
    /// thread that calls the fit).
    static JOB_CHUNK_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(JOB_CHUNK) };
}

fn job_chunk() -> usize {
    #[cfg(test)]
    return JOB_CHUNK_HERE.with(std::cell::Cell::get);
    #[cfg(not(test))]
    JOB_CHUNK
}

/// One [`BlockSolver`] per thread of the pool, made on the thread's first job and kept for the
/// fit (its dense weights are as long as the features).
struct Solvers {
    n_features: usize,
    slots: Vec<Mutex<Option<BlockSolver>>>,
}

impl Solvers {
    fn new(n_features: usize) -> Self {
        Solvers {
            n_features,
            slots: (0..rayon::current_num_threads().max(1))
                .map(|_| Mutex::new(None))
                .collect(),
        }
    }

    /// Runs `f` with this thread's solver (a thread outside the pool shares the first one).
    fn with<T>(&self, f: impl FnOnce(&mut BlockSolver) -> T) -> T {
        let i = rayon::current_thread_index().unwrap_or(0) % self.slots.len();
        let mut slot = self.slots[i].lock().unwrap_or_else(PoisonError::into_inner);
        f(slot.get_or_insert_with(|| BlockSolver::new(self.n_features)))
    }
}

/// The children of parent `p` in the child pointers `ptr` of a level.
pub(crate) fn children(ptr: &[u32], p: usize) -> Range<usize> {
    ptr[p] as usize..ptr[p + 1] as usize
}

/// For every node of level `l`, the sorted instances with a label under it (rows of a matrix
/// nodes x instances).
pub(crate) fn positives_at(tree: &LabelTree, y: &dyn SparseRows, l: usize) -> Pattern {
    let ancestors = tree.ancestors_at(l);
    let mut buf = RowBuf::default();
    let nnz = (0..y.n_rows()).map(|r| y.row_in(r, &mut buf).0.len()).sum();
    let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(nnz);
    for r in 0..y.n_rows() {
        let (labels, values) = y.row_in(r, &mut buf);
        for (&label, &v) in labels.iter().zip(values) {
            if v > 0.0 {
                pairs.push((ancestors[label as usize], r as u32));
            }
        }
    }
    pairs.par_sort_unstable();
    pairs.dedup();
    let mut m = Pattern::with_capacity(pairs.len());
    let mut at = 0;
    for node in 0..tree.n_nodes(l) as u32 {
        let start = at;
        while at < pairs.len() && pairs[at].0 == node {
            at += 1;
        }
        m.push_row(pairs[start..at].iter().map(|p| p.1));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::kmeans::{self, KMeansParams};
    use crate::persist::Persist;
    use crate::xr::model::{PredictParams, PredictScratch};

    /// Instances whose single feature is their label (plus noise features): a known answer.
    fn identity_problem(n_labels: usize, copies: usize) -> (CsrMatrix, CsrMatrix) {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for copy in 0..copies {
            for j in 0..n_labels {
                let noise = (n_labels + (j + copy) % 3) as u32;
                xs.push((vec![j as u32, noise], vec![0.9, 0.3]));
                ys.push((vec![j as u32], vec![1.0]));
            }
        }
        (
            CsrMatrix::from_rows(n_labels + 3, xs),
            CsrMatrix::from_rows(n_labels, ys),
        )
    }

    /// Trains over a binary k-means tree with leaves of at most `leaf` labels.
    fn fit(x: &CsrMatrix, y: &CsrMatrix, leaf: usize, params: &TrainParams) -> XrLinear {
        train(x, y, kmeans_tree(x, y, leaf), params, &Progress::default()).unwrap()
    }

    fn kmeans_tree(x: &CsrMatrix, y: &CsrMatrix, leaf: usize) -> LabelTree {
        let z = kmeans::pifa(x, y).unwrap();
        kmeans::build(
            &z,
            &KMeansParams {
                branching: 2,
                max_leaf_size: leaf,
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// A completer's rows in parts (each text's features once) and its labels one per row
    /// train the model, to the byte, that the same rows whole and the labels in CSR train: with
    /// label ranges and without, over k-means and trie trees.
    #[test]
    fn rows_in_parts_and_labels_one_per_row_train_the_same_model() {
        use crate::sparse::OneLabelRows;
        use crate::text::{FeatureConcat, TfidfConfig};
        let prevs = [
            "",
            "cheap flights",
            "",
            "hotel deals",
            "cheap flights",
            "",
            "car hire",
        ];
        let nexts = [
            "cheap",
            "cheap hotels",
            "chea",
            "hotel",
            "hotels paris",
            "car",
            "car hire uk",
        ];
        let (mut a, mut b, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for copy in 0..4usize {
            for (i, (&p, &n)) in prevs.iter().zip(&nexts).enumerate() {
                a.push(p);
                b.push(&n[..n.len() - copy.min(n.len() - 1)]);
                labels.push(((i + copy) % 5) as u32);
            }
        }
        let config = TfidfConfig::default();
        let features = FeatureConcat::fit_columns(&[config.clone(), config], &[&a, &b]).unwrap();
        let whole = features.transform(&[&a, &b]).unwrap();
        let parts = features.transform_factored(&[&a, &b]).unwrap();
        let csr = CsrMatrix::from_rows(5, labels.iter().map(|&l| (vec![l], vec![1.0])));
        let one = OneLabelRows::new(5, labels.clone()).unwrap();
        assert_eq!(
            kmeans::pifa(&whole, &csr).unwrap(),
            kmeans::pifa(&parts, &one).unwrap()
        );
        let ranges: Vec<(u32, u32)> = labels
            .iter()
            .map(|&l| (l.saturating_sub(1), (l + 2).min(5)))
            .collect();
        let names = ["a", "b", "c", "d", "e"];
        let trie = crate::index::TreeSpec::Trie {
            depth: 2,
            max_group: 2,
        };
        for tree in [
            kmeans_tree(&whole, &csr, 2),
            crate::index::build(&trie, &names, &whole, &csr).unwrap(),
        ] {
            for scope in [None, Some(&ranges[..])] {
                let params = TrainParams::default();
                let fit = |x: &dyn SparseRows, y: &dyn SparseRows| {
                    train_levels_with(x, y, tree.clone(), &params, &Progress::default(), scope)
                        .unwrap()
                        .model(whole.n_cols, &params)
                        .unwrap()
                        .to_bytes()
                };
                assert_eq!(fit(&whole, &csr), fit(&parts, &one));
            }
        }
    }

    #[test]
    fn learns_a_problem_with_a_known_answer() {
        let (x, y) = identity_problem(40, 3);
        let tree = kmeans_tree(&x, &y, 4);
        assert!(tree.depth() >= 3);
        let progress = Progress::default();
        let model = train(&x, &y, tree, &TrainParams::default(), &progress).unwrap();
        assert_eq!(
            progress.done.load(Ordering::Relaxed),
            progress.total.load(Ordering::Relaxed)
        );
        let params = PredictParams {
            beam_size: 4,
            topk: 3,
            ..Default::default()
        };
        let mut scratch = PredictScratch::default();
        for j in 0..40u32 {
            let top = model
                .predict_one(&[j], &[1.0], &params, None, &mut scratch)
                .unwrap();
            assert_eq!(top[0].0, j, "label {j}: {top:?}");
            assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }

    #[test]
    fn rows_train_only_the_choices_their_range_leaves_open() {
        let (x, y) = identity_problem(40, 3);
        // Leaves in label order (as in a trie), so that the bounds of a node are exact.
        let ordered = LabelTree::new(
            vec![vec![0, 2], vec![0, 2, 4], vec![0, 10, 20, 30, 40]],
            (0..40).collect(),
        )
        .unwrap();
        let params = TrainParams::default();
        let label_of = |r: usize| y.row(r).0[0];
        // A range of one label: no choice is ever open, nothing is trained.
        let single: Vec<(u32, u32)> = (0..x.n_rows())
            .map(|r| (label_of(r), label_of(r) + 1))
            .collect();
        let fit = |tree: &LabelTree, ranges: &[(u32, u32)]| {
            train_with(
                &x,
                &y,
                tree.clone(),
                &params,
                &Progress::default(),
                Some(ranges),
            )
            .unwrap()
        };
        let none_open = fit(&ordered, &single);
        assert_eq!(none_open.nnz(), 0);
        // ... and every choice scores 1: no path loses to one whose choices were learned.
        let mut scratch = PredictScratch::default();
        let all = PredictParams {
            beam_size: 100,
            topk: 40,
            ..Default::default()
        };
        let scores = none_open
            .predict_one(&[3], &[1.0], &all, None, &mut scratch)
            .unwrap();
        assert_eq!(scores.len(), 40);
        assert!(
            scores.iter().all(|&(_, s)| (s - 1.0).abs() < 1e-6),
            "{scores:?}"
        );
        // Ranges within one node of the first level: that level is not trained, the rest is.
        let halves: Vec<(u32, u32)> = (0..x.n_rows())
            .map(|r| if label_of(r) < 20 { (0, 20) } else { (20, 40) })
            .collect();
        let halved = fit(&ordered, &halves);
        assert_eq!(halved.levels()[0].nnz(), 0);
        assert!(halved.levels()[1].nnz() > 0 && halved.levels()[2].nnz() > 0);
        let tree = kmeans_tree(&x, &y, 4);
        // Every label in range: every choice is open, as without ranges.
        let all = vec![(0u32, 40u32); x.n_rows()];
        let plain = train(&x, &y, tree.clone(), &params, &Progress::default()).unwrap();
        assert_eq!(fit(&tree, &all).to_bytes(), plain.to_bytes());
        // The open rows of a parent are those whose range meets two children or more.
        let bounds = [(0, 3), (4, 9), (10, 10)];
        let ranges = [(0, 2), (3, 5), (9, 11), (11, 20), (0, 20)];
        assert_eq!(
            open_rows(&[0, 1, 2, 3, 4], &ranges, &bounds, 0..3),
            [1, 2, 4]
        );
        assert_eq!(open_rows(&[0, 1, 2, 3, 4], &ranges, &bounds, 1..3), [2, 4]);
        assert_eq!(
            id_bounds(&tree, tree.depth() - 1, None),
            (0..40)
                .map(|leaf| {
                    let label = tree.label_of_leaf(leaf);
                    (label, label)
                })
                .collect::<Vec<_>>()
        );
    }

    /// 30 labels in a tree of 3-way splits, their features, and a beam wide enough to keep them
    /// all: its answers are exhaustive scoring's.
    fn wide_beam_problem() -> (CsrMatrix, XrLinear, PredictParams) {
        let (x, y) = identity_problem(30, 2);
        let tree = kmeans_tree(&x, &y, 3);
        let model = train(&x, &y, tree, &TrainParams::default(), &Progress::default()).unwrap();
        let wide = PredictParams {
            beam_size: 10_000,
            topk: 30,
            ..Default::default()
        };
        (x, model, wide)
    }

    #[test]
    fn a_wide_beam_equals_exhaustive_scoring() {
        let (x, model, wide) = wide_beam_problem();
        let mut scratch = PredictScratch::default();
        for r in 0..x.n_rows() {
            let (idx, val) = x.row(r);
            let got = model
                .predict_one(idx, val, &wide, None, &mut scratch)
                .unwrap();
            // Exhaustive: every label's path score, computed node by node.
            let mut want: Vec<(u32, f32)> = (0..30u32)
                .map(|label| (label, path_score(&model, idx, val, label)))
                .collect();
            want.sort_by(|a, b| {
                b.1.total_cmp(&a.1).then(
                    model
                        .tree
                        .leaf_of_label(a.0 as usize)
                        .cmp(&model.tree.leaf_of_label(b.0 as usize)),
                )
            });
            let got_labels: Vec<u32> = got.iter().map(|g| g.0).collect();
            let want_labels: Vec<u32> = want.iter().map(|w| w.0).collect();
            assert_eq!(got_labels, want_labels);
            for (g, w) in got.iter().zip(&want) {
                assert!((g.1 - w.1).abs() <= 1e-6 * w.1.abs().max(1.0));
            }
        }
    }

    #[test]
    fn a_wide_beam_within_a_label_range_equals_exhaustive_scoring_of_the_range() {
        let (x, model, wide) = wide_beam_problem();
        let mut scratch = PredictScratch::default();
        // Ranges that hold whole subtrees, parts of them, one label, none.
        for (lo, hi) in [
            (0, 30),
            (5, 25),
            (0, 1),
            (10, 11),
            (29, 30),
            (7, 19),
            (3, 3),
        ] {
            for r in 0..x.n_rows() {
                let (idx, val) = x.row(r);
                let got = model
                    .predict_one(idx, val, &wide, Some((lo, hi)), &mut scratch)
                    .unwrap();
                let mut got_labels: Vec<u32> = got.iter().map(|g| g.0).collect();
                got_labels.sort_unstable();
                assert_eq!(got_labels, (lo..hi).collect::<Vec<_>>(), "{lo}..{hi}");
                for &(label, score) in &got {
                    let want = path_score(&model, idx, val, label);
                    assert!((score - want).abs() <= 1e-6 * want.abs().max(1.0));
                }
            }
        }
    }

    fn path_score(model: &XrLinear, idx: &[u32], val: &[f32], label: u32) -> f32 {
        let tree = &model.tree;
        let mut score = 1.0f32;
        for l in 0..tree.depth() {
            let node = tree.ancestors_at(l)[label as usize] as usize;
            let levels = model.levels();
            let w = &levels[l];
            let mut z = w.bias[node] * model.bias;
            for k in w.col_ptr[node]..w.col_ptr[node + 1] {
                if let Ok(at) = idx.binary_search(&w.rows[k]) {
                    z += w.vals[k].to_f32() * val[at];
                }
            }
            score *= (-(1.0 - z).max(0.0).powi(3)).exp();
        }
        score
    }

    #[test]
    fn label_ranges_restrict_the_answers() {
        let (x, y) = identity_problem(40, 2);
        let tree = kmeans_tree(&x, &y, 4);
        let model = train(&x, &y, tree, &TrainParams::default(), &Progress::default()).unwrap();
        let params = PredictParams {
            beam_size: 3,
            topk: 5,
            ..Default::default()
        };
        let mut scratch = PredictScratch::default();
        let got = model
            .predict_one(&[7], &[1.0], &params, Some((20, 25)), &mut scratch)
            .unwrap();
        assert!(!got.is_empty());
        assert!(got.iter().all(|&(label, _)| (20..25).contains(&label)));
        let none = model
            .predict_one(&[7], &[1.0], &params, Some((5, 5)), &mut scratch)
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn the_jobs_chunks_do_not_change_the_model() {
        let (x, y) = identity_problem(50, 2);
        let ranges: Vec<(u32, u32)> = (0..x.n_rows())
            .map(|r| {
                let label = y.row(r).0[0];
                (label.saturating_sub(3), (label + 3).min(50))
            })
            .collect();
        let tree = kmeans_tree(&x, &y, 4);
        let fit_in = |chunk: usize, ranges: Option<&[(u32, u32)]>| {
            JOB_CHUNK_HERE.with(|c| c.set(chunk));
            let p = TrainParams::default();
            let model = train_with(&x, &y, tree.clone(), &p, &Progress::default(), ranges);
            JOB_CHUNK_HERE.with(|c| c.set(JOB_CHUNK));
            model.unwrap()
        };
        for ranges in [None, Some(&ranges[..])] {
            let whole = fit_in(JOB_CHUNK, ranges);
            assert!(whole.nnz() > 0);
            for chunk in [1, 2, 3] {
                assert_eq!(fit_in(chunk, ranges), whole, "chunks of {chunk} jobs");
            }
        }
    }

    #[test]
    fn training_is_deterministic_and_parallel_predict_equals_serial() {
        let (x, y) = identity_problem(50, 2);
        let a = fit(&x, &y, 4, &TrainParams::default());
        let b = fit(&x, &y, 4, &TrainParams::default());
        assert_eq!(a, b);
        let params = PredictParams::default();
        let batch = a.predict(&x, &params).unwrap();
        let mut scratch = PredictScratch::default();
        for r in 0..x.n_rows() {
            let (idx, val) = x.row(r);
            let mut one = a
                .predict_one(idx, val, &params, None, &mut scratch)
                .unwrap();
            one.sort_by_key(|p| p.0);
            let (labels, scores): (Vec<u32>, Vec<f32>) = one.into_iter().unzip();
            assert_eq!(batch.row(r), (&labels[..], &scores[..]));
        }
    }

    #[test]
    fn saved_models_load_equal_and_corrupt_ones_fail() {
        use crate::persist::Persist;
        let (x, y) = identity_problem(30, 2);
        let model = fit(&x, &y, 4, &TrainParams::default());
        let bytes = model.to_bytes();
        let loaded = XrLinear::from_bytes(&bytes).unwrap();
        assert_eq!(loaded, model);
        // Every array is saved as it is held: the file comes back byte for byte.
        assert_eq!(loaded.to_bytes(), bytes);
        let levels = model.levels();
        assert_eq!(levels.iter().map(|w| w.nnz()).sum::<usize>(), model.nnz());
        assert!(levels.iter().all(|w| w
            .col_ptr
            .windows(2)
            .all(|p| w.rows[p[0]..p[1]].windows(2).all(|r| r[0] < r[1]))));
        let rebuilt =
            XrLinear::new(model.tree.clone(), levels, model.n_features, model.bias).unwrap();
        assert_eq!(rebuilt, model);
        for len in (0..bytes.len()).step_by(11) {
            assert!(XrLinear::from_bytes(&bytes[..len]).is_err());
        }
    }

    /// A chunk's content is not scanned at load (that would make loading linear in the
    /// weights); a chunk made inconsistent under a valid checksum must give scores, not a panic.
    #[test]
    fn inconsistent_chunks_under_a_valid_checksum_never_panic() {
        use crate::persist::{Buffer, Kind, Persist, Reader, Writer};
        let (x, y) = identity_problem(30, 2);
        let model = fit(&x, &y, 4, &TrainParams::default());
        let r = Reader::new(&Buffer::copy_from(&model.to_bytes()), Kind::XrLinear).unwrap();
        let rewrite = |change: &dyn Fn(&str, &mut Vec<u8>)| {
            let mut w = Writer::new(Kind::XrLinear);
            for (name, data) in r.sections() {
                let mut data = data.to_vec();
                change(&name, &mut data);
                w.bytes(&name, data);
            }
            XrLinear::from_bytes(&w.finish()).unwrap()
        };
        let set_words = |data: &mut Vec<u8>, value: u32, step: usize, at: usize| {
            for chunk in data.chunks_exact_mut(4).skip(at).step_by(step) {
                chunk.copy_from_slice(&value.to_le_bytes());
            }
        };
        let broken = [
            // Entries' children far past any parent's children (a 2-byte child, then its
            // 2-byte weight).
            rewrite(&|name, data| {
                if name.ends_with(".h") {
                    for entry in data.chunks_exact_mut(4) {
                        entry[..2].copy_from_slice(&u16::MAX.to_le_bytes());
                    }
                }
            }),
            // Entry ends running backwards and past the entries.
            rewrite(&|name, data| {
                if name.ends_with(".fe") {
                    for (i, end) in data.chunks_exact_mut(2).enumerate() {
                        let value = if i % 2 == 0 { u16::MAX } else { 0 };
                        end.copy_from_slice(&value.to_le_bytes());
                    }
                }
            }),
            // Feature ids out of order and out of range.
            rewrite(&|name, data| {
                if name.ends_with(".fi") {
                    set_words(data, u32::MAX, 3, 1);
                }
            }),
            // Bucket starts past the chunk's features.
            rewrite(&|name, data| {
                if name.ends_with(".b") {
                    set_words(data, u32::MAX, 3, 0)
                }
            }),
        ];
        let params = PredictParams::default();
        for m in &broken {
            assert!(m.predict(&x, &params).is_ok());
            let mut scratch = PredictScratch::default();
            let (idx, val) = x.row(0);
            assert!(m
                .predict_one(idx, val, &params, Some((0, 5)), &mut scratch)
                .is_ok());
            let _ = m.levels();
        }
    }

    /// The scores of every label of a model whose tree is flat (root -> labels): `bias * b_c +
    /// w_c . x`, exhaustively, from the columns.
    fn flat_scores(levels: &[LevelWeights], bias: f32, idx: &[u32], val: &[f32]) -> Vec<f32> {
        let w = &levels[0];
        (0..w.bias.len())
            .map(|c| {
                let mut z = w.bias[c] * bias;
                for k in w.col_ptr[c]..w.col_ptr[c + 1] {
                    if let Some(at) = idx.iter().position(|&f| f == w.rows[k]) {
                        z += w.vals[k].to_f32() * val[at];
                    }
                }
                z
            })
            .collect()
    }

    /// Weights are stored as half floats: what a model holds is the nearest half float of what
    /// it was given, and giving it what it holds changes nothing.
    #[test]
    fn weights_are_rounded_to_half_floats_once() {
        let tree = LabelTree::new(vec![vec![0, 3]], vec![0, 1, 2]).unwrap();
        let given = LevelWeights::from_columns(vec![
            (vec![0, 2], vec![0.1, 1e6], 0.5),
            (vec![1], vec![-1.23456], -0.25),
            (vec![], vec![], 1.0),
        ]);
        let model = XrLinear::new(tree.clone(), vec![given], 3, 1.0).unwrap();
        let held = model.levels();
        // 0.1 and -1.23456 to 11 significant bits; 1e6 saturates at the largest half float.
        let vals: Vec<f32> = held[0].vals.iter().map(|v| v.to_f32()).collect();
        assert_eq!(vals, [0.099975586, 65504.0, -1.234375]);
        let again = XrLinear::new(tree, held.clone(), 3, 1.0).unwrap();
        assert_eq!(again.levels(), held);
        assert_eq!(again, model);
    }

    /// A parent of more than 65,536 children (but fewer entries) keeps 4-byte children (a wide
    /// level): its scores are those of the columns, and it saves and loads as it is.
    #[test]
    fn a_parent_of_more_than_65536_children_scores_every_child() {
        let n = (1usize << 16) + 7;
        let tree = LabelTree::new(vec![vec![0, n as u32]], (0..n as u32).collect()).unwrap();
        // Few weights (fewer entries than 65,536), among them those of the last children.
        let columns = (0..n).map(|c| {
            if c % 64 != 0 && c < n - 20 {
                return (Vec::new(), Vec::new(), (c % 11) as f32 / 4.0);
            }
            let f = (c % 5) as u32;
            (
                vec![f, 5 + (c % 3) as u32],
                vec![(c % 97) as f32 / 8.0, -0.5],
                0.0f32,
            )
        });
        let given = LevelWeights::from_columns(columns);
        let model = XrLinear::new(tree, vec![given.clone()], 8, 1.0).unwrap();
        assert_scores_every_child(&model, given, (&[2, 4, 6], &[1.0, 0.5, 2.0]));
    }

    /// Every child of a one-level `model` built from the columns `given` scores, in the model
    /// and in the model saved and loaded, as the columns rounded to half floats do on the input
    /// row `(idx, val)`.
    fn assert_scores_every_child(
        model: &XrLinear,
        given: LevelWeights,
        (idx, val): (&[u32], &[f32]),
    ) {
        let n = model.n_labels();
        let want = flat_scores(&[given], 1.0, idx, val);
        let params = PredictParams {
            topk: n,
            beam_size: n,
            post_processor: crate::xr::PostProcessor::Sigmoid,
        };
        let mut scratch = PredictScratch::default();
        let loaded = XrLinear::from_bytes(&model.to_bytes()).unwrap();
        assert_eq!(&loaded, model);
        for m in [model, &loaded] {
            let mut got = m
                .predict_one(idx, val, &params, None, &mut scratch)
                .unwrap();
            got.sort_by_key(|p| p.0);
            assert_eq!(got.len(), n);
            for (label, score) in got {
                let z = want[label as usize];
                assert_eq!(score, params.post_processor.apply(z), "label {label}");
            }
        }
    }

    /// A parent of more than 65,535 entries (few children, many features each) has its ends
    /// stored in 4 bytes: the last child's scores come out right.
    #[test]
    fn a_parent_of_more_than_65535_entries_scores_every_child() {
        let (n, n_features) = (8usize, 10_000u32);
        let tree = LabelTree::new(vec![vec![0, n as u32]], (0..n as u32).collect()).unwrap();
        let columns = (0..n).map(|c| {
            let vals = (0..n_features).map(|f| 0.25 + ((f as usize + c) % 7) as f32);
            (
                (0..n_features).collect::<Vec<_>>(),
                vals.collect::<Vec<_>>(),
                0.0f32,
            )
        });
        let given = LevelWeights::from_columns(columns);
        let model = XrLinear::new(tree, vec![given.clone()], n_features as usize, 1.0).unwrap();
        assert_scores_every_child(&model, given, (&[0, 4_999, 9_999], &[0.5, 1.0, 0.25]));
    }

    /// Files saved before half floats (8-byte entries and pointers, and the label lists of a
    /// level stored even in leaf order) load, with the weights rounded as a new model's are.
    #[test]
    fn models_saved_in_the_older_layout_load_with_the_same_answers() {
        use crate::persist::{Buffer, Kind, Reader, Writer};
        let (x, y) = identity_problem(40, 2);
        let model = fit(&x, &y, 4, &TrainParams::default());
        model.prepare_label_ranges();
        let r = Reader::new(&Buffer::copy_from(&model.to_bytes()), Kind::XrLinear).unwrap();
        let widen = |data: &[u8]| -> Vec<u8> {
            let words: &[u32] = bytemuck::cast_slice(data);
            words
                .iter()
                .flat_map(|&p| u64::from(p).to_le_bytes())
                .collect()
        };
        let mut w = Writer::new(Kind::XrLinear);
        for (name, data) in r.sections() {
            let (stem, ext) = name.split_once('.').unwrap_or((&name, ""));
            match ext {
                "c4" | "e4" | "b4" | "p4" => {
                    let old = match ext {
                        "c4" => "cp",
                        "e4" => "eb",
                        "b4" => "bp",
                        _ => "p",
                    };
                    w.bytes(&format!("{stem}.{old}"), widen(data));
                }
                "fi" => {
                    let ids: &[u32] = bytemuck::cast_slice(data);
                    let ends: Vec<u16> =
                        bytemuck::cast_slice(r.bytes(&format!("{stem}.fe")).unwrap()).to_vec();
                    let pairs: Vec<u8> = ids
                        .iter()
                        .zip(&ends)
                        .flat_map(|(&id, &end)| {
                            [id.to_le_bytes(), u32::from(end).to_le_bytes()].concat()
                        })
                        .collect();
                    w.bytes(&format!("{stem}.f"), pairs);
                }
                "fe" => {}
                "h" => {
                    let entries: &[[u16; 2]] = bytemuck::cast_slice(data);
                    let full: Vec<u8> = entries
                        .iter()
                        .flat_map(|&[child, weight]| {
                            let weight = half::f16::from_bits(weight).to_f32();
                            [u32::from(child).to_le_bytes(), weight.to_le_bytes()].concat()
                        })
                        .collect();
                    w.bytes(&format!("{stem}.e"), full);
                }
                _ => {
                    w.bytes(&name, data.to_vec());
                }
            }
        }
        let old = XrLinear::from_bytes(&w.finish()).unwrap();
        assert_eq!(old.levels(), model.levels());
        let params = PredictParams::default();
        assert_eq!(
            old.predict(&x, &params).unwrap(),
            model.predict(&x, &params).unwrap()
        );
        let mut scratch = PredictScratch::default();
        for r in 0..x.n_rows() {
            let (idx, val) = x.row(r);
            for range in [(0, 40), (3, 17), (20, 21)] {
                assert_eq!(
                    old.predict_one(idx, val, &params, Some(range), &mut scratch)
                        .unwrap(),
                    model
                        .predict_one(idx, val, &params, Some(range), &mut scratch)
                        .unwrap()
                );
            }
        }
    }

    #[test]
    fn the_model_does_not_depend_on_the_number_of_threads() {
        let (x, y) = identity_problem(50, 2);
        let train_on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let tree = kmeans_tree(&x, &y, 4);
                    train(&x, &y, tree, &TrainParams::default(), &Progress::default()).unwrap()
                })
        };
        assert_eq!(train_on(1), train_on(5));
    }

    #[test]
    fn logistic_loss_learns_the_known_answer_too() {
        let (x, y) = identity_problem(40, 3);
        let params = TrainParams {
            loss: crate::xr::Loss::Logistic,
            ..Default::default()
        };
        let model = fit(&x, &y, 4, &params);
        let pred = PredictParams {
            beam_size: 4,
            topk: 1,
            post_processor: crate::xr::PostProcessor::Sigmoid,
        };
        let mut scratch = PredictScratch::default();
        for j in 0..40u32 {
            let top = model
                .predict_one(&[j], &[1.0], &pred, None, &mut scratch)
                .unwrap();
            assert_eq!(top[0].0, j);
        }
        let hinge = fit(&x, &y, 4, &TrainParams::default());
        assert_ne!(model, hinge);
    }

    #[test]
    fn pruning_drops_small_weights() {
        let (x, y) = identity_problem(20, 2);
        let keep_all = TrainParams {
            threshold: 0.0,
            ..Default::default()
        };
        let dense = fit(&x, &y, 4, &keep_all);
        let strict = TrainParams {
            threshold: 0.5,
            ..Default::default()
        };
        let pruned = fit(&x, &y, 4, &strict);
        assert!(pruned.nnz() < dense.nnz());
        assert!(pruned
            .levels()
            .iter()
            .all(|w| w.vals.iter().all(|v| v.to_f32().abs() >= 0.5)));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (x, y) = identity_problem(10, 1);
        let tree = || LabelTree::flat(10).unwrap();
        let p = Progress::default();
        assert!(train(&x, &CsrMatrix::new(10), tree(), &TrainParams::default(), &p).is_err());
        assert!(train(
            &x,
            &y,
            LabelTree::flat(9).unwrap(),
            &TrainParams::default(),
            &p
        )
        .is_err());
        for bad in [
            TrainParams {
                cp: 0.0,
                ..Default::default()
            },
            TrainParams {
                cn: f64::NAN,
                ..Default::default()
            },
            TrainParams {
                threshold: -1.0,
                ..Default::default()
            },
            TrainParams {
                max_iter: 0,
                ..Default::default()
            },
        ] {
            assert!(train(&x, &y, tree(), &bad, &p).is_err());
        }
        let model = train(&x, &y, tree(), &TrainParams::default(), &p).unwrap();
        let mut s = PredictScratch::default();
        let params = PredictParams::default();
        assert!(model
            .predict_one(&[99], &[1.0], &params, None, &mut s)
            .is_err());
        assert!(model
            .predict_one(&[1], &[f32::NAN], &params, None, &mut s)
            .is_err());
        assert!(model
            .predict_one(&[1, 2], &[1.0], &params, None, &mut s)
            .is_err());
        assert!(model.predict(&CsrMatrix::new(3), &params).is_err());
    }
}
