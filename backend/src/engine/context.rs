//! A context in memory: the record, its messages, and what changed since the last
//! publish and the last save.

use super::log::MessageLog;
use super::stream_text::{StreamText, TextPrefix};
use super::tree::Tree;
use crate::fsm::State;
use crate::store::{ContextRecord, LoadedContext, MessageRecord, QueuedRecord, SaveBatch};
use chatsync_protocol::{
    ChatState, ContentPart, ContextSummary, Message, MessageStatus, Role, Status, ToolCall,
    ToolCallStatus,
};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// How many versions a running turn reserves with each save (`version_ceiling`), so it
/// seldom has to reserve on its own; also how far tool progress may run ahead of the
/// stored version before a save is forced.
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
        parent_id: None,
        sibling_index: 0,
        sibling_count: 1,
    }
}

#[derive(Debug)]
pub struct LiveContext {
    record: ContextRecord,
    /// Exactly the active path, root first: everything that reads the conversation (the
    /// model's history, tool calls, the streamed reply's index) works on it by index.
    messages: MessageLog,
    /// Every message of the context, on the path or not, by insertion rank.
    tree: Tree,
    /// Per tree rank: what the store needs beside the message.
    entries: Vec<Entry>,
    /// The messages off the active path, by id.
    off_path: HashMap<Uuid, Arc<Message>>,
    /// The `seq` the next new message is stored with (insertion order over the tree).
    next_seq: u64,
    /// client_message_id or Idempotency-Key -> tree rank of the message, for dedupe.
    seen_keys: HashMap<String, usize>,
    /// Changed since the last version bump.
    unpublished: Changes,
    /// Changed since the last successful save.
    unsaved: Changes,
    saved_version: u64,
    /// The version at which the active path last changed (or the context was loaded):
    /// a delta from before it cannot say which messages left the path.
    path_changed_at: u64,
    pub(crate) last_save: Instant,
    /// User messages waiting for their turn, in the order they will run. Each is already
    /// stored in the queue table; only its move into `messages` goes through a save.
    queued: Vec<QueuedRecord>,
    /// The reply being streamed: its text grows here, not in its message (which holds the
    /// rest of it), so appending a chunk never copies the reply.
    streaming: Option<Streaming>,
    /// Bytes of text ever streamed into this context in memory, so a running reply's
    /// growth can be counted without walking the history.
    streamed_bytes: u64,
}

#[derive(Debug)]
struct Streaming {
    /// Where the reply sits on the active path.
    index: usize,
    text: StreamText,
}

/// The streamed reply as a snapshot shows it: its message in the log lacks this text.
#[derive(Debug, Clone)]
struct StreamedReply {
    index: usize,
    text: TextPrefix,
}

/// `message` with the streamed `text` as its last content part.
fn with_streamed_text(message: &Message, text: String) -> Message {
    let mut whole = message.clone();
    whole.content.push(ContentPart::text(text));
    whole
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    idempotency_key: Option<String>,
}

#[derive(Debug, Default)]
struct Changes {
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
    fn is_empty(&self) -> bool {
        !self.record
            && self.messages.is_empty()
            && !self.path
            && !self.queue
            && self.dequeued.is_empty()
    }
}

impl LiveContext {
    /// A context that is already stored as it is (just created or just loaded).
    pub fn from_loaded(loaded: LoadedContext) -> Self {
        let mut ctx = LiveContext {
            saved_version: loaded.record.version,
            path_changed_at: loaded.record.version,
            record: loaded.record,
            messages: MessageLog::default(),
            tree: Tree::default(),
            entries: Vec::with_capacity(loaded.messages.len()),
            off_path: HashMap::with_capacity(loaded.messages.len()),
            next_seq: 0,
            seen_keys: HashMap::new(),
            unpublished: Changes::default(),
            unsaved: Changes::default(),
            last_save: Instant::now(),
            queued: Vec::new(),
            streaming: None,
            streamed_bytes: 0,
        };
        for m in loaded.messages {
            let id = m.message.id;
            let context_id = ctx.record.id;
            let rank = ctx
                .tree
                .push(id, m.message.parent_id)
                .or_else(|e| {
                    // Never written by this service; keep the message readable as a root.
                    tracing::warn!(%context_id, error = %e, "message with an unknown parent");
                    ctx.tree.push(id, None)
                })
                .unwrap_or_default();
            ctx.index_keys(rank, &m.message, m.idempotency_key.as_deref());
            ctx.next_seq = ctx.next_seq.max(m.seq + 1);
            ctx.entries.push(Entry {
                seq: m.seq,
                idempotency_key: m.idempotency_key,
            });
            ctx.off_path.insert(id, m.message);
        }
        for m in ctx.off_path.values_mut() {
            if let Some((index, count)) = ctx.tree.siblings(m.id) {
                let m = Arc::make_mut(m);
                m.sibling_index = to_u32(index);
                m.sibling_count = to_u32(count);
            }
        }
        let leaf = ctx
            .record
            .active_leaf
            .filter(|l| ctx.tree.rank(*l).is_some())
            .or_else(|| ctx.tree.newest());
        ctx.rebuild_path(leaf);
        ctx
    }

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
        self.unpublished.path = true;
        self.unpublished.record = true;
        true
    }

    fn rebuild_path(&mut self, leaf: Option<Uuid>) {
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
    fn path_index(&self, rank: usize) -> Option<usize> {
        let id = self.tree.id(rank);
        let depth = self.tree.depth(id)?;
        self.messages
            .get(depth)
            .is_some_and(|m| m.id == id)
            .then_some(depth)
    }

    /// The message of this rank as the store gets it: with its streamed text.
    fn stored_message(&self, rank: usize) -> Option<Arc<Message>> {
        let message = self.by_rank(rank)?;
        Some(match &self.streaming {
            Some(s) if self.path_index(rank) == Some(s.index) => {
                Arc::new(with_streamed_text(message, s.text.to_text()))
            }
            _ => message.clone(),
        })
    }

    fn by_rank(&self, rank: usize) -> Option<&Arc<Message>> {
        match self.path_index(rank) {
            Some(index) => self.messages.get(index),
            None => self.off_path.get(&self.tree.id(rank)),
        }
    }

    fn by_rank_mut(&mut self, rank: usize) -> Option<&mut Message> {
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
    fn attach(&mut self, mut message: Message, seq: u64, key: Option<String>) -> (usize, usize) {
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

    pub fn version(&self) -> u64 {
        self.record.version
    }

    /// The version the store holds, as far as this process knows.
    pub fn saved_version(&self) -> u64 {
        self.saved_version
    }

    /// About how much memory the context's messages take (text, tool calls and a fixed
    /// cost per message), for `--max-live-bytes`.
    pub fn approx_bytes(&self) -> u64 {
        const PER_MESSAGE: usize = 256;
        let bytes: usize = self
            .messages
            .iter()
            .chain(self.off_path.values())
            .map(|m| {
                let text: usize = m
                    .content
                    .iter()
                    .map(|p| match p {
                        ContentPart::Text { text } => text.len(),
                    })
                    .sum();
                let calls: usize = m
                    .tool_calls
                    .iter()
                    .flatten()
                    .map(|c| {
                        c.id.len()
                            + c.name.len()
                            + c.arguments.to_string().len()
                            + c.result.as_ref().map_or(0, String::len)
                    })
                    .sum();
                PER_MESSAGE + text + calls
            })
            .sum::<usize>()
            + self.streaming.as_ref().map_or(0, |s| s.text.len());
        u64::try_from(bytes).unwrap_or(u64::MAX)
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

    pub fn set_title(&mut self, title: String) {
        if self.record.title != title {
            self.record.title = title;
            self.unpublished.record = true;
        }
    }

    /// Appends a message at the end of the active path (a child of the current leaf);
    /// returns its index on the path.
    pub fn push(&mut self, message: Message, idempotency_key: Option<String>) -> usize {
        let (rank, index) = self.attach(message, self.next_seq, idempotency_key);
        self.unpublished.messages.insert(rank);
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
        self.unpublished.queue |= changed;
        changed
    }

    /// Adds a stored queued message: last, or (an interrupting one) ahead of every other.
    pub fn enqueue(&mut self, queued: QueuedRecord) {
        let at = if queued.ahead { 0 } else { self.queued.len() };
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
            .find(|q| q.sent_as(client_message_id, key))
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

    /// Mutable access to one message of the path; it counts as changed. A reply being
    /// streamed gets its text back first.
    pub fn message_mut(&mut self, index: usize) -> &mut Message {
        if self.streaming.as_ref().is_some_and(|s| s.index == index) {
            self.seal_stream();
        }
        self.changed(index);
        self.messages.make_mut(index)
    }

    fn changed(&mut self, index: usize) {
        if let Some(rank) = self.tree.rank(self.messages[index].id) {
            self.unpublished.messages.insert(rank);
        }
    }

    /// Appends streamed text to the message at `index` (the reply) in amortized
    /// O(chunk): the text grows in place, whatever snapshots share it.
    pub fn append_text(&mut self, index: usize, chunk: &str) {
        if self.streaming.as_ref().is_some_and(|s| s.index == index) {
            self.changed(index);
        } else {
            self.seal_stream();
            let start = match self.message_mut(index).content.pop() {
                Some(ContentPart::Text { text }) => text,
                None => String::new(),
            };
            self.streaming = Some(Streaming {
                index,
                text: StreamText::new(start),
            });
        }
        if let Some(s) = &mut self.streaming {
            s.text.push_str(chunk);
        }
        self.streamed_bytes += chunk.len() as u64;
    }

    pub fn streamed_bytes(&self) -> u64 {
        self.streamed_bytes
    }

    /// Adds a streamed tool call to the reply at `index`, its streamed text left in place.
    pub fn append_tool_call(&mut self, index: usize, call: ToolCall) {
        self.changed(index);
        self.messages
            .make_mut(index)
            .tool_calls
            .get_or_insert_with(Vec::new)
            .push(call);
    }

    /// Puts the streamed text back into its message.
    fn seal_stream(&mut self) {
        if let Some(s) = self.streaming.take() {
            self.messages
                .make_mut(s.index)
                .content
                .push(ContentPart::text(s.text.into_string()));
        }
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

    pub fn mark_saved(&mut self, batch: &SaveBatch) {
        self.saved_version = batch.context.version;
        self.record.version_ceiling = batch.context.version_ceiling;
        if let Some(s) = &mut self.streaming {
            // The save held the streamed text as it is now: no chunk lands during a save.
            s.text.mark_durable();
        }
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
            log: self.messages.clone(),
            streamed: self.streaming.as_ref().map(|s| StreamedReply {
                index: s.index,
                text: s.text.prefix(),
            }),
            path_changed_at: self.path_changed_at,
            saved_version: self.saved_version,
            pending_tool_calls,
            queued: self.queued.iter().map(|q| q.message.clone()).collect(),
            turns,
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
    /// The active path; a reply being streamed without its streamed text (`streamed`).
    log: MessageLog,
    streamed: Option<StreamedReply>,
    /// The version at which the path last changed: older `?since=` get the whole state.
    pub path_changed_at: u64,
    /// The version the store held when this snapshot was taken (see `durable_messages`).
    pub saved_version: u64,
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

    /// The active path, whole.
    pub fn messages(&self) -> MessageLog {
        let mut log = self.log.clone();
        if let Some(s) = &self.streamed {
            log.set(s.index, Arc::new(self.streamed_message(s)));
        }
        log
    }

    pub fn message_count(&self) -> usize {
        self.log.len()
    }

    /// Whether the store holds the record as shown (its state included).
    pub fn is_durable(&self) -> bool {
        self.version() <= self.saved_version
    }

    /// The active path as far as the store holds it: up to the first message changed after
    /// the last save, the reply being streamed cut to the text a save wrote. What a crash
    /// could take back is left out, so readers that must never show it again differently
    /// (the OpenAI event streams) read this.
    pub fn durable_messages(&self) -> Vec<Arc<Message>> {
        let mut out = Vec::with_capacity(self.log.len());
        for (i, m) in self.log.iter().enumerate() {
            match &self.streamed {
                Some(s) if s.index == i => {
                    // Until a save wrote some of its text, the store may not hold the reply
                    // at all (a writer taking over would start another one).
                    let text = s.text.durable_text();
                    if !text.is_empty() {
                        out.push(Arc::new(with_streamed_text(m, text)));
                    }
                    break;
                }
                _ if m.version > self.saved_version => break,
                _ => out.push(m.clone()),
            }
        }
        out
    }

    fn streamed_message(&self, streamed: &StreamedReply) -> Message {
        with_streamed_text(&self.log[streamed.index], streamed.text.to_text())
    }

    /// The state, whole or (with `since` not ahead of the current version, and not before
    /// the active path last changed) only the messages changed after `since`.
    pub fn chat_state(&self, since: Option<u64>) -> ChatState {
        self.chat_state_with(since, Cow::into_owned)
    }

    /// The same with borrowed messages (but a reply being streamed), for answers that are
    /// serialized at once.
    pub fn chat_state_ref(&self, since: Option<u64>) -> ChatState<Cow<'_, Message>> {
        self.chat_state_with(since, |m| m)
    }

    fn chat_state_with<'a, M>(
        &'a self,
        since: Option<u64>,
        message: impl Fn(Cow<'a, Message>) -> M,
    ) -> ChatState<M> {
        let since = since.filter(|s| *s <= self.version() && *s >= self.path_changed_at);
        let messages = self
            .log
            .iter()
            .enumerate()
            .filter(|(_, m)| since.is_none_or(|s| m.version > s))
            .map(|(i, m)| {
                message(match &self.streamed {
                    Some(s) if s.index == i => Cow::Owned(self.streamed_message(s)),
                    _ => Cow::Borrowed(&**m),
                })
            })
            .collect();
        ChatState {
            context_id: self.record.id,
            version: self.version(),
            status: self.status(),
            state: self.record.state.name(),
            error: self.record.state.error().map(str::to_owned),
            messages,
            message_count: self.log.len() as u64,
            pending_tool_calls: self.pending_tool_calls.clone(),
            updated_at: self.record.updated_at,
            delta: since.is_some(),
            // The queue is short and bounded: always whole, also in a delta.
            queued: self
                .queued
                .iter()
                .map(|m| message(Cow::Borrowed(&**m)))
                .collect(),
        }
    }

    pub fn summary(&self) -> ContextSummary {
        summary(&self.record)
    }

    /// Whether message `id` is in the queue or the history (looked for from its end,
    /// where a message just queued or started is).
    pub fn knows_message(&self, id: Uuid) -> bool {
        self.queued.iter().any(|m| m.id == id) || self.log.iter().rev().any(|m| m.id == id)
    }

    /// Whether the turn of user message `id` is over: its message is in the history and
    /// the context rests, or a later user message's turn began (turns run one at a time),
    /// or the message left the queue without running (cancelled).
    pub fn message_turn_done(&self, id: Uuid) -> bool {
        if self.queued.iter().any(|m| m.id == id) {
            return false;
        }
        for m in self.log.iter().rev() {
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

    fn stored(seq: u64, text: &str, version: u64, parent: Option<Uuid>) -> MessageRecord {
        let mut m = new_message(Role::User, vec![ContentPart::text(text)], None);
        m.version = version;
        m.parent_id = parent;
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

    fn say(ctx: &mut LiveContext, text: &str) -> Uuid {
        let i = ctx.push(
            new_message(Role::User, vec![ContentPart::text(text)], None),
            None,
        );
        ctx.publish();
        ctx.messages()[i].id
    }

    #[test]
    fn durable_messages_hold_only_what_a_save_wrote() {
        let mut ctx = context_in(StateName::StreamingLlmResponse);
        say(&mut ctx, "question");
        let batch = ctx.save_batch();
        ctx.mark_saved(&batch);
        let mut reply = new_message(Role::Assistant, vec![ContentPart::text("")], None);
        reply.status = MessageStatus::Streaming;
        let i = ctx.push(reply, None);
        ctx.append_text(i, "shown ");
        ctx.publish();
        let snapshot = ctx.snapshot(Turns::default());
        assert_eq!(
            snapshot.durable_messages().len(),
            1,
            "a reply no save wrote is not durable"
        );
        assert!(!snapshot.is_durable());
        let batch = ctx.save_batch();
        ctx.mark_saved(&batch);
        ctx.append_text(i, "and more");
        ctx.publish();
        let snapshot = ctx.snapshot(Turns::default());
        let durable = snapshot.durable_messages();
        assert_eq!(durable.len(), 2);
        assert_eq!(content_text(&durable[1].content), "shown ");
        assert_eq!(
            content_text(&snapshot.messages()[i].content),
            "shown and more",
            "readers still see everything"
        );
        let batch = ctx.save_batch();
        ctx.mark_saved(&batch);
        let snapshot = ctx.snapshot(Turns::default());
        assert!(snapshot.is_durable());
        assert_eq!(
            content_text(&snapshot.durable_messages()[1].content),
            "shown and more"
        );
    }

    #[test]
    fn a_streamed_reply_shows_whole_to_readers_the_store_and_its_next_change() {
        let mut ctx = context_in(StateName::StreamingLlmResponse);
        say(&mut ctx, "question");
        let mut reply = new_message(Role::Assistant, vec![ContentPart::text("")], None);
        reply.status = MessageStatus::Streaming;
        let i = ctx.push(reply, None);
        let bytes_before = ctx.approx_bytes();
        ctx.append_text(i, "Hello");
        ctx.publish();
        let first = ctx.snapshot(Turns::default());
        let since = first.version();
        ctx.append_text(i, ", wörld");
        ctx.append_tool_call(
            i,
            ToolCall {
                id: "call-1".into(),
                name: "calculator".into(),
                arguments: serde_json::json!({"expression": "1+1"}),
                status: ToolCallStatus::Pending,
                result: None,
            },
        );
        ctx.append_text(i, "!");
        ctx.publish();
        let second = ctx.snapshot(Turns::default());

        // Each snapshot keeps the text it was taken with, also while the writer appends.
        let text = |s: &Snapshot| content_text(&s.messages()[i].content);
        assert_eq!(text(&first), "Hello");
        assert_eq!(text(&second), "Hello, wörld!");
        let whole = second.chat_state_ref(None);
        assert_eq!(content_text(&whole.messages[i].content), "Hello, wörld!");
        assert_eq!(whole.messages[i].content.len(), 1, "one text part");
        let delta = second.chat_state(Some(since));
        assert_eq!(delta.messages.len(), 1, "only the reply changed");
        assert_eq!(content_text(&delta.messages[0].content), "Hello, wörld!");
        assert_eq!(delta.messages[0].tool_calls.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            ctx.approx_bytes() - bytes_before,
            "Hello, wörld!".len() as u64
                + "call-1calculator".len() as u64
                + r#"{"expression":"1+1"}"#.len() as u64
        );

        // The store gets the whole reply.
        let batch = ctx.save_batch();
        let saved = batch
            .messages
            .iter()
            .find(|m| m.message.id == ctx.messages()[i].id);
        assert_eq!(
            saved.map(|m| content_text(&m.message.content)).as_deref(),
            Some("Hello, wörld!")
        );

        // Changing the reply otherwise gives it its text back, for good.
        ctx.message_mut(i).status = MessageStatus::Complete;
        assert_eq!(texts(&ctx)[i], "Hello, wörld!");
        ctx.publish();
        assert_eq!(text(&ctx.snapshot(Turns::default())), "Hello, wörld!");
        assert_eq!(
            text(&second),
            "Hello, wörld!",
            "an older snapshot is unchanged"
        );
    }

    #[test]
    fn changes_from_another_instance_replace_and_append_messages() {
        let mut ctx = context_in(StateName::Idle);
        let base = ctx.record.clone();
        let loaded = |messages: Vec<MessageRecord>, version, count| LoadedContext {
            record: ContextRecord {
                version,
                message_count: count,
                active_leaf: messages.last().map(|m| m.message.id),
                ..base.clone()
            },
            messages,
        };
        let a = stored(0, "a", 8, None);
        let b = stored(1, "b", 8, Some(a.message.id));
        assert!(ctx.apply_changes(loaded(vec![a.clone(), b.clone()], 8, 2)));
        let mut b_edited = b.clone();
        Arc::make_mut(&mut b_edited.message).content = vec![ContentPart::text("b, edited")];
        let c = stored(2, "c", 9, Some(b.message.id));
        assert!(ctx.apply_changes(loaded(vec![b_edited, c.clone()], 9, 3)));
        assert_eq!(texts(&ctx), ["a", "b, edited", "c"]);
        assert_eq!((ctx.version(), ctx.saved_version()), (9, 9));
        assert!(!ctx.has_unsaved());

        // A message that does not hang under the end of the path (here: a sibling of c,
        // as an edit makes) moves the path: nothing applies, the caller reloads.
        let sibling = stored(3, "c2", 10, Some(b.message.id));
        assert!(!ctx.apply_changes(loaded(vec![sibling], 10, 3)));
        assert_eq!(texts(&ctx), ["a", "b, edited", "c"]);
        // A new leaf without new messages (a switch) does not apply either.
        let mut switched = loaded(vec![], 10, 2);
        switched.record.active_leaf = Some(b.message.id);
        assert!(!ctx.apply_changes(switched));
        assert_eq!(ctx.version(), 9);
    }

    fn queued(text: &str) -> QueuedRecord {
        let mut m = new_message(Role::User, vec![ContentPart::text(text)], None);
        m.status = MessageStatus::Queued;
        m.version = 7;
        QueuedRecord {
            message: Arc::new(m),
            idempotency_key: None,
            ahead: text.starts_with("interrupting"),
        }
    }

    fn queued_texts(ctx: &LiveContext) -> Vec<String> {
        ctx.queued()
            .iter()
            .map(|q| content_text(&q.message.content))
            .collect()
    }

    #[test]
    fn the_stored_queue_is_the_truth_and_held_entries_keep_their_place() {
        let mut ctx = context_in(StateName::Idle);
        let (first, mine, theirs) = (queued("interrupting"), queued("mine"), queued("theirs"));
        ctx.enqueue(mine.clone());
        ctx.enqueue(first.clone());
        ctx.publish();
        // The store lists by arrival; the interrupting message stays first here.
        let stored = vec![mine.clone(), first.clone(), theirs.clone()];
        assert!(ctx.sync_queued(stored.clone()));
        assert_eq!(queued_texts(&ctx), ["interrupting", "mine", "theirs"]);
        assert_eq!(
            ctx.queued()[2].message.version,
            0,
            "stamped by this writer's next publish"
        );
        ctx.publish();
        assert!(
            !ctx.sync_queued(stored),
            "the same queue again changes nothing"
        );

        // Another instance ran "interrupting" (it is history now) and dropped "mine".
        let started = first.message.id;
        ctx.push(Message::clone(&first.message), None);
        assert_eq!(ctx.messages().last().map(|m| m.id), Some(started));
        assert!(ctx.sync_queued(vec![first, theirs.clone()]));
        assert_eq!(queued_texts(&ctx), ["theirs"]);

        // One another instance queued to interrupt goes first.
        assert!(ctx.sync_queued(vec![theirs, queued("interrupting too")]));
        assert_eq!(queued_texts(&ctx), ["interrupting too", "theirs"]);
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
            messages: vec![stored(0, "theirs", 8, None)],
        };
        assert!(!ctx.apply_changes(changes));
        assert_eq!(texts(&ctx), ["mine"]);
    }

    #[test]
    fn a_new_branch_keeps_the_old_one_aside_and_saves_seq_in_insertion_order() {
        let mut ctx = context_in(StateName::Idle);
        let first = say(&mut ctx, "first");
        let second = say(&mut ctx, "second");
        assert!(ctx.switch_path(Some(first)));
        let edited = say(&mut ctx, "second, edited");
        assert_eq!(texts(&ctx), ["first", "second, edited"]);
        assert_eq!(ctx.messages()[1].parent_id, Some(first));
        assert_eq!(
            (
                ctx.messages()[1].sibling_index,
                ctx.messages()[1].sibling_count
            ),
            (1, 2)
        );
        let batch = ctx.save_batch();
        let seqs: Vec<(Uuid, u64)> = batch
            .messages
            .iter()
            .map(|m| (m.message.id, m.seq))
            .collect();
        assert_eq!(seqs, [(first, 0), (second, 1), (edited, 2)]);
        assert_eq!(batch.context.active_leaf, Some(edited));
        assert_eq!(batch.context.message_count, 2);

        // Reloading rebuilds the same path and the numbering of siblings.
        let reloaded = LiveContext::from_loaded(LoadedContext {
            record: batch.context.clone(),
            messages: batch.messages.clone(),
        });
        assert_eq!(texts(&reloaded), ["first", "second, edited"]);
        assert_eq!(reloaded.messages()[1].sibling_index, 1);
        let back = reloaded.tree().newest_leaf(second);
        assert_eq!(back, Some(second));
    }

    #[test]
    fn a_delta_from_before_a_path_change_is_the_whole_state() {
        let mut ctx = context_in(StateName::Idle);
        let first = say(&mut ctx, "first");
        say(&mut ctx, "second");
        let before = ctx.snapshot(Turns::default());
        let v = before.version();
        assert!(before.chat_state(Some(v)).delta, "nothing moved: a delta");
        assert!(ctx.switch_path(Some(first)));
        assert!(ctx.publish());
        let after = ctx.snapshot(Turns::default());
        let state = after.chat_state(Some(v));
        assert!(!state.delta);
        assert_eq!(state.messages.len(), 1);
        assert_eq!(state.message_count, 1);
        assert!(after.chat_state(Some(after.version())).delta);
        assert!(!ctx.switch_path(Some(first)), "already there: no change");
    }
}
