//! Distinct strings in one buffer, each with a dense id: no allocation per string.
//!
//! Fitting counts millions of n-gram occurrences; a `HashMap<String, _>` would allocate a string
//! for every new term and again for every copy. Here terms live back to back in one `String`,
//! and a hash table holds only their ids.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// A set of distinct strings with ids `0..len` in insertion order.
///
/// ```
/// use xrcomplete_core::text::Interner;
/// let mut queries = Interner::default();
/// assert_eq!(queries.insert("cheap flights"), (0, true));
/// assert_eq!(queries.insert("hotels"), (1, true));
/// assert_eq!(queries.insert("cheap flights"), (0, false));
/// assert_eq!(queries.id("hotels"), Some(1));
/// assert_eq!(queries.iter().collect::<Vec<_>>(), ["cheap flights", "hotels"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Interner {
    buf: String,
    /// String `i` is `buf[ends[i - 1]..ends[i]]` (from 0 for `i = 0`).
    ends: Vec<usize>,
    /// Ids, hashed by their strings.
    table: HashTable<u32>,
}

impl PartialEq for Interner {
    fn eq(&self, other: &Self) -> bool {
        self.buf == other.buf && self.ends == other.ends
    }
}

#[inline]
fn hash(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

impl Interner {
    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there is no string.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The string with id `id` (`id < len`).
    #[inline]
    pub fn get_str(&self, id: u32) -> &str {
        let id = id as usize;
        let start = if id == 0 { 0 } else { self.ends[id - 1] };
        &self.buf[start..self.ends[id]]
    }

    /// The id of `s`, if present.
    pub fn id(&self, s: &str) -> Option<u32> {
        self.table
            .find(hash(s), |&id| self.get_str(id) == s)
            .copied()
    }

    /// The id of `s`, inserting it if new; `true` when it was inserted. Ids are `u32`: the
    /// caller keeps to 2^32 strings.
    pub fn insert(&mut self, s: &str) -> (u32, bool) {
        let h = hash(s);
        let Interner { buf, ends, table } = self;
        let get = |id: u32| {
            let id = id as usize;
            let start = if id == 0 { 0 } else { ends[id - 1] };
            &buf[start..ends[id]]
        };
        if let Some(&id) = table.find(h, |&id| get(id) == s) {
            return (id, false);
        }
        let id = ends.len() as u32;
        table.insert_unique(h, id, |&id| hash(get(id)));
        buf.push_str(s);
        ends.push(buf.len());
        (id, true)
    }

    /// All strings, by id.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len() as u32).map(|id| self.get_str(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #[test]
        fn ids_are_dense_stable_and_round_trip(words in prop::collection::vec("[a-cé]{0,4}", 0..200)) {
            let mut interner = Interner::default();
            let mut reference: HashMap<String, u32> = HashMap::new();
            for w in &words {
                let next = reference.len() as u32;
                let want = *reference.entry(w.clone()).or_insert(next);
                let (id, inserted) = interner.insert(w);
                prop_assert_eq!(id, want);
                prop_assert_eq!(inserted, want == next && interner.len() as u32 == next + 1);
            }
            prop_assert_eq!(interner.len(), reference.len());
            for (w, &id) in &reference {
                prop_assert_eq!(interner.id(w), Some(id));
                prop_assert_eq!(interner.get_str(id), w.as_str());
            }
            prop_assert_eq!(interner.id("zzz"), None);
        }
    }
}
