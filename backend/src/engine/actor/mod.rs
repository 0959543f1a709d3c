//! One task per live context: every action on a context runs here, in order.
//!
//! The actor owns the `LiveContext`. It drives turns through the FSM, calls the autosave
//! hook after every transition and publishes a snapshot after every change. While a turn
//! waits on the model, a tool or a backoff timer it keeps reading its mailbox; what a
//! request may do then is [`Request::during_turn`]'s to say: run at once, or be refused at
//! once. No request is held back in memory: a request whose caller left (its reply channel
//! closed) is dropped unrun, and while the actor waits for another instance's lease it
//! reads no mail (the bounded mailbox holds it).
//!
//! Layout: `mail.rs` what the mailbox carries (requests vs signals); this file the mailbox
//! loop and the transition/autosave step every part shares; `turn.rs` a running turn
//! (model call, streaming, retries, cancel) and its state; `publish.rs` showing the
//! context to readers, and its memory footprint; `tools.rs` approval and execution of tool
//! calls; `branch.rs` edits, regenerates and branch switches; `queue.rs` busy chats'
//! queue; `lease.rs` the shared-store lease; `behind.rs` the streaming flush, written
//! behind the stream.

mod behind;
mod branch;
mod lease;
mod mail;
mod naming;
mod publish;
mod queue;
mod tools;
mod turn;

pub use mail::{Mail, Reply, Request, SendAck, Signal};
pub use publish::Footprint;

use super::autosave::Autosaver;
use super::context::{new_message, LiveContext};
use super::snapshot::{Snapshot, Turns, Written};
use super::{ActionError, Deps};
use crate::domain::{ClientKey, NewMessage, Title};
use crate::fsm::{self, Event, State};
use crate::store::StoreError;
use behind::{behind_done, Behind};
use chatsync_protocol::{ContentPart, Role};
use lease::Lease;
use mail::DuringTurn;
use naming::{Renames, TitleAsked};
use publish::Publisher;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use turn::Turn;

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

#[derive(Debug)]
pub struct Actor {
    ctx: LiveContext,
    rx: mpsc::Receiver<Mail>,
    /// This actor's own mailbox, for work it finishes later (a title the model names).
    mailbox: mpsc::WeakSender<Mail>,
    rx_closed: bool,
    /// The engine evicted this context during a turn: it leaves once the turn rests.
    retire_requested: bool,
    deps: Arc<Deps>,
    autosave: Autosaver,
    /// The streaming flush running behind the stream, if any.
    behind: Behind,
    turns: Turns,
    /// The running turn (or the last one).
    turn: Turn,
    /// The context was deleted under us: stop.
    gone: bool,
    lease: Lease,
    publisher: Publisher,
    /// Renames served, so a title the model proposes gives way to any made after it asked.
    renames: Renames,
}

/// How long an action waits for another instance to finish with a context.
const LEASE_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting action asks for the lease again.
const LEASE_POLL: Duration = Duration::from_millis(25);

impl Actor {
    pub fn new(
        mut ctx: LiveContext,
        (mailbox, rx): (mpsc::WeakSender<Mail>, mpsc::Receiver<Mail>),
        deps: Arc<Deps>,
        footprint: Arc<Footprint>,
    ) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let shared = deps.store.is_shared();
        let (publisher, snapshot_rx) = Publisher::new(&mut ctx, shared, footprint);
        let autosave = Autosaver {
            store: deps.store.clone(),
            metrics: deps.metrics.clone(),
            stream_flush: deps.settings.stream_flush,
        };
        let actor = Actor {
            ctx,
            rx,
            mailbox,
            rx_closed: false,
            retire_requested: false,
            deps,
            autosave,
            behind: Behind::default(),
            turns: Turns::default(),
            turn: Turn::default(),
            gone: false,
            lease: Lease::new(shared),
            publisher,
            renames: Renames::default(),
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
            if self.retire_requested {
                self.retire().await;
                break;
            }
            let Some(mail) = self.rx.recv().await else {
                break;
            };
            match mail {
                Mail::Signal(Signal::Retire) => {
                    self.retire().await;
                    break;
                }
                Mail::Signal(signal) => self.signal_at_rest(signal).await,
                Mail::Request(request) => self.serve_at_rest(request).await,
            }
            self.drain_queue().await;
            self.release_lease().await;
            self.note_footprint();
        }
    }

    /// Leaves memory: what is unsaved is written (chosen because it was saved; written
    /// again should that have changed), and requests still in the mailbox are refused (their
    /// senders retry on a fresh actor).
    async fn retire(&mut self) {
        self.flush().await;
        self.rx.close();
        while let Ok(mail) = self.rx.try_recv() {
            if let Mail::Request(request) = mail {
                request.refuse(ActionError::Retired);
            }
        }
    }

    async fn signal_at_rest(&mut self, signal: Signal) {
        match signal {
            Signal::Refresh => {
                let _ = self.catch_up().await;
            }
            Signal::Resume => self.resume().await,
            Signal::QueueChanged => self.queue_changed().await,
            Signal::RemoteCancel | Signal::Retire => {}
        }
    }

    /// Runs a request while no turn runs here (one may run on another instance).
    async fn serve_at_rest(&mut self, request: Request) {
        if request.abandoned() {
            return;
        }
        if request.writes() {
            if let Err(e) = self.take_lease_for(&request).await {
                request.refuse(e);
                return;
            }
        }
        match request {
            Request::Send { message, reply } => self.send(message, reply).await,
            Request::Approve {
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
            Request::SubmitToolOutputs {
                outputs,
                approved,
                turn,
                reply,
            } => match self.record_tool_outputs(&outputs, &approved, turn) {
                Ok(event) => {
                    let turn = self.start_turn();
                    self.acknowledge_then_drive(event, reply, turn).await;
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Request::Retry { reply } => {
                if let Err(e) = fsm::transition(self.ctx.state(), &Event::Retry) {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                let turn = self.start_turn();
                self.acknowledge_then_drive(Event::Retry, reply, turn).await;
            }
            Request::Cancel { reply } => self.cancel_at_rest(reply).await,
            Request::EditUserMessage {
                message_id,
                message,
                reply,
            } => self.edit_user_message(message_id, message, reply).await,
            Request::Regenerate { message_id, reply } => {
                self.regenerate(message_id, reply).await;
            }
            Request::SwitchBranch { target, reply } => {
                self.switch_branch(target, reply).await;
            }
            Request::CancelQueued { message_id, reply } => {
                self.cancel_queued(message_id, reply).await;
            }
            Request::Append {
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
            Request::Edit {
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
            Request::Rename {
                title,
                unless_renamed_since,
                reply,
            } => self.rename(title, unless_renamed_since, reply).await,
            Request::Flush { reply } => {
                self.flush().await;
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Runs or refuses a request that arrived during this actor's turn, as
    /// [`Request::during_turn`] says. True when the turn must stop for it.
    async fn serve_in_turn(&mut self, request: Request) -> bool {
        if request.abandoned() {
            return false;
        }
        match request.during_turn(self.ctx.state().name()) {
            DuringTurn::Enqueue(message, reply) => return self.enqueue_send(message, reply).await,
            DuringTurn::Cancel(reply) => {
                self.turn.cancel_with(reply);
                return true;
            }
            DuringTurn::CancelQueued(message_id, reply) => {
                self.cancel_queued(message_id, reply).await;
            }
            // The turn holds the lease, so the title can be written now.
            DuringTurn::Rename(title, asked, reply) => {
                self.rename(title, asked, reply).await;
            }
            DuringTurn::Flush(reply) => {
                self.flush().await;
                let _ = reply.send(Ok(()));
            }
            DuringTurn::Refused(request, error) => request.refuse(error),
        }
        false
    }

    /// A send at rest: its turn starts, or (while earlier messages wait, or another
    /// instance runs the context) it queues.
    async fn send(&mut self, message: NewMessage, reply: Reply<SendAck>) {
        // A send need not wait for a turn running on another instance: it queues.
        match self.try_take_lease().await {
            Ok(true) => {}
            Ok(false) => return self.enqueue_elsewhere(message, reply).await,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        }
        if !self.ctx.queued().is_empty() {
            // Earlier messages still wait: this one queues behind them.
            self.enqueue_send(message, reply).await;
            return;
        }
        let Some(reply) = self.unless_repeated(&message, reply, SendAck::Turn) else {
            return;
        };
        if let Err(e) = fsm::transition(self.ctx.state(), &Event::UserMessage) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        self.run_user_message(message, reply, SendAck::Turn).await;
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
        self.ctx.set_turn_options(message.turn);
        for earlier in message.preceding {
            let content = vec![ContentPart::text(earlier.into_inner())];
            self.ctx.push(new_message(Role::User, content, None), None);
        }
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
            State::AwaitingToolApproval | State::AwaitingToolOutput => {
                // The turn rests waiting for a person or the client: close what waits.
                if let Err(e) = self.take_lease().await {
                    let _ = reply.send(Err(e));
                    return;
                }
                self.turn.cancel_with(reply);
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
                self.turn.forget_reply();
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

    /// Saves a change made outside a transition (deprecated CRUD, rename).
    async fn save_now(&mut self) -> Result<(), ActionError> {
        let result = self.save().await;
        self.publish().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(ActionError::Store(e)),
        }
    }

    async fn rename(&mut self, title: Title, asked: Option<TitleAsked>, reply: Reply<()>) {
        if asked.is_some_and(|a| !a.still_current(self.ctx.title(), &self.renames)) {
            let _ = reply.send(Ok(()));
            return;
        }
        self.renames.count();
        self.ctx.set_title(title.into_inner());
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

    /// Writes whatever is unsaved now. Errors are logged by the autosaver; the data stays
    /// in memory for a retry.
    async fn flush(&mut self) {
        let _ = self.save().await;
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
                self.publish().await;
                self.autosave.after_passing_transition(&self.ctx);
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
        let result = match self.autosave.without_write(&self.ctx) {
            Some(outcome) => Ok(outcome),
            None if *self.ctx.state() == State::StreamingLlmResponse => self.flush_behind(),
            None => self.save().await,
        };
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
        // No save runs behind a resting context. A failed one left its changes unsaved,
        // for the next save to write.
        let _ = self.land().await;
        self.turns.settled = self.turns.started;
        self.publish().await;
        self.name_after_first_turn();
    }

    /// Awaits `fut` during a turn while serving the mailbox as [`Request::during_turn`]
    /// says; the lease is renewed. `None` means the turn must stop (cancelled, past
    /// `--max-turn-ms`, or the lease was lost).
    async fn wait_for<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        self.serve_while(fut, true).await
    }

    /// Awaits `fut` between turns (waiting for another instance's lease): the mailbox is
    /// not read then; what arrives waits in it (bounded) and runs once the wait is over.
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
            let publish_due = self.publisher.due();
            tokio::select! {
                biased;
                mail = self.rx.recv(), if in_turn => match mail {
                    None => self.rx_closed = true,
                    Some(Mail::Request(request)) => {
                        if self.serve_in_turn(request).await {
                            return None;
                        }
                    }
                    Some(Mail::Signal(Signal::RemoteCancel)) => return None,
                    Some(Mail::Signal(Signal::Refresh)) if self.lease.follows_others() => {
                        let _ = self.catch_up().await;
                    }
                    Some(Mail::Signal(Signal::QueueChanged)) => self.sync_queue().await,
                    Some(Mail::Signal(Signal::Retire)) => self.retire_requested = true,
                    Some(Mail::Signal(Signal::Refresh | Signal::Resume)) => {}
                },
                () = tokio::time::sleep_until(self.turn.deadline()), if in_turn => {
                    self.turn.expire();
                    return None;
                }
                () = sleep_until_some(publish_due), if publish_due.is_some() => {
                    self.publish().await;
                }
                done = behind_done(&mut self.behind) => {
                    self.landed(done);
                    // Readers learn what is durable now (see `Snapshot::durable_messages`).
                    self.publish_soon().await;
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

/// Sleeps until `at`; never resolves for `None` (the select branch is disabled then anyway).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
