interface Props {
  title: string;
  onUndo(): void;
  /** Closes the toast: the delete is carried out now. */
  onDismiss(): void;
}

/** "Deleted … Undo" for a few seconds after a chat was deleted. */
export function UndoToast({ title, onUndo, onDismiss }: Props) {
  return (
    <div className="toast" role="status" data-testid="undo-toast">
      <span>Deleted “{title.length > 40 ? `${title.slice(0, 40)}…` : title}”.</span>
      <button className="link-button" data-testid="undo-delete" onClick={onUndo}>
        Undo
      </button>
      <button className="icon-button" data-testid="undo-dismiss" aria-label="Delete it now" title="Delete it now" onClick={onDismiss}>
        ×
      </button>
    </div>
  );
}
