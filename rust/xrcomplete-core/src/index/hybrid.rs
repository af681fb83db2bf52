//! The trie-tree hybrid: the trie of the label strings for the top levels, hierarchical k-means
//! inside every trie node below that holds more than `max_leaf_size` labels.
//!
//! The trie makes short prefixes cheap to route (its top levels split by first characters); the
//! k-means levels keep large trie nodes from becoming one flat, slow and inaccurate cluster.
//! Subtrees of different depths are padded with single-child levels above the labels, so that all
//! leaves sit at one depth.

use rayon::prelude::*;

use super::kmeans::{self, KMeansParams};
use super::trie::{self, TrieLevels};
use super::LabelTree;
use crate::error::{Error, Result};
use crate::sparse::CsrMatrix;

/// Builds the tree over `labels` (label `j` is `labels[j]`, its embedding row `j` of
/// `embeddings`): `trie_depth` trie levels, then k-means with `params` inside each large group.
pub fn build<S: AsRef<str> + Send>(
    labels: &[S],
    embeddings: &CsrMatrix,
    trie_depth: usize,
    params: &KMeansParams,
) -> Result<LabelTree> {
    params.check()?;
    if embeddings.n_rows() != labels.len() {
        return Err(Error::InvalidInput(format!(
            "{} labels but {} embedding rows",
            labels.len(),
            embeddings.n_rows()
        )));
    }
    let TrieLevels {
        mut child_ptr,
        groups,
        leaf_labels,
    } = trie::levels(labels, trie_depth)?;
    // Each group's subtree: child pointers below the group (labels level last), labels in order.
    let subtrees: Vec<(Vec<Vec<u32>>, Vec<u32>)> = groups
        .par_iter()
        .map(|&(lo, hi)| {
            let members = leaf_labels[lo as usize..hi as usize].to_vec();
            if members.len() > params.max_leaf_size {
                kmeans::cluster(embeddings, members, params)
            } else {
                Ok((vec![vec![0, members.len() as u32]], members))
            }
        })
        .collect::<Result<_>>()?;
    let depth = subtrees.iter().map(|s| s.0.len()).max().expect("a group");
    let mut leaves = Vec::with_capacity(leaf_labels.len());
    let mut padded: Vec<Vec<Vec<u32>>> = Vec::with_capacity(subtrees.len());
    for (mut levels, labels) in subtrees {
        // Single-child levels above the labels: one per missing level, over the last clusters.
        let last_parents = levels[levels.len() - 1].len() - 1;
        let identity: Vec<u32> = (0..=last_parents as u32).collect();
        while levels.len() < depth {
            levels.insert(levels.len() - 1, identity.clone());
        }
        padded.push(levels);
        leaves.extend(labels);
    }
    for j in 0..depth {
        let mut ptr = vec![0u32];
        for levels in &padded {
            let base = ptr[ptr.len() - 1];
            ptr.extend(levels[j][1..].iter().map(|&p| base + p));
        }
        child_ptr.push(ptr);
    }
    LabelTree::new(child_ptr, leaves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn embeddings(n: usize) -> CsrMatrix {
        CsrMatrix::from_rows(6, (0..n).map(|j| (vec![(j % 6) as u32], vec![1.0])))
    }

    #[test]
    fn large_trie_groups_are_clustered_small_ones_padded() {
        // Group "a" holds 40 labels, group "b" 3.
        let mut labels: Vec<String> = (0..40).map(|i| format!("a{i:02}")).collect();
        labels.extend(["b1", "b2", "b3"].map(String::from));
        let params = KMeansParams {
            branching: 2,
            max_leaf_size: 8,
            ..KMeansParams::default()
        };
        let tree = build(&labels, &embeddings(labels.len()), 1, &params).unwrap();
        assert_eq!(tree.n_nodes(0), 2); // the trie level: "a", "b"
        assert!(tree.depth() > 2); // k-means levels under "a"
                                   // Group "b" reaches the labels through single-child levels.
        let b_labels: Vec<u32> = tree.leaf_labels()[40..].to_vec();
        assert_eq!(b_labels, [40, 41, 42]);
        let top = tree.ancestors_at(0);
        assert!(top[..40].iter().all(|&n| n == 0) && top[40..].iter().all(|&n| n == 1));
        assert!(build(&labels, &embeddings(3), 1, &params).is_err());
    }

    proptest! {
        #[test]
        fn every_label_is_a_leaf_once_and_trie_groups_stay_together(
            labels in prop::collection::btree_set("[abc]{1,4}", 1..80),
            trie_depth in 0usize..3,
            leaf in 1usize..10,
        ) {
            let labels: Vec<String> = labels.into_iter().collect();
            let params = KMeansParams { branching: 2, max_leaf_size: leaf, max_iter: 3, seed: 1 };
            let tree = build(&labels, &embeddings(labels.len()), trie_depth, &params).unwrap();
            let mut seen = tree.leaf_labels().to_vec();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..labels.len() as u32).collect::<Vec<_>>());
            // Under a top-level node, all labels share their first character when the trie
            // splits at least once.
            if trie_depth >= 1 && tree.depth() >= 2 {
                let top = tree.ancestors_at(0);
                for (j, a) in labels.iter().enumerate() {
                    for (k, b) in labels.iter().enumerate() {
                        if top[j] == top[k] && labels.len() > 1 {
                            let first_a = a.chars().next();
                            let first_b = b.chars().next();
                            let root_branches = labels.iter().any(|l| l.chars().next() != first_a);
                            prop_assert!(!root_branches || first_a == first_b, "{} {}", a, b);
                        }
                    }
                }
            }
        }
    }
}
