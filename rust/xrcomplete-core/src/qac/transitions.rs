//! Counts of (previous query -> next query) in a log's sessions: the session signal that needs
//! no model. Each previous query has a row of (label id, count) sorted by label id, so the labels
//! of a prefix (a contiguous id range) are one binary search away.

use crate::error::{Error, Result};
use crate::persist::{Array, Kind, Persist, Reader, Writer};
use crate::Trie;

/// Next-query counts per previous query; the empty previous query (first queries of sessions)
/// has a row of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Transitions {
    /// The previous queries with a row; row `i` is prev id `i`, the last row is "".
    prevs: Trie,
    ptr: Array<u64>,
    next: Array<u32>,
    count: Array<f32>,
}

impl Transitions {
    /// Counts `(prev, next label)` pairs (`prev` empty for a session's first query).
    pub fn new<'a>(pairs: impl Iterator<Item = (&'a str, u32)>) -> Result<Self> {
        Self::from_counts(pairs.map(|(prev, label)| (prev, label, 1.0)))
    }

    /// Sums `(prev, next label, count)` entries (counts positive and finite).
    pub fn from_counts<'a>(entries: impl Iterator<Item = (&'a str, u32, f32)>) -> Result<Self> {
        let mut entries: Vec<(&str, u32, f32)> = entries.collect();
        if let Some(e) = entries.iter().find(|e| !(e.2.is_finite() && e.2 > 0.0)) {
            return Err(Error::InvalidInput(format!(
                "transitions: a count must be a positive number, got {}",
                e.2
            )));
        }
        entries.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut prevs: Vec<(&str, f64)> = Vec::new();
        let mut first: Vec<(u32, f32)> = Vec::new();
        let (mut ptr, mut next, mut count) = (vec![0u64], Vec::new(), Vec::new());
        for (i, &(prev, label, c)) in entries.iter().enumerate() {
            let same_prev = i > 0 && entries[i - 1].0 == prev;
            let same_pair = same_prev && entries[i - 1].1 == label;
            if prev.is_empty() {
                match first.last_mut() {
                    Some(last) if same_pair => last.1 += c,
                    _ => first.push((label, c)),
                }
                continue;
            }
            if !same_prev {
                if !prevs.is_empty() {
                    ptr.push(next.len() as u64);
                }
                prevs.push((prev, 0.0));
            }
            prevs.last_mut().expect("pushed above").1 += f64::from(c);
            if same_pair {
                *count.last_mut().expect("a count per entry") += c;
            } else {
                next.push(label);
                count.push(c);
            }
        }
        if !prevs.is_empty() {
            ptr.push(next.len() as u64);
        }
        for (label, c) in first {
            next.push(label);
            count.push(c);
        }
        ptr.push(next.len() as u64);
        Self::from_parts(Trie::new(prevs)?, ptr.into(), next.into(), count.into())
    }

    /// Every `(prev, next label, count)`, the session-first row (`prev` empty) last.
    pub fn entries(&self) -> impl Iterator<Item = (&str, u32, f32)> + '_ {
        (0..=self.prevs.len()).flat_map(move |row| {
            let prev = self.prevs.key(row as u32).unwrap_or("");
            let (start, end) = (self.ptr[row] as usize, self.ptr[row + 1] as usize);
            (start..end).map(move |i| (prev, self.next[i], self.count[i]))
        })
    }

    fn from_parts(
        prevs: Trie,
        ptr: Array<u64>,
        next: Array<u32>,
        count: Array<f32>,
    ) -> Result<Self> {
        let bad = |why: &str| Err(Error::InvalidInput(format!("transitions: {why}")));
        if ptr.len() != prevs.len() + 2
            || ptr.first() != Some(&0)
            || ptr.windows(2).any(|w| w[0] > w[1])
        {
            return bad("row pointers do not match the previous queries");
        }
        if *ptr.last().expect("non-empty") != next.len() as u64 || next.len() != count.len() {
            return bad("row pointers do not match the entries");
        }
        for w in ptr.windows(2) {
            if next[w[0] as usize..w[1] as usize]
                .windows(2)
                .any(|p| p[0] >= p[1])
            {
                return bad("a row's labels are not sorted and distinct");
            }
        }
        if count.iter().any(|c| !(c.is_finite() && *c > 0.0)) {
            return bad("a count is not a positive number");
        }
        Ok(Transitions {
            prevs,
            ptr,
            next,
            count,
        })
    }

    /// The largest label id referenced, if any.
    pub(crate) fn max_label(&self) -> Option<u32> {
        self.next.iter().copied().max()
    }

    /// Heap memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.prevs.memory_bytes() + self.ptr.nbytes() + self.next.nbytes() + self.count.nbytes()
    }

    /// The queries seen after `prev` (after none: the session starts, for ""), or `None`
    /// when `prev` was never followed: one lookup of `prev` for any number of questions.
    pub fn followers(&self, prev: &str) -> Option<Followers<'_>> {
        let row = if prev.is_empty() {
            self.prevs.len()
        } else {
            self.prevs.id(prev)? as usize
        };
        let (start, end) = (self.ptr[row] as usize, self.ptr[row + 1] as usize);
        Some(Followers {
            next: &self.next[start..end],
            count: &self.count[start..end],
        })
    }
}

/// The labels seen after one previous query, with their counts ([`Transitions::followers`]).
#[derive(Debug, Clone, Copy)]
pub struct Followers<'a> {
    /// Sorted.
    next: &'a [u32],
    count: &'a [f32],
}

impl Followers<'_> {
    /// How often `label` followed (0 if never).
    pub fn count(&self, label: u32) -> f32 {
        match self.next.binary_search(&label) {
            Ok(i) => self.count[i],
            Err(_) => 0.0,
        }
    }

    /// Appends to `out` the `n` most frequent labels in `lo..hi` (ties by label id), with
    /// their counts.
    pub fn top_in(&self, (lo, hi): (u32, u32), n: usize, out: &mut Vec<(u32, f32)>) {
        let a = self.next.partition_point(|&l| l < lo);
        let b = self.next.partition_point(|&l| l < hi);
        let from = out.len();
        out.extend((a..b).map(|i| (self.next[i], self.count[i])));
        let found = &mut out[from..];
        if found.len() > n {
            found.select_nth_unstable_by(n, |x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            out.truncate(from + n);
        }
    }
}

impl Persist for Transitions {
    const KIND: Kind = Kind::Transitions;

    /// Sections: the previous queries (a trie file), row pointers, labels, counts.
    fn writer(&self) -> Writer<'_> {
        let mut w = Writer::new(Kind::Transitions);
        w.file("prevs", self.prevs.writer())
            .array("ptr", &self.ptr)
            .array("next", &self.next)
            .array("count", &self.count);
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        Self::from_parts(
            r.nested("prevs")?,
            r.array("ptr")?,
            r.array("next")?,
            r.array("count")?,
        )
        .map_err(|e| Error::Format {
            what: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_rebuild_the_same_counts_and_add_up() {
        let pairs = [("a", 1), ("a", 1), ("", 2), ("b", 0), ("a", 3), ("", 2)];
        let t = Transitions::new(pairs.iter().copied()).unwrap();
        let again = Transitions::from_counts(t.entries()).unwrap();
        assert_eq!(again, t);
        let more =
            Transitions::from_counts(t.entries().chain([("a", 1, 2.5), ("c", 4, 1.0)])).unwrap();
        assert_eq!(count_of(&more, "a", 1), 4.5);
        assert_eq!(count_of(&more, "c", 4), 1.0);
        assert_eq!(count_of(&more, "", 2), 2.0);
        assert!(Transitions::from_counts([("a", 1, 0.0)].into_iter()).is_err());
    }

    #[test]
    fn counts_rows_and_ranges() {
        let t = Transitions::new(
            [
                ("a", 3),
                ("a", 1),
                ("a", 3),
                ("b", 2),
                ("", 0),
                ("", 0),
                ("", 5),
            ]
            .into_iter(),
        )
        .unwrap();
        let after = |prev: &str, range, n| after_in(&t, prev, range, n);
        assert_eq!(after("a", (0, 10), 10), [(1, 1.0), (3, 2.0)]);
        assert_eq!(after("a", (0, 10), 1), [(3, 2.0)]);
        assert_eq!(after("a", (2, 3), 10), []);
        assert_eq!(after("b", (0, 10), 10), [(2, 1.0)]);
        assert_eq!(after("", (0, 10), 10), [(0, 2.0), (5, 1.0)]);
        assert_eq!(after("zzz", (0, 10), 10), []);
        assert_eq!(count_of(&t, "a", 3), 2.0);
        assert_eq!(count_of(&t, "a", 2), 0.0);
        assert_eq!(count_of(&t, "", 5), 1.0);
        assert_eq!(count_of(&t, "zzz", 5), 0.0);
        assert_eq!(Transitions::from_bytes(&t.to_bytes()).unwrap(), t);
        let empty = Transitions::new(std::iter::empty()).unwrap();
        assert_eq!(after_in(&empty, "a", (0, u32::MAX), 10), []);
    }

    /// How often `label` followed `prev` (0 if never).
    fn count_of(t: &Transitions, prev: &str, label: u32) -> f32 {
        t.followers(prev).map_or(0.0, |f| f.count(label))
    }

    /// The `n` labels of `range` seen most after `prev` (none for a `prev` never followed).
    fn after_in(t: &Transitions, prev: &str, range: (u32, u32), n: usize) -> Vec<(u32, f32)> {
        let mut out = Vec::new();
        if let Some(f) = t.followers(prev) {
            f.top_in(range, n, &mut out);
        }
        out
    }
}
