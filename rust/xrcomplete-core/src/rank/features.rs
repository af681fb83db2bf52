//! A ranking feature, declared once: its name, group, how a learned score may move with it,
//! its weight in the fixed rule and what it measures. The completer and the product retriever
//! each declare their list; names, indexes, groups, monotone constraints and fixed weights are
//! all read from it.
//!
//! ```
//! use xrcomplete_core::rank::features::{index, names, Feature};
//!
//! const LIST: [Feature; 2] = [
//!     Feature::new("bm25", "text", "BM25 of the query").weighing(1.0),
//!     Feature::new("clicks", "popularity", "ln(1 + clicks)").rising(),
//! ];
//! const NAMES: [&str; 2] = names(&LIST);
//! const CLICKS: usize = index(&LIST, "clicks");
//! assert_eq!((NAMES, CLICKS), (["bm25", "clicks"], 1));
//! ```

/// One ranking feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feature {
    /// Its name (what ablations and `features_off` say).
    pub name: &'static str,
    /// The group it is left out with in ablations.
    pub group: &'static str,
    /// How a learned ranker's score may move with it, all else equal: 1 rise, -1 fall, 0
    /// either way.
    pub monotone: i8,
    /// Its weight in the fixed rule (a log too small to learn a ranker from).
    pub fixed: f32,
    /// What it measures.
    pub doc: &'static str,
}

impl Feature {
    /// A feature free to move the score either way, weighing nothing in the fixed rule.
    pub const fn new(name: &'static str, group: &'static str, doc: &'static str) -> Self {
        Feature {
            name,
            group,
            monotone: 0,
            fixed: 0.0,
            doc,
        }
    }

    /// The same feature, never lowering a learned score as it grows.
    pub const fn rising(self) -> Self {
        Feature {
            monotone: 1,
            ..self
        }
    }

    /// The same feature, never raising a learned score as it grows.
    pub const fn falling(self) -> Self {
        Feature {
            monotone: -1,
            ..self
        }
    }

    /// The same feature, weighing `w` in the fixed rule.
    pub const fn weighing(self, w: f32) -> Self {
        Feature { fixed: w, ..self }
    }
}

/// The names of `features`, in order.
pub const fn names<const N: usize>(features: &[Feature; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = features[i].name;
        i += 1;
    }
    out
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The place of feature `name` in `features` (a compile error in a constant when absent).
pub const fn index<const N: usize>(features: &[Feature; N], name: &str) -> usize {
    let mut i = 0;
    while i < N {
        if same(features[i].name, name) {
            return i;
        }
        i += 1;
    }
    panic!("no such feature")
}

/// The monotone constraints of `features`, in order.
pub fn monotone<const N: usize>(features: &[Feature; N]) -> [i8; N] {
    features.map(|f| f.monotone)
}

/// The weights of the fixed rule, in order.
pub fn fixed_weights<const N: usize>(features: &[Feature; N]) -> [f32; N] {
    features.map(|f| f.fixed)
}

/// The groups of `features` in order of their first feature, each with its features' names.
pub fn groups(features: &[Feature]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for f in features {
        match out.iter_mut().find(|(g, _)| *g == f.group) {
            Some((_, names)) => names.push(f.name),
            None => out.push((f.group, vec![f.name])),
        }
    }
    out
}
