import type {
  ChatSync,
  ChatSyncOptions,
  ChatView,
  ContextSummary,
  CreateContextOptions,
} from "../sync_wasm.js";

/**
 * What the component can do to its chat. A promise rejects with a `SyncError` when the
 * request fails; before the client is ready (`ready` false, and always during server
 * rendering) or after the component unmounted it rejects at once with an `Error`, and
 * `discardMessage`/`refetch` do nothing.
 */
export interface ChatActions {
  /**
   * Creates a chat and switches this component's client to it at once, so a
   * `sendMessage` right after goes into it. Resolves with the new chat's summary.
   */
  createContext(options?: CreateContextOptions): Promise<ContextSummary>;
  /** Shows the message at once as pending, then sends it into the current chat. */
  sendMessage(text: string): Promise<void>;
  /** Sends a failed message again, by its `clientMessageId` (from the view). */
  retryMessage(clientMessageId: string): Promise<void>;
  /** Drops a failed message, by its `clientMessageId`. */
  discardMessage(clientMessageId: string): void;
  /** Approves these tool calls and denies every other pending one. */
  approveTools(toolCallIds: string[]): Promise<void>;
  /** Stops the running turn. */
  cancel(): Promise<void>;
  /** Drops a queued message (by its server `id`) before its turn starts. */
  cancelQueued(messageId: string): Promise<void>;
  /** Runs the failed turn again. */
  retry(): Promise<void>;
  /** A new version of a user message; it becomes the active branch and its turn runs. */
  editMessage(messageId: string, content: string): Promise<void>;
  /** A new reply beside an assistant message (default: the last one). */
  regenerate(messageId?: string): Promise<void>;
  /** Shows the branch of this message (its newest leaf), or of its version at `siblingIndex`. */
  switchBranch(messageId: string, siblingIndex?: number): Promise<void>;
  /** Drops the version held and asks the server for the whole state now. */
  refetch(): void;
}

/** What `useChatStateSync` returns. */
export interface ChatStateSync {
  /**
   * True once the wasm module is loaded and this component's client exists. False during
   * server rendering, during hydration and the first client render, and if loading failed.
   */
  ready: boolean;
  /** Why the module could not be loaded or the client not created (bad options); else null. */
  error: unknown;
  /**
   * The component's client, for what `actions` does not cover (`listContexts`,
   * `renameContext`, `deleteContext`, ...). `null` until `ready`: always during server
   * rendering and the first client render. It is freed when the component unmounts.
   */
  sync: ChatSync | null;
  /**
   * The chat as the UI renders it. Until `ready` (and on the server) it is the empty,
   * stopped view: `contextId` null, no messages, `sync: "stopped"`.
   */
  view: ChatView;
  /** The chat this component shows: the `contextId` argument, or the last `setContextId`. */
  contextId: string | null;
  /**
   * Shows another chat (or none) at once: a `sendMessage` right after goes into it. A new
   * `contextId` argument switches again.
   */
  setContextId(contextId: string | null): void;
  actions: ChatActions;
}

/** Options of the hook: those of `new ChatSync`, with `baseUrl` defaulting to `"/api"`. */
export type ChatStateSyncOptions = Omit<ChatSyncOptions, "baseUrl" | "contextId"> & {
  baseUrl?: string;
};

/**
 * Keeps one chat in sync for a component: loads the wasm module (once per page), creates
 * a `ChatSync` in an effect, starts it, and frees it when the component unmounts.
 * StrictMode's mount, unmount, mount keeps the same client. `options` are read once, when
 * the client is created; `contextId` may change at any time.
 */
export function useChatStateSync(
  contextId?: string | null,
  options?: ChatStateSyncOptions,
): ChatStateSync;

export { loadChatSync } from "../load.js";
