//! Messages as OpenAI conversation items, and OpenAI's cursor paging over a list of them.

use super::ids;
use chatsync_protocol::{content_text, Message, MessageStatus, Role, ToolCall, ToolCallStatus};
use serde::Deserialize;
use serde_json::{json, Value};

/// Items one page may hold, and how many a page holds by default (as OpenAI's).
pub const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 20;

/// The arguments of a call as the text OpenAI sends.
pub fn arguments_text(arguments: &Value) -> String {
    match arguments {
        // Arguments that were not JSON are kept as the model wrote them.
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

pub fn function_call_item(call: &ToolCall) -> Value {
    json!({
        "type": "function_call",
        "id": format!("{}{}", ids::FUNCTION_CALL, call.id),
        "call_id": call.id,
        "name": call.name,
        "arguments": arguments_text(&call.arguments),
        "status": "completed",
    })
}

pub fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// An assistant message item with its text (`status`: `in_progress`, `completed` or
/// `incomplete`).
pub fn assistant_item(message: &Message, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": ids::make(ids::MESSAGE, message.id),
        "role": "assistant",
        "status": status,
        "content": [output_text_part(text)],
    })
}

pub fn message_status(message: &Message) -> &'static str {
    match message.status {
        MessageStatus::Streaming | MessageStatus::Queued => "in_progress",
        MessageStatus::Complete => "completed",
        MessageStatus::Cancelled => "incomplete",
    }
}

/// A message as the items a conversation lists: a user or system message is one item; an
/// assistant message its text (when it has any, or no calls) and one item per call; a
/// tool message the call's output.
pub fn message_items(message: &Message) -> Vec<Value> {
    let text = content_text(&message.content);
    match message.role {
        Role::User | Role::System => vec![json!({
            "type": "message",
            "id": ids::make(ids::MESSAGE, message.id),
            "role": if message.role == Role::User { "user" } else { "system" },
            "status": message_status(message),
            "content": [{"type": "input_text", "text": text}],
        })],
        Role::Assistant => {
            let calls = message.tool_calls.as_deref().unwrap_or_default();
            let mut items = Vec::with_capacity(1 + calls.len());
            if !text.is_empty() || calls.is_empty() {
                items.push(assistant_item(message, &text, message_status(message)));
            }
            items.extend(calls.iter().map(function_call_item));
            items
        }
        Role::Tool => vec![json!({
            "type": "function_call_output",
            "id": ids::make(ids::FUNCTION_OUTPUT, message.id),
            "call_id": message.tool_call_id,
            "output": text,
            "status": "completed",
        })],
    }
}

/// Whether a server tool call was refused or failed, and what to show for it.
pub fn call_error(call: &ToolCall) -> Option<String> {
    match call.status {
        ToolCallStatus::Denied => Some(
            call.result
                .clone()
                .unwrap_or_else(|| "The call was denied".into()),
        ),
        ToolCallStatus::Failed => Some(call.result.clone().unwrap_or_default()),
        _ => None,
    }
}

/// `?after=&limit=&order=` of a list endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub after: Option<String>,
    pub limit: Option<usize>,
    pub order: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl PageQuery {
    /// The order asked for (`desc` when none, as OpenAI's) and the page size, checked.
    pub fn parse(&self) -> Result<(Order, usize), String> {
        let order = match self.order.as_deref() {
            None | Some("desc") => Order::Desc,
            Some("asc") => Order::Asc,
            Some(other) => return Err(format!("order must be asc or desc, not {other:?}")),
        };
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(format!("limit must be between 1 and {MAX_LIMIT}"));
        }
        Ok((order, limit))
    }
}

/// One page of `items` (given oldest first) as OpenAI's list object: `after` is the id of
/// the last item of the previous page; an id not in the list is an error.
pub fn page(
    mut items: Vec<Value>,
    order: Order,
    limit: usize,
    after: Option<&str>,
) -> Result<Value, String> {
    if order == Order::Desc {
        items.reverse();
    }
    let start = match after {
        None => 0,
        Some(after) => {
            items
                .iter()
                .position(|i| i["id"] == after)
                .ok_or_else(|| format!("No item {after:?} in this list"))?
                + 1
        }
    };
    let rest = items.len().saturating_sub(start);
    let data: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    Ok(json!({
        "object": "list",
        "first_id": data.first().map(|i| i["id"].clone()),
        "last_id": data.last().map(|i| i["id"].clone()),
        "has_more": rest > limit,
        "data": data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("i{i}")})).collect()
    }

    fn ids(page: &Value) -> Vec<String> {
        page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn pages_walk_the_list_newest_first_by_default() {
        let (order, limit) = PageQuery {
            limit: Some(2),
            ..PageQuery::default()
        }
        .parse()
        .expect("valid");
        let first = page(items(5), order, limit, None).expect("page");
        assert_eq!(ids(&first), ["i4", "i3"]);
        assert_eq!(first["has_more"], true);
        assert_eq!(first["first_id"], "i4");
        assert_eq!(first["last_id"], "i3");
        let second = page(items(5), order, limit, Some("i3")).expect("page");
        assert_eq!(ids(&second), ["i2", "i1"]);
        let last = page(items(5), order, limit, Some("i1")).expect("page");
        assert_eq!(ids(&last), ["i0"]);
        assert_eq!(last["has_more"], false);
        let asc = page(items(3), Order::Asc, 10, None).expect("page");
        assert_eq!(ids(&asc), ["i0", "i1", "i2"]);
        assert_eq!(asc["has_more"], false);
    }

    #[test]
    fn bad_paging_is_refused() {
        assert!(page(items(3), Order::Asc, 2, Some("nope")).is_err());
        for q in [
            PageQuery {
                limit: Some(0),
                ..PageQuery::default()
            },
            PageQuery {
                limit: Some(101),
                ..PageQuery::default()
            },
            PageQuery {
                order: Some("up".into()),
                ..PageQuery::default()
            },
        ] {
            assert!(q.parse().is_err());
        }
    }
}
