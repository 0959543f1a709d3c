//! Versions: what changed since the last publish (version bump) and the last save, the
//! batch a save writes, the version ceiling that keeps a version a client saw from ever
//! naming other content, and the changes another instance saved.

use super::LiveContext;
use crate::store::{ContextRecord, LoadedContext, MessageRecord, SaveBatch};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// How many versions a running turn reserves with each save (`version_ceiling`), so it
/// seldom has to reserve on its own; also how far tool progress may run ahead of the
/// stored version before a save is forced.
pub const MAX_UNSAVED_VERSIONS: u64 = 1000;

#[derive(Debug, Default)]
pub(super) struct Changes {
    record: bool,
    /// Tree ranks of the changed messages (ranks never move, paths do).
    messages: BTreeSet<usize>,
    /// The active path is another one.
    path: bool,
    /// The queue changed (a message arrived or left).
    queue: bool,
    /// Queued messages moved into `messages`: the save deletes their queue rows.
    dequeued: Vec<Uuid>,
}

impl Changes {
    pub(super) fn touch_record(&mut self) {
        self.record = true;
    }

    /// The message of this tree rank changed.
    pub(super) fn touch_message(&mut self, rank: usize) {
        self.messages.insert(rank);
    }

    pub(super) fn touch_path(&mut self) {
        self.path = true;
    }

    pub(super) fn touch_queue(&mut self, changed: bool) {
        self.queue |= changed;
    }

    /// A queued message moved into the history.
    pub(super) fn dequeue(&mut self, id: Uuid) {
        self.dequeued.push(id);
    }

    /// Takes back changes a failed save did not write.
    fn absorb(&mut self, earlier: Changes) {
        self.record |= earlier.record;
        self.messages.extend(earlier.messages);
        self.path |= earlier.path;
        self.queue |= earlier.queue;
        let later = std::mem::replace(&mut self.dequeued, earlier.dequeued);
        self.dequeued.extend(later);
    }

    pub(super) fn is_empty(&self) -> bool {
        !self.record
            && self.messages.is_empty()
            && !self.path
            && !self.queue
            && self.dequeued.is_empty()
    }
}

impl LiveContext {
    /// Applies what another instance saved: the new record and the messages changed after
    /// this context's version. Only for a context with no change of its own pending.
    /// `false` (nothing applied) when the changes do not continue this history: a message
    /// off the path changed, or the path itself moved (edit, regenerate, switch); then the
    /// caller reloads the whole context.
    pub fn apply_changes(&mut self, changes: LoadedContext) -> bool {
        if !self.unpublished.is_empty() || self.has_unsaved() {
            return false;
        }
        self.seal_stream();
        let mut leaf = self.leaf();
        let mut next_seq = self.next_seq;
        for m in &changes.messages {
            match self.tree.rank(m.message.id) {
                Some(rank) if self.path_index(rank).is_some() => {}
                Some(_) => return false,
                None if m.message.parent_id == leaf && m.seq >= next_seq => {
                    leaf = Some(m.message.id);
                    next_seq = m.seq + 1;
                }
                None => return false,
            }
        }
        if changes.record.active_leaf.is_some_and(|l| Some(l) != leaf) {
            return false;
        }
        for m in changes.messages {
            match self
                .tree
                .rank(m.message.id)
                .and_then(|r| self.path_index(r))
            {
                Some(index) => {
                    let mut message = Arc::unwrap_or_clone(m.message);
                    message.sibling_index = self.messages[index].sibling_index;
                    message.sibling_count = self.messages[index].sibling_count;
                    self.messages.set(index, Arc::new(message));
                    if let Some(rank) = self.tree.rank(self.messages[index].id) {
                        self.entries[rank].idempotency_key = m.idempotency_key;
                    }
                }
                None => {
                    self.attach(Arc::unwrap_or_clone(m.message), m.seq, m.idempotency_key);
                }
            }
        }
        self.saved_version = changes.record.version;
        self.record = changes.record;
        // What another instance started is history now, not queued.
        let tree = &self.tree;
        self.queued.retain(|q| tree.rank(q.message.id).is_none());
        true
    }

    /// The version the store holds, as far as this process knows.
    pub fn saved_version(&self) -> u64 {
        self.saved_version
    }

    /// Versions published but not stored yet.
    pub fn unsaved_versions(&self) -> u64 {
        self.record.version.saturating_sub(self.saved_version)
    }

    /// Moves the version past every version a writer before this one may have shown
    /// without storing it (it crashed, or lost its lease, with the stored ceiling above the
    /// stored version). The next publish names the stored content with a version no
    /// client has seen. False when there is nothing to skip.
    pub fn skip_past_ceiling(&mut self) -> bool {
        if self.record.version_ceiling <= self.record.version {
            return false;
        }
        self.record.version = self.record.version_ceiling;
        self.unpublished.record = true;
        true
    }

    /// Whether showing the current version needs a higher ceiling stored first.
    pub fn needs_reservation(&self) -> bool {
        self.record.version > self.record.version_ceiling.max(self.saved_version)
    }

    /// The ceiling to reserve before showing the current version.
    pub fn next_ceiling(&self) -> u64 {
        self.record.version + MAX_UNSAVED_VERSIONS
    }

    /// The store holds `ceiling` now.
    pub fn reserved(&mut self, ceiling: u64) {
        self.record.version_ceiling = self.record.version_ceiling.max(ceiling);
    }

    /// Changed since the last version bump.
    pub fn has_unpublished(&self) -> bool {
        !self.unpublished.is_empty()
    }

    /// Changed since the last save that succeeded (a save still running included).
    pub fn has_unsaved(&self) -> bool {
        !self.unsaved.is_empty() || self.saving.is_some()
    }

    /// Makes pending changes visible: bumps the version once and stamps every changed
    /// message with it. Returns false (and does nothing) when nothing changed.
    pub fn publish(&mut self) -> bool {
        if self.unpublished.is_empty() {
            return false;
        }
        self.record.version += 1;
        let version = self.record.version;
        let changed: Vec<usize> = self.unpublished.messages.iter().copied().collect();
        for rank in changed {
            if let Some(m) = self.by_rank_mut(rank) {
                m.version = version;
            }
        }
        if self.unpublished.path {
            self.path_changed_at = version;
        }
        self.record.updated_at = crate::store::now();
        self.record.message_count = self.messages.len() as u64;
        self.record.active_leaf = self.leaf();
        if self.unpublished.queue {
            for q in &mut self.queued {
                if q.message.version == 0 {
                    Arc::make_mut(&mut q.message).version = version;
                }
            }
        }
        let changes = std::mem::take(&mut self.unpublished);
        self.unsaved.record = true;
        self.unsaved.messages.extend(changes.messages);
        self.unsaved.dequeued.extend(changes.dequeued);
        true
    }

    /// Everything changed since the last save (published changes only).
    pub fn save_batch(&self) -> SaveBatch {
        // A running turn shows versions before it stores them, so it reserves a range with
        // each save; a resting context shows nothing beyond what this save stores.
        let version_ceiling = if self.record.state.is_resting() {
            self.record.version
        } else {
            self.next_ceiling()
        };
        SaveBatch {
            context: ContextRecord {
                version_ceiling,
                ..self.record.clone()
            },
            messages: self
                .unsaved
                .messages
                .iter()
                .filter_map(|&rank| {
                    let entry = &self.entries[rank];
                    Some(MessageRecord {
                        message: self.stored_message(rank)?,
                        seq: entry.seq,
                        idempotency_key: entry.idempotency_key.clone(),
                    })
                })
                .collect(),
            expected_version: self.saved_version,
            dequeued: self.unsaved.dequeued.clone(),
        }
    }

    /// Starts a save: the batch of everything published and unsaved. Changes made from
    /// now on go to the next save; [`LiveContext::end_save`] says how this one went. One
    /// save at a time: the next batch expects the version this one writes.
    pub fn begin_save(&mut self) -> SaveBatch {
        debug_assert!(self.saving.is_none(), "one save at a time");
        let batch = self.save_batch();
        self.saving = Some(Saving {
            changes: std::mem::take(&mut self.unsaved),
            version: batch.context.version,
            version_ceiling: batch.context.version_ceiling,
            streamed: self.streaming.as_ref().map(|s| (s.index, s.text.len())),
        });
        batch
    }

    /// The save begun last is over: written (the store holds its batch), or not (its
    /// changes are written by the next save).
    pub fn end_save(&mut self, written: bool) {
        let Some(saving) = self.saving.take() else {
            return;
        };
        if !written {
            self.unsaved.absorb(saving.changes);
            return;
        }
        self.saved_version = saving.version;
        self.record.version_ceiling = saving.version_ceiling;
        if let (Some(s), Some((index, len))) = (&mut self.streaming, saving.streamed) {
            if s.index == index {
                // The save held the streamed text as it was when the save began.
                s.text.mark_durable(len);
            }
        }
        self.last_save = Instant::now();
    }
}

/// A save begun and not over yet (see [`LiveContext::begin_save`]).
#[derive(Debug)]
pub(super) struct Saving {
    changes: Changes,
    version: u64,
    version_ceiling: u64,
    /// The reply being streamed when the save began: its place, and the length of its
    /// text the save holds.
    streamed: Option<(usize, usize)>,
}
