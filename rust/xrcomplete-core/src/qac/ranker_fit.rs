//! Learning the ranker: the candidates of the held-out searches, ranked by parts trained on
//! the earlier ones, with slips and the live counts replayed.

use super::*;

/// Fewer held-out lists than this (with the right query among the candidates) and the fixed
/// rule ranks instead: too few to learn from.
const MIN_RANK_LISTS: usize = 200;

/// Fewer lists than this and the ranker is additive even where trees were asked for: trees of
/// `min_leaf` candidates per leaf need more examples than a weight per feature does (on logs of
/// a few hundred pairs they placed composed answers wherever their leaves fell).
const MIN_TREE_LISTS: usize = 2_000;

/// Held-out lists used at most to learn the ranker.
const MAX_RANK_LISTS: usize = 100_000;

/// Steps in which the held-out searches are recorded as live counts while the ranker's lists
/// are gathered (the lists of a step see the searches of the steps before it).
const LIVE_STEPS: usize = 64;

/// `prefix` with one edit after its first character, drawn from `rng`: a letter substituted or
/// inserted, two adjacent characters transposed, or one deleted (the result differs from
/// `prefix`, of at least two characters, and is not blank).
pub(super) fn inject_typo(prefix: &str, rng: &mut SplitMix64) -> String {
    let chars: Vec<char> = prefix.chars().collect();
    let letter = |rng: &mut SplitMix64| char::from(b'a' + rng.below(26) as u8);
    for _ in 0..64 {
        let i = 1 + rng.below(chars.len() as u64 - 1) as usize;
        let mut edited = chars.clone();
        match rng.below(4) {
            0 => edited[i] = letter(rng),
            1 if i + 1 < chars.len() => edited.swap(i, i + 1),
            2 => {
                edited.remove(i);
            }
            3 => edited.insert(i, letter(rng)),
            _ => continue,
        }
        if edited != chars && edited.iter().any(|c| !is_py_space(*c)) {
            return edited.into_iter().collect();
        }
    }
    // Only with prefixes like "aa" the edits above keep alike: one more letter.
    format!("{prefix}q")
}

/// A prefix of a held-out search the ranker learns from: `search`'s next query up to `end`,
/// edited by [`inject_typo`] from the generator state `slip` if it slipped.
struct Case {
    search: usize,
    end: u32,
    slip: Option<u64>,
}

/// The fixed rule as a ranker.
pub(super) fn fixed_ranker() -> Result<Ranker> {
    AdditiveRanker::fixed(&candidates::fixed_weights(), N_SEGMENTS).map(Ranker::Additive)
}

impl Completer {
    /// Learns the ranker: parts trained on the pairs not in `late`, candidates of prefixes of
    /// the `late` pairs' next queries, the one really searched relevant. The `late` searches
    /// are recorded as live counts as they happen (in time order, 64 steps), so that the live
    /// features are learned as they serve; every other list is gathered without them, so that
    /// the ranker does not lean on them where there are none. Falls back to the fixed rule when
    /// too few lists have the right query among their candidates.
    pub(super) fn learn_ranker<S: AsRef<str> + Sync>(
        log: &Log<S>,
        rule: HeldOut,
        params: &FitParams,
        progress: &Progress,
    ) -> Result<((Ranker, Option<Ranker>), bool)> {
        // What was known before the held-out pairs: their next queries' searches taken out of
        // the popularity in proportion.
        let as_next = log.pairs.next_counts(log.queries.len(), rule)?;
        let early_counts: Vec<f64> = log
            .counts
            .iter()
            .zip(&as_next)
            .map(|(&c, &(all, early))| {
                if all == 0 {
                    c
                } else {
                    c * f64::from(early) / f64::from(all)
                }
            })
            .collect();
        let early = Log {
            queries: log.queries,
            counts: &early_counts,
            users: log.users,
            user_ids: log.user_ids,
            pairs: log.pairs,
            held_out: Some(rule),
        };
        let sources = match Self::fit_sources(&early, params, progress) {
            Ok(s) => s,
            // Nothing left to learn from before the held-out pairs: the fixed rule.
            Err(Error::InvalidInput(_)) | Err(Error::EmptyVocabulary { .. }) => {
                return Ok(((fixed_ranker()?, None), false))
            }
            Err(e) => return Err(e),
        };
        progress.set_stage(Stage::Ranking);
        let mut rng = SplitMix64(params.seed ^ 0x5eed_f07a);
        // The held-out searches in time order: (previous query, query, time, the session's
        // searches before the previous query that the ranker's options use).
        let late = log.pairs.late(rule)?;
        let text = |q: u32| log.queries[q as usize].as_ref();
        let used = params.rank.session_history - 1;
        let mut searches: Vec<(&str, &str, f64, Vec<String>)> = late
            .pairs
            .iter()
            .enumerate()
            .map(|(i, &(p, q, time))| {
                let earlier = late.earlier_of(i);
                let earlier = &earlier[earlier.len().saturating_sub(used)..];
                let earlier = earlier.iter().map(|&e| text(e).to_owned()).collect();
                (p.map_or("", text), text(q), time, earlier)
            })
            .collect();
        drop(late);
        searches.sort_by(|a, b| a.2.total_cmp(&b.2));
        // Cases: (search, previous query, prefix, next query). A share of the prefixes long
        // enough for typo tolerance get one edit, so that the ranker learns how far to trust
        // a corrected prefix against the typed one.
        // Held as the search, the prefix's end and where the slip generator was before its
        // edit (the edited prefix is made again from there when the case is gathered): a few
        // bytes a case, and there are `rank_prefixes` per held-out search before the sample.
        let mut cases: Vec<Case> = Vec::new();
        let mut ends = Vec::new();
        let fuzzy_from = params.rank.fuzzy_one.max(2);
        // Their own generator: the prefixes sampled are the same whatever the share.
        let mut slips = SplitMix64(params.seed ^ 0x7e1f_0a5e);
        for (i, (_, next, _, _)) in searches.iter().enumerate() {
            for &end in sample_prefix_ends(next, params.rank_prefixes, &mut rng, &mut ends) {
                let typed = &next[..end];
                let slip = params.rank.fuzzy_one != 0
                    && typed.chars().count() >= fuzzy_from
                    && (slips.next() as f64 / u64::MAX as f64) < params.rank_typos;
                let slip = slip.then(|| {
                    let before = slips.0;
                    inject_typo(typed, &mut slips);
                    before
                });
                cases.push(Case {
                    search: i,
                    end: end as u32,
                    slip,
                });
            }
        }
        // A fixed sample when there are too many, chosen by the seeded generator.
        if cases.len() > MAX_RANK_LISTS * 2 {
            for i in 0..MAX_RANK_LISTS * 2 {
                let j = i + rng.below((cases.len() - i) as u64) as usize;
                cases.swap(i, j);
            }
            cases.truncate(MAX_RANK_LISTS * 2);
            cases.sort_by_key(|c| c.search);
        }
        let rank = params.rank;
        let live = LiveCounts::new(LiveParams {
            half_life: if log.pairs.timed() {
                params.live_half_life
            } else {
                f64::INFINITY
            },
            ..LiveParams::default()
        })?;
        type Row = ([f32; N_FEATURES], f32, u32);
        // Per case, its list given the previous query alone, and given the searches before it
        // too when there are any.
        type Lists = (Vec<Row>, Option<Vec<Row>>);
        // The lists of each step are added as they are gathered (in the cases' order), up to
        // MAX_RANK_LISTS of each kind: only one step's rows are held at once.
        let gathered = |lists: &mut RankLists, list: &[Row]| -> Result<()> {
            if lists.len() < MAX_RANK_LISTS {
                for (x, rel, segment) in list {
                    lists.push(x, *rel, *segment)?;
                }
                lists.finish();
            }
            Ok(())
        };
        let (mut lists, mut session_lists) =
            (RankLists::new(N_FEATURES), RankLists::new(N_FEATURES));
        let step = searches.len().div_ceil(LIVE_STEPS).max(1);
        for start in (0..searches.len()).step_by(step) {
            let end = (start + step).min(searches.len());
            // The cases of this step's searches see the searches of the steps before.
            let lo = cases.partition_point(|c| c.search < start);
            let hi = cases.partition_point(|c| c.search < end);
            let rows: Vec<Lists> = cases[lo..hi]
                .par_iter()
                .enumerate()
                .map_init(GatherScratch::default, |s, (i, case)| {
                    let (prev, next, _, earlier) = &searches[case.search];
                    let typed = &next[..case.end as usize];
                    let prefix = match case.slip {
                        Some(state) => Cow::Owned(inject_typo(typed, &mut SplitMix64(state))),
                        None => Cow::Borrowed(typed),
                    };
                    // Half the lists see the live counts, half do not: the ranker must rank
                    // well from the log alone too (a completer nobody records searches into).
                    let seen_live = ((lo + i) % 2 == 0).then_some(&live);
                    let mut list = |earlier: &[String]| -> Result<Vec<Row>> {
                        let session = Session { prev, earlier };
                        sources.gather(&session, &prefix, &rank, rank.candidates, seen_live, s)?;
                        Ok(s.candidates
                            .iter()
                            .map(|c| (c.x, f32::from(u8::from(c.text == *next)), c.segment))
                            .collect())
                    };
                    let alone = list(&[])?;
                    let with_earlier = Session { prev, earlier }
                        .has_earlier()
                        .then(|| list(earlier))
                        .transpose()?;
                    Ok((alone, with_earlier))
                })
                .collect::<Result<_>>()?;
            for (alone, with_earlier) in &rows {
                gathered(&mut lists, alone)?;
                if let Some(list) = with_earlier {
                    gathered(&mut session_lists, list)?;
                }
            }
            drop(rows);
            for &(prev, query, time, _) in &searches[start..end] {
                live.record(&Search {
                    query: query.to_owned(),
                    prev: prev.to_owned(),
                    count: 1.0,
                    time,
                    client: None,
                })?;
            }
        }
        if lists.len() < MIN_RANK_LISTS {
            return Ok(((fixed_ranker()?, None), false));
        }
        let mask: Vec<bool> = FEATURES
            .iter()
            .map(|f| !params.features_off.iter().any(|o| o == f))
            .collect();
        // Trees see a list's segment as an input (corrections competing or not among it). The
        // additive ranker's scales are placed by the typed prefixes' lists: the corrected ones'
        // (and so the slips of `rank_typos`) change only the weights of their own segments.
        let additive = |lists: &RankLists| {
            AdditiveRanker::train_scaled(
                lists,
                N_SEGMENTS,
                Some(&mask),
                &params.ranker,
                candidates::CASE_SEGMENTS,
            )
            .map(Ranker::Additive)
        };
        let monotone = candidates::monotone();
        let ranker = match &params.trees {
            Some(trees) if lists.len() >= MIN_TREE_LISTS => Ranker::Trees(BoostedTrees::train(
                &lists,
                N_SEGMENTS,
                Some(&mask),
                Some(&monotone),
                trees,
            )?),
            _ => additive(&lists)?,
        };
        // The lists whose sessions have earlier searches teach a ranker of their own, so that
        // a caller that gives the previous query alone is ranked as before the history was
        // used: the trees above, boosted further on them (half as many trees more).
        let session_ranker = match (&ranker, &params.trees) {
            _ if session_lists.len() < MIN_RANK_LISTS => None,
            (Ranker::Trees(t), Some(trees)) if session_lists.len() >= MIN_TREE_LISTS => {
                let more = TreeTrainParams {
                    trees: trees.trees.div_ceil(2),
                    ..*trees
                };
                Some(Ranker::Trees(t.train_more(
                    &session_lists,
                    Some(&mask),
                    Some(&monotone),
                    &more,
                )?))
            }
            _ => Some(additive(&session_lists)?),
        };
        Ok(((ranker, session_ranker), true))
    }
}
