//! Driving a turn: the model call, streaming its reply, retries, cancel; and the state of
//! the running turn, which only this file changes.

use super::lease::Lease;
use super::{Actor, Halt, Reply, Step};
use crate::engine::context::new_message;
use crate::fsm::{Event, State};
use crate::llm::{ModelChunk, ModelError, ModelRequest};
use chatsync_protocol::{content_text, ContentPart, MessageStatus, Role, ToolCall, ToolCallStatus};
use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;

/// The running turn (between turns: what the last one left, reset when the next starts).
#[derive(Debug)]
pub(super) struct Turn {
    /// Model calls made for the reply being produced (0 = first).
    attempt: u32,
    /// How long the model asked to wait before the next try.
    retry_after: Option<Duration>,
    /// The assistant message being streamed, and its length so far in characters.
    reply_msg: Option<usize>,
    reply_chars: usize,
    /// When the turn must end (`--max-turn-ms`), and whether it did.
    deadline: Instant,
    expired: bool,
    /// A cancel waiting for the turn to stop; answered once it rests.
    pending_cancel: Option<Reply<u64>>,
}

impl Default for Turn {
    fn default() -> Self {
        Turn {
            attempt: 0,
            retry_after: None,
            reply_msg: None,
            reply_chars: 0,
            deadline: Instant::now(),
            expired: false,
            pending_cancel: None,
        }
    }
}

impl Turn {
    /// When the running turn must end.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The turn ran past `--max-turn-ms`: it stops as failed.
    pub(super) fn expire(&mut self) {
        self.expired = true;
    }

    /// A cancel asked for this turn to stop; `reply` is answered once it rests.
    pub(super) fn cancel_with(&mut self, reply: Reply<u64>) {
        self.pending_cancel = Some(reply);
    }

    /// The context was replaced (reloaded, or a branch left): no reply is being streamed.
    pub(super) fn forget_reply(&mut self) {
        self.reply_msg = None;
    }
}

impl Actor {
    /// Starts counting a new turn; returns its number.
    pub(super) fn start_turn(&mut self) -> u64 {
        self.turns.started += 1;
        self.turn.attempt = 0;
        self.turn.deadline = Instant::now() + self.deps.settings.max_turn;
        self.turn.expired = false;
        self.turns.started
    }

    /// A context loaded in a non-resting state: its turn was interrupted (crash, kill).
    pub(super) async fn resume(&mut self) {
        // On a shared store, taking the lease catches up and starts above what the crashed
        // writer may have shown; another instance running it (or the database away) leaves
        // this one a reader.
        if self.lease.is_shared()
            && (!matches!(self.try_take_lease().await, Ok(true)) || self.ctx.state().is_resting())
        {
            return;
        }
        tracing::info!(context_id = %self.ctx.id(), state = self.ctx.state().name().as_str(), "resuming an interrupted turn");
        self.start_turn();
        self.turn.reply_msg = self
            .ctx
            .messages()
            .iter()
            .rposition(|m| m.role == Role::Assistant && m.status == MessageStatus::Streaming);
        if *self.ctx.state() == State::ProcessingLlmResponse && self.turn.reply_msg.is_none() {
            let _ = self
                .apply(Event::Fail {
                    error: "cannot resume: the reply being processed was not saved".into(),
                })
                .await;
            self.settle().await;
            return;
        }
        self.drive().await;
    }

    /// Runs the turn until it rests, is cancelled or fails.
    pub(super) async fn drive(&mut self) {
        while !self.ctx.state().is_resting() && !self.gone {
            let step = match self.ctx.state().clone() {
                State::ProcessingUserMessage | State::GeneratingResponse => {
                    self.pass(Event::RequestModel).await
                }
                State::AwaitingLlmResponse | State::StreamingLlmResponse => {
                    self.stream_reply().await
                }
                State::ProcessingLlmResponse => self.finish_reply().await,
                State::ExecutingTools => self.execute_tools().await,
                State::ProcessingToolResults => self.pass(Event::ToolResultsRecorded).await,
                State::TransientFailure { retries, .. } => self.back_off(retries).await,
                State::Idle
                | State::AwaitingToolApproval
                | State::AwaitingToolOutput
                | State::Failed { .. } => Ok(()),
            };
            match step {
                Ok(()) => {}
                Err(Halt::Cancelled) if self.lease == Lease::Lost => {
                    self.step_back().await;
                    break;
                }
                Err(Halt::Cancelled) if self.turn.expired => {
                    let limit = self.deps.settings.max_turn.as_millis();
                    self.stop_turn(Event::Fail {
                        error: format!(
                            "The turn ran longer than {limit} ms (--max-turn-ms) and was stopped"
                        ),
                    })
                    .await;
                }
                Err(Halt::Cancelled) => self.cancel_turn().await,
                Err(Halt::SaveFailed | Halt::LeaseLost) => break,
            }
        }
        self.settle().await;
    }

    pub(super) async fn stream_reply(&mut self) -> Step {
        if let Some(i) = self.turn.reply_msg {
            // A retry or a resume. A model that says the same again starts over in the
            // same message; another one's partial reply, once anything of it was shown,
            // stays as it is (cancelled), and the new reply gets a message of its own.
            let m = &self.ctx.messages()[i];
            let shown = !content_text(&m.content).is_empty() || m.tool_calls.is_some();
            if shown && !self.deps.model.replays_exactly() {
                self.ctx.message_mut(i).status = MessageStatus::Cancelled;
                self.turn.reply_msg = None;
            } else {
                let m = self.ctx.message_mut(i);
                m.content = vec![ContentPart::text("")];
                m.tool_calls = None;
                m.status = MessageStatus::Streaming;
            }
        }
        self.turn.reply_chars = 0;
        // The model reads the path without the reply being made, nor the partial replies
        // this turn abandoned (cancelled, at the end of the path).
        let messages = self.ctx.messages();
        let abandoned = messages
            .iter()
            .rev()
            .take_while(|m| m.role == Role::Assistant && m.status == MessageStatus::Cancelled)
            .count();
        let history = messages
            .iter()
            .take(messages.len() - abandoned)
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.turn.reply_msg)
            .map(|(_, m)| m.clone())
            .collect();
        let request = ModelRequest {
            model: self.ctx.model_id(),
            system_prompt: self.ctx.system_prompt(),
            client_tools: self.ctx.turn_options().client_tools.clone(),
            messages: history,
            attempt: self.turn.attempt,
        };
        let model = self.deps.model.clone();
        let mut stream = match self.wait_for(model.stream(request)).await {
            None => return Err(Halt::Cancelled),
            Some(Err(e)) => return self.model_failed(e).await,
            Some(Ok(stream)) => stream,
        };
        loop {
            match self.wait_for(stream.next()).await {
                None => return Err(Halt::Cancelled),
                Some(None) => break,
                Some(Some(Err(e))) => return self.model_failed(e).await,
                Some(Some(Ok(chunk))) => {
                    self.append_chunk(chunk);
                    let limit = self.deps.settings.max_reply_chars;
                    if self.turn.reply_chars > limit {
                        // Dropping the stream closes the upstream call.
                        return self
                            .model_failed(ModelError::Fatal(format!(
                                "The reply passed {limit} characters (--max-reply-chars) and was stopped"
                            )))
                            .await;
                    }
                    self.apply(self.stream_event()).await?;
                }
            }
        }
        if *self.ctx.state() == State::AwaitingLlmResponse {
            // An empty reply still gets its (empty) message.
            self.reply_index();
            self.apply(Event::StreamStarted).await?;
        }
        self.pass(Event::StreamEnded).await
    }

    pub(super) fn stream_event(&self) -> Event {
        if *self.ctx.state() == State::AwaitingLlmResponse {
            Event::StreamStarted
        } else {
            Event::Chunk
        }
    }

    pub(super) fn reply_index(&mut self) -> usize {
        match self.turn.reply_msg {
            Some(i) => i,
            None => {
                let mut m = new_message(Role::Assistant, vec![ContentPart::text("")], None);
                m.status = MessageStatus::Streaming;
                let i = self.ctx.push(m, None);
                self.turn.reply_msg = Some(i);
                i
            }
        }
    }

    pub(super) fn append_chunk(&mut self, chunk: ModelChunk) {
        let i = self.reply_index();
        match chunk {
            ModelChunk::Text(text) => {
                self.turn.reply_chars += text.chars().count();
                self.ctx.append_text(i, &text);
            }
            ModelChunk::ToolCall {
                id,
                name,
                arguments,
            } => self.ctx.append_tool_call(
                i,
                ToolCall {
                    id,
                    name,
                    arguments,
                    status: ToolCallStatus::Pending,
                    result: None,
                },
            ),
        }
    }

    pub(super) async fn model_failed(&mut self, error: ModelError) -> Step {
        tracing::warn!(context_id = %self.ctx.id(), attempt = self.turn.attempt, error = %error, "model call failed");
        if let Some(i) = self.turn.reply_msg {
            self.ctx.message_mut(i).status = MessageStatus::Cancelled;
        }
        if let ModelError::Transient { retry_after, .. } = &error {
            self.turn.retry_after = *retry_after;
        }
        let event = Event::ModelFailed {
            error: error.to_string(),
            transient: error.is_transient(),
            retries: self.turn.attempt,
        };
        self.turn.attempt += 1;
        self.apply(event).await
    }

    pub(super) async fn back_off(&mut self, retries: u32) -> Step {
        let delay = self.turn.retry_after.take().unwrap_or_else(|| {
            self.deps.settings.retry_base * 2u32.saturating_pow(retries.saturating_sub(1))
        });
        match self.wait_for(tokio::time::sleep(delay)).await {
            None => Err(Halt::Cancelled),
            Some(()) => self.apply(Event::RequestModel).await,
        }
    }

    pub(super) async fn finish_reply(&mut self) -> Step {
        let i = self.reply_index();
        let client = self.ctx.turn_options().clone();
        let m = self.ctx.message_mut(i);
        m.status = MessageStatus::Complete;
        let asks_for_tools = m.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
        // Calls of auto-approved tools are approved before the state is saved, so a
        // restart finds them approved and the person is asked only about the rest. A
        // call to a tool the client declared waits for the client's output instead.
        let tools = &self.deps.tools;
        let (mut all_auto, mut for_client) = (true, false);
        for call in m.tool_calls.iter_mut().flatten() {
            if client.declares(&call.name) {
                for_client = true;
                all_auto = false;
            } else if tools.is_auto_approved(&call.name) {
                call.status = ToolCallStatus::Approved;
            } else {
                all_auto = false;
            }
        }
        self.turn.reply_msg = None;
        self.turn.attempt = 0;
        if !asks_for_tools {
            return self.apply(Event::ReplyComplete).await;
        }
        if for_client {
            // Server calls of the same reply that need approval are answered with the
            // client's outputs (the OpenAI API sends both in one request).
            return self.apply(Event::ToolOutputsRequested).await;
        }
        // The turn still passes AwaitingToolApproval, so the FSM stays the one place
        // that says how a turn moves.
        self.apply(Event::ToolCallsRequested).await?;
        if all_auto {
            self.apply(Event::ToolsApproved).await
        } else {
            Ok(())
        }
    }

    /// Stops the running turn: the partial reply is kept and marked cancelled, calls that
    /// did not run are closed, and the context goes back to Idle.
    pub(super) async fn cancel_turn(&mut self) {
        self.stop_turn(Event::Cancel).await;
    }

    /// Ends the running turn with `event` (a cancel, or a failure once a limit passed):
    /// the partial reply is kept and marked cancelled, and calls that did not run are
    /// closed.
    async fn stop_turn(&mut self, event: Event) {
        if let Some(i) = self.turn.reply_msg.take() {
            self.ctx.message_mut(i).status = MessageStatus::Cancelled;
        }
        if let Some(i) = self.ctx.tool_call_message() {
            let calls = self.ctx.messages()[i]
                .tool_calls
                .clone()
                .unwrap_or_default();
            let answered: Vec<String> = self
                .ctx
                .messages()
                .iter()
                .skip(i + 1)
                .filter_map(|m| m.tool_call_id.clone())
                .collect();
            for (k, call) in calls.iter().enumerate() {
                if answered.contains(&call.id) {
                    continue;
                }
                let status = match call.status {
                    ToolCallStatus::Pending => ToolCallStatus::Denied,
                    _ => ToolCallStatus::Failed,
                };
                self.set_call(i, k, status, Some("cancelled".into())).await;
                self.push_tool_result(call.id.clone(), "The tool call was cancelled.".into());
            }
        }
        self.turn.attempt = 0;
        let result = self.apply(event).await;
        if let Some(reply) = self.turn.pending_cancel.take() {
            let _ = reply.send(match result {
                Ok(()) => Ok(self.turns.started),
                Err(_) => Err(self.save_error()),
            });
        }
    }
}
