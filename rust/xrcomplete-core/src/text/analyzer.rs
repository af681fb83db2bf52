//! Cutting a text into terms (word or character n-grams), each occurrence with the weight of its
//! position ("prefix weighting").
//!
//! With prefix weighting off, the terms and their order are exactly scikit-learn's for
//! `analyzer="word"` (the default `token_pattern`), `"char"` and `"char_wb"`: the same whitespace
//! (Python's `str.isspace`), the same word characters (Python's `\w`: letters, numbers, `_`).

use std::borrow::Cow;

use unicode_general_category::{get_general_category, GeneralCategory as Gc};
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// What a term is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Analyzer {
    /// Word n-grams: words are runs of two or more word characters, joined by one space.
    Word,
    /// Character n-grams of the whole text (runs of two or more whitespace become one space).
    Char,
    /// Character n-grams inside words, each word padded with a space on both sides.
    CharWb,
}

/// How the position of an occurrence discounts its count. Position `i` is 0 for the first
/// n-gram of its length (in the string, or in its word: [`PositionScope`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PositionWeight {
    /// Every occurrence counts 1: plain TF-IDF.
    Uniform,
    /// The i-th occurrence counts `1 / (i + 1)` (the PECOS qp2q reference form).
    Harmonic,
    /// The i-th occurrence counts `1 + alpha * decay^i`; `alpha = 0` is plain TF-IDF.
    Exponential {
        /// Extra weight of the first position (>= 0).
        alpha: f64,
        /// Factor per position, in [0, 1].
        decay: f64,
    },
}

impl PositionWeight {
    /// The weight of position `i`: positive and non-increasing in `i`.
    #[inline]
    pub fn weight(&self, i: usize) -> f64 {
        match *self {
            PositionWeight::Uniform => 1.0,
            PositionWeight::Harmonic => 1.0 / (i as f64 + 1.0),
            PositionWeight::Exponential { alpha, decay } => {
                1.0 + alpha * decay.powi(i.min(i32::MAX as usize) as i32)
            }
        }
    }

    fn check(&self) -> Result<()> {
        if let PositionWeight::Exponential { alpha, decay } = *self {
            if !(alpha.is_finite() && alpha >= 0.0) {
                return Err(Error::InvalidInput(format!(
                    "prefix weighting alpha must be a finite number >= 0, got {alpha}"
                )));
            }
            if !(0.0..=1.0).contains(&decay) {
                return Err(Error::InvalidInput(format!(
                    "prefix weighting decay must be in [0, 1], got {decay}"
                )));
            }
        }
        Ok(())
    }
}

/// Where positions are counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PositionScope {
    /// The i-th n-gram of its length in the whole string.
    String,
    /// The offset of the n-gram in its word (for `Char`: from the start of the word the n-gram
    /// starts in). For `Word` n-grams this is the same as `String`.
    Word,
}

/// Everything that decides which terms a text yields, and their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzerConfig {
    /// What a term is.
    pub analyzer: Analyzer,
    /// Smallest and largest n (inclusive).
    pub ngram_range: (usize, usize),
    /// Lower-case the text first (Unicode full lower-casing, as Python's `str.lower`).
    pub lowercase: bool,
    /// NFKC-normalise the text first (before lower-casing).
    pub nfkc: bool,
    /// Prefix weighting of each occurrence.
    pub position_weight: PositionWeight,
    /// Where positions are counted from.
    pub position_scope: PositionScope,
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        AnalyzerConfig {
            analyzer: Analyzer::CharWb,
            ngram_range: (1, 4),
            lowercase: true,
            nfkc: false,
            position_weight: PositionWeight::Uniform,
            position_scope: PositionScope::String,
        }
    }
}

/// The longest n-gram supported: beyond it no realistic feature space is useful.
pub const MAX_NGRAM: usize = 64;

impl AnalyzerConfig {
    /// Checks the options; the vectorizers call it before fitting.
    pub fn check(&self) -> Result<()> {
        let (lo, hi) = self.ngram_range;
        if lo < 1 || lo > hi || hi > MAX_NGRAM {
            return Err(Error::InvalidInput(format!(
                "ngram_range must satisfy 1 <= min_n <= max_n <= {MAX_NGRAM}, got ({lo}, {hi})"
            )));
        }
        self.position_weight.check()
    }

    /// Applies NFKC and lower-casing as configured.
    pub fn preprocess<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        if self.nfkc {
            text = Cow::Owned(text.nfkc().collect());
        }
        if self.lowercase && text.chars().any(|c| c.is_uppercase() || !c.is_ascii()) {
            text = Cow::Owned(text.to_lowercase());
        }
        text
    }

    /// Calls `emit(term, weight)` for every term occurrence of `text`, in scikit-learn's order.
    pub fn for_each_term(
        &self,
        text: &str,
        scratch: &mut Scratch,
        mut emit: impl FnMut(&str, f64),
    ) {
        let text = self.preprocess(text);
        match self.analyzer {
            Analyzer::CharWb => self.char_wb(&text, scratch, &mut emit),
            Analyzer::Char => self.char(&text, scratch, &mut emit),
            Analyzer::Word => self.word(&text, scratch, &mut emit),
        }
    }

    fn char_wb(&self, text: &str, s: &mut Scratch, emit: &mut impl FnMut(&str, f64)) {
        let (min_n, max_n) = self.ngram_range;
        let by_word = self.position_scope == PositionScope::Word;
        s.counts.clear();
        s.counts.resize(max_n + 1, 0);
        for word in text.split(is_py_space).filter(|w| !w.is_empty()) {
            s.text.clear();
            s.text.push(' ');
            s.text.push_str(word);
            s.text.push(' ');
            char_bounds(&s.text, &mut s.bounds);
            let len = s.bounds.len() - 1;
            for n in min_n..=max_n {
                // As scikit-learn: every window of n characters, or the whole padded word
                // once when it is shorter than n (and then no larger n).
                let windows = if len > n { len - n + 1 } else { 1 };
                for offset in 0..windows {
                    let end = s.bounds[(offset + n).min(len)];
                    let pos = if by_word { offset } else { s.counts[n] };
                    s.counts[n] += 1;
                    emit(
                        &s.text[s.bounds[offset]..end],
                        self.position_weight.weight(pos),
                    );
                }
                if len <= n {
                    break;
                }
            }
        }
    }

    fn char(&self, text: &str, s: &mut Scratch, emit: &mut impl FnMut(&str, f64)) {
        let (min_n, max_n) = self.ngram_range;
        collapse_whitespace_runs(text, &mut s.text);
        char_bounds(&s.text, &mut s.bounds);
        let len = s.bounds.len() - 1;
        // word_start[i]: the start of the word (run after whitespace) that character i is in.
        s.word_start.clear();
        let mut start = 0;
        for (i, c) in s.text.chars().enumerate() {
            s.word_start.push(start);
            if is_py_space(c) {
                start = i + 1;
            }
        }
        for n in min_n..=max_n.min(len) {
            for i in 0..=len - n {
                let pos = match self.position_scope {
                    PositionScope::String => i,
                    PositionScope::Word => i - s.word_start[i],
                };
                emit(
                    &s.text[s.bounds[i]..s.bounds[i + n]],
                    self.position_weight.weight(pos),
                );
            }
        }
    }

    fn word(&self, text: &str, s: &mut Scratch, emit: &mut impl FnMut(&str, f64)) {
        let (min_n, max_n) = self.ngram_range;
        // Tokens: maximal runs of word characters of at least two characters (`\b\w\w+\b`).
        s.tokens.clear();
        let mut run: Option<(usize, usize)> = None; // (byte start, chars)
        for (i, c) in text
            .char_indices()
            .chain(std::iter::once((text.len(), ' ')))
        {
            let is_word = i < text.len() && is_py_word(c);
            match (&mut run, is_word) {
                (Some((_, chars)), true) => *chars += 1,
                (None, true) => run = Some((i, 1)),
                (Some((start, chars)), false) => {
                    if *chars >= 2 {
                        s.tokens.push((*start, i));
                    }
                    run = None;
                }
                (None, false) => {}
            }
        }
        let n_tokens = s.tokens.len();
        for n in min_n..=max_n.min(n_tokens) {
            for i in 0..=n_tokens - n {
                let weight = self.position_weight.weight(i);
                if n == 1 {
                    let (a, b) = s.tokens[i];
                    emit(&text[a..b], weight);
                } else {
                    s.text.clear();
                    for (j, &(a, b)) in s.tokens[i..i + n].iter().enumerate() {
                        if j > 0 {
                            s.text.push(' ');
                        }
                        s.text.push_str(&text[a..b]);
                    }
                    emit(&s.text, weight);
                }
            }
        }
    }
}

/// Reusable buffers for [`AnalyzerConfig::for_each_term`]: one per thread, none per term.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    text: String,
    bounds: Vec<usize>,
    counts: Vec<usize>,
    word_start: Vec<usize>,
    tokens: Vec<(usize, usize)>,
}

/// Python's `str.isspace`: Unicode White_Space plus the ASCII separators U+001C..U+001F.
#[inline]
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The runs of word characters (Python's `\w+`) of `text`, in order.
pub fn word_runs(text: &str) -> impl Iterator<Item = &str> + '_ {
    text.split(|c: char| !is_py_word(c))
        .filter(|w| !w.is_empty())
}

/// Python's `\w` on `str`: letters, numbers and the underscore.
#[inline]
pub fn is_py_word(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    matches!(
        get_general_category(c),
        Gc::UppercaseLetter
            | Gc::LowercaseLetter
            | Gc::TitlecaseLetter
            | Gc::ModifierLetter
            | Gc::OtherLetter
            | Gc::DecimalNumber
            | Gc::LetterNumber
            | Gc::OtherNumber
    )
}

/// Byte offsets of the character boundaries of `s`, the end included.
fn char_bounds(s: &str, out: &mut Vec<usize>) {
    out.clear();
    out.extend(s.char_indices().map(|(i, _)| i));
    out.push(s.len());
}

/// scikit-learn's `re.sub(r"\s\s+", " ", text)`: a run of two or more whitespace characters
/// becomes one space; a single whitespace character stays as it is.
fn collapse_whitespace_runs(text: &str, out: &mut String) {
    out.clear();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if is_py_space(c) && chars.peek().is_some_and(|&d| is_py_space(d)) {
            while chars.peek().is_some_and(|&d| is_py_space(d)) {
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(config: &AnalyzerConfig, text: &str) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        config.for_each_term(text, &mut Scratch::default(), |t, w| {
            out.push((t.to_owned(), w))
        });
        out
    }

    fn config(analyzer: Analyzer, ngram_range: (usize, usize)) -> AnalyzerConfig {
        AnalyzerConfig {
            analyzer,
            ngram_range,
            ..AnalyzerConfig::default()
        }
    }

    fn names(v: Vec<(String, f64)>) -> Vec<String> {
        v.into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn char_wb_matches_scikit_learn_on_short_and_long_words() {
        // sklearn: TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4))
        //     .build_analyzer()("ab  xyz")
        let got = names(terms(&config(Analyzer::CharWb, (2, 4)), "ab  xyz"));
        let want = [
            " a", "ab", "b ", " ab", "ab ", " ab ", " x", "xy", "yz", "z ", " xy", "xyz", "yz ",
            " xyz", "xyz ",
        ];
        assert_eq!(got, want);
        // A word shorter than n is counted once, whole, and no larger n follows.
        let got = names(terms(&config(Analyzer::CharWb, (3, 5)), "a"));
        assert_eq!(got, [" a "]);
    }

    #[test]
    fn char_collapses_only_runs_of_whitespace() {
        let got = names(terms(&config(Analyzer::Char, (1, 2)), "a\tb  c"));
        assert_eq!(got, ["a", "\t", "b", " ", "c", "a\t", "\tb", "b ", " c"]);
    }

    #[test]
    fn words_are_runs_of_two_or_more_word_characters() {
        let got = names(terms(
            &config(Analyzer::Word, (1, 2)),
            "I like x_y, ÉTÉ 42 a",
        ));
        assert_eq!(
            got,
            ["like", "x_y", "été", "42", "like x_y", "x_y été", "été 42"]
        );
    }

    #[test]
    fn positions_are_counted_in_the_string_or_in_the_word() {
        let harmonic = AnalyzerConfig {
            position_weight: PositionWeight::Harmonic,
            ..config(Analyzer::CharWb, (2, 2))
        };
        let got = terms(&harmonic, "ab c");
        let weights: Vec<f64> = got.iter().map(|t| t.1).collect();
        assert_eq!(names(got), [" a", "ab", "b ", " c", "c "]);
        assert_eq!(weights, [1.0, 1.0 / 2.0, 1.0 / 3.0, 1.0 / 4.0, 1.0 / 5.0]);
        let per_word = AnalyzerConfig {
            position_scope: PositionScope::Word,
            ..harmonic
        };
        let weights: Vec<f64> = terms(&per_word, "ab c").iter().map(|t| t.1).collect();
        assert_eq!(weights, [1.0, 1.0 / 2.0, 1.0 / 3.0, 1.0, 1.0 / 2.0]);
    }

    #[test]
    fn weights_are_positive_and_non_increasing_in_position() {
        for w in [
            PositionWeight::Uniform,
            PositionWeight::Harmonic,
            PositionWeight::Exponential {
                alpha: 2.0,
                decay: 0.7,
            },
            PositionWeight::Exponential {
                alpha: 0.0,
                decay: 0.5,
            },
        ] {
            let ws: Vec<f64> = (0..200).map(|i| w.weight(i)).collect();
            assert!(ws.iter().all(|&x| x > 0.0));
            assert!(ws.windows(2).all(|p| p[0] >= p[1]), "{w:?}");
        }
        let plain = PositionWeight::Exponential {
            alpha: 0.0,
            decay: 0.3,
        };
        assert!((0..50).all(|i| plain.weight(i) == 1.0));
    }

    #[test]
    fn bad_options_are_rejected() {
        assert!(config(Analyzer::Char, (0, 2)).check().is_err());
        assert!(config(Analyzer::Char, (3, 2)).check().is_err());
        assert!(config(Analyzer::Char, (1, MAX_NGRAM + 1)).check().is_err());
        let bad = |alpha, decay| AnalyzerConfig {
            position_weight: PositionWeight::Exponential { alpha, decay },
            ..AnalyzerConfig::default()
        };
        assert!(bad(-1.0, 0.5).check().is_err());
        assert!(bad(f64::NAN, 0.5).check().is_err());
        assert!(bad(1.0, 1.5).check().is_err());
        assert!(bad(1.0, f64::NAN).check().is_err());
        assert!(bad(1.0, 1.0).check().is_ok());
    }

    #[test]
    fn empty_and_blank_texts_yield_nothing() {
        for analyzer in [Analyzer::Word, Analyzer::Char, Analyzer::CharWb] {
            assert!(terms(&config(analyzer, (2, 3)), "").is_empty());
            if analyzer != Analyzer::Char {
                assert!(terms(&config(analyzer, (1, 3)), " \t\u{3000} ").is_empty());
            }
        }
    }

    #[test]
    fn python_character_classes() {
        for c in [
            '\u{1c}', '\u{1f}', '\u{85}', '\u{a0}', '\u{3000}', '\u{2028}',
        ] {
            assert!(is_py_space(c), "{c:?}");
        }
        assert!(!is_py_space('\u{180e}') && !is_py_space('\u{200b}'));
        for c in ['a', 'É', '中', '٣', 'ⅷ', '½', '_'] {
            assert!(is_py_word(c), "{c:?}");
        }
        // Combining marks are not word characters in Python's `\w`.
        for c in ['\u{301}', '\u{93e}', '-', '€'] {
            assert!(!is_py_word(c), "{c:?}");
        }
    }
}
