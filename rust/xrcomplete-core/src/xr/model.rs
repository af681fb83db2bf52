//! A trained XR-Linear model and its beam search.
//!
//! One sparse linear scorer per tree node. Beam search walks the levels: the children of the
//! nodes in the beam are scored, each score transformed ([`PostProcessor`]) and multiplied into
//! its parent's, and the best `beam_size` nodes go on; at the last level the best `topk` labels
//! are returned. The model is immutable: `&self` everywhere, scratch space per call or thread.

use std::sync::OnceLock;

use half::f16;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::index::LabelTree;
use crate::persist::{format_err, rises_to, Array, Kind, Persist, Reader, Writer};
use crate::sparse::CsrMatrix;

/// The weights of one level: column `c` (node `c`) holds the features
/// `rows[col_ptr[c]..col_ptr[c + 1]]` with `vals` at the same positions, plus `bias[c]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LevelWeights {
    pub(crate) col_ptr: Vec<usize>,
    pub(crate) rows: Vec<u32>,
    /// As a model stores them: the nearest half floats ([`half_weight`]), 2 bytes a weight
    /// while the levels below train.
    pub(crate) vals: Vec<f16>,
    pub(crate) bias: Vec<f32>,
}

impl LevelWeights {
    /// Stacks per-node weights (sorted features, values, bias weight), in node order, each
    /// node's freed as it is taken.
    pub(crate) fn from_columns(
        columns: impl IntoIterator<Item = (Vec<u32>, Vec<f32>, f32)>,
    ) -> Self {
        let mut w = LevelWeights::empty();
        w.push_columns(columns);
        w.shrink_to_fit();
        w
    }

    /// No node yet.
    pub(crate) fn empty() -> Self {
        LevelWeights {
            col_ptr: vec![0],
            ..LevelWeights::default()
        }
    }

    /// Appends per-node weights (sorted features, values, bias weight) after these, in node
    /// order, each node's freed as it is taken.
    pub(crate) fn push_columns(
        &mut self,
        columns: impl IntoIterator<Item = (Vec<u32>, Vec<f32>, f32)>,
    ) {
        for (rows, vals, bias) in columns {
            self.rows.extend_from_slice(&rows);
            self.vals.extend(vals.iter().map(|&v| half_weight(v)));
            self.col_ptr.push(self.rows.len());
            self.bias.push(bias);
        }
    }

    /// Appends the nodes of `other` after these.
    pub(crate) fn append(&mut self, other: &LevelWeights) {
        let base = self.rows.len();
        self.rows.extend_from_slice(&other.rows);
        self.vals.extend_from_slice(&other.vals);
        self.bias.extend_from_slice(&other.bias);
        self.col_ptr
            .extend(other.col_ptr[1..].iter().map(|&p| base + p));
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.col_ptr.shrink_to_fit();
        self.rows.shrink_to_fit();
        self.vals.shrink_to_fit();
        self.bias.shrink_to_fit();
    }

    /// Number of stored weights (biases excluded).
    pub fn nnz(&self) -> usize {
        self.rows.len()
    }
}

/// One level's weights grouped by parent, for scoring ("binary-search chunked", as PECOS's
/// predict-only model): for the children of each parent, the sorted features that any of them
/// weighs, and per feature its (child, weight) entries. Scoring the children of a parent walks
/// the input's features, not the children's weight vectors. A lookup is a bucket, then a short
/// scan of feature ids, then the end of the feature's entries; each child sits beside its
/// weight, so that a lookup costs a few cache misses on a model too large for the caches.
///
/// Weights are IEEE half floats (a relative error of at most 2^-11, far below what moves a
/// ranking; rounded once, when the level is built, so a model answers the same before and after
/// saving). An entry is 4 bytes ([`Entry`]) and an end 2 where no parent has more than 65,536
/// children nor 65,535 entries; on a level where one has (a wide level), 8 ([`WideEntry`], in
/// `wide`) and 4 (in `ends_wide`).
#[derive(Debug, Clone, PartialEq, Default)]
struct ChunkedLevel {
    /// Parent `p`'s features are `features[chunk_ptr[p]..chunk_ptr[p + 1]]`.
    chunk_ptr: Array<u32>,
    /// Feature ids, sorted within each chunk.
    features: Array<u32>,
    /// Beside each feature, the end of its entries counted from the chunk's first entry; its
    /// entries start where the previous feature's end (0 for the chunk's first feature). Empty
    /// on a wide level.
    ends: Array<u16>,
    /// The ends of a wide level; empty otherwise.
    ends_wide: Array<u32>,
    /// Parent `p`'s entries start at `entries[entry_base[p]]` (or `wide`'s).
    entry_base: Array<u32>,
    /// (child counted from the parent's first child, weight); empty on a wide level.
    entries: Array<Entry>,
    /// The entries of a wide level; empty otherwise.
    wide: Array<WideEntry>,
    /// Feature `f` of parent `p` lies at chunk offsets from
    /// `buckets[bucket_ptr[p] + (f >> bucket_shift[p])]` to the next bucket's start (about four
    /// features per bucket).
    bucket_ptr: Array<u32>,
    bucket_shift: Array<u8>,
    buckets: Array<u32>,
}

/// One weight of the scoring layout: a child (counted from its parent's first child) and its
/// weight for the feature the entry is filed under.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
struct Entry {
    child: u16,
    weight: f16,
}

/// An entry of a level where a parent has more than 65,536 children.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
struct WideEntry {
    child: u32,
    weight: f16,
    _pad: u16,
}

/// The layout of format version 2 before half floats (read, then converted).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct FullEntry {
    child: u32,
    weight: f32,
}

// SAFETY: repr(C) structs of 2- and 4-byte fields laid out without implicit padding (the wide
// entry's is a named field), every bit pattern a valid value (f16 is a u16 underneath). Loaded
// entries are used through non-panicking lookups (`ChunkedLevel::check`).
unsafe impl bytemuck::Zeroable for Entry {}
unsafe impl bytemuck::Pod for Entry {}
unsafe impl bytemuck::Zeroable for WideEntry {}
unsafe impl bytemuck::Pod for WideEntry {}
unsafe impl bytemuck::Zeroable for FullEntry {}
unsafe impl bytemuck::Pod for FullEntry {}

/// The entries of either width.
trait Weighted: Copy {
    fn child(&self) -> usize;
    fn weight(&self) -> f32;
}

/// Both widths read alike: a `child` field of their width, a half-float `weight`.
macro_rules! weighted {
    ($($entry:ty),*) => {$(
        impl Weighted for $entry {
            #[inline]
            fn child(&self) -> usize {
                self.child as usize
            }
            #[inline]
            fn weight(&self) -> f32 {
                self.weight.to_f32()
            }
        }
    )*};
}

weighted!(Entry, WideEntry);

/// A weight as stored: the nearest half float (finite: saturated at +-65504).
pub(crate) fn half_weight(w: f32) -> f16 {
    f16::from_f32(w.clamp(f16::MIN.to_f32(), f16::MAX.to_f32()))
}

/// The 4-byte pointers of section `new`, or those of section `old` (8 bytes each, as saved
/// before) narrowed.
fn read_pointers(r: &Reader, new: &str, old: &str) -> Result<Array<u32>> {
    if r.has(new) {
        return r.array(new);
    }
    let old_pointers: Array<u64> = r.array(old)?;
    let narrow: Option<Vec<u32>> = old_pointers
        .iter()
        .map(|&p| u32::try_from(p).ok())
        .collect();
    narrow
        .map(Array::from)
        .ok_or_else(|| format_err(format!("XR-Linear model: {old:?}: a pointer past 2^32")))
}

/// One parent's chunk while building: (feature, entries end) pairs and (child, weight) entries.
type Chunk = (Vec<(u32, u32)>, Vec<(u32, f16)>);

impl ChunkedLevel {
    fn build(w: &LevelWeights, child_ptr: &[u32], n_features: usize) -> Result<Self> {
        let parents: Vec<usize> = (0..child_ptr.len() - 1).collect();
        let chunks: Vec<Chunk> = parents
            .par_iter()
            .map(|&p| {
                let (first, end) = (child_ptr[p] as usize, child_ptr[p + 1] as usize);
                let mut triples: Vec<(u32, u32, f16)> = Vec::new();
                for c in first..end {
                    for k in w.col_ptr[c]..w.col_ptr[c + 1] {
                        triples.push((w.rows[k], (c - first) as u32, w.vals[k]));
                    }
                }
                triples.sort_unstable_by_key(|t| (t.0, t.1));
                let mut features: Vec<(u32, u32)> = Vec::new();
                for (n, t) in triples.iter().enumerate() {
                    match features.last_mut() {
                        Some(last) if last.0 == t.0 => last.1 = n as u32 + 1,
                        _ => features.push((t.0, n as u32 + 1)),
                    }
                }
                let entries = triples.into_iter().map(|t| (t.1, t.2)).collect();
                (features, entries)
            })
            .collect();
        let wide = child_ptr.windows(2).any(|p| p[1] - p[0] > 1 << 16)
            || chunks.iter().any(|c| c.1.len() > u16::MAX as usize);
        let (mut chunk_ptr, mut features, mut entry_base) = (vec![0usize], Vec::new(), Vec::new());
        let (mut narrow_entries, mut wide_entries) = (Vec::new(), Vec::new());
        let (mut ends, mut ends_wide) = (Vec::new(), Vec::new());
        for (f, e) in chunks {
            features.extend(f.iter().map(|t| t.0));
            chunk_ptr.push(features.len());
            if wide {
                ends_wide.extend(f.iter().map(|t| t.1));
                entry_base.push(wide_entries.len());
                wide_entries.extend(e.into_iter().map(|(child, weight)| WideEntry {
                    child,
                    weight,
                    _pad: 0,
                }));
            } else {
                ends.extend(f.iter().map(|t| t.1 as u16));
                entry_base.push(narrow_entries.len());
                narrow_entries.extend(e.into_iter().map(|(child, weight)| Entry {
                    child: child as u16,
                    weight,
                }));
            }
        }
        let (mut bucket_ptr, mut bucket_shift, mut buckets) =
            (vec![0usize], Vec::new(), Vec::new());
        let bits = usize::BITS - n_features.saturating_sub(1).leading_zeros();
        for p in 0..chunk_ptr.len() - 1 {
            let feats = &features[chunk_ptr[p]..chunk_ptr[p + 1]];
            if feats.is_empty() {
                // A parent without weights (one child, or none of its rows open) has no
                // buckets: scoring it reads none.
                bucket_shift.push(0);
                bucket_ptr.push(buckets.len());
                continue;
            }
            let wanted = (feats.len() / 4).max(1).next_power_of_two();
            let shift = bits.saturating_sub(wanted.trailing_zeros());
            let n_buckets = (n_features.saturating_sub(1) >> shift) + 1;
            let mut at = 0usize;
            for bucket in 0..n_buckets {
                while at < feats.len() && ((feats[at] as usize) >> shift) < bucket {
                    at += 1;
                }
                buckets.push(at as u32);
            }
            buckets.push(feats.len() as u32);
            bucket_shift.push(shift as u8);
            bucket_ptr.push(buckets.len());
        }
        let n_entries = narrow_entries.len().max(wide_entries.len());
        if [features.len(), n_entries, buckets.len()]
            .iter()
            .any(|&n| n > u32::MAX as usize)
        {
            return Err(Error::InvalidInput(format!(
                "XR-Linear model: a level of {n_entries} weights over {} features is more than \
                 one model file holds (2^32 - 1 of each): prune more (a larger threshold)",
                features.len()
            )));
        }
        let narrow = |v: Vec<usize>| -> Array<u32> {
            v.into_iter().map(|x| x as u32).collect::<Vec<_>>().into()
        };
        Ok(ChunkedLevel {
            chunk_ptr: narrow(chunk_ptr),
            features: features.into(),
            ends: ends.into(),
            ends_wide: ends_wide.into(),
            entry_base: narrow(entry_base),
            entries: narrow_entries.into(),
            wide: wide_entries.into(),
            bucket_ptr: narrow(bucket_ptr),
            bucket_shift: bucket_shift.into(),
            buckets: buckets.into(),
        })
    }

    fn is_wide(&self) -> bool {
        !self.wide.is_empty()
    }

    /// Stored weights.
    fn n_entries(&self) -> usize {
        self.entries.len() + self.wide.len()
    }

    /// Sections `{name}.c4`, `.fi`, `.fe`, `.e4`, `.h` (or `.fw` and `.hw` on a wide level),
    /// `.b4`, `.bs`, `.b` (`name` at most 4 bytes).
    fn write<'a>(&'a self, w: &mut Writer<'a>, name: &str) {
        w.array(&format!("{name}.c4"), &self.chunk_ptr)
            .array(&format!("{name}.fi"), &self.features)
            .array(&format!("{name}.e4"), &self.entry_base);
        if self.is_wide() {
            w.array(&format!("{name}.fw"), &self.ends_wide)
                .array(&format!("{name}.hw"), &self.wide);
        } else {
            w.array(&format!("{name}.fe"), &self.ends)
                .array(&format!("{name}.h"), &self.entries);
        }
        w.array(&format!("{name}.b4"), &self.bucket_ptr)
            .array(&format!("{name}.bs"), &self.bucket_shift)
            .array(&format!("{name}.b"), &self.buckets);
    }

    /// Reads a level. One saved before half floats and 4-byte pointers (`.f`: feature id and
    /// end side by side; `.e`: 4-byte child, 4-byte weight; `.cp`, `.eb`, `.bp`: 8-byte
    /// pointers) is converted to a wide level (into memory, even from a mapped file), its
    /// weights rounded as [`ChunkedLevel::build`] rounds them.
    fn read(r: &Reader, name: &str) -> Result<Self> {
        let pointers = |new: &str, old: &str| {
            read_pointers(r, &format!("{name}.{new}"), &format!("{name}.{old}"))
        };
        let (mut entries, mut wide) = (Array::default(), Array::default());
        let (mut ends, mut ends_wide) = (Array::default(), Array::default());
        let features: Array<u32>;
        let (narrow_name, wide_name) = (format!("{name}.h"), format!("{name}.hw"));
        if r.has(&narrow_name) {
            entries = r.array(&narrow_name)?;
            ends = r.array(&format!("{name}.fe"))?;
            features = r.array(&format!("{name}.fi"))?;
        } else if r.has(&wide_name) {
            wide = r.array(&wide_name)?;
            ends_wide = r.array(&format!("{name}.fw"))?;
            features = r.array(&format!("{name}.fi"))?;
        } else {
            let pairs: Array<[u32; 2]> = r.array(&format!("{name}.f"))?;
            features = pairs.iter().map(|p| p[0]).collect::<Vec<_>>().into();
            ends_wide = pairs.iter().map(|p| p[1]).collect::<Vec<_>>().into();
            let full: Array<FullEntry> = r.array(&format!("{name}.e"))?;
            let converted = full.iter().map(|e| WideEntry {
                child: e.child,
                weight: half_weight(e.weight),
                _pad: 0,
            });
            wide = converted.collect::<Vec<_>>().into();
        }
        Ok(ChunkedLevel {
            chunk_ptr: pointers("c4", "cp")?,
            features,
            ends,
            ends_wide,
            entry_base: pointers("e4", "eb")?,
            entries,
            wide,
            bucket_ptr: pointers("b4", "bp")?,
            bucket_shift: r.array(&format!("{name}.bs"))?,
            buckets: r.array(&format!("{name}.b"))?,
        })
    }

    /// Checks a loaded level against its tree level (`child_ptr`) and feature count, in time
    /// linear in the number of parents: the pointers fit the tree and the arrays, and every
    /// parent with weights has a bucket for every feature id. What lies inside a chunk (feature order, entry
    /// ends, children) is not scanned here: [`ChunkedLevel::add_scores`] reads it with
    /// non-panicking lookups (the bounds checks it makes anyway), so a corrupt chunk can only
    /// give wrong scores, and the checksum is what rules corruption out.
    fn check(&self, child_ptr: &[u32], n_features: usize) -> std::result::Result<(), &'static str> {
        let n_parents = child_ptr.len() - 1;
        if self.chunk_ptr.len() != n_parents + 1
            || !rises_to(&self.chunk_ptr, self.features.len())
            || self.bucket_ptr.len() != n_parents + 1
            || !rises_to(&self.bucket_ptr, self.buckets.len())
            || self.entry_base.len() != n_parents
            || self.ends.len() + self.ends_wide.len() != self.features.len()
            || (self.is_wide() && !(self.ends.is_empty() && self.entries.is_empty()))
            || self.bucket_shift.len() != n_parents
            || self
                .entry_base
                .iter()
                .any(|&b| b as usize > self.n_entries())
        {
            return Err("pointers do not fit the tree");
        }
        let top = n_features.saturating_sub(1);
        for p in 0..n_parents {
            let shift = self.bucket_shift[p];
            let n_buckets = self.bucket_ptr[p + 1] - self.bucket_ptr[p];
            let weightless = self.chunk_ptr[p] == self.chunk_ptr[p + 1];
            if shift >= 32 || (!weightless && (n_buckets as usize) < (top >> shift) + 2) {
                return Err("buckets do not cover the features");
            }
        }
        Ok(())
    }

    /// Parent `p`'s feature ids, their ends and its entries (from its first on), in the layout
    /// of `all_ends` and `all` (empty where a loaded chunk is inconsistent).
    #[inline]
    fn chunk<'a, E, N>(
        &'a self,
        all: &'a [E],
        all_ends: &'a [N],
        p: usize,
    ) -> (&'a [u32], &'a [N], &'a [E]) {
        let span = self.chunk_ptr[p] as usize..self.chunk_ptr[p + 1] as usize;
        let ends = all_ends.get(span.clone()).unwrap_or_default();
        let entries = all.get(self.entry_base[p] as usize..).unwrap_or_default();
        (&self.features[span], ends, entries)
    }

    /// The entries of the `k`-th feature of a chunk whose ends are `ends` and whose entries
    /// start at `entries[0]` (none where a loaded chunk is inconsistent).
    #[inline]
    fn entries_of<'a, E, N: Copy + Into<u32>>(ends: &[N], entries: &'a [E], k: usize) -> &'a [E] {
        let from = if k == 0 { 0 } else { ends[k - 1].into() };
        let to = ends.get(k).map_or(0, |&e| e.into());
        entries.get(from as usize..to as usize).unwrap_or_default()
    }

    /// Adds `w_c . x` to `out[c - first child]` for every child `c` of `parent`.
    #[inline]
    fn add_scores(&self, parent: usize, indices: &[u32], values: &[f32], out: &mut [f32]) {
        if self.is_wide() {
            self.add_scores_in(&self.wide, &self.ends_wide, parent, indices, values, out);
        } else {
            self.add_scores_in(&self.entries, &self.ends, parent, indices, values, out);
        }
    }

    #[inline]
    fn add_scores_in<E: Weighted, N: Copy + Into<u32>>(
        &self,
        all: &[E],
        all_ends: &[N],
        parent: usize,
        indices: &[u32],
        values: &[f32],
        out: &mut [f32],
    ) {
        let (feats, ends, entries) = self.chunk(all, all_ends, parent);
        if feats.is_empty() {
            // No weights (and no buckets).
            return;
        }
        let buckets =
            &self.buckets[self.bucket_ptr[parent] as usize..self.bucket_ptr[parent + 1] as usize];
        let shift = self.bucket_shift[parent];
        for (&f, &v) in indices.iter().zip(values) {
            let bucket = (f >> shift) as usize;
            let (start, end) = (buckets[bucket] as usize, buckets[bucket + 1] as usize);
            // A bucket holds a few sorted features: a short scan finds `f` or passes it.
            let scan = feats.get(start..end.min(feats.len())).unwrap_or_default();
            if let Some(at) = scan.iter().position(|&g| g >= f) {
                if scan[at] == f {
                    for e in Self::entries_of(ends, entries, start + at) {
                        if let Some(o) = out.get_mut(e.child()) {
                            *o += v * e.weight();
                        }
                    }
                }
            }
        }
    }

    /// Every entry of parent `p` as (feature, child counted from the parent's first, weight).
    fn for_each_entry(&self, p: usize, mut f: impl FnMut(u32, usize, f32)) {
        if self.is_wide() {
            self.for_each_entry_in(&self.wide, &self.ends_wide, p, &mut f);
        } else {
            self.for_each_entry_in(&self.entries, &self.ends, p, &mut f);
        }
    }

    fn for_each_entry_in<E: Weighted, N: Copy + Into<u32>>(
        &self,
        all: &[E],
        all_ends: &[N],
        p: usize,
        f: &mut impl FnMut(u32, usize, f32),
    ) {
        let (feats, ends, entries) = self.chunk(all, all_ends, p);
        for (k, &feature) in feats.iter().enumerate() {
            for e in Self::entries_of(ends, entries, k) {
                f(feature, e.child(), e.weight());
            }
        }
    }

    /// The weights back in columns (node order; features sorted in each), with `bias`: the
    /// inverse of [`ChunkedLevel::build`].
    fn columns(&self, child_ptr: &[u32], bias: &[f32]) -> LevelWeights {
        let mut triples: Vec<(u32, u32, f32)> = Vec::with_capacity(self.n_entries());
        for (p, &first) in child_ptr[..child_ptr.len() - 1].iter().enumerate() {
            self.for_each_entry(p, |feature, child, weight| {
                triples.push((first.saturating_add(child as u32), feature, weight));
            });
        }
        triples.sort_unstable_by_key(|t| (t.0, t.1));
        let mut w = LevelWeights {
            col_ptr: Vec::with_capacity(bias.len() + 1),
            rows: triples.iter().map(|t| t.1).collect(),
            vals: triples.iter().map(|t| half_weight(t.2)).collect(),
            bias: bias.to_vec(),
        };
        w.col_ptr.push(0);
        let mut at = 0usize;
        for c in 0..bias.len() as u32 {
            while at < triples.len() && triples[at].0 == c {
                at += 1;
            }
            w.col_ptr.push(at);
        }
        w
    }

    fn memory_bytes(&self) -> usize {
        self.chunk_ptr.nbytes()
            + self.features.nbytes()
            + self.ends.nbytes()
            + self.ends_wide.nbytes()
            + self.entry_base.nbytes()
            + self.entries.nbytes()
            + self.wide.nbytes()
            + self.bucket_ptr.nbytes()
            + self.bucket_shift.nbytes()
            + self.buckets.nbytes()
    }
}

impl Persist for XrLinear {
    const KIND: Kind = Kind::XrLinear;

    /// Sections: meta (depth, feature count, bias), the tree, then per level the scoring layout
    /// and the biases, and the label lists under each node when they were prepared.
    fn writer(&self) -> Writer<'_> {
        let mut w = Writer::new(Kind::XrLinear);
        let depth = self.tree.depth();
        let prepared = self.subtree_labels.get();
        w.u64s(
            "meta",
            [
                depth as u64,
                self.n_features as u64,
                u64::from(self.bias.to_bits()),
                u64::from(prepared.is_some()),
            ],
        );
        self.tree.write(&mut w);
        for (l, (scorer, bias)) in self.scorers.iter().zip(&self.biases).enumerate() {
            scorer.write(&mut w, &format!("w{l}"));
            w.array(&format!("bias{l}"), bias);
        }
        for (l, lists) in prepared.into_iter().flatten().enumerate() {
            lists.write(&mut w, &format!("sub{l}"));
        }
        w
    }

    fn from_reader(r: &Reader) -> Result<Self> {
        let bad = |what: String| format_err(format!("XR-Linear model: {what}"));
        let meta = r.u64s("meta")?;
        let &[depth, n_features, bias, prepared] = meta.as_slice() else {
            return Err(bad("meta section".into()));
        };
        if depth == 0 || depth > 64 || n_features > u32::MAX as u64 || bias > u32::MAX as u64 {
            return Err(bad(format!(
                "implausible depth {depth} or feature count {n_features}"
            )));
        }
        let (depth, n_features) = (depth as usize, n_features as usize);
        let bias = f32::from_bits(bias as u32);
        if !bias.is_finite() || prepared > 1 {
            return Err(bad("bias or flags".into()));
        }
        let tree = LabelTree::read(r, depth)?;
        let mut scorers = Vec::with_capacity(depth);
        let mut biases = Vec::with_capacity(depth);
        for l in 0..depth {
            let scorer = ChunkedLevel::read(r, &format!("w{l}"))?;
            scorer
                .check(tree.child_ptr(l), n_features)
                .map_err(|e| bad(format!("level {l}: {e}")))?;
            let b: Array<f32> = r.array(&format!("bias{l}"))?;
            if b.len() != tree.n_nodes(l) || !b.iter().all(|v| v.is_finite()) {
                return Err(bad(format!("level {l}: biases do not fit the tree")));
            }
            scorers.push(scorer);
            biases.push(b);
        }
        let subtree_labels = OnceLock::new();
        if prepared == 1 {
            let lists = (0..depth - 1)
                .map(|l| NodeLabels::read(r, &format!("sub{l}"), tree.n_nodes(l), tree.n_labels()))
                .collect::<Result<Vec<_>>>()?;
            subtree_labels.set(lists).expect("a new cell");
        }
        Ok(XrLinear {
            tree,
            n_features,
            bias,
            scorers,
            biases,
            subtree_labels,
        })
    }
}

/// The sorted label ids under each node of one level: node `c`'s are
/// `labels[ptr[c]..ptr[c + 1]]`, or, where the labels are numbered in leaf order (a trie's
/// tree over sorted labels) and `labels` is empty, the ids `ptr[c]..ptr[c + 1]` themselves.
#[derive(Debug)]
struct NodeLabels {
    ptr: Array<u32>,
    labels: Array<u32>,
}

impl NodeLabels {
    /// The labels of a level from the ancestor (at that level) of every label.
    fn new(ancestors: &[u32], n_nodes: usize) -> Self {
        let mut ptr = vec![0u32; n_nodes + 1];
        for &node in ancestors {
            ptr[node as usize + 1] += 1;
        }
        for c in 0..n_nodes {
            ptr[c + 1] += ptr[c];
        }
        let mut fill: Vec<u32> = ptr[..n_nodes].to_vec();
        let mut labels = vec![0u32; ancestors.len()];
        // Labels in increasing id order: each node's list comes out sorted.
        for (label, &node) in ancestors.iter().enumerate() {
            labels[fill[node as usize] as usize] = label as u32;
            fill[node as usize] += 1;
        }
        if labels.iter().enumerate().all(|(i, &l)| i == l as usize) {
            labels.clear();
        }
        NodeLabels {
            ptr: ptr.into(),
            labels: labels.into(),
        }
    }

    /// Whether the labels are numbered in leaf order (no list stored).
    fn in_leaf_order(&self) -> bool {
        self.labels.is_empty()
    }

    /// The lowest and the highest label under node `c`, if it has any.
    #[inline]
    fn bounds(&self, c: usize) -> Option<(u32, u32)> {
        let (from, to) = (self.ptr[c] as usize, self.ptr[c + 1] as usize);
        if from >= to {
            None
        } else if self.in_leaf_order() {
            Some((from as u32, (to - 1) as u32))
        } else {
            Some((self.labels[from], self.labels[to - 1]))
        }
    }

    /// Whether node `c` has a label in `lo..hi`.
    #[inline]
    fn holds_in(&self, c: usize, lo: u32, hi: u32) -> bool {
        let (from, to) = (self.ptr[c] as usize, self.ptr[c + 1] as usize);
        if self.in_leaf_order() {
            return from.max(lo as usize) < to.min(hi as usize);
        }
        let labels = &self.labels[from..to];
        let at = labels.partition_point(|&x| x < lo);
        at < labels.len() && labels[at] < hi
    }

    /// Whether every label under node `c` is in `lo..hi` (false for a node without labels).
    #[inline]
    fn all_in(&self, c: usize, lo: u32, hi: u32) -> bool {
        self.bounds(c)
            .is_some_and(|(first, last)| lo <= first && last < hi)
    }

    /// Sections `{name}.p4` and, unless the labels are in leaf order, `{name}.l`.
    fn write<'a>(&'a self, w: &mut Writer<'a>, name: &str) {
        w.array(&format!("{name}.p4"), &self.ptr);
        if !self.in_leaf_order() {
            w.array(&format!("{name}.l"), &self.labels);
        }
    }

    /// Reads a level of `n_nodes` nodes over `n_labels` labels: pointers rising from 0 to the
    /// end, each list sorted, distinct and in range (8-byte pointers, `{name}.p`, as saved
    /// before, are read too).
    fn read(r: &Reader, name: &str, n_nodes: usize, n_labels: usize) -> Result<Self> {
        let ptr = read_pointers(r, &format!("{name}.p4"), &format!("{name}.p"))?;
        let list = format!("{name}.l");
        let labels: Array<u32> = if r.has(&list) {
            r.array(&list)?
        } else {
            Array::default()
        };
        let ok = ptr.len() == n_nodes + 1
            && rises_to(&ptr, n_labels)
            && (labels.is_empty() || labels.len() == n_labels)
            && labels.iter().all(|&l| (l as usize) < n_labels)
            && ptr.windows(2).all(|w| {
                labels
                    .get(w[0] as usize..w[1] as usize)
                    .unwrap_or_default()
                    .windows(2)
                    .all(|p| p[0] < p[1])
            });
        if !ok {
            return Err(format_err(format!(
                "XR-Linear model: label lists {name:?} do not fit the tree"
            )));
        }
        Ok(NodeLabels { ptr, labels })
    }

    fn nbytes(&self) -> usize {
        self.ptr.nbytes() + self.labels.nbytes()
    }
}

/// How a node's raw score `z` becomes a factor of its path's score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostProcessor {
    /// `exp(-max(0, 1 - z)^3)` (PECOS's default, "l3-hinge").
    L3Hinge,
    /// `1 / (1 + exp(-z))`.
    Sigmoid,
}

impl PostProcessor {
    #[inline]
    pub(crate) fn apply(self, z: f32) -> f32 {
        match self {
            PostProcessor::L3Hinge => (-(1.0 - z).max(0.0).powi(3)).exp(),
            PostProcessor::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        }
    }
}

/// Options of a prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictParams {
    /// Nodes kept per level.
    pub beam_size: usize,
    /// Labels returned.
    pub topk: usize,
    /// Score transform.
    pub post_processor: PostProcessor,
}

impl Default for PredictParams {
    fn default() -> Self {
        PredictParams {
            beam_size: 10,
            topk: 10,
            post_processor: PostProcessor::L3Hinge,
        }
    }
}

/// Reusable buffers of a prediction: one per thread.
#[derive(Debug, Default, Clone)]
pub struct PredictScratch {
    child_scores: Vec<f32>,
    beam: Vec<(u32, f32)>,
    candidates: Vec<(u32, f32)>,
}

/// A trained XR-Linear model: a label tree and one sparse linear scorer per node.
#[derive(Debug)]
pub struct XrLinear {
    pub(crate) tree: LabelTree,
    pub(crate) n_features: usize,
    pub(crate) bias: f32,
    /// Per level, the weights grouped by parent for scoring (the only copy: the columns are
    /// rebuilt from them when saving).
    scorers: Vec<ChunkedLevel>,
    /// Per level, the bias weight of each node.
    biases: Vec<Array<f32>>,
    /// Per cluster level, the sorted label ids under each node (built on first use of a label
    /// range, or by [`XrLinear::prepare_label_ranges`]; saved when built).
    subtree_labels: OnceLock<Vec<NodeLabels>>,
}

impl PartialEq for XrLinear {
    fn eq(&self, other: &Self) -> bool {
        self.tree == other.tree
            && self.scorers == other.scorers
            && self.biases == other.biases
            && self.n_features == other.n_features
            && self.bias == other.bias
    }
}

impl XrLinear {
    /// Assembles a model, checking that the weights fit the tree and the feature count.
    pub fn new(
        tree: LabelTree,
        levels: Vec<LevelWeights>,
        n_features: usize,
        bias: f32,
    ) -> Result<Self> {
        let bad = |why: String| Err(Error::InvalidInput(format!("XR-Linear model: {why}")));
        if levels.len() != tree.depth() {
            return bad(format!(
                "{} weight levels for a tree of depth {}",
                levels.len(),
                tree.depth()
            ));
        }
        for (l, w) in levels.iter().enumerate() {
            let n = tree.n_nodes(l);
            if w.col_ptr.len() != n + 1 || w.bias.len() != n || w.col_ptr[0] != 0 {
                return bad(format!(
                    "level {l}: weights for {} nodes, the tree has {n}",
                    w.bias.len()
                ));
            }
            if w.col_ptr.windows(2).any(|p| p[0] > p[1])
                || w.col_ptr[n] != w.rows.len()
                || w.rows.len() != w.vals.len()
            {
                return bad(format!("level {l}: inconsistent column pointers"));
            }
            if w.rows.iter().any(|&f| f as usize >= n_features) {
                return bad(format!("level {l}: a feature id is out of range"));
            }
            if !(w.vals.iter().all(|v| v.is_finite()) && w.bias.iter().all(|v| v.is_finite())) {
                return bad(format!("level {l}: a weight is not finite"));
            }
        }
        if !bias.is_finite() {
            return bad("bias is not finite".into());
        }
        // Level by level, each level's columns freed once its scoring layout is built.
        let (mut scorers, mut biases) = (Vec::new(), Vec::new());
        for (l, w) in levels.into_iter().enumerate() {
            scorers.push(ChunkedLevel::build(&w, tree.child_ptr(l), n_features)?);
            biases.push(w.bias.into());
        }
        Ok(XrLinear {
            tree,
            n_features,
            bias,
            scorers,
            biases,
            subtree_labels: OnceLock::new(),
        })
    }

    /// The label tree.
    pub fn tree(&self) -> &LabelTree {
        &self.tree
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of labels.
    pub fn n_labels(&self) -> usize {
        self.tree.n_labels()
    }

    /// The weights of each level, as columns (rebuilt from the scoring layout: a copy).
    pub fn levels(&self) -> Vec<LevelWeights> {
        (0..self.tree.depth())
            .map(|l| self.scorers[l].columns(self.tree.child_ptr(l), &self.biases[l]))
            .collect()
    }

    /// Stored weights over all levels.
    pub fn nnz(&self) -> usize {
        self.scorers.iter().map(ChunkedLevel::n_entries).sum()
    }

    /// Heap memory of the weights and the tree, in bytes (approximately, for the tree).
    pub fn memory_bytes(&self) -> usize {
        self.biases.iter().map(|b| b.nbytes()).sum::<usize>()
            + self
                .scorers
                .iter()
                .map(ChunkedLevel::memory_bytes)
                .sum::<usize>()
            + self.tree.n_labels() * 2 * size_of::<u32>()
            + (0..self.tree.depth())
                .map(|l| size_of_val(self.tree.child_ptr(l)))
                .sum::<usize>()
            + self
                .subtree_labels
                .get()
                .map_or(0, |lists| lists.iter().map(NodeLabels::nbytes).sum())
    }

    /// The best `topk` labels for one input row (sorted feature ids, values), best first, with
    /// their scores. With `allowed = Some((lo, hi))`, only labels with ids in `lo..hi` are
    /// returned, and the beam only enters nodes that hold one.
    pub fn predict_one(
        &self,
        indices: &[u32],
        values: &[f32],
        params: &PredictParams,
        allowed: Option<(u32, u32)>,
        scratch: &mut PredictScratch,
    ) -> Result<Vec<(u32, f32)>> {
        if indices.len() != values.len() {
            return Err(Error::InvalidInput(format!(
                "{} feature ids but {} values",
                indices.len(),
                values.len()
            )));
        }
        if let Some(&f) = indices.iter().find(|&&f| f as usize >= self.n_features) {
            return Err(Error::InvalidInput(format!(
                "feature id {f} is out of range for a model of {} features",
                self.n_features
            )));
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "feature value {v} is not finite"
            )));
        }
        Ok(self.beam_search(indices, values, params, allowed, scratch))
    }

    /// Predicts every row of `x` in parallel: an `n_rows x n_labels` matrix holding each row's
    /// best `topk` labels with their scores.
    pub fn predict(&self, x: &CsrMatrix, params: &PredictParams) -> Result<CsrMatrix> {
        if x.n_cols != self.n_features {
            return Err(Error::InvalidInput(format!(
                "X has {} columns, the model {} features",
                x.n_cols, self.n_features
            )));
        }
        let rows: Vec<usize> = (0..x.n_rows()).collect();
        let out: Vec<(Vec<u32>, Vec<f32>)> = rows
            .par_iter()
            .map_init(PredictScratch::default, |scratch, &r| {
                let (idx, val) = x.row(r);
                let mut found = self.beam_search(idx, val, params, None, scratch);
                found.sort_unstable_by_key(|&(label, _)| label);
                found.into_iter().unzip()
            })
            .collect();
        Ok(CsrMatrix::from_rows(self.n_labels(), out))
    }

    fn beam_search(
        &self,
        indices: &[u32],
        values: &[f32],
        params: &PredictParams,
        allowed: Option<(u32, u32)>,
        s: &mut PredictScratch,
    ) -> Vec<(u32, f32)> {
        if params.topk == 0 {
            return Vec::new();
        }
        let depth = self.tree.depth();
        s.beam.clear();
        s.beam.push((0, 1.0));
        for l in 0..depth {
            let last = l + 1 == depth;
            let (biases, scorer) = (&self.biases[l], &self.scorers[l]);
            s.candidates.clear();
            for &(parent, score) in &s.beam {
                let children = self.tree.children(l, parent as usize);
                s.child_scores.clear();
                s.child_scores
                    .extend(biases[children.clone()].iter().map(|b| b * self.bias));
                scorer.add_scores(parent as usize, indices, values, &mut s.child_scores);
                // Under a node whose labels are all allowed, every child is.
                let check = allowed.filter(|&(lo, hi)| {
                    l == 0 || !self.labels_all_in(l - 1, parent as usize, lo, hi)
                });
                for (c, &z) in children.zip(&s.child_scores) {
                    if let Some((lo, hi)) = check {
                        if !self.holds_label_in(l, c, lo, hi) {
                            continue;
                        }
                    }
                    s.candidates
                        .push((c as u32, score * params.post_processor.apply(z)));
                }
            }
            let keep = if last {
                params.topk
            } else {
                params.beam_size.max(1)
            };
            let by_score = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
            if s.candidates.len() > keep {
                s.candidates.select_nth_unstable_by(keep - 1, by_score);
                s.candidates.truncate(keep);
            }
            s.candidates.sort_unstable_by(by_score);
            std::mem::swap(&mut s.beam, &mut s.candidates);
        }
        s.beam
            .iter()
            .map(|&(leaf, score)| (self.tree.label_of_leaf(leaf as usize), score))
            .collect()
    }

    /// Builds now what the first prediction with a label range would otherwise build (the labels
    /// under each node), so that no query pays for it. Idempotent.
    pub fn prepare_label_ranges(&self) {
        self.subtree_labels();
    }

    /// Whether node `c` of level `l` has a label with id in `lo..hi` under it.
    fn holds_label_in(&self, l: usize, c: usize, lo: u32, hi: u32) -> bool {
        if l + 1 == self.tree.depth() {
            let label = self.tree.label_of_leaf(c);
            return lo <= label && label < hi;
        }
        self.subtree_labels()[l].holds_in(c, lo, hi)
    }

    /// Whether every label under node `c` of level `l` (not the last) has an id in `lo..hi`.
    fn labels_all_in(&self, l: usize, c: usize, lo: u32, hi: u32) -> bool {
        self.subtree_labels()[l].all_in(c, lo, hi)
    }

    /// Per level but the last, the labels under each node (built at the first need).
    fn subtree_labels(&self) -> &[NodeLabels] {
        self.subtree_labels
            .get_or_init(|| self.build_subtree_labels())
    }

    fn build_subtree_labels(&self) -> Vec<NodeLabels> {
        (0..self.tree.depth() - 1)
            .map(|l| NodeLabels::new(&self.tree.ancestors_at(l), self.tree.n_nodes(l)))
            .collect()
    }
}
