import { useState } from "react";
import type { ToolCall, ViewMessage } from "@chatsync/sync-wasm";
import { BranchSwitcher, MessageEditor, type BranchActions } from "./BranchControls";
import { CopyButton } from "./CopyButton";
import { Markdown } from "./Markdown";
import { formatArguments } from "./ToolApprovalCard";

interface Props {
  message: ViewMessage;
  onRetry(clientMessageId: string): void;
  onDiscard(clientMessageId: string): void;
  /** Edit, regenerate and switch versions; null while a turn runs. */
  branch: BranchActions | null;
}

const TOOL_STATUS_LABEL: Record<ToolCall["status"], string> = {
  pending: "waiting for approval",
  approved: "approved",
  denied: "denied",
  running: "running",
  completed: "done",
  failed: "failed",
};

function ToolCallLine({ call }: { call: ToolCall }) {
  return (
    <div className={`tool-line tool-${call.status}`} data-testid="tool-call-line" data-tool-status={call.status}>
      <code className="tool-name">{call.name}</code>
      <code className="tool-inline-args">{formatArguments(call.arguments).replace(/\s+/g, " ")}</code>
      <span className="tool-status">{TOOL_STATUS_LABEL[call.status]}</span>
      {call.result !== undefined && <span className="tool-result">→ {call.result}</span>}
    </div>
  );
}

/** Replies are markdown; what a person typed is shown exactly as typed. */
function MessageText({ message: m }: { message: ViewMessage }) {
  if (m.role === "assistant") {
    return (
      <div className="message-text message-markdown" data-testid="message-text">
        <Markdown text={m.text} />
        {m.status === "streaming" && <span className="caret" aria-hidden="true" />}
      </div>
    );
  }
  return (
    <div className="message-text" data-testid="message-text">
      {m.text}
    </div>
  );
}

export function Message({ message: m, onRetry, onDiscard, branch }: Props) {
  const [editing, setEditing] = useState(false);
  const common = {
    "data-testid": "message",
    "data-role": m.role,
    "data-status": m.status,
    "data-message-id": m.id,
    "data-client-message-id": m.clientMessageId,
  };

  if (m.role === "tool") {
    return (
      <div className="message message-tool" {...common}>
        <span className="muted">Tool result</span>
        <span className="message-text tool-output" data-testid="message-text">
          {m.text}
        </span>
      </div>
    );
  }

  // Only local optimistic messages can fail; they always carry a client id.
  const failedId = m.status === "failed" ? m.clientMessageId : undefined;
  return (
    <div className={`message message-${m.role} status-${m.status}`} {...common}>
      {editing && branch ? (
        <MessageEditor initial={m.text} onSave={(text) => branch.edit(m.id, text)} onClose={() => setEditing(false)} />
      ) : (
        m.text !== "" && <MessageText message={m} />
      )}
      {/* A pending call is shown by the approval card instead. */}
      {m.toolCalls
        ?.filter((call) => call.status !== "pending")
        .map((call) => <ToolCallLine key={call.id} call={call} />)}
      {m.status === "pending" && (
        <div className="message-meta" data-testid="message-pending">
          Sending…
        </div>
      )}
      {m.status === "cancelled" && <div className="message-meta">Stopped</div>}
      {(m.status === "complete" || m.status === "cancelled") && !editing && (m.text !== "" || m.siblingCount > 1) && (
        <div className="message-actions">
          <BranchSwitcher message={m} actions={branch} />
          {m.text !== "" && <CopyButton text={m.text} what="message" testId="message-copy" />}
          {branch && m.role === "user" && (
            <button type="button" className="copy-button" data-testid="message-edit" onClick={() => setEditing(true)}>
              Edit<span className="visually-hidden"> message</span>
            </button>
          )}
          {branch && m.role === "assistant" && (
            <button type="button" className="copy-button" data-testid="message-regenerate" onClick={() => branch.regenerate(m.id)}>
              Regenerate<span className="visually-hidden"> reply</span>
            </button>
          )}
        </div>
      )}
      {failedId !== undefined && (
        <div className="message-meta message-failed" data-testid="message-failed" role="alert">
          <span title={m.error}>Not sent</span>
          <button className="link-button" data-testid="message-retry" onClick={() => onRetry(failedId)}>
            Retry
          </button>
          <button className="link-button" data-testid="message-discard" onClick={() => onDiscard(failedId)}>
            Discard
          </button>
        </div>
      )}
    </div>
  );
}
