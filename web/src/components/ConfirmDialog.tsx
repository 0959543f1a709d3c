import { useRef } from "react";
import { useFocusTrap } from "../hooks/useFocusTrap";

interface Props {
  title: string;
  body: string;
  confirmLabel: string;
  onConfirm(): void;
  onCancel(): void;
}

export function ConfirmDialog({ title, body, confirmLabel, onConfirm, onCancel }: Props) {
  const dialog = useRef<HTMLDivElement>(null);
  // Focus starts on the safe choice, stays inside, Escape backs out, and it returns to the
  // control that opened the dialog.
  useFocusTrap(dialog, true, onCancel);

  return (
    <div className="overlay" onClick={onCancel}>
      <div
        ref={dialog}
        className="dialog"
        role="alertdialog"
        aria-modal="true"
        aria-labelledby="confirm-title"
        aria-describedby="confirm-body"
        data-testid="confirm-dialog"
        onClick={(e) => e.stopPropagation()}
      >
        <h2 id="confirm-title">{title}</h2>
        <p id="confirm-body">{body}</p>
        <div className="dialog-actions">
          <button className="button" data-testid="confirm-cancel" data-autofocus onClick={onCancel}>
            Cancel
          </button>
          <button className="button button-danger" data-testid="confirm-ok" onClick={onConfirm}>
            {confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}
