//! The per-context finite-state machine: a pure transition table.
//!
//! Architecture Invariant: this module does no I/O and knows nothing of the store, the model
//! or HTTP. The engine feeds it events and persists whatever it returns.

use chatsync_protocol::StateName;
use std::fmt;

/// How many times a transient model failure is retried before the turn fails.
pub const MAX_RETRIES: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Idle,
    ProcessingUserMessage,
    AwaitingLlmResponse,
    StreamingLlmResponse,
    ProcessingLlmResponse,
    AwaitingToolApproval,
    /// Rests until the client sends the output of the calls to its own tools.
    AwaitingToolOutput,
    ExecutingTools,
    ProcessingToolResults,
    GeneratingResponse,
    TransientFailure {
        error: String,
        retries: u32,
    },
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A user message was accepted.
    UserMessage,
    /// The model is asked (again) for a reply.
    RequestModel,
    /// The model's stream opened with its first chunk.
    StreamStarted,
    /// One more chunk of the streamed reply.
    Chunk,
    /// The model's stream ended.
    StreamEnded,
    /// The reply holds no tool calls: the turn is over.
    ReplyComplete,
    /// The reply asks for tool calls that wait for a person.
    ToolCallsRequested,
    /// The reply calls tools the client runs: their output comes from the client.
    ToolOutputsRequested,
    /// The client's outputs are recorded and no server call of the reply is left to run.
    ToolOutputsReceived,
    /// At least one pending call was approved (or, with the client's outputs, a server
    /// call of the same reply is approved and left to run).
    ToolsApproved,
    /// Every pending call was denied.
    ToolsDenied,
    /// Every approved call has a result.
    ToolsFinished,
    /// The tool results are recorded as messages.
    ToolResultsRecorded,
    /// The model failed; `retries` is how many retries this turn has had so far.
    ModelFailed {
        error: String,
        transient: bool,
        retries: u32,
    },
    /// The person stopped the running turn.
    Cancel,
    /// The person re-runs a failed turn.
    Retry,
    /// The person asks for a new reply beside an earlier one (a new branch).
    Regenerate,
    /// The person moved the active path to another branch; no turn runs.
    SwitchBranch,
    /// Something outside the model failed (a save, a resume): the turn cannot go on.
    Fail { error: String },
}

impl State {
    pub fn name(&self) -> StateName {
        match self {
            State::Idle => StateName::Idle,
            State::ProcessingUserMessage => StateName::ProcessingUserMessage,
            State::AwaitingLlmResponse => StateName::AwaitingLlmResponse,
            State::StreamingLlmResponse => StateName::StreamingLlmResponse,
            State::ProcessingLlmResponse => StateName::ProcessingLlmResponse,
            State::AwaitingToolApproval => StateName::AwaitingToolApproval,
            State::AwaitingToolOutput => StateName::AwaitingToolOutput,
            State::ExecutingTools => StateName::ExecutingTools,
            State::ProcessingToolResults => StateName::ProcessingToolResults,
            State::GeneratingResponse => StateName::GeneratingResponse,
            State::TransientFailure { .. } => StateName::TransientFailure,
            State::Failed { .. } => StateName::Failed,
        }
    }

    pub fn is_resting(&self) -> bool {
        self.name().is_resting()
    }

    /// The error a client should see, if the state carries one.
    pub fn error(&self) -> Option<&str> {
        match self {
            State::TransientFailure { error, .. } | State::Failed { error } => Some(error),
            _ => None,
        }
    }

    /// Rebuilds a state from its stored parts; `None` when they do not fit together.
    pub fn from_parts(name: StateName, error: Option<String>, retries: u32) -> Option<State> {
        Some(match name {
            StateName::Idle => State::Idle,
            StateName::ProcessingUserMessage => State::ProcessingUserMessage,
            StateName::AwaitingLlmResponse => State::AwaitingLlmResponse,
            StateName::StreamingLlmResponse => State::StreamingLlmResponse,
            StateName::ProcessingLlmResponse => State::ProcessingLlmResponse,
            StateName::AwaitingToolApproval => State::AwaitingToolApproval,
            StateName::AwaitingToolOutput => State::AwaitingToolOutput,
            StateName::ExecutingTools => State::ExecutingTools,
            StateName::ProcessingToolResults => State::ProcessingToolResults,
            StateName::GeneratingResponse => State::GeneratingResponse,
            StateName::TransientFailure => State::TransientFailure {
                error: error?,
                retries,
            },
            StateName::Failed => State::Failed { error: error? },
        })
    }

    /// Retry count carried by the state (only `TransientFailure` has one).
    pub fn retries(&self) -> u32 {
        match self {
            State::TransientFailure { retries, .. } => *retries,
            _ => 0,
        }
    }
}

impl Event {
    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Event::UserMessage => "UserMessage",
            Event::RequestModel => "RequestModel",
            Event::StreamStarted => "StreamStarted",
            Event::Chunk => "Chunk",
            Event::StreamEnded => "StreamEnded",
            Event::ReplyComplete => "ReplyComplete",
            Event::ToolCallsRequested => "ToolCallsRequested",
            Event::ToolOutputsRequested => "ToolOutputsRequested",
            Event::ToolOutputsReceived => "ToolOutputsReceived",
            Event::ToolsApproved => "ToolsApproved",
            Event::ToolsDenied => "ToolsDenied",
            Event::ToolsFinished => "ToolsFinished",
            Event::ToolResultsRecorded => "ToolResultsRecorded",
            Event::ModelFailed { .. } => "ModelFailed",
            Event::Cancel => "Cancel",
            Event::Retry => "Retry",
            Event::Regenerate => "Regenerate",
            Event::SwitchBranch => "SwitchBranch",
            Event::Fail { .. } => "Fail",
        }
    }
}

/// An event that does not apply to the state it was fed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTransition {
    pub state: StateName,
    pub event: &'static str,
}

impl fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {} does not apply in state {}",
            self.event,
            self.state.as_str()
        )
    }
}

impl std::error::Error for InvalidTransition {}

/// The transition table. Every pair not listed is an error, never silently ignored.
pub fn transition(state: &State, event: &Event) -> Result<State, InvalidTransition> {
    use State as S;
    let next = match (state, event) {
        (S::Idle | S::Failed { .. }, Event::UserMessage) => S::ProcessingUserMessage,
        (
            S::ProcessingUserMessage | S::GeneratingResponse | S::TransientFailure { .. },
            Event::RequestModel,
        ) => S::AwaitingLlmResponse,
        (S::AwaitingLlmResponse, Event::StreamStarted) => S::StreamingLlmResponse,
        (S::StreamingLlmResponse, Event::Chunk) => S::StreamingLlmResponse,
        (S::StreamingLlmResponse, Event::StreamEnded) => S::ProcessingLlmResponse,
        (S::ProcessingLlmResponse, Event::ReplyComplete) => S::Idle,
        (S::ProcessingLlmResponse, Event::ToolCallsRequested) => S::AwaitingToolApproval,
        (S::ProcessingLlmResponse, Event::ToolOutputsRequested) => S::AwaitingToolOutput,
        (S::AwaitingToolApproval | S::AwaitingToolOutput, Event::ToolsApproved) => {
            S::ExecutingTools
        }
        (S::AwaitingToolOutput, Event::ToolOutputsReceived) => S::ProcessingToolResults,
        (S::AwaitingToolApproval, Event::ToolsDenied) => S::GeneratingResponse,
        (S::ExecutingTools, Event::ToolsFinished) => S::ProcessingToolResults,
        (S::ProcessingToolResults, Event::ToolResultsRecorded) => S::GeneratingResponse,
        (
            S::AwaitingLlmResponse | S::StreamingLlmResponse,
            Event::ModelFailed {
                error,
                transient,
                retries,
            },
        ) => {
            if *transient && *retries < MAX_RETRIES {
                S::TransientFailure {
                    error: error.clone(),
                    retries: retries + 1,
                }
            } else {
                S::Failed {
                    error: error.clone(),
                }
            }
        }
        (s, Event::Cancel) if !matches!(s, S::Idle | S::Failed { .. }) => S::Idle,
        (S::Failed { .. }, Event::Retry) => S::AwaitingLlmResponse,
        (S::Idle | S::Failed { .. }, Event::Regenerate) => S::AwaitingLlmResponse,
        // The failure belonged to the branch left behind; the new one rests.
        (S::Idle | S::Failed { .. }, Event::SwitchBranch) => S::Idle,
        (_, Event::Fail { error }) => S::Failed {
            error: error.clone(),
        },
        (s, e) => {
            return Err(InvalidTransition {
                state: s.name(),
                event: e.name(),
            })
        }
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states() -> Vec<State> {
        vec![
            State::Idle,
            State::ProcessingUserMessage,
            State::AwaitingLlmResponse,
            State::StreamingLlmResponse,
            State::ProcessingLlmResponse,
            State::AwaitingToolApproval,
            State::AwaitingToolOutput,
            State::ExecutingTools,
            State::ProcessingToolResults,
            State::GeneratingResponse,
            State::TransientFailure {
                error: "e".into(),
                retries: 1,
            },
            State::Failed { error: "e".into() },
        ]
    }

    fn events() -> Vec<Event> {
        vec![
            Event::UserMessage,
            Event::RequestModel,
            Event::StreamStarted,
            Event::Chunk,
            Event::StreamEnded,
            Event::ReplyComplete,
            Event::ToolCallsRequested,
            Event::ToolOutputsRequested,
            Event::ToolOutputsReceived,
            Event::ToolsApproved,
            Event::ToolsDenied,
            Event::ToolsFinished,
            Event::ToolResultsRecorded,
            Event::ModelFailed {
                error: "boom".into(),
                transient: true,
                retries: 0,
            },
            Event::Cancel,
            Event::Retry,
            Event::Regenerate,
            Event::SwitchBranch,
            Event::Fail {
                error: "disk".into(),
            },
        ]
    }

    /// Every valid (state, event) pair and where it leads; everything else must be an error.
    fn valid_table() -> Vec<(StateName, &'static str, StateName)> {
        use StateName as N;
        let mut table = vec![
            (N::Idle, "UserMessage", N::ProcessingUserMessage),
            (N::Failed, "UserMessage", N::ProcessingUserMessage),
            (
                N::ProcessingUserMessage,
                "RequestModel",
                N::AwaitingLlmResponse,
            ),
            (
                N::GeneratingResponse,
                "RequestModel",
                N::AwaitingLlmResponse,
            ),
            (N::TransientFailure, "RequestModel", N::AwaitingLlmResponse),
            (
                N::AwaitingLlmResponse,
                "StreamStarted",
                N::StreamingLlmResponse,
            ),
            (N::StreamingLlmResponse, "Chunk", N::StreamingLlmResponse),
            (
                N::StreamingLlmResponse,
                "StreamEnded",
                N::ProcessingLlmResponse,
            ),
            (N::ProcessingLlmResponse, "ReplyComplete", N::Idle),
            (
                N::ProcessingLlmResponse,
                "ToolCallsRequested",
                N::AwaitingToolApproval,
            ),
            (N::AwaitingToolApproval, "ToolsApproved", N::ExecutingTools),
            (
                N::ProcessingLlmResponse,
                "ToolOutputsRequested",
                N::AwaitingToolOutput,
            ),
            (
                N::AwaitingToolOutput,
                "ToolOutputsReceived",
                N::ProcessingToolResults,
            ),
            (N::AwaitingToolOutput, "ToolsApproved", N::ExecutingTools),
            (
                N::AwaitingToolApproval,
                "ToolsDenied",
                N::GeneratingResponse,
            ),
            (N::ExecutingTools, "ToolsFinished", N::ProcessingToolResults),
            (
                N::ProcessingToolResults,
                "ToolResultsRecorded",
                N::GeneratingResponse,
            ),
            (N::AwaitingLlmResponse, "ModelFailed", N::TransientFailure),
            (N::StreamingLlmResponse, "ModelFailed", N::TransientFailure),
            (N::Failed, "Retry", N::AwaitingLlmResponse),
            (N::Idle, "Regenerate", N::AwaitingLlmResponse),
            (N::Failed, "Regenerate", N::AwaitingLlmResponse),
            (N::Idle, "SwitchBranch", N::Idle),
            (N::Failed, "SwitchBranch", N::Idle),
        ];
        for s in StateName::ALL {
            if !matches!(s, N::Idle | N::Failed) {
                table.push((s, "Cancel", N::Idle));
            }
            table.push((s, "Fail", N::Failed));
        }
        table
    }

    #[test]
    fn every_state_event_pair_matches_the_table() {
        let table = valid_table();
        let mut checked = 0;
        for state in states() {
            for event in events() {
                let expected = table
                    .iter()
                    .find(|(s, e, _)| *s == state.name() && *e == event.name())
                    .map(|(_, _, to)| *to);
                let got = transition(&state, &event);
                match expected {
                    Some(to) => assert_eq!(
                        got.as_ref().map(State::name),
                        Ok(to),
                        "{:?} + {}",
                        state.name(),
                        event.name()
                    ),
                    None => assert_eq!(
                        got,
                        Err(InvalidTransition {
                            state: state.name(),
                            event: event.name()
                        }),
                        "{:?} + {} should be invalid",
                        state.name(),
                        event.name()
                    ),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 12 * 19);
    }

    #[test]
    fn transient_failures_are_retried_up_to_the_limit_then_fail() {
        let failed = |retries| Event::ModelFailed {
            error: "rate limited".into(),
            transient: true,
            retries,
        };
        for retries in 0..MAX_RETRIES {
            assert_eq!(
                transition(&State::AwaitingLlmResponse, &failed(retries)),
                Ok(State::TransientFailure {
                    error: "rate limited".into(),
                    retries: retries + 1
                })
            );
        }
        assert_eq!(
            transition(&State::AwaitingLlmResponse, &failed(MAX_RETRIES)),
            Ok(State::Failed {
                error: "rate limited".into()
            })
        );
    }

    #[test]
    fn a_fatal_model_error_fails_at_once() {
        let fatal = Event::ModelFailed {
            error: "bad key".into(),
            transient: false,
            retries: 0,
        };
        assert_eq!(
            transition(&State::StreamingLlmResponse, &fatal),
            Ok(State::Failed {
                error: "bad key".into()
            })
        );
    }

    #[test]
    fn stored_parts_rebuild_the_state() {
        for s in states() {
            let rebuilt = State::from_parts(s.name(), s.error().map(str::to_owned), s.retries());
            assert_eq!(rebuilt, Some(s));
        }
        assert_eq!(State::from_parts(StateName::Failed, None, 0), None);
    }

    /// A client tool's call rests the turn until the client's output; the output (with
    /// any approved server call of the same reply left to run) continues it; a cancel or a
    /// failure ends it; a new message, a regenerate or a branch switch does not fit.
    #[test]
    fn a_client_tool_call_rests_until_its_output_continues_the_turn() {
        let waiting = transition(&State::ProcessingLlmResponse, &Event::ToolOutputsRequested);
        assert_eq!(waiting, Ok(State::AwaitingToolOutput));
        assert!(State::AwaitingToolOutput.is_resting());
        let s = State::AwaitingToolOutput;
        assert_eq!(
            transition(&s, &Event::ToolOutputsReceived),
            Ok(State::ProcessingToolResults)
        );
        assert_eq!(
            transition(&State::ProcessingToolResults, &Event::ToolResultsRecorded),
            Ok(State::GeneratingResponse)
        );
        assert_eq!(
            transition(&s, &Event::ToolsApproved),
            Ok(State::ExecutingTools)
        );
        assert_eq!(transition(&s, &Event::Cancel), Ok(State::Idle));
        assert_eq!(
            transition(
                &s,
                &Event::Fail {
                    error: "disk".into()
                }
            ),
            Ok(State::Failed {
                error: "disk".into()
            })
        );
        for refused in [
            Event::UserMessage,
            Event::Regenerate,
            Event::SwitchBranch,
            Event::ToolsDenied,
            Event::Retry,
        ] {
            assert!(transition(&s, &refused).is_err(), "{}", refused.name());
        }
        // The client's output answers only a turn that waits for it.
        assert!(transition(&State::AwaitingToolApproval, &Event::ToolOutputsReceived).is_err());
        assert!(transition(&State::Idle, &Event::ToolOutputsReceived).is_err());
    }

    #[test]
    fn invalid_transition_explains_itself() {
        let err = transition(&State::Idle, &Event::ToolsApproved).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "event ToolsApproved does not apply in state Idle"
        );
    }
}
