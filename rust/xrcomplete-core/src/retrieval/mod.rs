//! Product retrieval: a customer query -> the best products of a catalogue.
//!
//! The second use of the engine (PECOS's product search), in PECOS's three stages:
//! - **features**: the query as word n-gram TF-IDF beside character n-gram TF-IDF;
//! - **matching**: three candidate sources, each giving its best `candidates` products: an
//!   [`XrLinear`] model trained on (query -> relevant products) and (title -> product), a
//!   [`Bm25`] index of the titles, and the cosine of the query and each title in the TF-IDF
//!   space (which also reaches titles through character n-grams: misspellings, compounds);
//! - **ranking**: every candidate gets a feature vector ([`FEATURES`]: BM25, how many query
//!   words the title holds, both cosines, the model's score and rank, how often the product
//!   was judged relevant in training, lengths) and one [`AdditiveRanker`] orders them.
//!
//! The ranker is learned from the training judgements only, graded: the queries are split into
//! `rank_folds` folds by a hash of their text, and the candidates of each fold's queries come
//! from a model and product counts trained on the other folds, so that the ranker sees the
//! model as it behaves on queries it was not trained on (a model scored on its own training
//! queries would look perfect). The served model is then trained on all queries.

mod bm25;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use rayon::prelude::*;

pub use bm25::{Bm25, Bm25Params};

use crate::error::{Error, Result};
use crate::index::{self, kmeans::KMeansParams, TreeSpec};
use crate::persist::{format_err, Array, Fields, Kind, Persist, Reader, Writer};
use crate::rank::features::{self, names, Feature};
use crate::rank::{AdditiveRanker, RankLists, RankerTrainParams};
use crate::sparse::{CsrArrays, CsrMatrix};
use crate::strings::Strings;
use crate::text::{ConcatScratch, FeatureConcat, TfidfConfig};
use crate::xr::{
    self, PostProcessor, PredictParams, PredictScratch, Progress, Stage, TrainParams, XrLinear,
};

/// The ranking features of a (query, product) candidate, in order. The fixed rule (a
/// catalogue with too few judged queries to learn from) is the title cosine plus half the
/// model's score, the ranking of xrcomplete before the learned stage.
pub const RETRIEVAL_FEATURES: [Feature; 12] = [
    Feature::new("bm25", "bm25", "BM25 of the query against the title"),
    Feature::new(
        "coverage",
        "bm25",
        "share of the query's words the title holds",
    ),
    Feature::new(
        "all_words",
        "bm25",
        "the title holds every word of the query",
    ),
    Feature::new(
        "cosine_words",
        "cosine",
        "cosine of the word TF-IDF of query and title",
    )
    .weighing(1.0),
    Feature::new(
        "cosine_chars",
        "cosine",
        "cosine of the character TF-IDF of query and title",
    )
    .weighing(1.0),
    Feature::new("model", "model", "the XR-Linear model's score").weighing(0.5),
    Feature::new(
        "model_rank",
        "model",
        "1 / the product's rank in the model's beam (0: out)",
    ),
    Feature::new(
        "relevant",
        "popularity",
        "ln(1 + training judgements that found it relevant)",
    ),
    Feature::new(
        "mean_gain",
        "popularity",
        "its mean gain in training (0: never judged)",
    ),
    Feature::new("judged", "popularity", "ln(1 + training judgements of it)"),
    Feature::new("title_words", "lengths", "ln(1 + words of its title)"),
    Feature::new("query_words", "lengths", "ln(1 + words of the query)"),
];

/// The ranking features' names, in order.
pub const FEATURES: [&str; N_FEATURES] = names(&RETRIEVAL_FEATURES);

/// Number of ranking features.
pub const N_FEATURES: usize = RETRIEVAL_FEATURES.len();

/// The ranking features by what they come from, for ablations.
pub fn feature_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    features::groups(&RETRIEVAL_FEATURES)
}

/// Fewer training lists than this and the ranker is the fixed rule.
const MIN_RANK_LISTS: usize = 50;

/// The fixed rule (a catalogue with too few judged queries to learn from): the title cosine
/// plus half the model's score, the ranking of xrcomplete before the learned stage.
fn fixed_ranker() -> Result<AdditiveRanker> {
    AdditiveRanker::fixed(&features::fixed_weights(&RETRIEVAL_FEATURES), 1)
}

/// How [`ProductRetriever::retrieve`] gathers candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrieveParams {
    /// Beam width of the model's search.
    pub beam_size: usize,
    /// Products taken from each candidate source (the model, BM25, the title cosine).
    pub candidates: usize,
    /// The title-cosine source scans only the query's features held by at most this many
    /// titles (the cosine features of the candidates are exact whatever this is): a common
    /// character n-gram (" th", "ing") reaches much of a catalogue and adds little.
    pub posting_limit: usize,
}

impl Default for RetrieveParams {
    fn default() -> Self {
        RetrieveParams {
            beam_size: 10,
            candidates: 100,
            posting_limit: 2_000,
        }
    }
}

impl RetrieveParams {
    /// Checks every option.
    pub fn check(&self) -> Result<()> {
        if self.beam_size == 0 || self.candidates == 0 {
            return Err(Error::InvalidInput(format!(
                "beam_size and candidates must be >= 1, got {} and {}",
                self.beam_size, self.candidates
            )));
        }
        Ok(())
    }
}

/// Options of [`ProductRetriever::fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct FitParams {
    /// Word n-gram vectorizer of the query.
    pub words: TfidfConfig,
    /// Character n-gram vectorizer of the query.
    pub chars: TfidfConfig,
    /// The k-means label tree.
    pub kmeans: KMeansParams,
    /// Training of the model.
    pub train: TrainParams,
    /// Also train on (title -> product) for every product with a title.
    pub titles_as_queries: bool,
    /// Default candidate gathering.
    pub rank: RetrieveParams,
    /// The lexical scorer.
    pub bm25: Bm25Params,
    /// Judgements with at least this gain are relevant: the model is trained on them and they
    /// are counted in the `relevant` feature. Smaller gains still teach the ranker.
    pub relevant_gain: f32,
    /// Folds of the training queries for the ranker's lists (>= 2).
    pub rank_folds: usize,
    /// Training of the ranker.
    pub ranker: RankerTrainParams,
    /// Ranking features left out of the ranker (names of [`FEATURES`]). With both `model` and
    /// `model_rank` left out, the model proposes no candidate either.
    pub features_off: Vec<String>,
}

impl Default for FitParams {
    fn default() -> Self {
        let mut words = TfidfConfig::default();
        words.analyzer.analyzer = crate::text::Analyzer::Word;
        words.analyzer.ngram_range = (1, 3);
        let mut chars = TfidfConfig::default();
        chars.analyzer.ngram_range = (3, 3);
        FitParams {
            words,
            chars,
            kmeans: KMeansParams::default(),
            train: TrainParams::default(),
            titles_as_queries: true,
            rank: RetrieveParams::default(),
            bm25: Bm25Params::default(),
            relevant_gain: 1.0,
            rank_folds: 2,
            ranker: RankerTrainParams::default(),
            features_off: Vec::new(),
        }
    }
}

impl FitParams {
    fn check(&self) -> Result<()> {
        self.rank.check()?;
        self.train.check()?;
        self.bm25.check()?;
        let bad = |what: String| Err(Error::InvalidInput(what));
        if !(self.relevant_gain.is_finite() && self.relevant_gain > 0.0) {
            return bad(format!(
                "relevant_gain must be a finite number > 0, got {}",
                self.relevant_gain
            ));
        }
        if self.rank_folds < 2 {
            return bad(format!("rank_folds must be >= 2, got {}", self.rank_folds));
        }
        if let Some(f) = self
            .features_off
            .iter()
            .find(|f| !FEATURES.contains(&f.as_str()))
        {
            return bad(format!(
                "unknown ranking feature {f:?}; known: {FEATURES:?}"
            ));
        }
        Ok(())
    }
}

/// What one product accumulates during a retrieval.
#[derive(Debug, Default, Clone, Copy)]
struct Acc {
    bm25: f32,
    /// The part of the title cosine from the features the source scanned.
    cosine: f32,
    model: f32,
    /// Query words in the title.
    matched: u32,
    /// 1 + the model's rank of the product (0: not proposed).
    model_rank: u32,
}

/// Reusable buffers of a retrieval: one per thread.
#[derive(Debug, Default, Clone)]
pub struct RetrieveScratch {
    concat: ConcatScratch,
    row: (Vec<u32>, Vec<f32>),
    predict: PredictScratch,
    acc: Vec<Acc>,
    /// `stamp[p] == epoch` when `acc[p]` belongs to this retrieval.
    stamp: Vec<u32>,
    epoch: u32,
    touched: Vec<u32>,
    heap: BinaryHeap<Reverse<(u32, Reverse<u32>)>>,
    candidates: Vec<u32>,
    x: Vec<f32>,
}

impl RetrieveScratch {
    /// Starts a retrieval over `n` products: every accumulator reads as zero.
    fn start(&mut self, n: usize) {
        if self.stamp.len() != n || self.epoch == u32::MAX {
            self.stamp.clear();
            self.stamp.resize(n, 0);
            self.acc.clear();
            self.acc.resize(n, Acc::default());
            self.epoch = 0;
        }
        self.epoch += 1;
        self.touched.clear();
    }

    /// The accumulator of product `p`, zeroed on its first touch in this retrieval.
    #[inline]
    fn touch(&mut self, p: u32) -> &mut Acc {
        let i = p as usize;
        if self.stamp[i] != self.epoch {
            self.stamp[i] = self.epoch;
            self.acc[i] = Acc::default();
            self.touched.push(p);
        }
        &mut self.acc[i]
    }
}

/// Adds to `out` the (at most) `n` touched products of highest positive `key`; ties go to the
/// smaller product id.
fn best_touched(s: &mut RetrieveScratch, n: usize, key: impl Fn(&Acc) -> f32, out: &mut Vec<u32>) {
    let RetrieveScratch {
        acc, touched, heap, ..
    } = s;
    heap.clear();
    for &p in touched.iter() {
        let v = key(&acc[p as usize]);
        // Positive finite scores order like their bit patterns.
        if v.is_nan() || v <= 0.0 {
            continue;
        }
        let item = Reverse((v.to_bits(), Reverse(p)));
        if heap.len() < n {
            heap.push(item);
        } else if heap.peek().is_some_and(|worst| item < *worst) {
            heap.pop();
            heap.push(item);
        }
    }
    out.extend(heap.drain().map(|Reverse((_, Reverse(p)))| p));
}

/// Per product, from the training judgements: `ln(1 + relevant)`, the mean gain (0 if never
/// judged) and `ln(1 + judged)`.
fn product_stats(
    n_products: usize,
    judged: &[Vec<(u32, f32)>],
    used: impl Fn(usize) -> bool,
    relevant_gain: f32,
) -> Vec<f32> {
    let mut counts = vec![(0u32, 0u32, 0f64); n_products];
    for (_, list) in judged.iter().enumerate().filter(|&(i, _)| used(i)) {
        for &(p, gain) in list {
            let c = &mut counts[p as usize];
            c.0 += u32::from(gain >= relevant_gain);
            c.1 += 1;
            c.2 += f64::from(gain);
        }
    }
    counts
        .iter()
        .flat_map(|&(relevant, n, sum)| {
            let mean = if n == 0 { 0.0 } else { sum / f64::from(n) };
            [
                (f64::from(relevant)).ln_1p() as f32,
                mean as f32,
                (f64::from(n)).ln_1p() as f32,
            ]
        })
        .collect()
}

/// A trained product retriever. Immutable; one serves many threads.
#[derive(Debug)]
pub struct ProductRetriever {
    features: FeatureConcat,
    model: XrLinear,
    /// Product ids, by label id (integers in decimal when `integer_ids`).
    products: Strings,
    integer_ids: bool,
    /// Product titles as the catalogue gave them, by label id (empty in files saved before
    /// they were kept).
    names: Strings,
    /// Feature -> (product, weight of the feature in the product's normalised title row).
    titles: CsrArrays,
    /// The same weights by product: product -> (feature, weight).
    title_rows: CsrArrays,
    bm25: Bm25,
    /// Three values per product (see [`product_stats`]).
    stats: Array<f32>,
    ranker: AdditiveRanker,
    /// False when the ranker was not learned (the fixed rule of a tiny training set).
    learned: bool,
    /// False when the ranker was trained without the model's features: the model then
    /// proposes no candidate.
    use_model: bool,
    rank: RetrieveParams,
}

/// The product ids of a catalogue, by label id: text, or integers (catalogues keyed by a number),
/// which [`ProductRetriever::product`] gives back as integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductIds {
    /// Ids that are strings.
    Text(Vec<String>),
    /// Ids that are integers.
    Integer(Vec<i64>),
}

impl ProductIds {
    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            ProductIds::Text(ids) => ids.len(),
            ProductIds::Integer(ids) => ids.len(),
        }
    }

    /// True when there is no id.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One product id, as it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductId<'a> {
    /// A string id.
    Text(&'a str),
    /// An integer id.
    Integer(i64),
}

impl std::fmt::Display for ProductId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProductId::Text(id) => f.write_str(id),
            ProductId::Integer(id) => write!(f, "{id}"),
        }
    }
}

/// True when `s` is an i64 written as `i64::to_string` writes it (how integer ids are stored).
fn is_canonical_integer(s: &str) -> bool {
    s.parse::<i64>().is_ok_and(|v| v.to_string() == s)
}

/// What [`ProductRetriever::fit`] shares between the fold models and the final one.
struct Training<'a, S> {
    queries: &'a [S],
    titles: &'a [S],
    /// Queries with a relevant product: (query index, relevant products).
    positives: Vec<(usize, Vec<u32>)>,
    features: FeatureConcat,
    params: &'a FitParams,
    progress: &'a Progress,
}

impl<S: AsRef<str> + Sync> Training<'_, S> {
    /// An XR-Linear model trained on the queries of `positives` for which `used` holds (and
    /// the titles, with `titles_as_queries`). `None` without any training row.
    fn matcher(&self, used: impl Fn(usize) -> bool) -> Result<Option<XrLinear>> {
        let n = self.titles.len();
        let mut texts: Vec<&str> = Vec::new();
        let mut rows: Vec<(Vec<u32>, Vec<f32>)> = Vec::new();
        for (i, labels) in self.positives.iter().filter(|(i, _)| used(*i)) {
            texts.push(self.queries[*i].as_ref());
            rows.push((labels.clone(), vec![1.0; labels.len()]));
        }
        if texts.is_empty() {
            return Ok(None);
        }
        if self.params.titles_as_queries {
            for (j, t) in self.titles.iter().enumerate() {
                if !t.as_ref().trim().is_empty() {
                    texts.push(t.as_ref());
                    rows.push((vec![j as u32], vec![1.0]));
                }
            }
        }
        self.progress.set_stage(Stage::Vectorizing);
        let x = self.features.transform(&[&texts, &texts])?;
        let y = CsrMatrix::from_rows(n, rows);
        let no_strings: [&str; 0] = [];
        self.progress.set_stage(Stage::Clustering);
        let tree = index::build(
            &TreeSpec::KMeans(self.params.kmeans.clone()),
            &no_strings,
            &x,
            &y,
        )?;
        Ok(Some(xr::train(
            &x,
            &y,
            tree,
            &self.params.train,
            self.progress,
        )?))
    }
}

impl ProductRetriever {
    /// Trains on the judgements `judged[i]` of `queries[i]`: (label id into `products`, a gain
    /// of at least 0, 0 for judged not relevant); `titles[j]` is the title of product `j` (may
    /// be empty). Judgements of gain at least `relevant_gain` train the model; all of them
    /// teach the ranker.
    pub fn fit<S: AsRef<str> + Sync>(
        queries: &[S],
        judged: &[Vec<(u32, f32)>],
        products: ProductIds,
        titles: &[S],
        params: &FitParams,
        progress: &Progress,
    ) -> Result<Self> {
        params.check()?;
        let bad = |what: String| Err(Error::InvalidInput(what));
        if queries.len() != judged.len() {
            return bad(format!(
                "{} queries but {} lists of judged products",
                queries.len(),
                judged.len()
            ));
        }
        if titles.len() != products.len() || products.is_empty() {
            return bad(format!(
                "{} titles for {} products (at least one product is needed)",
                titles.len(),
                products.len()
            ));
        }
        let n = products.len();
        if let Some(&(p, _)) = judged.iter().flatten().find(|&&(p, _)| p as usize >= n) {
            return bad(format!("judged product {p} is out of range ({n} products)"));
        }
        if let Some(&(_, g)) = judged
            .iter()
            .flatten()
            .find(|&&(_, g)| !(g.is_finite() && g >= 0.0))
        {
            return bad(format!("gains must be finite numbers >= 0, got {g}"));
        }
        // One list per query, each product once (its largest gain).
        let judged: Vec<Vec<(u32, f32)>> = judged
            .iter()
            .map(|list| {
                let mut list = list.clone();
                list.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
                list.dedup_by_key(|j| j.0);
                list
            })
            .collect();
        let positives: Vec<(usize, Vec<u32>)> = judged
            .iter()
            .enumerate()
            .filter(|&(i, _)| !queries[i].as_ref().trim().is_empty())
            .map(|(i, list)| {
                let relevant = list
                    .iter()
                    .filter(|j| j.1 >= params.relevant_gain)
                    .map(|j| j.0);
                (i, relevant.collect::<Vec<u32>>())
            })
            .filter(|(_, labels)| !labels.is_empty())
            .collect();
        if positives.is_empty() {
            return bad("no training query has a relevant product".into());
        }
        progress.set_stage(Stage::Vectorizing);
        let mut texts: Vec<&str> = positives
            .iter()
            .map(|(i, _)| queries[*i].as_ref())
            .collect();
        if params.titles_as_queries {
            texts.extend(
                titles
                    .iter()
                    .map(AsRef::as_ref)
                    .filter(|t| !t.trim().is_empty()),
            );
        }
        let features = FeatureConcat::fit_columns(
            &[params.words.clone(), params.chars.clone()],
            &[&texts, &texts],
        )?;
        let title_rows = features.transform(&[titles, titles])?;
        let title_index: CsrArrays = title_rows.transpose().into();
        let title_rows: CsrArrays = title_rows.into();
        let bm25 = Bm25::fit(titles, params.bm25)?;
        let (ids, integer_ids) = match products {
            ProductIds::Text(ids) => (Strings::new(&ids)?, false),
            ProductIds::Integer(ids) => {
                let text: Vec<String> = ids.iter().map(i64::to_string).collect();
                (Strings::new(&text)?, true)
            }
        };
        let mask: Vec<bool> = FEATURES
            .iter()
            .map(|f| !params.features_off.iter().any(|o| o == f))
            .collect();
        let use_model = mask[5] || mask[6];
        let training = Training {
            queries,
            titles,
            positives,
            features,
            params,
            progress,
        };

        // The ranker's lists: each fold's queries, candidates from the other folds' model.
        let folds = params.rank_folds as u64;
        let fold_of: Vec<u64> = queries
            .iter()
            .map(|q| rustc_hash::FxBuildHasher.hash_one(q.as_ref()) % folds)
            .collect();
        let mut lists = RankLists::new(N_FEATURES);
        for f in 0..folds {
            let Some(model) = training.matcher(|i| fold_of[i] != f)? else {
                continue;
            };
            let stats = product_stats(n, &judged, |i| fold_of[i] != f, params.relevant_gain);
            let partial = Self {
                features: training.features.clone(),
                model,
                products: ids.clone(),
                integer_ids,
                // Ranks and is dropped: no title is read.
                names: Strings::new(std::iter::empty::<&str>())?,
                titles: title_index.clone(),
                title_rows: title_rows.clone(),
                bm25: bm25.clone(),
                stats: stats.into(),
                ranker: fixed_ranker()?,
                learned: false,
                use_model,
                rank: params.rank,
            };
            progress.set_stage(Stage::Ranking);
            let mine: Vec<usize> = (0..queries.len())
                .filter(|&i| fold_of[i] == f && judged[i].iter().any(|j| j.1 > 0.0))
                .collect();
            type List = (Vec<u32>, Vec<f32>);
            let gathered: Vec<List> = mine
                .par_iter()
                .map_init(RetrieveScratch::default, |s, &i| {
                    partial.gather(queries[i].as_ref(), &params.rank, s)?;
                    Ok((s.candidates.clone(), s.x.clone()))
                })
                .collect::<Result<_>>()?;
            for (&i, (candidates, x)) in mine.iter().zip(&gathered) {
                for (c, &p) in candidates.iter().enumerate() {
                    let gain = judged[i]
                        .binary_search_by_key(&p, |j| j.0)
                        .map_or(0.0, |at| judged[i][at].1);
                    lists.push(&x[c * N_FEATURES..(c + 1) * N_FEATURES], gain, 0)?;
                }
                lists.finish();
            }
        }
        let (ranker, learned) = if lists.len() >= MIN_RANK_LISTS {
            progress.set_stage(Stage::Ranking);
            (
                AdditiveRanker::train(&lists, 1, Some(&mask), &params.ranker)?,
                true,
            )
        } else {
            (fixed_ranker()?, false)
        };
        let model = training.matcher(|_| true)?.expect("positives is not empty");
        progress.set_stage(Stage::Finishing);
        let stats = product_stats(n, &judged, |_| true, params.relevant_gain);
        Self::from_parts(
            training.features,
            model,
            (ids, integer_ids, Strings::new(titles)?),
            [title_index, title_rows],
            bm25,
            stats.into(),
            (ranker, learned, use_model),
            params.rank,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        features: FeatureConcat,
        model: XrLinear,
        (products, integer_ids, names): (Strings, bool, Strings),
        [titles, title_rows]: [CsrArrays; 2],
        bm25: Bm25,
        stats: Array<f32>,
        (ranker, learned, use_model): (AdditiveRanker, bool, bool),
        rank: RetrieveParams,
    ) -> Result<Self> {
        rank.check()?;
        let bad = |what: String| Err(Error::InvalidInput(format!("product retriever: {what}")));
        if features.blocks().len() != 2 || features.n_features() != model.n_features() {
            return bad("the features do not match the model".into());
        }
        let n = products.len();
        if model.n_labels() != n
            || titles.n_cols() != n
            || titles.n_rows() != model.n_features()
            || title_rows.n_rows() != n
            || title_rows.n_cols() != model.n_features()
            || title_rows.nnz() != titles.nnz()
            || bm25.n_docs() != n
            || stats.len() != 3 * n
        {
            return bad(format!(
                "{n} products, a model of {} labels and {} features, titles of {} x {}, \
                 {} BM25 documents, {} product statistics",
                model.n_labels(),
                model.n_features(),
                titles.n_rows(),
                titles.n_cols(),
                bm25.n_docs(),
                stats.len()
            ));
        }
        if ranker.n_features() != N_FEATURES || stats.iter().any(|v| !v.is_finite()) {
            return bad("a ranker of the wrong size or statistics that are not finite".into());
        }
        if integer_ids && !products.iter().all(is_canonical_integer) {
            return bad("integer product ids that are not integers".into());
        }
        if names.len() != n {
            return bad(format!("{} titles for {n} products", names.len()));
        }
        Ok(ProductRetriever {
            features,
            model,
            products,
            names,
            integer_ids,
            titles,
            title_rows,
            bm25,
            stats,
            ranker,
            learned,
            use_model,
            rank,
        })
    }

    /// The default candidate gathering.
    pub fn rank_params(&self) -> &RetrieveParams {
        &self.rank
    }

    /// True when the ranker was learned from the judgements (false: the fixed rule, for too
    /// few judged queries).
    pub fn ranker_learned(&self) -> bool {
        self.learned
    }

    /// The learned ranker.
    pub fn ranker(&self) -> &AdditiveRanker {
        &self.ranker
    }

    /// Product ids, by label id.
    pub fn products(&self) -> impl ExactSizeIterator<Item = ProductId<'_>> + '_ {
        (0..self.products.len()).map(|i| self.id_at(i))
    }

    /// The id of product `label` (`label < n_products`).
    pub fn product(&self, label: u32) -> ProductId<'_> {
        self.id_at(label as usize)
    }

    /// The title of product `label` as the catalogue gave it (`label < n_products`; empty in
    /// a file saved before titles were kept).
    pub fn title(&self, label: u32) -> &str {
        self.names.get(label as usize)
    }

    fn id_at(&self, i: usize) -> ProductId<'_> {
        let text = self.products.get(i);
        match (self.integer_ids, text.parse()) {
            // Checked when built or loaded: an integer id always parses.
            (true, Ok(id)) => ProductId::Integer(id),
            _ => ProductId::Text(text),
        }
    }

    /// The model.
    pub fn model(&self) -> &XrLinear {
        &self.model
    }

    /// Heap memory in bytes (approximately).
    pub fn memory_bytes(&self) -> usize {
        self.model.memory_bytes()
            + self.titles.nbytes()
            + self.title_rows.nbytes()
            + self.products.nbytes()
            + self.names.nbytes()
            + self.bm25.memory_bytes()
            + self.stats.nbytes()
            + self.ranker.memory_bytes()
            + self
                .features
                .blocks()
                .iter()
                .map(|b| b.memory_bytes())
                .sum::<usize>()
    }

    /// The candidates of `query` into `scratch.candidates` (sorted product ids) and their
    /// feature vectors into `scratch.x` ([`N_FEATURES`] per candidate, in order).
    fn gather(
        &self,
        query: &str,
        params: &RetrieveParams,
        scratch: &mut RetrieveScratch,
    ) -> Result<()> {
        self.features
            .transform_one(&[query, query], &mut scratch.concat, &mut scratch.row)?;
        scratch.start(self.products.len());
        scratch.candidates.clear();
        scratch.x.clear();
        // The title cosine as a source, from the query's less common features.
        let (idx, val) = std::mem::take(&mut scratch.row);
        for (&f, &v) in idx.iter().zip(&val) {
            let (products, weights) = self.titles.row(f as usize);
            if products.len() > params.posting_limit {
                continue;
            }
            for (&p, &w) in products.iter().zip(weights) {
                scratch.touch(p).cosine += v * w;
            }
        }
        // BM25 and the number of the query's words in each title.
        let words = bm25::distinct_words(query);
        for w in &words {
            if let Some(id) = self.bm25.word(w) {
                let (products, weights) = self.bm25.postings(id);
                for (&p, &v) in products.iter().zip(weights) {
                    let a = scratch.touch(p);
                    a.bm25 += v;
                    a.matched += 1;
                }
            }
        }
        if self.use_model {
            let predict_params = PredictParams {
                beam_size: params.beam_size,
                topk: params.candidates,
                post_processor: PostProcessor::L3Hinge,
            };
            let found =
                self.model
                    .predict_one(&idx, &val, &predict_params, None, &mut scratch.predict)?;
            // Sorted best first: the position is the rank.
            for (r, (p, s)) in found.into_iter().enumerate() {
                let a = scratch.touch(p);
                a.model = s;
                a.model_rank = r as u32 + 1;
                scratch.candidates.push(p);
            }
        }
        let mut out = std::mem::take(&mut scratch.candidates);
        best_touched(scratch, params.candidates, |a| a.bm25, &mut out);
        best_touched(scratch, params.candidates, |a| a.cosine, &mut out);
        out.sort_unstable();
        out.dedup();
        let n_words = words.len() as f32;
        let query_words = n_words.ln_1p();
        // Exact cosines, split by feature block (words, then characters), by merging the query's
        // sorted features with the title's.
        let split = self.features.offsets()[1] as u32;
        for &p in &out {
            let a = scratch.acc[p as usize];
            let (mut cos_words, mut cos_chars) = (0.0f32, 0.0f32);
            let (t_idx, t_val) = self.title_rows.row(p as usize);
            let (mut i, mut j) = (0, 0);
            while i < idx.len() && j < t_idx.len() {
                match idx[i].cmp(&t_idx[j]) {
                    std::cmp::Ordering::Less => i += 1,
                    std::cmp::Ordering::Greater => j += 1,
                    std::cmp::Ordering::Equal => {
                        let v = val[i] * t_val[j];
                        if idx[i] < split {
                            cos_words += v;
                        } else {
                            cos_chars += v;
                        }
                        i += 1;
                        j += 1;
                    }
                }
            }
            let st = &self.stats[3 * p as usize..3 * p as usize + 3];
            let coverage = if words.is_empty() {
                0.0
            } else {
                a.matched as f32 / n_words
            };
            let model_rank = if a.model_rank == 0 {
                0.0
            } else {
                1.0 / a.model_rank as f32
            };
            scratch.x.extend_from_slice(&[
                a.bm25,
                coverage,
                f32::from(u8::from(
                    !words.is_empty() && a.matched as usize == words.len(),
                )),
                cos_words,
                cos_chars,
                a.model,
                model_rank,
                st[0],
                st[1],
                st[2],
                (self.bm25.length(p as usize) as f32).ln_1p(),
                query_words,
            ]);
        }
        scratch.candidates = out;
        scratch.row = (idx, val);
        Ok(())
    }

    /// The feature vectors of `query`'s candidates: (product label, [`FEATURES`] values), by
    /// label id. What the ranker scores; for inspection and tests.
    pub fn candidates(
        &self,
        query: &str,
        params: &RetrieveParams,
        scratch: &mut RetrieveScratch,
    ) -> Result<Vec<(u32, [f32; N_FEATURES])>> {
        params.check()?;
        self.gather(query, params, scratch)?;
        Ok(scratch
            .candidates
            .iter()
            .zip(scratch.x.chunks_exact(N_FEATURES))
            .map(|(&p, x)| (p, x.try_into().expect("N_FEATURES values")))
            .collect())
    }

    /// The best `k` products for `query`: (label id, ranker score), best first (ties: the
    /// smaller label id first).
    pub fn retrieve(
        &self,
        query: &str,
        k: usize,
        params: &RetrieveParams,
        scratch: &mut RetrieveScratch,
    ) -> Result<Vec<(u32, f32)>> {
        params.check()?;
        if k == 0 {
            return Ok(Vec::new());
        }
        self.gather(query, params, scratch)?;
        let mut found: Vec<(u32, f32)> = scratch
            .candidates
            .iter()
            .zip(scratch.x.chunks_exact(N_FEATURES))
            .map(|(&p, x)| (p, self.ranker.score(0, x)))
            .collect();
        found.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        found.truncate(k);
        Ok(found)
    }

    /// [`ProductRetriever::retrieve`] for many queries, in parallel.
    pub fn retrieve_batch<S: AsRef<str> + Sync>(
        &self,
        queries: &[S],
        k: usize,
        params: &RetrieveParams,
    ) -> Result<Vec<Vec<(u32, f32)>>> {
        params.check()?;
        queries
            .par_iter()
            .map_init(RetrieveScratch::default, |scratch, q| {
                self.retrieve(q.as_ref(), k, params, scratch)
            })
            .collect()
    }
}

impl Persist for ProductRetriever {
    const KIND: Kind = Kind::ProductRetriever;

    /// Sections: the candidate options and flags, the features, the model and the ranker
    /// (complete files of their own), the product ids, their titles, the title index, the BM25 index, the
    /// product statistics.
    fn writer(&self) -> Writer<'_> {
        let r = &self.rank;
        let mut fields = Vec::new();
        for v in [
            r.beam_size as u64,
            r.candidates as u64,
            r.posting_limit as u64,
            u64::from(self.learned),
            u64::from(self.use_model),
        ] {
            fields.extend_from_slice(&v.to_le_bytes());
        }
        let mut w = Writer::new(Kind::ProductRetriever);
        w.bytes("rank2", fields)
            .file("features", self.features.writer())
            .file("model", self.model.writer())
            .file("ranker", self.ranker.writer());
        self.products.write(&mut w, "ids");
        self.names.write(&mut w, "names");
        if self.integer_ids {
            w.u64s("int_ids", [1]);
        }
        self.titles.write(&mut w, "t");
        self.title_rows.write(&mut w, "tr");
        self.bm25.write(&mut w);
        w.array("stats", &self.stats);
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        if !r.has("rank2") {
            return Err(format_err(
                "this product retriever was saved by an earlier xrcomplete, before the learned \
                 ranking stage: train it again",
            ));
        }
        let mut f = Fields::new(r.bytes("rank2")?, "rank2");
        let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let (beam_size, candidates) = (count(f.u64()?), count(f.u64()?));
        let posting_limit = count(f.u64()?);
        let flag = |v: u64| match v {
            0 | 1 => Ok(v == 1),
            _ => Err(format_err(format!("rank2 flag {v}"))),
        };
        let (learned, use_model) = (flag(f.u64()?)?, flag(f.u64()?)?);
        f.end()?;
        let rank = RetrieveParams {
            beam_size,
            candidates,
            posting_limit,
        };
        let format = |e: Error| match e {
            Error::InvalidInput(what) => Error::Format { what },
            other => other,
        };
        let products = Strings::read(r, "ids", "product ids")?;
        // Files written before the titles were kept have none: every title is empty.
        let names = match r.has("names") {
            true => Strings::read(r, "names", "product titles")?,
            false => Strings::new(std::iter::repeat_n("", products.len()))?,
        };
        // Files written before integer ids have no such section: their ids are text.
        let integer_ids = match r.has("int_ids") {
            false => false,
            true => match r.u64s("int_ids")?.as_slice() {
                [1] => true,
                other => return Err(format_err(format!("int_ids section holds {other:?}"))),
            },
        };
        let features: FeatureConcat = r.nested("features")?;
        let titles = CsrArrays::read(r, "t", products.len())?;
        let title_rows = CsrArrays::read(r, "tr", features.n_features())?;
        Self::from_parts(
            features,
            r.nested("model")?,
            (products, integer_ids, names),
            [titles, title_rows],
            Bm25::read(r)?,
            r.array("stats")?,
            (r.nested("ranker")?, learned, use_model),
            rank,
        )
        .map_err(format)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_declared_features_give_the_lists_they_replaced() {
        let mut w = [0.0; N_FEATURES];
        (w[3], w[4], w[5]) = (1.0, 1.0, 0.5); // as the fixed rule was written before
        assert_eq!(features::fixed_weights(&RETRIEVAL_FEATURES), w);
        let groups: Vec<(&str, Vec<&str>)> = vec![
            ("bm25", vec!["bm25", "coverage", "all_words"]),
            ("cosine", vec!["cosine_words", "cosine_chars"]),
            ("model", vec!["model", "model_rank"]),
            ("popularity", vec!["relevant", "mean_gain", "judged"]),
            ("lengths", vec!["title_words", "query_words"]),
        ];
        assert_eq!(feature_groups(), groups);
    }

    fn params() -> FitParams {
        FitParams {
            kmeans: KMeansParams {
                branching: 2,
                max_leaf_size: 2,
                ..Default::default()
            },
            ..FitParams::default()
        }
    }

    /// Each product relevant (gain 1) to its query.
    fn ones(products: &[u32]) -> Vec<Vec<(u32, f32)>> {
        products.iter().map(|&p| vec![(p, 1.0)]).collect()
    }

    fn catalogue() -> (ProductIds, Vec<&'static str>) {
        let titles = vec![
            "Leather Sofa in Brown",
            "Cordless Drill 18V",
            "Ceiling Fan with Light",
            "Garden Hose 50 ft.",
            "Paint Roller Kit",
            "",
        ];
        let ids = (0..titles.len()).map(|i| format!("p{i}")).collect();
        (ProductIds::Text(ids), titles)
    }

    pub(crate) fn trained() -> ProductRetriever {
        let (ids, titles) = catalogue();
        let queries = [
            "couch",
            "couch brown",
            "screwdriver power",
            "hose",
            "fan light",
        ];
        ProductRetriever::fit(
            &queries,
            &ones(&[0, 0, 1, 3, 2]),
            ids,
            &titles,
            &params(),
            &Progress::default(),
        )
        .unwrap()
    }

    fn top(r: &ProductRetriever, q: &str, k: usize, params: &RetrieveParams) -> Vec<String> {
        r.retrieve(q, k, params, &mut RetrieveScratch::default())
            .unwrap()
            .into_iter()
            .map(|(p, _)| r.product(p).to_string())
            .collect()
    }

    #[test]
    fn titles_and_training_queries_both_find_products() {
        let r = trained();
        let d = RetrieveParams::default();
        // Title words: no training query says "roller".
        assert_eq!(top(&r, "paint roller", 1, &d), ["p4"]);
        // Learned: "couch" is in no title.
        assert_eq!(top(&r, "couch", 1, &d), ["p0"]);
        assert!(!r.ranker_learned());
        // Without the model's features, the model proposes nothing: "couch" is lost.
        let (ids, titles) = catalogue();
        let titles_only = ProductRetriever::fit(
            &[
                "couch",
                "couch brown",
                "screwdriver power",
                "hose",
                "fan light",
            ],
            &ones(&[0, 0, 1, 3, 2]),
            ids,
            &titles,
            &FitParams {
                features_off: vec!["model".into(), "model_rank".into()],
                ..params()
            },
            &Progress::default(),
        )
        .unwrap();
        assert!(!top(&titles_only, "couch", 3, &d).contains(&"p0".to_string()));
        assert!(top(&titles_only, "zzzz qqqq", 3, &d).is_empty());
        assert!(top(&r, "paint", 0, &d).is_empty());
        // BM25 finds what the character n-grams alone rank lower: "18v" is one word.
        let found = r
            .candidates("18v", &d, &mut RetrieveScratch::default())
            .unwrap();
        let drill = found
            .iter()
            .find(|(p, _)| *p == 1)
            .expect("the drill is a candidate");
        assert!(drill.1[0] > 0.0 && drill.1[1] == 1.0 && drill.1[2] == 1.0);
        let got = r
            .retrieve("drill", 6, &d, &mut RetrieveScratch::default())
            .unwrap();
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1 && w[0].0 != w[1].0));
    }

    #[test]
    fn persistence_and_batch_agree() {
        let r = trained();
        let loaded = ProductRetriever::from_bytes(&r.to_bytes()).unwrap();
        let queries = ["couch", "garden hose", "", "ceiling"];
        let d = RetrieveParams::default();
        let batch = loaded.retrieve_batch(&queries, 3, &d).unwrap();
        for (q, got) in queries.iter().zip(batch) {
            assert_eq!(
                got,
                r.retrieve(q, 3, &d, &mut RetrieveScratch::default())
                    .unwrap()
            );
        }
        let mut bytes = r.to_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        assert!(ProductRetriever::from_bytes(&bytes).is_err());
        // A file of the format before the ranking stage is refused with what to do.
        let mut w = Writer::new(Kind::ProductRetriever);
        w.bytes("rank", vec![0; 32]);
        let err = ProductRetriever::from_bytes(&w.finish()).unwrap_err();
        assert!(err.to_string().contains("train it again"), "{err}");
    }

    #[test]
    fn integer_ids_come_back_as_integers_and_survive_saving() {
        let (_, titles) = catalogue();
        let ids = ProductIds::Integer(vec![100, -2, 0, 9_007_199_254_740_993, i64::MIN, 7]);
        let r = ProductRetriever::fit(
            &["couch", "hose"],
            &ones(&[0, 3]),
            ids,
            &titles,
            &params(),
            &Progress::default(),
        )
        .unwrap();
        let d = RetrieveParams::default();
        let first = |r: &ProductRetriever, q: &str| {
            let found = r.retrieve(q, 1, &d, &mut RetrieveScratch::default());
            r.product(found.unwrap()[0].0).to_string()
        };
        assert_eq!(r.products().next(), Some(ProductId::Integer(100)));
        assert_eq!(first(&r, "couch"), "100");
        assert_eq!(first(&r, "garden hose"), "9007199254740993");
        let loaded = ProductRetriever::from_bytes(&r.to_bytes()).unwrap();
        assert_eq!(first(&loaded, "couch"), "100");
        // The titles are kept, by label.
        let kept: Vec<&str> = (0..titles.len() as u32).map(|i| loaded.title(i)).collect();
        assert_eq!(kept, titles);
        assert_eq!(loaded.products().nth(4), Some(ProductId::Integer(i64::MIN)));
        // Text ids that look like numbers stay text.
        let text = trained();
        assert!(text.products().all(|p| matches!(p, ProductId::Text(_))));
        assert!(!text.to_bytes().windows(7).any(|w| w == b"int_ids"));
    }

    #[test]
    fn bad_input_is_refused() {
        let (ids, titles) = catalogue();
        let p = params();
        let fit = |q: &[&str], rel: &[Vec<(u32, f32)>], ids: ProductIds, t: &[&str]| {
            ProductRetriever::fit(q, rel, ids, t, &p, &Progress::default()).map(|_| ())
        };
        assert!(fit(&["a"], &[], ids.clone(), &titles).is_err());
        assert!(fit(&["a"], &ones(&[99]), ids.clone(), &titles).is_err());
        assert!(fit(&["a"], &ones(&[0]), ids.clone(), &titles[1..]).is_err());
        assert!(fit(&["a"], &ones(&[0]), ProductIds::Text(vec![]), &[]).is_err());
        for gain in [f32::NAN, -1.0, f32::INFINITY] {
            assert!(fit(&["a"], &[vec![(0, gain)]], ids.clone(), &titles).is_err());
        }
        // Judged, but nothing relevant: nothing to train the model on.
        assert!(fit(&["a"], &[vec![(0, 0.5)]], ids.clone(), &titles).is_err());
        for off in [vec!["nope".to_string()], vec!["bm25 ".to_string()]] {
            let p = FitParams {
                features_off: off,
                ..params()
            };
            let r = ProductRetriever::fit(
                &["a"],
                &ones(&[0]),
                ids.clone(),
                &titles,
                &p,
                &Progress::default(),
            );
            assert!(r.is_err());
        }
        let bad = RetrieveParams {
            candidates: 0,
            ..RetrieveParams::default()
        };
        assert!(trained()
            .retrieve("a", 3, &bad, &mut RetrieveScratch::default())
            .is_err());
    }

    /// A catalogue where a query's words fit several titles and customers mean the product that
    /// many others bought: 300 products, titles of three words out of 40 plus a model number;
    /// queries are two of the title's words, for product `p` drawn with weight `1 / (1 + p)`.
    type Judged = Vec<Vec<(u32, f32)>>;

    fn ambiguous(seed: u64, n_queries: usize) -> (Vec<String>, Vec<String>, Judged) {
        let mut rng = crate::rng::SplitMix64(seed);
        let word = |i: u64| format!("w{i}");
        let mut rng_t = crate::rng::SplitMix64(7);
        let titles: Vec<String> = (0..300)
            .map(|p| {
                let w: Vec<String> = (0..3).map(|_| word(rng_t.below(40))).collect();
                format!("{} model{p}", w.join(" "))
            })
            .collect();
        let cumulative: Vec<f64> = (0..300)
            .scan(0.0, |acc, p| {
                *acc += 1.0 / (1.0 + f64::from(p));
                Some(*acc)
            })
            .collect();
        let total = cumulative[299];
        let (mut queries, mut judged) = (Vec::new(), Vec::new());
        for _ in 0..n_queries {
            let u = rng.below(1 << 30) as f64 / f64::from(1u32 << 30) * total;
            let p = cumulative.partition_point(|&c| c < u).min(299);
            let words: Vec<&str> = titles[p].split(' ').take(3).collect();
            let a = rng.below(3) as usize;
            let b = (a + 1 + rng.below(2) as usize) % 3;
            queries.push(format!("{} {}", words[a], words[b]));
            judged.push(vec![(p as u32, 2.0)]);
        }
        (titles, queries, judged)
    }

    #[test]
    fn the_learned_ranker_beats_the_fixed_rule_and_is_deterministic() {
        let (titles, queries, judged) = ambiguous(1, 600);
        let ids = ProductIds::Text((0..300).map(|p| format!("p{p}")).collect());
        let fit = |p: &FitParams| {
            ProductRetriever::fit(
                &queries,
                &judged,
                ids.clone(),
                &titles,
                p,
                &Progress::default(),
            )
            .unwrap()
        };
        let learned = fit(&params());
        assert!(learned.ranker_learned());
        // Deterministic: the same file from a second fit, on another thread pool size.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let again = pool.install(|| fit(&params()));
        assert_eq!(learned.to_bytes(), again.to_bytes());
        // Popularity is what tells the ambiguous queries apart: the ranker weighs it.
        assert!(learned.ranker().weights(0)[7] != 0.0);
        let (_, test, truth) = ambiguous(2, 300);
        let mrr = |r: &ProductRetriever| {
            let found = r
                .retrieve_batch(&test, 10, &RetrieveParams::default())
                .unwrap();
            let mut total = 0.0;
            for (hits, want) in found.iter().zip(&truth) {
                if let Some(at) = hits.iter().position(|h| h.0 == want[0].0) {
                    total += 1.0 / (at as f64 + 1.0);
                }
            }
            total / test.len() as f64
        };
        // The fixed rule: a retriever whose judgements are too few to learn from, same parts.
        let mut fixed = fit(&params());
        fixed.ranker = fixed_ranker().unwrap();
        let (m_learned, m_fixed) = (mrr(&learned), mrr(&fixed));
        assert!(m_learned > m_fixed + 0.02, "{m_learned} vs {m_fixed}");
        let loaded = ProductRetriever::from_bytes(&learned.to_bytes()).unwrap();
        assert!((mrr(&loaded) - m_learned).abs() < 1e-12 && loaded.ranker_learned());
    }
}
