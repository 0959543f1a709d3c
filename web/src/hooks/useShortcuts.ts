import { useEffect, useRef } from "react";

export interface Shortcuts {
  /** Ctrl+Shift+O (Cmd+Shift+O on a Mac), as in other chat apps. */
  newChat(): void;
  /** Shift+Escape. */
  focusComposer(): void;
  /** Escape, while a reply runs; null when there is nothing to stop. */
  stop: (() => void) | null;
  /** `?`: the list of shortcuts. */
  showHelp(): void;
}

/** The list the `?` sheet shows: keys as a person presses them, and what they do. */
export const SHORTCUT_LIST: [keys: string, what: string][] = [
  ["Enter", "Send the message (on a touch screen Enter adds a line; use Send)"],
  ["Shift+Enter", "New line in the message"],
  ["Escape", "Stop the running reply (from the message box or the chat)"],
  ["Shift+Escape", "Go to the message box"],
  ["Ctrl+Shift+O (⌘+Shift+O)", "New chat"],
  ["Escape in the search box", "Clear the search, then leave the box"],
  ["?", "This list"],
];

/** A field that handles its own keys (Escape clears or leaves it, `?` is typed). */
const isField = (target: EventTarget | null) =>
  target instanceof HTMLElement && (target.isContentEditable || target.matches("input, textarea, select"));
const isComposer = (target: EventTarget | null) => target instanceof HTMLElement && target.id === "composer-input";
/** Focus is in the chat (or nowhere in particular), not in the chat list or its settings. */
const inChat = (target: EventTarget | null) =>
  target === document.body || (target instanceof HTMLElement && target.closest("main.chat") !== null);

/**
 * The app's keyboard shortcuts act where focus is: Escape stops a reply from the composer
 * or the chat, never from another field (the search box, a rename, an edit), whose own
 * Escape wins, as a dialog's does (it stops the event first), nor from the chat list. Null turns them off (while
 * the app is inert under the sign-in).
 */
export function useShortcuts(shortcuts: Shortcuts | null) {
  const latest = useRef(shortcuts);
  latest.current = shortcuts;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (!latest.current || e.defaultPrevented) return;
      const { newChat, focusComposer, stop, showHelp } = latest.current;
      if ((e.ctrlKey || e.metaKey) && e.shiftKey && e.key.toLowerCase() === "o") {
        e.preventDefault();
        newChat();
      } else if (e.key === "Escape" && e.shiftKey) {
        e.preventDefault();
        focusComposer();
      } else if (e.key === "Escape" && stop && (isComposer(e.target) || (inChat(e.target) && !isField(e.target)))) {
        e.preventDefault();
        stop();
      } else if (e.key === "?" && !e.ctrlKey && !e.metaKey && !e.altKey && !isField(e.target)) {
        e.preventDefault();
        showHelp();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
}
