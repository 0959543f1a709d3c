import { SHORTCUT_LIST } from "../hooks/useShortcuts";
import { Dialog } from "./Dialog";

/** `?`: every keyboard shortcut on one sheet. */
export function ShortcutSheet({ onClose }: { onClose(): void }) {
  return (
    <Dialog role="dialog" labelledBy="shortcuts-title" describedBy="shortcuts-body" testId="shortcut-sheet" onClose={onClose}>
      <h2 id="shortcuts-title">Keyboard shortcuts</h2>
      <p id="shortcuts-body">Shortcuts act where focus is: inside a field, Escape belongs to that field.</p>
      <dl className="shortcut-list">
        {SHORTCUT_LIST.map(([keys, what]) => (
          <div key={keys} className="shortcut-row">
            <dt>
              <kbd>{keys}</kbd>
            </dt>
            <dd>{what}</dd>
          </div>
        ))}
      </dl>
      <div className="dialog-actions">
        <button className="button" data-testid="shortcut-close" data-autofocus onClick={onClose}>
          Close
        </button>
      </div>
    </Dialog>
  );
}
