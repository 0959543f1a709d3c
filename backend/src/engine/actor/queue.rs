//! Busy chats: a send that arrives while a turn runs is stored as a queued message and
//! acknowledged at once; queued messages run one turn each, in order, once the context
//! is idle.
//!
//! Invariants: a queued message is durable (in the queue table) before its send is
//! acknowledged; it is in `queued` or in `messages`, never both; the save that starts
//! its turn removes it from the stored queue in the same transaction.

use super::{Actor, Reply, SendAck};
use crate::domain::{ClientKey, NewMessage};
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
        let client_message_id = message.client_message_id.map(ClientKey::into_inner);
        let key = message.idempotency_key.map(ClientKey::into_inner);
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
        if message.if_busy == IfBusy::Reject {
            let _ = reply.send(Err(ActionError::Busy));
            return false;
        }
        let max = self.deps.settings.max_queued_messages;
        if self.ctx.queued().len() >= max {
            let _ = reply.send(Err(ActionError::QueueFull(max)));
            return false;
        }
        let mut queued = new_message(
            Role::User,
            vec![ContentPart::text(message.content.into_inner())],
            client_message_id,
        );
        queued.status = MessageStatus::Queued;
        let record = QueuedRecord {
            message: Arc::new(queued),
            idempotency_key: key,
        };
        match self.deps.store.enqueue(self.ctx.id(), &record, max).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = reply.send(Err(ActionError::QueueFull(max)));
                return false;
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return false;
            }
        }
        let id = record.message.id;
        let interrupt = message.if_busy == IfBusy::Interrupt;
        self.ctx.enqueue(record, interrupt);
        self.ctx.publish();
        self.publish();
        let _ = reply.send(Ok(SendAck::Queued(id)));
        interrupt
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
                self.ctx.publish();
                self.publish();
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
            if *self.ctx.state() != State::Idle || self.ctx.start_next_queued().is_none() {
                return;
            }
            self.start_turn();
            match self.apply(Event::UserMessage).await {
                Ok(()) => self.drive().await,
                Err(_) => self.settle(),
            }
        }
    }

    /// Reads the stored queue: on start, the messages queued before a stop or crash.
    pub(super) async fn load_queue(&mut self) {
        match self.deps.store.queued_messages(self.ctx.id()).await {
            Ok(queued) => {
                self.ctx.restore_queued(queued);
                self.publish();
            }
            Err(e) => {
                tracing::warn!(context_id = %self.ctx.id(), error = %e, "loading the queue failed");
            }
        }
    }
}

impl Actor {
    /// Picks up messages another instance queued. Only the writer adds them (a reader
    /// sees them with the writer's next save), so versions stay the writer's alone.
    pub(super) async fn sync_queue(&mut self) {
        if !self.lease.may_write() {
            return;
        }
        let stored = match self.deps.store.queued_messages(self.ctx.id()).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(context_id = %self.ctx.id(), error = %e, "reading the queue failed");
                return;
            }
        };
        let max = self.deps.settings.max_queued_messages;
        let recent: Vec<Uuid> = self
            .ctx
            .messages()
            .iter()
            .rev()
            .take(max)
            .map(|m| m.id)
            .collect();
        let mut added = false;
        for record in stored {
            let id = record.message.id;
            let known =
                recent.contains(&id) || self.ctx.queued().iter().any(|q| q.message.id == id);
            if !known {
                let mut record = record;
                // Stamped with this writer's next version.
                Arc::make_mut(&mut record.message).version = 0;
                self.ctx.enqueue(record, false);
                added = true;
            }
        }
        if added {
            self.ctx.publish();
            self.publish();
        }
    }
}
