//! A completer's file: its sections, and the upgrades of files saved by earlier versions.

use super::*;

/// An additive ranker read from a file, given the features added since it was saved.
pub(super) fn upgrade_additive(mut ranker: AdditiveRanker) -> Result<AdditiveRanker> {
    // Files saved before typos were ranking features: their answers of corrected prefixes
    // after those of the typed one, as they were served.
    let before_history = candidates::BEFORE_HISTORY;
    let before_typos = before_history - candidates::TYPO_FEATURES;
    let before_later = before_history - candidates::LATER_TYPO_FEATURES;
    let n = ranker.n_features();
    if n == before_typos {
        let w = candidates::fixed_weights();
        ranker = ranker
            .with_fixed(&w[before_typos..before_history])?
            .with_segments_repeated(N_SEGMENTS / candidates::CASE_SEGMENTS)?;
    } else if (before_later..before_history).contains(&n) {
        // Saved before one of the later typo features: those weigh nothing, as then.
        ranker = ranker.with_fixed(&vec![0.0; before_history - n])?;
    } else if n == before_typos - 2 {
        return Err(crate::persist::format_err(
            "a completer saved before live counts were ranking features (xrcomplete < 0.3): \
                 train it again",
        ));
    }
    // Saved before the session's history was: its features weigh nothing.
    let n = ranker.n_features();
    if n == before_history {
        ranker = ranker.with_fixed(&vec![0.0; N_FEATURES - n])?;
    }
    Ok(ranker)
}

impl Persist for Completer {
    const KIND: Kind = Kind::Completer;

    /// Sections: the ranking defaults, each part as a complete file of its own kind, the
    /// ranker.
    fn writer(&self) -> Writer<'_> {
        let r = &self.rank;
        let mut fields = Vec::new();
        for v in [
            r.beam_size as u64,
            r.candidates as u64,
            u64::from(r.generate),
            u64::from(r.use_model),
            u64::from(r.use_popular),
            u64::from(r.use_transitions),
            r.compose_beam as u64,
            r.compose_words as u64,
            u64::from(self.learned),
        ] {
            fields.extend_from_slice(&v.to_le_bytes());
        }
        for v in [r.model_floor, r.copy] {
            fields.extend_from_slice(&f64::from(v).to_bits().to_le_bytes());
        }
        let mut w = Writer::new(Kind::Completer);
        w.bytes("rank", fields);
        // The options, with the blocklist in force (block and unblock change it after training).
        let mut options = self.options.clone();
        let terms = self.blocklist().terms().map(str::to_owned).collect();
        // Terms of a blocklist pass its option's check (a list of strings).
        let _ = options.set("blocklist", Value::Texts(terms));
        w.bytes("options", options.to_bytes());
        let mut fuzzy = Vec::new();
        for v in [r.fuzzy_one as u64, r.fuzzy_two as u64] {
            fuzzy.extend_from_slice(&v.to_le_bytes());
        }
        w.bytes("fuzzy", fuzzy);
        w.bytes(
            "follow",
            f64::from(r.follow).to_bits().to_le_bytes().to_vec(),
        );
        self.sources.write(&mut w);
        self.ranker.write(&mut w, "ranker", "trees");
        if let Some(r) = &self.session_ranker {
            r.write(&mut w, "sranker", "strees");
        }
        if self.min_users > 1.0 {
            w.bytes("floor", self.min_users.to_bits().to_le_bytes().to_vec());
        }
        let blocklist = self.blocklist();
        if !blocklist.is_empty() {
            // At most MAX_TERMS of MAX_TERM_BYTES: within the 4 GiB of string offsets.
            Strings::new(blocklist.terms())
                .expect("blocked terms are bounded")
                .write_copy(&mut w, "block");
        }
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let sources = Sources::read(r)?;
        let mut f = Fields::new(r.bytes("rank")?, "rank");
        let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let (beam_size, candidates) = (count(f.u64()?), count(f.u64()?));
        let flag = |f: &mut Fields, name: &str| match f.u64()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(f.bad(name, other)),
        };
        let generate = flag(&mut f, "generate flag")?;
        let use_model = flag(&mut f, "model flag")?;
        let use_popular = flag(&mut f, "popular flag")?;
        let use_transitions = flag(&mut f, "transitions flag")?;
        let (compose_beam, compose_words) = (count(f.u64()?), count(f.u64()?));
        let learned = flag(&mut f, "learned flag")?;
        let rank = RankParams {
            beam_size,
            candidates,
            generate,
            use_model,
            use_popular,
            use_transitions,
            compose_beam,
            compose_words,
            model_floor: f.f64()? as f32,
            copy: f.f64()? as f32,
            ..RankParams::default()
        };
        f.end()?;
        // Files saved before typo tolerance have no such section: the defaults.
        let rank = match r.has("fuzzy") {
            false => rank,
            true => {
                let mut f = Fields::new(r.bytes("fuzzy")?, "fuzzy");
                let (fuzzy_one, fuzzy_two) = (count(f.u64()?), count(f.u64()?));
                f.end()?;
                RankParams {
                    fuzzy_one,
                    fuzzy_two,
                    ..rank
                }
            }
        };
        // Files saved before copied runs were followed compose without it, as they were trained.
        let follow = match r.has("follow") {
            true => {
                let mut f = Fields::new(r.bytes("follow")?, "follow");
                let v = f.f64()? as f32;
                f.end()?;
                v
            }
            false => 0.0,
        };
        let rank = RankParams { follow, ..rank };
        let ranker = match Ranker::read(r, "ranker", "trees")? {
            Ranker::Additive(additive) => Ranker::Additive(upgrade_additive(additive)?),
            trees => trees,
        };
        // Files saved before the session's ranker have none: one ranker ranks every request.
        let session_ranker = match r.has("sranker") || r.has("strees") {
            true => Some(Ranker::read(r, "sranker", "strees")?),
            false => None,
        };
        // Files without blocked terms (and those saved before blocklists) have no section.
        let blocklist = match r.has("block") {
            true => {
                let terms = Strings::read(r, "block", "blocked terms")?;
                Blocklist::new(&terms.iter().collect::<Vec<_>>())
                    .map_err(|e| crate::persist::format_err(e.to_string()))?
            }
            false => Blocklist::default(),
        };
        let min_users = match r.has("floor") {
            true => {
                let mut f = Fields::new(r.bytes("floor")?, "floor");
                let v = f.f64()?;
                f.end()?;
                v
            }
            false => 1.0,
        };
        // Files saved before options were know the ranking options, the floor and the
        // blocklist they were trained with; the rest were the defaults of their day.
        let saved = match r.has("options") {
            true => Some(Options::from_bytes(r.bytes("options")?)?),
            false => None,
        };
        let build = || {
            let mut options = match saved {
                Some(options) => options,
                None => {
                    // Trained before the default was chosen by the log's size: off.
                    let mut options = Options::default();
                    options.set("range_rows", Value::Bool(false))?;
                    let terms = blocklist.terms().map(str::to_owned).collect();
                    options.set("blocklist", Value::Texts(terms))?;
                    options
                }
            };
            // Options the sections above do not hold are the saved options' own.
            let saved = options.rank_params()?;
            let rank = RankParams {
                session_history: saved.session_history,
                composed_floor: saved.composed_floor,
                ..rank
            };
            options.set_rank(&rank)?;
            options.set_float("min_users", min_users)?;
            Self::from_parts(
                sources,
                (ranker, session_ranker),
                learned,
                options,
                blocklist,
            )
        };
        // A value out of its bounds in a file is a bad file, not a bad argument.
        build().map_err(|e| match e {
            Error::InvalidInput(what) => Error::Format { what },
            other => other,
        })
    }
}
