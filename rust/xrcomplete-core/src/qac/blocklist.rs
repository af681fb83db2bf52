//! Words and phrases no suggestion may contain.
//!
//! A term and a suggestion are compared as sequences of whole words: each is NFKC-normalised
//! and lower-cased, and its words are the runs of word characters (Python's `\w`). A suggestion
//! is blocked when the words of a term occur in it consecutively: "ass" blocks "ass hat" and
//! "kick-ass" but not "class" or "assistant"; "john smith" blocks "john smith seattle" but not
//! "john q smith". The check runs on every answer, seen, composed or live, so a blocked term
//! cannot come back assembled from parts by the language model either.

use std::borrow::Cow;
use std::collections::BTreeSet;

use rustc_hash::FxHashMap;
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};
use crate::text::word_runs;

/// The longest term, in bytes.
pub const MAX_TERM_BYTES: usize = 1_024;

/// The most terms a blocklist holds.
pub const MAX_TERMS: usize = 1_000_000;

/// The words of `text`: NFKC-normalised, lower-cased, runs of word characters.
pub fn words(text: &str) -> Vec<String> {
    let text: Cow<'_, str> = if text.is_ascii() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfkc().collect())
    };
    word_runs(&text.to_lowercase()).map(str::to_owned).collect()
}

/// A set of blocked terms. Cheap to check when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocklist {
    /// Every term, as its words joined by one space.
    terms: BTreeSet<String>,
    /// First word -> the rest of each term starting with it.
    by_first: FxHashMap<String, Vec<Vec<String>>>,
}

impl Blocklist {
    /// A blocklist of `terms` (see [`Blocklist::add`]).
    pub fn new<S: AsRef<str>>(terms: &[S]) -> Result<Self> {
        let mut list = Blocklist::default();
        list.add(terms)?;
        Ok(list)
    }

    /// `term` as the blocklist keeps it (its words joined by one space), or why it is refused.
    pub fn normalize(term: &str) -> Result<String> {
        Ok(parse(&[term])?.remove(0).join(" "))
    }

    /// Adds `terms`; returns how many were new. A term without any word character is refused
    /// (it could block nothing), and then none is added.
    pub fn add<S: AsRef<str>>(&mut self, terms: &[S]) -> Result<usize> {
        let parsed = parse(terms)?;
        if self.terms.len().saturating_add(parsed.len()) > MAX_TERMS {
            return Err(Error::TooLarge {
                what: "blocked terms",
                got: (self.terms.len() + parsed.len()) as u64,
                limit: MAX_TERMS as u64,
            });
        }
        let mut added = 0;
        for w in parsed {
            if self.terms.insert(w.join(" ")) {
                self.by_first
                    .entry(w[0].clone())
                    .or_default()
                    .push(w[1..].to_vec());
                added += 1;
            }
        }
        Ok(added)
    }

    /// Removes `terms` (normalised as when added); returns how many were there.
    pub fn remove<S: AsRef<str>>(&mut self, terms: &[S]) -> Result<usize> {
        let parsed = parse(terms)?;
        let mut removed = 0;
        for w in parsed {
            if self.terms.remove(&w.join(" ")) {
                removed += 1;
                if let Some(rests) = self.by_first.get_mut(&w[0]) {
                    rests.retain(|r| r[..] != w[1..]);
                    if rests.is_empty() {
                        self.by_first.remove(&w[0]);
                    }
                }
            }
        }
        Ok(removed)
    }

    /// The terms, normalised (words joined by one space), sorted.
    pub fn terms(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.terms.iter().map(String::as_str)
    }

    /// Number of terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// True without any term.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// True when `text` contains a blocked term (as whole, consecutive words).
    pub fn blocks(&self, text: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let words = words(text);
        (0..words.len()).any(|i| {
            self.by_first.get(&words[i]).is_some_and(|rests| {
                rests
                    .iter()
                    .any(|rest| words[i + 1..].starts_with(&rest[..]))
            })
        })
    }
}

/// The words of every term, or an error naming the first term without any.
fn parse<S: AsRef<str>>(terms: &[S]) -> Result<Vec<Vec<String>>> {
    terms
        .iter()
        .map(|t| {
            if t.as_ref().len() > MAX_TERM_BYTES {
                return Err(Error::InvalidInput(format!(
                    "a blocked term of {} bytes: at most {MAX_TERM_BYTES}",
                    t.as_ref().len()
                )));
            }
            let w = words(t.as_ref());
            if w.is_empty() {
                Err(Error::InvalidInput(format!(
                    "blocked term {:?} has no word character: it would block nothing",
                    t.as_ref()
                )))
            } else {
                Ok(w)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn whole_words_consecutive_normalised() {
        let b = Blocklist::new(&["ASS", "John  Smith", "ｆｒｅｅ ｐｏｒｎ"]).unwrap();
        assert_eq!(
            b.terms().collect::<Vec<_>>(),
            ["ass", "free porn", "john smith"]
        );
        for blocked in [
            "ass hat",
            "kick-ass",
            "the ass",
            "john smith seattle",
            "free porn now",
        ] {
            assert!(b.blocks(blocked), "{blocked}");
        }
        for fine in [
            "class",
            "assistant",
            "john q smith",
            "smith john",
            "free",
            "porn",
            "",
        ] {
            assert!(!b.blocks(fine), "{fine}");
        }
        assert!(Blocklist::new(&["  -- "]).is_err());
        assert_eq!(Blocklist::normalize(" John--SMITH ").unwrap(), "john smith");
        assert!(Blocklist::normalize("?").is_err());
        assert!(Blocklist::new(&["a".repeat(MAX_TERM_BYTES + 1)]).is_err());
        assert!(!Blocklist::default().blocks("anything"));
    }

    #[test]
    fn add_and_remove_count_what_changed() {
        let mut b = Blocklist::default();
        assert_eq!(b.add(&["a b", "A  B", "c"]).unwrap(), 2);
        assert!(b.blocks("x a b"));
        assert_eq!(b.remove(&["a b", "zzz"]).unwrap(), 1);
        assert!(!b.blocks("x a b") && b.blocks("c"));
        // A refused term adds nothing at all.
        assert!(b.add(&["d", "..."]).is_err());
        assert!(!b.blocks("d") && b.len() == 1);
    }

    proptest! {
        /// Against the definition: some window of the text's words equals a term's words.
        #[test]
        fn blocks_exactly_what_the_definition_says(
            terms in prop::collection::vec("[abc]{1,2}( [abc]{1,2}){0,2}", 1..5),
            text in "[abc -]{0,16}",
        ) {
            let b = Blocklist::new(&terms).unwrap();
            let t = words(&text);
            let want = terms.iter().any(|term| {
                let w = words(term);
                t.windows(w.len()).any(|win| win == &w[..])
            });
            prop_assert_eq!(b.blocks(&text), want);
        }
    }
}
