//! Several fitted vectorizers side by side: one text per block, one concatenated row.

use std::ops::Range;

use super::tfidf::{rows_in_parallel, Norm, RowScratch, TermCounts, TfidfConfig, TfidfVectorizer};
use crate::error::{Error, Result};
use crate::persist::{Kind, Persist, Reader, Writer};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::sparse::{CsrMatrix, RowBuf, SparseRows};

/// Blocks of features in one row, as PECOS builds its QAC input: e.g. the previous query's
/// word TF-IDF, then the prefix's prefix-weighted char TF-IDF. Each block is normalised as its
/// vectorizer says, then the whole row by `norm`.
///
/// ```
/// use std::sync::Arc;
/// use xrcomplete_core::text::{FeatureConcat, Norm, TfidfConfig, TfidfVectorizer};
/// let prev = Arc::new(TfidfVectorizer::fit(TfidfConfig::default(), &["cheap flights"])?);
/// let prefix = Arc::new(TfidfVectorizer::fit(TfidfConfig::default(), &["hotels"])?);
/// let both = FeatureConcat::new(vec![prev, prefix], Norm::L2)?;
/// let x = both.transform(&[&["cheap flights"][..], &["ho"][..]])?;
/// assert_eq!(x.n_rows(), 1);
/// assert_eq!(x.n_cols, both.n_features());
/// # Ok::<(), xrcomplete_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FeatureConcat {
    blocks: Vec<std::sync::Arc<TfidfVectorizer>>,
    offsets: Vec<usize>,
    norm: Norm,
}

impl FeatureConcat {
    /// Puts `blocks` side by side; `norm` applies to the concatenated row.
    pub fn new(blocks: Vec<std::sync::Arc<TfidfVectorizer>>, norm: Norm) -> Result<Self> {
        if blocks.is_empty() {
            return Err(Error::InvalidInput(
                "a feature concatenation needs at least one block".into(),
            ));
        }
        let mut offsets = vec![0];
        for b in &blocks {
            offsets.push(offsets[offsets.len() - 1] + b.n_features());
        }
        let total = offsets[offsets.len() - 1];
        if total > u32::MAX as usize {
            return Err(Error::TooLarge {
                what: "number of features",
                got: total as u64,
                limit: u32::MAX as u64,
            });
        }
        Ok(FeatureConcat {
            blocks,
            offsets,
            norm,
        })
    }

    /// Fits one vectorizer per column (`configs[b]` on the texts `columns[b]`, in parallel within
    /// each fit) and puts them side by side, rows l2-normalised.
    ///
    /// A column that yields no term (a log where nobody searched twice has only blank previous
    /// queries) becomes a block of zero features, so long as some other block has features;
    /// when none has, the [`Error::EmptyVocabulary`] of the first column is returned.
    pub fn fit_columns<S: AsRef<str> + Sync>(
        configs: &[TfidfConfig],
        columns: &[&[S]],
    ) -> Result<Self> {
        if configs.len() != columns.len() {
            return Err(Error::InvalidInput(format!(
                "{} vectorizer configurations for {} columns",
                configs.len(),
                columns.len()
            )));
        }
        let counts = configs
            .iter()
            .zip(columns)
            .map(|(config, docs)| TermCounts::count(&config.analyzer, docs))
            .collect();
        Self::fit_counts(configs, counts)
    }

    /// [`FeatureConcat::fit_columns`] from the term statistics of each column
    /// ([`TermCounts::count`] with `configs[b]`'s analyzer, merged over parts of the columns).
    pub fn fit_counts(configs: &[TfidfConfig], counts: Vec<TermCounts>) -> Result<Self> {
        if configs.len() != counts.len() {
            return Err(Error::InvalidInput(format!(
                "{} vectorizer configurations for {} columns",
                configs.len(),
                counts.len()
            )));
        }
        let mut first_empty = None;
        let mut blocks = Vec::with_capacity(configs.len());
        for (config, counts) in configs.iter().zip(counts) {
            let block = match TfidfVectorizer::fit_counts(config.clone(), counts) {
                Err(err @ Error::EmptyVocabulary { .. }) => {
                    first_empty.get_or_insert(err);
                    TfidfVectorizer::from_parts(config.clone(), [], Vec::new())?
                }
                fitted => fitted?,
            };
            blocks.push(std::sync::Arc::new(block));
        }
        if let Some(err) = first_empty {
            if blocks.iter().all(|b| b.n_features() == 0) {
                return Err(err);
            }
        }
        Self::new(blocks, Norm::L2)
    }

    /// The blocks, in column order.
    pub fn blocks(&self) -> &[std::sync::Arc<TfidfVectorizer>] {
        &self.blocks
    }

    /// The row normalisation after concatenation.
    pub fn norm(&self) -> Norm {
        self.norm
    }

    /// Total number of features.
    pub fn n_features(&self) -> usize {
        self.offsets[self.offsets.len() - 1]
    }

    /// The first column of each block.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets[..self.blocks.len()]
    }

    /// Vectorises rows given as one column of texts per block (all columns equally long).
    pub fn transform<S: AsRef<str> + Sync>(&self, columns: &[&[S]]) -> Result<CsrMatrix> {
        let n_rows = self.check_columns(columns)?;
        let fill = |scratch: &mut ConcatScratch, rows: Range<usize>, m: &mut CsrMatrix| {
            for r in rows {
                self.fill_row(|b| columns[b][r].as_ref(), scratch);
                m.push_row(&scratch.columns, &scratch.values);
            }
        };
        Ok(rows_in_parallel(
            self.n_features(),
            n_rows,
            ConcatScratch::default,
            fill,
        ))
    }

    /// The rows of [`FeatureConcat::transform`], stored in parts: each block's distinct texts
    /// vectorised once, and per row which of them it joins and what it is divided by. The rows
    /// read back are the same to the bit; where texts repeat (the prefixes of a log's queries,
    /// the previous queries) they take a fraction of the memory.
    pub fn transform_factored<S: AsRef<str> + Sync>(
        &self,
        columns: &[&[S]],
    ) -> Result<FactoredRows> {
        let n_rows = self.check_columns(columns)?;
        if n_rows > u32::MAX as usize {
            return Err(Error::TooLarge {
                what: "number of rows",
                got: n_rows as u64,
                limit: u32::MAX as u64,
            });
        }
        let n_blocks = self.blocks.len();
        let mut parts = vec![0u32; n_rows * n_blocks];
        let mut blocks = Vec::with_capacity(n_blocks);
        for (b, (vectorizer, column)) in self.blocks.iter().zip(columns).enumerate() {
            let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
            let mut distinct: Vec<&str> = Vec::new();
            for (r, text) in column.iter().enumerate() {
                let text = text.as_ref();
                parts[r * n_blocks + b] = *ids.entry(text).or_insert_with(|| {
                    distinct.push(text);
                    (distinct.len() - 1) as u32
                });
            }
            drop(ids);
            let mut m = vectorizer.transform(&distinct);
            let offset = self.offsets[b] as u32;
            m.indices.iter_mut().for_each(|c| *c += offset);
            m.n_cols = self.n_features();
            blocks.push(m);
        }
        // Summed in the order of the joined row, as `fill_row` sums it.
        let divisors = (0..n_rows)
            .into_par_iter()
            .map(|r| {
                let values = blocks.iter().enumerate().flat_map(|(b, m)| {
                    let (_, vals) = m.row(parts[r * n_blocks + b] as usize);
                    vals.iter().map(|&v| f64::from(v))
                });
                self.norm.divisor(values).unwrap_or(0.0)
            })
            .collect();
        Ok(FactoredRows {
            n_cols: self.n_features(),
            blocks,
            parts,
            divisors,
        })
    }

    /// The number of rows of `columns`, one column of texts per block, all equally long.
    fn check_columns<S>(&self, columns: &[&[S]]) -> Result<usize> {
        if columns.len() != self.blocks.len() {
            return Err(Error::InvalidInput(format!(
                "expected {} columns of texts (one per block), got {}",
                self.blocks.len(),
                columns.len()
            )));
        }
        let n_rows = columns[0].len();
        if let Some(bad) = columns.iter().position(|c| c.len() != n_rows) {
            return Err(Error::InvalidInput(format!(
                "column {bad} has {} texts, column 0 has {n_rows}",
                columns[bad].len()
            )));
        }
        Ok(n_rows)
    }

    /// Vectorises one row (`texts[b]` for block `b`) into `out`: sorted columns, values.
    pub fn transform_one(
        &self,
        texts: &[&str],
        scratch: &mut ConcatScratch,
        out: &mut (Vec<u32>, Vec<f32>),
    ) -> Result<()> {
        if texts.len() != self.blocks.len() {
            return Err(Error::InvalidInput(format!(
                "expected {} texts (one per block), got {}",
                self.blocks.len(),
                texts.len()
            )));
        }
        self.fill_row(|b| texts[b], scratch);
        out.0.clone_from(&scratch.columns);
        out.1.clone_from(&scratch.values);
        Ok(())
    }

    fn fill_row<'t>(&self, text: impl Fn(usize) -> &'t str, scratch: &mut ConcatScratch) {
        let ConcatScratch {
            row,
            block,
            columns,
            values,
            wide,
        } = scratch;
        columns.clear();
        wide.clear();
        for (b, vectorizer) in self.blocks.iter().enumerate() {
            vectorizer.transform_one(text(b), row, block);
            let offset = self.offsets[b] as u32;
            columns.extend(block.0.iter().map(|&c| c + offset));
            wide.extend(block.1.iter().map(|&v| v as f64));
        }
        self.norm.apply(wide);
        values.clear();
        values.extend(wide.iter().map(|&v| v as f32));
    }
}

/// Rows of a [`FeatureConcat`] in parts ([`FeatureConcat::transform_factored`]): row `r` is
/// the rows of its blocks' texts side by side, each value divided by the row's divisor in f64
/// and then rounded to f32, as [`FeatureConcat::transform`] computes it.
#[derive(Debug, Clone)]
pub struct FactoredRows {
    n_cols: usize,
    /// Per block, the rows of its distinct texts, columns already placed in the joined row.
    blocks: Vec<CsrMatrix>,
    /// Row `r`'s text in block `b`: `parts[r * blocks.len() + b]`.
    parts: Vec<u32>,
    /// Per row, what its values are divided by (0: they are kept as they are).
    divisors: Vec<f64>,
}

impl FactoredRows {
    /// Number of values stored (the distinct texts' rows), against the joined rows' total.
    pub fn nnz(&self) -> usize {
        self.blocks.iter().map(CsrMatrix::nnz).sum()
    }
}

impl SparseRows for FactoredRows {
    fn n_rows(&self) -> usize {
        self.divisors.len()
    }

    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn row_in<'a>(&'a self, r: usize, buf: &'a mut RowBuf) -> (&'a [u32], &'a [f32]) {
        buf.cols.clear();
        buf.vals.clear();
        let divisor = self.divisors[r];
        let parts = &self.parts[r * self.blocks.len()..(r + 1) * self.blocks.len()];
        for (m, &part) in self.blocks.iter().zip(parts) {
            let (cols, vals) = m.row(part as usize);
            buf.cols.extend_from_slice(cols);
            if divisor > 0.0 {
                buf.vals
                    .extend(vals.iter().map(|&v| (f64::from(v) / divisor) as f32));
            } else {
                buf.vals.extend_from_slice(vals);
            }
        }
        (&buf.cols, &buf.vals)
    }
}

impl Persist for FeatureConcat {
    const KIND: Kind = Kind::FeatureConcat;

    /// The concatenation in the [`crate::persist`] format: its norm, then each block as a
    /// complete vectorizer file of its own.
    fn writer(&self) -> Writer<'_> {
        let mut w = Writer::new(Kind::FeatureConcat);
        w.u64s("norm", [u64::from(self.norm.code())])
            .u64s("blocks", [self.blocks.len() as u64]);
        for (i, b) in self.blocks.iter().enumerate() {
            w.file(&format!("block{i}"), b.writer());
        }
        w
    }

    /// Reads what [`FeatureConcat::to_bytes`] wrote.
    fn from_reader(r: &Reader) -> Result<Self> {
        let bad = |what: String| Error::Format { what };
        let norm = match r.u64s("norm")?.as_slice() {
            &[code] => u8::try_from(code).ok().and_then(Norm::from_code),
            _ => None,
        }
        .ok_or_else(|| bad("feature concat: unknown norm".into()))?;
        let n = match r.u64s("blocks")?.as_slice() {
            &[n] if (1..=999).contains(&n) => n as usize,
            other => return Err(bad(format!("feature concat: block count {other:?}"))),
        };
        let blocks = (0..n)
            .map(|i| {
                r.nested::<TfidfVectorizer>(&format!("block{i}"))
                    .map(std::sync::Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(blocks, norm)
    }
}

/// Reusable buffers for [`FeatureConcat`]: one per thread.
#[derive(Debug, Default, Clone)]
pub struct ConcatScratch {
    row: RowScratch,
    block: (Vec<u32>, Vec<f32>),
    columns: Vec<u32>,
    values: Vec<f32>,
    wide: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fit_columns_fits_each_block_on_its_column() {
        let config = TfidfConfig::default();
        let c = FeatureConcat::fit_columns(
            &[config.clone(), config.clone()],
            &[&["ab"][..], &["cd", "ce"][..]],
        )
        .unwrap();
        let a = TfidfVectorizer::fit(config.clone(), &["ab"]).unwrap();
        let b = TfidfVectorizer::fit(config.clone(), &["cd", "ce"]).unwrap();
        assert_eq!(
            c.blocks()[0].terms().collect::<Vec<_>>(),
            a.terms().collect::<Vec<_>>()
        );
        assert_eq!(
            c.blocks()[1].terms().collect::<Vec<_>>(),
            b.terms().collect::<Vec<_>>()
        );
        assert!(FeatureConcat::fit_columns(&[config], &[&["a"][..], &["b"][..]]).is_err());
    }

    #[test]
    fn a_column_without_terms_is_an_empty_block_unless_every_column_is() {
        let config = TfidfConfig::default();
        let configs = [config.clone(), config];
        let c =
            FeatureConcat::fit_columns(&configs, &[&["", "  "][..], &["cd", "ce"][..]]).unwrap();
        assert_eq!(c.blocks()[0].n_features(), 0);
        assert_eq!(c.n_features(), c.blocks()[1].n_features());
        let x = c.transform(&[&["anything"][..], &["cd"][..]]).unwrap();
        let (cols, vals) = x.row(0);
        assert!(!cols.is_empty());
        let norm: f32 = vals.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
        let d = FeatureConcat::from_bytes(&c.to_bytes()).unwrap();
        assert_eq!(
            d.transform(&[&["x"][..], &["ce"][..]]).unwrap(),
            c.transform(&[&["x"][..], &["ce"][..]]).unwrap()
        );
        assert!(matches!(
            FeatureConcat::fit_columns(&configs, &[&[""][..], &[" "][..]]),
            Err(Error::EmptyVocabulary { .. })
        ));
    }

    #[test]
    fn blocks_are_offset_and_the_row_renormalised() {
        let a = Arc::new(TfidfVectorizer::fit(TfidfConfig::default(), &["ab"]).unwrap());
        let b = Arc::new(TfidfVectorizer::fit(TfidfConfig::default(), &["cd", "ce"]).unwrap());
        let c = FeatureConcat::new(vec![a.clone(), b.clone()], Norm::L2).unwrap();
        assert_eq!(c.n_features(), a.n_features() + b.n_features());
        let x = c.transform(&[&["ab", ""][..], &["cd", "ce"][..]]).unwrap();
        let (cols, vals) = x.row(0);
        assert!(cols.windows(2).all(|w| w[0] < w[1]));
        assert!(cols.iter().any(|&c| (c as usize) < a.n_features()));
        assert!(cols.iter().any(|&c| (c as usize) >= a.n_features()));
        let norm: f32 = vals.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
        // Row 1: only the second block; still unit length.
        let (cols, _) = x.row(1);
        assert!(cols.iter().all(|&c| (c as usize) >= a.n_features()));
        let mut one = (Vec::new(), Vec::new());
        c.transform_one(&["ab", "cd"], &mut ConcatScratch::default(), &mut one)
            .unwrap();
        assert_eq!((&one.0[..], &one.1[..]), x.row(0));
    }

    #[test]
    fn saved_bytes_load_to_the_same_transform() {
        let a = Arc::new(TfidfVectorizer::fit(TfidfConfig::default(), &["ab"]).unwrap());
        let b = Arc::new(TfidfVectorizer::fit(TfidfConfig::default(), &["cd", "ce"]).unwrap());
        let c = FeatureConcat::new(vec![a, b], Norm::L1).unwrap();
        let d = FeatureConcat::from_bytes(&c.to_bytes()).unwrap();
        let cols: [&[&str]; 2] = [&["ab", "x"], &["ce", "cd"]];
        assert_eq!(d.transform(&cols).unwrap(), c.transform(&cols).unwrap());
        assert_eq!(d.norm(), Norm::L1);
    }

    #[test]
    fn mismatched_columns_are_errors() {
        let a = Arc::new(TfidfVectorizer::fit(TfidfConfig::default(), &["ab"]).unwrap());
        let c = FeatureConcat::new(vec![a.clone(), a], Norm::L2).unwrap();
        assert!(c.transform(&[&["ab"][..]]).is_err());
        assert!(c.transform(&[&["ab"][..], &["ab", "cd"][..]]).is_err());
        assert!(c
            .transform_one(
                &["ab"],
                &mut ConcatScratch::default(),
                &mut (vec![], vec![])
            )
            .is_err());
        assert!(FeatureConcat::new(vec![], Norm::L2).is_err());
    }

    fn word_block(docs: &[&str]) -> Arc<TfidfVectorizer> {
        let config = TfidfConfig {
            analyzer: crate::text::AnalyzerConfig {
                analyzer: crate::text::Analyzer::Word,
                ngram_range: (1, 2),
                ..crate::text::AnalyzerConfig::default()
            },
            ..TfidfConfig::default()
        };
        Arc::new(TfidfVectorizer::fit(config, docs).unwrap())
    }

    proptest::proptest! {
        /// The factored rows read back as `transform`'s rows to the bit, whatever the norm,
        /// the repeats, and the texts with no feature (blank, or unseen words).
        #[test]
        fn factored_rows_are_the_rows_to_the_bit(
            rows in proptest::collection::vec((0usize..6, 0usize..9), 1..40),
            norm in 0usize..3,
        ) {
            let words = ["", "cheap flights", "flights to paris", "paris", "hotels paris cheap",
                "zzz unseen", "cheap", "cheap cheap hotels", "to"];
            let prev = word_block(&words[1..5]);
            let next = Arc::new(TfidfVectorizer::fit(TfidfConfig::default(), &words[2..]).unwrap());
            let norm = [Norm::L2, Norm::L1, Norm::None][norm];
            let c = FeatureConcat::new(vec![prev, next], norm).unwrap();
            let a: Vec<&str> = rows.iter().map(|&(p, _)| words[p]).collect();
            let b: Vec<&str> = rows.iter().map(|&(_, q)| words[q]).collect();
            let whole = c.transform(&[&a, &b]).unwrap();
            let parts = c.transform_factored(&[&a, &b]).unwrap();
            proptest::prop_assert_eq!(SparseRows::n_rows(&parts), whole.n_rows());
            proptest::prop_assert_eq!(parts.n_cols(), whole.n_cols);
            let mut buf = RowBuf::default();
            for r in 0..whole.n_rows() {
                let (cols, vals) = parts.row_in(r, &mut buf);
                let (want_cols, want_vals) = whole.row(r);
                proptest::prop_assert_eq!(cols, want_cols);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                proptest::prop_assert_eq!(bits(vals), bits(want_vals));
            }
            // Each distinct text's row is stored once.
            let distinct = |col: &[&'static str]| {
                let mut d = col.to_vec();
                d.sort_unstable();
                d.dedup();
                d
            };
            let once: usize = [(&a, 0), (&b, 1)]
                .iter()
                .map(|(col, k)| {
                    distinct(col)
                        .iter()
                        .map(|t| c.blocks()[*k].transform(&[*t]).nnz())
                        .sum::<usize>()
                })
                .sum();
            proptest::prop_assert_eq!(parts.nnz(), once);
        }
    }

    #[test]
    fn factored_rows_check_their_columns() {
        let blocks = vec![word_block(&["aa bb"]), word_block(&["cc"])];
        let c = FeatureConcat::new(blocks, Norm::L2).unwrap();
        assert!(c.transform_factored(&[&["aa"][..]]).is_err());
        assert!(c
            .transform_factored(&[&["aa"][..], &["cc", "cc"][..]])
            .is_err());
    }
}
