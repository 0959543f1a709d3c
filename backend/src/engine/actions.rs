//! The actions clients send: each is a request to the context's actor and then, for those
//! that start a turn, a wait (bounded) for that turn to rest. One helper, [`Engine::act`],
//! does both; each action only says which request it sends.

use super::actor::{Mail, Reply, Request, SendAck};
use super::{ActionError, Engine, EngineError, Snapshot, TurnOutcome};
use crate::domain::{NewMessage, Title, TurnOptions};
use crate::store::StoreError;
use chatsync_protocol::SwitchBranchRequest;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

/// Tool call ids one approval may name (a reply asks for far fewer).
pub const MAX_APPROVED_TOOL_CALLS: usize = 128;

/// How long a cancel waits for the turn it stops to rest.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

/// What an action's acknowledgement says to wait for.
#[derive(Debug, Clone, Copy)]
enum Awaited {
    /// This turn resting.
    Turn(u64),
    /// The turn of this queued message being over. A message queued for another instance
    /// (`seen` false) must show here first: until then its turn has not even started.
    Queued { message_id: Uuid, seen: bool },
}

impl From<u64> for Awaited {
    fn from(turn: u64) -> Self {
        Awaited::Turn(turn)
    }
}

impl From<SendAck> for Awaited {
    fn from(ack: SendAck) -> Self {
        match ack {
            SendAck::Turn(turn) => Awaited::Turn(turn),
            SendAck::Queued(message_id) => Awaited::Queued {
                message_id,
                seen: true,
            },
            SendAck::QueuedElsewhere(message_id) => Awaited::Queued {
                message_id,
                seen: false,
            },
        }
    }
}

impl Awaited {
    /// Whether what the action waits for is over in `s`.
    fn done(&mut self, s: &Snapshot) -> bool {
        match self {
            Awaited::Turn(turn) => s.turns.settled >= *turn,
            Awaited::Queued { message_id, seen } => {
                *seen |= s.knows_message(*message_id);
                *seen && s.message_turn_done(*message_id)
            }
        }
    }

    /// The turn was over, but its save failed: the action fails with the reason.
    fn save_failed(&self, s: &Snapshot) -> Option<ActionError> {
        match self {
            Awaited::Turn(turn) if s.turns.save_failed == Some(*turn) => {
                let error = s.record.state.error().unwrap_or("save failed");
                Some(ActionError::SaveFailed(error.to_owned()))
            }
            _ => None,
        }
    }
}

impl Engine {
    /// Sends a user message. On a busy context it is queued and acknowledged at once; the
    /// wait then covers its own turn.
    pub async fn send_message(
        &self,
        id: Uuid,
        message: NewMessage,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        self.act(
            id,
            |reply| Request::Send {
                message: message.clone(),
                reply,
            },
            wait,
        )
        .await
    }

    pub async fn approve_tools(
        &self,
        id: Uuid,
        tool_call_ids: Vec<String>,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        if tool_call_ids.len() > MAX_APPROVED_TOOL_CALLS {
            let e = ActionError::TooManyToolCallIds(MAX_APPROVED_TOOL_CALLS);
            return Err(e.into());
        }
        self.act(
            id,
            |reply| Request::Approve {
                tool_call_ids: tool_call_ids.clone(),
                reply,
            },
            wait,
        )
        .await
    }

    /// The client's outputs for the calls of its own tools that the turn waits on (and
    /// its answer to the server calls of the same reply that wait for approval: those it
    /// approves, the rest denied); the turn goes on with them and with `turn`.
    pub async fn submit_tool_outputs(
        &self,
        id: Uuid,
        outputs: Vec<(String, String)>,
        approved: Vec<String>,
        turn: TurnOptions,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        if approved.len() > MAX_APPROVED_TOOL_CALLS {
            let e = ActionError::TooManyToolCallIds(MAX_APPROVED_TOOL_CALLS);
            return Err(e.into());
        }
        self.act(
            id,
            |reply| Request::SubmitToolOutputs {
                outputs: outputs.clone(),
                approved: approved.clone(),
                turn: turn.clone(),
                reply,
            },
            wait,
        )
        .await
    }

    pub async fn retry(&self, id: Uuid, wait: Duration) -> Result<TurnOutcome, EngineError> {
        self.act(id, |reply| Request::Retry { reply }, wait).await
    }

    /// `edit_message`: a sibling of a user message on the path; its turn runs.
    pub async fn edit_user_message(
        &self,
        id: Uuid,
        message_id: Uuid,
        message: NewMessage,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        let make = |reply| Request::EditUserMessage {
            message_id,
            message: message.clone(),
            reply,
        };
        self.act(id, make, wait).await
    }

    /// `regenerate`: a new reply beside an assistant message on the path.
    pub async fn regenerate(
        &self,
        id: Uuid,
        message_id: Option<Uuid>,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        let make = |reply| Request::Regenerate { message_id, reply };
        self.act(id, make, wait).await
    }

    /// `switch_branch`: the active leaf becomes the newest leaf under a message (or under
    /// the sibling of it that `sibling_index` names).
    pub async fn switch_branch(
        &self,
        id: Uuid,
        target: SwitchBranchRequest,
    ) -> Result<TurnOutcome, EngineError> {
        let make = |reply| Request::SwitchBranch { target, reply };
        self.act(id, make, Duration::ZERO).await
    }

    pub async fn cancel(&self, id: Uuid) -> Result<TurnOutcome, EngineError> {
        self.act(id, |reply| Request::Cancel { reply }, CANCEL_WAIT)
            .await
    }

    /// Drops a queued message before its turn; answers the state without it.
    pub async fn cancel_queued(
        &self,
        id: Uuid,
        message_id: Uuid,
    ) -> Result<Arc<Snapshot>, EngineError> {
        let make = |reply| Request::CancelQueued { message_id, reply };
        let ((), rx) = self.request(id, make).await?;
        let snapshot = rx.borrow().clone();
        Ok(snapshot)
    }

    /// Gives a context a new title: a new version, saved at once.
    pub async fn rename(&self, id: Uuid, title: Title) -> Result<Arc<Snapshot>, EngineError> {
        let make = |reply| Request::Rename {
            title: title.clone(),
            unless_renamed_since: None,
            reply,
        };
        let ((), rx) = self.request(id, make).await?;
        let snapshot = rx.borrow().clone();
        Ok(snapshot)
    }

    /// Sends the request `make` builds, then waits until what its answer names is over, at
    /// most `wait` from this call.
    async fn act<T: Into<Awaited>>(
        &self,
        id: Uuid,
        make: impl Fn(Reply<T>) -> Request,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        let deadline = Instant::now() + wait;
        let (ack, mut rx) = self.request(id, make).await?;
        let mut awaited: Awaited = ack.into();
        let waited = tokio::time::timeout_at(deadline, rx.wait_for(|s| awaited.done(s)))
            .await
            .map(|r| r.map(|s| s.clone()));
        let snapshot = match waited {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(EngineError::NotFound(id)),
            Err(_) => rx.borrow().clone(),
        };
        let settled = awaited.done(&snapshot);
        if settled {
            if let Some(e) = awaited.save_failed(&snapshot) {
                return Err(e.into());
            }
        }
        Ok(TurnOutcome { snapshot, settled })
    }

    /// Sends a request built around a reply channel and awaits the actor's answer.
    pub(super) async fn request<T>(
        &self,
        id: Uuid,
        make: impl Fn(Reply<T>) -> Request,
    ) -> Result<(T, watch::Receiver<Arc<Snapshot>>), EngineError> {
        // An actor may leave memory between our lookup and its mailbox: then try again.
        for _ in 0..3 {
            let handle = self.handle(id).await?;
            let (reply, answer) = oneshot::channel();
            if handle.tx.send(Mail::Request(make(reply))).await.is_err() {
                self.forget(id, &handle);
                continue;
            }
            match answer.await {
                Ok(Ok(value)) => return Ok((value, handle.snapshot)),
                Ok(Err(ActionError::Retired)) => continue,
                Ok(Err(e)) => return Err(e.into()),
                // The actor was stopped: the context was deleted meanwhile.
                Err(_) => return Err(EngineError::NotFound(id)),
            }
        }
        Err(EngineError::Store(StoreError::Unavailable(
            "the context is busy moving in or out of memory; try again".into(),
        )))
    }
}
