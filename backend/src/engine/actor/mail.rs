//! What an actor's mailbox carries: requests, which a caller awaits through their reply
//! channel, and signals from the engine, which nobody awaits. What a request may do while
//! a turn runs is decided in one place, [`Request::during_turn`]: it runs at once or is
//! refused at once; nothing waits behind the turn but a send, in the stored queue.

use super::naming::TitleAsked;
use crate::domain::{NewMessage, Title, TurnOptions};
use crate::engine::snapshot::Written;
use crate::engine::ActionError;
use chatsync_protocol::StateName;
use chatsync_protocol::{ContentPart, Role, SwitchBranchRequest};
use tokio::sync::oneshot;
use uuid::Uuid;

pub type Reply<T> = oneshot::Sender<Result<T, ActionError>>;

#[derive(Debug)]
pub enum Mail {
    Request(Request),
    Signal(Signal),
}

/// How a send was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAck {
    /// Its turn started (or, for a repeated send, the turn now running): wait for this one.
    Turn(u64),
    /// The context was busy: the message waits in the queue under this id.
    Queued(Uuid),
    /// Another instance runs the context: the message waits in the stored queue under this
    /// id, and shows here once that instance takes it up.
    QueuedElsewhere(Uuid),
}

/// What a caller asks of the context; each carries the channel its answer goes to.
#[derive(Debug)]
pub enum Request {
    /// Answers with the number of the turn to wait for, or the queued message's id.
    Send {
        message: NewMessage,
        reply: Reply<SendAck>,
    },
    /// Drop a queued message before its turn.
    CancelQueued {
        message_id: Uuid,
        reply: Reply<()>,
    },
    Approve {
        tool_call_ids: Vec<String>,
        reply: Reply<u64>,
    },
    /// The client's results for calls of tools it runs itself (the OpenAI API's function
    /// tools): (call id, output) for every call that waits; with the server calls of the
    /// same reply it approves (the others that wait for approval are denied), and the
    /// options the turn goes on with.
    SubmitToolOutputs {
        outputs: Vec<(String, String)>,
        approved: Vec<String>,
        turn: TurnOptions,
        reply: Reply<u64>,
    },
    Cancel {
        reply: Reply<u64>,
    },
    Retry {
        reply: Reply<u64>,
    },
    /// A new version of a user message on the path, as a sibling; its turn runs.
    EditUserMessage {
        message_id: Uuid,
        message: NewMessage,
        reply: Reply<u64>,
    },
    /// A new reply beside an assistant message on the path (default: the last one).
    Regenerate {
        message_id: Option<Uuid>,
        reply: Reply<u64>,
    },
    /// Move the active leaf to the newest leaf under a message (or one of its siblings).
    SwitchBranch {
        target: SwitchBranchRequest,
        reply: Reply<u64>,
    },
    /// Deprecated CRUD: store a message without running the FSM.
    Append {
        role: Role,
        content: Vec<ContentPart>,
        tool_call_id: Option<String>,
        reply: Reply<Written>,
    },
    /// Deprecated CRUD: replace a message's content.
    Edit {
        message_id: Uuid,
        content: Vec<ContentPart>,
        reply: Reply<Written>,
    },
    /// Give the context a new title; with `unless_renamed_since`, only if nothing changed
    /// the title since then (a title the model proposes never replaces one a person chose
    /// meanwhile, even the same words).
    Rename {
        title: Title,
        unless_renamed_since: Option<TitleAsked>,
        reply: Reply<()>,
    },
    /// Write whatever is unsaved now.
    Flush {
        reply: Reply<()>,
    },
}

/// What the engine tells an actor; nobody waits for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Another instance saved this context: catch up unless this actor is the writer.
    Refresh,
    /// An interrupted turn has no live runner: run it here if the lease can be had.
    Resume,
    /// A message was queued in the store (possibly by another instance).
    QueueChanged,
    /// Another instance asked to cancel the turn this actor runs.
    RemoteCancel,
    /// Leave memory: refuse waiting requests (their senders retry on a fresh actor) and stop.
    Retire,
}

/// What a request does when it arrives while this actor runs a turn.
#[derive(Debug)]
pub(super) enum DuringTurn {
    /// The send joins the queue (and may ask the turn to stop: `if_busy: interrupt`).
    Enqueue(NewMessage, Reply<SendAck>),
    /// The turn stops; the answer comes once it rests.
    Cancel(Reply<u64>),
    /// Runs now: it touches the queue only.
    CancelQueued(Uuid, Reply<()>),
    /// Runs now: it touches the context row only, never the turn.
    Rename(Title, Option<TitleAsked>, Reply<()>),
    /// Runs now: it writes what the turn showed.
    Flush(Reply<()>),
    /// Needs a resting context: answered at once with this error, and dropped.
    Refused(Request, ActionError),
}

/// Runs `$body` with the reply channel of any request (each has its own answer type).
macro_rules! with_reply {
    ($request:expr, $reply:ident => $body:expr) => {
        match $request {
            Request::Send { reply: $reply, .. } => $body,
            Request::CancelQueued { reply: $reply, .. } => $body,
            Request::Approve { reply: $reply, .. } => $body,
            Request::SubmitToolOutputs { reply: $reply, .. } => $body,
            Request::Cancel { reply: $reply } => $body,
            Request::Retry { reply: $reply } => $body,
            Request::EditUserMessage { reply: $reply, .. } => $body,
            Request::Regenerate { reply: $reply, .. } => $body,
            Request::SwitchBranch { reply: $reply, .. } => $body,
            Request::Append { reply: $reply, .. } => $body,
            Request::Edit { reply: $reply, .. } => $body,
            Request::Rename { reply: $reply, .. } => $body,
            Request::Flush { reply: $reply } => $body,
        }
    };
}

impl Request {
    /// What this request does during a running turn (the context is in `state`): the one
    /// place that says so, with [`Request::refusal_during_turn`].
    pub(super) fn during_turn(self, state: StateName) -> DuringTurn {
        if let Some(error) = self.refusal_during_turn(state) {
            return DuringTurn::Refused(self, error);
        }
        match self {
            Request::Send { message, reply } => DuringTurn::Enqueue(message, reply),
            Request::Cancel { reply } => DuringTurn::Cancel(reply),
            Request::CancelQueued { message_id, reply } => {
                DuringTurn::CancelQueued(message_id, reply)
            }
            Request::Rename {
                title,
                unless_renamed_since,
                reply,
            } => DuringTurn::Rename(title, unless_renamed_since, reply),
            Request::Flush { reply } => DuringTurn::Flush(reply),
            // Refused above.
            other => DuringTurn::Refused(other, ActionError::InvalidState(state)),
        }
    }

    /// The answer this request gets at once while a turn runs (here or on another
    /// instance), or `None` when it runs during one. An action that needs a resting chat
    /// is refused as not fitting the state; a deprecated CRUD write, which has no state to
    /// speak of, as busy.
    pub(super) fn refusal_during_turn(&self, state: StateName) -> Option<ActionError> {
        match self {
            Request::Send { .. }
            | Request::Cancel { .. }
            | Request::CancelQueued { .. }
            | Request::Rename { .. }
            | Request::Flush { .. } => None,
            Request::Append { .. } | Request::Edit { .. } => Some(ActionError::TurnRunning),
            Request::Approve { .. }
            | Request::SubmitToolOutputs { .. }
            | Request::Retry { .. }
            | Request::EditUserMessage { .. }
            | Request::Regenerate { .. }
            | Request::SwitchBranch { .. } => Some(ActionError::InvalidState(state)),
        }
    }

    /// Whether it changes the context, so needs this actor to be the writer (the lease)
    /// before it runs. A send finds out by itself: it may queue for another instance.
    pub(super) fn writes(&self) -> bool {
        !matches!(
            self,
            Request::Send { .. }
                | Request::Cancel { .. }
                | Request::CancelQueued { .. }
                | Request::Flush { .. }
        )
    }

    /// The caller gave up (its reply channel is closed): the request is dropped unrun.
    pub(super) fn abandoned(&self) -> bool {
        with_reply!(self, reply => reply.is_closed())
    }

    /// Answers with `error` without running.
    pub(super) fn refuse(self, error: ActionError) {
        with_reply!(self, reply => {
            let _ = reply.send(Err(error));
        });
    }
}
