//! A chat named by its model after the first turn (`crate::llm::title`): asked off the
//! actor, so the chat stays usable meanwhile, and written through the normal rename, only
//! if the title is still the placeholder it was when the model was asked and nobody
//! renamed the chat since (not even to the same words: that too is the user's choice).

use super::{Actor, Mail, Request};
use crate::engine::context::new_message;
use crate::fsm::State;
use crate::llm::title::{ask_title, is_placeholder, title_prompt, TITLE_INSTRUCTION};
use crate::llm::ModelRequest;
use chatsync_protocol::{content_text, ContentPart, MessageStatus, Role};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The renames this actor has served, counted: a title the model proposes applies only if
/// the count is still the one it was asked at.
#[derive(Debug, Default)]
pub(super) struct Renames(u64);

impl Renames {
    pub(super) fn count(&mut self) {
        self.0 += 1;
    }
}

/// What a title the model proposes was asked about: the chat's placeholder title then, and
/// how many renames had been served.
#[derive(Debug)]
pub struct TitleAsked {
    placeholder: String,
    renames: u64,
}

impl TitleAsked {
    /// Nothing changed the title since: the model's may replace it.
    pub(super) fn still_current(&self, title: &str, renames: &Renames) -> bool {
        self.placeholder == title && self.renames == renames.0
    }
}

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
        // A rename served before the first turn rests is a person's choice, even one that
        // looks like a placeholder.
        if !is_placeholder(&placeholder, &user) || self.renames.0 > 0 {
            return;
        }
        let asked = TitleAsked {
            placeholder,
            renames: self.renames.0,
        };
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
                unless_renamed_since: Some(asked),
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
