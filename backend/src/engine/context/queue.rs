//! The queue of a busy context: user messages waiting for their turn, in the order they
//! will run. Each is already stored in the queue table; only its move into the history
//! goes through a save.

use super::LiveContext;
use crate::store::QueuedRecord;
use chatsync_protocol::MessageStatus;
use std::sync::Arc;
use uuid::Uuid;

impl LiveContext {
    /// The messages waiting for their turn, in the order they will run.
    pub fn queued(&self) -> &[QueuedRecord] {
        &self.queued
    }

    /// Takes the queue the store holds, as stored (it is no change of this process).
    pub fn restore_queued(&mut self, queued: Vec<QueuedRecord>) {
        self.queued = queued;
    }

    /// Makes the queue what the store holds: messages another instance queued join it at
    /// the end (in the store's order; an interrupting one first), and what another instance
    /// ran or dropped leaves it; the rest keeps its place. True when it changed.
    pub fn sync_queued(&mut self, stored: Vec<QueuedRecord>) -> bool {
        let tree = &self.tree;
        let waiting: Vec<QueuedRecord> = stored
            .into_iter()
            .filter(|q| tree.rank(q.message.id).is_none())
            .collect();
        let before = self.queued.len();
        self.queued
            .retain(|held| waiting.iter().any(|q| q.message.id == held.message.id));
        let mut changed = self.queued.len() != before;
        for mut q in waiting {
            if !self
                .queued
                .iter()
                .any(|held| held.message.id == q.message.id)
            {
                // Stamped with this writer's next version.
                Arc::make_mut(&mut q.message).version = 0;
                self.enqueue(q);
                changed = true;
            }
        }
        self.unpublished.touch_queue(changed);
        changed
    }

    /// Adds a stored queued message: last, or (an interrupting one) ahead of every other.
    pub fn enqueue(&mut self, queued: QueuedRecord) {
        let at = if queued.ahead { 0 } else { self.queued.len() };
        self.queued.insert(at, queued);
        self.unpublished.touch_queue(true);
    }

    /// Drops a queued message; `false` when it is not queued.
    pub fn remove_queued(&mut self, id: Uuid) -> bool {
        let before = self.queued.len();
        self.queued.retain(|q| q.message.id != id);
        let removed = self.queued.len() != before;
        self.unpublished.touch_queue(removed);
        removed
    }

    /// The queued message an earlier send with this client id or idempotency key created.
    pub fn find_queued(&self, client_message_id: Option<&str>, key: Option<&str>) -> Option<Uuid> {
        self.queued
            .iter()
            .find(|q| q.sent_as(client_message_id, key))
            .map(|q| q.message.id)
    }

    /// Moves the first queued message into the history, as the user message of the turn
    /// that starts now (with the options it was sent with); the next save takes it off the
    /// stored queue.
    pub fn start_next_queued(&mut self) -> Option<usize> {
        if self.queued.is_empty() {
            return None;
        }
        let next = self.queued.remove(0);
        self.unpublished.touch_queue(true);
        self.unpublished.dequeue(next.message.id);
        self.set_turn_options(next.turn);
        let mut message = Arc::unwrap_or_clone(next.message);
        message.status = MessageStatus::Complete;
        Some(self.push(message, next.idempotency_key))
    }
}
