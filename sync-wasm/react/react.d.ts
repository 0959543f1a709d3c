import type { ChatSync, ChatSyncOptions, ChatView } from "../sync_wasm.js";

export interface ChatActions {
  sendMessage(text: string): Promise<void>;
  retryMessage(clientMessageId: string): Promise<void>;
  discardMessage(clientMessageId: string): void;
  approveTools(toolCallIds: string[]): Promise<void>;
  cancel(): Promise<void>;
  /** Drops a queued message before its turn starts. */
  cancelQueued(messageId: string): Promise<void>;
  retry(): Promise<void>;
  /** A new version of a user message; it becomes the active branch and its turn runs. */
  editMessage(messageId: string, content: string): Promise<void>;
  /** A new reply beside an assistant message (default: the last one). */
  regenerate(messageId?: string): Promise<void>;
  /** Shows the branch of this message (its newest leaf), or of its version at `siblingIndex`. */
  switchBranch(messageId: string, siblingIndex?: number): Promise<void>;
  refetch(): void;
}

export interface ChatStateSync {
  /**
   * The component's client (create, list and delete contexts through it too). During
   * server rendering there is none and this is `null`: use it in effects and event
   * handlers, which only run in the browser.
   */
  sync: ChatSync;
  view: ChatView;
  actions: ChatActions;
}

/**
 * Keeps one chat in sync: `useSyncExternalStore` over a `ChatSync` created for the
 * component (after `init()`), started on mount and freed on unmount. `options` are read
 * once; on the server the view is the empty, stopped one.
 */
export function useChatStateSync(
  contextId: string | null,
  options?: ChatSyncOptions,
): ChatStateSync;
