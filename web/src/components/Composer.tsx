import { useLayoutEffect, useRef, type KeyboardEvent, type ReactNode } from "react";
import { useMediaQuery } from "../hooks/useMediaQuery";

interface Props {
  /** The open chat's draft (each chat keeps its own) and its setter. */
  text: string;
  setText(next: string | ((now: string) => string)): void;
  /** Resolves false when the message was not taken (no chat could be created for it). */
  onSend(text: string): Promise<boolean>;
  running: boolean;
  onCancel(): void;
  /** Set when sending makes no sense right now; shown as the placeholder. */
  disabledReason: string | null;
  /** Shown before the buttons (the model picker of a new chat). */
  extra?: ReactNode;
}

const MAX_INPUT_HEIGHT = 200;

export function Composer({ text, setText, onSend, running, onCancel, disabledReason, extra }: Props) {
  const inputRef = useRef<HTMLTextAreaElement>(null);
  const canSend = text.trim() !== "" && disabledReason === null;
  // On a touch screen Enter adds a line, as in the phone's other apps; the button sends.
  const touch = useMediaQuery("(pointer: coarse)");

  // Grow with the text up to a limit, then scroll inside the box. An empty box is as tall
  // as its placeholder, which on a phone may take two lines (why sending waits).
  const placeholder = disabledReason ?? "Message";
  useLayoutEffect(() => {
    const input = inputRef.current;
    if (!input) return;
    input.style.height = "auto";
    let height = input.scrollHeight;
    if (text === "") {
      input.value = placeholder;
      height = input.scrollHeight;
      input.value = "";
    }
    input.style.height = `${Math.min(height, MAX_INPUT_HEIGHT)}px`;
  }, [text, placeholder]);

  const submit = () => {
    if (!canSend) return;
    // The message shows at once as pending, so the box clears without waiting for the server.
    // If it could not even be shown (its new chat was not created, the queue is full), the
    // text comes back, unless something new was typed meanwhile.
    const sent = text;
    setText("");
    void onSend(sent.trim()).then((taken) => taken || setText((now) => (now === "" ? sent : now)));
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    // Enter sends; Shift+Enter falls through to the default newline. An IME composing a
    // character also uses Enter, which must not send.
    if (e.key === "Enter" && !e.shiftKey && !touch && !e.nativeEvent.isComposing) {
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
        placeholder={placeholder}
        disabled={disabledReason !== null}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={onKeyDown}
        aria-label="Message"
        enterKeyHint={touch ? "enter" : "send"}
      />
      {extra}
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
