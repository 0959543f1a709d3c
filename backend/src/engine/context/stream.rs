//! The reply being streamed: its text grows in a buffer snapshots share by length, not in
//! its message, so appending a chunk never copies the reply.

use super::LiveContext;
use crate::engine::snapshot::with_streamed_text;
use crate::engine::stream_text::StreamText;
use chatsync_protocol::{ContentPart, Message, ToolCall};
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct Streaming {
    /// Where the reply sits on the active path.
    pub(super) index: usize,
    pub(super) text: StreamText,
}

impl LiveContext {
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
    pub(super) fn seal_stream(&mut self) {
        if let Some(s) = self.streaming.take() {
            self.messages
                .make_mut(s.index)
                .content
                .push(ContentPart::text(s.text.into_string()));
        }
    }

    /// The message of this rank as the store gets it: with its streamed text.
    pub(super) fn stored_message(&self, rank: usize) -> Option<Arc<Message>> {
        let message = self.by_rank(rank)?;
        Some(match &self.streaming {
            Some(s) if self.path_index(rank) == Some(s.index) => {
                Arc::new(with_streamed_text(message, s.text.to_text()))
            }
            _ => message.clone(),
        })
    }
}
