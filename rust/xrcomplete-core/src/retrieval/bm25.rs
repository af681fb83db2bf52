//! Okapi BM25 over product titles: the lexical scorer of product retrieval.
//!
//! Words are runs of word characters (Python's `\w`, one or more: "2 x 4" has three words),
//! lower-cased, with a light plural stemmer (a final "s" is dropped from words of four or more
//! characters that do not end in "ss": "doors" -> "door", "glass" stays). A product's score
//! for a query is `sum over the query's distinct words w in its title of
//! idf(w) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))` with
//! `idf(w) = ln(1 + (n - df + 0.5) / (df + 0.5))` (Lucene's form, never negative).
//! The weights are precomputed into postings (word -> products), so a query costs one
//! multiply-free add per posting of its words.

use rustc_hash::FxHashMap as HashMap;

use crate::error::{Error, Result};
use crate::persist::{format_err, Array, Fields, Reader, Writer};
use crate::sparse::{CsrArrays, CsrMatrix};
use crate::strings::Strings;
use crate::text::word_runs;

/// The two parameters of BM25.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    /// Saturation of the term frequency (> 0).
    pub k1: f32,
    /// Length normalisation, in [0, 1].
    pub b: f32,
}

impl Default for Bm25Params {
    /// Chosen on homedepot_valid (stemmed titles; see `benches/retrieval.py`): the grid
    /// k1 in {0.6, 1.2, 2.0} x b in {0.3, 0.6, 0.75, 0.9} is flat within 0.016 recall@10 and
    /// best at (0.6, 0.75).
    fn default() -> Self {
        Bm25Params { k1: 0.6, b: 0.75 }
    }
}

impl Bm25Params {
    /// Checks both parameters.
    pub fn check(&self) -> Result<()> {
        if !(self.k1.is_finite() && self.k1 > 0.0 && (0.0..=1.0).contains(&self.b)) {
            return Err(Error::InvalidInput(format!(
                "bm25 needs k1 > 0 and b in [0, 1], got k1 = {} and b = {}",
                self.k1, self.b
            )));
        }
        Ok(())
    }
}

/// Calls `emit` with every word of `text`, lower-cased and stemmed, in order.
pub(crate) fn for_each_word(text: &str, mut emit: impl FnMut(&str)) {
    let lower = text.to_lowercase();
    word_runs(&lower).for_each(|w| emit(stem(w)));
}

/// The light plural stemmer: "doors" -> "door"; "glass", "gas" and "bus" stay.
fn stem(word: &str) -> &str {
    match word.strip_suffix('s') {
        Some(rest) if word.chars().count() >= 4 && !rest.ends_with('s') => rest,
        _ => word,
    }
}

/// The distinct words of `text` (see [`for_each_word`]), sorted.
pub(crate) fn distinct_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for_each_word(text, |w| words.push(w.to_owned()));
    words.sort_unstable();
    words.dedup();
    words
}

/// A BM25 index of documents (product titles). Immutable; its arrays may live in a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct Bm25 {
    params: Bm25Params,
    /// The words of all documents, sorted.
    words: Strings,
    /// Word -> (document, BM25 weight of the word in the document).
    postings: CsrArrays,
    /// Words in each document (with repeats).
    lengths: Array<u32>,
}

impl Bm25 {
    /// Indexes `docs` (document `j` is `docs[j]`; an empty one is never found).
    pub fn fit<S: AsRef<str>>(docs: &[S], params: Bm25Params) -> Result<Self> {
        params.check()?;
        let mut ids: HashMap<String, u32> = HashMap::default();
        let mut rows: Vec<Vec<(u32, u32)>> = Vec::with_capacity(docs.len());
        let mut lengths = Vec::with_capacity(docs.len());
        for doc in docs {
            let mut counts: HashMap<u32, u32> = HashMap::default();
            let mut len = 0u32;
            for_each_word(doc.as_ref(), |w| {
                let next = ids.len() as u32;
                let id = *ids.entry(w.to_owned()).or_insert(next);
                *counts.entry(id).or_default() += 1;
                len = len.saturating_add(1);
            });
            let mut row: Vec<(u32, u32)> = counts.into_iter().collect();
            row.sort_unstable();
            rows.push(row);
            lengths.push(len);
        }
        // Words sorted, so that a query word is found by binary search.
        let mut sorted: Vec<(&String, u32)> = ids.iter().map(|(w, &i)| (w, i)).collect();
        sorted.sort_unstable();
        let mut rank = vec![0u32; sorted.len()];
        for (r, &(_, id)) in sorted.iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        let n = docs.len() as f64;
        let avg = (lengths.iter().map(|&l| f64::from(l)).sum::<f64>() / n.max(1.0)).max(1.0);
        let mut df = vec![0u32; sorted.len()];
        rows.iter()
            .flatten()
            .for_each(|&(w, _)| df[w as usize] += 1);
        let (k1, b) = (f64::from(params.k1), f64::from(params.b));
        let mut by_word: Vec<Vec<(u32, f32)>> = vec![Vec::new(); sorted.len()];
        for (j, row) in rows.iter().enumerate() {
            let norm = k1 * (1.0 - b + b * f64::from(lengths[j]) / avg);
            for &(w, tf) in row {
                let d = f64::from(df[w as usize]);
                let idf = (1.0 + (n - d + 0.5) / (d + 0.5)).ln();
                let tf = f64::from(tf);
                let weight = idf * tf * (k1 + 1.0) / (tf + norm);
                by_word[rank[w as usize] as usize].push((j as u32, weight as f32));
            }
        }
        let postings = CsrMatrix::from_rows(
            docs.len(),
            by_word.into_iter().map(|p| p.into_iter().unzip()),
        );
        Ok(Bm25 {
            params,
            words: Strings::new(sorted.iter().map(|(w, _)| w.as_str()))?,
            postings: postings.into(),
            lengths: lengths.into(),
        })
    }

    /// The parameters.
    pub fn params(&self) -> Bm25Params {
        self.params
    }

    /// Number of documents.
    pub fn n_docs(&self) -> usize {
        self.lengths.len()
    }

    /// Words in document `j` (`j < n_docs`).
    pub fn length(&self, j: usize) -> u32 {
        self.lengths[j]
    }

    /// The id of `word` (already lower-cased and stemmed), if any document has it.
    pub fn word(&self, word: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.words.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.words.get_bytes(mid).cmp(word.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The documents holding word `w` with the word's weight in each.
    pub fn postings(&self, w: usize) -> (&[u32], &[f32]) {
        self.postings.row(w)
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.words.nbytes() + self.postings.nbytes() + self.lengths.nbytes()
    }

    /// Sections `bm25`, `bm25w`(`.o`), `bm25p`(`.p/.i/.v`) and `bm25l`.
    pub(crate) fn write<'a>(&'a self, w: &mut Writer<'a>) {
        let mut fields = Vec::new();
        for v in [self.params.k1, self.params.b] {
            fields.extend_from_slice(&f64::from(v).to_bits().to_le_bytes());
        }
        w.bytes("bm25", fields);
        self.words.write(w, "bm25w");
        self.postings.write(w, "bm25p");
        w.array("bm25l", &self.lengths);
    }

    /// Reads what [`Bm25::write`] wrote, checking it.
    pub(crate) fn read(r: &Reader) -> Result<Self> {
        let mut f = Fields::new(r.bytes("bm25")?, "bm25");
        let params = Bm25Params {
            k1: f.f64()? as f32,
            b: f.f64()? as f32,
        };
        f.end()?;
        params.check().map_err(|e| format_err(e.to_string()))?;
        let words = Strings::read(r, "bm25w", "bm25 words")?;
        if !words.is_sorted_distinct() {
            return Err(format_err("bm25 words are not sorted"));
        }
        let lengths: Array<u32> = r.array("bm25l")?;
        let postings = CsrArrays::read(r, "bm25p", lengths.len())?;
        if postings.n_rows() != words.len() {
            return Err(format_err(format!(
                "bm25: {} words but {} posting lists",
                words.len(),
                postings.n_rows()
            )));
        }
        Ok(Bm25 {
            params,
            words,
            postings,
            lengths,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_word(text, |w| out.push(w.to_owned()));
        out
    }

    #[test]
    fn words_are_runs_of_word_characters_lowered_and_stemmed() {
        assert_eq!(
            words("2 x 4 Doors, GLASS-bus"),
            ["2", "x", "4", "door", "glass", "bus"]
        );
        assert_eq!(words("Ça  Über_alles"), ["ça", "über_alle"]);
        assert!(words(" .,- ").is_empty());
        assert_eq!(distinct_words("doors door DOOR x"), ["door", "x"]);
    }

    /// The score of every document, by the formula, without postings.
    fn brute(docs: &[&str], query: &str, p: Bm25Params) -> Vec<f64> {
        let toks: Vec<Vec<String>> = docs.iter().map(|d| words(d)).collect();
        let n = docs.len() as f64;
        let avg = (toks.iter().map(Vec::len).sum::<usize>() as f64 / n).max(1.0);
        let (k1, b) = (f64::from(p.k1), f64::from(p.b));
        toks.iter()
            .map(|t| {
                distinct_words(query)
                    .iter()
                    .map(|w| {
                        let tf = t.iter().filter(|x| *x == w).count() as f64;
                        let df = toks.iter().filter(|d| d.contains(w)).count() as f64;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                        idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * t.len() as f64 / avg))
                    })
                    .sum()
            })
            .collect()
    }

    fn scores(index: &Bm25, query: &str) -> Vec<f64> {
        let mut s = vec![0.0; index.n_docs()];
        for w in distinct_words(query) {
            if let Some(id) = index.word(&w) {
                let (docs, weights) = index.postings(id);
                for (&d, &v) in docs.iter().zip(weights) {
                    s[d as usize] += f64::from(v);
                }
            }
        }
        s
    }

    proptest! {
        #[test]
        fn postings_give_the_formula_and_survive_saving(
            docs in prop::collection::vec("[abc ]{0,12}", 1..8),
            query in "[abcd ]{0,8}",
            k1 in 0.1f32..3.0,
            b in 0.0f32..=1.0,
        ) {
            let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
            let p = Bm25Params { k1, b };
            let index = Bm25::fit(&docs, p).unwrap();
            let want = brute(&docs, &query, p);
            let got = scores(&index, &query);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{got:?} vs {want:?}");
            }
            let mut w = Writer::new(crate::persist::Kind::ProductRetriever);
            index.write(&mut w);
            let bytes = w.finish();
            let buf = crate::persist::Buffer::copy_from(&bytes);
            let r = Reader::new(&buf, crate::persist::Kind::ProductRetriever).unwrap();
            prop_assert_eq!(Bm25::read(&r).unwrap(), index);
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        for (k1, b) in [(0.0, 0.5), (f32::NAN, 0.5), (1.0, 1.5), (1.0, -0.1)] {
            assert!(Bm25::fit(&["a"], Bm25Params { k1, b }).is_err());
        }
    }
}
