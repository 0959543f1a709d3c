import { useCallback, useEffect, useState } from "react";

const readHash = () => decodeURIComponent(window.location.hash.replace(/^#\/?/, "")) || null;

/** The open chat lives in the URL hash, so a reload or a second tab opens the same chat. */
export function useSelectedContext(): [string | null, (id: string | null) => void] {
  const [selected, setSelected] = useState<string | null>(readHash);

  useEffect(() => {
    const onHashChange = () => setSelected(readHash());
    window.addEventListener("hashchange", onHashChange);
    return () => window.removeEventListener("hashchange", onHashChange);
  }, []);

  const select = useCallback((id: string | null) => {
    // replaceState keeps Back from walking through every chat that was opened.
    const url = id ? `#${encodeURIComponent(id)}` : window.location.pathname + window.location.search;
    window.history.replaceState(null, "", url);
    setSelected(id);
  }, []);

  return [selected, select];
}
