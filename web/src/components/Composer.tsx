import { useLayoutEffect, useRef, useState, type KeyboardEvent } from "react";

interface Props {
  /** Resolves false when the message was not taken (no chat could be created for it). */
  onSend(text: string): Promise<boolean>;
  running: boolean;
  onCancel(): void;
  /** Set when sending makes no sense right now; shown as the placeholder. */
  disabledReason: string | null;
}

const MAX_INPUT_HEIGHT = 200;

export function Composer({ onSend, running, onCancel, disabledReason }: Props) {
  const [text, setText] = useState("");
  const inputRef = useRef<HTMLTextAreaElement>(null);
  const canSend = text.trim() !== "" && disabledReason === null;

  // Grow with the text up to a limit, then scroll inside the box.
  useLayoutEffect(() => {
    const input = inputRef.current;
    if (!input) return;
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, MAX_INPUT_HEIGHT)}px`;
  }, [text]);

  const submit = () => {
    if (!canSend) return;
    // The message shows at once as pending, so the box clears without waiting for the server.
    // If it could not even be shown (its new chat was not created), the text comes back,
    // unless something new was typed meanwhile.
    const sent = text;
    setText("");
    void onSend(sent.trim()).then((taken) => taken || setText((now) => (now === "" ? sent : now)));
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    // Enter sends; Shift+Enter falls through to the default newline. An IME composing a
    // character also uses Enter, which must not send.
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    }
  };

  return (
    <div className="composer">
      <textarea
        ref={inputRef}
        id="composer-input"
        className="composer-input"
        data-testid="composer-input"
        aria-keyshortcuts="Shift+Escape"
        rows={1}
        value={text}
        placeholder={disabledReason ?? "Message"}
        disabled={disabledReason !== null}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={onKeyDown}
        aria-label="Message"
      />
      {running && (
        <button className="button" data-testid="cancel-button" onClick={onCancel} title="Stop the reply (Escape)" aria-keyshortcuts="Escape">
          Stop
        </button>
      )}
      <button className="button button-primary" data-testid="send-button" disabled={!canSend} onClick={submit}>
        Send
      </button>
    </div>
  );
}
