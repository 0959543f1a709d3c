import { useCallback, useMemo, useRef, useState } from "react";
import { isAuthError } from "./useAuth";

/** Sync errors arrive as plain `SyncError` objects, other failures as `Error`s. */
export function describeError(e: unknown): string {
  if (typeof e === "object" && e !== null && "message" in e && typeof e.message === "string") {
    return e.message;
  }
  return String(e);
}

/** An error about the app as a whole (the chat list, a rename), shown whichever chat is open. */
export const APP = "app";
/** Whose error it is: a chat's id, "" for the new chat not yet created, or `APP`. */
export type ErrorScope = string;
const scopeOf = (chatId: string | null): ErrorScope => chatId ?? "";

/** How many chats may hold an error at once; the oldest goes first. */
const MAX_SCOPES = 50;

export interface ErrorReport {
  /** The open chat's error, or the app's. */
  error: string | null;
  /** Shows `message` for the chat open now, or for `scope`. */
  show(message: string, scope?: ErrorScope): void;
  dismiss(): void;
  /**
   * Runs an action and shows its failure, prefixed with what the user was doing, instead of
   * dropping it, in the chat that was open when it started (or `scope`); a success clears
   * that chat's stale error. A refused token shows no error here: the sync module reports
   * it (`onAuthError`) and the sign-in asks for a new one.
   */
  run(what: string, action: () => Promise<unknown>, scope?: ErrorScope): Promise<void>;
}

/** Errors belong to the chat they happened in: switching chats leaves them there. */
export function useErrorReport(chatId: string | null): ErrorReport {
  const [errors, setErrors] = useState<ReadonlyMap<ErrorScope, string>>(new Map());
  const current = useRef(scopeOf(chatId));
  current.current = scopeOf(chatId);

  const set = useCallback((scope: ErrorScope, message: string | null) => {
    setErrors((old) => {
      if (message === null && !old.has(scope)) return old;
      const next = new Map(old);
      next.delete(scope);
      if (message !== null) next.set(scope, message);
      while (next.size > MAX_SCOPES) next.delete(next.keys().next().value!);
      return next;
    });
  }, []);
  const show = useCallback((message: string, scope?: ErrorScope) => set(scope ?? current.current, message), [set]);
  const dismiss = useCallback(() => {
    set(current.current, null);
    set(APP, null);
  }, [set]);
  const run = useCallback(
    async (what: string, action: () => Promise<unknown>, scope?: ErrorScope) => {
      const owner = scope ?? current.current;
      try {
        await action();
        set(owner, null);
      } catch (e) {
        if (!isAuthError(e)) set(owner, `${what}: ${describeError(e)}`);
      }
    },
    [set],
  );
  const error = errors.get(scopeOf(chatId)) ?? errors.get(APP) ?? null;
  return useMemo(() => ({ error, show, dismiss, run }), [error, show, dismiss, run]);
}
