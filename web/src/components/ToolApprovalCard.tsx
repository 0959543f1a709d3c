import { useEffect, useRef, useState } from "react";
import type { ToolCall } from "@chatsync/sync-wasm";
import { useScrolledIntoView } from "../hooks/useScrolledIntoView";

interface Props {
  calls: ToolCall[];
  onSubmit(approvedIds: string[]): Promise<void>;
}

type Decision = "approve" | "deny";

export const formatArguments = (args: unknown) => JSON.stringify(args, null, 2) ?? "";

/** What a screen reader hears when the card appears (through the chat's live region). */
export const describeRequest = (calls: ToolCall[]) =>
  `The assistant asks to use ${calls.map((c) => c.name).join(", ")}. Approve or deny.`;

/**
 * The model asks to run tools. Focus moves here when it appears (unless the user is busy
 * elsewhere, in the chat list), so the next Tab reaches the decision. One call is approved
 * or denied in one action; several are decided one by one, then submitted together.
 */
export function ToolApprovalCard({ calls, onSubmit }: Props) {
  const [decisions, setDecisions] = useState<Record<string, Decision>>({});
  const [submitting, setSubmitting] = useState(false);
  const card = useRef<HTMLElement>(null);
  useScrolledIntoView(card);
  useEffect(() => {
    const el = card.current;
    const active = document.activeElement;
    // Not away from the chat list or a dialog: only from nowhere, or from the chat itself.
    const idle = !active || active === document.body || active.closest("main") !== null;
    if (el && idle) el.focus({ preventScroll: true });
  }, []);
  const single = calls.length === 1;
  const undecided = calls.filter((c) => !decisions[c.id]).length;

  const submit = async (approved: string[]) => {
    setSubmitting(true);
    try {
      // Calls not approved here are denied by the server, so only the approvals travel.
      await onSubmit(approved);
    } finally {
      setSubmitting(false);
    }
  };
  const decide = (call: ToolCall, decision: Decision) => {
    if (single) void submit(decision === "approve" ? [call.id] : []);
    else setDecisions((d) => ({ ...d, [call.id]: decision }));
  };

  return (
    <section
      ref={card}
      className="approval"
      data-testid="tool-approval"
      aria-labelledby="approval-title"
      aria-describedby="approval-hint"
      tabIndex={-1}
    >
      <header className="approval-head">
        <h2 id="approval-title" className="approval-title">
          The assistant wants to use {single ? "a tool" : `${calls.length} tools`}
        </h2>
        <span id="approval-hint" className="muted">
          {single ? "Approve to run it, or deny." : "Approve or deny each call, then submit."}
        </span>
      </header>
      {calls.map((call) => (
        <div className="tool-call" key={call.id} data-testid="tool-call" data-tool-name={call.name} data-tool-call-id={call.id}>
          <div className="tool-call-main">
            <code className="tool-name">{call.name}</code>
            <pre className="tool-args" data-testid="tool-args">{formatArguments(call.arguments)}</pre>
          </div>
          <div className="segmented" role="group" aria-label={`Decision for ${call.name}`}>
            <button
              className={decisions[call.id] === "approve" ? "active approve" : ""}
              data-testid="tool-approve"
              aria-pressed={single ? undefined : decisions[call.id] === "approve"}
              disabled={submitting}
              onClick={() => decide(call, "approve")}
            >
              {single ? "Approve and run" : "Approve"}
            </button>
            <button
              className={decisions[call.id] === "deny" ? "active deny" : ""}
              data-testid="tool-deny"
              aria-pressed={single ? undefined : decisions[call.id] === "deny"}
              disabled={submitting}
              onClick={() => decide(call, "deny")}
            >
              Deny
            </button>
          </div>
        </div>
      ))}
      {!single && (
        <footer className="approval-foot">
          <button
            className="button button-primary"
            data-testid="tool-submit"
            disabled={undecided > 0 || submitting}
            onClick={() => void submit(calls.filter((c) => decisions[c.id] === "approve").map((c) => c.id))}
          >
            {submitting ? "Submitting…" : "Submit"}
          </button>
          {undecided > 0 && <span className="muted">{undecided} left to decide</span>}
        </footer>
      )}
    </section>
  );
}
