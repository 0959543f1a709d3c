import { useEffect, useState } from "react";

interface Props {
  text: string;
  /** What is copied, for the accessible name ("Copy code"); the button shows "Copy". */
  what: string;
  testId: string;
}

const COPIED_MS = 1500;

/** Copies `text` to the clipboard and says so for a moment, also to screen readers. */
export function CopyButton({ text, what, testId }: Props) {
  const [copied, setCopied] = useState(false);
  useEffect(() => {
    if (!copied) return;
    const timer = setTimeout(() => setCopied(false), COPIED_MS);
    return () => clearTimeout(timer);
  }, [copied]);
  const copy = () => navigator.clipboard.writeText(text).then(() => setCopied(true));
  return (
    // The visible word starts the accessible name, so voice control finds the button by it.
    <button type="button" className="copy-button" data-testid={testId} onClick={() => void copy()}>
      {copied ? "Copied" : "Copy"}
      <span className="visually-hidden"> {what}</span>
    </button>
  );
}
