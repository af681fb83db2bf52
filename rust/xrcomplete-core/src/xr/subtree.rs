//! Training a label tree in jobs, on other processes or machines (Ray).
//!
//! Below the top levels, the problems of a node's subtree only read the rows positive for that
//! node, and each problem is seeded by its parent's place in the whole tree
//! ([`super::train::node_seed`]). So a [`JobPlan`] cuts the training into the top levels and
//! groups of the subtrees under the nodes of one level; each is a [`SubtreeJob`]: its rows
//! (renumbered, in their order), their labels under it, its shape and where it sits. Each run of
//! rows is cut into pieces of every job, [`train_pieces`] trains a job's pieces together
//! anywhere and answers with its columns, which [`JobPlan::levels`] puts back in node order.
//! The model is the one [`super::train()`] trains on one machine, bit for bit.
//!
//! Jobs and answers travel in the model-file format (versioned, checksummed), so a job from
//! another build or a damaged one is refused with a typed error, not trained on.

use std::ops::Range;
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::model::LevelWeights;
use super::params::{Loss, TrainParams};
use super::train::{children, id_bounds, node_seed, positives_at, train_levels, Scope};
use crate::error::{Error, Result};
use crate::index::LabelTree;
use crate::persist::{format_err, Array, Kind, Persist, Reader, Writer};
use crate::progress::Progress;
use crate::sparse::{CsrArrays, CsrMatrix, RowBuf, SparseRows};

/// The first level trained apart from the top (its subtrees hang under the nodes of the level
/// above): the shallowest level under at least `min_subtrees` nodes (the deepest level but the
/// leaves when none is), or `None` for a tree of one level: it is all top.
fn split_level(tree: &LabelTree, min_subtrees: usize) -> Option<usize> {
    if tree.depth() < 2 {
        return None;
    }
    (1..tree.depth())
        .find(|&s| tree.n_nodes(s - 1) >= min_subtrees)
        .or(Some(tree.depth() - 1))
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
    /// smallest and largest label id under each leaf of `tree`.
    scope: Option<JobScope>,
}

/// The label range of each row of a job, and the label ids under each leaf of its subtree.
type JobScope = (Vec<(u32, u32)>, Vec<(u32, u32)>);

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
        let x_rows = copy_rows(x, rows);
        let mut buf = RowBuf::default();
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
                leaves
                    .map(|leaf| {
                        let id = tree.label_of_leaf(leaf);
                        (id, id)
                    })
                    .collect(),
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

    /// The job of the top `split` levels of `tree` (all of it when `split` is its depth), whose
    /// rows are `rows` of `x` (sorted): its labels are the nodes of level `split - 1`.
    #[allow(clippy::too_many_arguments)]
    fn top(
        x: &dyn SparseRows,
        y: &dyn SparseRows,
        tree: &LabelTree,
        split: usize,
        rows: &[u32],
        params: &TrainParams,
        ranges: Option<&[(u32, u32)]>,
    ) -> Result<Self> {
        let child_ptr = (0..split).map(|l| tree.child_ptr(l).to_vec()).collect();
        let n_leaves = tree.n_nodes(split - 1);
        let local = LabelTree::new(child_ptr, (0..n_leaves as u32).collect())?;
        let node_of = tree.ancestors_at(split - 1);
        let mut buf = RowBuf::default();
        let y_rows = CsrMatrix::from_rows(
            n_leaves,
            rows.iter().map(|&r| {
                let (labels, values) = y.row_in(r as usize, &mut buf);
                let mut nodes: Vec<u32> = labels
                    .iter()
                    .zip(values)
                    .filter(|&(_, &v)| v > 0.0)
                    .map(|(&label, _)| node_of[label as usize])
                    .collect();
                nodes.sort_unstable();
                nodes.dedup();
                let ones = vec![1.0f32; nodes.len()];
                (nodes, ones)
            }),
        );
        let scope = ranges.map(|ranges| {
            (
                rows.iter().map(|&r| ranges[r as usize]).collect(),
                id_bounds(tree, split - 1, None),
            )
        });
        Ok(SubtreeJob {
            params: params.clone(),
            level: 0,
            parent_base: vec![0; split],
            tree: local,
            x: copy_rows(x, rows),
            y: y_rows,
            scope,
        })
    }

    /// The job of the rows of all `parts` (jobs of one subtree cut from consecutive runs of the
    /// rows, in order): the job cut from all the rows at once.
    fn merge(parts: Vec<SubtreeJob>) -> Result<Self> {
        let mut parts = parts.into_iter();
        let Some(mut job) = parts.next() else {
            return Err(Error::InvalidInput(
                "no part of a subtree job to merge".into(),
            ));
        };
        for part in parts {
            let same = part.params == job.params
                && part.level == job.level
                && part.parent_base == job.parent_base
                && part.tree == job.tree
                && part.x.n_cols == job.x.n_cols
                && part.scope.as_ref().map(|s| &s.1) == job.scope.as_ref().map(|s| &s.1);
            if !same {
                return Err(Error::InvalidInput(
                    "the parts of a subtree job are not parts of one subtree".into(),
                ));
            }
            job.x.append(&part.x)?;
            job.y.append(&part.y)?;
            if let (Some(all), Some(more)) = (&mut job.scope, part.scope) {
                all.0.extend(more.0);
            }
        }
        Ok(job)
    }

    /// Trains the job and answers with its columns.
    fn train(&self) -> Vec<u8> {
        let seed_of = |k: usize, q: usize| {
            node_seed(
                self.params.seed,
                self.level + k,
                self.parent_base[k] as usize + q,
            )
        };
        let scope = self.scope.as_ref().map(|(ranges, bounds)| Scope {
            ranges,
            label_bounds: Some(bounds),
        });
        let (levels, _) = train_levels(
            &self.x,
            &self.y,
            &self.tree,
            self.tree.depth(),
            &seed_of,
            &self.params,
            &Progress::default(),
            scope,
        );
        SubtreeColumns(levels).to_bytes()
    }
}

/// Rows `rows` of `x`, as a matrix of their own.
fn copy_rows(x: &dyn SparseRows, rows: &[u32]) -> CsrMatrix {
    let mut buf = RowBuf::default();
    CsrMatrix::from_rows(
        x.n_cols(),
        rows.iter().map(|&r| {
            let (i, v) = x.row_in(r as usize, &mut buf);
            (i.to_vec(), v.to_vec())
        }),
    )
}

const LOSSES: [Loss; 2] = [Loss::SquaredHinge, Loss::Logistic];

/// Adds the sections `train` and `trainf`: the training options `p`.
pub(crate) fn write_train_params(w: &mut Writer<'_>, p: &TrainParams) {
    let loss = LOSSES.iter().position(|&l| l == p.loss).unwrap_or(0) as u64;
    w.u64s("train", [p.max_iter as u64, p.seed, loss])
        .array_copy("trainf", &[p.cp, p.cn, p.bias, p.threshold, p.eps]);
}

/// The training options written by [`write_train_params`], checked.
pub(crate) fn read_train_params(r: &Reader) -> Result<TrainParams> {
    let [max_iter, seed, loss] = r.u64s("train")?[..] else {
        return Err(format_err("training options: bad fields"));
    };
    let floats: Array<f64> = r.array("trainf")?;
    let [cp, cn, bias, threshold, eps] = floats[..] else {
        return Err(format_err("training options: bad values"));
    };
    let loss = *LOSSES
        .get(loss as usize)
        .ok_or_else(|| format_err(format!("training options: unknown loss {loss}")))?;
    let params = TrainParams {
        cp,
        cn,
        bias,
        threshold,
        max_iter: usize::try_from(max_iter).unwrap_or(usize::MAX),
        eps,
        seed,
        loss,
    };
    params.check()?;
    Ok(params)
}

impl Persist for SubtreeJob {
    const KIND: Kind = Kind::SubtreeJob;

    fn writer(&self) -> Writer<'_> {
        let mut w = Writer::new(Kind::SubtreeJob);
        w.u64s(
            "meta",
            [
                self.level as u64,
                self.tree.depth() as u64,
                self.x.n_cols as u64,
            ],
        )
        .array("base", &self.parent_base);
        write_train_params(&mut w, &self.params);
        self.tree.write(&mut w);
        self.x.write(&mut w, "x");
        self.y.write(&mut w, "y");
        if let Some((ranges, bounds)) = &self.scope {
            let flat = |pairs: &[(u32, u32)]| -> Vec<u32> {
                pairs.iter().flat_map(|&(lo, hi)| [lo, hi]).collect()
            };
            w.array_copy("ranges", &flat(ranges))
                .array_copy("bounds", &flat(bounds));
        }
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let meta = r.u64s("meta")?;
        let [level, depth, n_cols] = meta[..] else {
            return Err(format_err("subtree job: bad meta"));
        };
        let params = read_train_params(r)?;
        let depth = depth as usize;
        if depth == 0 || depth > 64 {
            return Err(format_err(format!("subtree job: depth {depth}")));
        }
        // A job holds no array per leaf (a run of rows may have none under many leaves): it is
        // a message between the processes of one fit, its checksum checked, so its count of
        // leaves is taken as the ids allow.
        let tree = LabelTree::read_bounded(r, depth, u32::MAX as usize)?;
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
            let bounds: Array<u32> = r.array("bounds")?;
            if flat.len() != 2 * x.n_rows() || bounds.len() != 2 * tree.n_labels() {
                return Err(format_err(
                    "subtree job: one range per row and one pair of bounds per label",
                ));
            }
            let pairs = |flat: &[u32]| flat.chunks_exact(2).map(|c| (c[0], c[1])).collect();
            Some((pairs(&flat), pairs(&bounds)))
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

/// The columns of levels `split..` of `tree` from `answers`, the columns of the subtree under
/// each node of level `split - 1`, in node order.
fn put_back(
    tree: &LabelTree,
    split: usize,
    answers: &[Vec<u8>],
    progress: &Progress,
) -> Result<Vec<LevelWeights>> {
    let empty = LevelWeights::from_columns([]);
    let mut levels: Vec<LevelWeights> = vec![empty; tree.depth() - split];
    for (root, answer) in answers.iter().enumerate() {
        let SubtreeColumns(columns) = SubtreeColumns::from_bytes(answer)?;
        let got: Vec<usize> = columns.iter().map(|w| w.bias.len()).collect();
        let sizes: Vec<usize> = spans(tree, split, root).iter().map(|s| s.len()).collect();
        if got != sizes {
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

/// How the training of a label tree is cut into jobs trained apart: the top `split` levels in
/// one job, and the subtrees under the nodes of level `split - 1` (in groups of consecutive
/// nodes) in one job each. With rows in runs (shards of a log on other machines), each run is
/// cut into pieces of every job ([`JobPlan::cut`]), the pieces of a job merge into the job cut
/// from all the rows ([`train_pieces`]), and the answers go back in place ([`JobPlan::levels`]):
/// the model trained on one machine, bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobPlan {
    /// The levels in the top job (the depth of the tree: all of it).
    pub top: usize,
    /// The nodes of level `top - 1` whose subtrees are trained together, in order.
    pub groups: Vec<Range<usize>>,
}

impl JobPlan {
    /// The plan of training `tree` with the subtrees of the shallowest level that has at least
    /// `min_subtrees` nodes apart, in about `n_groups` groups of about equal weight
    /// (`label_weight`: of each label, e.g. how often it was searched: about its rows).
    pub(crate) fn new(
        tree: &LabelTree,
        min_subtrees: usize,
        n_groups: usize,
        label_weight: &[f64],
    ) -> Self {
        let Some(split) = split_level(tree, min_subtrees) else {
            return JobPlan {
                top: tree.depth(),
                groups: Vec::new(),
            };
        };
        let n = tree.n_nodes(split - 1);
        let mut weights = vec![0.0; n];
        for (label, &node) in tree.ancestors_at(split - 1).iter().enumerate() {
            weights[node as usize] += label_weight.get(label).copied().unwrap_or(1.0);
        }
        let weight = |node: usize| weights[node];
        let total: f64 = weights.iter().sum();
        let n_groups = n_groups.clamp(1, n);
        let mut groups = Vec::with_capacity(n_groups);
        let (mut start, mut sum) = (0, 0.0);
        for node in 0..n {
            let w = weight(node);
            if node > start && sum + w / 2.0 > total * (groups.len() + 1) as f64 / n_groups as f64 {
                groups.push(start..node);
                start = node;
            }
            sum += w;
        }
        groups.push(start..n);
        JobPlan { top: split, groups }
    }

    /// The pieces of every job from `x`, `y` (and `ranges`), one run of consecutive rows of the
    /// whole problem: for part 0, the top job; for part `k + 1`, the jobs of the subtrees of
    /// group `k`, in node order.
    pub(crate) fn cut(
        &self,
        x: &dyn SparseRows,
        y: &dyn SparseRows,
        tree: &LabelTree,
        params: &TrainParams,
        ranges: Option<&[(u32, u32)]>,
    ) -> Result<Vec<Vec<Vec<u8>>>> {
        let rows = top_rows(y, tree, self.top, ranges);
        let top = SubtreeJob::top(x, y, tree, self.top, &rows, params, ranges)?;
        let mut parts = vec![vec![top.to_bytes()]];
        drop(top);
        if self.groups.is_empty() {
            return Ok(parts);
        }
        let positives = positives_at(tree, y, self.top - 1);
        for group in &self.groups {
            let jobs = group
                .clone()
                .into_par_iter()
                .map(|root| {
                    let rows = positives.row(root);
                    let job = SubtreeJob::cut(x, y, tree, self.top, root, rows, params, ranges)?;
                    Ok(job.to_bytes())
                })
                .collect::<Result<Vec<_>>>()?;
            parts.push(jobs);
        }
        Ok(parts)
    }

    /// The columns of every level of `tree` from the answers of the jobs, in the parts' order.
    pub(crate) fn levels(
        &self,
        tree: &LabelTree,
        answers: &[Vec<u8>],
        progress: &Progress,
    ) -> Result<Vec<LevelWeights>> {
        let n_jobs = 1 + self.groups.iter().map(|g| g.len()).sum::<usize>();
        let Some((top, subtrees)) = answers.split_first().filter(|_| answers.len() == n_jobs)
        else {
            return Err(Error::InvalidInput(format!(
                "{} answers for {n_jobs} jobs",
                answers.len()
            )));
        };
        let SubtreeColumns(mut levels) = SubtreeColumns::from_bytes(top)?;
        let got: Vec<usize> = levels.iter().map(|w| w.bias.len()).collect();
        let sizes: Vec<usize> = (0..self.top).map(|l| tree.n_nodes(l)).collect();
        if got != sizes {
            return Err(Error::InvalidInput(format!(
                "the top levels: nodes per level {got:?}, expected {sizes:?}"
            )));
        }
        progress
            .done
            .fetch_add(sizes.iter().sum::<usize>() as u64, Ordering::Relaxed);
        if !subtrees.is_empty() {
            levels.extend(put_back(tree, self.top, subtrees, progress)?);
        }
        Ok(levels)
    }
}

/// The rows of the top job: all of them, or when rows are served in `ranges`, those whose
/// range leaves a choice open in some level above `top` (the others teach those levels
/// nothing, and their order among the rest is kept, so the columns are the same).
fn top_rows(
    y: &dyn SparseRows,
    tree: &LabelTree,
    top: usize,
    ranges: Option<&[(u32, u32)]>,
) -> Vec<u32> {
    let n = y.n_rows() as u32;
    let Some(ranges) = ranges else {
        return (0..n).collect();
    };
    let bounds: Vec<Vec<(u32, u32)>> = (0..top).map(|l| id_bounds(tree, l, None)).collect();
    let parents: Vec<Vec<u32>> = (1..top).map(|l| tree.ancestors_at(l - 1)).collect();
    let open = |l: usize, p: usize, (lo, hi): (u32, u32)| {
        bounds[l][children(tree.child_ptr(l), p)]
            .iter()
            .filter(|&&(min, max)| min < hi && max >= lo)
            .take(2)
            .count()
            == 2
    };
    let mut buf = RowBuf::default();
    (0..n)
        .filter(|&r| {
            let range = ranges[r as usize];
            if open(0, 0, range) {
                return true;
            }
            let (labels, values) = y.row_in(r as usize, &mut buf);
            labels.iter().zip(values).any(|(&label, &v)| {
                v > 0.0 && (1..top).any(|l| open(l, parents[l - 1][label as usize] as usize, range))
            })
        })
        .collect()
}

/// Trains the jobs of `pieces` (`pieces[s][j]`: the piece of job `j` cut from run `s` of the
/// rows, runs in order) and answers with their columns, job by job: what the pieces of one part
/// of a training plan are trained into, on whatever machine runs it.
pub fn train_pieces(pieces: &[Vec<&[u8]>]) -> Result<Vec<Vec<u8>>> {
    let n_jobs = pieces.first().map_or(0, Vec::len);
    if pieces.iter().any(|p| p.len() != n_jobs) {
        return Err(Error::InvalidInput(
            "every run of rows must give a piece of every job".into(),
        ));
    }
    (0..n_jobs)
        .map(|j| {
            let parts = pieces
                .iter()
                .map(|p| SubtreeJob::from_bytes(p[j]))
                .collect::<Result<Vec<_>>>()?;
            Ok(SubtreeJob::merge(parts)?.train())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::index::kmeans::{self, KMeansParams};
    use crate::xr::train::{train, train_with};
    use crate::xr::XrLinear;

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
    fn the_split_level_is_the_first_with_enough_subtrees() {
        let (x, y) = problem(300, 40, 30, 3);
        let tree = tree_of(&x, &y, 2, 2);
        let at = |min_subtrees| split_level(&tree, min_subtrees);
        assert_eq!(at(1), Some(1));
        assert_eq!(at(2), Some(1)); // the first level of a binary tree has 2 nodes
        assert_eq!(at(3), Some(2));
        assert_eq!(at(usize::MAX), Some(tree.depth() - 1));
        let flat = LabelTree::flat(5).unwrap();
        assert_eq!(split_level(&flat, 1), None);
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
    fn damaged_jobs_are_errors() {
        let (x, y) = problem(200, 20, 20, 5);
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
        let train = |job: &[u8]| train_pieces(&[vec![job]]);
        assert!(train(&job).is_ok());
        assert!(matches!(
            train(&bad).unwrap_err().cause(),
            Error::Format { .. }
        ));
        assert!(train(&job[..job.len() - 1]).is_err());
        assert!(train(b"not a job").is_err());
        // A job is not an answer, nor a model.
        assert!(SubtreeColumns::from_bytes(&job).is_err());
    }

    /// The model of `x`, `y` trained as [`JobPlan`]'s jobs: the rows cut at `cuts` into runs,
    /// each run cut into pieces, the pieces of each part trained together.
    #[allow(clippy::too_many_arguments)]
    fn train_in_runs(
        x: &CsrMatrix,
        y: &CsrMatrix,
        tree: &LabelTree,
        params: &TrainParams,
        ranges: Option<&[(u32, u32)]>,
        cuts: &[usize],
        plan: &JobPlan,
    ) -> XrLinear {
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().map(|&c| c.min(x.n_rows())));
        bounds.push(x.n_rows());
        bounds.sort_unstable();
        let mut parts: Vec<Vec<Vec<Vec<u8>>>> = vec![Vec::new(); 1 + plan.groups.len()];
        for w in bounds.windows(2) {
            let rows: Vec<u32> = (w[0] as u32..w[1] as u32).collect();
            let run_ranges = ranges.map(|r| &r[w[0]..w[1]]);
            let pieces = plan
                .cut(
                    &copy_rows(x, &rows),
                    &copy_rows(y, &rows),
                    tree,
                    params,
                    run_ranges,
                )
                .unwrap();
            for (part, jobs) in parts.iter_mut().zip(pieces) {
                part.push(jobs);
            }
        }
        let answers: Vec<Vec<u8>> = parts
            .iter()
            .flat_map(|runs| {
                let runs: Vec<Vec<&[u8]>> = runs
                    .iter()
                    .map(|jobs| jobs.iter().map(Vec::as_slice).collect())
                    .collect();
                train_pieces(&runs).unwrap()
            })
            .collect();
        let levels = plan.levels(tree, &answers, &Progress::default()).unwrap();
        XrLinear::new(tree.clone(), levels, x.n_cols, params.bias as f32).unwrap()
    }

    #[test]
    fn runs_of_no_rows_under_many_leaves_are_cut_and_trained() {
        // A wide first level whose nodes are the top job's leaves: a run of no rows cuts a
        // job file of fewer than four bytes a leaf (which a model file never is).
        let n = 300u32;
        let tree = LabelTree::new(vec![vec![0, n], (0..=n).collect()], (0..n).collect()).unwrap();
        let (x, y) = problem(50, n as usize, 20, 3);
        let params = TrainParams {
            max_iter: 5,
            ..TrainParams::default()
        };
        let plan = JobPlan::new(&tree, 1, 2, &[]);
        assert_eq!(plan.top, 1);
        let here = train(&x, &y, tree.clone(), &params, &Progress::default()).unwrap();
        let there = train_in_runs(&x, &y, &tree, &params, None, &[0, 0, 50], &plan);
        assert_eq!(here.to_bytes(), there.to_bytes());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn rows_in_runs_trained_as_pieces_give_the_model_of_one_machine(
            n in 20usize..160,
            n_labels in 2usize..30,
            leaf in 1usize..5,
            min_subtrees in 1usize..12,
            n_groups in 1usize..5,
            cuts in proptest::collection::vec(0usize..160, 0..4),
            with_ranges in any::<bool>(),
            seed in 0u64..1000,
        ) {
            let (x, y) = problem(n, n_labels, 25, seed);
            let tree = tree_of(&x, &y, 2, leaf);
            let params = TrainParams { seed, max_iter: 20, ..TrainParams::default() };
            let ranges: Vec<(u32, u32)> = (0..y.n_rows())
                .map(|r| {
                    let label = y.row(r).0[0];
                    let width = (label as u64 * 5 + seed) % 7;
                    (label.saturating_sub(width as u32 / 2), (label + 1 + width as u32).min(n_labels as u32))
                })
                .collect();
            let ranges = with_ranges.then_some(&ranges[..]);
            let here = train_with(&x, &y, tree.clone(), &params, &Progress::default(), ranges).unwrap();
            let weight: Vec<f64> = (0..n_labels).map(|l| (l % 3) as f64 + 1.0).collect();
            let plan = JobPlan::new(&tree, min_subtrees, n_groups, &weight);
            prop_assert!(plan.groups.len() <= n_groups);
            let there = train_in_runs(&x, &y, &tree, &params, ranges, &cuts, &plan);
            prop_assert_eq!(here.to_bytes(), there.to_bytes());
        }
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
            let plan = JobPlan::new(&tree, min_subtrees, 1, &[]);
            let there = train_in_runs(&x, &y, &tree, &params, None, &[], &plan);
            prop_assert_eq!(here.to_bytes(), there.to_bytes());
            // Served in label ranges (around each row's first label), the same.
            let ranges: Vec<(u32, u32)> = (0..y.n_rows())
                .map(|r| {
                    let label = y.row(r).0[0];
                    let width = (label as u64 * 7 + seed) % 9;
                    (label.saturating_sub(width as u32 / 2), (label + 1 + width as u32).min(n_labels as u32))
                })
                .collect();
            let here = train_with(&x, &y, tree.clone(), &params, &Progress::default(), Some(&ranges)).unwrap();
            let there = train_in_runs(&x, &y, &tree, &params, Some(&ranges), &[], &plan);
            prop_assert_eq!(here.to_bytes(), there.to_bytes());
        }
    }
}
