//! A context in memory: the record, its messages, and what changed since the last
//! publish and the last save.

use super::log::MessageLog;
use crate::fsm::State;
use crate::store::{ContextRecord, LoadedContext, MessageRecord, QueuedRecord, SaveBatch};
use chatsync_protocol::{
    ChatState, ContentPart, ContextSummary, Message, MessageStatus, Role, Status, ToolCall,
    ToolCallStatus,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// How far the published version may run ahead of the stored one (streaming between
/// flushes, tool progress). A writer resuming an interrupted turn skips this many
/// versions, so no version a client saw before a crash ever names other content.
pub const MAX_UNSAVED_VERSIONS: u64 = 1000;

/// A complete message created now, with a fresh id; the version is stamped on publish.
pub fn new_message(
    role: Role,
    content: Vec<ContentPart>,
    client_message_id: Option<String>,
) -> Message {
    Message {
        id: Uuid::new_v4(),
        client_message_id,
        role,
        content,
        tool_calls: None,
        tool_call_id: None,
        status: MessageStatus::Complete,
        created_at: crate::store::now(),
        version: 0,
    }
}

#[derive(Debug)]
pub struct LiveContext {
    record: ContextRecord,
    messages: MessageLog,
    idempotency_keys: Vec<Option<String>>,
    /// client_message_id or Idempotency-Key -> message index, for dedupe.
    seen_keys: HashMap<String, usize>,
    /// Changed since the last version bump.
    unpublished: Changes,
    /// Changed since the last successful save.
    unsaved: Changes,
    saved_version: u64,
    pub(crate) last_save: Instant,
    /// User messages waiting for their turn, in the order they will run. Each is already
    /// stored in the queue table; only its move into `messages` goes through a save.
    queued: Vec<QueuedRecord>,
}

#[derive(Debug, Default)]
struct Changes {
    record: bool,
    messages: BTreeSet<usize>,
    /// The queue changed (a message arrived or left).
    queue: bool,
    /// Queued messages moved into `messages`: the save deletes their queue rows.
    dequeued: Vec<Uuid>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        !self.record && self.messages.is_empty() && !self.queue && self.dequeued.is_empty()
    }
}

impl LiveContext {
    /// A context that is already stored as it is (just created or just loaded).
    pub fn from_loaded(loaded: LoadedContext) -> Self {
        let mut ctx = LiveContext {
            saved_version: loaded.record.version,
            record: loaded.record,
            messages: MessageLog::default(),
            idempotency_keys: Vec::with_capacity(loaded.messages.len()),
            seen_keys: HashMap::new(),
            unpublished: Changes::default(),
            unsaved: Changes::default(),
            last_save: Instant::now(),
            queued: Vec::new(),
        };
        for m in loaded.messages {
            ctx.index_keys(ctx.messages.len(), &m.message, m.idempotency_key.as_deref());
            ctx.messages.push(m.message);
            ctx.idempotency_keys.push(m.idempotency_key);
        }
        ctx
    }

    /// Applies what another instance saved: the new record and the messages changed after
    /// this context's version. Only for a context with no change of its own pending.
    /// `false` (nothing applied) when the changes do not continue this history.
    pub fn apply_changes(&mut self, changes: LoadedContext) -> bool {
        let mut next = self.messages.len() as u64;
        let continues = changes.messages.iter().all(|m| {
            let fits = m.seq <= next;
            if m.seq == next {
                next += 1;
            }
            fits
        });
        if !continues || !self.unpublished.is_empty() || self.has_unsaved() {
            return false;
        }
        for m in changes.messages {
            let index = m.seq as usize;
            if index < self.messages.len() {
                self.messages.set(index, m.message);
                self.idempotency_keys[index] = m.idempotency_key;
            } else {
                self.index_keys(index, &m.message, m.idempotency_key.as_deref());
                self.messages.push(m.message);
                self.idempotency_keys.push(m.idempotency_key);
            }
        }
        self.saved_version = changes.record.version;
        self.record = changes.record;
        true
    }

    fn index_keys(&mut self, index: usize, message: &Message, key: Option<&str>) {
        let client = message
            .client_message_id
            .as_deref()
            .map(|c| format!("c:{c}"));
        let idem = key.map(|k| format!("k:{k}"));
        for k in client.into_iter().chain(idem) {
            self.seen_keys.insert(k, index);
        }
    }

    pub fn id(&self) -> Uuid {
        self.record.id
    }

    pub fn state(&self) -> &State {
        &self.record.state
    }

    #[cfg(test)]
    pub fn version(&self) -> u64 {
        self.record.version
    }

    /// The version the store holds, as far as this process knows.
    pub fn saved_version(&self) -> u64 {
        self.saved_version
    }

    pub fn messages(&self) -> &MessageLog {
        &self.messages
    }

    pub fn model_id(&self) -> Option<String> {
        self.record.config.model_id.clone()
    }

    pub fn system_prompt(&self) -> Option<String> {
        self.record.config.system_prompt.clone()
    }

    /// The message an earlier send with this client id or idempotency key created.
    pub fn find_sent(&self, client_message_id: Option<&str>, key: Option<&str>) -> Option<usize> {
        let client = client_message_id.and_then(|c| self.seen_keys.get(&format!("c:{c}")));
        let idem = key.and_then(|k| self.seen_keys.get(&format!("k:{k}")));
        client.or(idem).copied()
    }

    pub fn set_state(&mut self, state: State) {
        if self.record.state != state {
            self.record.state = state;
            self.unpublished.record = true;
        }
    }

    /// Appends a message; returns its index.
    pub fn push(&mut self, message: Message, idempotency_key: Option<String>) -> usize {
        let index = self.messages.len();
        self.index_keys(index, &message, idempotency_key.as_deref());
        self.messages.push(Arc::new(message));
        self.idempotency_keys.push(idempotency_key);
        self.unpublished.messages.insert(index);
        self.unpublished.record = true;
        index
    }

    /// The messages waiting for their turn, in the order they will run.
    pub fn queued(&self) -> &[QueuedRecord] {
        &self.queued
    }

    /// Takes the queue the store holds, as stored (it is no change of this process).
    pub fn restore_queued(&mut self, queued: Vec<QueuedRecord>) {
        self.queued = queued;
    }

    /// Adds a stored queued message: last, or (`first`) ahead of every other.
    pub fn enqueue(&mut self, queued: QueuedRecord, first: bool) {
        let at = if first { 0 } else { self.queued.len() };
        self.queued.insert(at, queued);
        self.unpublished.queue = true;
    }

    /// Drops a queued message; `false` when it is not queued.
    pub fn remove_queued(&mut self, id: Uuid) -> bool {
        let before = self.queued.len();
        self.queued.retain(|q| q.message.id != id);
        let removed = self.queued.len() != before;
        self.unpublished.queue |= removed;
        removed
    }

    /// The queued message an earlier send with this client id or idempotency key created.
    pub fn find_queued(&self, client_message_id: Option<&str>, key: Option<&str>) -> Option<Uuid> {
        self.queued
            .iter()
            .find(|q| {
                let same_client = client_message_id.is_some()
                    && q.message.client_message_id.as_deref() == client_message_id;
                let same_key = key.is_some() && q.idempotency_key.as_deref() == key;
                same_client || same_key
            })
            .map(|q| q.message.id)
    }

    /// Moves the first queued message into the history, as the user message of the turn
    /// that starts now; the next save takes it off the stored queue.
    pub fn start_next_queued(&mut self) -> Option<usize> {
        if self.queued.is_empty() {
            return None;
        }
        let next = self.queued.remove(0);
        self.unpublished.queue = true;
        self.unpublished.dequeued.push(next.message.id);
        let mut message = Arc::unwrap_or_clone(next.message);
        message.status = MessageStatus::Complete;
        Some(self.push(message, next.idempotency_key))
    }

    /// Mutable access to one message; it counts as changed.
    pub fn message_mut(&mut self, index: usize) -> &mut Message {
        self.unpublished.messages.insert(index);
        self.messages.make_mut(index)
    }

    /// Versions published but not stored yet.
    pub fn unsaved_versions(&self) -> u64 {
        self.record.version.saturating_sub(self.saved_version)
    }

    /// Moves the version past any version published before an interruption.
    pub fn skip_unsaved_versions(&mut self) {
        self.record.version += MAX_UNSAVED_VERSIONS;
        self.unpublished.record = true;
    }

    pub fn has_unsaved(&self) -> bool {
        !self.unsaved.is_empty()
    }

    /// Makes pending changes visible: bumps the version once and stamps every changed
    /// message with it. Returns false (and does nothing) when nothing changed.
    pub fn publish(&mut self) -> bool {
        if self.unpublished.is_empty() {
            return false;
        }
        self.record.version += 1;
        let version = self.record.version;
        for &i in &self.unpublished.messages {
            self.messages.make_mut(i).version = version;
        }
        self.record.updated_at = crate::store::now();
        self.record.message_count = self.messages.len() as u64;
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
        SaveBatch {
            context: self.record.clone(),
            messages: self
                .unsaved
                .messages
                .iter()
                .map(|&i| MessageRecord {
                    message: self.messages[i].clone(),
                    seq: i as u64,
                    idempotency_key: self.idempotency_keys[i].clone(),
                })
                .collect(),
            expected_version: self.saved_version,
            dequeued: self.unsaved.dequeued.clone(),
        }
    }

    pub fn mark_saved(&mut self, batch: &SaveBatch) {
        self.saved_version = batch.context.version;
        self.unsaved = Changes::default();
        self.last_save = Instant::now();
    }

    /// The last assistant message that carries tool calls, if the conversation ends in it
    /// or its results.
    pub fn tool_call_message(&self) -> Option<usize> {
        self.messages
            .iter()
            .rposition(|m| m.role != Role::Tool)
            .filter(|&i| self.messages[i].tool_calls.is_some())
    }

    pub fn snapshot(&self, turns: Turns) -> Snapshot {
        let pending_tool_calls = match (&self.record.state, self.tool_call_message()) {
            (State::AwaitingToolApproval, Some(i)) => self.messages[i]
                .tool_calls
                .iter()
                .flatten()
                .filter(|c| c.status == ToolCallStatus::Pending)
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        Snapshot {
            record: self.record.clone(),
            messages: self.messages.clone(),
            pending_tool_calls,
            queued: self.queued.iter().map(|q| q.message.clone()).collect(),
            turns,
        }
    }
}

/// Turn bookkeeping an action waits on: a turn is settled once `settled >= its number`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Turns {
    pub started: u64,
    pub settled: u64,
    /// The turn whose save failed most recently.
    pub save_failed: Option<u64>,
}

/// What readers see: an immutable copy published after every change.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub record: ContextRecord,
    pub messages: MessageLog,
    pub pending_tool_calls: Vec<ToolCall>,
    /// Queued user messages in the order they will run (bounded by the queue limit).
    pub queued: Vec<Arc<Message>>,
    pub turns: Turns,
}

impl Snapshot {
    pub fn version(&self) -> u64 {
        self.record.version
    }

    pub fn status(&self) -> Status {
        self.record.state.name().status()
    }

    /// The state, whole or (with `since` not ahead of the current version) only the
    /// messages changed after `since`.
    pub fn chat_state(&self, since: Option<u64>) -> ChatState {
        self.chat_state_with(since, Message::clone)
    }

    /// The same with borrowed messages, for answers that are serialized at once.
    pub fn chat_state_ref(&self, since: Option<u64>) -> ChatState<&Message> {
        self.chat_state_with(since, |m| m)
    }

    fn chat_state_with<'a, M>(
        &'a self,
        since: Option<u64>,
        message: impl Fn(&'a Message) -> M,
    ) -> ChatState<M> {
        let since = since.filter(|s| *s <= self.version());
        let messages = self
            .messages
            .iter()
            .filter(|m| since.is_none_or(|s| m.version > s))
            .map(|m| message(m))
            .collect();
        ChatState {
            context_id: self.record.id,
            version: self.version(),
            status: self.status(),
            state: self.record.state.name(),
            error: self.record.state.error().map(str::to_owned),
            messages,
            message_count: self.messages.len() as u64,
            pending_tool_calls: self.pending_tool_calls.clone(),
            updated_at: self.record.updated_at,
            delta: since.is_some(),
            // The queue is short and bounded: always whole, also in a delta.
            queued: self.queued.iter().map(|m| message(m)).collect(),
        }
    }

    pub fn summary(&self) -> ContextSummary {
        summary(&self.record)
    }

    /// Whether the turn of user message `id` is over: its message is in the history and
    /// the context rests, or a later user message's turn began (turns run one at a time),
    /// or the message left the queue without running (cancelled).
    pub fn message_turn_done(&self, id: Uuid) -> bool {
        if self.queued.iter().any(|m| m.id == id) {
            return false;
        }
        for m in self.messages.iter().rev() {
            if m.id == id {
                return self.record.state.is_resting();
            }
            if m.role == Role::User {
                return true;
            }
        }
        true
    }
}

pub fn summary(record: &ContextRecord) -> ContextSummary {
    ContextSummary {
        id: record.id,
        title: record.title.clone(),
        status: record.state.name().status(),
        state: record.state.name(),
        message_count: record.message_count,
        version: record.version,
        created_at: record.created_at,
        updated_at: record.updated_at,
        config: record.config.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::context_in;
    use chatsync_protocol::{content_text, StateName};

    fn record_at(ctx: &LiveContext, version: u64, count: u64) -> ContextRecord {
        ContextRecord {
            version,
            message_count: count,
            ..ctx.record.clone()
        }
    }

    fn stored(seq: u64, text: &str, version: u64) -> MessageRecord {
        let mut m = new_message(Role::User, vec![ContentPart::text(text)], None);
        m.version = version;
        MessageRecord {
            message: Arc::new(m),
            seq,
            idempotency_key: None,
        }
    }

    fn texts(ctx: &LiveContext) -> Vec<String> {
        ctx.messages()
            .iter()
            .map(|m| content_text(&m.content))
            .collect()
    }

    #[test]
    fn changes_from_another_instance_replace_and_append_messages() {
        let mut ctx = context_in(StateName::Idle);
        let base = ctx.record.clone();
        let loaded = |messages, version, count| LoadedContext {
            record: ContextRecord {
                version,
                message_count: count,
                ..base.clone()
            },
            messages,
        };
        let first = loaded(vec![stored(0, "a", 8), stored(1, "b", 8)], 8, 2);
        assert!(ctx.apply_changes(first));
        let second = loaded(vec![stored(1, "b, edited", 9), stored(2, "c", 9)], 9, 3);
        assert!(ctx.apply_changes(second));
        assert_eq!(texts(&ctx), ["a", "b, edited", "c"]);
        assert_eq!((ctx.version(), ctx.saved_version()), (9, 9));
        assert!(!ctx.has_unsaved());

        // A change that skips a message does not continue this history: nothing applies.
        let gap = loaded(vec![stored(4, "e", 10)], 10, 5);
        assert!(!ctx.apply_changes(gap));
        assert_eq!(texts(&ctx), ["a", "b, edited", "c"]);
        assert_eq!(ctx.version(), 9);
    }

    #[test]
    fn a_context_with_its_own_pending_change_is_not_patched() {
        let mut ctx = context_in(StateName::Idle);
        ctx.push(
            new_message(Role::User, vec![ContentPart::text("mine")], None),
            None,
        );
        let changes = LoadedContext {
            record: record_at(&ctx, 8, 1),
            messages: vec![stored(0, "theirs", 8)],
        };
        assert!(!ctx.apply_changes(changes));
        assert_eq!(texts(&ctx), ["mine"]);
    }
}
