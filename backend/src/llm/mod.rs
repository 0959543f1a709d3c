//! The model behind a turn: a trait, and the providers that implement it.

mod catalog;
mod openai;
mod scripted;
mod sse;
pub mod title;

pub use catalog::ModelCatalog;
pub use openai::{ApiKey, OpenAiModel, OpenAiSettings, DEFAULT_BASE_URL, DEFAULT_MODEL};
pub use scripted::{ScriptedModel, SCRIPTED_MODEL_ID};

use crate::domain::ClientTool;
use async_trait::async_trait;
use chatsync_protocol::Message;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::time::Duration;

/// What the model is asked: the conversation so far.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// The model the context asked for (`model_id`); `None`: the provider's default.
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    /// Tools the client declared and runs itself, offered to the model beside the
    /// server's; a call to one waits for the client's output.
    pub client_tools: Vec<ClientTool>,
    pub messages: Vec<Arc<Message>>,
    /// 0 for the first call of a reply, then 1, 2, ... for its retries.
    pub attempt: u32,
}

/// One piece of a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChunk {
    Text(String),
    /// A complete tool call (providers that stream calls in parts assemble them first).
    ToolCall {
        id: String,
        name: String,
        arguments: serde_json::Value,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Worth retrying: rate limits, overload, dropped connections.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: bad request, bad key, refused content.
    #[error("{0}")]
    Fatal(String),
}

impl ModelError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ModelError::Transient { .. })
    }
}

pub type ModelStream = BoxStream<'static, Result<ModelChunk, ModelError>>;

#[async_trait]
pub trait Model: Send + Sync + std::fmt::Debug + 'static {
    /// Starts a reply. An error here means no chunk was produced.
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError>;

    /// Whether a chat is named by this model after its first turn (see [`title`]); the
    /// scripted model does not, so its chats keep the title their client gave.
    fn names_chats(&self) -> bool {
        false
    }

    /// Whether asking again for the same reply gives the very same text (the scripted
    /// model). When not, a reply retried or resumed after some of it was stored keeps that
    /// part as its own (cancelled) message and the new one streams into a new message, so
    /// what a reader was shown is never rewritten.
    fn replays_exactly(&self) -> bool {
        false
    }
}
