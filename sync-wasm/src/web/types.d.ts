export type Role = "system" | "user" | "assistant" | "tool";
/**
 * `awaiting_tool_output`: a call to a tool that an OpenAI API client declared waits for that
 * client's output (the state `AwaitingToolOutput`); a person can only cancel it.
 */
export type ServerStatus = "idle" | "running" | "awaiting_approval" | "awaiting_tool_output" | "failed";
export interface ToolCall {
  id: string;
  name: string;
  arguments: unknown;
  status: "pending" | "approved" | "denied" | "running" | "completed" | "failed";
  result?: string;
}
export interface ViewMessage {
  id: string;
  clientMessageId?: string;
  role: Role;
  text: string;
  toolCalls?: ToolCall[];
  toolCallId?: string;
  /** `pending` and `failed` only occur on local optimistic messages. */
  status: "streaming" | "complete" | "cancelled" | "queued" | "pending" | "failed";
  createdAt: string;
  version: number;
  error?: string;
  /** The message this one follows in the chat's tree; `null` for the first. */
  parentId: string | null;
  /** 0-based position among the versions with the same parent. */
  siblingIndex: number;
  /** How many versions share the parent; more than 1 after an edit or a regenerate. */
  siblingCount: number;
}
export type SyncPhase = "stopped" | "syncing" | "synced" | "paused" | "offline" | "deleted" | "error";
export interface SyncError {
  kind: "network" | "auth" | "http" | "deleted" | "invalid";
  status?: number;
  code?: string;
  message: string;
  /** What the server's `Retry-After` asked for, in milliseconds. */
  retryAfterMs?: number;
}
export interface ChatView {
  contextId: string | null;
  messages: ViewMessage[];
  status: ServerStatus | null;
  state: string | null;
  error: string | null;
  version: number;
  /** The calls that wait: for approval (`awaiting_approval`) or for a client's output (`awaiting_tool_output`). */
  pendingToolCalls: ToolCall[];
  pollIntervalMs: number;
  paused: boolean;
  sync: SyncPhase;
  lastError: SyncError | null;
  /** Epoch milliseconds of the next scheduled poll. */
  nextPollAt: number | null;
}
export interface ChatSyncOptions {
  baseUrl: string;
  contextId?: string | null;
  baseIntervalMs?: number;
  maxIntervalMs?: number;
  backoffFactor?: number;
  unchangedPollsBeforeBackoff?: number;
  burstPolls?: number;
  headers?: Record<string, string>;
  /** `"long-poll"` (default): the server holds each poll until something changes. */
  mode?: "long-poll" | "interval";
  /** How long a long-poll may be held, 1 to 30000 ms (default 25000). */
  waitMs?: number;
  /** A request unanswered after this long (plus `waitMs` when held) is aborted (default 15000). */
  requestTimeoutMs?: number;
  /** Called before every request; the token is sent as `Authorization: Bearer`. */
  getToken?: () => string | Promise<string>;
  /** Called when the server refuses the credentials (401/403); polling has stopped. */
  onAuthError?: (error: SyncError) => void;
  /** Used instead of the global `fetch`. */
  fetch?: (request: Request) => Promise<Response>;
  credentials?: "omit" | "same-origin" | "include";
  /** Whose queue and tab election this is: another user's queued sends are not shown or replayed. */
  userId?: string;
}
export interface ContextConfig {
  modelId: string | null;
  mode: string | null;
  systemPrompt: string | null;
}
export interface ContextSummary {
  id: string;
  title: string;
  status: ServerStatus;
  state: string;
  messageCount: number;
  version: number;
  createdAt: string;
  updatedAt: string;
  config: ContextConfig;
}
export interface ContextList {
  contexts: ContextSummary[];
  total: number;
  nextCursor: string | null;
}
export interface CreateContextOptions {
  title?: string | null;
  modelId?: string | null;
  mode?: string | null;
  systemPrompt?: string | null;
}
export interface ListContextsOptions {
  limit?: number;
  cursor?: string | null;
  /** Search words: the best matches, ranked, without a next cursor. */
  query?: string | null;
  /** Newest created first (the default), or the latest activity first; not with `query`. */
  order?: "created" | "updated" | null;
}
