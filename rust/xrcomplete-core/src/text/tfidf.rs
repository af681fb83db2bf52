//! TF-IDF over the terms of an [`AnalyzerConfig`], fitted once, then a fixed vocabulary.
//!
//! With prefix weighting off, the output equals scikit-learn's `TfidfVectorizer` with the same
//! options (vocabulary sorted by term, smooth idf, sublinear tf, l2 norm), up to `f32` rounding.

use rayon::prelude::*;

use super::analyzer::{Analyzer, AnalyzerConfig, PositionScope, PositionWeight, Scratch};
use super::interner::Interner;
use super::terms::TermIndex;
use crate::error::{Error, Result};
use crate::persist::{format_err, rises_to, Array, Fields, Kind, Persist, Reader, Writer};
use crate::sparse::CsrMatrix;

/// A document-frequency bound: an absolute number of documents, or a proportion of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DocFreq {
    /// At least / at most this many documents.
    Count(usize),
    /// A proportion of the documents, in [0, 1].
    Proportion(f64),
}

impl DocFreq {
    fn resolve(&self, n_docs: usize) -> f64 {
        match *self {
            DocFreq::Count(c) => c as f64,
            DocFreq::Proportion(p) => p * n_docs as f64,
        }
    }

    fn check(&self, name: &str) -> Result<()> {
        match *self {
            DocFreq::Proportion(p) if !(0.0..=1.0).contains(&p) => Err(Error::InvalidInput(
                format!("{name} as a proportion must be in [0, 1], got {p}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Row normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Norm {
    /// Unit Euclidean length (rows of only zeros stay zero).
    L2,
    /// Unit sum of absolute values.
    L1,
    /// No normalisation.
    None,
}

impl Norm {
    /// The norm's code in model files.
    pub(crate) fn code(self) -> u8 {
        match self {
            Norm::L2 => 0,
            Norm::L1 => 1,
            Norm::None => 2,
        }
    }

    /// The norm of a model file's code, if known.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        [Norm::L2, Norm::L1, Norm::None]
            .into_iter()
            .find(|n| n.code() == code)
    }

    /// Scales `values` in place: each divided by [`Norm::divisor`].
    pub fn apply(&self, values: &mut [f64]) {
        if let Some(total) = self.divisor(values.iter().copied()) {
            values.iter_mut().for_each(|v| *v /= total);
        }
    }

    /// What [`Norm::apply`] divides `values` by, summed in their order; `None` when they are
    /// left as they are (no norm, or a norm of 0).
    pub fn divisor(&self, values: impl Iterator<Item = f64>) -> Option<f64> {
        let total = match self {
            Norm::L2 => values.map(|v| v * v).sum::<f64>().sqrt(),
            Norm::L1 => values.map(|v| v.abs()).sum::<f64>(),
            Norm::None => return None,
        };
        (total > 0.0).then_some(total)
    }
}

/// Options of a [`TfidfVectorizer`].
#[derive(Debug, Clone, PartialEq)]
pub struct TfidfConfig {
    /// Which terms, with which position weights.
    pub analyzer: AnalyzerConfig,
    /// Keep terms in at least this many documents.
    pub min_df: DocFreq,
    /// Keep terms in at most this many documents.
    pub max_df: DocFreq,
    /// Keep only the most frequent terms (by total count; ties by term order).
    pub max_features: Option<usize>,
    /// Replace tf by `1 + ln(tf)` (for `tf >= 1`; a weighted tf below 1 stays as it is).
    pub sublinear_tf: bool,
    /// Multiply by the inverse document frequency.
    pub use_idf: bool,
    /// `idf = ln((1 + n) / (1 + df)) + 1` instead of `ln(n / df) + 1`.
    pub smooth_idf: bool,
    /// Row normalisation.
    pub norm: Norm,
}

impl Default for TfidfConfig {
    fn default() -> Self {
        TfidfConfig {
            analyzer: AnalyzerConfig::default(),
            min_df: DocFreq::Count(1),
            max_df: DocFreq::Proportion(1.0),
            max_features: None,
            sublinear_tf: false,
            use_idf: true,
            smooth_idf: true,
            norm: Norm::L2,
        }
    }
}

impl TfidfConfig {
    /// Checks every option.
    pub fn check(&self) -> Result<()> {
        self.analyzer.check()?;
        self.min_df.check("min_df")?;
        self.max_df.check("max_df")?;
        if self.max_features == Some(0) {
            return Err(Error::InvalidInput("max_features must be >= 1".into()));
        }
        Ok(())
    }
}

impl TfidfConfig {
    /// The options as the fixed fields of a model file's "config" section.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let a = &self.analyzer;
        let mut out = Vec::new();
        let mut put = |bytes: &[u8]| out.extend_from_slice(bytes);
        put(&[match a.analyzer {
            Analyzer::Word => 0,
            Analyzer::Char => 1,
            Analyzer::CharWb => 2,
        }]);
        put(&(a.ngram_range.0 as u64).to_le_bytes());
        put(&(a.ngram_range.1 as u64).to_le_bytes());
        put(&[a.lowercase as u8, a.nfkc as u8]);
        let (code, alpha, decay) = match a.position_weight {
            PositionWeight::Uniform => (0, 0.0, 0.0),
            PositionWeight::Harmonic => (1, 0.0, 0.0),
            PositionWeight::Exponential { alpha, decay } => (2, alpha, decay),
        };
        put(&[code]);
        put(&alpha.to_le_bytes());
        put(&decay.to_le_bytes());
        put(&[match a.position_scope {
            PositionScope::String => 0,
            PositionScope::Word => 1,
        }]);
        for df in [self.min_df, self.max_df] {
            match df {
                DocFreq::Count(c) => {
                    put(&[0]);
                    put(&(c as u64).to_le_bytes());
                }
                DocFreq::Proportion(p) => {
                    put(&[1]);
                    put(&p.to_le_bytes());
                }
            }
        }
        put(&[self.max_features.is_some() as u8]);
        put(&(self.max_features.unwrap_or(0) as u64).to_le_bytes());
        put(&[
            self.sublinear_tf as u8,
            self.use_idf as u8,
            self.smooth_idf as u8,
        ]);
        put(&[self.norm.code()]);
        out
    }

    /// Reads what [`TfidfConfig::encode`] wrote, and checks it.
    pub(crate) fn decode(data: &[u8]) -> Result<Self> {
        let mut f = Fields::new(data, "config");
        let analyzer = match f.u8()? {
            0 => Analyzer::Word,
            1 => Analyzer::Char,
            2 => Analyzer::CharWb,
            b => return Err(f.bad("analyzer", b)),
        };
        let to_usize = |v: u64, f: &Fields<'_>| usize::try_from(v).map_err(|_| f.bad("size", v));
        let lo = f.u64()?;
        let lo = to_usize(lo, &f)?;
        let hi = f.u64()?;
        let hi = to_usize(hi, &f)?;
        let (lowercase, nfkc) = (f.bool()?, f.bool()?);
        let (code, alpha, decay) = (f.u8()?, f.f64()?, f.f64()?);
        let position_weight = match code {
            0 => PositionWeight::Uniform,
            1 => PositionWeight::Harmonic,
            2 => PositionWeight::Exponential { alpha, decay },
            b => return Err(f.bad("prefix weighting", b)),
        };
        let position_scope = match f.u8()? {
            0 => PositionScope::String,
            1 => PositionScope::Word,
            b => return Err(f.bad("position scope", b)),
        };
        let mut dfs = [DocFreq::Count(0); 2];
        for df in &mut dfs {
            *df = match f.u8()? {
                0 => {
                    let c = f.u64()?;
                    DocFreq::Count(to_usize(c, &f)?)
                }
                1 => DocFreq::Proportion(f.f64()?),
                b => return Err(f.bad("document-frequency kind", b)),
            };
        }
        let has_max = f.bool()?;
        let max = f.u64()?;
        let max_features = if has_max {
            Some(to_usize(max, &f)?)
        } else {
            None
        };
        let (sublinear_tf, use_idf, smooth_idf) = (f.bool()?, f.bool()?, f.bool()?);
        let code = f.u8()?;
        let norm = Norm::from_code(code).ok_or_else(|| f.bad("norm", code))?;
        f.end()?;
        let config = TfidfConfig {
            analyzer: AnalyzerConfig {
                analyzer,
                ngram_range: (lo, hi),
                lowercase,
                nfkc,
                position_weight,
                position_scope,
            },
            min_df: dfs[0],
            max_df: dfs[1],
            max_features,
            sublinear_tf,
            use_idf,
            smooth_idf,
            norm,
        };
        config.check().map_err(|e| Error::Format {
            what: format!("config: {e}"),
        })?;
        Ok(config)
    }
}

/// A fitted TF-IDF vectorizer: fixed vocabulary (sorted by term) and idf. Immutable and
/// `Send + Sync`; unknown terms at transform time are ignored.
///
/// ```
/// use xrcomplete_core::text::{TfidfConfig, TfidfVectorizer};
/// let v = TfidfVectorizer::fit(TfidfConfig::default(), &["iphone case", "ipad"])?;
/// let x = v.transform(&["iph", "", "  "]);
/// assert_eq!(x.n_rows(), 3);
/// assert!(x.row(0).0.len() > 0);      // shares n-grams with "iphone"
/// assert_eq!(x.row(1).0.len(), 0);    // no term: an empty row, not an error
/// assert_eq!(x.row(2).0.len(), 0);
/// # Ok::<(), xrcomplete_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TfidfVectorizer {
    config: TfidfConfig,
    /// The terms; id = column, in sorted order.
    vocabulary: TermIndex,
    idf: Array<f64>,
}

/// Per-term statistics gathered while fitting.
#[derive(Debug, Clone, Copy, Default)]
struct TermStats {
    docs: u64,
    count: f64,
    /// The last document (of one worker) the term was seen in: counts `docs` once per document.
    last_doc: u64,
}

impl TfidfVectorizer {
    /// Learns the vocabulary and idf from `docs` (in parallel).
    pub fn fit<S: AsRef<str> + Sync>(config: TfidfConfig, docs: &[S]) -> Result<Self> {
        config.check()?;
        let counts = TermCounts::count(&config.analyzer, docs);
        Self::fit_counts(config, counts)
    }

    /// Learns the vocabulary and idf from the term statistics of the documents, counted with
    /// `config`'s analyzer ([`TermCounts::count`], merged over parts of the documents): the
    /// vectorizer [`TfidfVectorizer::fit`] learns from the documents themselves.
    pub fn fit_counts(config: TfidfConfig, counts: TermCounts) -> Result<Self> {
        config.check()?;
        if counts.n_docs == 0 {
            return Err(Error::InvalidInput(
                "fit needs at least one document".into(),
            ));
        }
        let TermCounter { terms, stats, .. } = counts.counter;
        if stats.is_empty() {
            return Err(Error::EmptyVocabulary {
                why: "the documents yield no terms",
            });
        }
        let n_docs = usize::try_from(counts.n_docs).unwrap_or(usize::MAX);
        let (high, low) = (config.max_df.resolve(n_docs), config.min_df.resolve(n_docs));
        if high < low {
            return Err(Error::InvalidInput(
                "max_df corresponds to fewer documents than min_df".into(),
            ));
        }
        let mut kept: Vec<(u32, TermStats)> = (0u32..)
            .zip(stats)
            .filter(|(_, s)| (s.docs as f64) <= high && (s.docs as f64) >= low)
            .collect();
        let term = |id: u32| terms.get_str(id);
        if let Some(limit) = config.max_features {
            if kept.len() > limit {
                kept.par_sort_unstable_by(|a, b| {
                    b.1.count
                        .total_cmp(&a.1.count)
                        .then(term(a.0).cmp(term(b.0)))
                });
                kept.truncate(limit);
            }
        }
        if kept.is_empty() {
            return Err(Error::EmptyVocabulary {
                why: "after pruning, no terms remain; try a lower min_df or a higher max_df",
            });
        }
        kept.par_sort_unstable_by(|a, b| term(a.0).cmp(term(b.0)));
        let smooth = if config.smooth_idf { 1.0 } else { 0.0 };
        let idf: Vec<f64> = kept
            .iter()
            .map(|(_, s)| {
                if config.use_idf {
                    ((n_docs as f64 + smooth) / (s.docs as f64 + smooth)).ln() + 1.0
                } else {
                    1.0
                }
            })
            .collect();
        Self::from_parts(config, kept.iter().map(|&(id, _)| term(id)), idf)
    }

    /// Rebuilds a fitted vectorizer from its options, its terms (sorted, distinct) and idf.
    pub fn from_parts<'a>(
        config: TfidfConfig,
        terms: impl IntoIterator<Item = &'a str>,
        idf: Vec<f64>,
    ) -> Result<Self> {
        config.check()?;
        Self::checked(config, TermIndex::new(terms)?, idf.into())
    }

    fn checked(config: TfidfConfig, vocabulary: TermIndex, idf: Array<f64>) -> Result<Self> {
        if vocabulary.len() != idf.len() {
            return Err(Error::InvalidInput(format!(
                "{} terms but {} idf values",
                vocabulary.len(),
                idf.len()
            )));
        }
        if !idf.iter().all(|v| v.is_finite()) {
            return Err(Error::InvalidInput("idf values must be finite".into()));
        }
        Ok(TfidfVectorizer {
            config,
            vocabulary,
            idf,
        })
    }

    /// The options it was fitted with.
    pub fn config(&self) -> &TfidfConfig {
        &self.config
    }

    /// Number of features (columns).
    pub fn n_features(&self) -> usize {
        self.vocabulary.len()
    }

    /// The terms, in column order (sorted).
    pub fn terms(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.vocabulary.iter()
    }

    /// Heap memory held, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.vocabulary.memory_bytes() + self.idf.nbytes()
    }

    /// The idf of each column.
    pub fn idf(&self) -> &[f64] {
        &self.idf
    }

    /// The column of `term`, if in the vocabulary.
    pub fn column(&self, term: &str) -> Option<u32> {
        self.vocabulary.id(term)
    }

    /// Vectorises `docs` in parallel, one row each.
    pub fn transform<S: AsRef<str> + Sync>(&self, docs: &[S]) -> CsrMatrix {
        rows_in_parallel(
            self.n_features(),
            docs.len(),
            RowScratch::default,
            |scratch, rows, m| {
                for doc in &docs[rows] {
                    self.push_row(doc.as_ref(), scratch, m);
                }
            },
        )
    }

    /// Vectorises one document into `out` (cleared first): sorted columns and their values.
    pub fn transform_one(
        &self,
        doc: &str,
        scratch: &mut RowScratch,
        out: &mut (Vec<u32>, Vec<f32>),
    ) {
        self.row_values(doc, scratch);
        out.0.clear();
        out.1.clear();
        out.0.extend(scratch.columns.iter());
        out.1.extend(scratch.values.iter().map(|&v| v as f32));
    }

    fn push_row(&self, doc: &str, scratch: &mut RowScratch, m: &mut CsrMatrix) {
        self.row_values(doc, scratch);
        m.indices.extend_from_slice(&scratch.columns);
        m.data.extend(scratch.values.iter().map(|&v| v as f32));
        m.indptr.push(m.indices.len());
    }

    /// Leaves the row of `doc` in `scratch.columns` / `scratch.values` (f64, normalised).
    fn row_values(&self, doc: &str, scratch: &mut RowScratch) {
        let RowScratch {
            analyzer,
            hits,
            columns,
            values,
        } = scratch;
        hits.clear();
        self.config
            .analyzer
            .for_each_term(doc, analyzer, |term, weight| {
                if let Some(col) = self.vocabulary.id(term) {
                    hits.push((col, weight));
                }
            });
        hits.sort_unstable_by_key(|h| h.0);
        columns.clear();
        values.clear();
        for &(col, weight) in hits.iter() {
            if columns.last() == Some(&col) {
                *values.last_mut().expect("aligned") += weight;
            } else {
                columns.push(col);
                values.push(weight);
            }
        }
        for (v, &col) in values.iter_mut().zip(columns.iter()) {
            if self.config.sublinear_tf && *v >= 1.0 {
                *v = 1.0 + v.ln();
            }
            *v *= self.idf[col as usize];
        }
        self.config.norm.apply(values);
    }
}

impl Persist for TfidfVectorizer {
    const KIND: Kind = Kind::TfidfVectorizer;

    /// The vectorizer in the [`persist`](crate::persist) format: options, term table, idf.
    fn writer(&self) -> Writer<'_> {
        let mut w = Writer::new(Kind::TfidfVectorizer);
        w.bytes("config", self.config.encode());
        self.vocabulary.write(&mut w);
        w.array("idf", &self.idf);
        w
    }

    /// Reads a vectorizer written by [`TfidfVectorizer::to_bytes`], checking its content.
    fn from_reader(r: &Reader) -> Result<Self> {
        let config = TfidfConfig::decode(r.bytes("config")?)?;
        let vocabulary = TermIndex::read(r)?;
        Self::checked(config, vocabulary, r.array("idf")?).map_err(|e| Error::Format {
            what: format!("vectorizer: {e}"),
        })
    }
}

/// Reusable buffers for vectorising one row: one per thread.
#[derive(Debug, Default, Clone)]
pub struct RowScratch {
    analyzer: Scratch,
    hits: Vec<(u32, f64)>,
    columns: Vec<u32>,
    values: Vec<f64>,
}

/// Document frequency and total count of every term, counted in parallel: one counter per
/// worker split (rayon's `fold`), merged at the end.
fn count_terms<S: AsRef<str> + Sync>(config: &AnalyzerConfig, docs: &[S]) -> TermCounter {
    docs.par_chunks(1024)
        .fold(TermCounter::default, |mut counter, chunk| {
            for doc in chunk {
                counter.add(config, doc.as_ref());
            }
            counter
        })
        .reduce(TermCounter::default, TermCounter::merge)
}

/// The term statistics of a set of documents that fitting a vectorizer needs: per term, the
/// documents it occurs in and its occurrences. The counts of parts of the documents (the shards
/// of a log, counted on other machines) merge into the counts of the whole, exactly.
///
/// ```
/// use xrcomplete_core::text::{AnalyzerConfig, TermCounts, TfidfConfig, TfidfVectorizer};
///
/// let config = TfidfConfig::default();
/// let docs = ["cheap flights", "cheap hotels", "flights to rome"];
/// let parts = TermCounts::count(&config.analyzer, &docs[..1])
///     .merge(TermCounts::count(&config.analyzer, &docs[1..]));
/// let whole = TfidfVectorizer::fit(config.clone(), &docs).unwrap();
/// assert_eq!(TfidfVectorizer::fit_counts(config, parts).unwrap(), whole);
/// ```
#[derive(Default)]
pub struct TermCounts {
    counter: TermCounter,
    n_docs: u64,
}

impl std::fmt::Debug for TermCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TermCounts")
            .field("terms", &self.counter.stats.len())
            .field("n_docs", &self.n_docs)
            .finish()
    }
}

impl TermCounts {
    /// The statistics of `docs` analysed by `analyzer` (in parallel).
    pub fn count<S: AsRef<str> + Sync>(analyzer: &AnalyzerConfig, docs: &[S]) -> Self {
        TermCounts {
            counter: count_terms(analyzer, docs),
            n_docs: docs.len() as u64,
        }
    }

    /// The statistics of the documents of both.
    pub fn merge(self, other: TermCounts) -> TermCounts {
        TermCounts {
            n_docs: self.n_docs + other.n_docs,
            counter: self.counter.merge(other.counter),
        }
    }

    /// The number of documents counted.
    pub fn n_docs(&self) -> u64 {
        self.n_docs
    }

    /// The number of distinct terms.
    pub fn n_terms(&self) -> usize {
        self.counter.stats.len()
    }
}

impl Persist for TermCounts {
    const KIND: Kind = Kind::TermCounts;

    fn writer(&self) -> Writer<'_> {
        let c = &self.counter;
        let mut offsets = Vec::with_capacity(c.stats.len() + 1);
        let mut bytes = Vec::new();
        offsets.push(0u64);
        for term in c.terms.iter() {
            bytes.extend_from_slice(term.as_bytes());
            offsets.push(bytes.len() as u64);
        }
        let docs: Vec<u64> = c.stats.iter().map(|s| s.docs).collect();
        let count: Vec<f64> = c.stats.iter().map(|s| s.count).collect();
        let mut w = Writer::new(Kind::TermCounts);
        w.u64s("meta", [self.n_docs])
            .bytes("terms", bytes)
            .array_copy("offsets", &offsets)
            .array_copy("docs", &docs)
            .array_copy("count", &count);
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let bad = |what: &str| format_err(format!("term counts: {what}"));
        let [n_docs] = r.u64s("meta")?[..] else {
            return Err(bad("bad meta"));
        };
        let bytes = r.bytes("terms")?;
        let offsets: Array<u64> = r.array("offsets")?;
        let docs: Array<u64> = r.array("docs")?;
        let count: Array<f64> = r.array("count")?;
        let n = docs.len();
        if offsets.len() != n + 1 || count.len() != n || !rises_to(&offsets, bytes.len()) {
            return Err(bad("one offset, document count and count per term"));
        }
        let mut counter = TermCounter::default();
        for (i, w) in offsets.windows(2).enumerate() {
            let term = std::str::from_utf8(&bytes[w[0] as usize..w[1] as usize])
                .map_err(|_| bad("a term is not UTF-8"))?;
            let (_, inserted) = counter.terms.insert(term);
            if !inserted || docs[i] > n_docs || !(count[i].is_finite() && count[i] >= 0.0) {
                return Err(bad(
                    "terms must be distinct, with counts within the documents",
                ));
            }
            counter.stats.push(TermStats {
                docs: docs[i],
                count: count[i],
                last_doc: 0,
            });
        }
        Ok(TermCounts { counter, n_docs })
    }
}

/// Term statistics of the documents seen by one worker; `stats[id]` for term `id`.
#[derive(Default)]
struct TermCounter {
    terms: Interner,
    stats: Vec<TermStats>,
    scratch: Scratch,
    /// Documents seen so far, numbering them from 1 (0 in `last_doc` means "none yet").
    n_docs: u64,
}

impl TermCounter {
    fn add(&mut self, config: &AnalyzerConfig, doc: &str) {
        self.n_docs += 1;
        let doc_no = self.n_docs;
        let TermCounter {
            terms,
            stats,
            scratch,
            ..
        } = self;
        config.for_each_term(doc, scratch, |term, _| {
            let (id, inserted) = terms.insert(term);
            if inserted {
                stats.push(TermStats::default());
            }
            let s = &mut stats[id as usize];
            s.count += 1.0;
            // Count the document once, at the term's first occurrence in it.
            if s.last_doc != doc_no {
                s.last_doc = doc_no;
                s.docs += 1;
            }
        });
    }

    /// Adds `other`'s counts to the larger of the two.
    fn merge(mut self, mut other: TermCounter) -> TermCounter {
        if self.stats.len() < other.stats.len() {
            std::mem::swap(&mut self, &mut other);
        }
        for (term, s) in other.terms.iter().zip(&other.stats) {
            let (id, inserted) = self.terms.insert(term);
            if inserted {
                self.stats.push(TermStats::default());
            }
            let e = &mut self.stats[id as usize];
            e.docs += s.docs;
            e.count += s.count;
        }
        self
    }
}

/// Stacks row blocks (all with `n_cols` columns) into one matrix.
/// The matrix of `n_rows` rows over `n_cols` columns that `fill(scratch, rows, part)` pushes,
/// `rows` at a time, into empty parts: filled in parallel, a block of rows at a time, each
/// block's parts appended (and freed) before the next is filled, so that the rows are never
/// held twice (the parts of a whole log would be a second copy of it).
pub(crate) fn rows_in_parallel<T, F>(
    n_cols: usize,
    n_rows: usize,
    scratch: impl Fn() -> T + Sync + Send,
    fill: F,
) -> CsrMatrix
where
    F: Fn(&mut T, std::ops::Range<usize>, &mut CsrMatrix) + Sync + Send,
{
    const PART: usize = 1024;
    const BLOCK: usize = 64 * PART;
    let mut out = CsrMatrix::new(n_cols);
    for block in (0..n_rows).step_by(BLOCK) {
        let starts: Vec<usize> = (block..n_rows.min(block + BLOCK)).step_by(PART).collect();
        let parts: Vec<CsrMatrix> = starts
            .par_iter()
            .map_init(&scratch, |scratch, &start| {
                let mut m = CsrMatrix::new(n_cols);
                fill(scratch, start..n_rows.min(start + PART), &mut m);
                m
            })
            .collect();
        for part in parts {
            out.append(&part).expect("same number of columns");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Analyzer, PositionWeight};

    fn word_config() -> TfidfConfig {
        TfidfConfig {
            analyzer: AnalyzerConfig {
                analyzer: Analyzer::Word,
                ngram_range: (1, 1),
                ..AnalyzerConfig::default()
            },
            ..TfidfConfig::default()
        }
    }

    #[test]
    fn idf_and_l2_norm_by_hand() {
        // Two docs: "aa bb", "aa". df(aa) = 2, df(bb) = 1; smooth idf: ln(3/3)+1, ln(3/2)+1.
        let v = TfidfVectorizer::fit(word_config(), &["aa bb", "aa"]).unwrap();
        assert_eq!(v.terms().collect::<Vec<_>>(), ["aa", "bb"]);
        let idf_bb = (1.5f64).ln() + 1.0;
        assert_eq!(v.idf(), &[1.0, idf_bb]);
        let x = v.transform(&["aa bb bb", "cc"]);
        let norm = (1.0 + (2.0 * idf_bb).powi(2)).sqrt();
        assert_eq!(x.row(0).0, &[0, 1]);
        assert!((x.row(0).1[0] as f64 - 1.0 / norm).abs() < 1e-7);
        assert!((x.row(0).1[1] as f64 - 2.0 * idf_bb / norm).abs() < 1e-7);
        assert_eq!(x.row(1).0.len(), 0);
    }

    #[test]
    fn document_frequency_bounds_and_max_features() {
        let docs = ["aa bb cc", "aa bb", "aa", "aa dd"];
        let with = |min_df, max_df, max_features| {
            let config = TfidfConfig {
                min_df,
                max_df,
                max_features,
                ..word_config()
            };
            TfidfVectorizer::fit(config, &docs)
                .map(|v| v.terms().map(str::to_owned).collect::<Vec<_>>())
        };
        assert_eq!(
            with(DocFreq::Count(2), DocFreq::Proportion(1.0), None).unwrap(),
            ["aa", "bb"]
        );
        assert_eq!(
            with(DocFreq::Count(1), DocFreq::Count(2), None).unwrap(),
            ["bb", "cc", "dd"]
        );
        assert_eq!(
            with(DocFreq::Count(1), DocFreq::Proportion(1.0), Some(2)).unwrap(),
            ["aa", "bb"]
        );
        // Ties in count are broken by term order: cc and dd both count 1.
        assert_eq!(
            with(DocFreq::Count(1), DocFreq::Proportion(1.0), Some(3)).unwrap(),
            ["aa", "bb", "cc"]
        );
        assert!(with(DocFreq::Count(5), DocFreq::Proportion(1.0), None).is_err());
        assert!(with(DocFreq::Count(3), DocFreq::Count(2), None).is_err());
        assert!(with(DocFreq::Proportion(1.5), DocFreq::Proportion(1.0), None).is_err());
        assert!(with(DocFreq::Count(1), DocFreq::Proportion(1.0), Some(0)).is_err());
    }

    #[test]
    fn empty_inputs_are_errors_at_fit_and_empty_rows_at_transform() {
        assert!(TfidfVectorizer::fit(TfidfConfig::default(), &[] as &[&str]).is_err());
        assert!(TfidfVectorizer::fit(TfidfConfig::default(), &["", "   "]).is_err());
        let v = TfidfVectorizer::fit(TfidfConfig::default(), &["abc"]).unwrap();
        let x = v.transform(&["", "  \t\u{3000}", "\u{0}"]);
        assert_eq!(x.n_rows(), 3);
        assert_eq!(x.indptr, [0, 0, 0, 1]);
        // NUL is not whitespace: its padded word " \0 " shares the " " unigram.
        assert_eq!(x.row(2).0, &[v.column(" ").unwrap()]);
    }

    #[test]
    fn prefix_weighting_makes_a_prefix_look_like_its_completions() {
        let weighted = TfidfConfig {
            analyzer: AnalyzerConfig {
                position_weight: PositionWeight::Harmonic,
                ..AnalyzerConfig::default()
            },
            ..TfidfConfig::default()
        };
        let docs = ["iphone", "zip", "iphone case", "zip code"];
        let cosine = |config: &TfidfConfig, a: &str, b: &str| {
            let v = TfidfVectorizer::fit(config.clone(), &docs).unwrap();
            let x = v.transform(&[a, b]);
            let (ia, va) = x.row(0);
            let (ib, vb) = x.row(1);
            let mut dot = 0.0;
            for (i, &c) in ia.iter().enumerate() {
                if let Ok(j) = ib.binary_search(&c) {
                    dot += va[i] * vb[j];
                }
            }
            dot
        };
        let plain = TfidfConfig::default();
        // "ip" is closer to "iphone" than to "zip" with weighting, and more so than without.
        assert!(cosine(&weighted, "ip", "iphone") > cosine(&weighted, "ip", "zip"));
        assert!(
            cosine(&weighted, "ip", "iphone") - cosine(&weighted, "ip", "zip")
                > cosine(&plain, "ip", "iphone") - cosine(&plain, "ip", "zip")
        );
    }

    #[test]
    fn saved_bytes_load_to_an_equal_vectorizer_for_every_option() {
        let docs = ["cheap flights", "hotels in paris", "Ünïcode wörds"];
        let configs = [
            TfidfConfig::default(),
            TfidfConfig {
                analyzer: AnalyzerConfig {
                    analyzer: Analyzer::Word,
                    ngram_range: (1, 3),
                    lowercase: false,
                    nfkc: true,
                    position_weight: PositionWeight::Exponential {
                        alpha: 2.5,
                        decay: 0.25,
                    },
                    position_scope: PositionScope::Word,
                },
                min_df: DocFreq::Proportion(0.0),
                max_df: DocFreq::Count(7),
                max_features: Some(5),
                sublinear_tf: true,
                use_idf: false,
                smooth_idf: false,
                norm: Norm::L1,
            },
            TfidfConfig {
                analyzer: AnalyzerConfig {
                    analyzer: Analyzer::Char,
                    position_weight: PositionWeight::Harmonic,
                    ..AnalyzerConfig::default()
                },
                norm: Norm::None,
                ..TfidfConfig::default()
            },
        ];
        for config in configs {
            let v = TfidfVectorizer::fit(config, &docs).unwrap();
            let bytes = v.to_bytes();
            assert_eq!(TfidfVectorizer::from_bytes(&bytes).unwrap(), v);
            assert!(matches!(
                crate::Trie::from_bytes(&bytes),
                Err(Error::WrongKind { .. })
            ));
            for len in (0..bytes.len()).step_by(7) {
                assert!(TfidfVectorizer::from_bytes(&bytes[..len]).is_err());
            }
        }
    }

    #[test]
    fn parallel_transform_equals_row_by_row() {
        let docs: Vec<String> = (0..5000)
            .map(|i| format!("query {} {}", i % 97, i % 13))
            .collect();
        let v = TfidfVectorizer::fit(TfidfConfig::default(), &docs).unwrap();
        let x = v.transform(&docs);
        let mut scratch = RowScratch::default();
        let mut row = (Vec::new(), Vec::new());
        for (r, doc) in docs.iter().enumerate() {
            v.transform_one(doc, &mut scratch, &mut row);
            assert_eq!((&row.0[..], &row.1[..]), x.row(r));
        }
    }
}
