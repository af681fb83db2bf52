//! Completing: one entry point, [`Completer::complete`] of a [`Request`] (and its batch
//! form): the candidates of every source gathered, ranked and filtered.

use super::*;

/// One completion call: what was typed after what, how many answers, how to rank, and the
/// searches recorded since the model was built.
///
/// ```no_run
/// # fn demo(completer: &xrcomplete_core::qac::Completer) -> xrcomplete_core::Result<()> {
/// use xrcomplete_core::qac::{CompleteScratch, Request};
///
/// let mut scratch = CompleteScratch::default();
/// for answer in completer.complete(&Request::new("cheap flights", "ho", 5), &mut scratch)? {
///     println!("{} {} {}", answer.query, answer.score, answer.origin.name());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The session's previous query (`""`: none); normalised here.
    pub prev: &'a str,
    /// The session's queries before the previous one, oldest first; normalised here. Only
    /// the last `session_history - 1` of them are used ([`RankParams::session_history`]).
    pub earlier: &'a [&'a str],
    /// What was typed; normalised here ([`normalize_prefix`]).
    pub prefix: &'a str,
    /// Answers wanted, at most.
    pub k: usize,
    /// This call's ranking options (`None`: the model's, [`Completer::rank_params`]).
    pub rank: Option<&'a RankParams>,
    /// Searches recorded since the model was built: candidates, and in the popularity and
    /// transition features (`None`: none).
    pub live: Option<&'a LiveCounts>,
}

impl<'a> Request<'a> {
    /// `k` completions of `prefix` after `prev`, with the model's ranking and no live counts.
    pub fn new(prev: &'a str, prefix: &'a str, k: usize) -> Self {
        Request {
            prev,
            earlier: &[],
            prefix,
            k,
            rank: None,
            live: None,
        }
    }

    /// `k` completions of `prefix` after the session's earlier queries `history`, oldest
    /// first: the last is the previous query (none: no previous query).
    pub fn in_session(history: &'a [&'a str], prefix: &'a str, k: usize) -> Self {
        match history.split_last() {
            Some((prev, earlier)) => Request {
                earlier,
                ..Request::new(prev, prefix, k)
            },
            None => Request::new("", prefix, k),
        }
    }

    /// The same request ranked with `rank`.
    pub fn ranked(self, rank: &'a RankParams) -> Self {
        Request {
            rank: Some(rank),
            ..self
        }
    }

    /// The same request with the live counts `live`.
    pub fn with_live(self, live: Option<&'a LiveCounts>) -> Self {
        Request { live, ..self }
    }
}

/// One answer of [`Completer::complete`].
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The suggested query.
    pub query: String,
    /// Its ranking score (higher is better; not a probability).
    pub score: f32,
    /// Where it came from.
    pub origin: Origin,
    /// Characters of `query` the typed prefix (or, for a correction, the corrected prefix)
    /// covers: what a search box highlights ([`Origin::highlight`]).
    pub matched: usize,
}

/// Where candidate `c` comes from, as its answer says.
pub(super) fn origin_of(c: &Candidate) -> Origin {
    match c.edits > 0 {
        true => Origin::Fuzzy { matched: c.matched },
        false => source_of(c),
    }
}

/// Where candidate `c`'s query comes from, whether it completes the typed prefix or a
/// correction of it: [`Origin::Seen`], [`Origin::Live`], [`Origin::Session`] or
/// [`Origin::Composed`].
fn source_of(c: &Candidate) -> Origin {
    if c.label.is_some() {
        Origin::Seen
    } else if c.live > 0.0 {
        Origin::Live
    } else if candidates::of_session(c) {
        Origin::Session
    } else {
        Origin::Composed
    }
}

impl Completer {
    /// The best `request.k` completions of its prefix after its previous query, best first.
    /// Every one starts with the normalised prefix, or says which correction of it
    /// ([`Origin::Fuzzy`]). Blocked terms and, under a privacy floor, queries known only from
    /// live counts are never answers.
    pub fn complete(
        &self,
        request: &Request<'_>,
        scratch: &mut CompleteScratch,
    ) -> Result<Vec<Answer>> {
        let params = request.rank.unwrap_or(&self.rank);
        params.check()?;
        if request.k == 0 {
            return Ok(Vec::new());
        }
        let (blocklist, typed) = self.gather_ranked(request, params, scratch)?;
        let candidates = &mut scratch.gather.candidates;
        candidates.retain(|c| self.may_suggest(c, &blocklist));
        // The composed candidates the learned ranker gives less than the floor's share of those
        // that may be suggested are left out: exp(score - best) below the floor times the sum
        // of that over them. (The fixed rule's scores are no chances: it keeps them all.)
        let floor = match self.learned {
            true => params.composed_floor,
            false => 0.0,
        };
        let best = candidates.first().map_or(0.0, |c| c.score);
        let unsure = match floor > 0.0 {
            true => {
                floor
                    * candidates
                        .iter()
                        .map(|c| (c.score - best).exp())
                        .sum::<f32>()
            }
            false => 0.0,
        };
        Ok(candidates
            .drain(..)
            .filter(|c| source_of(c) != Origin::Composed || (c.score - best).exp() >= unsure)
            .map(|c| {
                let origin = origin_of(&c);
                Answer {
                    matched: origin.highlight(&c.text, typed),
                    query: c.text,
                    score: c.score,
                    origin,
                }
            })
            .take(request.k)
            .collect())
    }

    /// [`Completer::complete`] of each request, in parallel (a scratch per thread).
    pub fn complete_batch(&self, requests: &[Request<'_>]) -> Result<Vec<Vec<Answer>>> {
        requests
            .par_iter()
            .map_init(CompleteScratch::default, |scratch, request| {
                self.complete(request, scratch)
            })
            .collect()
    }

    /// Every candidate [`Completer::complete`] ranks for the request that may be suggested
    /// (the blocklist and the privacy floor applied), ranked: its query, score, origin,
    /// ranking segment and feature vector (named by [`FEATURES`]). For explaining an answer or
    /// studying the ranker.
    pub fn explain(
        &self,
        request: &Request<'_>,
        scratch: &mut CompleteScratch,
    ) -> Result<Vec<Explained>> {
        let params = request.rank.unwrap_or(&self.rank);
        params.check()?;
        let (blocklist, _) = self.gather_ranked(request, params, scratch)?;
        Ok(scratch
            .gather
            .candidates
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

    /// Gathers into `g.candidates` the candidates of the request (its strings normalised
    /// here), scored by the ranker and sorted, best first (ties by query); and returns the
    /// blocklist that [`Completer::may_suggest`] filters them with and the characters of the
    /// normalised prefix (what an answer's highlight covers).
    fn gather_ranked(
        &self,
        request: &Request<'_>,
        params: &RankParams,
        scratch: &mut CompleteScratch,
    ) -> Result<(Arc<Blocklist>, usize)> {
        let k = request.k;
        let (prev, prefix) = (
            normalize_query(request.prev),
            normalize_prefix(request.prefix),
        );
        let earlier = &mut scratch.earlier;
        earlier.clear();
        let used = params.session_history.saturating_sub(1);
        let from = request.earlier.len().saturating_sub(used);
        earlier.extend(request.earlier[from..].iter().map(|q| normalize_query(q)));
        let session = Session {
            prev: &prev,
            earlier,
        };
        let blocklist = self.blocklist();
        let g = &mut scratch.gather;
        self.sources
            .gather(&session, &prefix, &params.for_k(k), k, request.live, g)?;
        let ranker = match &self.session_ranker {
            Some(r) if session.has_earlier() => r,
            _ => &self.ranker,
        };
        ranker.score_all(&mut g.candidates);
        g.candidates.sort_unstable_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.text.cmp(&b.text))
        });
        Ok((blocklist, prefix.chars().count()))
    }

    /// True when candidate `c` may be an answer: no blocked term, and, under a privacy floor,
    /// not a query known only from live counts (whose users are not counted).
    fn may_suggest(&self, c: &Candidate, blocklist: &Blocklist) -> bool {
        let live_only = self.min_users > 1.0 && origin_of(c) == Origin::Live;
        !(live_only || blocklist.blocks(&c.text))
    }
}
