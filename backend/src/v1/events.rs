//! A response's object and its event stream, derived from stored state only.
//!
//! Architecture Invariant: this module does no I/O. It gets the response's request (as
//! stored), the context's messages as the store holds them (`Snapshot::durable_messages`)
//! and the recorded outcome, and returns the whole event list from sequence 0. Text
//! deltas are fixed-size pieces of durable text (whole pieces while the reply streams,
//! the last short piece once it is final), so the same stored state gives the same list on
//! any instance, after any restart, and a list derived later only extends one derived
//! earlier: a sequence number a client has seen never names other content.

use super::ids;
use super::items::{
    arguments_text, assistant_item, call_error, function_call_item, output_text_part,
};
use chatsync_protocol::{content_text, Message, MessageStatus, Role, StateName, ToolCall};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;

/// Characters per `response.output_text.delta`.
pub const PIECE_CHARS: usize = 16;
/// The label server tools carry as MCP items.
pub const SERVER_LABEL: &str = "chatsync";

/// Where a response's turn starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anchor {
    /// The user message sent with this client message id (the response id).
    Message { client_id: String },
    /// A continuation (tool outputs, approvals): the output follows this message, the
    /// assistant message whose calls were answered.
    After { message_id: Uuid },
}

/// What a response was asked, as stored (`responses.request`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub model: String,
    pub instructions: Option<String>,
    /// The tools as the request declared them.
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub metadata: Value,
    pub background: bool,
    pub store: bool,
    pub previous_response_id: Option<String>,
    /// `conv_...` when the request named a conversation.
    pub conversation: Option<String>,
    pub anchor: Anchor,
    /// The input items, as `input_items` lists them.
    pub input: Vec<Value>,
}

impl Spec {
    /// Whether this response's input carries the client's output for call `id`.
    pub fn answers_call(&self, id: &str) -> bool {
        self.input
            .iter()
            .any(|i| i["type"] == "function_call_output" && i["call_id"] == id)
    }

    /// Whether the request declared a function tool of this name: the model's call to it
    /// is the client's to answer.
    pub fn declares_function(&self, name: &str) -> bool {
        self.tools
            .iter()
            .any(|t| t["type"] == "function" && t["name"] == name)
    }
}

/// How a response ended, recorded once (`responses.outcome`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `completed`, `failed`, `cancelled` or `incomplete`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Outcome {
    fn new(status: &str, error: Option<String>) -> Self {
        Outcome {
            status: status.into(),
            error,
        }
    }

    /// The terminal event that reports it.
    fn event(&self) -> &'static str {
        match self.status.as_str() {
            "completed" => "response.completed",
            "failed" => "response.failed",
            _ => "response.incomplete",
        }
    }
}

/// The stored state a response is derived from.
#[derive(Debug)]
pub struct Stored<'a> {
    pub id: &'a str,
    /// Unix seconds.
    pub created_at: i64,
    pub spec: &'a Spec,
    /// The active path as the store holds it.
    pub messages: &'a [Arc<Message>],
    /// The context's state and error, when the store holds the state shown.
    pub state: Option<(StateName, Option<String>)>,
    pub outcome: Option<&'a Outcome>,
}

/// A response as far as the stored state goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// Every event from sequence 0 (each carries its `sequence_number`).
    pub events: Vec<Value>,
    /// The response object now.
    pub response: Value,
    /// The response ended, but that is not recorded yet: record this (first writer wins)
    /// and derive again; the terminal event comes only from a recorded outcome.
    pub unrecorded: Option<Outcome>,
    /// The terminal event is in `events`.
    pub ended: bool,
}

struct Builder<'a> {
    stored: &'a Stored<'a>,
    events: Vec<Value>,
    output: Vec<Value>,
    output_chars: usize,
}

impl Builder<'_> {
    fn push(&mut self, kind: &str, mut body: Value) {
        body["type"] = kind.into();
        body["sequence_number"] = self.events.len().into();
        self.events.push(body);
    }

    fn response(&self, status: &str, output: &[Value], error: Option<&str>) -> Value {
        let s = self.stored;
        let spec = s.spec;
        let input_chars: usize = spec
            .input
            .iter()
            .map(|i| i.to_string().chars().count())
            .sum();
        let usage = |input: usize, output: usize| {
            let (i, o) = (input.div_ceil(4), output.div_ceil(4));
            json!({
                "input_tokens": i,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": o,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": i + o,
            })
        };
        let done = matches!(status, "completed" | "failed" | "cancelled" | "incomplete");
        json!({
            "id": s.id,
            "object": "response",
            "created_at": s.created_at,
            "status": status,
            "background": spec.background,
            "model": spec.model,
            "instructions": spec.instructions,
            "output": output,
            "tools": spec.tools,
            "tool_choice": spec.tool_choice,
            "parallel_tool_calls": spec.parallel_tool_calls,
            "metadata": spec.metadata,
            "previous_response_id": spec.previous_response_id,
            "conversation": spec.conversation.as_ref().map(|c| json!({"id": c})),
            "store": spec.store,
            "text": {"format": {"type": "text"}},
            "temperature": 1.0,
            "top_p": 1.0,
            "truncation": "disabled",
            "incomplete_details": (status == "incomplete")
                .then(|| json!({"reason": "interrupted"})),
            "error": error.map(|m| json!({"code": "server_error", "message": m})),
            "usage": done.then(|| usage(input_chars, self.output_chars)),
        })
    }

    /// An item that is whole at once (calls): added and done together.
    fn whole_item(&mut self, item: Value) {
        let output_index = self.output.len();
        self.push(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
        );
        if item["type"] == "function_call" {
            self.push(
                "response.function_call_arguments.done",
                json!({
                    "item_id": item["id"], "output_index": output_index,
                    "name": item["name"], "arguments": item["arguments"],
                }),
            );
        }
        self.push(
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
        );
        self.output.push(item);
    }

    /// An assistant message's text: whole pieces only while it streams. `false` when the
    /// message is not final (nothing after it can be derived yet).
    fn message(&mut self, m: &Message) -> bool {
        let text = content_text(&m.content);
        let streaming = m.status == MessageStatus::Streaming;
        let output_index = self.output.len();
        let item_id = ids::make(ids::MESSAGE, m.id);
        self.push(
            "response.output_item.added",
            json!({"output_index": output_index, "item": {
                "type": "message", "id": item_id, "role": "assistant",
                "status": "in_progress", "content": [],
            }}),
        );
        self.push(
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
                "part": output_text_part("")}),
        );
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(PIECE_CHARS) {
            if streaming && piece.len() < PIECE_CHARS {
                break;
            }
            self.push(
                "response.output_text.delta",
                json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
                    "delta": piece.iter().collect::<String>(), "logprobs": []}),
            );
        }
        if streaming {
            return false;
        }
        self.output_chars += chars.len();
        let status = if m.status == MessageStatus::Cancelled {
            "incomplete"
        } else {
            "completed"
        };
        self.push(
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
                "text": text, "logprobs": []}),
        );
        self.push(
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
                "part": output_text_part(&text)}),
        );
        let item = assistant_item(m, &text, status);
        self.push(
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
        );
        self.output.push(item);
        true
    }

    /// A server tool call that ran (or was refused), once its result is stored.
    fn mcp_call(&mut self, call: &ToolCall, result: &Message) {
        let error = call_error(call);
        let item = json!({
            "type": "mcp_call",
            "id": format!("{}{}", ids::MCP_CALL, call.id),
            "server_label": SERVER_LABEL,
            "name": call.name,
            "arguments": arguments_text(&call.arguments),
            "output": error.is_none().then(|| content_text(&result.content)),
            "error": error,
            "status": "completed",
        });
        self.whole_item(item);
    }
}

/// The stored result of call `id` among `after`, if there is one yet.
fn result_of<'m>(after: &'m [Arc<Message>], id: &str) -> Option<&'m Arc<Message>> {
    after
        .iter()
        .find(|m| m.role == Role::Tool && m.tool_call_id.as_deref() == Some(id))
}

/// Derives the response. `auto_approved` says which server tools run without asking.
pub fn derive(stored: &Stored<'_>, auto_approved: &dyn Fn(&str) -> bool) -> Derived {
    let spec = stored.spec;
    let mut b = Builder {
        stored,
        events: Vec::new(),
        output: Vec::new(),
        output_chars: 0,
    };
    let first = if spec.background {
        "queued"
    } else {
        "in_progress"
    };
    b.push(
        "response.created",
        json!({"response": b.response(first, &[], None)}),
    );
    let messages = stored.messages;
    let anchor = match &spec.anchor {
        Anchor::Message { client_id } => messages
            .iter()
            .position(|m| m.client_message_id.as_deref() == Some(client_id.as_str())),
        Anchor::After { message_id } => messages.iter().position(|m| m.id == *message_id),
    };
    let Some(anchor) = anchor else {
        // Queued behind another turn (or not stored yet).
        let response = b.response(first, &[], None);
        return finish(b, response, None, stored.outcome);
    };
    b.push(
        "response.in_progress",
        json!({"response": b.response("in_progress", &[], None)}),
    );
    // How the walk over the turn's messages stopped.
    let mut complete = true;
    let mut awaits_client = false;
    let mut next_turn = false;
    let mut last_reply: Option<MessageStatus> = None;
    if let Anchor::After { .. } = spec.anchor {
        // The answered calls: the server's ran (or were refused) after the approval.
        let calls = messages[anchor].tool_calls.as_deref().unwrap_or_default();
        for call in calls.iter().filter(|c| {
            !spec.answers_call(&c.id) && !spec.declares_function(&c.name) && !auto_approved(&c.name)
        }) {
            match result_of(&messages[anchor + 1..], &call.id) {
                Some(result) => b.mcp_call(call, result),
                None => {
                    complete = false;
                    break;
                }
            }
        }
    }
    let mut i = anchor + 1;
    while complete && i < messages.len() {
        let m = &messages[i];
        i += 1;
        match m.role {
            Role::User => {
                next_turn = true;
                break;
            }
            Role::Tool | Role::System => continue,
            Role::Assistant => {}
        }
        last_reply = Some(m.status);
        let text = content_text(&m.content);
        let calls = m.tool_calls.as_deref().unwrap_or_default();
        if (!text.is_empty() || calls.is_empty() || m.status == MessageStatus::Streaming)
            && !b.message(m)
        {
            complete = false;
            break;
        }
        if m.status == MessageStatus::Cancelled {
            continue;
        }
        for call in calls {
            if spec.declares_function(&call.name) {
                b.whole_item(function_call_item(call));
                awaits_client = true;
            } else if !auto_approved(&call.name) {
                b.whole_item(json!({
                    "type": "mcp_approval_request",
                    "id": format!("{}{}", ids::APPROVAL_REQUEST, call.id),
                    "server_label": SERVER_LABEL,
                    "name": call.name,
                    "arguments": arguments_text(&call.arguments),
                }));
                awaits_client = true;
            } else if let Some(result) = result_of(&messages[i..], &call.id) {
                b.mcp_call(call, result);
            } else {
                complete = false;
                break;
            }
        }
        if awaits_client {
            break;
        }
    }
    let reply_outcome = || match last_reply {
        Some(MessageStatus::Cancelled) => Outcome::new("cancelled", None),
        Some(_) => Outcome::new("completed", None),
        None => Outcome::new("cancelled", None),
    };
    let ended = if !complete {
        None
    } else if awaits_client || next_turn {
        Some(if awaits_client {
            Outcome::new("completed", None)
        } else {
            reply_outcome()
        })
    } else {
        match &stored.state {
            Some((StateName::Failed, error)) => Some(Outcome::new(
                "failed",
                Some(error.clone().unwrap_or_else(|| "The turn failed".into())),
            )),
            Some((state, _)) if state.is_resting() => Some(reply_outcome()),
            _ => None,
        }
    };
    let status_now = "in_progress";
    let response = b.response(status_now, &b.output.clone(), None);
    match ended {
        Some(ended) => finish(b, response, Some(ended), stored.outcome),
        None => finish(b, response, None, None),
    }
}

/// Adds the terminal event when the outcome is recorded; reports one not recorded yet.
fn finish(
    mut b: Builder<'_>,
    in_progress: Value,
    ended: Option<Outcome>,
    recorded: Option<&Outcome>,
) -> Derived {
    match (ended, recorded) {
        (Some(_), Some(recorded)) => {
            let output = b.output.clone();
            let response = b.response(&recorded.status, &output, recorded.error.as_deref());
            b.push(recorded.event(), json!({"response": response}));
            Derived {
                events: b.events,
                response,
                unrecorded: None,
                ended: true,
            }
        }
        (Some(ended), None) => Derived {
            events: b.events,
            response: in_progress,
            unrecorded: Some(ended),
            ended: false,
        },
        (None, _) => Derived {
            events: b.events,
            response: in_progress,
            unrecorded: None,
            ended: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::new_message;
    use chatsync_protocol::{ContentPart, ToolCallStatus};
    use proptest::prelude::*;

    fn spec(tools: Vec<Value>, background: bool) -> Spec {
        Spec {
            model: "scripted".into(),
            instructions: None,
            tools,
            tool_choice: "auto".into(),
            parallel_tool_calls: true,
            metadata: json!({}),
            background,
            store: true,
            previous_response_id: None,
            conversation: None,
            anchor: Anchor::Message {
                client_id: "resp_1".into(),
            },
            input: vec![json!({"type": "message", "role": "user", "content": "hi"})],
        }
    }

    fn user() -> Arc<Message> {
        let mut m = new_message(Role::User, vec![ContentPart::text("hi")], None);
        m.client_message_id = Some("resp_1".into());
        Arc::new(m)
    }

    fn reply(text: &str, status: MessageStatus) -> Message {
        let mut m = new_message(Role::Assistant, vec![ContentPart::text(text)], None);
        m.status = status;
        m
    }

    fn run(
        spec: &Spec,
        messages: &[Arc<Message>],
        state: Option<StateName>,
        outcome: Option<&Outcome>,
    ) -> Derived {
        derive(
            &Stored {
                id: "resp_1",
                created_at: 7,
                spec,
                messages,
                state: state.map(|s| (s, None)),
                outcome,
            },
            &|name| name == "calculator",
        )
    }

    /// The user message and a reply calling `name`, waiting.
    fn calling(text: &str, id: &str, name: &str) -> [Arc<Message>; 2] {
        let mut m = reply(text, MessageStatus::Complete);
        m.tool_calls = Some(vec![ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: json!({"q": "x"}),
            status: ToolCallStatus::Pending,
            result: None,
        }]);
        [user(), Arc::new(m)]
    }

    /// Derives while the turn waits for the client (in `state`), records the end, derives
    /// again.
    fn waiting(spec: &Spec, messages: &[Arc<Message>], state: StateName) -> Derived {
        let state = Some(state);
        let first = run(spec, messages, state, None);
        let outcome = first.unrecorded.expect("ended");
        assert_eq!(outcome, Outcome::new("completed", None));
        run(spec, messages, state, Some(&outcome))
    }

    fn types(d: &Derived) -> Vec<&str> {
        d.events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("?"))
            .collect()
    }

    /// The whole stream of a reply: derived step by step as the store grows, each list
    /// extends the one before, and the last ends with `response.completed`.
    fn stream_of(text: &str, cuts: &[usize]) -> Vec<Derived> {
        let spec = spec(vec![], false);
        let reply_id = new_message(Role::Assistant, vec![], None).id;
        let at = |upto: usize, status| {
            let mut m = reply(&text.chars().take(upto).collect::<String>(), status);
            m.id = reply_id;
            vec![user(), Arc::new(m)]
        };
        let mut out = vec![
            run(&spec, &[], None, None),
            run(&spec, &[user()], None, None),
        ];
        for &cut in cuts {
            out.push(run(&spec, &at(cut, MessageStatus::Streaming), None, None));
        }
        let done = at(text.chars().count(), MessageStatus::Complete);
        let unrecorded = run(&spec, &done, Some(StateName::Idle), None);
        let outcome = unrecorded
            .unrecorded
            .clone()
            .unwrap_or_else(|| Outcome::new("?", None));
        out.push(unrecorded);
        out.push(run(&spec, &done, Some(StateName::Idle), Some(&outcome)));
        out
    }

    #[test]
    fn a_reply_streams_as_openai_events_in_order() {
        let text = "The scripted model says hello to you.";
        let steps = stream_of(text, &[3, 20]);
        let last = steps.last().expect("steps");
        assert_eq!(
            types(last),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (n, e) in last.events.iter().enumerate() {
            assert_eq!(e["sequence_number"], n, "gap-free");
        }
        let deltas: String = last
            .events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(deltas, text);
        let done = &last.events[10]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], text);
        assert_eq!(done["created_at"], 7);
        assert!(last.ended);
        // While streaming only whole pieces are shown: 20 characters make one piece.
        let streaming = &steps[3];
        assert_eq!(
            streaming
                .events
                .iter()
                .filter(|e| e["type"] == "response.output_text.delta")
                .count(),
            1
        );
        assert!(!streaming.ended && streaming.unrecorded.is_none());
        // The end is shown only once it is recorded.
        let unrecorded = &steps[steps.len() - 2];
        assert!(!unrecorded.ended);
        assert_eq!(unrecorded.unrecorded, Some(Outcome::new("completed", None)));
    }

    proptest! {
        #[test]
        fn a_later_derivation_only_extends_an_earlier_one(
            text in "[a-zé ]{0,80}",
            mut cuts in proptest::collection::vec(0usize..80, 0..6),
        ) {
            let len = text.chars().count();
            cuts.iter_mut().for_each(|c| *c = (*c).min(len));
            cuts.sort_unstable();
            let steps = stream_of(&text, &cuts);
            for pair in steps.windows(2) {
                let (before, after) = (&pair[0].events, &pair[1].events);
                prop_assert!(after.len() >= before.len());
                prop_assert_eq!(&after[..before.len()], &before[..]);
            }
        }
    }

    /// A model that says something else when asked again: its partial reply stays a
    /// message of its own (cancelled), and the new reply follows it, so everything derived
    /// while the partial streamed is still the start of the list.
    #[test]
    fn a_partial_reply_kept_apart_leaves_what_was_shown_unchanged() {
        let spec = spec(vec![], false);
        let partial_text = "The first attempt said this much";
        let mut partial = reply(partial_text, MessageStatus::Streaming);
        let shown = run(&spec, &[user(), Arc::new(partial.clone())], None, None);
        partial.status = MessageStatus::Cancelled;
        let retried = reply("Another reply entirely.", MessageStatus::Complete);
        let messages = [user(), Arc::new(partial), Arc::new(retried)];
        let ended = run(&spec, &messages, Some(StateName::Idle), None);
        let outcome = ended.unrecorded.expect("ended");
        let done = run(&spec, &messages, Some(StateName::Idle), Some(&outcome));
        assert_eq!(&done.events[..shown.events.len()], &shown.events[..]);
        let output = done.response["output"].as_array().expect("output");
        assert_eq!(output.len(), 2);
        assert_eq!(output[0]["status"], "incomplete");
        assert_eq!(output[1]["content"][0]["text"], "Another reply entirely.");
        assert_eq!(done.response["status"], "completed");
    }

    #[test]
    fn a_queued_background_response_shows_only_its_creation() {
        let spec = spec(vec![], true);
        let d = run(&spec, &[], Some(StateName::StreamingLlmResponse), None);
        assert_eq!(types(&d), ["response.created"]);
        assert_eq!(d.events[0]["response"]["status"], "queued");
        assert_eq!(d.response["status"], "queued");
    }

    #[test]
    fn a_call_to_a_declared_function_ends_the_response_with_a_function_call() {
        let spec = spec(vec![json!({"type": "function", "name": "lookup"})], false);
        let d = waiting(
            &spec,
            &calling("I will use the lookup tool.", "call_1", "lookup"),
            StateName::AwaitingToolOutput,
        );
        let output = &d.response["output"];
        assert_eq!(output[1]["type"], "function_call");
        assert_eq!(output[1]["call_id"], "call_1");
        assert_eq!(output[1]["name"], "lookup");
        assert_eq!(output[1]["arguments"], "{\"q\":\"x\"}");
        assert_eq!(d.response["status"], "completed");
        assert!(types(&d).contains(&"response.function_call_arguments.done"));
    }

    #[test]
    fn a_server_tool_waiting_for_approval_is_an_mcp_approval_request() {
        let d = waiting(
            &spec(vec![], false),
            &calling("", "call_2", "write_file"),
            StateName::AwaitingToolApproval,
        );
        let item = &d.response["output"][0];
        assert_eq!(item["type"], "mcp_approval_request");
        assert_eq!(item["id"], "mcpr_call_2");
    }

    #[test]
    fn a_failed_turn_fails_the_response_and_no_end_shows_before_the_state_is_stored() {
        let spec = spec(vec![], false);
        let messages = [user()];
        assert_eq!(run(&spec, &messages, None, None).unrecorded, None);
        let d = derive(
            &Stored {
                id: "resp_1",
                created_at: 7,
                spec: &spec,
                messages: &messages,
                state: Some((StateName::Failed, Some("model down".into()))),
                outcome: None,
            },
            &|_| false,
        );
        let outcome = d.unrecorded.expect("ended");
        assert_eq!(outcome.status, "failed");
        let d = run(&spec, &messages, Some(StateName::Idle), Some(&outcome));
        assert_eq!(types(&d).last(), Some(&"response.failed"));
        assert_eq!(d.response["error"]["message"], "model down");
        assert!(
            d.events.iter().all(|e| e.get("error").is_none()),
            "no top-level error key"
        );
    }
}
