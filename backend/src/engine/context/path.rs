//! The message tree and the active path: where each message hangs, which path is shown,
//! and the keys earlier sends were made with.

use super::{to_u32, Entry, LiveContext};
use crate::engine::tree::Tree;
use chatsync_protocol::{Message, Role};
use std::sync::Arc;
use uuid::Uuid;

impl LiveContext {
    /// The last message of the active path.
    pub fn leaf(&self) -> Option<Uuid> {
        self.messages.last().map(|m| m.id)
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Makes the path to `leaf` (`None`: the empty path) the active one; `false` when it
    /// already is. Nothing is written but the context row: the messages stay as they are.
    pub fn switch_path(&mut self, leaf: Option<Uuid>) -> bool {
        if leaf == self.leaf() || leaf.is_some_and(|l| self.tree.rank(l).is_none()) {
            return false;
        }
        self.rebuild_path(leaf);
        self.unpublished.touch_path();
        self.unpublished.touch_record();
        true
    }

    pub(super) fn rebuild_path(&mut self, leaf: Option<Uuid>) {
        self.seal_stream();
        for m in self.messages.iter() {
            self.off_path.insert(m.id, m.clone());
        }
        let path = leaf.map(|l| self.tree.path_to(l)).unwrap_or_default();
        self.messages = path
            .iter()
            .filter_map(|id| self.off_path.remove(id))
            .collect();
    }

    /// Where the message of this rank sits on the active path, if it is on it.
    pub(super) fn path_index(&self, rank: usize) -> Option<usize> {
        let id = self.tree.id(rank);
        let depth = self.tree.depth(id)?;
        self.messages
            .get(depth)
            .is_some_and(|m| m.id == id)
            .then_some(depth)
    }

    pub(super) fn by_rank(&self, rank: usize) -> Option<&Arc<Message>> {
        match self.path_index(rank) {
            Some(index) => self.messages.get(index),
            None => self.off_path.get(&self.tree.id(rank)),
        }
    }

    pub(super) fn by_rank_mut(&mut self, rank: usize) -> Option<&mut Message> {
        match self.path_index(rank) {
            Some(index) => Some(self.messages.make_mut(index)),
            None => self
                .off_path
                .get_mut(&self.tree.id(rank))
                .map(Arc::make_mut),
        }
    }

    /// Puts a message at the end of the active path, under the current leaf, with its
    /// place in the tree; returns its rank and path index.
    pub(super) fn attach(
        &mut self,
        mut message: Message,
        seq: u64,
        key: Option<String>,
    ) -> (usize, usize) {
        let parent = self.leaf();
        message.parent_id = parent;
        // The leaf is always in the tree, so the push cannot fail; a root keeps it whole.
        let rank = self
            .tree
            .push(message.id, parent)
            .or_else(|_| self.tree.push(message.id, None))
            .unwrap_or_default();
        let (index, count) = self.tree.siblings(message.id).unwrap_or((0, 1));
        message.sibling_index = to_u32(index);
        message.sibling_count = to_u32(count);
        if count > 1 {
            // Its siblings are all off the path (the path ended at their parent). The count
            // is derived, never stored, so they do not count as changed.
            for sibling in self.tree.sibling_ids(message.id) {
                if let Some(m) = self.off_path.get_mut(&sibling) {
                    Arc::make_mut(m).sibling_count = to_u32(count);
                }
            }
        }
        self.index_keys(rank, &message, key.as_deref());
        self.entries.push(Entry {
            seq,
            idempotency_key: key,
        });
        self.next_seq = self.next_seq.max(seq + 1);
        let index = self.messages.len();
        self.messages.push(Arc::new(message));
        (rank, index)
    }

    pub(super) fn index_keys(&mut self, index: usize, message: &Message, key: Option<&str>) {
        let client = message
            .client_message_id
            .as_deref()
            .map(|c| format!("c:{c}"));
        let idem = key.map(|k| format!("k:{k}"));
        for k in client.into_iter().chain(idem) {
            self.seen_keys.insert(k, index);
        }
    }

    /// The message an earlier send with this client id or idempotency key created.
    pub fn find_sent(&self, client_message_id: Option<&str>, key: Option<&str>) -> Option<usize> {
        let client = client_message_id.and_then(|c| self.seen_keys.get(&format!("c:{c}")));
        let idem = key.and_then(|k| self.seen_keys.get(&format!("k:{k}")));
        client.or(idem).copied()
    }

    /// Appends a message at the end of the active path (a child of the current leaf);
    /// returns its index on the path.
    pub fn push(&mut self, message: Message, idempotency_key: Option<String>) -> usize {
        let (rank, index) = self.attach(message, self.next_seq, idempotency_key);
        self.unpublished.touch_message(rank);
        self.unpublished.touch_record();
        index
    }

    /// Mutable access to one message of the path; it counts as changed. A reply being
    /// streamed gets its text back first.
    pub fn message_mut(&mut self, index: usize) -> &mut Message {
        if self.streaming.as_ref().is_some_and(|s| s.index == index) {
            self.seal_stream();
        }
        self.changed(index);
        self.messages.make_mut(index)
    }

    pub(super) fn changed(&mut self, index: usize) {
        if let Some(rank) = self.tree.rank(self.messages[index].id) {
            self.unpublished.touch_message(rank);
        }
    }

    /// The last assistant message that carries tool calls, if the conversation ends in it
    /// or its results.
    pub fn tool_call_message(&self) -> Option<usize> {
        self.messages
            .iter()
            .rposition(|m| m.role != Role::Tool)
            .filter(|&i| self.messages[i].tool_calls.is_some())
    }
}
