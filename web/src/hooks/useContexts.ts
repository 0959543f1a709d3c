import { useCallback, useEffect, useRef, useState } from "react";
import { isAuthError } from "./useAuth";
import { describeError } from "./useErrorReport";
import type { ChatSync, ContextList, ContextSummary, CreateContextOptions } from "@chatsync/sync-wasm";

export interface Contexts {
  contexts: ContextSummary[];
  loaded: boolean;
  /** More pages exist (never while searching: a search answers its best matches at once). */
  hasMore: boolean;
  loadMore(): void;
  create(options: CreateContextOptions): Promise<ContextSummary>;
  rename(contextId: string, title: string): Promise<void>;
  remove(contextId: string): Promise<void>;
}

export const PAGE_SIZE = 30;
/** The server's largest page; a refresh re-reads at most this many chats. */
const MAX_PAGE = 200;
const SEARCH_LIMIT = 50;

/** The other tabs of this app hear about chats created, renamed or deleted here. */
const CHANNEL = "chatsync-contexts";

/**
 * The list follows use: the chat with the latest activity first. The server pages in that
 * order (`order: "updated"`); a chat active again since its page was read moves up here.
 */
const byActivity = (list: ContextSummary[]) =>
  [...list].sort((a, b) => Date.parse(b.updatedAt) - Date.parse(a.updatedAt) || (a.id < b.id ? 1 : -1));

/** A search needs a letter or a digit; anything else would only be refused by the server. */
export const searchable = (query: string) => /[\p{L}\p{N}]/u.test(query);

/** The client, once the sync module has made it. */
function ready(sync: ChatSync | null): ChatSync {
  if (!sync) throw new Error("the chat client is still loading");
  return sync;
}

/**
 * The sidebar's chat list: latest activity first, a page at a time, or the matches of a
 * search (best first).
 * It is re-read when `refreshKey` changes (the open chat's status), when another tab
 * changes a chat, and after every change made here.
 */
export function useContexts(
  sync: ChatSync | null,
  refreshKey: string,
  query: string,
  onError: (message: string) => void,
): Contexts {
  const [contexts, setContexts] = useState<ContextSummary[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [pinged, setPinged] = useState(0);
  const loading = useRef(false);
  // How many chats the list shows, so a refresh keeps the pages scrolled into view.
  const shown = useRef(0);
  shown.current = contexts.length;
  const searching = searchable(query);

  const channel = useRef<BroadcastChannel | null>(null);
  useEffect(() => {
    const c = new BroadcastChannel(CHANNEL);
    c.onmessage = () => setPinged((n) => n + 1);
    channel.current = c;
    return () => c.close();
  }, []);
  const tellOtherTabs = useCallback(() => channel.current?.postMessage("changed"), []);

  useEffect(() => {
    // Only the newest answer counts: an older list, arriving late, would hide a chat that
    // was just created.
    let stale = false;
    if (!sync) return;
    const request: Promise<ContextList> = searching
      ? sync.listContexts({ query, limit: SEARCH_LIMIT })
      : sync.listContexts({ limit: Math.min(MAX_PAGE, Math.max(PAGE_SIZE, shown.current)), order: "updated" });
    request
      .then(
        (list) => {
          if (stale) return;
          setContexts(searching ? list.contexts : byActivity(list.contexts));
          setCursor(list.nextCursor);
        },
        (e: unknown) => stale || isAuthError(e) || onError(`Could not load the chat list: ${describeError(e)}`),
      )
      .finally(() => stale || setLoaded(true));
    return () => {
      stale = true;
    };
  }, [sync, onError, refreshKey, pinged, query, searching]);

  const loadMore = useCallback(() => {
    if (!sync || !cursor || searching || loading.current) return;
    loading.current = true;
    sync
      .listContexts({ limit: PAGE_SIZE, cursor, order: "updated" })
      .then(
        (page) => {
          setContexts((list) => {
            const known = new Set(list.map((c) => c.id));
            return byActivity([...list, ...page.contexts.filter((c) => !known.has(c.id))]);
          });
          setCursor(page.nextCursor);
        },
        (e: unknown) => isAuthError(e) || onError(`Could not load more chats: ${describeError(e)}`),
      )
      .finally(() => (loading.current = false));
  }, [sync, cursor, searching, onError]);

  const create = useCallback(
    async (options: CreateContextOptions) => {
      const created = await ready(sync).createContext(options);
      setContexts((list) => [created, ...list.filter((c) => c.id !== created.id)]);
      tellOtherTabs();
      return created;
    },
    [sync, tellOtherTabs],
  );

  const rename = useCallback(
    async (contextId: string, title: string) => {
      const renamed = await ready(sync).renameContext(contextId, title);
      setContexts((list) => list.map((c) => (c.id === contextId ? renamed : c)));
      tellOtherTabs();
    },
    [sync, tellOtherTabs],
  );

  const remove = useCallback(
    async (contextId: string) => {
      await ready(sync).deleteContext(contextId);
      setContexts((list) => list.filter((c) => c.id !== contextId));
      tellOtherTabs();
    },
    [sync, tellOtherTabs],
  );

  return { contexts, loaded, hasMore: cursor !== null && !searching, loadMore, create, rename, remove };
}
