//! Branches: editing a user message, regenerating a reply, switching the active path.
//!
//! Each makes a new branch or moves to another one, so each runs only at rest. A context
//! that waits for a tool approval (or a client's tool output) first closes the pending
//! calls, as `cancel` does: their
//! tool-call message stays on the branch left behind, answered, so no call stays pending
//! on a path nobody sees and switching back never revives a stale approval.

use super::{Actor, Reply};
use crate::domain::NewMessage;
use crate::engine::ActionError;
use crate::fsm::{self, Event, State};
use chatsync_protocol::{Role, SwitchBranchRequest};
use uuid::Uuid;

impl Actor {
    /// A new user message beside `message_id` (a user message on the path) becomes the
    /// leaf, and its turn runs like a send.
    pub(super) async fn edit_user_message(
        &mut self,
        message_id: Uuid,
        message: NewMessage,
        reply: Reply<u64>,
    ) {
        let Some(reply) = self.unless_repeated(&message, reply, std::convert::identity) else {
            return;
        };
        match self
            .branch_from(message_id, Role::User, &Event::UserMessage)
            .await
        {
            Ok(()) => {
                self.run_user_message(message, reply, std::convert::identity)
                    .await;
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// A new reply beside `message_id` (an assistant message on the path; default the
    /// last one) streams as the leaf.
    pub(super) async fn regenerate(&mut self, message_id: Option<Uuid>, reply: Reply<u64>) {
        let target = message_id.or_else(|| {
            self.ctx
                .messages()
                .iter()
                .rev()
                .find(|m| m.role == Role::Assistant)
                .map(|m| m.id)
        });
        let ready = match target {
            Some(target) => {
                self.branch_from(target, Role::Assistant, &Event::Regenerate)
                    .await
            }
            None => Err(ActionError::InvalidMessage(
                "There is no reply to regenerate".into(),
            )),
        };
        if let Err(e) = ready {
            let _ = reply.send(Err(e));
            return;
        }
        self.turn.forget_reply();
        let turn = self.start_turn();
        self.acknowledge_then_drive(Event::Regenerate, reply, turn)
            .await;
    }

    /// Checks the target, leaves the current branch and ends the active path at the
    /// target's parent, where the new sibling will hang.
    async fn branch_from(
        &mut self,
        message_id: Uuid,
        role: Role,
        event: &Event,
    ) -> Result<(), ActionError> {
        let parent = self.branch_point(message_id, role, event)?;
        self.leave_branch().await?;
        self.ctx.switch_path(parent);
        Ok(())
    }

    /// The active leaf becomes the newest leaf under the target message (any message of
    /// the tree, or the sibling of it that `sibling_index` names). Only the context row
    /// changes.
    pub(super) async fn switch_branch(&mut self, target: SwitchBranchRequest, reply: Reply<u64>) {
        let result = self.switch_to(target).await;
        let _ = reply.send(result.map(|()| self.turns.started));
    }

    async fn switch_to(&mut self, target: SwitchBranchRequest) -> Result<(), ActionError> {
        let state = self.ctx.state().name();
        if !state.is_resting() {
            return Err(ActionError::InvalidState(state));
        }
        let message_id = self.branch_target(&target)?;
        let leaf = self
            .ctx
            .tree()
            .newest_leaf(message_id)
            .ok_or(ActionError::MessageNotFound(message_id))?;
        if Some(leaf) == self.ctx.leaf() {
            return Ok(());
        }
        self.leave_branch().await?;
        self.ctx.switch_path(Some(leaf));
        match self.apply(Event::SwitchBranch).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.save_error()),
        }
    }

    /// The message a switch goes under: the named one, or its sibling at `sibling_index`.
    fn branch_target(&self, target: &SwitchBranchRequest) -> Result<Uuid, ActionError> {
        let id = target.message_id;
        let Some(index) = target.sibling_index else {
            return Ok(id);
        };
        let siblings = self.ctx.tree().sibling_ids(id);
        if siblings.is_empty() {
            return Err(ActionError::MessageNotFound(id));
        }
        usize::try_from(index)
            .ok()
            .and_then(|i| siblings.get(i).copied())
            .ok_or_else(|| {
                ActionError::InvalidMessage(format!(
                    "Message {id} has {} versions: sibling_index must be below {}",
                    siblings.len(),
                    siblings.len()
                ))
            })
    }

    /// Checks that `message_id` is a message of `role` on the active path and that the
    /// context rests; returns the parent the new sibling will hang under.
    fn branch_point(
        &self,
        message_id: Uuid,
        role: Role,
        event: &Event,
    ) -> Result<Option<Uuid>, ActionError> {
        let state = self.ctx.state();
        let fits = match state {
            // Left by denying the pending calls first (see the module comment).
            State::AwaitingToolApproval | State::AwaitingToolOutput => true,
            other => fsm::transition(other, event).is_ok(),
        };
        if !fits {
            return Err(ActionError::InvalidState(state.name()));
        }
        if self.ctx.tree().rank(message_id).is_none() {
            return Err(ActionError::MessageNotFound(message_id));
        }
        let message = self
            .ctx
            .messages()
            .iter()
            .find(|m| m.id == message_id)
            .ok_or_else(|| {
                ActionError::InvalidMessage(format!(
                    "Message {message_id} is not on the active path; switch to its branch first"
                ))
            })?;
        if message.role != role {
            return Err(ActionError::InvalidMessage(format!(
                "Message {message_id} is a {} message; this action takes a {} message",
                message.role.as_str(),
                role.as_str()
            )));
        }
        Ok(message.parent_id)
    }

    /// Brings a context that waits for a tool approval or output to Idle by closing the
    /// pending calls (saved like a cancel); any other resting state is left as it is.
    async fn leave_branch(&mut self) -> Result<(), ActionError> {
        if !matches!(
            self.ctx.state(),
            State::AwaitingToolApproval | State::AwaitingToolOutput
        ) {
            return Ok(());
        }
        self.cancel_turn().await;
        match self.ctx.state() {
            State::Idle => Ok(()),
            _ => Err(self.save_error()),
        }
    }
}
