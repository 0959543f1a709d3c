//! The shape of a context's message tree: who is whose parent, in insertion order.
//!
//! Architecture Invariant: pure. It knows message ids and parent links only, does no I/O,
//! and is tested natively. The context keeps the messages themselves; this module answers
//! which of them form the active path and how siblings are numbered.

use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    id: Uuid,
    parent: Option<usize>,
    /// Children in insertion order (so the last is the newest).
    children: Vec<usize>,
    /// Distance from the root: a node on the active path sits at this index of the path.
    depth: usize,
    /// Index among the parent's children.
    sibling_index: usize,
}

/// A message that names a parent the tree does not hold (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message {id} names parent {parent}, which comes nowhere before it")]
pub struct UnknownParent {
    pub id: Uuid,
    pub parent: Uuid,
}

/// Messages as a tree. Nodes are numbered by insertion order (their *rank*), which never
/// changes once given, so callers may key their own per-message data by rank.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: Vec<Node>,
    ranks: HashMap<Uuid, usize>,
    /// Messages without a parent, in insertion order (siblings of one another).
    roots: Vec<usize>,
}

impl Tree {
    /// Adds the newest message under `parent` (`None`: a root); returns its rank.
    pub fn push(&mut self, id: Uuid, parent: Option<Uuid>) -> Result<usize, UnknownParent> {
        let parent_rank = match parent {
            None => None,
            Some(p) => Some(*self.ranks.get(&p).ok_or(UnknownParent { id, parent: p })?),
        };
        let rank = self.nodes.len();
        let siblings = match parent_rank {
            Some(p) => &mut self.nodes[p].children,
            None => &mut self.roots,
        };
        let sibling_index = siblings.len();
        siblings.push(rank);
        let depth = parent_rank.map_or(0, |p| self.nodes[p].depth + 1);
        self.nodes.push(Node {
            id,
            parent: parent_rank,
            children: Vec::new(),
            depth,
            sibling_index,
        });
        self.ranks.insert(id, rank);
        Ok(rank)
    }

    pub fn rank(&self, id: Uuid) -> Option<usize> {
        self.ranks.get(&id).copied()
    }

    pub fn id(&self, rank: usize) -> Uuid {
        self.nodes[rank].id
    }

    #[cfg(test)]
    pub fn parent(&self, id: Uuid) -> Option<Uuid> {
        let node = &self.nodes[self.rank(id)?];
        node.parent.map(|p| self.nodes[p].id)
    }

    /// Where a message would sit on a path through it (its distance from the root).
    pub fn depth(&self, id: Uuid) -> Option<usize> {
        self.rank(id).map(|r| self.nodes[r].depth)
    }

    /// The newest message of all (by insertion), the end of a chat that never branched.
    pub fn newest(&self) -> Option<Uuid> {
        self.nodes.last().map(|n| n.id)
    }

    /// The messages from the root to `id`, root first; empty for an unknown id.
    pub fn path_to(&self, id: Uuid) -> Vec<Uuid> {
        let mut path = Vec::new();
        let mut at = self.rank(id);
        while let Some(r) = at {
            path.push(self.nodes[r].id);
            at = self.nodes[r].parent;
        }
        path.reverse();
        path
    }

    /// The leaf reached from `id` by following the newest child at every step.
    pub fn newest_leaf(&self, id: Uuid) -> Option<Uuid> {
        let mut r = self.rank(id)?;
        while let Some(&newest) = self.nodes[r].children.last() {
            r = newest;
        }
        Some(self.nodes[r].id)
    }

    /// `(index, count)` of a message among the messages with the same parent, in
    /// insertion order.
    pub fn siblings(&self, id: Uuid) -> Option<(usize, usize)> {
        let node = &self.nodes[self.rank(id)?];
        let count = match node.parent {
            Some(p) => self.nodes[p].children.len(),
            None => self.roots.len(),
        };
        Some((node.sibling_index, count))
    }

    /// The ids of the messages sharing a parent with `id` (itself included).
    pub fn sibling_ids(&self, id: Uuid) -> Vec<Uuid> {
        let Some(node) = self.rank(id).map(|r| &self.nodes[r]) else {
            return Vec::new();
        };
        let group = match node.parent {
            Some(p) => &self.nodes[p].children,
            None => &self.roots,
        };
        group.iter().map(|&r| self.nodes[r].id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: usize) -> Uuid {
        Uuid::from_u128(n as u128 + 1)
    }

    /// A tree from parent choices: node `i` hangs under node `parents[i]` when that is
    /// smaller than `i`, else it is a root.
    fn tree_of(parents: &[usize]) -> Tree {
        let mut tree = Tree::default();
        for (i, &p) in parents.iter().enumerate() {
            let parent = (p < i).then(|| id(p));
            tree.push(id(i), parent).expect("parent exists");
        }
        tree
    }

    #[test]
    fn a_linear_chat_is_one_path() {
        let tree = tree_of(&[0, 0, 1, 2]);
        assert_eq!(tree.path_to(id(3)), vec![id(0), id(1), id(2), id(3)]);
        assert_eq!(tree.newest_leaf(id(0)), Some(id(3)));
        assert_eq!(tree.newest(), Some(id(3)));
        for i in 0..4 {
            assert_eq!(tree.siblings(id(i)), Some((0, 1)));
            assert_eq!(tree.depth(id(i)), Some(i));
        }
    }

    #[test]
    fn an_edit_adds_a_sibling_and_the_newest_child_wins() {
        // 0 user, 1 reply, 2 user, 3 reply; then 4 edits 2 (same parent 1), 5 replies to 4.
        let tree = tree_of(&[0, 0, 1, 2, 1, 4]);
        assert_eq!(tree.siblings(id(2)), Some((0, 2)));
        assert_eq!(tree.siblings(id(4)), Some((1, 2)));
        assert_eq!(tree.newest_leaf(id(0)), Some(id(5)));
        assert_eq!(tree.newest_leaf(id(2)), Some(id(3)));
        assert_eq!(tree.path_to(id(3)), vec![id(0), id(1), id(2), id(3)]);
        assert_eq!(tree.sibling_ids(id(4)), vec![id(2), id(4)]);
        assert_eq!(tree.parent(id(4)), Some(id(1)));
    }

    #[test]
    fn roots_are_siblings_and_unknown_parents_are_refused() {
        let mut tree = tree_of(&[0, 1]);
        assert_eq!(tree.siblings(id(1)), Some((1, 2)));
        assert_eq!(
            tree.push(id(9), Some(id(7))),
            Err(UnknownParent {
                id: id(9),
                parent: id(7)
            })
        );
        assert_eq!(tree.rank(id(9)), None);
        assert!(tree.path_to(id(7)).is_empty());
        assert_eq!(tree.newest_leaf(id(7)), None);
    }

    fn parents() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(any::<prop::sample::Index>(), 1..60).prop_map(|picks| {
            picks
                .iter()
                .enumerate()
                // i + 1 choices: an earlier node, or i itself (a root).
                .map(|(i, pick)| pick.index(i + 1))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn paths_run_from_a_root_through_parents(parents in parents()) {
            let tree = tree_of(&parents);
            for i in 0..parents.len() {
                let path = tree.path_to(id(i));
                prop_assert_eq!(path.last(), Some(&id(i)));
                prop_assert_eq!(tree.parent(path[0]), None);
                prop_assert_eq!(Some(path.len() - 1), tree.depth(id(i)));
                for pair in path.windows(2) {
                    prop_assert_eq!(tree.parent(pair[1]), Some(pair[0]));
                }
            }
        }

        #[test]
        fn the_newest_leaf_follows_the_newest_child(parents in parents()) {
            let tree = tree_of(&parents);
            for i in 0..parents.len() {
                let leaf = tree.newest_leaf(id(i)).expect("known");
                // A leaf: nothing hangs under it.
                prop_assert!((0..parents.len()).all(|j| tree.parent(id(j)) != Some(leaf)));
                let path = tree.path_to(leaf);
                let from = path.iter().position(|m| *m == id(i)).expect("under it");
                for pair in path[from..].windows(2) {
                    let newest = tree.sibling_ids(pair[1]).last().copied();
                    prop_assert_eq!(newest, Some(pair[1]));
                }
            }
        }

        #[test]
        fn siblings_are_numbered_in_insertion_order(parents in parents()) {
            let tree = tree_of(&parents);
            for i in 0..parents.len() {
                let group = tree.sibling_ids(id(i));
                let (index, count) = tree.siblings(id(i)).expect("known");
                prop_assert_eq!(count, group.len());
                prop_assert_eq!(group.get(index), Some(&id(i)));
                let ranks: Vec<usize> = group.iter().filter_map(|m| tree.rank(*m)).collect();
                prop_assert!(ranks.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
