import { useCallback, useEffect, useState } from "react";

const readHash = () => decodeURIComponent(window.location.hash.replace(/^#\/?/, "")) || null;

/** The URL names a chat to open. */
export const chatInUrl = () => readHash() !== null;

const writeHash = (id: string | null) =>
  // replaceState keeps Back from walking through every chat that was opened.
  window.history.replaceState(null, "", id ? `#${encodeURIComponent(id)}` : window.location.pathname + window.location.search);

/**
 * The open chat lives in the URL hash, so a reload or a second tab opens the same chat.
 * With none in the URL, `fallback` names the chat to open (read once, at mount).
 */
export function useSelectedContext(fallback: () => string | null): [string | null, (id: string | null) => void] {
  const [selected, setSelected] = useState<string | null>(() => readHash() ?? fallback());
  // A chat opened from the fallback goes into the URL too.
  useEffect(() => {
    if (selected !== null && readHash() === null) writeHash(selected);
  }, [selected]);

  useEffect(() => {
    const onHashChange = () => setSelected(readHash());
    window.addEventListener("hashchange", onHashChange);
    return () => window.removeEventListener("hashchange", onHashChange);
  }, []);

  const select = useCallback((id: string | null) => {
    writeHash(id);
    setSelected(id);
  }, []);

  return [selected, select];
}
