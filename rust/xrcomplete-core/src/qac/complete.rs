//! Completing: the candidates of every source gathered, ranked and filtered.

use super::*;

/// Where candidate `c` comes from, as its answer says.
pub(super) fn origin_of(c: &Candidate) -> Origin {
    if c.edits > 0 {
        Origin::Fuzzy { matched: c.matched }
    } else if c.label.is_some() {
        Origin::Seen
    } else if c.live > 0.0 {
        Origin::Live
    } else {
        Origin::Composed
    }
}

impl Completer {
    /// The best `k` completions of `prefix` after `prev` (either may be empty; both are
    /// normalised first), best first. Every one starts with the normalised prefix.
    pub fn complete(
        &self,
        prev: &str,
        prefix: &str,
        k: usize,
        params: &RankParams,
        scratch: &mut CompleteScratch,
    ) -> Result<Vec<Completion>> {
        Ok(self
            .complete_with_origin(prev, prefix, k, params, scratch)?
            .into_iter()
            .map(|(q, s, _)| (q, s))
            .collect())
    }

    /// [`Completer::complete`], each answer with where it came from.
    pub fn complete_with_origin(
        &self,
        prev: &str,
        prefix: &str,
        k: usize,
        params: &RankParams,
        scratch: &mut CompleteScratch,
    ) -> Result<Vec<(String, f32, Origin)>> {
        self.complete_live(prev, prefix, k, params, None, scratch)
    }

    /// Every candidate [`Completer::complete_live`] ranks for `k` answers that may be suggested
    /// (the blocklist and the privacy floor applied), ranked: its query, score, origin,
    /// ranking segment and feature vector (named by [`FEATURES`]). For explaining an answer or
    /// studying the ranker.
    pub fn explain(
        &self,
        prev: &str,
        prefix: &str,
        k: usize,
        params: &RankParams,
        live: Option<&LiveCounts>,
        scratch: &mut CompleteScratch,
    ) -> Result<Vec<Explained>> {
        params.check()?;
        let g = &mut scratch.gather;
        let blocklist = self.gather_ranked(prev, prefix, k, params, live, g)?;
        Ok(g.candidates
            .drain(..)
            .filter(|c| self.may_suggest(c, &blocklist))
            .map(|c| Explained {
                score: c.score,
                origin: origin_of(&c),
                segment: c.segment,
                features: c.x,
                query: c.text,
            })
            .collect())
    }

    /// Gathers into `g.candidates` the candidates of `prefix` after `prev` (both normalised
    /// here) for `k` answers, scored by the ranker and sorted, best first (ties by query); and
    /// returns the blocklist that [`Completer::may_suggest`] filters them with.
    pub(super) fn gather_ranked(
        &self,
        prev: &str,
        prefix: &str,
        k: usize,
        params: &RankParams,
        live: Option<&LiveCounts>,
        g: &mut GatherScratch,
    ) -> Result<Arc<Blocklist>> {
        let (prev, prefix) = (normalize_query(prev), normalize_prefix(prefix));
        let blocklist = self.blocklist();
        self.sources
            .gather(&prev, &prefix, &params.for_k(k), k, live, g)?;
        self.ranker.score_all(&mut g.candidates);
        g.candidates.sort_unstable_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.text.cmp(&b.text))
        });
        Ok(blocklist)
    }

    /// [`Completer::complete_with_origin`], with the searches recorded since the model was built
    /// (`live`) as candidates and in the popularity and transition features.
    pub fn complete_live(
        &self,
        prev: &str,
        prefix: &str,
        k: usize,
        params: &RankParams,
        live: Option<&LiveCounts>,
        scratch: &mut CompleteScratch,
    ) -> Result<Vec<(String, f32, Origin)>> {
        params.check()?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let g = &mut scratch.gather;
        let blocklist = self.gather_ranked(prev, prefix, k, params, live, g)?;
        Ok(g.candidates
            .drain(..)
            .filter(|c| self.may_suggest(c, &blocklist))
            .map(|c| {
                let origin = origin_of(&c);
                (c.text, c.score, origin)
            })
            .take(k)
            .collect())
    }

    /// True when candidate `c` may be an answer: no blocked term, and, under a privacy floor,
    /// not a query known only from live counts (whose users are not counted).
    pub(super) fn may_suggest(&self, c: &Candidate, blocklist: &Blocklist) -> bool {
        let live_only = self.min_users > 1.0 && origin_of(c) == Origin::Live;
        !(live_only || blocklist.blocks(&c.text))
    }

    /// [`Completer::complete_with_origin`] for many (previous query, prefix) pairs, in
    /// parallel.
    pub fn complete_batch_with_origin<S: AsRef<str> + Sync>(
        &self,
        prevs: &[S],
        prefixes: &[S],
        k: usize,
        params: &RankParams,
    ) -> Result<Vec<Vec<(String, f32, Origin)>>> {
        self.complete_batch_live(prevs, prefixes, k, params, None)
    }

    /// [`Completer::complete_live`] for many (previous query, prefix) pairs, in parallel.
    pub fn complete_batch_live<S: AsRef<str> + Sync>(
        &self,
        prevs: &[S],
        prefixes: &[S],
        k: usize,
        params: &RankParams,
        live: Option<&LiveCounts>,
    ) -> Result<Vec<Vec<(String, f32, Origin)>>> {
        if prevs.len() != prefixes.len() {
            return Err(Error::InvalidInput(format!(
                "{} previous queries but {} prefixes",
                prevs.len(),
                prefixes.len()
            )));
        }
        params.check()?;
        (0..prevs.len())
            .into_par_iter()
            .map_init(CompleteScratch::default, |scratch, i| {
                self.complete_live(
                    prevs[i].as_ref(),
                    prefixes[i].as_ref(),
                    k,
                    params,
                    live,
                    scratch,
                )
            })
            .collect()
    }

    /// [`Completer::complete`] for many (previous query, prefix) pairs, in parallel.
    pub fn complete_batch<S: AsRef<str> + Sync>(
        &self,
        prevs: &[S],
        prefixes: &[S],
        k: usize,
        params: &RankParams,
    ) -> Result<Vec<Vec<Completion>>> {
        Ok(self
            .complete_batch_with_origin(prevs, prefixes, k, params)?
            .into_iter()
            .map(|found| found.into_iter().map(|(q, s, _)| (q, s)).collect())
            .collect())
    }
}
