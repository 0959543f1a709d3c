import { useCallback, useEffect, useRef, useState } from "react";

/** How long a deleted chat can be brought back before the server is asked to delete it. */
export const UNDO_MS = 6000;

export interface PendingDelete {
  id: string;
  title: string;
}

/**
 * A delete waits `UNDO_MS` before it is carried out, so Undo can bring the chat back; one
 * at a time (a second delete carries out the first at once), and `flush` carries it out now.
 * A delete still waiting when the page closes does not happen.
 */
export function useUndoableDelete(commit: (id: string) => Promise<void>) {
  const [pending, setPending] = useState<PendingDelete | null>(null);
  const latest = useRef<PendingDelete | null>(null);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const carryOut = useRef(commit);
  carryOut.current = commit;

  const settle = useCallback((run: boolean) => {
    clearTimeout(timer.current);
    const doomed = latest.current;
    latest.current = null;
    setPending(null);
    if (doomed && run) void carryOut.current(doomed.id);
  }, []);
  const flush = useCallback(() => settle(true), [settle]);
  const undo = useCallback(() => settle(false), [settle]);
  const schedule = useCallback(
    (doomed: PendingDelete) => {
      settle(true);
      latest.current = doomed;
      setPending(doomed);
      timer.current = setTimeout(flush, UNDO_MS);
    },
    [settle, flush],
  );
  useEffect(() => () => clearTimeout(timer.current), []);
  return { pending, schedule, undo, flush };
}
