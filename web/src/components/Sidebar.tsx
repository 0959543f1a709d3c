import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { ContextSummary, Snippet } from "@chatsync/sync-wasm";
import { searchable, type Contexts } from "../hooks/useContexts";
import type { Theme } from "../hooks/useTheme";
import { useFocusTrap } from "../hooks/useFocusTrap";
import { ConfirmDialog } from "./ConfirmDialog";

interface Props {
  chats: Contexts;
  selectedId: string | null;
  query: string;
  onQuery(query: string): void;
  onSelect(id: string): void;
  onNew(): void;
  onDelete(id: string): Promise<void>;
  onRename(id: string, title: string): Promise<void>;
  /** On a narrow screen the sidebar is a drawer over the chat, open or not. */
  drawer: boolean;
  open: boolean;
  onClose(): void;
  /** Who the server takes the user for, when worth showing (not the one user of `--auth none`). */
  user: string | null;
  /** Set when signed in with a token, which signing out forgets. */
  onSignOut: (() => void) | null;
  theme: Theme;
  onTheme(theme: Theme): void;
}

export const chatTitle = (c: ContextSummary) => c.title.trim() || "New chat";

/** A search result's title with the words that match marked. */
function Matched({ title, query }: { title: string; query: string }) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  if (words.length === 0) return <>{title}</>;
  const parts = title.split(/([\p{L}\p{N}]+)/u);
  const hit = (part: string) => words.some((w) => part.toLowerCase().startsWith(w));
  if (!parts.some(hit)) return <>{title}</>;
  return <>{parts.map((part, i) => (hit(part) ? <mark key={i}>{part}</mark> : part))}</>;
}

/**
 * Where a search matched, as the server cut it: plain-text parts, the matched words
 * highlighted. The parts are text children, never markup.
 */
function SnippetText({ snippet }: { snippet: Snippet }) {
  return <>{snippet.parts.map((part, i) => (part.matched ? <mark key={i}>{part.text}</mark> : part.text))}</>;
}

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
  const { chats, selectedId, query, onQuery, onSelect, onNew, onDelete, onRename, drawer, open, onClose, user, onSignOut, theme, onTheme } = props;
  const [confirming, setConfirming] = useState<ContextSummary | null>(null);
  const hidden = drawer && !open;
  const [editing, setEditing] = useState<string | null>(null);
  const aside = useRef<HTMLElement>(null);
  const sentinel = useRef<HTMLDivElement>(null);
  useFocusTrap(aside, drawer && open && confirming === null, onClose);

  // The open chat stays in view in the list: on opening the app, or when a turn moves it up.
  const selectedIndex = chats.contexts.findIndex((c) => c.id === selectedId);
  useEffect(() => {
    if (selectedId === null || hidden) return;
    aside.current
      ?.querySelector(`[data-testid="chat-item"][data-context-id="${CSS.escape(selectedId)}"]`)
      ?.scrollIntoView({ block: "nearest" });
  }, [selectedId, selectedIndex, hidden]);

  // After a delete, focus goes to the chat that took its place (or the one above, or the
  // message box), not back to the page.
  const remove = async (chat: ContextSummary) => {
    const list = chats.contexts;
    const at = list.findIndex((c) => c.id === chat.id);
    const next = list[at + 1] ?? list[at - 1] ?? null;
    await onDelete(chat.id);
    const target = next
      ? aside.current?.querySelector<HTMLElement>(`[data-context-id="${CSS.escape(next.id)}"] [data-testid="chat-item-open"]`)
      : document.getElementById("composer-input");
    target?.focus();
  };

  // Escape in the search box clears it, then leaves it for the message box.
  const onSearchKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key !== "Escape" || e.shiftKey) return;
    if (query !== "") {
      e.preventDefault();
      e.stopPropagation();
      onQuery("");
    } else if (!drawer) {
      e.preventDefault();
      document.getElementById("composer-input")?.focus();
    }
  };

  // Endless scrolling: the next page loads when the end of the list comes into view.
  const { hasMore, loadMore } = chats;
  useEffect(() => {
    const end = sentinel.current;
    if (!end || !hasMore) return;
    const observer = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && loadMore());
    observer.observe(end);
    return () => observer.disconnect();
  }, [hasMore, loadMore, chats.contexts.length]);

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
          <div className="sidebar-head-tools">
            <button className="button" data-testid="new-chat" onClick={onNew} aria-keyshortcuts="Control+Shift+O" title="New chat (Ctrl+Shift+O)">
              + New chat
            </button>
            {drawer && (
              <button className="icon-button" data-testid="drawer-close" aria-label="Close the chat list" onClick={onClose}>
                ×
              </button>
            )}
          </div>
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
            onKeyDown={onSearchKey}
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
                    <span className="chat-item-title">
                      <Matched title={chatTitle(c)} query={query} />
                    </span>
                    {searchable(query) && c.snippet?.messageId && (
                      <span className="chat-item-match" data-testid="chat-item-match">
                        <SnippetText snippet={c.snippet} />
                      </span>
                    )}
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
        <div className="sidebar-foot">
          <label className="theme-label" htmlFor="theme-select">
            Theme
          </label>
          <select
            id="theme-select"
            className="theme-select"
            data-testid="theme-select"
            value={theme}
            onChange={(e) => onTheme(e.target.value as Theme)}
          >
            <option value="system">System</option>
            <option value="light">Light</option>
            <option value="dark">Dark</option>
          </select>
        </div>
        {confirming && (
          <ConfirmDialog
            title="Delete this chat?"
            body={`“${chatTitle(confirming)}” and all of its messages will be deleted.`}
            confirmLabel="Delete"
            onConfirm={() => {
              void remove(confirming);
              setConfirming(null);
            }}
            onCancel={() => setConfirming(null)}
          />
        )}
      </aside>
    </>
  );
}
