import { useEffect, useRef, useState } from "react";
import type { ViewMessage } from "@chatsync/sync-wasm";

const SPOKEN_CHARS = 300;

/**
 * The words a reader sees in a rendered message: no markdown source (table pipes, fences),
 * no button labels. Read from the DOM the reply was rendered into.
 */
export function renderedText(messageId: string): string | null {
  const node = document.querySelector(`[data-message-id="${CSS.escape(messageId)}"] [data-testid="message-text"]`);
  if (!node) return null;
  const copy = node.cloneNode(true) as HTMLElement;
  for (const skip of copy.querySelectorAll("button, [aria-hidden='true'], .code-lang")) skip.remove();
  // Blocks and cells become separate words, not one run-on string.
  for (const block of copy.querySelectorAll("p, li, tr, td, th, pre, h1, h2, h3, h4, h5, h6, blockquote")) {
    block.append(" ");
  }
  return (copy.textContent ?? "").replace(/\s+/g, " ").trim();
}

interface Props {
  contextId: string | null;
  messages: ViewMessage[];
  /** The chat's first state has arrived (its history is what "opening" it shows). */
  loaded: boolean;
  /** What the chat asks of the user now (a tool approval), or null. */
  request: string | null;
}

/**
 * Tells screen readers, through a polite live region, about a finished reply (its rendered
 * text, once) and a request for approval. The message list itself is not live: it would
 * read every streamed word. What a chat already held when it was opened is not news.
 */
export function Announcer({ contextId, messages, loaded, request }: Props) {
  const [said, setSaid] = useState("");
  const seen = useRef<{ contextId: string | null; ids: Set<string>; primed: boolean } | null>(null);

  useEffect(() => {
    const done = messages.filter((m) => m.role === "assistant" && m.status !== "streaming");
    if (seen.current?.contextId !== contextId) {
      seen.current = { contextId, ids: new Set(), primed: false };
      setSaid("");
    }
    const record = seen.current;
    if (!record.primed) {
      // Until the chat's history has arrived, what shows is that history. A message the
      // user just sent here (a new chat's first) ends that early: replies after it are news.
      for (const m of done) record.ids.add(m.id);
      record.primed = loaded || messages.some((m) => m.status === "pending");
      return;
    }
    const fresh = done.filter((m) => !record.ids.has(m.id));
    for (const m of fresh) record.ids.add(m.id);
    const last = fresh[fresh.length - 1];
    if (!last) return;
    const text = renderedText(last.id) ?? last.text;
    setSaid(`Assistant: ${text.slice(0, SPOKEN_CHARS)}${text.length > SPOKEN_CHARS ? "…" : ""}`);
  }, [contextId, messages, loaded]);

  useEffect(() => {
    if (request) setSaid(request);
  }, [request]);

  return (
    <div className="visually-hidden" role="status" aria-live="polite" data-testid="announcer">
      {said}
    </div>
  );
}
