//! `POST /v1/chat/completions`: OpenAI's stateless chat API. The model is called directly
//! with the messages given and nothing is stored; with `store: true` the conversation is
//! kept as a chat instead, and its turn runs through the engine like any other.

use super::conversations::item_text;
use super::direct::DirectRun;
use super::events::{Anchor, Spec};
use super::follow::{Follow, Response as StoredResponse, STREAM_LIMIT};
use super::items::arguments_text;
use super::{
    choose_model, client_tools, earlier_response, idempotency_key, invalid, model_name, new_chat,
    record_response, Recorded,
};
use crate::api::error::ApiError;
use crate::api::extract::ApiJson;
use crate::api::quota::TurnAllowed;
use crate::api::AppState;
use crate::auth::User;
use crate::domain::{ClientKey, MessageContent, ModelId, NewMessage, SystemPrompt, TurnOptions};
use crate::engine::new_message;
use crate::llm::{ModelChunk, ModelRequest};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chatsync_protocol::{content_text, ContentPart, Message, Role, ToolCall, ToolCallStatus};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/chat/completions", post(create))
}

/// Messages one request may carry.
const MAX_MESSAGES: usize = 1000;

#[derive(Debug, Deserialize)]
struct CreateRequest {
    model: Option<String>,
    messages: Vec<Value>,
    stream: Option<bool>,
    stream_options: Option<Value>,
    tools: Option<Vec<Value>>,
    store: Option<bool>,
    #[serde(flatten)]
    _rest: HashMap<String, Value>,
}

/// The messages as the model reads them, and the system prompt.
fn parse_messages(messages: &[Value]) -> Result<(Option<String>, Vec<Arc<Message>>), ApiError> {
    if messages.is_empty() || messages.len() > MAX_MESSAGES {
        return Err(invalid(format!(
            "messages must hold 1 to {MAX_MESSAGES} messages"
        )));
    }
    let mut system = Vec::new();
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let text = |content: &Value| match content {
            Value::Null => Ok(String::new()),
            c => item_text(c),
        };
        match m["role"].as_str() {
            Some("system" | "developer") => system.push(item_text(&m["content"])?),
            Some("user") => out.push(new_message(
                Role::User,
                vec![ContentPart::text(item_text(&m["content"])?)],
                None,
            )),
            Some("assistant") => {
                let mut message = new_message(
                    Role::Assistant,
                    vec![ContentPart::text(text(&m["content"])?)],
                    None,
                );
                let calls = m["tool_calls"].as_array().cloned().unwrap_or_default();
                if !calls.is_empty() {
                    message.tool_calls = Some(
                        calls
                            .iter()
                            .map(|c| {
                                let f = &c["function"];
                                let raw = f["arguments"].as_str().unwrap_or("{}");
                                Ok(ToolCall {
                                    id: c["id"]
                                        .as_str()
                                        .ok_or_else(|| invalid("a tool call needs an id"))?
                                        .into(),
                                    name: f["name"]
                                        .as_str()
                                        .ok_or_else(|| {
                                            invalid("a tool call needs a function name")
                                        })?
                                        .into(),
                                    arguments: serde_json::from_str(raw)
                                        .unwrap_or_else(|_| Value::String(raw.into())),
                                    status: ToolCallStatus::Completed,
                                    result: None,
                                })
                            })
                            .collect::<Result<_, ApiError>>()?,
                    );
                }
                out.push(message);
            }
            Some("tool") => {
                let mut message = new_message(
                    Role::Tool,
                    vec![ContentPart::text(text(&m["content"])?)],
                    None,
                );
                message.tool_call_id = Some(
                    m["tool_call_id"]
                        .as_str()
                        .ok_or_else(|| invalid("a tool message needs tool_call_id"))?
                        .into(),
                );
                out.push(message);
            }
            _ => {
                return Err(invalid(
                    "each message needs role system, developer, user, assistant or tool",
                ))
            }
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    Ok((system, out.into_iter().map(Arc::new).collect()))
}

fn check_tools(tools: &[Value]) -> Result<(), ApiError> {
    for t in tools {
        let named = t["function"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        if t["type"] != "function" || !named {
            return Err(invalid("tools must be function tools with a name"));
        }
    }
    Ok(())
}

/// The reply: its text and its calls.
#[derive(Debug, Default)]
struct Reply {
    text: String,
    calls: Vec<(String, String, String)>,
}

fn usage(prompt_chars: usize, reply: &Reply) -> Value {
    let completion_chars = reply.text.chars().count()
        + reply
            .calls
            .iter()
            .map(|(_, n, a)| n.len() + a.len())
            .sum::<usize>();
    let (p, c) = (prompt_chars.div_ceil(4), completion_chars.div_ceil(4));
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

fn finish_reason(reply: &Reply) -> &'static str {
    if reply.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

fn tool_calls_json(reply: &Reply) -> Vec<Value> {
    reply
        .calls
        .iter()
        .enumerate()
        .map(|(i, (id, name, arguments))| {
            json!({"index": i, "id": id, "type": "function",
                "function": {"name": name, "arguments": arguments}})
        })
        .collect()
}

fn completion(id: &str, created: i64, model: &str, reply: &Reply, usage: Value) -> Value {
    let mut message = json!({"role": "assistant", "content": reply.text, "refusal": null});
    if !reply.calls.is_empty() {
        message["tool_calls"] = Value::Array(
            tool_calls_json(reply)
                .into_iter()
                .map(|mut c| {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("index");
                    }
                    c
                })
                .collect(),
        );
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reply),
            "logprobs": null}],
        "usage": usage,
    })
}

fn chunk(id: &str, created: i64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
    })
}

fn data(value: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(value.to_string()))
}

async fn create(
    State(app): State<AppState>,
    user: User,
    _: TurnAllowed,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let (system, messages) = parse_messages(&req.messages)?;
    check_tools(req.tools.as_deref().unwrap_or_default())?;
    let model_id = choose_model(&app, req.model)?;
    let model = model_name(&app, model_id.as_ref());
    let include_usage = req
        .stream_options
        .as_ref()
        .is_some_and(|o| o["include_usage"] == true);
    let prompt_chars: usize = messages
        .iter()
        .map(|m| content_text(&m.content).chars().count())
        .sum();
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if key.is_some() && req.store != Some(true) {
        return Err(invalid(
            "an Idempotency-Key needs store: true here (a completion that stores nothing \
             cannot be answered again)",
        ));
    }
    if req.store == Some(true) {
        let tools = req.tools.unwrap_or_default();
        let run = StoredRun {
            id,
            model_id,
            model: model.clone(),
            system,
            key,
            tools,
        };
        let response = stored_run(&app, &user, run, &messages).await?;
        let chunks = Chunks::new(&response.row.id, response.row.created_at, &model);
        if req.stream == Some(true) {
            // The reply streams in pieces as the turn stores it (a retry under the same
            // key replays the same pieces).
            let follow = Follow::new(app.clone(), &user, response, None, STREAM_LIMIT)?;
            let usage = include_usage.then_some(prompt_chars);
            return Ok(chunks.stream(stored_pieces(follow), usage));
        }
        let reply = answered(&app, &user, response).await?;
        let usage = usage(prompt_chars, &reply);
        return Ok(Json(chunks.completion(&reply, usage)).into_response());
    }
    let request = ModelRequest {
        model: Some(model.clone()),
        system_prompt: system,
        client_tools: vec![],
        messages,
        attempt: 0,
    };
    let mut run = DirectRun::open(&app, request).await?;
    let chunks = Chunks::new(&id, created, &model);
    if req.stream != Some(true) {
        let mut reply = Reply::default();
        while let Some(next) = run.next().await {
            add(&mut reply, next?);
        }
        let usage = usage(prompt_chars, &reply);
        return Ok(Json(chunks.completion(&reply, usage)).into_response());
    }
    Ok(chunks.stream(direct_pieces(run), include_usage.then_some(prompt_chars)))
}

/// What a streamed completion is made of, whatever produces it (the model called
/// directly, or a stored turn followed).
enum Piece {
    Chunk(ModelChunk),
    End,
    Failed { code: &'static str, message: String },
}

/// The pieces of a model called directly.
fn direct_pieces(run: DirectRun) -> impl Stream<Item = Piece> {
    futures::stream::unfold(Some(run), |run| async move {
        let mut run = run?;
        Some(match run.next().await {
            Some(Ok(chunk)) => (Piece::Chunk(chunk), Some(run)),
            Some(Err(stop)) => {
                let message = stop.message();
                (
                    Piece::Failed {
                        code: stop.code(),
                        message,
                    },
                    None,
                )
            }
            None => (Piece::End, None),
        })
    })
}

/// The pieces of a stored turn, read from its response's events as the store holds them.
fn stored_pieces(follow: Follow) -> impl Stream<Item = Piece> {
    futures::stream::unfold(Some(follow), |follow| async move {
        let mut follow = follow?;
        loop {
            let Some(event) = follow.next_event().await else {
                let message = "The stream ended before the reply did; ask again with the \
                               same Idempotency-Key for the whole completion"
                    .to_owned();
                return Some((
                    Piece::Failed {
                        code: "incomplete",
                        message,
                    },
                    None,
                ));
            };
            let item = &event["item"];
            let piece = match event["type"].as_str().unwrap_or_default() {
                "response.output_text.delta" => Piece::Chunk(ModelChunk::Text(
                    event["delta"].as_str().unwrap_or_default().to_owned(),
                )),
                "response.output_item.done" if item["type"] == "function_call" => {
                    let raw = item["arguments"].as_str().unwrap_or("{}");
                    Piece::Chunk(ModelChunk::ToolCall {
                        id: item["call_id"].as_str().unwrap_or_default().to_owned(),
                        name: item["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: serde_json::from_str(raw)
                            .unwrap_or_else(|_| Value::String(raw.into())),
                    })
                }
                "response.failed" => {
                    let error = &event["response"]["error"]["message"];
                    let message = error.as_str().unwrap_or("The turn failed").to_owned();
                    return Some((
                        Piece::Failed {
                            code: "model_error",
                            message,
                        },
                        None,
                    ));
                }
                "response.completed" | "response.incomplete" => return Some((Piece::End, None)),
                _ => continue,
            };
            return Some((piece, Some(follow)));
        }
    })
}

/// Writes one completion's chunks and objects.
struct Chunks {
    id: String,
    created: i64,
    model: String,
}

impl Chunks {
    fn new(id: &str, created: i64, model: &str) -> Chunks {
        Chunks {
            id: id.to_owned(),
            created,
            model: model.to_owned(),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        chunk(&self.id, self.created, &self.model, delta, finish)
    }

    fn completion(&self, reply: &Reply, usage: Value) -> Value {
        completion(&self.id, self.created, &self.model, reply, usage)
    }

    /// The event stream: the role first, a chunk for each piece, the finish (and the usage,
    /// given the prompt's size in characters), then `[DONE]`.
    fn stream(
        self,
        pieces: impl Stream<Item = Piece> + Send + 'static,
        usage_of: Option<usize>,
    ) -> Response {
        let first = self.chunk(json!({"role": "assistant", "content": ""}), None);
        let mut reply = Reply::default();
        let chunks = pieces.map(move |piece| match piece {
            Piece::Chunk(c) => {
                let delta = match &c {
                    ModelChunk::Text(t) => json!({"content": t}),
                    ModelChunk::ToolCall {
                        id,
                        name,
                        arguments,
                    } => {
                        json!({"tool_calls": [{"index": reply.calls.len(), "id": id,
                            "type": "function", "function": {"name": name,
                            "arguments": arguments_text(arguments)}}]})
                    }
                };
                add(&mut reply, c);
                vec![self.chunk(delta, None)]
            }
            Piece::End => {
                let mut out = vec![self.chunk(json!({}), Some(finish_reason(&reply)))];
                if let Some(prompt_chars) = usage_of {
                    let mut last = self.chunk(json!({}), None);
                    last["choices"] = json!([]);
                    last["usage"] = usage(prompt_chars, &reply);
                    out.push(last);
                }
                out
            }
            Piece::Failed { code, message } => vec![json!({"error": {"message": message,
                "type": "server_error", "param": null, "code": code}})],
        });
        let events = futures::stream::once(async move { vec![first] })
            .chain(chunks)
            .flat_map(|values| futures::stream::iter(values.into_iter().map(|v| data(&v))))
            .chain(futures::stream::once(async {
                Ok(Event::default().data("[DONE]"))
            }));
        Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response()
    }
}

fn add(reply: &mut Reply, chunk: ModelChunk) {
    match chunk {
        ModelChunk::Text(t) => reply.text.push_str(&t),
        ModelChunk::ToolCall {
            id,
            name,
            arguments,
        } => {
            reply.calls.push((id, name, arguments_text(&arguments)));
        }
    }
}

/// What a completion of `store: true` keeps.
struct StoredRun {
    id: String,
    /// The model asked for (the chat's), and the one that answers.
    model_id: Option<ModelId>,
    model: String,
    system: Option<String>,
    key: Option<String>,
    /// As the request declared them (`{"type": "function", "function": {...}}`).
    tools: Vec<Value>,
}

/// A completion of `store: true`: the messages become a chat (the last one sent as its
/// turn) and a response row, so the same `Idempotency-Key` answers the same completion;
/// the turn's reply is the answer. Answers the response to follow (the earlier one, for a
/// repeated key).
async fn stored_run(
    app: &AppState,
    user: &User,
    run: StoredRun,
    messages: &[Arc<Message>],
) -> Result<StoredResponse, ApiError> {
    if let Some(earlier) = earlier_response(app, user, run.key.as_deref()).await? {
        return Ok(earlier);
    }
    let (last, earlier) = messages
        .split_last()
        .filter(|(last, _)| last.role == Role::User)
        .ok_or_else(|| invalid("with store: true the last message must be the user's"))?;
    let text = content_text(&last.content);
    let content = MessageContent::parse(text.clone()).map_err(|e| invalid(e.0))?;
    let client_message_id =
        ClientKey::parse("completion id", run.id.clone()).map_err(|e| invalid(e.0))?;
    let spec = Spec {
        model: run.model.clone(),
        instructions: run.system.clone(),
        tools: run
            .tools
            .iter()
            .map(|t| {
                let mut f = t["function"].clone();
                f["type"] = "function".into();
                f
            })
            .collect(),
        tool_choice: "auto".into(),
        parallel_tool_calls: true,
        metadata: json!({}),
        background: false,
        store: true,
        previous_response_id: None,
        conversation: None,
        anchor: Anchor::Message {
            client_id: run.id.clone(),
        },
        input: vec![json!({"type": "message", "role": "user", "content": text})],
    };
    let system_prompt = run
        .system
        .map(SystemPrompt::parse)
        .transpose()
        .map_err(|e| invalid(e.0))?;
    let context = new_chat(app, user, &text, run.model_id, system_prompt).await?;
    let response = match record_response(app, user, (run.id, context, run.key), spec, true).await? {
        Recorded::New(response) => response,
        // The same key raced this request: the completion that won.
        Recorded::Earlier(won) => return Ok(won),
    };
    for m in earlier {
        app.engine
            .append_message(context, m.role, m.content.clone(), m.tool_call_id.clone())
            .await?;
    }
    app.engine
        .send_message(
            context,
            NewMessage {
                content,
                client_message_id: Some(client_message_id),
                idempotency_key: None,
                if_busy: Default::default(),
                turn: TurnOptions {
                    client_tools: client_tools(&response.spec.tools),
                    instructions: None,
                },
                preceding: Vec::new(),
            },
            Duration::ZERO,
        )
        .await?;
    Ok(response)
}

/// The reply of a stored completion, once its turn ended (or the wait ran out).
async fn answered(
    app: &AppState,
    user: &User,
    response: StoredResponse,
) -> Result<Reply, ApiError> {
    let object = Follow::new(app.clone(), user, response, None, app.config.wait_timeout)?
        .until_end()
        .await
        .unwrap_or_default();
    let mut reply = Reply::default();
    for item in object["output"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("message") => {
                reply
                    .text
                    .push_str(item["content"][0]["text"].as_str().unwrap_or_default());
            }
            Some("function_call") => reply.calls.push((
                item["call_id"].as_str().unwrap_or_default().to_owned(),
                item["name"].as_str().unwrap_or_default().to_owned(),
                item["arguments"].as_str().unwrap_or_default().to_owned(),
            )),
            _ => {}
        }
    }
    Ok(reply)
}
