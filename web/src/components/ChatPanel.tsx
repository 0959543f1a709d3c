import { useCallback, useMemo, useState } from "react";
import type { ChatView, ViewMessage } from "@chatsync/sync-wasm";
import type { ChatActions } from "@chatsync/sync-wasm/react";
import { Announcer } from "./Announcer";
import type { BranchActions } from "./BranchControls";
import { Composer } from "./Composer";
import { MessageList } from "./MessageList";
import { QueuedMessages } from "./QueuedMessages";
import { SyncStatus } from "./SyncStatus";
import { ToolApprovalCard } from "./ToolApprovalCard";

interface Props {
  view: ChatView;
  title: string | null;
  actions: ChatActions;
  onSend(text: string): Promise<boolean>;
  error: string | null;
  onDismissError(): void;
  run(what: string, action: () => Promise<unknown>): Promise<void>;
  /** Set on a narrow screen, where the chat list is a drawer this button opens. */
  onOpenDrawer: (() => void) | null;
}

// The view lists the server's queued messages after the history; they show apart, under
// the running turn, each removable.
const isQueued = (m: ViewMessage) => m.status === "queued";

export function ChatPanel({ view, title, actions, onSend, error, onDismissError, run, onOpenDrawer }: Props) {
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
  const running = view.status === "running";
  const awaitingApproval = view.status === "awaiting_approval" && view.pendingToolCalls.length > 0;
  const deleted = view.sync === "deleted";
  const history = useMemo(() => view.messages.filter((m) => !isQueued(m)), [view.messages]);
  const queued = useMemo(() => view.messages.filter(isQueued), [view.messages]);
  // The tree changes only while the chat rests (the server refuses it during a turn).
  const resting = view.status === "idle" || view.status === "failed" || view.status === "awaiting_approval";
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
        <h1 className="chat-title">{deleted ? "Deleted chat" : (title ?? "New chat")}</h1>
        <SyncStatus view={view} />
      </header>

      <MessageList
        key={view.contextId ?? "none"}
        messages={history}
        running={running}
        sends={sends}
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
        {view.status === "failed" && (
          <div className="notice notice-error" data-testid="chat-failed" role="alert">
            <span>
              <strong>This reply failed.</strong> {view.error ?? "The model did not answer."}
            </span>
            <button className="button" data-testid="chat-retry" onClick={() => run("Could not retry the reply", actions.retry)}>
              Retry
            </button>
          </div>
        )}
      </MessageList>

      <Announcer contextId={view.contextId} messages={view.messages} />
      <div className="chat-foot">
        {deleted && (
          <div className="notice" data-testid="chat-deleted" role="status">
            This chat was deleted.
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
          onSend={send}
          running={running}
          onCancel={() => run("Could not stop the reply", actions.cancel)}
          disabledReason={
            deleted ? "This chat was deleted" : awaitingApproval ? "Approve or deny the tool calls above to continue" : null
          }
        />
      </div>
    </main>
  );
}
