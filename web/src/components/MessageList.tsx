import { useEffect, useLayoutEffect, useRef, useState, type ReactNode } from "react";
import type { ViewMessage } from "@chatsync/sync-wasm";
import type { BranchActions } from "./BranchControls";
import { Message } from "./Message";

interface Props {
  messages: ViewMessage[];
  running: boolean;
  /** Changes with each message this tab sends (or retries): the list goes down to it. */
  sends: number;
  /** The server cannot be reached now: failed sends wait in the offline queue. */
  offline: boolean;
  onRetry(clientMessageId: string): void;
  onDiscard(clientMessageId: string): void;
  branch: BranchActions | null;
  /** Puts an example into the message box (the empty chat offers a few). */
  onExample(text: string): void;
  /** Cards that belong after the last message (tool approval, a failed turn). */
  children?: ReactNode;
}

/** How close to the end still counts as "at the bottom", so a stray pixel does not unpin. */
const BOTTOM_SLACK_PX = 48;
/** A long chat shows its latest messages; "Show earlier" adds this many more each time. */
export const PAGE_MESSAGES = 50;

const EXAMPLES = [
  "Explain what a vector clock is, in two sentences",
  '/tool calculator {"expression":"2+3"}',
  "/markdown",
  "/slow 20",
];

/**
 * For the last reply of each turn (the replies between two messages of the user, tool
 * results in between), the turn's whole text and its first reply. One pass.
 */
function turnsOf(visible: ViewMessage[]) {
  const turns = new Map<string, { text: string; firstReplyId: string }>();
  let replies: ViewMessage[] = [];
  const close = () => {
    if (replies.length === 0) return;
    const text = replies.map((r) => r.text.trim()).filter(Boolean).join("\n\n");
    turns.set(replies[replies.length - 1].id, { text, firstReplyId: replies[0].id });
    replies = [];
  };
  for (const m of visible) {
    if (m.role === "user") close();
    else if (m.role === "assistant") replies.push(m);
  }
  close();
  return turns;
}

export function MessageList({ messages, running, sends, offline, onRetry, onDiscard, branch, onExample, children }: Props) {
  const scroller = useRef<HTMLDivElement>(null);
  // Read from scroll events, i.e. before new content lands, which is what decides pinning.
  const atBottom = useRef(true);
  const [away, setAway] = useState(false);
  const [unseen, setUnseen] = useState(false);
  const [shown, setShown] = useState(PAGE_MESSAGES);

  const scrollToBottom = () => {
    const el = scroller.current;
    if (el) el.scrollTop = el.scrollHeight;
    atBottom.current = true;
    setAway(false);
    setUnseen(false);
  };

  // Any growth (a new message, a streamed chunk) changes the scroll height.
  const last = messages[messages.length - 1];
  const contentKey = `${messages.length}:${last?.id}:${last?.text.length}:${last?.status}`;
  // The reader's own new message always brings the list down to it; one sent from another
  // tab is news like any other.
  const sendsSeen = useRef(sends);
  useLayoutEffect(() => {
    const justSent = sendsSeen.current !== sends;
    sendsSeen.current = sends;
    if (atBottom.current || justSent) scrollToBottom();
    else setUnseen(true);
  }, [contentKey, sends]);

  // Earlier messages shown above keep the reader's place.
  const heightBefore = useRef<number | null>(null);
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && heightBefore.current !== null) el.scrollTop += el.scrollHeight - heightBefore.current;
    heightBefore.current = null;
  }, [shown]);

  // The badge can appear before the reader has scrolled at all on a short list; clear it
  // when the list stops overflowing.
  useEffect(() => {
    const el = scroller.current;
    if (el && el.scrollHeight <= el.clientHeight) {
      setUnseen(false);
      setAway(false);
    }
  });

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight <= BOTTOM_SLACK_PX;
    setAway(!atBottom.current);
    if (atBottom.current) setUnseen(false);
  };

  // A tool result already shows on its call's line under the assistant message (a denial
  // as its "denied" badge), so the separate tool message would only repeat it.
  const shownCalls = new Set(
    messages
      .flatMap((m) => m.toolCalls?.filter((c) => c.result !== undefined || c.status === "denied") ?? [])
      .map((c) => c.id),
  );
  const visible = messages.filter(
    (m) => m.role !== "system" && !(m.role === "tool" && m.toolCallId !== undefined && shownCalls.has(m.toolCallId)),
  );
  const turns = turnsOf(visible);
  const hidden = Math.max(0, visible.length - shown);
  const lastIsUser = last?.role === "user";

  return (
    <div className="messages-wrap">
      <div className="messages" ref={scroller} onScroll={onScroll} data-testid="message-list">
        <div className="messages-inner">
          {visible.length === 0 && (
            <div className="empty" data-testid="empty-chat">
              <h2>How can I help?</h2>
              <p className="muted">Start with one of these, or type your own:</p>
              <ul className="examples">
                {EXAMPLES.map((example) => (
                  <li key={example}>
                    <button type="button" className="example" data-testid="example" onClick={() => onExample(example)}>
                      {example}
                    </button>
                  </li>
                ))}
              </ul>
            </div>
          )}
          {hidden > 0 && (
            <button
              type="button"
              className="button show-earlier"
              data-testid="show-earlier"
              onClick={() => {
                heightBefore.current = scroller.current?.scrollHeight ?? null;
                setShown((n) => n + PAGE_MESSAGES);
              }}
            >
              Show earlier messages ({hidden} more)
            </button>
          )}
          {visible.slice(hidden).map((m, i, shownList) => (
            <Message
              latest={i === shownList.length - 1}
              key={m.clientMessageId ?? m.id}
              message={m}
              offline={offline}
              onRetry={onRetry}
              onDiscard={onDiscard}
              branch={branch}
              turn={turns.get(m.id) ?? null}
            />
          ))}
          {running && lastIsUser && (
            <div className="thinking" data-testid="thinking" role="img" aria-label="The assistant is thinking">
              <span />
              <span />
              <span />
            </div>
          )}
          {children}
        </div>
      </div>
      {(unseen || away) && (
        <button className="new-messages" data-testid={unseen ? "new-messages-badge" : "jump-to-latest"} onClick={scrollToBottom}>
          {unseen ? "New messages ↓" : "Jump to latest ↓"}
        </button>
      )}
    </div>
  );
}
