import type { ViewMessage } from "@chatsync/sync-wasm";

interface Props {
  queued: ViewMessage[];
  onRemove(messageId: string): void;
}

/** Messages sent while a turn runs wait here, in order, until their own turn starts. */
export function QueuedMessages({ queued, onRemove }: Props) {
  if (queued.length === 0) return null;
  return (
    <section className="queued" data-testid="queued-messages" aria-label="Queued messages">
      <h2 className="queued-head">Queued — sent after the current reply</h2>
      <ol>
        {queued.map((m) => (
          <li key={m.id} className="queued-item" data-testid="queued-message" data-message-id={m.id}>
            <span className="queued-text">{m.text}</span>
            <button
              className="link-button"
              data-testid="queued-remove"
              aria-label={`Remove queued message: ${m.text.slice(0, 60)}`}
              onClick={() => onRemove(m.id)}
            >
              Remove
            </button>
          </li>
        ))}
      </ol>
    </section>
  );
}
