import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { ContextSummary } from "@chatsync/sync-wasm";
import type { Contexts } from "../hooks/useContexts";
import { useFocusTrap } from "../hooks/useFocusTrap";
import { ConfirmDialog } from "./ConfirmDialog";

interface Props {
  chats: Contexts;
  selectedId: string | null;
  query: string;
  onQuery(query: string): void;
  onSelect(id: string): void;
  onNew(): void;
  onDelete(id: string): void;
  onRename(id: string, title: string): Promise<void>;
  /** On a narrow screen the sidebar is a drawer over the chat, open or not. */
  drawer: boolean;
  open: boolean;
  onClose(): void;
  /** Who the server takes the user for, when worth showing (not the one user of `--auth none`). */
  user: string | null;
  /** Set when signed in with a token, which signing out forgets. */
  onSignOut: (() => void) | null;
}

export const chatTitle = (c: ContextSummary) => c.title.trim() || "New chat";
const MAX_TITLE = 200;

function RenameInput({ chat, onDone }: { chat: ContextSummary; onDone(title: string | null): void }) {
  const [title, setTitle] = useState(chatTitle(chat));
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.select(), []);
  const onKeyDown = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === "Enter") onDone(title.trim() === "" ? null : title);
    if (e.key === "Escape") {
      // The drawer's Escape would close it; here it only ends the edit.
      e.stopPropagation();
      onDone(null);
    }
  };
  return (
    <input
      ref={input}
      className="chat-item-rename"
      data-testid="chat-item-rename-input"
      aria-label="Chat title"
      value={title}
      maxLength={MAX_TITLE}
      onChange={(e) => setTitle(e.target.value)}
      onKeyDown={onKeyDown}
      onBlur={() => onDone(title.trim() === "" || title === chatTitle(chat) ? null : title)}
    />
  );
}

export function Sidebar(props: Props) {
  const { chats, selectedId, query, onQuery, onSelect, onNew, onDelete, onRename, drawer, open, onClose, user, onSignOut } = props;
  const [confirming, setConfirming] = useState<ContextSummary | null>(null);
  const [editing, setEditing] = useState<string | null>(null);
  const aside = useRef<HTMLElement>(null);
  const sentinel = useRef<HTMLDivElement>(null);
  useFocusTrap(aside, drawer && open && confirming === null, onClose);

  // Endless scrolling: the next page loads when the end of the list comes into view.
  const { hasMore, loadMore } = chats;
  useEffect(() => {
    const end = sentinel.current;
    if (!end || !hasMore) return;
    const observer = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && loadMore());
    observer.observe(end);
    return () => observer.disconnect();
  }, [hasMore, loadMore, chats.contexts.length]);

  const hidden = drawer && !open;
  return (
    <>
      {drawer && open && <div className="drawer-backdrop" data-testid="drawer-backdrop" onClick={onClose} />}
      <aside
        ref={aside}
        id="sidebar"
        className={`sidebar${drawer ? " drawer" : ""}${open ? " open" : ""}`}
        data-testid="sidebar"
        aria-label="Chats"
        // A closed drawer is off screen: out of the tab order and the accessibility tree.
        inert={hidden}
        {...(drawer && open ? { role: "dialog", "aria-modal": true } : {})}
      >
        <div className="sidebar-head">
          <span className="brand">chatsync</span>
          <button className="button" data-testid="new-chat" onClick={onNew} aria-keyshortcuts="Control+Shift+O" title="New chat (Ctrl+Shift+O)">
            + New chat
          </button>
        </div>
        <div className="sidebar-search">
          <input
            type="search"
            className="search-input"
            data-testid="chat-search"
            placeholder="Search chats"
            aria-label="Search chats"
            value={query}
            maxLength={200}
            onChange={(e) => onQuery(e.target.value)}
          />
        </div>
        <nav className="chat-list" data-testid="chat-list" aria-label="Chat list">
          {chats.loaded && chats.contexts.length === 0 && (
            <p className="muted sidebar-empty">{query.trim() ? "No chats match" : "No chats yet"}</p>
          )}
          <ul>
            {chats.contexts.map((c) => (
              <li
                key={c.id}
                className={`chat-item${c.id === selectedId ? " selected" : ""}`}
                data-testid="chat-item"
                data-context-id={c.id}
              >
                {editing === c.id ? (
                  <RenameInput
                    chat={c}
                    onDone={(title) => {
                      setEditing(null);
                      if (title !== null) void onRename(c.id, title);
                    }}
                  />
                ) : (
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
                )}
                <div className="chat-item-tools">
                  <button
                    className="icon-button"
                    data-testid="chat-item-rename"
                    aria-label={`Rename ${chatTitle(c)}`}
                    title="Rename chat"
                    onClick={() => setEditing(c.id)}
                  >
                    ✎
                  </button>
                  <button
                    className="icon-button"
                    data-testid="chat-item-delete"
                    aria-label={`Delete ${chatTitle(c)}`}
                    title="Delete chat"
                    onClick={() => setConfirming(c)}
                  >
                    ×
                  </button>
                </div>
              </li>
            ))}
          </ul>
          {chats.hasMore && (
            <div ref={sentinel} className="muted sidebar-more" data-testid="chat-list-more">
              Loading more…
            </div>
          )}
        </nav>
        {(user !== null || onSignOut) && (
          <div className="sidebar-foot" data-testid="account">
            {user !== null && (
              <span className="account-name">
                Signed in as <strong data-testid="signed-in-user">{user}</strong>
              </span>
            )}
            {onSignOut && (
              <button className="button" data-testid="sign-out" onClick={onSignOut}>
                Sign out
              </button>
            )}
          </div>
        )}
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
    </>
  );
}
