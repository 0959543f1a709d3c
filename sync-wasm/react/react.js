// The React binding of @chatsync/sync-wasm: one ChatSync per component, its views through
// useSyncExternalStore. Plain JavaScript so the package needs no build step for it.
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { ChatSync } from "../sync_wasm.js";

/** What the server renders, and what hydration starts from: no chat loaded yet. */
const SERVER_VIEW = Object.freeze({
  contextId: null,
  messages: [],
  status: null,
  state: null,
  error: null,
  version: 0,
  pendingToolCalls: [],
  pollIntervalMs: 0,
  paused: false,
  sync: "stopped",
  lastError: null,
  nextPollAt: null,
});

const inBrowser = typeof window !== "undefined";

/**
 * Keeps one chat in sync for a component. The client is created on first render (the
 * wasm module must be initialized by then: `await init()` before rendering), started by
 * an effect and freed when the component unmounts. Options are read when the client is
 * created. StrictMode's mount, unmount and mount again gets a fresh client, since the
 * first one was freed.
 */
export function useChatStateSync(contextId, options = { baseUrl: "/api" }) {
  const create = () => (inBrowser ? { sync: new ChatSync(options), freed: false } : null);
  const [first] = useState(create);
  const client = useRef(first);
  const [, remount] = useState(0);
  const sync = client.current?.sync ?? null;

  // useSyncExternalStore compares snapshots by identity: hand back the very object the
  // last notification delivered, not a fresh getView() copy on every call.
  const latest = useRef(null);
  const subscribe = useCallback(
    (onChange) => {
      if (!sync) return () => {};
      latest.current = null;
      return sync.subscribe((view) => {
        latest.current = view;
        onChange();
      });
    },
    [sync],
  );
  const getSnapshot = useCallback(() => {
    if (!sync) return SERVER_VIEW;
    return (latest.current ??= sync.getView());
  }, [sync]);
  const view = useSyncExternalStore(subscribe, getSnapshot, () => SERVER_VIEW);

  useEffect(() => {
    let entry = client.current;
    if (entry === null || entry.freed) {
      entry = client.current = create();
      remount((n) => n + 1);
    }
    entry.sync.start();
    return () => {
      entry.freed = true;
      entry.sync.free();
    };
    // Options are read once, when the client is created.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    // A caller may already have switched the client (to send into a chat it just
    // created); switching again would drop that chat's optimistic message.
    if (sync && sync.getView().contextId !== contextId) sync.setContext(contextId);
  }, [sync, contextId]);

  const actions = useMemo(() => {
    const need = () => {
      if (!sync) throw new Error("the chat client exists only in the browser");
      return sync;
    };
    return {
      sendMessage: (text) => need().sendMessage(text),
      retryMessage: (id) => need().retryMessage(id),
      discardMessage: (id) => need().discardMessage(id),
      approveTools: (ids) => need().approveTools(ids),
      cancel: () => need().cancel(),
      cancelQueued: (id) => need().cancelQueued(id),
      retry: () => need().retry(),
      editMessage: (id, content) => need().editMessage(id, content),
      regenerate: (id) => need().regenerate(id),
      switchBranch: (id, siblingIndex) => need().switchBranch(id, siblingIndex),
      refetch: () => need().refetch(),
    };
  }, [sync]);

  return { sync, view, actions };
}
