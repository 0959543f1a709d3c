//! What JavaScript sees: camelCase shapes built from the snake_case wire types.
//!
//! These types are the TypeScript surface of the package (see `src/web/types.d.ts`); every
//! field name here must match it.

use chatsync_protocol::{
    ContextConfig, ContextSummary, CreateContextRequest, ListContextsResponse, Role, SnippetPart,
    StateName, Status, Timestamp, ToolCall,
};
use serde::{Deserialize, Serialize};

use super::error::SyncError;

/// A message as the UI renders it: either the server's or a local optimistic one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewMessage {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    pub role: Role,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    pub status: ViewStatus,
    /// As the server sent it (RFC 3339, UTC); `new Date(...)` reads it.
    pub created_at: Timestamp,
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The message this one follows in the chat's tree; `null` for the first (and for an
    /// optimistic message, until the server places it).
    pub parent_id: Option<String>,
    /// Position among the versions with the same parent (0-based), and how many there are:
    /// more than one means the message was edited or regenerated.
    pub sibling_index: u32,
    pub sibling_count: u32,
}

/// The server's message statuses plus the two only an optimistic message can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewStatus {
    Streaming,
    Complete,
    Cancelled,
    /// Stored by the server, waiting for its turn behind a running one.
    Queued,
    /// Sent, not yet seen in the server's state.
    Pending,
    /// The send failed; the message can be retried or discarded.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPhase {
    /// Not started, stopped, or no context selected.
    Stopped,
    /// Started, waiting for the first answer about this context.
    Syncing,
    /// The last poll succeeded.
    Synced,
    /// The tab is hidden; polling resumes when it is visible again.
    Paused,
    /// The last poll failed; polling goes on with backoff.
    Offline,
    /// The context no longer exists; polling stopped.
    Deleted,
    /// Polling stopped on an answer that asking again would not change (`lastError` says
    /// which: `auth` for 401/403, `http` for another 4xx); `start()` resumes.
    Error,
}

/// Everything a UI needs to render one chat, handed to every subscriber.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatView {
    pub context_id: Option<String>,
    pub messages: Vec<ViewMessage>,
    pub status: Option<Status>,
    pub state: Option<StateName>,
    pub error: Option<String>,
    pub version: u64,
    pub pending_tool_calls: Vec<ToolCall>,
    pub poll_interval_ms: u32,
    pub paused: bool,
    pub sync: SyncPhase,
    pub last_error: Option<SyncError>,
    /// Epoch milliseconds of the next scheduled poll, if one is scheduled.
    pub next_poll_at: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextConfigView {
    pub model_id: Option<String>,
    pub mode: Option<String>,
    pub system_prompt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextSummaryView {
    pub id: String,
    pub title: String,
    pub status: Status,
    pub state: StateName,
    pub message_count: u64,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub config: ContextConfigView,
    /// In a search's answer: where the chat matched (plain text parts, matches marked).
    pub snippet: Option<SnippetView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnippetView {
    pub message_id: Option<String>,
    pub parts: Vec<SnippetPart>,
}

impl From<ContextSummary> for ContextSummaryView {
    fn from(c: ContextSummary) -> Self {
        let ContextConfig {
            model_id,
            mode,
            system_prompt,
        } = c.config;
        ContextSummaryView {
            id: c.id.to_string(),
            title: c.title,
            status: c.status,
            state: c.state,
            message_count: c.message_count,
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
            config: ContextConfigView {
                model_id,
                mode,
                system_prompt,
            },
            snippet: c.snippet.map(|s| SnippetView {
                message_id: s.message_id.map(|id| id.to_string()),
                parts: s.parts,
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextListView {
    pub contexts: Vec<ContextSummaryView>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

impl From<ListContextsResponse> for ContextListView {
    fn from(list: ListContextsResponse) -> Self {
        ContextListView {
            contexts: list.contexts.into_iter().map(Into::into).collect(),
            total: list.total,
            next_cursor: list.next_cursor,
        }
    }
}

/// `CreateContextOptions` from JavaScript.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateContextOptions {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub model_id: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
}

impl From<CreateContextOptions> for CreateContextRequest {
    fn from(o: CreateContextOptions) -> Self {
        CreateContextRequest {
            title: o.title,
            model_id: o.model_id,
            mode: o.mode,
            system_prompt: o.system_prompt,
            system_prompt_id: None,
        }
    }
}

/// `listContexts` options from JavaScript.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListOptions {
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// Search words: the answer is the best matches, without a cursor.
    #[serde(default)]
    pub query: Option<String>,
    /// `created` (the server's default) or `updated`: the latest activity first.
    #[serde(default)]
    pub order: Option<ListOrder>,
}

/// The order of the list of contexts (`GET /api/contexts?order=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListOrder {
    Created,
    Updated,
}

impl ListOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            ListOrder::Created => "created",
            ListOrder::Updated => "updated",
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn views_serialize_in_camel_case() {
        let e = SyncError::network("offline");
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"kind": "network", "message": "offline"})
        );
        let o: CreateContextOptions =
            serde_json::from_str(r#"{"title":"t","systemPrompt":"be brief","modelId":null}"#)
                .expect("parse");
        let req = CreateContextRequest::from(o);
        assert_eq!(req.system_prompt.as_deref(), Some("be brief"));
        assert_eq!(req.model_id, None);
    }
}
