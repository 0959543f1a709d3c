//! `POST /v1/chat/completions`: OpenAI's stateless chat API. The model is called directly
//! with the messages given and nothing is stored; with `store: true` the conversation is
//! kept as a chat instead, and its turn runs through the engine like any other.

use super::conversations::item_text;
use super::direct::DirectRun;
use super::events::{Anchor, Spec};
use super::follow::{Follow, Response as StoredResponse};
use super::items::arguments_text;
use super::{chat_title, choose_model, client_tools, idempotency_key, invalid, tables};
use crate::api::error::ApiError;
use crate::api::extract::ApiJson;
use crate::api::quota::TurnAllowed;
use crate::api::AppState;
use crate::auth::User;
use crate::domain::{
    ClientKey, MessageContent, ModelId, NewContext, NewMessage, SystemPrompt, TurnOptions,
};
use crate::engine::new_message;
use crate::llm::{ModelChunk, ModelRequest};
use crate::store::ResponseRow;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chatsync_protocol::{content_text, ContentPart, Message, Role, ToolCall, ToolCallStatus};
use futures::StreamExt;
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
    let model = choose_model(&app, req.model)?
        .unwrap_or_else(|| app.config.models.default_model().to_owned());
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
            created,
            model: model.clone(),
            system,
            key,
            tools,
        };
        let (id, created, reply) = stored_run(&app, &user, run, &messages).await?;
        let usage = usage(prompt_chars, &reply);
        if req.stream == Some(true) {
            return Ok(replay_stream(
                id,
                created,
                model,
                reply,
                include_usage.then_some(usage),
            ));
        }
        return Ok(Json(completion(&id, created, &model, &reply, usage)).into_response());
    }
    let request = ModelRequest {
        model: Some(model.clone()),
        system_prompt: system,
        client_tools: vec![],
        messages,
        attempt: 0,
    };
    let mut run = DirectRun::open(&app, request).await?;
    if req.stream != Some(true) {
        let mut reply = Reply::default();
        while let Some(next) = run.next().await {
            add(&mut reply, next?);
        }
        let usage = usage(prompt_chars, &reply);
        return Ok(Json(completion(&id, created, &model, &reply, usage)).into_response());
    }
    // Streamed: each model chunk is a completion chunk; the end says why it ended.
    let first = chunk(
        &id,
        created,
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    );
    struct Streamed {
        run: DirectRun,
        reply: Reply,
        pending: std::collections::VecDeque<Value>,
        done: bool,
    }
    let streamed = Streamed {
        run,
        reply: Reply::default(),
        pending: [first].into(),
        done: false,
    };
    let (cid, cmodel) = (id.clone(), model.clone());
    let events = futures::stream::unfold(streamed, move |mut s| {
        let (id, model) = (cid.clone(), cmodel.clone());
        async move {
            loop {
                if let Some(v) = s.pending.pop_front() {
                    return Some((data(&v), s));
                }
                if s.done {
                    return None;
                }
                match s.run.next().await {
                    Some(Ok(c)) => {
                        let delta = match &c {
                            ModelChunk::Text(t) => json!({"content": t}),
                            ModelChunk::ToolCall {
                                id: call,
                                name,
                                arguments,
                            } => {
                                json!({"tool_calls": [{"index": s.reply.calls.len(), "id": call,
                                    "type": "function", "function": {"name": name,
                                    "arguments": arguments_text(arguments)}}]})
                            }
                        };
                        add(&mut s.reply, c);
                        s.pending
                            .push_back(chunk(&id, created, &model, delta, None));
                    }
                    None => {
                        let reason = finish_reason(&s.reply);
                        s.pending
                            .push_back(chunk(&id, created, &model, json!({}), Some(reason)));
                        if include_usage {
                            let mut last = chunk(&id, created, &model, json!({}), None);
                            last["choices"] = json!([]);
                            last["usage"] = usage(prompt_chars, &s.reply);
                            s.pending.push_back(last);
                        }
                        s.done = true;
                    }
                    Some(Err(stop)) => {
                        s.pending
                            .push_back(json!({"error": {"message": stop.message(),
                            "type": "server_error", "param": null, "code": stop.code()}}));
                        s.done = true;
                    }
                }
            }
        }
    })
    .chain(futures::stream::once(async {
        Ok(Event::default().data("[DONE]"))
    }));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
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
    created: i64,
    model: String,
    system: Option<String>,
    key: Option<String>,
    /// As the request declared them (`{"type": "function", "function": {...}}`).
    tools: Vec<Value>,
}

/// A completion of `store: true`: the messages become a chat (the last one sent as its
/// turn) and a response row, so the same `Idempotency-Key` answers the same completion;
/// the turn's reply is the answer. Answers the completion's id and time, and the reply.
async fn stored_run(
    app: &AppState,
    user: &User,
    run: StoredRun,
    messages: &[Arc<Message>],
) -> Result<(String, i64, Reply), ApiError> {
    let owner = user.as_str();
    let store = app.engine.store().clone();
    if let Some(key) = &run.key {
        if let Some(row) = tables(&store)?.response_by_key(owner, key).await? {
            return answered(app, user, row).await;
        }
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
    let new = NewContext {
        title: chat_title(&text),
        model_id: Some(ModelId::parse(run.model).map_err(|e| invalid(e.0))?),
        system_prompt: run
            .system
            .map(SystemPrompt::parse)
            .transpose()
            .map_err(|e| invalid(e.0))?,
        ..NewContext::default()
    };
    let context = app
        .engine
        .create_context(user.owner(), new)
        .await?
        .record
        .id;
    let row = ResponseRow {
        id: run.id,
        owner: owner.to_owned(),
        context_id: context,
        idempotency_key: run.key.clone(),
        request: serde_json::to_string(&spec).map_err(|e| ApiError::internal("internal", &e))?,
        outcome: None,
        created_at: run.created,
    };
    if !tables(&store)?.insert_response(&row).await? {
        // The same key raced this request: answer the completion that won.
        let _ = app.engine.delete(user.owner(), context).await;
        let key = run.key.as_deref().unwrap_or_default();
        let won = tables(&store)?
            .response_by_key(owner, key)
            .await?
            .ok_or_else(|| ApiError::internal("internal", &"completion id collision"))?;
        return answered(app, user, won).await;
    }
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
                    client_tools: client_tools(&spec.tools),
                    instructions: None,
                },
            },
            Duration::ZERO,
        )
        .await?;
    answered(app, user, row).await
}

/// The reply of a stored completion, once its turn ended (or the wait ran out).
async fn answered(
    app: &AppState,
    user: &User,
    row: ResponseRow,
) -> Result<(String, i64, Reply), ApiError> {
    let (id, created) = (row.id.clone(), row.created_at);
    let response = StoredResponse::parse(row)?;
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
    Ok((id, created, reply))
}

/// The stream of a reply that is already whole (a stored run).
fn replay_stream(
    id: String,
    created: i64,
    model: String,
    reply: Reply,
    usage: Option<Value>,
) -> Response {
    let mut chunks = vec![chunk(
        &id,
        created,
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    if !reply.text.is_empty() {
        chunks.push(chunk(
            &id,
            created,
            &model,
            json!({"content": reply.text}),
            None,
        ));
    }
    if !reply.calls.is_empty() {
        chunks.push(chunk(
            &id,
            created,
            &model,
            json!({"tool_calls": tool_calls_json(&reply)}),
            None,
        ));
    }
    chunks.push(chunk(
        &id,
        created,
        &model,
        json!({}),
        Some(finish_reason(&reply)),
    ));
    if let Some(usage) = usage {
        let mut last = chunk(&id, created, &model, json!({}), None);
        last["choices"] = json!([]);
        last["usage"] = usage;
        chunks.push(last);
    }
    let events = futures::stream::iter(chunks.into_iter().map(|c| data(&c))).chain(
        futures::stream::once(async { Ok(Event::default().data("[DONE]")) }),
    );
    Sse::new(events).into_response()
}
