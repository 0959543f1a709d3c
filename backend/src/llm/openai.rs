//! A model behind any OpenAI-compatible `/chat/completions` endpoint (OpenAI, Ollama,
//! vLLM, llama.cpp's server, LM Studio), streamed over server-sent events.
//!
//! Failure policy, so the engine's retries do the right thing:
//! - 408, 429 and 5xx answers, connection failures, a connection cut mid-stream, a stream
//!   that ends without `[DONE]` (or a finish reason), and silence longer than the idle
//!   timeout are transient: the same request may well succeed. `Retry-After` (seconds or an HTTP date)
//!   and OpenAI's `retry-after-ms` become the retry delay, capped at a minute.
//! - Any other answer is fatal, with the server's own error message.
//! - A stream event that is not the JSON we expect is fatal: a server that sends one
//!   speaks another protocol, and retrying the same request cannot change that.
//! - An error object inside the stream is transient when the server calls it a server
//!   error or a rate limit, fatal otherwise.
//!
//! The API key only ever goes into the `Authorization` header (marked sensitive). It is
//! redacted in `Debug` and scrubbed from every error text, in case a server echoes it.

use super::sse::SseDecoder;
use super::{Model, ModelChunk, ModelError, ModelRequest, ModelStream};
use crate::tools::ToolSpec;
use async_trait::async_trait;
use chatsync_protocol::{content_text, Role};
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// A server asking for a longer pause still gets retried after this, so a turn never
/// hangs on one header; the person can cancel meanwhile either way.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How much of an error answer is read to find its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// How much of a non-JSON error answer is quoted.
const MAX_QUOTED_CHARS: usize = 300;

/// A secret that never shows in `Debug`, logs or error texts.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(redacted)")
    }
}

impl FromStr for ApiKey {
    type Err = String;

    /// Refuses keys that cannot go into an HTTP header, so a pasted line break is a clear
    /// error at start rather than a failing request later. The message never quotes it.
    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let key = key.trim();
        if key.is_empty() {
            return Err("the API key is empty".into());
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the API key holds spaces or characters that are not printable ASCII".into(),
            );
        }
        Ok(ApiKey(key.to_owned()))
    }
}

impl ApiKey {
    fn scrub(&self, text: &str) -> String {
        text.replace(&self.0, "[redacted]")
    }
}

#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// The API root, ending in `/v1` for every known server.
    pub base_url: String,
    /// Optional: local servers usually need none.
    pub api_key: Option<ApiKey>,
    pub model: String,
    pub connect_timeout: Duration,
    /// Longest silence allowed: before the answer starts and between two stream chunks.
    pub idle_timeout: Duration,
}

#[derive(Debug)]
pub struct OpenAiModel {
    client: reqwest::Client,
    endpoint: Url,
    api_key: Option<ApiKey>,
    model: String,
    idle_timeout: Duration,
    /// The registry's tools in OpenAI's format, sent with every request.
    tools: Vec<Value>,
}

impl OpenAiModel {
    /// The error explains a setting that cannot work, for a clear message at start.
    pub fn new(settings: OpenAiSettings, tools: &[ToolSpec]) -> Result<Self, String> {
        let base = settings.base_url.trim_end_matches('/');
        let endpoint = Url::parse(&format!("{base}/chat/completions"))
            .map_err(|e| format!("--openai-base-url {base:?} is not a URL: {e}"))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(format!("--openai-base-url {base:?} must be http or https"));
        }
        if endpoint.host_str() == Some("api.openai.com") && settings.api_key.is_none() {
            return Err(
                "--model openai with the OpenAI API needs a key: set OPENAI_API_KEY (or --openai-api-key), or point --openai-base-url at a local server".into(),
            );
        }
        if settings.model.trim().is_empty() {
            return Err("--openai-model must not be empty".into());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(OpenAiModel {
            client,
            endpoint,
            api_key: settings.api_key,
            model: settings.model,
            idle_timeout: settings.idle_timeout,
            tools: tools
                .iter()
                .map(|t| function_tool(&t.name, Some(&t.description), Some(&t.parameters)))
                .collect(),
        })
    }

    fn body(&self, request: &ModelRequest) -> Value {
        let mut body = json!({
            "model": request.model.as_deref().unwrap_or(&self.model),
            "messages": wire_messages(request),
            "stream": true,
        });
        // The server's tools, then the client's (the OpenAI API's function tools).
        let client = request
            .client_tools
            .iter()
            .map(|t| function_tool(&t.name, t.description.as_deref(), t.parameters.as_ref()));
        let tools: Vec<Value> = self.tools.iter().cloned().chain(client).collect();
        if !tools.is_empty() {
            body["tools"] = Value::Array(tools);
        }
        body
    }

    fn scrub(&self, error: ModelError) -> ModelError {
        scrub(self.api_key.as_ref(), error)
    }

    async fn open(&self, request: &ModelRequest) -> Result<reqwest::Response, ModelError> {
        let mut http = self
            .client
            .post(self.endpoint.clone())
            .header(ACCEPT, "text/event-stream")
            .json(&self.body(request));
        if let Some(key) = &self.api_key {
            // bearer_auth marks the header sensitive, so it is never printed.
            http = http.bearer_auth(&key.0);
        }
        let response = tokio::time::timeout(self.idle_timeout, http.send())
            .await
            .map_err(|_| silence(self.idle_timeout))?
            .map_err(|e| send_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(status, response, self.idle_timeout).await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/event-stream");
        if !content_type.starts_with("text/event-stream") {
            return Err(ModelError::Fatal(format!(
                "the model server answered {content_type:?} instead of an event stream; \
                 is --openai-base-url the server's OpenAI-compatible root (usually ending in /v1)?"
            )));
        }
        Ok(response)
    }
}

#[async_trait]
impl Model for OpenAiModel {
    fn names_chats(&self) -> bool {
        true
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let response = self.open(&request).await.map_err(|e| self.scrub(e))?;
        let key = self.api_key.clone();
        let reader = Reader {
            // The stream owns the response: dropping it (cancel) closes the connection.
            body: Box::pin(response.bytes_stream()),
            decoder: SseDecoder::default(),
            calls: ToolCalls::default(),
            ready: VecDeque::new(),
            finished: false,
            done: false,
            idle_timeout: self.idle_timeout,
        };
        Ok(futures::stream::unfold(reader, |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        })
        .map(move |item| item.map_err(|e| scrub(key.as_ref(), e)))
        .boxed())
    }
}

fn scrub(key: Option<&ApiKey>, error: ModelError) -> ModelError {
    let Some(key) = key else { return error };
    match error {
        ModelError::Transient {
            message,
            retry_after,
        } => ModelError::Transient {
            message: key.scrub(&message),
            retry_after,
        },
        ModelError::Fatal(message) => ModelError::Fatal(key.scrub(&message)),
    }
}

fn transient(message: String) -> ModelError {
    ModelError::Transient {
        message,
        retry_after: None,
    }
}

fn silence(idle: Duration) -> ModelError {
    transient(format!(
        "the model server sent nothing for {} ms",
        idle.as_millis()
    ))
}

/// An error with its causes ("error sending request: connection refused").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a chat shows when the model server cannot be reached. reqwest's own text names
/// the URL (host, port, and any credentials in `--openai-base-url`), so it goes to the
/// log only; every client of the chat sees this.
pub const UNREACHABLE: &str = "the model server could not be reached";
/// What a chat shows when the connection breaks mid-stream (the detail is logged).
const BROKE: &str = "the connection to the model server broke mid-stream";

fn send_error(error: &reqwest::Error) -> ModelError {
    tracing::warn!(detail = %with_causes(error), "{UNREACHABLE}");
    let text = if error.is_timeout() {
        format!("{UNREACHABLE} (timed out)")
    } else {
        UNREACHABLE.to_owned()
    };
    if error.is_builder() {
        ModelError::Fatal(text)
    } else {
        transient(text)
    }
}

fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// OpenAI's `retry-after-ms`, else `Retry-After` in seconds or as an HTTP date. Any value
/// is capped at [`MAX_RETRY_AFTER`] before it becomes a `Duration`, so no size can
/// overflow; negative, non-finite and unreadable values are ignored (the engine's own
/// backoff applies then), and a date in the past means at once.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    let seconds = |value: f64| {
        (value.is_finite() && value >= 0.0)
            .then(|| Duration::from_secs_f64(value.min(MAX_RETRY_AFTER.as_secs_f64())))
    };
    if let Some(ms) = text("retry-after-ms").and_then(|t| t.parse::<f64>().ok()) {
        return seconds(ms / 1000.0);
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

/// Turns an error answer into an error carrying the server's own message.
async fn status_error(
    status: StatusCode,
    mut response: reqwest::Response,
    idle: Duration,
) -> ModelError {
    let retry_after = retry_after(response.headers());
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY_BYTES {
        match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let detail = upstream_message(&body);
    let message = match detail {
        Some(detail) => format!("the model server answered {status}: {detail}"),
        None => format!("the model server answered {status}"),
    };
    if is_transient_status(status) {
        ModelError::Transient {
            message,
            retry_after,
        }
    } else {
        ModelError::Fatal(message)
    }
}

/// `{"error": {"message": ...}}` (OpenAI, vLLM, llama.cpp), `{"error": "..."}` (Ollama),
/// else the start of the body as text.
fn upstream_message(body: &[u8]) -> Option<String> {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(message) = error_message(&value["error"]) {
            return Some(message);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(MAX_QUOTED_CHARS).collect())
}

fn error_message(error: &Value) -> Option<String> {
    match error {
        Value::String(message) => Some(message.clone()),
        Value::Object(fields) => fields
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// The conversation in OpenAI's format. Tool calls without an answer, and answers without
/// their call, are left out: the API refuses either, and both can come from an
/// interrupted turn or the deprecated CRUD endpoints.
fn wire_messages(request: &ModelRequest) -> Vec<Value> {
    let answered: HashSet<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .filter_map(|m| m.tool_call_id.as_deref())
        .collect();
    let mut asked: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(request.messages.len() + 1);
    if let Some(prompt) = request.system_prompt.as_deref().filter(|p| !p.is_empty()) {
        out.push(json!({"role": "system", "content": prompt}));
    }
    for m in &request.messages {
        let text = content_text(&m.content);
        match m.role {
            Role::System | Role::User => {
                out.push(json!({"role": m.role.as_str(), "content": text}));
            }
            Role::Assistant => {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .flatten()
                    .filter(|c| answered.contains(c.id.as_str()))
                    .map(|c| {
                        asked.insert(c.id.as_str());
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": arguments_text(&c.arguments)},
                        })
                    })
                    .collect();
                out.push(assistant_message(text, calls));
            }
            Role::Tool => {
                if let Some(id) = m.tool_call_id.as_deref().filter(|id| asked.contains(id)) {
                    out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
                }
            }
        }
    }
    out
}

fn assistant_message(text: String, calls: Vec<Value>) -> Value {
    if calls.is_empty() {
        return json!({"role": "assistant", "content": text});
    }
    let content = if text.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    json!({"role": "assistant", "content": content, "tool_calls": calls})
}

/// Arguments go upstream as the JSON text the model wrote. Text that was not JSON is kept
/// as a string (see [`ToolCalls::finish`]) and sent back unchanged.
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Deserialize)]
struct StreamChunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Tool calls assembled from their streamed pieces, keyed by their `index`.
#[derive(Debug, Default)]
struct ToolCalls {
    calls: BTreeMap<u32, PartialCall>,
}

impl ToolCalls {
    fn add(&mut self, delta: ToolCallDelta) {
        // A server that omits `index` streams one call at a time: a new id starts a new one.
        let index = delta.index.unwrap_or_else(|| {
            let last = self.calls.last_key_value();
            match (last, delta.id.as_deref()) {
                (Some((&i, call)), Some(id)) if call.id != id => i + 1,
                (Some((&i, _)), _) => i,
                (None, _) => 0,
            }
        });
        let call = self.calls.entry(index).or_default();
        // Some servers repeat the id and name in every piece: the first one counts.
        if let Some(id) = delta.id.filter(|_| call.id.is_empty()) {
            call.id = id;
        }
        if let Some(function) = delta.function {
            if let Some(name) = function.name.filter(|_| call.name.is_empty()) {
                call.name = name;
            }
            if let Some(piece) = function.arguments {
                call.arguments.push_str(&piece);
            }
        }
    }

    /// The complete calls in order. Arguments that are not JSON are kept as a string: the
    /// registry then refuses them and the model reads why, instead of the turn failing.
    fn finish(&mut self) -> Result<Vec<ModelChunk>, ModelError> {
        std::mem::take(&mut self.calls)
            .into_values()
            .map(|call| {
                if call.name.is_empty() {
                    return Err(ModelError::Fatal(
                        "the model server streamed a tool call without a function name".into(),
                    ));
                }
                let raw = call.arguments.trim();
                let arguments = if raw.is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
                };
                let id = if call.id.is_empty() {
                    format!("call_{}", uuid::Uuid::new_v4().simple())
                } else {
                    call.id
                };
                Ok(ModelChunk::ToolCall {
                    id,
                    name: call.name,
                    arguments,
                })
            })
            .collect()
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>;

/// Reads the event stream of one reply and hands out its chunks one at a time.
struct Reader {
    body: Body,
    decoder: SseDecoder,
    calls: ToolCalls,
    /// Chunks decoded but not handed out yet.
    ready: VecDeque<ModelChunk>,
    /// A finish reason arrived: the reply is whole even if `[DONE]` never comes.
    finished: bool,
    /// Nothing more will be read.
    done: bool,
    idle_timeout: Duration,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<ModelChunk, ModelError>> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Some(Ok(chunk));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.read().await {
                self.done = true;
                self.ready.clear();
                return Some(Err(e));
            }
        }
    }

    /// Reads the next bytes and decodes what they complete.
    async fn read(&mut self) -> Result<(), ModelError> {
        let next = tokio::time::timeout(self.idle_timeout, self.body.next())
            .await
            .map_err(|_| silence(self.idle_timeout))?;
        match next {
            Some(Ok(bytes)) => {
                let events = self
                    .decoder
                    .push(&bytes)
                    .map_err(|e| ModelError::Fatal(format!("the model server's stream: {e}")))?;
                events.into_iter().try_for_each(|data| self.event(&data))
            }
            Some(Err(e)) => {
                tracing::warn!(detail = %with_causes(&e), "{BROKE}");
                Err(transient(BROKE.to_owned()))
            }
            None => {
                if let Some(data) = self.decoder.finish() {
                    self.event(&data)?;
                }
                if self.done {
                    return Ok(());
                }
                if !self.finished {
                    return Err(transient(
                        "the model server's stream ended before the reply was complete".into(),
                    ));
                }
                self.end()
            }
        }
    }

    fn end(&mut self) -> Result<(), ModelError> {
        self.done = true;
        let calls = self.calls.finish()?;
        self.ready.extend(calls);
        Ok(())
    }

    fn event(&mut self, data: &str) -> Result<(), ModelError> {
        if self.done {
            return Ok(());
        }
        if data.trim() == "[DONE]" {
            return self.end();
        }
        let chunk: StreamChunk = serde_json::from_str(data).map_err(|e| {
            let start: String = data.chars().take(80).collect();
            ModelError::Fatal(format!(
                "the model server sent a malformed stream event ({e}): {start}"
            ))
        })?;
        if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
            return Err(stream_error(&error));
        }
        // We ask for one choice; servers that send more are ignored past the first.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    self.ready.push_back(ModelChunk::Text(text));
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    self.calls.add(call);
                }
            }
            if choice.finish_reason.is_some() {
                self.finished = true;
            }
        }
        Ok(())
    }
}

/// An error the server reports inside an already started stream.
/// A tool as the chat completions API declares it.
fn function_tool(name: &str, description: Option<&str>, parameters: Option<&Value>) -> Value {
    let mut function = json!({"name": name});
    if let Some(d) = description {
        function["description"] = d.into();
    }
    if let Some(p) = parameters {
        function["parameters"] = p.clone();
    }
    json!({"type": "function", "function": function})
}

fn stream_error(error: &Value) -> ModelError {
    let message = format!(
        "the model server reported an error mid-stream: {}",
        error_message(error).unwrap_or_else(|| error.to_string())
    );
    let kind = [&error["type"], &error["code"]]
        .iter()
        .filter_map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if kind.contains("server_error") || kind.contains("rate_limit") || kind.contains("overloaded") {
        transient(message)
    } else {
        ModelError::Fatal(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatsync_protocol::{ContentPart, Message, ToolCall, ToolCallStatus};
    use std::sync::Arc;

    fn message(role: Role, text: &str) -> Message {
        crate::engine::new_message(role, vec![ContentPart::text(text)], None)
    }

    fn call(id: &str, arguments: Value) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "calculator".into(),
            arguments,
            status: ToolCallStatus::Completed,
            result: Some("5".into()),
        }
    }

    fn tool_answer(id: &str, text: &str) -> Message {
        let mut m = message(Role::Tool, text);
        m.tool_call_id = Some(id.into());
        m
    }

    #[test]
    fn the_conversation_is_sent_in_openai_format() {
        let mut asked = message(Role::Assistant, "");
        asked.tool_calls = Some(vec![
            call("a", json!({"expression": "2+3"})),
            call("b", Value::String("{not json".into())),
            call("unanswered", json!({})),
        ]);
        let mut stray = message(Role::Tool, "from the legacy endpoint");
        stray.tool_call_id = None;
        let request = ModelRequest {
            model: None,
            system_prompt: Some("Be brief.".into()),
            client_tools: vec![],
            messages: [
                message(Role::User, "what is 2+3?"),
                asked,
                tool_answer("a", "5"),
                tool_answer("b", "invalid arguments"),
                stray,
                tool_answer("ghost", "no call asked for this"),
                message(Role::Assistant, "It is 5."),
            ]
            .into_iter()
            .map(Arc::new)
            .collect(),
            attempt: 0,
        };
        let fn_call = |id: &str, args: &str| json!({"id": id, "type": "function", "function": {"name": "calculator", "arguments": args}});
        assert_eq!(
            wire_messages(&request),
            vec![
                json!({"role": "system", "content": "Be brief."}),
                json!({"role": "user", "content": "what is 2+3?"}),
                json!({"role": "assistant", "content": null, "tool_calls": [
                    fn_call("a", r#"{"expression":"2+3"}"#),
                    fn_call("b", "{not json"),
                ]}),
                json!({"role": "tool", "tool_call_id": "a", "content": "5"}),
                json!({"role": "tool", "tool_call_id": "b", "content": "invalid arguments"}),
                json!({"role": "assistant", "content": "It is 5."}),
            ]
        );
    }

    fn delta(
        index: Option<u32>,
        id: Option<&str>,
        name: Option<&str>,
        args: &str,
    ) -> ToolCallDelta {
        ToolCallDelta {
            index,
            id: id.map(str::to_owned),
            function: Some(FunctionDelta {
                name: name.map(str::to_owned),
                arguments: Some(args.to_owned()),
            }),
        }
    }

    #[test]
    fn tool_calls_are_assembled_from_pieces_by_index() {
        let mut calls = ToolCalls::default();
        calls.add(delta(Some(0), Some("c1"), Some("calculator"), ""));
        calls.add(delta(Some(1), Some("c2"), Some("current_time"), "{}"));
        calls.add(delta(Some(0), None, None, "{\"expres"));
        calls.add(delta(
            Some(0),
            Some("c1"),
            Some("calculator"),
            "sion\": \"1+1\"}",
        ));
        assert_eq!(
            calls.finish(),
            Ok(vec![
                ModelChunk::ToolCall {
                    id: "c1".into(),
                    name: "calculator".into(),
                    arguments: json!({"expression": "1+1"}),
                },
                ModelChunk::ToolCall {
                    id: "c2".into(),
                    name: "current_time".into(),
                    arguments: json!({}),
                },
            ])
        );
    }

    #[test]
    fn calls_without_index_id_or_json_arguments_still_come_out() {
        let mut calls = ToolCalls::default();
        calls.add(delta(None, Some("x"), Some("calculator"), "{oops"));
        calls.add(delta(None, Some("y"), Some("current_time"), ""));
        let out = calls.finish().expect("calls");
        assert_eq!(
            out[0],
            ModelChunk::ToolCall {
                id: "x".into(),
                name: "calculator".into(),
                arguments: Value::String("{oops".into()),
            }
        );
        assert!(
            matches!(&out[1], ModelChunk::ToolCall { name, arguments, .. }
            if name == "current_time" && *arguments == json!({}))
        );
        let mut nameless = ToolCalls::default();
        nameless.add(delta(Some(0), None, None, "{}"));
        assert!(matches!(nameless.finish(), Err(ModelError::Fatal(_))));
        let mut no_id = ToolCalls::default();
        no_id.add(delta(Some(0), None, Some("calculator"), "{}"));
        assert!(matches!(&no_id.finish().expect("call")[0],
            ModelChunk::ToolCall { id, .. } if id.starts_with("call_")));
    }

    #[test]
    fn retry_after_reads_seconds_and_milliseconds_and_is_capped() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().expect("header"));
            }
            h
        };
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2"), ("retry-after-ms", "150")])),
            Some(Duration::from_millis(150))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "86400")])),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            Some(Duration::ZERO),
            "a date in the past: at once"
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Fri, 01 Jan 9999 00:00:00 GMT"
            )])),
            Some(MAX_RETRY_AFTER)
        );
        for huge in ["1e20", "1e308", "18446744073709551616"] {
            assert_eq!(
                retry_after(&headers(&[("retry-after", huge)])),
                Some(MAX_RETRY_AFTER),
                "{huge}"
            );
            assert_eq!(
                retry_after(&headers(&[("retry-after-ms", huge)])),
                Some(MAX_RETRY_AFTER),
                "{huge} ms"
            );
        }
        for ignored in ["-1", "-1e20", "NaN", "inf", "soon", ""] {
            assert_eq!(
                retry_after(&headers(&[("retry-after", ignored)])),
                None,
                "{ignored}"
            );
        }
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn upstream_messages_are_found_in_every_known_shape() {
        assert_eq!(
            upstream_message(
                br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error"}}"#
            ),
            Some("Incorrect API key".into())
        );
        assert_eq!(
            upstream_message(br#"{"error":"model not found"}"#),
            Some("model not found".into())
        );
        assert_eq!(
            upstream_message(b"  Bad Gateway \n"),
            Some("Bad Gateway".into())
        );
        assert_eq!(upstream_message(b""), None);
        let long = "x".repeat(1000);
        assert_eq!(
            upstream_message(long.as_bytes()).map(|m| m.len()),
            Some(MAX_QUOTED_CHARS)
        );
    }

    #[test]
    fn errors_inside_the_stream_are_classified() {
        assert!(
            stream_error(&json!({"message": "overloaded", "type": "server_error"})).is_transient()
        );
        assert!(!stream_error(
            &json!({"message": "context too long", "type": "invalid_request_error"})
        )
        .is_transient());
    }

    #[test]
    fn a_context_may_choose_its_model() {
        let settings = OpenAiSettings {
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: None,
            model: "default-model".into(),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        let provider = OpenAiModel::new(settings, &[]).expect("model");
        let mut request = ModelRequest {
            model: None,
            system_prompt: None,
            client_tools: vec![],
            messages: vec![Arc::new(message(Role::User, "hi"))],
            attempt: 0,
        };
        assert_eq!(provider.body(&request)["model"], "default-model");
        assert!(provider.body(&request).get("tools").is_none());
        request.model = Some("context-model".into());
        assert_eq!(provider.body(&request)["model"], "context-model");
        // The client's function tools are offered as declared.
        request.client_tools = vec![crate::domain::ClientTool {
            name: "lookup".into(),
            description: None,
            parameters: Some(json!({"type": "object"})),
        }];
        assert_eq!(
            provider.body(&request)["tools"],
            json!([{"type": "function",
                "function": {"name": "lookup", "parameters": {"type": "object"}}}])
        );
    }

    #[test]
    fn the_key_never_shows() {
        let key: ApiKey = "sk-secret-123".parse().expect("key");
        assert_eq!(format!("{key:?}"), "ApiKey(redacted)");
        let settings = OpenAiSettings {
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: Some(key.clone()),
            model: "m".into(),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        assert!(!format!("{settings:?}").contains("sk-secret-123"));
        let model = OpenAiModel::new(settings, &[]).expect("model");
        assert!(!format!("{model:?}").contains("sk-secret-123"));
        assert_eq!(
            scrub(
                Some(&key),
                ModelError::Fatal("bad key sk-secret-123".into())
            ),
            ModelError::Fatal("bad key [redacted]".into())
        );
        for bad in ["", "  ", "sk-with space", "sk-line\nbreak"] {
            assert!(bad.parse::<ApiKey>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let settings = |base_url: &str, key: Option<&str>, model: &str| OpenAiSettings {
            base_url: base_url.into(),
            api_key: key.map(|k| k.parse().expect("key")),
            model: model.into(),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        for (s, want) in [
            (settings("not a url", None, "m"), "is not a URL"),
            (
                settings("ftp://host/v1", None, "m"),
                "must be http or https",
            ),
            (settings(DEFAULT_BASE_URL, None, "m"), "needs a key"),
            (
                settings("http://localhost:11434/v1", None, " "),
                "must not be empty",
            ),
        ] {
            let err = OpenAiModel::new(s, &[]).expect_err("refused");
            assert!(err.contains(want), "{err}");
        }
        let ok = OpenAiModel::new(
            settings("http://localhost:11434/v1/", None, "llama3.2"),
            &[],
        )
        .expect("a local server needs no key");
        assert_eq!(
            ok.endpoint.as_str(),
            "http://localhost:11434/v1/chat/completions"
        );
    }
}
