//! Busy chats: a send that arrives while a turn runs is stored as a queued message and
//! acknowledged at once; queued messages run one turn each, in order, once the context
//! is idle.
//!
//! Invariants: a queued message is durable (in the queue table) before its send is
//! acknowledged; it is in `queued` or in `messages`, never both; the save that starts
//! its turn removes it from the stored queue in the same transaction.

use super::{Actor, Reply, SendAck};
use crate::domain::NewMessage;
use crate::engine::context::new_message;
use crate::engine::ActionError;
use crate::fsm::{Event, State};
use crate::store::QueuedRecord;
use chatsync_protocol::{ContentPart, IfBusy, MessageStatus, Role};
use std::sync::Arc;
use uuid::Uuid;

impl Actor {
    /// Handles a send while the context is busy. Returns true when the running turn must
    /// stop for it (`if_busy: interrupt`).
    pub(super) async fn enqueue_send(
        &mut self,
        message: NewMessage,
        reply: Reply<SendAck>,
    ) -> bool {
        let (client_message_id, key) = message.keys();
        if self
            .ctx
            .find_sent(client_message_id.as_deref(), key.as_deref())
            .is_some()
        {
            let _ = reply.send(Ok(SendAck::Turn(self.turns.started)));
            return false;
        }
        if let Some(id) = self
            .ctx
            .find_queued(client_message_id.as_deref(), key.as_deref())
        {
            // A repeated send of a queued message: the same answer, nothing added.
            let _ = reply.send(Ok(SendAck::Queued(id)));
            return false;
        }
        let record = match self.store_queued(message).await {
            Ok(record) => record,
            Err(e) => {
                let _ = reply.send(Err(e));
                return false;
            }
        };
        let (id, interrupt) = (record.message.id, record.ahead);
        self.ctx.enqueue(record);
        self.publish().await;
        let _ = reply.send(Ok(SendAck::Queued(id)));
        interrupt
    }

    /// A send while another instance runs the context: stored in the queue and answered
    /// at once; that instance, told by the store, runs it in its turn (an interrupting one
    /// next: its turn is asked to stop). This one shows it once that instance saves.
    pub(super) async fn enqueue_elsewhere(&mut self, message: NewMessage, reply: Reply<SendAck>) {
        let (client_message_id, key) = message.keys();
        let (client_message_id, key) = (client_message_id.as_deref(), key.as_deref());
        let answer = async {
            if self.ctx.find_sent(client_message_id, key).is_some() {
                return Ok(SendAck::Turn(self.turns.started));
            }
            // What this instance holds may be behind: the stored queue tells of repeats.
            let stored = self.deps.store.queued_messages(self.ctx.id()).await?;
            if let Some(q) = stored.iter().find(|q| q.sent_as(client_message_id, key)) {
                return Ok(SendAck::QueuedElsewhere(q.message.id));
            }
            let record = self.store_queued(message).await?;
            if record.ahead {
                self.deps.store.request_cancel(self.ctx.id()).await?;
            }
            Ok(SendAck::QueuedElsewhere(record.message.id))
        };
        let _ = reply.send(answer.await);
    }

    /// Stores a send as a queued message, if the queue has room and `if_busy` allows.
    async fn store_queued(&self, message: NewMessage) -> Result<QueuedRecord, ActionError> {
        if message.if_busy == IfBusy::Reject {
            return Err(ActionError::Busy);
        }
        if !message.preceding.is_empty() {
            // The queue holds one message per turn: several wait for the chat to rest.
            return Err(ActionError::TurnRunning);
        }
        let max = self.deps.settings.max_queued_messages;
        if self.ctx.queued().len() >= max {
            return Err(ActionError::QueueFull(max));
        }
        let (client_message_id, idempotency_key) = message.keys();
        let mut queued = new_message(
            Role::User,
            vec![ContentPart::text(message.content.into_inner())],
            client_message_id,
        );
        queued.status = MessageStatus::Queued;
        let record = QueuedRecord {
            message: Arc::new(queued),
            idempotency_key,
            ahead: message.if_busy == IfBusy::Interrupt,
            turn: message.turn,
        };
        if !self.deps.store.enqueue(self.ctx.id(), &record, max).await? {
            return Err(ActionError::QueueFull(max));
        }
        Ok(record)
    }

    /// Drops a queued message before its turn.
    pub(super) async fn cancel_queued(&mut self, message_id: Uuid, reply: Reply<()>) {
        if !self.ctx.queued().iter().any(|q| q.message.id == message_id) {
            let _ = reply.send(Err(ActionError::QueuedMessageNotFound(message_id)));
            return;
        }
        let result = match self.deps.store.drop_queued(self.ctx.id(), message_id).await {
            Ok(_) => {
                self.ctx.remove_queued(message_id);
                self.publish().await;
                Ok(())
            }
            Err(e) => Err(e.into()),
        };
        let _ = reply.send(result);
    }

    /// Runs queued messages, one turn each, while the context is idle.
    pub(super) async fn drain_queue(&mut self) {
        while !self.gone && *self.ctx.state() == State::Idle && !self.ctx.queued().is_empty() {
            if self.take_lease().await.is_err() {
                // Another instance runs the context; it drains the queue itself.
                return;
            }
            match self.drop_repeated_head().await {
                Ok(true) => continue,
                Ok(false) => {}
                // Kept, so it must not run: the next drain tries again.
                Err(()) => return,
            }
            if *self.ctx.state() != State::Idle || self.ctx.start_next_queued().is_none() {
                return;
            }
            self.start_turn();
            match self.apply(Event::UserMessage).await {
                Ok(()) => self.drive().await,
                Err(_) => self.settle().await,
            }
        }
    }

    /// Drops the first queued message when its keys name a message already sent: another
    /// instance, behind the writer, stored a retried send in the queue (the first attempt
    /// was written just before the instance it went to died). The writer, caught up under
    /// the lease, knows; the repeat never runs. True when one was dropped, an error when
    /// one could not be.
    async fn drop_repeated_head(&mut self) -> Result<bool, ()> {
        let Some(head) = self.ctx.queued().first() else {
            return Ok(false);
        };
        let keys = (
            head.message.client_message_id.as_deref(),
            head.idempotency_key.as_deref(),
        );
        if self.ctx.find_sent(keys.0, keys.1).is_none() {
            return Ok(false);
        }
        let id = head.message.id;
        match self.deps.store.drop_queued(self.ctx.id(), id).await {
            Ok(_) => {
                tracing::info!(context_id = %self.ctx.id(), message_id = %id, "dropped a queued repeat of a sent message");
                self.ctx.remove_queued(id);
                // Saved, not only shown: the chat may rest now, with no later save to
                // bring this version to the other instances.
                if let Err(e) = self.save_now().await {
                    tracing::warn!(context_id = %self.ctx.id(), error = %e, "saving after dropping a queued repeat failed");
                }
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(context_id = %self.ctx.id(), error = %e, "dropping a queued repeat failed");
                Err(())
            }
        }
    }

    /// Reads the stored queue: on start, the messages queued before a stop or crash.
    pub(super) async fn load_queue(&mut self) {
        match self.deps.store.queued_messages(self.ctx.id()).await {
            Ok(queued) => {
                self.ctx.restore_queued(queued);
                self.publish().await;
            }
            Err(e) => {
                tracing::warn!(context_id = %self.ctx.id(), error = %e, "loading the queue failed");
            }
        }
    }
}

impl Actor {
    /// Takes the stored queue as the truth: messages another instance queued join it, and
    /// what another instance ran or dropped leaves it. Only the writer does (a reader sees
    /// the queue with the writer's next save), so versions stay the writer's alone.
    pub(super) async fn sync_queue(&mut self) {
        if !self.lease.may_write() {
            return;
        }
        match self.deps.store.queued_messages(self.ctx.id()).await {
            Ok(stored) => {
                if self.ctx.sync_queued(stored) {
                    self.publish().await;
                }
            }
            Err(e) => {
                tracing::warn!(context_id = %self.ctx.id(), error = %e, "reading the queue failed");
            }
        }
    }

    /// Another instance queued a message. The writer takes it up; an instance where the
    /// context rests tries to become the writer, so a message queued just as the last
    /// writer let go still runs (the run loop drains the queue once the lease is held).
    pub(super) async fn queue_changed(&mut self) {
        if self.lease.may_write() {
            self.sync_queue().await;
        } else if self.ctx.state().is_resting() {
            // Taking the lease syncs the queue; failing means another instance writes.
            let _ = self.try_take_lease().await;
        }
    }
}
