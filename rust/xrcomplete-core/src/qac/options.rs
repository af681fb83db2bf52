//! Every option of a completer, declared once: its name, type, bounds, default, doc and kind.
//!
//! [`OPTIONS`] is the one list the rest reads. The bindings build an [`Options`] from keyword
//! arguments by name, the Python `Completer` and the command line take their defaults and help
//! from [`OPTIONS`], and a trained [`super::Completer`] saves the [`Options`] it was made with
//! (section `options` of its file), so a loaded model knows how it was made.
//!
//! ```
//! use xrcomplete_core::qac::{Options, Value};
//!
//! let mut options = Options::default();
//! options.set("index", Value::Text("kmeans".into())).unwrap();
//! options.set("fuzzy_one", Value::Int(6)).unwrap();
//! assert!(options.set("copy", Value::Float(1.5)).is_err()); // out of its bounds
//! let params = options.fit_params(Default::default(), Default::default()).unwrap();
//! assert_eq!(params.rank.fuzzy_one, 6);
//! assert_eq!(options.changed(), vec!["index", "fuzzy_one"]);
//! ```

use std::fmt;

use crate::error::{Error, Result};
use crate::index::{kmeans::KMeansParams, TreeSpec};
use crate::live::{LiveParams, MAX_MIN_CLIENTS};
use crate::persist::{format_err, Fields};
use crate::rank::{RankerTrainParams, TreeTrainParams};
use crate::text::TfidfConfig;
use crate::xr::{Loss, TrainParams};

use super::candidates::FEATURES;
use super::lm::MAX_COMPOSED_WORDS;
use super::{FitParams, RankParams, MAX_SESSION_HISTORY};

/// What an option changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// How the model is trained: changing it needs a new fit.
    Fit,
    /// How a trained model ranks by default; a call may override it.
    Rank,
    /// How searches recorded while serving count.
    Live,
}

impl OptionKind {
    /// Its name: "fit", "rank" or "live".
    pub fn name(self) -> &'static str {
        match self {
            OptionKind::Fit => "fit",
            OptionKind::Rank => "rank",
            OptionKind::Live => "live",
        }
    }
}

/// The values an option may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptionType {
    /// true or false.
    Bool,
    /// true, false, or "auto" (chosen by the fit).
    BoolOrAuto,
    /// A whole number in `min..=max`.
    Int {
        /// The least allowed.
        min: i64,
        /// The most allowed.
        max: i64,
    },
    /// A whole number from `min`, or none (the option's documented choice).
    IntOrNone {
        /// The least allowed.
        min: i64,
    },
    /// A finite number (or, where `max` is infinite, infinity) between the bounds.
    Float {
        /// The lower bound.
        min: f64,
        /// Whether `min` itself is allowed.
        min_inclusive: bool,
        /// The upper bound.
        max: f64,
        /// Whether `max` itself is allowed.
        max_inclusive: bool,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A list of strings.
    Texts,
}

/// A default, as it can be written in a constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    /// A flag.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number.
    Float(f64),
    /// A word.
    Text(&'static str),
    /// None (for [`OptionType::IntOrNone`]).
    None,
    /// The empty list.
    Empty,
}

/// An option's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A flag.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number.
    Float(f64),
    /// A word.
    Text(String),
    /// A list of strings.
    Texts(Vec<String>),
    /// None.
    None,
}

impl From<DefaultValue> for Value {
    fn from(d: DefaultValue) -> Self {
        match d {
            DefaultValue::Bool(b) => Value::Bool(b),
            DefaultValue::Int(i) => Value::Int(i),
            DefaultValue::Float(f) => Value::Float(f),
            DefaultValue::Text(t) => Value::Text(t.to_owned()),
            DefaultValue::None => Value::None,
            DefaultValue::Empty => Value::Texts(Vec::new()),
        }
    }
}

impl fmt::Display for Value {
    /// As Python writes it (`True`, `'trie'`, `None`), for messages, `--help` and `repr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(true) => write!(f, "True"),
            Value::Bool(false) => write!(f, "False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Text(t) => write!(f, "{t:?}"),
            Value::Texts(ts) => write!(f, "{ts:?}"),
            Value::None => write!(f, "None"),
        }
    }
}

/// One option: everything said about it, once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Declared {
    /// Its keyword (Python) and, with `-` for `_`, its command-line flag.
    pub name: &'static str,
    /// What it changes.
    pub kind: OptionKind,
    /// The values it may take.
    pub ty: OptionType,
    /// Its default.
    pub default: DefaultValue,
    /// What it does, in one or two sentences.
    pub doc: &'static str,
}

impl Declared {
    /// Checks `value` against the type and bounds: the value to store, or why not.
    pub fn check(&self, value: Value) -> Result<Value> {
        let bad = |what: String| Err(Error::InvalidInput(format!("{} {what}", self.name)));
        match (self.ty, value) {
            (OptionType::Bool | OptionType::BoolOrAuto, v @ Value::Bool(_)) => Ok(v),
            (OptionType::BoolOrAuto, Value::Text(t)) => match t == "auto" {
                true => Ok(Value::Text(t)),
                false => bad(format!("must be True, False or \"auto\", got {t:?}")),
            },
            (OptionType::Int { min, max }, Value::Int(i)) => match (min..=max).contains(&i) {
                true => Ok(Value::Int(i)),
                false if max == i64::MAX => bad(format!("must be >= {min}, got {i}")),
                false => bad(format!("must be from {min} to {max}, got {i}")),
            },
            (OptionType::IntOrNone { .. }, Value::None) => Ok(Value::None),
            (OptionType::IntOrNone { min }, Value::Int(i)) => match i >= min {
                true => Ok(Value::Int(i)),
                false => bad(format!("must be >= {min} or None, got {i}")),
            },
            (OptionType::Float { .. }, Value::Int(i)) => self.check(Value::Float(i as f64)),
            (ty @ OptionType::Float { .. }, Value::Float(x)) => match float_in(ty, x) {
                true => Ok(Value::Float(x)),
                false => bad(format!("must be {}, got {x}", self.ty)),
            },
            (OptionType::Choice(words), Value::Text(t)) => match words.contains(&t.as_str()) {
                true => Ok(Value::Text(t)),
                false => bad(format!("must be one of {words:?}, got {t:?}")),
            },
            (OptionType::Texts, v @ Value::Texts(_)) => Ok(v),
            (_, other) => Err(Error::InvalidType(format!(
                "{} must be {}, got {other}",
                self.name, self.ty
            ))),
        }
    }
}

fn float_in(ty: OptionType, x: f64) -> bool {
    let OptionType::Float {
        min,
        min_inclusive,
        max,
        max_inclusive,
    } = ty
    else {
        return false;
    };
    let above = if min_inclusive { x >= min } else { x > min };
    let below = if max_inclusive { x <= max } else { x < max };
    // Only an infinite upper bound admits infinity (a half-life that never decays).
    above && below && (x.is_finite() || (x == f64::INFINITY && max == f64::INFINITY))
}

impl fmt::Display for OptionType {
    /// The allowed values in words, for errors and `--help`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OptionType::Bool => write!(f, "True or False"),
            OptionType::BoolOrAuto => write!(f, "True, False or \"auto\""),
            OptionType::Int { min, max } if max == i64::MAX => {
                write!(f, "a whole number >= {min}")
            }
            OptionType::Int { min, max } => write!(f, "a whole number from {min} to {max}"),
            OptionType::IntOrNone { min } => write!(f, "a whole number >= {min}, or None"),
            OptionType::Float {
                min,
                min_inclusive,
                max,
                max_inclusive,
            } => {
                let open = if min_inclusive { '[' } else { '(' };
                let close = if max_inclusive { ']' } else { ')' };
                let at_least = if min_inclusive { ">=" } else { ">" };
                match max {
                    f64::MAX => write!(f, "a finite number {at_least} {min}"),
                    f64::INFINITY => write!(f, "a number {at_least} {min} (inf allowed)"),
                    _ => write!(f, "a number in {open}{min}, {max}{close}"),
                }
            }
            OptionType::Choice(words) => write!(f, "one of {words:?}"),
            OptionType::Texts => write!(f, "a list of strings"),
        }
    }
}

const fn count(min: i64) -> OptionType {
    OptionType::Int { min, max: i64::MAX }
}

const fn float(min: f64, min_inclusive: bool, max: f64, max_inclusive: bool) -> OptionType {
    OptionType::Float {
        min,
        min_inclusive,
        max,
        max_inclusive,
    }
}

const POSITIVE: OptionType = float(0.0, false, f64::MAX, true);
const NON_NEGATIVE: OptionType = float(0.0, true, f64::MAX, true);
const SHARE: OptionType = float(0.0, true, 1.0, true);

/// The label trees: the first is the default.
pub const INDEXES: &[&str] = &["trie", "hybrid", "kmeans"];

/// Trie levels of a trie index when `trie_depth` is None.
pub const TRIE_DEPTH: i64 = 8;
/// Trie levels of a hybrid index when `trie_depth` is None.
pub const HYBRID_TRIE_DEPTH: i64 = 2;

macro_rules! declare {
    ($( $name:literal, $kind:ident, $ty:expr, $default:expr, $doc:literal; )*) => {
        /// Every option of a completer, in the order of `Completer`'s signature.
        pub const OPTIONS: &[Declared] = &[
            $( Declared {
                name: $name,
                kind: OptionKind::$kind,
                ty: $ty,
                default: $default,
                doc: $doc,
            }, )*
        ];
    };
}

declare! {
    "index", Fit, OptionType::Choice(INDEXES), DefaultValue::Text("trie"),
        "Label tree of the matcher: the trie of the queries, the hybrid (trie levels, then \
         k-means) or k-means (PECOS's default).";
    "trie_depth", Fit, OptionType::IntOrNone { min: 0 }, DefaultValue::None,
        "Trie levels of the trie or hybrid index (None: 8 for trie, 2 for hybrid).";
    "branching", Fit, count(2), DefaultValue::Int(16),
        "Children of a k-means node.";
    "max_leaf_size", Fit, count(1), DefaultValue::Int(100),
        "Queries under one leaf of the tree at most.";
    "kmeans_max_iter", Fit, count(1), DefaultValue::Int(20),
        "Iterations of each k-means split at most.";
    "prefixes_per_pair", Fit, count(1), DefaultValue::Int(3),
        "Prefix lengths of each (previous, next) pair the matcher learns from (all of them for \
         shorter queries).";
    "min_count", Fit, NON_NEGATIVE, DefaultValue::Float(1.0),
        "Queries searched fewer times are never suggested whole.";
    "min_users", Fit, float(1.0, true, f64::MAX, true), DefaultValue::Float(1.0),
        "The privacy floor: queries fewer distinct users searched are never suggested, nor \
         taught to the language model.";
    "seed", Fit, count(0), DefaultValue::Int(0),
        "Seed of every random choice of the fit (the same log and seed: the same model).";
    "Cp", Fit, POSITIVE, DefaultValue::Float(1.0),
        "Penalty of the matcher's errors on positive examples.";
    "Cn", Fit, POSITIVE, DefaultValue::Float(1.0),
        "Penalty of the matcher's errors on negative examples.";
    "bias", Fit, NON_NEGATIVE, DefaultValue::Float(1.0),
        "Bias feature of the matcher's classifiers.";
    "threshold", Fit, NON_NEGATIVE, DefaultValue::Float(0.1),
        "Matcher weights smaller than this are pruned.";
    "max_iter", Fit, count(1), DefaultValue::Int(100),
        "Coordinate descent passes of each classifier at most.";
    "eps", Fit, POSITIVE, DefaultValue::Float(0.1),
        "Stopping tolerance of each classifier.";
    "loss", Fit, OptionType::Choice(&["squared_hinge", "logistic"]), DefaultValue::Text("squared_hinge"),
        "Loss of the matcher's classifiers.";
    "range_rows", Fit, OptionType::BoolOrAuto, DefaultValue::Text("auto"),
        "Each node of the matcher learns only from the prefixes whose label range leaves its \
         choice open (the beam never leaves the prefix's range): a fit 3.5x faster on AOL for \
         0.001 less MRR. \"auto\": for logs of at least 500,000 pairs.";
    "lm_discount", Fit, float(0.0, false, 1.0, true), DefaultValue::Float(0.9),
        "Absolute discount of the language model that composes queries.";
    "lm_count_power", Fit, SHARE, DefaultValue::Float(0.5),
        "The language model counts a query searches^power times (1: every search, 0: once).";
    "rank_holdout", Fit, float(0.0, true, 1.0, false), DefaultValue::Float(0.1),
        "Share of the pairs, the latest, whose candidates teach the ranker (0: a fixed rule).";
    "rank_prefixes", Fit, count(1), DefaultValue::Int(12),
        "Prefix lengths of each held-out pair the ranker learns from.";
    "rank_typos", Fit, SHARE, DefaultValue::Float(0.08),
        "Share of the ranker's long-enough prefixes given one random slip, so that it learns \
         how far to trust a corrected prefix.";
    "ranker", Fit, OptionType::Choice(&["trees", "additive"]), DefaultValue::Text("trees"),
        "The ranking stage: boosted trees (LambdaMART; a log of fewer than 2,000 usable \
         held-out lists learns the additive ranker instead) or a weight and bin offsets per \
         feature.";
    "ranker_bins", Fit, count(1), DefaultValue::Int(8),
        "Bin offsets per feature of the additive ranker.";
    "ranker_trees", Fit, count(1), DefaultValue::Int(100),
        "Boosted trees of the ranker.";
    "ranker_leaves", Fit, count(2), DefaultValue::Int(31),
        "Leaves of each tree of the ranker at most.";
    "ranker_depth", Fit, count(1), DefaultValue::Int(5),
        "Levels of each tree of the ranker at most.";
    "features_off", Fit, OptionType::Texts, DefaultValue::Empty,
        "Ranking features left out of the ranker (for ablations).";
    "blocklist", Fit, OptionType::Texts, DefaultValue::Empty,
        "Words and phrases no suggestion may contain, seen or composed (whole words, after \
         NFKC and lower-casing); block and unblock change it later.";
    "beam_size", Rank, count(1), DefaultValue::Int(10),
        "Beam width of the matcher's search.";
    "candidates", Rank, count(1), DefaultValue::Int(10),
        "Candidates taken from each source (at least k).";
    "model_floor", Rank, float(0.0, false, 1.0, true), DefaultValue::Float(1e-4),
        "Matcher score of a candidate the beam did not return.";
    "generate", Rank, OptionType::Bool, DefaultValue::Bool(true),
        "Compose queries never searched whole with the language model.";
    "use_model", Rank, OptionType::Bool, DefaultValue::Bool(true),
        "Take candidates from the matcher.";
    "use_popular", Rank, OptionType::Bool, DefaultValue::Bool(true),
        "Take the most popular queries of the prefix's range.";
    "use_transitions", Rank, OptionType::Bool, DefaultValue::Bool(true),
        "Take the queries seen after the previous query.";
    "compose_beam", Rank, count(1), DefaultValue::Int(6),
        "Beam width of the language model's search.";
    "compose_words", Rank, OptionType::Int { min: 0, max: MAX_COMPOSED_WORDS as i64 - 1 },
        DefaultValue::Int(2),
        "Words the language model adds after the one being typed, at most.";
    "copy", Rank, float(0.0, true, 1.0, false), DefaultValue::Float(0.2),
        "Share of the next-word choice given to the previous query's words.";
    "follow", Rank, float(0.0, true, 1.0, false), DefaultValue::Float(0.3),
        "Share given to the previous query's word after the last one copied (a copied run goes \
         on); copy + follow must be below 1.";
    "fuzzy_one", Rank, count(0), DefaultValue::Int(5),
        "Prefixes of at least this many characters get the completions of prefixes one edit \
         away too, when they look mistyped (0: never).";
    "fuzzy_two", Rank, count(0), DefaultValue::Int(9),
        "From this many characters, two edits (0: never; else at least fuzzy_one).";
    "session_history", Rank,
        OptionType::Int { min: 1, max: MAX_SESSION_HISTORY as i64 }, DefaultValue::Int(5),
        "The session's last searches used, the previous query the last (1: it alone): earlier \
         ones are candidates again, their followers too, and the ranker weighs what a \
         candidate shares with each, by distance.";
    "composed_floor", Rank, float(0.0, true, 1.0, false), DefaultValue::Float(0.002),
        "A composed query (never searched, nor one of the session's) is suggested only when the \
         learned ranker gives it at least this share of the candidates that may be suggested \
         (the softmax of their scores): the made-up answers it is unsure of are left out (0: \
         all are kept; the fixed rule of a log too small to learn from keeps them all).";
    "live_half_life", Live, float(0.0, false, f64::INFINITY, true), DefaultValue::Float(86_400.0),
        "Seconds after which a search recorded live counts half as much (inf: never).";
    "live_cap", Live, count(1), DefaultValue::Int(100_000),
        "Distinct queries recorded live held at most.";
    "live_min_clients", Live, OptionType::Int { min: 1, max: MAX_MIN_CLIENTS as i64 },
        DefaultValue::Int(3),
        "Distinct clients that must have searched a query before its live counts are seen.";
}

/// The declaration of option `name`.
pub fn declared(name: &str) -> Result<&'static Declared> {
    OPTIONS
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| Error::InvalidInput(unknown(name)))
}

fn unknown(name: &str) -> String {
    // The closest names by shared characters: a hint for a typo.
    let close: Vec<&str> = OPTIONS
        .iter()
        .map(|d| d.name)
        .filter(|n| edit_distance(n, name) <= 2)
        .collect();
    match close.is_empty() {
        true => format!("unknown option {name:?}"),
        false => format!(
            "unknown option {name:?}; did you mean {}?",
            close.join(" or ")
        ),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A value of every option in [`OPTIONS`], each within its type and bounds.
///
/// Options that depend on each other (`fuzzy_two` and `fuzzy_one`, `copy` and `follow`) are
/// checked together by [`Options::check`] and whenever typed parameters are built.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    values: Vec<Value>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            values: OPTIONS.iter().map(|d| Value::from(d.default)).collect(),
        }
    }
}

impl Options {
    /// The value of option `name`.
    pub fn get(&self, name: &str) -> Result<&Value> {
        let i = index_of(name)?;
        Ok(&self.values[i])
    }

    /// Sets option `name` to `value`, if its type and bounds allow it.
    pub fn set(&mut self, name: &str, value: Value) -> Result<()> {
        let i = index_of(name)?;
        self.values[i] = OPTIONS[i].check(value)?;
        Ok(())
    }

    /// Every option with its value, in [`OPTIONS`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Declared, &Value)> {
        OPTIONS.iter().zip(&self.values)
    }

    /// The names of the options not at their default, in [`OPTIONS`] order.
    pub fn changed(&self) -> Vec<&'static str> {
        self.iter()
            .filter(|(d, v)| Value::from(d.default) != **v)
            .map(|(d, _)| d.name)
            .collect()
    }

    /// Checks the options together (what one value's bounds cannot say).
    pub fn check(&self) -> Result<()> {
        self.fit_params(TfidfConfig::default(), TfidfConfig::default())
            .map(|_| ())
    }

    fn value(&self, name: &str) -> &Value {
        &self.values[index_of(name).expect("a declared option")]
    }

    fn int(&self, name: &str) -> usize {
        match self.value(name) {
            // Declared with a lower bound of 0 or more: never negative.
            Value::Int(i) => usize::try_from(*i).unwrap_or(usize::MAX),
            other => unreachable!("{name} is a whole number, got {other:?}"),
        }
    }

    fn float(&self, name: &str) -> f64 {
        match self.value(name) {
            Value::Float(x) => *x,
            other => unreachable!("{name} is a number, got {other:?}"),
        }
    }

    fn flag(&self, name: &str) -> bool {
        match self.value(name) {
            Value::Bool(b) => *b,
            other => unreachable!("{name} is a flag, got {other:?}"),
        }
    }

    fn text(&self, name: &str) -> &str {
        match self.value(name) {
            Value::Text(t) => t,
            other => unreachable!("{name} is a word, got {other:?}"),
        }
    }

    fn texts(&self, name: &str) -> Vec<String> {
        match self.value(name) {
            Value::Texts(t) => t.clone(),
            other => unreachable!("{name} is a list, got {other:?}"),
        }
    }

    /// The label tree the options ask for.
    pub fn tree(&self) -> TreeSpec {
        let index = self.text("index");
        let depth = match self.value("trie_depth") {
            Value::Int(d) => usize::try_from(*d).unwrap_or(usize::MAX),
            _ if index == "trie" => TRIE_DEPTH as usize,
            _ => HYBRID_TRIE_DEPTH as usize,
        };
        let kmeans = KMeansParams {
            branching: self.int("branching"),
            max_leaf_size: self.int("max_leaf_size"),
            max_iter: self.int("kmeans_max_iter"),
            seed: self.int("seed") as u64,
        };
        match index {
            "trie" => TreeSpec::Trie {
                depth,
                max_group: kmeans.max_leaf_size,
            },
            "hybrid" => TreeSpec::Hybrid { depth, kmeans },
            _ => TreeSpec::KMeans(kmeans),
        }
    }

    /// The matcher's training options.
    pub fn train_params(&self) -> Result<TrainParams> {
        let params = TrainParams {
            cp: self.float("Cp"),
            cn: self.float("Cn"),
            bias: self.float("bias"),
            threshold: self.float("threshold"),
            max_iter: self.int("max_iter"),
            eps: self.float("eps"),
            seed: self.int("seed") as u64,
            loss: match self.text("loss") {
                "logistic" => Loss::Logistic,
                _ => Loss::SquaredHinge,
            },
        };
        params.check()?;
        Ok(params)
    }

    /// The ranking options, checked together.
    pub fn rank_params(&self) -> Result<RankParams> {
        let params = RankParams {
            beam_size: self.int("beam_size"),
            candidates: self.int("candidates"),
            model_floor: self.float("model_floor") as f32,
            generate: self.flag("generate"),
            use_model: self.flag("use_model"),
            use_popular: self.flag("use_popular"),
            use_transitions: self.flag("use_transitions"),
            compose_beam: self.int("compose_beam"),
            compose_words: self.int("compose_words"),
            copy: self.float("copy") as f32,
            follow: self.float("follow") as f32,
            fuzzy_one: self.int("fuzzy_one"),
            fuzzy_two: self.int("fuzzy_two"),
            session_history: self.int("session_history"),
            composed_floor: self.float("composed_floor") as f32,
        };
        params.check()?;
        Ok(params)
    }

    /// Sets the ranking options to `rank`'s where they differ (a file saved before options
    /// were, or typed parameters changed after they were built). A value the typed form holds
    /// as `f32` is left as it is when it rounds to the same `f32`, so 0.2 stays 0.2.
    pub(crate) fn set_rank(&mut self, rank: &RankParams) -> Result<()> {
        let current = self.rank_params().ok();
        fn whole(v: usize) -> Value {
            Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
        }
        let was = |f: fn(&RankParams) -> Value| current.as_ref().map(f);
        let fields: [(&str, RankField); 15] = [
            ("beam_size", |r| whole(r.beam_size)),
            ("candidates", |r| whole(r.candidates)),
            ("model_floor", |r| Value::Float(f64::from(r.model_floor))),
            ("generate", |r| Value::Bool(r.generate)),
            ("use_model", |r| Value::Bool(r.use_model)),
            ("use_popular", |r| Value::Bool(r.use_popular)),
            ("use_transitions", |r| Value::Bool(r.use_transitions)),
            ("compose_beam", |r| whole(r.compose_beam)),
            ("compose_words", |r| whole(r.compose_words)),
            ("copy", |r| Value::Float(f64::from(r.copy))),
            ("follow", |r| Value::Float(f64::from(r.follow))),
            ("fuzzy_one", |r| whole(r.fuzzy_one)),
            ("fuzzy_two", |r| whole(r.fuzzy_two)),
            ("session_history", |r| whole(r.session_history)),
            ("composed_floor", |r| {
                Value::Float(f64::from(r.composed_floor))
            }),
        ];
        for (name, field) in fields {
            let value = field(rank);
            if was(field).as_ref() != Some(&value) {
                self.set(name, value)?;
            }
        }
        Ok(())
    }

    /// Sets a number option unless it holds that number already.
    pub(crate) fn set_float(&mut self, name: &str, x: f64) -> Result<()> {
        match self.get(name)? {
            Value::Float(v) if *v == x => Ok(()),
            _ => self.set(name, Value::Float(x)),
        }
    }

    /// The privacy floor ([`FitParams::min_users`]).
    pub(crate) fn min_users(&self) -> f64 {
        self.float("min_users")
    }

    /// How live counts decay, how many are held and the floor of clients.
    pub fn live_params(&self) -> Result<LiveParams> {
        let params = LiveParams {
            half_life: self.float("live_half_life"),
            cap: self.int("live_cap"),
            min_clients: self.int("live_min_clients") as u32,
        };
        params.check()?;
        Ok(params)
    }

    /// The fit's options, with the vectorizers of the previous query and of the prefix.
    pub fn fit_params(&self, prev: TfidfConfig, prefix: TfidfConfig) -> Result<FitParams> {
        let features_off = self.texts("features_off");
        if let Some(f) = features_off
            .iter()
            .find(|f| !FEATURES.contains(&f.as_str()))
        {
            return Err(Error::InvalidInput(format!(
                "features_off: unknown ranking feature {f:?}; known: {FEATURES:?}"
            )));
        }
        let trees = match self.text("ranker") {
            "trees" => Some(TreeTrainParams {
                trees: self.int("ranker_trees"),
                leaves: self.int("ranker_leaves"),
                max_depth: self.int("ranker_depth"),
                ..TreeTrainParams::default()
            }),
            _ => None,
        };
        prev.check()?;
        prefix.check()?;
        Ok(FitParams {
            prev,
            prefix,
            tree: self.tree(),
            train: self.train_params()?,
            prefixes_per_pair: self.int("prefixes_per_pair"),
            min_count: self.float("min_count"),
            min_users: self.float("min_users"),
            seed: self.int("seed") as u64,
            rank: self.rank_params()?,
            lm_discount: self.float("lm_discount") as f32,
            lm_count_power: self.float("lm_count_power"),
            rank_holdout: self.float("rank_holdout"),
            rank_prefixes: self.int("rank_prefixes"),
            rank_typos: self.float("rank_typos"),
            ranker: RankerTrainParams {
                bins: self.int("ranker_bins"),
                ..RankerTrainParams::default()
            },
            trees,
            features_off,
            live_half_life: self.live_params()?.half_life,
            blocklist: self.texts("blocklist"),
            range_rows: match self.value("range_rows") {
                Value::Bool(b) => Some(*b),
                _ => None,
            },
            options: self.clone(),
        })
    }

    /// The options as the bytes of a file's `options` section: every option by name, so a
    /// later version reads them whatever it declares.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let text = |out: &mut Vec<u8>, t: &str| {
            out.extend_from_slice(&(t.len() as u64).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        };
        out.extend_from_slice(&(self.values.len() as u64).to_le_bytes());
        for (d, v) in self.iter() {
            text(&mut out, d.name);
            match v {
                Value::None => out.push(0),
                Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
                Value::Int(i) => {
                    out.push(2);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                Value::Float(x) => {
                    out.push(3);
                    out.extend_from_slice(&x.to_bits().to_le_bytes());
                }
                Value::Text(t) => {
                    out.push(4);
                    text(&mut out, t);
                }
                Value::Texts(ts) => {
                    out.push(5);
                    out.extend_from_slice(&(ts.len() as u64).to_le_bytes());
                    for t in ts {
                        text(&mut out, t);
                    }
                }
            }
        }
        out
    }

    /// Reads an `options` section. Options it does not name (declared after the file was
    /// saved) keep their defaults; one this version does not declare, or a value out of its
    /// bounds, is a format error.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Options> {
        let mut f = Fields::new(bytes, "options");
        let mut options = Options::default();
        let n = f.u64()?;
        for _ in 0..n {
            let name = f.text()?;
            let value = match f.u8()? {
                0 => Value::None,
                1 => Value::Bool(f.bool()?),
                2 => Value::Int(f.u64()? as i64),
                3 => Value::Float(f.f64()?),
                4 => Value::Text(f.text()?),
                5 => {
                    let n = f.u64()?;
                    let mut texts = Vec::new();
                    for _ in 0..n {
                        texts.push(f.text()?);
                    }
                    Value::Texts(texts)
                }
                tag => return Err(f.bad("value tag", tag)),
            };
            let known = declared(&name).is_ok();
            options.set(&name, value).map_err(|e| match known {
                true => format_err(format!("section \"options\": {e}")),
                false => format_err(format!(
                    "section \"options\": {e} (saved by a newer xrcomplete?)"
                )),
            })?;
        }
        f.end()?;
        options
            .check()
            .map_err(|e| format_err(format!("section \"options\": {e}")))?;
        Ok(options)
    }
}

/// Reads one ranking option out of [`RankParams`].
type RankField = fn(&RankParams) -> Value;

fn index_of(name: &str) -> Result<usize> {
    OPTIONS
        .iter()
        .position(|d| d.name == name)
        .ok_or_else(|| Error::InvalidInput(unknown(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_unique_and_defaults_are_within_their_bounds() {
        for (i, d) in OPTIONS.iter().enumerate() {
            assert!(
                OPTIONS[..i].iter().all(|e| e.name != d.name),
                "{} twice",
                d.name
            );
            assert_eq!(
                d.check(Value::from(d.default)).unwrap(),
                Value::from(d.default)
            );
            assert!(!d.doc.is_empty());
        }
        Options::default().check().unwrap();
    }

    #[test]
    fn the_range_rows_doc_names_its_threshold() {
        assert_eq!(super::super::RANGE_ROWS_FROM, 500_000);
        assert!(declared("range_rows")
            .unwrap()
            .doc
            .contains("500,000 pairs"));
    }

    #[test]
    fn the_defaults_are_the_typed_defaults() {
        let options = Options::default();
        let params = options
            .fit_params(TfidfConfig::default(), TfidfConfig::default())
            .unwrap();
        let typed = FitParams::default();
        assert_eq!(params, typed);
        assert_eq!(options.rank_params().unwrap(), RankParams::default());
        assert_eq!(options.live_params().unwrap(), LiveParams::default());
        assert_eq!(params.train, TrainParams::default());
    }

    #[test]
    fn unknown_names_and_wrong_types_are_refused_with_a_hint() {
        let mut options = Options::default();
        let err = options.set("beam_sise", Value::Int(3)).unwrap_err();
        assert!(err.to_string().contains("did you mean beam_size"), "{err}");
        let err = options
            .set("beam_size", Value::Text("3".into()))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidType(_)), "{err}");
        let err = options.set("copy", Value::Float(f64::NAN)).unwrap_err();
        assert!(err.to_string().contains("copy must be"), "{err}");
        assert!(options.set("index", Value::Text("tree".into())).is_err());
        // Together: two edits from fewer characters than one.
        options.set("fuzzy_two", Value::Int(3)).unwrap();
        assert!(options.check().is_err());
        assert!(options
            .set("live_half_life", Value::Float(f64::INFINITY))
            .is_ok());
        assert!(options
            .set("min_count", Value::Float(f64::INFINITY))
            .is_err());
    }

    fn any_value(d: &'static Declared) -> BoxedStrategy<Value> {
        match d.ty {
            OptionType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            OptionType::BoolOrAuto => prop_oneof![
                Just(Value::Text("auto".into())),
                any::<bool>().prop_map(Value::Bool)
            ]
            .boxed(),
            OptionType::Int { min, max } => {
                (min..=max.min(min + 1000)).prop_map(Value::Int).boxed()
            }
            OptionType::IntOrNone { min } => {
                prop_oneof![Just(Value::None), (min..min + 20).prop_map(Value::Int)].boxed()
            }
            OptionType::Float { .. } => any::<f64>()
                .prop_map(move |x| match d.check(Value::Float(x)) {
                    Ok(v) => v,
                    Err(_) => Value::from(d.default),
                })
                .boxed(),
            OptionType::Choice(words) => proptest::sample::select(words)
                .prop_map(|w| Value::Text(w.to_owned()))
                .boxed(),
            OptionType::Texts => proptest::collection::vec(".{0,12}", 0..4)
                .prop_map(Value::Texts)
                .boxed(),
        }
    }

    /// Options that pass [`Options::check`] (a file holds no other).
    fn any_options() -> impl Strategy<Value = Options> {
        let values: Vec<_> = OPTIONS
            .iter()
            .map(|d| match d.name {
                "features_off" => proptest::sample::subsequence(FEATURES.to_vec(), 0..3)
                    .prop_map(|f| Value::Texts(f.iter().map(|s| s.to_string()).collect()))
                    .boxed(),
                _ => any_value(d),
            })
            .collect();
        values
            .prop_map(|values| Options { values })
            .prop_filter("options that disagree", |o| o.check().is_ok())
    }

    proptest! {
        #[test]
        fn every_option_round_trips_through_the_section(options in any_options()) {
            let back = Options::from_bytes(&options.to_bytes()).unwrap();
            prop_assert_eq!(back, options);
        }

        #[test]
        fn a_value_is_either_stored_as_given_or_refused(
            i in 0..OPTIONS.len(), x in any::<f64>(), n in any::<i64>(), b in any::<bool>()
        ) {
            let d = &OPTIONS[i];
            for v in [Value::Float(x), Value::Int(n), Value::Bool(b), Value::None] {
                let mut options = Options::default();
                match options.set(d.name, v.clone()) {
                    Ok(()) => {
                        let stored = options.get(d.name).unwrap();
                        // Whole numbers given to a float option are stored as floats.
                        match (&v, stored) {
                            (Value::Int(n), Value::Float(x)) => prop_assert_eq!(*n as f64, *x),
                            _ => prop_assert_eq!(stored, &v),
                        }
                    }
                    Err(_) => prop_assert_eq!(options, Options::default()),
                }
            }
        }
    }

    #[test]
    fn a_section_naming_an_unknown_option_is_a_format_error() {
        let mut bytes = 1u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&5u64.to_le_bytes());
        bytes.extend_from_slice(b"zzzzz");
        bytes.extend_from_slice(&[1, 1]);
        let err = Options::from_bytes(&bytes).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        // Short sections too.
        assert!(Options::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
