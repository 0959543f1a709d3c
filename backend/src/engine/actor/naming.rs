//! A chat named by its model after the first turn (`crate::llm::title`): asked off the
//! actor, so the chat stays usable meanwhile, and written through the normal rename, only
//! if the title is still the placeholder it was when the model was asked.

use super::{Actor, Mail, Request};
use crate::engine::context::new_message;
use crate::fsm::State;
use crate::llm::title::{ask_title, is_placeholder, title_prompt, TITLE_INSTRUCTION};
use crate::llm::ModelRequest;
use chatsync_protocol::{content_text, ContentPart, MessageStatus, Role};
use std::sync::Arc;
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
        let prompt = title_prompt(&user, &reply);
        let request = ModelRequest {
            model: self.ctx.model_id(),
            system_prompt: Some(TITLE_INSTRUCTION.into()),
            client_tools: vec![],
            messages: vec![Arc::new(new_message(
                Role::User,
                vec![ContentPart::text(prompt)],
                None,
            ))],
            attempt: 0,
        };
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
