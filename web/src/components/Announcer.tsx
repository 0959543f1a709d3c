import { useEffect, useRef, useState } from "react";
import type { ViewMessage } from "@chatsync/sync-wasm";

const SPOKEN_CHARS = 200;

/**
 * Tells screen readers about a finished reply, once, through a polite live region. The
 * message list itself is not live: it would read every streamed word.
 */
export function Announcer({ contextId, messages }: { contextId: string | null; messages: ViewMessage[] }) {
  const [said, setSaid] = useState("");
  const seen = useRef<{ contextId: string | null; ids: Set<string> } | null>(null);

  useEffect(() => {
    const done = messages.filter((m) => m.role === "assistant" && m.status !== "streaming");
    // What a chat already held when it was opened is not news.
    if (seen.current?.contextId !== contextId) {
      seen.current = { contextId, ids: new Set(done.map((m) => m.id)) };
      return;
    }
    const fresh = done.filter((m) => !seen.current!.ids.has(m.id));
    for (const m of fresh) seen.current.ids.add(m.id);
    const last = fresh[fresh.length - 1];
    if (last) setSaid(`Reply: ${last.text.slice(0, SPOKEN_CHARS)}`);
  }, [contextId, messages]);

  return (
    <div className="visually-hidden" role="status" aria-live="polite" data-testid="announcer">
      {said}
    </div>
  );
}
