//! A label tree from the trie of the label strings.
//!
//! Level `l` holds the trie nodes `l` branchings below the root (unary chains are already
//! compressed by the [`Trie`]); children keep key order. A label that ends where others go on
//! (e.g. "ho" beside "hotels") becomes a child of its own, since labels must be leaves. Below
//! `max_depth` levels, the labels of a node are grouped under it. Paths that end earlier are
//! padded with single-child levels, so that all leaves sit at one depth, as the reference code
//! does. Leaves are in key order: the labels under any node form one range of leaves.
//!
//! A node of the last trie level that holds more than `max_group` labels is cut into runs of
//! consecutive labels (of near-equal sizes, at most `max_group`), siblings under its parent. A
//! node's labels are trained against each other (one model per child, on the rows of all of
//! them), so an uncut group of `g` labels costs about `g^2`; groups grow with the log (under the
//! same 8 characters, a log of four times the queries holds groups four times larger), runs keep
//! the cost linear, as PECOS's `max_leaf_size` keeps its clusters small.

use super::LabelTree;
use crate::error::{Error, Result};
use crate::trie::Trie;

/// A group of labels on the way down: a trie node that may still branch, or a fixed range.
#[derive(Debug, Clone, Copy)]
enum Group {
    Node(usize),
    Fixed(u32, u32),
}

/// Builds the tree over `labels` (label `j` is `labels[j]`; all distinct and non-empty), with
/// at most `max_depth` levels of trie nodes above the labels, and groups of at most `max_group`
/// labels below them (where there is a trie level to cut them under).
pub fn build<S: AsRef<str> + Send>(
    labels: &[S],
    max_depth: usize,
    max_group: usize,
) -> Result<LabelTree> {
    if max_group == 0 {
        return Err(Error::InvalidInput(
            "max_leaf_size (the largest group under a trie node) must be >= 1".into(),
        ));
    }
    let TrieLevels {
        mut child_ptr,
        mut groups,
        leaf_labels,
    } = levels(labels, max_depth)?;
    if let Some(last) = child_ptr.last_mut() {
        (*last, groups) = cut_groups(last, &groups, max_group);
    }
    // The labels under each group of the last level, in key order.
    let mut ptr = vec![0u32];
    ptr.extend(groups.iter().map(|g| g.1));
    child_ptr.push(ptr);
    LabelTree::new(child_ptr, leaf_labels)
}

/// The groups (leaf ranges) of the last trie level, whose parents' child pointers are `ptr`, with
/// every group of more than `max_group` labels cut into near-equal runs: the new pointers and
/// groups.
fn cut_groups(ptr: &[u32], groups: &[(u32, u32)], max_group: usize) -> (Vec<u32>, Vec<(u32, u32)>) {
    let mut new_ptr = Vec::with_capacity(ptr.len());
    let mut new_groups = Vec::with_capacity(groups.len());
    new_ptr.push(0);
    for w in ptr.windows(2) {
        for &(lo, hi) in &groups[w[0] as usize..w[1] as usize] {
            let size = (hi - lo) as usize;
            let runs = size.div_ceil(max_group);
            for r in 0..runs {
                let at = |r: usize| lo + (size * r / runs) as u32;
                new_groups.push((at(r), at(r + 1)));
            }
        }
        new_ptr.push(new_groups.len() as u32);
    }
    (new_ptr, new_groups)
}

/// The trie levels above the labels.
pub(crate) struct TrieLevels {
    /// Child pointers of each trie level.
    pub child_ptr: Vec<Vec<u32>>,
    /// The nodes of the last trie level (the root when there is none), as leaf ranges.
    pub groups: Vec<(u32, u32)>,
    /// Leaf position (key order) -> label id.
    pub leaf_labels: Vec<u32>,
}

/// Expands the trie of `labels` level by level, at most `max_depth` times.
pub(crate) fn levels<S: AsRef<str> + Send>(labels: &[S], max_depth: usize) -> Result<TrieLevels> {
    if labels.is_empty() {
        return Err(Error::InvalidInput(
            "a label tree needs at least one label".into(),
        ));
    }
    let trie = Trie::new(labels.iter().map(|l| (l.as_ref(), 1.0)))?;
    if trie.len() != labels.len() {
        return Err(Error::InvalidInput(format!(
            "labels must be distinct: {} labels but {} distinct strings",
            labels.len(),
            trie.len()
        )));
    }
    // Leaf positions are trie ids; leaf_labels maps them back to the caller's label ids.
    let mut leaf_labels = vec![0u32; labels.len()];
    for (j, label) in labels.iter().enumerate() {
        let id = trie.id(label.as_ref()).expect("every label is in the trie");
        leaf_labels[id as usize] = j as u32;
    }
    let range = |g: Group| match g {
        Group::Node(n) => trie.node_range(n),
        Group::Fixed(lo, hi) => (lo, hi),
    };
    let mut child_ptr: Vec<Vec<u32>> = Vec::new();
    let mut frontier = vec![Group::Node(trie.root())];
    for _ in 0..max_depth {
        let mut next = Vec::with_capacity(frontier.len());
        let mut ptr = vec![0u32];
        let mut branched = false;
        for &g in &frontier {
            match g {
                Group::Node(n) if trie.node_range(n).1 - trie.node_range(n).0 > 1 => {
                    let (lo, _) = trie.node_range(n);
                    if trie.node_is_key(n) {
                        next.push(Group::Fixed(lo, lo + 1));
                    }
                    next.extend(trie.node_children(n).map(Group::Node));
                    branched = true;
                }
                // A single label, or a fixed group: one child, itself (padding).
                _ => next.push(g),
            }
            ptr.push(next.len() as u32);
        }
        if !branched {
            break;
        }
        child_ptr.push(ptr);
        frontier = next;
    }
    Ok(TrieLevels {
        child_ptr,
        groups: frontier.into_iter().map(range).collect(),
        leaf_labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_small_trie() {
        // Sorted: ab, abc, abd, b   -> root: "ab"(3 labels), "b"; "ab": key ab, then c, d.
        let labels = ["b", "abd", "ab", "abc"];
        let tree = build(&labels, 4, 100).unwrap();
        assert_eq!(tree.depth(), 3);
        assert_eq!(tree.n_nodes(0), 2);
        assert_eq!(tree.children(1, 0).len(), 3); // "ab" itself, "abc", "abd"
        assert_eq!(tree.children(1, 1).len(), 1); // "b", padded
        let leaves: Vec<&str> = (0..4)
            .map(|i| labels[tree.label_of_leaf(i) as usize])
            .collect();
        assert_eq!(leaves, ["ab", "abc", "abd", "b"]);
    }

    #[test]
    fn the_depth_cap_groups_labels() {
        let labels = ["aaa", "aab", "aba", "abb", "b"];
        let tree = build(&labels, 1, 100).unwrap();
        assert_eq!(tree.depth(), 2);
        assert_eq!(tree.n_nodes(0), 2);
        assert_eq!(tree.children(1, 0).len(), 4);
        assert!(build(&["a", "a"], 3, 100).is_err());
        assert!(build(&Vec::<String>::new(), 3, 100).is_err());
        assert!(build(&["a", ""], 3, 100).is_err());
        assert!(build(&labels, 1, 0).is_err());
        // max_depth 0: a flat tree over the labels in key order.
        assert_eq!(build(&labels, 0, 100).unwrap().depth(), 1);
    }

    #[test]
    fn large_groups_are_cut_into_runs_under_their_parent() {
        // "a..." holds 4 labels under the depth cap, "b" one: with groups of at most 3, "a..."
        // becomes two runs of 2, siblings under the root.
        let labels = ["aaa", "aab", "aba", "abb", "b"];
        let tree = build(&labels, 1, 3).unwrap();
        assert_eq!(tree.depth(), 2);
        assert_eq!(tree.n_nodes(0), 3);
        assert_eq!(tree.children(1, 0), 0..2);
        assert_eq!(tree.children(1, 1), 2..4);
        assert_eq!(tree.children(1, 2), 4..5);
        // Runs of near-equal sizes: 7 labels in groups of at most 3 are 2 + 2 + 3.
        let seven = ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "b"];
        let tree = build(&seven, 1, 3).unwrap();
        let sizes: Vec<usize> = (0..tree.n_nodes(0))
            .map(|c| tree.children(1, c).len())
            .collect();
        assert_eq!(sizes, [2, 2, 3, 1]);
    }

    proptest! {
        #[test]
        fn leaves_are_in_key_order_and_the_depth_is_capped(
            labels in prop::collection::btree_set("[ab]{1,5}", 1..40),
            depth in 0usize..6,
            max_group in 1usize..8,
        ) {
            let labels: Vec<String> = labels.into_iter().rev().collect(); // not sorted
            let tree = build(&labels, depth, max_group).unwrap();
            let leaves: Vec<&String> =
                (0..labels.len()).map(|i| &labels[tree.label_of_leaf(i) as usize]).collect();
            prop_assert!(leaves.windows(2).all(|w| w[0] < w[1]));
            // Every cluster of the last level holds at least one label.
            let last = tree.depth() - 1;
            for p in 0..if last == 0 { 1 } else { tree.n_nodes(last - 1) } {
                let r = tree.children(last, p);
                prop_assert!(!r.is_empty());
                // Groups are cut where there is a trie level above them.
                prop_assert!(last == 0 || r.len() <= max_group);
            }
            prop_assert!(tree.depth() <= depth + 1);
        }
    }
}
