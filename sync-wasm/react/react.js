"use client";
// The React binding of @chatsync/sync-wasm: it loads the wasm module itself, keeps one
// ChatSync per component (created in an effect, never during render) and hands its views
// out through useSyncExternalStore. Plain JavaScript so the package needs no build step
// for it.
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { ChatSync } from "../sync_wasm.js";
import { loadChatSync } from "../load.js";

export { loadChatSync };

/** What the server renders, and what hydration starts from: no chat loaded yet. */
const SERVER_VIEW = Object.freeze({
  contextId: null,
  messages: Object.freeze([]),
  status: null,
  state: null,
  error: null,
  version: 0,
  pendingToolCalls: Object.freeze([]),
  pollIntervalMs: 0,
  paused: false,
  sync: "stopped",
  lastError: null,
  nextPollAt: null,
});

/** The clients whose component went away; freed unless StrictMode mounts it again. */
const FREE_AFTER_MS = 0;

/**
 * Keeps one chat in sync for a component. See react.d.ts and the package README.
 */
export function useChatStateSync(contextId = null, options = undefined) {
  const [selected, setSelected] = useState(contextId);
  // The argument is the chat to show whenever it changes (a controlled prop); the hook's
  // own setContextId switches too, at once.
  const [followed, setFollowed] = useState(contextId);
  if (followed !== contextId) {
    setFollowed(contextId);
    setSelected(contextId);
  }
  const selectedRef = useRef(selected);
  selectedRef.current = selected;
  const optionsRef = useRef(options);
  const [sync, setSync] = useState(null);
  const [error, setError] = useState(null);
  // The client outlives StrictMode's simulated unmount: its cleanup only stops it and
  // schedules the free, which the mount right after cancels. No render or effect of this
  // component can see a freed client.
  const owned = useRef(null);

  useEffect(() => {
    let live = true;
    const kept = owned.current;
    if (kept !== null) {
      clearTimeout(kept.freeTimer);
      kept.freeTimer = null;
      kept.sync.start();
      return stopAndFreeLater;
    }
    loadChatSync().then(
      () => {
        if (!live) return;
        let client;
        try {
          client = new ChatSync({ baseUrl: "/api", ...optionsRef.current, contextId: selectedRef.current });
        } catch (e) {
          setError(e);
          return;
        }
        owned.current = { sync: client, freeTimer: null };
        client.start();
        setSync(client);
      },
      (e) => {
        if (live) setError(e);
      },
    );
    function stopAndFreeLater() {
      live = false;
      const entry = owned.current;
      if (entry === null) return;
      entry.sync.stop();
      entry.freeTimer = setTimeout(() => {
        if (owned.current !== entry || entry.freeTimer === null) return;
        owned.current = null;
        entry.sync.free();
      }, FREE_AFTER_MS);
    }
    return stopAndFreeLater;
  }, []);

  useEffect(() => {
    // A client switched already (by setContextId or createContext) is left alone, or the
    // optimistic message just sent into the new chat would be dropped.
    if (sync !== null && sync.getView().contextId !== selected) sync.setContext(selected);
  }, [sync, selected]);

  // useSyncExternalStore compares snapshots by identity: hand back the very object the
  // last notification delivered, not a fresh getView() copy on every call.
  const latest = useRef(null);
  const subscribe = useCallback(
    (onChange) => {
      if (sync === null) return () => {};
      latest.current = null;
      return sync.subscribe((view) => {
        latest.current = view;
        onChange();
      });
    },
    [sync],
  );
  const getSnapshot = useCallback(() => {
    if (sync === null) return SERVER_VIEW;
    return (latest.current ??= sync.getView());
  }, [sync]);
  const view = useSyncExternalStore(subscribe, getSnapshot, () => SERVER_VIEW);

  const setContextId = useCallback(
    (id) => {
      selectedRef.current = id;
      setSelected(id);
      sync?.setContext(id);
    },
    [sync],
  );

  const actions = useMemo(() => {
    const need = () => {
      if (sync === null) {
        return Promise.reject(new Error("the chat client is not ready yet (see `ready`)"));
      }
      return null;
    };
    const call = (f) => need() ?? f(sync);
    return {
      createContext: (createOptions) =>
        call(async (s) => {
          const chat = await s.createContext(createOptions);
          setContextId(chat.id);
          return chat;
        }),
      sendMessage: (text) => call((s) => s.sendMessage(text)),
      retryMessage: (clientMessageId) => call((s) => s.retryMessage(clientMessageId)),
      discardMessage: (clientMessageId) => {
        sync?.discardMessage(clientMessageId);
      },
      approveTools: (toolCallIds) => call((s) => s.approveTools(toolCallIds)),
      cancel: () => call((s) => s.cancel()),
      cancelQueued: (messageId) => call((s) => s.cancelQueued(messageId)),
      retry: () => call((s) => s.retry()),
      editMessage: (messageId, content) => call((s) => s.editMessage(messageId, content)),
      regenerate: (messageId) => call((s) => s.regenerate(messageId)),
      switchBranch: (messageId, siblingIndex) => call((s) => s.switchBranch(messageId, siblingIndex)),
      refetch: () => {
        sync?.refetch();
      },
    };
  }, [sync, setContextId]);

  return { ready: sync !== null, error, sync, view, contextId: selected, setContextId, actions };
}
