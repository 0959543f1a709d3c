//! What readers get: the snapshot an actor publishes after every change (an immutable
//! copy that shares the history with the live context), and the answers of actions built
//! on it. These are the engine's only types the HTTP layer reads.

use super::log::MessageLog;
use super::stream_text::TextPrefix;
use crate::store::ContextRecord;
use chatsync_protocol::{ChatState, ContentPart, ContextSummary, Message, Role, Status, ToolCall};
use std::borrow::Cow;
use std::sync::Arc;
use uuid::Uuid;

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
    pub(super) log: MessageLog,
    pub(super) streamed: Option<StreamedReply>,
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
        snippet: None,
    }
}

/// What an action answers once its turn rested or the wait ran out.
#[derive(Debug)]
pub struct TurnOutcome {
    pub snapshot: Arc<Snapshot>,
    /// The turn reached a resting state within the wait.
    pub settled: bool,
}

/// A message written by the deprecated CRUD requests, and whether it is on disk yet.
#[derive(Debug, Clone)]
pub struct Written {
    pub message: Arc<Message>,
    pub saved: bool,
}

/// The streamed reply as a snapshot shows it: its message in the log lacks this text.
#[derive(Debug, Clone)]
pub(super) struct StreamedReply {
    pub(super) index: usize,
    pub(super) text: TextPrefix,
}

/// `message` with the streamed `text` as its last content part.
pub(super) fn with_streamed_text(message: &Message, text: String) -> Message {
    let mut whole = message.clone();
    whole.content.push(ContentPart::text(text));
    whole
}
