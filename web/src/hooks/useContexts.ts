import { useCallback, useEffect, useState } from "react";
import { describeError } from "./useErrorReport";
import type { ChatSync, ContextSummary, CreateContextOptions } from "@chatsync/sync-wasm";

export interface Contexts {
  contexts: ContextSummary[];
  loaded: boolean;
  create(options: CreateContextOptions): Promise<ContextSummary>;
  remove(contextId: string): Promise<void>;
}

// Timestamps are RFC 3339 with as many fraction digits as needed, so compare them as
// times, not as text.
const byRecentActivity = (a: ContextSummary, b: ContextSummary) =>
  Date.parse(b.updatedAt) - Date.parse(a.updatedAt);

/**
 * The sidebar's chat list. It is re-read when `refreshKey` changes (the open chat's status),
 * so titles and counts follow finished turns without a poller of its own.
 */
export function useContexts(sync: ChatSync, refreshKey: string, onError: (message: string) => void): Contexts {
  const [contexts, setContexts] = useState<ContextSummary[]>([]);
  const [loaded, setLoaded] = useState(false);

  useEffect(() => {
    // Only the newest answer counts: an older list, arriving late, would hide a chat that
    // was just created.
    let stale = false;
    sync
      .listContexts({ limit: 100 })
      .then(
        (list) => stale || setContexts([...list.contexts].sort(byRecentActivity)),
        (e: unknown) => stale || onError(`Could not load the chat list: ${describeError(e)}`),
      )
      .finally(() => stale || setLoaded(true));
    return () => {
      stale = true;
    };
  }, [sync, onError, refreshKey]);

  const create = useCallback(
    async (options: CreateContextOptions) => {
      const created = await sync.createContext(options);
      setContexts((list) => [created, ...list.filter((c) => c.id !== created.id)]);
      return created;
    },
    [sync],
  );

  const remove = useCallback(
    async (contextId: string) => {
      await sync.deleteContext(contextId);
      setContexts((list) => list.filter((c) => c.id !== contextId));
    },
    [sync],
  );

  return { contexts, loaded, create, remove };
}
