import { useCallback, useState } from "react";

/** Sync errors arrive as plain `SyncError` objects, other failures as `Error`s. */
export function describeError(e: unknown): string {
  if (typeof e === "object" && e !== null && "message" in e && typeof e.message === "string") {
    return e.message;
  }
  return String(e);
}

export interface ErrorReport {
  error: string | null;
  report(e: unknown): void;
  dismiss(): void;
  /** Runs an action and shows its failure instead of dropping it; a success clears a stale error. */
  run(action: () => Promise<unknown>): Promise<void>;
}

export function useErrorReport(): ErrorReport {
  const [error, setError] = useState<string | null>(null);
  const report = useCallback((e: unknown) => setError(describeError(e)), []);
  const dismiss = useCallback(() => setError(null), []);
  const run = useCallback(
    async (action: () => Promise<unknown>) => {
      try {
        await action();
        setError(null);
      } catch (e) {
        report(e);
      }
    },
    [report],
  );
  return { error, report, dismiss, run };
}
