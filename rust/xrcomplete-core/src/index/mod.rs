//! Label trees: the labels grouped into nested clusters, all leaves at one depth.
//!
//! A [`LabelTree`] has `depth` levels below the root. Level `l` holds `n_nodes(l)` nodes; the
//! children of a node are contiguous at the next level. The last level's nodes are the leaves,
//! one per label, in the order `leaf_labels` gives. Builders: [`kmeans`] (hierarchical balanced
//! spherical k-means on label embeddings, PECOS's default), [`trie`] (the trie of the label
//! strings, depth-capped) and [`hybrid`] (trie levels on top, k-means inside large trie nodes).

pub mod hybrid;
pub mod kmeans;
pub mod trie;

use std::ops::Range;

use crate::error::{Error, Result};
use crate::persist::{format_err, Array, Reader, Writer};
use crate::sparse::SparseRows;

/// Checks the child pointers of a tree with `n_leaves` leaves: one level at least, each level
/// one pointer per parent plus one, from 0, strictly rising (every node has a child), the last
/// level ending at `n_leaves`.
fn check_levels(child_ptr: &[Array<u32>], n_leaves: usize) -> std::result::Result<(), String> {
    if child_ptr.is_empty() {
        return Err("label tree: at least one level is needed".into());
    }
    let mut n_parents = 1usize;
    for (l, ptr) in child_ptr.iter().enumerate() {
        if ptr.len() != n_parents + 1 || ptr[0] != 0 {
            return Err(format!(
                "label tree: level {l}: {} pointers for {n_parents} parents",
                ptr.len()
            ));
        }
        if ptr.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "label tree: level {l}: every node needs at least one child"
            ));
        }
        n_parents = ptr[n_parents] as usize;
    }
    if n_parents != n_leaves {
        return Err(format!(
            "label tree: {n_parents} leaves but {n_leaves} leaf labels"
        ));
    }
    Ok(())
}

/// Which label tree to build ([`build`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeSpec {
    /// Hierarchical k-means on PIFA embeddings ([`kmeans`]).
    KMeans(kmeans::KMeansParams),
    /// The trie of the label strings, `depth` levels at most ([`trie`]).
    Trie {
        /// Trie levels at most.
        depth: usize,
        /// Labels under a node of the last level at most: larger groups are cut into runs.
        max_group: usize,
    },
    /// `depth` trie levels, then k-means inside large trie nodes ([`hybrid`]).
    Hybrid {
        /// Trie levels on top.
        depth: usize,
        /// Options of the k-means below.
        kmeans: kmeans::KMeansParams,
    },
}

impl TreeSpec {
    /// The trie of `depth` levels at most, with groups of at most 100 labels below them (as
    /// k-means leaves: PECOS's `max_leaf_size`).
    pub fn trie(depth: usize) -> Self {
        TreeSpec::Trie {
            depth,
            max_group: 100,
        }
    }
}

/// Builds the tree `spec` names over the labels (columns of `y`; `labels[j]` is the string of
/// label `j`, needed by the trie and hybrid trees, ignored by k-means), from the instances `x`
/// (rows x features) and their labels `y` (rows x labels).
pub fn build<S: AsRef<str> + Send + Sync>(
    spec: &TreeSpec,
    labels: &[S],
    x: &dyn SparseRows,
    y: &dyn SparseRows,
) -> Result<LabelTree> {
    if !matches!(spec, TreeSpec::KMeans(_)) && labels.len() != y.n_cols() {
        return Err(Error::InvalidInput(format!(
            "{} label strings for {} label columns",
            labels.len(),
            y.n_cols()
        )));
    }
    build_with(spec, labels, &|| kmeans::pifa(x, y))
}

/// [`build`], with the PIFA embeddings of the labels from `pifa` (called when the tree needs
/// them: not for a trie).
pub fn build_with<S: AsRef<str> + Send + Sync>(
    spec: &TreeSpec,
    labels: &[S],
    pifa: &dyn Fn() -> Result<crate::sparse::CsrMatrix>,
) -> Result<LabelTree> {
    match spec {
        TreeSpec::KMeans(params) => kmeans::build(&pifa()?, params),
        TreeSpec::Trie { depth, max_group } => trie::build(labels, *depth, *max_group),
        TreeSpec::Hybrid {
            depth,
            kmeans: params,
        } => hybrid::build(labels, &pifa()?, *depth, params),
    }
}

/// Clusters of labels in levels; the last level's nodes are the labels.
///
/// ```
/// use xrcomplete_core::index::LabelTree;
/// // root -> 2 clusters -> 3 labels (label 2 in the first cluster, labels 0 and 1 in the second)
/// let tree = LabelTree::new(vec![vec![0, 2], vec![0, 1, 3]], vec![2, 0, 1])?;
/// assert_eq!(tree.depth(), 2);
/// assert_eq!(tree.children(1, 1), 1..3);
/// assert_eq!(tree.label_of_leaf(0), 2);
/// # Ok::<(), xrcomplete_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTree {
    /// `child_ptr[l][p]..child_ptr[l][p + 1]`: the children, at level `l`, of node `p` at level
    /// `l - 1` (for `l = 0`, of the root: `child_ptr[0] = [0, n_0]`).
    child_ptr: Vec<Array<u32>>,
    /// Leaf position -> label id.
    leaf_labels: Array<u32>,
    /// Label id -> leaf position.
    label_leaves: Array<u32>,
}

impl LabelTree {
    /// Builds from the child pointers of each level and the label of each leaf, checking that
    /// every level is well formed, every node has a child, and `leaf_labels` is a permutation.
    pub fn new(child_ptr: Vec<Vec<u32>>, leaf_labels: Vec<u32>) -> Result<Self> {
        let child_ptr: Vec<Array<u32>> = child_ptr.into_iter().map(Array::from).collect();
        check_levels(&child_ptr, leaf_labels.len()).map_err(Error::InvalidInput)?;
        let mut label_leaves = vec![u32::MAX; leaf_labels.len()];
        for (leaf, &label) in leaf_labels.iter().enumerate() {
            match label_leaves.get_mut(label as usize) {
                Some(slot) if *slot == u32::MAX => *slot = leaf as u32,
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "label tree: leaf labels are not a permutation (label {label})"
                    )))
                }
            }
        }
        Ok(LabelTree {
            child_ptr,
            leaf_labels: leaf_labels.into(),
            label_leaves: label_leaves.into(),
        })
    }

    /// Sections `tree{l}` per level, `leaves` and `leafof` (none where every leaf holds the
    /// label of its own number, as in a trie's tree over sorted labels).
    pub(crate) fn write<'a>(&'a self, w: &mut Writer<'a>) {
        for (l, ptr) in self.child_ptr.iter().enumerate() {
            w.array(&format!("tree{l}"), ptr);
        }
        if !self.in_label_order() {
            w.array("leaves", &self.leaf_labels)
                .array("leafof", &self.label_leaves);
        }
    }

    /// Whether leaf `i` holds label `i` for every `i`.
    fn in_label_order(&self) -> bool {
        self.leaf_labels
            .iter()
            .enumerate()
            .all(|(i, &l)| i == l as usize)
    }

    /// Reads the `depth` levels written by [`LabelTree::write`], checking them as [`LabelTree::new`]
    /// does; the two permutations are checked to be inverse without building either.
    pub(crate) fn read(r: &Reader, depth: usize) -> Result<Self> {
        // A model file holds a bias per leaf at least: a count past that is not to be believed.
        Self::read_bounded(r, depth, r.file_len() / 4)
    }

    /// [`LabelTree::read`] of a tree of at most `max_leaves` leaves in label order (a file
    /// that holds no array per leaf, like a training job of a few rows, says how many).
    pub(crate) fn read_bounded(r: &Reader, depth: usize, max_leaves: usize) -> Result<Self> {
        let child_ptr = (0..depth)
            .map(|l| r.array(&format!("tree{l}")))
            .collect::<Result<Vec<Array<u32>>>>()?;
        let (leaf_labels, label_leaves): (Array<u32>, Array<u32>) = if r.has("leaves") {
            (r.array("leaves")?, r.array("leafof")?)
        } else {
            // Leaves in label order: the identity, of as many labels as the last level's nodes.
            let n = child_ptr
                .last()
                .and_then(|ptr| ptr.last())
                .map_or(0, |&n| n);
            if n as usize > max_leaves {
                return Err(format_err(format!(
                    "label tree: {n} leaves in a file of {} bytes",
                    r.file_len()
                )));
            }
            let identity: Vec<u32> = (0..n).collect();
            (identity.clone().into(), identity.into())
        };
        check_levels(&child_ptr, leaf_labels.len()).map_err(format_err)?;
        let inverse = label_leaves.len() == leaf_labels.len()
            && leaf_labels
                .iter()
                .enumerate()
                .all(|(leaf, &label)| label_leaves.get(label as usize) == Some(&(leaf as u32)));
        if !inverse {
            return Err(format_err("label tree: leaf labels are not a permutation"));
        }
        Ok(LabelTree {
            child_ptr,
            leaf_labels,
            label_leaves,
        })
    }

    /// A one-level tree: the root's children are the labels, in id order.
    pub fn flat(n_labels: usize) -> Result<Self> {
        Self::new(
            vec![vec![0, n_labels as u32]],
            (0..n_labels as u32).collect(),
        )
    }

    /// Number of levels below the root (the last one holds the labels).
    pub fn depth(&self) -> usize {
        self.child_ptr.len()
    }

    /// Number of labels (leaves).
    pub fn n_labels(&self) -> usize {
        self.leaf_labels.len()
    }

    /// Number of nodes at level `l`.
    pub fn n_nodes(&self, l: usize) -> usize {
        *self.child_ptr[l].last().expect("non-empty") as usize
    }

    /// The children (node ids at level `l`) of node `parent` at level `l - 1` (the root for 0).
    pub fn children(&self, l: usize, parent: usize) -> Range<usize> {
        let ptr = &self.child_ptr[l];
        ptr[parent] as usize..ptr[parent + 1] as usize
    }

    /// The child pointers of level `l`.
    pub fn child_ptr(&self, l: usize) -> &[u32] {
        &self.child_ptr[l]
    }

    /// The parent (at level `l - 1`) of every node at level `l` (all 0 for `l = 0`).
    pub fn parents(&self, l: usize) -> Vec<u32> {
        let ptr = &self.child_ptr[l];
        let mut out = vec![0u32; self.n_nodes(l)];
        for p in 0..ptr.len() - 1 {
            out[ptr[p] as usize..ptr[p + 1] as usize].fill(p as u32);
        }
        out
    }

    /// The label of leaf `leaf`.
    pub fn label_of_leaf(&self, leaf: usize) -> u32 {
        self.leaf_labels[leaf]
    }

    /// The leaf of label `label`.
    pub fn leaf_of_label(&self, label: usize) -> u32 {
        self.label_leaves[label]
    }

    /// The labels of the leaves, in leaf order.
    pub fn leaf_labels(&self) -> &[u32] {
        &self.leaf_labels
    }

    /// For every label, its ancestor at level `l` (the leaf itself at the last level).
    pub fn ancestors_at(&self, l: usize) -> Vec<u32> {
        let mut node: Vec<u32> = self.label_leaves.to_vec();
        for level in (l + 1..self.depth()).rev() {
            let parents = self.parents(level);
            node.iter_mut().for_each(|n| *n = parents[*n as usize]);
        }
        node
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{Buffer, Kind};

    /// A tree written alone (as an XR-Linear file's tree sections) and read back.
    fn round_trip(tree: &LabelTree) -> (Result<LabelTree>, bool) {
        let mut w = Writer::new(Kind::XrLinear);
        tree.write(&mut w);
        let r = Reader::new(&Buffer::copy_from(&w.finish()), Kind::XrLinear).unwrap();
        (LabelTree::read(&r, tree.depth()), r.has("leaves"))
    }

    #[test]
    fn leaves_in_label_order_are_not_written_and_read_back_the_same() {
        let ordered = LabelTree::new(vec![vec![0, 2], vec![0, 2, 3]], vec![0, 1, 2]).unwrap();
        let (back, stored) = round_trip(&ordered);
        assert_eq!(back.unwrap(), ordered);
        assert!(!stored);
        let permuted = LabelTree::new(vec![vec![0, 2], vec![0, 2, 3]], vec![2, 0, 1]).unwrap();
        let (back, stored) = round_trip(&permuted);
        assert_eq!(back.unwrap(), permuted);
        assert!(stored);
        // Without the leaves, a leaf count the file cannot hold is an error, not an allocation.
        let huge = LabelTree {
            child_ptr: vec![Array::from(vec![0, u32::MAX])],
            leaf_labels: Array::default(),
            label_leaves: Array::default(),
        };
        assert!(round_trip(&huge).0.is_err());
    }

    #[test]
    fn malformed_trees_are_rejected() {
        assert!(LabelTree::new(vec![], vec![]).is_err());
        assert!(LabelTree::new(vec![vec![0, 2]], vec![0]).is_err()); // 2 leaves, 1 label
        assert!(LabelTree::new(vec![vec![0, 2]], vec![1, 1]).is_err()); // not a permutation
        assert!(LabelTree::new(vec![vec![0, 2]], vec![0, 2]).is_err()); // label out of range
        assert!(LabelTree::new(vec![vec![0, 2], vec![0, 0, 2]], vec![0, 1]).is_err()); // childless
        assert!(LabelTree::new(vec![vec![1, 2]], vec![0, 1]).is_err());
    }

    #[test]
    fn ancestors_and_parents() {
        let t = LabelTree::new(vec![vec![0, 2], vec![0, 1, 3]], vec![2, 0, 1]).unwrap();
        assert_eq!(t.parents(1), [0, 1, 1]);
        assert_eq!(t.ancestors_at(0), [1, 1, 0]); // labels 0, 1 under cluster 1; label 2 under 0
        assert_eq!(t.ancestors_at(1), [1, 2, 0]);
        assert_eq!(t.leaf_of_label(2), 0);
        let flat = LabelTree::flat(4).unwrap();
        assert_eq!((flat.depth(), flat.children(0, 0)), (1, 0..4));
    }
}
