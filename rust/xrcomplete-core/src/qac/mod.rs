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
//! - a [`QueryLm`] that composes queries never searched whole, copying from the session;
//! - a [`AdditiveRanker`]: the learned ranking stage over every candidate.
//!
//! A call gathers candidates from every source (`candidates.rs`: the model's beam restricted
//! to the prefix's range, the most popular of the range, the queries seen after the previous
//! query, the language model's compositions; for a prefix that looks mistyped, those of
//! corrected prefixes too), computes their features ([`FEATURES`]) and orders them by the
//! ranker. Every answer starts with the (normalised) prefix, or says which correction of it.
//!
//! The ranker is learned from the log itself, never from evaluation data: the parts are first
//! trained on the earlier searches, the candidates of the later ones (`rank_holdout`, by time;
//! `rank_typos` of their prefixes with a random slip) are ranked with them, and the ranker
//! learns to put the query really searched first; then the parts are trained again on the
//! whole log.
//!
//! Rooms: `options.rs` (every option, declared once, saved with the model), `fit.rs` (checks and
//! the parts trained on the pairs, here or in `shards.rs`), `ranker_fit.rs` (the ranker),
//! `complete.rs` (answering), `persist.rs` (the file and the upgrades of older ones); the
//! candidate sources and features in `candidates.rs`, the language model in `lm.rs`.

mod blocklist;
mod candidates;
mod complete;
mod fit;
mod lm;
mod options;
mod persist;
mod ranker_fit;
mod shape;
pub mod shards;
mod transitions;
mod words;

use std::borrow::Cow;
use std::sync::{Arc, PoisonError, RwLock};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::index::TreeSpec;
use crate::live::{LiveCounts, LiveParams, Search};
use crate::persist::{Fields, Kind, Persist, Reader, Writer};
use crate::rank::{
    AdditiveRanker, BoostedTrees, RankLists, Ranker, RankerTrainParams, TreeTrainParams,
};
use crate::rng::SplitMix64;
use crate::strings::Strings;
use crate::text::{is_py_space, FeatureConcat, TfidfConfig};
use crate::xr::{Progress, Stage, TrainParams, XrLinear};
use crate::Trie;

pub use blocklist::Blocklist;
pub use candidates::{
    feature_groups, COMPLETION_FEATURES, FEATURES, MAX_COMPOSED, N_FEATURES, N_SEGMENTS,
};
pub use complete::{Answer, Request};
pub use lm::{ComposeParams, LmScratch, QueryLm, MAX_COMPOSED_WORDS};
pub use options::{
    declared, Declared, DefaultValue, OptionKind, OptionType, Options, Value, OPTIONS,
};
pub use shards::{part_answer, shard_answer, shard_pieces, LocalShards, PairShards, Sharding};
pub use transitions::{Followers, Transitions};

use candidates::{Candidate, GatherScratch, Session, Sources};
pub(crate) use fit::{sample_prefix_ends, Log};
use shards::{HeldOut, Pairs};

pub use crate::text::{normalize_prefix, normalize_query};

/// How [`Completer::complete`] gathers candidates. The defaults were tuned on the AOL
/// validation week. Turning a source off serves without it (the ranker stays as learned).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankParams {
    /// Beam width of the model's search.
    pub beam_size: usize,
    /// Candidates taken from each source, at least `k`.
    pub candidates: usize,
    /// Model score given to a candidate the beam did not return (and the least any counts).
    pub model_floor: f32,
    /// Compose queries with the language model.
    pub generate: bool,
    /// Take candidates from the XR-Linear model.
    pub use_model: bool,
    /// Take the most popular queries of the prefix's range.
    pub use_popular: bool,
    /// Take the queries seen after the previous query.
    pub use_transitions: bool,
    /// Beam width of the language model's search.
    pub compose_beam: usize,
    /// Words the language model adds after the one being typed, at most.
    pub compose_words: usize,
    /// Share of the next-word distribution given to the previous query's words.
    pub copy: f32,
    /// Share given to the previous query's word after the last one in the query (a copied run
    /// of its words goes on, past `compose_words`).
    pub follow: f32,
    /// Typed prefixes of at least this many characters get completions of prefixes one edit
    /// away (a substitution, insertion, deletion or transposition; never of the first
    /// character), ranked with the exact ones, when they look mistyped or those are fewer than
    /// `k` (0: never).
    pub fuzzy_one: usize,
    /// From this many characters, two edits (0: never).
    pub fuzzy_two: usize,
    /// The session's last searches used, the previous query the last of them (1: the
    /// previous query alone): earlier queries are candidates again, their followers in the
    /// log too, and the ranker weighs what each candidate shares with them, by distance.
    pub session_history: usize,
    /// A composed query (never searched, nor one of the session's) is suggested only when the
    /// learned ranker gives it at least this share of the request's candidates that may be
    /// suggested (the softmax of their scores: the chance the ranker, trained listwise, gives
    /// it of being the one searched). The fixed rule's scores are no chances: it keeps all.
    pub composed_floor: f32,
}

/// The session's searches a completion uses at most ([`RankParams::session_history`]).
pub const MAX_SESSION_HISTORY: usize = 32;

impl Default for RankParams {
    fn default() -> Self {
        RankParams {
            beam_size: 10,
            candidates: 10,
            model_floor: 1e-4,
            generate: true,
            use_model: true,
            use_popular: true,
            use_transitions: true,
            compose_beam: 6,
            compose_words: 2,
            copy: 0.2,
            follow: 0.3,
            fuzzy_one: 5,
            fuzzy_two: 9,
            session_history: 5,
            composed_floor: COMPOSED_FLOOR,
        }
    }
}

/// The default [`RankParams::composed_floor`].
pub const COMPOSED_FLOOR: f32 = 0.002;

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
        if !(1..=MAX_SESSION_HISTORY).contains(&self.session_history) {
            return bad(format!(
                "session_history must be in 1..={MAX_SESSION_HISTORY}, got {}",
                self.session_history
            ));
        }
        if !(0.0..1.0).contains(&self.composed_floor) {
            return bad(format!(
                "composed_floor must be in [0, 1), got {}",
                self.composed_floor
            ));
        }
        if self.fuzzy_two != 0 && self.fuzzy_two < self.fuzzy_one {
            return bad(format!(
                "fuzzy_two ({}) must be 0 or at least fuzzy_one ({})",
                self.fuzzy_two, self.fuzzy_one
            ));
        }
        self.compose().check()
    }

    /// Edits allowed to a typed prefix of `chars` characters.
    fn fuzzy_edits(&self, chars: usize) -> u32 {
        let at = |from: usize| from != 0 && chars >= from;
        if at(self.fuzzy_two) {
            2
        } else if at(self.fuzzy_one) {
            1
        } else {
            0
        }
    }

    /// The language model's search options among these.
    fn compose(&self) -> ComposeParams {
        ComposeParams {
            beam: self.compose_beam,
            max_words: self.compose_words,
            copy: self.copy,
            follow: self.follow,
        }
    }

    /// The same options with at least `k` candidates per source.
    fn for_k(&self, k: usize) -> RankParams {
        RankParams {
            candidates: self.candidates.max(k),
            ..*self
        }
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
    /// The privacy floor: queries searched by fewer distinct users are not suggested whole,
    /// nor labels, nor taught to the language model (so none of their words or word sequences
    /// can be composed from them). Above 1, [`Completer::fit_with_users`] must say how many
    /// users searched each query.
    pub min_users: f64,
    /// Seed of the prefix sampling.
    pub seed: u64,
    /// Default ranking.
    pub rank: RankParams,
    /// Absolute discount of the language model, in (0, 1].
    pub lm_discount: f32,
    /// The language model counts a query `searches ^ lm_count_power` times (1: every search,
    /// 0: once per distinct query), in [0, 1].
    pub lm_count_power: f64,
    /// Share of the pairs, the latest, whose candidates teach the ranker (0: the fixed rule);
    /// at most [`shards::MAX_HELD_OUT`] pairs.
    pub rank_holdout: f64,
    /// Prefix lengths sampled per held-out pair for the ranker.
    pub rank_prefixes: usize,
    /// Share of the ranker's prefixes long enough for typo tolerance that get one random edit
    /// (their next query still the right answer), in [0, 1]: how the ranker learns to weigh
    /// corrected prefixes against the typed one.
    pub rank_typos: f64,
    /// Training of the additive ranker (when `trees` is `None`).
    pub ranker: RankerTrainParams,
    /// Training of the boosted trees that rank (`None`: the additive ranker).
    pub trees: Option<TreeTrainParams>,
    /// Ranking features left out of the learned ranker (names of [`FEATURES`]).
    pub features_off: Vec<String>,
    /// Half-life (seconds) of the live counts recorded while the ranker learns, when the
    /// pairs have times (in seconds); as the live counts it will serve with.
    pub live_half_life: f64,
    /// Words and phrases no suggestion may contain ([`Blocklist`]); more can be added later.
    pub blocklist: Vec<String>,
    /// Train each node of the matcher only on the prefixes whose label range leaves its
    /// choice open ([`xr::train_with`]'s `ranges`): the beam is always restricted to the
    /// prefix's range, so the other rows teach it nothing it uses. `None`: from
    /// [`RANGE_ROWS_FROM`] pairs on.
    pub range_rows: Option<bool>,
    /// The declared options these were built from ([`Options::fit_params`]), saved with the
    /// model. (Fields changed after that are saved as far as they are ranking options.)
    pub options: Options,
}

impl Default for FitParams {
    /// [`OPTIONS`]' defaults, with default vectorizers.
    fn default() -> Self {
        Options::default()
            .fit_params(TfidfConfig::default(), TfidfConfig::default())
            .expect("the declared defaults are valid")
    }
}

/// Logs of at least this many pairs (every search of the fit, after its previous query or
/// none) train with `range_rows` unless told otherwise. On aol_train (about 320,000 such pairs,
/// 120,797 with a previous query) it costs 0.0010 MRR@10 per case and 0.0009 per pair on
/// aol_valid for a fit about 3.5x faster, so a log of AOL's size keeps the more accurate path;
/// the time it saves grows faster than the log (a million pairs: 6.2x the time of 250,000
/// without it, `benches/scale.py`).
pub const RANGE_ROWS_FROM: usize = 500_000;

/// One candidate of [`Completer::explain`].
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    /// The candidate query.
    pub query: String,
    /// Its ranking score.
    pub score: f32,
    /// Where it came from (seen, composed or live).
    pub origin: Origin,
    /// The ranker's segment it was scored in.
    pub segment: u32,
    /// Its ranking features, in [`FEATURES`] order.
    pub features: [f32; N_FEATURES],
}

/// Where a suggestion came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A query of the log.
    Seen,
    /// Composed by the language model, never searched whole.
    Composed,
    /// Searched since the model was built (recorded live), not in its log.
    Live,
    /// One of the session's own searches (given in the request), in neither the log nor the
    /// live counts: shown back to the one who searched it.
    Session,
    /// A query (of the log or composed) that starts with a corrected prefix (a typo fixed),
    /// not with the typed one: its first `matched` bytes are the corrected prefix.
    Fuzzy {
        /// Bytes of the suggestion that the corrected prefix covers.
        matched: usize,
    },
}

impl Origin {
    /// `"seen"`, `"composed"`, `"live"`, `"session"` or `"fuzzy"`.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Seen => "seen",
            Origin::Composed => "composed",
            Origin::Live => "live",
            Origin::Session => "session",
            Origin::Fuzzy { .. } => "fuzzy",
        }
    }

    /// The part of suggestion `text` that the typer covered, in Unicode code points from its
    /// start: the normalised typed prefix (`typed` code points), or for a fuzzy answer the
    /// corrected prefix it matched. What a search box shows plain (the rest bold); the server's
    /// `highlight` and the bindings' `Completion.matched` both read it here.
    pub fn highlight(self, text: &str, typed: usize) -> usize {
        match self {
            Origin::Fuzzy { matched } => text.get(..matched).map_or(0, |m| m.chars().count()),
            _ => typed,
        }
    }
}

/// What [`Completer::fold`] did with the searches it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Folded {
    /// Searches folded into the counts.
    pub folded: usize,
    /// Searches of queries the completer cannot suggest, left out.
    pub unknown: usize,
}

/// Reusable buffers of [`Completer::complete`]: one per thread.
#[derive(Debug, Default, Clone)]
pub struct CompleteScratch {
    gather: GatherScratch,
    /// The request's earlier queries, normalised.
    earlier: Vec<String>,
}

/// A trained session-aware completer. Immutable: `complete` takes `&self` and a scratch, so one
/// completer serves many threads.
#[derive(Debug)]
pub struct Completer {
    sources: Sources,
    /// The ranker of requests with the previous query alone (or none).
    ranker: Ranker,
    /// The ranker of requests with earlier searches of the session too: `ranker`'s trees
    /// boosted further on such lists (None: `ranker` ranks them, as it did in files saved
    /// before it).
    session_ranker: Option<Ranker>,
    /// True when the ranker was learned (false: the fixed rule, for a log too small).
    learned: bool,
    rank: RankParams,
    /// The options it was trained with (its ranking options are `rank`).
    options: Options,
    /// Replaced whole when terms are added or removed: a completion reads one version.
    blocklist: RwLock<Arc<Blocklist>>,
    /// The privacy floor it was trained with ([`FitParams::min_users`]): above 1, queries
    /// known only from live counts (whose users are not counted) are not suggested whole.
    min_users: f64,
}

/// Who searched each query of a log, for the privacy floor ([`FitParams::min_users`]).
#[derive(Debug, Clone, Copy)]
pub struct QueryUsers<'a> {
    /// Distinct users of each query (at least up to the floor).
    pub counts: &'a [f64],
    /// Their ids, when known (at least up to the floor), as CSR: query `i`'s are
    /// `ids[offsets[i]..offsets[i + 1]]`. With them the language model counts each word
    /// sequence by the distinct users who searched it in any query; without, it learns only
    /// from the queries above the floor.
    pub ids: Option<(&'a [u64], &'a [u32])>,
}

impl Completer {
    fn from_parts(
        sources: Sources,
        (ranker, session_ranker): (Ranker, Option<Ranker>),
        learned: bool,
        options: Options,
        blocklist: Blocklist,
    ) -> Result<Self> {
        let rank = options.rank_params()?;
        let min_users = options.min_users();
        let bad = |what: String| Err(Error::InvalidInput(format!("completer: {what}")));
        let Sources {
            features,
            model,
            queries,
            transitions,
            ..
        } = &sources;
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
        // Trees saved before later features never read them: the features are in the order
        // they were added, and a tree's segment input follows its own features.
        for ranker in std::iter::once(&ranker).chain(&session_ranker) {
            let features_ok = match ranker {
                Ranker::Trees(t) => t.n_features() <= N_FEATURES,
                Ranker::Additive(a) => a.n_features() == N_FEATURES,
            };
            if !features_ok || ranker.n_segments() != N_SEGMENTS {
                return bad(format!(
                    "a ranker of {} features in {} segments; completions have {N_FEATURES} in \
                     {N_SEGMENTS}",
                    ranker.n_features(),
                    ranker.n_segments()
                ));
            }
        }
        if !(min_users.is_finite() && min_users >= 1.0) {
            return bad(format!("a privacy floor of {min_users} users"));
        }
        // Every completion restricts the beam to a label range: prepare for it before serving.
        model.prepare_label_ranges();
        Ok(Completer {
            sources,
            ranker,
            session_ranker,
            learned,
            rank,
            options,
            blocklist: RwLock::new(Arc::new(blocklist)),
            min_users,
        })
    }

    /// The completer with recorded searches folded into its counts (undecayed): each search of
    /// a query it can suggest adds its count to the query's popularity and to its transitions
    /// after the search's previous query. Searches of queries it does not know are left out and
    /// counted: those queries would be new labels of the model, which takes training. The
    /// model, the language model and the ranker are unchanged.
    pub fn fold(self, searches: &[Search]) -> Result<(Self, Folded)> {
        let Completer {
            sources,
            ranker,
            session_ranker,
            learned,
            options,
            blocklist,
            ..
        } = self;
        let blocklist = Arc::unwrap_or_clone(
            blocklist
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let Sources {
            features,
            model,
            queries,
            transitions,
            lm,
        } = sources;
        let mut weights = queries.weights().to_vec();
        let mut extra: Vec<(&str, u32, f32)> = Vec::new();
        let mut folded = Folded::default();
        for s in searches {
            if !(s.count.is_finite() && s.count > 0.0) {
                return Err(Error::InvalidInput(format!(
                    "a search of {:?} counts {}; counts must be positive",
                    s.query, s.count
                )));
            }
            match queries.id(&s.query) {
                Some(label) => {
                    weights[label as usize] += s.count;
                    extra.push((&s.prev, label, s.count as f32));
                    folded.folded += 1;
                }
                None => folded.unknown += 1,
            }
        }
        // The same keys: the same ids, so the model's labels still name the same queries.
        let new_queries = Trie::new(queries.keys().zip(weights))?;
        let new_transitions =
            Transitions::from_counts(transitions.entries().chain(extra.iter().copied()))?;
        let sources = Sources {
            features,
            model,
            queries: new_queries,
            transitions: new_transitions,
            lm,
        };
        let rankers = (ranker, session_ranker);
        let folded_completer = Self::from_parts(sources, rankers, learned, options, blocklist)?;
        Ok((folded_completer, folded))
    }

    /// The default ranking options.
    pub fn rank_params(&self) -> &RankParams {
        &self.rank
    }

    /// The options it was trained with (files saved before options were: its ranking
    /// options, privacy floor and blocklist, the other options at their defaults).
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The blocked terms now in force.
    pub fn blocklist(&self) -> Arc<Blocklist> {
        Arc::clone(
            &self
                .blocklist
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Blocks `terms` from now on (see [`Blocklist::add`]); returns how many were new.
    /// Completions already running finish with the list they started with.
    pub fn block<S: AsRef<str>>(&self, terms: &[S]) -> Result<usize> {
        self.edit_blocklist(|b| b.add(terms))
    }

    /// Unblocks `terms`; returns how many were blocked.
    pub fn unblock<S: AsRef<str>>(&self, terms: &[S]) -> Result<usize> {
        self.edit_blocklist(|b| b.remove(terms))
    }

    fn edit_blocklist(&self, edit: impl FnOnce(&mut Blocklist) -> Result<usize>) -> Result<usize> {
        let mut guard = self
            .blocklist
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = Blocklist::clone(&guard);
        let changed = edit(&mut next)?;
        if changed > 0 {
            *guard = Arc::new(next);
        }
        Ok(changed)
    }

    /// The queries that can be suggested whole, with their popularity (label ids = trie ids).
    pub fn queries(&self) -> &Trie {
        &self.sources.queries
    }

    /// The model.
    pub fn model(&self) -> &XrLinear {
        &self.sources.model
    }

    /// The features.
    pub fn features(&self) -> &FeatureConcat {
        &self.sources.features
    }

    /// The language model.
    pub fn lm(&self) -> &QueryLm {
        &self.sources.lm
    }

    /// The ranking stage, and whether it was learned (else: the fixed rule).
    pub fn ranker(&self) -> (&Ranker, bool) {
        (&self.ranker, self.learned)
    }

    /// The ranker of requests with earlier searches of the session, when it has one of its
    /// own (else [`Completer::ranker`] ranks them).
    pub fn session_ranker(&self) -> Option<&Ranker> {
        self.session_ranker.as_ref()
    }

    /// Heap memory in bytes (approximately).
    pub fn memory_bytes(&self) -> usize {
        self.sources.memory_bytes()
            + self.ranker.memory_bytes()
            + self.session_ranker.as_ref().map_or(0, Ranker::memory_bytes)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::ranker_fit::inject_typo;
    use super::*;

    /// `c`'s answers to one request, as (query, score, origin).
    fn ask_live(
        c: &Completer,
        prev: &str,
        prefix: &str,
        k: usize,
        params: &RankParams,
        live: Option<&LiveCounts>,
        s: &mut CompleteScratch,
    ) -> Result<Vec<(String, f32, Origin)>> {
        let request = Request::new(prev, prefix, k).ranked(params).with_live(live);
        Ok(c.complete(&request, s)?
            .into_iter()
            .map(|a| (a.query, a.score, a.origin))
            .collect())
    }

    fn ask(
        c: &Completer,
        prev: &str,
        prefix: &str,
        k: usize,
        params: &RankParams,
        s: &mut CompleteScratch,
    ) -> Result<Vec<(String, f32, Origin)>> {
        ask_live(c, prev, prefix, k, params, None, s)
    }

    fn plain(
        c: &Completer,
        prev: &str,
        prefix: &str,
        k: usize,
        params: &RankParams,
        s: &mut CompleteScratch,
    ) -> Result<Vec<(String, f32)>> {
        Ok(ask(c, prev, prefix, k, params, s)?
            .into_iter()
            .map(|(q, score, _)| (q, score))
            .collect())
    }

    fn batch(
        c: &Completer,
        prevs: &[&str],
        prefixes: &[&str],
        k: usize,
        params: &RankParams,
    ) -> Result<Vec<Vec<(String, f32)>>> {
        if prevs.len() != prefixes.len() {
            return Err(Error::InvalidInput(
                "previous queries and prefixes differ".into(),
            ));
        }
        let requests: Vec<Request<'_>> = prevs
            .iter()
            .zip(prefixes)
            .map(|(prev, prefix)| Request::new(prev, prefix, k).ranked(params))
            .collect();
        Ok(c.complete_batch(&requests)?
            .into_iter()
            .map(|answers| answers.into_iter().map(|a| (a.query, a.score)).collect())
            .collect())
    }
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
            prefixes_per_pair: 4,
            ..FitParams::default()
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
            TreeSpec::trie(2),
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
            None,
            &params(tree.clone()),
            &Progress::default(),
        )
        .unwrap()
    }

    /// Pairs in shards here ([`LocalShards`]), whose rows always meet through a shuffle (even
    /// in one shard); counts the answers of its shuffles.
    #[derive(Debug)]
    struct HereShards {
        shards: LocalShards<'static>,
        pieces: std::sync::atomic::AtomicUsize,
    }

    impl HereShards {
        fn new(
            pairs: &[(Option<u32>, u32)],
            times: Option<&[f64]>,
            cuts: &[usize],
            parts: usize,
        ) -> Self {
            HereShards {
                shards: LocalShards::cut(pairs, times, cuts, parts),
                pieces: Default::default(),
            }
        }
    }

    impl PairShards for HereShards {
        fn sizes(&self) -> Result<Vec<u64>> {
            self.shards.sizes()
        }

        fn timed(&self) -> Result<bool> {
            self.shards.timed()
        }

        fn map(&self, task: Vec<u8>) -> Result<Vec<Vec<u8>>> {
            self.shards.map(task)
        }

        fn shuffle(&self, task: Vec<u8>, n_parts: usize) -> Result<Vec<Vec<u8>>> {
            let answers = self.shards.shuffle(task, n_parts)?;
            self.pieces
                .fetch_add(answers.len(), std::sync::atomic::Ordering::Relaxed);
            Ok(answers)
        }

        fn n_parts(&self) -> Result<usize> {
            self.shards.n_parts()
        }
    }

    #[test]
    fn a_completer_trained_on_shards_is_the_same() {
        // Enough pairs that the ranker is learned: the parts trained on the earlier pairs (the
        // held-out ones left out by each shard) count in the completer.
        let (queries, counts, pairs) = combination_log(600);
        // Times with ties, not in the pairs' order: the held-out pairs are not the last ones.
        let times: Vec<f64> = (0..pairs.len()).map(|i| ((i * 7) % 11) as f64).collect();
        let n = pairs.len();
        for tree in trees() {
            for (cuts, timed, range_rows, parts) in [
                (vec![n / 3, 2 * n / 3], false, false, 3),
                (vec![1, n / 2, n / 2], true, true, 2),
                (vec![], true, false, 1),
            ] {
                let times = timed.then_some(&times[..]);
                let shards = Arc::new(HereShards::new(&pairs, times, &cuts, parts));
                let params = FitParams {
                    range_rows: Some(range_rows),
                    ..params(tree.clone())
                };
                let sharding = Sharding {
                    shards: shards.clone(),
                    min_subtrees: 2,
                };
                let progress = Progress::default();
                let here =
                    Completer::fit(&queries, &counts, &pairs, times, &params, &progress).unwrap();
                let there = Completer::fit_on_shards(
                    &queries, &counts, None, &sharding, &params, &progress,
                )
                .unwrap();
                assert!(here.learned);
                assert_eq!(
                    here.to_bytes(),
                    there.to_bytes(),
                    "{tree:?} {cuts:?} {timed}"
                );
                assert!(shards.pieces.load(std::sync::atomic::Ordering::Relaxed) > 0);
            }
        }
    }

    #[test]
    fn held_out_pairs_come_with_the_searches_of_their_session_before_them() {
        // Two sessions of queries 0 1 2 3 4 and 5 6, then a pair whose previous query is not
        // the next query of the pair before it (pairs given without their sessions' first
        // queries): its session is its previous query alone.
        let pairs = vec![
            (None, 0),
            (Some(0), 1),
            (Some(1), 2),
            (Some(2), 3),
            (Some(3), 4),
            (None, 5),
            (Some(5), 6),
            (Some(2), 7),
        ];
        let shards = LocalShards::one(&pairs, None);
        let there = Pairs::new(&shards, 1, 8).unwrap();
        let late = there
            .late(HeldOut {
                time: None,
                from: 0,
            })
            .unwrap();
        let earlier: Vec<&[u32]> = (0..pairs.len()).map(|i| late.earlier_of(i)).collect();
        let expected: [&[u32]; 8] = [&[], &[], &[0], &[0, 1], &[0, 1, 2], &[], &[], &[]];
        assert_eq!(earlier, expected);
        // At most MAX_SESSION_HISTORY - 1, the nearest ones.
        let long: Vec<(Option<u32>, u32)> = (0..100u32).map(|i| (i.checked_sub(1), i)).collect();
        let shards = LocalShards::one(&long, None);
        let late = Pairs::new(&shards, 1, 100)
            .unwrap()
            .late(HeldOut {
                time: None,
                from: 99,
            })
            .unwrap();
        let want: Vec<u32> = (98 - (MAX_SESSION_HISTORY as u32 - 1)..98).collect();
        assert_eq!(late.earlier_of(0), &want[..]);
    }

    #[test]
    fn at_most_a_million_pairs_are_held_out_for_the_ranker() {
        let rule = |n: usize| HeldOut::new(n, None, 0.1).map(|h| n as u64 - h.from);
        assert_eq!(rule(9), None);
        assert_eq!(rule(1_000), Some(100));
        assert_eq!(rule(10_000_000), Some(shards::MAX_HELD_OUT as u64));
        assert_eq!(rule(50_000_000), Some(shards::MAX_HELD_OUT as u64));
    }

    /// Shards whose first shuffle fails (a worker lost for good), as an invalid input would.
    #[derive(Debug)]
    struct FailOnce {
        shards: HereShards,
        failed: std::sync::atomic::AtomicBool,
    }

    impl PairShards for FailOnce {
        fn sizes(&self) -> Result<Vec<u64>> {
            self.shards.sizes()
        }

        fn timed(&self) -> Result<bool> {
            self.shards.timed()
        }

        fn map(&self, task: Vec<u8>) -> Result<Vec<Vec<u8>>> {
            self.shards.map(task)
        }

        fn shuffle(&self, task: Vec<u8>, n_parts: usize) -> Result<Vec<Vec<u8>>> {
            if !self.failed.swap(true, std::sync::atomic::Ordering::Relaxed) {
                return Err(Error::InvalidInput("a worker was lost".into()));
            }
            self.shards.shuffle(task, n_parts)
        }

        fn n_parts(&self) -> Result<usize> {
            self.shards.n_parts()
        }
    }

    #[test]
    fn shards_that_fail_while_the_ranker_learns_fail_the_fit() {
        // The first shuffle trains the parts the ranker learns with: its failure must not be
        // taken for a log with nothing to learn from (a fixed ranker, silently).
        let (queries, counts, pairs) = combination_log(600);
        let sharding = Sharding {
            shards: Arc::new(FailOnce {
                shards: HereShards::new(&pairs, None, &[300], 2),
                failed: Default::default(),
            }),
            min_subtrees: 2,
        };
        let params = params(TreeSpec::trie(2));
        let got = Completer::fit_on_shards(
            &queries,
            &counts,
            None,
            &sharding,
            &params,
            &Progress::default(),
        );
        assert!(matches!(got, Err(Error::Engine(m)) if m.contains("a worker was lost")));
    }

    #[test]
    fn shards_of_bad_pairs_and_bad_tasks_are_errors() {
        let (queries, counts, mut pairs) = log();
        let tree = trees().remove(0);
        pairs.push((None, queries.len() as u32));
        let sharding = Sharding {
            shards: Arc::new(HereShards::new(&pairs, None, &[5], 1)),
            min_subtrees: 2,
        };
        let got = Completer::fit_on_shards(
            &queries,
            &counts,
            None,
            &sharding,
            &params(tree),
            &Progress::default(),
        );
        assert!(matches!(got, Err(Error::Engine(m)) if m.contains("out of range")));
        // A damaged task, or one answered by the wrong function, is an error too.
        assert!(shard_answer(b"not a task", 0, &pairs, None).is_err());
        assert!(part_answer(&[vec![b"not a piece".as_slice()]]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The pairs held out for the ranker, found by counting in the shards, are those of
        /// one machine (times with ties, of any sign and size, pairs cut anywhere), and so are
        /// the counts of next queries and transitions.
        #[test]
        fn shards_hold_out_the_pairs_one_machine_holds_out(
            times in proptest::collection::vec(-3i32..4, 1..60),
            scale in prop_oneof![Just(1.0f64), Just(1e-300), Just(1e300)],
            cuts in proptest::collection::vec(0usize..60, 0..4),
            share in 0.0f64..1.0,
            timed in any::<bool>(),
        ) {
            let times: Vec<f64> = times.iter().map(|&t| f64::from(t) * scale).collect();
            let pairs: Vec<(Option<u32>, u32)> = (0..times.len() as u32)
                .map(|i| ((i % 2 == 0).then_some(i % 3), i % 3))
                .collect();
            let times = timed.then_some(&times[..]);
            let shards = HereShards::new(&pairs, times, &cuts, 1);
            let there = Pairs::new(&shards, 2, 3).unwrap();
            // What one machine finds with all the pairs in hand.
            let rule = HeldOut::new(pairs.len(), times, share);
            prop_assert_eq!(rule, there.held_out(share).unwrap());
            let time = |i: usize| times.map(|t| t[i]);
            let late = |i: usize| rule.is_some_and(|r| r.is_late(i as u64, time(i)));
            if let Some(rule) = rule {
                let expected: Vec<_> = (0..pairs.len())
                    .filter(|&i| late(i))
                    .map(|i| (pairs[i].0, pairs[i].1, time(i).unwrap_or(i as f64)))
                    .collect();
                prop_assert_eq!(expected, there.late(rule).unwrap().pairs);
                let mut counts = vec![(0u32, 0u32); 3];
                for (i, &(_, q)) in pairs.iter().enumerate() {
                    counts[q as usize].0 += 1;
                    counts[q as usize].1 += u32::from(!late(i));
                }
                prop_assert_eq!(counts, there.next_counts(3, rule).unwrap());
            }
            let label_of = [Some(0), None, Some(1)];
            let mut found: Vec<(Option<u32>, u32)> = (0..pairs.len())
                .filter(|&i| !late(i))
                .filter_map(|i| label_of[pairs[i].1 as usize].map(|l| (pairs[i].0, l)))
                .collect();
            found.sort_unstable();
            let mut expected: Vec<(Option<u32>, u32, u64)> = Vec::new();
            for (p, l) in found {
                match expected.last_mut() {
                    Some(last) if (last.0, last.1) == (p, l) => last.2 += 1,
                    _ => expected.push((p, l, 1)),
                }
            }
            prop_assert_eq!(
                expected,
                there.transition_counts(&label_of, rule).unwrap()
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The searches before each held-out pair's previous query are those of its whole
        /// session, wherever the shards cut it (sessions longer than what is kept included).
        #[test]
        fn held_out_histories_do_not_depend_on_the_cuts(
            sessions in proptest::collection::vec(
                proptest::collection::vec(0u32..6, 1..45), 1..6),
            cuts in proptest::collection::vec(0usize..120, 0..6),
            share in 0.05f64..1.0,
        ) {
            let mut pairs = Vec::new();
            for session in &sessions {
                let mut last = None;
                for &q in session {
                    if last != Some(q) {
                        pairs.push((last, q));
                        last = Some(q);
                    }
                }
            }
            let one = LocalShards::one(&pairs, None);
            let cut = LocalShards::cut(&pairs, None, &cuts, 1);
            let here = Pairs::new(&one, 1, 6).unwrap();
            let there = Pairs::new(&cut, 1, 6).unwrap();
            if let Some(rule) = here.held_out(share).unwrap() {
                let late = here.late(rule).unwrap();
                prop_assert_eq!(&late, &there.late(rule).unwrap());
                // Each pair's history, as its session had it.
                let mut k = 0;
                for session in &sessions {
                    let mut seen: Vec<u32> = Vec::new();
                    for &q in session {
                        if seen.last() == Some(&q) {
                            continue;
                        }
                        if k >= rule.from as usize {
                            let i = k - rule.from as usize;
                            let before = seen.len().saturating_sub(1);
                            let want = &seen[before.saturating_sub(MAX_SESSION_HISTORY - 1)..before];
                            prop_assert_eq!(late.earlier_of(i), want);
                        }
                        seen.push(q);
                        k += 1;
                    }
                }
            }
        }
    }

    fn top(c: &Completer, prev: &str, prefix: &str, k: usize) -> Vec<String> {
        let mut scratch = CompleteScratch::default();
        plain(c, prev, prefix, k, &RankParams::default(), &mut scratch)
            .unwrap()
            .into_iter()
            .map(|(q, _)| q)
            .collect()
    }

    #[test]
    fn folded_searches_add_to_popularity_and_transitions() {
        let c = trained(&TreeSpec::trie(2));
        let score_of = |c: &Completer, prev: &str, query: &str| {
            let mut scratch = CompleteScratch::default();
            plain(c, prev, "h", 10, &RankParams::default(), &mut scratch)
                .unwrap()
                .into_iter()
                .find(|(q, _)| q == query)
                .map(|(_, s)| s)
                .unwrap()
        };
        let (alone, after_weather) = (
            score_of(&c, "", "hot dogs"),
            score_of(&c, "weather", "hot dogs"),
        );
        let search = |query: &str, prev: &str, count: f64| Search {
            query: query.into(),
            prev: prev.into(),
            count,
            time: 0.0,
            client: None,
        };
        let searches = [
            search("hot dogs", "", 100.0),
            search("hot dogs", "weather", 30.0),
            search("never searched", "", 5.0),
        ];
        let before = c.queries().get("hot dogs").unwrap();
        let (c, folded) = c.fold(&searches).unwrap();
        assert_eq!(
            folded,
            Folded {
                folded: 2,
                unknown: 1
            }
        );
        assert_eq!(c.queries().get("hot dogs").unwrap(), before + 130.0);
        let label = c.queries().id("hot dogs").unwrap();
        let after_weather_count = c
            .sources
            .transitions
            .followers("weather")
            .map(|f| f.count(label));
        assert_eq!(after_weather_count, Some(30.0));
        // More popular, and more often after "weather": ranked higher in both cases.
        assert!(score_of(&c, "", "hot dogs") > alone);
        assert!(score_of(&c, "weather", "hot dogs") > after_weather);
        // Saved and loaded, the folded completer answers the same.
        let again = Completer::from_bytes(&c.to_bytes()).unwrap();
        assert_eq!(top(&again, "weather", "h", 3), top(&c, "weather", "h", 3));
        assert!(c.fold(&[search("hot dogs", "", -1.0)]).is_err());
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
            assert_eq!(top(&c, "something else", "wa", 1), ["walmart"], "{tree:?}");
        }
    }

    #[test]
    fn a_slip_gets_the_completions_of_the_prefix_meant() {
        let c = trained(&trees()[1]);
        let mut s = CompleteScratch::default();
        let d = RankParams::default();
        let got = ask(&c, "", "wetaher", 3, &d, &mut s).unwrap();
        assert_eq!(got[0].0, "weather");
        let Origin::Fuzzy { matched } = got[0].2 else {
            panic!("{got:?}")
        };
        assert!(matched >= 5 && "weather".starts_with(&got[0].0[..matched]));
        // Every score finite, also when the typed words are all the previous query's (none
        // rarest) and corrections fill the list.
        let got = ask(&c, "wetaher channel", "wetaher", 10, &d, &mut s).unwrap();
        assert!(
            got.len() > 1 && got.iter().all(|g| g.1.is_finite()),
            "{got:?}"
        );
        // Typed right, or too short to correct, or fuzzy off: no fuzzy answer.
        let off = RankParams {
            fuzzy_one: 0,
            fuzzy_two: 0,
            ..d
        };
        for (prefix, p) in [("weath", &d), ("wtr", &d), ("wetaher", &off)] {
            let got = ask(&c, "", prefix, 5, p, &mut s).unwrap();
            assert!(
                got.iter().all(|g| !matches!(g.2, Origin::Fuzzy { .. })),
                "{prefix}"
            );
        }
        assert!(RankParams {
            fuzzy_one: 9,
            fuzzy_two: 5,
            ..d
        }
        .check()
        .is_err());
        // Blocked terms stay blocked through corrections.
        c.block(&["weather"]).unwrap();
        let got = ask(&c, "", "wetaher", 5, &d, &mut s).unwrap();
        assert!(got.iter().all(|g| !g.0.contains("weather")), "{got:?}");
        c.unblock(&["weather"]).unwrap();
        // The options are saved with the model.
        let mut tuned = trained(&trees()[1]);
        tuned.rank.fuzzy_one = 6;
        tuned.rank.fuzzy_two = 0;
        let loaded = Completer::from_bytes(&tuned.to_bytes()).unwrap();
        assert_eq!(
            (
                loaded.rank_params().fuzzy_one,
                loaded.rank_params().fuzzy_two
            ),
            (6, 0)
        );
    }

    #[test]
    fn a_ranker_saved_before_later_features_loads_with_them_weighing_nothing() {
        let c = trained(&trees()[1]);
        // Saved before each of the later typo features (fixed_rarest), and before the
        // session's history.
        let before = candidates::BEFORE_HISTORY;
        for old_n in (before - candidates::LATER_TYPO_FEATURES..before).chain([before]) {
            let old =
                AdditiveRanker::fixed(&candidates::fixed_weights()[..old_n], N_SEGMENTS).unwrap();
            let mut legacy = Completer::from_bytes(&c.to_bytes()).unwrap();
            legacy.ranker = Ranker::Additive(old.clone());
            let loaded = Completer::from_bytes(&legacy.to_bytes()).unwrap();
            let (ranker, _) = loaded.ranker();
            assert_eq!(ranker.n_features(), N_FEATURES);
            let mut x = [0.5f32; N_FEATURES];
            for v in [0.0, 3.0] {
                x[old_n..].fill(v);
                for seg in 0..N_SEGMENTS {
                    assert_eq!(ranker.score(seg, &x), old.score(seg, &x[..old_n]));
                }
            }
        }
    }

    #[test]
    fn a_ranker_saved_before_typo_features_ranks_corrections_after_the_typed_answers() {
        const OLD: usize = candidates::BEFORE_HISTORY - candidates::TYPO_FEATURES;
        let c = trained(&trees()[1]);
        let mut s = CompleteScratch::default();
        let d = RankParams::default();
        // That file's ranker: the learned one without the last two features.
        let (ranker, _) = c.ranker();
        let old = AdditiveRanker::fixed(&candidates::fixed_weights()[..OLD], 6).unwrap();
        assert_eq!(ranker.n_features(), N_FEATURES);
        let padded = old.with_fixed(&candidates::fixed_weights()[OLD..]).unwrap();
        let mut x = [0.5f32; N_FEATURES];
        x[OLD..].fill(0.0);
        x[OLD] = 1.0;
        assert_eq!(padded.score(1, &x), old.score(1, &x[..OLD]) - 200.0);
        let mut file = c.to_bytes();
        let loaded = Completer::from_bytes(&file).unwrap();
        assert_eq!(
            ask(&loaded, "", "wetaher", 5, &d, &mut s).unwrap(),
            ask(&c, "", "wetaher", 5, &d, &mut s).unwrap()
        );
        // Written again with a ranker of two features fewer, it loads, and a prefix typed
        // right but for one letter of a seen query's gets the typed answers first.
        let mut legacy = Completer::from_bytes(&file).unwrap();
        legacy.ranker = Ranker::Additive(old);
        file = legacy.to_bytes();
        let loaded = Completer::from_bytes(&file).unwrap();
        assert_eq!(loaded.ranker().0.n_features(), N_FEATURES);
        let got = ask(&loaded, "", "weathr", 10, &d, &mut s).unwrap();
        let first_fuzzy = got.iter().position(|g| matches!(g.2, Origin::Fuzzy { .. }));
        let last_typed = got
            .iter()
            .rposition(|g| !matches!(g.2, Origin::Fuzzy { .. }));
        assert!(first_fuzzy.is_some(), "{got:?}");
        assert!(
            last_typed.is_none_or(|l| l < first_fuzzy.unwrap()),
            "{got:?}"
        );
    }

    #[test]
    fn trees_saved_before_a_later_feature_load_and_rank_as_they_did() {
        let c = trained(&trees()[1]);
        let mut lists = RankLists::new(N_FEATURES - 1);
        for i in 0..300 {
            for j in 0..4 {
                let mut x = [0.0f32; N_FEATURES - 1];
                x[0] = ((i * 7 + j * 3) % 11) as f32;
                x[N_FEATURES - 2] = j as f32;
                lists
                    .push(&x, f32::from(u8::from(j == i % 4)), (i % N_SEGMENTS) as u32)
                    .unwrap();
            }
            lists.finish();
        }
        let old = BoostedTrees::train(&lists, N_SEGMENTS, None, None, &TreeTrainParams::default())
            .unwrap();
        let mut legacy = Completer::from_bytes(&c.to_bytes()).unwrap();
        legacy.ranker = Ranker::Trees(old.clone());
        let loaded = Completer::from_bytes(&legacy.to_bytes()).unwrap();
        let mut x = [0.25f32; N_FEATURES];
        for (v, seg) in [(0.0, 0), (2.0, 7), (3.0, 11)] {
            x[N_FEATURES - 2] = v;
            x[N_FEATURES - 1] = 9.0 - v;
            let expected = old.score(seg, &x[..N_FEATURES - 1]);
            assert_eq!(loaded.ranker().0.score(seg, &x), expected);
        }
    }

    proptest! {
        #[test]
        fn injected_typos_are_one_edit_after_the_first_character(
            prefix in "[a-z][a-z ]{1,20}",
            seed in any::<u64>(),
        ) {
            let typed = inject_typo(&prefix, &mut SplitMix64(seed));
            let (a, b): (Vec<char>, Vec<char>) = (prefix.chars().collect(), typed.chars().collect());
            prop_assert_eq!(crate::trie::osa(&a, &b), 1);
            prop_assert_eq!(a[0], b[0]);
            prop_assert!(!typed.trim().is_empty());
        }
    }

    #[test]
    fn a_learned_ranker_weighs_corrections_and_is_deterministic() {
        // rank_typos teaches the ranker from prefixes with a slip: fit twice, the same ranker;
        // with it off, a different one.
        let (queries, counts, pairs) = combination_log(3000);
        let fit = |rank_typos: f64| {
            let p = FitParams {
                rank_typos,
                ..params(TreeSpec::trie(2))
            };
            Completer::fit(&queries, &counts, &pairs, None, &p, &Progress::default())
        };
        let (a, b, off) = (fit(0.5).unwrap(), fit(0.5).unwrap(), fit(0.0).unwrap());
        assert!(a.ranker().1);
        assert_eq!(a.ranker().0, b.ranker().0);
        assert_ne!(a.ranker().0, off.ranker().0);
        // A slip in the last word: the query meant, found under the corrected prefix, first.
        let mut s = CompleteScratch::default();
        let got = ask(
            &a,
            "a thing5",
            "colour7 thinf",
            3,
            &RankParams::default(),
            &mut s,
        )
        .unwrap();
        assert_eq!(got[0].0, "colour7 thing5", "{got:?}");
        assert!(matches!(got[0].2, Origin::Fuzzy { .. }), "{got:?}");
        assert!(matches!(fit(1.5), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn queries_under_the_privacy_floor_are_never_suggested_nor_composed() {
        let (queries, counts, pairs) = log();
        // "hotels in boston" and "hot dogs" were each searched by one user only.
        let users = [9.0, 1.0, 9.0, 9.0, 9.0, 9.0, 1.0];
        let fit = |min_users: f64, users: Option<&[f64]>| {
            let p = FitParams {
                min_users,
                ..params(trees()[1].clone())
            };
            let users = users.map(|counts| QueryUsers { counts, ids: None });
            Completer::fit_with_users(
                &queries,
                &counts,
                users,
                &pairs,
                None,
                &p,
                &Progress::default(),
            )
        };
        let all = |c: &Completer, prev: &str, prefix: &str| -> Vec<String> {
            let mut s = CompleteScratch::default();
            let got = ask(c, prev, prefix, 50, &RankParams::default(), &mut s);
            got.unwrap().into_iter().map(|g| g.0).collect()
        };
        let open = fit(1.0, Some(&users)).unwrap();
        assert!(all(&open, "", "ho").contains(&"hotels in boston".to_string()));
        assert!(all(&open, "", "cheap ho")
            .iter()
            .any(|q| q.contains("boston")));
        let floor = fit(2.0, Some(&users)).unwrap();
        for (prev, prefix) in [
            ("", "ho"),
            ("cheap flights", ""),
            ("", "cheap ho"),
            ("", ""),
        ] {
            for q in all(&floor, prev, prefix) {
                let words: Vec<&str> = q.split(' ').collect();
                for rare in ["boston", "dogs", "in"] {
                    assert!(!words.contains(&rare), "{q:?} after {prev:?}");
                }
            }
        }
        assert!(all(&floor, "", "ho").contains(&"home depot".to_string()));
        assert!(!floor.lm().knows("boston") && !floor.lm().knows("dogs"));
        // A query known only from live counts has no counted users: not suggested under a
        // floor (saved with the model), suggested without one.
        let live = LiveCounts::new(LiveParams::default()).unwrap();
        let search = Search {
            query: "hotel transylvania".into(),
            prev: String::new(),
            count: 5.0,
            time: 0.0,
            client: None,
        };
        live.record(&search).unwrap();
        let with_live = |c: &Completer| -> Vec<String> {
            let mut s = CompleteScratch::default();
            let p = RankParams::default();
            let got = ask_live(c, "", "hotel t", 10, &p, Some(&live), &mut s);
            got.unwrap().into_iter().map(|g| g.0).collect()
        };
        assert!(with_live(&open).contains(&"hotel transylvania".to_string()));
        let loaded = Completer::from_bytes(&floor.to_bytes()).unwrap();
        for c in [&floor, &loaded] {
            assert!(!with_live(c).contains(&"hotel transylvania".to_string()));
        }
        // The floor needs the users; bad counts are refused.
        assert!(fit(2.0, None).is_err());
        assert!(fit(0.5, Some(&users)).is_err());
        assert!(fit(2.0, Some(&users[1..])).is_err());
        assert!(fit(2.0, Some(&[f64::NAN; 7])).is_err());
        assert!(fit(100.0, Some(&users)).is_err()); // nothing left
    }

    #[test]
    fn blocked_terms_never_come_back_seen_composed_saved_or_folded() {
        let (queries, counts, pairs) = log();
        let p = FitParams {
            blocklist: vec!["BOSTON".into()],
            ..params(trees()[1].clone())
        };
        let c = Completer::fit(&queries, &counts, &pairs, None, &p, &Progress::default()).unwrap();
        let all = |c: &Completer, prev: &str, prefix: &str| -> Vec<String> {
            let mut s = CompleteScratch::default();
            let got = ask(c, prev, prefix, 50, &RankParams::default(), &mut s);
            got.unwrap().into_iter().map(|g| g.0).collect()
        };
        // Seen ("hotels in boston") and composed ("cheap hotels in boston") both gone.
        for (prev, prefix) in [
            ("", "ho"),
            ("cheap flights", ""),
            ("", "cheap ho"),
            ("", ""),
        ] {
            assert!(all(&c, prev, prefix).iter().all(|q| !q.contains("boston")));
        }
        assert!(all(&c, "", "hot").contains(&"hot dogs".to_string()));
        // At run time; whole words only ("hot" does not block "hotels").
        assert_eq!(c.block(&["hot", "Hot"]).unwrap(), 1);
        assert!(!all(&c, "", "hot").contains(&"hot dogs".to_string()));
        assert!(all(&c, "", "we").contains(&"wells fargo".to_string()));
        assert!(c.block(&["!!"]).is_err());
        // Saved, loaded and folded with the model.
        let loaded = Completer::from_bytes(&c.to_bytes()).unwrap();
        assert_eq!(
            loaded.blocklist().terms().collect::<Vec<_>>(),
            ["boston", "hot"]
        );
        let (folded, _) = loaded.fold(&[]).unwrap();
        assert_eq!(*folded.blocklist(), *c.blocklist());
        assert_eq!(folded.unblock(&["hot"]).unwrap(), 1);
        assert!(all(&folded, "", "hot").contains(&"hot dogs".to_string()));
        assert!(all(&folded, "", "hotels")
            .iter()
            .all(|q| !q.contains("boston")));
    }

    #[test]
    fn unseen_prefixes_get_composed_completions_below_seen_queries() {
        let c = trained(&trees()[1]);
        assert!(!c.ranker().1, "a log this small ranks by the fixed rule");
        let mut scratch = CompleteScratch::default();
        let got = ask(&c, "", "cheap ho", 10, &RankParams::default(), &mut scratch).unwrap();
        // Never searched whole: composed from the words of the log. (Seven queries give every
        // word pair a Kneser-Ney count of about 1: the model is nearly flat here, and the
        // four-word composition comes after shorter ones, within the first ten.)
        assert!(!got.is_empty());
        for (q, _, origin) in &got {
            assert!(q.starts_with("cheap ho"), "{q}");
            assert_eq!(*origin, Origin::Composed);
        }
        assert!(
            got.iter().any(|(q, _, _)| q == "cheap hotels in boston"),
            "{got:?}"
        );
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
        // A seen completion comes before composed ones, and scores above them.
        let got = ask(&c, "", "hot", 5, &RankParams::default(), &mut scratch).unwrap();
        assert_eq!(got[0].0, "hotels in boston");
        assert_eq!(got[1].0, "hot dogs");
        assert!(got[..2].iter().all(|g| g.2 == Origin::Seen));
        assert!(got[2..]
            .iter()
            .all(|(q, s, o)| *s < got[1].1 && q.starts_with("hot") && *o == Origin::Composed));
        let no_compose = RankParams {
            generate: false,
            ..RankParams::default()
        };
        assert!(plain(&c, "", "cheap ho", 5, &no_compose, &mut scratch)
            .unwrap()
            .is_empty());
        assert!(
            plain(&c, "", "zzz", 5, &RankParams::default(), &mut scratch)
                .unwrap()
                .is_empty()
        );
        assert!(plain(&c, "", "h", 0, &RankParams::default(), &mut scratch)
            .unwrap()
            .is_empty());
        // The empty prefix: every query may follow.
        assert_eq!(top(&c, "cheap flights", "", 1), ["hotels in boston"]);
    }

    type OwnedLog = (Vec<String>, Vec<f64>, Vec<(Option<u32>, u32)>);

    #[test]
    fn sessions_with_earlier_searches_get_a_ranker_of_their_own() {
        // Sessions of "<x>", "weather", then "<x> reviews" (or "weather radar" half the time):
        // the search two back says which review.
        let (mut queries, mut counts) = (Vec::<String>::new(), Vec::<f64>::new());
        let mut id_of = |q: String| -> u32 {
            let id = match queries.iter().position(|x| *x == q) {
                Some(i) => i,
                None => {
                    queries.push(q);
                    counts.push(0.0);
                    queries.len() - 1
                }
            };
            counts[id] += 1.0;
            id as u32
        };
        let mut rng = SplitMix64(11);
        let mut pairs = Vec::new();
        for i in 0..3000 {
            let thing = format!("thing{}", rng.below(30));
            let (a, w) = (id_of(thing.clone()), id_of("weather".into()));
            let last = match i % 2 {
                0 => id_of(format!("{thing} reviews")),
                _ => id_of("weather radar".into()),
            };
            pairs.extend([(None, a), (Some(a), w), (Some(w), last)]);
        }
        let p = params(TreeSpec::trie(2));
        let c = Completer::fit(&queries, &counts, &pairs, None, &p, &Progress::default()).unwrap();
        assert!(c.ranker().1 && c.session_ranker().is_some());
        let mut s = CompleteScratch::default();
        let mut first = |c: &Completer, history: &[&str]| {
            let request = Request::in_session(history, "thing", 1);
            c.complete(&request, &mut s).unwrap()[0].query.clone()
        };
        assert_eq!(first(&c, &["thing7", "weather"]), "thing7 reviews");
        // Saved and loaded, both rankers: the same answers, the same bytes.
        let loaded = Completer::from_bytes(&c.to_bytes()).unwrap();
        assert_eq!(loaded.session_ranker(), c.session_ranker());
        assert_eq!(loaded.to_bytes(), c.to_bytes());
        for history in [&["thing3", "weather"][..], &["weather"], &[]] {
            assert_eq!(first(&loaded, history), first(&c, history));
        }
    }

    /// A log of sessions where, after "a <x>", users search "<y> <x>" for words seen only in
    /// other combinations: the next query is never seen whole before it is searched.
    fn combination_log(users: usize) -> OwnedLog {
        // 24 things in 20 colours: most combinations are first searched late in the log.
        let things: Vec<String> = (0..24).map(|i| format!("thing{i}")).collect();
        let colours: Vec<String> = (0..20).map(|i| format!("colour{i}")).collect();
        let mut queries: Vec<String> = Vec::new();
        let mut ids = std::collections::HashMap::new();
        let mut counts: Vec<f64> = Vec::new();
        let mut id_of = |q: String, counts: &mut Vec<f64>| -> u32 {
            let n = queries.len() as u32;
            let id = *ids.entry(q.clone()).or_insert_with(|| {
                queries.push(q);
                counts.push(0.0);
                n
            });
            counts[id as usize] += 1.0;
            id
        };
        let mut pairs = Vec::new();
        let mut rng = SplitMix64(3);
        for _ in 0..users {
            let thing = &things[rng.below(things.len() as u64) as usize];
            let colour = &colours[rng.below(colours.len() as u64) as usize];
            let first = id_of(format!("a {thing}"), &mut counts);
            let second = id_of(format!("{colour} {thing}"), &mut counts);
            pairs.push((None, first));
            pairs.push((Some(first), second));
        }
        (queries, counts, pairs)
    }

    #[test]
    fn a_learned_ranker_completes_unseen_combinations_of_seen_words() {
        // Enough users that the trees see unseen combinations among their held-out lists (with
        // 3,000, the copy of the previous query's words "colour7 a thing5" came first).
        let (queries, counts, pairs) = combination_log(6000);
        let p = params(TreeSpec::trie(2));
        let c = Completer::fit(&queries, &counts, &pairs, None, &p, &Progress::default()).unwrap();
        assert!(c.ranker().1, "enough held-out pairs to learn a ranker");
        // Train without "colour7 thing5", then ask for it after "a thing5".
        let keep: Vec<(Option<u32>, u32)> = pairs
            .iter()
            .copied()
            .filter(|&(_, q)| queries[q as usize] != "colour7 thing5")
            .collect();
        let mut kept_counts = counts.clone();
        let pink = queries.iter().position(|q| q == "colour7 thing5").unwrap();
        kept_counts[pink] = 0.0;
        let fit_kept = || {
            Completer::fit(
                &queries,
                &kept_counts,
                &keep,
                None,
                &p,
                &Progress::default(),
            )
            .unwrap()
        };
        let c = fit_kept();
        assert!(c.queries().id("colour7 thing5").is_none());
        let mut s = CompleteScratch::default();
        let got = ask(&c, "a thing5", "colour7", 3, &RankParams::default(), &mut s).unwrap();
        assert_eq!(got[0].0, "colour7 thing5", "{got:?}");
        assert_eq!(got[0].2, Origin::Composed);
        // Deterministic given the seed.
        assert_eq!(fit_kept().to_bytes(), c.to_bytes());
        // Saved and loaded: the same answers.
        let loaded = Completer::from_bytes(&c.to_bytes()).unwrap();
        assert!(loaded.ranker().1);
        for prefix in ["colour7", "", "c", "a t", "colour1 t"] {
            assert_eq!(
                top(&loaded, "a thing5", prefix, 5),
                top(&c, "a thing5", prefix, 5)
            );
        }
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
                    None,
                    &params(tree.clone()),
                    &Progress::default(),
                )
                .unwrap();
                assert_eq!(c.features().blocks()[0].n_features(), 0, "{tree:?}");
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
        let p = params(TreeSpec::trie(2));
        let fit = |q: &[&str], c: &[f64], pairs: &[(Option<u32>, u32)], p: &FitParams| {
            Completer::fit(q, c, pairs, None, p, &Progress::default()).map(|_| ())
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
        assert!(plain(&c, "", "h", 3, &bad, &mut s).is_err());
        assert!(batch(&c, &["a", "b"], &["h"], 3, &RankParams::default()).is_err());
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
        let batch = batch(&loaded, &prevs, &prefixes, 4, &RankParams::default()).unwrap();
        let mut s = CompleteScratch::default();
        for ((prev, prefix), got) in cases.iter().zip(batch) {
            let want = plain(&c, prev, prefix, 4, &RankParams::default(), &mut s).unwrap();
            assert_eq!(got, want);
        }
        // A flipped byte anywhere is refused.
        for i in (0..bytes.len()).step_by(97) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(Completer::from_bytes(&bad).is_err(), "byte {i}");
        }
    }

    /// `c`'s file with its sections but `drop`, and `put`'s bytes for a section (in its place,
    /// or added).
    fn rewritten(c: &Completer, drop: &str, put: Option<(&str, Vec<u8>)>) -> Vec<u8> {
        let buf = crate::persist::Buffer::copy_from(&c.to_bytes());
        let r = Reader::new(&buf, Kind::Completer).unwrap();
        let mut w = Writer::new(Kind::Completer);
        let mut placed = false;
        for (name, data) in r.sections() {
            match &put {
                Some((n, new)) if *n == name => {
                    placed = true;
                    w.bytes(&name, new.clone())
                }
                _ if name == drop => &mut w,
                _ => w.bytes(&name, data.to_vec()),
            };
        }
        if let (Some((name, new)), false) = (put, placed) {
            w.bytes(name, new);
        }
        w.finish()
    }

    #[test]
    fn a_file_saved_before_options_loads_with_what_it_knows() {
        let c = trained(&trees()[2]);
        c.block(&["weather"]).unwrap();
        // The terms blocked after training are saved with the options.
        let saved = Completer::from_bytes(&c.to_bytes()).unwrap();
        assert_eq!(
            saved.options().get("blocklist").unwrap(),
            &Value::Texts(vec!["weather".into()])
        );
        let old = Completer::from_bytes(&rewritten(&c, "options", None)).unwrap();
        let o = old.options();
        assert_eq!(o.rank_params().unwrap(), *c.rank_params());
        assert_eq!(
            o.get("blocklist").unwrap(),
            saved.options().get("blocklist").unwrap()
        );
        // Before options were saved, range_rows was off by default.
        assert_eq!(o.get("range_rows").unwrap(), &Value::Bool(false));
        let mut s = CompleteScratch::default();
        let d = RankParams::default();
        assert_eq!(
            plain(&old, "", "w", 5, &d, &mut s).unwrap(),
            plain(&c, "", "w", 5, &d, &mut s).unwrap()
        );
    }

    #[test]
    fn options_out_of_their_bounds_in_a_file_are_a_format_error() {
        let c = trained(&trees()[2]);
        let mut options = c.options().clone();
        options.set("fuzzy_one", Value::Int(12)).unwrap(); // fuzzy_two 9 is now below it
        let bytes = rewritten(&c, "", Some(("options", options.to_bytes())));
        let err = Completer::from_bytes(&bytes).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        // A privacy floor out of bounds too (before, a ValueError of the bindings).
        let bytes = rewritten(
            &c,
            "",
            Some(("floor", 0.5f64.to_bits().to_le_bytes().to_vec())),
        );
        let err = Completer::from_bytes(&bytes).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever is typed, every answer starts with the normalised prefix, answers are
        /// distinct, at most k, and sorted by score.
        #[test]
        fn answers_start_with_the_prefix(prev in "\\PC{0,12}", prefix in "[hwc ]{0,2}\\PC{0,6}", k in 0usize..12) {
            thread_local! {
                static C: Completer = {
                    trained(&TreeSpec::trie(2))
                };
            }
            let got = C.with(|c| {
                plain(c, &prev, &prefix, k, &RankParams::default(), &mut CompleteScratch::default())
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
