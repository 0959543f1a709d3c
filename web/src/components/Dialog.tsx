import { useRef, type ReactNode } from "react";
import { useFocusTrap } from "../hooks/useFocusTrap";

interface Props {
  /** `alertdialog` for a question that interrupts, `dialog` otherwise. */
  role: "dialog" | "alertdialog";
  labelledBy: string;
  describedBy: string;
  testId: string;
  /** Escape and a click outside; a dialog that must be answered passes null. */
  onClose: (() => void) | null;
  children: ReactNode;
}

const stay = () => {};

/**
 * A modal dialog over the app: focus starts on the element marked `data-autofocus` (or the
 * first control), stays inside, and returns to what had it when the dialog closes.
 */
export function Dialog({ role, labelledBy, describedBy, testId, onClose, children }: Props) {
  const dialog = useRef<HTMLDivElement>(null);
  useFocusTrap(dialog, true, onClose ?? stay);
  return (
    <div className="overlay" onClick={onClose ?? undefined}>
      <div
        ref={dialog}
        className="dialog"
        role={role}
        aria-modal="true"
        aria-labelledby={labelledBy}
        aria-describedby={describedBy}
        data-testid={testId}
        onClick={(e) => e.stopPropagation()}
      >
        {children}
      </div>
    </div>
  );
}
