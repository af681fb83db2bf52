//! Live counts beside the immutable model: searches recorded since the model was built, with
//! exponential time decay, consulted by `complete` as popularity and transitions.
//!
//! [`LiveCounts`] holds, for each query searched live, its decayed count, and for each previous
//! query, the decayed counts of the queries searched after it. Every count is stored as one
//! weight, its value at a reference time (`weight = sum of count * 2^((time - reference) /
//! half_life)`): adding a search is an addition (exact for whole counts without decay), the
//! decayed count at time `t` is `weight * 2^((reference - t) / half_life)`, and the order of
//! two queries by decayed count never changes with time, only when one is searched. So the
//! short prefixes' top lists stay exact without being touched as time passes, and eviction
//! drops the lowest weights. The reference moves forward (every weight scaled down) once the
//! clock is 256 half-lives past it, long before a weight could overflow.
//!
//! Concurrency: the tables are sharded, each shard behind its own read-write lock; a reader
//! takes one shard's read lock at a time (no lock covers the whole table), a recorder a few
//! shards' write locks in turn. Memory: at most `cap` queries and `cap` previous queries are
//! held; past that, the lowest counts are evicted (down to 90% of the cap, so that eviction is
//! amortised).
//!
//! Searches from strangers: a search may name its client ([`Search::client`], e.g. a hash of
//! the searcher's address, see [`client_id`]). Such a search adds at most one count to a query
//! per half-life per client (a repeat is *capped*: not counted), and a query's counts stay
//! invisible (not suggested, not a feature) until `min_clients` distinct clients searched it
//! (the floor): no single client can move what others see. A search without a client is
//! trusted (the site's own backend, the library's `record`): counted as given, and it admits
//! its query at once.

pub mod wal;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::text::normalize_query;

const SHARDS: usize = 64;
/// Prefixes up to this many characters have a kept top list; longer ones scan the queries that
/// share their first `SHORT` characters (all in one shard).
const SHORT: usize = 3;
/// Entries of a short prefix's top list, and of a previous query's followers.
const TOP: usize = 16;

/// How the overlay decays and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveParams {
    /// A count halves every `half_life` seconds (infinite: no decay).
    pub half_life: f64,
    /// Distinct queries (and distinct previous queries) held at most.
    pub cap: usize,
    /// Distinct clients that must have searched a query before its counts are seen (searches
    /// without a client count as enough).
    pub min_clients: u32,
}

/// The most `min_clients` may be (each client of a query below the floor is held).
pub const MAX_MIN_CLIENTS: u32 = 100;

impl Default for LiveParams {
    fn default() -> Self {
        LiveParams {
            half_life: 86_400.0,
            cap: 100_000,
            min_clients: 3,
        }
    }
}

impl LiveParams {
    /// Checks the options.
    pub fn check(&self) -> Result<()> {
        if self.half_life.is_nan() || self.half_life <= 0.0 {
            return Err(Error::InvalidInput(format!(
                "half_life must be a positive number of seconds (or infinite), got {}",
                self.half_life
            )));
        }
        if self.cap == 0 {
            return Err(Error::InvalidInput("cap must be at least 1".into()));
        }
        if !(1..=MAX_MIN_CLIENTS).contains(&self.min_clients) {
            return Err(Error::InvalidInput(format!(
                "min_clients must be from 1 to {MAX_MIN_CLIENTS}, got {}",
                self.min_clients
            )));
        }
        Ok(())
    }
}

/// One recorded search.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The query searched (normalised by the caller).
    pub query: String,
    /// The query searched before it in the session (`""`: none).
    pub prev: String,
    /// How many searches this stands for (> 0).
    pub count: f64,
    /// When, in seconds on any increasing scale (e.g. Unix time).
    pub time: f64,
    /// Who searched ([`client_id`]), for the per-client rules; `None`: trusted.
    pub client: Option<u64>,
}

/// The id of a client named `name` (an address, a user): FNV-1a, 64 bits, never 0. Stable
/// across versions and runs (the event log keeps it).
pub fn client_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// Which of `searches` are of queries past the floor: searched by at least `min_clients`
/// distinct clients, or by a trusted search (as [`LiveCounts`] sees them, decay aside). What
/// may be folded into a model or trained on: a query only one client searched must not become
/// one that everybody is offered.
pub fn past_the_floor(searches: &[Search], min_clients: u32) -> Vec<bool> {
    let mut clients: HashMap<&str, Option<Vec<u64>>> = HashMap::new();
    for s in searches {
        let entry = clients.entry(s.query.as_str()).or_insert(Some(Vec::new()));
        match (s.client, entry.as_mut()) {
            (None, _) => *entry = None,
            (Some(c), Some(who)) if !who.contains(&c) => {
                who.push(c);
                if who.len() >= min_clients as usize {
                    *entry = None;
                }
            }
            _ => {}
        }
    }
    searches
        .iter()
        .map(|s| clients[s.query.as_str()].is_none())
        .collect()
}

/// What [`LiveCounts::record`] did with a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted.
    Counted,
    /// Not counted: its client had counted the query less than a half-life before.
    Capped,
}

/// Why a search cannot be recorded (the same check for the library and the server).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BadSearch {
    /// The query is empty once normalised.
    EmptyQuery,
    /// A count that is not a positive finite number.
    Count(f64),
    /// A time that is not a finite number.
    Time(f64),
}

impl BadSearch {
    /// A short code for APIs: `empty_query`, `bad_count` or `bad_time`.
    pub fn code(self) -> &'static str {
        match self {
            BadSearch::EmptyQuery => "empty_query",
            BadSearch::Count(_) => "bad_count",
            BadSearch::Time(_) => "bad_time",
        }
    }
}

impl std::fmt::Display for BadSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadSearch::EmptyQuery => write!(f, "the query is empty once normalised"),
            BadSearch::Count(c) => write!(f, "count must be a positive number, got {c}"),
            BadSearch::Time(t) => write!(f, "time must be a finite number of seconds, got {t}"),
        }
    }
}

impl From<BadSearch> for Error {
    fn from(bad: BadSearch) -> Error {
        match bad {
            BadSearch::EmptyQuery => Error::EmptyString {
                what: "query",
                why: "an empty query cannot be recorded",
            },
            other => Error::InvalidInput(other.to_string()),
        }
    }
}

impl Search {
    /// A search of `query` after `prev` (both normalised here, as [`normalize_query`]), standing
    /// for `count` searches at `time`, by `client` ([`client_id`]; `None`: trusted), if it
    /// can be recorded.
    pub fn new(
        query: &str,
        prev: &str,
        count: f64,
        time: f64,
        client: Option<u64>,
    ) -> std::result::Result<Search, BadSearch> {
        let search = Search {
            query: normalize_query(query),
            prev: normalize_query(prev),
            count,
            time,
            client,
        };
        search.problem().map_or(Ok(search), Err)
    }

    /// What keeps it from being recorded, if anything: an empty query, a count that is not
    /// positive and finite, a time that is not finite.
    pub fn problem(&self) -> Option<BadSearch> {
        if self.query.is_empty() {
            Some(BadSearch::EmptyQuery)
        } else if !(self.count > 0.0 && self.count.is_finite()) {
            Some(BadSearch::Count(self.count))
        } else if !self.time.is_finite() {
            Some(BadSearch::Time(self.time))
        } else {
            None
        }
    }

    /// Checks that it can be recorded ([`Search::problem`]).
    pub fn check(&self) -> Result<()> {
        self.problem().map_or(Ok(()), |bad| Err(bad.into()))
    }
}

/// What the overlay holds, for reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveStats {
    /// Distinct queries held.
    pub queries: usize,
    /// Distinct previous queries held.
    pub prevs: usize,
    /// Searches recorded (calls), evicted ones included.
    pub events: u64,
    /// Queries evicted to stay under the cap.
    pub evicted: u64,
    /// Approximate heap bytes.
    pub memory_bytes: usize,
    /// Queries held below the floor (searched by fewer than `min_clients` clients).
    pub waiting: usize,
    /// Searches not counted since their client had counted the query within a half-life.
    pub capped: u64,
    /// The latest time recorded (counts are decayed to it).
    pub clock: f64,
}

/// Half-lives between the reference time and a search past which the reference moves.
const REBASE: f64 = 256.0;

/// A query's count, and who searched it while it is below the floor.
#[derive(Debug)]
struct Level {
    weight: f64,
    /// The distinct clients that searched it, while fewer than `min_clients`; empty once
    /// admitted (a level is made by its first search, so empty means admitted).
    waiting: Vec<u64>,
}

impl Level {
    fn admitted(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[derive(Debug, Default)]
struct QueryShard {
    /// Query -> count, ordered for prefix scans.
    levels: BTreeMap<Arc<str>, Level>,
}

/// Hash of (client, query) -> the time the client's search of the query was last counted.
type RecentShard = HashMap<u64, f64>;

/// Top lists of the short prefixes: prefix -> (weight, query), best first.
type ShortShard = HashMap<String, Vec<(f64, Arc<str>)>>;

/// Previous query -> (weight, query), best first, at most `TOP` followers each.
type AfterShard = HashMap<Arc<str>, Vec<(f64, Arc<str>)>>;

/// The first `n` characters of `s` (all of it when shorter).
fn head(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn shard_of(key: &str) -> usize {
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    (h.finish() % SHARDS as u64) as usize
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic while a shard was written leaves it consistent (each update is one insert).
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Inserts or raises `query` to weight `level` in a best-first list kept at `TOP` entries.
fn raise<K: PartialEq + Clone>(list: &mut Vec<(f64, K)>, query: &K, level: f64) {
    if let Some(i) = list.iter().position(|e| &e.1 == query) {
        // Weights only grow: a raise that lost a race to a later one must not lower it.
        list[i].0 = list[i].0.max(level);
    } else if list.len() < TOP || list.last().is_some_and(|e| e.0 < level) {
        list.push((level, query.clone()));
    } else {
        return;
    }
    list.sort_by(|a, b| b.0.total_cmp(&a.0));
    list.truncate(TOP);
}

/// Which weights an eviction keeps: all but the `drop` lowest (ties at the cut-off dropped in
/// the order they are asked about).
struct Cutoff {
    threshold: f64,
    drop: usize,
}

impl Cutoff {
    /// Keeps the `keep` highest of `weights`.
    fn new(mut weights: Vec<f64>, keep: usize) -> Self {
        let drop = weights.len().saturating_sub(keep);
        let threshold = match drop {
            0 => f64::NEG_INFINITY,
            _ => {
                *weights
                    .select_nth_unstable_by(drop - 1, |a, b| a.total_cmp(b))
                    .1
            }
        };
        Cutoff { threshold, drop }
    }

    fn keeps(&mut self, weight: f64) -> bool {
        if self.drop > 0 && weight <= self.threshold {
            self.drop -= 1;
            false
        } else {
            true
        }
    }
}

/// Searches recorded since a model was built, decayed. See the module documentation.
#[derive(Debug)]
pub struct LiveCounts {
    params: LiveParams,
    queries: Vec<RwLock<QueryShard>>,
    short: Vec<RwLock<ShortShard>>,
    after: Vec<RwLock<AfterShard>>,
    n_queries: AtomicUsize,
    n_prevs: AtomicUsize,
    events: AtomicU64,
    evicted: AtomicU64,
    /// Bits of the latest time recorded (f64; NEG_INFINITY before any).
    clock: AtomicU64,
    /// Bits of the reference time of the weights (f64; NaN before any search).
    reference: AtomicU64,
    /// One eviction at a time.
    evicting: Mutex<()>,
    /// When each (client, query) was last counted, for the one-count-per-half-life rule.
    recent: Vec<Mutex<RecentShard>>,
    n_waiting: AtomicUsize,
    capped: AtomicU64,
}

impl LiveCounts {
    /// An empty overlay.
    pub fn new(params: LiveParams) -> Result<Self> {
        params.check()?;
        let shards = |_| RwLock::default();
        Ok(LiveCounts {
            params,
            queries: (0..SHARDS).map(shards).collect(),
            short: (0..SHARDS).map(|_| RwLock::default()).collect(),
            after: (0..SHARDS).map(|_| RwLock::default()).collect(),
            n_queries: AtomicUsize::new(0),
            n_prevs: AtomicUsize::new(0),
            events: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            clock: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            reference: AtomicU64::new(f64::NAN.to_bits()),
            evicting: Mutex::new(()),
            recent: (0..SHARDS).map(|_| Mutex::default()).collect(),
            n_waiting: AtomicUsize::new(0),
            capped: AtomicU64::new(0),
        })
    }

    /// The options.
    pub fn params(&self) -> LiveParams {
        self.params
    }

    /// True when nothing was recorded (or everything was cleared).
    pub fn is_empty(&self) -> bool {
        self.n_queries.load(Ordering::Relaxed) == 0
    }

    fn clock(&self) -> f64 {
        f64::from_bits(self.clock.load(Ordering::Relaxed))
    }

    /// Half-lives from `from` to `to` (0 without decay).
    fn half_lives(&self, from: f64, to: f64) -> f64 {
        if self.params.half_life.is_infinite() {
            0.0
        } else {
            (to - from) / self.params.half_life
        }
    }

    fn reference(&self) -> f64 {
        f64::from_bits(self.reference.load(Ordering::Relaxed))
    }

    /// The decayed count of `weight` now (at the latest time recorded).
    fn value(&self, weight: f64) -> f64 {
        weight * (-self.half_lives(self.reference(), self.clock())).exp2()
    }

    /// Moves the reference time to `to`, scaling every weight down to match.
    fn rebase(&self, to: f64) {
        let _one = self
            .evicting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let from = self.reference();
        if self.half_lives(from, to).is_nan() || self.half_lives(from, to) <= REBASE {
            return; // another thread did it
        }
        let factor = (-self.half_lives(from, to)).exp2();
        for shard in &self.queries {
            write(shard)
                .levels
                .values_mut()
                .for_each(|l| l.weight *= factor);
        }
        for shard in &self.short {
            for list in write(shard).values_mut() {
                list.iter_mut().for_each(|e| e.0 *= factor);
            }
        }
        for shard in &self.after {
            for list in write(shard).values_mut() {
                list.iter_mut().for_each(|e| e.0 *= factor);
            }
        }
        self.reference.store(to.to_bits(), Ordering::Relaxed);
    }

    /// Records one search. The query must be non-empty, the count positive and finite, the
    /// time finite. A search with a client counts at most once (and at most 1) per half-life
    /// per (client, query): a repeat is [`Recorded::Capped`]. The same as [`LiveCounts::claim`]
    /// then [`LiveCounts::record_claimed`].
    pub fn record(&self, s: &Search) -> Result<Recorded> {
        s.check()?;
        let claimed = self.claim(s);
        if claimed == Recorded::Counted {
            self.count_search(s);
        }
        Ok(claimed)
    }

    /// Whether search `s` may be counted under the per-client rule, remembered as counted if
    /// so (a trusted search always may). A server claims its searches first, writes those that
    /// count to its event log, then records them with [`LiveCounts::record_claimed`].
    pub fn claim(&self, s: &Search) -> Recorded {
        match s.client {
            Some(client) if !self.first_in_half_life(client, &s.query, s.time) => {
                self.capped.fetch_add(1, Ordering::Relaxed);
                Recorded::Capped
            }
            _ => Recorded::Counted,
        }
    }

    /// Counts a search that was claimed ([`LiveCounts::claim`]).
    pub fn record_claimed(&self, s: &Search) -> Result<()> {
        s.check()?;
        self.count_search(s);
        Ok(())
    }

    /// Records a search counted before (e.g. replayed from the event log): as `record`, but
    /// the per-client cap, which it passed then, is only remembered (so that it holds across a
    /// restart), not applied.
    pub fn record_replayed(&self, s: &Search) -> Result<()> {
        s.check()?;
        if let Some(client) = s.client {
            let _ = self.first_in_half_life(client, &s.query, s.time);
        }
        self.count_search(s);
        Ok(())
    }

    /// True when `client` had not counted `query` within a half-life of `time`; it is then
    /// remembered as counted at `time`.
    fn first_in_half_life(&self, client: u64, query: &str, time: f64) -> bool {
        let mut h = rustc_hash::FxHasher::default();
        query.hash(&mut h);
        client.hash(&mut h);
        let key = h.finish();
        let half_life = self.params.half_life;
        let shard = &self.recent[(key % SHARDS as u64) as usize];
        let mut recent = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent
            .get(&key)
            .is_some_and(|&t| (time - t).abs() < half_life)
        {
            return false;
        }
        recent.insert(key, time);
        // Bounded: entries a half-life old can go; past the bound, the oldest half goes too.
        let bound = (self.params.cap * 4 / SHARDS).max(1024);
        if recent.len() > bound {
            recent.retain(|_, t| (time - *t).abs() < half_life);
            if recent.len() > bound / 2 {
                let mut times: Vec<f64> = recent.values().copied().collect();
                let mid = times.len() / 2;
                let cut = *times.select_nth_unstable_by(mid, f64::total_cmp).1;
                recent.retain(|_, t| *t > cut);
            }
        }
        true
    }

    /// Adds search `s` (checked) to the counts: its count, at most 1 from a client.
    fn count_search(&self, s: &Search) {
        let count = match s.client {
            Some(_) => s.count.min(1.0),
            None => s.count,
        };
        if self.reference().is_nan() {
            let _ = self.reference.compare_exchange(
                f64::NAN.to_bits(),
                s.time.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        if self.half_lives(self.reference(), s.time) > REBASE {
            self.rebase(s.time);
        }
        let add = count * self.half_lives(self.reference(), s.time).exp2();
        let min_clients = self.params.min_clients as usize;
        let key: Arc<str> = {
            let mut shard = write(&self.queries[shard_of(head(&s.query, SHORT))]);
            let (k, level, admitted) = match shard.levels.get_key_value(s.query.as_str()) {
                Some((k, _)) => {
                    let k = k.clone();
                    let level = shard.levels.get_mut(&k).expect("present");
                    level.weight += add;
                    let was_admitted = level.admitted();
                    if !was_admitted {
                        match s.client {
                            None => level.waiting = Vec::new(),
                            Some(c) if !level.waiting.contains(&c) => {
                                level.waiting.push(c);
                                if level.waiting.len() >= min_clients {
                                    level.waiting = Vec::new();
                                }
                            }
                            Some(_) => {}
                        }
                        if level.admitted() {
                            self.n_waiting.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    (k, level.weight, level.admitted())
                }
                None => {
                    let k: Arc<str> = Arc::from(s.query.as_str());
                    let waiting = match s.client {
                        Some(c) if min_clients > 1 => vec![c],
                        _ => Vec::new(),
                    };
                    let admitted = waiting.is_empty();
                    shard.levels.insert(
                        k.clone(),
                        Level {
                            weight: add,
                            waiting,
                        },
                    );
                    self.n_queries.fetch_add(1, Ordering::Relaxed);
                    if !admitted {
                        self.n_waiting.fetch_add(1, Ordering::Relaxed);
                    }
                    (k, add, admitted)
                }
            };
            drop(shard);
            if admitted {
                self.raise_short(&k, level);
            }
            k
        };
        if !s.prev.is_empty() {
            let mut after = write(&self.after[shard_of(&s.prev)]);
            let followers = match after.get_mut(s.prev.as_str()) {
                Some(f) => f,
                None => {
                    self.n_prevs.fetch_add(1, Ordering::Relaxed);
                    after.entry(Arc::from(s.prev.as_str())).or_default()
                }
            };
            let weight = followers.iter().find(|e| e.1 == key).map_or(0.0, |e| e.0) + add;
            raise(followers, &key, weight);
        }
        self.events.fetch_add(1, Ordering::Relaxed);
        let mut clock = self.clock.load(Ordering::Relaxed);
        while f64::from_bits(clock) < s.time {
            match self.clock.compare_exchange_weak(
                clock,
                s.time.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => clock = now,
            }
        }
        if self.n_queries.load(Ordering::Relaxed) > self.params.cap
            || self.n_prevs.load(Ordering::Relaxed) > self.params.cap
        {
            self.evict();
        }
    }

    /// True when `query` is held and past the floor.
    fn visible(&self, query: &str) -> bool {
        let shard = read(&self.queries[shard_of(head(query, SHORT))]);
        shard.levels.get(query).is_some_and(Level::admitted)
    }

    fn raise_short(&self, query: &Arc<str>, level: f64) {
        let mut end = 0;
        let mut chars = query.char_indices();
        for n in 0..=SHORT {
            if n > 0 {
                match chars.next() {
                    Some((i, c)) => end = i + c.len_utf8(),
                    None => break,
                }
            }
            let prefix = &query[..end];
            let mut shard = write(&self.short[shard_of(prefix)]);
            match shard.get_mut(prefix) {
                Some(list) => raise(list, query, level),
                None => {
                    shard.insert(prefix.to_owned(), vec![(level, query.clone())]);
                }
            }
        }
    }

    /// Drops the lowest queries and previous queries down to 90% of the cap, then rebuilds the
    /// short prefixes' lists.
    fn evict(&self) {
        let Ok(_one) = self.evicting.try_lock() else {
            return; // another thread is evicting
        };
        let target = self.params.cap - self.params.cap / 10;
        if self.n_queries.load(Ordering::Relaxed) > self.params.cap {
            let weights = self
                .queries
                .iter()
                .flat_map(|s| {
                    read(s)
                        .levels
                        .values()
                        .map(|l| l.weight)
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut keep = Cutoff::new(weights, target);
            for shard in &self.queries {
                let mut shard = write(shard);
                let before = shard.levels.len();
                let mut waiting_gone = 0;
                shard.levels.retain(|_, l| {
                    let kept = keep.keeps(l.weight);
                    waiting_gone += usize::from(!kept && !l.admitted());
                    kept
                });
                self.n_waiting.fetch_sub(waiting_gone, Ordering::Relaxed);
                let gone = before - shard.levels.len();
                self.n_queries.fetch_sub(gone, Ordering::Relaxed);
                self.evicted.fetch_add(gone as u64, Ordering::Relaxed);
            }
            for shard in &self.short {
                write(shard).clear();
            }
            for shard in &self.queries {
                let entries: Vec<(Arc<str>, f64)> = read(shard)
                    .levels
                    .iter()
                    .filter(|(_, l)| l.admitted())
                    .map(|(k, l)| (k.clone(), l.weight))
                    .collect();
                for (k, w) in entries {
                    self.raise_short(&k, w);
                }
            }
        }
        if self.n_prevs.load(Ordering::Relaxed) > self.params.cap {
            // A previous query weighs what its heaviest follower does.
            let heaviest = |f: &Vec<(f64, Arc<str>)>| f.first().map_or(f64::NEG_INFINITY, |e| e.0);
            let weights = self
                .after
                .iter()
                .flat_map(|s| read(s).values().map(heaviest).collect::<Vec<_>>())
                .collect();
            let mut keep = Cutoff::new(weights, target);
            for shard in &self.after {
                let mut shard = write(shard);
                let before = shard.len();
                shard.retain(|_, f| keep.keeps(heaviest(f)));
                self.n_prevs
                    .fetch_sub(before - shard.len(), Ordering::Relaxed);
            }
        }
    }

    /// The decayed count of `query` (0 when not held, or below the floor).
    pub fn count(&self, query: &str) -> f64 {
        let shard = read(&self.queries[shard_of(head(query, SHORT))]);
        shard
            .levels
            .get(query)
            .filter(|l| l.admitted())
            .map_or(0.0, |l| self.value(l.weight))
    }

    /// The decayed count of `query` searched right after `prev` (0 when not held, or when
    /// `query` is below the floor).
    pub fn transition(&self, prev: &str, query: &str) -> f64 {
        if prev.is_empty() {
            return 0.0;
        }
        let weight = {
            let after = read(&self.after[shard_of(prev)]);
            after
                .get(prev)
                .and_then(|f| f.iter().find(|e| &*e.1 == query))
                .map(|e| e.0)
        };
        match weight {
            Some(w) if self.visible(query) => self.value(w),
            _ => 0.0,
        }
    }

    /// Appends the `k` queries starting with `prefix` of highest decayed count to `out`, as
    /// (query, count), best first.
    pub fn top(&self, prefix: &str, k: usize, out: &mut Vec<(String, f64)>) {
        if k == 0 || self.is_empty() {
            return;
        }
        if prefix.chars().count() <= SHORT {
            let shard = read(&self.short[shard_of(prefix)]);
            if let Some(list) = shard.get(prefix) {
                out.extend(
                    list.iter()
                        .take(k)
                        .map(|(l, q)| (q.to_string(), self.value(*l))),
                );
            }
            return;
        }
        let shard = read(&self.queries[shard_of(head(prefix, SHORT))]);
        let mut found: Vec<(f64, &Arc<str>)> = shard
            .levels
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(q, _)| q.starts_with(prefix))
            .filter(|(_, l)| l.admitted())
            .map(|(q, l)| (l.weight, q))
            .collect();
        found.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        out.extend(
            found
                .into_iter()
                .take(k)
                .map(|(l, q)| (q.to_string(), self.value(l))),
        );
    }

    /// Appends the queries searched after `prev` that start with `prefix` to `out`, as
    /// (query, decayed count), best first (at most 16 are kept per previous query; those below
    /// the floor are left out).
    pub fn after(&self, prev: &str, prefix: &str, out: &mut Vec<(String, f64)>) {
        if prev.is_empty() {
            return;
        }
        let start = out.len();
        {
            let after = read(&self.after[shard_of(prev)]);
            if let Some(f) = after.get(prev) {
                out.extend(
                    f.iter()
                        .filter(|e| e.1.starts_with(prefix))
                        .map(|e| (e.1.to_string(), self.value(e.0))),
                );
            }
        }
        // Looked up once the followers' lock is let go (one lock at a time).
        let mut i = start;
        while i < out.len() {
            if self.visible(&out[i].0) {
                i += 1;
            } else {
                out.remove(i);
            }
        }
    }

    /// Forgets everything recorded (e.g. once folded into a new model).
    pub fn clear(&self) {
        for s in &self.queries {
            write(s).levels.clear();
        }
        for s in &self.short {
            write(s).clear();
        }
        for s in &self.after {
            write(s).clear();
        }
        for s in &self.recent {
            s.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
        self.n_queries.store(0, Ordering::Relaxed);
        self.n_prevs.store(0, Ordering::Relaxed);
        self.n_waiting.store(0, Ordering::Relaxed);
    }

    /// What the overlay holds.
    pub fn stats(&self) -> LiveStats {
        let mut bytes = 0usize;
        for s in &self.queries {
            // Per entry: the key's heap copy and Arc header, the tree's slot.
            bytes += read(s)
                .levels
                .iter()
                .map(|(k, l)| k.len() + 16 + 64 + l.waiting.capacity() * 8)
                .sum::<usize>();
        }
        for s in &self.short {
            bytes += read(s)
                .iter()
                .map(|(p, l)| p.len() + 48 + l.capacity() * 24)
                .sum::<usize>();
        }
        for s in &self.after {
            bytes += read(s)
                .iter()
                .map(|(p, f)| p.len() + 16 + 48 + f.capacity() * 24)
                .sum::<usize>();
        }
        for s in &self.recent {
            let recent = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            bytes += recent.capacity() * 17;
        }
        LiveStats {
            queries: self.n_queries.load(Ordering::Relaxed),
            prevs: self.n_prevs.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            memory_bytes: bytes,
            waiting: self.n_waiting.load(Ordering::Relaxed),
            capped: self.capped.load(Ordering::Relaxed),
            clock: self.clock(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_search_is_made_only_when_it_can_be_recorded(
            query in "[ aB\t]{0,6}", count in prop_oneof![any::<f64>(), Just(1.0)],
            time in prop_oneof![any::<f64>(), Just(0.0)],
        ) {
            let normalised = normalize_query(&query);
            match Search::new(&query, " Prev ", count, time, Some(7)) {
                Ok(s) => {
                    prop_assert_eq!(&s.query, &normalised);
                    prop_assert_eq!(s.prev.as_str(), "prev");
                    prop_assert!(s.check().is_ok());
                }
                Err(BadSearch::EmptyQuery) => prop_assert!(normalised.is_empty()),
                Err(BadSearch::Count(c)) => {
                    prop_assert!(!(normalised.is_empty() || c > 0.0 && c.is_finite()))
                }
                Err(BadSearch::Time(t)) => {
                    prop_assert!(!normalised.is_empty() && count > 0.0 && !t.is_finite())
                }
            }
        }
    }

    fn search(query: &str, prev: &str, count: f64, time: f64) -> Search {
        Search {
            query: query.into(),
            prev: prev.into(),
            count,
            time,
            client: None,
        }
    }

    fn from(client: &str, query: &str, prev: &str, time: f64) -> Search {
        Search {
            client: Some(client_id(client)),
            ..search(query, prev, 1.0, time)
        }
    }

    fn no_decay(cap: usize) -> LiveCounts {
        LiveCounts::new(LiveParams {
            half_life: f64::INFINITY,
            cap,
            ..LiveParams::default()
        })
        .unwrap()
    }

    fn tops(live: &LiveCounts, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        live.top(prefix, 16, &mut out);
        out.into_iter().map(|e| e.0).collect()
    }

    #[test]
    fn a_query_is_seen_once_enough_clients_searched_it() {
        let live = LiveCounts::new(LiveParams {
            half_life: 100.0,
            ..LiveParams::default()
        })
        .unwrap();
        for (i, client) in ["203.0.113.1", "203.0.113.2"].iter().enumerate() {
            let s = from(client, "evil example", "walmart", i as f64);
            assert_eq!(live.record(&s).unwrap(), Recorded::Counted);
            assert_eq!(live.count("evil example"), 0.0);
            assert_eq!(live.transition("walmart", "evil example"), 0.0);
            assert!(tops(&live, "e").is_empty() && tops(&live, "evil ex").is_empty());
            let mut after = Vec::new();
            live.after("walmart", "", &mut after);
            assert!(after.is_empty());
        }
        assert_eq!(live.stats().waiting, 1);
        // The same two again: capped, still below the floor.
        for client in ["203.0.113.1", "203.0.113.2"] {
            let s = from(client, "evil example", "", 50.0);
            assert_eq!(live.record(&s).unwrap(), Recorded::Capped);
        }
        assert_eq!(live.count("evil example"), 0.0);
        assert_eq!(live.stats().capped, 2);
        // A third client: admitted with every count it had.
        live.record(&from("203.0.113.3", "evil example", "walmart", 60.0))
            .unwrap();
        assert_eq!(live.stats().waiting, 0);
        assert!(live.count("evil example") > 2.0);
        assert!(live.transition("walmart", "evil example") > 2.0);
        assert_eq!(tops(&live, "e"), ["evil example"]);
        assert_eq!(tops(&live, "evil ex"), ["evil example"]);
        // A half-life later the first client counts again.
        let again = from("203.0.113.1", "evil example", "", 160.0);
        assert_eq!(live.record(&again).unwrap(), Recorded::Counted);
        // A trusted search admits its query at once, with its whole count.
        live.record(&search("trusted", "", 5.0, 160.0)).unwrap();
        assert_eq!(live.count("trusted"), 5.0);
        // A client's count is at most 1.
        let mut big = from("203.0.113.9", "big", "", 160.0);
        big.count = 1e6;
        live.record(&big).unwrap();
        live.record(&search("big", "", 1.0, 160.0)).unwrap();
        assert_eq!(live.count("big"), 2.0);
    }

    #[test]
    fn past_the_floor_is_what_the_counts_show() {
        let all = [
            from("a", "x", "", 0.0),
            from("b", "x", "", 1.0),
            from("a", "y", "", 2.0),
            search("z", "", 1.0, 3.0),
            from("c", "x", "", 4.0),
        ];
        assert_eq!(past_the_floor(&all, 3), [true, true, false, true, true]);
        assert_eq!(past_the_floor(&all, 1), [true; 5]);
    }

    #[test]
    fn replayed_searches_keep_the_floor_and_the_cap() {
        let live = no_decay(100);
        let s = from("a", "q", "", 0.0);
        live.record_replayed(&s).unwrap();
        assert_eq!(live.count("q"), 0.0);
        assert_eq!(live.record(&s).unwrap(), Recorded::Capped);
        live.record_replayed(&from("b", "q", "", 0.0)).unwrap();
        live.record_replayed(&from("c", "q", "", 0.0)).unwrap();
        assert_eq!(live.count("q"), 3.0);
        assert!(LiveCounts::new(LiveParams {
            min_clients: 0,
            ..LiveParams::default()
        })
        .is_err());
        assert_eq!(client_id(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(client_id("203.0.113.1"), client_id("203.0.113.2"));
    }

    #[test]
    fn counts_decay_by_half_every_half_life() {
        let live = LiveCounts::new(LiveParams {
            half_life: 100.0,
            cap: 10,
            ..LiveParams::default()
        })
        .unwrap();
        live.record(&search("iphone", "", 8.0, 1_000.0)).unwrap();
        assert!((live.count("iphone") - 8.0).abs() < 1e-9);
        // Another search 200 s later: the first 8 have halved twice.
        live.record(&search("other", "", 1.0, 1_200.0)).unwrap();
        assert!((live.count("iphone") - 2.0).abs() < 1e-9);
        live.record(&search("iphone", "apple", 1.0, 1_200.0))
            .unwrap();
        assert!((live.count("iphone") - 3.0).abs() < 1e-9);
        assert!((live.transition("apple", "iphone") - 1.0).abs() < 1e-9);
        assert_eq!(live.transition("", "iphone"), 0.0);
        // A late event (before the clock) counts as decayed to the clock.
        live.record(&search("late", "", 4.0, 1_100.0)).unwrap();
        assert!((live.count("late") - 2.0).abs() < 1e-9);
        // Unix-time scale levels stay finite.
        live.record(&search("now", "", 1.0, 1.8e9)).unwrap();
        assert!((live.count("now") - 1.0).abs() < 1e-9);
        assert!(live.count("iphone") < 1e-300);
    }

    #[test]
    fn bad_searches_are_errors() {
        let live = no_decay(10);
        assert!(live.record(&search("", "", 1.0, 0.0)).is_err());
        for count in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(live.record(&search("q", "", count, 0.0)).is_err());
        }
        assert!(live.record(&search("q", "", 1.0, f64::NAN)).is_err());
        assert!(LiveCounts::new(LiveParams {
            half_life: 0.0,
            cap: 1,
            ..LiveParams::default()
        })
        .is_err());
        assert!(LiveCounts::new(LiveParams {
            half_life: 1.0,
            cap: 0,
            ..LiveParams::default()
        })
        .is_err());
        assert_eq!(live.stats().events, 0);
    }

    /// The top `k` of `prefix` by brute force over the model's counts.
    fn brute(model: &HashMap<String, f64>, prefix: &str, k: usize) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = model
            .iter()
            .filter(|(q, _)| q.starts_with(prefix))
            .map(|(q, &c)| (q.clone(), c))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(k);
        v
    }

    proptest! {
        /// Without decay, a query's count is its number of distinct clients (each counts once),
        /// seen only from `min_clients` of them on; no list shows a query below the floor.
        #[test]
        fn clients_count_once_and_the_floor_hides_the_rest(
            searches in prop::collection::vec((0u8..5, "[ab]{1,3}", prop::option::of("[ab]{1,2}")), 1..80),
            min_clients in 1u32..5,
        ) {
            let live = LiveCounts::new(LiveParams {
                half_life: f64::INFINITY,
                cap: 1000,
                min_clients,
            }).unwrap();
            let mut clients: HashMap<String, std::collections::HashSet<u8>> = HashMap::new();
            for (i, (c, q, prev)) in searches.iter().enumerate() {
                let prev = prev.clone().unwrap_or_default();
                let first = clients.entry(q.clone()).or_default().insert(*c);
                let got = live.record(&from(&format!("client {c}"), q, &prev, i as f64)).unwrap();
                prop_assert_eq!(got == Recorded::Counted, first);
            }
            let mut waiting = 0;
            for (q, who) in &clients {
                let n = who.len();
                let seen = n >= min_clients as usize;
                waiting += usize::from(!seen);
                prop_assert_eq!(live.count(q), if seen { n as f64 } else { 0.0 });
            }
            prop_assert_eq!(live.stats().waiting, waiting);
            for prefix in ["", "a", "b", "ab", "aba", "abab"] {
                for q in tops(&live, prefix) {
                    prop_assert!(clients[&q].len() >= min_clients as usize);
                }
                for prev in ["a", "b", "ab", "ba"] {
                    let mut after = Vec::new();
                    live.after(prev, prefix, &mut after);
                    for (q, _) in after {
                        prop_assert!(clients[&q].len() >= min_clients as usize);
                    }
                }
            }
        }

        /// Without decay and under the cap, counts, top lists and transitions are exact.
        #[test]
        fn counts_and_tops_equal_brute_force(
            searches in prop::collection::vec(
                ("[ab]{1,3}", prop::option::of("[ab]{1,2}"), 1u8..4), 1..60),
            prefixes in prop::collection::vec("[ab]{0,5}", 1..10),
        ) {
            let live = no_decay(1000);
            let mut model: HashMap<String, f64> = HashMap::new();
            let mut trans: HashMap<(String, String), f64> = HashMap::new();
            for (q, prev, c) in &searches {
                let prev = prev.clone().unwrap_or_default();
                live.record(&search(q, &prev, f64::from(*c), 0.0)).unwrap();
                *model.entry(q.clone()).or_default() += f64::from(*c);
                if !prev.is_empty() {
                    *trans.entry((prev, q.clone())).or_default() += f64::from(*c);
                }
            }
            for (q, c) in &model {
                prop_assert!((live.count(q) - c).abs() < 1e-9 * c);
            }
            for ((p, q), c) in &trans {
                // At most 16 followers are kept; here there are at most 14 distinct queries.
                prop_assert!((live.transition(p, q) - c).abs() < 1e-9 * c);
            }
            for prefix in &prefixes {
                let mut got = Vec::new();
                live.top(prefix, 5, &mut got);
                let want = brute(&model, prefix, 5);
                // Same counts in the same order (ties may list different queries).
                let counts = |v: &[(String, f64)]| v.iter().map(|e| (e.1 * 1e6).round()).collect::<Vec<_>>();
                prop_assert_eq!(counts(&got), counts(&want));
                for (q, _) in &got {
                    prop_assert!(q.starts_with(prefix.as_str()));
                }
            }
            let stats = live.stats();
            prop_assert_eq!(stats.queries, model.len());
            prop_assert_eq!(stats.events, searches.len() as u64);
        }

        /// With 10x more distinct queries than the cap, the cap holds after every search, and
        /// the heaviest queries survive.
        #[test]
        fn the_cap_holds_and_keeps_the_heaviest(seed in 0u64..1000) {
            let cap = 50;
            let live = no_decay(cap);
            let mut rng = crate::rng::SplitMix64(seed);
            for i in 0..cap * 10 {
                let q = format!("q{}", rng.below(100_000));
                live.record(&search(&q, "p", 1.0, i as f64)).unwrap();
                prop_assert!(live.stats().queries <= cap);
            }
            live.record(&search("heavy", "", 1000.0, 0.0)).unwrap();
            for i in 0..cap * 3 {
                live.record(&search(&format!("x{i}"), "", 1.0, 0.0)).unwrap();
            }
            prop_assert!(live.count("heavy") == 1000.0);
            let mut top = Vec::new();
            live.top("h", 1, &mut top);
            prop_assert_eq!(&top[0].0, "heavy");
            prop_assert!(live.stats().evicted > 0);
        }
    }

    #[test]
    fn eight_recorders_and_eight_readers_end_with_exact_counts() {
        let live = Arc::new(no_decay(100_000));
        let words = [
            "apple", "apricot", "banana", "berry", "cherry", "ch", "a", "appl",
        ];
        std::thread::scope(|scope| {
            for t in 0..8 {
                let live = live.clone();
                scope.spawn(move || {
                    for i in 0..5_000 {
                        let q = words[(i + t) % words.len()];
                        live.record(&search(q, words[t], 1.0, i as f64)).unwrap();
                    }
                });
            }
            for t in 0..8 {
                let live = live.clone();
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for i in 0..5_000 {
                        out.clear();
                        let prefix = &words[(i + t) % words.len()][..1];
                        live.top(prefix, 4, &mut out);
                        assert!(out.len() <= 4);
                        assert!(out.iter().all(|(q, c)| q.starts_with(prefix) && *c > 0.0));
                        assert!(out.windows(2).all(|w| w[0].1 >= w[1].1));
                        live.after(words[t], "a", &mut out);
                    }
                });
            }
        });
        // 40,000 searches, each word (8 of them) 5,000 times.
        for w in words {
            assert_eq!(live.count(w), 5_000.0, "{w}");
        }
        assert_eq!(live.stats().events, 40_000);
    }
}
