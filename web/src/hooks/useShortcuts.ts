import { useEffect, useRef } from "react";

export interface Shortcuts {
  /** Ctrl+Shift+O (Cmd+Shift+O on a Mac), as in other chat apps. */
  newChat(): void;
  /** Shift+Escape. */
  focusComposer(): void;
  /** Escape, while a reply runs; null when there is nothing to stop. */
  stop: (() => void) | null;
}

/**
 * The app's keyboard shortcuts; a dialog's own Escape wins (it stops the event first).
 * Null turns them off (while the app is inert under the sign-in).
 */
export function useShortcuts(shortcuts: Shortcuts | null) {
  const latest = useRef(shortcuts);
  latest.current = shortcuts;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (!latest.current) return;
      const { newChat, focusComposer, stop } = latest.current;
      if ((e.ctrlKey || e.metaKey) && e.shiftKey && e.key.toLowerCase() === "o") {
        e.preventDefault();
        newChat();
      } else if (e.key === "Escape" && e.shiftKey) {
        e.preventDefault();
        focusComposer();
      } else if (e.key === "Escape" && stop && !e.defaultPrevented) {
        e.preventDefault();
        stop();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
}
