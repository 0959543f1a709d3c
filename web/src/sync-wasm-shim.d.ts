// Stopgap until sync-wasm/pkg exists: the contract's TypeScript surface. Delete once the real package installs.
declare module "@chatsync/sync-wasm" {
  export type Role = "system" | "user" | "assistant" | "tool";
  export type ServerStatus = "idle" | "running" | "awaiting_approval" | "failed";
  export interface ToolCall { id: string; name: string; arguments: unknown;
    status: "pending" | "approved" | "denied" | "running" | "completed" | "failed"; result?: string }
  export interface ViewMessage { id: string; clientMessageId?: string; role: Role; text: string;
    toolCalls?: ToolCall[]; toolCallId?: string;
    status: "streaming" | "complete" | "cancelled" | "pending" | "failed";
    createdAt: string; version: number; error?: string }
  export type SyncPhase = "stopped" | "syncing" | "synced" | "paused" | "offline" | "deleted";
  export interface SyncError { kind: "network" | "http" | "deleted" | "invalid"; status?: number; code?: string; message: string }
  export interface ChatView { contextId: string | null; messages: ViewMessage[]; status: ServerStatus | null;
    state: string | null; error: string | null; version: number; pendingToolCalls: ToolCall[];
    pollIntervalMs: number; paused: boolean; sync: SyncPhase; lastError: SyncError | null; nextPollAt: number | null }
  export interface ChatSyncOptions { baseUrl: string; contextId?: string | null; baseIntervalMs?: number; maxIntervalMs?: number;
    backoffFactor?: number; unchangedPollsBeforeBackoff?: number; burstPolls?: number; headers?: Record<string, string> }
  export interface ContextConfig { modelId: string | null; mode: string | null; systemPrompt: string | null }
  export interface ContextSummary { id: string; title: string; status: ServerStatus; state: string; messageCount: number;
    version: number; createdAt: string; updatedAt: string; config: ContextConfig }
  export interface ContextList { contexts: ContextSummary[]; total: number; nextCursor: string | null }
  export interface CreateContextOptions { title?: string | null; modelId?: string | null; mode?: string | null; systemPrompt?: string | null }
  export class ChatSync {
    constructor(options: ChatSyncOptions);
    subscribe(listener: (view: ChatView) => void): () => void;
    getView(): ChatView;
    start(): void; stop(): void; setContext(contextId: string | null): void;
    sendMessage(text: string): Promise<void>;
    retryMessage(clientMessageId: string): Promise<void>;
    discardMessage(clientMessageId: string): void;
    approveTools(toolCallIds: string[]): Promise<void>;
    cancel(): Promise<void>; retry(): Promise<void>;
    createContext(options?: CreateContextOptions): Promise<ContextSummary>;
    listContexts(options?: { limit?: number; cursor?: string | null }): Promise<ContextList>;
    deleteContext(contextId: string): Promise<void>;
    getChatState(): Promise<unknown>;
    free(): void;
  }
  export default function init(module_or_path?: unknown): Promise<unknown>;
}
