//! A chat named by its model after the first turn (`crate::llm::title`): asked off the
//! actor, so the chat stays usable meanwhile, and written through the normal rename, only
//! if the title is still the placeholder it was when the model was asked.

use super::{Actor, Mail, Request};
use crate::fsm::State;
use crate::llm::title::{ask_title, is_placeholder, title_request};
use chatsync_protocol::{content_text, MessageStatus, Role};
use tokio::sync::oneshot;

impl Actor {
    /// After a turn rests: when this was the chat's first turn (one user message, a whole
    /// reply) and its title is still a placeholder, asks the model for a title.
    pub(super) fn name_after_first_turn(&self) {
        if !self.deps.model.names_chats() || *self.ctx.state() != State::Idle {
            return;
        }
        let messages = self.ctx.messages();
        let (Some(user), Some(reply), 2) = (messages.get(0), messages.get(1), messages.len())
        else {
            return;
        };
        if user.role != Role::User
            || reply.role != Role::Assistant
            || reply.status != MessageStatus::Complete
        {
            return;
        }
        let (user, reply) = (content_text(&user.content), content_text(&reply.content));
        let placeholder = self.ctx.title().to_owned();
        if !is_placeholder(&placeholder, &user) {
            return;
        }
        let request = title_request(self.ctx.model_id(), &user, &reply);
        let model = self.deps.model.clone();
        let mailbox = self.mailbox.clone();
        let id = self.ctx.id();
        tokio::spawn(async move {
            let Some(title) = ask_title(model.as_ref(), request).await else {
                tracing::debug!(context_id = %id, "the model gave no title");
                return;
            };
            let Some(mailbox) = mailbox.upgrade() else {
                return;
            };
            let (reply, answer) = oneshot::channel();
            let rename = Request::Rename {
                title,
                unless_changed_from: Some(placeholder),
                reply,
            };
            if mailbox.send(Mail::Request(rename)).await.is_ok() {
                if let Ok(Err(e)) = answer.await {
                    tracing::warn!(context_id = %id, error = %e, "could not save the model's title");
                }
            }
        });
    }
}
