import { useEffect, useState } from "react";
import type { ChatView } from "@chatsync/sync-wasm";

/** Re-renders every second while `active`, for countdowns. */
function useNow(active: boolean): number {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    if (!active) return;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [active]);
  return now;
}

function describe(view: ChatView, now: number): string {
  switch (view.sync) {
    case "synced":
      return "Synced";
    case "syncing":
      return "Syncing…";
    case "paused":
      return "Paused while hidden";
    case "deleted":
      return "Chat deleted";
    case "stopped":
      return view.contextId ? "Not syncing" : "";
    case "error":
      return view.lastError?.kind === "auth" ? "Signed out" : `Not syncing: ${view.lastError?.message ?? "error"}`;
    case "offline": {
      const retry =
        view.nextPollAt === null
          ? ""
          : ` · retrying in ${Math.max(0, Math.ceil((view.nextPollAt - now) / 1000))}s`;
      return `Offline${retry}`;
    }
  }
}

export function SyncStatus({ view }: { view: ChatView }) {
  const now = useNow(view.sync === "offline");
  const text = describe(view, now);
  const detail = view.lastError?.message;
  return (
    <div
      className={`sync-status sync-${view.sync}`}
      data-testid="sync-status"
      data-phase={view.sync}
      role="status"
      title={detail}
    >
      {text && <span className="sync-dot" aria-hidden="true" />}
      <span className="sync-label">{text}</span>
    </div>
  );
}
