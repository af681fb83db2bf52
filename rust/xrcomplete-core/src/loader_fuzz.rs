//! Fuzzing the loaders below the checksum: a file whose envelope is valid (magic, version, kind,
//! section table, CRC) but whose content was mutated must load as an error or as a model, never
//! panic, hang or allocate without bound; and a model that loads must then answer queries
//! without panicking (the stored tries, tables and scoring layout are used as they are, so
//! their checks at load are what keeps every later lookup in bounds). Mutations reach nested
//! files (a completer holds a model file, which holds its own sections), and every file is
//! resealed with a correct checksum, so the content checks themselves are what is tested.

use proptest::prelude::*;

use crate::index::kmeans::KMeansParams;
use crate::index::TreeSpec;
use crate::persist::{Buffer, Kind, Persist, Reader, Writer};
use crate::qac::{CompleteScratch, Completer, Request};
use crate::retrieval::{ProductRetriever, RetrieveParams, RetrieveScratch};
use crate::rng::SplitMix64;

/// The completer of the `qac` tests (a hybrid tree), as a file.
fn completer() -> Vec<u8> {
    let kmeans = KMeansParams {
        branching: 2,
        max_leaf_size: 2,
        ..Default::default()
    };
    crate::qac::tests::trained(&TreeSpec::Hybrid { depth: 1, kmeans }).to_bytes()
}

/// The retriever of the `retrieval` tests, as a file.
fn retriever() -> Vec<u8> {
    crate::retrieval::tests::trained().to_bytes()
}

const MAGIC: &[u8; 8] = b"XRCMODEL";

/// `bytes` (a valid file) with one section changed by `rng`, recursing into nested files, and
/// resealed with a correct checksum.
fn mutate(bytes: &[u8], rng: &mut SplitMix64, depth: usize) -> Vec<u8> {
    let kind_code = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    let kind = Kind::from_code(kind_code).expect("a valid file");
    let reader = Reader::new(&Buffer::copy_from(bytes), kind).unwrap();
    let mut sections: Vec<(String, Vec<u8>)> = reader
        .sections()
        .into_iter()
        .map(|(name, data)| (name, data.to_vec()))
        .collect();
    let target = rng.below(sections.len() as u64) as usize;
    let data = &mut sections[target].1;
    if data.starts_with(MAGIC) && depth < 4 && rng.below(4) != 0 {
        *data = mutate(data, rng, depth + 1);
    } else {
        match rng.below(5) {
            // Flip a few bits.
            0 | 1 if !data.is_empty() => {
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(data.len() as u64) as usize;
                    data[at] ^= 1 << rng.below(8);
                }
            }
            // Overwrite an aligned word with an extreme value (counts, lengths, floats).
            2 if data.len() >= 8 => {
                let at = 8 * rng.below(data.len() as u64 / 8) as usize;
                let words = [
                    u64::MAX,
                    0,
                    1 << 40,
                    f64::NAN.to_bits(),
                    u64::from(u32::MAX),
                ];
                let w = words[rng.below(words.len() as u64) as usize];
                data[at..at + 8].copy_from_slice(&w.to_le_bytes());
            }
            // Truncate.
            3 if !data.is_empty() => {
                let keep = rng.below(data.len() as u64) as usize;
                data.truncate(keep);
            }
            // Drop the section, or leave it empty.
            _ => {
                if rng.below(2) == 0 {
                    sections.remove(target);
                } else {
                    data.clear();
                }
            }
        }
    }
    let mut w = Writer::new(kind);
    for (name, data) in sections {
        w.bytes(&name, data);
    }
    w.finish()
}

/// Inputs that walk the stored structures: short and long prefixes, known and unknown words,
/// a prefix ending in a space (next-word completion), multi-byte characters.
const PROBES: [(&str, &str); 7] = [
    ("", ""),
    ("", "h"),
    ("cheap flights", "ho"),
    ("weather", "we"),
    ("x", "hotels in b"),
    ("cheap", "cheap "),
    ("é", "zé中"),
];

fn load_any(bytes: &[u8]) {
    // Whatever the outcome, it must be a value, not a panic; a model that loads must answer.
    if let Ok(c) = Completer::from_bytes(bytes) {
        let mut scratch = CompleteScratch::default();
        for (prev, prefix) in PROBES {
            let _ = c.complete(&Request::new(prev, prefix, 10), &mut scratch);
        }
    }
    if let Ok(r) = ProductRetriever::from_bytes(bytes) {
        let mut scratch = RetrieveScratch::default();
        for (_, query) in PROBES {
            let _ = r.retrieve(query, 10, &RetrieveParams::default(), &mut scratch);
        }
    }
}

/// The suite's short run: 400 cases per property from a fixed seed (the same cases in every CI
/// run); `XRCOMPLETE_FUZZ_CASES=n` (benches/fuzz.py) runs `n` cases from a random seed.
fn config() -> ProptestConfig {
    match std::env::var("XRCOMPLETE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(cases) => ProptestConfig::with_cases(cases),
        None => ProptestConfig {
            cases: 400,
            rng_seed: proptest::test_runner::RngSeed::Fixed(20261124),
            ..ProptestConfig::default()
        },
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_completer_files_never_panic(seed in any::<u64>()) {
        thread_local!(static FILE: Vec<u8> = completer());
        let mut rng = SplitMix64(seed);
        let bad = FILE.with(|f| mutate(f, &mut rng, 0));
        load_any(&bad);
    }

    #[test]
    fn mutated_retriever_files_never_panic(seed in any::<u64>()) {
        thread_local!(static FILE: Vec<u8> = retriever());
        let mut rng = SplitMix64(seed);
        let bad = FILE.with(|f| mutate(f, &mut rng, 0));
        load_any(&bad);
    }
}

#[test]
fn the_mutator_changes_files_and_keeps_their_envelope_valid() {
    let file = completer();
    let mut rng = SplitMix64(7);
    let mut rejected = 0;
    for _ in 0..200 {
        let bad = mutate(&file, &mut rng, 0);
        assert!(Reader::new(&Buffer::copy_from(&bad), Kind::Completer).is_ok());
        rejected += usize::from(Completer::from_bytes(&bad).is_err());
    }
    // Most mutations must be caught by the content checks (some, e.g. a flipped weight bit,
    // give a valid but different model).
    assert!(
        rejected > 100,
        "only {rejected} of 200 mutated files were rejected"
    );
}
