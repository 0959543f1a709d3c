import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { ChatSync, type ChatView } from "@chatsync/sync-wasm";

/** Same origin: the backend serves both the app and the API. */
const API_BASE = "/api";

export interface ChatActions {
  sendMessage(text: string): Promise<void>;
  retryMessage(clientMessageId: string): Promise<void>;
  discardMessage(clientMessageId: string): void;
  approveTools(toolCallIds: string[]): Promise<void>;
  cancel(): Promise<void>;
  /** Drops a queued message before its turn starts. */
  cancelQueued(messageId: string): Promise<void>;
  retry(): Promise<void>;
}

export interface ChatStateSync {
  /** The page's one sync client; context create/list/delete go through it too. */
  sync: ChatSync;
  view: ChatView;
  actions: ChatActions;
}

/**
 * Keeps a read-only view of one chat in sync with the server. The sync module owns polling,
 * backoff, visibility and reconciliation; React only renders the views it publishes.
 */
export function useChatStateSync(contextId: string | null): ChatStateSync {
  // One client for the page's lifetime; switching chats re-targets it instead of rebuilding it.
  const [sync] = useState(() => new ChatSync({ baseUrl: API_BASE }));

  // useSyncExternalStore compares snapshots by identity, so getSnapshot must hand back the
  // very object the last notification delivered, not a fresh getView() copy on every call.
  const latest = useRef<ChatView | null>(null);
  const subscribe = useCallback(
    (onChange: () => void) =>
      sync.subscribe((view) => {
        latest.current = view;
        onChange();
      }),
    [sync],
  );
  const getSnapshot = useCallback(() => (latest.current ??= sync.getView()), [sync]);
  const view = useSyncExternalStore(subscribe, getSnapshot);

  useEffect(() => {
    // A caller may already have switched the client (to send into a chat it just created);
    // switching again would drop that chat's optimistic message.
    if (sync.getView().contextId !== contextId) sync.setContext(contextId);
  }, [sync, contextId]);

  useEffect(() => {
    sync.start();
    return () => sync.stop();
  }, [sync]);

  const actions = useMemo<ChatActions>(
    () => ({
      sendMessage: (text) => sync.sendMessage(text),
      retryMessage: (id) => sync.retryMessage(id),
      discardMessage: (id) => sync.discardMessage(id),
      approveTools: (ids) => sync.approveTools(ids),
      cancel: () => sync.cancel(),
      cancelQueued: (id) => sync.cancelQueued(id),
      retry: () => sync.retry(),
    }),
    [sync],
  );

  return { sync, view, actions };
}
