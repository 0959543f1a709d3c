//! Wire types of the chatsync HTTP API, shared by the backend and the sync module.
//!
//! Architecture Invariant: this crate is serde only. It does no I/O and knows nothing of
//! axum, sqlx or the browser, so both sides of the wire compile the very same definitions.
//! Field names are snake_case on the wire, as `DESIGN.md` specifies.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A point in time, written on the wire as an RFC 3339 string in UTC.
///
/// With the default `chrono` feature it is parsed into a `DateTime<Utc>`. Without it (the
/// browser sync module, which only hands timestamps on to JavaScript) it stays the string
/// the server sent, which keeps a date parser and formatter out of the WebAssembly.
#[cfg(feature = "chrono")]
pub type Timestamp = chrono::DateTime<chrono::Utc>;
/// A point in time, written on the wire as an RFC 3339 string in UTC, kept as that string.
#[cfg(not(feature = "chrono"))]
pub type Timestamp = String;

/// Name of a state of the per-context finite-state machine, as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StateName {
    Idle,
    ProcessingUserMessage,
    #[serde(rename = "AwaitingLLMResponse")]
    AwaitingLlmResponse,
    #[serde(rename = "StreamingLLMResponse")]
    StreamingLlmResponse,
    #[serde(rename = "ProcessingLLMResponse")]
    ProcessingLlmResponse,
    AwaitingToolApproval,
    /// A call to a tool the client declared (the OpenAI API's function tools) waits for
    /// the client's output.
    AwaitingToolOutput,
    ExecutingTools,
    ProcessingToolResults,
    GeneratingResponse,
    TransientFailure,
    Failed,
}

impl StateName {
    /// Every state, in the order a turn usually visits them.
    pub const ALL: [StateName; 12] = [
        StateName::Idle,
        StateName::ProcessingUserMessage,
        StateName::AwaitingLlmResponse,
        StateName::StreamingLlmResponse,
        StateName::ProcessingLlmResponse,
        StateName::AwaitingToolApproval,
        StateName::AwaitingToolOutput,
        StateName::ExecutingTools,
        StateName::ProcessingToolResults,
        StateName::GeneratingResponse,
        StateName::TransientFailure,
        StateName::Failed,
    ];

    /// The wire spelling of this state (the same string serde writes).
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Idle => "Idle",
            StateName::ProcessingUserMessage => "ProcessingUserMessage",
            StateName::AwaitingLlmResponse => "AwaitingLLMResponse",
            StateName::StreamingLlmResponse => "StreamingLLMResponse",
            StateName::ProcessingLlmResponse => "ProcessingLLMResponse",
            StateName::AwaitingToolApproval => "AwaitingToolApproval",
            StateName::AwaitingToolOutput => "AwaitingToolOutput",
            StateName::ExecutingTools => "ExecutingTools",
            StateName::ProcessingToolResults => "ProcessingToolResults",
            StateName::GeneratingResponse => "GeneratingResponse",
            StateName::TransientFailure => "TransientFailure",
            StateName::Failed => "Failed",
        }
    }

    /// Parses the wire spelling; `None` for anything else.
    pub fn parse(name: &str) -> Option<StateName> {
        StateName::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Resting states are where a turn waits for a person (or for the client's tool
    /// output); they are always durable.
    pub fn is_resting(self) -> bool {
        matches!(
            self,
            StateName::Idle
                | StateName::AwaitingToolApproval
                | StateName::AwaitingToolOutput
                | StateName::Failed
        )
    }

    /// The coarse status a client shows for this state.
    pub fn status(self) -> Status {
        match self {
            StateName::Idle => Status::Idle,
            StateName::AwaitingToolApproval => Status::AwaitingApproval,
            StateName::AwaitingToolOutput => Status::AwaitingToolOutput,
            StateName::Failed => Status::Failed,
            _ => Status::Running,
        }
    }
}

/// Coarse status of a context, derived from its FSM state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Idle,
    Running,
    AwaitingApproval,
    /// Waits for the output of a tool the client runs (an OpenAI API client's function
    /// tool); a person can only cancel it.
    AwaitingToolOutput,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        [Role::System, Role::User, Role::Assistant, Role::Tool]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Streaming,
    Complete,
    Cancelled,
    /// A user message sent while a turn ran: stored, waiting for its own turn.
    Queued,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Streaming => "streaming",
            MessageStatus::Complete => "complete",
            MessageStatus::Cancelled => "cancelled",
            MessageStatus::Queued => "queued",
        }
    }

    pub fn parse(name: &str) -> Option<MessageStatus> {
        [
            MessageStatus::Streaming,
            MessageStatus::Complete,
            MessageStatus::Cancelled,
            MessageStatus::Queued,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// One part of a message's content. Only text exists today; the tag keeps room for more.
///
/// Read through [`WirePart`] rather than serde's internally tagged enums, which buffer every
/// value before looking at its tag: the same wire form, and the buffering code stays out of
/// the browser module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", from = "WirePart")]
pub enum ContentPart {
    Text { text: String },
}

/// A content part as it is written: its `type` and the fields of that type.
#[derive(Deserialize)]
struct WirePart {
    #[serde(rename = "type")]
    kind: PartKind,
    text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum PartKind {
    Text,
}

impl From<WirePart> for ContentPart {
    fn from(part: WirePart) -> Self {
        match part.kind {
            PartKind::Text => ContentPart::Text { text: part.text },
        }
    }
}

impl ContentPart {
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }
}

/// Joins the text parts of a message's content.
pub fn content_text(parts: &[ContentPart]) -> String {
    parts
        .iter()
        .map(|p| match p {
            ContentPart::Text { text } => text.as_str(),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallStatus {
    Pending,
    Approved,
    Denied,
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
    pub status: ToolCallStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    pub role: Role,
    pub content: Vec<ContentPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    pub status: MessageStatus,
    pub created_at: Timestamp,
    /// The context version at which this message last changed.
    pub version: u64,
    /// The message this one follows in the tree (null for the first of a chat).
    #[serde(default)]
    pub parent_id: Option<Uuid>,
    /// Position among the messages with the same parent, in the order they were made.
    #[serde(default)]
    pub sibling_index: u32,
    /// How many messages share this one's parent (itself included).
    #[serde(default = "one")]
    pub sibling_count: u32,
}

fn one() -> u32 {
    1
}

/// What `GET /api/contexts/{id}/state` and every action answer.
///
/// Generic over how messages are held, so a server can answer with borrowed messages
/// (`ChatState<&Message>`, or `ChatState<Cow<Message>>` where a few are built for the
/// answer) instead of copying them; the wire form is the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatState<M = Message> {
    pub context_id: Uuid,
    pub version: u64,
    pub status: Status,
    pub state: StateName,
    pub error: Option<String>,
    /// All messages, or with `delta: true` only those changed after `?since=`.
    pub messages: Vec<M>,
    /// Messages in the whole context, whatever `messages` holds.
    pub message_count: u64,
    pub pending_tool_calls: Vec<ToolCall>,
    pub updated_at: Timestamp,
    pub delta: bool,
    /// User messages waiting for their turn while one runs, in arrival order (always
    /// whole, also in a delta). They are not in `messages` until their turn starts.
    #[serde(default = "Vec::new")]
    pub queued: Vec<M>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextConfig {
    pub model_id: Option<String>,
    pub mode: Option<String>,
    pub system_prompt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextSummary {
    pub id: Uuid,
    pub title: String,
    pub status: Status,
    pub state: StateName,
    pub message_count: u64,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub config: ContextConfig,
}

/// Body of `POST /api/contexts`. Every field is optional and may be null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContextRequest {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub model_id: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub system_prompt_id: Option<String>,
}

/// Body of `PATCH /api/contexts/{id}`: the new title (1 to 200 characters once trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameContextRequest {
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListContextsResponse {
    pub contexts: Vec<ContextSummary>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

/// Body of `POST /api/contexts/{id}/actions/send_message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessageRequest {
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// What to do when a turn is running; the server's default is `enqueue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_busy: Option<IfBusy>,
}

/// `if_busy` of a send: what happens to a message sent while a turn runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfBusy {
    /// Store it as queued; it runs after the turns before it.
    #[default]
    Enqueue,
    /// Cancel the running turn (its partial reply kept, marked cancelled) and run this next.
    Interrupt,
    /// Refuse with `409 busy`; nothing is stored.
    Reject,
}

/// Optional body of `POST /api/contexts/{id}/actions/cancel`: with `message_id`, drop that
/// queued message instead of cancelling the running turn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
}

/// Body of `POST /api/contexts/{id}/actions/approve_tools`: the approved calls; every other
/// pending call is denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproveToolsRequest {
    pub tool_call_ids: Vec<String>,
}

/// Body of `POST /api/contexts/{id}/actions/edit_message`: a new version of a user message
/// on the active path, added as its sibling; its turn runs like a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditMessageRequest {
    pub message_id: Uuid,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

/// Body of `POST /api/contexts/{id}/actions/regenerate`: a new reply beside an assistant
/// message on the active path (default: the last one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegenerateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
}

/// Body of `POST /api/contexts/{id}/actions/switch_branch`: the active leaf becomes the
/// newest leaf under this message, or, with `sibling_index`, under that sibling of it
/// (0-based, as in `Message::sibling_index`; a "< 2/3 >" switcher sends its neighbour's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchBranchRequest {
    pub message_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sibling_index: Option<u32>,
}

/// Every error the API answers: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// The request's `x-request-id`, to quote when reporting a problem; the server logs
    /// the cause of an error under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Answer of the deprecated `GET /api/contexts/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyMessagesResponse {
    pub messages: Vec<Message>,
    pub total: u64,
}

/// Content as the legacy endpoints accept it: a plain string or a list of parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LegacyContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// Body of the deprecated `POST /api/contexts/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyCreateMessageRequest {
    pub role: Role,
    pub content: LegacyContent,
    #[serde(default)]
    pub branch: Option<String>,
    /// With `role: "tool"`: the id of the context's tool call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// Body of the deprecated `PATCH /api/contexts/{id}/messages/{message_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyPatchMessageRequest {
    pub content: LegacyContent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip_through_serde_and_parse() {
        for s in StateName::ALL {
            let json = serde_json::to_string(&s).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(StateName::parse(s.as_str()), Some(s));
        }
        assert_eq!(StateName::parse("idle"), None);
    }

    #[test]
    fn only_idle_approval_tool_output_and_failed_are_resting() {
        let resting: Vec<_> = StateName::ALL
            .into_iter()
            .filter(|s| s.is_resting())
            .collect();
        assert_eq!(
            resting,
            [
                StateName::Idle,
                StateName::AwaitingToolApproval,
                StateName::AwaitingToolOutput,
                StateName::Failed
            ]
        );
        assert_eq!(StateName::StreamingLlmResponse.status(), Status::Running);
        let waiting = serde_json::to_string(&StateName::AwaitingToolOutput.status());
        assert_eq!(waiting.ok().as_deref(), Some("\"awaiting_tool_output\""));
    }

    #[test]
    fn legacy_content_accepts_string_or_parts() {
        let s: LegacyContent = serde_json::from_str("\"hi\"").expect("string");
        assert_eq!(s, LegacyContent::Text("hi".into()));
        let p: LegacyContent =
            serde_json::from_str(r#"[{"type":"text","text":"hi"}]"#).expect("parts");
        assert_eq!(p, LegacyContent::Parts(vec![ContentPart::text("hi")]));
    }

    #[test]
    fn content_parts_keep_their_wire_form_and_refuse_unknown_types() {
        let part = ContentPart::text("hi");
        let json = serde_json::to_string(&part).unwrap_or_default();
        assert_eq!(json, r#"{"type":"text","text":"hi"}"#);
        let back: ContentPart = serde_json::from_str(&json).expect("part");
        assert_eq!(back, part);
        // Keys it does not know are ignored, as before; a type it does not know is refused.
        let extra: ContentPart =
            serde_json::from_str(r#"{"text":"hi","type":"text","lang":"en"}"#).expect("part");
        assert_eq!(extra, part);
        let unknown = serde_json::from_str::<ContentPart>(r#"{"type":"image","text":"x"}"#);
        assert!(unknown.is_err_and(|e| e.to_string().contains("unknown variant `image`")));
        let missing = serde_json::from_str::<ContentPart>(r#"{"type":"text"}"#);
        assert!(missing.is_err_and(|e| e.to_string().contains("missing field `text`")));
    }

    #[test]
    fn message_omits_absent_optional_fields() {
        let m = Message {
            id: Uuid::nil(),
            client_message_id: None,
            role: Role::User,
            content: vec![ContentPart::text("hi")],
            tool_calls: None,
            tool_call_id: None,
            status: MessageStatus::Complete,
            created_at: Timestamp::default(),
            version: 3,
            parent_id: None,
            sibling_index: 0,
            sibling_count: 1,
        };
        let v = serde_json::to_value(&m).unwrap_or_default();
        assert!(v.get("tool_calls").is_none());
        assert!(v.get("client_message_id").is_none());
        assert_eq!(v["content"][0]["type"], "text");
        assert_eq!(v["parent_id"], serde_json::Value::Null);
    }

    #[test]
    fn a_message_without_tree_fields_decodes_as_an_only_child() {
        let old = r#"{"id":"00000000-0000-0000-0000-000000000000","role":"user",
            "content":[],"status":"complete","created_at":"2026-01-01T00:00:00Z","version":1}"#;
        let m: Message = serde_json::from_str(old).expect("old message");
        assert_eq!(
            (m.parent_id, m.sibling_index, m.sibling_count),
            (None, 0, 1)
        );
    }
}
