//! `POST /v1/responses` with `store: false`: the model is called directly (`direct.rs`)
//! with the request's input alone, and nothing is stored: no chat, no response row, so a
//! later `GET /v1/responses/{id}` answers 404, as OpenAI's does for a response it did not
//! store. The object and the events are the ones a stored response gives (`events.rs`
//! derives them from the messages held here in memory for the request's duration only).

use super::client_tools;
use super::direct::{DirectRun, Stop};
use super::events::{derive, Derived, Spec, Stored};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::engine::new_message;
use crate::llm::{ModelChunk, ModelRequest};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use chatsync_protocol::{
    ContentPart, Message, MessageStatus, Role, StateName, ToolCall, ToolCallStatus,
};
use serde_json::Value;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the events of a streamed reply are derived again (at most), so a long reply
/// costs a bounded number of derivations per second, not one per model chunk.
const DERIVE_EVERY: Duration = Duration::from_millis(50);

/// A response that lives only as long as its request.
struct Unstored {
    id: String,
    created_at: i64,
    spec: Spec,
    /// The input's user messages; the last one carries the response id.
    users: Vec<Arc<Message>>,
    reply: Message,
    /// How the run ended, once it did.
    end: Option<(StateName, Option<String>)>,
    run: DirectRun,
}

impl Unstored {
    fn add(&mut self, chunk: ModelChunk) {
        match chunk {
            // The reply is made with one text part (`answer`): a chunk extends it in place.
            ModelChunk::Text(text) => match self.reply.content.last_mut() {
                Some(ContentPart::Text { text: whole }) => whole.push_str(&text),
                None => self.reply.content.push(ContentPart::text(text)),
            },
            ModelChunk::ToolCall {
                id,
                name,
                arguments,
            } => self
                .reply
                .tool_calls
                .get_or_insert_with(Vec::new)
                .push(ToolCall {
                    id,
                    name,
                    arguments,
                    status: ToolCallStatus::Pending,
                    result: None,
                }),
        }
    }

    fn stop(&mut self, stop: Option<Stop>) {
        self.end = Some(match stop {
            None => {
                self.reply.status = MessageStatus::Complete;
                (StateName::Idle, None)
            }
            Some(stop) => {
                tracing::warn!(error = %stop.message(), "a response that stores nothing failed");
                self.reply.status = MessageStatus::Cancelled;
                (StateName::Failed, Some(stop.message()))
            }
        });
    }

    /// The events and object as far as the run went; once it ended, with its end.
    fn derive(&self) -> Derived {
        let mut messages = self.users.clone();
        messages.push(Arc::new(self.reply.clone()));
        // Nothing runs the server's tools here: a call to one shows as a request for
        // approval that no later request can answer (nothing is stored to continue).
        let none_auto = |_: &str| false;
        let stored = |outcome| Stored {
            id: &self.id,
            created_at: self.created_at,
            spec: &self.spec,
            messages: &messages,
            state: self.end.clone(),
            outcome,
        };
        let derived = derive(&stored(None), &none_auto);
        match &derived.unrecorded {
            Some(outcome) => derive(&stored(Some(outcome)), &none_auto),
            None => derived,
        }
    }
}

/// Runs the response and answers it: the whole object once the model ended, or (with
/// `stream`) its events as the reply grows.
pub(super) async fn answer(
    app: &AppState,
    id: String,
    spec: Spec,
    texts: Vec<String>,
    stream: bool,
) -> Result<HttpResponse, ApiError> {
    let last = texts.len().saturating_sub(1);
    let users: Vec<Arc<Message>> = texts
        .into_iter()
        .enumerate()
        .map(|(n, text)| {
            let client_id = (n == last).then(|| id.clone());
            Arc::new(new_message(
                Role::User,
                vec![ContentPart::text(text)],
                client_id,
            ))
        })
        .collect();
    let request = ModelRequest {
        model: Some(spec.model.clone()),
        system_prompt: spec.instructions.clone(),
        client_tools: client_tools(&spec.tools),
        messages: users.clone(),
        attempt: 0,
    };
    let run = DirectRun::open(app, request).await?;
    let mut reply = new_message(Role::Assistant, vec![ContentPart::text("")], None);
    reply.status = MessageStatus::Streaming;
    let mut unstored = Unstored {
        id,
        created_at: chrono::Utc::now().timestamp(),
        spec,
        users,
        reply,
        end: None,
        run,
    };
    if !stream {
        let stop = loop {
            match unstored.run.next().await {
                Some(Ok(chunk)) => unstored.add(chunk),
                Some(Err(stop)) => break Some(stop),
                None => break None,
            }
        };
        unstored.stop(stop);
        return Ok(Json(unstored.derive().response).into_response());
    }
    struct Streaming {
        unstored: Unstored,
        pending: VecDeque<Value>,
        sent: usize,
        derived_at: Instant,
    }
    let first = unstored.derive();
    let streaming = Streaming {
        sent: first.events.len(),
        pending: first.events.into(),
        unstored,
        derived_at: Instant::now(),
    };
    let events = futures::stream::unfold(streaming, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                let kind = event["type"].as_str().unwrap_or("message").to_owned();
                let sse = Event::default().event(kind).data(event.to_string());
                return Some((Ok::<_, Infallible>(sse), s));
            }
            if s.unstored.end.is_some() {
                return None;
            }
            match s.unstored.run.next().await {
                Some(Ok(chunk)) => {
                    s.unstored.add(chunk);
                    if s.derived_at.elapsed() < DERIVE_EVERY {
                        continue;
                    }
                }
                Some(Err(stop)) => s.unstored.stop(Some(stop)),
                None => s.unstored.stop(None),
            }
            // A later derivation only extends an earlier one: what is new follows.
            let derived = s.unstored.derive();
            let new: Vec<Value> = derived.events.into_iter().skip(s.sent).collect();
            s.sent += new.len();
            s.pending.extend(new);
            s.derived_at = Instant::now();
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
