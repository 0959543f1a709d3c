import { useState } from "react";
import { Toolbar } from "./Toolbar";
import type { ToolCall, ViewMessage } from "@chatsync/sync-wasm";
import { BranchSwitcher, MessageEditor, type BranchActions } from "./BranchControls";
import { CopyButton } from "./CopyButton";
import { Markdown } from "./Markdown";
import { formatArguments } from "./ToolApprovalCard";

/**
 * The error the sync module gives a send it keeps in its offline queue (the browser is
 * offline, or an older send of the chat still waits); it goes out by itself later.
 */
export const QUEUED_ERROR = "not sent yet: queued until the server can be reached";

/**
 * A send waiting in the offline queue: made offline, or lost on the network while the
 * server cannot be reached (the sync module keeps those and replays them too).
 */
export const isWaiting = (m: ViewMessage, offline: boolean) =>
  m.status === "failed" && (m.error === QUEUED_ERROR || offline);

interface Props {
  message: ViewMessage;
  /** The server cannot be reached now: a failed send waits in the queue. */
  offline: boolean;
  onRetry(clientMessageId: string): void;
  onDiscard(clientMessageId: string): void;
  /** Edit, regenerate and switch versions; null while a turn runs. */
  branch: BranchActions | null;
  /**
   * Set on the last reply of a turn (after its tool calls), which carries the turn's one
   * row of actions: its whole text to copy, and the turn's first reply to regenerate.
   */
  turn: { text: string; firstReplyId: string } | null;
  /** The last message shown: its actions stay visible without hover. */
  latest: boolean;
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
    // The caret of a streaming reply sits at the end of its last line (styles.css).
    return (
      <div className={`message-text message-markdown${m.status === "streaming" ? " streaming" : ""}`} data-testid="message-text">
        <Markdown text={m.text} />
      </div>
    );
  }
  return (
    <div className="message-text" data-testid="message-text">
      {m.text}
    </div>
  );
}

const AUTHOR: Record<ViewMessage["role"], string> = { user: "You", assistant: "Assistant", tool: "Tool", system: "System" };

export function Message({ message: m, offline, onRetry, onDiscard, branch, turn, latest }: Props) {
  const [editing, setEditing] = useState(false);
  const common = {
    "data-testid": "message",
    "data-role": m.role,
    "data-status": m.status,
    "data-message-id": m.id,
    "data-client-message-id": m.clientMessageId,
  };
  // Who said it, for screen readers; the layout shows it to everyone else.
  const author = (
    <span className="visually-hidden" data-testid="message-author">
      {AUTHOR[m.role]}:
    </span>
  );

  if (m.role === "tool") {
    return (
      <div className="message message-tool" {...common}>
        {author}
        <span className="muted">Tool result</span>
        <span className="message-text tool-output" data-testid="message-text">
          {m.text}
        </span>
      </div>
    );
  }

  // Only local optimistic messages can fail; they always carry a client id.
  const failedId = m.status === "failed" ? m.clientMessageId : undefined;
  const waiting = isWaiting(m, offline);
  const rests = (m.status === "complete" || m.status === "cancelled") && !editing;
  // A user message has its own actions; a reply's are on the last reply of its turn.
  const copyText = m.role === "user" ? m.text : (turn?.text ?? "");
  const showActions = rests && (m.role === "user" || turn !== null) && copyText !== "";
  return (
    <div className={`message message-${m.role} status-${waiting ? "waiting" : m.status}${latest ? " latest" : ""}`} {...common} data-waiting={waiting || undefined}>
      {author}
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
      {rests && !showActions && m.siblingCount > 1 && (
        <div className="message-actions">
          <BranchSwitcher message={m} actions={branch} />
        </div>
      )}
      {showActions && (
        <Toolbar className="message-actions" label={m.role === "user" ? "Your message" : "This reply"}>
          <BranchSwitcher message={m} actions={branch} />
          <CopyButton text={copyText} what={m.role === "user" ? "message" : "reply"} testId="message-copy" />
          {branch && m.role === "user" && (
            <button type="button" className="copy-button" data-testid="message-edit" onClick={() => setEditing(true)}>
              Edit<span className="visually-hidden"> message</span>
            </button>
          )}
          {branch && m.role === "assistant" && turn && (
            <button
              type="button"
              className="copy-button"
              data-testid="message-regenerate"
              onClick={() => branch.regenerate(turn.firstReplyId)}
            >
              Regenerate<span className="visually-hidden"> reply</span>
            </button>
          )}
        </Toolbar>
      )}
      {failedId !== undefined && waiting && (
        <div className="message-meta message-waiting" data-testid="message-queued">
          <span>Waiting to send: it goes out by itself when the server can be reached</span>
          <button className="link-button" data-testid="message-retry" onClick={() => onRetry(failedId)}>
            Send now
          </button>
          <button className="link-button" data-testid="message-discard" onClick={() => onDiscard(failedId)}>
            Discard
          </button>
        </div>
      )}
      {failedId !== undefined && !waiting && (
        <div className="message-meta message-failed" data-testid="message-failed" role="alert">
          <span>Not sent{m.error ? `: ${m.error}` : ""}</span>
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
