//! Helpers shared by the backend's integration tests.

use chatsync_protocol::{content_text, ChatState};

/// The text of the last message of a state ("" when there is none).
pub fn last_text(state: &ChatState) -> String {
    state
        .messages
        .last()
        .map(|m| content_text(&m.content))
        .unwrap_or_default()
}
