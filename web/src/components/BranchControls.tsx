import { useLayoutEffect, useRef, useState, type KeyboardEvent } from "react";
import type { ViewMessage } from "@chatsync/sync-wasm";

/** What a message can do to the chat's tree; absent while a turn runs. */
export interface BranchActions {
  edit(messageId: string, content: string): void;
  regenerate(messageId: string): void;
  /** Shows the version of the message at `siblingIndex` (and its newest branch). */
  switchTo(messageId: string, siblingIndex: number): void;
}

/** "< 2/3 >": the versions of a message that was edited or regenerated. */
export function BranchSwitcher({ message: m, actions }: { message: ViewMessage; actions: BranchActions | null }) {
  if (m.siblingCount <= 1) return null;
  const at = m.siblingIndex;
  const what = m.role === "user" ? "message" : "reply";
  return (
    <span className="branch-switcher" data-testid="branch-switcher" role="group" aria-label={`Versions of this ${what}`}>
      <button
        type="button"
        className="icon-button"
        data-testid="branch-previous"
        aria-label={`Previous version of this ${what}`}
        disabled={actions === null || at === 0}
        onClick={() => actions?.switchTo(m.id, at - 1)}
      >
        ‹
      </button>
      <span className="branch-position" data-testid="branch-position">
        {at + 1}/{m.siblingCount}
      </span>
      <button
        type="button"
        className="icon-button"
        data-testid="branch-next"
        aria-label={`Next version of this ${what}`}
        disabled={actions === null || at + 1 >= m.siblingCount}
        onClick={() => actions?.switchTo(m.id, at + 1)}
      >
        ›
      </button>
    </span>
  );
}

interface EditorProps {
  initial: string;
  onSave(text: string): void;
  onClose(): void;
}

/** Edits a sent message in place: Enter or Save sends the new version, Escape cancels. */
export function MessageEditor({ initial, onSave, onClose }: EditorProps) {
  const [text, setText] = useState(initial);
  const input = useRef<HTMLTextAreaElement>(null);
  useLayoutEffect(() => {
    const el = input.current;
    if (!el) return;
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }, []);
  const changed = text.trim() !== "" && text.trim() !== initial.trim();
  const save = () => {
    if (!changed) return;
    onSave(text.trim());
    onClose();
  };
  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      save();
    } else if (e.key === "Escape") {
      e.preventDefault();
      onClose();
    }
  };
  return (
    <div className="message-editor" data-testid="message-editor">
      <textarea
        ref={input}
        className="message-editor-input"
        data-testid="message-editor-input"
        aria-label="Edit your message"
        value={text}
        rows={Math.min(8, text.split("\n").length + 1)}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={onKeyDown}
      />
      <div className="message-editor-buttons">
        <button type="button" className="link-button" data-testid="message-editor-cancel" onClick={onClose}>
          Cancel
        </button>
        <button type="button" className="button" data-testid="message-editor-save" disabled={!changed} onClick={save}>
          Send
        </button>
      </div>
    </div>
  );
}
