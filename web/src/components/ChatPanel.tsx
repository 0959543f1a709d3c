import { useCallback, useMemo, useRef, useState } from "react";
import type { ChatView, ViewMessage } from "@chatsync/sync-wasm";
import type { ChatActions } from "@chatsync/sync-wasm/react";
import { Announcer } from "./Announcer";
import type { BranchActions } from "./BranchControls";
import { Composer } from "./Composer";
import { ExportMenu } from "./ExportMenu";
import { isWaiting } from "./Message";
import { MessageList } from "./MessageList";
import { QueuedMessages } from "./QueuedMessages";
import { SyncStatus } from "./SyncStatus";
import { ToolApprovalCard, describeRequest } from "./ToolApprovalCard";
import { useDraft } from "../hooks/useDraft";
import type { Models } from "../hooks/useModels";
import { useScrolledIntoView } from "../hooks/useScrolledIntoView";

interface Props {
  view: ChatView;
  /** The chat the user opened (known from the URL before its view has loaded). */
  chatId: string | null;
  title: string | null;
  /** Whose drafts the composer keeps. */
  user: string;
  actions: ChatActions;
  onSend(text: string): Promise<boolean>;
  error: string | null;
  onDismissError(): void;
  run(what: string, action: () => Promise<unknown>): Promise<void>;
  /** Set on a narrow screen, where the chat list is a drawer this button opens. */
  onOpenDrawer: (() => void) | null;
  /** Set on a narrow screen, where "New chat" is in the header too. */
  onNewChat: (() => void) | null;
  /** The models a new chat may use (null: the server offers no choice), and the one picked. */
  models: Models | null;
  model: string | null;
  onModel(model: string): void;
  /** The model the open chat uses, when it names one. */
  modelInUse: string | null;
}

// The view lists the server's queued messages after the history; they show apart, under
// the running turn, each removable.
const isQueued = (m: ViewMessage) => m.status === "queued";

/** A turn that failed, with Retry; brought into view when it appears under a long chat. */
function FailedTurn({ error, onRetry }: { error: string | null; onRetry(): void }) {
  const card = useRef<HTMLDivElement>(null);
  useScrolledIntoView(card);
  return (
    <div ref={card} className="notice notice-error" data-testid="chat-failed" role="alert">
      <span>
        <strong>This reply failed.</strong> {error ?? "The model did not answer."}
      </span>
      <button className="button" data-testid="chat-retry" onClick={onRetry}>
        Retry
      </button>
    </div>
  );
}

/**
 * A turn that waits for the output of tools a client of the OpenAI-compatible API declared
 * and runs itself: nothing to approve here, only to wait or to cancel.
 */
function AwaitingToolOutput({ calls, onCancel }: { calls: ViewMessage["toolCalls"]; onCancel(): void }) {
  const names = [...new Set((calls ?? []).map((c) => c.name))].join(", ");
  return (
    <div className="notice" data-testid="chat-awaiting-tool-output" role="status">
      <span>
        <strong>Waiting for the client's tool output.</strong>{" "}
        {names ? `The app that sent this message runs ${names} and sends the result back.` : null}
      </span>
      <button className="button" data-testid="chat-cancel-tool-output" onClick={onCancel}>
        Cancel
      </button>
    </div>
  );
}

export function ChatPanel({ view, chatId, title, user, actions, onSend, error, onDismissError, run, onOpenDrawer, onNewChat, models, model, onModel, modelInUse }: Props) {
  // Counts this tab's sends and retries: each brings the list down to the message. A
  // message pending in another tab shows here too, and must not move a reader who scrolled up.
  const [sends, setSends] = useState(0);
  const send = useCallback(
    (text: string) => {
      setSends((n) => n + 1);
      return onSend(text);
    },
    [onSend],
  );
  // Keyed by the chat opened, not the loaded view: text typed while the chat loads is its draft.
  const [draft, setDraft] = useDraft(user, chatId);
  const running = view.status === "running";
  const awaitingApproval = view.status === "awaiting_approval" && view.pendingToolCalls.length > 0;
  const awaitingToolOutput = view.status === "awaiting_tool_output";
  const deleted = view.sync === "deleted";
  const history = useMemo(() => view.messages.filter((m) => !isQueued(m)), [view.messages]);
  const queued = useMemo(() => view.messages.filter(isQueued), [view.messages]);
  const offline = view.sync === "offline";
  const waiting = history.filter((m) => isWaiting(m, offline)).length;
  // The tree changes only while the chat rests (the server refuses it during a turn).
  const resting =
    view.status === "idle" ||
    view.status === "failed" ||
    view.status === "awaiting_approval" ||
    view.status === "awaiting_tool_output";
  const branch = useMemo<BranchActions | null>(
    () =>
      resting && !deleted
        ? {
            edit: (id, text) => void run("Could not edit the message", () => actions.editMessage(id, text)),
            regenerate: (id) => void run("Could not regenerate the reply", () => actions.regenerate(id)),
            switchTo: (id, index) => void run("Could not show that version", () => actions.switchBranch(id, index)),
          }
        : null,
    [resting, deleted, actions, run],
  );

  return (
    <main className="chat" data-testid="chat-panel" data-status={view.status ?? "none"}>
      <header className="chat-head">
        {onOpenDrawer && (
          <button
            className="icon-button drawer-toggle"
            data-testid="drawer-open"
            aria-label="Open the chat list"
            aria-controls="sidebar"
            onClick={onOpenDrawer}
          >
            ☰
          </button>
        )}
        {/* The model goes with the title: beside it, or under it on a phone, never taking its room. */}
        <div className="chat-head-title">
          <h1 className="chat-title">{deleted ? "Deleted chat" : (title ?? "New chat")}</h1>
          {modelInUse && (
            <span className="muted model-in-use" data-testid="model-in-use">
              {modelInUse}
            </span>
          )}
        </div>
        <div className="chat-head-tools">
          <SyncStatus view={view} />
          {!deleted && history.length > 0 && <ExportMenu title={title ?? "Chat"} view={view} />}
        </div>
        {onNewChat && (
          <button className="icon-button header-new-chat" data-testid="header-new-chat" aria-label="New chat" onClick={onNewChat}>
            +
          </button>
        )}
      </header>

      <MessageList
        key={view.contextId ?? "none"}
        messages={history}
        running={running}
        sends={sends}
        offline={offline}
        onExample={(example) => {
          setDraft(example);
          document.getElementById("composer-input")?.focus();
        }}
        onRetry={(id) => {
          setSends((n) => n + 1);
          void run("Could not send the message", () => actions.retryMessage(id));
        }}
        onDiscard={actions.discardMessage}
        branch={branch}
      >
        <QueuedMessages
          queued={queued}
          onRemove={(id) => run("Could not remove the queued message", () => actions.cancelQueued(id))}
        />
        {awaitingApproval && (
          <ToolApprovalCard
            calls={view.pendingToolCalls}
            onSubmit={(approved) => run("Could not submit the tool decisions", () => actions.approveTools(approved))}
          />
        )}
        {awaitingToolOutput && (
          <AwaitingToolOutput
            calls={view.pendingToolCalls}
            onCancel={() => void run("Could not cancel the tool call", actions.cancel)}
          />
        )}
        {view.status === "failed" && (
          <FailedTurn error={view.error} onRetry={() => void run("Could not retry the reply", actions.retry)} />
        )}
      </MessageList>

      <Announcer
        contextId={view.contextId}
        messages={view.messages}
        loaded={view.version > 0}
        request={awaitingApproval ? describeRequest(view.pendingToolCalls) : null}
      />
      <div className="chat-foot">
        {deleted && (
          <div className="notice" data-testid="chat-deleted" role="status">
            This chat was deleted.
          </div>
        )}
        {waiting > 0 && (
          <div className="notice notice-waiting" data-testid="offline-notice" role="status">
            {waiting === 1
              ? "1 message is waiting to send. It goes out by itself as soon as the server can be reached."
              : `${waiting} messages are waiting to send. They go out by themselves, in order, as soon as the server can be reached.`}
          </div>
        )}
        {error && (
          <div className="notice notice-error" data-testid="error-banner" role="alert">
            <span>{error}</span>
            <button className="icon-button" data-testid="error-dismiss" aria-label="Dismiss" onClick={onDismissError}>
              ×
            </button>
          </div>
        )}
        <Composer
          text={draft}
          setText={setDraft}
          onSend={send}
          running={running}
          onCancel={() => run("Could not stop the reply", actions.cancel)}
          disabledReason={
            deleted
              ? "This chat was deleted"
              : awaitingApproval
                ? "Approve or deny the tool calls above to continue"
                : awaitingToolOutput
                  ? "Waiting for the client's tool output; cancel it to write here"
                  : null
          }
          extra={
            models && view.contextId === null ? (
              <select
                className="model-select"
                data-testid="model-select"
                aria-label="Model for this chat"
                value={model ?? ""}
                onChange={(e) => onModel(e.target.value)}
              >
                {model === null && <option value="">Server default</option>}
                {models.models.map((id) => (
                  <option key={id} value={id}>
                    {id}
                  </option>
                ))}
              </select>
            ) : null
          }
        />
      </div>
    </main>
  );
}
