//! `/v1/responses`: turns of a context under OpenAI's names, streamed as OpenAI's events,
//! resumable from any sequence number on any instance.

use super::conversations::{item_text, parse_metadata};
use super::events::{Anchor, Spec};
use super::follow::{Follow, Response, STREAM_LIMIT};
use super::items::{page, PageQuery};
use super::unstored;
use super::{
    choose_model, client_tools, earlier_response, idempotency_key, ids, invalid, model_name,
    new_chat, not_found, owned_conversation, record_response, tables, Recorded,
};
use crate::api::error::ApiError;
use crate::api::extract::{ApiJson, ApiQuery};
use crate::api::quota::TurnAllowed;
use crate::api::AppState;
use crate::auth::User;
use crate::domain::{ClientKey, MessageContent, NewMessage, SystemPrompt, TurnOptions};
use crate::engine::{ActionError, EngineError};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/responses", post(create))
        .route("/v1/responses/{id}", get(retrieve).delete(remove))
        .route("/v1/responses/{id}/cancel", post(cancel))
        .route("/v1/responses/{id}/input_items", get(input_items))
}

/// Items one request's input may hold.
const MAX_INPUT_ITEMS: usize = 100;

#[derive(Debug, Deserialize)]
struct CreateRequest {
    model: Option<String>,
    input: Option<Value>,
    instructions: Option<String>,
    conversation: Option<Value>,
    previous_response_id: Option<String>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    stream: Option<bool>,
    background: Option<bool>,
    store: Option<bool>,
    metadata: Option<Map<String, Value>>,
    /// Sampling and other settings the scripted turn has no use for are accepted as is.
    #[serde(flatten)]
    _rest: HashMap<String, Value>,
}

/// What the input asks the turn to do.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// User messages (at least one), each stored as its own message; the last one's turn
    /// runs.
    Send(Vec<String>),
    /// Answers to the server's tool calls awaiting approval: (call id, approve).
    Approve(Vec<(String, bool)>),
    /// The client's outputs for calls of its function tools: (call id, output); with its
    /// answers to server calls of the same reply that await approval.
    ToolOutputs(Vec<(String, String)>, Vec<(String, bool)>),
}

impl Action {
    /// The first call the action answers, if it answers calls.
    fn first_call(&self) -> Option<&str> {
        match self {
            Action::Send(_) => None,
            Action::Approve(a) => a.first().map(|(c, _)| c.as_str()),
            Action::ToolOutputs(o, _) => o.first().map(|(c, _)| c.as_str()),
        }
    }
}

/// The input as an action and the items `input_items` will list.
fn parse_input(input: &Value, response_id: &str) -> Result<(Action, Vec<Value>), ApiError> {
    let item_id = |n: usize| {
        format!(
            "{}{}_{n}",
            ids::MESSAGE,
            &response_id[ids::RESPONSE.len()..]
        )
    };
    let user_item = |text: &str, n: usize| {
        json!({"type": "message", "id": item_id(n), "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": text}]})
    };
    let items = match input {
        Value::String(text) => {
            item_text(input)?;
            return Ok((Action::Send(vec![text.clone()]), vec![user_item(text, 0)]));
        }
        Value::Array(items) if !items.is_empty() && items.len() <= MAX_INPUT_ITEMS => items,
        _ => {
            return Err(invalid(format!(
                "input must be a string or a list of 1 to {MAX_INPUT_ITEMS} items"
            )))
        }
    };
    let mut texts = Vec::new();
    let mut approvals = Vec::new();
    let mut outputs = Vec::new();
    let mut listed = Vec::new();
    for (n, item) in items.iter().enumerate() {
        match item["type"].as_str().unwrap_or("message") {
            "message" if item["role"] == "user" => {
                let text = item_text(&item["content"])?;
                listed.push(user_item(&text, n));
                texts.push(text);
            }
            "mcp_approval_response" => {
                let (Some(request), Some(approve)) = (
                    item["approval_request_id"].as_str(),
                    item["approve"].as_bool(),
                ) else {
                    return Err(invalid(
                        "mcp_approval_response needs approval_request_id and approve",
                    ));
                };
                let call = request
                    .strip_prefix(ids::APPROVAL_REQUEST)
                    .ok_or_else(|| invalid(format!("unknown approval_request_id {request:?}")))?;
                approvals.push((call.to_owned(), approve));
                let mut listed_item = item.clone();
                listed_item["id"] = item_id(n).into();
                listed.push(listed_item);
            }
            "function_call_output" => {
                let Some(call) = item["call_id"].as_str() else {
                    return Err(invalid("function_call_output needs call_id"));
                };
                let output = match &item["output"] {
                    Value::String(s) => s.clone(),
                    other => item_text(other)?,
                };
                outputs.push((call.to_owned(), output.clone()));
                listed.push(json!({"type": "function_call_output", "id": item_id(n),
                    "call_id": call, "output": output, "status": "completed"}));
            }
            "message" => {
                return Err(invalid(
                    "input messages must have role user (put instructions in `instructions`)",
                ))
            }
            other => {
                return Err(invalid(format!(
                    "input items of type {other:?} are not supported"
                )))
            }
        }
    }
    match (texts.is_empty(), approvals.is_empty(), outputs.is_empty()) {
        (false, true, true) => {
            for text in &texts {
                MessageContent::parse(text.clone()).map_err(|e| invalid(e.0))?;
            }
            Ok((Action::Send(texts), listed))
        }
        (true, false, true) => Ok((Action::Approve(approvals), listed)),
        (true, _, false) => Ok((Action::ToolOutputs(outputs, approvals), listed)),
        _ => Err(invalid(
            "send user messages, or answers to the calls that wait \
             (function_call_output and mcp_approval_response items), not both",
        )),
    }
}

fn parse_tools(tools: Option<Vec<Value>>) -> Result<Vec<Value>, ApiError> {
    let tools = tools.unwrap_or_default();
    if tools.len() > 128 {
        return Err(invalid("at most 128 tools"));
    }
    for tool in &tools {
        match tool["type"].as_str() {
            Some("function")
                if tool["name"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty() && n.len() <= 64) => {}
            Some("function") => {
                return Err(invalid(
                    "a function tool needs a name of 1 to 64 characters",
                ))
            }
            // The server's own tools are always there; declaring them changes nothing.
            Some("mcp") => {}
            other => {
                return Err(invalid(format!(
                    "tools of type {} are not supported; declare function tools",
                    other.unwrap_or("(none)")
                )))
            }
        }
    }
    Ok(tools)
}

/// The assistant message that holds the call `call_id`, on the active path.
async fn message_with_call(app: &AppState, context: Uuid, call_id: &str) -> Result<Uuid, ApiError> {
    let snapshot = app.engine.snapshot(context).await?;
    snapshot
        .messages()
        .iter()
        .rev()
        .find(|m| m.tool_calls.iter().flatten().any(|c| c.id == call_id))
        .map(|m| m.id)
        .ok_or_else(|| {
            invalid(format!(
                "no tool call {call_id:?} waits in this conversation"
            ))
        })
}

#[tracing::instrument(skip_all)]
async fn create(
    State(app): State<AppState>,
    user: User,
    _: TurnAllowed,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<HttpResponse, ApiError> {
    let owner = user.as_str();
    let store = app.engine.store().clone();
    let stream = req.stream.unwrap_or(false);
    let key = idempotency_key(&headers)?;
    let stored = req.store != Some(false);
    if !stored {
        // Nothing is kept: nothing to answer a retry with, nothing to continue or poll.
        let refused = if key.is_some() {
            Some("an Idempotency-Key")
        } else if req.background == Some(true) {
            Some("background: true")
        } else if req.conversation.is_some() || req.previous_response_id.is_some() {
            Some("a conversation or previous_response_id")
        } else {
            None
        };
        if let Some(what) = refused {
            return Err(invalid(format!(
                "store: false runs the input alone and keeps nothing; it takes no {what}"
            )));
        }
    }
    if let Some(earlier) = earlier_response(&app, &user, key.as_deref()).await? {
        return answer(app, &user, earlier, stream).await;
    }
    // Everything the request says is checked before anything is stored.
    if req.conversation.is_some() && req.previous_response_id.is_some() {
        return Err(invalid(
            "give conversation or previous_response_id, not both",
        ));
    }
    let id = ids::new_response_id();
    let (action, input) = parse_input(req.input.as_ref().unwrap_or(&Value::Null), &id)?;
    let tools = parse_tools(req.tools)?;
    let metadata = parse_metadata(req.metadata)?;
    let model = choose_model(&app, req.model)?;
    let instructions = req
        .instructions
        .map(|i| SystemPrompt::parse(i).map_err(|e| invalid(e.0)))
        .transpose()?;
    let background = req.background.unwrap_or(false);
    // What the response was asked, as it answers it; a stored one's chat and start are
    // filled in below.
    let mut spec = Spec {
        model: model_name(&app, model.as_ref()),
        instructions: instructions.map(SystemPrompt::into_inner),
        tools,
        tool_choice: req.tool_choice.unwrap_or_else(|| "auto".into()),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        metadata,
        background,
        store: stored,
        previous_response_id: None,
        conversation: None,
        anchor: Anchor::Message {
            client_id: id.clone(),
        },
        input,
    };
    if !stored {
        let Action::Send(texts) = action else {
            return Err(invalid(
                "store: false runs the input alone; tool outputs and approvals answer a stored response",
            ));
        };
        return unstored::answer(&app, id, spec, texts, stream).await;
    }
    let (conversation, previous) = (req.conversation, req.previous_response_id);
    let (context, created) = if let Some(conversation) = &conversation {
        let conv = conversation
            .as_str()
            .or_else(|| conversation["id"].as_str())
            .ok_or_else(|| invalid("conversation must be an id or {\"id\": ...}"))?;
        (owned_conversation(&app, user.owner(), conv).await?, false)
    } else if let Some(previous) = &previous {
        let row = tables(&store)?
            .response(owner, previous)
            .await?
            .ok_or_else(|| not_found("response", previous))?;
        (row.context_id, false)
    } else {
        let Action::Send(texts) = &action else {
            return Err(invalid(
                "tool outputs and approvals need the conversation or previous_response_id they answer",
            ));
        };
        // Instructions belong to one response, never to the chat (OpenAI carries them
        // over to no later response).
        let first = texts.first().map_or("", String::as_str);
        let chat = new_chat(&app, &user, first, model.clone(), None).await?;
        (chat, true)
    };
    if let Some(call) = action.first_call() {
        spec.anchor = Anchor::After {
            message_id: message_with_call(&app, context, call).await?,
        };
    }
    if model.is_none() {
        let snapshot = app.engine.snapshot(context).await?;
        if let Some(chat_model) = &snapshot.record.config.model_id {
            spec.model.clone_from(chat_model);
        }
    }
    spec.previous_response_id = previous;
    spec.conversation = conversation
        .is_some()
        .then(|| ids::make(ids::CONVERSATION, context));
    let turn = TurnOptions {
        client_tools: client_tools(&spec.tools),
        instructions: spec.instructions.clone(),
    };
    let response =
        match record_response(&app, &user, (id.clone(), context, key), spec, created).await? {
            Recorded::New(response) => response,
            // The same key raced this request: the response that won, nothing added.
            Recorded::Earlier(won) => return answer(app, &user, won, stream).await,
        };
    if let Err(e) = start(&app, context, &id, action, turn).await {
        // Bad input (an unknown call, a chat in the wrong state) leaves nothing behind.
        let _ = tables(&store)?.delete_response(owner, &id).await;
        if created {
            let _ = app.engine.delete(user.owner(), context).await;
        }
        return Err(e);
    }
    answer(app, &user, response, stream).await
}

/// Sends the action to the engine: it is acknowledged once durable; the turn runs on
/// with `turn` (the request's function tools and instructions).
async fn start(
    app: &AppState,
    context: Uuid,
    id: &str,
    action: Action,
    turn: TurnOptions,
) -> Result<(), ApiError> {
    let approved_of = |approvals: &[(String, bool)]| -> Vec<String> {
        approvals
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(call, _)| call.clone())
            .collect()
    };
    match action {
        Action::Send(mut texts) => {
            let parse = |t: String| MessageContent::parse(t).map_err(|e| invalid(e.0));
            let last = texts
                .pop()
                .ok_or_else(|| invalid("input holds no message"))?;
            let message = NewMessage {
                content: parse(last)?,
                preceding: texts.into_iter().map(parse).collect::<Result<_, _>>()?,
                client_message_id: Some(
                    ClientKey::parse("response id", id.to_owned()).map_err(|e| invalid(e.0))?,
                ),
                idempotency_key: None,
                if_busy: Default::default(),
                turn,
            };
            app.engine
                .send_message(context, message, Duration::ZERO)
                .await?;
        }
        Action::ToolOutputs(outputs, approvals) => {
            let approved = approved_of(&approvals);
            let done = app
                .engine
                .submit_tool_outputs(context, outputs, approved, turn, Duration::ZERO)
                .await;
            answered(
                done,
                "no function call of this conversation waits for its output",
            )?;
        }
        Action::Approve(approvals) => {
            let approved = approved_of(&approvals);
            let done = app
                .engine
                .approve_tools(context, approved, Duration::ZERO)
                .await;
            answered(done, "no tool call of this conversation waits for approval")?;
        }
    }
    Ok(())
}

/// An answer to waiting calls: nothing waiting is the client's mistake.
fn answered<T>(done: Result<T, EngineError>, nothing_waits: &str) -> Result<(), ApiError> {
    match done {
        Ok(_) => Ok(()),
        Err(EngineError::Action(
            ActionError::NoPendingApprovals | ActionError::NoPendingToolOutputs,
        )) => Err(invalid(nothing_waits)),
        Err(e) => Err(e.into()),
    }
}

/// The answer to a create (or its repetition under the same key): the event stream, the
/// response as it is now (background), or the response once it ended (or the wait ran
/// out).
pub(super) async fn answer(
    app: AppState,
    user: &User,
    response: Response,
    stream: bool,
) -> Result<HttpResponse, ApiError> {
    if stream {
        return sse(app, user, response, None);
    }
    let wait = if response.spec.background {
        Duration::ZERO
    } else {
        app.config.wait_timeout
    };
    if wait.is_zero() {
        return now(&app, response).await;
    }
    let follow = Follow::new(app.clone(), user, response.clone(), None, wait)?;
    match follow.until_end().await {
        Some(object) => Ok(Json(object).into_response()),
        None => now(&app, response).await,
    }
}

async fn now(app: &AppState, mut response: Response) -> Result<HttpResponse, ApiError> {
    let snapshot = app.engine.snapshot(response.row.context_id).await?;
    let derived = response.current(app, &snapshot).await?;
    Ok(Json(derived.response).into_response())
}

fn sse(
    app: AppState,
    user: &User,
    response: Response,
    starting_after: Option<u64>,
) -> Result<HttpResponse, ApiError> {
    let follow = Follow::new(app, user, response, starting_after, STREAM_LIMIT)?;
    let events = futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next_event().await?;
        let kind = event["type"].as_str().unwrap_or("message").to_owned();
        Some((
            Ok::<_, Infallible>(Event::default().event(kind).data(event.to_string())),
            follow,
        ))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn load(app: &AppState, owner: &str, id: &str) -> Result<Response, ApiError> {
    let store = app.engine.store().clone();
    let row = tables(&store)?
        .response(owner, id)
        .await?
        .ok_or_else(|| not_found("response", id))?;
    Response::parse(row)
}

#[derive(Debug, Deserialize)]
struct RetrieveQuery {
    stream: Option<bool>,
    starting_after: Option<u64>,
}

async fn retrieve(
    State(app): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RetrieveQuery>,
) -> Result<HttpResponse, ApiError> {
    let response = load(&app, user.as_str(), &id).await?;
    if q.stream == Some(true) {
        return sse(app, &user, response, q.starting_after);
    }
    now(&app, response).await
}

/// Stops the response's turn (as the web app's cancel does); answers it once it rests.
async fn cancel(
    State(app): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut response = load(&app, user.as_str(), &id).await?;
    let context = response.row.context_id;
    let snapshot = app.engine.snapshot(context).await?;
    if !response.current(&app, &snapshot).await?.ended {
        match app.engine.cancel(context).await {
            Ok(_) | Err(EngineError::Action(ActionError::NothingToCancel)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let follow = Follow::new(
        app.clone(),
        &user,
        response.clone(),
        None,
        app.config.wait_timeout,
    )?;
    match follow.until_end().await {
        Some(object) => Ok(Json(object).into_response()),
        None => now(&app, response).await,
    }
}

async fn remove(
    State(app): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.engine.store().clone();
    if !tables(&store)?.delete_response(user.as_str(), &id).await? {
        return Err(not_found("response", &id));
    }
    Ok(Json(
        json!({"id": id, "object": "response", "deleted": true}),
    ))
}

async fn input_items(
    State(app): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let response = load(&app, user.as_str(), &id).await?;
    let (order, limit) = q.parse().map_err(invalid)?;
    page(response.spec.input, order, limit, q.after.as_deref())
        .map(Json)
        .map_err(invalid)
}
