import type { ChatView, ViewMessage } from "@chatsync/sync-wasm";

/** The messages a person sees: the history and its queue, without system prompts. */
const shown = (view: ChatView) => view.messages.filter((m) => m.role !== "system");

const WHO: Record<ViewMessage["role"], string> = { user: "You", assistant: "Assistant", tool: "Tool", system: "System" };

/** The chat as a Markdown document: a heading per message, replies as they were written. */
export function chatAsMarkdown(title: string, view: ChatView): string {
  const parts = [`# ${title}`, ""];
  for (const m of shown(view)) {
    parts.push(`## ${WHO[m.role]}${m.status === "complete" ? "" : ` (${m.status})`}`, "", `_${m.createdAt}_`, "");
    if (m.text !== "") parts.push(m.role === "user" || m.role === "tool" ? quote(m.text) : m.text, "");
    for (const call of m.toolCalls ?? []) {
      const result = call.result === undefined ? "" : `: ${call.result}`;
      parts.push(`- Tool \`${call.name}\` ${JSON.stringify(call.arguments)}, ${call.status}${result}`);
    }
    if (m.toolCalls?.length) parts.push("");
  }
  return `${parts.join("\n").trimEnd()}\n`;
}

/** What a person typed is quoted as typed, so markdown in it stays text. */
const quote = (text: string) =>
  text
    .split("\n")
    .map((line) => `> ${line.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, "\\$&")}`)
    .join("\n");

/** The chat as JSON, in the server's own field names. */
export function chatAsJson(title: string, view: ChatView): string {
  return `${JSON.stringify(
    {
      context_id: view.contextId,
      title,
      exported_at: new Date().toISOString(),
      messages: shown(view).map((m) => ({
        id: m.id,
        role: m.role,
        text: m.text,
        status: m.status,
        created_at: m.createdAt,
        ...(m.toolCalls?.length ? { tool_calls: m.toolCalls } : {}),
        ...(m.toolCallId ? { tool_call_id: m.toolCallId } : {}),
      })),
    },
    null,
    2,
  )}\n`;
}

/** Saves `text` as a file through the browser's download; nothing leaves the page. */
export function download(name: string, type: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

/** A file name from the chat's title: letters, digits and dashes. */
export const fileName = (title: string, ext: string) =>
  `${title.replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "").slice(0, 60) || "chat"}.${ext}`;
