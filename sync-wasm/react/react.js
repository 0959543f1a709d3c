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

/**
 * How long a client whose component went away waits before it is freed: StrictMode's
 * simulated unmount is followed by the mount in the same task, which cancels the free.
 */
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
    let mounted = true;
    const kept = owned.current;
    if (kept !== null) {
      clearTimeout(kept.freeTimer);
      kept.freeTimer = null;
      kept.sync.start();
      return stopAndFreeLater;
    }
    loadChatSync().then(
      () => {
        if (!mounted) return;
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
        if (mounted) setError(e);
      },
    );
    function stopAndFreeLater() {
      mounted = false;
      const entry = owned.current;
      if (entry === null) return;
      entry.sync.stop();
      entry.freeTimer = setTimeout(() => {
        if (owned.current !== entry || entry.freeTimer === null) return;
        owned.current = null;
        // A component kept with its state (React's <Activity>) makes a new client when shown.
        setSync((current) => (current === entry.sync ? null : current));
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

  // The client of this render, unless the component has unmounted since and it was freed
  // (a promise may settle after that): then null, and nothing calls into it.
  const live = useCallback(() => (sync !== null && owned.current?.sync === sync ? sync : null), [sync]);

  const setContextId = useCallback(
    (id) => {
      selectedRef.current = id;
      setSelected(id);
      live()?.setContext(id);
    },
    [live],
  );

  const actions = useMemo(() => {
    const call = (f) => {
      const client = live();
      if (client === null) {
        const why = sync === null ? "is not ready yet (see `ready`)" : "was freed: its component unmounted";
        return Promise.reject(new Error(`the chat client ${why}`));
      }
      return f(client);
    };
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
        live()?.discardMessage(clientMessageId);
      },
      approveTools: (toolCallIds) => call((s) => s.approveTools(toolCallIds)),
      cancel: () => call((s) => s.cancel()),
      cancelQueued: (messageId) => call((s) => s.cancelQueued(messageId)),
      retry: () => call((s) => s.retry()),
      editMessage: (messageId, content) => call((s) => s.editMessage(messageId, content)),
      regenerate: (messageId) => call((s) => s.regenerate(messageId)),
      switchBranch: (messageId, siblingIndex) => call((s) => s.switchBranch(messageId, siblingIndex)),
      refetch: () => {
        live()?.refetch();
      },
    };
  }, [sync, live, setContextId]);

  return { ready: sync !== null, error, sync, view, contextId: selected, setContextId, actions };
}
