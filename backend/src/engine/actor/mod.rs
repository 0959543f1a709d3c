//! One task per live context: every action on a context runs here, in order.
//!
//! The actor owns the `LiveContext`. It drives turns through the FSM, calls the autosave
//! hook after every transition and publishes a snapshot after every change. While a turn
//! waits on the model, a tool or a backoff timer it keeps reading its mailbox: `cancel`
//! and `flush` act at once, every other command queues until the turn rests.
//!
//! Layout: this file holds the mailbox loop, the commands and the transition/autosave
//! step every part shares; `turn` drives a turn (model call, streaming, retries, cancel);
//! `tools` handles approval and execution of tool calls; `branch` edits, regenerates and
//! switches branches; `lease` is the shared-store lease.

mod branch;
mod lease;
mod queue;
mod tools;
mod turn;

use super::autosave::Autosaver;
use super::context::{new_message, LiveContext, Snapshot, Turns};
use super::{ActionError, Deps};
use crate::domain::{ClientKey, NewMessage};
use crate::fsm::{self, Event, State};
use crate::store::StoreError;
use chatsync_protocol::{ContentPart, Message, Role, SwitchBranchRequest};
use lease::Lease;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

pub type Reply<T> = oneshot::Sender<Result<T, ActionError>>;

/// How a send was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAck {
    /// Its turn started (or, for a repeated send, the turn now running): wait for this one.
    Turn(u64),
    /// The context was busy: the message waits in the queue under this id.
    Queued(Uuid),
    /// Another instance runs the context: the message waits in the stored queue under this
    /// id, and shows here once that instance takes it up.
    QueuedElsewhere(Uuid),
}

#[derive(Debug)]
pub enum Command {
    /// Answers with the number of the turn to wait for.
    Send {
        message: NewMessage,
        reply: Reply<SendAck>,
    },
    /// Drop a queued message before its turn.
    CancelQueued {
        message_id: Uuid,
        reply: Reply<()>,
    },
    Approve {
        tool_call_ids: Vec<String>,
        reply: Reply<u64>,
    },
    /// The client's results for calls of tools it runs itself (the OpenAI API's function
    /// tools): (call id, output) for every call that waits.
    SubmitToolOutputs {
        outputs: Vec<(String, String)>,
        reply: Reply<u64>,
    },
    Cancel {
        reply: Reply<u64>,
    },
    Retry {
        reply: Reply<u64>,
    },
    /// A new version of a user message on the path, as a sibling; its turn runs.
    EditUserMessage {
        message_id: Uuid,
        message: NewMessage,
        reply: Reply<u64>,
    },
    /// A new reply beside an assistant message on the path (default: the last one).
    Regenerate {
        message_id: Option<Uuid>,
        reply: Reply<u64>,
    },
    /// Move the active leaf to the newest leaf under a message (or one of its siblings).
    SwitchBranch {
        target: SwitchBranchRequest,
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
    /// Give the context a new title. Done at once, even while a turn runs: it touches the
    /// context row only, never the turn.
    Rename {
        title: String,
        reply: Reply<()>,
    },
    /// Write whatever is unsaved now.
    Flush {
        reply: oneshot::Sender<()>,
    },
    /// Another instance saved this context: catch up unless this actor is the writer.
    Refresh,
    /// An interrupted turn has no live runner: run it here if the lease can be had.
    Resume,
    /// A message was queued in the store (possibly by another instance).
    QueueChanged,
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
    /// The assistant message being streamed, and its length so far in characters.
    reply_msg: Option<usize>,
    reply_chars: usize,
    /// When the running turn must end (`--max-turn-ms`), and whether it did.
    turn_deadline: tokio::time::Instant,
    turn_expired: bool,
    pending_cancel: Option<Reply<u64>>,
    /// The context was deleted under us: stop.
    gone: bool,
    lease: Lease,
    /// When the last snapshot was published, and when a held-back one is due.
    last_publish: tokio::time::Instant,
    publish_due: Option<tokio::time::Instant>,
    /// What the engine reads to choose what to evict.
    footprint: Arc<Footprint>,
    /// The bytes last noted and the context's streamed bytes then: a publish during a turn
    /// adds what streamed since, without walking the history.
    footprint_noted: (u64, u64),
}

/// What an actor tells the engine about its context after each command.
#[derive(Debug, Default)]
pub struct Footprint {
    /// Changes only in memory (a save failed): the engine never evicts such a context,
    /// so nothing unsaved is dropped.
    pub unsaved: AtomicBool,
    /// About how many bytes its messages take (`--max-live-bytes`).
    pub bytes: AtomicU64,
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
        footprint: Arc<Footprint>,
    ) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let shared = deps.store.is_shared();
        let mut ctx = ctx;
        // The only writer, loading what the last run left: if that run may have shown
        // versions it never stored (it crashed), the first state shown is above them. It
        // names the stored content, as it would after another crash, so it is shown at
        // once; the next publish stores a ceiling above it.
        if !shared && ctx.skip_past_ceiling() {
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
            reply_chars: 0,
            turn_deadline: tokio::time::Instant::now(),
            turn_expired: false,
            pending_cancel: None,
            gone: false,
            lease: Lease::new(shared),
            last_publish: tokio::time::Instant::now(),
            publish_due: None,
            footprint,
            footprint_noted: (0, 0),
        };
        (actor, snapshot_rx)
    }

    pub async fn run(mut self) {
        self.note_footprint();
        self.load_queue().await;
        if !self.ctx.state().is_resting() {
            self.resume().await;
        }
        self.drain_queue().await;
        self.release_lease().await;
        self.note_footprint();
        while !self.gone {
            let cmd = match self.deferred.pop_front() {
                Some(cmd) => cmd,
                None => match self.rx.recv().await {
                    Some(cmd) => cmd,
                    None => break,
                },
            };
            if let Command::Retire = cmd {
                // Chosen because it was saved; written again should that have changed.
                self.flush().await;
                self.retire();
                break;
            }
            self.handle(cmd).await;
            self.drain_queue().await;
            self.release_lease().await;
            self.note_footprint();
        }
    }

    /// Tells the engine what it needs to choose what to evict (see [`Footprint`]).
    fn note_footprint(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let f = &self.footprint;
        f.unsaved.store(self.ctx.has_unsaved(), Relaxed);
        let bytes = self.ctx.approx_bytes();
        f.bytes.store(bytes, Relaxed);
        self.footprint_noted = (bytes, self.ctx.streamed_bytes());
    }

    /// A running turn's reply counts as it grows (`--max-live-bytes`), not only once the
    /// turn is over.
    fn note_growth(&self) {
        let (bytes, streamed) = self.footprint_noted;
        let grown = self.ctx.streamed_bytes().saturating_sub(streamed);
        self.footprint
            .bytes
            .store(bytes + grown, std::sync::atomic::Ordering::Relaxed);
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

    /// Shows the context as it is now to every reader, pending changes (a streamed chunk
    /// not saved yet, a change outside a transition) under a new version. A version above
    /// the stored ceiling is shown only once a higher ceiling is stored (so after a crash
    /// the next writer starts above it); if that write fails, readers keep the last state
    /// shown, and the next publish tries again.
    async fn publish(&mut self) {
        self.ctx.publish();
        if self.ctx.needs_reservation() {
            let ceiling = self.ctx.next_ceiling();
            match self
                .deps
                .store
                .reserve_versions(self.ctx.id(), ceiling)
                .await
            {
                Ok(()) => self.ctx.reserved(ceiling),
                Err(e) => {
                    tracing::warn!(context_id = %self.ctx.id(), version = self.ctx.version(), error = %e, "not shown yet: reserving versions failed");
                    return;
                }
            }
        }
        self.publish_due = None;
        self.last_publish = tokio::time::Instant::now();
        self.snapshot
            .send_replace(Arc::new(self.ctx.snapshot(self.turns)));
        self.note_growth();
    }

    /// Publishes a streamed chunk at most every `stream_publish`, so held readers wake in
    /// small batches instead of once per token; a chunk held back is published when that
    /// time comes (`serve_while`) or with the next state change, whichever is first.
    async fn publish_soon(&mut self) {
        let due = self.last_publish + self.deps.settings.stream_publish;
        if tokio::time::Instant::now() >= due {
            self.publish().await;
        } else {
            self.publish_due = Some(due);
        }
    }

    fn start_turn(&mut self) -> u64 {
        self.turns.started += 1;
        self.attempt = 0;
        self.turn_deadline = tokio::time::Instant::now() + self.deps.settings.max_turn;
        self.turn_expired = false;
        self.turns.started
    }

    async fn handle(&mut self, cmd: Command) {
        let mutating = matches!(
            cmd,
            Command::Send { .. }
                | Command::Approve { .. }
                | Command::SubmitToolOutputs { .. }
                | Command::Retry { .. }
                | Command::EditUserMessage { .. }
                | Command::Regenerate { .. }
                | Command::SwitchBranch { .. }
                | Command::Append { .. }
                | Command::Edit { .. }
                | Command::Rename { .. }
        );
        if mutating {
            let may_write = match &cmd {
                // A send need not wait for a turn running on another instance: it queues.
                Command::Send { .. } => self.try_take_lease().await,
                _ => self.take_lease().await.map(|()| true),
            };
            match may_write {
                Ok(true) => {}
                Ok(false) => {
                    if let Command::Send { message, reply } = cmd {
                        self.enqueue_elsewhere(message, reply).await;
                    }
                    return;
                }
                Err(e) => {
                    refuse(cmd, e);
                    return;
                }
            }
        }
        match cmd {
            Command::Send { message, reply } if !self.ctx.queued().is_empty() => {
                // Earlier messages still wait: this one queues behind them.
                self.enqueue_send(message, reply).await;
            }
            Command::Send { message, reply } => {
                let Some(reply) = self.unless_repeated(&message, reply, SendAck::Turn) else {
                    return;
                };
                if let Err(e) = fsm::transition(self.ctx.state(), &Event::UserMessage) {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                self.run_user_message(message, reply, SendAck::Turn).await;
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
            Command::SubmitToolOutputs { outputs, reply } => {
                match self.record_tool_outputs(&outputs) {
                    Ok(event) => {
                        let turn = self.start_turn();
                        self.acknowledge_then_drive(event, reply, turn).await;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Retry { reply } => {
                if let Err(e) = fsm::transition(self.ctx.state(), &Event::Retry) {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                let turn = self.start_turn();
                self.acknowledge_then_drive(Event::Retry, reply, turn).await;
            }
            Command::Cancel { reply } => self.cancel_at_rest(reply).await,
            Command::EditUserMessage {
                message_id,
                message,
                reply,
            } => self.edit_user_message(message_id, message, reply).await,
            Command::Regenerate { message_id, reply } => {
                self.regenerate(message_id, reply).await;
            }
            Command::SwitchBranch { target, reply } => {
                self.switch_branch(target, reply).await;
            }
            Command::CancelQueued { message_id, reply } => {
                self.cancel_queued(message_id, reply).await;
            }
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
            Command::Rename { title, reply } => self.rename(title, reply).await,
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
            Command::QueueChanged => self.queue_changed().await,
            Command::RemoteCancel | Command::Retire => {}
        }
    }

    /// A send or edit repeated with the client id or key of an earlier one adds nothing:
    /// it is answered with the current turn here (`None`); otherwise the reply comes back.
    fn unless_repeated<T>(
        &self,
        message: &NewMessage,
        reply: Reply<T>,
        ack: fn(u64) -> T,
    ) -> Option<Reply<T>> {
        let client = message.client_message_id.as_ref().map(ClientKey::as_str);
        let key = message.idempotency_key.as_ref().map(ClientKey::as_str);
        if self.ctx.find_sent(client, key).is_some() {
            let _ = reply.send(Ok(ack(self.turns.started)));
            return None;
        }
        Some(reply)
    }

    /// Adds the user message at the end of the active path and runs its turn.
    async fn run_user_message<T>(
        &mut self,
        message: NewMessage,
        reply: Reply<T>,
        ack: fn(u64) -> T,
    ) {
        self.ctx.push(
            new_message(
                Role::User,
                vec![ContentPart::text(message.content.into_inner())],
                message.client_message_id.map(ClientKey::into_inner),
            ),
            message.idempotency_key.map(ClientKey::into_inner),
        );
        let turn = self.start_turn();
        self.acknowledge_then_drive(Event::UserMessage, reply, ack(turn))
            .await;
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
                let _ = reply.send(Err(ActionError::NothingToCancel));
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

    /// On a shared store, reloads the context when another instance saved a newer version.
    async fn catch_up(&mut self) -> Result<(), ActionError> {
        if !self.lease.is_shared() {
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
                    self.publish().await;
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
                self.publish().await;
                Ok(())
            }
        }
    }

    /// Applies the event that starts (or resumes) a turn, answers the action once that is
    /// durable, then runs the turn to its next resting state.
    async fn acknowledge_then_drive<T>(&mut self, event: Event, reply: Reply<T>, ack: T) {
        match self.apply(event).await {
            Ok(()) => {
                let _ = reply.send(Ok(ack));
                self.drive().await;
            }
            Err(_) => {
                let error = self.save_error();
                let _ = reply.send(Err(error));
                self.settle().await;
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
        self.publish().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(ActionError::Store(e)),
        }
    }

    async fn rename(&mut self, title: String, reply: Reply<()>) {
        self.ctx.set_title(title);
        let _ = reply.send(self.save_now().await);
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
                self.publish().await;
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
                self.step_back().await;
                Err(Halt::LeaseLost)
            }
            Err(e) => {
                self.turns.save_failed = Some(self.turns.started);
                self.ctx.set_state(State::Failed {
                    error: format!("saving the context failed: {e}"),
                });
                Err(Halt::SaveFailed)
            }
        };
        if step.is_ok() && *self.ctx.state() == State::StreamingLlmResponse {
            self.publish_soon().await;
        } else {
            self.publish().await;
        }
        step
    }

    async fn settle(&mut self) {
        self.turns.settled = self.turns.started;
        self.publish().await;
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
            let renew_at = self.lease.renew_at(self.deps.settings.lease_ttl);
            tokio::select! {
                biased;
                cmd = self.rx.recv() => match cmd {
                    None => self.rx_closed = true,
                    Some(Command::Send { message, reply }) if in_turn => {
                        if self.enqueue_send(message, reply).await {
                            return None;
                        }
                    }
                    Some(Command::CancelQueued { message_id, reply }) if in_turn => {
                        self.cancel_queued(message_id, reply).await;
                    }
                    Some(Command::Cancel { reply }) if in_turn => {
                        self.pending_cancel = Some(reply);
                        return None;
                    }
                    Some(Command::RemoteCancel) if in_turn => return None,
                    // The turn holds the lease, so the title can be written now.
                    Some(Command::Rename { title, reply }) if in_turn => self.rename(title, reply).await,
                    Some(Command::Flush { reply }) => {
                        self.flush().await;
                        let _ = reply.send(());
                    }
                    Some(Command::Refresh) if self.lease.follows_others() => {
                        let _ = self.catch_up().await;
                    }
                    Some(Command::QueueChanged) => self.sync_queue().await,
                    Some(Command::Refresh | Command::RemoteCancel | Command::Resume) => {}
                    Some(other) => self.deferred.push_back(other),
                },
                () = tokio::time::sleep_until(self.turn_deadline), if in_turn => {
                    self.turn_expired = true;
                    return None;
                }
                () = sleep_until_some(self.publish_due), if self.publish_due.is_some() => {
                    self.publish().await;
                }
                () = sleep_until_some(renew_at), if renew_at.is_some() => {
                    self.renew_lease().await;
                    if self.lease == Lease::Lost {
                        return None;
                    }
                }
                out = &mut fut => return Some(out),
            }
        }
    }
}

fn refuse(cmd: Command, error: ActionError) {
    match cmd {
        Command::Send { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::CancelQueued { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::Approve { reply, .. }
        | Command::SubmitToolOutputs { reply, .. }
        | Command::Cancel { reply }
        | Command::Retry { reply }
        | Command::EditUserMessage { reply, .. }
        | Command::Regenerate { reply, .. }
        | Command::SwitchBranch { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::Append { reply, .. } | Command::Edit { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::Rename { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::Flush { reply } => {
            let _ = reply.send(());
        }
        Command::Refresh
        | Command::Resume
        | Command::RemoteCancel
        | Command::QueueChanged
        | Command::Retire => {}
    }
}

/// Sleeps until `at`; never resolves for `None` (the select branch is disabled then anyway).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
