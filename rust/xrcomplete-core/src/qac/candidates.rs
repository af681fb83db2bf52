//! Every candidate source of a completion behind one interface, and the features the ranking
//! stage sees of each candidate.
//!
//! For a typed prefix after a previous query, [`Sources::gather`] collects:
//! - the XR-Linear model's best seen queries, its beam restricted to the prefix's label range;
//! - the most popular seen queries of the range;
//! - the seen queries that followed the previous query, in the range;
//! - queries composed by the language model ([`QueryLm::compose`]), seen or not;
//! - with live counts ([`LiveCounts`]): the queries searched since the model was built, most
//!   searched first, and those searched after the previous query. Every candidate's live
//!   count and live transitions are ranking features of their own (`live`, `live_after`),
//!   learned from the log by recording its held-out searches as they happen;
//! - for a prefix that looks mistyped, the candidates of corrected prefixes a few edits away,
//!   with how many edits they took.
//!
//! One candidate per distinct query, with what each source said of it, then one feature vector
//! ([`FEATURES`]) for the ranker.

use crate::error::Result;
use crate::live::LiveCounts;
use crate::persist::{Persist, Reader, Writer};
use crate::rank::features::{self, index, names, Feature};
use crate::rank::Scored;
use crate::text::{is_py_space, ConcatScratch, FeatureConcat};
use crate::xr::{PostProcessor, PredictParams, PredictScratch, XrLinear};
use crate::{FuzzyMatch, Trie};

use super::lm::ComposeParams;
use super::lm::{LmScratch, QueryLm, ONE_EDIT_CHARS};
use super::transitions::Followers;
use super::words::split_last_word;
use super::{RankParams, Transitions};

/// The ranking features of a completion, in vector order. The fixed rule's weights reproduce
/// the hand-set rule used before rankers were learned: `ln model + 0.5 ln(1 + popularity) +
/// 2 ln(1 + transitions)`, seen queries above composed ones, those by language model, answers
/// of a corrected prefix after those of the typed one. More searches, transitions and live
/// counts never lower a candidate (trees learn a count's worth from the counts they saw; the
/// constraint keeps that order past them: a query searched live far more than any count of
/// training).
pub const COMPLETION_FEATURES: [Feature; 33] = [
    Feature::new("model", "model", "ln max(XR-Linear score, model_floor)").weighing(1.0),
    Feature::new("in_beam", "model", "the XR beam returned it"),
    Feature::new(
        "popularity",
        "popularity",
        "ln(1 + searches of the query, in the log and recorded live)",
    )
    .rising()
    .weighing(0.5),
    Feature::new(
        "seen",
        "popularity",
        "searched whole: a query of the log, or searched live",
    )
    .weighing(100.0),
    Feature::new(
        "transitions",
        "transitions",
        "ln(1 + times it followed the previous query)",
    )
    .rising()
    .weighing(2.0),
    Feature::new(
        "after_prev",
        "transitions",
        "it followed the previous query at least once",
    ),
    Feature::new(
        "first_query",
        "transitions",
        "ln(1 + times it began a session), with no previous query",
    )
    .rising()
    .weighing(2.0),
    Feature::new(
        "lm",
        "lm",
        "language-model log probability of what it adds to the prefix",
    )
    .weighing(0.1),
    Feature::new("lm_per_word", "lm", "the same per word added (and the end)"),
    Feature::new("composed", "lm", "the language model composed it"),
    Feature::new(
        "popular",
        "popularity",
        "among the most popular of the prefix's range",
    ),
    Feature::new("chars_left", "shape", "ln(1 + characters after the prefix)"),
    Feature::new("words_left", "shape", "words after the one being typed"),
    Feature::new("is_prev", "session words", "the previous query itself").weighing(-1.0),
    Feature::new(
        "copied_words",
        "session words",
        "its words after the typed head found in the previous query",
    ),
    Feature::new(
        "prev_coverage",
        "session words",
        "share of the previous query's words it holds",
    ),
    Feature::new(
        "word_end",
        "shape",
        "the prefix ends at the end of one of its words",
    ),
    Feature::new("as_typed", "shape", "the prefix itself, as typed"),
    Feature::new(
        "model_gap",
        "model",
        "the best model feature in the list minus its own",
    ),
    Feature::new(
        "popularity_gap",
        "popularity",
        "the best popularity feature in the list minus its own",
    )
    .falling(),
    Feature::new(
        "lm_gap",
        "lm",
        "the best language-model feature in the list minus its own",
    ),
    Feature::new(
        "live",
        "live",
        "ln(1 + its decayed count among the searches recorded live)",
    )
    .rising()
    .weighing(0.5),
    Feature::new(
        "live_after",
        "live",
        "ln(1 + its decayed count recorded live after the previous query)",
    )
    .rising()
    .weighing(2.0),
    Feature::new(
        "edits",
        "typos",
        "edits from the typed prefix to the corrected one it starts with",
    )
    .weighing(-200.0),
    Feature::new(
        "rare_words",
        "typos",
        "never searched whole: its words the language model does not know, outside the session",
    ),
    Feature::new(
        "typed_rarest",
        "typos",
        "corrected: ln(1 + how common the rarest typed word is)",
    ),
    Feature::new(
        "fixed_rarest",
        "typos",
        "corrected: ln(1 + how common the rarest word of the corrected prefix is)",
    ),
    Feature::new(
        "typed_shape",
        "typos",
        "corrected: how word-like the typed word that looks mistyped is",
    ),
    Feature::new(
        "earlier_query",
        "history",
        "1 / (d - 1) for the nearest search d back it equals, from two back (0: none)",
    )
    .weighing(2.0),
    Feature::new(
        "earlier_after",
        "history",
        "ln(1 + times it followed each search d back, from two back, each / (d - 1))",
    )
    .rising()
    .weighing(1.0),
    Feature::new(
        "earlier_words",
        "history",
        "its words after the typed head found in searches before the previous one, not in it",
    ),
    Feature::new(
        "earlier_coverage",
        "history",
        "the most, over searches d back from two back, of the share of its words it holds / (d - 1)",
    ),
    Feature::new(
        "session_length",
        "history",
        "ln(1 + the session's searches used, the previous query among them)",
    ),
];

/// The names of the ranking features, in vector order.
pub const FEATURES: [&str; 33] = names(&COMPLETION_FEATURES);

const FEATURE_MODEL: usize = index(&COMPLETION_FEATURES, "model");
const FEATURE_POPULARITY: usize = index(&COMPLETION_FEATURES, "popularity");
const FEATURE_LM: usize = index(&COMPLETION_FEATURES, "lm");
const FEATURE_MODEL_GAP: usize = index(&COMPLETION_FEATURES, "model_gap");
const FEATURE_POPULARITY_GAP: usize = index(&COMPLETION_FEATURES, "popularity_gap");
const FEATURE_LM_GAP: usize = index(&COMPLETION_FEATURES, "lm_gap");
const FEATURE_EDITS: usize = index(&COMPLETION_FEATURES, "edits");
const FEATURE_TYPED_RAREST: usize = index(&COMPLETION_FEATURES, "typed_rarest");
const FEATURE_FIXED_RAREST: usize = index(&COMPLETION_FEATURES, "fixed_rarest");
const FEATURE_TYPED_SHAPE: usize = index(&COMPLETION_FEATURES, "typed_shape");
const FEATURE_IS_PREV: usize = index(&COMPLETION_FEATURES, "is_prev");
const FEATURE_EARLIER_QUERY: usize = index(&COMPLETION_FEATURES, "earlier_query");
const FEATURE_EARLIER_AFTER: usize = index(&COMPLETION_FEATURES, "earlier_after");
const FEATURE_EARLIER_WORDS: usize = index(&COMPLETION_FEATURES, "earlier_words");
const FEATURE_EARLIER_COVERAGE: usize = index(&COMPLETION_FEATURES, "earlier_coverage");
const FEATURE_SESSION_LENGTH: usize = index(&COMPLETION_FEATURES, "session_length");

/// The features of the session's history, the last ones: rankers saved before them have none.
pub(crate) const HISTORY_FEATURES: usize = 5;

/// The features of rankers saved before the session's history was.
pub(crate) const BEFORE_HISTORY: usize = N_FEATURES - HISTORY_FEATURES;

/// The features before those of the history, the typos' last: rankers saved before the typo
/// features have none of them.
pub(crate) const TYPO_FEATURES: usize = 5;

/// Of those, the ones rankers saved before them lack (`fixed_rarest`, `typed_shape`).
pub(crate) const LATER_TYPO_FEATURES: usize = 2;

/// Number of ranking features.
pub const N_FEATURES: usize = FEATURES.len();

/// The ranker's segments: prefix length 0-3, 4-7, 8+ characters, times previous query or none,
/// times corrected prefixes competing or not.
/// (Splitting them further into seen and composed candidates measured worse on the AOL
/// validation week: MRR@10 0.331 against 0.332, per pair 0.423 against 0.426.)
pub const N_SEGMENTS: usize = 2 * CASE_SEGMENTS;

/// Segments of the prefix as typed; the lists where corrected prefixes compete have as many
/// of their own, so that the trade-off the ranker learns from the slips of `rank_typos` stays
/// in them (the lists nothing corrects rank as they would without).
pub(crate) const CASE_SEGMENTS: usize = 6;

/// Queries composed per call at most, whatever `k`: the seen queries of a range are finite
/// and all can be asked for, compositions are not.
pub const MAX_COMPOSED: usize = 64;

/// Queries searched live (the most searched of the prefix) gathered per call at most.
pub const MAX_LIVE: usize = 16;

/// The `typed_rarest` feature counts up to this (a prefix of the previous query's words only).
const RAREST_CAP: f64 = 1e4;

/// Corrected prefixes (places of the trie near a mistyped one) gathered per call at most.
pub const FUZZY_PREFIXES: usize = 4;

/// The ranking segment of a case's candidates: the prefix-length bucket and whether there is a
/// previous query.
fn case_segment(prev: &str, prefix: &str) -> u32 {
    let n = prefix.chars().count();
    let bucket = if n <= 3 {
        0
    } else if n <= 7 {
        1
    } else {
        2
    };
    bucket + 3 * u32::from(!prev.is_empty())
}

/// Feature groups, for ablations: a name and the features it holds.
pub fn feature_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    features::groups(&COMPLETION_FEATURES)
}

/// One candidate: a query and what every source said of it.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Its label id when it is a seen query.
    pub label: Option<u32>,
    pub text: String,
    pub model: f32,
    pub in_beam: bool,
    pub popular: bool,
    pub transitions: f32,
    pub composed: bool,
    pub lm: f32,
    /// Its decayed count among the searches recorded live.
    pub live: f32,
    /// Its decayed count recorded live after the previous query.
    pub live_after: f32,
    /// Edits from the typed prefix to the corrected prefix it was found under (0: the typed
    /// one).
    pub edits: u32,
    /// Bytes of its text that the corrected prefix covers (when `edits > 0`).
    pub matched: usize,
    pub x: [f32; N_FEATURES],
    /// Its ranking segment.
    pub segment: u32,
    pub score: f32,
}

impl Default for Candidate {
    fn default() -> Self {
        Candidate {
            label: None,
            text: String::new(),
            model: 0.0,
            in_beam: false,
            popular: false,
            transitions: 0.0,
            composed: false,
            lm: 0.0,
            live: 0.0,
            live_after: 0.0,
            edits: 0,
            matched: 0,
            x: [0.0; N_FEATURES],
            segment: 0,
            score: 0.0,
        }
    }
}

impl Scored for Candidate {
    fn input(&self) -> (usize, &[f32]) {
        (self.segment as usize, &self.x)
    }

    fn set_score(&mut self, score: f32) {
        self.score = score;
    }
}

/// Reusable buffers of [`Sources::gather`].
#[derive(Debug, Default, Clone)]
pub(crate) struct GatherScratch {
    concat: ConcatScratch,
    row: (Vec<u32>, Vec<f32>),
    predict: PredictScratch,
    after: Vec<(u32, f32)>,
    composed: Vec<(String, f32)>,
    live: Vec<(String, f64)>,
    lm: LmScratch,
    prev_words: Vec<String>,
    /// The words of the searches before the previous query that it does not hold, sorted.
    earlier_words: Vec<String>,
    fuzzy: Vec<FuzzyMatch>,
    /// The candidates of the typed prefix while those of corrected ones are gathered.
    pool: Vec<Candidate>,
    pub candidates: Vec<Candidate>,
}

/// The trained parts every candidate source and feature comes from.
#[derive(Debug)]
pub(crate) struct Sources {
    pub features: FeatureConcat,
    pub model: XrLinear,
    pub queries: Trie,
    pub transitions: Transitions,
    pub lm: QueryLm,
}

/// The session a prefix is typed in, normalised: the previous query (`""`: none) and the
/// searches before it, oldest first.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Session<'a> {
    pub prev: &'a str,
    pub earlier: &'a [String],
}

impl<'a> Session<'a> {
    /// The searches before the previous query, nearest first, each with how far back it is
    /// (2: the one before the previous query).
    fn back(&self) -> impl Iterator<Item = (u32, &'a str)> + 'a {
        let earlier = self.earlier;
        earlier
            .iter()
            .rev()
            .enumerate()
            .map(|(i, q)| (i as u32 + 2, q.as_str()))
            .filter(|(_, q)| !q.is_empty())
    }

    /// True when it holds a search before the previous query.
    pub(super) fn has_earlier(&self) -> bool {
        self.back().next().is_some()
    }

    /// The searches of the session it holds, the previous query among them.
    fn len(&self) -> usize {
        usize::from(!self.prev.is_empty()) + self.back().count()
    }
}

/// What every source of candidates sees of the case being completed.
struct Case<'c> {
    prev: &'c str,
    /// The searches before the previous query.
    session: Session<'c>,
    prefix: &'c str,
    params: &'c RankParams,
    /// The language model's options of composing.
    compose: ComposeParams,
    /// Candidates taken from each source.
    n: usize,
    /// The label range of the seen queries that start with the prefix (none: no seen query
    /// does, so none is a candidate).
    range: Option<(u32, u32)>,
    /// The queries seen after the previous query (none: none, or not asked for).
    followers: Option<Followers<'c>>,
    /// The queries seen after each search before the previous one, with how far back it is.
    earlier_followers: Vec<(u32, Followers<'c>)>,
    /// Searches recorded since the model was built, if any.
    live: Option<&'c LiveCounts>,
}

impl Case<'_> {
    /// The label of `text` when it is a seen query (of the prefix's range).
    fn id(&self, parts: &Sources, text: &str) -> Option<u32> {
        self.range
            .and_then(|range| parts.queries.id_within(range, text))
    }

    /// Adds the query `text` to `cands` (with its label when it is a seen one), unless it is
    /// an unseen one there already: unseen ones are told apart by text, seen ones merge by
    /// label once every source has spoken.
    fn add_query(&self, parts: &Sources, text: String, cands: &mut Vec<Candidate>) {
        let label = self.id(parts, &text);
        if label.is_none() && cands.iter().any(|c| c.label.is_none() && c.text == text) {
            return;
        }
        cands.push(Candidate {
            label,
            text,
            ..Default::default()
        });
    }
}

/// A source of candidates: adds to `s.candidates` those it proposes for a case, each with what
/// it says of it (one candidate per query is made of them after every source has spoken).
trait Source: Sync {
    fn add(&self, parts: &Sources, case: &Case<'_>, s: &mut GatherScratch) -> Result<()>;
}

/// The XR-Linear matcher's best seen queries, its beam restricted to the prefix's range.
struct Matcher;
/// The most popular seen queries of the prefix's range.
struct Popular;
/// The seen queries of the range that followed the previous query.
struct FollowedPrev;
/// Queries composed by the language model, seen or not, copying from the session.
struct Composed;
/// The queries of the prefix searched since the model was built, and those searched after the
/// previous query.
struct Live;
/// The prefix itself, when it may be the whole query.
struct AsTyped;
/// The searches before the previous query that start with the prefix: a return to one.
struct Earlier;
/// The seen queries of the range that followed searches before the previous query.
struct FollowedEarlier;

/// Every source, in the order their candidates are gathered (the order decides nothing but
/// which of two equal unseen candidates is kept). The candidates of corrected prefixes come
/// from these sources too ([`Sources::gather`]).
const SOURCES: [&dyn Source; 8] = [
    &Matcher,
    &Popular,
    &FollowedPrev,
    &Composed,
    &Live,
    &AsTyped,
    &Earlier,
    &FollowedEarlier,
];

impl Source for Matcher {
    fn add(&self, parts: &Sources, case: &Case<'_>, s: &mut GatherScratch) -> Result<()> {
        let Some(range) = case.range.filter(|_| case.params.use_model) else {
            return Ok(());
        };
        parts
            .features
            .transform_one(&[case.prev, case.prefix], &mut s.concat, &mut s.row)?;
        let predict = PredictParams {
            beam_size: case.params.beam_size,
            topk: case.n,
            post_processor: PostProcessor::L3Hinge,
        };
        let (idx, val) = &s.row;
        for (label, score) in
            parts
                .model
                .predict_one(idx, val, &predict, Some(range), &mut s.predict)?
        {
            s.candidates.push(Candidate {
                label: Some(label),
                model: score,
                in_beam: true,
                ..Default::default()
            });
        }
        Ok(())
    }
}

impl Source for Popular {
    fn add(&self, parts: &Sources, case: &Case<'_>, s: &mut GatherScratch) -> Result<()> {
        if let Some(range) = case.range.filter(|_| case.params.use_popular) {
            for label in parts.queries.top_k_in_range(range.0, range.1, case.n) {
                s.candidates.push(Candidate {
                    label: Some(label),
                    popular: true,
                    ..Default::default()
                });
            }
        }
        Ok(())
    }
}

impl Source for FollowedPrev {
    fn add(&self, _: &Sources, case: &Case<'_>, s: &mut GatherScratch) -> Result<()> {
        if let (Some(range), Some(f)) = (case.range, case.followers) {
            s.after.clear();
            f.top_in(range, case.n, &mut s.after);
            s.candidates
                .extend(s.after.iter().map(|&(label, c)| Candidate {
                    label: Some(label),
                    transitions: c,
                    ..Default::default()
                }));
        }
        Ok(())
    }
}

impl Source for Composed {
    fn add(&self, parts: &Sources, case: &Case<'_>, s: &mut GatherScratch) -> Result<()> {
        s.composed.clear();
        if case.params.generate {
            let wanted = case.n.min(MAX_COMPOSED);
            parts.lm.compose_prepared(
                case.prefix,
                wanted,
                &case.compose,
                &mut s.lm,
                &mut s.composed,
            );
        }
        for (text, lm) in s.composed.drain(..) {
            let label = case.id(parts, &text);
            s.candidates.push(Candidate {
                label,
                text,
                composed: true,
                lm,
                ..Default::default()
            });
        }
        Ok(())
    }
}

impl Source for Live {
    fn add(&self, parts: &Sources, case: &Case<'_>, s: &mut GatherScratch) -> Result<()> {
        let Some(live) = case.live else {
            return Ok(());
        };
        s.live.clear();
        live.top(case.prefix, case.n.min(MAX_LIVE), &mut s.live);
        if case.params.use_transitions {
            live.after(case.prev, case.prefix, &mut s.live);
        }
        for (text, _) in s.live.drain(..) {
            case.add_query(parts, text, &mut s.candidates);
        }
        Ok(())
    }
}

impl Source for AsTyped {
    fn add(&self, parts: &Sources, case: &Case<'_>, s: &mut GatherScratch) -> Result<()> {
        // The prefix itself may be the whole query: when its last word is a known word, or
        // follows a word (an unknown one then ends the query as typed).
        let prefix = case.prefix;
        let (head, partial) = split_last_word(prefix);
        let typed = case.params.generate
            && !partial.is_empty()
            && (parts.lm.knows(partial) || head.split(is_py_space).any(|w| !w.is_empty()));
        let cands = &mut s.candidates;
        if typed && !cands.iter().any(|c| c.text == prefix) {
            let label = case.id(parts, prefix);
            if label.is_none() || !cands.iter().any(|c| c.label == label) {
                cands.push(Candidate {
                    label,
                    text: prefix.to_owned(),
                    ..Default::default()
                });
            }
        }
        Ok(())
    }
}

impl Source for Earlier {
    fn add(&self, parts: &Sources, case: &Case<'_>, s: &mut GatherScratch) -> Result<()> {
        for (_, query) in case.session.back() {
            if query.starts_with(case.prefix) {
                case.add_query(parts, query.to_owned(), &mut s.candidates);
            }
        }
        Ok(())
    }
}

impl Source for FollowedEarlier {
    fn add(&self, _: &Sources, case: &Case<'_>, s: &mut GatherScratch) -> Result<()> {
        let Some(range) = case.range else {
            return Ok(());
        };
        for (_, f) in &case.earlier_followers {
            s.after.clear();
            f.top_in(range, case.n, &mut s.after);
            s.candidates
                .extend(s.after.iter().map(|&(label, _)| Candidate {
                    label: Some(label),
                    ..Default::default()
                }));
        }
        Ok(())
    }
}

impl Sources {
    /// Fills `s.candidates` with the candidates of `prefix` after `prev` (both normalised) and
    /// their features, unranked; `live` adds the searches recorded since the model was built.
    ///
    /// A prefix long enough for typos ([`RankParams::fuzzy_one`]) that looks mistyped to the
    /// language model, or has fewer than `k` candidates, also gets those of the prefixes a few
    /// edits away: of the closest places of the trie (the fewest edits, then the most searched
    /// query; [`FUZZY_PREFIXES`] at most; the words before the first one that looks mistyped
    /// kept as typed; two edits only where one finds no place), and of its words corrected to
    /// the language model's.
    /// Each says how many edits it took (`edits`), and one ranker weighs them against the
    /// candidates of the prefix as typed, all scored in the segments of such lists (the case's
    /// segment plus [`CASE_SEGMENTS`]).
    pub fn gather(
        &self,
        session: &Session<'_>,
        prefix: &str,
        params: &RankParams,
        k: usize,
        live: Option<&LiveCounts>,
        s: &mut GatherScratch,
    ) -> Result<()> {
        let prev = session.prev;
        self.gather_one(session, prefix, params, live, s)?;
        let edits = params.fuzzy_edits(prefix.chars().count());
        let suspect = match edits > 0 {
            true => self.lm.first_suspect(prev, prefix),
            false => None,
        };
        let mistyped = suspect.is_some();
        if mistyped || (edits > 0 && s.candidates.len() < k) {
            // Capped: a prefix whose words are all the previous query's has none.
            let rarest = self.lm.rarest_word(prev, prefix).min(RAREST_CAP);
            // A slip seldom looks like a word; a word the log never had, typed right, often
            // does: how the typed word that looks mistyped (else the one being typed) runs.
            let at = suspect.unwrap_or_else(|| split_last_word(prefix).0.len());
            let shape = self.lm.shape_at(prefix, at);
            let mut pool = std::mem::take(&mut s.pool);
            pool.clear();
            pool.append(&mut s.candidates);
            // The slip is looked for from the first word that looks mistyped on (the words
            // before it are known well: kept as typed, they spare the walk the bushy top of
            // the trie). Two edits only where one finds no place: the walk of two costs many
            // times that of one, and where one edit finds places, those of two only crowd them.
            let exact = suspect.map_or(1, |at| prefix[..at].chars().count().max(1));
            self.queries
                .fuzzy_prefixes(prefix, 1, exact, 0, &mut s.fuzzy);
            if edits > 1 && s.fuzzy.is_empty() {
                let q = &self.queries;
                q.fuzzy_prefixes(prefix, edits, exact, ONE_EDIT_CHARS, &mut s.fuzzy);
            }
            let mut places: Vec<(u32, f64, FuzzyMatch)> = s
                .fuzzy
                .iter()
                .map(|m| (m.edits, self.queries.heaviest_in_range(m.lo, m.hi), *m))
                .collect();
            places.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(b.1.total_cmp(&a.1))
                    .then(a.2.lo.cmp(&b.2.lo))
            });
            places.truncate(FUZZY_PREFIXES);
            // The candidates of a corrected prefix, `e` edits from the typed one, into the pool.
            let add = |fixed: &str, e: u32, s: &mut GatherScratch, pool: &mut Vec<Candidate>| {
                self.gather_one(session, fixed, params, live, s)?;
                let rarest = (rarest, self.lm.rarest_word(prev, fixed).min(RAREST_CAP));
                let matched = fixed.len();
                pool.extend(
                    s.candidates
                        .drain(..)
                        .map(|c| corrected(c, e, matched, rarest, shape)),
                );
                Ok::<(), crate::Error>(())
            };
            for (e, _, m) in places {
                let key = self.queries.key(m.lo).unwrap_or_default();
                add(&key[..m.matched], e, s, &mut pool)?;
            }
            if mistyped {
                if let Some((fixed, e)) = self.lm.correct(prefix, edits, &mut s.fuzzy) {
                    add(&fixed, e, s, &mut pool)?;
                }
            }
            // One candidate per query, the one found with the fewest edits.
            pool.sort_by(|a, b| a.text.cmp(&b.text).then(a.edits.cmp(&b.edits)));
            pool.dedup_by(|b, a| a.text == b.text);
            for c in pool.iter_mut() {
                c.segment += CASE_SEGMENTS as u32;
            }
            s.candidates.append(&mut pool);
            s.pool = pool;
        }
        Ok(())
    }

    /// The candidates of `prefix` as typed and their features (the gaps to the best of this
    /// list: the typed prefix's candidates keep their features whatever the corrected prefixes
    /// add).
    fn gather_one(
        &self,
        session: &Session<'_>,
        prefix: &str,
        params: &RankParams,
        live: Option<&LiveCounts>,
        s: &mut GatherScratch,
    ) -> Result<()> {
        let live = live.filter(|l| !l.is_empty());
        let prev = session.prev;
        s.candidates.clear();
        let case = Case {
            prev,
            session: *session,
            prefix,
            params,
            compose: params.compose(),
            n: params.candidates,
            range: self.queries.prefix_range(prefix),
            followers: match params.use_transitions {
                true => self.transitions.followers(prev),
                false => None,
            },
            earlier_followers: match params.use_transitions {
                true => session
                    .back()
                    .filter_map(|(d, q)| Some((d, self.transitions.followers(q)?)))
                    .collect(),
                false => Vec::new(),
            },
            live,
        };
        // The language model reads the session and the prefix once for every source and feature.
        self.lm.prepare(prev, session.earlier, prefix, &mut s.lm);
        for source in SOURCES {
            source.add(self, &case, s)?;
        }
        let Case {
            compose,
            followers,
            earlier_followers,
            ..
        } = case;
        let (head, _) = split_last_word(prefix);
        let cands = &mut s.candidates;
        // One candidate per query: seen ones by label, composed-only ones are distinct already.
        cands.sort_by_key(|c| c.label.unwrap_or(u32::MAX));
        cands.dedup_by(|b, a| {
            if a.label.is_some() && a.label == b.label {
                a.model = a.model.max(b.model);
                a.in_beam |= b.in_beam;
                a.popular |= b.popular;
                a.transitions = a.transitions.max(b.transitions);
                if b.composed {
                    a.composed = true;
                    a.lm = b.lm;
                }
                true
            } else {
                false
            }
        });
        s.prev_words.clear();
        s.prev_words.extend(
            prev.split(is_py_space)
                .filter(|w| !w.is_empty())
                .map(str::to_owned),
        );
        s.prev_words.sort_unstable();
        s.prev_words.dedup();
        s.earlier_words.clear();
        s.earlier_words.extend(
            session
                .back()
                .flat_map(|(_, q)| q.split(is_py_space))
                .filter(|w| {
                    !w.is_empty()
                        && s.prev_words
                            .binary_search_by(|p| p.as_str().cmp(w))
                            .is_err()
                })
                .map(str::to_owned),
        );
        s.earlier_words.sort_unstable();
        s.earlier_words.dedup();
        let session_length = (session.len() as f32).ln_1p();
        let head_len = head.len();
        // A word of the session's searches is no slip, whether the log knows it or not.
        let rare = |text: &str| {
            text.split(is_py_space)
                .filter(|w| {
                    !w.is_empty()
                        && s.prev_words
                            .binary_search_by(|p| p.as_str().cmp(w))
                            .is_err()
                        && s.earlier_words
                            .binary_search_by(|p| p.as_str().cmp(w))
                            .is_err()
                        && !self.lm.knows_well(w, true)
                })
                .count()
        };
        let mut head_rare = None;
        let weights = self.queries.weights();
        let case = case_segment(prev, prefix);
        for c in cands.iter_mut() {
            c.segment = case;
            if let Some(label) = c.label {
                if c.text.is_empty() {
                    c.text
                        .push_str(self.queries.key(label).expect("labels are keys"));
                }
                // The transitions of a label the source did not list: one lookup.
                if let Some(f) = followers.filter(|_| c.transitions == 0.0) {
                    c.transitions = f.count(label);
                }
            }
            if let Some(live) = live {
                c.live = live.count(&c.text) as f32;
                if params.use_transitions {
                    c.live_after = live.transition(prev, &c.text) as f32;
                }
            }
            if !c.composed {
                c.lm = self.lm.score_prepared(&c.text, &compose, &mut s.lm);
            }
            // Searches of the log and those recorded live: a query searched a hundred times in
            // the last hour is popular, whatever the log says (a ranker learns a live count's
            // worth from the counts it saw; popularity spans every count the log has).
            let popularity = c.label.map_or(0.0, |l| weights[l as usize] as f32) + c.live;
            // A query never searched whole may keep a word as typed that the language model
            // does not know (a slip, likely): how many, outside the previous query. The head's
            // are counted once.
            let rare = match c.label {
                Some(_) => 0,
                None => {
                    let head_rare = *head_rare.get_or_insert_with(|| rare(head));
                    head_rare + rare(c.text.get(head_len..).unwrap_or_default())
                }
            };
            let of = Shape {
                prev,
                prefix,
                head_len,
                prev_words: &s.prev_words,
                popularity,
                rare,
            };
            features(c, &of, params);
            if !session.earlier.is_empty() {
                history_features(c, session, &earlier_followers, head_len, &s.earlier_words);
            }
            c.x[FEATURE_SESSION_LENGTH] = session_length;
        }
        // How far each is from the best of its list, for the features compared within a list.
        for (of, gap) in [
            (FEATURE_MODEL, FEATURE_MODEL_GAP),
            (FEATURE_POPULARITY, FEATURE_POPULARITY_GAP),
            (FEATURE_LM, FEATURE_LM_GAP),
        ] {
            let best = cands
                .iter()
                .map(|c| c.x[of])
                .fold(f32::NEG_INFINITY, f32::max);
            for c in cands.iter_mut() {
                c.x[gap] = best - c.x[of];
            }
        }
        Ok(())
    }

    pub fn memory_bytes(&self) -> usize {
        self.features
            .blocks()
            .iter()
            .map(|b| b.memory_bytes())
            .sum::<usize>()
            + self.model.memory_bytes()
            + self.queries.memory_bytes()
            + self.transitions.memory_bytes()
            + self.lm.memory_bytes()
    }

    /// Writes the parts as sections of `w`.
    pub fn write<'a>(&'a self, w: &mut Writer<'a>) {
        w.file("features", self.features.writer())
            .file("model", self.model.writer())
            .file("queries", self.queries.writer())
            .file("trans", self.transitions.writer())
            .file("lm", self.lm.writer());
    }

    /// Reads the parts written by [`Sources::write`], each checked, in parallel.
    pub fn read(r: &Reader) -> Result<Self> {
        if !r.has("lm") {
            return Err(crate::persist::format_err(
                "a completer saved before the language model and the learned ranking stage \
                 (xrcomplete < 0.2): train it again",
            ));
        }
        let ((features, model), (queries, (transitions, lm))) = rayon::join(
            || rayon::join(|| r.nested("features"), || r.nested("model")),
            || {
                rayon::join(
                    || r.nested("queries"),
                    || rayon::join(|| r.nested("trans"), || r.nested("lm")),
                )
            },
        );
        Ok(Sources {
            features: features?,
            model: model?,
            queries: queries?,
            transitions: transitions?,
            lm: lm?,
        })
    }
}

/// A candidate `c` found under a corrected prefix of `matched` bytes, `edits` edits from the
/// typed one; how common the rarest typed word and the rarest word of the corrected prefix are
/// (`rarest`, [`QueryLm::word_weight`]) and how word-like the typed word that looks mistyped is
/// (`shape`, [`QueryLm::shape_at`]).
fn corrected(
    mut c: Candidate,
    edits: u32,
    matched: usize,
    rarest: (f64, f64),
    shape: f32,
) -> Candidate {
    c.edits = edits;
    c.matched = matched;
    c.x[FEATURE_EDITS] = edits as f32;
    c.x[FEATURE_TYPED_RAREST] = rarest.0.ln_1p() as f32;
    c.x[FEATURE_FIXED_RAREST] = rarest.1.ln_1p() as f32;
    c.x[FEATURE_TYPED_SHAPE] = shape;
    c
}

/// What the features of a candidate depend on beyond the candidate.
struct Shape<'a> {
    prev: &'a str,
    /// The prefix it was found under.
    prefix: &'a str,
    /// Bytes of the prefix before its last word.
    head_len: usize,
    /// The previous query's distinct words, sorted.
    prev_words: &'a [String],
    popularity: f32,
    /// Its words the language model does not know, outside the session's searches.
    rare: usize,
}

/// Fills `c.x` but the gaps to the best of the list.
fn features(c: &mut Candidate, of: &Shape, params: &RankParams) {
    let Shape {
        prev,
        prefix,
        head_len,
        prev_words,
        popularity,
        rare,
    } = *of;
    let rest = &c.text[prefix.len().min(c.text.len())..];
    let tail = c.text.get(head_len..).unwrap_or("");
    let tail_words = tail.split(is_py_space).filter(|w| !w.is_empty());
    let (mut n_tail, mut copied) = (0usize, 0usize);
    for w in tail_words {
        n_tail += 1;
        copied += usize::from(prev_words.binary_search_by(|p| p.as_str().cmp(w)).is_ok());
    }
    let covered = prev_words
        .iter()
        .filter(|p| c.text.split(is_py_space).any(|w| w == p.as_str()))
        .count();
    let trans = c.transitions.ln_1p();
    let b = |v: bool| f32::from(u8::from(v));
    c.x = [
        c.model.max(params.model_floor).ln(),
        b(c.in_beam),
        popularity.ln_1p(),
        b(c.label.is_some() || c.live > 0.0),
        if prev.is_empty() { 0.0 } else { trans },
        b(!prev.is_empty() && c.transitions > 0.0),
        if prev.is_empty() { trans } else { 0.0 },
        c.lm,
        c.lm / (n_tail.max(1) as f32 + 1.0),
        b(c.composed),
        b(c.popular),
        (rest.chars().count() as f32).ln_1p(),
        n_tail.saturating_sub(1) as f32,
        b(c.text == prev),
        copied as f32,
        if prev_words.is_empty() {
            0.0
        } else {
            covered as f32 / prev_words.len() as f32
        },
        b(rest.is_empty() || rest.starts_with(is_py_space)),
        b(rest.is_empty()),
        0.0,
        0.0,
        0.0,
        c.live.ln_1p(),
        c.live_after.ln_1p(),
        c.edits as f32,
        rare as f32,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ];
}

/// Sets the features of candidate `c` that the searches before the previous query give:
/// `followers` are theirs in the log (with how far back each is), `earlier_words` their words
/// the previous query does not hold (sorted); `head_len` bytes of the prefix come before the
/// word being typed.
fn history_features(
    c: &mut Candidate,
    session: &Session<'_>,
    followers: &[(u32, Followers<'_>)],
    head_len: usize,
    earlier_words: &[String],
) {
    let weight = |d: u32| 1.0 / (d - 1) as f32;
    let words = || c.text.split(is_py_space).filter(|w| !w.is_empty());
    let (mut equal, mut coverage) = (0.0f32, 0.0f32);
    for (d, query) in session.back() {
        if equal == 0.0 && query == c.text {
            equal = weight(d);
        }
        let (mut n, mut held) = (0usize, 0usize);
        for w in query.split(is_py_space).filter(|w| !w.is_empty()) {
            n += 1;
            held += usize::from(words().any(|v| v == w));
        }
        if n > 0 {
            coverage = coverage.max(held as f32 / n as f32 * weight(d));
        }
    }
    let after: f32 = match c.label {
        Some(label) => followers
            .iter()
            .map(|(d, f)| f.count(label) * weight(*d))
            .sum(),
        None => 0.0,
    };
    let tail = c.text.get(head_len..).unwrap_or("");
    let copied = tail
        .split(is_py_space)
        .filter(|w| {
            !w.is_empty()
                && earlier_words
                    .binary_search_by(|p| p.as_str().cmp(w))
                    .is_ok()
        })
        .count();
    c.x[FEATURE_EARLIER_QUERY] = equal;
    c.x[FEATURE_EARLIER_AFTER] = after.ln_1p();
    c.x[FEATURE_EARLIER_WORDS] = copied as f32;
    c.x[FEATURE_EARLIER_COVERAGE] = coverage;
}

/// Whether candidate `c` is one of the session's searches (the previous query or an earlier
/// one), by its features.
pub(super) fn of_session(c: &Candidate) -> bool {
    c.x[FEATURE_IS_PREV] > 0.0 || c.x[FEATURE_EARLIER_QUERY] > 0.0
}

/// The position of feature `name` in [`FEATURES`] (a name of the list).
/// How a learned ranker's score may move with each feature ([`COMPLETION_FEATURES`]).
pub(crate) fn monotone() -> [i8; N_FEATURES] {
    features::monotone(&COMPLETION_FEATURES)
}

/// The weights of the fixed rule ([`COMPLETION_FEATURES`]): used when a log is too small to
/// learn a ranker from.
pub(crate) fn fixed_weights() -> [f32; N_FEATURES] {
    features::fixed_weights(&COMPLETION_FEATURES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_features_give_the_lists_they_replaced() {
        // As they were written out before the features were declared once: same answers.
        let by_name = |pairs: &[(&str, f32)]| {
            let mut w = [0.0; N_FEATURES];
            for (name, v) in pairs {
                w[FEATURES.iter().position(|f| f == name).unwrap()] = *v;
            }
            w
        };
        let fixed = by_name(&[
            ("model", 1.0),
            ("popularity", 0.5),
            ("transitions", 2.0),
            ("first_query", 2.0),
            ("seen", 100.0),
            ("lm", 0.1),
            ("is_prev", -1.0),
            ("live", 0.5),
            ("live_after", 2.0),
            ("edits", -200.0),
            ("earlier_query", 2.0),
            ("earlier_after", 1.0),
        ]);
        assert_eq!(fixed_weights(), fixed);
        let rising = [
            "popularity",
            "transitions",
            "first_query",
            "live",
            "live_after",
            "earlier_after",
        ];
        let mut m = by_name(&rising.map(|n| (n, 1.0)));
        m[FEATURE_POPULARITY_GAP] = -1.0;
        assert_eq!(monotone().map(f32::from), m);
        let groups: Vec<(&str, Vec<&str>)> = vec![
            ("model", vec!["model", "in_beam", "model_gap"]),
            (
                "popularity",
                vec!["popularity", "seen", "popular", "popularity_gap"],
            ),
            (
                "transitions",
                vec!["transitions", "after_prev", "first_query"],
            ),
            ("lm", vec!["lm", "lm_per_word", "composed", "lm_gap"]),
            (
                "shape",
                vec!["chars_left", "words_left", "word_end", "as_typed"],
            ),
            (
                "session words",
                vec!["is_prev", "copied_words", "prev_coverage"],
            ),
            ("live", vec!["live", "live_after"]),
            (
                "typos",
                vec![
                    "edits",
                    "rare_words",
                    "typed_rarest",
                    "fixed_rarest",
                    "typed_shape",
                ],
            ),
            (
                "history",
                vec![
                    "earlier_query",
                    "earlier_after",
                    "earlier_words",
                    "earlier_coverage",
                    "session_length",
                ],
            ),
        ];
        assert_eq!(feature_groups(), groups);
        for (i, name) in [
            (FEATURE_MODEL, "model"),
            (FEATURE_LM, "lm"),
            (FEATURE_MODEL_GAP, "model_gap"),
            (FEATURE_LM_GAP, "lm_gap"),
            (FEATURE_EDITS, "edits"),
            (FEATURE_TYPED_SHAPE, "typed_shape"),
            (FEATURE_TYPED_RAREST, "typed_rarest"),
            (FEATURE_FIXED_RAREST, "fixed_rarest"),
        ] {
            assert_eq!(FEATURES[i], name);
        }
        // The typo features come last before the history's, and those last (files saved
        // before them are upgraded so).
        let group = |f: &&str| COMPLETION_FEATURES[index(&COMPLETION_FEATURES, f)].group;
        assert!(FEATURES[BEFORE_HISTORY - TYPO_FEATURES..BEFORE_HISTORY]
            .iter()
            .all(|f| group(f) == "typos"));
        assert!(FEATURES[BEFORE_HISTORY..]
            .iter()
            .all(|f| group(f) == "history"));
    }
}
