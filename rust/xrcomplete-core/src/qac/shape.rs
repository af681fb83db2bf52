//! How word-like a typed word looks: a character trigram model of the language model's words.
//!
//! A word the log never had can be typed right ("black mamba") or be a slip of a known one
//! ("blakc"). Which known word it is nearest to says little; how its characters run says more:
//! a slip puts a letter where letters seldom go ("kc"), a new word mostly does not. [`CharShape`]
//! counts the character trigrams of the distinct words (each word once, between two start
//! marks and an end mark) and scores a word by the mean log probability of its characters,
//! smoothed by Witten-Bell interpolation (Witten & Bell 1991):
//!
//! ```text
//! P(c | a b) = (n(a b c) + t(a b) P(c | b)) / (n(a b ·) + t(a b))
//! P(c | b)   = (n(b c) + t(b) P(c)) / (n(b ·) + t(b))
//! P(c)       = (n(c) + 1) / (n(·) + t + 1)
//! ```
//!
//! where `n` counts occurrences, `t(h)` the distinct characters seen after `h` and `t` the
//! distinct characters. Every count is one entry of a sorted key array, searched in place.

use crate::error::Result;
use crate::persist::{format_err, Array, Reader, Writer};

/// Character slots of a key: 21 bits hold every Unicode scalar value.
const BITS: u32 = 21;
const MASK: u64 = (1 << BITS) - 1;
/// Marks: none (a lower order), the two counts kept per context in the last slot (its
/// occurrences and its distinct next symbols; above every symbol), the start and the end of a
/// word.
const NONE: u64 = MASK;
const TOTAL: u64 = MASK - 1;
const DISTINCT: u64 = MASK - 2;
const START: u64 = MASK - 3;
const END: u64 = MASK - 4;

fn key(a: u64, b: u64, c: u64) -> u64 {
    (a << (2 * BITS)) | (b << BITS) | c
}

/// The symbols of `word`: two starts, its characters and, for a whole word, the end.
fn symbols(word: &str, whole: bool) -> impl Iterator<Item = u64> + '_ {
    [START, START]
        .into_iter()
        .chain(word.chars().map(|c| u64::from(u32::from(c))))
        .chain(whole.then_some(END))
}

/// A character trigram model of a vocabulary, stored as sorted (key, count) arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct CharShape {
    keys: Array<u64>,
    counts: Array<u32>,
}

impl CharShape {
    /// The model of `words` (each counted once).
    pub fn new<'a>(words: impl Iterator<Item = &'a str>) -> Self {
        let mut all: Vec<u64> = Vec::new();
        for w in words {
            let s: Vec<u64> = symbols(w, true).collect();
            for i in 2..s.len() {
                let (a, b, c) = (s[i - 2], s[i - 1], s[i]);
                all.extend([
                    key(a, b, c),
                    key(NONE, b, c),
                    key(NONE, NONE, c),
                    key(a, b, TOTAL),
                    key(NONE, b, TOTAL),
                    key(NONE, NONE, TOTAL),
                ]);
            }
        }
        all.sort_unstable();
        let (mut keys, mut counts) = (Vec::new(), Vec::new());
        // Within a context, its symbols sort first, then its distinct count, then its total:
        // the distinct count (how many different symbols followed it) goes in before the total.
        let mut followers = 0u32;
        for run in all.chunk_by(|a, b| a == b) {
            let k = run[0];
            if k & MASK == TOTAL {
                keys.push((k & !MASK) | DISTINCT);
                counts.push(followers);
                followers = 0;
            } else {
                followers += 1;
            }
            keys.push(k);
            counts.push(run.len() as u32);
        }
        CharShape {
            keys: keys.into(),
            counts: counts.into(),
        }
    }

    fn count(&self, k: u64) -> f64 {
        match self.keys.binary_search(&k) {
            Ok(i) => f64::from(self.counts[i]),
            Err(_) => 0.0,
        }
    }

    /// Mean natural-log probability per character of `word` (`whole`: with its end; else what
    /// is typed of it), in (-inf, 0]; 0 for an empty word or an empty model.
    pub fn score(&self, word: &str, whole: bool) -> f32 {
        let chars = self.count(key(NONE, NONE, DISTINCT));
        let events = self.count(key(NONE, NONE, TOTAL));
        if events == 0.0 {
            return 0.0;
        }
        let s: Vec<u64> = symbols(word, whole).collect();
        let mut sum = 0.0;
        for i in 2..s.len() {
            let (a, b, c) = (s[i - 2], s[i - 1], s[i]);
            let mut p = (self.count(key(NONE, NONE, c)) + 1.0) / (events + chars + 1.0);
            for (x, y) in [(NONE, b), (a, b)] {
                let t = self.count(key(x, y, DISTINCT));
                if t > 0.0 {
                    let n = self.count(key(x, y, c));
                    p = (n + t * p) / (self.count(key(x, y, TOTAL)) + t);
                }
            }
            sum += p.ln();
        }
        match s.len() - 2 {
            0 => 0.0,
            n => (sum / n as f64) as f32,
        }
    }

    /// Heap memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.keys.nbytes() + self.counts.nbytes()
    }

    /// Writes its sections, named from `prefix`.
    pub(crate) fn write<'a>(&'a self, w: &mut Writer<'a>, prefix: &str) {
        w.array(&format!("{prefix}keys"), &self.keys)
            .array(&format!("{prefix}counts"), &self.counts);
    }

    /// Reads the sections of [`CharShape::write`]; `None` when the file has none.
    pub(crate) fn read(r: &Reader, prefix: &str) -> Result<Option<Self>> {
        let name = format!("{prefix}keys");
        if !r.has(&name) {
            return Ok(None);
        }
        let keys: Array<u64> = r.array(&name)?;
        let counts: Array<u32> = r.array(&format!("{prefix}counts"))?;
        if keys.len() != counts.len() || keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format_err(
                "character shape: keys not strictly increasing or counts of another length",
            ));
        }
        Ok(Some(CharShape { keys, counts }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{Buffer, Kind};
    use proptest::prelude::*;

    fn words() -> Vec<&'static str> {
        vec![
            "black", "blue", "block", "back", "track", "check", "clock", "flights", "lights",
            "night", "right", "boston", "denver", "station", "nation", "mama", "drama", "camera",
            "lambda", "amber", "number",
        ]
    }

    #[test]
    fn a_slip_looks_less_like_a_word_than_a_new_word_does() {
        let shape = CharShape::new(words().into_iter());
        // Typed right, never seen: its letters run as the vocabulary's do.
        let new = shape.score("mamba", true);
        for slip in ["blakc", "bkack", "nigth", "bostno"] {
            assert!(
                shape.score(slip, true) < new,
                "{slip}: {}",
                shape.score(slip, true)
            );
        }
        assert!(shape.score("black", true) > shape.score("blakc", true));
    }

    #[test]
    fn counts_follow_the_vocabulary() {
        let shape = CharShape::new(["ab", "ac"].into_iter());
        // ^^a twice, ^ab, ^ac, ab$ and ac$ once: six trigram events.
        assert_eq!(shape.count(key(NONE, NONE, TOTAL)), 6.0);
        assert_eq!(shape.count(key(START, START, 'a' as u64)), 2.0);
        assert_eq!(shape.count(key(START, 'a' as u64, DISTINCT)), 2.0);
        assert_eq!(shape.count(key(NONE, 'a' as u64, TOTAL)), 2.0);
        // Distinct symbols predicted: a, b, c and the end.
        assert_eq!(shape.count(key(NONE, NONE, DISTINCT)), 4.0);
    }

    #[test]
    fn an_empty_model_or_word_scores_zero() {
        assert_eq!(CharShape::new(std::iter::empty()).score("abc", true), 0.0);
        assert_eq!(CharShape::new(words().into_iter()).score("", false), 0.0);
    }

    #[test]
    fn saves_and_reads_back_and_rejects_unsorted_keys() {
        let shape = CharShape::new(words().into_iter());
        let mut w = Writer::new(Kind::QueryLm);
        shape.write(&mut w, "s_");
        let buf = Buffer::copy_from(&w.finish());
        let r = Reader::new(&buf, Kind::QueryLm).unwrap();
        assert_eq!(CharShape::read(&r, "s_").unwrap(), Some(shape.clone()));
        assert_eq!(CharShape::read(&r, "other_").unwrap(), None);

        let mut w = Writer::new(Kind::QueryLm);
        w.array("s_keys", &[3u64, 2]).array("s_counts", &[1u32, 1]);
        let buf = Buffer::copy_from(&w.finish());
        let r = Reader::new(&buf, Kind::QueryLm).unwrap();
        assert!(CharShape::read(&r, "s_").is_err());
    }

    proptest! {
        #[test]
        fn probabilities_are_probabilities(
            vocab in proptest::collection::vec("[a-e]{1,6}", 1..30),
            word in "[a-gé]{0,8}",
            whole: bool,
        ) {
            let shape = CharShape::new(vocab.iter().map(String::as_str));
            let s = shape.score(&word, whole);
            prop_assert!(s.is_finite() && s <= 0.0, "{}", s);
            // The single symbols' distribution sums to one: the symbols seen and an unseen
            // one's share.
            let events = shape.count(key(NONE, NONE, TOTAL));
            let chars = shape.count(key(NONE, NONE, DISTINCT));
            let seen: Vec<u64> = shape
                .keys
                .iter()
                .filter(|&&k| k >> BITS == (NONE << BITS) | NONE && k & MASK < DISTINCT)
                .map(|&k| k & MASK)
                .collect();
            prop_assert_eq!(seen.len() as f64, chars);
            let p1 = |c: u64| (shape.count(key(NONE, NONE, c)) + 1.0) / (events + chars + 1.0);
            let total: f64 = seen.iter().map(|&c| p1(c)).sum();
            prop_assert!((total + 1.0 / (events + chars + 1.0) - 1.0).abs() < 1e-9);
        }
    }
}
