//! A word-level language model of queries, and the beam search that composes queries from it.
//!
//! Most of what people type next was never searched whole before, but is made of words (and
//! word sequences) that were. [`QueryLm`] is a trigram model over the words of the log's queries
//! with `<s>` / `</s>` around each query, smoothed by interpolated absolute discounting with
//! Kneser-Ney continuation counts for single words (Chen & Goodman 1998):
//!
//! ```text
//! P(w | a b) = max(c(a b w) - D, 0) / c(a b) + D n(a b) / c(a b) * P(w | b)
//! P(w | b)   = max(k(b w) - D, 0) / k(b)     + D n(b) / k(b)     * P1(w)
//! P1(w)      = (distinct words seen right before w) / (distinct word pairs)
//! ```
//!
//! where `c` counts searches, `k(b w)` is how many distinct words (or the start of a query)
//! were seen right before `b w` (the searches of `<s> w`, which has none), `k(b)` the sum of
//! `k(b ·)`, and `n(h)` how many distinct words follow `h`. A context never seen backs off whole.
//! The previous query of the session is a cache (Kuhn & De Mori 1990): its words get a share
//! `copy` of every next-word distribution, so a reformulation ("cheap flights" -> "cheap flights
//! to denver") is reachable even where the log never saw it.
//!
//! [`QueryLm::compose`] completes a typed prefix: its partial last word is completed to a known
//! word, then likely next words follow until `</s>`, by beam search; every composition starts
//! with the prefix. [`QueryLm::score`] gives any completion of the prefix the same log
//! probability, so seen and composed candidates are compared on one scale.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::persist::{Array, Fields, Kind, Persist, Reader, Writer};
use crate::text::{is_py_space, HashSlots};
use crate::trie::osa;
use crate::Trie;

use super::shape::CharShape;
use super::words::split_last_word;

/// The copy, earlier-copy and run-following shares together stay below this: the model's own
/// distribution always keeps a part.
const RUN_SHARE_MAX: f32 = 0.95;

/// The share of the next-word choice given to the words of the searches before the previous
/// query, as a part of the previous query's (`copy`): a separate share, so that they do not
/// thin the previous query's out (one shared share lost 0.002 MRR per pair on the aol_valid
/// pairs that copy from the previous query).
const EARLIER_COPY: f32 = 0.5;

/// Session words (see [`LmScratch`]) kept per previous query, at most.
const MAX_SESSION_WORDS: usize = 16;

/// Log probability given to a word the model does not know.
const UNKNOWN_LOGP: f32 = -30.0;

/// How [`QueryLm::compose`] searches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComposeParams {
    /// Hypotheses kept per step.
    pub beam: usize,
    /// Words added after the completed partial word, at most.
    pub max_words: usize,
    /// Share of each next-word distribution given to the previous query's words, in [0, 1).
    pub copy: f32,
    /// Share given to the word that follows the last one in the previous query, when that
    /// word is known and not yet in the query: copying goes on along the previous query's
    /// words ("part time job" after "swim lessons in humble tx" -> "part time jobs in humble
    /// tx"). `copy + follow` is below 1. A hypothesis continuing such a run may grow past
    /// `max_words`, up to [`MAX_COMPOSED_WORDS`].
    pub follow: f32,
}

impl Default for ComposeParams {
    fn default() -> Self {
        ComposeParams {
            beam: 6,
            max_words: 2,
            copy: 0.2,
            follow: 0.0,
        }
    }
}

impl ComposeParams {
    /// Checks every option.
    pub fn check(&self) -> Result<()> {
        if self.beam == 0 {
            return Err(Error::InvalidInput(
                "compose_beam must be >= 1, got 0".into(),
            ));
        }
        if self.max_words >= MAX_COMPOSED_WORDS {
            return Err(Error::InvalidInput(format!(
                "compose_words must be below {MAX_COMPOSED_WORDS}, got {}",
                self.max_words
            )));
        }
        if !(self.copy.is_finite() && (0.0..1.0).contains(&self.copy)) {
            return Err(Error::InvalidInput(format!(
                "copy must be in [0, 1), got {}",
                self.copy
            )));
        }
        let shares_ok = self.follow.is_finite() && self.follow >= 0.0;
        if !(shares_ok && self.copy + self.follow < 1.0) {
            return Err(Error::InvalidInput(format!(
                "follow must be >= 0 with copy + follow below 1, got {} and {}",
                self.follow, self.copy
            )));
        }
        Ok(())
    }
}

/// The n-grams of one order: per context (sorted keys), a row of (next token, count) sorted by
/// token, and the same row's positions by count (largest first) for unrestricted expansion.
/// A context's first token indexes `starts`, so finding a row is one array read and a search
/// among the contexts of that token (a binary search over all of them costs a cache miss per
/// step, and a completion looks up hundreds of rows).
#[derive(Debug, Clone, PartialEq)]
struct NgramRows {
    /// Bits of a context key below its first token (0 for one-token contexts).
    shift: u32,
    /// Per first token `t`, its contexts are `starts[t]..starts[t + 1]`.
    starts: Array<u32>,
    contexts: Array<u64>,
    /// Per context: the sum of its row's counts.
    totals: Array<f32>,
    ptr: Array<u64>,
    next: Array<u32>,
    count: Array<f32>,
    /// Per row, offsets into the row ordered by count (largest first, ties by token).
    by_count: Array<u32>,
}

/// A row of [`NgramRows`]: its entries and the context's total.
#[derive(Clone, Copy)]
struct Row<'a> {
    next: &'a [u32],
    count: &'a [f32],
    by_count: &'a [u32],
    total: f32,
}

impl Row<'_> {
    fn count_of(&self, token: u32) -> f32 {
        match self.next.binary_search(&token) {
            Ok(i) => self.count[i],
            Err(_) => 0.0,
        }
    }

    /// Entries whose token is in `lo..hi`.
    fn in_range(&self, lo: u32, hi: u32) -> std::ops::Range<usize> {
        self.next.partition_point(|&t| t < lo)..self.next.partition_point(|&t| t < hi)
    }
}

impl NgramRows {
    /// Rows of `grams` (context, token, count), contexts made of tokens below `n_first`, the
    /// first one in the bits from `shift` on.
    fn new(mut grams: Vec<(u64, u32, f64)>, shift: u32, n_first: u32) -> Self {
        grams.sort_unstable_by_key(|&(c, t, _)| (c, t));
        let (mut contexts, mut totals, mut ptr) = (Vec::new(), Vec::new(), vec![0u64]);
        let (mut next, mut count, mut by_count) = (Vec::new(), Vec::new(), Vec::new());
        let mut start = 0;
        while start < grams.len() {
            let context = grams[start].0;
            let end = start + grams[start..].partition_point(|g| g.0 == context);
            let row = &grams[start..end];
            contexts.push(context);
            totals.push(row.iter().map(|g| g.2).sum::<f64>() as f32);
            next.extend(row.iter().map(|g| g.1));
            count.extend(row.iter().map(|g| g.2 as f32));
            let mut order: Vec<u32> = (0..row.len() as u32).collect();
            order.sort_by(|&a, &b| row[b as usize].2.total_cmp(&row[a as usize].2));
            by_count.extend(order);
            ptr.push(next.len() as u64);
            start = end;
        }
        let starts: Vec<u32> = (0..=u64::from(n_first))
            .map(|t| contexts.partition_point(|&c| c >> shift < t) as u32)
            .collect();
        NgramRows {
            shift,
            starts: starts.into(),
            contexts: contexts.into(),
            totals: totals.into(),
            ptr: ptr.into(),
            next: next.into(),
            count: count.into(),
            by_count: by_count.into(),
        }
    }

    fn row(&self, context: u64) -> Option<Row<'_>> {
        let first = usize::try_from(context >> self.shift).ok()?;
        let (lo, hi) = (*self.starts.get(first)?, *self.starts.get(first + 1)?);
        let (lo, hi) = (lo as usize, hi as usize);
        let i = lo + self.contexts[lo..hi].binary_search(&context).ok()?;
        let (a, b) = (self.ptr[i] as usize, self.ptr[i + 1] as usize);
        Some(Row {
            next: &self.next[a..b],
            count: &self.count[a..b],
            by_count: &self.by_count[a..b],
            total: self.totals[i],
        })
    }

    fn check(&self, n_tokens: u32, what: &str) -> Result<()> {
        let bad = |why: &str| Err(crate::persist::format_err(format!("{what}: {why}")));
        let n = self.contexts.len();
        if self.totals.len() != n || self.ptr.len() != n + 1 {
            return bad("one total and one row per context");
        }
        if !crate::persist::rises_to(&self.ptr, self.next.len()) {
            return bad("row pointers");
        }
        if self.count.len() != self.next.len() || self.by_count.len() != self.next.len() {
            return bad("one count and one order entry per n-gram");
        }
        if self.contexts.windows(2).any(|w| w[0] >= w[1]) {
            return bad("contexts are not sorted and distinct");
        }
        if !crate::persist::rises_to(&self.starts, n) {
            return bad("context starts");
        }
        for (t, w) in self.starts.windows(2).enumerate() {
            let of_t = &self.contexts[w[0] as usize..w[1] as usize];
            if of_t.iter().any(|&c| c >> self.shift != t as u64) {
                return bad("a context is not under its first token");
            }
        }
        for (i, w) in self.ptr.windows(2).enumerate() {
            let (a, b) = (w[0] as usize, w[1] as usize);
            let row = &self.next[a..b];
            if row.windows(2).any(|p| p[0] >= p[1]) || row.iter().any(|&t| t >= n_tokens) {
                return bad("a row's tokens are not sorted, distinct and known");
            }
            if self.by_count[a..b].iter().any(|&o| o as usize >= b - a) {
                return bad("a row's order points outside it");
            }
            if !(self.totals[i].is_finite() && self.totals[i] > 0.0) {
                return bad("a total is not a positive number");
            }
        }
        if self.count.iter().any(|c| !(c.is_finite() && *c > 0.0)) {
            return bad("a count is not a positive number");
        }
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        self.starts.nbytes()
            + self.contexts.nbytes()
            + self.totals.nbytes()
            + self.ptr.nbytes()
            + self.next.nbytes()
            + self.count.nbytes()
            + self.by_count.nbytes()
    }

    fn write<'a>(&'a self, w: &mut Writer<'a>, order: &str) {
        w.array(&format!("{order}sta"), &self.starts)
            .array(&format!("{order}ctx"), &self.contexts)
            .array(&format!("{order}tot"), &self.totals)
            .array(&format!("{order}ptr"), &self.ptr)
            .array(&format!("{order}next"), &self.next)
            .array(&format!("{order}cnt"), &self.count)
            .array(&format!("{order}ord"), &self.by_count);
    }

    fn read(r: &Reader, order: &str, shift: u32) -> Result<Self> {
        Ok(NgramRows {
            shift,
            starts: r.array(&format!("{order}sta"))?,
            contexts: r.array(&format!("{order}ctx"))?,
            totals: r.array(&format!("{order}tot"))?,
            ptr: r.array(&format!("{order}ptr"))?,
            next: r.array(&format!("{order}next"))?,
            count: r.array(&format!("{order}cnt"))?,
            by_count: r.array(&format!("{order}ord"))?,
        })
    }
}

/// A trigram language model of queries (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLm {
    /// The words (token id = trie id, so a partial word is an id range), weighted by their
    /// continuation counts.
    words: Trie,
    /// Continuation count of `</s>`.
    end_continuation: f64,
    /// Sum of the continuation counts (words and `</s>`).
    continuations: f64,
    bigrams: NgramRows,
    trigrams: NgramRows,
    discount: f32,
    /// The [`TOP_WORDS`] words of largest continuation count (derived from `words`).
    top_words: Vec<u32>,
    /// How word-like a typed word looks, by the characters of `words`.
    shape: CharShape,
    /// A word's id by its hash: [`QueryLm::word_id`], a few reads where the trie's walk takes
    /// one per character.
    word_ids: HashSlots,
}

/// Words a composition adds at most: the completed partial word and [`ComposeParams::max_words`]
/// more (so `max_words` is below this). Hypotheses live in fixed arrays: no allocation.
pub const MAX_COMPOSED_WORDS: usize = 8;

/// One hypothesis of the beam: the words chosen after the typed head, and its log probability.
#[derive(Debug, Clone, Copy, Default)]
struct Hypothesis {
    words: [u32; MAX_COMPOSED_WORDS],
    len: u8,
    logp: f32,
}

impl Hypothesis {
    fn words(&self) -> &[u32] {
        &self.words[..usize::from(self.len)]
    }

    fn first(token: u32, logp: f32) -> Self {
        let mut words = [0; MAX_COMPOSED_WORDS];
        words[0] = token;
        Hypothesis {
            words,
            len: 1,
            logp,
        }
    }

    /// This hypothesis with `token` added (there is room: the search stops before).
    fn then(&self, token: u32, logp: f32) -> Self {
        let mut next = *self;
        next.words[usize::from(self.len)] = token;
        next.len += 1;
        next.logp = logp;
        next
    }
}

/// Reusable buffers of [`QueryLm::compose`] and [`QueryLm::score`].
#[derive(Debug, Default, Clone)]
pub struct LmScratch {
    beam: Vec<Hypothesis>,
    grown: Vec<Hypothesis>,
    done: Vec<Hypothesis>,
    options: Vec<u32>,
    /// The previous query's known words, sorted.
    copy: Vec<u32>,
    /// The earlier searches' known words that the previous query does not have, sorted.
    earlier_copy: Vec<u32>,
    /// The previous query's tokens in order (unknown words as the unknown token).
    prev_seq: Vec<u32>,
    /// Those, then each earlier search's, the nearest first, after the unknown token: the runs
    /// a query may go on along.
    run_seq: Vec<u32>,
    /// The previous query's words the model does not know, in order of first use: session
    /// words, which may be copied (token `unknown + 1 + i`) though the model never saw them.
    session: Vec<String>,
    /// `<s> <s>` and the tokens of the prefix's head.
    head: Vec<u32>,
    /// Bytes of the prefix up to its partial word.
    head_len: usize,
    /// The word tokens of the completion scored last (after the head).
    chosen: Vec<u32>,
    /// What that completion adds after the head, and per word of it, where the word ends and
    /// the log probability up to it: the next completion that starts with the same words
    /// starts from there ([`QueryLm::score_prepared`]).
    last_tail: String,
    last_words: Vec<(usize, f32)>,
}

/// The next-token distribution after a context: its rows and the chance the query goes on.
#[derive(Clone, Copy)]
struct Next<'a> {
    bigram: Option<Row<'a>>,
    trigram: Option<Row<'a>>,
    goes_on: f32,
}

/// The copy share at one point of a query: the previous query's known words not yet in it
/// (the head's tokens and the words chosen after it), and the share `c` they split; and the
/// word that follows the query's last word in the previous query, with its own share.
#[derive(Clone, Copy)]
struct CopyShare<'a> {
    copy: &'a [u32],
    head: &'a [u32],
    chosen: &'a [u32],
    /// How many of `copy` are not yet in the query.
    available: usize,
    c: f32,
    /// The earlier searches' known words (not the previous query's), sorted; how many are not
    /// yet in the query, and the share they split.
    earlier: &'a [u32],
    available_earlier: usize,
    ce: f32,
    /// The known word after the query's last word in the previous query, not yet in the query.
    follow: Option<u32>,
    cf: f32,
}

impl<'a> CopyShare<'a> {
    /// The share at the end of `head` then `chosen`, with the previous query's words `copy`
    /// (sorted), the earlier searches' other words `earlier` (sorted) and `seq` (the previous
    /// query's tokens in order, then each earlier search's after the unknown token; the unknown
    /// token for unknown words): the run followed is the longest the query ends with, of any.
    fn new(
        (copy, seq, earlier): (&'a [u32], &[u32], &'a [u32]),
        head: &'a [u32],
        chosen: &'a [u32],
        (c, cf): (f32, f32),
        unknown: u32,
    ) -> Self {
        let mut share = CopyShare {
            copy,
            head,
            chosen,
            available: 0,
            c,
            earlier,
            available_earlier: 0,
            ce: 0.0,
            follow: None,
            cf,
        };
        share.available = copy.iter().filter(|&&t| share.fresh(t)).count();
        share.available_earlier = earlier.iter().filter(|&&t| share.fresh(t)).count();
        if cf > 0.0 && (share.available > 0 || share.available_earlier > 0) {
            // The query's tokens, last first.
            let back = || chosen.iter().rev().chain(head.iter().rev()).copied();
            // The longest run of the previous query's words that the query ends with, among
            // those whose next word is known and not yet in the query.
            let mut best = 0;
            for i in 1..seq.len() {
                let t = seq[i];
                if t == unknown || !share.fresh(t) {
                    continue;
                }
                let run = back()
                    .zip(seq[..i].iter().rev())
                    .take_while(|(q, p)| q == *p && *q != unknown)
                    .count();
                if run > best {
                    (best, share.follow) = (run, Some(t));
                }
            }
            // Each word of the run makes going on likelier: 1 - (1 - cf)^run.
            let run_share = 1.0 - (1.0 - cf).powi(best as i32);
            share.cf = run_share.min(RUN_SHARE_MAX - c).max(0.0);
        }
        if share.available_earlier > 0 {
            let follow = if share.follow.is_some() {
                share.cf
            } else {
                0.0
            };
            share.ce = (c * EARLIER_COPY).min((RUN_SHARE_MAX - c - follow).max(0.0));
        }
        share
    }

    /// The shares taken from the model's own distribution.
    fn taken(&self) -> f32 {
        let copy = if self.available > 0 { self.c } else { 0.0 };
        let earlier = if self.available_earlier > 0 {
            self.ce
        } else {
            0.0
        };
        copy + earlier + if self.follow.is_some() { self.cf } else { 0.0 }
    }

    /// True when `token` is not yet in the query.
    fn fresh(&self, token: u32) -> bool {
        !self.head.contains(&token) && !self.chosen.contains(&token)
    }

    /// The copy words not yet in the query (the previous query's, then the earlier searches').
    fn words(&self) -> impl Iterator<Item = u32> + '_ {
        self.copy
            .iter()
            .chain(self.earlier)
            .copied()
            .filter(|&t| self.fresh(t))
    }
}

/// A token of a query, by its text: for counting who searched what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tok<'a> {
    Start,
    End,
    Word(&'a str),
}

/// A word, word pair or word triple, by its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Gram<'a> {
    One(Tok<'a>),
    Two(Tok<'a>, Tok<'a>),
    Three(Tok<'a>, Tok<'a>, Tok<'a>),
}

/// Words less common ([`QueryLm::word_weight`]) look like they may be slips: those never seen.
/// (Taking words seen after one other word only for slips too, a threshold of 2, fired the
/// corrections on 1.5x the prefixes of aol_valid, for less: one slip's MRR 0.526x of typed
/// right against 0.530x, exact prefixes -0.0016 against -0.0014.)
const COMMON_WORD: f64 = 1.0;

/// The most common words under a place near a mistyped whole word that are tried as its
/// correction.
const WHOLE_WORDS_TRIED: usize = 4;

/// A correction of two edits (of a prefix, or of a word) has at most one in its first this many
/// characters ([`Trie::fuzzy_prefixes`]).
pub(crate) const ONE_EDIT_CHARS: usize = 4;

/// Single words kept in order of continuation count, to expand after any context.
const TOP_WORDS: usize = 64;

impl QueryLm {
    /// Counts the words, word pairs and word triples of `queries`, each with its weight (how
    /// often it was searched). `discount` is the absolute discount `D` in (0, 1].
    pub fn new<'a>(queries: impl Iterator<Item = (&'a str, f64)>, discount: f32) -> Result<Self> {
        Self::build(queries, discount, None)
    }

    /// [`QueryLm::new`] under a privacy floor: `users` of each query (distinct ids, at least
    /// up to `floor` of them), and only the words, word pairs and word triples that at least
    /// `floor` distinct users searched (in any query) are counted, so no sequence of words
    /// that fewer searched can be composed.
    pub fn with_floor<'a>(
        queries: impl Iterator<Item = (&'a str, f64, &'a [u32])>,
        floor: usize,
        discount: f32,
    ) -> Result<Self> {
        let queries: Vec<(&str, f64, &[u32])> = queries.collect();
        let mut users: HashMap<Gram<'_>, Vec<u32>> = HashMap::new();
        let mut add = |g: Gram<'a>, ids: &[u32]| {
            let seen = users.entry(g).or_default();
            for &u in ids {
                if seen.len() >= floor {
                    break;
                }
                if !seen.contains(&u) {
                    seen.push(u);
                }
            }
        };
        for &(query, _, ids) in &queries {
            let toks: Vec<Tok<'_>> = std::iter::once(Tok::Start)
                .chain(split_words(query).map(Tok::Word))
                .chain(std::iter::once(Tok::End))
                .collect();
            for i in 0..toks.len() {
                if let Tok::Word(_) = toks[i] {
                    add(Gram::One(toks[i]), ids);
                }
                if i >= 1 {
                    add(Gram::Two(toks[i - 1], toks[i]), ids);
                }
                if i >= 2 {
                    add(Gram::Three(toks[i - 2], toks[i - 1], toks[i]), ids);
                }
            }
        }
        users.retain(|_, ids| ids.len() >= floor);
        let allowed: std::collections::HashSet<Gram<'_>> = users.into_keys().collect();
        Self::build(
            queries.iter().map(|&(q, w, _)| (q, w)),
            discount,
            Some(&allowed),
        )
    }

    fn build<'a>(
        queries: impl Iterator<Item = (&'a str, f64)>,
        discount: f32,
        allowed: Option<&std::collections::HashSet<Gram<'a>>>,
    ) -> Result<Self> {
        if !(discount > 0.0 && discount <= 1.0) {
            return Err(Error::InvalidInput(format!(
                "discount must be in (0, 1], got {discount}"
            )));
        }
        let queries: Vec<(&str, f64)> = queries.filter(|q| q.1 > 0.0).collect();
        let ok = |g: Gram<'a>| allowed.is_none_or(|a| a.contains(&g));
        let mut vocab: Vec<&str> = queries
            .iter()
            .flat_map(|q| split_words(q.0))
            .filter(|w| ok(Gram::One(Tok::Word(w))))
            .collect();
        vocab.sort_unstable();
        vocab.dedup();
        let id: HashMap<&str, u32> = vocab
            .iter()
            .enumerate()
            .map(|(i, w)| (*w, i as u32))
            .collect();
        let n = vocab.len() as u32;
        // Tokens: the words, </s>, <s>, the unknown word, then the session words.
        let limit = u64::from(u32::MAX) - 3 - MAX_SESSION_WORDS as u64;
        if u64::from(n) > limit {
            return Err(Error::TooLarge {
                what: "number of words",
                got: vocab.len() as u64,
                limit,
            });
        }
        let (end, start) = (n, n + 1);
        let mut bigrams: HashMap<(u32, u32), f64> = HashMap::new();
        let mut trigrams: HashMap<(u32, u32, u32), f64> = HashMap::new();
        let mut tokens = Vec::new();
        let mut texts: Vec<Tok<'_>> = Vec::new();
        for &(query, weight) in &queries {
            tokens.clear();
            texts.clear();
            tokens.push(start);
            texts.push(Tok::Start);
            for w in split_words(query) {
                // A word under the floor: no word sequence through it is counted.
                tokens.push(id.get(w).copied().unwrap_or(u32::MAX));
                texts.push(Tok::Word(w));
            }
            tokens.push(end);
            texts.push(Tok::End);
            for i in 1..tokens.len() {
                if tokens[i - 1] != u32::MAX
                    && tokens[i] != u32::MAX
                    && ok(Gram::Two(texts[i - 1], texts[i]))
                {
                    *bigrams.entry((tokens[i - 1], tokens[i])).or_default() += weight;
                }
                if i >= 2
                    && tokens[i - 2..=i].iter().all(|&t| t != u32::MAX)
                    && ok(Gram::Three(texts[i - 2], texts[i - 1], texts[i]))
                {
                    *trigrams
                        .entry((tokens[i - 2], tokens[i - 1], tokens[i]))
                        .or_default() += weight;
                }
            }
        }
        let mut continuation = vec![0.0f64; n as usize + 1];
        for &(_, w) in bigrams.keys() {
            continuation[w as usize] += 1.0;
        }
        // Kneser-Ney for the middle order too: a word pair after a word counts the distinct
        // words seen before it (those that open a query keep their counts, having none).
        let mut left: HashMap<(u32, u32), f64> = HashMap::new();
        for &(_, b, w) in trigrams.keys() {
            *left.entry((b, w)).or_default() += 1.0;
        }
        for (pair, c) in bigrams.iter_mut() {
            if pair.0 != start {
                if let Some(&l) = left.get(pair) {
                    *c = l;
                }
            }
        }
        let words = Trie::new(
            vocab
                .iter()
                .zip(&continuation)
                .map(|(w, &c)| (*w, c.max(f64::MIN_POSITIVE))),
        )?;
        let lm = QueryLm {
            top_words: top_words(&words),
            shape: CharShape::new(words.keys()),
            word_ids: word_table(&words),
            words,
            end_continuation: continuation[n as usize],
            continuations: continuation.iter().sum::<f64>().max(1.0),
            bigrams: NgramRows::new(
                bigrams
                    .into_iter()
                    .map(|((a, w), c)| (u64::from(a), w, c))
                    .collect(),
                0,
                n + 2,
            ),
            trigrams: NgramRows::new(
                trigrams
                    .into_iter()
                    .map(|((a, b, w), c)| (pair_key(a, b), w, c))
                    .collect(),
                32,
                n + 2,
            ),
            discount,
        };
        Ok(lm)
    }

    /// The id (token) of `word`, if the model knows it.
    #[inline]
    fn word_id(&self, word: &str) -> Option<u32> {
        let words = &self.words;
        self.word_ids.find(word.as_bytes(), |id| {
            words.key(id as u32).map(str::as_bytes)
        })
    }

    /// True when `word` is one of the model's words.
    pub fn knows(&self, word: &str) -> bool {
        self.word_id(word).is_some()
    }

    /// How common `word` (`whole`) is: the distinct words it was seen after, plus the searches
    /// that open with it (as the model counts searches); for what is typed of a word, the
    /// largest of the word itself and the one of most distinct words before it among those it
    /// starts. 0 for none.
    pub fn word_weight(&self, word: &str, whole: bool) -> f64 {
        let opening = self.bigrams.row(u64::from(self.start_token()));
        let of = |id: u32| {
            let opened = opening.map_or(0.0, |r| f64::from(r.count_of(id)));
            // The start of a query counts by its searches, not as one more word before.
            let before = self.words.weights()[id as usize] - f64::from(u8::from(opened > 0.0));
            before.max(0.0) + opened
        };
        let own = self.word_id(word).map_or(0.0, of);
        if whole {
            return own;
        }
        match self.words.prefix_range(word) {
            Some((lo, hi)) => {
                let most = self.words.top_k_in_range(lo, hi, 1);
                most.first().map_or(own, |&id| own.max(of(id)))
            }
            None => 0.0,
        }
    }

    /// True when `word` (`whole`), or what is typed of it, is at least [`COMMON_WORD`] common
    /// ([`QueryLm::word_weight`]): one rarer could well be a slip that landed on a rare word.
    pub fn knows_well(&self, word: &str, whole: bool) -> bool {
        // A word after COMMON_WORD + 1 distinct words is that common whatever the searches
        // that open with it (which cost a search of the longest row of the model).
        let followed = match whole {
            true => self.word_id(word).and_then(|id| self.words.weight(id)),
            false => {
                let range = self.words.prefix_range(word);
                range.map(|(lo, hi)| self.words.heaviest_in_range(lo, hi))
            }
        };
        followed.is_some_and(|w| w >= COMMON_WORD + 1.0)
            || self.word_weight(word, whole) >= COMMON_WORD
    }

    /// `prefix` with its unknown or rare words corrected to the model's within `edits` edits in
    /// all (Damerau-Levenshtein, never the first character): a whole word to the nearest word
    /// (ties: the one more words follow), the last, partly typed one to the nearest start of a
    /// word. With the edits it took; `None` when nothing needs or admits a correction.
    pub fn correct(
        &self,
        prefix: &str,
        edits: u32,
        matches: &mut Vec<crate::FuzzyMatch>,
    ) -> Option<(String, u32)> {
        let ends_word = prefix.ends_with(is_py_space);
        let words: Vec<&str> = split_words(prefix).collect();
        let mut left = edits;
        let mut out: Vec<String> = Vec::with_capacity(words.len());
        let mut changed = false;
        for (i, w) in words.iter().enumerate() {
            let whole = i + 1 < words.len() || ends_word;
            // Words of fewer than four characters are too short to tell a typo from a word.
            let weight = self.word_weight(w, whole);
            if weight >= COMMON_WORD || left == 0 || w.chars().count() < 4 {
                out.push((*w).to_owned());
                continue;
            }
            // A rare word is corrected only to one seen after COMMON_WORD distinct words.
            let least = match weight > 0.0 {
                true => COMMON_WORD,
                false => 0.0,
            };
            self.words
                .fuzzy_prefixes(w, left, 1, ONE_EDIT_CHARS, matches);
            let typed: Vec<char> = w.chars().collect();
            let mut options: Vec<(u32, f64, &str)> = Vec::new();
            for m in matches.iter() {
                let Some(key) = self.words.key(m.lo) else {
                    continue;
                };
                if !whole {
                    let weight = self.words.heaviest_in_range(m.lo, m.hi);
                    options.push((m.edits, weight, &key[..m.matched]));
                    continue;
                }
                // A whole word corrects to a word under the place: a place is reported where
                // the walk first comes that close, so the word may end deeper ("bostn": "bost",
                // then "boston", one edit each). Its shortest and most common words are tried.
                let words = self.words.top_k_in_range(m.lo, m.hi, WHOLE_WORDS_TRIED);
                for id in std::iter::once(m.lo).chain(words) {
                    let key = self.words.key(id).unwrap_or_default();
                    let edits = osa(&key.chars().collect::<Vec<_>>(), &typed);
                    if edits <= left {
                        options.push((edits, self.words.weights()[id as usize], key));
                    }
                }
            }
            let found = options
                .into_iter()
                .filter(|c| c.1 >= least)
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
            let Some(best) = found else {
                // A known word with no common neighbour stays as typed.
                if least > 0.0 {
                    out.push((*w).to_owned());
                    continue;
                }
                return None;
            };
            out.push(best.2.to_owned());
            left -= best.0;
            changed = true;
        }
        if !changed {
            return None;
        }
        let mut corrected = out.join(" ");
        if ends_word {
            corrected.push(' ');
        }
        Some((corrected, edits - left))
    }

    /// True when the typed `prefix` looks mistyped to the model: one of its whole words (those
    /// followed by a space) not in the previous query `prev` is no word of the model or a rare
    /// one (less than [`COMMON_WORD`] common), or what is typed of its last word starts none
    /// but rare ones.
    pub fn looks_mistyped(&self, prev: &str, prefix: &str) -> bool {
        self.first_suspect(prev, prefix).is_some()
    }

    /// Where (a byte offset) the first word of `prefix` starts that makes it look mistyped
    /// ([`QueryLm::looks_mistyped`]); `None` when none does.
    pub fn first_suspect(&self, prev: &str, prefix: &str) -> Option<usize> {
        let ends_word = prefix.ends_with(is_py_space);
        let mut words = word_starts(prefix).peekable();
        while let Some((at, w)) = words.next() {
            let whole = words.peek().is_some() || ends_word;
            if !in_prev(prev, w, whole) && !self.knows_well(w, whole) {
                return Some(at);
            }
        }
        None
    }

    /// How word-like ([`CharShape::score`]) the word of `prefix` that starts at byte `at` looks
    /// (whole when a space follows it; else what is typed of it); 0 past the prefix's words.
    pub fn shape_at(&self, prefix: &str, at: usize) -> f32 {
        let rest = prefix.get(at..).unwrap_or("");
        match word_starts(rest).next() {
            Some((start, w)) => {
                let whole = rest[start + w.len()..].starts_with(is_py_space);
                self.shape.score(w, whole)
            }
            None => 0.0,
        }
    }

    /// How common ([`QueryLm::word_weight`]) the rarest of the words of `prefix` is (what
    /// is typed of the last one: of the words it starts) not in the previous query `prev`;
    /// infinite for none.
    pub fn rarest_word(&self, prev: &str, prefix: &str) -> f64 {
        let ends_word = prefix.ends_with(is_py_space);
        let words: Vec<&str> = split_words(prefix).collect();
        let mut rarest = f64::INFINITY;
        for (i, w) in words.iter().enumerate() {
            let whole = i + 1 < words.len() || ends_word;
            if !in_prev(prev, w, whole) {
                rarest = rarest.min(self.word_weight(w, whole));
            }
        }
        rarest
    }

    /// Number of distinct words.
    pub fn n_words(&self) -> usize {
        self.words.len()
    }

    /// Heap memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.words.memory_bytes()
            + self.bigrams.memory_bytes()
            + self.trigrams.memory_bytes()
            + self.shape.memory_bytes()
            + self.word_ids.memory_bytes()
    }

    fn end_token(&self) -> u32 {
        self.words.len() as u32
    }

    fn start_token(&self) -> u32 {
        self.words.len() as u32 + 1
    }

    /// A token that starts no n-gram: a word the model does not know.
    fn unknown_token(&self) -> u32 {
        self.words.len() as u32 + 2
    }

    #[cfg(test)]
    fn token(&self, word: &str) -> u32 {
        self.word_id(word).unwrap_or(self.unknown_token())
    }

    /// The token of `word`, a session word's among `session` when the model does not know it.
    fn session_token(&self, session: &[String], word: &str) -> u32 {
        match self.word_id(word) {
            Some(t) => t,
            None => match session.iter().position(|w| w == word) {
                Some(i) => self.unknown_token() + 1 + i as u32,
                None => self.unknown_token(),
            },
        }
    }

    /// The text of a word's or a session word's token.
    fn word_of<'a>(&'a self, session: &'a [String], token: u32) -> &'a str {
        match token.checked_sub(self.unknown_token() + 1) {
            Some(i) => session.get(i as usize).map_or("", String::as_str),
            None => self.words.key(token).unwrap_or(""),
        }
    }

    fn unigram(&self, token: u32) -> f32 {
        let c = if token == self.end_token() {
            self.end_continuation
        } else {
            self.words.weight(token).unwrap_or(0.0)
        };
        (c / self.continuations) as f32
    }

    /// `P(token | a b)`, smoothed.
    fn prob(&self, bigram: Option<Row>, trigram: Option<Row>, token: u32) -> f32 {
        let d = self.discount;
        let mut p = self.unigram(token);
        for row in [bigram, trigram].into_iter().flatten() {
            let c = row.count_of(token);
            p = (c - d).max(0.0) / row.total + d * row.next.len() as f32 / row.total * p;
        }
        p
    }

    /// The next-token distribution after the tokens `a b`.
    fn next(&self, a: u32, b: u32) -> Next<'_> {
        let bigram = self.bigrams.row(u64::from(b));
        let trigram = self.trigrams.row(pair_key(a, b));
        let end = self.prob(bigram, trigram, self.end_token());
        Next {
            bigram,
            trigram,
            goes_on: 1.0 - end,
        }
    }

    /// `ln P'(token | a b)` with the copy share: given that the query goes on, the next word is
    /// one of the previous query's words not yet in the query, uniformly, with probability
    /// `share.c`; the chance of the end of the query is left as it is. (A query seldom repeats a
    /// word: copying one already there would spend the share on "geico geico".)
    fn log_prob(&self, next: &Next, token: u32, share: &CopyShare) -> f32 {
        let mut p = self.prob(next.bigram, next.trigram, token);
        if (share.available > 0 || share.available_earlier > 0) && token != self.end_token() {
            p *= 1.0 - share.taken();
            if share.copy.binary_search(&token).is_ok() && share.fresh(token) {
                p += share.c * next.goes_on / share.available as f32;
            }
            if share.earlier.binary_search(&token).is_ok() && share.fresh(token) {
                p += share.ce * next.goes_on / share.available_earlier as f32;
            }
            if share.follow == Some(token) {
                p += share.cf * next.goes_on;
            }
        }
        if p > 0.0 {
            p.ln()
        } else {
            UNKNOWN_LOGP
        }
    }

    /// The token of session word `w`: its id when the model knows it, else a session word's
    /// (added to `session` unless it is there or holds [`MAX_SESSION_WORDS`]; past that, the
    /// unknown token).
    fn known_or_session(&self, session: &mut Vec<String>, w: &str) -> u32 {
        match self.word_id(w) {
            Some(t) => t,
            None => {
                if session.len() < MAX_SESSION_WORDS && !session.iter().any(|x| x == w) {
                    session.push(w.to_owned());
                }
                self.session_token(session, w)
            }
        }
    }

    /// Prepares `s` for [`QueryLm::score_prepared`] and [`QueryLm::compose_prepared`] of
    /// completions of `prefix` (normalised) after `prev` and the searches before it
    /// (`earlier`, oldest first): the head's tokens (the prefix up to its partial word) and the
    /// words the copy share goes to, the previous query's and the earlier searches'.
    pub(crate) fn prepare(&self, prev: &str, earlier: &[String], prefix: &str, s: &mut LmScratch) {
        let (head_text, _) = split_last_word(prefix);
        s.head_len = head_text.len();
        s.head.clear();
        s.head.push(self.start_token());
        s.head.push(self.start_token());
        s.session.clear();
        s.prev_seq.clear();
        for w in split_words(prev) {
            let token = self.known_or_session(&mut s.session, w);
            s.prev_seq.push(token);
        }
        s.head
            .extend(split_words(head_text).map(|w| self.session_token(&s.session, w)));
        s.copy.clear();
        let unknown = self.unknown_token();
        s.copy
            .extend(s.prev_seq.iter().copied().filter(|&t| t != unknown));
        s.copy.sort_unstable();
        s.copy.dedup();
        // The earlier searches' words, the nearest first (the session words are capped); their
        // runs may be followed too, each search after the unknown token (which no run crosses).
        s.earlier_copy.clear();
        s.run_seq.clear();
        s.run_seq.extend_from_slice(&s.prev_seq);
        for query in earlier.iter().rev() {
            s.run_seq.push(unknown);
            for w in split_words(query) {
                let token = self.known_or_session(&mut s.session, w);
                s.run_seq.push(token);
                if token != unknown && s.copy.binary_search(&token).is_err() {
                    s.earlier_copy.push(token);
                }
            }
        }
        s.earlier_copy.sort_unstable();
        s.earlier_copy.dedup();
        s.chosen.clear();
        s.last_tail.clear();
        s.last_words.clear();
    }

    /// Log probability, under the model with the copy share of `prev`'s words, of what
    /// `completion` adds to `prefix`: the completed partial word, the words after it and the
    /// end of the query. `completion` must start with `prefix` (both normalised); else `None`.
    pub fn score(
        &self,
        prev: &str,
        prefix: &str,
        completion: &str,
        params: &ComposeParams,
        s: &mut LmScratch,
    ) -> Option<f32> {
        if !completion.starts_with(prefix) {
            return None;
        }
        self.prepare(prev, &[], prefix, s);
        Some(self.score_prepared(completion, params, s))
    }

    /// [`QueryLm::score`] of a completion of the prefix `s` was prepared for.
    pub(crate) fn score_prepared(
        &self,
        completion: &str,
        params: &ComposeParams,
        s: &mut LmScratch,
    ) -> f32 {
        let tail = completion.get(s.head_len..).unwrap_or("");
        // The words this completion shares with the one scored last (completions of a prefix
        // come in key order, so neighbours share their start): their tokens and log
        // probabilities are known. The same sums in the same order as scoring from the start.
        let mut kept = 0;
        for (start, w) in word_starts(tail) {
            let end = start + w.len();
            match s.last_words.get(kept) {
                Some(&(e, _)) if e == end && s.last_tail.get(..end) == tail.get(..end) => kept += 1,
                _ => break,
            }
        }
        let mut logp = kept.checked_sub(1).map_or(0.0, |i| s.last_words[i].1);
        s.chosen.truncate(kept);
        s.last_words.truncate(kept);
        let mut chosen = std::mem::take(&mut s.chosen);
        let (mut a, mut b) = context(&s.head, &chosen);
        let mut step = |token: u32, chosen: &[u32]| {
            let p = if token == self.unknown_token() {
                UNKNOWN_LOGP
            } else {
                let share = CopyShare::new(
                    (&s.copy, &s.run_seq, &s.earlier_copy),
                    &s.head,
                    chosen,
                    (params.copy, params.follow),
                    self.unknown_token(),
                );
                self.log_prob(&self.next(a, b), token, &share)
            };
            (a, b) = (b, token);
            p
        };
        for (start, w) in word_starts(tail).skip(kept) {
            let token = self.session_token(&s.session, w);
            logp += step(token, &chosen);
            chosen.push(token);
            s.last_words.push((start + w.len(), logp));
        }
        logp += step(self.end_token(), &chosen);
        s.chosen = chosen;
        s.last_tail.clear();
        s.last_tail.push_str(tail);
        logp
    }

    /// Appends to `out` up to `n` queries composed from `prefix` (normalised) after `prev`, best
    /// first, each with its log probability as [`QueryLm::score`] gives it: the partial last
    /// word completed to a known word (kept as typed when the prefix ends in whitespace), then
    /// up to `max_words` more words, until the end of the query. Every one starts with `prefix`
    /// and they are distinct. Nothing when the prefix's partial word starts no known word.
    /// Options out of range are an error.
    pub fn compose(
        &self,
        prev: &str,
        prefix: &str,
        n: usize,
        params: &ComposeParams,
        s: &mut LmScratch,
        out: &mut Vec<(String, f32)>,
    ) -> Result<()> {
        params.check()?;
        self.prepare(prev, &[], prefix, s);
        self.compose_prepared(prefix, n, params, s, out);
        Ok(())
    }

    /// [`QueryLm::compose`] for the prefix `s` was prepared for, with options checked.
    pub(crate) fn compose_prepared(
        &self,
        prefix: &str,
        n: usize,
        params: &ComposeParams,
        s: &mut LmScratch,
        out: &mut Vec<(String, f32)>,
    ) {
        if n == 0 || self.words.is_empty() {
            return;
        }
        let (head_text, partial) = prefix.split_at(s.head_len.min(prefix.len()));
        let (a, b) = last_two(&s.head);
        let width = params.beam;
        s.beam.clear();
        s.done.clear();
        // Step 0: the partial word, completed to the known words that start with it, and to
        // the session words that do.
        let unknown = self.unknown_token();
        let session_starts = |t: u32| self.word_of(&s.session, t).starts_with(partial);
        let (lo, hi) = if partial.is_empty() {
            (0, self.words.len() as u32)
        } else {
            match self.words.prefix_range(partial) {
                Some(range) => range,
                None if s
                    .copy
                    .iter()
                    .chain(&s.earlier_copy)
                    .any(|&t| t > unknown && session_starts(t)) =>
                {
                    (0, 0)
                }
                None => return,
            }
        };
        let next = self.next(a, b);
        s.options.clear();
        let shares = (params.copy, params.follow);
        let share = CopyShare::new(
            (&s.copy, &s.run_seq, &s.earlier_copy),
            &s.head,
            &[],
            shares,
            unknown,
        );
        self.expansions(&next, (lo, hi), width, &share, &mut s.options);
        if !partial.is_empty() {
            s.options
                .extend(share.words().filter(|&t| t > unknown && session_starts(t)));
        }
        for &token in &s.options {
            let logp = self.log_prob(&next, token, &share);
            s.beam.push(Hypothesis::first(token, logp));
        }
        keep_best(&mut s.beam, width);
        // Then whole words or the end, while a hypothesis can still beat the n-th finished one;
        // past `max_words`, only the previous query's next word (a copied run goes on).
        for step in 0..MAX_COMPOSED_WORDS {
            if s.beam.is_empty() {
                break;
            }
            s.grown.clear();
            for h in &s.beam {
                let (a, b) = context(&s.head, h.words());
                let next = self.next(a, b);
                let share = CopyShare::new(
                    (&s.copy, &s.run_seq, &s.earlier_copy),
                    &s.head,
                    h.words(),
                    shares,
                    unknown,
                );
                let end = self.log_prob(&next, self.end_token(), &share);
                s.done.push(Hypothesis {
                    logp: h.logp + end,
                    ..*h
                });
                if step + 1 == MAX_COMPOSED_WORDS {
                    continue;
                }
                s.options.clear();
                if step < params.max_words {
                    let all = (0, self.words.len() as u32);
                    self.expansions(&next, all, width, &share, &mut s.options);
                } else {
                    s.options.extend(share.follow);
                }
                for &token in &s.options {
                    let logp = h.logp + self.log_prob(&next, token, &share);
                    s.grown.push(h.then(token, logp));
                }
            }
            keep_best(&mut s.done, n);
            std::mem::swap(&mut s.beam, &mut s.grown);
            keep_best(&mut s.beam, width);
            let best_open = s.beam.first().map_or(f32::NEG_INFINITY, |h| h.logp);
            if s.done.len() >= n && s.done[n - 1].logp >= best_open {
                break;
            }
        }
        let start = out.len();
        for h in &s.done {
            let mut text = String::with_capacity(prefix.len() + 16);
            text.push_str(head_text);
            for (i, &t) in h.words().iter().enumerate() {
                if i > 0 {
                    text.push(' ');
                }
                text.push_str(self.word_of(&s.session, t));
            }
            if !text.starts_with(prefix) || out[start..].iter().any(|(q, _)| *q == text) {
                continue;
            }
            out.push((text, h.logp));
        }
    }

    /// The tokens in `lo..hi` worth trying after a context: the `m` most frequent in each
    /// order's row, the `m` most common single words, and the copy words not yet in the query
    /// (all within the range; with the whole range, session words too).
    fn expansions(
        &self,
        next: &Next,
        (lo, hi): (u32, u32),
        m: usize,
        share: &CopyShare,
        out: &mut Vec<u32>,
    ) {
        let whole = lo == 0 && hi as usize == self.words.len();
        for row in [next.trigram, next.bigram].into_iter().flatten() {
            if whole {
                out.extend(
                    row.by_count
                        .iter()
                        .map(|&o| row.next[o as usize])
                        .filter(|&t| t < hi)
                        .take(m),
                );
            } else {
                let range = row.in_range(lo, hi);
                if range.len() <= m {
                    out.extend_from_slice(&row.next[range]);
                } else {
                    // The m most frequent of the range.
                    let counts = &row.count[range.clone()];
                    let mut idx: Vec<usize> = (0..counts.len()).collect();
                    idx.select_nth_unstable_by(m, |&x, &y| counts[y].total_cmp(&counts[x]));
                    out.extend(idx[..m].iter().map(|&i| row.next[range.start + i]));
                }
            }
        }
        if whole {
            out.extend(self.top_words.iter().take(m));
        } else {
            out.extend(self.words.top_k_in_range(lo, hi, m));
        }
        let session = |t: u32| whole && t > self.unknown_token();
        out.extend(share.words().filter(|&t| (t >= lo && t < hi) || session(t)));
        out.sort_unstable();
        out.dedup();
    }
}

/// Keeps the `n` most probable hypotheses, best first (ties by words, for determinism).
fn keep_best(hyps: &mut Vec<Hypothesis>, n: usize) {
    let order = |a: &Hypothesis, b: &Hypothesis| {
        b.logp
            .total_cmp(&a.logp)
            .then_with(|| a.words().cmp(b.words()))
    };
    if n == 0 {
        hyps.clear();
        return;
    }
    if hyps.len() > n {
        hyps.select_nth_unstable_by(n - 1, order);
        hyps.truncate(n);
    }
    hyps.sort_unstable_by(order);
}

/// The sections of the word table ([`QueryLm::word_id`]); files saved before it build it at
/// load.
const WORD_TABLE: [&str; 2] = ["wtags", "wslots"];

fn word_table(words: &Trie) -> HashSlots {
    HashSlots::new(words.keys().map(str::as_bytes))
}

fn top_words(words: &Trie) -> Vec<u32> {
    words.top_k_in_range(0, words.len() as u32, TOP_WORDS)
}

fn split_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_py_space).filter(|w| !w.is_empty())
}

/// The words of `text` with the byte offsets they start at.
fn word_starts(text: &str) -> impl Iterator<Item = (usize, &str)> {
    split_words(text).map(move |w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
}

/// True when word `w` of a prefix (`whole`, or what is typed of it) is one of the previous
/// query's words (or starts one).
fn in_prev(prev: &str, w: &str, whole: bool) -> bool {
    match whole {
        true => split_words(prev).any(|p| p == w),
        false => split_words(prev).any(|p| p.starts_with(w)),
    }
}

fn pair_key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

fn last_two(tokens: &[u32]) -> (u32, u32) {
    (tokens[tokens.len() - 2], tokens[tokens.len() - 1])
}

/// The last two tokens of `head` (which starts with `<s> <s>`) then `chosen`: the context of
/// the next word.
fn context(head: &[u32], chosen: &[u32]) -> (u32, u32) {
    match chosen {
        [.., x, y] => (*x, *y),
        [y] => (head[head.len() - 1], *y),
        [] => last_two(head),
    }
}

impl Persist for QueryLm {
    const KIND: Kind = Kind::QueryLm;

    /// Sections: the words (a trie file), the counts of `</s>`, the discount, then each order's
    /// rows.
    fn writer(&self) -> Writer<'_> {
        let mut fields = Vec::new();
        for v in [
            self.end_continuation,
            self.continuations,
            f64::from(self.discount),
        ] {
            fields.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        let mut w = Writer::new(Kind::QueryLm);
        w.file("words", self.words.writer()).bytes("fields", fields);
        self.bigrams.write(&mut w, "b");
        self.trigrams.write(&mut w, "t");
        self.shape.write(&mut w, "cs");
        self.word_ids.write(&mut w, WORD_TABLE);
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let mut f = Fields::new(r.bytes("fields")?, "fields");
        let (end_continuation, continuations, discount) = (f.f64()?, f.f64()?, f.f64()?);
        f.end()?;
        let words: Trie = r.nested("words")?;
        let counts_ok = end_continuation.is_finite()
            && end_continuation >= 0.0
            && continuations.is_finite()
            && continuations >= 1.0;
        if !(counts_ok && discount > 0.0 && discount <= 1.0) {
            return Err(crate::persist::format_err(
                "language model: bad continuation counts or discount",
            ));
        }
        let lm = QueryLm {
            end_continuation,
            continuations,
            discount: discount as f32,
            bigrams: NgramRows::read(r, "b", 0)?,
            trigrams: NgramRows::read(r, "t", 32)?,
            top_words: top_words(&words),
            // Files saved before it: built from the words, as a fit would.
            shape: match CharShape::read(r, "cs")? {
                Some(shape) => shape,
                None => CharShape::new(words.keys()),
            },
            word_ids: match HashSlots::read(r, WORD_TABLE, words.len(), "language model words")? {
                Some(table) => table,
                None => word_table(&words),
            },
            words,
        };
        let tokens = lm.words.len() as u32 + 1; // words and </s>
        lm.bigrams.check(tokens, "language model bigrams")?;
        lm.trigrams.check(tokens, "language model trigrams")?;
        // Contexts start with a word or <s>: one start per such token, and the end.
        let firsts = lm.words.len() + 2 + 1;
        if lm.bigrams.starts.len() != firsts || lm.trigrams.starts.len() != firsts {
            return Err(crate::persist::format_err(
                "language model: context starts do not match the words",
            ));
        }
        Ok(lm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lm() -> QueryLm {
        QueryLm::new(
            [
                ("cheap flights to boston", 5.0),
                ("cheap flights to denver", 3.0),
                ("cheap hotels in boston", 2.0),
                ("flights to boston ma", 4.0),
                ("boston weather", 6.0),
                ("denver broncos", 2.0),
            ]
            .into_iter(),
            0.75,
        )
        .unwrap()
    }

    #[test]
    fn the_shape_of_a_word_is_scored_whole_before_a_space_and_as_typed_at_the_end() {
        let m = lm();
        let shape = CharShape::new(m.words.keys());
        let prefix = "cheap fligths  bost";
        assert_eq!(m.shape_at(prefix, 0), shape.score("cheap", true));
        assert_eq!(m.shape_at(prefix, 6), shape.score("fligths", true));
        // From the spaces before a word: that word.
        assert_eq!(m.shape_at(prefix, 13), shape.score("bost", false));
        assert_eq!(m.shape_at(prefix, 15), shape.score("bost", false));
        assert_eq!(m.shape_at(prefix, prefix.len()), 0.0);
        assert_eq!(m.shape_at(prefix, 99), 0.0);
        // A slip of a known word looks less like one.
        assert!(m.shape_at(prefix, 6) < m.shape_at("cheap flights ", 6));
    }

    /// The model's file with the sections `drop` says to leave out, and `change` applied to
    /// the others.
    fn rewritten(
        m: &QueryLm,
        drop: impl Fn(&str) -> bool,
        change: impl Fn(&str, &mut Vec<u8>),
    ) -> Vec<u8> {
        let bytes = m.to_bytes();
        let buf = crate::persist::Buffer::copy_from(&bytes);
        let r = Reader::new(&buf, Kind::QueryLm).unwrap();
        let mut w = Writer::new(Kind::QueryLm);
        for (name, data) in r.sections() {
            if !drop(&name) {
                let mut data = data.to_vec();
                change(&name, &mut data);
                w.bytes(&name, data);
            }
        }
        w.finish()
    }

    #[test]
    fn files_saved_before_the_shape_or_the_word_table_build_them_from_their_words() {
        let m = lm();
        let keep = |_: &str, _: &mut Vec<u8>| {};
        let shape = |name: &str| name.starts_with("cs");
        let table = |name: &str| WORD_TABLE.contains(&name);
        for bytes in [rewritten(&m, shape, keep), rewritten(&m, table, keep)] {
            assert_eq!(QueryLm::from_bytes(&bytes).unwrap(), m);
        }
        // Half a table is a damaged file, not an old one.
        assert!(QueryLm::from_bytes(&rewritten(&m, |name| name == "wtags", keep)).is_err());
    }

    #[test]
    fn a_word_table_that_does_not_hold_each_word_once_is_refused() {
        let m = lm();
        let n = m.words.len() as u32;
        // The first filled slot set to `value`, or to the second filled slot's id (`None`).
        let set_slot = |value: Option<u32>| {
            move |name: &str, data: &mut Vec<u8>| {
                if name == "wslots" {
                    let filled: Vec<usize> = (0..data.len() / 4)
                        .filter(|&i| data[i * 4..i * 4 + 4] != [0; 4])
                        .collect();
                    let second = data[filled[1] * 4..filled[1] * 4 + 4].to_vec();
                    let v = value.map_or(second, |v| v.to_le_bytes().to_vec());
                    data[filled[0] * 4..filled[0] * 4 + 4].copy_from_slice(&v);
                }
            }
        };
        // An id past the words; an id twice.
        for value in [Some(n + 1), None] {
            let bytes = rewritten(&m, |_| false, set_slot(value));
            assert!(
                QueryLm::from_bytes(&bytes).is_err(),
                "slot set to {value:?}"
            );
        }
        assert_eq!(
            QueryLm::from_bytes(&rewritten(&m, |_| false, |_, _| {})).unwrap(),
            m
        );
    }

    /// Scoring options with the copy share `copy` and no run-following share.
    fn shares(copy: f32) -> ComposeParams {
        ComposeParams {
            copy,
            ..ComposeParams::default()
        }
    }

    fn compose(m: &QueryLm, prev: &str, prefix: &str, n: usize) -> Vec<(String, f32)> {
        let mut out = Vec::new();
        m.compose(
            prev,
            prefix,
            n,
            &ComposeParams::default(),
            &mut LmScratch::default(),
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn composes_unseen_queries_from_seen_words() {
        let m = lm();
        let got = compose(&m, "", "cheap hotels to bo", 5);
        let texts: Vec<&str> = got.iter().map(|(q, _)| q.as_str()).collect();
        // Never searched whole; "to boston" and "boston ma" were.
        assert!(texts.contains(&"cheap hotels to boston"), "{texts:?}");
        assert!(texts.contains(&"cheap hotels to boston ma"), "{texts:?}");
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
        // Scores are what `score` gives.
        let mut s = LmScratch::default();
        for (q, logp) in &got {
            let again = m
                .score("", "cheap hotels to bo", q, &shares(0.2), &mut s)
                .unwrap();
            assert!((again - logp).abs() < 1e-4, "{q}: {again} vs {logp}");
        }
        assert!(m
            .score("", "cheap", "hotels", &shares(0.2), &mut s)
            .is_none());
    }

    #[test]
    fn the_previous_query_is_copied() {
        let m = lm();
        // After "denver broncos", "cheap flights to " leans to the session's word.
        let score_of = |prev: &str, copy: f32| {
            let mut s = LmScratch::default();
            m.score(
                prev,
                "cheap flights to ",
                "cheap flights to denver",
                &shares(copy),
                &mut s,
            )
            .unwrap()
        };
        assert!(score_of("denver broncos", 0.2) > score_of("", 0.2) + 0.1);
        let without = compose(&m, "", "cheap flights to ", 1);
        assert_eq!(without[0].0, "cheap flights to boston");
        let strong = ComposeParams {
            copy: 0.6,
            ..ComposeParams::default()
        };
        let mut with = Vec::new();
        m.compose(
            "denver broncos",
            "cheap flights to ",
            1,
            &strong,
            &mut LmScratch::default(),
            &mut with,
        )
        .unwrap();
        assert_eq!(with[0].0, "cheap flights to denver");
        // Options out of range are an error, not a panic (8 words would overflow a hypothesis).
        for bad in [
            ComposeParams {
                max_words: MAX_COMPOSED_WORDS,
                ..ComposeParams::default()
            },
            ComposeParams {
                beam: 0,
                ..ComposeParams::default()
            },
            ComposeParams {
                copy: 1.0,
                ..ComposeParams::default()
            },
            // The two shares must leave the model a part.
            ComposeParams {
                copy: 0.5,
                follow: 0.5,
                ..ComposeParams::default()
            },
            ComposeParams {
                follow: -0.1,
                ..ComposeParams::default()
            },
        ] {
            let mut out = Vec::new();
            let got = m.compose("", "cheap ", 3, &bad, &mut LmScratch::default(), &mut out);
            assert!(got.is_err(), "{bad:?}");
        }
        // An unknown partial word gives nothing; a whitespace prefix continues the head.
        assert!(compose(&m, "", "zzz", 5).is_empty());
        assert!(compose(&m, "", "cheap qq", 5).is_empty());
        assert!(!compose(&m, "", "", 3).is_empty());
        assert_eq!(compose(&m, "", "boston  ", 1)[0].0, "boston  weather");
    }

    #[test]
    fn a_copied_run_of_the_previous_query_goes_on() {
        let m = lm();
        let texts = |follow: f32| -> Vec<String> {
            let params = ComposeParams {
                follow,
                ..ComposeParams::default()
            };
            let mut out = Vec::new();
            m.compose(
                "cheap hotels in boston ma",
                "denver h",
                8,
                &params,
                &mut LmScratch::default(),
                &mut out,
            )
            .unwrap();
            out.into_iter().map(|(q, _)| q).collect()
        };
        // "hotels" is copied, then "in boston ma" follows it in the previous query: four words
        // after the typed head, past compose_words (2), which only a run may go.
        let run = "denver hotels in boston ma".to_owned();
        assert!(texts(0.3).contains(&run), "{:?}", texts(0.3));
        assert!(!texts(0.0).contains(&run), "{:?}", texts(0.0));
        // Scores are what `score` gives, run shares included.
        let params = ComposeParams {
            follow: 0.3,
            ..ComposeParams::default()
        };
        let mut s = LmScratch::default();
        let mut out = Vec::new();
        m.compose(
            "cheap hotels in boston ma",
            "denver h",
            8,
            &params,
            &mut s,
            &mut out,
        )
        .unwrap();
        for (q, logp) in &out {
            let again = m
                .score("cheap hotels in boston ma", "denver h", q, &params, &mut s)
                .unwrap();
            assert!((again - logp).abs() < 1e-4, "{q}: {again} vs {logp}");
        }
        // Following the run makes its next word likelier than copy alone does.
        let mut gain = |prefix: &str, completion: &str| {
            m.score(
                "cheap hotels in boston ma",
                prefix,
                completion,
                &params,
                &mut s,
            )
            .unwrap()
                - m.score(
                    "cheap hotels in boston ma",
                    prefix,
                    completion,
                    &shares(0.2),
                    &mut s,
                )
                .unwrap()
        };
        assert!(gain("denver hotels in ", "denver hotels in boston") > 0.0);
    }

    #[test]
    fn words_of_the_previous_query_the_model_never_saw_are_copied() {
        let m = lm();
        let params = ComposeParams {
            follow: 0.3,
            ..ComposeParams::default()
        };
        let texts = |prev: &str, prefix: &str| -> Vec<(String, f32)> {
            let mut out = Vec::new();
            m.compose(
                prev,
                prefix,
                5,
                &params,
                &mut LmScratch::default(),
                &mut out,
            )
            .unwrap();
            out
        };
        // "zorbix" and "qux" are no words of the model's.
        assert!(texts("", "zo").is_empty());
        let got = texts("zorbix weather qux", "zo");
        let queries: Vec<&str> = got.iter().map(|(q, _)| q.as_str()).collect();
        assert!(queries.contains(&"zorbix weather"), "{queries:?}");
        assert!(queries.iter().all(|q| q.starts_with("zo")), "{queries:?}");
        let got = texts("zorbix weather qux", "boston weather ");
        assert!(
            got.iter().any(|(q, _)| q == "boston weather qux"),
            "{got:?}"
        );
        // Scores are what `score` gives; without the previous query the word is unknown.
        let mut s = LmScratch::default();
        for (q, logp) in texts("zorbix weather qux", "zo") {
            let again = m.score("zorbix weather qux", "zo", &q, &params, &mut s);
            assert!((again.unwrap() - logp).abs() < 1e-4, "{q}");
            let cold = m.score("", "zo", &q, &params, &mut s).unwrap();
            assert!(cold <= UNKNOWN_LOGP, "{q}: {cold}");
        }
        // A word of the previous query is no typo.
        assert!(m.looks_mistyped("", "zorbix "));
        assert!(!m.looks_mistyped("zorbix weather", "zorbix "));
        assert!(!m.looks_mistyped("zorbix weather", "boston zorb"));
        assert!(m.looks_mistyped("zorbix weather", "boston zorq"));
    }

    #[test]
    fn an_unknown_word_is_a_slip_corrected_to_the_nearest_common_word() {
        // "boston" follows "to" and "in" and opens a search; "cheap" and "flights" each follow
        // a word and open a search; "bostin" opens one search only; "weather" follows
        // "boston" only, with no common word near it.
        let m = QueryLm::new(
            [
                ("cheap flights to boston", 5.0),
                ("flights to boston", 1.0),
                ("best cheap flights", 1.0),
                ("cheap hotels in boston", 2.0),
                ("boston weather", 6.0),
                ("bostin", 1.0),
            ]
            .into_iter(),
            0.75,
        )
        .unwrap();
        // Two words before "boston", and a query counted 6 opens with it.
        let boston = 2.0 + 6.0;
        assert!((m.word_weight("boston", true) - boston).abs() < 1e-4);
        assert_eq!(m.word_weight("bostin", true), 1.0);
        assert_eq!(m.word_weight("bost", false), m.word_weight("boston", true));
        assert_eq!(m.word_weight("bostin", false), 1.0);
        assert_eq!(m.word_weight("weather", true), 1.0);
        assert_eq!(m.word_weight("zzz", true), 0.0);
        assert!(!m.looks_mistyped("", "cheap flights "));
        assert!(!m.looks_mistyped("", "cheap flights bost"));
        for slip in [
            "bostn ",
            "bostn weat",
            "cheap flights bostn",
            "cheap flights bostx",
        ] {
            assert!(m.looks_mistyped("", slip), "{slip}");
        }
        // A word seen, however seldom, is taken as meant.
        assert!(!m.looks_mistyped("", "cheap bostin "));
        // The slip is looked for from the first such word on (a byte offset).
        assert_eq!(m.first_suspect("", "cheap  flights bostn"), Some(15));
        assert_eq!(m.first_suspect("", " bostn weat"), Some(1));
        assert_eq!(m.first_suspect("bostin", "bostin weat bostin"), Some(7));
        assert_eq!(m.first_suspect("", "cheap flights "), None);
        // Unless the previous query has it: the rarest word is that of the rest.
        assert!(!m.looks_mistyped("bostin", "bostin "));
        assert_eq!(
            m.rarest_word("bostin", "bostin boston "),
            m.word_weight("boston", true)
        );
        let mut fm = Vec::new();
        // "bostin" and "boston" are one edit away: the more common one wins.
        assert_eq!(
            m.correct("bostn weat", 1, &mut fm),
            Some(("boston weat".to_owned(), 1))
        );
        // Known words stay; an unknown one takes the nearest.
        assert_eq!(m.correct("cheap weather ", 1, &mut fm), None);
        assert_eq!(m.correct("bostin weat", 1, &mut fm), None);
        assert_eq!(
            m.correct("cheap waether ", 2, &mut fm),
            Some(("cheap weather ".to_owned(), 1))
        );
    }

    #[test]
    fn the_middle_order_counts_distinct_words_before() {
        // "x c" follows two distinct words ("a", "b") in 5 searches; "x d" follows one word
        // in 4; "x e" follows the start of a query once.
        let m = QueryLm::new(
            [("a x c", 1.0), ("b x c", 4.0), ("b x d", 4.0), ("x e", 1.0)].into_iter(),
            0.75,
        )
        .unwrap();
        let row = m.bigrams.row(u64::from(m.token("x"))).unwrap();
        let count = |w: &str| row.count_of(m.token(w));
        assert_eq!((count("c"), count("d"), count("e")), (2.0, 1.0, 1.0));
        // A pair that opens a query has no word before it: its count is the searches'.
        let opening = m.bigrams.row(u64::from(m.start_token())).unwrap();
        assert_eq!(opening.count_of(m.token("b")), 8.0);
    }

    #[test]
    fn a_word_already_in_the_query_is_not_copied_again() {
        let m = lm();
        let mut s = LmScratch::default();
        let copy = 0.5;
        // "boston" is typed: the whole copy share goes to "weather", not half of it.
        let after = |prev: &str| {
            m.score(
                prev,
                "boston ",
                "boston weather",
                &shares(copy),
                &mut LmScratch::default(),
            )
            .unwrap()
        };
        assert!(after("boston weather") > after("denver weather") + 0.1);
        let again = m
            .score(
                "boston weather",
                "boston ",
                "boston boston",
                &shares(copy),
                &mut s,
            )
            .unwrap();
        let plain = m
            .score("", "boston ", "boston boston", &shares(copy), &mut s)
            .unwrap();
        assert!(again < plain, "{again} vs {plain}");
    }

    #[test]
    fn probabilities_of_next_words_sum_to_one() {
        let m = lm();
        let total = m.words.len() as u32 + 1; // words and </s>
        for (a, b) in [
            (m.start_token(), m.start_token()),
            (m.start_token(), m.token("cheap")),
            (m.token("cheap"), m.token("flights")),
            (m.token("to"), m.token("boston")),
            (m.unknown_token(), m.unknown_token()),
        ] {
            let next = m.next(a, b);
            let sum: f32 = (0..total)
                .map(|t| m.prob(next.bigram, next.trigram, t))
                .sum();
            assert!((sum - 1.0).abs() < 1e-4, "({a}, {b}): {sum}");
            // The previous query's tokens in order: 3, 0, 5, with the head ending in 3 or not.
            let seq = [3, 0, 5];
            // With the earlier searches' words 1 and 7, or none.
            for used in [&[][..], &[3][..], &[0, 3][..], &[5, 3][..], &[1, 7][..]] {
                for (cf, earlier) in [(0.0, &[][..]), (0.4, &[][..]), (0.4, &[1, 7][..])] {
                    let share =
                        CopyShare::new((&[0, 3, 5], &seq, earlier), used, &[], (0.3, cf), 999);
                    let copied: f32 = (0..total).map(|t| m.log_prob(&next, t, &share).exp()).sum();
                    assert!(
                        (copied - 1.0).abs() < 1e-4,
                        "({a}, {b}) with copy {used:?} {cf} {earlier:?}: {copied}"
                    );
                }
            }
        }
    }

    #[test]
    fn persistence_round_trips_and_checks() {
        let m = lm();
        let bytes = m.to_bytes();
        assert_eq!(QueryLm::from_bytes(&bytes).unwrap(), m);
        for i in (0..bytes.len()).step_by(61) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert!(QueryLm::from_bytes(&bad).is_err(), "byte {i}");
        }
        assert!(QueryLm::new([("a", 1.0)].into_iter(), 0.0).is_err());
        // Under a floor of 2 users, words and sequences count by who searched them, in any
        // query: "in boston" was searched by two users (in two queries each under the floor).
        let floored = QueryLm::with_floor(
            [
                ("hotels in boston", 1.0, &[1u32][..]),
                ("pizza in boston", 1.0, &[2][..]),
                ("hotels", 1.0, &[3, 4][..]),
            ]
            .into_iter(),
            2,
            0.75,
        )
        .unwrap();
        assert!(floored.knows("in") && floored.knows("boston") && floored.knows("hotels"));
        assert!(!floored.knows("pizza"));
        let empty = QueryLm::new(std::iter::empty(), 0.5).unwrap();
        assert!(compose(&empty, "", "a", 3).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Compositions start with the prefix, are distinct, sorted, at most n.
        #[test]
        fn compositions_start_with_the_prefix(
            prev in "[a-z ]{0,12}",
            prefix in "(cheap |flights |to |bo|d|c| ){0,4}",
            n in 0usize..8,
        ) {
            let m = lm();
            let got = compose(&m, &prev, &prefix, n);
            prop_assert!(got.len() <= n);
            for (i, (q, logp)) in got.iter().enumerate() {
                prop_assert!(q.starts_with(&prefix), "{q:?} vs {prefix:?}");
                prop_assert!(logp.is_finite() && *logp <= 0.0);
                prop_assert!(got[..i].iter().all(|(p, _)| p != q));
            }
            prop_assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
        }

        /// The word table finds every word at its id, and nothing else.
        #[test]
        fn the_word_table_finds_the_words_of_the_trie(
            queries in proptest::collection::vec("[a-cé]{1,4}( [a-cé]{1,4}){0,2}", 1..30),
            probe in "[a-dé]{0,5}",
        ) {
            let m = QueryLm::new(queries.iter().map(|q| (q.as_str(), 1.0)), 0.75).unwrap();
            for (id, w) in m.words.keys().enumerate() {
                prop_assert_eq!(m.word_id(w), Some(id as u32));
            }
            prop_assert_eq!(m.word_id(&probe), m.words.id(&probe));
            prop_assert_eq!(m.word_id(""), None);
        }

        /// Completions scored one after the other on one scratch (each reusing the words it
        /// shares with the one before) score exactly as each scored alone.
        #[test]
        fn completions_scored_in_turn_score_as_each_alone(
            prev in "(cheap |boston |zork |to |  ){0,3}",
            prefix in "(cheap |flights |zork |to |bo|d|c| ){0,3}",
            tails in proptest::collection::vec("(flights|to|boston|ma|zork|qq| ){0,5}", 1..12),
            sorted in any::<bool>(),
        ) {
            let m = lm();
            let params = ComposeParams::default();
            let mut completions: Vec<String> = tails.iter().map(|t| format!("{prefix}{t}")).collect();
            if sorted {
                completions.sort();
            }
            let mut s = LmScratch::default();
            m.prepare(&prev, &[], &prefix, &mut s);
            for c in &completions {
                let in_turn = m.score_prepared(c, &params, &mut s);
                let alone = m.score(&prev, &prefix, c, &params, &mut LmScratch::default());
                prop_assert_eq!(Some(in_turn.to_bits()), alone.map(f32::to_bits), "{:?}", c);
            }
        }
    }
}
