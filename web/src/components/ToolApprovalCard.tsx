import { useState } from "react";
import type { ToolCall } from "@chatsync/sync-wasm";

interface Props {
  calls: ToolCall[];
  onSubmit(approvedIds: string[]): Promise<void>;
}

type Decision = "approve" | "deny";

export const formatArguments = (args: unknown) => JSON.stringify(args, null, 2) ?? "";

export function ToolApprovalCard({ calls, onSubmit }: Props) {
  const [decisions, setDecisions] = useState<Record<string, Decision>>({});
  const [submitting, setSubmitting] = useState(false);
  const undecided = calls.filter((c) => !decisions[c.id]).length;

  const decide = (id: string, decision: Decision) => setDecisions((d) => ({ ...d, [id]: decision }));

  const submit = async () => {
    setSubmitting(true);
    try {
      // Calls not approved here are denied by the server, so only the approvals travel.
      await onSubmit(calls.filter((c) => decisions[c.id] === "approve").map((c) => c.id));
    } finally {
      setSubmitting(false);
    }
  };

  return (
    <section className="approval" data-testid="tool-approval" aria-label="Tool approval">
      <header className="approval-head">
        <strong>The assistant wants to use {calls.length === 1 ? "a tool" : `${calls.length} tools`}</strong>
        <span className="muted">Approve or deny each call.</span>
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
              aria-pressed={decisions[call.id] === "approve"}
              onClick={() => decide(call.id, "approve")}
            >
              Approve
            </button>
            <button
              className={decisions[call.id] === "deny" ? "active deny" : ""}
              data-testid="tool-deny"
              aria-pressed={decisions[call.id] === "deny"}
              onClick={() => decide(call.id, "deny")}
            >
              Deny
            </button>
          </div>
        </div>
      ))}
      <footer className="approval-foot">
        <button
          className="button button-primary"
          data-testid="tool-submit"
          disabled={undecided > 0 || submitting}
          onClick={submit}
        >
          {submitting ? "Submitting…" : "Submit"}
        </button>
        {undecided > 0 && <span className="muted">{undecided} left to decide</span>}
      </footer>
    </section>
  );
}
