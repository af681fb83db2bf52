//! A fit's pairs in shards (runs of consecutive pairs of the log), and every stage of the fit
//! that reads them, written once: the shards are here ([`LocalShards`]: one shard for the
//! pairs given to [`super::Completer::fit`]) or on the workers of a cluster (Ray:
//! `xrcomplete.distributed`, [`super::Completer::fit_on_shards`]), where neither the pairs
//! nor the matcher's training rows reach the driver. Local pairs are the one-shard case, as a
//! search index of one segment is (tantivy): the same tasks and answers, and only the meeting
//! of the training rows is skipped when they are all here ([`PairShards::here`]).
//!
//! The driver sends each stage as a task file ([`Kind::ShardTask`]); the [`PairShards`] run it
//! on every shard. On the pairs alone (the task holds no query):
//! - *select*, *ties*: the pairs held out for the ranker are the latest (by time, then index):
//!   the pair at that place is found by counting the pairs whose time's key is under 255
//!   pivots a round, then its index among the pairs of its time;
//! - *counts*, *transitions*, *late*: per query, the pairs it is the next query of; the
//!   pairs per (previous query, label); the held-out pairs themselves (for the ranker).
//!
//! On the training rows (the task holds the queries and the labels):
//! 1. *draws*: each shard counts its rows, which are the draws of the seeded prefix sampling,
//!    so that each shard can start the sampling where the shard before it ends;
//! 2. *terms*: each shard counts the terms of its rows' previous queries and prefixes; the
//!    driver merges the counts and fits the vectorizers ([`FeatureConcat::fit_counts`]);
//! 3. *pifa* (k-means and hybrid trees only): each shard cuts its rows by label; the rows of each
//!    group of labels meet where their embeddings are computed ([`part_answer`]);
//! 4. *pieces*: each shard vectorises its rows and cuts them into pieces of the jobs of the
//!    matcher's training (the top levels, and groups of subtrees); the pieces of each job meet
//!    where it is trained ([`part_answer`]), and the driver puts the columns in place.
//!
//! Each step does what the fit does with all the pairs in one place (the sampling's draws, the
//! counts, the rows in their order), so the completer is the same, byte for byte.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::{sample_prefix_ends, FitParams, Log, MAX_SESSION_HISTORY};
use crate::error::{Error, Result};
use crate::index::{self, kmeans, LabelTree};
use crate::persist::{format_err, kind_of, Array, Kind, Persist, Reader, Writer};
use crate::rng::SplitMix64;
use crate::sparse::{CsrArrays, CsrMatrix, OneLabelRows, RowBuf, SparseRows};
use crate::strings::Strings;
use crate::text::{FactoredRows, FeatureConcat, TermCounts, TfidfConfig};
use crate::xr::{self, JobPlan, Progress, Stage, TrainParams, XrLinear};
use crate::Trie;

/// Where the pairs of a fit are when they are not here: shards of consecutive pairs, in the
/// log's order, each on some worker that runs this module's functions on it.
pub trait PairShards: Send + Sync + fmt::Debug {
    /// The number of pairs of each shard, in order.
    fn sizes(&self) -> Result<Vec<u64>>;

    /// Whether the pairs have times (all of them; without, they are in time order).
    fn timed(&self) -> Result<bool>;

    /// [`shard_answer`]`(task, s, ...)` of every shard `s`, in order.
    fn map(&self, task: Vec<u8>) -> Result<Vec<Vec<u8>>>;

    /// [`shard_pieces`]`(task, s, ...)` of every shard `s` (each `n_parts` parts of pieces), then
    /// [`part_answer`] of each part's pieces (in shard order): the answers of all parts, in
    /// order.
    fn shuffle(&self, task: Vec<u8>, n_parts: usize) -> Result<Vec<Vec<u8>>>;

    /// About how many parts the work of a shuffle should be cut into (to keep every worker
    /// busy).
    fn n_parts(&self) -> Result<usize>;

    /// All the pairs and their times, when they are in this process in one shard: their rows
    /// are then trained where they are, with no shuffle (the shuffle of one shard's rows would
    /// only copy them). None by default.
    fn here(&self) -> Option<Shard<'_>> {
        None
    }
}

/// A fit's shards, and the subtrees of its matcher trained apart: those of the shallowest tree
/// level with at least `min_subtrees` nodes.
#[derive(Debug, Clone)]
pub struct Sharding {
    /// The shards.
    pub shards: Arc<dyn PairShards>,
    /// The subtrees trained apart are those under the nodes of the shallowest level that has
    /// at least this many nodes (the deepest level but the leaves when none has).
    pub min_subtrees: usize,
}

impl PartialEq for Sharding {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shards, &other.shards) && self.min_subtrees == other.min_subtrees
    }
}

/// The pairs the ranker learns from (the latest, `rank_holdout`): pair `i`, searched at
/// `time`, is held out when `(time, i)` comes at or after `(self.time, self.from)`: the
/// latest pairs by time, ties in the log's order (the pairs' order without times).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HeldOut {
    pub(crate) time: Option<f64>,
    pub(crate) from: u64,
}

impl HeldOut {
    /// The latest `share` of `n` pairs, at most [`MAX_HELD_OUT`] (none when that is none or
    /// all of them), by sorting: what [`Pairs::held_out`] finds by counting in the shards.
    #[cfg(test)]
    pub(crate) fn new(n: usize, times: Option<&[f64]>, share: f64) -> Option<Self> {
        let n_late = n_held_out(n, share)?;
        let first = n - n_late;
        Some(match times {
            None => HeldOut {
                time: None,
                from: first as u64,
            },
            Some(times) => {
                let mut order: Vec<usize> = (0..n).collect();
                // Stable: equal times keep their order.
                order.sort_by(|&a, &b| times[a].total_cmp(&times[b]));
                let at = order[first];
                HeldOut {
                    time: Some(times[at]),
                    from: at as u64,
                }
            }
        })
    }

    /// Whether pair `i`, searched at `time`, is held out.
    pub(crate) fn is_late(&self, i: u64, time: Option<f64>) -> bool {
        match (self.time, time) {
            (Some(t), Some(u)) => match u.total_cmp(&t) {
                Ordering::Greater => true,
                Ordering::Equal => i >= self.from,
                Ordering::Less => false,
            },
            _ => i >= self.from,
        }
    }
}

/// Pairs held out for the ranker at most: it learns from 200,000 lists of their prefixes at
/// most, and their searches make the live counts it learns with, whose half-life is a day; all
/// of them are held where the ranker learns (the driver of a distributed fit), so a log of a
/// billion searches must not make them a hundred million.
pub const MAX_HELD_OUT: usize = 1_000_000;

/// The number of pairs of `n` held out for the ranker: the latest `share`, at most
/// [`MAX_HELD_OUT`]; None when that is none or all of them.
fn n_held_out(n: usize, share: f64) -> Option<usize> {
    let n_late = ((n as f64 * share).floor() as usize).min(MAX_HELD_OUT);
    (n_late > 0 && n_late < n).then_some(n_late)
}

/// The matcher's training rows: per sampled prefix of a pair's next query (when it is a
/// label), the previous query, the prefix, the label and (for range rows) the prefix's range.
#[derive(Debug, Default)]
pub(crate) struct Rows<'q> {
    pub prevs: Vec<&'q str>,
    pub prefixes: Vec<&'q str>,
    pub targets: Vec<u32>,
    pub ranges: Vec<(u32, u32)>,
}

/// Samples the training rows of pairs.
pub(crate) struct Sampler<'a> {
    pub labels: &'a Trie,
    /// The label of a query id, if it is one.
    pub label_of: &'a (dyn Fn(u32) -> Option<u32> + Sync),
    pub prefixes_per_pair: usize,
    pub range_rows: bool,
}

impl Sampler<'_> {
    /// The rows of `pairs` (ids of the texts `text` gives), the prefixes drawn from `rng`.
    pub(crate) fn rows<'q>(
        &self,
        pairs: impl IntoIterator<Item = (Option<u32>, u32)>,
        text: &dyn Fn(u32) -> &'q str,
        rng: &mut SplitMix64,
    ) -> Rows<'q> {
        let mut rows = Rows::default();
        let mut ends = Vec::new();
        for (p, q) in pairs {
            let Some(label) = (self.label_of)(q) else {
                continue;
            };
            let next = text(q);
            let prev = p.map_or("", text);
            for &end in sample_prefix_ends(next, self.prefixes_per_pair, rng, &mut ends) {
                rows.prevs.push(prev);
                rows.prefixes.push(&next[..end]);
                rows.targets.push(label);
                if self.range_rows {
                    rows.ranges.push(
                        self.labels
                            .prefix_range(&next[..end])
                            .unwrap_or((label, label + 1)),
                    );
                }
            }
        }
        rows
    }

    /// The number of rows of `pairs`, which is the number of draws sampling them takes.
    fn draws<'q>(
        &self,
        pairs: impl IntoIterator<Item = (Option<u32>, u32)>,
        text: &dyn Fn(u32) -> &'q str,
    ) -> u64 {
        pairs
            .into_iter()
            .filter(|&(_, q)| (self.label_of)(q).is_some())
            .map(|(_, q)| text(q).chars().count().min(self.prefixes_per_pair) as u64)
            .sum()
    }
}

/// The stages of a sharded fit: on the training rows (the queries and labels in the task),
const DRAWS: u64 = 0;
const TERMS: u64 = 1;
const PIFA: u64 = 2;
const PIECES: u64 = 3;
/// and on the pairs alone.
const COUNTS: u64 = 4;
const TRANSITIONS: u64 = 5;
const LATE: u64 = 6;
const SELECT: u64 = 7;
const TIES: u64 = 8;
const TIE_AT: u64 = 9;

/// What a stage's task says beyond the common part.
enum StageTask<'a> {
    Draws,
    Terms {
        draws: &'a [u64],
        configs: &'a [TfidfConfig],
    },
    Pifa {
        draws: &'a [u64],
        features: &'a FeatureConcat,
        groups: &'a [Range<u32>],
    },
    Pieces {
        draws: &'a [u64],
        features: &'a FeatureConcat,
        tree: &'a LabelTree,
        plan: &'a JobPlan,
        train: &'a TrainParams,
    },
    /// Per query, the pairs it is the next query of: all, and those kept.
    Counts,
    /// The kept pairs whose next query is a label, counted by (previous query, label).
    Transitions {
        label_of: &'a [u32],
    },
    /// The held-out pairs.
    Late,
    /// Per pivot, the pairs whose time's key is at most it.
    Select {
        pivots: &'a [u64],
    },
    /// The pairs whose time's key is `key`.
    Ties {
        key: u64,
    },
    /// The index (in its shard) of the pair of shard `shard` that is its `rank`-th whose time's
    /// key is `key`.
    TieAt {
        key: u64,
        shard: u64,
        rank: u64,
    },
}

/// No label (in a task's `label_of`).
const NO_LABEL: u32 = u32::MAX;

/// What every task of a fit holds: the queries (by id), the labels, how rows are sampled, which
/// pairs are held out, and where each shard starts in the log.
struct Context<'a> {
    /// The queries and the labels: only the stages on training rows need them.
    text: Option<(Strings, &'a Trie)>,
    n_queries: usize,
    prefixes_per_pair: usize,
    seed: u64,
    range_rows: bool,
    held_out: Option<HeldOut>,
    /// The first pair of each shard, and the number of pairs.
    starts: Vec<u64>,
}

impl Context<'_> {
    fn task(&self, stage: StageTask<'_>) -> Vec<u8> {
        let mut w = Writer::new(Kind::ShardTask);
        let code = match stage {
            StageTask::Draws => DRAWS,
            StageTask::Terms { .. } => TERMS,
            StageTask::Pifa { .. } => PIFA,
            StageTask::Pieces { .. } => PIECES,
            StageTask::Counts => COUNTS,
            StageTask::Transitions { .. } => TRANSITIONS,
            StageTask::Late => LATE,
            StageTask::Select { .. } => SELECT,
            StageTask::Ties { .. } => TIES,
            StageTask::TieAt { .. } => TIE_AT,
        };
        let held = self.held_out;
        w.u64s(
            "meta",
            [
                code,
                self.prefixes_per_pair as u64,
                self.seed,
                u64::from(self.range_rows),
                u64::from(held.is_some()),
                held.map_or(0, |h| h.from),
                u64::from(held.and_then(|h| h.time).is_some()),
                self.n_queries as u64,
            ],
        )
        .array_copy("heldt", &[held.and_then(|h| h.time).unwrap_or(0.0)])
        .array("starts", &self.starts);
        if let Some((queries, labels)) = &self.text {
            w.file("labels", labels.writer());
            queries.write(&mut w, "q");
        }
        let draws = match &stage {
            StageTask::Terms { draws, .. }
            | StageTask::Pifa { draws, .. }
            | StageTask::Pieces { draws, .. } => Some(*draws),
            _ => None,
        };
        if let Some(draws) = draws {
            w.array_copy("draws", draws);
        }
        match stage {
            StageTask::Draws | StageTask::Counts | StageTask::Late => {}
            StageTask::Transitions { label_of } => {
                w.array("labelof", label_of);
            }
            StageTask::Select { pivots } => {
                w.array("pivots", pivots);
            }
            StageTask::Ties { key } => {
                w.u64s("key", [key, 0, 0]);
            }
            StageTask::TieAt { key, shard, rank } => {
                w.u64s("key", [key, shard, rank]);
            }
            StageTask::Terms { configs, .. } => {
                w.u64s("ncfg", [configs.len() as u64]);
                for (i, c) in configs.iter().enumerate() {
                    w.bytes(&format!("cfg{i}"), c.encode());
                }
            }
            StageTask::Pifa {
                features, groups, ..
            } => {
                w.file("features", features.writer()).u64s(
                    "groups",
                    groups.iter().flat_map(|g| [g.start.into(), g.end.into()]),
                );
            }
            StageTask::Pieces {
                features,
                tree,
                plan,
                train,
                ..
            } => {
                w.file("features", features.writer())
                    .u64s("tdepth", [tree.depth() as u64, plan.top as u64])
                    .u64s(
                        "groups",
                        plan.groups
                            .iter()
                            .flat_map(|g| [g.start as u64, g.end as u64]),
                    );
                tree.write(&mut w);
                xr::write_train_params(&mut w, train);
            }
        }
        w.finish()
    }
}

/// A shard's rows vectorised: features, labels, label ranges (for range rows).
type Vectorised = (FactoredRows, OneLabelRows, Vec<(u32, u32)>);

/// A task as a shard reads it.
struct Task {
    /// The queries and the labels (the stages on rows).
    text: Option<(Strings, Trie)>,
    n_queries: u64,
    prefixes_per_pair: usize,
    seed: u64,
    range_rows: bool,
    held_out: Option<HeldOut>,
    starts: Vec<u64>,
    draws: Vec<u64>,
    reader_parts: Parts,
}

/// The stage's own part of a task.
enum Parts {
    Draws,
    Terms(Vec<TfidfConfig>),
    Pifa(FeatureConcat, Vec<Range<u32>>),
    Pieces(Box<(FeatureConcat, LabelTree, JobPlan, TrainParams)>),
    Counts,
    Transitions(Vec<u32>),
    Late,
    Select(Vec<u64>),
    Ties(u64),
    TieAt([u64; 3]),
}

fn ranges_of(flat: &[u64], what: &str) -> Result<Vec<Range<u64>>> {
    if flat.len() % 2 != 0 || flat.chunks_exact(2).any(|c| c[0] >= c[1]) {
        return Err(format_err(format!("shard task: bad {what}")));
    }
    Ok(flat.chunks_exact(2).map(|c| c[0]..c[1]).collect())
}

impl Task {
    fn read(bytes: &[u8]) -> Result<Self> {
        let buf = crate::persist::Buffer::copy_from(bytes);
        let r = Reader::new(&buf, Kind::ShardTask)?;
        let bad = |what: &str| format_err(format!("shard task: {what}"));
        let [stage, ppp, seed, range_rows, held, from, timed, n_queries] = r.u64s("meta")?[..]
        else {
            return Err(bad("bad meta"));
        };
        let heldt: Array<f64> = r.array("heldt")?;
        let held_out = (held == 1).then(|| HeldOut {
            time: (timed == 1).then(|| heldt.first().copied().unwrap_or(0.0)),
            from,
        });
        let starts = r.array::<u64>("starts")?.to_vec();
        if starts.is_empty() || starts.windows(2).any(|w| w[0] > w[1]) {
            return Err(bad("shard starts out of order"));
        }
        let text = if r.has("labels") {
            let labels: Trie = r.nested("labels")?;
            let queries = Strings::read(&r, "q", "shard task queries")?;
            if queries.len() as u64 != n_queries {
                return Err(bad("a query table of another size"));
            }
            Some((queries, labels))
        } else {
            None
        };
        let n_labels = text.as_ref().map(|(_, labels)| labels.len());
        let rows = stage <= PIECES;
        if rows && text.is_none() {
            return Err(bad("a stage on rows without the queries"));
        }
        let draws = if r.has("draws") {
            r.array::<u64>("draws")?.to_vec()
        } else {
            Vec::new()
        };
        let features = || r.nested::<FeatureConcat>("features");
        let key = || -> Result<[u64; 3]> {
            let [key, shard, rank] = r.u64s("key")?[..] else {
                return Err(bad("bad key"));
            };
            Ok([key, shard, rank])
        };
        let reader_parts = match stage {
            DRAWS => Parts::Draws,
            TERMS => {
                let [n] = r.u64s("ncfg")?[..] else {
                    return Err(bad("bad configurations"));
                };
                let configs = (0..n.min(16))
                    .map(|i| TfidfConfig::decode(r.bytes(&format!("cfg{i}"))?))
                    .collect::<Result<Vec<_>>>()?;
                Parts::Terms(configs)
            }
            PIFA => {
                let groups = ranges_of(&r.u64s("groups")?, "label groups")?;
                let n = n_labels.unwrap_or(0) as u64;
                if groups.iter().any(|g| g.end > n) {
                    return Err(bad("a label group past the labels"));
                }
                let groups = groups.iter().map(|g| g.start as u32..g.end as u32);
                Parts::Pifa(features()?, groups.collect())
            }
            PIECES => {
                let [depth, top] = r.u64s("tdepth")?[..] else {
                    return Err(bad("bad tree"));
                };
                if depth == 0 || depth > 64 || top == 0 || top > depth {
                    return Err(bad("bad tree depth"));
                }
                let tree = LabelTree::read(&r, depth as usize)?;
                let top = top as usize;
                let n_roots = tree.n_nodes(top - 1) as u64;
                let groups = ranges_of(&r.u64s("groups")?, "subtree groups")?;
                if groups.iter().any(|g| g.end > n_roots) {
                    return Err(bad("a subtree group past the nodes"));
                }
                if Some(tree.n_labels()) != n_labels {
                    return Err(bad("a tree of other labels"));
                }
                let groups = groups.iter().map(|g| g.start as usize..g.end as usize);
                let plan = JobPlan {
                    top,
                    groups: groups.collect(),
                };
                let train = xr::read_train_params(&r)?;
                Parts::Pieces(Box::new((features()?, tree, plan, train)))
            }
            COUNTS => Parts::Counts,
            TRANSITIONS => {
                let label_of = r.array::<u32>("labelof")?.to_vec();
                if label_of.len() as u64 != n_queries {
                    return Err(bad("one label (or none) per query"));
                }
                Parts::Transitions(label_of)
            }
            LATE => Parts::Late,
            SELECT => Parts::Select(r.array::<u64>("pivots")?.to_vec()),
            TIES => Parts::Ties(key()?[0]),
            TIE_AT => Parts::TieAt(key()?),
            other => return Err(bad(&format!("unknown stage {other}"))),
        };
        if rows && stage != DRAWS && draws.len() + 1 != starts.len() {
            return Err(bad("one first draw per shard"));
        }
        Ok(Task {
            text,
            n_queries,
            prefixes_per_pair: usize::try_from(ppp).unwrap_or(usize::MAX).max(1),
            seed,
            range_rows: range_rows == 1,
            held_out,
            starts,
            draws,
            reader_parts,
        })
    }

    /// The pairs of shard `shard`, checked: their first index in the log.
    fn check(
        &self,
        shard: usize,
        pairs: &[(Option<u32>, u32)],
        times: Option<&[f64]>,
    ) -> Result<u64> {
        let bad = |what: String| Err(Error::InvalidInput(what));
        let n_shards = self.starts.len() - 1;
        if shard >= n_shards {
            return bad(format!("shard {shard} of {n_shards}"));
        }
        let (start, end) = (self.starts[shard], self.starts[shard + 1]);
        if pairs.len() as u64 != end - start {
            return bad(format!(
                "shard {shard} has {} pairs, the task expects {}",
                pairs.len(),
                end - start
            ));
        }
        if let Some(times) = times {
            if times.len() != pairs.len() {
                return bad(format!("shard {shard}: one time per pair"));
            }
            if times.iter().any(|t| !t.is_finite()) {
                return bad(format!("shard {shard}: times must be finite numbers"));
            }
        }
        let n = self.n_queries;
        if pairs
            .iter()
            .any(|&(p, q)| p.is_some_and(|p| u64::from(p) >= n) || u64::from(q) >= n)
        {
            return bad(format!("shard {shard}: a query id out of range ({n})"));
        }
        if self.held_out.is_some_and(|h| h.time.is_some()) && times.is_none() {
            return bad(format!("shard {shard}: the pairs' times are needed"));
        }
        Ok(start)
    }

    /// Whether pair `i` of a shard starting at `start` is held out.
    fn late(&self, start: u64, i: usize, times: Option<&[f64]>) -> bool {
        self.held_out
            .is_some_and(|h| h.is_late(start + i as u64, times.map(|t| t[i])))
    }

    /// The pairs of shard `shard` the fit trains on (the held-out ones left out), checked.
    fn pairs_of(
        &self,
        shard: usize,
        pairs: &[(Option<u32>, u32)],
        times: Option<&[f64]>,
    ) -> Result<Vec<(Option<u32>, u32)>> {
        let start = self.check(shard, pairs, times)?;
        Ok(kept(start, pairs, times, self.held_out).collect())
    }

    /// The queries and the labels (checked present when the task was read).
    fn text(&self) -> (&Strings, &Trie) {
        let (queries, labels) = self.text.as_ref().expect("a stage on rows has the queries");
        (queries, labels)
    }

    /// The training rows of `pairs`, the pairs of shard `shard`.
    fn rows<'q>(&'q self, shard: usize, pairs: &[(Option<u32>, u32)]) -> Rows<'q> {
        let (queries, labels) = self.text();
        let label_of = |q: u32| labels.id(queries.get(q as usize));
        let sampler = Sampler {
            labels,
            label_of: &label_of,
            prefixes_per_pair: self.prefixes_per_pair,
            range_rows: self.range_rows,
        };
        let text = |q: u32| queries.get(q as usize);
        let mut rng = SplitMix64(self.seed);
        rng.skip(self.draws.get(shard).copied().unwrap_or(0));
        sampler.rows(pairs.iter().copied(), &text, &mut rng)
    }

    /// The rows' features, labels and ranges.
    fn vectorised(&self, features: &FeatureConcat, rows: Rows<'_>) -> Result<Vectorised> {
        let x = features.transform_factored(&[&rows.prevs, &rows.prefixes])?;
        let y = OneLabelRows::new(self.text().1.len(), rows.targets)?;
        Ok((x, y, rows.ranges))
    }
}

/// The key of a time in the order of `f64::total_cmp`.
fn time_key(t: f64) -> u64 {
    let bits = t.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The time of a key of [`time_key`].
fn key_time(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    })
}

/// Runs of equal values of `items` (sorted) with their counts.
fn counted<T: PartialEq + Copy>(items: &[T]) -> impl Iterator<Item = (T, u64)> + '_ {
    items
        .chunk_by(|a, b| a == b)
        .map(|run| (run[0], run.len() as u64))
}

/// What a shard answers to a stage on the pairs alone.
fn pairs_answer(
    task: &Task,
    shard: usize,
    pairs: &[(Option<u32>, u32)],
    times: Option<&[f64]>,
) -> Result<Writer<'static>> {
    let start = task.check(shard, pairs, times)?;
    let mut w = Writer::new(Kind::ShardAnswer);
    let keys = || -> Result<Vec<u64>> {
        let times = times.ok_or_else(|| {
            Error::InvalidInput(format!("shard {shard}: the pairs have no times"))
        })?;
        Ok(times.iter().map(|&t| time_key(t)).collect())
    };
    match &task.reader_parts {
        Parts::Counts => {
            let mut next: Vec<(u32, bool)> = pairs
                .iter()
                .enumerate()
                .map(|(i, &(_, q))| (q, task.late(start, i, times)))
                .collect();
            next.sort_unstable();
            let (mut ids, mut all, mut kept) = (Vec::new(), Vec::new(), Vec::new());
            for run in next.chunk_by(|a, b| a.0 == b.0) {
                ids.push(run[0].0);
                all.push(run.len() as u64);
                kept.push(run.iter().filter(|(_, late)| !late).count() as u64);
            }
            w.array_copy("ids", &ids)
                .array_copy("all", &all)
                .array_copy("kept", &kept);
        }
        Parts::Transitions(label_of) => {
            let mut found: Vec<(u32, u32)> = pairs
                .iter()
                .enumerate()
                .filter(|&(i, &(_, q))| {
                    label_of[q as usize] != NO_LABEL && !task.late(start, i, times)
                })
                .map(|(_, &(p, q))| (p.unwrap_or(NO_LABEL), label_of[q as usize]))
                .collect();
            found.sort_unstable();
            let (mut prev, mut label, mut count) = (Vec::new(), Vec::new(), Vec::new());
            for ((p, l), n) in counted(&found) {
                prev.push(p);
                label.push(l);
                count.push(n);
            }
            w.array_copy("prev", &prev)
                .array_copy("label", &label)
                .array_copy("count", &count);
        }
        Parts::Late => {
            let (mut prev, mut next, mut time) = (Vec::new(), Vec::new(), Vec::new());
            let (mut earlier, mut ends, mut open) = (Vec::<u32>::new(), Vec::new(), Vec::new());
            for (i, &(p, q)) in pairs.iter().enumerate() {
                if task.late(start, i, times) {
                    prev.push(p.unwrap_or(NO_LABEL));
                    next.push(q);
                    time.push(times.map_or((start + i as u64) as f64, |t| t[i]));
                    let (found, goes_on) = earlier_queries(pairs, i);
                    earlier.extend(found.iter().rev());
                    ends.push(earlier.len() as u64);
                    open.push(u64::from(goes_on));
                }
            }
            // What the next shard's sessions may run on from.
            let (tail, whole) = session_at_end(pairs);
            let first = pairs.first().map_or(NO_LABEL, |p| p.0.unwrap_or(NO_LABEL));
            w.array_copy("prev", &prev)
                .array_copy("next", &next)
                .array_copy("time", &time)
                .array_copy("earlier", &earlier)
                .array_copy("ends", &ends)
                .array_copy("open", &open)
                .array_copy("tail", &tail)
                .u64s(
                    "ends_at",
                    [
                        u64::from(!pairs.is_empty()),
                        u64::from(first),
                        u64::from(whole),
                    ],
                );
        }
        Parts::Select(pivots) => {
            let mut keys = keys()?;
            keys.sort_unstable();
            let below: Vec<u64> = pivots
                .iter()
                .map(|&p| keys.partition_point(|&k| k <= p) as u64)
                .collect();
            w.array_copy("below", &below);
        }
        Parts::Ties(key) => {
            let ties = keys()?.iter().filter(|&&k| k == *key).count() as u64;
            w.u64s("ties", [ties]);
        }
        Parts::TieAt([key, at, rank]) => {
            let index = if *at == shard as u64 {
                keys()?
                    .iter()
                    .enumerate()
                    .filter(|&(_, &k)| k == *key)
                    .nth(*rank as usize)
                    .map_or(u64::MAX, |(i, _)| i as u64)
            } else {
                u64::MAX
            };
            w.u64s("index", [index]);
        }
        _ => unreachable!("a stage on rows"),
    }
    Ok(w)
}

/// The searches of the session of pair `i` of `pairs` before its previous query, nearest
/// first, at most [`MAX_SESSION_HISTORY`] - 1, and whether they go on before the first pair (the
/// session began in the shard before): a pair continues the session of the pair before it when
/// its previous query is that pair's next query (as the pairs of a log's sessions are, in
/// order), and a session begins at a pair with no previous query.
fn earlier_queries(pairs: &[(Option<u32>, u32)], i: usize) -> (Vec<u32>, bool) {
    let mut found = Vec::new();
    for k in (1..=i).rev() {
        let (before, next_before) = pairs[k - 1];
        if found.len() == MAX_SESSION_HISTORY - 1 || pairs[k].0 != Some(next_before) {
            return (found, false);
        }
        match before {
            Some(q) => found.push(q),
            None => return (found, false),
        }
    }
    let open =
        found.len() < MAX_SESSION_HISTORY - 1 && pairs.first().is_some_and(|p| p.0.is_some());
    (found, open)
}

/// The searches of the session that the last pair of a shard ends, oldest first (the last is
/// that pair's next query), and whether they go on before the shard's first pair.
fn session_at_end(pairs: &[(Option<u32>, u32)]) -> (Vec<u32>, bool) {
    let Some(&(prev, next)) = pairs.last() else {
        return (Vec::new(), false);
    };
    let (mut found, open) = earlier_queries(pairs, pairs.len() - 1);
    found.reverse();
    found.extend(prev);
    found.push(next);
    (found, open)
}

/// What shard `shard` answers to a task of a stage but the pifa and the pieces ones: `pairs`
/// are its pairs (query ids of the task's queries), `times` their times when the log has them.
pub fn shard_answer(
    task: &[u8],
    shard: usize,
    pairs: &[(Option<u32>, u32)],
    times: Option<&[f64]>,
) -> Result<Vec<u8>> {
    let task = Task::read(task)?;
    if !matches!(task.reader_parts, Parts::Draws | Parts::Terms(_)) {
        if matches!(task.reader_parts, Parts::Pifa(..) | Parts::Pieces(_)) {
            return Err(Error::InvalidInput(
                "this stage answers with pieces (shard_pieces)".into(),
            ));
        }
        return Ok(pairs_answer(&task, shard, pairs, times)?.finish());
    }
    let pairs = task.pairs_of(shard, pairs, times)?;
    let mut w = Writer::new(Kind::ShardAnswer);
    match &task.reader_parts {
        Parts::Draws => {
            let (queries, labels) = task.text();
            let label_of = |q: u32| labels.id(queries.get(q as usize));
            let sampler = Sampler {
                labels,
                label_of: &label_of,
                prefixes_per_pair: task.prefixes_per_pair,
                range_rows: false,
            };
            let draws = sampler.draws(pairs, &|q| queries.get(q as usize));
            w.u64s("draws", [draws]);
        }
        Parts::Terms(configs) => {
            let rows = task.rows(shard, &pairs);
            let columns = [&rows.prevs, &rows.prefixes];
            let counts: Vec<TermCounts> = configs
                .iter()
                .zip(columns)
                .map(|(config, docs)| TermCounts::count(&config.analyzer, docs))
                .collect();
            w.u64s("ncounts", [counts.len() as u64]);
            for (i, c) in counts.iter().enumerate() {
                w.file(&format!("c{i}"), c.writer());
            }
            return Ok(w.finish());
        }
        _ => unreachable!("checked above"),
    }
    Ok(w.finish())
}

/// What shard `shard` answers to a task of the pifa or the pieces stage: the pieces of its rows
/// for each part of the work (`pieces[part]`, the files of its jobs).
pub fn shard_pieces(
    task: &[u8],
    shard: usize,
    pairs: &[(Option<u32>, u32)],
    times: Option<&[f64]>,
) -> Result<Vec<Vec<Vec<u8>>>> {
    let task = Task::read(task)?;
    let pairs = task.pairs_of(shard, pairs, times)?;
    match &task.reader_parts {
        Parts::Pifa(features, groups) => {
            let rows = task.rows(shard, &pairs);
            let (x, y, _) = task.vectorised(features, rows)?;
            Ok(groups
                .iter()
                .map(|g| vec![label_rows(&x, &y, g.clone()).to_bytes()])
                .collect())
        }
        Parts::Pieces(parts) => {
            let (features, tree, plan, train) = &**parts;
            let rows = task.rows(shard, &pairs);
            let (x, y, ranges) = task.vectorised(features, rows)?;
            let ranges = task.range_rows.then_some(&ranges[..]);
            plan.cut(&x, &y, tree, train, ranges)
        }
        _ => Err(Error::InvalidInput(
            "this stage answers with one file (shard_answer)".into(),
        )),
    }
}

/// The rows of the labels `labels` (in order), with their labels counted from its start; or
/// (`y` empty) the PIFA embeddings of those labels.
struct LabelRows {
    labels: Range<u32>,
    x: CsrMatrix,
    y: Vec<u32>,
}

fn label_rows(x: &FactoredRows, y: &OneLabelRows, labels: Range<u32>) -> LabelRows {
    let mut buf = RowBuf::default();
    let mut out = LabelRows {
        labels: labels.clone(),
        x: CsrMatrix::new(x.n_cols()),
        y: Vec::new(),
    };
    let mut rows = Vec::new();
    for r in 0..y.n_rows() {
        let label = y.row_in(r, &mut buf).0[0];
        if labels.contains(&label) {
            rows.push(r);
            out.y.push(label - labels.start);
        }
    }
    out.x = CsrMatrix::from_rows(
        x.n_cols(),
        rows.iter().map(|&r| {
            let (i, v) = x.row_in(r, &mut buf);
            (i.to_vec(), v.to_vec())
        }),
    );
    out
}

impl Persist for LabelRows {
    const KIND: Kind = Kind::LabelRows;

    fn writer(&self) -> Writer<'_> {
        let mut w = Writer::new(Kind::LabelRows);
        w.u64s(
            "meta",
            [
                self.labels.start.into(),
                self.labels.end.into(),
                self.x.n_cols as u64,
            ],
        )
        .array("y", &self.y);
        self.x.write(&mut w, "x");
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let [start, end, n_cols] = r.u64s("meta")?[..] else {
            return Err(format_err("label rows: bad meta"));
        };
        let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(end)) else {
            return Err(format_err("label rows: labels out of range"));
        };
        let x = CsrArrays::read(r, "x", n_cols as usize)?.to_matrix();
        let y = r.array::<u32>("y")?.to_vec();
        let n = end.saturating_sub(start);
        let fits = start <= end
            && (y.is_empty() && x.n_rows() == n as usize || y.len() == x.n_rows())
            && y.iter().all(|&l| l < n);
        if !fits {
            return Err(format_err("label rows: rows and labels do not fit"));
        }
        Ok(LabelRows {
            labels: start..end,
            x,
            y,
        })
    }
}

/// What a part of the work of a pifa or a pieces task gives: from `pieces[s][j]`, the piece of
/// job `j` cut from shard `s` (shards in order), the answer of each job: its columns, or the
/// embeddings of its labels.
pub fn part_answer(pieces: &[Vec<&[u8]>]) -> Result<Vec<Vec<u8>>> {
    let kinds: Vec<Option<Kind>> = pieces.iter().flatten().map(|p| kind_of(p)).collect();
    match kinds.first() {
        Some(Some(Kind::SubtreeJob)) if kinds.iter().all(|k| *k == Some(Kind::SubtreeJob)) => {
            xr::train_pieces(pieces)
        }
        Some(Some(Kind::LabelRows)) if kinds.iter().all(|k| *k == Some(Kind::LabelRows)) => {
            if pieces.iter().any(|p| p.len() != 1) {
                return Err(Error::InvalidInput(
                    "each shard gives one piece of label rows".into(),
                ));
            }
            let mut parts = pieces.iter().map(|p| LabelRows::from_bytes(p[0]));
            let mut all = parts
                .next()
                .ok_or_else(|| Error::InvalidInput("no piece".into()))??;
            for part in parts {
                let part = part?;
                if part.labels != all.labels || part.x.n_cols != all.x.n_cols {
                    return Err(Error::InvalidInput(
                        "the pieces are rows of other labels".into(),
                    ));
                }
                all.x.append(&part.x)?;
                all.y.extend(part.y);
            }
            let n = (all.labels.end - all.labels.start) as usize;
            let z = kmeans::pifa(&all.x, &OneLabelRows::new(n, all.y)?)?;
            let answer = LabelRows {
                labels: all.labels,
                x: z,
                y: Vec::new(),
            };
            Ok(vec![answer.to_bytes()])
        }
        _ => Err(Error::InvalidInput(
            "the pieces of a part are jobs of a subtree or rows of labels, all of one kind".into(),
        )),
    }
}

/// The pairs held out for the ranker ([`Pairs::late`]).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct LatePairs {
    /// (previous query, next query, time).
    pub pairs: Vec<(Option<u32>, u32, f64)>,
    /// The searches of each pair's session before its previous query, oldest first: those of
    /// pair `i` end at `ends[i]`, where those of pair `i - 1` end.
    pub earlier: Vec<u32>,
    pub ends: Vec<usize>,
}

impl LatePairs {
    /// The searches of pair `i`'s session before its previous query, oldest first.
    pub(crate) fn earlier_of(&self, i: usize) -> &[u32] {
        let from = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.earlier[from..self.ends[i]]
    }
}

/// Pairs held in this process, in shards cut at given places: every stage runs here, each
/// shard on its own, through the same tasks and answers as shards held elsewhere. A fit of
/// pairs given here holds them in one shard, whose rows are trained where they are
/// ([`PairShards::here`]).
#[derive(Debug)]
pub struct LocalShards<'a> {
    pairs: Cow<'a, [(Option<u32>, u32)]>,
    times: Option<Cow<'a, [f64]>>,
    /// Where each shard starts, then the number of pairs.
    bounds: Vec<usize>,
    parts: usize,
}

impl<'a> LocalShards<'a> {
    /// `pairs` (with their `times`, if they have them) in one shard.
    pub fn one(pairs: &'a [(Option<u32>, u32)], times: Option<&'a [f64]>) -> Self {
        LocalShards {
            pairs: Cow::Borrowed(pairs),
            times: times.map(Cow::Borrowed),
            bounds: vec![0, pairs.len()],
            parts: 1,
        }
    }

    /// A copy of `pairs` (with their `times`) in shards cut at `cuts`, the work of a shuffle
    /// cut into `parts` parts.
    pub fn cut(
        pairs: &[(Option<u32>, u32)],
        times: Option<&[f64]>,
        cuts: &[usize],
        parts: usize,
    ) -> LocalShards<'static> {
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(pairs.len())).collect();
        bounds.push(0);
        bounds.push(pairs.len());
        bounds.sort_unstable();
        LocalShards {
            pairs: Cow::Owned(pairs.to_vec()),
            times: times.map(|t| Cow::Owned(t.to_vec())),
            bounds,
            parts: parts.max(1),
        }
    }

    /// The pairs of shard `s` and their times.
    fn shard(&self, s: usize) -> Shard<'_> {
        let run = self.bounds[s]..self.bounds[s + 1];
        let times = self.times.as_deref().map(|t| &t[run.clone()]);
        (&self.pairs[run], times)
    }

    fn n_shards(&self) -> usize {
        self.bounds.len() - 1
    }
}

/// A shard's pairs, and their times when the log has them.
pub type Shard<'a> = (&'a [(Option<u32>, u32)], Option<&'a [f64]>);

impl PairShards for LocalShards<'_> {
    fn sizes(&self) -> Result<Vec<u64>> {
        Ok(self
            .bounds
            .windows(2)
            .map(|w| (w[1] - w[0]) as u64)
            .collect())
    }

    fn timed(&self) -> Result<bool> {
        Ok(self.times.is_some())
    }

    fn map(&self, task: Vec<u8>) -> Result<Vec<Vec<u8>>> {
        (0..self.n_shards())
            .map(|s| {
                let (pairs, times) = self.shard(s);
                shard_answer(&task, s, pairs, times)
            })
            .collect()
    }

    fn shuffle(&self, task: Vec<u8>, n_parts: usize) -> Result<Vec<Vec<u8>>> {
        let cut: Vec<Vec<Vec<Vec<u8>>>> = (0..self.n_shards())
            .map(|s| {
                let (pairs, times) = self.shard(s);
                shard_pieces(&task, s, pairs, times)
            })
            .collect::<Result<_>>()?;
        if cut.iter().any(|parts| parts.len() != n_parts) {
            return invalid(format!("shards cut into other than {n_parts} parts"));
        }
        let mut answers = Vec::new();
        for p in 0..n_parts {
            let pieces: Vec<Vec<&[u8]>> = cut
                .iter()
                .map(|parts| parts[p].iter().map(Vec::as_slice).collect())
                .collect();
            answers.extend(part_answer(&pieces)?);
        }
        Ok(answers)
    }

    fn n_parts(&self) -> Result<usize> {
        Ok(self.parts)
    }

    fn here(&self) -> Option<Shard<'_>> {
        (self.n_shards() == 1).then(|| self.shard(0))
    }
}

/// The pairs of a fit, in shards here ([`LocalShards`]) or elsewhere, and what the fit needs
/// of them, computed where they are: each stage is a task every shard answers, merged here.
pub(crate) struct Pairs<'a> {
    shards: &'a dyn PairShards,
    /// The subtrees of the matcher trained apart (see [`Sharding::min_subtrees`]).
    min_subtrees: usize,
    /// The first pair of each shard, and the number of pairs.
    starts: Vec<u64>,
    timed: bool,
    n_queries: usize,
}

impl<'a> Pairs<'a> {
    /// The pairs `shards` hold, ids of `n_queries` queries; the subtrees of the levels with
    /// at least `min_subtrees` nodes trained apart.
    pub(crate) fn new(
        shards: &'a dyn PairShards,
        min_subtrees: usize,
        n_queries: usize,
    ) -> Result<Self> {
        let sizes = elsewhere(shards.sizes())?;
        if sizes.is_empty() {
            return invalid("no shard of pairs".into());
        }
        let mut starts = vec![0u64];
        for &n in &sizes {
            starts.push(starts.last().copied().unwrap_or(0).saturating_add(n));
        }
        Ok(Pairs {
            shards,
            min_subtrees,
            starts,
            timed: elsewhere(shards.timed())?,
            n_queries,
        })
    }

    /// Whether the pairs have times.
    pub(crate) fn timed(&self) -> bool {
        self.timed
    }

    /// The number of pairs.
    pub(crate) fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0) as usize
    }

    /// A context for the stages on pairs alone, the pairs `held_out` holds out left out.
    fn context(&self, held_out: Option<HeldOut>) -> Context<'static> {
        Context {
            text: None,
            n_queries: self.n_queries,
            prefixes_per_pair: 1,
            seed: 0,
            range_rows: false,
            held_out,
            starts: self.starts.clone(),
        }
    }

    /// The answers of every shard to `task`, checked to be one per shard.
    fn map(&self, task: Vec<u8>, stage: &str) -> Result<Vec<Vec<u8>>> {
        let got = elsewhere(self.shards.map(task))?;
        let n_shards = self.starts.len() - 1;
        if got.len() != n_shards {
            return invalid(format!(
                "{} answers of {n_shards} shards to the {stage} task",
                got.len()
            ));
        }
        Ok(got)
    }

    /// The u64 values of section `name` of every shard's answer to `task`.
    fn values(&self, task: Vec<u8>, stage: &str, name: &str) -> Result<Vec<Vec<u64>>> {
        let mut all = Vec::new();
        self.read_answers(task, stage, |r| {
            all.push(r.array::<u64>(name)?.to_vec());
            Ok(())
        })?;
        Ok(all)
    }

    /// Reads every shard's answer to `task` with `read`, in shard order.
    fn read_answers(
        &self,
        task: Vec<u8>,
        stage: &str,
        mut read: impl FnMut(&Reader) -> Result<()>,
    ) -> Result<()> {
        for answer in self.map(task, stage)? {
            let buf = crate::persist::Buffer::copy_from(&answer);
            read(&Reader::new(&buf, Kind::ShardAnswer)?)?;
        }
        Ok(())
    }

    /// The pairs the ranker learns from: the latest `share` of them (by time, then index), at
    /// most [`MAX_HELD_OUT`]. The pair at that place in the order of (time, index) is found by
    /// narrowing down its time's key, 256 ways at a time (eight rounds of counts at most), then
    /// its index among the pairs of that time.
    pub(crate) fn held_out(&self, share: f64) -> Result<Option<HeldOut>> {
        let n = self.len();
        let Some(n_late) = n_held_out(n, share) else {
            return Ok(None);
        };
        let first = (n - n_late) as u64;
        if !self.timed {
            return Ok(Some(HeldOut {
                time: None,
                from: first,
            }));
        }
        let context = self.context(None);
        // The key is in lo..=hi, and `before` pairs have keys below lo.
        let (mut lo, mut hi, mut before) = (0u64, u64::MAX, 0u64);
        while lo < hi {
            let mut pivots: Vec<u64> = (0..255u128)
                .map(|j| lo + ((u128::from(hi - lo) * j) / 255) as u64)
                .filter(|&p| p < hi)
                .collect();
            pivots.dedup();
            let task = context.task(StageTask::Select { pivots: &pivots });
            let mut below = vec![0u64; pivots.len()];
            for counts in self.values(task, "selection", "below")? {
                if counts.len() != below.len() {
                    return Err(format_err("shard answer: bad selection"));
                }
                for (b, c) in below.iter_mut().zip(counts) {
                    *b += c;
                }
            }
            match below.iter().position(|&b| b > first) {
                Some(j) => {
                    hi = pivots[j];
                    if j > 0 {
                        (lo, before) = (pivots[j - 1] + 1, below[j - 1]);
                    }
                }
                None => {
                    let last = pivots.len() - 1;
                    (lo, before) = (pivots[last] + 1, below[last]);
                }
            }
        }
        // The pairs of that time, in order: which one is at the place.
        let ties = self.values(context.task(StageTask::Ties { key: lo }), "ties", "ties")?;
        let mut rank = first - before;
        for (shard, ties) in ties.iter().enumerate() {
            let here = ties.first().copied().unwrap_or(0);
            if rank < here {
                let task = context.task(StageTask::TieAt {
                    key: lo,
                    shard: shard as u64,
                    rank,
                });
                let index = self.values(task, "tie", "index")?[shard]
                    .first()
                    .copied()
                    .filter(|&i| i != u64::MAX)
                    .ok_or_else(|| format_err("shard answer: no such tie"))?;
                return Ok(Some(HeldOut {
                    time: Some(key_time(lo)),
                    from: self.starts[shard] + index,
                }));
            }
            rank -= here;
        }
        Err(format_err("shard answers: the pairs' times do not add up"))
    }

    /// Per query of `n_queries`: the pairs it is the next query of, all and those `rule` does
    /// not hold out.
    pub(crate) fn next_counts(&self, n_queries: usize, rule: HeldOut) -> Result<Vec<(u32, u32)>> {
        let mut counts = vec![(0u32, 0u32); n_queries];
        let task = self.context(Some(rule)).task(StageTask::Counts);
        self.read_answers(task, "counts", |r| {
            let ids: Array<u32> = r.array("ids")?;
            let (all, kept): (Array<u64>, Array<u64>) = (r.array("all")?, r.array("kept")?);
            if all.len() != ids.len() || kept.len() != ids.len() {
                return Err(format_err("shard answer: bad counts"));
            }
            for ((&q, &a), &k) in ids.iter().zip(all.iter()).zip(kept.iter()) {
                let e = counts
                    .get_mut(q as usize)
                    .ok_or_else(|| format_err("shard answer: a query out of range"))?;
                e.0 = e.0.saturating_add(a as u32);
                e.1 = e.1.saturating_add(k as u32);
            }
            Ok(())
        })?;
        Ok(counts)
    }

    /// How often each query (by id; None: no previous query) was followed by each label, over
    /// the pairs `held_out` does not hold out whose next query is a label (`label_of`).
    pub(crate) fn transition_counts(
        &self,
        label_of: &[Option<u32>],
        held_out: Option<HeldOut>,
    ) -> Result<Vec<(Option<u32>, u32, u64)>> {
        let label_of: Vec<u32> = label_of.iter().map(|l| l.unwrap_or(NO_LABEL)).collect();
        let task = self.context(held_out).task(StageTask::Transitions {
            label_of: &label_of,
        });
        drop(label_of);
        let mut all = Vec::new();
        self.read_answers(task, "transitions", |r| {
            let prev: Array<u32> = r.array("prev")?;
            let label: Array<u32> = r.array("label")?;
            let count: Array<u64> = r.array("count")?;
            if label.len() != prev.len() || count.len() != prev.len() {
                return Err(format_err("shard answer: bad transitions"));
            }
            for ((&p, &l), &n) in prev.iter().zip(label.iter()).zip(count.iter()) {
                all.push(((p != NO_LABEL).then_some(p), l, n));
            }
            Ok(())
        })?;
        all.sort_unstable();
        let mut merged: Vec<(Option<u32>, u32, u64)> = Vec::new();
        for (p, l, n) in all {
            match merged.last_mut() {
                Some(last) if last.0 == p && last.1 == l => last.2 += n,
                _ => merged.push((p, l, n)),
            }
        }
        Ok(merged)
    }

    /// The pairs `rule` holds out, in order: (previous query, next query, time; without
    /// times, the pair's index), and the searches of each one's session before its previous
    /// query, oldest first (those its shard holds, at most [`MAX_SESSION_HISTORY`] - 1).
    pub(crate) fn late(&self, rule: HeldOut) -> Result<LatePairs> {
        let task = self.context(Some(rule)).task(StageTask::Late);
        let mut late = LatePairs::default();
        // The searches of the session the shards so far end, oldest first: where a session
        // running on into the next shard began.
        let mut carry: Vec<u32> = Vec::new();
        self.read_answers(task, "held-out pairs", |r| {
            let prev: Array<u32> = r.array("prev")?;
            let next: Array<u32> = r.array("next")?;
            let time: Array<f64> = r.array("time")?;
            let earlier: Array<u32> = r.array("earlier")?;
            let ends: Array<u64> = r.array("ends")?;
            let open: Array<u64> = r.array("open")?;
            let tail: Array<u32> = r.array("tail")?;
            let [held, first, whole] = r.u64s("ends_at")?[..] else {
                return Err(format_err("shard answer: bad held-out pairs"));
            };
            let known = |q: &u32| (*q as usize) < self.n_queries;
            let fits = next.len() == prev.len()
                && time.len() == prev.len()
                && ends.len() == prev.len()
                && open.len() == prev.len()
                && ends.windows(2).all(|w| w[0] <= w[1])
                && ends
                    .last()
                    .map_or(earlier.is_empty(), |&e| e == earlier.len() as u64)
                && earlier.iter().all(known)
                && tail.iter().all(known);
            if !fits {
                return Err(format_err("shard answer: bad held-out pairs"));
            }
            // The searches before the previous query of this shard's first pair, when its
            // session runs on from the shards before (its previous query is their last search).
            let runs_on = held == 1 && carry.last().map(|&q| u64::from(q)) == Some(first);
            let before: &[u32] = match runs_on {
                true => &carry[..carry.len() - 1],
                false => &[],
            };
            let mut from = 0usize;
            for (i, (((&p, &q), &t), &end)) in prev
                .iter()
                .zip(next.iter())
                .zip(time.iter())
                .zip(ends.iter())
                .enumerate()
            {
                late.pairs.push(((p != NO_LABEL).then_some(p), q, t));
                let at = late.earlier.len();
                if open[i] == 1 {
                    late.earlier.extend_from_slice(before);
                }
                late.earlier.extend_from_slice(&earlier[from..end as usize]);
                // The nearest MAX_SESSION_HISTORY - 1.
                let n = late.earlier.len() - at;
                late.earlier
                    .drain(at..at + n.saturating_sub(MAX_SESSION_HISTORY - 1));
                late.ends.push(late.earlier.len());
                from = end as usize;
            }
            if held == 1 {
                let mut ends_here = match whole == 1 {
                    true => before.to_vec(),
                    false => Vec::new(),
                };
                ends_here.extend(tail.iter());
                let n = ends_here.len();
                ends_here.drain(..n.saturating_sub(MAX_SESSION_HISTORY + 1));
                carry = ends_here;
            }
            Ok(())
        })?;
        Ok(late)
    }
}

/// Trains the matcher of `log` (and its vectorizers) where its pairs are: the rows of the
/// (previous query, prefix of the next query) -> next query examples are sampled in the shards,
/// which count their terms for the vectorizers, then meet where the tree's embeddings and the
/// matcher's jobs are computed (or, when the pairs are all here in one shard, are trained
/// where they are: the same model).
pub(crate) fn train_matcher<S: AsRef<str> + Sync>(
    log: &Log<'_, S>,
    labels: &Trie,
    params: &FitParams,
    progress: &Progress,
) -> Result<(FeatureConcat, XrLinear)> {
    let pairs = log.pairs;
    let context = Context {
        text: Some((Strings::new(log.queries.iter().map(AsRef::as_ref))?, labels)),
        n_queries: log.queries.len(),
        prefixes_per_pair: params.prefixes_per_pair,
        seed: params.seed,
        range_rows: params.range_rows == Some(true),
        held_out: log.held_out,
        starts: pairs.starts.clone(),
    };
    progress.set_stage(Stage::Vectorizing);
    let mut draws = Vec::with_capacity(pairs.starts.len() - 1);
    let mut total = 0u64;
    for found in pairs.values(context.task(StageTask::Draws), "draws", "draws")? {
        let [n] = found[..] else {
            return Err(format_err("shard answer: bad draws"));
        };
        draws.push(total);
        total += n;
    }
    if total == 0 {
        return invalid("no training pair has a next query that is kept".into());
    }
    let configs = [params.prev.clone(), params.prefix.clone()];
    let terms = StageTask::Terms {
        draws: &draws,
        configs: &configs,
    };
    let mut counts: Vec<TermCounts> = configs.iter().map(|_| TermCounts::default()).collect();
    pairs.read_answers(context.task(terms), "terms", |r| {
        counts = std::mem::take(&mut counts)
            .into_iter()
            .enumerate()
            .map(|(i, all)| Ok(all.merge(r.nested::<TermCounts>(&format!("c{i}"))?)))
            .collect::<Result<_>>()?;
        Ok(())
    })?;
    let features = FeatureConcat::fit_counts(&configs, counts)?;
    progress.set_stage(Stage::Clustering);
    let model = match pairs.shards.here() {
        Some((here, times)) => {
            drop(context);
            train_here(log, here, times, labels, &features, params, progress)?
        }
        None => train_shuffled(pairs, context, &draws, labels, &features, params, progress)?,
    };
    Ok((features, model))
}

/// The matcher trained on the rows of the pairs of the only shard, `pairs` (with `times`),
/// where they are.
fn train_here<S: AsRef<str> + Sync>(
    log: &Log<'_, S>,
    pairs: &[(Option<u32>, u32)],
    times: Option<&[f64]>,
    labels: &Trie,
    features: &FeatureConcat,
    params: &FitParams,
    progress: &Progress,
) -> Result<XrLinear> {
    let label_of = |q: u32| labels.id(log.queries[q as usize].as_ref());
    let range_rows = params.range_rows == Some(true);
    let sampler = Sampler {
        labels,
        label_of: &label_of,
        prefixes_per_pair: params.prefixes_per_pair,
        range_rows,
    };
    let rows = sampler.rows(
        kept(0, pairs, times, log.held_out),
        &|q| log.queries[q as usize].as_ref(),
        &mut SplitMix64(params.seed),
    );
    // In parts: a prefix or a previous query is vectorised once however many rows have it.
    let x = features.transform_factored(&[&rows.prevs, &rows.prefixes])?;
    let Rows {
        prevs,
        prefixes,
        targets,
        ranges,
    } = rows;
    // The texts of the rows are done with (32 bytes a row): freed before the training.
    drop((prevs, prefixes));
    let y = OneLabelRows::new(labels.len(), targets)?;
    let label_keys: Vec<&str> = labels.keys().collect();
    let tree = index::build(&params.tree, &label_keys, &x, &y)?;
    drop(label_keys);
    let trained = xr::train_levels_with(
        &x,
        &y,
        tree,
        &params.train,
        progress,
        range_rows.then_some(&ranges[..]),
    )?;
    // The rows are done with: freed before the model is assembled and the language model
    // counted (the peak of a fit is here).
    let n_features = x.n_cols();
    drop((x, y, ranges));
    let model = trained.model(n_features, &params.train)?;
    // Each node's weights, freed as the model was assembled.
    crate::hugepages::release_free_memory();
    Ok(model)
}

/// The matcher trained on the rows of the shards of `pairs`, cut into the pieces of the
/// embeddings of groups of labels (when the tree needs them), then of the training's jobs,
/// which meet where they are computed.
fn train_shuffled(
    pairs: &Pairs<'_>,
    context: Context<'_>,
    draws: &[u64],
    labels: &Trie,
    features: &FeatureConcat,
    params: &FitParams,
    progress: &Progress,
) -> Result<XrLinear> {
    let shards = pairs.shards;
    let label_keys: Vec<&str> = labels.keys().collect();
    let n_parts = elsewhere(shards.n_parts())?.max(1);
    let pifa = || {
        let groups = label_groups(labels.len(), n_parts);
        let task = context.task(StageTask::Pifa {
            draws,
            features,
            groups: &groups,
        });
        let mut z = CsrMatrix::new(features.n_features());
        let found = elsewhere(shards.shuffle(task, groups.len()))?;
        if found.len() != groups.len() {
            return invalid(format!(
                "{} answers for {} label groups",
                found.len(),
                groups.len()
            ));
        }
        for (answer, group) in found.iter().zip(&groups) {
            let part = LabelRows::from_bytes(answer)?;
            if part.labels != *group || !part.y.is_empty() {
                return invalid("an answer of other labels".into());
            }
            z.append(&part.x)?;
        }
        Ok(z)
    };
    let tree = index::build_with(&params.tree, &label_keys, &pifa)?;
    drop(label_keys);

    let weights: Vec<f64> = labels.iter().map(|(_, count)| count).collect();
    let plan = JobPlan::new(&tree, pairs.min_subtrees, n_parts, &weights);
    drop(weights);
    let total: usize = (0..tree.depth()).map(|l| tree.n_nodes(l)).sum();
    progress
        .total
        .store(total as u64, std::sync::atomic::Ordering::Relaxed);
    progress.done.store(0, std::sync::atomic::Ordering::Relaxed);
    progress.set_stage(Stage::Training);
    let task = context.task(StageTask::Pieces {
        draws,
        features,
        tree: &tree,
        plan: &plan,
        train: &params.train,
    });
    drop(context);
    let answers = elsewhere(shards.shuffle(task, 1 + plan.groups.len()))?;
    let levels = plan.levels(&tree, &answers, progress)?;
    drop(answers);
    XrLinear::new(
        tree,
        levels,
        features.n_features(),
        params.train.bias as f32,
    )
}

/// The pairs of a shard whose first pair is pair `start` of the log, but those `held_out`
/// holds out, in order.
fn kept<'p>(
    start: u64,
    pairs: &'p [(Option<u32>, u32)],
    times: Option<&'p [f64]>,
    held_out: Option<HeldOut>,
) -> impl Iterator<Item = (Option<u32>, u32)> + 'p {
    pairs
        .iter()
        .enumerate()
        .filter(move |&(i, _)| {
            !held_out.is_some_and(|h| h.is_late(start + i as u64, times.map(|t| t[i])))
        })
        .map(|(_, &pair)| pair)
}

/// What the shards answered: their failure is the engine's ([`Error::Engine`]), whatever it
/// was, so that it is never taken for a log with nothing to learn from.
fn elsewhere<T>(found: Result<T>) -> Result<T> {
    found.map_err(|e| match e {
        Error::Engine(_) => e,
        other => Error::Engine(other.to_string()),
    })
}

/// An [`Error::InvalidInput`].
fn invalid<T>(what: String) -> Result<T> {
    Err(Error::InvalidInput(what))
}

/// `n_labels` label ids in about `n_groups` runs of about equal length.
fn label_groups(n_labels: usize, n_groups: usize) -> Vec<Range<u32>> {
    let n_groups = n_groups.clamp(1, n_labels.max(1));
    (0..n_groups)
        .map(|g| (g * n_labels / n_groups) as u32..((g + 1) * n_labels / n_groups) as u32)
        .filter(|g| !g.is_empty())
        .collect()
}
