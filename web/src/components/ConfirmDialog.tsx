import { Dialog } from "./Dialog";

interface Props {
  title: string;
  body: string;
  confirmLabel: string;
  onConfirm(): void;
  onCancel(): void;
}

export function ConfirmDialog({ title, body, confirmLabel, onConfirm, onCancel }: Props) {
  // Focus starts on the safe choice, stays inside, Escape backs out, and it returns to the
  // control that opened the dialog.
  return (
    <Dialog role="alertdialog" labelledBy="confirm-title" describedBy="confirm-body" testId="confirm-dialog" onClose={onCancel}>
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
    </Dialog>
  );
}
