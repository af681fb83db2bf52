//! The last searches of each session, so that `session=<id>` can stand for `prev`: the session's
//! searches, oldest first, the last its previous query.
//!
//! A session ends after `ttl` without a search (the 30-minute gap that splits sessions in the
//! training log), and at most `cap` sessions are held: past it the least recently searching one
//! is forgotten. Each keeps its last `keep` searches (a query searched again right away counts
//! once, as in the training log's pairs). Reads do not refresh a session; only searches do, so
//! the table's least-recently-used order is its time order and expired sessions sit at its tail.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

#[derive(Debug)]
struct Session {
    /// Its last searches, oldest first (never empty).
    history: VecDeque<String>,
    searched_at: Instant,
}

/// A bounded table of sessions (not thread-safe by itself: the server holds it in a mutex).
#[derive(Debug)]
pub struct Sessions {
    table: LruCache<String, Session>,
    ttl: Duration,
    keep: NonZeroUsize,
}

impl Sessions {
    /// An empty table holding at most `cap` sessions, each for `ttl` after its last search,
    /// with its last `keep` searches.
    pub fn new(cap: NonZeroUsize, ttl: Duration, keep: NonZeroUsize) -> Self {
        Sessions {
            table: LruCache::new(cap),
            ttl,
            keep,
        }
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.searched_at) >= self.ttl
    }

    /// The searches of `id` still held, oldest first (the last is its previous query), unless
    /// the session is unknown or expired (then `None`, and an expired session is dropped).
    pub fn history(&mut self, id: &str, now: Instant) -> Option<Vec<String>> {
        let s = self.table.peek(id)?;
        if self.expired(s, now) {
            self.table.pop(id);
            return None;
        }
        Some(s.history.iter().cloned().collect())
    }

    /// The last query `id` searched, unless the session is unknown or expired (then `None`,
    /// and an expired session is dropped).
    pub fn prev(&mut self, id: &str, now: Instant) -> Option<String> {
        self.history(id, now).and_then(|mut h| h.pop())
    }

    /// Records that session `id` searched `query` at `now`.
    pub fn record(&mut self, id: &str, query: String, now: Instant) {
        let keep = self.keep.get();
        let expired = self.table.peek(id).is_some_and(|s| self.expired(s, now));
        if expired {
            self.table.pop(id);
        }
        if let Some(s) = self.table.get_mut(id) {
            if s.history.back() != Some(&query) {
                s.history.push_back(query);
            }
            while s.history.len() > keep {
                s.history.pop_front();
            }
            s.searched_at = now;
        } else {
            self.table.put(
                id.to_owned(),
                Session {
                    history: VecDeque::from([query]),
                    searched_at: now,
                },
            );
        }
    }

    /// Drops every expired session; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some((_, s)) = self.table.peek_lru() {
            if !self.expired(s, now) {
                break;
            }
            self.table.pop_lru();
            dropped += 1;
        }
        dropped
    }

    /// Sessions held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(cap: usize, ttl_s: u64) -> Sessions {
        Sessions::new(
            NonZeroUsize::new(cap).unwrap(),
            Duration::from_secs(ttl_s),
            NonZeroUsize::new(3).unwrap(),
        )
    }

    #[test]
    fn a_session_remembers_its_last_search_until_it_expires() {
        let t0 = Instant::now();
        let mut s = table(10, 1800);
        assert_eq!(s.prev("a", t0), None);
        s.record("a", "cheap flights".into(), t0);
        s.record(
            "a",
            "cheap flights to denver".into(),
            t0 + Duration::from_secs(60),
        );
        let later = t0 + Duration::from_secs(60 + 1799);
        assert_eq!(
            s.prev("a", later).as_deref(),
            Some("cheap flights to denver")
        );
        // Reading does not keep it alive: 30 minutes after the last search it is gone.
        assert_eq!(s.prev("a", t0 + Duration::from_secs(60 + 1800)), None);
        assert!(s.is_empty());
    }

    #[test]
    fn a_session_keeps_its_last_searches_in_order() {
        let t0 = Instant::now();
        let mut s = table(10, 1800);
        for q in ["a", "b", "b", "c", "d"] {
            s.record("x", q.into(), t0);
        }
        // Three kept, oldest first; a search repeated right away counts once.
        assert_eq!(s.history("x", t0).unwrap(), ["b", "c", "d"]);
        assert_eq!(s.prev("x", t0).as_deref(), Some("d"));
        // A search after the session expired begins a new one.
        let later = t0 + Duration::from_secs(1800);
        s.record("x", "e".into(), later);
        assert_eq!(s.history("x", later).unwrap(), ["e"]);
    }

    #[test]
    fn past_the_cap_the_least_recent_searcher_is_forgotten() {
        let t0 = Instant::now();
        let mut s = table(2, 1800);
        s.record("a", "x".into(), t0);
        s.record("b", "y".into(), t0);
        s.record("a", "x2".into(), t0);
        s.record("c", "z".into(), t0);
        assert_eq!(s.len(), 2);
        assert_eq!(s.prev("b", t0), None);
        assert_eq!(s.prev("a", t0).as_deref(), Some("x2"));
        assert_eq!(s.prev("c", t0).as_deref(), Some("z"));
    }

    #[test]
    fn sweep_drops_exactly_the_expired() {
        let t0 = Instant::now();
        let mut s = table(10, 100);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            s.record(id, "q".into(), t0 + Duration::from_secs(10 * i as u64));
        }
        assert_eq!(s.sweep(t0 + Duration::from_secs(110)), 2);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.prev("c", t0 + Duration::from_secs(110)).as_deref(),
            Some("q")
        );
    }

    proptest! {
        /// Against a model: a map of id -> (query, time) with the same rules.
        #[test]
        fn behaves_like_a_bounded_map_with_expiry(
            ops in prop::collection::vec((0u8..6, 0u8..4, 0u64..30, any::<bool>()), 1..80),
            cap in 1usize..5,
        ) {
            let t0 = Instant::now();
            let ttl = 20;
            let mut s = table(cap, ttl);
            // (id, query, time) in order of last search, most recent last.
            let mut model: Vec<(u8, u8, u64)> = Vec::new();
            let mut now = 0u64;
            for (id, q, step, is_search) in ops {
                now += step;
                let at = t0 + Duration::from_secs(now);
                let key = id.to_string();
                if is_search {
                    s.record(&key, q.to_string(), at);
                    model.retain(|e| e.0 != id);
                    model.push((id, q, now));
                    if model.len() > cap {
                        model.remove(0);
                    }
                } else {
                    let want = model
                        .iter()
                        .find(|e| e.0 == id && now - e.2 < ttl)
                        .map(|e| e.1.to_string());
                    prop_assert_eq!(s.prev(&key, at), want);
                    model.retain(|e| !(e.0 == id && now - e.2 >= ttl));
                }
                prop_assert!(s.len() <= cap);
            }
        }
    }
}
