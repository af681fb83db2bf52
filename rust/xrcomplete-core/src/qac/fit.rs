//! Training a completer on a log: the checks, the parts trained on its pairs (here or in the
//! shards that hold them), then the ranker.

use super::ranker_fit::fixed_ranker;
use super::*;

/// (queries, counts, users, pairs) of a log, checked.
pub(crate) struct Log<'a, S> {
    pub(crate) queries: &'a [S],
    pub(crate) counts: &'a [f64],
    /// Distinct users of each query (None: not known, the floor is 1).
    pub(crate) users: Option<&'a [f64]>,
    /// Their ids (checked CSR), when known.
    pub(crate) user_ids: Option<(&'a [u64], &'a [u32])>,
    pub(crate) pairs: &'a Pairs<'a>,
    /// The pairs held out of this fit (for the ranker to learn from), if any.
    pub(crate) held_out: Option<HeldOut>,
}

impl<S: AsRef<str>> Log<'_, S> {
    /// True when query `i` was searched at least `min_count` times (and at all).
    pub(super) fn searched_enough(&self, i: usize, params: &FitParams) -> bool {
        let c = self.counts[i];
        c >= params.min_count && c > 0.0
    }

    /// True when query `i` may be suggested whole: searched often enough, by enough users.
    pub(super) fn keeps(&self, i: usize, params: &FitParams) -> bool {
        self.searched_enough(i, params) && self.users.is_none_or(|u| u[i] >= params.min_users)
    }
}

/// `take` distinct prefix ends (byte offsets after 1.. characters) of `text`, drawn uniformly
/// (all of them for shorter texts), in increasing order.
pub(crate) fn sample_prefix_ends<'e>(
    text: &str,
    take: usize,
    rng: &mut SplitMix64,
    ends: &'e mut Vec<usize>,
) -> &'e [usize] {
    ends.clear();
    ends.extend(text.char_indices().skip(1).map(|(i, _)| i));
    ends.push(text.len());
    let take = take.min(ends.len());
    // Partial Fisher-Yates: `take` distinct prefix lengths, uniformly.
    for i in 0..take {
        let j = i + rng.below((ends.len() - i) as u64) as usize;
        ends.swap(i, j);
    }
    ends[..take].sort_unstable();
    &ends[..take]
}

impl Completer {
    /// Trains a completer on a log: `queries[i]` (normalised, see [`normalize_query`]) was
    /// searched `counts[i]` times, and `pairs` lists (previous query, next query) as indices
    /// into `queries`, `None` for a session's first query. `times[i]` (any increasing scale)
    /// says when pair `i` happened; without times the pairs are taken to be in time order.
    pub fn fit<S: AsRef<str> + Sync>(
        queries: &[S],
        counts: &[f64],
        pairs: &[(Option<u32>, u32)],
        times: Option<&[f64]>,
        params: &FitParams,
        progress: &Progress,
    ) -> Result<Self> {
        Self::fit_with_users(queries, counts, None, pairs, times, params, progress)
    }

    /// [`Completer::fit`], with `users[i]` the number of distinct users who searched
    /// `queries[i]` (at least up to `min_users`): the privacy floor of [`FitParams::min_users`].
    pub fn fit_with_users<S: AsRef<str> + Sync>(
        queries: &[S],
        counts: &[f64],
        users: Option<QueryUsers<'_>>,
        pairs: &[(Option<u32>, u32)],
        times: Option<&[f64]>,
        params: &FitParams,
        progress: &Progress,
    ) -> Result<Self> {
        let (users, user_ids, blocklist) = Self::check_fit(queries, counts, users, params)?;
        let bad = |what: String| Err(Error::InvalidInput(what));
        let n = queries.len() as u64;
        if let Some(&(p, q)) = pairs
            .iter()
            .find(|&&(p, q)| p.is_some_and(|p| u64::from(p) >= n) || u64::from(q) >= n)
        {
            return bad(format!(
                "pair ({p:?}, {q}) refers to a query out of range (there are {n})"
            ));
        }
        if let Some(times) = times {
            if times.len() != pairs.len() {
                return bad(format!("{} times for {} pairs", times.len(), pairs.len()));
            }
            if times.iter().any(|t| !t.is_finite()) {
                return bad("times must be finite numbers".into());
            }
        }
        // The pairs here are the one-shard case of pairs in shards: the same stages, run here
        // (and the rows trained where they are).
        let shard = LocalShards::one(pairs, times);
        let pairs = Pairs::new(&shard, 1, queries.len())?;
        let log = Log {
            queries,
            counts,
            users,
            user_ids,
            pairs: &pairs,
            held_out: None,
        };
        Self::fit_log(&log, blocklist, params, progress)
    }

    /// Checks the options and everything a fit is given but the pairs: the user counts and
    /// ids to use, and the blocklist.
    #[allow(clippy::type_complexity)]
    pub(super) fn check_fit<'u, S: AsRef<str>>(
        queries: &[S],
        counts: &[f64],
        users: Option<QueryUsers<'u>>,
        params: &FitParams,
    ) -> Result<(Option<&'u [f64]>, Option<(&'u [u64], &'u [u32])>, Blocklist)> {
        params.rank.check()?;
        params.train.check()?;
        if let Some(trees) = &params.trees {
            trees.check()?;
        }
        let bad = |what: String| Err(Error::InvalidInput(what));
        if queries.len() != counts.len() {
            return bad(format!(
                "{} queries but {} counts",
                queries.len(),
                counts.len()
            ));
        }
        if params.prefixes_per_pair == 0 || params.rank_prefixes == 0 {
            return bad("prefixes_per_pair and rank_prefixes must be >= 1".into());
        }
        if !(params.min_count.is_finite() && params.min_count >= 0.0) {
            return bad(format!(
                "min_count must be a finite number >= 0, got {}",
                params.min_count
            ));
        }
        if !(0.0..1.0).contains(&params.rank_holdout) {
            return bad(format!(
                "rank_holdout must be in [0, 1), got {}",
                params.rank_holdout
            ));
        }
        if !(0.0..=1.0).contains(&params.rank_typos) {
            return bad(format!(
                "rank_typos must be in [0, 1], got {}",
                params.rank_typos
            ));
        }
        if !(0.0..=1.0).contains(&params.lm_count_power) {
            return bad(format!(
                "lm_count_power must be in [0, 1], got {}",
                params.lm_count_power
            ));
        }
        if !(params.lm_discount > 0.0 && params.lm_discount <= 1.0) {
            return bad(format!(
                "lm_discount must be in (0, 1], got {}",
                params.lm_discount
            ));
        }
        if let Some(f) = params
            .features_off
            .iter()
            .find(|f| !FEATURES.contains(&f.as_str()))
        {
            return bad(format!(
                "unknown ranking feature {f:?}; known: {FEATURES:?}"
            ));
        }
        for q in queries {
            let q = q.as_ref();
            if q.is_empty() || normalize_query(q) != q {
                return bad(format!(
                    "queries must be non-empty and normalised (lower-case, stripped), got {:?}",
                    q.chars().take(80).collect::<String>()
                ));
            }
        }
        if let Some(c) = counts.iter().find(|c| !(c.is_finite() && **c >= 0.0)) {
            return bad(format!("counts must be finite numbers >= 0, got {c}"));
        }
        if !(params.min_users.is_finite() && params.min_users >= 1.0) {
            return bad(format!(
                "min_users must be a finite number >= 1, got {}",
                params.min_users
            ));
        }
        let user_ids = users.and_then(|u| u.ids);
        if let Some((offsets, ids)) = user_ids {
            let ok = offsets.len() == queries.len() + 1
                && offsets.first() == Some(&0)
                && offsets.last() == Some(&(ids.len() as u64))
                && offsets.windows(2).all(|w| w[0] <= w[1]);
            if !ok {
                return bad(
                    "user ids: offsets must rise from 0 to their number, one per query".into(),
                );
            }
        }
        let users = users.map(|u| u.counts);
        match users {
            Some(u) if u.len() != queries.len() => {
                return bad(format!(
                    "{} queries but {} user counts",
                    queries.len(),
                    u.len()
                ))
            }
            Some(u) if u.iter().any(|v| !(v.is_finite() && *v >= 0.0)) => {
                return bad("user counts must be finite numbers >= 0".into())
            }
            None if params.min_users > 1.0 => {
                return bad(format!(
                    "min_users = {} needs the number of distinct users of each query",
                    params.min_users
                ))
            }
            _ => {}
        }
        Ok((users, user_ids, Blocklist::new(&params.blocklist)?))
    }

    /// [`Completer::fit_with_users`] of the pairs that `sharding`'s shards hold (ids of
    /// `queries`; the shards check them): what needs the pairs is computed in the shards
    /// ([`shards`]), and the same completer is trained.
    pub fn fit_on_shards<S: AsRef<str> + Sync>(
        queries: &[S],
        counts: &[f64],
        users: Option<QueryUsers<'_>>,
        sharding: &Sharding,
        params: &FitParams,
        progress: &Progress,
    ) -> Result<Self> {
        let (users, user_ids, blocklist) = Self::check_fit(queries, counts, users, params)?;
        let pairs = Pairs::new(&*sharding.shards, sharding.min_subtrees, queries.len())?;
        let log = Log {
            queries,
            counts,
            users,
            user_ids,
            pairs: &pairs,
            held_out: None,
        };
        Self::fit_log(&log, blocklist, params, progress)
    }

    /// Trains every part of a completer on `log`.
    pub(super) fn fit_log<S: AsRef<str> + Sync>(
        log: &Log<S>,
        blocklist: Blocklist,
        params: &FitParams,
        progress: &Progress,
    ) -> Result<Self> {
        // Chosen once for the whole log, so that the ranker learns on parts trained as the
        // final ones are.
        let resolved;
        let params = match params.range_rows {
            Some(_) => params,
            None => {
                resolved = FitParams {
                    range_rows: Some(log.pairs.len() >= RANGE_ROWS_FROM),
                    ..params.clone()
                };
                &resolved
            }
        };
        let (rankers, learned) = match log.pairs.held_out(params.rank_holdout)? {
            Some(rule) => Self::learn_ranker(log, rule, params, progress)?,
            None => ((fixed_ranker()?, None), false),
        };
        // The ranker's own parts are gone: their small blocks go back before the rows come.
        crate::hugepages::release_free_memory();
        let sources = Self::fit_sources(log, params, progress)?;
        progress.set_stage(Stage::Finishing);
        let mut options = params.options.clone();
        options.set_rank(&params.rank)?;
        options.set_float("min_users", params.min_users)?;
        Self::from_parts(sources, rankers, learned, options, blocklist)
    }

    /// Trains every part but the ranker on `log`.
    pub(super) fn fit_sources<S: AsRef<str> + Sync>(
        log: &Log<S>,
        params: &FitParams,
        progress: &Progress,
    ) -> Result<Sources> {
        let bad = |what: String| Err(Error::InvalidInput(what));
        let queries = log.queries;
        let kept = || {
            queries
                .iter()
                .zip(log.counts)
                .enumerate()
                .filter(|(i, _)| log.keeps(*i, params))
                .map(|(_, (q, &c))| (q.as_ref(), c))
        };
        let labels = Trie::new(kept())?;
        if labels.is_empty() {
            return bad(
                "no query is searched at least min_count times by at least min_users users".into(),
            );
        }
        let label_of: Vec<Option<u32>> = queries.iter().map(|q| labels.id(q.as_ref())).collect();
        let prev_text = |p: Option<u32>| p.map_or("", |p| queries[p as usize].as_ref());
        let (features, model) = shards::train_matcher(log, &labels, params, progress)?;
        // Counted once the rows are gone: they are not needed beside them. A count per
        // (previous query, label), as counting each pair's 1 would give (to 2^24 a count).
        let transitions = Transitions::from_counts(
            log.pairs
                .transition_counts(&label_of, log.held_out)?
                .into_iter()
                .map(|(p, label, n)| (prev_text(p), label, n as f32)),
        )?;
        let lm = match log.user_ids {
            // Under a floor, with who searched what: every query searched often enough
            // teaches the words and sequences that enough users searched.
            Some((offsets, ids)) if params.min_users > 1.0 => QueryLm::with_floor(
                queries
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| log.searched_enough(i, params))
                    .map(|(i, q)| {
                        let users = &ids[offsets[i] as usize..offsets[i + 1] as usize];
                        (q.as_ref(), log.counts[i].powf(params.lm_count_power), users)
                    }),
                params.min_users.ceil() as usize,
                params.lm_discount,
            )?,
            _ => QueryLm::new(
                labels
                    .iter()
                    .map(|(q, c)| (q, c.powf(params.lm_count_power))),
                params.lm_discount,
            )?,
        };
        Ok(Sources {
            features,
            model,
            queries: labels,
            transitions,
            lm,
        })
    }
}
