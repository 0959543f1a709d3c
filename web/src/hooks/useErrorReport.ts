import { useCallback, useState } from "react";
import { isAuthError } from "./useAuth";

/** Sync errors arrive as plain `SyncError` objects, other failures as `Error`s. */
export function describeError(e: unknown): string {
  if (typeof e === "object" && e !== null && "message" in e && typeof e.message === "string") {
    return e.message;
  }
  return String(e);
}

export interface ErrorReport {
  error: string | null;
  show(message: string): void;
  dismiss(): void;
  /**
   * Runs an action and shows its failure, prefixed with what the user was doing, instead of
   * dropping it; a success clears a stale error. A refused token shows no error here: the
   * sync module reports it (`onAuthError`) and the sign-in asks for a new one.
   */
  run(what: string, action: () => Promise<unknown>): Promise<void>;
}

export function useErrorReport(): ErrorReport {
  const [error, setError] = useState<string | null>(null);
  const dismiss = useCallback(() => setError(null), []);
  const run = useCallback(async (what: string, action: () => Promise<unknown>) => {
    try {
      await action();
      setError(null);
    } catch (e) {
      if (!isAuthError(e)) setError(`${what}: ${describeError(e)}`);
    }
  }, []);
  return { error, show: setError, dismiss, run };
}
