//! Tool calls: the person's approval, the client's outputs for its own tools, and running the
//! approved calls.

use super::{Actor, Halt, Step};
use crate::domain::TurnOptions;
use crate::engine::context::{new_message, MAX_UNSAVED_VERSIONS};
use crate::engine::ActionError;
use crate::fsm::{Event, State};
use chatsync_protocol::{ContentPart, Role, ToolCall, ToolCallStatus};

impl Actor {
    /// Validates an approval and records every decision; returns the event it leads to.
    pub(super) fn decide_tool_calls(&mut self, approved: &[String]) -> Result<Event, ActionError> {
        let (i, calls) = self
            .waiting_calls(State::AwaitingToolApproval)
            .ok_or(ActionError::NoPendingApprovals)?;
        let unknown = not_waiting(&calls, approved.iter(), |_| true);
        if !unknown.is_empty() {
            return Err(ActionError::UnknownToolCalls(unknown));
        }
        Ok(if self.approve_or_deny(i, approved) {
            Event::ToolsApproved
        } else {
            Event::ToolsDenied
        })
    }

    /// Marks the pending server calls of message `i`: approved when `approved` names them,
    /// else denied (with a result saying so). True when a call of the message is left to
    /// run (auto-approved calls run even when the person denies the rest).
    fn approve_or_deny(&mut self, i: usize, approved: &[String]) -> bool {
        let client = self.ctx.turn_options().clone();
        let mut denied = Vec::new();
        let m = self.ctx.message_mut(i);
        for call in m.tool_calls.iter_mut().flatten() {
            if call.status != ToolCallStatus::Pending || client.declares(&call.name) {
                continue;
            }
            if approved.contains(&call.id) {
                call.status = ToolCallStatus::Approved;
            } else {
                call.status = ToolCallStatus::Denied;
                denied.push(call.id.clone());
            }
        }
        let any_approved = m
            .tool_calls
            .iter()
            .flatten()
            .any(|c| c.status == ToolCallStatus::Approved);
        for id in denied {
            self.push_tool_result(id, "The user denied this tool call.".into());
        }
        any_approved
    }

    /// The message whose calls wait in `state` (for a person, or the client) and its
    /// calls; `None` when the context does not wait so.
    fn waiting_calls(&self, state: State) -> Option<(usize, Vec<ToolCall>)> {
        if *self.ctx.state() != state {
            return None;
        }
        let i = self.ctx.tool_call_message()?;
        let calls = self.ctx.messages()[i]
            .tool_calls
            .clone()
            .unwrap_or_default();
        Some((i, calls))
    }

    /// Records the client's outputs for the calls of its tools that wait (every one needs
    /// its output), as the calls' results; the server calls of the same reply that wait for
    /// approval are approved when `approved` names them, else denied. The turn then goes on
    /// with `turn` (the request's tools and instructions): through the approved server calls
    /// (`ToolsApproved`), or straight to the results (`ToolOutputsReceived`).
    pub(super) fn record_tool_outputs(
        &mut self,
        outputs: &[(String, String)],
        approved: &[String],
        turn: TurnOptions,
    ) -> Result<Event, ActionError> {
        let (i, calls) = self
            .waiting_calls(State::AwaitingToolOutput)
            .ok_or(ActionError::NoPendingToolOutputs)?;
        let client = self.ctx.turn_options().clone();
        let for_client = |c: &ToolCall| client.declares(&c.name);
        let mut unknown = not_waiting(&calls, outputs.iter().map(|(id, _)| id), for_client);
        unknown.extend(not_waiting(&calls, approved.iter(), |c| !for_client(c)));
        if !unknown.is_empty() {
            return Err(ActionError::UnknownToolCalls(unknown));
        }
        let missing: Vec<&str> = calls
            .iter()
            .filter(|c| c.status == ToolCallStatus::Pending && for_client(c))
            .filter(|c| !outputs.iter().any(|(o, _)| *o == c.id))
            .map(|c| c.id.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(ActionError::InvalidMessage(format!(
                "every waiting call needs its output; missing: {}",
                missing.join(", ")
            )));
        }
        let m = self.ctx.message_mut(i);
        for call in m.tool_calls.iter_mut().flatten() {
            if let Some((_, output)) = outputs.iter().find(|(id, _)| *id == call.id) {
                call.status = ToolCallStatus::Completed;
                call.result = Some(output.clone());
            }
        }
        for (id, output) in outputs {
            self.push_tool_result(id.clone(), output.clone());
        }
        let server_calls_run = self.approve_or_deny(i, approved);
        self.ctx.set_turn_options(turn);
        Ok(if server_calls_run {
            Event::ToolsApproved
        } else {
            Event::ToolOutputsReceived
        })
    }

    pub(super) fn push_tool_result(&mut self, call_id: String, text: String) {
        let mut m = new_message(Role::Tool, vec![ContentPart::text(text)], None);
        m.tool_call_id = Some(call_id);
        self.ctx.push(m, None);
    }

    pub(super) async fn execute_tools(&mut self) -> Step {
        let Some(i) = self.ctx.tool_call_message() else {
            return self
                .apply(Event::Fail {
                    error: "cannot run tools: the tool calls were not saved".into(),
                })
                .await;
        };
        let calls = self.ctx.messages()[i]
            .tool_calls
            .clone()
            .unwrap_or_default();
        for (k, call) in calls.iter().enumerate() {
            if !matches!(
                call.status,
                ToolCallStatus::Approved | ToolCallStatus::Running
            ) {
                continue;
            }
            self.set_call(i, k, ToolCallStatus::Running, None).await;
            let tools = self.deps.tools.clone();
            let outcome = self.wait_for(tools.run(&call.name, &call.arguments)).await;
            let (status, text) = match outcome {
                None => return Err(Halt::Cancelled),
                Some(Ok(result)) => (ToolCallStatus::Completed, result),
                Some(Err(error)) => (ToolCallStatus::Failed, error),
            };
            self.set_call(i, k, status, Some(text.clone())).await;
            self.push_tool_result(call.id.clone(), text);
        }
        self.apply(Event::ToolsFinished).await
    }

    /// Changes one call outside a transition: visible to pollers at once, saved with the
    /// next transition.
    pub(super) async fn set_call(
        &mut self,
        msg: usize,
        call: usize,
        status: ToolCallStatus,
        result: Option<String>,
    ) {
        if let Some(c) = self
            .ctx
            .message_mut(msg)
            .tool_calls
            .as_mut()
            .and_then(|calls| calls.get_mut(call))
        {
            c.status = status;
            c.result = result;
        }
        self.stamp();
        if self.ctx.unsaved_versions() >= MAX_UNSAVED_VERSIONS {
            // Errors are logged; the next transition's save reports them to the turn.
            let _ = self.save().await;
        }
        self.publish().await;
    }
}

/// The ids among `ids` that name no pending call of `calls` that `fits`.
fn not_waiting<'a>(
    calls: &[ToolCall],
    ids: impl Iterator<Item = &'a String>,
    fits: impl Fn(&ToolCall) -> bool,
) -> Vec<String> {
    ids.filter(|id| {
        !calls
            .iter()
            .any(|c| &c.id == *id && c.status == ToolCallStatus::Pending && fits(c))
    })
    .cloned()
    .collect()
}
