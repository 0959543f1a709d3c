//! The deprecated CRUD writes (`--legacy-crud`): a message stored or replaced without
//! running the FSM. They go through the actor like every change.

use super::actor::Request;
use super::Written;
use super::{Engine, EngineError};
use chatsync_protocol::{ContentPart, Role};
use uuid::Uuid;

impl Engine {
    pub async fn append_message(
        &self,
        id: Uuid,
        role: Role,
        content: Vec<ContentPart>,
        tool_call_id: Option<String>,
    ) -> Result<Written, EngineError> {
        let (written, _) = self
            .request(id, |reply| Request::Append {
                role,
                content: content.clone(),
                tool_call_id: tool_call_id.clone(),
                reply,
            })
            .await?;
        Ok(written)
    }

    pub async fn edit_message(
        &self,
        id: Uuid,
        message_id: Uuid,
        content: Vec<ContentPart>,
    ) -> Result<Written, EngineError> {
        let (written, _) = self
            .request(id, |reply| Request::Edit {
                message_id,
                content: content.clone(),
                reply,
            })
            .await?;
        Ok(written)
    }
}
