//! A context in memory: the record and its messages. The message tree and active path
//! (`path.rs`), the queue (`queue.rs`), the streamed reply (`stream.rs`) and versions,
//! change tracking and the save batch (`versions.rs`) each have their own file; the
//! snapshot readers get is `engine/snapshot.rs`.

mod path;
mod queue;
mod stream;
#[cfg(test)]
mod tests;
mod versions;

pub use versions::MAX_UNSAVED_VERSIONS;

use super::log::MessageLog;
use super::snapshot::{Snapshot, StreamedReply, Turns};
use super::tree::Tree;
use crate::domain::TurnOptions;
use crate::fsm::State;
use crate::store::{ContextRecord, LoadedContext, QueuedRecord};
use chatsync_protocol::{ContentPart, Message, MessageStatus, Role, ToolCallStatus};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use stream::Streaming;
use uuid::Uuid;
use versions::{Changes, Saving};

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
    /// Changed since the last save began.
    unsaved: Changes,
    /// The save running now, if any: what it writes, taken back should it fail.
    saving: Option<Saving>,
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

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    idempotency_key: Option<String>,
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
            saving: None,
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

    pub fn id(&self) -> Uuid {
        self.record.id
    }

    pub fn state(&self) -> &State {
        &self.record.state
    }

    pub fn version(&self) -> u64 {
        self.record.version
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

    /// The system prompt of this turn's model calls: the context's, then the turn's
    /// instructions.
    pub fn system_prompt(&self) -> Option<String> {
        let context = self.record.config.system_prompt.clone();
        self.record.turn.system_prompt(context)
    }

    /// What the running (or resting) turn was given besides its message.
    pub fn turn_options(&self) -> &TurnOptions {
        &self.record.turn
    }

    /// A request starts or continues a turn with these options; saved with the next save.
    pub fn set_turn_options(&mut self, turn: TurnOptions) {
        if self.record.turn != turn {
            self.record.turn = turn;
            self.unpublished.touch_record();
        }
    }

    pub fn set_state(&mut self, state: State) {
        if self.record.state != state {
            self.record.state = state;
            self.unpublished.touch_record();
        }
    }

    pub fn title(&self) -> &str {
        &self.record.title
    }

    pub fn set_title(&mut self, title: String) {
        if self.record.title != title {
            self.record.title = title;
            self.unpublished.touch_record();
        }
    }

    pub fn snapshot(&self, turns: Turns) -> Snapshot {
        let pending_tool_calls = match (&self.record.state, self.tool_call_message()) {
            (State::AwaitingToolApproval | State::AwaitingToolOutput, Some(i)) => self.messages[i]
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
