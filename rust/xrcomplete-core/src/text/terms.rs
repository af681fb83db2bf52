//! A fitted vocabulary: sorted terms and a hash table from term to column, both plain arrays so
//! that a loaded vectorizer uses them in place.
//!
//! The table is open addressing with linear probing over a power-of-two number of slots, at most
//! three quarters full: a slot holds `column + 1` (0 = empty), and beside it a byte array holds
//! 7 bits of each slot's hash (0 = empty), so a probe reads one byte, contiguous with the next
//! probes', and compares strings only when those bits agree (as hashbrown's control bytes). The hash is defined here, not taken from a
//! crate: a stored table must find its terms with every future build.

use crate::error::{Error, Result};
use crate::persist::{format_err, Array, Reader, Writer};
use crate::strings::Strings;

/// Terms (sorted, distinct) with their columns, and a lookup table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TermIndex {
    terms: Strings,
    table: HashSlots,
}

/// The lookup table from a key's bytes to its id, for keys stored elsewhere (by id): the
/// vocabulary's terms, the language model's words.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HashSlots {
    /// `0x80 | hash >> 57` per slot, 0 for an empty one.
    tags: Array<u8>,
    /// `id + 1` per slot, 0 for an empty one.
    slots: Array<u32>,
}

impl HashSlots {
    /// The table of `keys`, each distinct, id = position.
    pub(crate) fn new<'a>(keys: impl ExactSizeIterator<Item = &'a [u8]>) -> Self {
        let n = keys.len();
        let mask = (n + n / 3 + 1).next_power_of_two() - 1;
        let (mut tags, mut slots) = (vec![0u8; mask + 1], vec![0u32; mask + 1]);
        for (id, k) in keys.enumerate() {
            let h = term_hash(k);
            let mut at = h as usize & mask;
            while tags[at] != 0 {
                at = (at + 1) & mask;
            }
            tags[at] = tag_of(h);
            slots[at] = id as u32 + 1;
        }
        HashSlots {
            tags: tags.into(),
            slots: slots.into(),
        }
    }

    /// The id of `key`, where `key_of(id)` gives the bytes of the key of each id (`None` past
    /// the end).
    #[inline]
    pub(crate) fn find<'k>(
        &self,
        key: &[u8],
        key_of: impl Fn(usize) -> Option<&'k [u8]>,
    ) -> Option<u32> {
        let mask = self.tags.len() - 1;
        let h = term_hash(key);
        let (mut at, tag) = (h as usize & mask, tag_of(h));
        // At most every slot once: a loaded table is checked to have an empty one, but a bound
        // costs nothing and rules out a hang whatever the table holds.
        for _ in 0..self.tags.len() {
            match self.tags[at] {
                0 => return None,
                t if t == tag => {
                    let id = self.slots[at].wrapping_sub(1);
                    if key_of(id as usize) == Some(key) {
                        return Some(id);
                    }
                }
                _ => {}
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.tags.nbytes() + self.slots.nbytes()
    }

    /// Sections `{tags}` and `{slots}`.
    pub(crate) fn write<'a>(&'a self, w: &mut Writer<'a>, [tags, slots]: [&str; 2]) {
        w.array(tags, &self.tags).array(slots, &self.slots);
    }

    /// Reads what [`HashSlots::write`] wrote, for `n` keys (`None` where the sections are
    /// absent): checks that the table has a power-of-two size with an empty slot and holds
    /// each id once. (A table that holds every id once but not where its key hashes only fails
    /// to find keys: it cannot find a wrong one, every hit being compared with the key.)
    pub(crate) fn read(
        r: &Reader,
        [tags, slots]: [&str; 2],
        n: usize,
        what: &str,
    ) -> Result<Option<Self>> {
        if !r.has(tags) && !r.has(slots) {
            return Ok(None);
        }
        let tags: Array<u8> = r.array(tags)?;
        let slots: Array<u32> = r.array(slots)?;
        let mut seen = vec![false; n];
        let mut filled = 0usize;
        for &s in slots.iter().filter(|&&s| s != 0) {
            match seen.get_mut(s as usize - 1) {
                Some(slot) if !*slot => *slot = true,
                _ => return Err(format_err(format!("{what}: table holds a bad id"))),
            }
            filled += 1;
        }
        let empty = tags.iter().filter(|&&t| t == 0).count();
        if !slots.len().is_power_of_two() || tags.len() != slots.len() || filled != n || empty == 0
        {
            return Err(format_err(format!("{what}: table does not fit the keys")));
        }
        Ok(Some(HashSlots { tags, slots }))
    }
}

#[inline]
fn tag_of(h: u64) -> u8 {
    0x80 | (h >> 57) as u8
}

/// The hash of a term: 64-bit multiply-rotate over 8-byte words, the last 1-7 bytes read as
/// overlapping pieces (with the length mixed in first, they determine the tail), a final mix.
#[inline]
fn term_hash(s: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (s.len() as u64).wrapping_mul(K);
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let r = words.remainder();
    let u32_at = |i: usize| u64::from(u32::from_le_bytes(r[i..i + 4].try_into().expect("4 bytes")));
    let tail = match r.len() {
        0 => 0,
        1..=3 => u64::from(r[0]) | u64::from(r[r.len() / 2]) << 8 | u64::from(r[r.len() - 1]) << 16,
        n => u32_at(0) | u32_at(n - 4) << 32,
    };
    h = (h ^ tail).wrapping_mul(K);
    h ^ (h >> 32)
}

impl TermIndex {
    /// Indexes `terms`, which must be sorted and distinct (column = position).
    pub(crate) fn new<'a>(terms: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut list: Vec<&str> = Vec::new();
        for t in terms {
            if list.last().is_some_and(|&p| p >= t) {
                return Err(Error::InvalidInput(
                    "terms must be sorted and distinct".into(),
                ));
            }
            list.push(t);
        }
        if list.len() >= u32::MAX as usize / 2 {
            return Err(Error::TooLarge {
                what: "vocabulary size",
                got: list.len() as u64,
                limit: u32::MAX as u64 / 2 - 1,
            });
        }
        let table = HashSlots::new(list.iter().map(|t| t.as_bytes()));
        Ok(TermIndex {
            terms: Strings::new(&list)?,
            table,
        })
    }

    /// Number of terms.
    pub(crate) fn len(&self) -> usize {
        self.terms.len()
    }

    /// The column of `term`, if present.
    #[inline]
    pub(crate) fn id(&self, term: &str) -> Option<u32> {
        let terms = &self.terms;
        self.table.find(term.as_bytes(), |col| {
            (col < terms.len()).then(|| terms.get_bytes(col))
        })
    }

    /// The terms, in column order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.terms.iter()
    }

    /// Bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.terms.nbytes() + self.table.memory_bytes()
    }

    /// Sections `terms`, `terms.o`, `tags` and `slots`.
    pub(crate) fn write<'a>(&'a self, w: &mut Writer<'a>) {
        self.terms.write(w, "terms");
        self.table.write(w, ["tags", "slots"]);
    }

    /// Reads what [`TermIndex::write`] wrote. Checks the terms (sorted, distinct) and that the
    /// table has a power-of-two size with an empty slot and holds each column once.
    pub(crate) fn read(r: &Reader) -> Result<Self> {
        let terms = Strings::read(r, "terms", "terms")?;
        if !terms.is_sorted_distinct() {
            return Err(format_err("vectorizer: terms not sorted and distinct"));
        }
        match HashSlots::read(r, ["tags", "slots"], terms.len(), "vectorizer: the term")? {
            Some(table) => Ok(TermIndex { terms, table }),
            None => Err(format_err("vectorizer: no term table")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_hash_is_fixed() {
        // Stored tables depend on these values: a change needs a new format version.
        assert_eq!(term_hash(b""), 0);
        assert_eq!(term_hash(b"a"), 0x4238_18b7_226d_8233);
        assert_eq!(term_hash(b"hotels"), 0x96e4_b008_8083_0cc6);
        assert_eq!(
            term_hash("hotels in boston".as_bytes()),
            0x5d89_587c_910a_705f
        );
    }

    proptest! {
        #[test]
        fn every_term_is_found_at_its_column(words in prop::collection::btree_set("[a-cé ]{0,9}", 0..200), probe in "[a-d]{0,3}") {
            let terms: Vec<&str> = words.iter().map(String::as_str).collect();
            let index = TermIndex::new(terms.iter().copied()).unwrap();
            prop_assert_eq!(index.len(), terms.len());
            for (col, t) in terms.iter().enumerate() {
                prop_assert_eq!(index.id(t), Some(col as u32));
            }
            prop_assert_eq!(index.id(&probe), terms.iter().position(|t| *t == probe).map(|c| c as u32));
            prop_assert_eq!(index.iter().collect::<Vec<_>>(), terms);
        }
    }

    #[test]
    fn unsorted_terms_are_refused() {
        assert!(TermIndex::new(["b", "a"]).is_err());
        assert!(TermIndex::new(["a", "a"]).is_err());
        assert_eq!(TermIndex::new([]).unwrap().id("a"), None);
    }
}
