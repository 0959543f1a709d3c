import { useEffect, useState } from "react";

interface Props {
  text: string;
  label: string;
  testId: string;
}

const COPIED_MS = 1500;

/** Copies `text` to the clipboard and says so for a moment, also to screen readers. */
export function CopyButton({ text, label, testId }: Props) {
  const [copied, setCopied] = useState(false);
  useEffect(() => {
    if (!copied) return;
    const timer = setTimeout(() => setCopied(false), COPIED_MS);
    return () => clearTimeout(timer);
  }, [copied]);
  const copy = () => navigator.clipboard.writeText(text).then(() => setCopied(true));
  return (
    <button type="button" className="copy-button" data-testid={testId} aria-label={label} onClick={() => void copy()}>
      <span aria-hidden="true">{copied ? "Copied" : "Copy"}</span>
      <span className="visually-hidden" role="status">{copied ? "Copied" : ""}</span>
    </button>
  );
}
