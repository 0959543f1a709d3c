//! Tool calls: the person's approval and running the approved calls.

use super::{Actor, Halt, Step};
use crate::engine::context::{new_message, MAX_UNSAVED_VERSIONS};
use crate::engine::ActionError;
use crate::fsm::{Event, State};
use chatsync_protocol::{ContentPart, Role, ToolCall, ToolCallStatus};

impl Actor {
    /// Validates an approval and records every decision; returns the event it leads to.
    pub(super) fn decide_tool_calls(&mut self, approved: &[String]) -> Result<Event, ActionError> {
        let no_pending = || ActionError::NoPendingApprovals;
        if *self.ctx.state() != State::AwaitingToolApproval {
            return Err(no_pending());
        }
        let i = self.ctx.tool_call_message().ok_or_else(no_pending)?;
        let calls = self.ctx.messages()[i]
            .tool_calls
            .clone()
            .unwrap_or_default();
        let pending: Vec<&ToolCall> = calls
            .iter()
            .filter(|c| c.status == ToolCallStatus::Pending)
            .collect();
        let unknown: Vec<String> = approved
            .iter()
            .filter(|id| !pending.iter().any(|c| &c.id == *id))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(ActionError::UnknownToolCalls(unknown));
        }
        let mut denied = Vec::new();
        let m = self.ctx.message_mut(i);
        for call in m.tool_calls.iter_mut().flatten() {
            if call.status != ToolCallStatus::Pending {
                continue;
            }
            if approved.contains(&call.id) {
                call.status = ToolCallStatus::Approved;
            } else {
                call.status = ToolCallStatus::Denied;
                denied.push(call.id.clone());
            }
        }
        // Auto-approved calls of the same reply run even when the person denies the rest.
        let any_approved = m
            .tool_calls
            .iter()
            .flatten()
            .any(|c| c.status == ToolCallStatus::Approved);
        for id in denied {
            self.push_tool_result(id, "The user denied this tool call.".into());
        }
        Ok(if any_approved {
            Event::ToolsApproved
        } else {
            Event::ToolsDenied
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
