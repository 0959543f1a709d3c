//! Why an engine call failed: `ActionError` for an action a context refused or could not
//! carry out, `EngineError` for everything around it (unknown context, quota, store).

use crate::fsm::InvalidTransition;
use crate::store::StoreError;
use chatsync_protocol::StateName;
use uuid::Uuid;

/// Why an action was refused or failed: one variant per failure, so the HTTP layer alone
/// decides how each is answered.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action does not fit the context's state.
    #[error("This action does not fit the context's state ({})", .0.as_str())]
    InvalidState(StateName),
    #[error("Nothing to cancel: no turn is running")]
    NothingToCancel,
    #[error("No pending tool approvals")]
    NoPendingApprovals,
    /// Tool outputs sent while no call of a client's tool waits for one.
    #[error("No tool call waits for the client's output")]
    NoPendingToolOutputs,
    /// `if_busy: reject` while a turn runs.
    #[error("A turn is running; the message was not stored (if_busy: reject)")]
    Busy,
    /// A deprecated CRUD write while a turn runs: it would change what the turn reads.
    #[error("A turn is running; try again once the chat rests")]
    TurnRunning,
    /// `approve_tools` named more tool calls than one approval may.
    #[error("At most {0} tool call ids may be approved at once")]
    TooManyToolCallIds(usize),
    /// The context's queue holds as many messages as allowed.
    #[error("The chat already has {0} queued messages; try again when one has run")]
    QueueFull(usize),
    #[error("message {0} is not queued")]
    QueuedMessageNotFound(Uuid),
    #[error("Unknown tool call id(s): {}", .0.join(", "))]
    UnknownToolCalls(Vec<String>),
    #[error("message {0} not found")]
    MessageNotFound(Uuid),
    /// The message exists but does not fit the action (wrong role, off the active path).
    #[error("{0}")]
    InvalidMessage(String),
    /// A save failed: the context is Failed and the error says why.
    #[error("{0}")]
    SaveFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The context was deleted.
    #[error("context deleted")]
    Gone,
    /// The actor left memory before handling the command; sending again reaches a fresh one.
    #[error("context left memory")]
    Retired,
}

impl From<InvalidTransition> for ActionError {
    fn from(e: InvalidTransition) -> Self {
        ActionError::InvalidState(e.state)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("context {0} not found")]
    NotFound(Uuid),
    /// The user owns as many contexts as allowed.
    #[error("You have {0} chats, as many as allowed; delete one to start another")]
    QuotaExceeded(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Action(#[from] ActionError),
}
