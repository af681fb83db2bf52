//! Completing the last word of a prefix: suggestions that need not be seen queries.
//!
//! A typed prefix `head + part` (where `part` is the partial word after the last whitespace)
//! becomes `head + w` for the words `w` that start with `part`: first those seen after the last
//! word of `head` (bigram counts; the first word of a query counts as following ""), then any
//! word, by unigram count. This is the candidate generation of Mitra and Craswell (CIKM 2015) for
//! rare prefixes, limited to one word: it lets a completer answer a prefix of a query it has
//! never seen whole, which is most long prefixes of a real log.

use crate::error::Result;
use crate::persist::{Kind, Persist, Reader, Writer};
use crate::text::is_py_space;
use crate::Trie;

/// Word and word-pair counts of a set of queries.
#[derive(Debug, Clone, PartialEq)]
pub struct WordModel {
    /// Word -> total count of the queries holding it (once per occurrence).
    words: Trie,
    /// `"w1 w2"` -> count of `w2` right after `w1` (`w1` empty for the first word).
    bigrams: Trie,
}

/// Splits a prefix into (everything up to and including the last whitespace, the partial word).
pub(crate) fn split_last_word(prefix: &str) -> (&str, &str) {
    match prefix.char_indices().rev().find(|&(_, c)| is_py_space(c)) {
        Some((i, c)) => prefix.split_at(i + c.len_utf8()),
        None => ("", prefix),
    }
}

impl WordModel {
    /// Counts the words and word pairs of `queries`, each with its weight (its event count).
    pub fn new<'a>(queries: impl Iterator<Item = (&'a str, f64)>) -> Result<Self> {
        let mut words: Vec<(&str, f64)> = Vec::new();
        let mut bigrams: Vec<(String, f64)> = Vec::new();
        for (query, weight) in queries {
            let mut before = "";
            for word in query.split(is_py_space).filter(|w| !w.is_empty()) {
                words.push((word, weight));
                bigrams.push((format!("{before} {word}"), weight));
                before = word;
            }
        }
        Ok(WordModel {
            words: Trie::new(words)?,
            bigrams: Trie::new(bigrams)?,
        })
    }

    /// Number of distinct words.
    pub fn n_words(&self) -> usize {
        self.words.len()
    }

    /// Heap memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.words.memory_bytes() + self.bigrams.memory_bytes()
    }

    /// Appends to `out` up to `n` completions of `prefix` whose last word is completed to a
    /// known word (pairs first, then single words; each list by count), skipping duplicates and
    /// strings `skip` rejects. When `prefix` ends in whitespace, the next word is predicted from
    /// the last one (pairs only). Nothing for a prefix without a word.
    pub fn complete_last_word(
        &self,
        prefix: &str,
        n: usize,
        skip: impl Fn(&str) -> bool,
        out: &mut Vec<String>,
    ) {
        let (head, part) = split_last_word(prefix);
        let before = head
            .split(is_py_space)
            .rfind(|w| !w.is_empty())
            .unwrap_or("");
        if n == 0 || (part.is_empty() && before.is_empty()) {
            return;
        }
        let start = out.len();
        let key = format!("{before} {part}");
        let from_pairs = self
            .bigrams
            .completions(&key, n)
            .into_iter()
            .map(|(k, _)| &k[before.len() + 1..]);
        // After a space, only the words seen after the last one: any word at all says little.
        let from_words = if part.is_empty() {
            Vec::new()
        } else {
            self.words.completions(part, n)
        };
        let from_words = from_words.into_iter().map(|(w, _)| w);
        for word in from_pairs.chain(from_words) {
            if out.len() - start >= n {
                break;
            }
            let candidate = format!("{head}{word}");
            if !skip(&candidate) && !out[start..].contains(&candidate) {
                out.push(candidate);
            }
        }
    }
}

impl Persist for WordModel {
    const KIND: Kind = Kind::WordModel;

    /// Sections: the word trie and the pair trie, each a complete trie file.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(Kind::WordModel);
        w.bytes("words", self.words.to_bytes())
            .bytes("bigrams", self.bigrams.to_bytes());
        w.finish()
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        Ok(WordModel {
            words: r.nested("words")?,
            bigrams: r.nested("bigrams")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> WordModel {
        WordModel::new(
            [
                ("cheap flights", 5.0),
                ("cheap hotels", 2.0),
                ("hotels boston", 1.0),
                ("cheap flowers", 1.0),
                ("fly", 9.0),
            ]
            .into_iter(),
        )
        .unwrap()
    }

    fn complete(m: &WordModel, prefix: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        m.complete_last_word(prefix, n, |_| false, &mut out);
        out
    }

    #[test]
    fn pairs_come_before_single_words() {
        let m = model();
        // After "cheap": flights (5), flowers (1); then words by count: fly (9) is new.
        assert_eq!(
            complete(&m, "cheap fl", 10),
            ["cheap flights", "cheap flowers", "cheap fly"]
        );
        // First words: "cheap" x3 and "fly" and "hotels" follow "".
        assert_eq!(complete(&m, "h", 10), ["hotels"]);
        assert_eq!(complete(&m, "x fl", 2), ["x fly", "x flights"]);
        // After a space: the words seen after the last word.
        assert_eq!(
            complete(&m, "cheap ", 10),
            ["cheap flights", "cheap hotels", "cheap flowers"]
        );
        assert_eq!(complete(&m, "very cheap ", 1), ["very cheap flights"]);
        assert!(complete(&m, "fly ", 10).is_empty());
        assert!(complete(&m, "  ", 10).is_empty());
        assert!(complete(&m, "", 10).is_empty());
        assert!(complete(&m, "cheap zz", 10).is_empty());
    }

    #[test]
    fn skipped_strings_stay_out_and_persistence_round_trips() {
        let m = model();
        let mut out = Vec::new();
        m.complete_last_word("cheap fl", 10, |s| s == "cheap flights", &mut out);
        assert_eq!(out, ["cheap flowers", "cheap fly"]);
        assert_eq!(WordModel::from_bytes(&m.to_bytes()).unwrap(), m);
        assert_eq!(split_last_word("a b\u{3000}cd"), ("a b\u{3000}", "cd"));
    }
}
