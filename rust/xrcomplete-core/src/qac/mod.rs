//! Session-aware query autocompletion: `complete(previous query, typed prefix)`.
//!
//! A [`Completer`] holds everything one call needs:
//! - the features: word TF-IDF of the previous query beside prefix-weighted character TF-IDF of
//!   the prefix ([`FeatureConcat`]);
//! - the labels: the log's distinct queries in a [`Trie`] (ids in key order, weights = how often
//!   each was searched), so a prefix is one label-id range;
//! - an [`XrLinear`] model over those labels, trained on (previous query, prefix of the next
//!   query) -> next query;
//! - [`Transitions`]: how often each query followed each previous query;
//! - a [`WordModel`] that completes the last word of a prefix.
//!
//! Ranking: the candidates are the model's best labels in the prefix's range (beam restricted to
//! it), the most popular queries of that range and the queries seen after the previous query in
//! that range; each scores `ln(max(model, floor)) + wp * ln(1 + popularity) + wt * ln(1 +
//! transitions)`. When fewer than `k` queries start with the prefix, the word model fills the
//! rest with the prefix's last word completed, scored below every seen query. Every answer starts
//! with the (normalised) prefix.

mod transitions;
mod words;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::index::{self, TreeSpec};
use crate::persist::{Fields, Kind, Persist, Reader, Writer};
use crate::rng::SplitMix64;
use crate::sparse::CsrMatrix;
use crate::text::{is_py_space, ConcatScratch, FeatureConcat, TfidfConfig};
use crate::xr::{
    self, PostProcessor, PredictParams, PredictScratch, Progress, Stage, TrainParams, XrLinear,
};
use crate::Trie;

pub use transitions::Transitions;
pub use words::WordModel;

/// A query as the log and the evaluation protocol see it: lower-cased (as Python's
/// `str.lower`), surrounding whitespace (Python's `str.isspace`) removed.
pub fn normalize_query(query: &str) -> String {
    query.trim_matches(is_py_space).to_lowercase()
}

/// A typed prefix: lower-cased, leading whitespace removed; trailing whitespace is kept (a
/// space typed after a word is part of what the user means).
pub fn normalize_prefix(prefix: &str) -> String {
    prefix.trim_start_matches(is_py_space).to_lowercase()
}

/// How [`Completer::complete`] ranks. The defaults were tuned on the AOL validation week.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankParams {
    /// Beam width of the model's search.
    pub beam_size: usize,
    /// Candidates taken from each source (model, popularity, transitions), at least `k`.
    pub candidates: usize,
    /// Model score given to a candidate the beam did not return (and the least any counts).
    pub model_floor: f32,
    /// Weight of `ln(1 + popularity)`.
    pub popularity_weight: f32,
    /// Weight of `ln(1 + times seen after the previous query)`.
    pub transition_weight: f32,
    /// Fill with last-word completions when fewer than `k` seen queries start with the prefix.
    pub generate: bool,
}

impl Default for RankParams {
    fn default() -> Self {
        RankParams {
            beam_size: 10,
            candidates: 10,
            model_floor: 1e-4,
            popularity_weight: 0.5,
            transition_weight: 2.0,
            generate: true,
        }
    }
}

impl RankParams {
    /// Checks every option.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidInput(what));
        if self.beam_size == 0 || self.candidates == 0 {
            return bad(format!(
                "beam_size and candidates must be >= 1, got {} and {}",
                self.beam_size, self.candidates
            ));
        }
        if !(self.model_floor > 0.0 && self.model_floor <= 1.0) {
            return bad(format!(
                "model_floor must be in (0, 1], got {}",
                self.model_floor
            ));
        }
        for (name, w) in [
            ("popularity_weight", self.popularity_weight),
            ("transition_weight", self.transition_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return bad(format!("{name} must be a finite number >= 0, got {w}"));
            }
        }
        Ok(())
    }
}

/// Options of [`Completer::fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct FitParams {
    /// Vectorizer of the previous query.
    pub prev: TfidfConfig,
    /// Vectorizer of the prefix.
    pub prefix: TfidfConfig,
    /// Label tree of the model.
    pub tree: TreeSpec,
    /// Training of the model.
    pub train: TrainParams,
    /// Prefix lengths sampled per (previous, next) pair (all of them for shorter queries).
    pub prefixes_per_pair: usize,
    /// Queries searched fewer times are not suggested (nor labels).
    pub min_count: f64,
    /// Seed of the prefix sampling.
    pub seed: u64,
    /// Default ranking.
    pub rank: RankParams,
}

/// One suggestion: a query and its ranking score (log scale, higher is better; not a
/// probability).
pub type Completion = (String, f32);

/// Reusable buffers of [`Completer::complete`]: one per thread.
#[derive(Debug, Default, Clone)]
pub struct CompleteScratch {
    concat: ConcatScratch,
    row: (Vec<u32>, Vec<f32>),
    predict: PredictScratch,
    /// (label, model score, transition count)
    candidates: Vec<(u32, f32, f32)>,
    after: Vec<(u32, f32)>,
    words: Vec<String>,
}

/// A trained session-aware completer. Immutable: `complete` takes `&self` and a scratch, so one
/// completer serves many threads.
#[derive(Debug)]
pub struct Completer {
    features: FeatureConcat,
    model: XrLinear,
    queries: Trie,
    transitions: Transitions,
    words: WordModel,
    rank: RankParams,
}

impl Completer {
    /// Trains a completer on a log: `queries[i]` (normalised, see [`normalize_query`]) was
    /// searched `counts[i]` times, and `pairs` lists (previous query, next query) as indices
    /// into `queries`, `None` for a session's first query.
    pub fn fit<S: AsRef<str> + Sync>(
        queries: &[S],
        counts: &[f64],
        pairs: &[(Option<u32>, u32)],
        params: &FitParams,
        progress: &Progress,
    ) -> Result<Self> {
        params.rank.check()?;
        params.train.check()?;
        let bad = |what: String| Err(Error::InvalidInput(what));
        if queries.len() != counts.len() {
            return bad(format!(
                "{} queries but {} counts",
                queries.len(),
                counts.len()
            ));
        }
        if params.prefixes_per_pair == 0 {
            return bad("prefixes_per_pair must be >= 1".into());
        }
        if !(params.min_count.is_finite() && params.min_count >= 0.0) {
            return bad(format!(
                "min_count must be a finite number >= 0, got {}",
                params.min_count
            ));
        }
        for q in queries {
            let q = q.as_ref();
            if q.is_empty() || normalize_query(q) != q {
                return bad(format!(
                    "queries must be non-empty and normalised (lower-case, stripped), got {:?}",
                    q.chars().take(80).collect::<String>()
                ));
            }
        }
        if let Some(c) = counts.iter().find(|c| !(c.is_finite() && **c >= 0.0)) {
            return bad(format!("counts must be finite numbers >= 0, got {c}"));
        }
        let n = queries.len() as u64;
        if let Some(&(p, q)) = pairs
            .iter()
            .find(|&&(p, q)| p.is_some_and(|p| u64::from(p) >= n) || u64::from(q) >= n)
        {
            return bad(format!(
                "pair ({p:?}, {q}) refers to a query out of range (there are {n})"
            ));
        }

        let kept = || {
            queries
                .iter()
                .zip(counts)
                .filter(|(_, &c)| c >= params.min_count && c > 0.0)
                .map(|(q, &c)| (q.as_ref(), c))
        };
        let labels = Trie::new(kept())?;
        if labels.is_empty() {
            return bad("no query is searched at least min_count times".into());
        }
        let label_of: Vec<Option<u32>> = queries.iter().map(|q| labels.id(q.as_ref())).collect();
        let prev_text = |p: Option<u32>| p.map_or("", |p| queries[p as usize].as_ref());

        let transitions = Transitions::new(
            pairs
                .iter()
                .filter_map(|&(p, q)| label_of[q as usize].map(|label| (prev_text(p), label))),
        )?;

        // Training examples: (previous query, prefix of the next query) -> next query.
        let mut rng = SplitMix64(params.seed);
        let (mut prevs, mut prefixes, mut targets) = (Vec::new(), Vec::new(), Vec::new());
        let mut ends: Vec<usize> = Vec::new();
        for &(p, q) in pairs {
            let Some(label) = label_of[q as usize] else {
                continue;
            };
            let next = queries[q as usize].as_ref();
            ends.clear();
            ends.extend(next.char_indices().skip(1).map(|(i, _)| i));
            ends.push(next.len());
            let take = params.prefixes_per_pair.min(ends.len());
            // Partial Fisher-Yates: `take` distinct prefix lengths, uniformly.
            for i in 0..take {
                let j = i + rng.below((ends.len() - i) as u64) as usize;
                ends.swap(i, j);
            }
            ends[..take].sort_unstable();
            for &end in &ends[..take] {
                prevs.push(prev_text(p));
                prefixes.push(&next[..end]);
                targets.push(label);
            }
        }
        if targets.is_empty() {
            return bad("no training pair has a next query that is kept".into());
        }
        progress.set_stage(Stage::Vectorizing);
        let features = FeatureConcat::fit_columns(
            &[params.prev.clone(), params.prefix.clone()],
            &[&prevs, &prefixes],
        )?;
        let x = features.transform(&[&prevs, &prefixes])?;
        drop((prevs, prefixes));
        let y = CsrMatrix::from_rows(
            labels.len(),
            targets.iter().map(|&t| (vec![t], vec![1.0f32])),
        );
        let label_keys: Vec<&str> = labels.keys().collect();
        progress.set_stage(Stage::Clustering);
        let tree = index::build(&params.tree, &label_keys, &x, &y)?;
        let model = xr::train(&x, &y, tree, &params.train, progress)?;
        progress.set_stage(Stage::Finishing);
        let words = WordModel::new(labels.iter())?;
        Self::from_parts(features, model, labels, transitions, words, params.rank)
    }

    fn from_parts(
        features: FeatureConcat,
        model: XrLinear,
        queries: Trie,
        transitions: Transitions,
        words: WordModel,
        rank: RankParams,
    ) -> Result<Self> {
        rank.check()?;
        let bad = |what: String| Err(Error::InvalidInput(format!("completer: {what}")));
        if features.blocks().len() != 2 || features.n_features() != model.n_features() {
            return bad(format!(
                "{} feature blocks of {} features for a model of {} features",
                features.blocks().len(),
                features.n_features(),
                model.n_features()
            ));
        }
        if model.n_labels() != queries.len() {
            return bad(format!(
                "a model of {} labels for {} queries",
                model.n_labels(),
                queries.len()
            ));
        }
        if transitions
            .max_label()
            .is_some_and(|l| l as usize >= queries.len())
        {
            return bad("transitions refer to an unknown query".into());
        }
        // Every completion restricts the beam to a label range: prepare for it before serving.
        model.prepare_label_ranges();
        Ok(Completer {
            features,
            model,
            queries,
            transitions,
            words,
            rank,
        })
    }

    /// The default ranking options.
    pub fn rank_params(&self) -> &RankParams {
        &self.rank
    }

    /// The queries that can be suggested whole, with their popularity (label ids = trie ids).
    pub fn queries(&self) -> &Trie {
        &self.queries
    }

    /// The model.
    pub fn model(&self) -> &XrLinear {
        &self.model
    }

    /// The features.
    pub fn features(&self) -> &FeatureConcat {
        &self.features
    }

    /// The word model.
    pub fn words(&self) -> &WordModel {
        &self.words
    }

    /// Heap memory in bytes (approximately).
    pub fn memory_bytes(&self) -> usize {
        self.features
            .blocks()
            .iter()
            .map(|b| b.memory_bytes())
            .sum::<usize>()
            + self.model.memory_bytes()
            + self.queries.memory_bytes()
            + self.transitions.memory_bytes()
            + self.words.memory_bytes()
    }

    /// The best `k` completions of `prefix` after `prev` (either may be empty; both are
    /// normalised first), best first. Every one starts with the normalised prefix.
    pub fn complete(
        &self,
        prev: &str,
        prefix: &str,
        k: usize,
        params: &RankParams,
        scratch: &mut CompleteScratch,
    ) -> Result<Vec<Completion>> {
        params.check()?;
        let prev = normalize_query(prev);
        let prefix = normalize_prefix(prefix);
        let mut out: Vec<Completion> = Vec::with_capacity(k.min(64));
        if k == 0 {
            return Ok(out);
        }
        if let Some(range) = self.queries.prefix_range(&prefix) {
            self.rank_seen(&prev, &prefix, range, k, params, scratch)?;
            out.extend(scratch.candidates.iter().take(k).map(|&(label, score, _)| {
                (
                    self.queries
                        .key(label)
                        .expect("candidates are labels")
                        .to_owned(),
                    score,
                )
            }));
        }
        if out.len() < k && params.generate {
            // Below every seen query: those score at least `ln(floor)`.
            let base = params.model_floor.ln();
            let words = &mut scratch.words;
            words.clear();
            self.words.complete_last_word(
                &prefix,
                k - out.len(),
                |s| out.iter().any(|(q, _)| q == s),
                words,
            );
            let m = words.len() as f32;
            out.extend(
                words
                    .drain(..)
                    .enumerate()
                    .map(|(i, q)| (q, base - (1.0 + i as f32) / (1.0 + m))),
            );
        }
        Ok(out)
    }

    /// Fills `scratch.candidates` with the seen queries of `range`, ranked (label, score, _).
    fn rank_seen(
        &self,
        prev: &str,
        prefix: &str,
        range: (u32, u32),
        k: usize,
        params: &RankParams,
        scratch: &mut CompleteScratch,
    ) -> Result<()> {
        let n = params.candidates.max(k);
        let cands = &mut scratch.candidates;
        cands.clear();
        self.features
            .transform_one(&[prev, prefix], &mut scratch.concat, &mut scratch.row)?;
        let predict = PredictParams {
            beam_size: params.beam_size.max(1),
            topk: n,
            post_processor: PostProcessor::L3Hinge,
        };
        let (idx, val) = &scratch.row;
        for (label, score) in
            self.model
                .predict_one(idx, val, &predict, Some(range), &mut scratch.predict)?
        {
            cands.push((label, score, 0.0));
        }
        for label in self.queries.top_k_in_range(range.0, range.1, n) {
            cands.push((label, 0.0, 0.0));
        }
        scratch.after.clear();
        self.transitions.after(prev, range, n, &mut scratch.after);
        cands.extend(scratch.after.iter().map(|&(label, c)| (label, 0.0, c)));

        // One entry per label: the best model score and transition count any source gave.
        cands.sort_unstable_by_key(|c| c.0);
        cands.dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1 = a.1.max(b.1);
                a.2 = a.2.max(b.2);
                true
            } else {
                false
            }
        });
        let weights = self.queries.weights();
        for c in cands.iter_mut() {
            let popularity = weights[c.0 as usize] as f32;
            c.1 = c.1.max(params.model_floor).ln()
                + params.popularity_weight * popularity.ln_1p()
                + params.transition_weight * c.2.ln_1p();
        }
        cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(())
    }

    /// [`Completer::complete`] for many (previous query, prefix) pairs, in parallel.
    pub fn complete_batch<S: AsRef<str> + Sync>(
        &self,
        prevs: &[S],
        prefixes: &[S],
        k: usize,
        params: &RankParams,
    ) -> Result<Vec<Vec<Completion>>> {
        if prevs.len() != prefixes.len() {
            return Err(Error::InvalidInput(format!(
                "{} previous queries but {} prefixes",
                prevs.len(),
                prefixes.len()
            )));
        }
        params.check()?;
        (0..prevs.len())
            .into_par_iter()
            .map_init(CompleteScratch::default, |scratch, i| {
                self.complete(prevs[i].as_ref(), prefixes[i].as_ref(), k, params, scratch)
            })
            .collect()
    }
}

impl Persist for Completer {
    const KIND: Kind = Kind::Completer;

    /// Sections: the ranking defaults, then each part as a complete file of its own kind.
    fn to_bytes(&self) -> Vec<u8> {
        let r = &self.rank;
        let mut fields = Vec::new();
        for v in [
            r.beam_size as u64,
            r.candidates as u64,
            u64::from(r.generate),
        ] {
            fields.extend_from_slice(&v.to_le_bytes());
        }
        for v in [r.model_floor, r.popularity_weight, r.transition_weight] {
            fields.extend_from_slice(&f64::from(v).to_bits().to_le_bytes());
        }
        let mut w = Writer::new(Kind::Completer);
        w.bytes("rank", fields)
            .bytes("features", self.features.to_bytes())
            .bytes("model", self.model.to_bytes())
            .bytes("queries", self.queries.to_bytes())
            .bytes("trans", self.transitions.to_bytes())
            .bytes("words", self.words.to_bytes());
        w.finish()
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let mut f = Fields::new(r.bytes("rank")?, "rank");
        let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let (beam_size, candidates) = (count(f.u64()?), count(f.u64()?));
        let generate = match f.u64()? {
            0 => false,
            1 => true,
            other => return Err(f.bad("generate flag", other)),
        };
        let rank = RankParams {
            beam_size,
            candidates,
            generate,
            model_floor: f.f64()? as f32,
            popularity_weight: f.f64()? as f32,
            transition_weight: f.f64()? as f32,
        };
        f.end()?;
        let format = |e: Error| match e {
            Error::InvalidInput(what) => Error::Format { what },
            other => other,
        };
        // The parts are checked independently: in parallel, a large model loads in about the
        // time of its largest part.
        let ((features, model), (queries, (trans, words))) = rayon::join(
            || rayon::join(|| r.nested("features"), || r.nested("model")),
            || {
                rayon::join(
                    || r.nested("queries"),
                    || rayon::join(|| r.nested("trans"), || r.nested("words")),
                )
            },
        );
        Self::from_parts(features?, model?, queries?, trans?, words?, rank).map_err(format)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::text::{Analyzer, PositionWeight};
    use proptest::prelude::*;

    fn params(tree: TreeSpec) -> FitParams {
        let mut prev = TfidfConfig::default();
        prev.analyzer.analyzer = Analyzer::Word;
        prev.analyzer.ngram_range = (1, 2);
        let mut prefix = TfidfConfig::default();
        prefix.analyzer.position_weight = PositionWeight::Harmonic;
        FitParams {
            prev,
            prefix,
            tree,
            train: TrainParams::default(),
            prefixes_per_pair: 4,
            min_count: 1.0,
            seed: 0,
            rank: RankParams::default(),
        }
    }

    /// A log where "home depot" is the most popular h-query, but after "cheap flights" users
    /// always search "hotels in boston", and after "weather" always "wells fargo".
    type Log = (Vec<&'static str>, Vec<f64>, Vec<(Option<u32>, u32)>);

    fn log() -> Log {
        let queries = vec![
            "home depot",
            "hotels in boston",
            "cheap flights",
            "weather",
            "wells fargo",
            "walmart",
            "hot dogs",
        ];
        let counts = vec![50.0, 10.0, 10.0, 10.0, 10.0, 40.0, 5.0];
        let mut pairs = Vec::new();
        for _ in 0..10 {
            pairs.push((Some(2), 1)); // cheap flights -> hotels in boston
            pairs.push((Some(3), 4)); // weather -> wells fargo
            pairs.push((None, 0));
            pairs.push((None, 5));
            pairs.push((Some(5), 0)); // walmart -> home depot
            pairs.push((Some(0), 6)); // home depot -> hot dogs
        }
        (queries, counts, pairs)
    }

    fn trees() -> Vec<TreeSpec> {
        let kmeans = crate::index::kmeans::KMeansParams {
            branching: 2,
            max_leaf_size: 2,
            ..Default::default()
        };
        vec![
            TreeSpec::KMeans(kmeans.clone()),
            TreeSpec::Trie { depth: 2 },
            TreeSpec::Hybrid { depth: 1, kmeans },
        ]
    }

    /// A completer trained on [`log`] over `tree`.
    pub(crate) fn trained(tree: &TreeSpec) -> Completer {
        let (queries, counts, pairs) = log();
        Completer::fit(
            &queries,
            &counts,
            &pairs,
            &params(tree.clone()),
            &Progress::default(),
        )
        .unwrap()
    }

    fn top(c: &Completer, prev: &str, prefix: &str, k: usize) -> Vec<String> {
        let mut scratch = CompleteScratch::default();
        c.complete(prev, prefix, k, &RankParams::default(), &mut scratch)
            .unwrap()
            .into_iter()
            .map(|(q, _)| q)
            .collect()
    }

    #[test]
    fn the_session_pattern_is_learned_with_every_tree() {
        for tree in trees() {
            let c = trained(&tree);
            assert_eq!(
                top(&c, "cheap flights", "h", 1),
                ["hotels in boston"],
                "{tree:?}"
            );
            assert_eq!(top(&c, "Weather ", "W", 1), ["wells fargo"], "{tree:?}");
            // No session signal: popularity.
            assert_eq!(top(&c, "", "h", 1), ["home depot"], "{tree:?}");
            assert_eq!(top(&c, "something else", "wa", 3), ["walmart"], "{tree:?}");
        }
    }

    #[test]
    fn unseen_prefixes_get_last_word_completions_below_seen_queries() {
        let c = trained(&trees()[1]);
        let mut scratch = CompleteScratch::default();
        let got = c
            .complete("", "cheap ho", 5, &RankParams::default(), &mut scratch)
            .unwrap();
        let names: Vec<&str> = got.iter().map(|(q, _)| q.as_str()).collect();
        // "cheap" is never followed by a "ho" word: single words by count, home (50), hotels
        // (10), hot (5), each after the typed head.
        assert_eq!(names, ["cheap home", "cheap hotels", "cheap hot"]);
        assert!(got.windows(2).all(|w| w[0].1 > w[1].1));
        // A seen completion comes before generated ones, and scores above them.
        let got = c
            .complete("", "hot", 5, &RankParams::default(), &mut scratch)
            .unwrap();
        assert_eq!(got[0].0, "hotels in boston");
        assert_eq!(got[1].0, "hot dogs");
        assert!(got[2..]
            .iter()
            .all(|(q, s)| *s < got[1].1 && q.starts_with("hot")));
        let no_words = RankParams {
            generate: false,
            ..RankParams::default()
        };
        assert!(c
            .complete("", "cheap ho", 5, &no_words, &mut scratch)
            .unwrap()
            .is_empty());
        assert!(c
            .complete("", "zzz", 5, &RankParams::default(), &mut scratch)
            .unwrap()
            .is_empty());
        assert!(c
            .complete("", "h", 0, &RankParams::default(), &mut scratch)
            .unwrap()
            .is_empty());
        // The empty prefix: every query may follow.
        assert_eq!(top(&c, "cheap flights", "", 1), ["hotels in boston"]);
    }

    #[test]
    fn a_log_without_previous_queries_trains_and_completes_from_popularity() {
        // Every user searched once: the previous-query block has no term at all.
        let queries = ["hello world", "help me", "walmart", "a"];
        let counts = [3.0, 5.0, 1.0, 1.0];
        let firsts = [(None, 0), (None, 1), (None, 2), (None, 3)];
        // A previous query made only of what the word analyzer drops.
        let one_letter = [(Some(3), 0)];
        for pairs in [&firsts[..], &one_letter[..]] {
            for tree in trees() {
                let c = Completer::fit(
                    &queries,
                    &counts,
                    pairs,
                    &params(tree.clone()),
                    &Progress::default(),
                )
                .unwrap();
                assert_eq!(c.features.blocks()[0].n_features(), 0, "{tree:?}");
                let mut he = top(&c, "", "he", 2);
                he.sort();
                assert_eq!(he, ["hello world", "help me"], "{tree:?}");
                assert_eq!(top(&c, "anything", "w", 1), ["walmart"], "{tree:?}");
                let loaded = Completer::from_bytes(&c.to_bytes()).unwrap();
                assert_eq!(top(&loaded, "x", "hel", 2), top(&c, "x", "hel", 2));
            }
        }
    }

    #[test]
    fn bad_input_is_refused() {
        let (queries, counts, pairs) = log();
        let p = params(TreeSpec::Trie { depth: 2 });
        let fit = |q: &[&str], c: &[f64], pairs: &[(Option<u32>, u32)], p: &FitParams| {
            Completer::fit(q, c, pairs, p, &Progress::default()).map(|_| ())
        };
        assert!(fit(&queries, &counts[1..], &pairs, &p).is_err());
        assert!(fit(&queries, &counts, &[(Some(99), 0)], &p).is_err());
        assert!(fit(&["Upper"], &[1.0], &[(None, 0)], &p).is_err());
        assert!(fit(&[" padded"], &[1.0], &[(None, 0)], &p).is_err());
        assert!(fit(&queries, &[f64::NAN; 7], &pairs, &p).is_err());
        assert!(fit(&queries, &counts, &[], &p).is_err());
        let mut high = p.clone();
        high.min_count = 1e9;
        assert!(fit(&queries, &counts, &pairs, &high).is_err());
        let c = trained(&p.tree);
        let mut s = CompleteScratch::default();
        let bad = RankParams {
            model_floor: 0.0,
            ..RankParams::default()
        };
        assert!(c.complete("", "h", 3, &bad, &mut s).is_err());
        assert!(c
            .complete_batch(&["a", "b"], &["h"], 3, &RankParams::default())
            .is_err());
    }

    #[test]
    fn save_load_and_batch_give_the_same_answers() {
        let c = trained(&trees()[2]);
        let bytes = c.to_bytes();
        let loaded = Completer::from_bytes(&bytes).unwrap();
        assert_eq!(loaded.to_bytes(), bytes);
        let cases = [
            ("cheap flights", "h"),
            ("", "w"),
            ("weather", ""),
            ("x", "cheap f"),
        ];
        let (prevs, prefixes): (Vec<&str>, Vec<&str>) = cases.iter().copied().unzip();
        let batch = loaded
            .complete_batch(&prevs, &prefixes, 4, &RankParams::default())
            .unwrap();
        let mut s = CompleteScratch::default();
        for ((prev, prefix), got) in cases.iter().zip(batch) {
            let want = c
                .complete(prev, prefix, 4, &RankParams::default(), &mut s)
                .unwrap();
            assert_eq!(got, want);
        }
        // A flipped byte anywhere is refused.
        for i in (0..bytes.len()).step_by(97) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(Completer::from_bytes(&bad).is_err(), "byte {i}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever is typed, every answer starts with the normalised prefix, answers are
        /// distinct, at most k, and sorted by score.
        #[test]
        fn answers_start_with_the_prefix(prev in "\\PC{0,12}", prefix in "[hwc ]{0,2}\\PC{0,6}", k in 0usize..12) {
            thread_local! {
                static C: Completer = {
                    trained(&TreeSpec::Trie { depth: 2 })
                };
            }
            let got = C.with(|c| {
                c.complete(&prev, &prefix, k, &RankParams::default(), &mut CompleteScratch::default())
            }).unwrap();
            let want = normalize_prefix(&prefix);
            prop_assert!(got.len() <= k);
            for (q, s) in &got {
                prop_assert!(q.starts_with(&want), "{q:?} does not start with {want:?}");
                prop_assert!(s.is_finite());
            }
            prop_assert!(got.windows(2).all(|w| w[0].1 >= w[1].1 && w[0].0 != w[1].0));
        }
    }

    #[test]
    fn normalisation_matches_the_protocol() {
        assert_eq!(
            normalize_query("  Cheap Flights\t\u{3000}"),
            "cheap flights"
        );
        assert_eq!(normalize_prefix("\u{a0} Cheap "), "cheap ");
        // Final sigma, as Python's str.lower.
        assert_eq!(normalize_query("ΟΔΟΣ"), "\u{3bf}\u{3b4}\u{3bf}\u{3c2}");
    }
}
