import { useEffect, useLayoutEffect, useRef, useState, type ReactNode } from "react";
import type { ViewMessage } from "@chatsync/sync-wasm";
import type { BranchActions } from "./BranchControls";
import { Message } from "./Message";

interface Props {
  messages: ViewMessage[];
  running: boolean;
  /** Changes with each message this tab sends (or retries): the list goes down to it. */
  sends: number;
  onRetry(clientMessageId: string): void;
  onDiscard(clientMessageId: string): void;
  branch: BranchActions | null;
  /** Cards that belong after the last message (tool approval, a failed turn). */
  children?: ReactNode;
}

/** How close to the end still counts as "at the bottom", so a stray pixel does not unpin. */
const BOTTOM_SLACK_PX = 48;

export function MessageList({ messages, running, sends, onRetry, onDiscard, branch, children }: Props) {
  const scroller = useRef<HTMLDivElement>(null);
  // Read from scroll events, i.e. before new content lands, which is what decides pinning.
  const atBottom = useRef(true);
  const [unseen, setUnseen] = useState(false);

  const scrollToBottom = () => {
    const el = scroller.current;
    if (el) el.scrollTop = el.scrollHeight;
    atBottom.current = true;
    setUnseen(false);
  };

  // Any growth (a new message, a streamed chunk, an approval card) changes the scroll height.
  const last = messages[messages.length - 1];
  const contentKey = `${messages.length}:${last?.id}:${last?.text.length}:${last?.status}:${children ? 1 : 0}`;
  // The reader's own new message always brings the list down to it; one sent from another
  // tab is news like any other.
  const sendsSeen = useRef(sends);
  useLayoutEffect(() => {
    const justSent = sendsSeen.current !== sends;
    sendsSeen.current = sends;
    if (atBottom.current || justSent) scrollToBottom();
    else setUnseen(true);
  }, [contentKey, sends]);

  // The badge can appear before the reader has scrolled at all on a short list; clear it
  // when the list stops overflowing.
  useEffect(() => {
    const el = scroller.current;
    if (el && el.scrollHeight <= el.clientHeight) setUnseen(false);
  });

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight <= BOTTOM_SLACK_PX;
    if (atBottom.current) setUnseen(false);
  };

  // A tool result already shows on its call's line under the assistant message, so the
  // separate tool message would only repeat it.
  const shownCalls = new Set(messages.flatMap((m) => m.toolCalls?.filter((c) => c.result !== undefined) ?? []).map((c) => c.id));
  const visible = messages.filter(
    (m) => m.role !== "system" && !(m.role === "tool" && m.toolCallId !== undefined && shownCalls.has(m.toolCallId)),
  );
  const lastIsUser = last?.role === "user";

  return (
    <div className="messages-wrap">
      <div className="messages" ref={scroller} onScroll={onScroll} data-testid="message-list">
        <div className="messages-inner">
          {visible.length === 0 && (
            <div className="empty" data-testid="empty-chat">
              <h2>How can I help?</h2>
              <p className="muted">
                Try <code>/tool calculator {'{"expression":"2+3"}'}</code> or <code>/slow 20</code>.
              </p>
            </div>
          )}
          {visible.map((m) => (
            <Message key={m.clientMessageId ?? m.id} message={m} onRetry={onRetry} onDiscard={onDiscard} branch={branch} />
          ))}
          {running && lastIsUser && (
            <div className="thinking" data-testid="thinking" aria-label="The assistant is thinking">
              <span />
              <span />
              <span />
            </div>
          )}
          {children}
        </div>
      </div>
      {unseen && (
        <button className="new-messages" data-testid="new-messages-badge" onClick={scrollToBottom}>
          New messages ↓
        </button>
      )}
    </div>
  );
}
