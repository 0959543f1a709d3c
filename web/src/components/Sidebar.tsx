import { useState } from "react";
import type { ContextSummary } from "@chatsync/sync-wasm";
import { ConfirmDialog } from "./ConfirmDialog";

interface Props {
  contexts: ContextSummary[];
  selectedId: string | null;
  onSelect(id: string): void;
  onNew(): void;
  onDelete(id: string): void;
}

export const chatTitle = (c: ContextSummary) => c.title.trim() || "New chat";

export function Sidebar({ contexts, selectedId, onSelect, onNew, onDelete }: Props) {
  const [confirming, setConfirming] = useState<ContextSummary | null>(null);

  return (
    <aside className="sidebar">
      <div className="sidebar-head">
        <span className="brand">chatsync</span>
        <button className="button" data-testid="new-chat" onClick={onNew}>
          + New chat
        </button>
      </div>
      <nav className="chat-list" data-testid="chat-list" aria-label="Chats">
        {contexts.length === 0 && <p className="muted sidebar-empty">No chats yet</p>}
        {contexts.map((c) => (
          <div
            key={c.id}
            className={`chat-item${c.id === selectedId ? " selected" : ""}`}
            data-testid="chat-item"
            data-context-id={c.id}
          >
            <button
              className="chat-item-open"
              data-testid="chat-item-open"
              onClick={() => onSelect(c.id)}
              aria-current={c.id === selectedId ? "page" : undefined}
            >
              <span className="chat-item-title">{chatTitle(c)}</span>
              <span className="chat-item-meta">
                {c.messageCount} {c.messageCount === 1 ? "message" : "messages"}
                {c.status !== "idle" && ` · ${c.status.replace("_", " ")}`}
              </span>
            </button>
            <button
              className="icon-button chat-item-delete"
              data-testid="chat-item-delete"
              aria-label={`Delete ${chatTitle(c)}`}
              title="Delete chat"
              onClick={() => setConfirming(c)}
            >
              ×
            </button>
          </div>
        ))}
      </nav>
      {confirming && (
        <ConfirmDialog
          title="Delete this chat?"
          body={`“${chatTitle(confirming)}” and all of its messages will be deleted.`}
          confirmLabel="Delete"
          onConfirm={() => {
            onDelete(confirming.id);
            setConfirming(null);
          }}
          onCancel={() => setConfirming(null)}
        />
      )}
    </aside>
  );
}
