//! Training the subtrees of a label tree elsewhere: on other processes or machines (Ray).
//!
//! Below the top levels, the problems of a node's subtree only read the rows positive for that
//! node, and each problem is seeded by its parent's place in the whole tree
//! ([`super::train::node_seed`]). So the driver trains the top levels, cuts the tree under the
//! nodes of one level into subtrees, and ships each as a [`SubtreeJob`]: its rows (renumbered,
//! in their order), their labels under it, its shape and where it sits. [`train_subtree`] trains
//! a job anywhere and answers with its columns, which the driver puts back in node order. The
//! model is the one [`super::train()`] trains on one machine, bit for bit.
//!
//! Jobs and answers travel in the model-file format (versioned, checksummed), so a job from
//! another build or a damaged one is refused with a typed error, not trained on.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rayon::prelude::*;

use super::model::LevelWeights;
use super::train::{node_seed, train_levels, Progress, Scope, TrainParams};
use super::Loss;
use crate::error::{Error, Result};
use crate::index::LabelTree;
use crate::persist::{format_err, Array, Kind, Persist, Reader, Writer};
use crate::sparse::{CsrArrays, CsrMatrix, Pattern, RowBuf, SparseRows};

/// What trains the subtrees: runs [`train_subtree`] on each job, anywhere (other processes,
/// other machines), in any order, retrying as it sees fit.
pub trait SubtreeRunner: Send + Sync + fmt::Debug {
    /// The answers of [`train_subtree`] to `jobs`, in the jobs' order.
    fn run(&self, jobs: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>>;
}

/// Where the subtrees of a training go.
#[derive(Debug, Clone)]
pub struct Offload {
    /// Trains them.
    pub runner: Arc<dyn SubtreeRunner>,
    /// The subtrees are those under the nodes of the shallowest level that has at least this
    /// many nodes (the deepest level but the leaves when none has).
    pub min_subtrees: usize,
}

impl PartialEq for Offload {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.runner, &other.runner) && self.min_subtrees == other.min_subtrees
    }
}

impl Offload {
    /// The first level trained by the runner (its subtrees hang under the nodes of the level
    /// above), or `None` for a tree of one level: it is all top.
    pub fn split_level(&self, tree: &LabelTree) -> Option<usize> {
        if tree.depth() < 2 {
            return None;
        }
        (1..tree.depth())
            .find(|&s| tree.n_nodes(s - 1) >= self.min_subtrees)
            .or(Some(tree.depth() - 1))
    }
}

/// The training problems under one node: its rows, their labels under it, its shape, and the
/// place of each of its levels in the whole tree (which seeds the problems).
#[derive(Debug, Clone, PartialEq)]
pub struct SubtreeJob {
    params: TrainParams,
    /// The level of the whole tree that is the subtree's first.
    level: usize,
    /// For each level `k` of the subtree, the id in the whole tree (at level `level + k - 1`)
    /// of the subtree's first parent at that level.
    parent_base: Vec<u64>,
    /// The subtree: its leaves are its labels, in leaf order.
    tree: LabelTree,
    /// The rows positive for the subtree's root, in their order in the whole problem.
    x: CsrMatrix,
    /// Their labels under the root, as leaves of `tree`.
    y: CsrMatrix,
    /// When rows are served in label ranges ([`super::train_with`]): each row's range, and the
    /// label id of each leaf of `tree`.
    scope: Option<JobScope>,
}

/// The label range of each row of a job, and the label id of each leaf of its subtree.
type JobScope = (Vec<(u32, u32)>, Vec<u32>);

impl SubtreeJob {
    /// The job of the subtree under node `root` of level `split - 1` of `tree`, whose rows are
    /// `rows` (the root's positive rows of `x`, sorted), served in `ranges` if given.
    #[allow(clippy::too_many_arguments)]
    fn cut(
        x: &dyn SparseRows,
        y: &dyn SparseRows,
        tree: &LabelTree,
        split: usize,
        root: usize,
        rows: &[u32],
        params: &TrainParams,
        ranges: Option<&[(u32, u32)]>,
    ) -> Result<Self> {
        let spans = spans(tree, split, root);
        // The parents of each level of the subtree: the root, then the nodes of the level above.
        let parents = std::iter::once(root..root + 1).chain(spans.iter().cloned());
        let mut parent_base = Vec::new();
        let mut child_ptr = Vec::new();
        for (l, parents) in (split..tree.depth()).zip(parents) {
            let ptr = tree.child_ptr(l);
            parent_base.push(parents.start as u64);
            child_ptr.push(
                ptr[parents.start..=parents.end]
                    .iter()
                    .map(|&c| c - ptr[parents.start])
                    .collect(),
            );
        }
        let leaves = spans.last().cloned().unwrap_or(root..root + 1);
        let local = LabelTree::new(child_ptr, (0..leaves.len() as u32).collect())?;
        let mut buf = RowBuf::default();
        let x_rows = CsrMatrix::from_rows(
            x.n_cols(),
            rows.iter().map(|&r| {
                let (i, v) = x.row_in(r as usize, &mut buf);
                (i.to_vec(), v.to_vec())
            }),
        );
        let y_rows = CsrMatrix::from_rows(
            leaves.len(),
            rows.iter().map(|&r| {
                let (labels, values) = y.row_in(r as usize, &mut buf);
                let mut under: Vec<u32> = labels
                    .iter()
                    .zip(values)
                    .filter(|&(_, &v)| v > 0.0)
                    .map(|(&label, _)| tree.leaf_of_label(label as usize) as usize)
                    .filter(|leaf| leaves.contains(leaf))
                    .map(|leaf| (leaf - leaves.start) as u32)
                    .collect();
                under.sort_unstable();
                under.dedup();
                let ones = vec![1.0f32; under.len()];
                (under, ones)
            }),
        );
        let scope = ranges.map(|ranges| {
            (
                rows.iter().map(|&r| ranges[r as usize]).collect(),
                leaves.map(|leaf| tree.label_of_leaf(leaf)).collect(),
            )
        });
        Ok(SubtreeJob {
            params: params.clone(),
            level: split,
            parent_base,
            tree: local,
            x: x_rows,
            y: y_rows,
            scope,
        })
    }

    /// The number of nodes of each level of the subtree.
    fn level_sizes(&self) -> Vec<usize> {
        (0..self.tree.depth())
            .map(|k| self.tree.n_nodes(k))
            .collect()
    }
}

const LOSSES: [Loss; 2] = [Loss::SquaredHinge, Loss::Logistic];

impl Persist for SubtreeJob {
    const KIND: Kind = Kind::SubtreeJob;

    fn writer(&self) -> Writer<'_> {
        let p = &self.params;
        let loss = LOSSES.iter().position(|&l| l == p.loss).unwrap_or(0) as u64;
        let mut w = Writer::new(Kind::SubtreeJob);
        w.u64s(
            "meta",
            [
                self.level as u64,
                self.tree.depth() as u64,
                self.x.n_cols as u64,
                p.max_iter as u64,
                p.seed,
                loss,
            ],
        )
        .array_copy("params", &[p.cp, p.cn, p.bias, p.threshold, p.eps])
        .array("base", &self.parent_base);
        self.tree.write(&mut w);
        self.x.write(&mut w, "x");
        self.y.write(&mut w, "y");
        if let Some((ranges, ids)) = &self.scope {
            let flat: Vec<u32> = ranges.iter().flat_map(|&(lo, hi)| [lo, hi]).collect();
            w.array_copy("ranges", &flat).array("ids", ids);
        }
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let meta = r.u64s("meta")?;
        let [level, depth, n_cols, max_iter, seed, loss] = meta[..] else {
            return Err(format_err("subtree job: bad meta"));
        };
        let params: Array<f64> = r.array("params")?;
        let [cp, cn, bias, threshold, eps] = params[..] else {
            return Err(format_err("subtree job: bad params"));
        };
        let loss = *LOSSES
            .get(loss as usize)
            .ok_or_else(|| format_err(format!("subtree job: unknown loss {loss}")))?;
        let params = TrainParams {
            cp,
            cn,
            bias,
            threshold,
            max_iter: max_iter as usize,
            eps,
            seed,
            loss,
        };
        params.check()?;
        let depth = depth as usize;
        if depth == 0 || depth > 64 {
            return Err(format_err(format!("subtree job: depth {depth}")));
        }
        let tree = LabelTree::read(r, depth)?;
        let parent_base = r.array::<u64>("base")?.to_vec();
        if parent_base.len() != depth {
            return Err(format_err("subtree job: one parent base per level"));
        }
        let x = CsrArrays::read(r, "x", n_cols as usize)?.to_matrix();
        let y = CsrArrays::read(r, "y", tree.n_labels())?.to_matrix();
        if x.n_rows() != y.n_rows() {
            return Err(format_err(format!(
                "subtree job: {} rows of features, {} of labels",
                x.n_rows(),
                y.n_rows()
            )));
        }
        let scope = if r.has("ranges") {
            let flat: Array<u32> = r.array("ranges")?;
            let ids: Array<u32> = r.array("ids")?;
            if flat.len() != 2 * x.n_rows() || ids.len() != tree.n_labels() {
                return Err(format_err(
                    "subtree job: one range per row and one id per label",
                ));
            }
            let ranges = flat.chunks_exact(2).map(|c| (c[0], c[1])).collect();
            Some((ranges, ids.to_vec()))
        } else {
            None
        };
        Ok(SubtreeJob {
            params,
            level: level as usize,
            parent_base,
            tree,
            x,
            y,
            scope,
        })
    }
}

/// The trained weights of a subtree, level by level.
#[derive(Debug, Clone, PartialEq)]
struct SubtreeColumns(Vec<LevelWeights>);

impl Persist for SubtreeColumns {
    const KIND: Kind = Kind::SubtreeColumns;

    fn writer(&self) -> Writer<'_> {
        let mut w = Writer::new(Kind::SubtreeColumns);
        w.u64s("meta", [self.0.len() as u64]);
        for (k, level) in self.0.iter().enumerate() {
            let vals: Vec<u16> = level.vals.iter().map(|v| v.to_bits()).collect();
            w.u64s(&format!("p{k}"), level.col_ptr.iter().map(|&p| p as u64))
                .array(&format!("r{k}"), &level.rows)
                .array_copy(&format!("h{k}"), &vals)
                .array(&format!("b{k}"), &level.bias);
        }
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let meta = r.u64s("meta")?;
        let [depth] = meta[..] else {
            return Err(format_err("subtree columns: bad meta"));
        };
        if depth > 64 {
            return Err(format_err(format!("subtree columns: depth {depth}")));
        }
        let mut levels = Vec::with_capacity(depth as usize);
        for k in 0..depth {
            let ptr: Array<u64> = r.array(&format!("p{k}"))?;
            let rows: Array<u32> = r.array(&format!("r{k}"))?;
            let vals: Array<u16> = r.array(&format!("h{k}"))?;
            let bias: Array<f32> = r.array(&format!("b{k}"))?;
            let fits = ptr.first() == Some(&0)
                && ptr.last() == Some(&(rows.len() as u64))
                && ptr.windows(2).all(|w| w[0] <= w[1])
                && rows.len() == vals.len()
                && bias.len() + 1 == ptr.len();
            if !fits {
                return Err(format_err(format!(
                    "subtree columns: level {k} does not fit"
                )));
            }
            levels.push(LevelWeights {
                col_ptr: ptr.iter().map(|&p| p as usize).collect(),
                rows: rows.to_vec(),
                vals: vals.iter().map(|&v| half::f16::from_bits(v)).collect(),
                bias: bias.to_vec(),
            });
        }
        Ok(SubtreeColumns(levels))
    }
}

/// The nodes of `tree` at each level `split..` under node `root` of level `split - 1` (the last
/// range: the subtree's leaves).
fn spans(tree: &LabelTree, split: usize, root: usize) -> Vec<Range<usize>> {
    let mut parents = root..root + 1;
    (split..tree.depth())
        .map(|l| {
            let ptr = tree.child_ptr(l);
            parents = ptr[parents.start] as usize..ptr[parents.end] as usize;
            parents.clone()
        })
        .collect()
}

/// Trains the job `job` (the bytes of a [`SubtreeJob`]) and answers with its columns: the work
/// of one subtree, on whatever machine runs it.
pub fn train_subtree(job: &[u8]) -> Result<Vec<u8>> {
    let job = SubtreeJob::from_bytes(job)?;
    let seed_of = |k: usize, q: usize| {
        node_seed(
            job.params.seed,
            job.level + k,
            job.parent_base[k] as usize + q,
        )
    };
    let scope = job.scope.as_ref().map(|(ranges, ids)| Scope {
        ranges,
        label_ids: Some(ids),
    });
    let (levels, _) = train_levels(
        &job.x,
        &job.y,
        &job.tree,
        job.tree.depth(),
        &seed_of,
        &job.params,
        &Progress::default(),
        scope,
    );
    Ok(SubtreeColumns(levels).to_bytes())
}

/// The columns of levels `split..` of `tree`, trained by `offload`'s runner: one job per node of
/// level `split - 1`, whose positive rows are `positives.row(node)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_elsewhere(
    x: &dyn SparseRows,
    y: &dyn SparseRows,
    tree: &LabelTree,
    split: usize,
    positives: &Pattern,
    params: &TrainParams,
    offload: &Offload,
    progress: &Progress,
    ranges: Option<&[(u32, u32)]>,
) -> Result<Vec<LevelWeights>> {
    let roots = 0..tree.n_nodes(split - 1);
    // Each job goes to bytes as soon as it is cut: the rows are not held twice.
    let (sizes, bytes): (Vec<Vec<usize>>, Vec<Vec<u8>>) = roots
        .clone()
        .into_par_iter()
        .map(|root| {
            let rows = positives.row(root);
            let job = SubtreeJob::cut(x, y, tree, split, root, rows, params, ranges)?;
            Ok((job.level_sizes(), job.to_bytes()))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let answers = offload.runner.run(bytes)?;
    if answers.len() != roots.len() {
        return Err(Error::InvalidInput(format!(
            "the subtree runner answered {} of {} jobs",
            answers.len(),
            roots.len()
        )));
    }
    let empty = LevelWeights::from_columns([]);
    let mut levels: Vec<LevelWeights> = vec![empty; tree.depth() - split];
    for (root, (answer, sizes)) in answers.iter().zip(&sizes).enumerate() {
        let SubtreeColumns(columns) = SubtreeColumns::from_bytes(answer)?;
        let got: Vec<usize> = columns.iter().map(|w| w.bias.len()).collect();
        if &got != sizes {
            return Err(Error::InvalidInput(format!(
                "the subtree under node {root} of level {}: nodes per level {got:?}, expected \
                 {sizes:?}",
                split - 1
            )));
        }
        for (level, c) in levels.iter_mut().zip(&columns) {
            progress
                .done
                .fetch_add(c.bias.len() as u64, Ordering::Relaxed);
            level.append(c);
        }
    }
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use proptest::prelude::*;

    use super::*;
    use crate::index::kmeans::{self, KMeansParams};
    use crate::xr::train::{train, train_with};

    /// Runs each job here, through its bytes, last job first.
    #[derive(Debug, Default)]
    struct Here {
        jobs: AtomicUsize,
    }

    impl SubtreeRunner for Here {
        fn run(&self, jobs: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
            self.jobs.fetch_add(jobs.len(), Ordering::Relaxed);
            let mut answers: Vec<Vec<u8>> = jobs
                .iter()
                .rev()
                .map(|j| train_subtree(j))
                .collect::<Result<_>>()?;
            answers.reverse();
            Ok(answers)
        }
    }

    /// Answers one job too few.
    #[derive(Debug)]
    struct Short;

    impl SubtreeRunner for Short {
        fn run(&self, jobs: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
            jobs[1..].iter().map(|j| train_subtree(j)).collect()
        }
    }

    /// `n` rows over `n_labels` labels, each row a few features drawn from `seed` and one or two
    /// labels tied to its features.
    fn problem(n: usize, n_labels: usize, n_features: usize, seed: u64) -> (CsrMatrix, CsrMatrix) {
        let mut rng = crate::rng::SplitMix64(seed);
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let label = rng.below(n_labels as u64) as u32;
            let mut f: Vec<u32> = vec![label % n_features as u32];
            for _ in 0..3 {
                f.push(rng.below(n_features as u64) as u32);
            }
            f.sort_unstable();
            f.dedup();
            let v = vec![0.5f32; f.len()];
            let mut l = vec![label];
            if rng.below(4) == 0 {
                l.push(rng.below(n_labels as u64) as u32);
                l.sort_unstable();
                l.dedup();
            }
            let ones = vec![1.0f32; l.len()];
            xs.push((f, v));
            ys.push((l, ones));
        }
        (
            CsrMatrix::from_rows(n_features, xs),
            CsrMatrix::from_rows(n_labels, ys),
        )
    }

    fn tree_of(x: &CsrMatrix, y: &CsrMatrix, branching: usize, leaf: usize) -> LabelTree {
        let z = kmeans::pifa(x, y).unwrap();
        kmeans::build(
            &z,
            &KMeansParams {
                branching,
                max_leaf_size: leaf,
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn subtrees_trained_elsewhere_give_the_same_model() {
        let (x, y) = problem(600, 80, 50, 7);
        let tree = tree_of(&x, &y, 2, 4);
        assert!(tree.depth() >= 4);
        let params = TrainParams {
            seed: 11,
            ..TrainParams::default()
        };
        let here = train(&x, &y, tree.clone(), &params, &Progress::default()).unwrap();
        for min_subtrees in [1, 2, 3, 5, 1000] {
            let runner = Arc::new(Here::default());
            let offload = Offload {
                runner: runner.clone(),
                min_subtrees,
            };
            let split = offload.split_level(&tree).unwrap();
            let progress = Progress::default();
            let there = train_with(
                &x,
                &y,
                tree.clone(),
                &params,
                &progress,
                Some(&offload),
                None,
            )
            .unwrap();
            assert_eq!(
                here.to_bytes(),
                there.to_bytes(),
                "min_subtrees {min_subtrees}"
            );
            assert_eq!(runner.jobs.load(Ordering::Relaxed), tree.n_nodes(split - 1));
            assert_eq!(
                progress.done.load(Ordering::Relaxed),
                progress.total.load(Ordering::Relaxed)
            );
        }
    }

    #[test]
    fn the_split_level_is_the_first_with_enough_subtrees() {
        let (x, y) = problem(300, 40, 30, 3);
        let tree = tree_of(&x, &y, 2, 2);
        let at = |min_subtrees| {
            Offload {
                runner: Arc::new(Short),
                min_subtrees,
            }
            .split_level(&tree)
        };
        assert_eq!(at(1), Some(1));
        assert_eq!(at(2), Some(1)); // the first level of a binary tree has 2 nodes
        assert_eq!(at(3), Some(2));
        assert_eq!(at(usize::MAX), Some(tree.depth() - 1));
        let flat = LabelTree::flat(5).unwrap();
        assert_eq!(at(1).map(|_| ()), Some(()));
        assert_eq!(
            Offload {
                runner: Arc::new(Short),
                min_subtrees: 1
            }
            .split_level(&flat),
            None
        );
        // Every subtree's spans cover the level below the split once, in order.
        for split in 1..tree.depth() {
            let mut next = vec![0usize; tree.depth() - split];
            for root in 0..tree.n_nodes(split - 1) {
                for (k, span) in spans(&tree, split, root).into_iter().enumerate() {
                    assert_eq!(span.start, next[k]);
                    next[k] = span.end;
                }
            }
            for (k, end) in next.into_iter().enumerate() {
                assert_eq!(end, tree.n_nodes(split + k));
            }
        }
    }

    #[test]
    fn a_runner_that_answers_too_few_or_damaged_jobs_are_errors() {
        let (x, y) = problem(200, 20, 20, 5);
        let tree = tree_of(&x, &y, 2, 2);
        let offload = Offload {
            runner: Arc::new(Short),
            min_subtrees: 2,
        };
        let err = train_with(
            &x,
            &y,
            tree,
            &TrainParams::default(),
            &Progress::default(),
            Some(&offload),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("answered"), "{err}");
        let job = SubtreeJob::cut(
            &x,
            &y,
            &tree_of(&x, &y, 2, 2),
            1,
            0,
            &[0, 1, 2],
            &TrainParams::default(),
            None,
        )
        .unwrap()
        .to_bytes();
        let mut bad = job.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        assert!(matches!(
            train_subtree(&bad).unwrap_err().cause(),
            Error::Format { .. }
        ));
        assert!(train_subtree(&job[..job.len() - 1]).is_err());
        assert!(train_subtree(b"not a job").is_err());
        // A job is not an answer, nor a model.
        assert!(SubtreeColumns::from_bytes(&job).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn any_split_gives_the_model_of_one_machine(
            n in 20usize..200,
            n_labels in 2usize..40,
            log_branching in 1u32..3,
            leaf in 1usize..6,
            min_subtrees in 1usize..20,
            seed in 0u64..1000,
            logistic in any::<bool>(),
        ) {
            let (x, y) = problem(n, n_labels, 25, seed);
            let tree = tree_of(&x, &y, 1 << log_branching, leaf);
            let params = TrainParams {
                seed,
                loss: if logistic { Loss::Logistic } else { Loss::SquaredHinge },
                max_iter: 20,
                ..TrainParams::default()
            };
            let here = train(&x, &y, tree.clone(), &params, &Progress::default()).unwrap();
            let offload = Offload { runner: Arc::new(Here::default()), min_subtrees };
            let there = train_with(&x, &y, tree.clone(), &params, &Progress::default(), Some(&offload), None).unwrap();
            prop_assert_eq!(here.to_bytes(), there.to_bytes());
            // Served in label ranges (around each row's first label), the same.
            let ranges: Vec<(u32, u32)> = (0..y.n_rows())
                .map(|r| {
                    let label = y.row(r).0[0];
                    let width = (label as u64 * 7 + seed) % 9;
                    (label.saturating_sub(width as u32 / 2), (label + 1 + width as u32).min(n_labels as u32))
                })
                .collect();
            let progress = Progress::default();
            let here = train_with(&x, &y, tree.clone(), &params, &progress, None, Some(&ranges)).unwrap();
            let there = train_with(&x, &y, tree, &params, &progress, Some(&offload), Some(&ranges)).unwrap();
            prop_assert_eq!(here.to_bytes(), there.to_bytes());
        }
    }
}
