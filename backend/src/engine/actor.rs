//! One task per live context: every action on a context runs here, in order.
//!
//! The actor owns the `LiveContext`. It drives turns through the FSM, calls the autosave
//! hook after every transition and publishes a snapshot after every change. While a turn
//! waits on the model, a tool or a backoff timer it keeps reading its mailbox: `cancel`
//! and `flush` act at once, every other command queues until the turn rests.

use super::autosave::Autosaver;
use super::context::{new_message, LiveContext, Snapshot, Turns, MAX_UNSAVED_VERSIONS};
use super::{ActionError, Deps};
use crate::fsm::{self, Event, State};
use crate::llm::{ModelChunk, ModelError, ModelRequest};
use crate::store::StoreError;
use chatsync_protocol::{ContentPart, Message, MessageStatus, Role, ToolCall, ToolCallStatus};
use futures::StreamExt;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

pub type Reply<T> = oneshot::Sender<Result<T, ActionError>>;

#[derive(Debug)]
pub enum Command {
    /// Answers with the number of the turn to wait for.
    Send {
        content: String,
        client_message_id: Option<String>,
        idempotency_key: Option<String>,
        reply: Reply<u64>,
    },
    Approve {
        tool_call_ids: Vec<String>,
        reply: Reply<u64>,
    },
    Cancel {
        reply: Reply<u64>,
    },
    Retry {
        reply: Reply<u64>,
    },
    /// Deprecated CRUD: store a message without running the FSM.
    Append {
        role: Role,
        content: Vec<ContentPart>,
        tool_call_id: Option<String>,
        reply: Reply<Written>,
    },
    /// Deprecated CRUD: replace a message's content.
    Edit {
        message_id: Uuid,
        content: Vec<ContentPart>,
        reply: Reply<Written>,
    },
    /// Write whatever is unsaved now.
    Flush {
        reply: oneshot::Sender<()>,
    },
    /// Another instance saved this context: catch up unless this actor is the writer.
    Refresh,
    /// An interrupted turn has no live runner: run it here if the lease can be had.
    Resume,
    /// Another instance asked to cancel the turn this actor runs.
    RemoteCancel,
    /// Leave memory: refuse queued commands (their senders retry on a fresh actor) and stop.
    Retire,
}

/// A message written by the deprecated CRUD commands, and whether it is on disk yet.
#[derive(Debug, Clone)]
pub struct Written {
    pub message: Arc<Message>,
    pub saved: bool,
}

/// Why a turn stopped before reaching a resting state by itself.
#[derive(Debug)]
enum Halt {
    Cancelled,
    /// Another instance took over the context (its lease expired under us).
    LeaseLost,
    /// A save failed; the context is already in `Failed` (or gone).
    SaveFailed,
}

type Step = Result<(), Halt>;

pub struct Actor {
    ctx: LiveContext,
    rx: mpsc::Receiver<Command>,
    rx_closed: bool,
    deferred: VecDeque<Command>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    deps: Arc<Deps>,
    autosave: Autosaver,
    turns: Turns,
    /// Model calls made for the reply being produced (0 = first).
    attempt: u32,
    retry_after: Option<Duration>,
    /// The assistant message being streamed.
    reply_msg: Option<usize>,
    pending_cancel: Option<Reply<u64>>,
    /// The context was deleted under us: stop.
    gone: bool,
    /// Several instances share the store: turns run under a lease.
    shared: bool,
    lease_held: bool,
    lease_renewed: tokio::time::Instant,
    /// The lease could not be renewed during a wait: stop writing.
    lease_lost: bool,
}

/// How long an action waits for another instance to finish with a context.
const LEASE_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting action asks for the lease again.
const LEASE_POLL: Duration = Duration::from_millis(25);

impl Actor {
    pub fn new(
        ctx: LiveContext,
        rx: mpsc::Receiver<Command>,
        deps: Arc<Deps>,
    ) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let shared = deps.store.is_shared();
        let mut ctx = ctx;
        if !shared && !ctx.state().is_resting() {
            // Interrupted here, resumed here: skip any version published but never stored
            // before the first reader can see this context.
            ctx.skip_unsaved_versions();
            ctx.publish();
        }
        let (snapshot, snapshot_rx) = watch::channel(Arc::new(ctx.snapshot(Turns::default())));
        let autosave = Autosaver {
            store: deps.store.clone(),
            metrics: deps.metrics.clone(),
            stream_flush: deps.settings.stream_flush,
        };
        let actor = Actor {
            ctx,
            rx,
            rx_closed: false,
            deferred: VecDeque::new(),
            snapshot,
            deps,
            autosave,
            turns: Turns::default(),
            attempt: 0,
            retry_after: None,
            reply_msg: None,
            pending_cancel: None,
            gone: false,
            shared,
            lease_held: false,
            lease_renewed: tokio::time::Instant::now(),
            lease_lost: false,
        };
        (actor, snapshot_rx)
    }

    pub async fn run(mut self) {
        if !self.ctx.state().is_resting() {
            self.resume().await;
            self.release_lease().await;
        }
        while !self.gone {
            let cmd = match self.deferred.pop_front() {
                Some(cmd) => cmd,
                None => match self.rx.recv().await {
                    Some(cmd) => cmd,
                    None => break,
                },
            };
            if let Command::Retire = cmd {
                self.retire();
                break;
            }
            self.handle(cmd).await;
            self.release_lease().await;
        }
    }

    fn retire(&mut self) {
        self.rx.close();
        let refused = self
            .deferred
            .drain(..)
            .chain(std::iter::from_fn(|| self.rx.try_recv().ok()));
        for cmd in refused.collect::<Vec<_>>() {
            refuse(cmd, ActionError::Retired);
        }
    }

    fn publish(&self) {
        self.snapshot
            .send_replace(Arc::new(self.ctx.snapshot(self.turns)));
    }

    fn start_turn(&mut self) -> u64 {
        self.turns.started += 1;
        self.attempt = 0;
        self.turns.started
    }

    async fn handle(&mut self, cmd: Command) {
        let mutating = matches!(
            cmd,
            Command::Send { .. }
                | Command::Approve { .. }
                | Command::Retry { .. }
                | Command::Append { .. }
                | Command::Edit { .. }
        );
        if mutating {
            if let Err(e) = self.take_lease().await {
                refuse(cmd, e);
                return;
            }
        }
        match cmd {
            Command::Send {
                content,
                client_message_id,
                idempotency_key,
                reply,
            } => {
                if self
                    .ctx
                    .find_sent(client_message_id.as_deref(), idempotency_key.as_deref())
                    .is_some()
                {
                    // A repeated send: answer with the current turn, add nothing.
                    let _ = reply.send(Ok(self.turns.started));
                    return;
                }
                if let Err(e) = fsm::transition(self.ctx.state(), &Event::UserMessage) {
                    let _ = reply.send(Err(ActionError::invalid_state(&e)));
                    return;
                }
                self.ctx.push(
                    new_message(
                        Role::User,
                        vec![ContentPart::text(content)],
                        client_message_id,
                    ),
                    idempotency_key,
                );
                let turn = self.start_turn();
                self.acknowledge_then_drive(Event::UserMessage, reply, turn)
                    .await;
            }
            Command::Approve {
                tool_call_ids,
                reply,
            } => match self.decide_tool_calls(&tool_call_ids) {
                Ok(event) => {
                    let turn = self.start_turn();
                    self.acknowledge_then_drive(event, reply, turn).await;
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Retry { reply } => {
                if let Err(e) = fsm::transition(self.ctx.state(), &Event::Retry) {
                    let _ = reply.send(Err(ActionError::invalid_state(&e)));
                    return;
                }
                let turn = self.start_turn();
                self.acknowledge_then_drive(Event::Retry, reply, turn).await;
            }
            Command::Cancel { reply } => self.cancel_at_rest(reply).await,
            Command::Append {
                role,
                content,
                tool_call_id,
                reply,
            } => {
                let mut message = new_message(role, content, None);
                message.tool_call_id = tool_call_id;
                let i = self.ctx.push(message, None);
                let _ = reply.send(Ok(self.save_kept(i).await));
            }
            Command::Edit {
                message_id,
                content,
                reply,
            } => {
                let Some(i) = self.ctx.messages().iter().position(|m| m.id == message_id) else {
                    let _ = reply.send(Err(ActionError::MessageNotFound(message_id)));
                    return;
                };
                self.ctx.message_mut(i).content = content;
                let _ = reply.send(Ok(self.save_kept(i).await));
            }
            Command::Flush { reply } => {
                self.flush().await;
                let _ = reply.send(());
            }
            Command::Refresh => {
                let _ = self.catch_up().await;
            }
            Command::Resume => {
                self.resume().await;
            }
            Command::RemoteCancel | Command::Retire => {}
        }
    }

    /// Cancel while this actor runs no turn: the context rests here, or another instance
    /// runs its turn.
    async fn cancel_at_rest(&mut self, reply: Reply<u64>) {
        if let Err(e) = self.catch_up().await {
            let _ = reply.send(Err(e));
            return;
        }
        match self.ctx.state() {
            State::Idle | State::Failed { .. } => {
                let _ = reply.send(Err(ActionError::Invalid {
                    code: "nothing_to_cancel",
                    message: "Nothing to cancel: no turn is running".into(),
                }));
            }
            State::AwaitingToolApproval => {
                // The turn rests waiting for a person: deny what waits.
                if let Err(e) = self.take_lease().await {
                    let _ = reply.send(Err(e));
                    return;
                }
                self.pending_cancel = Some(reply);
                self.cancel_turn().await;
            }
            _ => {
                // Another instance runs the turn: ask it, then wait to see it rest.
                let result = self.cancel_elsewhere().await;
                let _ = reply.send(result.map(|()| self.turns.started));
            }
        }
    }

    async fn cancel_elsewhere(&mut self) -> Result<(), ActionError> {
        self.deps.store.request_cancel(self.ctx.id()).await?;
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        while !self.ctx.state().is_resting() {
            if tokio::time::Instant::now() > deadline {
                return Err(StoreError::Unavailable(
                    "the instance running this turn did not answer the cancel".into(),
                )
                .into());
            }
            self.wait_between_turns(tokio::time::sleep(LEASE_POLL))
                .await;
            self.catch_up().await?;
        }
        Ok(())
    }

    /// Takes the context's lease (waiting while another instance runs a turn) and catches
    /// up with what that instance wrote. A store that is not shared needs neither.
    async fn take_lease(&mut self) -> Result<(), ActionError> {
        if !self.shared || self.lease_held {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        let ttl = self.deps.settings.lease_ttl;
        while !self.deps.store.acquire_lease(self.ctx.id(), ttl).await? {
            if tokio::time::Instant::now() > deadline {
                return Err(StoreError::Unavailable(
                    "the context is busy on another instance; try again".into(),
                )
                .into());
            }
            self.wait_between_turns(tokio::time::sleep(LEASE_POLL))
                .await;
        }
        self.lease_held = true;
        self.lease_renewed = tokio::time::Instant::now();
        if let Err(e) = self.catch_up().await {
            self.release_lease().await;
            return Err(e);
        }
        Ok(())
    }

    async fn release_lease(&mut self) {
        if !self.lease_held {
            return;
        }
        self.lease_held = false;
        if let Err(e) = self.deps.store.release_lease(self.ctx.id()).await {
            // It expires by itself; another instance only waits a little longer.
            tracing::warn!(context_id = %self.ctx.id(), error = %e, "releasing a lease failed");
        }
    }

    /// Renews the lease during a long wait; false when another instance took it.
    async fn renew_lease(&mut self) -> bool {
        self.lease_renewed = tokio::time::Instant::now();
        match self
            .deps
            .store
            .acquire_lease(self.ctx.id(), self.deps.settings.lease_ttl)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                // The database may be back before the lease runs out; a save tells for sure.
                tracing::warn!(context_id = %self.ctx.id(), error = %e, "renewing a lease failed");
                true
            }
        }
    }

    /// On a shared store, reloads the context when another instance saved a newer version.
    async fn catch_up(&mut self) -> Result<(), ActionError> {
        if !self.shared {
            return Ok(());
        }
        let id = self.ctx.id();
        match self.deps.store.stored_version(id).await? {
            None => {
                self.gone = true;
                Err(ActionError::Gone)
            }
            Some(v) if v == self.ctx.saved_version() => Ok(()),
            Some(_) => {
                // Usually only a few messages changed: fetch just those.
                let since = self.ctx.saved_version();
                let changes = self
                    .deps
                    .store
                    .load_changes(id, since)
                    .await?
                    .ok_or(ActionError::Gone)?;
                if self.ctx.apply_changes(changes) {
                    self.publish();
                    return Ok(());
                }
                let loaded = self
                    .deps
                    .store
                    .load_context(id)
                    .await?
                    .ok_or(ActionError::Gone)?;
                self.ctx = LiveContext::from_loaded(loaded);
                self.reply_msg = None;
                self.publish();
                Ok(())
            }
        }
    }

    /// Applies the event that starts (or resumes) a turn, answers the action once that is
    /// durable, then runs the turn to its next resting state.
    async fn acknowledge_then_drive(&mut self, event: Event, reply: Reply<u64>, turn: u64) {
        match self.apply(event).await {
            Ok(()) => {
                let _ = reply.send(Ok(turn));
                self.drive().await;
            }
            Err(_) => {
                let error = self.save_error();
                let _ = reply.send(Err(error));
                self.settle();
            }
        }
    }

    fn save_error(&self) -> ActionError {
        match self.ctx.state().error() {
            Some(e) => ActionError::SaveFailed(e.to_owned()),
            None => ActionError::Gone,
        }
    }

    /// Saves a change made outside a transition (deprecated CRUD).
    async fn save_now(&mut self) -> Result<(), ActionError> {
        let result = self.autosave.save(&mut self.ctx).await;
        self.publish();
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(ActionError::Store(e)),
        }
    }

    /// Saves a change that stays in memory whether or not the save succeeds (a failed
    /// one is written by the next save): the answer says which, never an error.
    async fn save_kept(&mut self, i: usize) -> Written {
        let saved = self.save_now().await.is_ok();
        Written {
            message: self.ctx.messages()[i].clone(),
            saved,
        }
    }

    async fn flush(&mut self) {
        if self.ctx.has_unsaved() || self.ctx.publish() {
            // Errors are logged by the autosaver; the data stays in memory for a retry.
            let _ = self.autosave.save(&mut self.ctx).await;
        }
    }

    /// Runs one FSM transition and the autosave hook.
    async fn apply(&mut self, event: Event) -> Step {
        self.transition(event, false).await
    }

    /// Runs a transition that the next one follows at once; it is saved with that one.
    async fn pass(&mut self, event: Event) -> Step {
        self.transition(event, true).await
    }

    async fn transition(&mut self, event: Event, passing: bool) -> Step {
        match fsm::transition(self.ctx.state(), &event) {
            Ok(next) if passing => {
                self.ctx.set_state(next);
                self.autosave.after_passing_transition(&mut self.ctx);
                self.publish();
                Ok(())
            }
            Ok(next) => {
                self.ctx.set_state(next);
                self.autosave().await
            }
            Err(e) => {
                // An engine bug: the turn fails with the reason instead of going on wrong.
                tracing::error!(context_id = %self.ctx.id(), error = %e, "engine fed the FSM an invalid event");
                self.ctx.set_state(State::Failed {
                    error: format!("internal error: {e}"),
                });
                self.autosave().await.and(Err(Halt::SaveFailed))
            }
        }
    }

    async fn autosave(&mut self) -> Step {
        let result = self.autosave.after_transition(&mut self.ctx).await;
        let step = match result {
            Ok(_) => Ok(()),
            Err(StoreError::Gone(_)) => {
                self.gone = true;
                Err(Halt::SaveFailed)
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::warn!(context_id = %self.ctx.id(), "another instance took this context over; stepping back");
                self.lease_held = false;
                let _ = self.catch_up().await;
                Err(Halt::LeaseLost)
            }
            Err(e) => {
                self.turns.save_failed = Some(self.turns.started);
                self.ctx.set_state(State::Failed {
                    error: format!("saving the context failed: {e}"),
                });
                self.ctx.publish();
                Err(Halt::SaveFailed)
            }
        };
        self.publish();
        step
    }

    /// A context loaded in a non-resting state: its turn was interrupted (crash, kill).
    async fn resume(&mut self) {
        if self.shared {
            let ttl = self.deps.settings.lease_ttl;
            match self.deps.store.acquire_lease(self.ctx.id(), ttl).await {
                Ok(true) => {
                    self.lease_held = true;
                    self.lease_renewed = tokio::time::Instant::now();
                }
                // Another instance runs it (or the database is away): stay a reader.
                _ => return,
            }
            if self.catch_up().await.is_err() || self.ctx.state().is_resting() {
                return;
            }
            // The crashed writer may have published versions it never stored.
            self.ctx.skip_unsaved_versions();
            self.ctx.publish();
            self.publish();
        }
        tracing::info!(context_id = %self.ctx.id(), state = self.ctx.state().name().as_str(), "resuming an interrupted turn");
        self.start_turn();
        self.reply_msg = self
            .ctx
            .messages()
            .iter()
            .rposition(|m| m.role == Role::Assistant && m.status == MessageStatus::Streaming);
        if *self.ctx.state() == State::ProcessingLlmResponse && self.reply_msg.is_none() {
            let _ = self
                .apply(Event::Fail {
                    error: "cannot resume: the reply being processed was not saved".into(),
                })
                .await;
            self.settle();
            return;
        }
        self.drive().await;
    }

    /// Runs the turn until it rests, is cancelled or fails.
    async fn drive(&mut self) {
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
                State::Idle | State::AwaitingToolApproval | State::Failed { .. } => Ok(()),
            };
            match step {
                Ok(()) => {}
                Err(Halt::Cancelled) if self.lease_lost => {
                    self.lease_lost = false;
                    self.lease_held = false;
                    let _ = self.catch_up().await;
                    break;
                }
                Err(Halt::Cancelled) => self.cancel_turn().await,
                Err(Halt::SaveFailed | Halt::LeaseLost) => break,
            }
        }
        self.settle();
    }

    fn settle(&mut self) {
        self.turns.settled = self.turns.started;
        self.publish();
    }

    /// Awaits `fut` during a turn while serving the mailbox: `cancel` interrupts, `flush`
    /// runs at once, everything else waits for the turn to rest; the lease is renewed.
    /// `None` means the turn must stop (cancelled, or the lease was lost).
    async fn wait_for<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        self.serve_while(fut, true).await
    }

    /// Awaits `fut` between turns (waiting for the lease): the mailbox is served the same
    /// way, but a cancel waits its turn like any other command.
    async fn wait_between_turns<F: Future>(&mut self, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            if let Some(out) = self.serve_while(&mut fut, false).await {
                return out;
            }
        }
    }

    async fn serve_while<F: Future>(&mut self, fut: F, in_turn: bool) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            if self.rx_closed {
                return Some(fut.await);
            }
            let renew_at = self.lease_renewed + self.deps.settings.lease_ttl / 3;
            let renewing = self.lease_held && self.shared;
            tokio::select! {
                biased;
                cmd = self.rx.recv() => match cmd {
                    None => self.rx_closed = true,
                    Some(Command::Cancel { reply }) if in_turn => {
                        self.pending_cancel = Some(reply);
                        return None;
                    }
                    Some(Command::RemoteCancel) if in_turn => return None,
                    Some(Command::Flush { reply }) => {
                        self.flush().await;
                        let _ = reply.send(());
                    }
                    Some(Command::Refresh) if !self.lease_held => {
                        let _ = self.catch_up().await;
                    }
                    Some(Command::Refresh | Command::RemoteCancel | Command::Resume) => {}
                    Some(other) => self.deferred.push_back(other),
                },
                () = tokio::time::sleep_until(renew_at), if renewing => {
                    if !self.renew_lease().await {
                        self.lease_lost = true;
                        return None;
                    }
                }
                out = &mut fut => return Some(out),
            }
        }
    }

    async fn stream_reply(&mut self) -> Step {
        if let Some(i) = self.reply_msg {
            // A retry or a resume: the reply starts over in the same message.
            let m = self.ctx.message_mut(i);
            m.content = vec![ContentPart::text("")];
            m.tool_calls = None;
            m.status = MessageStatus::Streaming;
        }
        let history = self
            .ctx
            .messages()
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.reply_msg)
            .map(|(_, m)| m.clone())
            .collect();
        let request = ModelRequest {
            model: self.ctx.model_id(),
            system_prompt: self.ctx.system_prompt(),
            messages: history,
            attempt: self.attempt,
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

    fn stream_event(&self) -> Event {
        if *self.ctx.state() == State::AwaitingLlmResponse {
            Event::StreamStarted
        } else {
            Event::Chunk
        }
    }

    fn reply_index(&mut self) -> usize {
        match self.reply_msg {
            Some(i) => i,
            None => {
                let mut m = new_message(Role::Assistant, vec![ContentPart::text("")], None);
                m.status = MessageStatus::Streaming;
                let i = self.ctx.push(m, None);
                self.reply_msg = Some(i);
                i
            }
        }
    }

    fn append_chunk(&mut self, chunk: ModelChunk) {
        let i = self.reply_index();
        let m = self.ctx.message_mut(i);
        match chunk {
            ModelChunk::Text(text) => match m.content.last_mut() {
                Some(ContentPart::Text { text: t }) => t.push_str(&text),
                None => m.content.push(ContentPart::text(text)),
            },
            ModelChunk::ToolCall {
                id,
                name,
                arguments,
            } => m.tool_calls.get_or_insert_with(Vec::new).push(ToolCall {
                id,
                name,
                arguments,
                status: ToolCallStatus::Pending,
                result: None,
            }),
        }
    }

    async fn model_failed(&mut self, error: ModelError) -> Step {
        tracing::warn!(context_id = %self.ctx.id(), attempt = self.attempt, error = %error, "model call failed");
        if let Some(i) = self.reply_msg {
            self.ctx.message_mut(i).status = MessageStatus::Cancelled;
        }
        if let ModelError::Transient { retry_after, .. } = &error {
            self.retry_after = *retry_after;
        }
        let event = Event::ModelFailed {
            error: error.to_string(),
            transient: error.is_transient(),
            retries: self.attempt,
        };
        self.attempt += 1;
        self.apply(event).await
    }

    async fn back_off(&mut self, retries: u32) -> Step {
        let delay = self.retry_after.take().unwrap_or_else(|| {
            self.deps.settings.retry_base * 2u32.saturating_pow(retries.saturating_sub(1))
        });
        match self.wait_for(tokio::time::sleep(delay)).await {
            None => Err(Halt::Cancelled),
            Some(()) => self.apply(Event::RequestModel).await,
        }
    }

    async fn finish_reply(&mut self) -> Step {
        let i = self.reply_index();
        let m = self.ctx.message_mut(i);
        m.status = MessageStatus::Complete;
        let asks_for_tools = m.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
        // Calls of auto-approved tools are approved before the state is saved, so a
        // restart finds them approved and the person is asked only about the rest.
        let tools = &self.deps.tools;
        let mut all_auto = true;
        for call in m.tool_calls.iter_mut().flatten() {
            if tools.is_auto_approved(&call.name) {
                call.status = ToolCallStatus::Approved;
            } else {
                all_auto = false;
            }
        }
        self.reply_msg = None;
        self.attempt = 0;
        if !asks_for_tools {
            return self.apply(Event::ReplyComplete).await;
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

    /// Validates an approval and records every decision; returns the event it leads to.
    fn decide_tool_calls(&mut self, approved: &[String]) -> Result<Event, ActionError> {
        let no_pending = || ActionError::Invalid {
            code: "no_pending_approvals",
            message: "No pending tool approvals".into(),
        };
        if *self.ctx.state() != State::AwaitingToolApproval {
            return Err(no_pending());
        }
        let i = self.ctx.tool_call_message().ok_or_else(no_pending)?;
        let calls = self.ctx.messages()[i]
            .tool_calls
            .clone()
            .unwrap_or_default();
        let pending: Vec<&ToolCall> = calls
            .iter()
            .filter(|c| c.status == ToolCallStatus::Pending)
            .collect();
        let unknown: Vec<&str> = approved
            .iter()
            .filter(|id| !pending.iter().any(|c| &c.id == *id))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ActionError::Invalid {
                code: "unknown_tool_call",
                message: format!("Unknown tool call id(s): {}", unknown.join(", ")),
            });
        }
        let mut denied = Vec::new();
        let m = self.ctx.message_mut(i);
        for call in m.tool_calls.iter_mut().flatten() {
            if call.status != ToolCallStatus::Pending {
                continue;
            }
            if approved.contains(&call.id) {
                call.status = ToolCallStatus::Approved;
            } else {
                call.status = ToolCallStatus::Denied;
                denied.push(call.id.clone());
            }
        }
        // Auto-approved calls of the same reply run even when the person denies the rest.
        let any_approved = m
            .tool_calls
            .iter()
            .flatten()
            .any(|c| c.status == ToolCallStatus::Approved);
        for id in denied {
            self.push_tool_result(id, "The user denied this tool call.".into());
        }
        Ok(if any_approved {
            Event::ToolsApproved
        } else {
            Event::ToolsDenied
        })
    }

    fn push_tool_result(&mut self, call_id: String, text: String) {
        let mut m = new_message(Role::Tool, vec![ContentPart::text(text)], None);
        m.tool_call_id = Some(call_id);
        self.ctx.push(m, None);
    }

    async fn execute_tools(&mut self) -> Step {
        let Some(i) = self.ctx.tool_call_message() else {
            return self
                .apply(Event::Fail {
                    error: "cannot run tools: the tool calls were not saved".into(),
                })
                .await;
        };
        let calls = self.ctx.messages()[i]
            .tool_calls
            .clone()
            .unwrap_or_default();
        for (k, call) in calls.iter().enumerate() {
            if !matches!(
                call.status,
                ToolCallStatus::Approved | ToolCallStatus::Running
            ) {
                continue;
            }
            self.set_call(i, k, ToolCallStatus::Running, None).await;
            let tools = self.deps.tools.clone();
            let outcome = self.wait_for(tools.run(&call.name, &call.arguments)).await;
            let (status, text) = match outcome {
                None => return Err(Halt::Cancelled),
                Some(Ok(result)) => (ToolCallStatus::Completed, result),
                Some(Err(error)) => (ToolCallStatus::Failed, error),
            };
            self.set_call(i, k, status, Some(text.clone())).await;
            self.push_tool_result(call.id.clone(), text);
        }
        self.apply(Event::ToolsFinished).await
    }

    /// Changes one call outside a transition: visible to pollers at once, saved with the
    /// next transition.
    async fn set_call(
        &mut self,
        msg: usize,
        call: usize,
        status: ToolCallStatus,
        result: Option<String>,
    ) {
        if let Some(c) = self
            .ctx
            .message_mut(msg)
            .tool_calls
            .as_mut()
            .and_then(|calls| calls.get_mut(call))
        {
            c.status = status;
            c.result = result;
        }
        self.ctx.publish();
        if self.ctx.unsaved_versions() >= MAX_UNSAVED_VERSIONS {
            // Errors are logged; the next transition's save reports them to the turn.
            let _ = self.autosave.save(&mut self.ctx).await;
        }
        self.publish();
    }

    /// Stops the running turn: the partial reply is kept and marked cancelled, calls that
    /// did not run are closed, and the context goes back to Idle.
    async fn cancel_turn(&mut self) {
        if let Some(i) = self.reply_msg.take() {
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
        self.attempt = 0;
        let result = self.apply(Event::Cancel).await;
        if let Some(reply) = self.pending_cancel.take() {
            let _ = reply.send(match result {
                Ok(()) => Ok(self.turns.started),
                Err(_) => Err(self.save_error()),
            });
        }
    }
}

fn refuse(cmd: Command, error: ActionError) {
    match cmd {
        Command::Send { reply, .. }
        | Command::Approve { reply, .. }
        | Command::Cancel { reply }
        | Command::Retry { reply } => {
            let _ = reply.send(Err(error));
        }
        Command::Append { reply, .. } | Command::Edit { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::Flush { reply } => {
            let _ = reply.send(());
        }
        Command::Refresh | Command::Resume | Command::RemoteCancel | Command::Retire => {}
    }
}
