//! Product retrieval: a customer query -> the best products of a catalogue.
//!
//! The second use of the engine (PECOS's product search): the query is vectorised (word n-gram
//! TF-IDF beside character n-gram TF-IDF), an [`XrLinear`] model trained on (query -> relevant
//! products) and (product title -> product) matches it to products, and every product's title,
//! vectorised the same way, adds its cosine similarity to the query. The title term is what finds
//! products that no training query reached (most of a catalogue, when the log is small); the
//! model is what carries what customers meant by their words.
//!
//! Scores: `cosine(query, title) + model_weight * model score` over the union of the model's
//! best `candidates` and every product sharing a feature with the query; the best `k` are
//! returned.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::index::{self, kmeans::KMeansParams, TreeSpec};
use crate::persist::{format_err, Fields, Kind, Persist, Reader, Writer};
use crate::sparse::{CsrArrays, CsrMatrix};
use crate::strings::Strings;
use crate::text::{ConcatScratch, FeatureConcat, TfidfConfig};
use crate::xr::{
    self, PostProcessor, PredictParams, PredictScratch, Progress, Stage, TrainParams, XrLinear,
};

/// How [`ProductRetriever::retrieve`] ranks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrieveParams {
    /// Beam width of the model's search.
    pub beam_size: usize,
    /// Products taken from the model (at least `k`).
    pub candidates: usize,
    /// Weight of the model's score beside the title similarity (0: titles only).
    pub model_weight: f32,
    /// Weight of the title similarity (0: the model only).
    pub title_weight: f32,
}

impl Default for RetrieveParams {
    fn default() -> Self {
        RetrieveParams {
            beam_size: 10,
            candidates: 100,
            model_weight: 0.5,
            title_weight: 1.0,
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
        for (name, w) in [
            ("model_weight", self.model_weight),
            ("title_weight", self.title_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::InvalidInput(format!(
                    "{name} must be a finite number >= 0, got {w}"
                )));
            }
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
    /// Default ranking.
    pub rank: RetrieveParams,
}

/// Reusable buffers of a retrieval: one per thread.
#[derive(Debug, Default, Clone)]
pub struct RetrieveScratch {
    concat: ConcatScratch,
    row: (Vec<u32>, Vec<f32>),
    predict: PredictScratch,
    scores: Vec<f32>,
    found: BinaryHeap<Reverse<(u32, Reverse<u32>)>>,
}

/// A trained product retriever. Immutable; one serves many threads.
#[derive(Debug)]
pub struct ProductRetriever {
    features: FeatureConcat,
    model: XrLinear,
    /// Product ids, by label id (integers in decimal when `integer_ids`).
    products: Strings,
    integer_ids: bool,
    /// Feature -> (product, weight of the feature in the product's normalised title row).
    titles: CsrArrays,
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

impl ProductRetriever {
    /// Trains on `queries[i]` relevant to the products `relevant[i]` (label ids into
    /// `products`); `titles[j]` is the title of product `j` (may be empty).
    pub fn fit<S: AsRef<str> + Sync>(
        queries: &[S],
        relevant: &[Vec<u32>],
        products: ProductIds,
        titles: &[S],
        params: &FitParams,
        progress: &Progress,
    ) -> Result<Self> {
        params.rank.check()?;
        params.train.check()?;
        let bad = |what: String| Err(Error::InvalidInput(what));
        if queries.len() != relevant.len() {
            return bad(format!(
                "{} queries but {} lists of relevant products",
                queries.len(),
                relevant.len()
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
        if let Some(bad_id) = relevant.iter().flatten().find(|&&p| p as usize >= n) {
            return bad(format!(
                "relevant product {bad_id} is out of range ({n} products)"
            ));
        }
        let mut texts: Vec<&str> = Vec::new();
        let mut rows: Vec<(Vec<u32>, Vec<f32>)> = Vec::new();
        for (q, rel) in queries.iter().zip(relevant) {
            let mut labels = rel.clone();
            labels.sort_unstable();
            labels.dedup();
            if labels.is_empty() || q.as_ref().trim().is_empty() {
                continue;
            }
            texts.push(q.as_ref());
            let ones = vec![1.0; labels.len()];
            rows.push((labels, ones));
        }
        if params.titles_as_queries {
            for (j, t) in titles.iter().enumerate() {
                if !t.as_ref().trim().is_empty() {
                    texts.push(t.as_ref());
                    rows.push((vec![j as u32], vec![1.0]));
                }
            }
        }
        if texts.is_empty() {
            return bad("no training query has a relevant product".into());
        }
        progress.set_stage(Stage::Vectorizing);
        let features = FeatureConcat::fit_columns(
            &[params.words.clone(), params.chars.clone()],
            &[&texts, &texts],
        )?;
        let x = features.transform(&[&texts, &texts])?;
        let y = CsrMatrix::from_rows(n, rows);
        let no_strings: [&str; 0] = [];
        progress.set_stage(Stage::Clustering);
        let tree = index::build(
            &TreeSpec::KMeans(params.kmeans.clone()),
            &no_strings,
            &x,
            &y,
        )?;
        let model = xr::train(&x, &y, tree, &params.train, progress)?;
        progress.set_stage(Stage::Finishing);
        let titles = features.transform(&[titles, titles])?.transpose();
        let (products, integer_ids) = match products {
            ProductIds::Text(ids) => (Strings::new(&ids)?, false),
            ProductIds::Integer(ids) => {
                let text: Vec<String> = ids.iter().map(i64::to_string).collect();
                (Strings::new(&text)?, true)
            }
        };
        Self::from_parts(
            features,
            model,
            (products, integer_ids),
            titles.into(),
            params.rank,
        )
    }

    fn from_parts(
        features: FeatureConcat,
        model: XrLinear,
        (products, integer_ids): (Strings, bool),
        titles: CsrArrays,
        rank: RetrieveParams,
    ) -> Result<Self> {
        rank.check()?;
        let bad = |what: String| Err(Error::InvalidInput(format!("product retriever: {what}")));
        if features.blocks().len() != 2 || features.n_features() != model.n_features() {
            return bad("the features do not match the model".into());
        }
        if model.n_labels() != products.len()
            || titles.n_cols() != products.len()
            || titles.n_rows() != model.n_features()
        {
            return bad(format!(
                "{} products, a model of {} labels and {} features, titles of {} x {}",
                products.len(),
                model.n_labels(),
                model.n_features(),
                titles.n_rows(),
                titles.n_cols()
            ));
        }
        if integer_ids && !products.iter().all(is_canonical_integer) {
            return bad("integer product ids that are not integers".into());
        }
        Ok(ProductRetriever {
            features,
            model,
            products,
            integer_ids,
            titles,
            rank,
        })
    }

    /// The default ranking options.
    pub fn rank_params(&self) -> &RetrieveParams {
        &self.rank
    }

    /// Product ids, by label id.
    pub fn products(&self) -> impl ExactSizeIterator<Item = ProductId<'_>> + '_ {
        (0..self.products.len()).map(|i| self.id_at(i))
    }

    /// The id of product `label` (`label < n_products`).
    pub fn product(&self, label: u32) -> ProductId<'_> {
        self.id_at(label as usize)
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
            + self.products.nbytes()
            + self
                .features
                .blocks()
                .iter()
                .map(|b| b.memory_bytes())
                .sum::<usize>()
    }

    /// The best `k` products for `query`: (label id, score), best first.
    pub fn retrieve(
        &self,
        query: &str,
        k: usize,
        params: &RetrieveParams,
        scratch: &mut RetrieveScratch,
    ) -> Result<Vec<(u32, f32)>> {
        params.check()?;
        let k = k.min(self.products.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        self.features
            .transform_one(&[query, query], &mut scratch.concat, &mut scratch.row)?;
        let RetrieveScratch {
            row: (idx, val),
            predict,
            scores,
            found,
            ..
        } = scratch;
        // Dense accumulators: a title posting costs one multiply-add, no bookkeeping; the scan
        // for the top k afterwards is linear in the catalogue and cheap next to the postings.
        scores.clear();
        scores.resize(self.products.len(), 0.0);
        if params.title_weight > 0.0 {
            for (&f, &v) in idx.iter().zip(val.iter()) {
                let (products, weights) = self.titles.row(f as usize);
                let v = params.title_weight * v;
                for (&p, &w) in products.iter().zip(weights) {
                    scores[p as usize] += v * w;
                }
            }
        }
        if params.model_weight > 0.0 {
            let predict_params = PredictParams {
                beam_size: params.beam_size,
                topk: params.candidates.max(k),
                post_processor: PostProcessor::L3Hinge,
            };
            for (p, s) in self
                .model
                .predict_one(idx, val, &predict_params, None, predict)?
            {
                // Kept even when the score is tiny: the model did propose it.
                scores[p as usize] += (params.model_weight * s).max(f32::MIN_POSITIVE);
            }
        }
        // The best k by one pass with a min-heap of the k best so far. Scores are > 0, so their
        // bit patterns order like the values; ties go to the smaller product id.
        let heap = found;
        heap.clear();
        for (p, &s) in scores.iter().enumerate() {
            if s <= 0.0 {
                continue;
            }
            let key = Reverse((s.to_bits(), Reverse(p as u32)));
            if heap.len() < k {
                heap.push(key);
            } else if heap.peek().is_some_and(|worst| key < *worst) {
                heap.pop();
                heap.push(key);
            }
        }
        let mut found: Vec<(u32, f32)> = heap
            .drain()
            .map(|Reverse((bits, Reverse(p)))| (p, f32::from_bits(bits)))
            .collect();
        found.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
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

    /// Sections: the ranking defaults, the features and the model (complete files of their
    /// own), the product ids, the title index.
    fn to_bytes(&self) -> Vec<u8> {
        let r = &self.rank;
        let mut fields = Vec::new();
        for v in [r.beam_size as u64, r.candidates as u64] {
            fields.extend_from_slice(&v.to_le_bytes());
        }
        for v in [r.model_weight, r.title_weight] {
            fields.extend_from_slice(&f64::from(v).to_bits().to_le_bytes());
        }
        let mut w = Writer::new(Kind::ProductRetriever);
        w.bytes("rank", fields)
            .bytes("features", self.features.to_bytes())
            .bytes("model", self.model.to_bytes());
        self.products.write(&mut w, "ids");
        if self.integer_ids {
            w.u64s("int_ids", [1]);
        }
        self.titles.write(&mut w, "t");
        w.finish()
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let mut f = Fields::new(r.bytes("rank")?, "rank");
        let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let (beam_size, candidates) = (count(f.u64()?), count(f.u64()?));
        let rank = RetrieveParams {
            beam_size,
            candidates,
            model_weight: f.f64()? as f32,
            title_weight: f.f64()? as f32,
        };
        f.end()?;
        let format = |e: Error| match e {
            Error::InvalidInput(what) => Error::Format { what },
            other => other,
        };
        let products = Strings::read(r, "ids", "product ids")?;
        // Files written before integer ids have no such section: their ids are text.
        let integer_ids = match r.has("int_ids") {
            false => false,
            true => match r.u64s("int_ids")?.as_slice() {
                [1] => true,
                other => return Err(format_err(format!("int_ids section holds {other:?}"))),
            },
        };
        let titles = CsrArrays::read(r, "t", products.len())?;
        Self::from_parts(
            r.nested("features")?,
            r.nested("model")?,
            (products, integer_ids),
            titles,
            rank,
        )
        .map_err(format)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::text::Analyzer;

    fn params() -> FitParams {
        let mut words = TfidfConfig::default();
        words.analyzer.analyzer = Analyzer::Word;
        words.analyzer.ngram_range = (1, 3);
        let mut chars = TfidfConfig::default();
        chars.analyzer.ngram_range = (3, 3);
        FitParams {
            words,
            chars,
            kmeans: KMeansParams {
                branching: 2,
                max_leaf_size: 2,
                ..Default::default()
            },
            train: TrainParams::default(),
            titles_as_queries: true,
            rank: RetrieveParams::default(),
        }
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
        let relevant = vec![vec![0], vec![0], vec![1], vec![3], vec![2]];
        ProductRetriever::fit(
            &queries,
            &relevant,
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
        let titles_only = RetrieveParams {
            model_weight: 0.0,
            ..d
        };
        assert!(!top(&r, "couch", 3, &titles_only).contains(&"p0".to_string()));
        assert!(top(&r, "zzzz qqqq", 3, &titles_only).is_empty());
        assert!(top(&r, "paint", 0, &d).is_empty());
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
    }

    #[test]
    fn integer_ids_come_back_as_integers_and_survive_saving() {
        let (_, titles) = catalogue();
        let ids = ProductIds::Integer(vec![100, -2, 0, 9_007_199_254_740_993, i64::MIN, 7]);
        let r = ProductRetriever::fit(
            &["couch", "hose"],
            &[vec![0], vec![3]],
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
        let fit = |q: &[&str], rel: &[Vec<u32>], ids: ProductIds, t: &[&str]| {
            ProductRetriever::fit(q, rel, ids, t, &p, &Progress::default()).map(|_| ())
        };
        assert!(fit(&["a"], &[], ids.clone(), &titles).is_err());
        assert!(fit(&["a"], &[vec![99]], ids.clone(), &titles).is_err());
        assert!(fit(&["a"], &[vec![0]], ids.clone(), &titles[1..]).is_err());
        assert!(fit(&["a"], &[vec![0]], ProductIds::Text(vec![]), &[]).is_err());
        let bad = RetrieveParams {
            title_weight: f32::NAN,
            ..RetrieveParams::default()
        };
        assert!(trained()
            .retrieve("a", 3, &bad, &mut RetrieveScratch::default())
            .is_err());
    }
}
